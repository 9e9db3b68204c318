//! Studies with the site and patient (issuer and ID) holding each, newest
//! first, and the reporting worklist: read lazily from the index, so an
//! answer of 100 studies reads about 100, however many are held.

use std::collections::HashMap;

use axum::extract::{Extension, State};
use axum::Json;
use serde_json::{json, Value};

use super::{blocking, limit, report_problem, text};
use crate::auth::{Principal, Role};
use crate::http::params::{Params, QueryPairs};
use crate::http::{Problem, S};
use crate::index::matching::DateRange;
use crate::index::model::{sort_series, StudyRecord};
use crate::index::StudyFilter;

pub fn study_json(state: &S, s: &StudyRecord) -> Result<Value, Problem> {
    let reported = state.reports.is_reported(&s.uid).map_err(report_problem)?;
    let claim = state.claims.get(&s.uid).map_err(super::claim_problem)?;
    // The RIS's order for it: the same accession, issued by the same site.
    let order = match s.accession_number.trim() {
        "" => None,
        _ if !crate::sites::own_accession(&s.site, &s.accession_issuer) => None,
        acc => state.orders.get(&s.site, acc).map_err(|e| Problem::internal("orders", e))?,
    };
    // An order naming someone else under this accession is never shown as
    // this patient's (one naming a record merged into this one is).
    let (order, order_conflict) = match order {
        Some(o) if state.hub.index.current_key(&o.patient())? != s.patient => {
            (None, Some(format!("the RIS order for accession {} names patient {}/{}, not this study's", o.accession, o.issuer, o.patient_id)))
        }
        o => (o, None),
    };
    Ok(json!({
        "uid": s.uid,
        "site": s.site,
        "patient": patient_json(s),
        "date": s.date,
        "time": s.time,
        "accession_number": s.accession_number,
        "accession_issuer": s.accession_issuer.local,
        "description": s.description,
        "modalities": s.modalities,
        "referring_physician": s.referring_physician_name,
        "institution": s.institution_name,
        "series": s.series,
        "instances": s.instances,
        // Where it is held: the sites' PACS, and how much of it radhub has.
        "held_at": s.held_at,
        "local_instances": s.local_instances,
        "local": s.is_local(),
        "reported": reported,
        "order": order.as_ref().map(order_json),
        "order_conflict": order_conflict,
        // Who is reporting it, while their claim is live.
        "claim": claim.as_ref().map(super::claims::claim_json),
        "quarantined": s.site == crate::sites::QUARANTINE,
    }))
}

pub fn order_json(o: &crate::orders::Order) -> Value {
    json!({
        "site": o.site,
        "accession": o.accession,
        "patient": {"issuer": o.issuer, "patient_id": o.patient_id, "name": o.patient_name},
        "procedure": o.procedure,
        "priority": o.priority,
        "indication": o.indication,
        "ordering_clinician": o.ordering_clinician,
        "received": crate::dates::iso_ms(o.received_ms),
    })
}

/// The sites' open orders, most urgent first then oldest: each with its
/// study once it has arrived (`study`: null while waiting for images) and
/// whether that study is reported.
pub async fn orders(State(state): State<S>) -> Result<Json<Vec<Value>>, Problem> {
    blocking(move || {
        let open = state.orders.open().map_err(|e| Problem::internal("orders", e))?;
        let mut out = Vec::with_capacity(open.len());
        for o in &open {
            let f = crate::index::StudyFilter { accession: Some(o.accession.clone()), site: Some(o.site.clone()), ..Default::default() };
            let study =
                state.hub.index.find_studies(&f).filter_map(Result::ok).find(|s| s.site == o.site && crate::sites::own_accession(&s.site, &s.accession_issuer));
            // The same accession under another patient is a conflict for a person, not a match.
            let current = state.hub.index.current_key(&o.patient())?;
            let conflict = study.as_ref().filter(|s| s.patient != current).map(|s| s.uid.clone());
            let study = study.filter(|_| conflict.is_none());
            let reported = match &study {
                Some(s) => state.reports.is_reported(&s.uid).map_err(report_problem)?,
                None => false,
            };
            let mut v = order_json(o);
            v["study"] = json!(study.as_ref().map(|s| s.uid.clone()));
            v["reported"] = json!(reported);
            v["conflict"] = json!(conflict.map(|uid| format!("study {uid} has this accession under another patient")));
            out.push(v);
        }
        Ok(out)
    })
    .await
    .map(Json)
}

/// The study's patient as the site holding the study knows them.
fn patient_json(s: &StudyRecord) -> Value {
    let key = &s.patient;
    json!({"issuer": key.issuer, "patient_id": key.patient_id, "name": s.patient_name, "birth_date": s.patient_birth_date, "sex": s.patient_sex})
}

/// Whether `who` may see a study: quarantined ones are for admins.
pub fn visible(who: &Principal, s: &StudyRecord) -> bool {
    s.site != crate::sites::QUARANTINE || who.role == Role::Admin
}

fn study_filter(q: &QueryPairs, who: &Principal) -> Result<StudyFilter, Problem> {
    Ok(StudyFilter {
        quarantine: who.role == Role::Admin,
        patient_id: text(q, "patient_id"),
        issuer: text(q, "issuer"),
        patient_name: text(q, "name"),
        accession: text(q, "accession_number"),
        date: text(q, "date").map(|d| DateRange::parse(&d).map_err(|e| Problem::bad_request(format!("date: {e}")))).transpose()?,
        modality: text(q, "modality"),
        site: text(q, "site"),
        description: text(q, "description"),
        ..Default::default()
    })
}

pub fn newest_first(mut v: Vec<StudyRecord>) -> Vec<StudyRecord> {
    v.sort_by(|a, b| (&b.date, &b.time, &b.uid).cmp(&(&a.date, &a.time, &a.uid)));
    v
}

pub async fn studies(State(state): State<S>, Extension(who): Extension<Principal>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let f = study_filter(&q, &who)?;
    let n = limit(&q, 100)?;
    blocking(move || {
        let found = state.hub.index.find_studies(&f).take(n).collect::<Result<Vec<_>, _>>()?;
        found.iter().map(|s| study_json(&state, s)).collect()
    })
    .await
    .map(Json)
}

pub async fn study(State(state): State<S>, Extension(who): Extension<Principal>, p: Params) -> Result<Json<Value>, Problem> {
    let uid = p.get("study").to_owned();
    blocking(move || {
        let s = state.hub.index.study(&uid)?.filter(|s| visible(&who, s)).ok_or_else(|| Problem::not_found("no such study"))?;
        let mut v = study_json(&state, &s)?;
        let mut series = state.hub.index.series_of(&uid)?;
        sort_series(&mut series);
        let instances = state.hub.index.instances_of(&uid, None)?;
        // Each series' first image (lowest Instance Number), so that a viewer
        // can show it before the series' metadata has arrived.
        let mut first: HashMap<&str, &crate::index::model::InstanceRecord> = HashMap::new();
        for i in instances.iter().filter(|i| i.has_pixel_data) {
            let e = first.entry(i.series_uid.as_str()).or_insert(i);
            if (i.number.unwrap_or(i64::MAX), &i.sop_uid) < (e.number.unwrap_or(i64::MAX), &e.sop_uid) {
                *e = i;
            }
        }
        v["series_list"] = json!(series
            .iter()
            .map(|x| json!({"uid": x.uid, "number": x.number, "modality": x.modality, "description": x.description, "body_part": x.body_part_examined,
                "instances": x.instances, "first_image": first.get(x.uid.as_str()).map(|i| &i.sop_uid)}))
            .collect::<Vec<_>>());
        // UIDs PS3.5 9.1 does not allow, held as the archive sent them.
        let odd: Vec<String> = std::iter::once(s.uid.clone())
            .chain(series.iter().map(|x| x.uid.clone()))
            .chain(instances.iter().map(|i| i.sop_uid.clone()))
            .filter(|u| !crate::dicom::scan::uid_is_conformant(u))
            .collect();
        v["nonconformant_uids"] = json!(odd);
        let reports: Vec<_> =
            state.reports.of_study(&uid).map_err(report_problem)?.into_iter().filter(|r| r.readable_by(&who.user, who.role == Role::Admin)).collect();
        v["reports"] = json!(reports);
        Ok(v)
    })
    .await
    .map(Json)
}
