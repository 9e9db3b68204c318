//! The index's secondary indexes and aggregates, through the `Index` trait:
//! lookups, newest-first order, removal, patients keyed by (issuer, ID),
//! and NHS-number linking with its conflicts and log.

mod support;

use radhub::index::identity::{Demographics, IdentityChange, IdentityEvent};
use radhub::index::link::{ConflictKind, Decision, LinkAction};
use radhub::index::matching::DateRange;
use radhub::index::model::{InstanceMeta, PatientKey, PatientRecord, StudyRecord};
use radhub::index::{Index, IndexError, PatientFilter, SledIndex, StudyFilter, Upsert};

fn meta(site: &str, pid: &str, name: &str, study: u32, series: u32, sop: u32) -> InstanceMeta {
    InstanceMeta {
        site: site.into(),
        issuer: site.into(),
        patient_id: pid.into(),
        issuer_of_patient_id: site.into(),
        patient_name: name.into(),
        study_uid: format!("1.2.826.0.1.{study}"),
        study_date: format!("2024{:02}{:02}", 1 + study % 12, 1 + study % 28),
        accession_number: format!("ACC{study:05}"),
        series_uid: format!("1.2.826.0.1.{study}.{series}"),
        modality: if series.is_multiple_of(2) { "CT".into() } else { "MR".into() },
        sop_uid: format!("1.2.826.0.1.{study}.{series}.{sop}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        file_size: 1000,
        ..Default::default()
    }
}

fn open() -> (tempfile::TempDir, SledIndex) {
    let dir = tempfile::tempdir().unwrap();
    let (ix, legacy) = SledIndex::open(&dir.path().join("index")).unwrap();
    assert!(legacy.is_none());
    (dir, ix)
}

fn studies(ix: &SledIndex, f: &StudyFilter) -> Vec<StudyRecord> {
    ix.find_studies(f).collect::<Result<_, _>>().unwrap()
}

fn patients(ix: &SledIndex, f: &PatientFilter) -> Vec<PatientRecord> {
    ix.find_patients(f).collect::<Result<_, _>>().unwrap()
}

fn uids(v: Vec<radhub::index::model::StudyRecord>) -> Vec<String> {
    let mut u: Vec<String> = v.into_iter().map(|s| s.uid).collect();
    u.sort();
    u
}

#[test]
fn lookups_by_patient_id_accession_date_and_name() {
    let (_d, ix) = open();
    // Study n belongs to patient n % 5; two series of two instances each.
    let names = ["SMITH^JOHN", "Smithson^Ann", "O'BRIEN^SIOBHAN", "MÜLLER^JÖRG", "JONES^MARY"];
    for study in 0..50u32 {
        let p = (study % 5) as usize;
        for series in 0..2 {
            for sop in 0..2 {
                ix.upsert(&meta("RBD", &format!("D{p:07}"), names[p], study, series, sop)).unwrap();
            }
        }
    }
    let by = |f: StudyFilter| uids(studies(&ix, &f));
    let expect = |pred: &dyn Fn(u32) -> bool| -> Vec<String> {
        let mut v: Vec<String> = (0..50u32).filter(|s| pred(*s)).map(|s| format!("1.2.826.0.1.{s}")).collect();
        v.sort();
        v
    };

    assert_eq!(by(StudyFilter { patient_id: Some("D0000002".into()), ..Default::default() }), expect(&|s| s % 5 == 2));
    assert_eq!(by(StudyFilter { patient_id: Some("D000000?".into()), ..Default::default() }).len(), 50);
    assert_eq!(by(StudyFilter { accession: Some("ACC00017".into()), ..Default::default() }), expect(&|s| s == 17));
    let march = DateRange::parse("20240301-20240331").unwrap();
    assert_eq!(by(StudyFilter { date: Some(march), ..Default::default() }), expect(&|s| 1 + s % 12 == 3));
    // Names: case-insensitive, accents folded, prefix and exact.
    assert_eq!(by(StudyFilter { patient_name: Some("smith*".into()), ..Default::default() }), expect(&|s| s % 5 <= 1));
    assert_eq!(by(StudyFilter { patient_name: Some("SMITH^JOHN".into()), ..Default::default() }), expect(&|s| s % 5 == 0));
    assert_eq!(by(StudyFilter { patient_name: Some("muller^jorg".into()), ..Default::default() }), expect(&|s| s % 5 == 3));
    assert_eq!(by(StudyFilter { patient_name: Some("*BRIEN*".into()), ..Default::default() }), expect(&|s| s % 5 == 2));
    // Combined: index narrows, the rest filters.
    let both = StudyFilter { patient_id: Some("D0000001".into()), date: Some(DateRange::parse("20240101-20240630").unwrap()), ..Default::default() };
    assert_eq!(by(both), expect(&|s| s % 5 == 1 && s % 12 < 6));
    assert_eq!(ix.find_studies(&StudyFilter { modality: Some("MR".into()), ..Default::default() }).take(7).count(), 7);

    let s = ix.study("1.2.826.0.1.7").unwrap().unwrap();
    assert_eq!((s.series, s.instances, s.modalities.len()), (2, 4, 2));
    let c = ix.counts().unwrap();
    assert_eq!((c.patients, c.studies, c.series, c.instances, c.bytes), (5, 50, 100, 200, 200_000));
    assert_eq!(ix.instances_of("1.2.826.0.1.7", Some("1.2.826.0.1.7.1")).unwrap().len(), 2);
    assert_eq!(ix.series("1.2.826.0.1.7.1").unwrap().unwrap().study_uid, "1.2.826.0.1.7");
}

#[test]
fn removal_unwinds_aggregates_and_secondary_indexes() {
    let (_d, ix) = open();
    for sop in 0..3 {
        ix.upsert(&meta("RD3", "P1", "DOE^JANE", 1, 0, sop)).unwrap();
    }
    ix.upsert(&meta("RD3", "P1", "DOE^JANE", 1, 1, 0)).unwrap();
    assert_eq!(ix.study("1.2.826.0.1.1").unwrap().unwrap().modalities.len(), 2);
    // Removing the MR series' only instance drops the series and its modality.
    ix.remove_instance("1.2.826.0.1.1.1.0").unwrap().unwrap();
    let s = ix.study("1.2.826.0.1.1").unwrap().unwrap();
    assert_eq!((s.series, s.instances), (1, 3));
    assert_eq!(s.modalities.into_iter().collect::<Vec<_>>(), vec!["CT".to_string()]);
    for sop in 0..3 {
        ix.remove_instance(&format!("1.2.826.0.1.1.0.{sop}")).unwrap().unwrap();
    }
    assert!(ix.study("1.2.826.0.1.1").unwrap().is_none());
    assert!(studies(&ix, &StudyFilter { patient_id: Some("P1".into()), ..Default::default() }).is_empty());
    assert!(studies(&ix, &StudyFilter { accession: Some("ACC00001".into()), ..Default::default() }).is_empty());
    assert!(studies(&ix, &StudyFilter::default()).is_empty(), "the date index still names a removed study");
    assert!(patients(&ix, &PatientFilter::default()).is_empty());
    assert_eq!(ix.counts().unwrap(), Default::default());
    assert!(ix.remove_instance("1.2.826.0.1.1.0.0").unwrap().is_none());
}

#[test]
fn upsert_of_a_held_uid_replaces_its_entry() {
    let (_d, ix) = open();
    let mut m = meta("R0D", "RBH1", "DOE^JOHN", 2, 0, 0);
    assert_eq!(ix.upsert(&m).unwrap(), Upsert::Inserted);
    m.file_size = 5000;
    m.accession_number = "NEWACC".into();
    assert_eq!(ix.upsert(&m).unwrap(), Upsert::Replaced);
    let c = ix.counts().unwrap();
    assert_eq!((c.instances, c.bytes), (1, 5000));
    assert!(studies(&ix, &StudyFilter { accession: Some("ACC00002".into()), ..Default::default() }).is_empty());
    assert_eq!(studies(&ix, &StudyFilter { accession: Some("NEWACC".into()), ..Default::default() }).len(), 1);
}

#[test]
fn nhs_number_links_each_sites_patient() {
    let (_d, ix) = open();
    for (site, pid) in [("RBD", "D1234567"), ("RD3", "P123456"), ("R0D", "RBH7654321")] {
        let mut m = meta(site, pid, "DOE^JANE", pid.len() as u32, 0, 0);
        m.sop_uid.push_str(&format!(".{}", site.len() + pid.len()));
        m.study_uid = format!("1.2.3.{}", pid.len());
        m.series_uid = format!("1.2.3.{}.1", pid.len());
        m.nhs_number = Some("9434765919".into());
        m.patient_birth_date = "19500101".into();
        ix.upsert(&m).unwrap();
    }
    let mut linked = ix.patients_by_nhs("9434765919").unwrap();
    linked.sort();
    let sites: Vec<_> = linked.iter().map(|k| (k.issuer.as_str(), k.patient_id.as_str())).collect();
    assert_eq!(sites, vec![("R0D", "RBH7654321"), ("RBD", "D1234567"), ("RD3", "P123456")]);
    let f = PatientFilter { nhs_number: Some("9434765919".into()), site: Some("RD3".into()), ..Default::default() };
    assert_eq!(patients(&ix, &f).len(), 1);
    assert_eq!(ix.counts_by_site().unwrap().len(), 3);
    let log = ix.link_log(0, 100).unwrap();
    assert_eq!(log.iter().filter(|e| e.action == LinkAction::Linked).count(), 3, "every link is logged: {log:?}");
}

#[test]
fn reopened_index_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ix, _) = SledIndex::open(&dir.path().join("index")).unwrap();
        ix.upsert(&meta("RBD", "D1", "A^B", 1, 0, 0)).unwrap();
        ix.sync().unwrap();
    }
    let (ix, _) = SledIndex::open(&dir.path().join("index")).unwrap();
    assert!(ix.instance("1.2.826.0.1.1.0.0").unwrap().is_some());
    assert_eq!(ix.counts().unwrap().instances, 1);
}

#[test]
fn searches_answer_newest_first_and_stop_early() {
    let (_d, ix) = open();
    // Study n is on day n of 2024 (and its study time grows with n).
    for n in 0..300u32 {
        let mut m = meta("RBD", &format!("D{:07}", n % 7), "DOE^JANE", n, 0, 0);
        m.study_date = format!("2024{:02}{:02}", 1 + n / 28 % 12, 1 + n % 28);
        m.study_time = format!("{:02}0000", n % 24);
        ix.upsert(&m).unwrap();
    }
    let all = studies(&ix, &StudyFilter::default());
    let order: Vec<(String, String)> = all.iter().map(|s| (s.date.clone(), s.time.clone())).collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "study searches answer newest first");
    // The first of a universal search is the newest study: what a viewer's limit=101 must show.
    let newest = ix.find_studies(&StudyFilter::default()).next().unwrap().unwrap();
    assert_eq!(newest.uid, all[0].uid);
    // Small candidate sets (a patient) come newest first too.
    let of_one = studies(&ix, &StudyFilter { patient_id: Some("D0000003".into()), ..Default::default() });
    assert!(of_one.windows(2).all(|w| (&w[0].date, &w[0].time) >= (&w[1].date, &w[1].time)));
    // A date range and a site walk their indexes backwards.
    let range = StudyFilter { date: Some(DateRange::parse("20240201-20240331").unwrap()), ..Default::default() };
    let in_range = studies(&ix, &range);
    assert!(!in_range.is_empty() && in_range.iter().all(|s| ("20240201".."20240332").contains(&s.date.as_str())));
    assert!(in_range.windows(2).all(|w| w[0].date >= w[1].date));
    let site = StudyFilter { site: Some("RBD".into()), ..Default::default() };
    assert_eq!(ix.find_studies(&site).next().unwrap().unwrap().uid, all[0].uid);
}

fn one(site: &str, pid: &str, birth: &str, sex: &str, nhs: &str, n: u32) -> InstanceMeta {
    let mut m = meta(site, pid, "DOE^JANE", n, 0, 0);
    m.patient_birth_date = birth.into();
    m.patient_sex = sex.into();
    m.nhs_number = radhub::nhs::normalise(nhs);
    m
}

#[test]
fn one_patient_id_at_two_trusts_is_two_patients() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "123456", "19500101", "F", "", 1)).unwrap();
    ix.upsert(&one("RD3", "123456", "19800101", "M", "", 2)).unwrap();
    let found = patients(&ix, &PatientFilter { patient_id: Some("123456".into()), ..Default::default() });
    assert_eq!(found.len(), 2, "{found:?}");
    let rbd = patients(&ix, &PatientFilter { patient_id: Some("123456".into()), issuer: Some("RBD".into()), ..Default::default() });
    assert_eq!(rbd.len(), 1);
    assert_eq!(rbd[0].birth_date, "19500101");
    let key = PatientKey { issuer: "RD3".into(), patient_id: "123456".into() };
    assert_eq!(ix.studies_of_patient(&key).unwrap(), vec!["1.2.826.0.1.2".to_string()]);
}

#[test]
fn an_instance_naming_another_patient_than_its_study_is_refused() {
    let (_d, ix) = open();
    ix.upsert(&meta("RBD", "D1", "DOE^JANE", 1, 0, 0)).unwrap();
    let mut other = meta("RBD", "D2", "ROE^RICHARD", 1, 0, 1);
    other.sop_uid.push_str(".9");
    match ix.upsert(&other) {
        Err(IndexError::PatientMismatch { held, sent, .. }) => assert_eq!((held.patient_id.as_str(), sent.patient_id.as_str()), ("D1", "D2")),
        r => panic!("filed under the study's patient: {r:?}"),
    }
    assert_eq!(ix.study("1.2.826.0.1.1").unwrap().unwrap().instances, 1);
}

#[test]
fn placeholder_nhs_numbers_never_link() {
    let (_d, ix) = open();
    // 1111111111 passes Modulus 11: the extractor's normalise must refuse it.
    assert!(radhub::nhs::normalise("1111111111").is_none());
    let mut a = one("RBD", "D1", "19500101", "F", "", 1);
    let mut b = one("RD3", "P1", "19800101", "M", "", 2);
    a.nhs_number = radhub::nhs::normalise("0000000000");
    b.nhs_number = radhub::nhs::normalise("0000000000");
    ix.upsert(&a).unwrap();
    ix.upsert(&b).unwrap();
    assert!(ix.patients_by_nhs("0000000000").unwrap().is_empty());
}

#[test]
fn disagreeing_demographics_are_a_conflict_not_a_link() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    ix.upsert(&one("RD3", "P1", "19500102", "F", "9434765919", 2)).unwrap();
    let linked = ix.patients_by_nhs("9434765919").unwrap();
    assert_eq!(linked, vec![PatientKey { issuer: "RBD".into(), patient_id: "D1".into() }], "two birth dates under one NHS number were merged");
    let c = ix.link_conflicts().unwrap();
    assert_eq!(c.len(), 1);
    assert!(matches!(&c[0].conflict, ConflictKind::Demographics { with, .. } if with.patient_id == "D1"), "{c:?}");
    // A further instance does not link it while the conflict is open.
    let mut again = one("RD3", "P1", "19500102", "F", "9434765919", 2);
    again.sop_uid.push_str(".2");
    ix.upsert(&again).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 1);
    // An admin decides: linked, logged with who.
    let key = PatientKey { issuer: "RD3".into(), patient_id: "P1".into() };
    ix.decide_link(&key, Decision::Link, None, "dr.admin", "checked with the PAS").unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 2);
    assert!(ix.link_conflicts().unwrap().is_empty());
    let log = ix.link_log(0, 100).unwrap();
    assert!(log.iter().any(|e| e.action == LinkAction::Conflict && e.patient == key));
    assert!(log.iter().any(|e| e.action == LinkAction::Linked && e.by == "dr.admin"));
    // And can undo it: the number is then refused for that record.
    ix.decide_link(&key, Decision::Unlink, None, "dr.admin", "checked with the PAS").unwrap();
    let mut later = one("RD3", "P1", "19500101", "F", "9434765919", 2);
    later.sop_uid.push_str(".3");
    ix.upsert(&later).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 1, "an unlinked record came back by itself");
}

#[test]
fn a_changed_nhs_number_does_not_move_the_link() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    let mut changed = one("RBD", "D1", "19500101", "F", "4010232137", 1);
    changed.sop_uid.push_str(".1");
    ix.upsert(&changed).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 1, "the link moved silently");
    assert!(ix.patients_by_nhs("4010232137").unwrap().is_empty());
    let c = ix.link_conflicts().unwrap();
    assert!(matches!(&c[..], [x] if x.nhs_number == "4010232137" && x.conflict == ConflictKind::Changed { linked: "9434765919".into() }), "{c:?}");
    // Dismissed: the old link stays and the new number is refused for it.
    let key = PatientKey { issuer: "RBD".into(), patient_id: "D1".into() };
    let p = ix.decide_link(&key, Decision::Dismiss, None, "dr.admin", "checked with the PAS").unwrap();
    assert_eq!(p.nhs_number.as_deref(), Some("9434765919"));
    assert!(ix.link_conflicts().unwrap().is_empty());
}

#[test]
fn a_linked_record_whose_demographics_come_to_disagree_is_suspended() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    ix.upsert(&one("RD3", "P1", "19500101", "F", "9434765919", 2)).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 2);
    let mut corrected = one("RD3", "P1", "19710101", "M", "9434765919", 2);
    corrected.sop_uid.push_str(".1");
    ix.upsert(&corrected).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 1, "two people shown as one");
    assert_eq!(ix.link_conflicts().unwrap().len(), 1);
    assert!(ix.link_log(0, 100).unwrap().iter().any(|e| e.action == LinkAction::Unlinked));
}

/// The instance record of schemas 1 and 2, as they wrote it.
#[derive(serde::Serialize)]
struct OldInstance<'a> {
    sop_uid: &'a str,
    series_uid: &'a str,
    study_uid: &'a str,
    site: &'a str,
    sop_class_uid: &'a str,
    number: Option<i64>,
    transfer_syntax: &'a str,
    frames: u32,
    rows: u16,
    columns: u16,
    bits_allocated: u16,
    samples_per_pixel: u16,
    photometric: &'a str,
    has_pixel_data: bool,
    file_size: u64,
    content_hash: [u8; 32],
    received_ms: u64,
}

#[test]
fn an_index_of_an_old_schema_is_rebuilt_from_the_files() {
    use radhub::ingest::{DuplicatePolicy, Hub};
    use radhub::store::{FsStore, ObjectKey, ObjectStore};
    let bytes = std::fs::read(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    let meta = Hub::describe(&bytes, Some("RBD")).unwrap();
    for (tree, version) in [("radhub", 1u32), ("index.v2", 2)] {
        let data = tempfile::tempdir().unwrap();
        {
            // The old tree with the instance record and its locator.
            let store = FsStore::open(data.path()).unwrap();
            store.put(&ObjectKey::for_uid(&meta.sop_uid), &bytes).unwrap();
            let db = sled::open(data.path().join("index")).unwrap();
            let old = db.open_tree(tree).unwrap();
            let k = |prefix: u8, parts: &[&str]| radhub::index::keys::key(prefix, parts);
            let m = &meta;
            let rec = OldInstance {
                sop_uid: &m.sop_uid,
                series_uid: &m.series_uid,
                study_uid: &m.study_uid,
                site: "RBD",
                sop_class_uid: &m.sop_class_uid,
                number: m.instance_number,
                transfer_syntax: &m.transfer_syntax,
                frames: m.frames,
                rows: m.rows,
                columns: m.columns,
                bits_allocated: m.bits_allocated,
                samples_per_pixel: m.samples_per_pixel,
                photometric: &m.photometric,
                has_pixel_data: m.has_pixel_data,
                file_size: m.file_size,
                content_hash: m.content_hash,
                received_ms: m.received_ms,
            };
            old.insert(k(b'M', &["schema"]), &version.to_le_bytes()).unwrap();
            old.insert(k(b'I', &[&m.study_uid, &m.series_uid, &m.sop_uid]), postcard::to_stdvec(&rec).unwrap()).unwrap();
            old.insert(k(b'i', &[&m.sop_uid]), format!("{}\0{}", m.study_uid, m.series_uid).into_bytes()).unwrap();
            // The site merged this patient into MERGED1, then renamed MERGED1:
            // the files still say what arrived; the rebuild must not undo either.
            let merged = PatientKey { issuer: "RBD".into(), patient_id: "MERGED1".into() };
            old.insert(k(b'A', &["RBD", &m.patient_id]), postcard::to_stdvec(&merged).unwrap()).unwrap();
            let renamed = IdentityEvent {
                seq: 2,
                at_ms: 1,
                change: IdentityChange::Demographics {
                    patient: merged.clone(),
                    demographics: Demographics { name: "NEW^NAME".into(), birth_date: String::new(), sex: String::new() },
                },
                studies: Vec::new(),
                before: Vec::new(),
                undoes: None,
                detail: String::new(),
                by: "ADT^A08 from RBD".into(),
            };
            let mut lk = vec![b'V'];
            lk.extend_from_slice(&2u64.to_be_bytes());
            old.insert(lk, postcard::to_stdvec(&renamed).unwrap()).unwrap();
            db.flush().unwrap();
        }
        let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
        let rec = hub.index.instance(&meta.sop_uid).unwrap().expect("rebuilt");
        assert_eq!((rec.site.as_str(), rec.local), ("RBD", true), "from schema {version}");
        let s = hub.index.study(&meta.study_uid).unwrap().unwrap();
        assert_eq!((s.patient.issuer.as_str(), s.local_instances), ("RBD", 1));
        assert_eq!((s.patient.patient_id.as_str(), s.patient_name.as_str()), ("MERGED1", "NEW^NAME"), "the identity changes carried over");
        assert_eq!(hub.index.identity_log(0, 10).unwrap().len(), 1);
        assert_eq!(hub.index.counts().unwrap().instances, 1);
        drop(hub);
        // Reopened: nothing left to migrate, and the old tree is gone.
        let hub = Hub::open(data.path(), DuplicatePolicy::Keep).unwrap();
        assert_eq!(hub.index.counts().unwrap().local_instances, 1);
        drop(hub);
        let db = sled::open(data.path().join("index")).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == tree.as_bytes()), "schema {version}'s tree kept");
    }
}

#[test]
fn an_arrival_without_demographics_erases_none_and_links_no_stranger() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    // A later instance of D1 with no birth date and no sex (a secondary capture, say).
    let mut blank = one("RBD", "D1", "", "", "9434765919", 1);
    blank.sop_uid.push_str(".1");
    ix.upsert(&blank).unwrap();
    let key = PatientKey { issuer: "RBD".into(), patient_id: "D1".into() };
    assert_eq!(ix.patient(&key).unwrap().unwrap().birth_date, "19500101", "a missing birth date erased the known one");
    // A stranger under the same NHS number (a typo) is compared with the kept date.
    ix.upsert(&one("RD3", "P9", "19610101", "M", "9434765919", 2)).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap(), vec![key]);
    // And a record without any birth date is never linked to another by the number alone.
    ix.upsert(&one("R0D", "RBH1", "", "F", "9434765919", 3)).unwrap();
    assert_eq!(ix.patients_by_nhs("9434765919").unwrap().len(), 1);
    assert_eq!(ix.link_conflicts().unwrap().len(), 2);
}

#[test]
fn a_series_uid_held_in_another_study_is_refused() {
    let (_d, ix) = open();
    ix.upsert(&meta("RBD", "D1", "DOE^JANE", 1, 0, 0)).unwrap();
    let mut other = meta("RD3", "P2", "ROE^RICHARD", 2, 0, 0);
    other.series_uid = "1.2.826.0.1.1.0".into();
    assert!(matches!(ix.upsert(&other), Err(IndexError::SeriesMismatch { .. })), "one series UID in two patients' studies");
    assert_eq!(ix.series("1.2.826.0.1.1.0").unwrap().unwrap().study_uid, "1.2.826.0.1.1");
}

#[test]
fn re_sending_a_patients_only_instance_keeps_the_admins_link_decisions() {
    let (_d, ix) = open();
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    let key = PatientKey { issuer: "RBD".into(), patient_id: "D1".into() };
    ix.decide_link(&key, Decision::Unlink, None, "dr.admin", "checked with the PAS").unwrap();
    // The same SOP Instance UID again (replaced under --policy replace).
    let mut again = one("RBD", "D1", "19500101", "F", "9434765919", 1);
    again.file_size = 2000;
    assert_eq!(ix.upsert(&again).unwrap(), Upsert::Replaced);
    assert!(ix.patients_by_nhs("9434765919").unwrap().is_empty(), "the admin's unlink was undone by a re-send");
    assert_eq!(ix.patient(&key).unwrap().unwrap().nhs_refused, vec!["9434765919".to_string()]);
    assert_eq!(ix.counts().unwrap().patients, 1);
}

#[test]
fn remote_entries_are_known_held_at_their_sites_and_replaced_by_a_local_copy() {
    let (_d, ix) = open();
    // Harvested from RBD's PACS: metadata only.
    let remote = |sop: u32| InstanceMeta { remote: true, held_at: Some("RBD".into()), file_size: 0, ..meta("RBD", "D1", "DOE^JANE", 1, 0, sop) };
    assert_eq!(ix.upsert(&remote(0)).unwrap(), Upsert::Inserted);
    assert_eq!(ix.upsert(&remote(1)).unwrap(), Upsert::Inserted);
    let s = ix.study("1.2.826.0.1.1").unwrap().unwrap();
    assert_eq!((s.instances, s.local_instances, s.is_local()), (2, 0, false));
    assert_eq!(s.held_at.iter().map(String::as_str).collect::<Vec<_>>(), ["RBD"]);
    let i = ix.instance("1.2.826.0.1.1.0.0").unwrap().unwrap();
    assert!(!i.local && i.held_at.contains("RBD"));
    // Answered by searches like local entries.
    assert_eq!(studies(&ix, &StudyFilter { patient_id: Some("D1".into()), ..Default::default() }).len(), 1);
    let c = ix.counts().unwrap();
    assert_eq!((c.instances, c.local_instances, c.bytes), (2, 0, 0));
    // Harvested again: nothing changes.
    assert_eq!(ix.upsert(&remote(0)).unwrap(), Upsert::Unchanged);
    // The file arrives (a retrieve): the entry becomes local and keeps its site.
    assert_eq!(ix.upsert(&InstanceMeta { held_at: Some("RBD".into()), ..meta("RBD", "D1", "DOE^JANE", 1, 0, 0) }).unwrap(), Upsert::Replaced);
    let i = ix.instance("1.2.826.0.1.1.0.0").unwrap().unwrap();
    assert!(i.local && i.held_at.contains("RBD"));
    let s = ix.study("1.2.826.0.1.1").unwrap().unwrap();
    assert_eq!((s.instances, s.local_instances), (2, 1));
    let c = ix.counts().unwrap();
    assert_eq!((c.instances, c.local_instances, c.bytes), (2, 1, 1000));
    // A harvest never replaces a local copy with metadata.
    assert_eq!(ix.upsert(&remote(0)).unwrap(), Upsert::Unchanged);
    assert!(ix.instance("1.2.826.0.1.1.0.0").unwrap().unwrap().local);
    // Removing the local instance takes its local count with it.
    ix.remove_instance("1.2.826.0.1.1.0.0").unwrap();
    let s = ix.study("1.2.826.0.1.1").unwrap().unwrap();
    assert_eq!((s.instances, s.local_instances), (1, 0));
}

#[test]
fn a_site_holding_a_copy_under_its_own_linked_identity_is_noted_and_a_stranger_refused() {
    let (_d, ix) = open();
    // D1 at RBD and P1 at RD3 are one person by NHS number.
    ix.upsert(&one("RBD", "D1", "19500101", "F", "9434765919", 1)).unwrap();
    ix.upsert(&one("RD3", "P1", "19500101", "F", "9434765919", 2)).unwrap();
    let held = ix.instances_of(&one("RBD", "D1", "19500101", "F", "9434765919", 1).study_uid, None).unwrap().remove(0);
    // RD3's PACS holds RBD's study (sent there, its Patient ID coerced to P1).
    let copy = InstanceMeta { remote: true, held_at: Some("RD3".into()), ..one("RD3", "P1", "19500101", "F", "9434765919", 1) };
    assert_eq!(ix.upsert(&copy).unwrap(), Upsert::Held);
    let s = ix.study(&held.study_uid).unwrap().unwrap();
    assert!(s.held_at.contains("RD3"));
    assert_eq!(s.patient.patient_id, "D1", "the study stays under its own patient");
    // A site naming an unlinked patient for the same study is refused.
    let stranger = InstanceMeta { remote: true, held_at: Some("R0D".into()), ..one("R0D", "RBH9", "19600101", "M", "", 1) };
    assert!(matches!(ix.upsert(&stranger), Err(IndexError::PatientMismatch { .. })));
}

#[test]
fn a_merge_moves_every_study_recounts_and_undoes() {
    let (_d, ix) = open();
    let key = |id: &str| PatientKey { issuer: "RD3".into(), patient_id: id.into() };
    // P9 has two studies (one with two series), P1 one; P2 is someone else.
    for m in [
        meta("RD3", "P9", "DOE^JO", 1, 1, 1),
        meta("RD3", "P9", "DOE^JO", 1, 2, 1),
        meta("RD3", "P9", "DOE^JO", 2, 1, 1),
        meta("RD3", "P1", "DOE^JOE", 3, 1, 1),
    ] {
        ix.upsert(&m).unwrap();
    }
    ix.upsert(&meta("RD3", "P2", "ROE^RO", 4, 1, 1)).unwrap();
    let before = ix.counts().unwrap();
    assert_eq!(before.patients, 3);
    let site_patients = |ix: &SledIndex| ix.counts_by_site().unwrap().into_iter().find(|(s, _)| s == "RD3").unwrap().1.patients;
    assert_eq!(site_patients(&ix), 3);

    let merge = IdentityChange::Merge { from: key("P9"), into: key("P1"), demographics: Demographics::default() };
    let e = ix.change_identity(&merge, "ADT", "test").unwrap();
    assert_eq!(e.studies.len(), 2, "{e:?}");
    assert!(ix.patient(&key("P9")).unwrap().is_none());
    let p1 = ix.patient(&key("P1")).unwrap().unwrap();
    assert_eq!((p1.studies, p1.series, p1.instances), (3, 4, 4), "{p1:?}");
    assert_eq!(p1.sites.get("RD3"), Some(&3));
    let after = ix.counts().unwrap();
    assert_eq!(after, radhub::index::Counts { patients: 2, ..before.clone() }, "only the patient count changes");
    assert_eq!(site_patients(&ix), 2);
    // Every lookup finds the studies under the survivor, with its demographics.
    let by_id = |id: &str| uids(studies(&ix, &StudyFilter { patient_id: Some(id.into()), ..Default::default() }));
    assert!(by_id("P9").is_empty());
    assert_eq!(by_id("P1").len(), 3);
    assert!(studies(&ix, &StudyFilter { patient_id: Some("P1".into()), ..Default::default() }).iter().all(|s| s.patient_name == "DOE^JOE"));
    assert_eq!(ix.studies_of_patient(&key("P1")).unwrap().len(), 3);
    assert_eq!(uids(studies(&ix, &StudyFilter { patient_name: Some("DOE^JO".into()), ..Default::default() })), Vec::<String>::new());

    // Data still naming P9 is filed under P1.
    ix.upsert(&meta("RD3", "P9", "DOE^JO", 5, 1, 1)).unwrap();
    assert_eq!(ix.study("1.2.826.0.1.5").unwrap().unwrap().patient, key("P1"));
    // A change of identifier to a record that exists is refused, changing nothing.
    let to_existing = IdentityChange::ChangeId { from: key("P2"), to: key("P1"), demographics: Demographics::default() };
    assert!(matches!(ix.change_identity(&to_existing, "ADT", "test"), Err(IndexError::Identity(_))));
    assert_eq!(ix.patient(&key("P2")).unwrap().unwrap().studies, 1);

    // The undo puts back the studies the merge moved (not the later arrival).
    let u = ix.undo_identity(e.seq, "admin1", "merged in error").unwrap();
    assert_eq!(u.undoes, Some(e.seq));
    let p9 = ix.patient(&key("P9")).unwrap().unwrap();
    assert_eq!((p9.studies, p9.series, p9.instances, p9.name.as_str()), (2, 3, 3, "DOE^JO"));
    assert_eq!(ix.patient(&key("P1")).unwrap().unwrap().studies, 2);
    assert_eq!(ix.counts().unwrap().patients, 3);
    assert_eq!(site_patients(&ix), 3);
    assert!(matches!(ix.undo_identity(e.seq, "admin1", "again"), Err(IndexError::Identity(_))));
    // After the undo, P9 is P9 again.
    ix.upsert(&meta("RD3", "P9", "DOE^JO", 6, 1, 1)).unwrap();
    assert_eq!(ix.study("1.2.826.0.1.6").unwrap().unwrap().patient, key("P9"));
    assert_eq!(ix.identity_log(0, 10).unwrap().len(), 2);
}
