//! Claims over HTTP: a radiologist takes a study before reporting it
//! (`claims`), releases it by hand or by signing; an admin breaks one.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{blocking, claim_problem};
use crate::auth::Principal;
use crate::http::params::Params;
use crate::http::{Problem, S};

/// Takes, or renews, the caller's claim: 409 naming the holder when
/// someone else's is live.
pub async fn claim(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Response, Problem> {
    let uid = p.get("study").to_owned();
    let c = blocking(move || {
        state.hub.index.study(&uid)?.filter(|s| super::studies::visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        state.claims.claim(&uid, &who.user).map_err(claim_problem)
    })
    .await?;
    Ok(Json(claim_json(&c)).into_response())
}

/// Releases the caller's own claim (a lapsed one, or none, is no error).
pub async fn release(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Response, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || state.claims.release(&uid, Some(&who.user)).map_err(claim_problem)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An admin ends anyone's claim: the broken claim, or 404 when there is none.
pub async fn break_claim(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Response, Problem> {
    let uid = p.get("study").to_owned();
    let broken = blocking(move || {
        let c = state.claims.release(&uid, None).map_err(claim_problem)?;
        if let Some(c) = &c {
            tracing::warn!(study = %uid, holder = %c.by, admin = %who.user, "claim broken");
        }
        Ok(c)
    })
    .await?;
    match broken {
        Some(c) => Ok(Json(claim_json(&c)).into_response()),
        None => Err(Problem::not_found("the study is not claimed")),
    }
}

pub fn claim_json(c: &crate::claims::Claim) -> serde_json::Value {
    json!({
        "study": c.study_uid,
        "by": c.by,
        "since": crate::dates::iso_ms(c.since_ms),
        "expires": crate::dates::iso_ms(c.expires_ms),
    })
}
