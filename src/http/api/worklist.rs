//! The county reporting worklist over HTTP: the open items with their
//! filters' counts (`worklist`), and what admins do to an item: assign it
//! to a radiologist, or take it off.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, claim_problem, limit, text, JsonBody};
use crate::auth::Principal;
use crate::http::params::{Params, QueryPairs};
use crate::http::{Problem, S};
use crate::worklist::{Item, Query, WorklistError};

pub fn worklist_problem(e: WorklistError) -> Problem {
    match e {
        WorklistError::NotListed(_) => Problem::not_found(e.to_string()),
        e => Problem::internal("worklist", e),
    }
}

/// "90m", "4h", "2d", "30s" (or bare seconds) as milliseconds.
pub fn duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    let (n, unit) = v.find(|c: char| !c.is_ascii_digit()).map_or((v, ""), |i| v.split_at(i));
    let n: u64 = n.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn age(q: &QueryPairs, name: &str) -> Result<Option<u64>, Problem> {
    q.get(name).map(|v| duration_ms(v).ok_or_else(|| Problem::bad_request(format!("{name}: a duration such as 90m, 4h or 2d")))).transpose()
}

pub fn item_json(item: &Item, holder: Option<&str>, now: u64) -> Value {
    json!({
        "uid": item.study_uid,
        "site": item.site,
        "accession_number": item.accession,
        "patient": {"issuer": item.patient.issuer, "patient_id": item.patient.patient_id, "name": item.patient_name},
        "description": item.description,
        "modalities": item.modalities,
        "body_parts": item.body_parts,
        "priority": item.priority,
        "ordered": item.ordered,
        "procedure": item.procedure,
        "indication": item.indication,
        "arrived": crate::dates::iso_ms(item.added_ms),
        "exam_end": crate::dates::iso_ms(item.exam_end_ms),
        // Waiting so far: since the study arrived.
        "waiting_s": now.saturating_sub(item.added_ms) / 1000,
        "assigned_to": item.assigned_to,
        "report": item.report,
        "claimed_by": holder,
    })
}

/// Studies awaiting a final report, most urgent then longest waiting
/// first; filters `site`, `modality`, `body_part`, `priority`,
/// `older_than`, `newer_than`, `claimed_by`, `assigned_to` (empty: no one),
/// with each filter's counts under the others.
pub async fn worklist(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let query = Query {
        site: text(&q, "site"),
        modality: text(&q, "modality"),
        body_part: text(&q, "body_part"),
        priority: text(&q, "priority").map(|p| p.to_ascii_uppercase()),
        older_than_ms: age(&q, "older_than")?,
        newer_than_ms: age(&q, "newer_than")?,
        claimed_by: q.get("claimed_by").map(|v| v.trim().to_owned()),
        assigned_to: q.get("assigned_to").map(|v| v.trim().to_owned()),
        offset: q.get("offset").map(|v| v.parse().map_err(|_| Problem::bad_request("offset is a whole number"))).transpose()?.unwrap_or(0),
        limit: limit(&q, 100)?,
    };
    blocking(move || {
        let holders = state.claims.holders().map_err(claim_problem)?;
        let now = crate::ingest::now_ms();
        let page = state.worklist.query(&query, &holders, now);
        Ok(Json(json!({
            "total": page.total,
            "counts": page.counts,
            "items": page.items.iter().map(|(i, h)| item_json(i, h.as_deref(), now)).collect::<Vec<_>>(),
        })))
    })
    .await
}

#[derive(Deserialize)]
pub struct AssignBody {
    /// A radiologist's user name; null to no one.
    to: Option<String>,
}

/// An admin assigns an item to a radiologist (or to no one).
pub async fn assign(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        if let Some(to) = &body.to {
            let user = state.auth.get(to).map_err(|e| Problem::internal("user database", e))?;
            if !user.is_some_and(|u| u.role == crate::auth::Role::Radiologist && !u.disabled) {
                return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{to} is no radiologist")));
            }
        }
        let item = state.worklist.assign(&uid, body.to.as_deref()).map_err(worklist_problem)?;
        tracing::info!(study = %uid, to = ?body.to, admin = %who.user, "worklist item assigned");
        Ok(Json(item_json(&item, None, crate::ingest::now_ms())))
    })
    .await
}

#[derive(Deserialize)]
pub struct DismissBody {
    reason: String,
}

/// An admin takes an item off (reported elsewhere, not for reporting here).
pub async fn dismiss(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(body): JsonBody<DismissBody>,
) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 256 {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "a reason of 1 to 256 characters"));
    }
    blocking(move || {
        let item = state.worklist.dismiss(&uid, &reason).map_err(worklist_problem)?;
        tracing::warn!(study = %uid, %reason, admin = %who.user, "worklist item dismissed");
        Ok(Json(item_json(&item, None, crate::ingest::now_ms())))
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(super::duration_ms("90m"), Some(5_400_000));
        assert_eq!(super::duration_ms("2d"), Some(172_800_000));
        assert_eq!(super::duration_ms("30"), Some(30_000));
        assert_eq!(super::duration_ms("4w"), None);
        assert_eq!(super::duration_ms("h"), None);
        assert_eq!(super::duration_ms("99999999999999999999d"), None);
    }
}
