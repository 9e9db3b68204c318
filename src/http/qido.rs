//! QIDO-RS (PS3.18 10.6): searches for studies, series and instances, with
//! the matching C-FIND uses (`query::search`), answered from the index.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};

use super::params::{uid_path, Params, QueryPairs};
use super::{Problem, S};
use crate::dicom::json::text_attribute;
use crate::query::rows::{tags, Row};
use crate::query::{self, Key, Level};

pub fn routes() -> Router<S> {
    Router::new()
        .route("/dicom-web/studies", get(studies))
        .route("/dicom-web/series", get(all_series))
        .route("/dicom-web/instances", get(all_instances))
        .route("/dicom-web/studies/{study}/series", get(study_series))
        .route("/dicom-web/studies/{study}/instances", get(study_instances))
        .route("/dicom-web/studies/{study}/series/{series}/instances", get(series_instances))
}

const STUDY_DEFAULT: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    // An accession number is unique only within its issuer: always say which.
    tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
    tags::INSTANCE_AVAILABILITY,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    // A Patient ID is unique only within its issuer: always say which.
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];
const STUDY_ALL: &[Tag] = &[tags::STUDY_DESCRIPTION, tags::INSTITUTION_NAME, tags::SOP_CLASSES_IN_STUDY, tags::OTHER_PATIENT_IDS];
const SERIES_DEFAULT: &[Tag] =
    &[tags::MODALITY, tags::SERIES_DESCRIPTION, tags::SERIES_NUMBER, tags::SERIES_INSTANCE_UID, tags::NUMBER_OF_SERIES_RELATED_INSTANCES];
const SERIES_ALL: &[Tag] = &[tags::BODY_PART_EXAMINED, tags::SERIES_DATE, tags::SERIES_TIME];
const INSTANCE_DEFAULT: &[Tag] = &[
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_AVAILABILITY,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
];
const INSTANCE_ALL: &[Tag] = &[tags::AVAILABLE_TRANSFER_SYNTAX_UID];

async fn studies(s: State<S>, q: QueryPairs) -> Result<Response, Problem> {
    search(s, q, Level::Study, &[], true).await
}
async fn all_series(s: State<S>, q: QueryPairs) -> Result<Response, Problem> {
    search(s, q, Level::Series, &[], true).await
}
async fn all_instances(s: State<S>, q: QueryPairs) -> Result<Response, Problem> {
    search(s, q, Level::Image, &[], true).await
}
async fn study_series(s: State<S>, p: Params, q: QueryPairs) -> Result<Response, Problem> {
    search(s, q, Level::Series, &[(tags::STUDY_INSTANCE_UID, p.get("study"))], false).await
}
async fn study_instances(s: State<S>, p: Params, q: QueryPairs) -> Result<Response, Problem> {
    search(s, q, Level::Image, &[(tags::STUDY_INSTANCE_UID, p.get("study"))], true).await
}
async fn series_instances(s: State<S>, p: Params, q: QueryPairs) -> Result<Response, Problem> {
    let fixed = [(tags::STUDY_INSTANCE_UID, p.get("study")), (tags::SERIES_INSTANCE_UID, p.get("series"))];
    search(s, q, Level::Image, &fixed, false).await
}

/// How deep a level is: study (with its patient) 0, series 1, instance 2.
fn depth(level: Level) -> u8 {
    match level {
        Level::Patient | Level::Study => 0,
        Level::Series => 1,
        Level::Image => 2,
    }
}

/// The depth of an attribute radhub indexes; `None` for one it does not
/// (or one of every level: Instance Availability).
fn attribute_depth(tag: Tag) -> Option<u8> {
    if tag == tags::INSTANCE_AVAILABILITY {
        return None;
    }
    const PATIENT: &[Tag] =
        &[tags::OTHER_PATIENT_IDS, tags::NUMBER_OF_PATIENT_RELATED_STUDIES, tags::NUMBER_OF_PATIENT_RELATED_SERIES, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES];
    [(0, STUDY_DEFAULT), (0, STUDY_ALL), (0, PATIENT), (1, SERIES_DEFAULT), (1, SERIES_ALL), (2, INSTANCE_DEFAULT), (2, INSTANCE_ALL)]
        .into_iter()
        .find(|(_, set)| set.contains(&tag))
        .map(|(d, _)| d)
}

/// A query parameter naming an attribute: a keyword or "GGGGEEEE".
fn attribute(name: &str) -> Option<(Tag, VR)> {
    let dict = dicom_dictionary_std::StandardDataDictionary;
    let entry = if name.len() == 8 && name.bytes().all(|c| c.is_ascii_hexdigit()) {
        let t = u32::from_str_radix(name, 16).ok()?;
        let tag = Tag((t >> 16) as u16, t as u16);
        return Some((tag, dict.by_tag(tag).map_or(VR::UN, |e| exact(e.vr()))));
    } else {
        dict.by_name(name)?
    };
    Some((entry.tag(), exact(entry.vr())))
}

fn exact(v: VirtualVr) -> VR {
    match v {
        VirtualVr::Exact(vr) => vr,
        VirtualVr::Xs => VR::US,
        _ => VR::OW,
    }
}

struct Request {
    keys: Vec<Key>,
    returned: BTreeSet<Tag>,
    limit: Option<usize>,
    offset: usize,
    /// Ask the sites' PACS too (`live=true`; study searches).
    live: bool,
    /// `fuzzymatching=true`: not supported, and the answer says so.
    fuzzy: bool,
}

/// Reads the query: matching keys, `includefield`, `limit`, `offset`.
fn parse(q: &QueryPairs, level: Level, fixed: &[(Tag, &str)], with_parents: bool) -> Result<Request, Problem> {
    let mut keys: Vec<Key> = Vec::new();
    let mut returned: BTreeSet<Tag> = BTreeSet::new();
    let (mut limit, mut offset, mut all, mut live, mut fuzzy) = (None, 0, false, false, false);
    let number = |k: &str, v: &str| v.parse::<usize>().map_err(|_| Problem::bad_request(format!("{k} must be a whole number, not {v:?}")));
    for (k, v) in &q.0 {
        match k.as_str() {
            "limit" => limit = Some(number(k, v)?),
            "offset" => offset = number(k, v)?,
            "fuzzymatching" => fuzzy = v.trim().eq_ignore_ascii_case("true"),
            "live" => live = v == "true",
            "includefield" => {
                for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if f == "all" {
                        all = true;
                    } else {
                        let (tag, _) = attribute(f).ok_or_else(|| Problem::bad_request(format!("includefield: unknown attribute {f:?}")))?;
                        // Attributes of a level below the one searched are not
                        // returned (PS3.18 10.6.3.3.1, 10.6.3.3.2).
                        if attribute_depth(tag).is_none_or(|d| d <= depth(level)) {
                            returned.insert(tag);
                        }
                    }
                }
            }
            _ => {
                let (tag, vr) = match k.split_once('.') {
                    // Sequence matching (PS3.18 8.3.4.1): the issuer of the accession number.
                    Some((seq, item)) => match (attribute(seq), attribute(item)) {
                        (Some((s, _)), Some((t, vr))) if s == tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE && tags::ACCESSION_ISSUER_ITEM.contains(&t) => (t, vr),
                        _ => return Err(Problem::bad_request(format!("{k}: of sequence attributes only IssuerOfAccessionNumberSequence's are matched"))),
                    },
                    None => match attribute(k) {
                        Some((t, _)) if tags::ACCESSION_ISSUER_ITEM.contains(&t) => {
                            return Err(Problem::bad_request(format!(
                                "{k} is an attribute of IssuerOfAccessionNumberSequence: name it as IssuerOfAccessionNumberSequence.{k}"
                            )))
                        }
                        Some(a) => a,
                        None => return Err(Problem::bad_request(format!("unknown query parameter or attribute {k:?}"))),
                    },
                };
                let mut value = v.trim().to_owned();
                if vr == VR::UI {
                    // A UID list: repeated keys or commas (PS3.18 8.3.4.1), as C-FIND's backslashes.
                    value = value.replace(',', "\\");
                    if let Some(prev) = keys.iter().find(|x| x.tag == tag) {
                        value = format!("{}\\{value}", prev.value);
                    }
                }
                keys.retain(|x| x.tag != tag);
                keys.push(Key { tag, vr, value });
            }
        }
    }
    for &(tag, uid) in fixed {
        keys.retain(|x| x.tag != tag);
        keys.push(Key { tag, vr: VR::UI, value: uid.to_owned() });
    }
    let parents = with_parents || all;
    let mut add = |set: &[Tag]| returned.extend(set.iter().copied());
    match level {
        Level::Study | Level::Patient => add(STUDY_DEFAULT),
        Level::Series => add(SERIES_DEFAULT),
        Level::Image => add(INSTANCE_DEFAULT),
    }
    if parents && level != Level::Study {
        add(STUDY_DEFAULT);
        if level == Level::Image {
            add(SERIES_DEFAULT);
        }
    }
    if all {
        add(STUDY_ALL);
        if level != Level::Study {
            add(SERIES_ALL);
        }
        if level == Level::Image {
            add(INSTANCE_ALL);
        }
    }
    returned.extend(keys.iter().map(|k| if tags::ACCESSION_ISSUER_ITEM.contains(&k.tag) { tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE } else { k.tag }));
    // Written apart: Specific Character Set when needed, RetrieveURL always.
    returned.remove(&tags::SPECIFIC_CHARACTER_SET);
    returned.remove(&Tag(0x0008, 0x1190));
    if live && level != Level::Study {
        return Err(Problem::bad_request("live=true asks the sites' PACS for studies: use it with /studies"));
    }
    Ok(Request { keys, returned, limit, offset, live, fuzzy })
}

async fn search(State(state): State<S>, q: QueryPairs, level: Level, fixed: &[(Tag, &str)], with_parents: bool) -> Result<Response, Problem> {
    let req = parse(&q, level, fixed, with_parents)?;
    let max = state.limits.max_results;
    let limit = req.limit.unwrap_or(max).min(max);
    // Warn only when the server's cap, not the client's own limit, cut the answer.
    let capped = req.limit.is_none_or(|l| l > max);
    let base = state.dicomweb_base();
    let st = state.clone();
    let live = req.live.then(|| req.keys.iter().map(|k| (k.tag, k.vr, k.value.clone())).collect::<Vec<_>>());
    // What a site's PACS is not asked (the accession's issuer) is matched here.
    let issuer_keys: Vec<Key> = req.keys.iter().filter(|k| tags::ACCESSION_ISSUER_ITEM.contains(&k.tag)).cloned().collect();
    let returned = req.returned.clone();
    let fuzzy = req.fuzzy;
    let (mut rows, more, held) = tokio::task::spawn_blocking(move || {
        // One more than the page, to know whether more follow.
        let mut page = query::search(st.hub.index.as_ref(), level, &req.keys, req.offset, Some(limit.saturating_add(1)))?;
        let more = page.len() > limit;
        page.truncate(limit);
        let held: BTreeSet<String> = page.iter().filter_map(|r| r.get(&tags::STUDY_INSTANCE_UID).cloned()).collect();
        Ok::<_, Problem>((page.into_iter().map(|r| encode(&r, &req.returned, &base)).collect::<Vec<String>>(), more, held))
    })
    .await??;
    let mut warnings = Vec::new();
    if fuzzy {
        // PS3.18 8.3.4.2: the words are the standard's; <service> is the base URI.
        // (Person names already match case-insensitively: PS3.4 C.2.2.2.4.)
        warnings.push(format!("299 {}: \"The fuzzymatching parameter is not supported. Only literal matching has been performed.\"", state.dicomweb_base()));
    }
    if more && capped {
        warnings.push("299 radhub \"There are more matches than the server returns at once; use offset to page\"".to_owned());
    }
    if let (Some(keys), Some(fed)) = (live, state.federation.clone()) {
        // The sites' answers for what the index did not hold, each with its site's AE.
        let found = fed.live_studies(&keys, LIVE_TIMEOUT, limit).await;
        let base = state.dicomweb_base();
        let mut seen = held;
        for s in found.studies {
            if rows.len() >= limit {
                break;
            }
            if !seen.insert(s.study.meta.study_uid.clone()) {
                continue;
            }
            let row = live_row(&s);
            if !query::row_matches(&issuer_keys, &row) {
                continue;
            }
            rows.push(encode(&row, &returned, &base));
            fed.learn(s);
        }
        for (site, why) in found.silent {
            warnings.push(format!("299 radhub \"site {site} did not answer: {}\"", why.replace('"', "'")));
        }
    }
    let mut resp = ([(header::CONTENT_TYPE, "application/dicom+json")], format!("[{}]", rows.join(","))).into_response();
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

/// How long a live query waits for each site's PACS.
const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A site's answer as a result row: retrieved through radhub, held at the site.
fn live_row(s: &crate::federation::live::LiveStudy) -> Row {
    let m = &s.study.meta;
    let mut r = Row::new();
    for (t, v) in [
        (tags::PATIENT_NAME, &m.patient_name),
        (tags::PATIENT_ID, &m.patient_id),
        (tags::ISSUER_OF_PATIENT_ID, &m.issuer),
        (tags::PATIENT_BIRTH_DATE, &m.patient_birth_date),
        (tags::PATIENT_SEX, &m.patient_sex),
        (tags::STUDY_INSTANCE_UID, &m.study_uid),
        (tags::STUDY_DATE, &m.study_date),
        (tags::STUDY_TIME, &m.study_time),
        (tags::ACCESSION_NUMBER, &m.accession_number),
        (tags::STUDY_ID, &m.study_id),
        (tags::REFERRING_PHYSICIAN_NAME, &m.referring_physician_name),
        (tags::STUDY_DESCRIPTION, &m.study_description),
        (tags::INSTITUTION_NAME, &m.institution_name),
        (tags::MODALITIES_IN_STUDY, &s.study.modalities),
        (tags::RETRIEVE_AE_TITLE, &s.ae_title),
        (tags::LOCAL_NAMESPACE_ENTITY_ID, &m.accession_issuer.local),
        (tags::UNIVERSAL_ENTITY_ID, &m.accession_issuer.universal),
        (tags::UNIVERSAL_ENTITY_ID_TYPE, &m.accession_issuer.universal_type),
    ] {
        r.insert(t, v.clone());
    }
    r.insert(tags::INSTANCE_AVAILABILITY, "NEARLINE".into());
    if let Some(n) = s.study.series {
        r.insert(tags::NUMBER_OF_STUDY_RELATED_SERIES, n.to_string());
    }
    if let Some(n) = s.study.instances {
        r.insert(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, n.to_string());
    }
    r
}

/// Issuer of Accession Number Sequence: one item of what the row holds, or
/// none (an empty sequence) when the row holds no issuer.
fn accession_issuer(o: &mut String, row: &Row) {
    let mut item = String::new();
    for t in tags::ACCESSION_ISSUER_ITEM {
        if let Some(v) = row.get(&t).filter(|v| !v.is_empty()) {
            item.push(if item.is_empty() { '{' } else { ',' });
            let vr = if t == tags::UNIVERSAL_ENTITY_ID_TYPE { "CS" } else { "UT" };
            text_attribute(&mut item, u32::from(t.0) << 16 | u32::from(t.1), vr, v);
        }
    }
    if item.is_empty() {
        o.push_str("\"00080051\":{\"vr\":\"SQ\"}");
    } else {
        o.push_str(&format!("\"00080051\":{{\"vr\":\"SQ\",\"Value\":[{item}}}]}}"));
    }
}

/// One result: the returned attributes the row holds (empty if not), and
/// its RetrieveURL, as DICOM JSON text.
fn encode(row: &Row, returned: &BTreeSet<Tag>, base: &str) -> String {
    let mut o = String::from("{");
    let dict = dicom_dictionary_std::StandardDataDictionary;
    let attr = |o: &mut String, tag: u32, vr: &str, value: &str| {
        if o.len() > 1 {
            o.push(',');
        }
        text_attribute(o, tag, vr, value);
    };
    if row.values().any(|v| !v.is_ascii()) {
        attr(&mut o, 0x0008_0005, "CS", "ISO_IR 192");
    }
    for &tag in returned {
        if tag == tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE {
            if o.len() > 1 {
                o.push(',');
            }
            accession_issuer(&mut o, row);
            continue;
        }
        let vr = dict.by_tag(tag).map_or(VR::UN, |e| exact(e.vr()));
        let value = match tag {
            tags::INSTANCE_AVAILABILITY => row.get(&tag).map_or("ONLINE", String::as_str),
            t => row.get(&t).map_or("", String::as_str),
        };
        attr(&mut o, u32::from(tag.0) << 16 | u32::from(tag.1), vr.to_string(), value);
    }
    let mut url = format!("{base}/studies/{}", uid_path(row.get(&tags::STUDY_INSTANCE_UID).map_or("", String::as_str)));
    if let Some(se) = row.get(&tags::SERIES_INSTANCE_UID) {
        url.push_str(&format!("/series/{}", uid_path(se)));
        if let Some(i) = row.get(&tags::SOP_INSTANCE_UID) {
            url.push_str(&format!("/instances/{}", uid_path(i)));
        }
    }
    attr(&mut o, 0x0008_1190, "UR", &url);
    o.push('}');
    o
}
