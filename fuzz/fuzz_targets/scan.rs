//! dicom-scan over a Part 10 file and over a bare data set in each of the
//! four native encodings (the first byte picks one).
#![no_main]
use libfuzzer_sys::fuzz_target;

const SYNTAXES: [&str; 4] = [dicom_scan::TS_IMPLICIT_LE, dicom_scan::TS_EXPLICIT_LE, dicom_scan::TS_EXPLICIT_BE, dicom_scan::TS_DEFLATED];

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = dicom_scan::scan(data, &[0x0010_1002, 0x0008_0051, 0x0040_A730]) {
        let _ = s.check_native_pixel_data();
        let _ = s.frames();
        let _ = s.nested_values(0x0010_1002).count();
    }
    if let Some((&first, rest)) = data.split_first() {
        let ts = SYNTAXES[usize::from(first) % SYNTAXES.len()];
        if let Ok(s) = dicom_scan::scan_dataset(rest, ts, &[0x0008_1115]) {
            let _ = s.check_native_pixel_data();
        }
    }
});
