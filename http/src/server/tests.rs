//! The limits, each met by the hostile client it exists for.

use std::time::{Duration, Instant};

use axum::routing::get;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

struct Running {
    address: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ServerLimits, host_check: HostCheck) -> Running {
    let router = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/panic",
        get(|| async {
            let text = "é";
            // A byte index inside a character: the kind of bug a fuzzer finds.
            let cut = &text[..1];
            cut.to_owned()
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let done = tokio::spawn(serve(
        listener,
        router,
        limits,
        host_check,
        shutdown.clone(),
    ));
    Running {
        address,
        shutdown,
        done,
    }
}

/// Sends a raw request and reads the whole answer (the server closes after it).
async fn raw(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

fn get_with_host(host: &str) -> String {
    format!("GET /ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn without_authentication_only_loopback_host_values_are_answered() {
    let server = start(ServerLimits::DEFAULT, HostCheck::LoopbackOnly).await;
    for host in [
        "localhost",
        "LOCALHOST:8081",
        "127.0.0.1",
        "127.0.0.1:8081",
        "127.9.9.9:1",
        "[::1]",
        "[::1]:8081",
    ] {
        let answer = raw(server.address, &get_with_host(host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    for host in [
        "evil.example",
        "evil.example:8081",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "10.0.0.1",
        "[::2]:80",
        "[::1]x",
        "localhost:http",
        "localhost:99999",
        "",
    ] {
        let answer = raw(server.address, &get_with_host(host)).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
        assert!(answer.contains("\"host_not_allowed\""), "{host}: {answer}");
    }
    // No Host header at all.
    let answer = raw(server.address, "GET /ok HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 403") || answer.starts_with("HTTP/1.1 403"),
        "{answer}"
    );
    // The server is still up.
    let answer = raw(server.address, &get_with_host("localhost")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn with_authentication_any_host_is_answered() {
    let server = start(ServerLimits::DEFAULT, HostCheck::Any).await;
    let answer = raw(server.address, &get_with_host("audit.internal.example")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_after_the_header_timeout() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        ..ServerLimits::DEFAULT
    };
    let server = start(limits, HostCheck::Any).await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    // One header byte every 100 ms: the head never completes.
    let mut closed_after = None;
    for _ in 0..100 {
        if stream.write_all(b"X").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            // 408 or any answer: the server gave up on the head.
            Ok(Ok(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the server never gave up on a trickled head");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    // Others are still served.
    let answer = raw(server.address, &get_with_host("localhost")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn past_the_connection_limit_new_clients_wait_until_one_leaves() {
    let limits = ServerLimits {
        max_connections: 1,
        ..ServerLimits::DEFAULT
    };
    let server = start(limits, HostCheck::Any).await;
    // One idle keep-alive connection holds the only place.
    let mut holder = TcpStream::connect(server.address).await.expect("connect");
    holder
        .write_all(
            get_with_host("localhost")
                .replace("close", "keep-alive")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut buffer = [0u8; 512];
    let read = holder.read(&mut buffer).await.expect("read");
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));

    let waiting = tokio::spawn(raw(server.address, get_with_host("localhost").leak()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served past the limit"
    );
    drop(holder);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once the first left")
        .expect("task");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_the_error_body_and_the_server_stays_up() {
    let server = start(ServerLimits::DEFAULT, HostCheck::Any).await;
    let response = reqwest::get(format!("http://{}/panic", server.address))
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "internal");
    let answer = raw(server.address, &get_with_host("localhost")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    server.shutdown.cancel();
    server.done.await.expect("task").expect("clean shutdown");
}
