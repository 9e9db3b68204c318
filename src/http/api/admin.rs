//! What admins manage: users and their tokens, the hub's counts,
//! NHS-number link conflicts and the link log, the identity log (and an
//! undo of a merge or change of identifier), rejected instances (IOCM:
//! reject, restore, delete), arrivals held for naming another patient than
//! their study's, and studies in quarantine
//! (data from senders with no configured site, or naming another site's
//! issuer), which an admin files under the site that issued their IDs.

use std::collections::BTreeMap;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::studies::study_json;
use super::{auth_problem, blocking, limit, JsonBody};
use crate::auth::{AuthError, Principal, Role};
use crate::http::params::{Params, QueryPairs};
use crate::http::{Problem, S};
use crate::index::link::Decision;
use crate::index::model::PatientKey;
use crate::index::{IndexError, StudyFilter};
use crate::ingest::IngestError;

pub async fn users(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || state.auth.list().map(|u| json!(u)).map_err(auth_problem)).await.map(Json)
}

#[derive(Deserialize)]
pub struct NewUser {
    name: String,
    role: Role,
    password: String,
}

pub async fn add_user(State(state): State<S>, Extension(who): Extension<Principal>, JsonBody(body): JsonBody<NewUser>) -> Result<Response, Problem> {
    let v = blocking(move || {
        state.auth.add_user(&body.name, body.role, &body.password).map_err(auth_problem)?;
        tracing::info!(by = %who.user, user = %body.name, role = body.role.as_str(), "user added");
        state.auth.get(&body.name).map_err(auth_problem)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
}

pub async fn change_user(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<UserChange>,
) -> Result<Json<Value>, Problem> {
    let name = p.get("name").to_owned();
    blocking(move || {
        let auth = &state.auth;
        auth.get(&name).map_err(auth_problem)?.ok_or_else(|| Problem::not_found(format!("no user named {name:?}")))?;
        if name == who.user && (body.disabled == Some(true) || body.role.is_some_and(|r| r != Role::Admin)) {
            return Err(Problem::new(StatusCode::CONFLICT, "an admin cannot disable or demote themselves"));
        }
        // Refuse a weak password before changing anything else.
        if body.password.as_ref().is_some_and(|pw| pw.chars().count() < crate::auth::MIN_PASSWORD) {
            return Err(auth_problem(AuthError::WeakPassword));
        }
        if let Some(r) = body.role {
            auth.set_role(&name, r).map_err(auth_problem)?;
        }
        if let Some(d) = body.disabled {
            auth.set_disabled(&name, d).map_err(auth_problem)?;
        }
        if let Some(pw) = &body.password {
            auth.set_password(&name, pw).map_err(auth_problem)?;
        }
        tracing::info!(by = %who.user, user = %name, "user changed");
        Ok(json!(auth.get(&name).map_err(auth_problem)?))
    })
    .await
    .map(Json)
}

pub async fn revoke_tokens(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let name = p.get("name").to_owned();
    blocking(move || {
        state.auth.get(&name).map_err(auth_problem)?.ok_or_else(|| Problem::not_found(format!("no user named {name:?}")))?;
        Ok(json!({"revoked": state.auth.revoke_tokens(&name).map_err(auth_problem)?}))
    })
    .await
    .map(Json)
}

pub async fn stats(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || {
        let total = state.hub.index.counts()?;
        let by_site: BTreeMap<String, _> = state.hub.index.counts_by_site()?.into_iter().collect();
        let conflicts = state.hub.index.link_conflicts()?.len();
        Ok(json!({"total": total, "sites": by_site, "link_conflicts": conflicts, "schema_version": state.hub.index.schema_version()}))
    })
    .await
    .map(Json)
}

/// Records agreeing on name, birth date and sex across sites, not linked.
pub async fn link_proposals(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || Ok(json!(crate::index::link::proposals(state.hub.index.as_ref())?))).await.map(Json)
}

pub async fn link_conflicts(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || Ok(json!(state.hub.index.link_conflicts()?))).await.map(Json)
}

/// `after` (a sequence number, exclusive) and `limit` of a log.
fn page(q: &QueryPairs) -> Result<(u64, usize), Problem> {
    let after = q.get("after").map(|v| v.parse::<u64>().map_err(|_| Problem::bad_request("after is a sequence number"))).transpose()?.unwrap_or(0);
    Ok((after, limit(q, 1000)?))
}

/// The link log from `after` (a sequence number), oldest first.
pub async fn link_log(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let (after, n) = page(&q)?;
    blocking(move || Ok(json!(state.hub.index.link_log(after, n)?))).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDecision {
    issuer: String,
    patient_id: String,
    decision: Decision,
    /// For `link`: the number, when the record has no conflict naming one.
    nhs_number: Option<String>,
    /// Why, for the link log (what the admin checked).
    why: String,
}

pub async fn decide_link(State(state): State<S>, Extension(who): Extension<Principal>, JsonBody(body): JsonBody<LinkDecision>) -> Result<Json<Value>, Problem> {
    blocking(move || {
        if body.why.trim().is_empty() {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "say why (\"why\"): the link log keeps it"));
        }
        let key = PatientKey { issuer: body.issuer, patient_id: body.patient_id };
        match state.hub.index.decide_link(&key, body.decision, body.nhs_number.as_deref(), &who.user, &body.why) {
            Ok(p) => Ok(json!(p)),
            Err(e @ IndexError::NoSuchPatient(_)) => Err(Problem::not_found(e.to_string())),
            Err(e @ IndexError::Link(_)) => Err(Problem::new(StatusCode::CONFLICT, e.to_string())),
            Err(e) => Err(e.into()),
        }
    })
    .await
    .map(Json)
}

/// The identity log from `after` (a sequence number), oldest first: every
/// merge, change of identifier and demographics update, with the records
/// as they were.
pub async fn identity_log(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let (after, n) = page(&q)?;
    blocking(move || Ok(json!(state.hub.index.identity_log(after, n)?))).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Why {
    why: String,
}

/// An admin's undo of one identity change: the studies it moved go back.
pub async fn undo_identity(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<Why>,
) -> Result<Json<Value>, Problem> {
    let seq = p.get("seq").parse::<u64>().map_err(|_| Problem::bad_request("an identity change is named by its sequence number"))?;
    blocking(move || {
        if body.why.trim().is_empty() {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "say why (\"why\"): the identity log keeps it"));
        }
        match state.hub.index.undo_identity(seq, &who.user, &body.why) {
            Ok(e) => {
                for study in &e.studies {
                    worklist_follows(&state, study)?;
                }
                Ok(json!(e))
            }
            Err(e @ IndexError::NoSuchPatient(_)) => Err(Problem::not_found(e.to_string())),
            Err(e @ IndexError::Identity(_)) => Err(Problem::new(StatusCode::CONFLICT, e.to_string())),
            Err(e) => Err(e.into()),
        }
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    study: String,
    series: Option<String>,
    /// SOP Instance UIDs; all of the study (or series) when left out.
    instances: Option<Vec<String>>,
    /// For a rejection: the reason's DCM code (CID 7011); 113001 (quality) by default.
    reason: Option<String>,
    /// Why, for the log.
    why: String,
}

impl Selection {
    fn takes(&self, series: &str, sop: &str) -> bool {
        self.series.as_deref().is_none_or(|s| s == series) && self.instances.as_ref().is_none_or(|l| l.iter().any(|i| i == sop))
    }
}

fn why_given(why: &str) -> Result<(), Problem> {
    if why.trim().is_empty() {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "say why (\"why\"): the log keeps it"));
    }
    Ok(())
}

fn ingest_problem(e: IngestError) -> Problem {
    match e {
        e @ (IngestError::Mismatch(_) | IngestError::Withdrawn(_) | IngestError::Identity(_)) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        e => Problem::internal("rejected instances", e),
    }
}

/// The worklist follows a study whose instances or identity changed: it
/// leaves when nothing of it needs reporting any more.
fn worklist_follows(state: &S, study: &str) -> Result<(), Problem> {
    state.worklist.refresh(study).map_err(super::worklist::worklist_problem)
}

/// Rejected instances (IOCM), of one `study` or all.
pub async fn rejections(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let study = q.get("study").map(str::to_owned);
    blocking(move || Ok(json!(state.hub.index.rejections(study.as_deref())?))).await.map(Json)
}

/// An admin rejects instances, a series or a study: gone from every query
/// and retrieve, kept apart until restored or deleted.
pub async fn reject(State(state): State<S>, Extension(who): Extension<Principal>, JsonBody(body): JsonBody<Selection>) -> Result<Json<Value>, Problem> {
    why_given(&body.why)?;
    blocking(move || {
        let held: Vec<_> =
            state.hub.index.instances_of(&body.study, body.series.as_deref())?.into_iter().filter(|r| body.takes(&r.series_uid, &r.sop_uid)).collect();
        if held.is_empty() {
            return Err(Problem::not_found("no such instances held"));
        }
        let code = body.reason.as_deref().unwrap_or("113001");
        let done = state.hub.reject(&held, code, &who.user, &body.why).map_err(ingest_problem)?;
        worklist_follows(&state, &body.study)?;
        Ok(json!({"rejected": done.len(), "instances": done}))
    })
    .await
    .map(Json)
}

/// Puts rejected instances back (their files read again).
pub async fn restore(State(state): State<S>, Extension(who): Extension<Principal>, JsonBody(body): JsonBody<Selection>) -> Result<Json<Value>, Problem> {
    why_given(&body.why)?;
    blocking(move || {
        let listed: Vec<_> = state.hub.index.rejections(Some(&body.study))?.into_iter().filter(|r| body.takes(&r.series_uid, &r.sop_uid)).collect();
        if listed.is_empty() {
            return Err(Problem::not_found("no such rejected instances"));
        }
        let mut restored = Vec::new();
        for r in listed.iter().filter(|r| !r.deleted) {
            if state.hub.restore(&r.sop_uid, &who.user).map_err(ingest_problem)?.is_some() {
                restored.push(r.sop_uid.clone());
            }
        }
        worklist_follows(&state, &body.study)?;
        Ok(json!({"restored": restored.len(), "instances": restored, "deleted_before": listed.iter().filter(|r| r.deleted).count()}))
    })
    .await
    .map(Json)
}

/// Deletes instances for good: rejected first (out of the index,
/// durably), then their files. The rejection stays, so that nobody sends
/// them back in.
pub async fn delete(State(state): State<S>, Extension(who): Extension<Principal>, JsonBody(body): JsonBody<Selection>) -> Result<Json<Value>, Problem> {
    why_given(&body.why)?;
    blocking(move || {
        let held: Vec<_> =
            state.hub.index.instances_of(&body.study, body.series.as_deref())?.into_iter().filter(|r| body.takes(&r.series_uid, &r.sop_uid)).collect();
        state.hub.reject(&held, body.reason.as_deref().unwrap_or("113039"), &who.user, &body.why).map_err(ingest_problem)?;
        let listed: Vec<_> = state.hub.index.rejections(Some(&body.study))?.into_iter().filter(|r| body.takes(&r.series_uid, &r.sop_uid)).collect();
        if listed.is_empty() {
            return Err(Problem::not_found("no such instances"));
        }
        let mut deleted = Vec::new();
        for r in &listed {
            if state.hub.delete_rejected(&r.sop_uid, &who.user).map_err(ingest_problem)? {
                deleted.push(r.sop_uid.clone());
            }
        }
        worklist_follows(&state, &body.study)?;
        Ok(json!({"deleted": deleted.len(), "instances": deleted}))
    })
    .await
    .map(Json)
}

/// Arrivals held for an admin: each names another patient than its study's.
pub async fn held(State(state): State<S>) -> Result<Json<Value>, Problem> {
    blocking(move || {
        let all = state.hub.index.held_all()?;
        Ok(json!(all
            .iter()
            .map(|c| json!({
                "sop_uid": c.meta.sop_uid, "study_uid": c.meta.study_uid, "series_uid": c.meta.series_uid,
                "site": c.meta.site, "sender": c.sender, "at_ms": c.at_ms,
                "study_patient": c.study_patient, "sent_patient": c.sent(),
                "sent_name": c.meta.patient_name, "sent_birth_date": c.meta.patient_birth_date,
            }))
            .collect::<Vec<_>>()))
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldChoice {
    decision: crate::index::held::HeldDecision,
    why: String,
}

/// An admin files a held arrival under its study's patient, or discards it.
pub async fn decide_held(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<HeldChoice>,
) -> Result<Json<Value>, Problem> {
    why_given(&body.why)?;
    let sop = p.get("sop").to_owned();
    blocking(move || match state.hub.decide_held(&sop, body.decision, &who.user, &body.why) {
        Ok(Some(c)) => {
            if body.decision == crate::index::held::HeldDecision::File {
                if let Some(s) = state.hub.index.study(&c.meta.study_uid)? {
                    state.worklist.reconsider(&s).map_err(super::worklist::worklist_problem)?;
                }
            }
            Ok(json!({"sop_uid": sop, "decision": body.decision}))
        }
        Ok(None) => Err(Problem::not_found("no such held instance")),
        Err(e) => Err(ingest_problem(e)),
    })
    .await
    .map(Json)
}

/// Studies in quarantine, newest first.
pub async fn quarantine(State(state): State<S>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let n = limit(&q, 100)?;
    blocking(move || {
        let f = StudyFilter { site: Some(crate::sites::QUARANTINE.to_owned()), ..Default::default() };
        let found = state.hub.index.find_studies(&f).take(n).collect::<Result<Vec<_>, _>>()?;
        found.iter().map(|s| study_json(&state, s)).collect()
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTo {
    site: String,
}

/// Files a quarantined study under the site that issued its Patient IDs.
pub async fn file_study(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<FileTo>,
) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    let site = crate::sites::known(&body.site).map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    blocking(move || {
        let s = state.hub.index.study(&uid)?.ok_or_else(|| Problem::not_found("no such study"))?;
        if s.site != crate::sites::QUARANTINE {
            return Err(Problem::new(StatusCode::CONFLICT, format!("study {uid} is held for {}, not in quarantine", s.site)));
        }
        let moved = match state.hub.refile_study(&uid, site, &who.user) {
            Ok(n) => n,
            Err(e @ (IngestError::Identity(_) | IngestError::Mismatch(_))) => return Err(Problem::new(StatusCode::CONFLICT, e.to_string())),
            Err(e) => return Err(Problem::internal("filing a study", e)),
        };
        let s = state.hub.index.study(&uid)?.ok_or_else(|| Problem::not_found("no such study"))?;
        // Out of quarantine it waits for reporting like any arrival at its site.
        state.worklist.reconsider(&s).map_err(super::worklist::worklist_problem)?;
        let mut v = study_json(&state, &s)?;
        v["instances_filed"] = json!(moved);
        Ok(v)
    })
    .await
    .map(Json)
}

/// The audit trail, newest first: `user`, `patient` ("issuer/Patient ID"
/// or "NHS/number"), `study`, `since` and `until` (ms since the epoch),
/// `limit` (1 to 1000, 100 by default).
pub async fn audit(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let n = limit(&q, 100)?;
    let ms = |k: &str| q.get(k).map(|v| v.parse::<u64>().map_err(|_| Problem::bad_request(format!("{k} is milliseconds since 1970")))).transpose();
    let f = crate::audit::Filter {
        user: q.get("user").map(str::to_owned),
        patient: q.get("patient").map(str::to_owned),
        study: q.get("study").map(str::to_owned),
        since_ms: ms("since")?,
        until_ms: ms("until")?,
    };
    state.audit_log.settle().await;
    blocking(move || state.audit.query(&f, n).map(|e| Json(json!(e))).map_err(|e| Problem::internal("audit trail", e))).await
}

/// The whole hash chain checked: `{ok, records}` or `{ok: false, error}`.
pub async fn audit_verify(State(state): State<S>) -> Result<Json<Value>, Problem> {
    state.audit_log.settle().await;
    blocking(move || {
        Ok(Json(match state.audit.verify() {
            Ok(n) => json!({"ok": true, "records": n}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        }))
    })
    .await
}
