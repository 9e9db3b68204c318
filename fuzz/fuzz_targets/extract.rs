//! What the index records of an arrival (`read_meta`), a rejection note's
//! references (IOCM), and the identity restated on a scanned file (what
//! WADO-RS and C-GET serve after an ADT change).
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::index::model::PatientKey;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = radhub::dicom::extract::read_meta(data) else { return };
    let _ = radhub::iocm::note(data);
    let key = PatientKey { issuer: "RD3".into(), patient_id: "P1".into() };
    let id = radhub::dicom::coerce::Identity { key: &key, name: "LIMA^LILY", birth_date: "19500101", sex: "F" };
    if let Ok(Some(out)) = radhub::dicom::coerce::restate(data, &id) {
        // What is served is read again by its receivers: it must scan.
        if let Err(e) = dicom_scan::scan(&out, &[]) {
            panic!("restated {} no longer scans: {e}", meta.sop_uid);
        }
    }
});
