//! Reports of a study: a draft is readable by its author (and admins)
//! only; a signed report by every reader.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, claim_problem, report_problem, JsonBody};
use crate::auth::{Principal, Role};
use crate::http::params::Params;
use crate::http::{Problem, S};

#[derive(Deserialize)]
pub struct ReportText {
    text: String,
}

pub async fn study_reports(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        state.hub.index.study(&uid)?.filter(|s| super::studies::visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        let all = state.reports.of_study(&uid).map_err(report_problem)?;
        Ok(json!(all.into_iter().filter(|r| r.readable_by(&who.user, who.role == Role::Admin)).collect::<Vec<_>>()))
    })
    .await
    .map(Json)
}

pub async fn create_report(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<ReportText>,
) -> Result<Response, Problem> {
    let uid = p.get("study").to_owned();
    let r = blocking(move || {
        let s = state.hub.index.study(&uid)?.filter(|s| super::studies::visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        // Reporting a study takes its claim (or renews the author's own).
        state.claims.claim(&uid, &who.user).map_err(claim_problem)?;
        state.reports.create(&uid, &s.site, &who.user, &body.text).map_err(report_problem)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// An author's edit or signature of their own draft takes (or renews)
/// their claim on its study; refused while someone else holds it. Other
/// cases are left to `Reports` to refuse.
fn own_draft_claimed(state: &S, id: u64, user: &str) -> Result<(), Problem> {
    if let Some(r) = state.reports.get(id).map_err(report_problem)?.filter(|r| r.author == user && r.status == crate::reports::Status::Draft) {
        state.claims.claim(&r.study_uid, user).map_err(claim_problem)?;
    }
    Ok(())
}

/// A report with where it has gone: each delivery's kind, state, attempts and last error.
fn with_deliveries(r: &crate::reports::Report, deliveries: &[crate::delivery::Entry]) -> Value {
    let mut v = json!(r);
    v["deliveries"] = json!(deliveries
        .iter()
        .map(|e| json!({
            "kind": e.kind,
            "site": e.site,
            "state": e.state,
            "attempts": e.attempts,
            "last_error": e.last_error,
            "done": e.done_ms.map(crate::dates::iso_ms),
            "sop_instance_uid": e.sop_uid,
        }))
        .collect::<Vec<_>>());
    v
}

fn finding_problem(e: crate::findings::FindingError) -> Problem {
    use crate::findings::FindingError;
    match e {
        FindingError::NotFlagged(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        FindingError::Incomplete => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => Problem::internal("findings database", e),
    }
}

#[derive(Deserialize)]
pub struct FlagBody {
    category: crate::findings::Category,
}

/// Flags a report's finding as critical, urgent or unexpected (its author).
pub async fn flag(State(state): State<S>, Extension(who): Extension<Principal>, p: Params, JsonBody(body): JsonBody<FlagBody>) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        let r = state
            .reports
            .get(id)
            .map_err(report_problem)?
            .filter(|r| r.readable_by(&who.user, false))
            .ok_or_else(|| Problem::not_found(format!("no report {id}")))?;
        if r.author != who.user {
            return Err(Problem::new(StatusCode::FORBIDDEN, format!("report {id} is {}'s to flag", r.author)));
        }
        Ok(Json(json!(state.findings.flag(id, &r.study_uid, &r.site, body.category, &who.user).map_err(finding_problem)?)))
    })
    .await
}

#[derive(Deserialize)]
pub struct ToldBody {
    who: String,
    how: String,
}

/// Records who was told of a flagged finding, and how (any radiologist).
pub async fn communicated(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<ToldBody>,
) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || Ok(Json(json!(state.findings.told(id, &body.who, &body.how, &who.user).map_err(finding_problem)?)))).await
}

/// Flagged findings past their time with nobody recorded as told, most
/// overdue first, each with its study's site (the referrer's trust).
pub async fn escalations(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || {
        let list = state.findings.escalations(crate::ingest::now_ms()).map_err(finding_problem)?;
        Ok(Json(json!(list.into_iter().map(|(f, overdue)| json!({"finding": f, "overdue_s": overdue / 1000})).collect::<Vec<_>>())))
    })
    .await
}

/// A draft addendum to a final report (a final is never edited).
pub async fn create_addendum(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<ReportText>,
) -> Result<Response, Problem> {
    let id = report_id(&p)?;
    let r = blocking(move || state.reports.addendum(id, &who.user, &body.text).map_err(report_problem)).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

fn report_id(p: &Params) -> Result<u64, Problem> {
    p.get("id").parse().map_err(|_| Problem::bad_request("a report id is a whole number"))
}

pub async fn report(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        // Someone else's draft is answered as no report at all.
        let r = state.reports.get(id).map_err(report_problem)?.filter(|r| r.readable_by(&who.user, who.role == Role::Admin));
        let r = r.ok_or_else(|| Problem::not_found(format!("no report {id}")))?;
        let deliveries = state.outbox.of_report(id).map_err(|e| Problem::internal("outbox", e))?;
        let mut v = with_deliveries(&r, &deliveries);
        v["finding"] = json!(state.findings.get(id).map_err(finding_problem)?);
        Ok(v)
    })
    .await
    .map(Json)
}

pub async fn update_report(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<ReportText>,
) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        own_draft_claimed(&state, id, &who.user)?;
        state.reports.update(id, &who.user, &body.text).map(|r| json!(r)).map_err(report_problem)
    })
    .await
    .map(Json)
}

pub async fn sign_report(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        own_draft_claimed(&state, id, &who.user)?;
        let signed = state.reports.sign(id, &who.user).map_err(report_problem)?;
        // Its way back to the owning trust is durable before the signature is answered.
        let deliveries = state.outbox.enqueue(&signed).map_err(|e| Problem::internal("outbox", e))?;
        // Signed off: the study is free (a lapsed claim, or none, is no matter).
        state.claims.release(&signed.study_uid, Some(&who.user)).map_err(claim_problem)?;
        Ok(with_deliveries(&signed, &deliveries))
    })
    .await
    .map(Json)
}
