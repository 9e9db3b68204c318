//! pacs_gateway::scu::get from dcmqrscp, pynetdicom's qrscp and Orthanc
//! 1.10: every sub-operation reaches the sink, the data set as the peer
//! holds it, with the right counts; a sink that answers a failure is counted
//! as failed by the peer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use pacs_gateway::scu::{self, Answer, Model, Peer, Progress, RetrieveOutcome, ScuConfig, StoreRequest, StoreSink};
use pacs_gateway::status::Status;

const STUDY: Tag = Tag(0x0020, 0x000D);
const SOP: Tag = Tag(0x0008, 0x0018);

fn cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB_SCU".into(), connect_timeout: Duration::from_secs(5), dimse_timeout: Duration::from_secs(10), ..Default::default() }
}

fn generate(dir: &Path) -> Vec<PathBuf> {
    support::testdata_files(dir, &["--patients", "2", "--studies-per-patient", "2", "--max-slices", "8", "--ct-size", "32"])
}

/// The study with the most instances: its UID and its files by SOP Instance UID.
fn largest_study(files: &[PathBuf]) -> (String, BTreeMap<String, PathBuf>) {
    let mut by: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for f in files {
        by.entry(support::attr(f, STUDY)).or_default().insert(support::attr(f, SOP), f.clone());
    }
    by.into_iter().max_by_key(|(_, f)| f.len()).unwrap()
}

fn study_query(study: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(Tag(0x0008, 0x0052), VR::CS, PrimitiveValue::from("STUDY")));
    o.put(DataElement::new(STUDY, VR::UI, PrimitiveValue::from(study)));
    o
}

/// A sink keeping what it is sent, failing the instances named in `refuse`.
struct Keep {
    got: Mutex<Vec<StoreRequest>>,
    refuse: BTreeSet<String>,
}

impl StoreSink for Keep {
    fn store(&self, req: StoreRequest) -> Answer {
        let refused = self.refuse.contains(&req.sop_instance_uid);
        self.got.lock().unwrap().push(req);
        if refused {
            Answer::failure(Status::OUT_OF_RESOURCES, "refused by the test")
        } else {
            Answer::success()
        }
    }
}

/// C-GET of the largest study from `peer`, the sink refusing `refuse`.
async fn get_study(peer: &Peer, files: &[PathBuf], refuse: BTreeSet<String>, log: &dyn Fn() -> String) -> (RetrieveOutcome, Vec<StoreRequest>, Vec<Progress>) {
    let (study, held) = largest_study(files);
    let refs: Vec<scu::InstanceRef> = held.values().map(|f| scu::describe(&std::fs::read(f).unwrap()).unwrap()).collect();
    let sink = Arc::new(Keep { got: Mutex::new(Vec::new()), refuse });
    let mut seen = Vec::new();
    let out = scu::get(&cfg(), peer, Model::StudyRoot, &study_query(&study), &scu::classes_of(&refs), sink.clone(), |p| {
        seen.push(*p);
        ControlFlow::Continue(())
    })
    .await
    .unwrap_or_else(|e| panic!("C-GET from {peer}: {e}\n{}", log()));
    let got = std::mem::take(&mut *sink.got.lock().unwrap());
    (out, got, seen)
}

/// Every instance of the study reaches the sink, data set as held, counts right.
async fn gets_the_study(peer: &Peer, files: &[PathBuf], log: &dyn Fn() -> String) {
    let (_, held) = largest_study(files);
    let (out, got, seen) = get_study(peer, files, BTreeSet::new(), log).await;
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(out.status, Status::SUCCESS, "{out:?}\n{}", log());
    assert_eq!((out.counts.completed as usize, out.counts.failed, out.counts.warning), (held.len(), 0, 0), "{out:?}");
    assert!(seen.windows(2).all(|w| w[1].completed > w[0].completed), "{seen:?}");
    let sops: BTreeSet<&String> = got.iter().map(|r| &r.sop_instance_uid).collect();
    assert_eq!(sops, held.keys().collect(), "each instance of the study once");
    for r in &got {
        let f = &held[&r.sop_instance_uid];
        assert_eq!(r.transfer_syntax, support::transfer_syntax(f));
        assert_eq!(r.calling_ae, peer.ae_title);
        // Peers re-encode sequences with defined lengths: compared as dcmdump
        // reads them (support::dump normalises lengths), the meta group aside.
        let got = tmp.path().join(&r.sop_instance_uid);
        std::fs::write(&got, &r.file).unwrap();
        assert_eq!(support::dump(&got), support::dump(f), "{}", f.display());
    }
}

/// A sink failing one instance: the peer counts it failed and says which.
async fn a_refusing_sink_is_counted(peer: &Peer, files: &[PathBuf], log: &dyn Fn() -> String) {
    let (_, held) = largest_study(files);
    let refused = held.keys().next().unwrap().clone();
    let (out, got, _) = get_study(peer, files, BTreeSet::from([refused.clone()]), log).await;
    assert_eq!(got.len(), held.len(), "every sub-operation reached the sink");
    assert_eq!(out.status, Status::SUB_OPERATIONS_WARNING, "{out:?}\n{}", log());
    assert_eq!((out.counts.completed as usize, out.counts.failed), (held.len() - 1, 1), "{out:?}");
    assert_eq!(out.failed_uids, vec![refused], "{out:?}");
}

#[tokio::test]
async fn c_get_from_dcmqrscp() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[]);
    gets_the_study(&qr.peer(), &files, &|| qr.log()).await;
    a_refusing_sink_is_counted(&qr.peer(), &files, &|| qr.log()).await;
}

#[tokio::test]
async fn c_get_from_pynetdicom_qrscp() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let qr = support::qrscp("QRSCP", &files, &[]);
    gets_the_study(&qr.peer(), &files, &|| qr.log()).await;
    a_refusing_sink_is_counted(&qr.peer(), &files, &|| qr.log()).await;
}

#[tokio::test]
async fn c_get_from_orthanc() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let orthanc = support::orthanc("ORTHANC", &[("RADHUB_SCU", support::free_port())], serde_json::json!({}));
    let (ok, out) = support::output(support::dcmtk("storescu").args(["-aec", "ORTHANC", "127.0.0.1", &orthanc.port.to_string()]).args(&files));
    assert!(ok, "storescu to Orthanc: {out}");
    gets_the_study(&orthanc.peer(), &files, &|| orthanc.log()).await;
    a_refusing_sink_is_counted(&orthanc.peer(), &files, &|| orthanc.log()).await;
}

#[tokio::test]
async fn data_sets_over_the_limit_are_refused_before_the_sink_and_a_cancel_ends_with_fe00() {
    let tmp = tempfile::tempdir().unwrap();
    let files = generate(tmp.path());
    let (study, held) = largest_study(&files);
    let qr = support::dcmqrscp("DCMQRSCP", &files, &[]);
    let refs: Vec<scu::InstanceRef> = held.values().map(|f| scu::describe(&std::fs::read(f).unwrap()).unwrap()).collect();
    let classes = scu::classes_of(&refs);

    // Each instance is ~1.7 KB: none fits in 1,000 bytes.
    let small = ScuConfig { max_data_set_bytes: 1000, ..cfg() };
    let sink = Arc::new(Keep { got: Mutex::new(Vec::new()), refuse: BTreeSet::new() });
    let out = scu::get(&small, &qr.peer(), Model::StudyRoot, &study_query(&study), &classes, sink.clone(), |_| ControlFlow::Continue(())).await.unwrap();
    assert!(sink.got.lock().unwrap().is_empty(), "nothing over the limit reaches the sink");
    assert_eq!((out.counts.completed, out.counts.failed as usize), (0, held.len()), "{out:?}");
    assert_eq!(out.status, Status::OUT_OF_RESOURCES_SUB_OPERATIONS, "{out:?}");

    let sink = Arc::new(Keep { got: Mutex::new(Vec::new()), refuse: BTreeSet::new() });
    let out = scu::get(&cfg(), &qr.peer(), Model::StudyRoot, &study_query(&study), &classes, sink.clone(), |_| ControlFlow::Break(())).await.unwrap();
    assert_eq!((out.status, out.cancelled), (Status::CANCEL, true), "{out:?}\n{}", qr.log());
    let got = sink.got.lock().unwrap().len();
    assert!(got >= 1 && got < held.len(), "{got} of {} sent", held.len());
}
