//! Crash safety: `kill -9` during a large import, then restart. The store
//! and index must agree, and every instance reported as imported must read
//! back byte-identical.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use radhub::index::{Index, SledIndex};
use radhub::ingest::{DuplicatePolicy, Hub};
use radhub::store::{FsStore, ObjectKey, ObjectStore};

#[test]
fn kill_9_during_import_leaves_store_and_index_consistent() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = support::radhub()
        .args(["testdata", "--out", files.path().to_str().unwrap(), "--patients", "8", "--max-slices", "40", "--ct-size", "256", "--seed", "9"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let total = walkdir::WalkDir::new(files.path()).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count();
    assert!(total > 400, "want a large import, have {total} files");

    let mut child = support::radhub()
        .arg("--data")
        .arg(data.path())
        .args(["import", "--list", "--jobs", "8"])
        .arg(files.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reported = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        let parts: Vec<&str> = line.split('\t').collect();
        assert_eq!(parts.len(), 3, "{line}");
        reported.push((parts[1].to_owned(), parts[2].to_owned()));
        if reported.len() == total / 3 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(reported.len(), total / 3, "import ended before the kill");

    // Restart: verify opens the hub (which finishes or drops interrupted writes).
    let v = support::json(&support::run(data.path(), &["verify", "--deep", "--json"]));
    assert_eq!(v["orphan_files"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["missing_files"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["mismatched"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["counters_agree"], true, "{v}");
    assert!(v["indexed"].as_u64().unwrap() >= reported.len() as u64);

    {
        let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
        for (uid, path) in &reported {
            assert!(hub.index.instance(uid).unwrap().is_some(), "{uid} reported but not indexed");
            let held = hub.store.get(&ObjectKey::for_uid(uid)).unwrap().unwrap_or_else(|| panic!("{uid} reported but has no file"));
            assert!(held == std::fs::read(path).unwrap(), "{uid} differs from {path}");
        }
    }

    // The import resumes: everything ends up held once.
    let s = support::json(&support::run(data.path(), &["import", "--json", files.path().to_str().unwrap()]));
    assert_eq!(s["imported"].as_u64().unwrap() + s["duplicates"].as_u64().unwrap(), total as u64, "{s}");
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    assert_eq!(v["indexed"].as_u64().unwrap(), total as u64);
    assert_eq!(v["files"].as_u64().unwrap(), total as u64);
}

#[test]
fn recovery_publishes_committed_writes_and_drops_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let pd = support::pydicom_data().join("test_files");
    let committed = std::fs::read(pd.join("CT_small.dcm")).unwrap();
    let uncommitted = std::fs::read(pd.join("MR_small.dcm")).unwrap();
    let (c_meta, u_meta) = (Hub::describe(&committed, None).unwrap(), Hub::describe(&uncommitted, None).unwrap());
    {
        // A crash after the index commit but before publish, and one
        // before the index commit.
        let store = FsStore::open(data.path()).unwrap();
        let (index, _) = SledIndex::open(&data.path().join("index")).unwrap();
        store.stage(&ObjectKey::for_uid(&c_meta.sop_uid), &committed).unwrap();
        index.upsert(&c_meta).unwrap();
        index.sync().unwrap();
        store.stage(&ObjectKey::for_uid(&u_meta.sop_uid), &uncommitted).unwrap();
    }
    let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
    assert!(hub.store.staged().unwrap().is_empty());
    assert_eq!(hub.store.get(&ObjectKey::for_uid(&c_meta.sop_uid)).unwrap().unwrap(), committed);
    assert_eq!(hub.store.get(&ObjectKey::for_uid(&u_meta.sop_uid)).unwrap(), None);
    assert!(hub.index.instance(&u_meta.sop_uid).unwrap().is_none());
    let r = radhub::verify::verify(&hub, true, false, &|| {}).unwrap();
    assert!(r.consistent(), "{r:?}");
}

#[test]
fn verify_repair_mends_orphans_and_missing_files() {
    let data = tempfile::tempdir().unwrap();
    let pd = support::pydicom_data().join("test_files");
    let a = std::fs::read(pd.join("CT_small.dcm")).unwrap();
    let b = std::fs::read(pd.join("MR_small.dcm")).unwrap();
    let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
    let (_, am) = hub.ingest(&a, None).unwrap();
    // An orphan file (as a foreign tool or lost index could leave) and an
    // entry whose file vanished.
    let bm = Hub::describe(&b, None).unwrap();
    hub.store.put(&ObjectKey::for_uid(&bm.sop_uid), &b).unwrap();
    std::fs::remove_file(hub.store.local_path(&ObjectKey::for_uid(&am.sop_uid)).unwrap()).unwrap();
    let r = radhub::verify::verify(&hub, false, false, &|| {}).unwrap();
    assert_eq!((r.orphan_files.len(), r.missing_files.len()), (1, 1));
    assert!(!r.consistent());
    let r = radhub::verify::verify(&hub, false, true, &|| {}).unwrap();
    assert_eq!(r.repaired, 2);
    let r = radhub::verify::verify(&hub, true, false, &|| {}).unwrap();
    assert!(r.consistent(), "{r:?}");
    assert!(hub.index.instance(&bm.sop_uid).unwrap().is_some());
    assert!(hub.index.instance(&am.sop_uid).unwrap().is_none());
}

/// The same for STOW-RS: clients post instances over four connections, the
/// server is killed with SIGKILL; every instance answered 200 is held,
/// byte-identical, and store and index agree.
#[test]
fn kill_9_during_stow_loses_no_acknowledged_instance() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = support::radhub()
        .args(["testdata", "--out", files.path().to_str().unwrap(), "--patients", "6", "--max-slices", "30", "--ct-size", "128", "--seed", "11"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let paths: Vec<std::path::PathBuf> =
        walkdir::WalkDir::new(files.path()).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    assert!(paths.len() > 200, "want many instances, have {}", paths.len());
    let token = support::user_token(data.path(), "pacsadmin", "admin");
    let server = support::Server::start_in(data, &[]);
    let base = server.http();

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, std::path::PathBuf)>::new()));
    let workers: Vec<_> = paths
        .chunks(paths.len().div_ceil(4))
        .map(|chunk| {
            let (chunk, acked, base, token) = (chunk.to_vec(), acked.clone(), base.clone(), token.clone());
            std::thread::spawn(move || {
                for p in chunk {
                    let bytes = std::fs::read(&p).unwrap();
                    // After the kill the connection fails: the worker stops.
                    let Ok(r) = std::panic::catch_unwind(|| support::stow(&base, &token, &[&bytes])) else {
                        return;
                    };
                    if r.status != 200 {
                        return;
                    }
                    let uid = r.json()["00081199"]["Value"][0]["00081155"]["Value"][0].as_str().unwrap().to_owned();
                    acked.lock().unwrap().push((uid, p));
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < paths.len() / 3 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let peak = support::peak_kib(server.pid()) / 1024;
    let _ = std::process::Command::new("kill").arg("-KILL").arg(server.pid().to_string()).status();
    for w in workers {
        let _ = w.join();
    }
    let (_, data) = server.stop();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= paths.len() / 3 && acked.len() < paths.len(), "the kill landed mid-upload: {} of {}", acked.len(), paths.len());

    let v = support::json(&support::run(data.path(), &["verify", "--deep", "--json"]));
    assert_eq!(v["orphan_files"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["missing_files"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["mismatched"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["counters_agree"], true, "{v}");
    let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
    for (uid, path) in &acked {
        let held = hub.store.get(&ObjectKey::for_uid(uid)).unwrap().unwrap_or_else(|| panic!("{uid} acknowledged but not held"));
        assert!(held == std::fs::read(path).unwrap(), "{uid} differs from {}", path.display());
    }
    support::fault_row(
        "crash::kill_9_during_stow_loses_no_acknowledged_instance",
        &format!("4 STOW-RS clients at once, {} instances", paths.len()),
        "kill -9 after a third acknowledged",
        acked.len(),
        acked.len(),
        peak,
    );
}

/// `kill -9` while four associations store at once (DCMTK storescu, one
/// per stream), 20 times, each at another point of the upload: after each
/// restart every instance acknowledged (Success) is held with the data set
/// it was sent, and store and index agree; none half-written is visible.
#[test]
fn kill_9_during_four_c_store_streams_loses_no_acknowledged_instance() {
    use std::io::{BufRead, BufReader};
    let files = tempfile::tempdir().unwrap();
    let paths: Vec<std::path::PathBuf> = support::testdata_files(files.path(), &["--patients", "6", "--max-slices", "30", "--ct-size", "64", "--seed", "12"])
        .into_iter()
        .filter(|p| p.starts_with(files.path().join("RBD")))
        .collect();
    assert!(paths.len() >= 80, "want many instances, have {}", paths.len());
    // What must survive: identity and pixels (storescu re-encodes sequence
    // lengths, so the data set's bytes may differ from the file's).
    let essence = |bytes: &[u8]| -> Vec<Vec<u8>> {
        let s = dicom_scan::scan(bytes, &[]).unwrap();
        [0x0008_0018, 0x0020_000D, 0x0020_000E, 0x0010_0020, 0x0010_0010, 0x7FE0_0010].iter().map(|t| s.get(*t).unwrap_or_default().to_vec()).collect()
    };
    let (mut acked_total, mut intact_total, mut peak_mib, rounds) = (0usize, 0usize, 0u64, 20usize);
    for round in 0..rounds {
        let server = support::Server::start(&["--peer", "MODALITY@127.0.0.1:0=RBD"]);
        // Where this round's kill lands: after 10% to 85% of the instances.
        let kill_at = paths.len() * (10 + (round * 37) % 76) / 100;
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::path::PathBuf>::new()));
        let streams: Vec<_> = paths
            .chunks(paths.len().div_ceil(4))
            .map(|chunk| {
                let mut child = support::dcmtk("storescu")
                    .args(["-v", "-R", "--no-halt", "-aet", "MODALITY", "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()])
                    .args(chunk)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                // DCMTK logs to stderr.
                let out = child.stderr.take().unwrap();
                let acked = acked.clone();
                let reader = std::thread::spawn(move || {
                    let mut sending: Option<std::path::PathBuf> = None;
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if let Some(p) = line.split_once("Sending file: ").map(|(_, p)| std::path::PathBuf::from(p.trim())) {
                            sending = Some(p);
                        } else if line.contains("Received Store Response (Success)") {
                            acked.lock().unwrap().extend(sending.take());
                        }
                    }
                });
                (child, reader)
            })
            .collect();
        let t0 = std::time::Instant::now();
        while acked.lock().unwrap().len() < kill_at && t0.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        peak_mib = peak_mib.max(support::peak_kib(server.pid()) / 1024);
        let _ = std::process::Command::new("kill").arg("-KILL").arg(server.pid().to_string()).status();
        for (mut child, reader) in streams {
            let _ = child.wait();
            let _ = reader.join();
        }
        let (_, data) = server.stop();
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= kill_at && acked.len() < paths.len(), "round {round}: the kill landed mid-upload: {} of {}", acked.len(), paths.len());

        let v = support::json(&support::run(data.path(), &["verify", "--deep", "--json"]));
        for k in ["orphan_files", "missing_files", "mismatched", "unreadable"] {
            assert!(v[k].as_array().is_some_and(Vec::is_empty), "round {round}, {k}: {v}");
        }
        assert_eq!(v["counters_agree"], true, "round {round}: {v}");
        let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
        for path in &acked {
            let uid = support::attr(path, dicom_core::Tag(0x0008, 0x0018));
            let held = hub.store.get(&ObjectKey::for_uid(&uid)).unwrap().unwrap_or_else(|| panic!("round {round}: {uid} acknowledged but not held"));
            assert!(essence(&held) == essence(&std::fs::read(path).unwrap()), "round {round}: {uid} differs from {}", path.display());
            assert!(hub.index.instance(&uid).unwrap().is_some(), "round {round}: {uid} acknowledged but not indexed");
        }
        acked_total += acked.len();
        intact_total += acked.len();
    }
    support::fault_row(
        "crash::kill_9_during_four_c_store_streams_loses_no_acknowledged_instance",
        &format!("4 storescu at once, {} instances in all, {rounds} rounds", paths.len()),
        &format!("kill -9 after 10% to 85% acknowledged ({rounds} kills)"),
        acked_total,
        intact_total,
        peak_mib,
    );
}
