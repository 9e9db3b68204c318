//! Read access for the trusts' EPRs: FHIR R4 JSON under `/fhir`. A person
//! is a Patient by NHS number (every site's local identity among its
//! identifiers); their studies are ImagingStudy and their signed reports
//! DiagnosticReport, each naming the site that holds it. Searches answer
//! a searchset Bundle; errors an OperationOutcome.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use super::params::{Params, QueryPairs};
use super::S;
use crate::index::model::{PatientRecord, StudyRecord};
use crate::reports::{Report, Status};

pub const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub fn routes() -> Router<S> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/Patient", get(search_patients))
        .route("/fhir/Patient/{nhs}", get(read_patient))
        .route("/fhir/ImagingStudy", get(search_studies))
        .route("/fhir/DiagnosticReport", get(search_reports))
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

/// A failed request, answered as an OperationOutcome.
struct Outcome {
    status: StatusCode,
    code: &'static str,
    text: String,
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        fhir(self.status, json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": self.code, "diagnostics": self.text}]}))
    }
}

fn outcome(status: StatusCode, code: &'static str, text: impl Into<String>) -> Outcome {
    Outcome { status, code, text: text.into() }
}

type Answer = Result<Response, Outcome>;

async fn blocking(f: impl FnOnce() -> Answer + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(o)) => o.into_response(),
        Err(e) => outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", e.to_string()).into_response(),
    }
}

fn internal(e: impl std::fmt::Display) -> Outcome {
    outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", e.to_string())
}

async fn metadata(State(state): State<S>) -> Response {
    let search = |t: &str, params: Value| json!({"type": t, "interaction": [{"code": "search-type"}], "searchParam": params});
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": crate::dates::iso_ms(crate::ingest::now_ms())[..10],
            "kind": "instance",
            "software": {"name": "radhub", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "radhub, the Dorset imaging hub", "url": format!("{}/fhir", state.public_url.trim_end_matches('/'))},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "resource": [
                    {"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": [{"name": "identifier", "type": "token"}]},
                    search("ImagingStudy", json!([{"name": "patient", "type": "reference"}])),
                    search("DiagnosticReport", json!([{"name": "patient", "type": "reference"}])),
                ]
            }]
        }),
    )
}

/// The NHS number a search names: `identifier=https://fhir.nhs.uk/Id/nhs-number|943…`
/// for Patient; `patient=943…`, `patient=Patient/943…` or
/// `patient.identifier=…|943…` for the rest.
fn nhs_of(q: &QueryPairs, param: &str) -> Result<String, Outcome> {
    let raw = q.get(param).or_else(|| q.get("patient.identifier")).ok_or_else(|| outcome(StatusCode::BAD_REQUEST, "required", format!("search by {param}")))?;
    searched_nhs(raw).map_err(|(code, why)| outcome(StatusCode::BAD_REQUEST, code, why))
}

/// The NHS number a search parameter names (`system|value`, a bare
/// value, or `Patient/<nhs>`), or the FHIR issue code and why not.
pub fn searched_nhs(raw: &str) -> Result<String, (&'static str, String)> {
    let v = match raw.split_once('|') {
        Some((system, v)) if system.is_empty() || system == NHS_SYSTEM => v,
        Some((system, _)) => return Err(("not-supported", format!("patients are found by NHS number ({NHS_SYSTEM}), not {system}"))),
        None => raw.strip_prefix("Patient/").unwrap_or(raw),
    };
    crate::nhs::normalise(v).ok_or_else(|| ("value", format!("{v:?} is not a valid NHS number")))
}

fn bundle(state: &S, resources: Vec<Value>) -> Response {
    let base = format!("{}/fhir", state.public_url.trim_end_matches('/'));
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({"fullUrl": format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or("")), "resource": r, "search": {"mode": "match"}}))
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len()});
    // FHIR JSON has no empty arrays.
    if !entry.is_empty() {
        b["entry"] = json!(entry);
    }
    fhir(StatusCode::OK, b)
}

fn site_display(code: &str) -> String {
    match crate::sites::find(code) {
        Some(s) => format!("{} ({code})", s.name),
        None => code.to_owned(),
    }
}

/// DICOM DA → FHIR date, when it is one.
fn date(da: &str) -> Option<String> {
    let d = da.trim();
    (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
}

fn gender(sex: &str) -> &'static str {
    match sex.trim() {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "unknown",
    }
}

/// A DICOM PN as a HumanName; `None` when it names no one.
fn human_name(pn: &str) -> Option<Value> {
    let alphabetic = pn.split('=').next().unwrap_or("");
    let mut parts = alphabetic.split('^');
    let family = parts.next().unwrap_or("").trim();
    let given: Vec<&str> = parts.take(2).map(str::trim).filter(|s| !s.is_empty()).collect();
    let text = alphabetic.split('^').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    let mut n = json!({"use": "official", "text": text});
    if !family.is_empty() {
        n["family"] = json!(family);
    }
    if !given.is_empty() {
        n["given"] = json!(given);
    }
    Some(n)
}

/// The person's records at every site, linked by NHS number.
fn records(state: &S, nhs: &str) -> Result<Vec<PatientRecord>, Outcome> {
    let ix = &state.hub.index;
    let mut out = Vec::new();
    for key in ix.patients_by_nhs(nhs).map_err(internal)? {
        out.extend(ix.patient(&key).map_err(internal)?);
    }
    Ok(out)
}

/// The Patient a person's linked records make (at least one).
pub fn patient(nhs: &str, records: &[PatientRecord]) -> Value {
    let mut identifier = vec![json!({"use": "official", "system": NHS_SYSTEM, "value": nhs})];
    for r in records {
        let mut id = json!({"use": "secondary", "system": format!("urn:radhub:issuer:{}", r.key.issuer)});
        // FHIR JSON has no empty strings: a Patient ID or site left empty is left out.
        if !r.key.patient_id.is_empty() {
            id["value"] = json!(r.key.patient_id);
        }
        let assigner = site_display(r.sites.keys().next().map(String::as_str).unwrap_or(&r.key.issuer));
        if !assigner.is_empty() {
            id["assigner"] = json!({"display": assigner});
        }
        identifier.push(id);
    }
    let first = &records[0];
    let mut p = json!({
        "resourceType": "Patient",
        "id": nhs,
        "identifier": identifier,
        "gender": gender(&first.sex),
    });
    if let Some(n) = human_name(&first.name) {
        p["name"] = json!([n]);
    }
    if let Some(d) = date(&first.birth_date) {
        p["birthDate"] = json!(d);
    }
    p
}

async fn search_patients(State(state): State<S>, q: QueryPairs) -> Response {
    blocking(move || {
        let nhs = nhs_of(&q, "identifier")?;
        let recs = records(&state, &nhs)?;
        Ok(bundle(&state, if recs.is_empty() { vec![] } else { vec![patient(&nhs, &recs)] }))
    })
    .await
}

async fn read_patient(State(state): State<S>, p: Params) -> Response {
    let asked = p.get("nhs").to_owned();
    blocking(move || {
        let nhs = crate::nhs::normalise(&asked).ok_or_else(|| outcome(StatusCode::NOT_FOUND, "not-found", format!("no Patient {asked}")))?;
        let recs = records(&state, &nhs)?;
        if recs.is_empty() {
            return Err(outcome(StatusCode::NOT_FOUND, "not-found", format!("no Patient {nhs}")));
        }
        Ok(fhir(StatusCode::OK, patient(&nhs, &recs)))
    })
    .await
}

/// Every study of the person, at any site, newest first.
fn studies(state: &S, nhs: &str) -> Result<Vec<StudyRecord>, Outcome> {
    let ix = &state.hub.index;
    let mut out = Vec::new();
    for key in ix.patients_by_nhs(nhs).map_err(internal)? {
        for uid in ix.studies_of_patient(&key).map_err(internal)? {
            out.extend(ix.study(&uid).map_err(internal)?.filter(|s| s.site != crate::sites::QUARANTINE));
        }
    }
    out.sort_by(|a, b| (&b.date, &b.time).cmp(&(&a.date, &a.time)));
    Ok(out)
}

fn imaging_study(nhs: &str, s: &StudyRecord) -> Value {
    let site = site_display(&s.site);
    let mut identifier = vec![json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{}", s.uid), "assigner": {"display": site}})];
    if !s.accession_number.trim().is_empty() {
        // Whose number it is: the site's own, or the authority the data names.
        let own = crate::sites::own_accession(&s.site, &s.accession_issuer);
        let issuer = &s.accession_issuer;
        let assigner = if own || issuer.is_empty() {
            site.clone()
        } else if issuer.local.is_empty() {
            issuer.universal.clone()
        } else {
            issuer.local.clone()
        };
        let mut id = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
            "value": s.accession_number.trim(),
            "assigner": {"display": assigner},
        });
        if !issuer.universal.is_empty() && issuer.universal_type.eq_ignore_ascii_case("ISO") {
            id["system"] = json!(format!("urn:oid:{}", issuer.universal));
        }
        identifier.push(id);
    }
    let mut v = json!({
        "resourceType": "ImagingStudy",
        "id": s.uid,
        "identifier": identifier,
        "status": "available",
        "subject": {"reference": format!("Patient/{nhs}")},
        "numberOfSeries": s.series,
        "numberOfInstances": s.instances,
        // Where it is held: its own site, and where radhub knows copies are.
        "location": {"display": site},
        "note": [{"text": format!("Held at {}{}", std::iter::once(s.site.as_str()).chain(s.held_at.iter().map(String::as_str).filter(|h| *h != s.site)).map(site_display).collect::<Vec<_>>().join(", "), if s.is_local() { "; a copy at radhub" } else { "" })}],
    });
    if !s.modalities.is_empty() {
        v["modality"] = json!(s.modalities.iter().map(|m| json!({"system": DCM, "code": m})).collect::<Vec<_>>());
    }
    if let Some(d) = date(&s.date) {
        v["started"] = json!(d);
    }
    if !s.description.trim().is_empty() {
        v["description"] = json!(s.description.trim());
    }
    v
}

async fn search_studies(State(state): State<S>, q: QueryPairs) -> Response {
    blocking(move || {
        let nhs = nhs_of(&q, "patient")?;
        let list = studies(&state, &nhs)?;
        Ok(bundle(&state, list.iter().map(|s| imaging_study(&nhs, s)).collect()))
    })
    .await
}

fn diagnostic_report(nhs: &str, s: &StudyRecord, r: &Report) -> Value {
    let site = site_display(&s.site);
    let mut v = json!({
        "resourceType": "DiagnosticReport",
        "id": format!("report-{}", r.id),
        "identifier": [{"system": "urn:radhub:report", "value": r.id.to_string(), "assigner": {"display": site}}],
        "status": match (r.status, r.addendum_of) {
            (Status::Preliminary, _) => "preliminary",
            (_, Some(_)) => "appended",
            _ => "final",
        },
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "performer": [{"display": r.author}],
        "resultsInterpreter": [{"display": r.author}],
        "imagingStudy": [{"reference": format!("ImagingStudy/{}", s.uid)}],
        "conclusion": r.text,
        "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": base64::engine::general_purpose::STANDARD.encode(r.text.as_bytes()), "title": format!("Report from {site}")}],
    });
    if let Some(t) = r.signed_ms.or(r.preliminary_ms) {
        v["issued"] = json!(crate::dates::iso_ms(t));
    }
    if let Some(d) = date(&s.date) {
        v["effectiveDateTime"] = json!(d);
    }
    v
}

async fn search_reports(State(state): State<S>, q: QueryPairs) -> Response {
    blocking(move || {
        let nhs = nhs_of(&q, "patient")?;
        let mut out = Vec::new();
        for s in studies(&state, &nhs)? {
            // Issued reports only (preliminary or signed): a draft is its author's.
            for r in state.reports.of_study(&s.uid).map_err(internal)?.into_iter().filter(|r| r.status != Status::Draft) {
                out.push(diagnostic_report(&nhs, &s, &r));
            }
        }
        Ok(bundle(&state, out))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_values_become_fhir_ones() {
        assert_eq!(date("19700101").as_deref(), Some("1970-01-01"));
        assert_eq!(date("1970"), None);
        assert_eq!(gender("F"), "female");
        assert_eq!(human_name("SMITH^JANE^A").unwrap()["given"], json!(["JANE", "A"]));
        assert_eq!(human_name("SMITH^JANE").unwrap()["text"], "SMITH JANE");
        assert_eq!(human_name("^^"), None);
    }
}
