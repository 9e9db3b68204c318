//! Patients: each trust's record, keyed by (issuer, Patient ID), and the
//! records linked into one person by NHS number; a record whose link is in
//! conflict says so and stands alone until an admin decides.

use std::collections::BTreeMap;

use axum::extract::{Extension, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::studies::{newest_first, study_json};
use super::{blocking, limit, text};
use crate::auth::{Principal, Role};
use crate::http::params::{Params, QueryPairs};
use crate::http::{Problem, S};
use crate::index::link::LinkConflict;
use crate::index::model::PatientRecord;
use crate::index::PatientFilter;

#[derive(Serialize)]
pub struct SiteRecord {
    issuer: String,
    patient_id: String,
    /// The sites holding this patient's studies.
    sites: Vec<String>,
    name: String,
    birth_date: String,
    sex: String,
    studies: u32,
    /// The NHS number the data names, when it is not (yet) the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    nhs_in_data: Option<String>,
    /// Why the record is not linked as its data asks, for an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    conflict: Option<LinkConflict>,
}

pub fn site_record(p: &PatientRecord, conflicts: &[LinkConflict]) -> SiteRecord {
    SiteRecord {
        issuer: p.key.issuer.clone(),
        patient_id: p.key.patient_id.clone(),
        sites: p.sites.keys().cloned().collect(),
        name: p.name.clone(),
        birth_date: p.birth_date.clone(),
        sex: p.sex.clone(),
        studies: p.studies,
        nhs_in_data: p.nhs_in_data.clone().filter(|n| p.nhs_number.as_ref() != Some(n)),
        conflict: conflicts.iter().find(|c| c.patient == p.key).cloned(),
    }
}

/// Patients, each site's records joined by NHS number (one entry per NHS
/// number; records without a link stand alone).
pub async fn patients(State(state): State<S>, Extension(who): Extension<Principal>, q: QueryPairs) -> Result<Json<Vec<Value>>, Problem> {
    let f = PatientFilter {
        patient_id: text(&q, "patient_id"),
        issuer: text(&q, "issuer"),
        patient_name: text(&q, "name"),
        nhs_number: text(&q, "nhs_number"),
        site: text(&q, "site"),
        // Quarantined records are for admins to review.
        quarantine: who.role == Role::Admin,
    };
    let n = limit(&q, 100)?;
    blocking(move || {
        let ix = &state.hub.index;
        let found = ix.find_patients(&f).take(n).collect::<Result<Vec<_>, _>>()?;
        let conflicts = ix.link_conflicts()?;
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
            for key in ix.patients_by_nhs(&nhs)? {
                if !seen.iter().any(|p| p.key == key) {
                    seen.extend(ix.patient(&key)?);
                }
            }
            out.push(json!({"nhs_number": nhs, "records": seen.iter().map(|p| site_record(p, &conflicts)).collect::<Vec<_>>()}));
        }
        out.extend(alone.iter().map(|p| json!({"nhs_number": null, "records": [site_record(p, &conflicts)]})));
        Ok(out)
    })
    .await
    .map(Json)
}

/// One person's record across every site, by NHS number: each linked
/// record and every study, newest first, with the site that holds it.
pub async fn linked_patient(State(state): State<S>, p: Params) -> Result<Json<Value>, Problem> {
    let asked = p.get("nhs");
    // "943 476 5919" is looked up as the index holds it: "9434765919".
    let nhs = crate::nhs::normalise(asked).ok_or_else(|| Problem::bad_request(format!("{asked:?} is not a valid NHS number (or is a placeholder)")))?;
    blocking(move || {
        let ix = &state.hub.index;
        let keys = ix.patients_by_nhs(&nhs)?;
        if keys.is_empty() {
            return Err(Problem::not_found("no patient linked by that NHS number"));
        }
        let conflicts = ix.link_conflicts()?;
        let mut records = Vec::new();
        let mut studies = Vec::new();
        for key in &keys {
            if let Some(r) = ix.patient(key)? {
                records.push(site_record(&r, &conflicts));
            }
            for uid in ix.studies_of_patient(key)? {
                studies.extend(ix.study(&uid)?);
            }
        }
        let studies: Vec<Value> = newest_first(studies).iter().map(|s| study_json(&state, s)).collect::<Result<_, _>>()?;
        Ok(json!({"nhs_number": nhs, "records": records, "studies": studies}))
    })
    .await
    .map(Json)
}
