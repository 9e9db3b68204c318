//! SIGTERM while a modality is sending: the listener stops, the C-STORE in
//! flight finishes, and every instance acknowledged with success is held,
//! intact, with store and index consistent.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use radhub::ingest::{DuplicatePolicy, Hub};
use radhub::store::ObjectKey;
use support::{dcmtk, Server};

#[test]
fn sigterm_during_storescu_loses_nothing_acknowledged() {
    let files = tempfile::tempdir().unwrap();
    let out = support::radhub()
        .args(["testdata", "--out", files.path().to_str().unwrap(), "--patients", "6", "--max-slices", "40", "--ct-size", "256", "--seed", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut all: Vec<_> =
        walkdir::WalkDir::new(files.path()).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    all.sort();
    assert!(all.len() > 200);

    let s = Server::start(&["--accept-any"]);
    let mut scu = dcmtk("storescu")
        .args(["-v", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()])
        .args(&all)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // storescu logs to stderr: "Sending file: X" then the response.
    let mut acked = Vec::new();
    let mut current = None;
    let mut lines = BufReader::new(scu.stderr.take().unwrap()).lines();
    let mut stopped = None;
    while let Some(Ok(l)) = lines.next() {
        if let Some(f) = l.strip_prefix("I: Sending file: ") {
            current = Some(f.to_owned());
        } else if l.contains("Received Store Response (Success)") {
            acked.push(current.take().unwrap());
            if acked.len() == 50 && stopped.is_none() {
                stopped = Some(std::thread::spawn({
                    let pid = s.pid();
                    move || std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap()
                }));
            }
        }
    }
    let _ = scu.wait();
    stopped.expect("storescu finished before the signal").join().unwrap();
    assert!(acked.len() >= 50 && acked.len() < all.len(), "{} of {} acknowledged", acked.len(), all.len());
    let (clean, data) = s.stop();
    assert!(clean, "radhub serve did not exit cleanly on SIGTERM");

    let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
    let r = radhub::verify::verify(&hub, true, false, &|| {}).unwrap();
    assert!(r.consistent(), "{r:?}");
    for f in &acked {
        let original = std::fs::read(f).unwrap();
        let meta = radhub::dicom::extract::read_meta(&original).unwrap();
        let held = hub.store.get(&ObjectKey::for_uid(&meta.sop_uid)).unwrap().unwrap_or_else(|| panic!("acknowledged {f} not held"));
        // storescu may re-encode (lengths, padding): compare as DCMTK reads them.
        let copy = data.path().join("held.dcm");
        std::fs::write(&copy, &held).unwrap();
        assert_eq!(support::dump(&copy), support::dump(std::path::Path::new(f)), "{f} differs");
    }
}
