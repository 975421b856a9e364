//! `GET /openapi.json`: the OpenAPI 3.1 description, generated from the handlers and
//! response types (utoipa), so it cannot drift from the code; a test checks real
//! responses against it.

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

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
        crate::events::list,
        crate::events::one,
        crate::events::correlation,
        crate::stats::stats,
        crate::sql::run,
        crate::health::healthz,
        crate::health::readyz,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(super) struct ApiDoc;

/// The document, with the security this server enforces: none when authentication is off.
pub(super) async fn openapi(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> Json<utoipa::openapi::OpenApi> {
    let mut document = ApiDoc::openapi();
    if matches!(state.auth, crate::auth::Auth::Off) {
        document.security = None;
        for path in document.paths.paths.values_mut() {
            for operation in [
                &mut path.get,
                &mut path.post,
                &mut path.put,
                &mut path.delete,
                &mut path.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = None;
            }
        }
        if let Some(components) = document.components.as_mut() {
            components.security_schemes.clear();
        }
    }
    Json(document)
}
