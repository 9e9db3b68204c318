//! The duplicate policy: identical bytes are a success with nothing
//! rewritten; the same SOP Instance UID with other bytes is kept or
//! replaced as configured.

mod support;

use radhub::index::StudyFilter;
use radhub::ingest::{DuplicatePolicy, Hub, Outcome};
use radhub::store::ObjectKey;

fn ct_small() -> (Vec<u8>, Vec<u8>) {
    let original = std::fs::read(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    // Same UIDs, different pixels: flip the last byte of pixel data.
    let mut altered = original.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0xFF;
    (original, altered)
}

fn mtime(hub: &Hub, uid: &str) -> std::time::SystemTime {
    let p = hub.store.local_path(&ObjectKey::for_uid(uid)).unwrap();
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn identical_bytes_are_success_and_nothing_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(dir.path(), DuplicatePolicy::Keep).unwrap();
    let (original, _) = ct_small();
    let (o, meta) = hub.ingest(&original, None).unwrap();
    assert_eq!(o, Outcome::Stored);
    let before = mtime(&hub, &meta.sop_uid);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(hub.ingest(&original, None).unwrap().0, Outcome::Identical);
    assert_eq!(mtime(&hub, &meta.sop_uid), before);
    assert_eq!(hub.index.counts().unwrap().instances, 1);
}

#[test]
fn keep_policy_keeps_the_held_copy() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(dir.path(), DuplicatePolicy::Keep).unwrap();
    let (original, altered) = ct_small();
    let (_, meta) = hub.ingest(&original, Some("RBD")).unwrap();
    assert_eq!(hub.ingest(&altered, Some("RBD")).unwrap().0, Outcome::KeptExisting);
    let key = ObjectKey::for_uid(&meta.sop_uid);
    assert_eq!(hub.store.get(&key).unwrap().unwrap(), original);
    let rec = hub.index.instance(&meta.sop_uid).unwrap().unwrap();
    assert_eq!(rec.content_hash, *blake3::hash(&original).as_bytes());
    assert_eq!(rec.site, "RBD");
}

#[test]
fn replace_policy_replaces_file_and_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(dir.path(), DuplicatePolicy::Replace).unwrap();
    let (original, altered) = ct_small();
    let (_, meta) = hub.ingest(&original, Some("RBD")).unwrap();
    assert_eq!(hub.ingest(&altered, Some("RBD")).unwrap().0, Outcome::Replaced);
    let key = ObjectKey::for_uid(&meta.sop_uid);
    assert_eq!(hub.store.get(&key).unwrap().unwrap(), altered);
    let rec = hub.index.instance(&meta.sop_uid).unwrap().unwrap();
    assert_eq!(rec.content_hash, *blake3::hash(&altered).as_bytes());
    let c = hub.index.counts().unwrap();
    assert_eq!((c.studies, c.series, c.instances), (1, 1, 1));
    assert_eq!(hub.index.find_studies(&StudyFilter::default()).next().unwrap().unwrap().instances, 1);
}

#[test]
fn the_cli_reports_duplicates_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (original, altered) = ct_small();
    std::fs::write(files.path().join("a.dcm"), &original).unwrap();
    std::fs::write(files.path().join("b.dcm"), &original).unwrap();
    std::fs::write(files.path().join("c.dcm"), &altered).unwrap();
    let s = support::json(&support::run(dir.path(), &["import", "--json", "--jobs", "1", files.path().to_str().unwrap()]));
    assert_eq!((s["imported"].as_u64(), s["duplicates"].as_u64(), s["conflicts_kept"].as_u64()), (Some(1), Some(1), Some(1)));
}
