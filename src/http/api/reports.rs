//! Reports of a study: a draft is readable by its author (and admins)
//! only; a signed report by every reader.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::worklist::worklist_problem;
use super::{blocking, claim_problem, report_problem, JsonBody};
use crate::auth::{Principal, Role};
use crate::http::params::{Params, QueryPairs};
use crate::http::{Problem, S};

use crate::reports::{Content, Status};

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

/// The template a study is reported in: by its modalities and body parts,
/// with the clinical details from its order, if any.
fn template_for(state: &S, s: &crate::index::model::StudyRecord) -> Result<crate::templates::Template, Problem> {
    let body_parts = crate::worklist::IndexLookup::body_parts(&*state.hub, &s.uid)?;
    let mut t = crate::templates::choose(s.modalities.iter().map(String::as_str), body_parts.iter().map(String::as_str));
    let indication = state.worklist.get(&s.uid).map(|i| i.indication).filter(|i| !i.is_empty());
    if let (Some(ind), Some(clinical)) = (indication, t.sections.iter_mut().find(|x| x.name == crate::templates::CLINICAL)) {
        clinical.text = ind;
    }
    Ok(t)
}

/// The built-in templates.
pub async fn templates() -> Json<Value> {
    Json(json!(crate::templates::all()))
}

/// The template for one study, ready to start a draft from.
pub async fn study_template(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        let s = state.hub.index.study(&uid)?.filter(|s| super::studies::visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        Ok(Json(json!(template_for(&state, &s)?)))
    })
    .await
}

/// A new draft: its text, its sections, or (given only `template`, or
/// nothing) the study's template's sections to fill in.
pub async fn create_report(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    JsonBody(mut body): JsonBody<Content>,
) -> Result<Response, Problem> {
    let uid = p.get("study").to_owned();
    let r = blocking(move || {
        let s = state.hub.index.study(&uid)?.filter(|s| super::studies::visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        if body.text.is_none() && body.sections.is_none() {
            let t = match &body.template {
                Some(id) => crate::templates::get(id).ok_or_else(|| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("no template {id:?}")))?,
                None => template_for(&state, &s)?,
            };
            body.template = Some(t.id.to_owned());
            body.sections = Some(t.sections);
        }
        // Reporting a study takes its claim (or renews the author's own).
        state.claims.claim(&uid, &who.user).map_err(claim_problem)?;
        let r = state.reports.create(&uid, &s.site, &who.user, &body).map_err(report_problem)?;
        state.worklist.reported(&uid, Status::Draft).map_err(worklist_problem)?;
        Ok(r)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// Issues the author's draft as preliminary (readable by every reader).
pub async fn preliminary(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        own_draft_claimed(&state, id, &who.user)?;
        let r = state.reports.preliminary(id, &who.user).map_err(report_problem)?;
        state.worklist.reported(&r.study_uid, Status::Preliminary).map_err(worklist_problem)?;
        Ok(Json(json!(r)))
    })
    .await
}

/// Every saved version of a report the caller may read.
pub async fn versions(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        state
            .reports
            .get(id)
            .map_err(report_problem)?
            .filter(|r| r.readable_by(&who.user, who.role == Role::Admin))
            .ok_or_else(|| Problem::not_found(format!("no report {id}")))?;
        Ok(Json(json!(state.reports.versions(id).map_err(report_problem)?)))
    })
    .await
}

/// An author's edit or signature of their own draft takes (or renews)
/// their claim on its study; refused while someone else holds it. Other
/// cases are left to `Reports` to refuse.
fn own_draft_claimed(state: &S, id: u64, user: &str) -> Result<(), Problem> {
    if let Some(r) = state.reports.get(id).map_err(report_problem)?.filter(|r| r.author == user && r.status != Status::Final) {
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
    JsonBody(body): JsonBody<Content>,
) -> Result<Response, Problem> {
    let id = report_id(&p)?;
    let r = blocking(move || state.reports.addendum(id, &who.user, &body).map_err(report_problem)).await?;
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
    JsonBody(body): JsonBody<Content>,
) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || {
        own_draft_claimed(&state, id, &who.user)?;
        state.reports.update(id, &who.user, &body).map(|r| json!(r)).map_err(report_problem)
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
        if signed.addendum_of.is_none() {
            state.worklist.reported(&signed.study_uid, Status::Final).map_err(worklist_problem)?;
        }
        Ok(with_deliveries(&signed, &deliveries))
    })
    .await
    .map(Json)
}

/// Minutes from exam end to final: count, median, 90th centile, mean.
fn summary(mut minutes: Vec<f64>) -> Value {
    minutes.sort_by(f64::total_cmp);
    let n = minutes.len();
    let at = |q: f64| minutes.get(((n as f64 - 1.0) * q).round() as usize).copied();
    json!({
        "reports": n,
        "median_min": at(0.5),
        "p90_min": at(0.9),
        "mean_min": (n > 0).then(|| minutes.iter().sum::<f64>() / n as f64),
    })
}

/// Turnaround from exam end (the study's last arrival) to its final
/// report, overall and per site, modality and radiologist; `since` (a
/// date, default 30 days ago) bounds the signature's date, and `site`,
/// `modality`, `radiologist` narrow it.
pub async fn turnaround(State(state): State<S>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let since = match super::text(&q, "since") {
        Some(d) => crate::dates::days_of(&d.replace('-', ""))
            .and_then(|days| u64::try_from(days).ok())
            .map(|days| days * 86_400_000)
            .ok_or_else(|| Problem::bad_request("since: a date, YYYY-MM-DD or YYYYMMDD"))?,
        None => crate::ingest::now_ms().saturating_sub(30 * 86_400_000),
    };
    let (want_site, want_modality, want_rad) = (super::text(&q, "site"), super::text(&q, "modality"), super::text(&q, "radiologist"));
    blocking(move || {
        use std::collections::BTreeMap;
        let mut all = Vec::new();
        let mut groups: [BTreeMap<String, Vec<f64>>; 3] = Default::default();
        for r in state.reports.finals().map_err(report_problem)? {
            let signed = r.signed_ms.unwrap_or(r.updated_ms);
            if r.addendum_of.is_some()
                || signed < since
                || want_rad.as_ref().is_some_and(|w| *w != r.author)
                || want_site.as_ref().is_some_and(|w| *w != r.site)
            {
                continue;
            }
            let Some(s) = state.hub.index.study(&r.study_uid)? else { continue };
            if want_modality.as_ref().is_some_and(|w| !s.modalities.iter().any(|m| m.eq_ignore_ascii_case(w))) {
                continue;
            }
            let minutes = signed.saturating_sub(s.last_received_ms) as f64 / 60_000.0;
            all.push(minutes);
            groups[0].entry(r.site.clone()).or_default().push(minutes);
            for m in &s.modalities {
                groups[1].entry(m.clone()).or_default().push(minutes);
            }
            groups[2].entry(r.author.clone()).or_default().push(minutes);
        }
        let [sites, modalities, radiologists] = groups.map(|g| g.into_iter().map(|(k, v)| (k, summary(v))).collect::<serde_json::Map<_, _>>());
        Ok(Json(json!({
            "since": crate::dates::iso_ms(since),
            "overall": summary(all),
            "by_site": sites,
            "by_modality": modalities,
            "by_radiologist": radiologists,
        })))
    })
    .await
}

/// The reports of the studies an accession number names at the site that
/// issued it (`issuer`: the site's code or its issuer; an accession number
/// is unique only there), for a RIS or EPR that knows the order, not the study.
pub async fn by_accession(State(state): State<S>, Extension(who): Extension<Principal>, q: QueryPairs) -> Result<Json<Value>, Problem> {
    let accession = super::text(&q, "accession").ok_or_else(|| Problem::bad_request("accession is required"))?;
    let issuer = super::text(&q, "issuer").ok_or_else(|| Problem::bad_request("issuer is required: an accession number is unique only at its site"))?;
    let sites: Vec<String> = crate::sites::all().iter().filter(|s| s.code == issuer || s.issuer == issuer).map(|s| s.code.clone()).collect();
    if sites.is_empty() {
        return Err(Problem::not_found(format!("no site issues accession numbers as {issuer:?}")));
    }
    blocking(move || {
        let f = crate::index::StudyFilter { accession: Some(accession.clone()), ..Default::default() };
        let mut out = Vec::new();
        for s in state.hub.index.find_studies(&f) {
            let s = s?;
            if s.accession_number != accession || !sites.contains(&s.site) || !super::studies::visible(&who, &s) {
                continue;
            }
            let reports: Vec<_> =
                state.reports.of_study(&s.uid).map_err(report_problem)?.into_iter().filter(|r| r.readable_by(&who.user, who.role == Role::Admin)).collect();
            out.push(json!({"study": s.uid, "site": s.site, "accession_number": s.accession_number, "reports": reports}));
        }
        Ok(Json(json!(out)))
    })
    .await
}
