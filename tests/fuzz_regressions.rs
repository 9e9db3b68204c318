//! Inputs the fuzz targets (fuzz/, `scripts/fuzz`) found to break an
//! invariant, each kept with the target it came from and run as the target
//! runs it.

use std::path::PathBuf;

use radhub::dicom::coerce::{restate, Identity};
use radhub::index::model::PatientKey;

fn case(name: &str) -> Vec<u8> {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", "fuzz", name].iter().collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// extract: a file with an explicit-length sequence whose contents
/// re-encode to another size. Restated after an identity change, dicom-object
/// wrote the old length back, and what radhub served (WADO-RS, C-GET) no
/// longer read as DICOM. Served bytes are now written with undefined
/// lengths and scanned before they go out.
#[test]
fn a_restated_file_reads_back_as_dicom() {
    let bytes = case("extract-restate-99a2e02e.dcm");
    let meta = radhub::dicom::extract::read_meta(&bytes).expect("the fuzzer's input is accepted on arrival");
    let key = PatientKey { issuer: "RD3".into(), patient_id: "P1".into() };
    let id = Identity { key: &key, name: "LIMA^LILY", birth_date: "19500101", sex: "F" };
    let out = restate(&bytes, &id).expect("restated").expect("the identity differs");
    let again = radhub::dicom::extract::read_meta(&out).unwrap_or_else(|e| panic!("restated {} does not read back: {e}", meta.sop_uid));
    assert_eq!((again.sop_uid, again.patient_id.as_str(), again.patient_name.as_str()), (meta.sop_uid, "P1", "LIMA^LILY"));
}
