//! `GET /openapi.json`: the OpenAPI 3.1 description, generated from the handlers and
//! response types (utoipa), so it cannot drift from the code; a test checks real
//! responses against it.

use std::collections::BTreeMap;

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// A message attribute as SNS carries it (binary values base64).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub(crate) struct Attribute {
    /// `String`, `Number`, `Binary`, `String.Array`, ...
    Type: String,
    Value: String,
}

/// `{"error": {...}}`: every 4xx and 5xx.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorResponse {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorDetail {
    /// Stable machine-readable code (`invalid_parameter`, `not_found`, `unauthorized`, ...).
    code: String,
    message: String,
    /// For invalid parameters: `{"field": "<name>"}`.
    #[schema(value_type = Object)]
    details: Value,
}

/// `/healthz`, `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Status {
    status: String,
}

/// The attribute map of an event, for `EventView`.
#[allow(dead_code)]
pub(crate) type AttributeMap = BTreeMap<String, Attribute>;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Islets Audit query API",
        description = "Compliance queries over the event archive. Every route but the health routes needs `Authorization: Bearer <token>` with the scope it names (audit:read, audit:sql) unless the server runs with authentication off (loopback only)."
    ),
    paths(
        super::events::list,
        super::events::one,
        super::events::correlation,
        super::stats::stats,
        super::sql::run,
        super::health::healthz,
        super::health::readyz,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(super) struct ApiDoc;

pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
