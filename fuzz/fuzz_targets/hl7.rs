//! HL7 v2 from a site's RIS and patient administration: orders (ORM, OMI)
//! and ADT (A01/A04/A08/A28/A31, A40, A47).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = radhub::orders::parse(&text);
    if radhub::orders::adt::is_adt(&text) {
        let _ = radhub::orders::adt::parse(&text);
    }
});
