//! `/healthz` (the process runs) and `/readyz` (it can answer queries).

use axum::Json;
use serde_json::{Value, json};

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz() -> Json<Value> {
    Json(json!({"status": "ready"}))
}
