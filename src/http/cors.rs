//! CORS for the origins an admin configured (`--cors-origin`): a viewer
//! hosted elsewhere (OHIF on its own server) calling DICOMweb and the JSON
//! API with a bearer token. Preflights are answered before authentication
//! (browsers send them without credentials); cookies are never allowed
//! cross-origin (no Access-Control-Allow-Credentials), so a session cannot
//! be ridden from another site. Requests from other origins get no CORS
//! headers, which the browser enforces.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::S;

const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Accept, Content-Type, Range, If-None-Match, If-Modified-Since";
const EXPOSE_HEADERS: &str = "ETag, Content-Range, Content-Location, Warning, Location";

pub async fn cors(State(state): State<S>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = origin.as_deref().filter(|o| state.cors_origins.iter().any(|c| c == o)).and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(o) = allowed else {
            return (StatusCode::FORBIDDEN, "this origin may not call radhub (--cors-origin)").into_response();
        };
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    }
    let mut r = next.run(req).await;
    if let Some(o) = allowed {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}
