//! STOW-RS (PS3.18 10.5): Part 10 instances in a multipart/related body,
//! each stored through `Hub::ingest_received` (the C-STORE path: answered
//! only once file and index entry are durable), the answer listing what
//! was stored and what failed and why.
//!
//! The body is split as it arrives (`multipart::Splitter`) and each part
//! written to a staging file of its own as its bytes come, so a request
//! holds a few buffers of memory whatever it carries. Nothing is committed
//! until the body has ended whole: a cut-off or malformed upload stores
//! nothing, and its staged parts are removed.

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
use crate::ingest::{Arrival, IngestError, Outcome as IngestOutcome, Receiving};

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
    let splitter = multipart::Splitter::new(&boundary).map_err(|e| Problem::bad_request(format!("malformed multipart body: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(PIECES_IN_FLIGHT);
    let base = state.dicomweb_base();
    let st = state.clone();
    let writer = tokio::task::spawn_blocking(move || stage_parts(&st, rx));
    let read = tokio::time::timeout(std::time::Duration::from_secs(15 * 60), read_body(body, splitter, limit, &tx));
    let read = read.await.unwrap_or_else(|_| Err(Problem::new(StatusCode::REQUEST_TIMEOUT, "the upload took over 15 minutes")));
    // The body read whole tells the writer so; otherwise it drops what it staged.
    if read.is_ok() {
        let _ = tx.send(Piece::Whole).await;
    }
    drop(tx);
    let staged = writer.await.map_err(|e| Problem::internal("STOW-RS staging", e))?;
    read?;
    let parts = staged?.ok_or_else(|| Problem::internal("STOW-RS staging", "the body's parts were not all staged"))?;
    // Committed together once the body is whole: concurrent ingests share
    // their fsyncs (group commit). One part that trips a bug fails that
    // part, not the process.
    let st = state.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        parts
            .into_par_iter()
            .map(|r| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store_one(&st, &who.user, r, study.as_deref()))).unwrap_or_else(|_| {
                    tracing::error!("STOW-RS part failed with an internal error");
                    Outcome { failure: Some((OUT_OF_RESOURCES, "internal error".into())), ..Outcome::default() }
                })
            })
            .collect::<Vec<Outcome>>()
    })
    .await
    .map_err(|e| Problem::internal("STOW-RS", e))?;
    Ok(answer(&outcomes, &base))
}

/// What the body reader hands the part writer.
enum Piece {
    Begins(Option<multipart::Media>),
    Data(Vec<u8>),
    Ends,
    /// The body ended with its closing delimiter.
    Whole,
}

/// Pieces handed on and not yet written: each at most one chunk of the body.
const PIECES_IN_FLIGHT: usize = 8;

/// Reads the body, split into parts, on to `tx`; refuses one over `limit` bytes.
async fn read_body(body: Body, mut splitter: multipart::Splitter, limit: usize, tx: &tokio::sync::mpsc::Sender<Piece>) -> Result<(), Problem> {
    use futures_util::StreamExt;
    let malformed = |e: String| Problem::bad_request(format!("malformed multipart body: {e}"));
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let mut pieces = Vec::new();
    loop {
        let chunk = match stream.next().await {
            Some(c) => Some(c.map_err(|e| Problem::bad_request(format!("reading the body: {e}")))?),
            None => None,
        };
        let mut on = |p: multipart::Piece<'_>| {
            pieces.push(match p {
                multipart::Piece::Begins(m) => Piece::Begins(m),
                multipart::Piece::Data(d) => Piece::Data(d.to_vec()),
                multipart::Piece::Ends => Piece::Ends,
            });
            Ok::<(), String>(())
        };
        match &chunk {
            Some(c) => {
                read = read.saturating_add(c.len());
                if read > limit {
                    return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {limit} bytes")));
                }
                splitter.push(c, &mut on)
            }
            None => splitter.end(&mut on),
        }
        .map_err(malformed)?;
        for p in pieces.drain(..) {
            if tx.send(p).await.is_err() {
                // The writer stopped: it says why.
                return Ok(());
            }
        }
        if chunk.is_none() {
            return Ok(());
        }
    }
}

/// The writer's side: each part to a staging file of its own. `None` when
/// the body did not end whole (every staged part then dropped, removed).
fn stage_parts(state: &S, mut rx: tokio::sync::mpsc::Receiver<Piece>) -> Result<Option<Vec<Receiving>>, Problem> {
    let mut parts: Vec<Receiving> = Vec::new();
    let mut current: Option<Receiving> = None;
    while let Some(p) = rx.blocking_recv() {
        match p {
            Piece::Begins(m) => {
                if let Some(m) = m.filter(|m| m.mime != "application/dicom") {
                    return Err(Problem::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("a part of type {}: radhub stores application/dicom parts only", m.mime),
                    ));
                }
                current = Some(state.hub.receiving().map_err(|e| stage_failed(&e))?);
            }
            Piece::Data(d) => {
                if let Some(r) = &mut current {
                    r.write(&d);
                }
            }
            Piece::Ends => parts.extend(current.take()),
            Piece::Whole => return Ok(Some(parts)),
        }
    }
    Ok(None)
}

fn stage_failed(e: &IngestError) -> Problem {
    if e.is_out_of_space() {
        Problem::new(StatusCode::INSUFFICIENT_STORAGE, "out of storage space: send again later")
    } else {
        Problem::internal("STOW-RS staging", e)
    }
}

fn store_one(state: &S, user: &str, part: Receiving, study: Option<&str>) -> Outcome {
    let mut out = Outcome::default();
    let from = Arrival { site: state.stow_site.as_deref(), sender: user };
    // The check sees the description ingest makes: the answer names the
    // instance even when it is refused.
    let result = state.hub.ingest_received_checked(part, from, |meta| {
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
