//! pacs_gateway::scu::StoreAssociation: many instances over one association
//! to DCMTK storescp and to Orthanc, each landing as sent; a compressed
//! instance to a peer that takes only uncompressed syntaxes refused on its
//! own while the association goes on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_core::Tag;
use pacs_gateway::scu::{self, ScuConfig, ScuError, StoreAssociation};
use pacs_gateway::status::Status;

const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);

fn cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB_SCU".into(), connect_timeout: Duration::from_secs(5), dimse_timeout: Duration::from_secs(10), ..Default::default() }
}

/// pydicom files of distinct instances in many transfer syntaxes.
fn pydicom_files() -> Vec<PathBuf> {
    let dir = support::pydicom_data().join("test_files");
    [
        "CT_small.dcm",              // explicit VR LE
        "MR_small_implicit.dcm",     // implicit VR LE
        "ExplVR_BigEnd.dcm",         // explicit VR BE
        "image_dfl.dcm",             // deflated
        "JPEG2000.dcm",              // JPEG 2000
        "JPEGLSNearLossless_16.dcm", // JPEG-LS near-lossless
        "SC_rgb_jpeg_dcmtk.dcm",     // JPEG baseline
        "SC_rgb_rle.dcm",            // RLE
        "reportsi.dcm",              // no pixel data: Basic Text SR
        "waveform_ecg.dcm",          // 12-lead ECG
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// Opens one association for `files` and sends them all on it, in order.
async fn send_all(peer: &scu::Peer, files: &[PathBuf]) -> Vec<Result<scu::Answer, ScuError>> {
    send_all_logged(peer, files, &|| String::new()).await
}

async fn send_all_logged(peer: &scu::Peer, files: &[PathBuf], log: &dyn Fn() -> String) -> Vec<Result<scu::Answer, ScuError>> {
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let refs: Vec<scu::InstanceRef> = bytes.iter().map(|b| scu::describe(b).unwrap()).collect();
    let mut assoc = StoreAssociation::connect(&cfg(), peer, &scu::classes_of(&refs)).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let mut out = Vec::new();
    for b in &bytes {
        out.push(assoc.store(b).await);
        assert!(assoc.is_usable(), "association lost after {} files: {:?}\n{}", out.len(), out.last(), log());
    }
    assoc.release().await.expect("released");
    out
}

/// storescp's files by SOP Instance UID.
fn received(dir: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).map(|p| (support::attr(&p, SOP_INSTANCE_UID), p)).collect()
}

fn generated(dir: &Path) -> Vec<PathBuf> {
    support::testdata_files(dir, &["--patients", "2", "--studies-per-patient", "1", "--max-slices", "3", "--ct-size", "64"])
}

#[tokio::test]
async fn many_instances_over_one_association_land_in_storescp_as_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = generated(tmp.path());
    files.extend(pydicom_files());
    // +xa: every syntax DCMTK knows, so each instance goes in its own.
    let storescp = support::storescp("STORESCP", &["+xa"]);
    let answers = send_all_logged(&storescp.peer(), &files, &|| storescp.log()).await;
    for (f, a) in files.iter().zip(&answers) {
        let a = a.as_ref().unwrap_or_else(|e| panic!("{}: {e}\n{}", f.display(), storescp.log()));
        assert_eq!(a.status, Status::SUCCESS, "{}: {a:?}", f.display());
    }
    assert_eq!(storescp.log().matches("Association Acknowledged").count(), 1, "{}", storescp.log());
    let got = received(&storescp.received());
    assert_eq!(got.len(), files.len());
    for f in &files {
        let uid = support::attr(f, SOP_INSTANCE_UID);
        let r = got.get(&uid).unwrap_or_else(|| panic!("{} not received", f.display()));
        assert_eq!(support::dump(r), support::dump(f), "{}", f.display());
        // Sent in its own transfer syntax, not converted.
        assert_eq!(support::transfer_syntax(r), support::transfer_syntax(f), "{}", f.display());
    }
}

#[tokio::test]
async fn many_instances_over_one_association_all_reach_orthanc() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generated(tmp.path());
    let orthanc = support::orthanc("ORTHANC", &[], serde_json::json!({}));
    for (f, a) in files.iter().zip(send_all(&orthanc.peer(), &files).await) {
        assert_eq!(a.unwrap_or_else(|e| panic!("{}: {e}", f.display())).status, Status::SUCCESS, "{}", f.display());
    }
    let (status, found) = orthanc.rest("POST", "/tools/find", Some(r#"{"Level":"Instance","Query":{},"Expand":true}"#));
    assert_eq!(status, 200, "{found}");
    let held: BTreeSet<String> = found.as_array().unwrap().iter().filter_map(|i| i["MainDicomTags"]["SOPInstanceUID"].as_str().map(str::to_owned)).collect();
    let sent: BTreeSet<String> = files.iter().map(|f| support::attr(f, SOP_INSTANCE_UID)).collect();
    assert_eq!(held, sent);
}

#[tokio::test]
async fn a_compressed_instance_to_an_uncompressed_only_peer_fails_alone() {
    let dir = support::pydicom_data().join("test_files");
    // Deflate is native: re-encoded to an uncompressed syntax; JPEG 2000 is not.
    let files: Vec<PathBuf> = ["CT_small.dcm", "JPEG2000.dcm", "image_dfl.dcm", "MR_small_implicit.dcm"].iter().map(|f| dir.join(f)).collect();
    let storescp = support::storescp("STORESCP", &[]);
    let answers = send_all(&storescp.peer(), &files).await;
    match &answers[1] {
        Err(e @ ScuError::NoContext(why)) => {
            assert!(!e.ends_association());
            assert!(why.contains("JPEG 2000") && why.contains("not accepted"), "{why}");
        }
        other => panic!("JPEG 2000 to an uncompressed-only peer: {other:?}"),
    }
    for i in [0, 2, 3] {
        assert_eq!(answers[i].as_ref().map(|a| a.status).ok(), Some(Status::SUCCESS), "{}: {:?}", files[i].display(), answers[i]);
    }
    let got = received(&storescp.received());
    assert_eq!(got.len(), 3, "{got:?}");
    let deflated = &got[&support::attr(&files[2], SOP_INSTANCE_UID)];
    assert_eq!(support::transfer_syntax(deflated), "1.2.840.10008.1.2.1", "re-encoded to explicit VR little endian");
    // The same data set in another encoding: dcmdump's lines but its "# Used TransferSyntax" notes.
    let elements = |p: &Path| support::dump(p).into_iter().filter(|l| !l.starts_with('#')).collect::<Vec<_>>();
    assert_eq!(elements(deflated), elements(&files[2]));
}
