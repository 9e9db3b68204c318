//! Who is asking, and whether their role may use the route: a bearer token
//! (API clients) or the session cookie (the viewer). The principal is put
//! in the request's extensions for handlers that need the user's name.
//!
//! A state-changing request carried by the session cookie must come from
//! radhub's own pages (its Origin, or Sec-Fetch-Site: same-origin): the
//! cookie is sent by the browser whoever's page asks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Access, Problem, S};
use crate::auth::Principal;

pub const SESSION_COOKIE: &str = "radhub_session";

fn cross_site() -> Response {
    Problem::new(StatusCode::FORBIDDEN, "a cross-site request: state-changing requests with the session cookie come from radhub's own pages").into_response()
}

/// Whether a request comes from another site's page: its Origin is neither
/// radhub's public one nor the host it was sent to (a browser names the
/// page's origin; only non-browsers, which carry no victim's cookie, can
/// forge Host). With `required`, a request without Origin counts as
/// cross-site unless Sec-Fetch-Site says same-origin.
fn foreign_origin(state: &S, headers: &HeaderMap, required: bool) -> bool {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if text("sec-fetch-site") == Some("same-origin") {
        return false;
    }
    match text(header::ORIGIN.as_str()) {
        Some(o) => {
            let o = super::origin_of(o);
            let sent_to = text(header::HOST.as_str()).map(|h| h.trim().to_ascii_lowercase());
            o != state.origin() && sent_to.is_none_or(|h| o.split_once("://").map(|(_, host)| host) != Some(h.as_str()))
        }
        None => required,
    }
}

pub async fn check(State((state, access)): State<(S, Access)>, mut req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let Access::Public = access {
        // A sign-in posted by another site's page (login CSRF).
        if changes && foreign_origin(&state, req.headers(), false) {
            return cross_site();
        }
        return next.run(req).await;
    }
    let by_cookie = bearer(req.headers()).is_none();
    let principal = match principal(&state, req.headers()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            let mut r = Problem::new(StatusCode::UNAUTHORIZED, "sign in (POST /api/session) or send an API token as 'Authorization: Bearer'").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"radhub\""));
            return r;
        }
        Err(p) => return p.into_response(),
    };
    let audit = Asked::of(&req);
    if !access.allows(principal.role) {
        audit.record(&state, &principal, StatusCode::FORBIDDEN).await;
        let what = match access {
            Access::Report => "reporting is for radiologists",
            Access::Store => "storing is for radiologists and admins",
            Access::Manage => "this is for admins",
            Access::Public | Access::Read => "not allowed",
        };
        return Problem::new(StatusCode::FORBIDDEN, format!("{what}; {} is a {}", principal.user, principal.role.as_str())).into_response();
    }
    if by_cookie && changes && foreign_origin(&state, req.headers(), true) {
        tracing::warn!(user = %principal.user, origin = ?req.headers().get(header::ORIGIN), "cross-site request refused");
        return cross_site();
    }
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    audit.record(&state, &principal, response.status()).await;
    response
}

/// What an audit record needs of a request, taken before it is handled.
struct Asked {
    method: String,
    route: String,
    path: String,
    query: String,
    from: String,
}

impl Asked {
    fn of(req: &Request) -> Asked {
        let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
        let from = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
        Asked { method: req.method().to_string(), route, path: req.uri().path().to_owned(), query: req.uri().query().unwrap_or("").to_owned(), from }
    }

    /// The path's value at the route's `{name}`.
    fn param(&self, name: &str) -> Option<String> {
        let want = format!("{{{name}}}");
        self.route.split('/').zip(self.path.split('/')).find(|(r, _)| *r == want).map(|(_, v)| v.to_owned())
    }

    /// One record in the audit trail, with the patient and study touched.
    async fn record(self, state: &S, who: &Principal, status: StatusCode) {
        let (event, action) = crate::audit::classify(&self.method, &self.route);
        let outcome = match status.as_u16() {
            200..=399 => 0,
            400..=499 => 4,
            _ => 8,
        };
        let study = self.param("study");
        // A study's patient is looked up by the writer.
        let patient = match (&study, self.param("nhs")) {
            (_, Some(nhs)) => Some(format!("NHS/{nhs}")),
            (Some(_), None) => None,
            (None, None) => {
                let q: HashMap<String, String> = serde_urlencoded::from_str(&self.query).unwrap_or_default();
                // FHIR: a patient by NHS number (patient=, identifier=system|value).
                let fhir =
                    q.get("patient").or_else(|| q.get("identifier")).or_else(|| q.get("patient.identifier")).filter(|_| self.route.starts_with("/fhir/"));
                match fhir {
                    Some(n) => {
                        let v = n.rsplit('|').next().unwrap_or(n);
                        Some(format!("NHS/{}", v.strip_prefix("Patient/").unwrap_or(v)))
                    }
                    None => q.get("PatientID").or_else(|| q.get("00100020")).or_else(|| q.get("patient_id")).map(|pid| {
                        let issuer = q.get("IssuerOfPatientID").or_else(|| q.get("00100021")).or_else(|| q.get("issuer"));
                        format!("{}/{pid}", issuer.map(String::as_str).unwrap_or("*"))
                    }),
                }
            }
        };
        let r = crate::audit::Record {
            event,
            action,
            outcome,
            user: who.user.clone(),
            role: who.role.as_str().to_owned(),
            from: self.from,
            request: format!("{} {}", self.method, self.route),
            status: status.as_u16(),
            patient,
            study,
        };
        state.audit_log.record(r).await;
    }
}

/// Counts of something each user (or address) holds at once: streaming
/// retrieves, connections.
#[derive(Clone, Default)]
pub struct PerUser(Arc<Mutex<HashMap<String, usize>>>);

/// One held; given back when dropped.
pub struct UserSlot {
    table: PerUser,
    user: String,
}

impl PerUser {
    pub fn take(&self, user: &str, max: usize) -> Option<UserSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(UserSlot { table: self.clone(), user: user.to_owned() })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// The principal of a request, from its bearer token or session cookie.
pub fn principal(state: &S, headers: &HeaderMap) -> Result<Option<Principal>, Problem> {
    let auth = &state.auth;
    let found = if let Some(token) = bearer(headers) {
        // `radhub` commands on this machine, through the running server.
        if state.control_token.as_deref().is_some_and(|c| blake3::hash(c.as_bytes()) == blake3::hash(token.as_bytes())) {
            return Ok(Some(Principal { user: "radhub-cli".into(), role: crate::auth::Role::Admin }));
        }
        auth.bearer(token)
    } else if let Some(token) = cookie(headers, SESSION_COOKIE) {
        auth.session(token)
    } else {
        return Ok(None);
    };
    found.map_err(|e| {
        tracing::error!(error = %e, "user database");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "user database unavailable")
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}
