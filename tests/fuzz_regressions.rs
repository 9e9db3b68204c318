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

fn restate_to_p1(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let key = PatientKey { issuer: "RD3".into(), patient_id: "P1".into() };
    restate(bytes, &Identity { key: &key, name: "LIMA^LILY", birth_date: "19500101", sex: "F" })
}

/// extract: a file out of tag order with an explicit-length sequence whose
/// contents re-encode to another size. Restated after an identity change,
/// dicom-object wrote the old length back, and what radhub served (WADO-RS,
/// C-GET) no longer read as DICOM. Such a file is now refused before
/// dicom-object sees it, and what dicom-object writes is scanned before it
/// is served: an error, never broken bytes or the old identity.
#[test]
fn a_file_out_of_order_is_refused_rather_than_served_broken() {
    let bytes = case("extract-restate-99a2e02e.dcm");
    radhub::dicom::extract::read_meta(&bytes).expect("the fuzzer's input is accepted on arrival");
    let e = restate_to_p1(&bytes).expect_err("restated");
    assert!(e.contains("order"), "{e}");
}

/// In order, the same shape reads back: an explicit-length private
/// sequence holding an odd-length value, which dicom-object pads when it
/// writes. (Every restated file is scanned before it is served.)
#[test]
fn a_restated_file_reads_back_as_dicom() {
    let p = std::process::Command::new("python3").args(["-c", "import pydicom.data;print(pydicom.data.get_testdata_file('CT_small.dcm'))"]).output().unwrap();
    let mut bytes = std::fs::read(String::from_utf8_lossy(&p.stdout).trim()).unwrap();
    // Explicit VR little endian: (7FE1,0010) LO creator, (7FE1,1001) SQ of one item holding PN "ABC" (3 bytes, unpadded).
    let mut item = Vec::new();
    item.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N', 3, 0]);
    item.extend_from_slice(b"ABC");
    let mut seq = vec![0xFE, 0xFF, 0x00, 0xE0];
    seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
    seq.extend_from_slice(&item);
    let mut tail = vec![0xE1, 0x7F, 0x10, 0x00, b'L', b'O', 6, 0];
    tail.extend_from_slice(b"RADHUB");
    tail.extend_from_slice(&[0xE1, 0x7F, 0x01, 0x10, b'S', b'Q', 0, 0]);
    tail.extend_from_slice(&(seq.len() as u32).to_le_bytes());
    tail.extend_from_slice(&seq);
    // Before CT_small's Data Set Trailing Padding (FFFC,FFFC), the last element.
    let at = bytes.windows(6).rposition(|w| w == [0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B']).unwrap_or(bytes.len());
    bytes.splice(at..at, tail);
    let meta = radhub::dicom::extract::read_meta(&bytes).expect("accepted on arrival");
    let out = restate_to_p1(&bytes).expect("restated").expect("the identity differs");
    let again = radhub::dicom::extract::read_meta(&out).unwrap_or_else(|e| panic!("restated {} does not read back: {e}", meta.sop_uid));
    assert_eq!((again.sop_uid, again.patient_id.as_str(), again.patient_name.as_str()), (meta.sop_uid, "P1", "LIMA^LILY"));
}

/// dimse: a 137-byte query identifier (implicit VR little endian) that
/// dicom-object read into gigabytes: one C-FIND could take the server's
/// memory. The bounded scan refuses it before dicom-object sees it.
#[test]
fn a_small_identifier_cannot_take_the_servers_memory() {
    let bytes = case("dimse-identifier-oom-f8e61102.bin");
    // Refused by the scan, before dicom-object (which also failed, after 7 s and 3.3 GB).
    let e = pacs_gateway::identifier::parse(&bytes, "1.2.840.10008.1.2").expect_err("refused");
    assert!(e.contains("order"), "{e}");
}

/// dimse, again: an identifier ending in (FFFE,FFFF) with a length of
/// 4 GiB. dicom-scan took any group-FFFE tag for a delimiter, of no length,
/// and dicom-object allocated what it declared. Only items and delimiters
/// are accepted in group FFFE now.
#[test]
fn an_unknown_item_tag_with_a_lying_length_is_refused() {
    let bytes = case("dimse-identifier-oom-4f9fb821.bin");
    let e = pacs_gateway::identifier::parse(&bytes, "1.2.840.10008.1.2").expect_err("refused");
    assert!(e.contains("FFFE"), "{e}");
    assert!(dicom_scan::scan_dataset(&bytes, "1.2.840.10008.1.2", &[]).is_err(), "refused on arrival too");
}

/// dimse, a third time: (0012,0052), an FD, 13 bytes long in implicit VR.
/// dicom-object read one double, lost its place, and took what followed
/// for a header of gigabytes. A binary value must hold whole values for a
/// data set to reach dicom-object.
#[test]
fn a_binary_value_of_a_length_its_vr_cannot_hold_is_refused() {
    let bytes = case("dimse-identifier-oom-9a4cc6a6.bin");
    let e = pacs_gateway::identifier::parse(&bytes, "1.2.840.10008.1.2").expect_err("refused");
    assert!(e.contains("VR"), "{e}");
}

/// fhir: a Patient's Birth Date of 18000100 (day 00) was indexed as it
/// came, digits being all the DA check asked for, and went out to the EPRs
/// as FHIR birthDate "1800-01-00". A DA must now be a day of the calendar,
/// else it is indexed empty and the Patient has no birthDate.
#[test]
fn a_birth_date_that_is_no_day_never_reaches_fhir() {
    let input = case("fhir-birth-date-08b39fca.bin");
    let file = &input[input.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let meta = radhub::dicom::extract::read_meta(file).expect("read");
    assert_eq!(meta.patient_birth_date, "", "day 00 is no date");
    let record = radhub::index::model::PatientRecord {
        key: PatientKey { issuer: meta.issuer_of_patient_id.clone(), patient_id: meta.patient_id.clone() },
        name: meta.patient_name.clone(),
        birth_date: meta.patient_birth_date.clone(),
        sex: meta.patient_sex.clone(),
        other_ids: meta.other_patient_ids.clone(),
        nhs_number: None,
        nhs_in_data: None,
        nhs_refused: Vec::new(),
        sites: Default::default(),
        studies: 1,
        series: 1,
        instances: 1,
    };
    let p = radhub::http::fhir::patient("9434765919", &[record]);
    assert!(p.get("birthDate").is_none(), "{p}");
    // Nor an empty identifier value: this file has no Patient ID.
    assert!(p.to_string().find("\"\"").is_none(), "an empty string in {p}");
}
