//! STOW-RS bodies: the multipart splitter (the first line is the boundary,
//! the next byte the chunk size it arrives in), and the media types of
//! Content-Type and Accept headers. A body split as it arrives must give
//! what it gives read whole.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radhub::http::multipart;

fuzz_target!(|data: &[u8]| {
    let (head, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else { return };
    let _ = multipart::media(head);
    let _ = multipart::accept(head);
    let Some((&n, body)) = rest.split_first() else { return };
    let whole = multipart::parse(body, head);
    let split = multipart::parse_chunks(body.chunks(usize::from(n).max(1)), head);
    assert_eq!(whole.is_ok(), split.is_ok());
    if let (Ok(a), Ok(b)) = (whole, split) {
        assert_eq!(a, b);
        assert!(a.iter().map(|p| p.body.len()).sum::<usize>() <= body.len());
    }
});
