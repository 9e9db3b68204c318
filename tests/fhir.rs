//! FHIR R4 read access for EPRs, checked by a FHIR library
//! (fhir.resources 6.4, FHIR 4.0.1): a person found by NHS number with
//! every site's identity, their studies from every site, their signed
//! reports; each answer valid R4, each naming the site that holds it.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{get, output, request, user_token, Server};

fn valid(v: &Value, dir: &std::path::Path, what: &str) {
    let f = dir.join(format!("{what}.json"));
    std::fs::write(&f, v.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/fhir_validate.py");
    let (ok, out) = output(Command::new("python3").args([script, f.to_str().unwrap()]));
    assert!(ok && out.starts_with("valid"), "{what} is not valid FHIR R4: {out}\n{v}");
}

#[test]
fn an_epr_reads_a_patients_studies_and_reports_from_every_site() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "12", "--max-slices", "1", "--ct-size", "32"]);
    let clin = user_token(data.path(), "clin1", "clinician");
    let rad = user_token(data.path(), "rad1", "radiologist");
    let server = Server::start_in(data, &[]);
    let base = server.http();
    let dir = out.path();

    // Someone with records at two sites or more, linked by NHS number.
    let people = get(&base, "/api/patients?limit=100", &clin).json();
    let person = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| !p["nhs_number"].is_null() && p["records"].as_array().unwrap().len() >= 2)
        .unwrap_or_else(|| panic!("{people}"));
    let nhs = person["nhs_number"].as_str().unwrap().to_owned();
    let linked = get(&base, &format!("/api/patients/{nhs}"), &clin).json();
    let studies = linked["studies"].as_array().unwrap();

    // A signed report on one of their studies; a draft on another stays out.
    let (first, second) = (studies[0]["uid"].as_str().unwrap(), studies[1]["uid"].as_str().unwrap());
    let post = |path: &str, body: &str| {
        request(&base, "POST", path, &[("Authorization", &format!("Bearer {rad}")), ("Content-Type", "application/json")], body.as_bytes())
    };
    let r = post(&format!("/api/studies/{first}/reports"), r#"{"text":"Findings: No acute abnormality."}"#);
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(post(&format!("/api/reports/{id}/sign"), "").status, 200);
    let draft = post(&format!("/api/studies/{second}/reports"), r#"{"text":"Draft only."}"#);
    assert_eq!(draft.status, 201);
    let draft = draft.json()["id"].as_u64().unwrap();

    // Patient by NHS number: one, with the NHS number and every site's local ID.
    let r = get(&base, &format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"), &clin);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/fhir+json")));
    let b = r.json();
    valid(&b, dir, "patient-bundle");
    assert_eq!(b["total"], 1, "{b}");
    let p = &b["entry"][0]["resource"];
    let ids: Vec<(String, String)> =
        p["identifier"].as_array().unwrap().iter().map(|i| (i["system"].as_str().unwrap().to_owned(), i["value"].as_str().unwrap().to_owned())).collect();
    assert!(ids.contains(&("https://fhir.nhs.uk/Id/nhs-number".into(), nhs.clone())), "{ids:?}");
    for rec in person["records"].as_array().unwrap() {
        let want = (format!("urn:radhub:issuer:{}", rec["issuer"].as_str().unwrap()), rec["patient_id"].as_str().unwrap().to_owned());
        assert!(ids.contains(&want), "{want:?} not among {ids:?}");
    }
    assert!(p["birthDate"].as_str().is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-'), "{p}");
    let read = get(&base, &format!("/fhir/Patient/{nhs}"), &clin).json();
    valid(&read, dir, "patient");
    assert_eq!(read["id"], nhs.as_str());

    // ImagingStudy: every study from every site, each naming where it is held.
    let b = get(&base, &format!("/fhir/ImagingStudy?patient=Patient/{nhs}"), &clin).json();
    valid(&b, dir, "imaging-studies");
    let got: Vec<&Value> = b["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert_eq!(got.len(), studies.len(), "{b}");
    let sites: std::collections::BTreeSet<&str> = studies.iter().map(|s| s["site"].as_str().unwrap()).collect();
    for s in &got {
        assert_eq!(s["subject"]["reference"], format!("Patient/{nhs}"));
        let uid = s["id"].as_str().unwrap();
        let want = studies.iter().find(|x| x["uid"] == uid).unwrap();
        let code = want["site"].as_str().unwrap();
        assert!(s["location"]["display"].as_str().unwrap().contains(&format!("({code})")), "{s}");
        assert_eq!(s["identifier"][0]["value"], format!("urn:oid:{uid}"));
        assert_eq!(s["numberOfInstances"], want["instances"]);
    }
    assert!(sites.len() >= 2, "{sites:?}");

    // DiagnosticReport: the signed report only, pointing at its study.
    let b = get(&base, &format!("/fhir/DiagnosticReport?patient={nhs}"), &clin).json();
    valid(&b, dir, "reports");
    assert_eq!(b["total"], 1, "{b}");
    let d = &b["entry"][0]["resource"];
    assert_eq!((d["status"].as_str(), d["conclusion"].as_str()), (Some("final"), Some("Findings: No acute abnormality.")));
    assert_eq!(d["imagingStudy"][0]["reference"], format!("ImagingStudy/{first}"));
    assert!(d["issued"].as_str().is_some_and(|t| t.ends_with('Z')), "{d}");
    // Issued as preliminary, the draft is readable by the EPR too, as preliminary.
    assert_eq!(post(&format!("/api/reports/{draft}/preliminary"), "").status, 200);
    let b = get(&base, &format!("/fhir/DiagnosticReport?patient={nhs}"), &clin).json();
    valid(&b, dir, "reports-with-preliminary");
    let statuses: std::collections::BTreeSet<&str> = b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["final", "preliminary"].into(), "{b}");

    // The capability statement; bad searches answer an OperationOutcome.
    valid(&get(&base, "/fhir/metadata", &clin).json(), dir, "capabilities");
    for (q, status) in [
        ("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9999999999", 400),
        ("/fhir/Patient?identifier=urn:other|123", 400),
        ("/fhir/ImagingStudy", 400),
        ("/fhir/Patient/9434765870", 404),
    ] {
        let r = get(&base, q, &clin);
        assert_eq!(r.status, status, "{q}: {}", r.text());
        let o = r.json();
        assert_eq!(o["resourceType"], "OperationOutcome", "{q}");
        valid(&o, dir, "outcome");
    }
    // Someone not linked: an empty searchset.
    let none = get(&base, "/fhir/Patient?identifier=9434765870", &clin).json();
    assert_eq!(none["total"], 0, "{none}");
    // Without a token: 401.
    assert_eq!(request(&base, "GET", &format!("/fhir/Patient/{nhs}"), &[], b"").status, 401);
}
