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
mod cors;
pub(crate) mod fetching;
pub mod fhir;
mod meta_cache;
pub mod multipart;
mod params;
mod problem;
mod qido;
mod stow;
mod timed_io;

mod viewer;
mod wado;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// Limits on what a client may send and hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest STOW-RS body, in bytes (written to disk as it arrives: this
    /// bounds disk, not memory).
    pub max_body: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri: usize,
    /// Most results one QIDO-RS answer carries; the client pages past it.
    pub max_results: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections from one address at once; more are closed at once.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's headers, and that an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// WADO-RS retrieves one user may have streaming at once.
    pub retrieves_per_user: usize,
    /// Time a client may take nothing sent (a streamed answer, or a write
    /// to its connection) before it is cut.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 4 << 30,
            max_uri: 8 << 10,
            max_results: 1000,
            max_connections: 1024,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(20),
            retrieves_per_user: 8,
            send_timeout: Duration::from_secs(60),
        }
    }
}

pub struct AppState {
    pub hub: Arc<Hub>,
    pub thumbs: Arc<Thumbs>,
    pub renderer: Option<Renderer>,
    pub auth: Arc<Auth>,
    pub reports: Arc<Reports>,
    pub claims: Arc<crate::claims::Claims>,
    pub audit: Arc<crate::audit::Audit>,
    pub audit_log: crate::audit::Recorder,
    pub outbox: Arc<crate::delivery::Outbox>,
    pub orders: Arc<crate::orders::Orders>,
    pub findings: Arc<crate::findings::Findings>,
    pub worklist: Arc<crate::worklist::Worklist>,
    pub limits: Limits,
    /// Where the viewer's files are; `None` serves a short page saying so.
    pub viewer_dir: Option<PathBuf>,
    /// Site holding instances stored over STOW-RS; `None` quarantines them
    /// (`sites::file`).
    pub stow_site: Option<String>,
    /// The URL clients reach radhub at ("http://host:port"), for the
    /// absolute URLs DICOMweb answers carry. Configured, never taken from
    /// the Host header (which clients send without the port, and which
    /// anyone can forge).
    pub public_url: String,
    pub meta_cache: meta_cache::MetaCache,
    /// STOW-RS uploads received at once (each streamed to staging, up to
    /// `max_body`); further uploads wait their turn.
    pub stow_slots: tokio::sync::Semaphore,
    /// Password checks running at once.
    pub sign_in_slots: tokio::sync::Semaphore,
    /// WADO-RS retrieves streaming, per user.
    pub retrieves: access::PerUser,
    /// The sites' PACS, when radhub harvests and fetches from them.
    pub federation: Option<Arc<crate::federation::Federation>>,
    /// The bearer token of `radhub` commands run beside this server
    /// (`<data>/control.json`): an admin, for this process's life.
    pub control_token: Option<String>,
    /// Origins whose pages may call the API with a bearer token (CORS).
    pub cors_origins: Vec<String>,
}

impl AppState {
    pub fn dicomweb_base(&self) -> String {
        format!("{}/dicom-web", self.public_url.trim_end_matches('/'))
    }

    /// The origin (scheme, host, port) clients reach radhub at.
    pub fn origin(&self) -> String {
        origin_of(&self.public_url)
    }
}

/// `scheme://host[:port]` of a URL, lower-cased, default ports dropped.
pub fn origin_of(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url.as_str()));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match (scheme, host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
        _ => host,
    };
    format!("{scheme}://{host}")
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
        .route("/viewer", get(|| async { axum::response::Redirect::permanent("/viewer/") }))
        .route("/viewer/", get(viewer::index))
        .route("/viewer/{*path}", get(viewer::file))
        .route("/api/openapi.json", get(openapi))
        .route("/api/health", get(health))
        .route("/api/session", post(api::session::sign_in));

    let read = Router::new()
        .route("/api/session", get(api::session::whoami).delete(api::session::sign_out))
        .route("/api/tokens", post(api::session::new_token))
        .route("/api/patients", get(api::patients::patients))
        .route("/api/patients/{nhs}", get(api::patients::linked_patient))
        .route("/api/studies", get(api::studies::studies))
        .route("/api/studies/{study}", get(api::studies::study))
        .route("/api/studies/{study}/reports", get(api::reports::study_reports))
        .route("/api/reports", get(api::reports::by_accession))
        .route("/api/reports/{id}", get(api::reports::report))
        .route("/api/sites", get(api::sites::sites))
        .merge(qido::routes())
        .merge(fhir::routes())
        .merge(wado::routes(&state));

    let report = Router::new()
        .route("/api/worklist", get(api::worklist::worklist))
        .route("/api/templates", get(api::reports::templates))
        .route("/api/studies/{study}/template", get(api::reports::study_template))
        .route("/api/reports/{id}/preliminary", post(api::reports::preliminary))
        .route("/api/reports/{id}/versions", get(api::reports::versions))
        .route("/api/orders", get(api::studies::orders))
        .route("/api/studies/{study}/claim", post(api::claims::claim).delete(api::claims::release))
        .route("/api/studies/{study}/reports", post(api::reports::create_report))
        .route("/api/reports/{id}", axum::routing::put(api::reports::update_report))
        .route("/api/reports/{id}/sign", post(api::reports::sign_report))
        .route("/api/reports/{id}/addenda", post(api::reports::create_addendum))
        .route("/api/reports/{id}/flag", post(api::reports::flag))
        .route("/api/reports/{id}/communicated", post(api::reports::communicated));

    let store = Router::new()
        .route("/dicom-web/studies", post(stow::store))
        .route("/dicom-web/studies/{study}", post(stow::store_in_study))
        .route("/api/studies/{study}/send", post(api::sites::send_study))
        .layer(DefaultBodyLimit::max(state.limits.max_body));

    let manage = Router::new()
        .route("/api/admin/users", get(api::admin::users).post(api::admin::add_user))
        .route("/api/admin/users/{name}", axum::routing::patch(api::admin::change_user))
        .route("/api/admin/users/{name}/tokens", axum::routing::delete(api::admin::revoke_tokens))
        .route("/api/admin/stats", get(api::admin::stats))
        .route("/api/admin/links", get(api::admin::link_conflicts).post(api::admin::decide_link))
        .route("/api/admin/links/log", get(api::admin::link_log))
        .route("/api/admin/links/proposals", get(api::admin::link_proposals))
        .route("/api/admin/identity", get(api::admin::identity_log))
        .route("/api/admin/rejections", get(api::admin::rejections).post(api::admin::reject))
        .route("/api/admin/rejections/restore", post(api::admin::restore))
        .route("/api/admin/rejections/delete", post(api::admin::delete))
        .route("/api/admin/held", get(api::admin::held))
        .route("/api/admin/held/{sop}", post(api::admin::decide_held))
        .route("/api/admin/identity/{seq}/undo", post(api::admin::undo_identity))
        .route("/api/admin/quarantine", get(api::admin::quarantine))
        .route("/api/admin/quarantine/{study}", post(api::admin::file_study))
        .route("/api/admin/claims/{study}", axum::routing::delete(api::claims::break_claim))
        .route("/api/admin/audit", get(api::admin::audit))
        .route("/api/admin/escalations", get(api::reports::escalations))
        .route("/api/turnaround", get(api::reports::turnaround))
        .route("/api/worklist/{study}/assign", post(api::worklist::assign))
        .route("/api/worklist/{study}/dismiss", post(api::worklist::dismiss))
        .route("/api/admin/audit/verify", get(api::admin::audit_verify))
        .route("/api/sites/{code}/sync", post(api::sites::sync))
        .route("/api/sites/{code}/echo", post(api::sites::echo));

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
        // Outermost: a preflight carries no credentials, and every answer
        // (errors too) needs its CORS headers for the page to read it.
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in
/// flight finish first (up to a grace period).
///
/// hyper with a timer, rather than `axum::serve`: a client that sends its
/// headers slowly, or leaves a keep-alive connection idle, is dropped after
/// `header_timeout`, one that takes nothing written after `send_timeout`
/// (`TimedIo`); at most `max_connections` are served at once (the rest
/// wait in the kernel's backlog) and `max_connections_per_address` from
/// one address, so a few hundred half-sent or unread requests cannot hold
/// every descriptor.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let by_address = access::PerUser::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1, and HTTP/2 where the client offers it (ALPN over TLS, or its preface).
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(limits.max_uri.max(16 << 10) * 4);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100).keep_alive_interval(Some(limits.header_timeout));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
        };
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(x) => { backoff = Duration::from_millis(10); x }
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Some(per_address) = by_address.take(&peer.ip().to_canonical().to_string(), limits.max_connections_per_address) else {
            tracing::warn!(%peer, limit = limits.max_connections_per_address, "HTTP connection closed: too many from this address");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let app = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let (wait, send_timeout) = (limits.header_timeout, limits.send_timeout);
        tokio::spawn(async move {
            let ended = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(timed_io::TimedIo::new(sock, send_timeout)), service)).await,
                // The handshake on the connection's own task: a slow one holds up no other.
                Some(tls) => match accept_tls(&tls, sock, wait, send_timeout).await {
                    Some(s) => watcher.watch(builder.serve_connection(TokioIo::new(s), service)).await,
                    None => Ok(()),
                },
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop((slot, per_address));
        });
    }
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP connections still open after the grace period");
    }
    Ok(())
}

/// The TLS session of an HTTPS connection, within `wait`; a client that
/// speaks plain HTTP is told to use HTTPS and closed.
async fn accept_tls(
    tls: &crate::tls::Tls,
    mut sock: tokio::net::TcpStream,
    wait: Duration,
    send_timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<timed_io::TimedIo<tokio::net::TcpStream>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, sock.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return None,
    }
    if !crate::tls::is_handshake(&first) {
        let _ = tokio::time::timeout(wait, async {
            sock.write_all(crate::tls::PLAIN_REFUSED).await?;
            sock.shutdown().await?;
            // Read what it sent, so that closing does not reset the answer away.
            let mut sink = [0u8; 4096];
            while sock.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        return None;
    }
    match tokio::time::timeout(wait, tls.acceptor().accept(timed_io::TimedIo::new(sock, send_timeout))).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
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
