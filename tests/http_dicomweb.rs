//! DICOMweb against a real client: Python's dicomweb-client drives STOW-RS,
//! QIDO-RS and WADO-RS over pydicom's whole test set, with pydicom as the
//! oracle (tests/interop/dicomweb_check.py): instances come back
//! byte-identical, metadata equals what pydicom reads, frames equal
//! pydicom's, rendered images decode. What STOW-RS refuses must be exactly
//! what `radhub import` refuses.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::{pydicom_sets, run, user_token, Server};

#[test]
fn dicomweb_client_over_pydicom_test_files() {
    let data = tempfile::tempdir().unwrap();
    let token = user_token(data.path(), "pacsadmin", "admin");
    let server = Server::start_in(data, &["--stow-site", "RBD"]);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{manifest}/tests/interop/dicomweb_check.py"))
        .args(["--url", &format!("{}/dicom-web", server.http()), "--token", &token])
        .args(["--known-render-failures", &format!("{manifest}/tests/render/failures.tsv")])
        .args(pydicom_sets())
        .output()
        .expect("python3 runs the dicomweb-client harness");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("harness output is not JSON ({e}):\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    let failures = report["failures"].as_array().expect("failures");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
    assert!(out.status.success(), "harness exit: {stderr}");
    let stored = report["stored"].as_array().unwrap().len();
    assert!(stored >= 150, "only {stored} of pydicom's files stored");
    assert!(report["checks"].as_u64().unwrap() >= 3000, "{} checks", report["checks"]);

    // STOW-RS and import share one gate.
    let refused: BTreeSet<String> = report["refused"].as_object().unwrap().keys().cloned().collect();
    let other = tempfile::tempdir().unwrap();
    let mut args = vec!["import".to_owned(), "--json".to_owned()];
    args.extend(pydicom_sets().iter().map(|p| p.display().to_string()));
    let imported = support::json(&run(other.path(), &args.iter().map(String::as_str).collect::<Vec<_>>()));
    // The harness sends only DICOM files (by name or preamble); import also
    // meets the folders' READMEs and dumps.
    let sent: BTreeSet<String> =
        report["stored"].as_array().unwrap().iter().filter_map(|p| p.as_str().map(str::to_owned)).chain(refused.iter().cloned()).collect();
    let rejected: BTreeSet<String> =
        imported["rejections"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_owned()).filter(|p| sent.contains(p)).collect();
    assert_eq!(refused, rejected, "STOW-RS refused (left) and import rejected (right) differ");
}

/// STOW-RS of `files` in one multipart request; the instance URLs stored.
fn stow(base: &str, token: &str, files: &[std::path::PathBuf]) -> Vec<String> {
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let r = support::stow(base, token, &bytes.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["00081199"]["Value"].as_array().unwrap().iter().map(|i| i["00081190"]["Value"][0].as_str().unwrap().to_owned()).collect()
}

#[test]
fn series_metadata_follows_new_arrivals() {
    let data = tempfile::tempdir().unwrap();
    let token = user_token(data.path(), "pacsadmin", "admin");
    let gen = tempfile::tempdir().unwrap();
    run(data.path(), &["testdata", "--out", gen.path().to_str().unwrap(), "--patients", "1", "--max-slices", "6", "--ct-size", "64"]);
    let server = Server::start_in(data, &["--stow-site", "RBD"]);
    let base = server.http();
    // The generator writes site/study/series/instance.dcm: take a series of four or more.
    let series_dir = walk_dirs(gen.path()).into_iter().find(|d| files_in(d).len() >= 4).expect("a series of four instances");
    let files = files_in(&series_dir);
    let urls = stow(&base, &token, &files[..2]);
    let series_url = urls[0].rsplit_once("/instances/").unwrap().0.trim_start_matches(&base).to_owned();
    let count = |what: &str| {
        let r = support::get(&base, &format!("{series_url}/metadata"), &token);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        r.json().as_array().unwrap().len()
    };
    assert_eq!(count("first"), 2);
    assert_eq!(count("again"), 2);
    stow(&base, &token, &files[2..]);
    assert_eq!(count("after more arrived"), files.len(), "series metadata left out instances stored after it was first asked for");
    let study_url = series_url.rsplit_once("/series/").unwrap().0.to_owned();
    let study = support::get(&base, &format!("{study_url}/metadata"), &token);
    assert!(study.json().as_array().unwrap().len() >= files.len());
}

fn walk_dirs(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![d.to_path_buf()];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk_dirs(&e.path()));
        }
    }
    out
}

fn files_in(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}
