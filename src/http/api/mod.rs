//! radhub's own JSON API, one file per resource: sign-in and tokens
//! (`session`), the patient record linked across sites (`patients`),
//! studies and orders (`studies`), the reporting worklist (`worklist`),
//! reports, templates and turnaround (`reports`), the sites'
//! PACS (`sites`), and what admins manage: users, counts, NHS-number
//! links, quarantine (`admin`).

pub mod admin;
pub mod claims;
pub mod patients;
pub mod reports;
pub mod session;
pub mod sites;
pub mod studies;
pub mod worklist;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::params::QueryPairs;
use super::{Problem, S};
use crate::auth::AuthError;
use crate::reports::ReportError;

/// A JSON request body: application/json, parsed, or a problem saying why not.
pub struct JsonBody<T>(pub T);

/// Time a client has to send a JSON body: a slow one cannot hold a
/// connection and a handler for ever.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl<T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"));
        }
        let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| Problem::new(StatusCode::REQUEST_TIMEOUT, format!("the body took over {} s", BODY_TIMEOUT.as_secs())))?
            .map_err(|e| Problem::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| Problem::bad_request(format!("JSON body: {e}")))
    }
}

fn auth_problem(e: AuthError) -> Problem {
    match e {
        AuthError::NoSuchUser(_) => Problem::not_found(e.to_string()),
        AuthError::Exists(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        AuthError::BadName | AuthError::WeakPassword => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => Problem::internal("user database", e),
    }
}

fn claim_problem(e: crate::claims::ClaimError) -> Problem {
    use crate::claims::ClaimError;
    match e {
        ClaimError::Held(_) | ClaimError::NotHolder(..) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        e => Problem::internal("claims database", e),
    }
}

fn report_problem(e: ReportError) -> Problem {
    match e {
        ReportError::NotFound(_) => Problem::not_found(e.to_string()),
        ReportError::Final(_) | ReportError::HasFinal(_) | ReportError::NotFinal(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        ReportError::NotAuthor(_) => Problem::new(StatusCode::FORBIDDEN, e.to_string()),
        ReportError::AddendumPreliminary(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        ReportError::Empty | ReportError::TooLong | ReportError::BadSections => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => Problem::internal("report database", e),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Problem> + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await?
}

fn limit(q: &QueryPairs, default: usize) -> Result<usize, Problem> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|&n| (1..=1000).contains(&n)).ok_or_else(|| Problem::bad_request("limit is 1 to 1000")),
    }
}

fn text(q: &QueryPairs, name: &str) -> Option<String> {
    q.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}
