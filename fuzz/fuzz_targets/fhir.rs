//! FHIR R4 for the EPRs: the identifier a search names (the first line),
//! and the Patient built from what a DICOM file (the rest) brought. FHIR
//! JSON must hold no empty strings, arrays or objects, and its dates must
//! be dates.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::http::fhir;
use radhub::index::model::{PatientKey, PatientRecord};
use serde_json::Value;

fn valid_fhir(v: &Value, at: &str) {
    match v {
        Value::String(s) => assert!(!s.is_empty(), "an empty string at {at}"),
        Value::Array(a) => {
            assert!(!a.is_empty(), "an empty array at {at}");
            a.iter().for_each(|x| valid_fhir(x, at));
        }
        Value::Object(o) => {
            assert!(!o.is_empty(), "an empty object at {at}");
            o.iter().for_each(|(k, x)| valid_fhir(x, k));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, file) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(raw) = std::str::from_utf8(head) {
        if let Ok(nhs) = fhir::searched_nhs(raw) {
            assert_eq!(radhub::nhs::normalise(&nhs).as_deref(), Some(nhs.as_str()), "a searched NHS number is a valid one");
        }
    }
    let Ok(meta) = radhub::dicom::extract::read_meta(file) else { return };
    let record = PatientRecord {
        key: PatientKey { issuer: meta.issuer_of_patient_id.clone(), patient_id: meta.patient_id.clone() },
        name: meta.patient_name.clone(),
        birth_date: meta.patient_birth_date.clone(),
        sex: meta.patient_sex.clone(),
        other_ids: meta.other_patient_ids.clone(),
        nhs_number: meta.nhs_number.clone(),
        nhs_in_data: meta.nhs_number.clone(),
        nhs_refused: Vec::new(),
        sites: Default::default(),
        studies: 1,
        series: 1,
        instances: 1,
    };
    let p = fhir::patient("9434765919", &[record]);
    let back: Value = serde_json::from_str(&p.to_string()).expect("FHIR JSON parses back");
    valid_fhir(&back, "Patient");
    if let Some(d) = back.get("birthDate").and_then(Value::as_str) {
        let b = d.as_bytes();
        assert!(b.len() == 10 && b[4] == b'-' && b[7] == b'-', "birthDate {d}");
        let (m, day): (u32, u32) = (d[5..7].parse().unwrap(), d[8..].parse().unwrap());
        assert!((1..=12).contains(&m) && (1..=31).contains(&day), "birthDate {d}");
    }
});
