//! The one rule for listeners: a server without authentication listens on loopback only,
//! whichever way its address was given (flag, environment, IPv6, IPv4-mapped IPv6).

use std::net::{IpAddr, SocketAddr};

/// Whether `ip` only reaches this host: 127.0.0.0/8, `::1`, or `::ffff:127.x.y.z`.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Refuses an unauthenticated listener beyond loopback. `flag` names where the address
/// came from (`--listen`), `remedy` what would allow it (`pass --tokens-file`).
pub fn check_listener(
    flag: &str,
    address: SocketAddr,
    authenticated: bool,
    remedy: &str,
) -> Result<(), String> {
    if authenticated || is_loopback(address.ip()) {
        return Ok(());
    }
    Err(format!(
        "{flag} {address}: authentication is off, so this server only listens on loopback addresses (127.0.0.1, [::1]); {remedy}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_listeners_stay_on_loopback_whatever_the_spelling() {
        for allowed in [
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            let address: SocketAddr = allowed.parse().expect("address");
            assert!(
                check_listener("--listen", address, false, "").is_ok(),
                "{allowed}"
            );
        }
        for refused in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "[::ffff:10.0.0.5]:80",
            "[::ffff:0.0.0.0]:80",
            "[fe80::1]:80",
        ] {
            let address: SocketAddr = refused.parse().expect("address");
            let error = check_listener("--listen", address, false, "pass --tokens-file")
                .expect_err(refused);
            assert!(
                error.contains("--listen") && error.contains("--tokens-file"),
                "{error}"
            );
            assert!(check_listener("--listen", address, true, "").is_ok());
        }
    }
}
