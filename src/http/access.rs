//! Who is asking, and whether their role may use the route: a bearer token
//! (API clients) or the session cookie (the viewer). The principal is put
//! in the request's extensions for handlers that need the user's name.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Access, Problem, S};
use crate::auth::Principal;

pub const SESSION_COOKIE: &str = "radhub_session";

pub async fn check(State((state, access)): State<(S, Access)>, mut req: Request, next: Next) -> Response {
    if let Access::Public = access {
        return next.run(req).await;
    }
    let principal = match principal(&state, req.headers()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            let mut r = Problem::new(StatusCode::UNAUTHORIZED, "sign in (POST /api/session) or send an API token as 'Authorization: Bearer'").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"radhub\""));
            return r;
        }
        Err(p) => return p.into_response(),
    };
    if !access.allows(principal.role) {
        let what = match access {
            Access::Report => "reporting is for radiologists",
            Access::Store => "storing is for radiologists and admins",
            Access::Manage => "this is for admins",
            Access::Public | Access::Read => "not allowed",
        };
        return Problem::new(StatusCode::FORBIDDEN, format!("{what}; {} is a {}", principal.user, principal.role.as_str())).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal of a request, from its bearer token or session cookie.
pub fn principal(state: &S, headers: &HeaderMap) -> Result<Option<Principal>, Problem> {
    let auth = &state.auth;
    let found = if let Some(token) = bearer(headers) {
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
