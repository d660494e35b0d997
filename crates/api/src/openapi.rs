//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types' derived schemas, never written by hand.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::{commands, data, ingest, series, stream};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchyard", description = "Multi-tenant IoT broker: HTTP API."),
    paths(
        crate::info,
        crate::health,
        crate::openapi::openapi,
        ingest::events,
        ingest::messages,
        data::current,
        data::messages,
        data::delete_messages,
        data::query,
        series::list,
        series::series,
        series::latest,
        series::multi,
        series::delete,
        commands::send,
        commands::history,
        commands::events,
        stream::firehose,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Credentials),
    security(("basic" = []), ("bearer" = [])),
)]
pub struct ApiDoc;

/// The two credential forms of SPEC §2.5.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()), responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    Json(doc)
}
