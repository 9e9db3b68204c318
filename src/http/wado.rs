//! WADO-RS (PS3.18 10.4): instances, metadata, bulk data, frames, rendered
//! images and thumbnails of studies, series and instances.
//!
//! Instances go out in the transfer syntax asked for: with none asked,
//! Explicit VR Little Endian where the stored syntax is lossless and lossy
//! ones as stored; `transfer-syntax=*` as stored. radhub decodes to
//! uncompressed syntaxes only. Instances, frames, bulk data and renderings
//! carry an ETag from the content hash and answer If-None-Match with 304.
//! Metadata is encoded from each file's bytes up to its pixel data, which
//! is never read for it.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rayon::prelude::*;

use super::multipart;
use super::params::{uid_path, Params, QueryPairs};
use super::{MetaCache, Problem, S};
use crate::auth::Principal;
use crate::dicom::json;
use crate::dicom::scan;
use crate::index::model::{sort_instances, sort_series, InstanceRecord, StudyRecord};
use crate::ingest::Hub;
use crate::render::{Format, Window};
use crate::store::ObjectKey;

pub fn routes(state: &S) -> Router<S> {
    const I: &str = "/dicom-web/studies/{study}/series/{series}/instances/{instance}";
    // Retrieves stream each instance as it is here; the other resources
    // need their instances here first (`fetch_first`).
    let retrieves = Router::new()
        .route("/dicom-web/studies/{study}", get(retrieve))
        .route("/dicom-web/studies/{study}/series/{series}", get(retrieve))
        .route(I, get(retrieve));
    let resources = Router::new()
        .route("/dicom-web/studies/{study}/metadata", get(metadata))
        .route("/dicom-web/studies/{study}/thumbnail", get(study_thumbnail))
        .route("/dicom-web/studies/{study}/series/{series}/metadata", get(metadata))
        .route("/dicom-web/studies/{study}/series/{series}/thumbnail", get(series_thumbnail))
        .route(&format!("{I}/metadata"), get(metadata))
        .route(&format!("{I}/bulk/{{path}}"), get(bulk))
        .route(&format!("{I}/frames/{{frames}}"), get(frames))
        .route(&format!("{I}/frames/{{frames}}/rendered"), get(rendered))
        .route(&format!("{I}/frames/{{frames}}/thumbnail"), get(rendered_thumbnail))
        .route(&format!("{I}/rendered"), get(rendered))
        .route(&format!("{I}/thumbnail"), get(rendered_thumbnail))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), fetch_first));
    retrieves.merge(resources).route_layer(axum::middleware::from_fn_with_state(state.clone(), quarantine_guard))
}

/// A study held only at its site is fetched before its metadata, frames
/// or renderings are made (a study's thumbnail needs its first series only).
async fn fetch_first(State(state): State<S>, p: Params, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let study_thumbnail = p.get("series").is_empty() && req.uri().path().ends_with("/thumbnail");
    let ready =
        if study_thumbnail { super::fetching::ensure_first_series(&state, p.get("study")).await } else { super::fetching::ensure_local(&state, &p).await };
    match ready {
        Ok(()) => next.run(req).await,
        Err(problem) => problem.into_response(),
    }
}

/// A quarantined study (data from no configured site) is for admins to
/// review: to anyone else it does not exist.
async fn quarantine_guard(
    State(state): State<S>,
    Extension(who): Extension<Principal>,
    p: Params,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let study = p.get("study").to_owned();
    let st = state.clone();
    let held = tokio::task::spawn_blocking(move || st.hub.index.study(&study)).await;
    match held {
        Ok(Ok(Some(s))) if !super::api::studies::visible(&who, &s) => Problem::not_found("no such study").into_response(),
        Ok(Err(e)) => Problem::from(e).into_response(),
        Err(e) => Problem::from(e).into_response(),
        _ => next.run(req).await,
    }
}

/// How a user agent may keep an instance, frame, bulk value or rendering:
/// its bytes follow its content hash, but a patient identity change (a
/// merge, a demographics update) will change what is served, so every use
/// is checked again (If-None-Match, a 304 at most) and every view reaches
/// the audit trail. Private: patient data behind authentication.
const IMMUTABLE: &str = "private, no-cache";
/// A series' or study's thumbnail changes as instances arrive: kept, but
/// checked again (If-None-Match) each time.
const REVALIDATE: &str = "private, no-cache";

/// The entity tag of one representation of an instance's content: the
/// content hash the index records, and what tells the representations apart
/// (the request's path and query, and what was negotiated from Accept).
fn entity_tag(hash: &[u8; 32], variant: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(hash);
    h.update(variant.as_bytes());
    format!("\"{}\"", &h.finalize().to_hex()[..32])
}

/// Whether If-None-Match names `etag` (or `*`): weak comparison, RFC 9110 13.1.2.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The validator headers of a cacheable answer (a 304 carries them too,
/// RFC 9110 15.4.5).
fn validated(mut resp: Response, etag: &str, cache: &'static str) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // The representation follows Accept (and the accept query parameter, in the URL).
    h.insert(header::VARY, HeaderValue::from_static("accept"));
    resp
}

fn not_modified(etag: &str, cache: &'static str) -> Response {
    validated(StatusCode::NOT_MODIFIED.into_response(), etag, cache)
}

/// The request's path and query, which name one representation.
fn target(uri: &Uri) -> &str {
    uri.path_and_query().map_or("", |p| p.as_str())
}

const TRANSCODE_TO: [&str; 2] = [scan::TS_EXPLICIT_LE, scan::TS_IMPLICIT_LE];
pub const UNCOMPRESSED: [&str; 3] = [scan::TS_EXPLICIT_LE, scan::TS_IMPLICIT_LE, scan::TS_EXPLICIT_BE];

/// The instances a path names, in series and instance order; 404 if none.
fn instances(hub: &Hub, p: &Params) -> Result<Vec<InstanceRecord>, Problem> {
    let (study, series, instance) = (p.get("study"), p.get("series"), p.get("instance"));
    let found = if !instance.is_empty() {
        hub.index.instance(instance)?.filter(|i| i.study_uid == study && i.series_uid == series).into_iter().collect()
    } else {
        let mut v = hub.index.instances_of(study, (!series.is_empty()).then_some(series))?;
        sort_instances(&mut v);
        v
    };
    if found.is_empty() {
        let what = if !instance.is_empty() {
            "instance"
        } else if !series.is_empty() {
            "series"
        } else {
            "study"
        };
        return Err(Problem::not_found(format!("no such {what}")));
    }
    Ok(found)
}

fn read(hub: &Hub, uid: &str) -> Result<Vec<u8>, Problem> {
    hub.file(uid).map_err(|e| Problem::internal("reading an instance", e))?.ok_or_else(|| Problem::internal("reading an instance", "file missing"))
}

/// `read`, as served: restated to the identity the index holds now.
fn read_served(hub: &Hub, rec: &InstanceRecord) -> Result<Vec<u8>, Problem> {
    hub.served(&rec.study_uid, read(hub, &rec.sop_uid)?).map_err(|e| Problem::internal("reading an instance", e))
}

/// What an entity tag of a study's instance adds when its files are served
/// restated: the identity they carry, so that a change of it is a new tag.
fn identity_salt(hub: &Hub, study_uid: &str) -> Result<String, Problem> {
    Ok(hub
        .restated_as(study_uid)?
        .map(|s| format!("|{}|{}|{}|{}|{}", s.patient, s.patient_name, s.patient_birth_date, s.patient_sex, s.patient.issuer))
        .unwrap_or_default())
}

/// A metadata answer (a JSON array of instances) with each instance's
/// patient attributes those the index holds now, when the study's files
/// are served restated.
fn restated_metadata(hub: &Hub, study_uid: &str, body: Bytes) -> Result<Bytes, Problem> {
    let Some(s) = hub.restated_as(study_uid)? else { return Ok(body) };
    let fail = |e: serde_json::Error| Problem::internal("restating metadata", e);
    let mut all: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&body).map_err(fail)?;
    let first = |o: &serde_json::Map<String, serde_json::Value>, tag: &str| o.get(tag).and_then(|a| a["Value"][0].as_str()).unwrap_or("").to_owned();
    for o in &mut all {
        // The ID the file had stays among Other Patient IDs, as in the file served.
        let (sent, sent_issuer) = (first(o, "00100020"), first(o, "00100021"));
        if !sent.is_empty() && sent != s.patient.patient_id {
            let item = serde_json::json!({
                "00100020": {"vr": "LO", "Value": [sent]},
                "00100021": {"vr": "LO", "Value": [sent_issuer]},
                "00100022": {"vr": "CS", "Value": ["TEXT"]},
            });
            let seq = o.entry("00101002").or_insert_with(|| serde_json::json!({"vr": "SQ", "Value": []}));
            if let Some(items) = seq.get_mut("Value").and_then(|v| v.as_array_mut()) {
                if !items.iter().any(|i| i["00100020"]["Value"][0].as_str() == Some(sent.as_str())) {
                    items.push(item);
                }
            } else {
                seq["Value"] = serde_json::json!([item]);
            }
        }
        let mut set = |tag: &str, vr: &str, v: serde_json::Value| {
            o.insert(tag.to_owned(), serde_json::json!({"vr": vr, "Value": [v]}));
        };
        set("00100020", "LO", s.patient.patient_id.clone().into());
        set("00100021", "LO", s.patient.issuer.clone().into());
        for (tag, vr, v) in [("00100030", "DA", &s.patient_birth_date), ("00100040", "CS", &s.patient_sex)] {
            if !v.is_empty() {
                set(tag, vr, v.clone().into());
            }
        }
        if !s.patient_name.is_empty() {
            set("00100010", "PN", serde_json::json!({"Alphabetic": s.patient_name}));
        }
    }
    serde_json::to_vec(&all).map(Bytes::from).map_err(fail)
}

/// The transfer syntax a retrieve asks instances in.
#[derive(Clone, Debug, PartialEq)]
enum Wanted {
    /// No transfer-syntax parameter: PS3.18's default for application/dicom,
    /// Explicit VR Little Endian, for what is stored losslessly; lossy
    /// instances as stored (decoding them would only hide the loss).
    Default,
    /// `transfer-syntax=*`: as stored (PS3.18 8.7.3.5.2).
    AsStored,
    Syntax(String),
}

impl Wanted {
    fn tag(&self) -> &str {
        match self {
            Wanted::Default => "default",
            Wanted::AsStored => "*",
            Wanted::Syntax(ts) => ts,
        }
    }
}

/// The transfer syntax an Accept header asks instances in. 406 when it
/// asks for nothing radhub serves instances as.
fn wanted_syntax(headers: &HeaderMap) -> Result<Wanted, Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(Wanted::Default) };
    for m in multipart::accept(accept) {
        let ok = match m.mime.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => m.param("type").is_none_or(|t| t == "application/dicom"),
            "application/dicom" => true,
            _ => false,
        };
        if ok {
            return Ok(match m.param("transfer-syntax") {
                None => Wanted::Default,
                Some("*") => Wanted::AsStored,
                Some(ts) => Wanted::Syntax(ts.to_owned()),
            });
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "instances are served as multipart/related; type=\"application/dicom\""))
}

/// Lossless syntaxes whose frames radhub decodes (the lossless ones of
/// `render::codec::supported`): RLE, JPEG lossless, JPEG-LS lossless,
/// JPEG 2000 and HTJ2K lossless.
const LOSSLESS_DECODED: [&str; 8] = [
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
];
/// Lossy syntaxes whose frames radhub decodes: asked for uncompressed, so.
const LOSSY_DECODED: [&str; 8] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.203",
];
/// Lossless syntaxes radhub holds but does not decode: encapsulated
/// uncompressed, JPEG XL lossless, deflated image frames.
const LOSSLESS_UNDECODED: [&str; 3] = ["1.2.840.10008.1.2.1.98", "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.8.1"];

/// The syntax an instance goes out in for `wanted`: `Ok(None)` as stored,
/// `Ok(Some(ts))` re-encoded, `Err(why)` when radhub cannot deliver it so.
fn part_syntax(rec: &InstanceRecord, wanted: &Wanted) -> Result<Option<String>, String> {
    let stored = rec.transfer_syntax.as_str();
    // Native data, or none, re-encodes without a pixel decoder.
    let decodable = !rec.has_pixel_data || UNCOMPRESSED.contains(&stored) || stored == scan::TS_DEFLATED || LOSSLESS_DECODED.contains(&stored);
    match wanted {
        Wanted::AsStored => Ok(None),
        Wanted::Syntax(ts) if ts == stored => Ok(None),
        Wanted::Syntax(ts) if !TRANSCODE_TO.contains(&ts.as_str()) => Err(format!("radhub does not compress; stored as {stored}")),
        // Asked for by name, a lossy instance is decoded too.
        Wanted::Syntax(ts) if decodable || LOSSY_DECODED.contains(&stored) => Ok(Some(ts.clone())),
        Wanted::Syntax(_) => Err(format!("radhub cannot decode {stored}")),
        Wanted::Default if stored == scan::TS_EXPLICIT_LE => Ok(None),
        Wanted::Default if decodable => Ok(Some(scan::TS_EXPLICIT_LE.to_owned())),
        Wanted::Default if LOSSLESS_UNDECODED.contains(&stored) => Err(format!("radhub cannot decode {stored}")),
        Wanted::Default => Ok(None),
    }
}

async fn retrieve(State(state): State<S>, Extension(who): Extension<Principal>, p: Params, headers: HeaderMap, uri: Uri) -> Result<Response, Problem> {
    let wanted = wanted_syntax(&headers)?;
    // Each retrieve streams for as long as its client reads: a few per user.
    let Some(slot) = state.retrieves.take(&who.user, state.limits.retrieves_per_user) else {
        let mut r = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} has {} retrieves streaming already; finish one first", who.user, state.limits.retrieves_per_user),
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(1));
        return Ok(r);
    };
    let st = state.clone();
    let (study, series) = (p.get("study").to_owned(), p.get("series").to_owned());
    let one = !p.get("instance").is_empty();
    let (mut list, salt) = tokio::task::spawn_blocking(move || Ok::<_, Problem>((instances(&st.hub, &p)?, identity_salt(&st.hub, p.get("study"))?))).await??;
    // One instance held here is immutable (but for its identity, in the salt); a study or series grows.
    let etag = list.first().filter(|r| one && r.local).map(|r| entity_tag(&r.content_hash, &format!("{}|{}{salt}", target(&uri), wanted.tag())));
    if let Some(tag) = etag.as_deref().filter(|t| none_match(&headers, t)) {
        return Ok(not_modified(tag, IMMUTABLE));
    }
    // What cannot go in the syntax asked for is known here for the instances
    // held (those still at their site are judged as they arrive): left out,
    // and the answer says so: 206 Partial Content with a Warning, or 406 Not
    // Acceptable when nothing is left (PS3.18 2019a 6.5.2.2).
    let total = list.len();
    let mut refused: Vec<String> = Vec::new();
    list.retain(|r| match r.local.then(|| part_syntax(r, &wanted)) {
        Some(Err(why)) => {
            refused.push(why);
            false
        }
        _ => true,
    });
    if list.is_empty() {
        return Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "no instance can be had in the transfer syntax asked for ({}): ask with transfer-syntax=* for them as stored, or uncompressed little endian",
                refused.first().map_or("", String::as_str)
            ),
        ));
    }
    let warning = (!refused.is_empty()).then(|| {
        format!(
            "299 {}: \"{} of {total} instances left out: {}; ask with transfer-syntax=* for them as stored\"",
            state.dicomweb_base(),
            refused.len(),
            refused[0].replace('"', "'")
        )
    });
    // Held only at its site: fetched, and each instance sent once it is here.
    let (mut arrivals, first) = super::fetching::Arrivals::open(&state, &study, (!series.is_empty()).then_some(series.as_str()), list).await?;
    let boundary = etag.as_deref().map_or_else(multipart::new_boundary, multipart::boundary_from);
    let content_type = multipart::related(&boundary, "application/dicom");
    // One file in memory at a time, read on the blocking pool, sent as the
    // client takes it. A client that stops reading parks this task (no
    // thread), and is cut off after the send timeout.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let limit = state.limits.send_timeout;
    tokio::spawn(async move {
        let _slot = slot;
        let send = |item: Result<Bytes, std::io::Error>| {
            let tx = tx.clone();
            async move { matches!(tokio::time::timeout(limit, tx.send(item)).await, Ok(Ok(()))) }
        };
        let mut next = first;
        loop {
            let rec = match next.take() {
                Some(r) => r,
                None => match arrivals.next().await {
                    None => break,
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "WADO-RS answer cut: the site did not deliver");
                        send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                },
            };
            let sop = rec.sop_uid.clone();
            // An instance that cannot go as asked, found only now (it arrived
            // from its site, or failed to decode), ends the body short: the
            // status is sent already, and a silent gap would pass for whole.
            let ts = match part_syntax(&rec, &wanted) {
                Ok(ts) => ts,
                Err(e) => {
                    tracing::warn!(%sop, error = %e, "WADO-RS answer cut: an instance cannot go in the syntax asked for");
                    send(Err(std::io::Error::other(e))).await;
                    return;
                }
            };
            let st = state.clone();
            // As stored: streamed from its file in steps. Transcoded: whole.
            let opened = tokio::task::spawn_blocking(move || part_source(&st.hub, &rec, ts.as_deref())).await;
            let (source, ts) = match opened {
                Ok(Ok(p)) => p,
                Ok(Err((_, e))) => {
                    tracing::warn!(%sop, error = %e, "WADO-RS answer cut: an instance could not be read or re-encoded");
                    send(Err(std::io::Error::other(e))).await;
                    return;
                }
                Err(e) => {
                    send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let head = multipart::part_head(&boundary, &format!("application/dicom; transfer-syntax={ts}"), &[]);
            if !send(Ok(Bytes::from(head))).await {
                return;
            }
            let mut source = Some(source);
            while let Some(mut src) = source.take() {
                let step = tokio::task::spawn_blocking(move || src.next_step().map(|b| (b, src))).await;
                let chunk = match step {
                    Ok(Ok((Some(b), src))) => {
                        source = Some(src);
                        b
                    }
                    Ok(Ok((None, _))) => break,
                    Ok(Err(e)) => {
                        send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                };
                if !send(Ok(chunk)).await {
                    tracing::info!(%sop, "WADO-RS client stopped reading: answer cut");
                    return;
                }
            }
        }
        send(Ok(Bytes::from(multipart::closing(&boundary)))).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response();
    if let Some(w) = warning.and_then(|w| HeaderValue::from_str(&w).ok()) {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(header::WARNING, w);
    }
    Ok(match etag {
        Some(tag) => validated(resp, &tag, IMMUTABLE),
        None => resp,
    })
}

/// The step a streamed answer reads and sends at a time: memory per
/// retrieve stays at a few steps, and the send timeout asks for progress.
const SEND_STEP: usize = 64 << 10;

/// One part of a retrieve: a stored file read in steps, or transcoded bytes.
enum PartSource {
    File(Box<dyn std::io::Read + Send>),
    Bytes(Option<Vec<u8>>),
}

impl PartSource {
    fn next_step(&mut self) -> std::io::Result<Option<Bytes>> {
        match self {
            PartSource::Bytes(b) => Ok(b.take().map(Bytes::from)),
            PartSource::File(r) => {
                let mut buf = Vec::with_capacity(SEND_STEP);
                std::io::Read::read_to_end(&mut std::io::Read::take(&mut **r, SEND_STEP as u64), &mut buf)?;
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
        }
    }
}

/// Where an instance's part comes from, in `syntax` (as stored if `None`
/// or the same), and the syntax it is in. Errors carry the syntax asked
/// for: `None` means the stored file failed.
#[allow(clippy::type_complexity)]
fn part_source(hub: &Hub, rec: &InstanceRecord, syntax: Option<&str>) -> Result<(PartSource, String), (Option<String>, String)> {
    match syntax {
        Some(ts) if ts != rec.transfer_syntax => {
            let bytes = read_served(hub, rec).map_err(|p| (None, p.to_string()))?;
            // Little endian native pixel data keeps its bytes; the rest is decoded.
            let native_le = matches!(rec.transfer_syntax.as_str(), scan::TS_IMPLICIT_LE | scan::TS_EXPLICIT_LE | scan::TS_DEFLATED);
            let out = reencode(&bytes, ts, rec.has_pixel_data && !native_le).map_err(|e| (Some(ts.to_owned()), e))?;
            Ok((PartSource::Bytes(Some(out)), ts.to_owned()))
        }
        // Files whose identity changed since are served restated, whole.
        _ if hub.index.restated(&rec.study_uid).map_err(|e| (None, e.to_string()))? => {
            let bytes = read_served(hub, rec).map_err(|p| (None, p.to_string()))?;
            Ok((PartSource::Bytes(Some(bytes)), rec.transfer_syntax.clone()))
        }
        _ => {
            let r = hub.file_reader(&rec.sop_uid).map_err(|e| (None, e.to_string()))?.ok_or((None, "file missing".to_owned()))?;
            Ok((PartSource::File(r), rec.transfer_syntax.clone()))
        }
    }
}

/// `part10` in `ts` (an uncompressed little endian syntax): its pixel data
/// through render's decoders when `decode`, else the data set only
/// re-written (no pixel data, or little endian native pixel data).
fn reencode(part10: &[u8], ts: &str, decode: bool) -> Result<Vec<u8>, String> {
    if decode {
        return crate::dimse::transcode::to_native(part10, ts);
    }
    use dicom_encoding::TransferSyntaxIndex;
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(ts).ok_or_else(|| format!("unknown transfer syntax {ts}"))?;
    // The file was scanned (bounded) when it arrived; dicom-object reads from the magic code on.
    dicom_scan::scan_ordered(part10).map_err(|e| e.to_string())?;
    let mut obj = dicom_object::from_reader(part10.get(128..).ok_or("not a Part 10 file")?).map_err(|e| e.to_string())?;
    obj.update_meta(|m| m.set_transfer_syntax(target));
    let mut out = Vec::new();
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Size of the first read of a file for its metadata: enough for the
/// headers of nearly every object, whose pixel data comes last.
const META_PREFIX: usize = 64 << 10;

async fn metadata(State(state): State<S>, p: Params, headers: HeaderMap) -> Result<Response, Problem> {
    // A client may ask for an answer built afresh from the files (RFC 9111 5.2.1.4).
    let fresh =
        headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-cache")));
    let body = tokio::task::spawn_blocking(move || {
        let base = state.dicomweb_base();
        let (study, series) = (p.get("study"), p.get("series"));
        if !p.get("instance").is_empty() {
            let rec = instances(&state.hub, &p)?.remove(0);
            let one = instance_metadata(&state.hub, &state.meta_cache, &rec, &base)?.ok_or_else(|| Problem::not_found("the instance is still being stored"))?;
            return restated_metadata(&state.hub, &rec.study_uid, Bytes::from(format!("[{one}]")));
        }
        let study = state.hub.index.study(study)?.ok_or_else(|| Problem::not_found("no such study"))?;
        if !series.is_empty() {
            return restated_metadata(&state.hub, &study.uid, series_metadata(&state, &study, series, &base, fresh)?);
        }
        let mut all = state.hub.index.series_of(&study.uid)?;
        sort_series(&mut all);
        let parts = all.iter().map(|s| series_metadata(&state, &study, &s.uid, &base, fresh)).collect::<Result<Vec<Bytes>, Problem>>()?;
        // Each part is a JSON array: join their contents.
        let inner: Vec<&[u8]> = parts.iter().filter(|b| b.len() > 2).map(|b| &b[1..b.len() - 1]).collect();
        restated_metadata(&state.hub, &study.uid, Bytes::from([b"[".as_slice(), &inner.join(b",".as_slice()), b"]"].concat()))
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "application/dicom+json")], body).into_response())
}

/// A series' metadata, from the cache when nothing arrived since it was made.
fn series_metadata(state: &S, study: &StudyRecord, series: &str, base: &str, fresh: bool) -> Result<Bytes, Problem> {
    let s = state.hub.index.series(series)?.filter(|s| s.study_uid == study.uid).ok_or_else(|| Problem::not_found("no such series"))?;
    let version = (s.instances, s.bytes, study.last_received_ms);
    if let Some(body) = state.meta_cache.get(series, version).filter(|_| !fresh) {
        return Ok(body);
    }
    let mut list = state.hub.index.instances_of(&study.uid, Some(series))?;
    sort_instances(&mut list);
    let all: Vec<Option<String>> = list
        .par_iter()
        .map(|rec| {
            // One instance that trips a bug fails this answer, not the process.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| instance_metadata(&state.hub, &state.meta_cache, rec, base)))
                .unwrap_or_else(|_| Err(Problem::internal("reading metadata", format!("{}: internal error", rec.sop_uid))))
        })
        .collect::<Result<_, Problem>>()?;
    let complete = all.iter().all(Option::is_some);
    let body = Bytes::from(format!("[{}]", all.into_iter().flatten().collect::<Vec<_>>().join(",")));
    // Instances still being stored are left out, and such an answer not kept.
    if complete {
        state.meta_cache.put(series, version, body.clone());
    }
    Ok(body)
}

/// One instance's data set as DICOM JSON, read up to its pixel data when
/// the pixel data is the last element, else whole. A deflated file is
/// inflated once: its JSON is kept by content hash (a file never changes
/// under its hash).
/// `None` while the file is not yet the one the index describes: an
/// arrival is indexed (its commit point) a moment before its file is
/// published.
pub fn instance_metadata(hub: &Hub, cache: &MetaCache, rec: &InstanceRecord, base: &str) -> Result<Option<String>, Problem> {
    let key = ObjectKey::for_uid(&rec.sop_uid);
    let fail = |e: &dyn std::fmt::Display| Problem::internal("reading metadata", format!("{}: {e}", rec.sop_uid));
    let Some((prefix, size)) = hub.store.get_prefix(&key, META_PREFIX).map_err(|e| fail(&e))? else { return Ok(None) };
    if size != rec.file_size {
        return Ok(None);
    }
    let bulk_base = format!("{base}/studies/{}/series/{}/instances/{}/bulk", uid_path(&rec.study_uid), uid_path(&rec.series_uid), uid_path(&rec.sop_uid));
    let (_, meta_end, ts) = scan::file_meta(&prefix).map_err(|e| fail(&e))?;
    if ts != scan::TS_DEFLATED {
        let enc = scan::encoding(&ts);
        let t = scan::tree(&prefix[meta_end..], enc).map_err(|e| fail(&e))?;
        let complete = match t.tail {
            None => prefix.len() as u64 == size,
            // Cut inside the last element, a binary one (the pixel data), whose
            // declared end is the file's end; a sequence must be read whole.
            Some(tail) => tail.element.is_some_and(|e| (meta_end + e.end) as u64 == size && matches!(&e.vr, b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV")),
        };
        if complete {
            let src = json::Source { buf: &prefix[meta_end..], encoding: enc, nodes: &t.nodes, tail: t.tail, bulk_base: &bulk_base };
            return Ok(Some(with_available_syntax(json::dataset(&src), &rec.transfer_syntax)));
        }
    }
    let deflated = ts == scan::TS_DEFLATED;
    let cache_key = format!("inflated:{}", crate::store::ObjectKey(rec.content_hash).hex());
    if deflated {
        if let Some(hit) = cache.get(&cache_key, (0, rec.file_size, 0)) {
            return Ok(Some(String::from_utf8_lossy(&hit).into_owned()));
        }
    }
    let whole = read(hub, &rec.sop_uid)?;
    let s = scan::scan(&whole, &[]).map_err(|e| fail(&e))?;
    let t = scan::tree(&s.dataset, s.encoding).map_err(|e| fail(&e))?;
    let src = json::Source { buf: &s.dataset, encoding: s.encoding, nodes: &t.nodes, tail: None, bulk_base: &bulk_base };
    let out = with_available_syntax(json::dataset(&src), &rec.transfer_syntax);
    if deflated {
        cache.put(&cache_key, (0, rec.file_size, 0), Bytes::from(out.clone()));
    }
    Ok(Some(out))
}

/// Available Transfer Syntax UID (0008,3002), the syntax the instance is
/// stored in (what `transfer-syntax=*` retrieves), put among
/// a DICOM JSON object's top-level attributes in tag order. An object that
/// has it already is left as it is.
fn with_available_syntax(mut obj: String, ts: &str) -> String {
    const KEY: &str = "00083002";
    let b = obj.as_bytes();
    let (mut depth, mut in_str, mut esc, mut at) = (0usize, false, false, None);
    let mut key_next = false;
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                if depth == 1 && key_next {
                    let key = b.get(i + 1..i + 9).unwrap_or_default();
                    if key == KEY.as_bytes() {
                        return obj;
                    }
                    if key > KEY.as_bytes() {
                        at = Some((i, true));
                        break;
                    }
                }
                key_next = false;
                in_str = true;
            }
            b'{' | b'[' => {
                depth += 1;
                key_next = depth == 1 && c == b'{';
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    at = Some((i, false));
                    break;
                }
            }
            b',' => key_next = depth == 1,
            _ => {}
        }
    }
    let Some((i, before_key)) = at else { return obj };
    let value = format!("\"{KEY}\":{{\"vr\":\"UI\",\"Value\":[{}]}}", serde_json::Value::from(ts));
    let insert = if before_key {
        format!("{value},")
    } else if obj[..i].trim_end().ends_with('{') {
        value
    } else {
        format!(",{value}")
    };
    obj.insert_str(i, &insert);
    obj
}

/// Whether a bulk data answer goes as the bare value (an Accept naming
/// application/octet-stream before any multipart type, PS3.18 10.4.4: a
/// single part media type for a single item) rather than multipart.
fn bulk_single_part(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    multipart::accept(accept)
        .iter()
        .find(|m| m.mime == "application/octet-stream" || m.mime.starts_with("multipart/"))
        .is_some_and(|m| m.mime == "application/octet-stream")
}

/// The bytes a Range header (RFC 9110 14.2) asks of one value `len` bytes
/// long, honoured only while If-Range, if sent, names the value's tag:
/// `None` for the whole, else `from..to` and the Content-Range; a 416
/// answer when no byte of the value is in range.
#[allow(clippy::type_complexity)]
fn value_range(headers: &HeaderMap, etag: &str, len: usize) -> Result<Option<(usize, usize, String)>, Box<Response>> {
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok());
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range.is_none_or(|t| t.trim() == etag));
    match super::params::byte_range(asked, len as u64) {
        super::params::ByteRange::Whole => Ok(None),
        // Both ends are within `len` (a usize), so they convert back.
        super::params::ByteRange::Part { start, end } => Ok(Some((start as usize, end as usize + 1, format!("bytes {start}-{end}/{len}")))),
        super::params::ByteRange::Unsatisfiable => {
            let mut r = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, format!("the value is {len} bytes")).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Err(Box::new(r))
        }
    }
}

async fn bulk(State(state): State<S>, p: Params, headers: HeaderMap, uri: Uri) -> Result<Response, Problem> {
    let path = p.get("path").to_owned();
    if path.len() > 200 || !path.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.') {
        return Err(Problem::bad_request("a bulk data path is tags and item numbers joined by '.'"));
    }
    tokio::task::spawn_blocking(move || {
        let rec = instances(&state.hub, &p)?.remove(0);
        let single = bulk_single_part(&headers);
        let etag = entity_tag(&rec.content_hash, &format!("{}|{}", target(&uri), if single { "single" } else { "multipart" }));
        if none_match(&headers, &etag) {
            return Ok(not_modified(&etag, IMMUTABLE));
        }
        let whole = read(&state.hub, &rec.sop_uid)?;
        let s = scan::scan(&whole, &[]).map_err(|e| Problem::internal("reading bulk data", e))?;
        let t = scan::tree(&s.dataset, s.encoding).map_err(|e| Problem::internal("reading bulk data", e))?;
        let b = multipart::boundary_from(&etag);
        let mut body = Vec::new();
        let mut status = StatusCode::OK;
        let mut content_range = None;
        let kind = match json::bulk_value(&s.dataset, &t.nodes, &path) {
            Some(json::Bulk::Bytes(v, vr)) => {
                // Bulk data goes out little endian, as in the DICOM JSON (PS3.18 F.2.7).
                let value = json::little_endian(v, &vr, s.encoding);
                // A Range asks for bytes of the bulk data value (PS3.18 2016b 6.5.5.2).
                let (from, to) = match value_range(&headers, &etag, value.len()) {
                    Ok(None) => (0, value.len()),
                    Ok(Some((from, to, range))) => {
                        status = StatusCode::PARTIAL_CONTENT;
                        content_range = Some(range);
                        (from, to)
                    }
                    Err(refused) => return Ok(*refused),
                };
                if single {
                    body.extend_from_slice(&value[from..to]);
                } else {
                    let extra: Vec<String> = content_range.iter().map(|c| format!("Content-Range: {c}")).collect();
                    body.extend(multipart::part_head(&b, "application/octet-stream", &extra));
                    body.extend_from_slice(&value[from..to]);
                }
                "application/octet-stream"
            }
            Some(json::Bulk::Fragments(frags)) => {
                // Compressed pixel data, fragment by fragment: a Range is not
                // applied to these parts (RFC 9110 14.2 lets a server ignore it).
                let media = compressed_media(&rec.transfer_syntax);
                for f in frags {
                    body.extend(multipart::part_head(&b, &format!("{media}; transfer-syntax={}", rec.transfer_syntax), &[]));
                    body.extend_from_slice(f);
                }
                media
            }
            None => return Err(Problem::not_found(format!("no bulk data at {path}"))),
        };
        let single = single && kind == "application/octet-stream";
        let content_type = if single {
            kind.to_owned()
        } else {
            body.extend(multipart::closing(&b));
            multipart::related(&b, kind)
        };
        let mut resp = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
        resp.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(v) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        Ok(validated(resp, &etag, IMMUTABLE))
    })
    .await?
}

/// The media type PS3.18 gives a compressed frame of transfer syntax `ts`.
fn compressed_media(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

/// Frame numbers of a `frames/{list}` path: 1-based, comma-separated.
fn frame_list(s: &str) -> Result<Vec<u32>, Problem> {
    let v: Vec<u32> = s
        .split(',')
        .map(|f| f.trim().parse::<u32>().ok().filter(|&n| n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(|| Problem::bad_request(format!("frame numbers are whole numbers from 1, separated by commas, not {s:?}")))?;
    if v.is_empty() || v.len() > 4096 {
        return Err(Problem::bad_request("between 1 and 4096 frame numbers"));
    }
    // Each frame once, in the order first asked for.
    let mut seen = std::collections::HashSet::new();
    Ok(v.into_iter().filter(|f| seen.insert(*f)).collect())
}

/// Most bytes of frames one answer carries; ask for fewer frames at a time.
const MAX_FRAMES_ANSWER: usize = 1 << 30;

/// How frames are wanted: as stored, or decoded to native bytes.
enum FrameForm {
    Stored,
    Native,
}

fn frame_form(headers: &HeaderMap, stored_ts: &str) -> Result<FrameForm, Problem> {
    let native_stored = UNCOMPRESSED.contains(&stored_ts) || stored_ts == scan::TS_DEFLATED;
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        // Nothing asked: uncompressed where that loses nothing (PS3.18 8.7.3.5,
        // as for instances), lossy frames as stored.
        return Ok(if native_stored || LOSSLESS_DECODED.contains(&stored_ts) { FrameForm::Native } else { FrameForm::Stored });
    };
    for m in multipart::accept(accept) {
        let (kind, ts) = match m.mime.as_str() {
            "multipart/related" => (m.param("type").unwrap_or("application/octet-stream").to_ascii_lowercase(), m.param("transfer-syntax")),
            "*/*" | "multipart/*" => ("*/*".to_owned(), Some("*")),
            _ => continue,
        };
        match (kind.as_str(), ts) {
            (_, Some("*")) => return Ok(if native_stored { FrameForm::Native } else { FrameForm::Stored }),
            ("application/octet-stream", None) => return Ok(FrameForm::Native),
            ("application/octet-stream", Some(t)) if UNCOMPRESSED.contains(&t) => return Ok(FrameForm::Native),
            (k, t) if !native_stored && (k == compressed_media(stored_ts) || k == "*/*") && t.is_none_or(|t| t == stored_ts) => return Ok(FrameForm::Stored),
            _ => {}
        }
    }
    Err(Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        format!("frames of this instance are served uncompressed (application/octet-stream) or as stored ({})", compressed_media(stored_ts)),
    ))
}

async fn frames(State(state): State<S>, p: Params, headers: HeaderMap, uri: Uri) -> Result<Response, Problem> {
    let list = frame_list(p.get("frames"))?;
    tokio::task::spawn_blocking(move || {
        let rec = instances(&state.hub, &p)?.remove(0);
        if !rec.has_pixel_data {
            return Err(Problem::not_found("the instance has no pixel data"));
        }
        let form = frame_form(&headers, &rec.transfer_syntax)?;
        // Native frames go out little endian (PS3.18's default for octet-stream).
        let (media, ts) = match form {
            FrameForm::Native => ("application/octet-stream", scan::TS_EXPLICIT_LE),
            FrameForm::Stored => (compressed_media(&rec.transfer_syntax), rec.transfer_syntax.as_str()),
        };
        let etag = entity_tag(&rec.content_hash, &format!("{}|{media}|{ts}", target(&uri)));
        if none_match(&headers, &etag) {
            return Ok(not_modified(&etag, IMMUTABLE));
        }
        let inst = crate::render::Instance::open(&read(&state.hub, &rec.sop_uid)?).map_err(render_problem)?;
        let b = multipart::boundary_from(&etag);
        let mut body = Vec::new();
        let mut content_range = None;
        for &f in &list {
            if f > inst.frames() {
                return Err(Problem::not_found(format!("frame {f} of {}", inst.frames())));
            }
            let bytes = match form {
                FrameForm::Stored => inst.stored_frame(f - 1).map_err(render_problem)?.into_owned(),
                FrameForm::Native if UNCOMPRESSED.contains(&rec.transfer_syntax.as_str()) || rec.transfer_syntax == scan::TS_DEFLATED => {
                    inst.stored_frame_le(f - 1).map_err(render_problem)?.into_owned()
                }
                FrameForm::Native => inst.native_frame(f - 1).map_err(render_problem)?,
            };
            if body.len() + bytes.len() > MAX_FRAMES_ANSWER {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the frames asked for exceed {MAX_FRAMES_ANSWER} bytes; ask for fewer at a time"),
                ));
            }
            // A Range applies to one frame's bytes; a list of frames goes whole.
            let range = if list.len() == 1 { value_range(&headers, &etag, bytes.len()).map_err(|r| *r) } else { Ok(None) };
            let (from, to, extra) = match range {
                Ok(None) => (0, bytes.len(), Vec::new()),
                Ok(Some((from, to, c))) => {
                    content_range = Some(c.clone());
                    (from, to, vec![format!("Content-Range: {c}")])
                }
                Err(refused) => return Ok(refused),
            };
            body.extend(multipart::part_head(&b, &format!("{media}; transfer-syntax={ts}"), &extra));
            body.extend_from_slice(&bytes[from..to]);
        }
        body.extend(multipart::closing(&b));
        let status = if content_range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let mut resp = (status, [(header::CONTENT_TYPE, multipart::related(&b, media))], body).into_response();
        if list.len() == 1 {
            resp.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if let Some(v) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        Ok(validated(resp, &etag, IMMUTABLE))
    })
    .await?
}

fn render_problem(e: crate::render::RenderError) -> Problem {
    use crate::render::RenderError as R;
    match e {
        R::NoPixelData => Problem::not_found("the instance has no pixel data"),
        R::FrameOutOfRange { frame, frames } => Problem::not_found(format!("frame {} of {frames}", frame + 1)),
        R::Unsupported(_) | R::UnsupportedTransferSyntax(_) => Problem::new(StatusCode::NOT_ACCEPTABLE, e.to_string()),
        R::Busy(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("cannot render: {e}")),
    }
}

/// The media ranges a rendered or thumbnail request accepts: those of its
/// `accept` query parameter first (PS3.18 8.3.3.1; URI-encoded, comma
/// separated), then its Accept header's. Empty when it names none.
fn accepted(headers: &HeaderMap, q: &QueryPairs) -> Vec<multipart::Media> {
    let mut v: Vec<multipart::Media> = q.0.iter().filter(|(k, _)| k == "accept").flat_map(|(_, v)| multipart::accept(v)).collect();
    if let Some(h) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        v.extend(multipart::accept(h));
    }
    v
}

/// An accepted image media range: the image type, and whether it is wanted
/// as the one part of a multipart/related answer.
fn image_range(m: &multipart::Media) -> (String, bool) {
    if m.mime == "multipart/related" {
        (m.param("type").unwrap_or("image/jpeg").to_ascii_lowercase(), true)
    } else {
        (m.mime.clone(), false)
    }
}

/// The image format asked for (JPEG unless PNG comes first), and whether
/// multipart/related.
fn image_format(headers: &HeaderMap, q: &QueryPairs) -> Result<(Format, bool), Problem> {
    let asked = accepted(headers, q);
    if asked.is_empty() {
        return Ok((Format::Jpeg { quality: 90 }, false));
    }
    for m in &asked {
        match image_range(m) {
            (t, multi) if matches!(t.as_str(), "image/jpeg" | "image/*" | "*/*") => return Ok((Format::Jpeg { quality: 90 }, multi)),
            (t, multi) if t == "image/png" => return Ok((Format::Png, multi)),
            _ => {}
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "rendered images are image/jpeg or image/png, alone or as multipart/related"))
}

/// Rendering parameters of PS3.18 8.3.5.1: `window=center,width[,function]`,
/// `viewport=width,height` (fit inside), `quality=1..100`.
#[allow(clippy::type_complexity)]
fn rendering(q: &QueryPairs, mut format: Format) -> Result<(Option<Window>, Option<(u32, u32)>, Format), Problem> {
    let mut window = None;
    if let Some(w) = q.get("window") {
        let parts: Vec<&str> = w.split(',').collect();
        let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let (c, wd) = match parts.as_slice() {
            [c, w] | [c, w, _] => (num(c), num(w)),
            _ => (None, None),
        };
        let function = match parts.get(2).map(|f| f.trim().to_ascii_lowercase()) {
            None => crate::render::VoiFunction::Linear,
            Some(f) => match f.as_str() {
                "linear" => crate::render::VoiFunction::Linear,
                "linear-exact" | "linear_exact" => crate::render::VoiFunction::LinearExact,
                "sigmoid" => crate::render::VoiFunction::Sigmoid,
                _ => return Err(Problem::bad_request("window function is linear, linear-exact or sigmoid")),
            },
        };
        match (c, wd) {
            (Some(center), Some(width)) if width > 0.0 => window = Some(Window { center, width, function }),
            _ => return Err(Problem::bad_request("window is center,width[,function] with a positive width")),
        }
    }
    let mut viewport = None;
    if let Some(v) = q.get("viewport") {
        let dims: Vec<u32> = v.split(',').filter_map(|d| d.trim().parse().ok()).collect();
        match dims.as_slice() {
            [w, h] if (1..=8192).contains(w) && (1..=8192).contains(h) => viewport = Some((*w, *h)),
            _ => return Err(Problem::bad_request("viewport is width,height, each 1 to 8192")),
        }
    }
    if let Some(qv) = q.get("quality") {
        let quality = qv.parse::<u8>().ok().filter(|q| (1..=100).contains(q)).ok_or_else(|| Problem::bad_request("quality is 1 to 100"))?;
        if let Format::Jpeg { .. } = format {
            format = Format::Jpeg { quality };
        }
    }
    Ok((window, viewport, format))
}

/// The longer side an image of `w`×`h` has once fitted inside a viewport of
/// `vw`×`vh` with its aspect ratio kept (PS3.18 8.3.5.1.3); `Rendered::fit`
/// takes the longer side, and never enlarges.
fn fit_inside(w: u32, h: u32, vw: u32, vh: u32) -> u32 {
    let (w, h) = (u64::from(w.max(1)), u64::from(h.max(1)));
    let longer = w.max(h);
    // Rounded down on both axes, so neither side passes its viewport's.
    let max = (longer * u64::from(vw) / w).min(longer * u64::from(vh) / h).max(1);
    u32::try_from(max).unwrap_or(u32::MAX)
}

async fn rendered(state: State<S>, p: Params, headers: HeaderMap, q: QueryPairs, uri: Uri) -> Result<Response, Problem> {
    let (format, multi) = image_format(&headers, &q)?;
    let (window, viewport, format) = rendering(&q, format)?;
    render(state, p, headers, uri, window, viewport, (format, multi)).await
}

async fn rendered_thumbnail(state: State<S>, p: Params, headers: HeaderMap, q: QueryPairs, uri: Uri) -> Result<Response, Problem> {
    let (format, multi) = image_format(&headers, &q)?;
    let (window, viewport, format) = rendering(&q, format)?;
    let size = crate::thumbs::SIZE;
    render(state, p, headers, uri, window, Some(viewport.unwrap_or((size, size))), (format, multi)).await
}

async fn render(
    State(state): State<S>,
    p: Params,
    headers: HeaderMap,
    uri: Uri,
    window: Option<Window>,
    viewport: Option<(u32, u32)>,
    (format, multi): (Format, bool),
) -> Result<Response, Problem> {
    let frame = match p.get("frames") {
        "" => 1,
        f => {
            let list = frame_list(f)?;
            if list.len() != 1 {
                return Err(Problem::bad_request("a rendered frame is one frame number"));
            }
            list[0]
        }
    };
    tokio::task::spawn_blocking(move || {
        let rec = instances(&state.hub, &p)?.remove(0);
        let etag = entity_tag(&rec.content_hash, &format!("{}|{}|{multi}", target(&uri), format_tag(format)));
        if none_match(&headers, &etag) {
            return Ok(not_modified(&etag, IMMUTABLE));
        }
        let inst = crate::render::Instance::open(&read(&state.hub, &rec.sop_uid)?).map_err(render_problem)?;
        if frame > inst.frames() {
            return Err(Problem::not_found(format!("frame {frame} of {}", inst.frames())));
        }
        let mut img = inst.display(frame - 1, window).map_err(render_problem)?;
        if let Some((vw, vh)) = viewport {
            img = img.fit(fit_inside(img.width, img.height, vw, vh));
        }
        let bytes = img.encode(format).map_err(render_problem)?;
        Ok(validated(image(format, bytes, multi.then(|| multipart::boundary_from(&etag))), &etag, IMMUTABLE))
    })
    .await?
}

fn format_tag(format: Format) -> String {
    match format {
        Format::Png => "png".to_owned(),
        Format::Jpeg { quality } => format!("jpeg{quality}"),
    }
}

/// An image answer: the image alone, or as the one part of a
/// multipart/related answer with `boundary`.
fn image(format: Format, bytes: Vec<u8>, boundary: Option<String>) -> Response {
    let ct = match format {
        Format::Png => "image/png",
        Format::Jpeg { .. } => "image/jpeg",
    };
    match boundary {
        None => ([(header::CONTENT_TYPE, ct.to_owned())], bytes).into_response(),
        Some(b) => {
            let mut body = multipart::part_head(&b, ct, &[]);
            body.extend(bytes);
            body.extend(multipart::closing(&b));
            ([(header::CONTENT_TYPE, multipart::related(&b, ct))], body).into_response()
        }
    }
}

/// The format and form a series' or study's thumbnail goes in: PNG as kept,
/// unless JPEG comes first (then re-encoded).
fn thumbnail_form(headers: &HeaderMap, q: &QueryPairs) -> Result<(Format, bool), Problem> {
    let asked = accepted(headers, q);
    if asked.is_empty() {
        return Ok((Format::Png, false));
    }
    for (t, multi) in asked.iter().map(image_range) {
        match t.as_str() {
            "image/png" | "image/*" | "*/*" => return Ok((Format::Png, multi)),
            "image/jpeg" => return Ok((Format::Jpeg { quality: 90 }, multi)),
            _ => {}
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "thumbnails are image/png or image/jpeg, alone or as multipart/related"))
}

/// A kept PNG thumbnail as JPEG (8-bit grey or RGB; alpha dropped).
fn png_to_jpeg(png: &[u8]) -> Result<Vec<u8>, Problem> {
    let fail = |e: &dyn std::fmt::Display| Problem::internal("thumbnail as JPEG", e.to_string());
    let mut dec = png::Decoder::new(std::io::Cursor::new(png));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| fail(&e))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| fail(&"image too large"))?];
    let info = reader.next_frame(&mut buf).map_err(|e| fail(&e))?;
    buf.truncate(info.buffer_size());
    let (keep, of) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (1, 2),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (3, 4),
        png::ColorType::Indexed => return Err(fail(&"indexed colour left after expansion")),
    };
    let pixels: Vec<u8> = if keep == of { buf } else { buf.chunks_exact(of).flat_map(|p| p[..keep].to_vec()).collect() };
    let img = crate::render::Rendered { width: info.width, height: info.height, channels: keep as u8, pixels };
    img.encode(Format::Jpeg { quality: 90 }).map_err(|e| fail(&e))
}

/// A thumbnail answer, tagged by its bytes: a series' changes as instances arrive.
fn thumbnail_answer(png: Vec<u8>, (format, multi): (Format, bool), headers: &HeaderMap) -> Result<Response, Problem> {
    let etag = entity_tag(blake3::hash(&png).as_bytes(), &format!("{}|{multi}", format_tag(format)));
    if none_match(headers, &etag) {
        return Ok(not_modified(&etag, REVALIDATE));
    }
    let bytes = match format {
        Format::Png => png,
        Format::Jpeg { .. } => png_to_jpeg(&png)?,
    };
    Ok(validated(image(format, bytes, multi.then(|| multipart::boundary_from(&etag))), &etag, REVALIDATE))
}

async fn series_thumbnail(State(state): State<S>, p: Params, headers: HeaderMap, q: QueryPairs) -> Result<Response, Problem> {
    let form = thumbnail_form(&headers, &q)?;
    let (study, series) = (p.get("study").to_owned(), p.get("series").to_owned());
    tokio::task::spawn_blocking(move || {
        match state.hub.index.series(&series)? {
            Some(s) if s.study_uid == study => {}
            _ => return Err(Problem::not_found("no such series")),
        }
        let png = state.thumbs.series(&state.hub, &study, &series).map_err(|e| Problem::internal("thumbnail", e))?;
        thumbnail_answer(png, form, &headers)
    })
    .await?
}

async fn study_thumbnail(State(state): State<S>, p: Params, headers: HeaderMap, q: QueryPairs) -> Result<Response, Problem> {
    let form = thumbnail_form(&headers, &q)?;
    let study = p.get("study").to_owned();
    tokio::task::spawn_blocking(move || {
        state.hub.index.study(&study)?.ok_or_else(|| Problem::not_found("no such study"))?;
        let png = state.thumbs.study(&state.hub, &study).map_err(|e| Problem::internal("thumbnail", e))?;
        thumbnail_answer(png, form, &headers)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deflated Part 10 file of the four UIDs an index needs.
    fn deflated() -> Vec<u8> {
        use std::io::Write;
        fn el(out: &mut Vec<u8>, g: u16, e: u16, v: &str) {
            let mut v = v.as_bytes().to_vec();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            out.extend(g.to_le_bytes());
            out.extend(e.to_le_bytes());
            out.extend(b"UI");
            out.extend((v.len() as u16).to_le_bytes());
            out.extend(v);
        }
        let mut ds = Vec::new();
        el(&mut ds, 8, 0x16, "1.2.840.10008.5.1.4.1.1.7");
        el(&mut ds, 8, 0x18, "1.2.3.4");
        el(&mut ds, 0x20, 0x0D, "1.2.3");
        el(&mut ds, 0x20, 0x0E, "1.2.3.1");
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&ds).unwrap();
        let mut f = vec![0u8; 128];
        f.extend(b"DICM");
        el(&mut f, 2, 0x10, scan::TS_DEFLATED);
        f.extend(z.finish().unwrap());
        f
    }

    #[test]
    fn the_available_transfer_syntax_goes_in_tag_order() {
        let ts = scan::TS_EXPLICIT_LE;
        let a = r#""00083002":{"vr":"UI","Value":["1.2.840.10008.1.2.1"]}"#;
        let x = r#""00080016":{"vr":"UI","Value":["1.2"]}"#;
        let y = r#""00100010":{"vr":"PN","Value":[{"Alphabetic":"A,\"}\""}]}"#;
        let nested = r#""00081115":{"vr":"SQ","Value":[{"00200000":{"vr":"UL"},"00900000":{"vr":"UL"}}]}"#;
        assert_eq!(with_available_syntax(format!("{{{x},{y}}}"), ts), format!("{{{x},{a},{y}}}"));
        assert_eq!(with_available_syntax(format!("{{{x}}}"), ts), format!("{{{x},{a}}}"));
        assert_eq!(with_available_syntax(format!("{{{y}}}"), ts), format!("{{{a},{y}}}"));
        assert_eq!(with_available_syntax("{}".to_owned(), ts), format!("{{{a}}}"));
        // Keys inside a sequence's items are not the instance's.
        assert_eq!(with_available_syntax(format!("{{{nested},{y}}}"), ts), format!("{{{nested},{a},{y}}}"));
        let held = format!("{{{x},{a},{y}}}");
        assert_eq!(with_available_syntax(held.clone(), "1.2.3"), held, "one it has already is kept");
    }

    #[test]
    fn a_viewport_is_filled_with_the_aspect_ratio_kept() {
        // 512×256 into 100×40: 80×40, its longer side 80.
        assert_eq!(fit_inside(512, 256, 100, 40), 80);
        assert_eq!(fit_inside(256, 512, 100, 40), 40);
        assert_eq!(fit_inside(512, 512, 300, 200), 200);
        assert_eq!(fit_inside(512, 512, 1, 8192), 1);
    }

    #[test]
    fn a_deflated_instance_is_inflated_once_for_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open(dir.path(), Default::default()).unwrap();
        let file = deflated();
        let (_, meta) = hub.ingest(&file, Some("RBD")).unwrap();
        let rec = hub.index.instance(&meta.sop_uid).unwrap().unwrap();
        let cache = MetaCache::new(1 << 20);
        let first = instance_metadata(&hub, &cache, &rec, "http://hub/dicom-web").unwrap().unwrap();
        assert!(first.contains("1.2.3.4"), "{first}");
        // The deflated bytes spoiled in place (same size): a second answer
        // that inflated the file again would fail.
        let path = hub.store.local_path(&ObjectKey::for_uid(&meta.sop_uid)).unwrap();
        let mut spoiled = std::fs::read(&path).unwrap();
        let n = spoiled.len();
        spoiled[n - 8..].fill(0xFF);
        std::fs::write(&path, spoiled).unwrap();
        assert_eq!(instance_metadata(&hub, &cache, &rec, "http://hub/dicom-web").unwrap().unwrap(), first);
        // Without the cache, the spoiled file is read afresh: it would have been re-inflated.
        assert!(instance_metadata(&hub, &MetaCache::new(1 << 20), &rec, "http://hub/dicom-web").is_err());
    }
}
