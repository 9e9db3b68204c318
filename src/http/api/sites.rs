//! The sites and their PACS: status for everyone (admins see all of it),
//! a harvest or an echo on an admin's request.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Principal, Role};
use crate::federation::{FedError, Federation};
use crate::http::params::Params;
use crate::http::{Problem, S};

fn federation(state: &S) -> Result<&std::sync::Arc<Federation>, Problem> {
    state.federation.as_ref().ok_or_else(|| Problem::new(StatusCode::SERVICE_UNAVAILABLE, "this radhub is not connected to the sites' PACS"))
}

pub fn fed_problem(e: FedError) -> Problem {
    match e {
        FedError::NoSuchSite(_) => Problem::not_found(e.to_string()),
        FedError::Busy(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        FedError::Site { ref error, .. } if matches!(error, pacs_gateway::scu::ScuError::Timeout { .. }) => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, e.to_string())
        }
        FedError::Site { .. } | FedError::Refused { .. } => Problem::new(StatusCode::BAD_GATEWAY, e.to_string()),
        e => Problem::internal("federation", e),
    }
}

/// Every configured site: admins see its PACS, harvests and errors;
/// others its code, name and whether it answers.
pub async fn sites(State(state): State<S>, Extension(who): Extension<Principal>) -> Result<Json<Vec<Value>>, Problem> {
    let Some(fed) = state.federation.clone() else {
        let list = crate::sites::all().iter().map(|s| json!({"code": s.code, "name": s.name, "reachable": null})).collect();
        return Ok(Json(list));
    };
    let all = tokio::task::spawn_blocking(move || fed.status()).await?.map_err(fed_problem)?;
    Ok(Json(
        all.into_iter().map(|s| if who.role == Role::Admin { json!(s) } else { json!({"code": s.code, "name": s.name, "reachable": s.reachable}) }).collect(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    #[serde(default)]
    full: bool,
}

/// Starts a harvest of one site now (202); its progress shows in `GET /api/sites`.
pub async fn sync(State(state): State<S>, p: Params, body: axum::body::Bytes) -> Result<Response, Problem> {
    let fed = federation(&state)?;
    let code = p.get("code");
    // The body is optional: none asks for a quick pass.
    let asked: SyncBody = if body.iter().all(u8::is_ascii_whitespace) {
        SyncBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("JSON body: {e}")))?
    };
    let full = asked.full;
    if crate::sites::find(code).is_none() {
        return Err(Problem::not_found(format!("no site {code:?}")));
    }
    if !fed.request_sync(code, full) {
        return Err(Problem::new(StatusCode::CONFLICT, format!("site {code} has no PACS configured to harvest")));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"code": code, "full": full, "requested": true}))).into_response())
}

/// C-ECHO to one site's PACS.
pub async fn echo(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let fed = federation(&state)?;
    let code = p.get("code");
    let ms = fed.echo(code).await.map_err(fed_problem)?;
    Ok(Json(json!({"code": code, "ok": true, "ms": ms})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    site: String,
}

fn send_problem(e: crate::federation::egress::SendError) -> Problem {
    use crate::federation::egress::SendError as E;
    match e {
        E::NoSuchStudy(_) => Problem::not_found(e.to_string()),
        E::NoPacs(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        E::NoIdentity(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        E::Fetch(f) => crate::http::fetching::problem(f),
        E::Scu { .. } => Problem::new(StatusCode::BAD_GATEWAY, e.to_string()),
        e => Problem::internal("sending a study", e),
    }
}

/// Sends a study to another site's PACS under the patient's identity there.
pub async fn send_study(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    body: super::JsonBody<SendBody>,
) -> Result<Json<Value>, Problem> {
    let fed = federation(&state)?;
    let report = fed.send_study(p.get("study"), &body.0.site, &who.user).await.map_err(send_problem)?;
    Ok(Json(json!(report)))
}
