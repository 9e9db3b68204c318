//! Hostile byte streams at the scan and ingest boundary: quadratic padding,
//! deflate bombs, dates that are not dates. Each is answered quickly, in
//! bounded memory, and without a panic; each case prints one line for
//! docs/RELIABILITY.md: case, answer, time, peak memory (VmHWM of this
//! process, reset before the case; the cases of this file run one at a time).

mod support;

use std::io::Write;
use std::time::Duration;

use dicom_core::{Tag, VR};
use radhub::dicom::extract::read_meta;
use radhub::dicom::scan::{self, Encoding};
use radhub::query::{search, Key, Level};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

// ---- a small Part 10 writer (explicit VR little endian) ----

#[derive(Default)]
struct Ds(Vec<u8>);

impl Ds {
    fn el(mut self, tag: u32, vr: &[u8; 2], value: &[u8]) -> Self {
        self.header(tag, vr, value.len() + value.len() % 2);
        self.0.extend(value);
        if value.len() % 2 == 1 {
            self.0.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self
    }

    fn header(&mut self, tag: u32, vr: &[u8; 2], len: usize) {
        self.0.extend(((tag >> 16) as u16).to_le_bytes());
        self.0.extend((tag as u16).to_le_bytes());
        self.0.extend(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            self.0.extend([0, 0]);
            self.0.extend((len as u32).to_le_bytes());
        } else {
            self.0.extend((len as u16).to_le_bytes());
        }
    }

    fn text(self, tag: u32, vr: &[u8; 2], s: &str) -> Self {
        self.el(tag, vr, s.as_bytes())
    }
}

const SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";

fn uid(kind: u32, n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.{kind}.{n}")
}

/// The identifying attributes of instance `n` (its own study), with `date` as Study Date.
fn instance(n: u32, date: &[u8]) -> Ds {
    Ds::default()
        .text(0x0008_0016, b"UI", SOP_CLASS)
        .text(0x0008_0018, b"UI", &uid(1, n))
        .el(0x0008_0020, b"DA", date)
        .text(0x0008_0060, b"CS", "OT")
        .text(0x0010_0010, b"PN", "HOSTILE^SCAN")
        .text(0x0010_0020, b"LO", &format!("HS{n}"))
        .text(0x0020_000D, b"UI", &uid(2, n))
        .text(0x0020_000E, b"UI", &uid(3, n))
}

fn meta(ts: &str, sop_class: &str, sop: &str) -> Vec<u8> {
    let group = Ds::default().el(0x0002_0001, b"OB", &[0, 1]).text(0x0002_0002, b"UI", sop_class).text(0x0002_0003, b"UI", sop).text(0x0002_0010, b"UI", ts);
    let mut f = vec![0u8; 128];
    f.extend(b"DICM");
    f.extend(Ds::default().el(0x0002_0000, b"UL", &(group.0.len() as u32).to_le_bytes()).0);
    f.extend(group.0);
    f
}

fn part10(n: u32, ds: Ds) -> Vec<u8> {
    let mut f = meta(EXPLICIT_LE, SOP_CLASS, &uid(1, n));
    f.extend(ds.0);
    f
}

fn deflate(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

fn pydicom_file(name: &str) -> Vec<u8> {
    std::fs::read(support::pydicom_data().join("test_files").join(name)).unwrap()
}

// ---- the cases ----

#[test]
fn many_empty_elements_scan_in_linear_time() {
    // 4 MiB of implicit VR (0000,0000) elements of length 0, then one
    // non-zero byte. The original padding check tested the rest of the
    // buffer at every element: ~10^12 byte reads, hours.
    let _g = support::alone();
    let mut bytes = vec![0u8; 4 << 20];
    bytes.push(1);
    let elements = (4 << 20) / 8;
    let (r, took, _) = support::case(
        "4 MiB of empty elements then one byte (scan_dataset)",
        || scan::scan_dataset(&bytes, scan::TS_IMPLICIT_LE, &[]).err(),
        |e| format!("refused: {}", e.as_ref().map_or("accepted".into(), ToString::to_string)),
    );
    assert!(matches!(r, Some(scan::ScanError::Truncated { offset, .. }) if offset == 4 << 20), "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (r, took, _) = support::case(
        "4 MiB of empty elements then one byte (tree, DICOM JSON)",
        || scan::tree(&bytes, Encoding::ImplicitLe).map(|t| (t.nodes.len(), t.tail.map(|t| t.offset))),
        |r| format!("{r:?} (elements, offset of the cut-off tail)"),
    );
    assert_eq!(r.ok(), Some((elements, Some(4 << 20))));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A deflated Part 10 file whose data set holds `zeros` bytes of zeros in
/// an OB element, deflated piecewise (never held whole).
fn deflate_bomb(n: u32, zeros: usize) -> Vec<u8> {
    let mut head = instance(n, b"20240101");
    head.header(0x0042_0011, b"OB", zeros);
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&head.0).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let k = left.min(chunk.len());
        e.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    let mut f = meta(scan::TS_DEFLATED, SOP_CLASS, &uid(1, n));
    f.extend(e.finish().unwrap());
    f
}

#[test]
fn a_deflate_bomb_is_refused_by_its_ratio() {
    // 100 MiB of zeros in ~100 KiB. The original code inflated it all (it
    // is under the 1 GiB cap) and accepted the file.
    let _g = support::alone();
    let bomb = deflate_bomb(1, 100 << 20);
    assert!(bomb.len() < 200 << 10, "{} bytes", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let hub = radhub::ingest::Hub::open(dir.path(), Default::default()).unwrap();
    let (r, _, peak) = support::case(
        "deflated data set inflating 100 MiB from 100 KiB (ingest)",
        || hub.ingest(&bomb, Some("RBD")).map(|_| ()),
        |r| match r {
            Ok(()) => "accepted".into(),
            Err(e) => format!("refused: {e}"),
        },
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("inflation ratio"), "{e}");
    assert!(hub.index.find_studies(&Default::default()).next().is_none(), "a refused file leaves no trace");
    // The stream is stopped at the cap (20 × ~100 KiB), never inflated whole.
    assert!(peak < 64, "peak {peak} MiB");
}

#[test]
fn deflated_files_of_real_archives_still_read() {
    let _g = support::alone();
    let dfl = pydicom_file("image_dfl.dcm");
    let m = read_meta(&dfl).unwrap();
    assert_eq!(m.transfer_syntax, scan::TS_DEFLATED);
    assert!(radhub::render::Instance::open(&dfl).and_then(|i| i.display(0, None)).is_ok());
    // CT_small re-deflated: same pixels.
    let ct = pydicom_file("CT_small.dcm");
    let (_, meta_end, ts) = scan::file_meta(&ct).unwrap();
    assert_eq!(ts, EXPLICIT_LE);
    let original = read_meta(&ct).unwrap();
    let mut redeflated = meta(scan::TS_DEFLATED, &original.sop_class_uid, &original.sop_uid);
    redeflated.extend(deflate(&ct[meta_end..]));
    let m = read_meta(&redeflated).unwrap();
    assert_eq!((m.sop_uid.as_str(), m.rows, m.transfer_syntax.as_str()), (original.sop_uid.as_str(), 128, scan::TS_DEFLATED));
    let frame = |b: &[u8]| radhub::render::Instance::open(b).and_then(|i| i.raw_frame(0)).unwrap();
    assert_eq!(frame(&redeflated), frame(&ct));
}

#[test]
fn dates_that_are_not_dates_are_indexed_empty_and_never_panic_a_query() {
    // "2024010\xE9" decodes to "2024010\u{FFFD}": byte 8 falls inside the
    // replacement character, and the original DateRange::contains panicked
    // on &date[..8] for every query whose range reached the study.
    let _g = support::alone();
    let dir = tempfile::tempdir().unwrap();
    let hub = radhub::ingest::Hub::open(dir.path(), Default::default()).unwrap();
    let dates: [&[u8]; 4] = [b"2024\xE90101", b"2024010\xE9", b"20240601", b"2024.06.02"];
    let stored: Vec<String> = (10..).zip(dates).map(|(n, date)| hub.ingest(&part10(n, instance(n, date)), Some("RBD")).unwrap().1.study_date).collect();
    let keys =
        [Key { tag: Tag(0x0008, 0x0020), vr: VR::DA, value: "20240101-20241231".into() }, Key { tag: Tag(0x0020, 0x000D), vr: VR::UI, value: String::new() }];
    let (r, _, _) = support::case(
        "Study Date 2024\\xE90101 and 2024010\\xE9 stored, then a DA range query",
        || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| search(&*hub.index, Level::Study, &keys, 0, None).map(|rows| rows.len()))),
        |r| match r {
            Ok(Ok(n)) => format!("stored, dates indexed empty; the query answers {n} studies"),
            Ok(Err(e)) => format!("query failed: {e}"),
            Err(_) => "the query panicked".into(),
        },
    );
    assert!(r.is_ok(), "the query panicked");
    // Not dates: indexed empty (the instance stored all the same); the old form normalised.
    assert_eq!(stored, ["", "", "20240601", "20240602"]);
    let rows = search(&*hub.index, Level::Study, &keys, 0, None).unwrap();
    let mut found: Vec<&str> = rows.iter().filter_map(|r| r.get(&Tag(0x0020, 0x000D)).map(String::as_str)).collect();
    found.sort();
    assert_eq!(found, [uid(2, 12), uid(2, 13)]);
    // Every instance was stored.
    assert_eq!(hub.index.find_studies(&Default::default()).count(), 4);
}
