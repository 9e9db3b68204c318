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
    let server = Server::start_in(data, &[]);
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
