//! Thumbnails: made by `radhub thumbs` (a placeholder, with its reason, for
//! an image that cannot be decoded), and in the background after C-STORE.

mod support;

use std::time::{Duration, Instant};

use radhub::thumbs::Thumbs;

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// MR_small_RLE with its RLE header lying (15 segments at offsets past the
/// fragment): the DICOM structure is valid, the pixel data is not.
fn undecodable() -> Vec<u8> {
    let mut b = std::fs::read(support::pydicom_data().join("test_files/MR_small_RLE.dcm")).unwrap();
    let item = b.windows(4).rposition(|w| w == [0xFE, 0xFF, 0x00, 0xE0]).unwrap();
    let header = item + 8;
    b[header..header + 4].copy_from_slice(&15u32.to_le_bytes());
    for k in 1..16 {
        b[header + 4 * k..header + 4 * k + 4].copy_from_slice(&0x7FFF_0000u32.to_le_bytes());
    }
    b
}

#[test]
fn radhub_thumbs_makes_series_and_study_thumbnails_and_placeholders() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::copy(support::pydicom_data().join("test_files/CT_small.dcm"), files.path().join("ct.dcm")).unwrap();
    std::fs::write(files.path().join("bad.dcm"), undecodable()).unwrap();
    support::run(data.path(), &["import", files.path().to_str().unwrap()]);
    let out = support::run(data.path(), &["thumbs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 series thumbnails made, 1 placeholders"), "{text}");

    let thumbs = Thumbs::open(data.path()).unwrap();
    for (name, placeholder) in [("ct.dcm", false), ("bad.dcm", true)] {
        let m = radhub::dicom::extract::read_meta(&std::fs::read(files.path().join(name)).unwrap()).unwrap();
        let png = std::fs::read(thumbs.series_path(&m.series_uid)).unwrap();
        assert!(is_png(&png), "{name}");
        assert!(is_png(&std::fs::read(thumbs.study_path(&m.study_uid)).unwrap()), "{name}: study thumbnail");
        assert_eq!(thumbs.failure(&m.series_uid).is_some(), placeholder, "{name}: {:?}", thumbs.failure(&m.series_uid));
    }
    // `radhub ls series` shows why.
    let ls = String::from_utf8_lossy(&support::run(data.path(), &["ls", "series"]).stdout).into_owned();
    assert_eq!(ls.matches("thumbnail placeholder: ").count(), 1, "{ls}");
    // Nothing missing: a second run makes nothing; --rebuild remakes all.
    assert!(String::from_utf8_lossy(&support::run(data.path(), &["thumbs"]).stdout).contains("0 series thumbnails made, 0 placeholders"));
    assert!(String::from_utf8_lossy(&support::run(data.path(), &["thumbs", "--rebuild"]).stdout).contains("1 series thumbnails made, 1 placeholders"));
}

#[test]
fn thumbnails_follow_c_store_in_the_background() {
    let files = tempfile::tempdir().unwrap();
    let (ok, out) = support::output(support::radhub().args([
        "testdata",
        "--out",
        files.path().to_str().unwrap(),
        "--patients",
        "1",
        "--max-slices",
        "8",
        "--ct-size",
        "128",
    ]));
    assert!(ok, "{out}");
    let all: Vec<_> =
        walkdir::WalkDir::new(files.path()).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    let series: std::collections::BTreeSet<String> =
        all.iter().map(|p| radhub::dicom::extract::read_meta(&std::fs::read(p).unwrap()).unwrap().series_uid).collect();

    let s = support::Server::start(&["--accept-any"]);
    let (ok, out) = support::output(support::dcmtk("storescu").args(["-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]).args(&all));
    assert!(ok, "{out}");
    let thumbs = Thumbs::open(s.data.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !series.iter().all(|se| thumbs.series_path(se).exists()) {
        assert!(Instant::now() < deadline, "background thumbnails not made");
        std::thread::sleep(Duration::from_millis(100));
    }
    for se in &series {
        assert!(is_png(&std::fs::read(thumbs.series_path(se)).unwrap()));
        assert!(thumbs.failure(se).is_none());
    }
}

#[test]
fn radhub_render_gives_a_frame_at_a_size_and_window() {
    let data = tempfile::tempdir().unwrap();
    let ct = support::pydicom_data().join("test_files/CT_small.dcm");
    support::run(data.path(), &["import", ct.to_str().unwrap()]);
    let sop = radhub::dicom::extract::read_meta(&std::fs::read(&ct).unwrap()).unwrap().sop_uid;
    let png = data.path().join("f.png");
    let jpg = data.path().join("f.jpg");
    let narrow = data.path().join("narrow.png");
    support::run(data.path(), &["render", &sop, "--size", "32", "--out", png.to_str().unwrap()]);
    support::run(data.path(), &["render", &sop, "--format", "jpeg", "--out", jpg.to_str().unwrap()]);
    support::run(data.path(), &["render", &sop, "--window", "40/80", "--out", narrow.to_str().unwrap()]);
    let png = std::fs::read(png).unwrap();
    assert!(is_png(&png));
    // IHDR width and height (CT_small is 128×128, fitted to 32).
    assert_eq!((u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap())), (32, 32));
    assert!(std::fs::read(jpg).unwrap().starts_with(&[0xFF, 0xD8, 0xFF]));
    // A different window gives a different image of the same size.
    let full = data.path().join("full.png");
    support::run(data.path(), &["render", &sop, "--out", full.to_str().unwrap()]);
    let (full, narrow) = (std::fs::read(full).unwrap(), std::fs::read(narrow).unwrap());
    assert_eq!(full[16..24], narrow[16..24]);
    assert_ne!(full, narrow);
    // Refusals: no such instance, no such frame.
    let out = support::radhub().arg("--data").arg(data.path()).args(["render", "1.2.3", "--out", "/dev/null"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no instance 1.2.3 is held"));
    let out = support::radhub().arg("--data").arg(data.path()).args(["render", &sop, "--frame", "9", "--out", "/dev/null"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("frame 9"));
}
