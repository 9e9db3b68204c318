//! dicom-ul's PDU reader (association requests, P-DATA, releases) with
//! radhub's maximum PDU, strict, and the DIMSE command set decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dicom_ul::pdu::reader::read_pdu(data, 262_144, true);
    let _ = dicom_ul::pdu::reader::read_pdu(data, 16_384, false);
    if let Ok(c) = pacs_gateway::command::Command::decode(data) {
        let _ = c.field();
        let _ = c.status();
        let _ = c.encode();
    }
});
