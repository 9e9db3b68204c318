//! WADO-RS (PS3.18 10.4): instances, metadata, bulk data, frames, rendered
//! images and thumbnails of studies, series and instances.
//!
//! Instances go out as stored unless the client asks for another transfer
//! syntax (then radhub decodes to an uncompressed one, or answers 406).
//! Metadata is encoded from each file's bytes up to its pixel data, which
//! is never read for it.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
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

/// The transfer syntax an Accept header asks instances in: `None` for as
/// stored. 406 when it asks for nothing radhub serves instances as.
fn wanted_syntax(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    for m in multipart::accept(accept) {
        let ok = match m.mime.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => m.param("type").is_none_or(|t| t == "application/dicom"),
            "application/dicom" => true,
            _ => false,
        };
        if ok {
            return Ok(m.param("transfer-syntax").filter(|t| *t != "*").map(str::to_owned));
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "instances are served as multipart/related; type=\"application/dicom\""))
}

async fn retrieve(State(state): State<S>, Extension(who): Extension<Principal>, p: Params, headers: HeaderMap) -> Result<Response, Problem> {
    let syntax = wanted_syntax(&headers)?;
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
    let list = tokio::task::spawn_blocking(move || instances(&st.hub, &p)).await??;
    if let Some(ts) = &syntax {
        // radhub decodes to little endian uncompressed syntaxes; it does not
        // compress. (Instances still at their site are judged once here.)
        if !TRANSCODE_TO.contains(&ts.as_str()) && list.iter().any(|i| i.local && &i.transfer_syntax != ts) {
            return Err(Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("instances can be had as stored (transfer-syntax=*) or uncompressed little endian, not as {ts}"),
            ));
        }
    }
    // Held only at its site: fetched, and each instance sent once it is here.
    let (mut arrivals, first) = super::fetching::Arrivals::open(&state, &study, (!series.is_empty()).then_some(series.as_str()), list).await?;
    let boundary = multipart::new_boundary();
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
            let (st, ts) = (state.clone(), syntax.clone());
            // As stored: streamed from its file in steps. Transcoded: whole.
            let opened = tokio::task::spawn_blocking(move || part_source(&st.hub, &rec, ts.as_deref())).await;
            let (source, ts) = match opened {
                Ok(Ok(p)) => p,
                Ok(Err((asked, e))) => {
                    tracing::warn!(%sop, error = %e, "instance left out of a WADO-RS answer");
                    if asked.is_none() {
                        // A stored file that cannot be read: end the body short, so the client sees a broken answer.
                        send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                    continue;
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
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response())
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
            let bytes = read(hub, &rec.sop_uid).map_err(|p| (None, p.to_string()))?;
            let out = crate::dimse::transcode::to_native(&bytes, ts).map_err(|e| (Some(ts.to_owned()), e))?;
            Ok((PartSource::Bytes(Some(out)), ts.to_owned()))
        }
        _ => {
            let r = hub.file_reader(&rec.sop_uid).map_err(|e| (None, e.to_string()))?.ok_or((None, "file missing".to_owned()))?;
            Ok((PartSource::File(r), rec.transfer_syntax.clone()))
        }
    }
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
            return Ok(Bytes::from(format!("[{one}]")));
        }
        let study = state.hub.index.study(study)?.ok_or_else(|| Problem::not_found("no such study"))?;
        if !series.is_empty() {
            return series_metadata(&state, &study, series, &base, fresh);
        }
        let mut all = state.hub.index.series_of(&study.uid)?;
        sort_series(&mut all);
        let parts = all.iter().map(|s| series_metadata(&state, &study, &s.uid, &base, fresh)).collect::<Result<Vec<Bytes>, Problem>>()?;
        // Each part is a JSON array: join their contents.
        let inner: Vec<&[u8]> = parts.iter().filter(|b| b.len() > 2).map(|b| &b[1..b.len() - 1]).collect();
        Ok::<_, Problem>(Bytes::from([b"[".as_slice(), &inner.join(b",".as_slice()), b"]"].concat()))
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
            return Ok(Some(json::dataset(&src)));
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
    let out = json::dataset(&src);
    if deflated {
        cache.put(&cache_key, (0, rec.file_size, 0), Bytes::from(out.clone()));
    }
    Ok(Some(out))
}

async fn bulk(State(state): State<S>, p: Params) -> Result<Response, Problem> {
    let path = p.get("path").to_owned();
    if path.len() > 200 || !path.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.') {
        return Err(Problem::bad_request("a bulk data path is tags and item numbers joined by '.'"));
    }
    tokio::task::spawn_blocking(move || {
        let rec = instances(&state.hub, &p)?.remove(0);
        let whole = read(&state.hub, &rec.sop_uid)?;
        let s = scan::scan(&whole, &[]).map_err(|e| Problem::internal("reading bulk data", e))?;
        let t = scan::tree(&s.dataset, s.encoding).map_err(|e| Problem::internal("reading bulk data", e))?;
        let b = multipart::new_boundary();
        let mut body = Vec::new();
        let kind = match json::bulk_value(&s.dataset, &t.nodes, &path) {
            Some(json::Bulk::Bytes(v, vr)) => {
                // Bulk data goes out little endian, as in the DICOM JSON (PS3.18 F.2.7).
                body.extend(multipart::part_head(&b, "application/octet-stream", &[]));
                body.extend_from_slice(&json::little_endian(v, &vr, s.encoding));
                "application/octet-stream"
            }
            Some(json::Bulk::Fragments(frags)) => {
                let media = compressed_media(&rec.transfer_syntax);
                for f in frags {
                    body.extend(multipart::part_head(&b, &format!("{media}; transfer-syntax={}", rec.transfer_syntax), &[]));
                    body.extend_from_slice(f);
                }
                media
            }
            None => return Err(Problem::not_found(format!("no bulk data at {path}"))),
        };
        body.extend(multipart::closing(&b));
        Ok(([(header::CONTENT_TYPE, multipart::related(&b, kind))], body).into_response())
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
        return Ok(if native_stored { FrameForm::Native } else { FrameForm::Stored });
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

async fn frames(State(state): State<S>, p: Params, headers: HeaderMap) -> Result<Response, Problem> {
    let list = frame_list(p.get("frames"))?;
    tokio::task::spawn_blocking(move || {
        let rec = instances(&state.hub, &p)?.remove(0);
        if !rec.has_pixel_data {
            return Err(Problem::not_found("the instance has no pixel data"));
        }
        let form = frame_form(&headers, &rec.transfer_syntax)?;
        let inst = crate::render::Instance::open(&read(&state.hub, &rec.sop_uid)?).map_err(render_problem)?;
        let b = multipart::new_boundary();
        let mut body = Vec::new();
        // Native frames go out little endian (PS3.18's default for octet-stream).
        let (media, ts) = match form {
            FrameForm::Native => ("application/octet-stream", scan::TS_EXPLICIT_LE),
            FrameForm::Stored => (compressed_media(&rec.transfer_syntax), rec.transfer_syntax.as_str()),
        };
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
            body.extend(multipart::part_head(&b, &format!("{media}; transfer-syntax={ts}"), &[]));
            body.extend_from_slice(&bytes);
        }
        body.extend(multipart::closing(&b));
        Ok(([(header::CONTENT_TYPE, multipart::related(&b, media))], body).into_response())
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

/// The image format an Accept header asks for (JPEG unless PNG comes first).
fn image_format(headers: &HeaderMap) -> Result<Format, Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(Format::Jpeg { quality: 90 }) };
    for m in multipart::accept(accept) {
        match m.mime.as_str() {
            "image/jpeg" | "image/*" | "*/*" => return Ok(Format::Jpeg { quality: 90 }),
            "image/png" => return Ok(Format::Png),
            _ => {}
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "rendered images are image/jpeg or image/png"))
}

/// Rendering parameters of PS3.18 8.3.5.1: `window=center,width[,function]`,
/// `viewport=width,height` (fit inside), `quality=1..100`.
fn rendering(q: &QueryPairs, mut format: Format) -> Result<(Option<Window>, Option<u32>, Format), Problem> {
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
            [w, h] if (1..=8192).contains(w) && (1..=8192).contains(h) => viewport = Some(*w.max(h)),
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

async fn rendered(state: State<S>, p: Params, headers: HeaderMap, q: QueryPairs) -> Result<Response, Problem> {
    let format = image_format(&headers)?;
    let (window, viewport, format) = rendering(&q, format)?;
    render(state, p, window, viewport, format).await
}

async fn rendered_thumbnail(state: State<S>, p: Params, headers: HeaderMap, q: QueryPairs) -> Result<Response, Problem> {
    let format = image_format(&headers)?;
    let (window, viewport, format) = rendering(&q, format)?;
    render(state, p, window, Some(viewport.unwrap_or(crate::thumbs::SIZE)), format).await
}

async fn render(State(state): State<S>, p: Params, window: Option<Window>, viewport: Option<u32>, format: Format) -> Result<Response, Problem> {
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
        let inst = crate::render::Instance::open(&read(&state.hub, &rec.sop_uid)?).map_err(render_problem)?;
        if frame > inst.frames() {
            return Err(Problem::not_found(format!("frame {frame} of {}", inst.frames())));
        }
        let mut img = inst.display(frame - 1, window).map_err(render_problem)?;
        if let Some(max) = viewport {
            img = img.fit(max);
        }
        let bytes = img.encode(format).map_err(render_problem)?;
        Ok(image(format, bytes))
    })
    .await?
}

fn image(format: Format, bytes: Vec<u8>) -> Response {
    let ct = match format {
        Format::Png => "image/png",
        Format::Jpeg { .. } => "image/jpeg",
    };
    ([(header::CONTENT_TYPE, ct)], bytes).into_response()
}

async fn series_thumbnail(State(state): State<S>, p: Params) -> Result<Response, Problem> {
    let (study, series) = (p.get("study").to_owned(), p.get("series").to_owned());
    tokio::task::spawn_blocking(move || {
        match state.hub.index.series(&series)? {
            Some(s) if s.study_uid == study => {}
            _ => return Err(Problem::not_found("no such series")),
        }
        let png = state.thumbs.series(&state.hub, &study, &series).map_err(|e| Problem::internal("thumbnail", e))?;
        Ok(image(Format::Png, png))
    })
    .await?
}

async fn study_thumbnail(State(state): State<S>, p: Params) -> Result<Response, Problem> {
    let study = p.get("study").to_owned();
    tokio::task::spawn_blocking(move || {
        state.hub.index.study(&study)?.ok_or_else(|| Problem::not_found("no such study"))?;
        let png = state.thumbs.study(&state.hub, &study).map_err(|e| Problem::internal("thumbnail", e))?;
        Ok(image(Format::Png, png))
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
