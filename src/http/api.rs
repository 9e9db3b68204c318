//! radhub's own JSON API: sign-in and tokens, the patient record linked
//! across sites, studies with the site that holds them, the reporting
//! worklist and reports, and admin views.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Extension, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::access::{cookie, SESSION_COOKIE};
use super::params::{Params, QueryPairs};
use super::{Problem, S};
use crate::auth::{AuthError, Principal, Role, SignInError, SESSION_TTL};
use crate::index::matching::DateRange;
use crate::index::model::{sort_series, PatientRecord, StudyRecord};
use crate::index::{PatientFilter, StudyFilter};
use crate::reports::ReportError;

/// A JSON request body: application/json, parsed, or a problem saying why not.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| Problem::new(e.status(), e.body_text()))?;
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

fn report_problem(e: ReportError) -> Problem {
    match e {
        ReportError::NotFound(_) => Problem::not_found(e.to_string()),
        ReportError::Final(_) => Problem::new(StatusCode::CONFLICT, e.to_string()),
        ReportError::NotAuthor(_) => Problem::new(StatusCode::FORBIDDEN, e.to_string()),
        ReportError::Empty | ReportError::TooLong => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => Problem::internal("report database", e),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Problem> + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await?
}

// ---- sessions and tokens

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

pub async fn sign_in(State(state): State<S>, ConnectInfo(peer): ConnectInfo<SocketAddr>, JsonBody(body): JsonBody<SignIn>) -> Result<Response, Problem> {
    let client = peer.ip().to_string();
    // Each check costs an argon2 hash (19 MiB, tens of ms): a few at a time,
    // so that a flood of sign-ins cannot take the memory or the cores.
    let Ok(_slot) = state.sign_in_slots.try_acquire() else {
        let mut r = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "too many sign-ins at once; try again in a second").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        return Ok(r);
    };
    let st = state.clone();
    let result = blocking(move || Ok(st.auth.sign_in(&body.username, &body.password, &client))).await?;
    match result {
        Ok((token, p)) => {
            let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_TTL.as_secs());
            let mut r = Json(json!({"user": p.user, "role": p.role})).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(SignInError::Invalid) => Err(Problem::new(StatusCode::UNAUTHORIZED, SignInError::Invalid.to_string())),
        Err(e @ SignInError::Throttled(wait)) => {
            let mut r = Problem::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            Ok(r)
        }
        Err(SignInError::Auth(e)) => Err(auth_problem(e)),
    }
}

pub async fn whoami(Extension(p): Extension<Principal>) -> Json<Principal> {
    Json(p)
}

pub async fn sign_out(State(state): State<S>, headers: HeaderMap) -> Result<Response, Problem> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) {
        blocking(move || state.auth.sign_out(&token).map_err(auth_problem)).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

#[derive(Deserialize, Default)]
pub struct NewToken {
    #[serde(default)]
    label: String,
}

pub async fn new_token(State(state): State<S>, Extension(p): Extension<Principal>, JsonBody(body): JsonBody<NewToken>) -> Result<Response, Problem> {
    let token = blocking(move || state.auth.new_token(&p.user, &body.label).map_err(auth_problem)).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": token}))).into_response())
}

// ---- patients and studies

fn limit(q: &QueryPairs, default: usize) -> Result<usize, Problem> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|&n| (1..=1000).contains(&n)).ok_or_else(|| Problem::bad_request("limit is 1 to 1000")),
    }
}

fn text(q: &QueryPairs, name: &str) -> Option<String> {
    q.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

#[derive(Serialize)]
struct SiteRecord {
    site: String,
    issuer: String,
    patient_id: String,
    name: String,
    birth_date: String,
    sex: String,
    studies: u32,
}

impl From<&PatientRecord> for SiteRecord {
    fn from(p: &PatientRecord) -> Self {
        SiteRecord {
            site: p.key.site.clone(),
            issuer: p.key.issuer.clone(),
            patient_id: p.key.patient_id.clone(),
            name: p.name.clone(),
            birth_date: p.birth_date.clone(),
            sex: p.sex.clone(),
            studies: p.studies,
        }
    }
}

/// Patients, each site's records joined by NHS number (one entry per NHS
/// number; records without one stand alone).
pub async fn patients(State(state): State<S>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let f = PatientFilter {
        patient_id: text(&q, "patient_id"),
        patient_name: text(&q, "name"),
        nhs_number: text(&q, "nhs_number"),
        site: text(&q, "site"),
        limit: Some(limit(&q, 100)?),
        ..Default::default()
    };
    blocking(move || {
        let found = state.hub.index.find_patients(&f)?;
        let mut linked: BTreeMap<String, Vec<PatientRecord>> = BTreeMap::new();
        let mut alone = Vec::new();
        for p in found {
            match p.nhs_number.clone() {
                Some(nhs) => linked.entry(nhs).or_default().push(p),
                None => alone.push(p),
            }
        }
        let mut out = Vec::new();
        for (nhs, mut seen) in linked {
            // The link holds every site's record, not only those that matched.
            for key in state.hub.index.patients_by_nhs(&nhs)? {
                if !seen.iter().any(|p| p.key == key) {
                    seen.extend(state.hub.index.patient(&key)?);
                }
            }
            out.push(json!({"nhs_number": nhs, "records": seen.iter().map(SiteRecord::from).collect::<Vec<_>>()}));
        }
        out.extend(alone.iter().map(|p| json!({"nhs_number": null, "records": [SiteRecord::from(p)]})));
        Ok(out)
    })
    .await
    .map(Json)
}

/// One patient's record across every site, by NHS number: each site's
/// identity and every study, newest first, with the site that holds it.
pub async fn linked_patient(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let nhs = p.get("nhs").to_owned();
    if !crate::nhs::is_valid(&nhs) {
        return Err(Problem::bad_request(format!("{nhs:?} is not a valid NHS number")));
    }
    blocking(move || {
        let keys = state.hub.index.patients_by_nhs(&nhs)?;
        if keys.is_empty() {
            return Err(Problem::not_found("no patient with that NHS number"));
        }
        let mut records = Vec::new();
        let mut studies = Vec::new();
        for key in &keys {
            if let Some(r) = state.hub.index.patient(key)? {
                records.push(SiteRecord::from(&r));
            }
            for uid in state.hub.index.studies_of_patient(key)? {
                if let Some(s) = state.hub.index.study(&uid)? {
                    studies.push(s);
                }
            }
        }
        let studies: Vec<Value> = newest_first(studies).iter().map(|s| study_json(&state, s)).collect::<Result<_, _>>()?;
        Ok(json!({"nhs_number": nhs, "records": records, "studies": studies}))
    })
    .await
    .map(Json)
}

fn study_json(state: &S, s: &StudyRecord) -> Result<Value, Problem> {
    let reported = state.reports.is_reported(&s.uid).map_err(report_problem)?;
    Ok(json!({
        "uid": s.uid,
        "site": s.site,
        "patient": patient_json(s),
        "date": s.date,
        "time": s.time,
        "accession_number": s.accession_number,
        "description": s.description,
        "modalities": s.modalities,
        "referring_physician": s.referring_physician_name,
        "institution": s.institution_name,
        "series": s.series,
        "instances": s.instances,
        "reported": reported,
    }))
}

/// The study's patient as the site holding the study knows them.
fn patient_json(s: &StudyRecord) -> Value {
    let key = &s.patient;
    json!({"site": key.site, "issuer": key.issuer, "patient_id": key.patient_id, "name": s.patient_name, "birth_date": s.patient_birth_date, "sex": s.patient_sex})
}

fn study_filter(q: &QueryPairs) -> Result<StudyFilter, Problem> {
    Ok(StudyFilter {
        patient_id: text(q, "patient_id"),
        patient_name: text(q, "name"),
        accession: text(q, "accession_number"),
        date: text(q, "date").map(|d| DateRange::parse(&d).map_err(|e| Problem::bad_request(format!("date: {e}")))).transpose()?,
        modality: text(q, "modality"),
        site: text(q, "site"),
        description: text(q, "description"),
        ..Default::default()
    })
}

fn newest_first(mut v: Vec<StudyRecord>) -> Vec<StudyRecord> {
    v.sort_by(|a, b| (&b.date, &b.time, &b.uid).cmp(&(&a.date, &a.time, &a.uid)));
    v
}

pub async fn studies(State(state): State<S>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let f = study_filter(&q)?;
    let n = limit(&q, 100)?;
    blocking(move || newest_first(state.hub.index.find_studies(&f)?).iter().take(n).map(|s| study_json(&state, s)).collect()).await.map(Json)
}

pub async fn study(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        let s = state.hub.index.study(&uid)?.ok_or_else(|| Problem::not_found("no such study"))?;
        let mut v = study_json(&state, &s)?;
        let mut series = state.hub.index.series_of(&uid)?;
        sort_series(&mut series);
        v["series_list"] = json!(series
            .iter()
            .map(|x| json!({"uid": x.uid, "number": x.number, "modality": x.modality, "description": x.description, "body_part": x.body_part_examined, "instances": x.instances}))
            .collect::<Vec<_>>());
        v["reports"] = json!(state.reports.of_study(&uid).map_err(report_problem)?);
        Ok(v)
    })
    .await
    .map(Json)
}

/// Studies awaiting a signed report, newest first.
pub async fn worklist(State(state): State<S>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let f = study_filter(&q)?;
    let n = limit(&q, 100)?;
    blocking(move || {
        let mut out = Vec::new();
        for s in newest_first(state.hub.index.find_studies(&f)?) {
            if out.len() >= n {
                break;
            }
            if !state.reports.is_reported(&s.uid).map_err(report_problem)? {
                out.push(study_json(&state, &s)?);
            }
        }
        Ok(out)
    })
    .await
    .map(Json)
}

// ---- reports

#[derive(Deserialize)]
pub struct ReportText {
    text: String,
}

pub async fn study_reports(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        state.hub.index.study(&uid)?.ok_or_else(|| Problem::not_found("no such study"))?;
        Ok(json!(state.reports.of_study(&uid).map_err(report_problem)?))
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
        let s = state.hub.index.study(&uid)?.ok_or_else(|| Problem::not_found("no such study"))?;
        state.reports.create(&uid, &s.site, &who.user, &body.text).map_err(report_problem)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

fn report_id(p: &Params) -> Result<u64, Problem> {
    p.get("id").parse().map_err(|_| Problem::bad_request("a report id is a whole number"))
}

pub async fn report(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || state.reports.get(id).map_err(report_problem)?.map(|r| json!(r)).ok_or_else(|| Problem::not_found(format!("no report {id}"))))
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
    blocking(move || state.reports.update(id, &who.user, &body.text).map(|r| json!(r)).map_err(report_problem)).await.map(Json)
}

pub async fn sign_report(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let id = report_id(&p)?;
    blocking(move || state.reports.sign(id, &who.user).map(|r| json!(r)).map_err(report_problem)).await.map(Json)
}

// ---- admin

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
        Ok(json!({"total": total, "sites": by_site, "schema_version": state.hub.index.schema_version()}))
    })
    .await
    .map(Json)
}
