//! pacs_gateway::scu::move_to: dcmqrscp, pynetdicom's qrscp and Orthanc
//! send a study to a DCMTK storescp the test started (each SCP knows it as
//! STORESCP); pending counts rise, the final counts are right, and the
//! destination holds exactly the study. An unknown destination is a
//! failure status; a cancel after the first pending response ends with FE00.

mod support;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use pacs_gateway::scu::{self, Model, Peer, Progress, ScuConfig};
use pacs_gateway::status::{Category, Status};

const STUDY: Tag = Tag(0x0020, 0x000D);
const SOP: Tag = Tag(0x0008, 0x0018);

fn cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB_SCU".into(), connect_timeout: Duration::from_secs(5), dimse_timeout: Duration::from_secs(10), ..Default::default() }
}

fn generate(dir: &Path) -> Vec<PathBuf> {
    support::testdata_files(dir, &["--patients", "2", "--studies-per-patient", "2", "--max-slices", "8", "--ct-size", "32"])
}

/// The study with the most instances, and their SOP Instance UIDs.
fn largest_study(files: &[PathBuf]) -> (String, BTreeSet<String>) {
    let rows: Vec<(String, String)> = files.iter().map(|f| (support::attr(f, STUDY), support::attr(f, SOP))).collect();
    let studies: BTreeSet<&String> = rows.iter().map(|(s, _)| s).collect();
    let (study, sops) = studies
        .into_iter()
        .map(|s| (s.clone(), rows.iter().filter(|(st, _)| st == s).map(|(_, i)| i.clone()).collect::<BTreeSet<_>>()))
        .max_by_key(|(_, i)| i.len())
        .unwrap();
    (study, sops)
}

fn study_query(study: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(Tag(0x0008, 0x0052), VR::CS, PrimitiveValue::from("STUDY")));
    o.put(DataElement::new(STUDY, VR::UI, PrimitiveValue::from(study)));
    o
}

/// SOP Instance UIDs of what storescp received.
fn received(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| support::attr(&e.unwrap().path(), SOP)).collect()
}

/// Moves the largest study from `peer` to `dest` and checks counts and arrivals.
async fn moves_the_study(peer: &Peer, dest: &support::PeerProc, files: &[PathBuf], log: impl Fn() -> String) {
    let (study, sops) = largest_study(files);
    let mut seen: Vec<Progress> = Vec::new();
    let out = scu::move_to(&cfg(), peer, Model::StudyRoot, &study_query(&study), &dest.ae, |p| {
        seen.push(*p);
        ControlFlow::Continue(())
    })
    .await
    .unwrap_or_else(|e| panic!("C-MOVE from {peer}: {e}\n{}", log()));
    assert_eq!(out.status, Status::SUCCESS, "{out:?}\n{}", log());
    assert_eq!((out.counts.completed as usize, out.counts.failed, out.counts.warning), (sops.len(), 0, 0), "{out:?}");
    assert!(!out.cancelled && out.failed_uids.is_empty(), "{out:?}");
    // Pending counts rise one sub-operation at a time.
    assert!(!seen.is_empty() && out.pending == seen.len(), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1].completed > w[0].completed), "{seen:?}");
    assert!(seen.iter().all(|p| p.completed as usize <= sops.len() && p.failed == 0), "{seen:?}");
    assert_eq!(received(&dest.received()), sops, "the destination holds exactly the study\n{}", dest.log());
}

#[tokio::test]
async fn dcmqrscp_moves_a_study_to_storescp() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let dest = support::storescp("STORESCP", &[]);
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[("STORESCP", dest.port)]);
    moves_the_study(&qr.peer(), &dest, &files, || qr.log()).await;
}

#[tokio::test]
async fn pynetdicom_qrscp_moves_a_study_to_storescp() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let dest = support::storescp("STORESCP", &[]);
    let qr = support::qrscp("QRSCP", &files, &[("STORESCP", dest.port)]);
    moves_the_study(&qr.peer(), &dest, &files, || qr.log()).await;
}

#[tokio::test]
async fn orthanc_moves_a_study_to_storescp() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let dest = support::storescp("STORESCP", &[]);
    let orthanc = support::orthanc("ORTHANC", &[("RADHUB_SCU", support::free_port()), ("STORESCP", dest.port)], serde_json::json!({}));
    let (ok, out) = support::output(support::dcmtk("storescu").args(["-aec", "ORTHANC", "127.0.0.1", &orthanc.port.to_string()]).args(&files));
    assert!(ok, "storescu to Orthanc: {out}");
    moves_the_study(&orthanc.peer(), &dest, &files, || orthanc.log()).await;
}

#[tokio::test]
async fn an_unknown_destination_is_a_failure_status_and_a_cancel_ends_with_fe00() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let dest = support::storescp("STORESCP", &[]);
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[("STORESCP", dest.port)]);
    let (study, sops) = largest_study(&files);
    let out = scu::move_to(&cfg(), &qr.peer(), Model::StudyRoot, &study_query(&study), "NOWHERE", |_| ControlFlow::Continue(())).await.unwrap();
    assert_eq!(out.status, Status::MOVE_DESTINATION_UNKNOWN, "{out:?}");
    assert_eq!(out.status.category(), Category::Failure);
    assert!(received(&dest.received()).is_empty());

    let out = scu::move_to(&cfg(), &qr.peer(), Model::StudyRoot, &study_query(&study), "STORESCP", |_| ControlFlow::Break(())).await.unwrap();
    assert_eq!((out.status, out.cancelled), (Status::CANCEL, true), "{out:?}\n{}", qr.log());
    let got = received(&dest.received());
    assert!(!got.is_empty() && got.len() < sops.len() && got.is_subset(&sops), "{} of {} sent", got.len(), sops.len());
}
