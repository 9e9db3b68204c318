//! The HTTP API: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) under `/dicom-web`,
//! radhub's own JSON under `/api`, and the viewer's static files.
//!
//! Every route belongs to one access group, checked by `access` before the
//! handler runs: public, read (any signed-in role), report (radiologists),
//! store (radiologists and admins), manage (admins). `docs/openapi.json`
//! lists each route with its group (`x-radhub-access`); a test walks that
//! list and checks every route refuses the wrong roles.

mod access;
mod api;
mod meta_cache;
mod multipart;
mod params;
mod problem;
mod qido;
mod stow;
mod viewer;
mod wado;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{Auth, Role};
use crate::ingest::Hub;
use crate::reports::Reports;
use crate::thumbs::{Renderer, Thumbs};
pub use meta_cache::MetaCache;
pub use problem::Problem;

/// Limits on what a client may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest STOW-RS body, in bytes.
    pub max_body: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri: usize,
    /// Most results one QIDO-RS answer carries; the client pages past it.
    pub max_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: 512 << 20, max_uri: 8 << 10, max_results: 1000 }
    }
}

pub struct AppState {
    pub hub: Arc<Hub>,
    pub thumbs: Arc<Thumbs>,
    pub renderer: Option<Renderer>,
    pub auth: Arc<Auth>,
    pub reports: Arc<Reports>,
    pub limits: Limits,
    /// Where the viewer's files are; `None` serves a short page saying so.
    pub viewer_dir: Option<PathBuf>,
    /// Site recorded for instances stored over STOW-RS when the data does
    /// not say (see `sites::resolve`).
    pub stow_site: Option<String>,
    /// The URL clients reach radhub at ("http://host:port"), for the
    /// absolute URLs DICOMweb answers carry. Configured, never taken from
    /// the Host header (which clients send without the port, and which
    /// anyone can forge).
    pub public_url: String,
    pub meta_cache: meta_cache::MetaCache,
    /// STOW-RS bodies held in memory at once (each up to `max_body`);
    /// further uploads wait their turn.
    pub stow_slots: tokio::sync::Semaphore,
    /// Password checks running at once.
    pub sign_in_slots: tokio::sync::Semaphore,
}

impl AppState {
    pub fn dicomweb_base(&self) -> String {
        format!("{}/dicom-web", self.public_url.trim_end_matches('/'))
    }
}

type S = Arc<AppState>;

/// Who may use a group of routes.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    Public,
    Read,
    Report,
    Store,
    Manage,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::Read => true,
            Access::Report => role == Role::Radiologist,
            Access::Store => matches!(role, Role::Radiologist | Role::Admin),
            Access::Manage => role == Role::Admin,
        }
    }
}

fn guarded(state: &S, access: Access, routes: Router<S>) -> Router<S> {
    routes.route_layer(middleware::from_fn_with_state((state.clone(), access), access::check))
}

pub fn router(state: S) -> Router {
    let public = Router::new()
        .route("/", get(viewer::index))
        .route("/viewer/{*path}", get(viewer::file))
        .route("/api/openapi.json", get(openapi))
        .route("/api/health", get(health))
        .route("/api/session", post(api::sign_in));

    let read = Router::new()
        .route("/api/session", get(api::whoami).delete(api::sign_out))
        .route("/api/tokens", post(api::new_token))
        .route("/api/patients", get(api::patients))
        .route("/api/patients/{nhs}", get(api::linked_patient))
        .route("/api/studies", get(api::studies))
        .route("/api/studies/{study}", get(api::study))
        .route("/api/studies/{study}/reports", get(api::study_reports))
        .route("/api/reports/{id}", get(api::report))
        .merge(qido::routes())
        .merge(wado::routes());

    let report = Router::new()
        .route("/api/worklist", get(api::worklist))
        .route("/api/studies/{study}/reports", post(api::create_report))
        .route("/api/reports/{id}", axum::routing::put(api::update_report))
        .route("/api/reports/{id}/sign", post(api::sign_report));

    let store = Router::new()
        .route("/dicom-web/studies", post(stow::store))
        .route("/dicom-web/studies/{study}", post(stow::store_in_study))
        .layer(DefaultBodyLimit::max(state.limits.max_body));

    let manage = Router::new()
        .route("/api/admin/users", get(api::users).post(api::add_user))
        .route("/api/admin/users/{name}", axum::routing::patch(api::change_user))
        .route("/api/admin/users/{name}/tokens", axum::routing::delete(api::revoke_tokens))
        .route("/api/admin/stats", get(api::stats));

    // Routes sharing a path but not a group (GET read, POST report) merge
    // by method: axum keeps each method's own layers.
    Router::new()
        .merge(guarded(&state, Access::Public, public))
        .merge(guarded(&state, Access::Read, read))
        .merge(guarded(&state, Access::Report, report))
        .merge(guarded(&state, Access::Store, store))
        .merge(guarded(&state, Access::Manage, manage))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(256 << 10))
        .layer(middleware::from_fn_with_state(state.clone(), uri_limit))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in
/// flight finish first.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
}

async fn uri_limit(State(state): State<S>, req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > state.limits.max_uri {
        return Problem::new(axum::http::StatusCode::URI_TOO_LONG, format!("request target of {len} bytes exceeds {} bytes", state.limits.max_uri))
            .into_response();
    }
    next.run(req).await
}

async fn not_found() -> Problem {
    Problem::new(axum::http::StatusCode::NOT_FOUND, "no such resource")
}

async fn method_not_allowed() -> Problem {
    Problem::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this resource")
}

async fn health() -> &'static str {
    "ok"
}

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
