//! pacs_gateway::scu::find against DCMTK dcmqrscp, pynetdicom's qrscp and
//! Orthanc, each holding radhub's generated studies: study, series and
//! image levels answer what the files hold; a C-CANCEL after the first
//! match ends with FE00; a peer that stops answering is a timeout within
//! the DIMSE timeout (Orthanc with a C-FIND filter that sleeps).

mod support;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use pacs_gateway::scu::{self, Model, Peer, ScuConfig, ScuError};
use pacs_gateway::status::Status;

const LEVEL: Tag = Tag(0x0008, 0x0052);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const STUDY: Tag = Tag(0x0020, 0x000D);
const SERIES: Tag = Tag(0x0020, 0x000E);
const SOP: Tag = Tag(0x0008, 0x0018);
const MODALITY: Tag = Tag(0x0008, 0x0060);

fn cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB_SCU".into(), connect_timeout: Duration::from_secs(5), dimse_timeout: Duration::from_secs(10), ..Default::default() }
}

/// What each generated file is: (Patient ID, study, series, SOP instance, modality).
struct Held(Vec<[String; 5]>);

impl Held {
    fn of(files: &[PathBuf]) -> Held {
        Held(files.iter().map(|f| [PATIENT_ID, STUDY, SERIES, SOP, MODALITY].map(|t| support::attr(f, t))).collect())
    }

    /// Column `out` of the rows whose column `by` is `v`.
    fn select(&self, by: usize, v: &str, out: usize) -> BTreeSet<String> {
        self.0.iter().filter(|r| r[by] == v).map(|r| r[out].clone()).collect()
    }
}

fn generate(dir: &Path) -> Vec<PathBuf> {
    support::testdata_files(dir, &["--patients", "3", "--studies-per-patient", "2", "--max-slices", "12", "--ct-size", "32"])
}

/// An identifier: the level, then each key (empty: return it).
fn query(level: &str, keys: &[(Tag, &str)]) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(LEVEL, VR::CS, PrimitiveValue::from(level)));
    for (t, v) in keys {
        let vr = if [STUDY, SERIES, SOP].contains(t) {
            VR::UI
        } else if *t == MODALITY {
            VR::CS
        } else {
            VR::LO
        };
        o.put(DataElement::new(*t, vr, PrimitiveValue::from(*v)));
    }
    o
}

fn text(o: &InMemDicomObject, t: Tag) -> String {
    o.get(t).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned()).unwrap_or_default()
}

/// The values of `tag` over every match; `distinct`: one match per value.
async fn values(peer: &Peer, model: Model, q: &InMemDicomObject, tag: Tag, distinct: bool) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    let out = scu::find(&cfg(), peer, model, q, |m| {
        got.insert(text(&m, tag));
        ControlFlow::Continue(())
    })
    .await
    .unwrap_or_else(|e| panic!("C-FIND to {peer}: {e}"));
    assert_eq!(out.status, Status::SUCCESS, "{out:?}");
    if distinct {
        assert_eq!(out.matches, got.len(), "one match per value");
    }
    got
}

/// Study, series and image level queries answer what the files hold.
/// `distinct`: one match per study or series (pynetdicom's qrscp answers
/// one per instance at every level).
async fn levels_match(peer: &Peer, held: &Held, distinct: bool) {
    let first = &held.0[0];
    let (patient, study, series) = (&first[0], &first[1], &first[2]);
    let studies = values(peer, Model::StudyRoot, &query("STUDY", &[(PATIENT_ID, patient), (STUDY, "")]), STUDY, distinct).await;
    assert_eq!(studies, held.select(0, patient, 1), "studies of patient {patient}");
    assert!(studies.len() >= 2, "the patient has several studies: {studies:?}");
    let studies = values(peer, Model::PatientRoot, &query("STUDY", &[(PATIENT_ID, patient), (STUDY, "")]), STUDY, distinct).await;
    assert_eq!(studies, held.select(0, patient, 1), "Patient Root, studies of patient {patient}");
    let q = query("SERIES", &[(STUDY, study), (SERIES, ""), (MODALITY, "")]);
    assert_eq!(values(peer, Model::StudyRoot, &q, SERIES, distinct).await, held.select(1, study, 2), "series of study {study}");
    assert_eq!(values(peer, Model::StudyRoot, &q, MODALITY, false).await, held.select(1, study, 4), "modalities of study {study}");
    let images = values(peer, Model::StudyRoot, &query("IMAGE", &[(STUDY, study), (SERIES, series), (SOP, "")]), SOP, true).await;
    assert_eq!(images, held.select(2, series, 3), "images of series {series}");
}

#[tokio::test]
async fn levels_answer_what_dcmqrscp_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[]);
    levels_match(&qr.peer(), &Held::of(&files), true).await;
}

#[tokio::test]
async fn levels_answer_what_pynetdicom_qrscp_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let qr = support::qrscp("QRSCP", &files, &[]);
    levels_match(&qr.peer(), &Held::of(&files), false).await;
}

#[tokio::test]
async fn levels_answer_what_orthanc_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let orthanc = support::orthanc("ORTHANC", &[("RADHUB_SCU", support::free_port())], serde_json::json!({}));
    let (ok, out) = support::output(support::dcmtk("storescu").args(["-aec", "ORTHANC", "127.0.0.1", &orthanc.port.to_string()]).args(&files));
    assert!(ok, "storescu to Orthanc: {out}");
    levels_match(&orthanc.peer(), &Held::of(&files), true).await;
}

/// Every instance held, at IMAGE level (Patient Root; dcmqrscp takes
/// universal keys above the level): enough matches that the peer is still
/// sending when the first one is in.
fn every_image() -> InMemDicomObject {
    query("IMAGE", &[(PATIENT_ID, ""), (STUDY, ""), (SERIES, ""), (SOP, "")])
}

#[tokio::test]
async fn a_cancel_after_the_first_match_ends_the_find() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let held = Held::of(&files);
    assert!(files.len() > 150, "{} files", files.len());
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[]);
    let mut seen = Vec::new();
    let out = scu::find(&cfg(), &qr.peer(), Model::PatientRoot, &every_image(), |m| {
        seen.push(text(&m, SOP));
        ControlFlow::Break(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", qr.log()));
    // FE00, or 0000 when the peer had sent its last match before the
    // C-CANCEL reached it (PS3.4 C.4.1.3.1.4: a busy machine makes that race).
    assert!(matches!(out.status, Status::CANCEL | Status::SUCCESS) && out.cancelled && out.matches == 1, "{out:?}");
    assert_eq!(seen.len(), 1);
    assert!(held.0.iter().any(|r| r[3] == seen[0]), "{seen:?}");
    // The association was released after the cancel: the next query is answered in full.
    let all = values(&qr.peer(), Model::PatientRoot, &every_image(), SOP, true).await;
    assert_eq!(all.len(), files.len());
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_a_timeout_within_the_dimse_timeout() {
    // Orthanc whose C-FIND filter takes 10 s: it accepts the association
    // and the request, then sends nothing.
    let lua = tempfile::tempdir().unwrap();
    let script = lua.path().join("slow_find.lua");
    std::fs::write(&script, "function IncomingFindRequestFilter(query, origin)\n  os.execute('sleep 10')\n  return query\nend\n").unwrap();
    let orthanc = support::orthanc("ORTHANC", &[], serde_json::json!({ "LuaScripts": [script] }));
    let cfg = ScuConfig { dimse_timeout: Duration::from_secs(2), ..cfg() };
    let t = Instant::now();
    let r = scu::find(&cfg, &orthanc.peer(), Model::StudyRoot, &query("STUDY", &[(STUDY, "")]), |_| ControlFlow::Continue(())).await;
    let took = t.elapsed();
    match r {
        Err(ScuError::Timeout { what, secs: 2 }) => assert_eq!(what, "C-FIND response"),
        other => panic!("{other:?}\n{}", orthanc.log()),
    }
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "{took:?}");
}
