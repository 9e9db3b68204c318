//! STOW-RS bodies: the multipart parser (the first line is the boundary),
//! and the media types of Content-Type and Accept headers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::http::multipart;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else { return };
    let _ = multipart::media(head);
    let _ = multipart::accept(head);
    if let Ok(parts) = multipart::parse(body, head) {
        for p in parts {
            // Every part lies within the body.
            let start = p.body.as_ptr() as usize - body.as_ptr() as usize;
            assert!(start + p.body.len() <= body.len());
        }
    }
});
