//! Malformed and lying input: every truncation and many corruptions of
//! pydicom's test files are refused or read, never a panic; crafted lengths
//! are bounded by the bytes present.

mod support;

use radhub::dicom::{extract::read_meta, ScanError};

/// A minimal valid Part 10 file, explicit VR little endian, with `body`
/// appended to a data set holding the four required UIDs.
fn part10(ts: &str, body: &[u8]) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
        out.extend(g.to_le_bytes());
        out.extend(e.to_le_bytes());
        out.extend(vr);
        out.extend((v.len() as u16).to_le_bytes());
        out.extend(v);
    }
    let pad = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    };
    let mut f = vec![0u8; 128];
    f.extend(b"DICM");
    el(&mut f, 2, 0x10, b"UI", &pad(ts));
    el(&mut f, 8, 0x16, b"UI", &pad("1.2.840.10008.5.1.4.1.1.7"));
    el(&mut f, 8, 0x18, b"UI", &pad("1.2.3.4"));
    el(&mut f, 0x20, 0x0D, b"UI", &pad("1.2.3"));
    el(&mut f, 0x20, 0x0E, b"UI", &pad("1.2.3.1"));
    f.extend(body);
    f
}

#[test]
fn minimal_file_reads() {
    let m = read_meta(&part10("1.2.840.10008.1.2.1", &[])).unwrap();
    assert_eq!((m.sop_uid.as_str(), m.study_uid.as_str()), ("1.2.3.4", "1.2.3"));
}

#[test]
fn lying_length_is_refused_without_allocating_it() {
    // (0029,0010) OB claiming 4 GiB - 16 bytes, with 4 present.
    let mut body = vec![0x29, 0, 0x10, 0, b'O', b'B', 0, 0];
    body.extend(0xFFFF_FFF0u32.to_le_bytes());
    body.extend([1, 2, 3, 4]);
    match read_meta(&part10("1.2.840.10008.1.2.1", &body)) {
        Err(ScanError::LengthBeyondData { declared, available, .. }) => assert_eq!((declared, available), (0xFFFF_FFF0, 4)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deep_nesting_is_refused() {
    let mut body = Vec::new();
    for _ in 0..100 {
        body.extend([0x29, 0, 0x20, 0, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    assert!(matches!(read_meta(&part10("1.2.840.10008.1.2.1", &body)), Err(ScanError::Malformed { .. })));
}

/// The file with its SOP Instance UID replaced by `uid`.
fn with_sop_uid(uid: &[u8]) -> Vec<u8> {
    let mut f = part10("1.2.840.10008.1.2.1", &[]);
    let needle = b"1.2.3.4";
    let at = f.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut v = uid.to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    f.splice(at - 2..at + needle.len() + 1, (v.len() as u16).to_le_bytes().into_iter().chain(v));
    f
}

#[test]
fn uids_real_archives_hold_are_accepted_and_flagged() {
    // 64 lower-case hex digits (anonymisers), letters, a path-like value:
    // kept (a UID never becomes a path), flagged as not PS3.5 9.1.
    let hex = "a3f5".repeat(16);
    for uid in [hex.as_str(), "1.2.3.", "1..2", "../../etc/passwd", "1.2.840.01"] {
        let m = read_meta(&with_sop_uid(uid.as_bytes())).unwrap_or_else(|e| panic!("{uid}: {e}"));
        assert_eq!(m.sop_uid, uid);
        assert!(!radhub::dicom::scan::uid_is_conformant(uid), "{uid} flagged");
    }
    // A trailing space (odd-length padding with the wrong byte) is padding.
    assert_eq!(read_meta(&with_sop_uid(b"1.2.3.44 ")).unwrap().sop_uid, "1.2.3.44");
    assert!(radhub::dicom::scan::uid_is_conformant("1.2.840.10008.5.1.4.1.1.2"));
}

#[test]
fn uids_no_archive_could_mean_are_refused() {
    for uid in ["1".repeat(65).as_bytes(), b"1.2\\3.4", b"1.2.3\x01", b"1.2 3.4"] {
        assert!(
            matches!(read_meta(&with_sop_uid(uid)), Err(ScanError::BadUid(_)) | Err(ScanError::LengthBeyondData { .. }) | Err(ScanError::Malformed { .. })),
            "{:?}",
            String::from_utf8_lossy(uid)
        );
    }
}

#[test]
fn deflate_garbage_is_refused() {
    let f = part10("1.2.840.10008.1.2.1.99", &[]);
    // The data set after the meta is raw deflate: here, garbage.
    let meta_end = 128 + 4 + 8 + 22;
    let mut g = f[..meta_end].to_vec();
    g.extend([0xFF; 64]);
    assert!(read_meta(&g).is_err());
}

/// splitmix64: deterministic corruption.
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn truncations_and_corruptions_never_panic() {
    let mut seed = 2026;
    let (mut files, mut cuts, mut refused) = (0, 0u32, 0u32);
    for set in support::pydicom_sets() {
        for entry in walkdir::WalkDir::new(set).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
            let bytes = std::fs::read(entry.path()).unwrap();
            if read_meta(&bytes).is_err() {
                continue;
            }
            files += 1;
            // Truncations: every cut in the first 2 KiB (where the header
            // is), then every 997th byte.
            // A cut exactly between elements is a well-formed shorter file;
            // a cut anywhere else must be refused.
            for cut in (0..bytes.len().min(2048)).chain((2048..bytes.len()).step_by(997)) {
                cuts += 1;
                refused += u32::from(read_meta(&bytes[..cut]).is_err());
            }
            // Random overwrites of 1–4 bytes in the header region.
            for _ in 0..200 {
                let mut b = bytes.clone();
                for _ in 0..1 + next(&mut seed) % 4 {
                    let at = (next(&mut seed) as usize) % b.len().min(4096);
                    b[at] = next(&mut seed) as u8;
                }
                let _ = read_meta(&b);
            }
        }
    }
    assert!(files > 100, "only {files} files exercised");
    assert!(f64::from(refused) > 0.9 * f64::from(cuts), "{refused} of {cuts} truncations refused");
}
