//! radhub serve against DCMTK, the reference DICOM toolkit: echoscu,
//! storescu (every transfer syntax of pydicom's test set, several
//! associations at once), findscu at every level of both models, movescu
//! to a storescp, getscu.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use radhub::dicom::extract::read_meta;
use radhub::index::model::InstanceMeta;
use support::{dcmtk, dump, output, Server};

/// storescu's option proposing each transfer syntax (PS3.5 A).
fn propose(ts: &str) -> Option<&'static str> {
    Some(match ts {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.1" => "-xe",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        _ => return None,
    })
}

/// pydicom's valid instances, by transfer syntax.
fn pydicom_instances() -> BTreeMap<String, Vec<(PathBuf, InstanceMeta)>> {
    let mut by_ts: BTreeMap<String, Vec<(PathBuf, InstanceMeta)>> = BTreeMap::new();
    for e in
        walkdir::WalkDir::new(support::pydicom_data().join("test_files")).max_depth(1).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file())
    {
        if let Ok(m) = read_meta(&std::fs::read(e.path()).unwrap()) {
            by_ts.entry(m.transfer_syntax.clone()).or_default().push((e.path().to_owned(), m));
        }
    }
    by_ts
}

/// The data set of a Part 10 file (what goes over the wire).
fn data_set(file: &[u8]) -> &[u8] {
    let (_, start, _) = dicom_scan::file_meta(file).unwrap();
    &file[start..]
}

fn held(data: &Path, uid: &str) -> Option<Vec<u8>> {
    let hub = radhub::ingest::Hub::open(data, radhub::ingest::DuplicatePolicy::Keep).unwrap();
    hub.store.get(&radhub::store::ObjectKey::for_uid(uid)).unwrap()
}

#[test]
fn echo_and_access_control() {
    let s = Server::start(&["--peer", "ECHOSCU@127.0.0.1:0"]);
    let port = s.port.to_string();
    let (ok, out) = output(dcmtk("echoscu").args(["-aet", "ECHOSCU", "-aec", "RADHUB", "127.0.0.1", &port]));
    assert!(ok, "{out}");
    let (ok, out) = output(dcmtk("echoscu").args(["-aet", "STRANGER", "-aec", "RADHUB", "127.0.0.1", &port]));
    assert!(!ok && out.contains("Calling AE Title Not Recognized"), "{out}");
    let (ok, out) = output(dcmtk("echoscu").args(["-aet", "ECHOSCU", "-aec", "NOT_RADHUB", "127.0.0.1", &port]));
    assert!(!ok && out.contains("Called AE Title Not Recognized"), "{out}");
    let (clean, _) = s.stop();
    assert!(clean, "SIGTERM should stop the server cleanly");
}

#[test]
fn storescu_every_transfer_syntax_stored_as_received() {
    let s = Server::start(&["--accept-any"]);
    let port = s.port.to_string();
    // The first file sent under each SOP Instance UID is the one held
    // (pydicom's variants of one image share UIDs; later ones are kept out).
    let mut sent: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut syntaxes = 0;
    for (ts, files) in pydicom_instances() {
        let Some(opt) = propose(&ts) else { continue };
        // One association per syntax, proposing only that syntax, so each
        // file goes over the wire exactly as it is on disk.
        let mut files = files;
        loop {
            let mut c = dcmtk("storescu");
            c.args(["-aec", "RADHUB", "-R", opt, "127.0.0.1", &port]).args(files.iter().map(|(p, _)| p));
            let (ok, out) = output(&mut c);
            // A file DCMTK itself cannot read is DCMTK's limit, not radhub's: drop it.
            if let Some(bad) = out.lines().find(|l| l.starts_with("F: ") && l.contains("in file: ")).and_then(|l| l.split("in file: ").nth(1)) {
                files.retain(|(p, _)| p.to_str() != Some(bad.trim()));
                continue;
            }
            assert!(ok && !out.contains("E: "), "storescu {ts}: {out}");
            break;
        }
        for (p, m) in &files {
            sent.entry(m.sop_uid.clone()).or_insert_with(|| p.clone());
        }
        syntaxes += usize::from(!files.is_empty());
    }
    assert!(syntaxes >= 11, "only {syntaxes} transfer syntaxes exercised");
    let (clean, data) = s.stop();
    assert!(clean);
    let stats = support::json(&support::run(data.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"].as_u64().unwrap(), sent.len() as u64);
    let mut identical = 0;
    for (uid, path) in &sent {
        let original = std::fs::read(path).unwrap();
        let stored = held(data.path(), uid).unwrap_or_else(|| panic!("{uid} not held"));
        let (_, _, ts) = dicom_scan::file_meta(&stored).unwrap();
        assert_eq!(ts, read_meta(&original).unwrap().transfer_syntax, "{}", path.display());
        if data_set(&stored) == data_set(&original) {
            identical += 1;
            continue;
        }
        // storescu re-encodes some files (sequence lengths, padding): then
        // the stored data set must still be the same to DCMTK's eyes.
        let copy = data.path().join("stored.dcm");
        std::fs::write(&copy, &stored).unwrap();
        let (a, b) = (dump(&copy), dump(path));
        let first = a.iter().zip(&b).find(|(x, y)| x != y);
        assert!(a == b, "{} changed in transit: {first:?}", path.display());
    }
    // storescu re-encodes about a third of pydicom's files; radhub changes none.
    assert!(identical * 2 >= sent.len(), "only {identical} of {} byte-identical", sent.len());
}

fn generated(dir: &Path, patients: &str) -> Vec<(PathBuf, InstanceMeta)> {
    let out = support::radhub()
        .args(["testdata", "--out", dir.to_str().unwrap(), "--patients", patients, "--max-slices", "6", "--ct-size", "64", "--seed", "77"])
        .output()
        .unwrap();
    assert!(out.status.success());
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_owned(), read_meta(&std::fs::read(e.path()).unwrap()).unwrap()))
        .collect()
}

#[test]
fn four_associations_at_once() {
    let files = tempfile::tempdir().unwrap();
    let all = generated(files.path(), "6");
    let s = Server::start(&["--accept-any"]);
    let port = s.port.to_string();
    // (Unconfigured senders: everything is quarantined, and all of it kept.)
    let children: Vec<_> = all
        .chunks(all.len().div_ceil(4))
        .map(|chunk| {
            let mut c = dcmtk("storescu");
            c.args(["-aec", "RADHUB", "127.0.0.1", &port]).args(chunk.iter().map(|(p, _)| p));
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, data) = s.stop();
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    assert_eq!(v["indexed"].as_u64().unwrap(), all.len() as u64);
    assert_eq!(v["files"].as_u64().unwrap(), all.len() as u64);
}

/// Runs findscu and returns, per response, the values of the given tag
/// (as dcmdump prints them, e.g. "(0020,000d)").
fn find(port: &str, model: &str, keys: &[&str], tag: &str) -> BTreeSet<String> {
    let mut c = dcmtk("findscu");
    c.args(["-v", "-aet", "FINDSCU", "-aec", "RADHUB", model]);
    for k in keys {
        c.args(["-k", k]);
    }
    c.args(["127.0.0.1", port]);
    let (ok, out) = output(&mut c);
    assert!(ok && !out.contains("E: "), "findscu {keys:?}: {out}");
    // Only the responses: findscu -v also prints the request identifier.
    out.lines()
        .skip_while(|l| !l.contains("Find Response"))
        .filter(|l| l.contains(tag) && l.contains('['))
        .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.trim_end_matches(['\0', ' ']).to_owned()))
        .collect()
}

#[test]
fn findscu_every_level_and_model_matches_as_ps3_4_says() {
    let files = tempfile::tempdir().unwrap();
    let mut all = generated(files.path(), "5");
    for name in ["CT_small.dcm", "MR_small.dcm"] {
        let p = support::pydicom_data().join("test_files").join(name);
        all.push((p.clone(), read_meta(&std::fs::read(&p).unwrap()).unwrap()));
    }
    let mut peers = support::site_peers();
    peers.extend(["--peer".to_owned(), "FINDSCU@127.0.0.1:0".to_owned()]);
    let s = Server::start(&peers.iter().map(String::as_str).collect::<Vec<_>>());
    let port = s.port.to_string();
    // Each trust's data from its own PACS.
    support::storescu_by_site(s.port, &all.iter().map(|(p, m)| (p.clone(), m.issuer_of_patient_id.clone())).collect::<Vec<_>>());

    let set = |f: &dyn Fn(&InstanceMeta) -> Option<String>| -> BTreeSet<String> { all.iter().filter_map(|(_, m)| f(m)).collect() };
    let study = |pred: &dyn Fn(&InstanceMeta) -> bool| set(&|m: &InstanceMeta| pred(m).then(|| m.study_uid.clone()));
    let (a, b) = (&all[0].1, &all[all.len() - 1].1);

    // PATIENT level, Patient Root: names case-insensitive with wildcards.
    assert_eq!(
        find(&port, "-P", &["QueryRetrieveLevel=PATIENT", "PatientName=compressedsamples*", "PatientID"], "(0010,0020)"),
        BTreeSet::from(["1CT1".to_string(), "4MR1".to_string()])
    );
    // STUDY level, Study Root: Patient ID wildcard.
    assert_eq!(find(&port, "-S", &["QueryRetrieveLevel=STUDY", "PatientID=D*", "StudyInstanceUID"], "(0020,000d)"), study(&|m| m.patient_id.starts_with('D')));
    // Date range.
    assert_eq!(
        find(&port, "-S", &["QueryRetrieveLevel=STUDY", "StudyDate=20230101-20241231", "StudyInstanceUID"], "(0020,000d)"),
        study(&|m| ("20230101".."20241232").contains(&m.study_date.as_str()))
    );
    // Open-ended range.
    assert_eq!(
        find(&port, "-S", &["QueryRetrieveLevel=STUDY", "StudyDate=-20050101", "StudyInstanceUID"], "(0020,000d)"),
        study(&|m| !m.study_date.is_empty() && m.study_date.as_str() <= "20050101")
    );
    // List of UIDs.
    let list = format!("StudyInstanceUID={}\\{}", a.study_uid, b.study_uid);
    assert_eq!(find(&port, "-S", &["QueryRetrieveLevel=STUDY", &list], "(0020,000d)"), BTreeSet::from([a.study_uid.clone(), b.study_uid.clone()]));
    // Modalities in Study (multi-valued attribute).
    assert_eq!(find(&port, "-S", &["QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR", "StudyInstanceUID"], "(0020,000d)"), study(&|m| m.modality == "MR"));
    // STUDY level under Patient Root, by Patient ID.
    let pid = format!("PatientID={}", a.patient_id);
    assert_eq!(find(&port, "-P", &["QueryRetrieveLevel=STUDY", &pid, "StudyInstanceUID"], "(0020,000d)"), study(&|m| m.patient_id == a.patient_id));
    // SERIES level: the series of one study, of one modality.
    let st = format!("StudyInstanceUID={}", a.study_uid);
    let modality = format!("Modality={}", a.modality);
    assert_eq!(
        find(&port, "-S", &["QueryRetrieveLevel=SERIES", &st, &modality, "SeriesInstanceUID"], "(0020,000e)"),
        set(&|m| (m.study_uid == a.study_uid && m.modality == a.modality).then(|| m.series_uid.clone()))
    );
    // IMAGE level, Patient Root, hierarchical.
    let se = format!("SeriesInstanceUID={}", a.series_uid);
    assert_eq!(
        find(&port, "-P", &["QueryRetrieveLevel=IMAGE", &pid, &st, &se, "SOPInstanceUID"], "(0008,0018)"),
        set(&|m| (m.series_uid == a.series_uid).then(|| m.sop_uid.clone()))
    );
    // No match: zero responses, success.
    assert!(find(&port, "-S", &["QueryRetrieveLevel=STUDY", "PatientName=NOBODY^HERE", "StudyInstanceUID"], "(0020,000d)").is_empty());
    // Study Root has no PATIENT level: refused (A900), not answered.
    let (_, out) = output(dcmtk("findscu").args([
        "-v",
        "-aet",
        "FINDSCU",
        "-aec",
        "RADHUB",
        "-S",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID",
        "127.0.0.1",
        &port,
    ]));
    assert!(out.contains("Final Find Response (Error: DataSetDoesNotMatchSOPClass)"), "{out}");
}

/// The SOP Instance UIDs of the files a receiver wrote into `dir`.
fn sop_uids_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| read_meta(&std::fs::read(e.unwrap().path()).unwrap()).unwrap().sop_uid).collect()
}

#[test]
fn movescu_to_storescp_and_getscu() {
    let files = tempfile::tempdir().unwrap();
    let all = generated(files.path(), "2");
    let dest_port = support::free_port();
    let mut peers = support::site_peers();
    peers.extend(["--peer".to_owned(), format!("STORESCP@127.0.0.1:{dest_port}"), "--accept-any".to_owned()]);
    let s = Server::start(&peers.iter().map(String::as_str).collect::<Vec<_>>());
    let port = s.port.to_string();
    support::storescu_by_site(s.port, &all.iter().map(|(p, m)| (p.clone(), m.issuer_of_patient_id.clone())).collect::<Vec<_>>());

    let target = &all[0].1;
    let expected: BTreeSet<String> = all.iter().filter(|(_, m)| m.study_uid == target.study_uid).map(|(_, m)| m.sop_uid.clone()).collect();
    let received = tempfile::tempdir().unwrap();
    let mut scp = dcmtk("storescp")
        .args(["-aet", "STORESCP", "-od", received.path().to_str().unwrap(), &dest_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = format!("StudyInstanceUID={}", target.study_uid);
    let (ok, out) = output(dcmtk("movescu").args([
        "-v",
        "-aet",
        "MOVESCU",
        "-aec",
        "RADHUB",
        "-aem",
        "STORESCP",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &st,
        "127.0.0.1",
        &port,
    ]));
    let _ = scp.kill();
    let _ = scp.wait();
    assert!(ok && out.contains("Final Move Response (Success)"), "{out}");
    let got: BTreeSet<String> = sop_uids_in(received.path());
    assert_eq!(got, expected);

    // Unknown destination: 0xA801 (PS3.4 C.4.2.1.5), nothing sent.
    let (_, out) = output(dcmtk("movescu").args([
        "-aet",
        "MOVESCU",
        "-aec",
        "RADHUB",
        "-aem",
        "NOWHERE",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &st,
        "127.0.0.1",
        &port,
    ]));
    assert!(out.contains("MoveDestinationUnknown"), "{out}");

    // C-GET on the same association.
    let got_dir = tempfile::tempdir().unwrap();
    let (ok, out) = output(dcmtk("getscu").args([
        "-v",
        "-aec",
        "RADHUB",
        "-S",
        "-od",
        got_dir.path().to_str().unwrap(),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &st,
        "127.0.0.1",
        &port,
    ]));
    assert!(ok, "{out}");
    let got: BTreeSet<String> = sop_uids_in(got_dir.path());
    assert_eq!(got, expected);
    assert!(out.contains(&format!("Number of Completed Suboperations : {}", expected.len())), "{out}");
}
