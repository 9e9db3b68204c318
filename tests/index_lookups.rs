//! The index's secondary indexes and aggregates, through the `Index` trait.

use radhub::index::matching::DateRange;
use radhub::index::model::InstanceMeta;
use radhub::index::{Index, PatientFilter, SledIndex, StudyFilter, Upsert};

fn meta(site: &str, pid: &str, name: &str, study: u32, series: u32, sop: u32) -> InstanceMeta {
    InstanceMeta {
        site: site.into(),
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
    let ix = SledIndex::open(&dir.path().join("index")).unwrap();
    (dir, ix)
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
    let by = |f: StudyFilter| uids(ix.find_studies(&f).unwrap());
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
    assert_eq!(by(StudyFilter { modality: Some("MR".into()), limit: Some(7), ..Default::default() }).len(), 7);

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
    assert!(ix.find_studies(&StudyFilter { patient_id: Some("P1".into()), ..Default::default() }).unwrap().is_empty());
    assert!(ix.find_studies(&StudyFilter { accession: Some("ACC00001".into()), ..Default::default() }).unwrap().is_empty());
    assert!(ix.find_patients(&PatientFilter::default()).unwrap().is_empty());
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
    assert!(ix.find_studies(&StudyFilter { accession: Some("ACC00002".into()), ..Default::default() }).unwrap().is_empty());
    assert_eq!(ix.find_studies(&StudyFilter { accession: Some("NEWACC".into()), ..Default::default() }).unwrap().len(), 1);
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
        ix.upsert(&m).unwrap();
    }
    let mut linked = ix.patients_by_nhs("9434765919").unwrap();
    linked.sort();
    let sites: Vec<_> = linked.iter().map(|k| (k.site.as_str(), k.patient_id.as_str())).collect();
    assert_eq!(sites, vec![("R0D", "RBH7654321"), ("RBD", "D1234567"), ("RD3", "P123456")]);
    let f = PatientFilter { nhs_number: Some("9434765919".into()), site: Some("RD3".into()), ..Default::default() };
    assert_eq!(ix.find_patients(&f).unwrap().len(), 1);
    assert_eq!(ix.counts_by_site().unwrap().len(), 3);
}

#[test]
fn reopened_index_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ix = SledIndex::open(&dir.path().join("index")).unwrap();
        ix.upsert(&meta("RBD", "D1", "A^B", 1, 0, 0)).unwrap();
        ix.sync().unwrap();
    }
    let ix = SledIndex::open(&dir.path().join("index")).unwrap();
    assert!(ix.instance("1.2.826.0.1.1.0.0").unwrap().is_some());
    assert_eq!(ix.counts().unwrap().instances, 1);
}
