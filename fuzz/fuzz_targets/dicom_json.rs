//! A Part 10 file's data set as DICOM JSON (WADO-RS metadata): the scan
//! tree, then the encoder, whose output must be valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::dicom::json;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = dicom_scan::scan(data, &[]) else { return };
    let Ok(t) = dicom_scan::tree(&s.dataset, s.encoding) else { return };
    let src = json::Source { buf: &s.dataset, encoding: s.encoding, nodes: &t.nodes, tail: t.tail, bulk_base: "http://h/bulk" };
    let out = json::dataset(&src);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
        panic!("DICOM JSON that is not JSON ({e}): {out}");
    }
});
