//! STOW-RS (PS3.18 10.5): Part 10 instances in a multipart/related body,
//! each stored through `Hub::ingest` (the C-STORE path: answered only once
//! file and index entry are durable), the answer listing what was stored
//! and what failed and why.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::multipart;
use super::params::{uid_path, Params};
use super::{Problem, S};
use crate::auth::Principal;
use crate::ingest::{Arrival, IngestError, Outcome as IngestOutcome};

pub async fn store(State(state): State<S>, Extension(who): Extension<Principal>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    stow(state, who, headers, body, None).await
}

pub async fn store_in_study(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    stow(state, who, headers, body, Some(p.get("study").to_owned())).await
}

/// PS3.4 C-STORE failure codes, as STOW-RS FailureReason (PS3.18 10.5.3).
const CANNOT_UNDERSTAND: u16 = 0xC000;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DOES_NOT_MATCH: u16 = 0xA900;
/// Warning Reason: stored other than as sent (here: not stored, the held copy kept).
const COERCION: u16 = 0xB000;

#[derive(Default)]
struct Outcome {
    class: String,
    instance: String,
    study: String,
    series: String,
    failure: Option<(u16, String)>,
    warning: Option<(u16, String)>,
    /// Failed for want of storage space.
    full: bool,
}

async fn stow(state: S, who: Principal, headers: HeaderMap, body: Body, study: Option<String>) -> Result<Response, Problem> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = multipart::media(ct).filter(|m| m.mime == "multipart/related").ok_or_else(|| {
        Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "STOW-RS takes multipart/related; type=\"application/dicom\" with Part 10 instances")
    })?;
    if media.param("type").is_some_and(|t| !t.eq_ignore_ascii_case("application/dicom")) {
        return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "radhub stores application/dicom parts (Part 10 instances) only"));
    }
    let boundary = media.param("boundary").ok_or_else(|| Problem::bad_request("multipart/related without a boundary"))?.to_owned();
    let limit = state.limits.max_body;
    // Wait a while for a turn, not for ever: slow uploads hold their slots.
    let _slot = match tokio::time::timeout(std::time::Duration::from_secs(60), state.stow_slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(e)) => return Err(Problem::internal("STOW-RS admission", e)),
        Err(_) => return Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy storing other uploads; try again")),
    };
    let read = tokio::time::timeout(std::time::Duration::from_secs(15 * 60), axum::body::to_bytes(body, limit));
    let bytes = read.await.map_err(|_| Problem::new(StatusCode::REQUEST_TIMEOUT, "the upload took over 15 minutes"))?.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit")) || e.to_string().contains("length limit") {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {limit} bytes"))
        } else {
            Problem::bad_request(format!("reading the body: {e}"))
        }
    })?;
    let base = state.dicomweb_base();
    let st = state.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let parts = multipart::parse(&bytes, &boundary).map_err(|e| Problem::bad_request(format!("malformed multipart body: {e}")))?;
        if let Some(p) = parts.iter().find(|p| p.content_type.as_ref().is_some_and(|m| m.mime != "application/dicom")) {
            let m = p.content_type.as_ref().map_or("", |m| m.mime.as_str());
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("a part of type {m}: radhub stores application/dicom parts only")));
        }
        // Concurrent ingests share their fsyncs (group commit). One part that
        // trips a bug fails that part, not the process.
        let one = |p: &multipart::Part<'_>| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store_one(&st, &who.user, p.body, study.as_deref()))).unwrap_or_else(|_| {
                tracing::error!("STOW-RS part failed with an internal error");
                Outcome { failure: Some((OUT_OF_RESOURCES, "internal error".into())), ..Outcome::default() }
            })
        };
        Ok(parts.par_iter().map(one).collect::<Vec<Outcome>>())
    })
    .await??;
    Ok(answer(&outcomes, &base))
}

fn store_one(state: &S, user: &str, bytes: &[u8], study: Option<&str>) -> Outcome {
    let mut out = Outcome::default();
    let from = Arrival { site: state.stow_site.as_deref(), sender: user };
    // The check sees the description ingest makes: the answer names the
    // instance even when it is refused.
    let result = state.hub.ingest_checked(bytes, from, |meta| {
        out.class = meta.sop_class_uid.clone();
        out.instance = meta.sop_uid.clone();
        out.study = meta.study_uid.clone();
        out.series = meta.series_uid.clone();
        match study {
            Some(s) if s != meta.study_uid => Err(format!("instance of study {} posted to study {s}", meta.study_uid)),
            _ => Ok(()),
        }
    });
    match result {
        Ok((outcome, meta)) => {
            if let Some(r) = &state.renderer {
                r.touch(&meta.study_uid, &meta.series_uid);
            }
            if let Some(f) = &state.federation {
                f.arrived(&meta);
            }
            state.worklist.stored(&meta, state.federation.as_deref());
            if outcome == IngestOutcome::KeptExisting {
                out.warning = Some((COERCION, "held with other content; this copy was not stored".into()));
            }
        }
        Err(IngestError::Rejected(e)) => out.failure = Some((CANNOT_UNDERSTAND, e.to_string())),
        Err(IngestError::Mismatch(e)) => out.failure = Some((DOES_NOT_MATCH, e)),
        Err(IngestError::Identity(e) | IngestError::Withdrawn(e)) => out.failure = Some((CANNOT_UNDERSTAND, e)),
        Err(e) if e.is_out_of_space() => {
            tracing::error!(sop = %out.instance, error = %e, "STOW-RS refused: storage is full");
            out.failure = Some((OUT_OF_RESOURCES, "out of storage space: send again later".into()));
            out.full = true;
        }
        Err(e) => {
            tracing::error!(sop = %out.instance, error = %e, "STOW-RS store failed");
            out.failure = Some((OUT_OF_RESOURCES, "storage failure".into()));
        }
    }
    out
}

fn ui(v: &str) -> Value {
    json!({"vr": "UI", "Value": [v]})
}

/// The Store Instances Response Module (PS3.18 10.5.3): 200 if all were
/// stored, 202 if some, 409 if none; failure reasons also in Warning.
fn answer(outcomes: &[Outcome], base: &str) -> Response {
    let (mut stored, mut failed) = (Vec::new(), Vec::new());
    let mut reasons = Vec::new();
    for o in outcomes {
        let mut item = Map::new();
        if !o.class.is_empty() {
            item.insert("00081150".into(), ui(&o.class));
            item.insert("00081155".into(), ui(&o.instance));
        }
        match &o.failure {
            None => {
                let url = format!("{base}/studies/{}/series/{}/instances/{}", uid_path(&o.study), uid_path(&o.series), uid_path(&o.instance));
                item.insert("00081190".into(), json!({"vr": "UR", "Value": [url]}));
                if let Some((code, why)) = &o.warning {
                    item.insert("00081196".into(), json!({"vr": "US", "Value": [code]}));
                    reasons.push(format!("{}: {why}", o.instance));
                }
                stored.push(Value::Object(item));
            }
            Some((code, why)) => {
                item.insert("00081197".into(), json!({"vr": "US", "Value": [code]}));
                failed.push(Value::Object(item));
                reasons.push(if o.instance.is_empty() { why.clone() } else { format!("{}: {why}", o.instance) });
            }
        }
    }
    let mut body = Map::new();
    let studies: std::collections::BTreeSet<&str> = outcomes.iter().filter(|o| o.failure.is_none()).map(|o| o.study.as_str()).collect();
    if studies.len() == 1 {
        body.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{base}/studies/{}", uid_path(studies.iter().next().copied().unwrap_or_default()))]}),
        );
    }
    if !stored.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": stored}));
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    // PS3.18 10.5.3: 202 when some were stored and others failed or were
    // stored with a warning.
    let warned = outcomes.iter().any(|o| o.warning.is_some());
    let status = match (stored.is_empty(), failed.is_empty()) {
        (_, true) if !warned => StatusCode::OK,
        // Nothing stored for want of space: the client may send it all again later.
        (true, false) if outcomes.iter().any(|o| o.full) => StatusCode::INSUFFICIENT_STORAGE,
        (true, false) => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    };
    let mut resp = (status, [(header::CONTENT_TYPE, "application/dicom+json")], serde_json::to_vec(&Value::Object(body)).unwrap_or_default()).into_response();
    if !reasons.is_empty() {
        let text: String = reasons.join("; ").chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(1000).collect::<String>().replace('"', "'");
        if let Ok(v) = HeaderValue::from_str(&format!("299 radhub \"{text}\"")) {
            resp.headers_mut().insert(header::WARNING, v);
        }
    }
    resp
}
