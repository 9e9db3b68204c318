//! Imports every file of pydicom's test set and checks radhub against
//! pydicom's own reading: every valid file indexed with the same
//! attributes, every invalid one reported with its reason, no panic.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use radhub::index::{Index, SledIndex};

fn expected_rejections() -> BTreeMap<String, String> {
    support::expectations(include_str!("data/pydicom_rejections.tsv"))
}

#[test]
fn every_pydicom_test_file_is_indexed_or_rejected_with_its_reason() {
    let sets = support::pydicom_sets();
    let oracle = Command::new("python3").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/pydicom_oracle.py")).args(&sets).output().expect("oracle runs");
    assert!(oracle.status.success(), "{}", String::from_utf8_lossy(&oracle.stderr));
    let oracle: Vec<serde_json::Value> = serde_json::from_slice(&oracle.stdout).expect("oracle JSON");
    assert!(oracle.len() > 180, "pydicom's test set has ~190 files, found {}", oracle.len());

    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["import".to_string(), "--json".into()];
    args.extend(sets.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = support::json(&support::run(dir.path(), &args));
    assert_eq!(summary["failed"], 0, "internal failures: {summary}");

    let rejections: BTreeMap<String, String> =
        summary["rejections"].as_array().unwrap().iter().map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned())).collect();
    let expected = expected_rejections();
    let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(n("files") as usize, oracle.len());
    assert_eq!(n("imported") + n("duplicates") + n("conflicts_kept") + n("replaced") + n("rejected"), n("files"));

    let (ix, _) = SledIndex::open(&dir.path().join("index")).unwrap();
    let mut sop_count: HashMap<&str, usize> = HashMap::new();
    for o in &oracle {
        if let Some(s) = o["sop"].as_str() {
            *sop_count.entry(s).or_default() += 1;
        }
    }
    let mut checked = 0;
    for o in &oracle {
        let path = o["path"].as_str().unwrap();
        let file = name(path);
        if let Some(why) = expected.get(&file) {
            let got = rejections.get(path).unwrap_or_else(|| panic!("{file} should be rejected ({why})"));
            assert!(got.contains(why.as_str()), "{file}: reason {got:?} lacks {why:?}");
            continue;
        }
        if o["valid"] == false {
            let got = rejections.get(path).unwrap_or_else(|| panic!("{file} is invalid to pydicom ({}) but was accepted", o["why"]));
            assert!(!got.is_empty());
            continue;
        }
        assert!(!rejections.contains_key(path), "{file} is valid but was rejected: {}", rejections[path]);
        let sop = o["sop"].as_str().unwrap();
        let rec = ix.instance(sop).unwrap().unwrap_or_else(|| panic!("{file}: {sop} not indexed"));
        assert_eq!(rec.study_uid, o["study"].as_str().unwrap(), "{file}");
        assert_eq!(rec.series_uid, o["series"].as_str().unwrap(), "{file}");
        // Attributes are comparable only where one file holds the UID.
        if sop_count[sop] > 1 {
            continue;
        }
        assert_eq!(u64::from(rec.rows), o["rows"].as_u64().unwrap(), "{file} rows");
        assert_eq!(u64::from(rec.columns), o["columns"].as_u64().unwrap(), "{file} columns");
        assert_eq!(u64::from(rec.frames), o["frames"].as_u64().unwrap(), "{file} frames");
        let study = ix.study(&rec.study_uid).unwrap().unwrap();
        if study.instances == 1 {
            assert_eq!(study.patient.patient_id, o["patient_id"].as_str().unwrap(), "{file} patient id");
            assert_eq!(study.patient_name, o["patient_name"].as_str().unwrap(), "{file} patient name");
            assert_eq!(study.date, o["study_date"].as_str().unwrap(), "{file} study date");
            assert_eq!(ix.series(&rec.series_uid).unwrap().unwrap().modality, o["modality"].as_str().unwrap(), "{file} modality");
        }
        checked += 1;
    }
    assert!(checked > 60, "only {checked} files compared attribute by attribute");
    // No rejection without an explanation from pydicom or the expectations.
    for (path, why) in &rejections {
        let o = oracle.iter().find(|o| o["path"] == path.as_str()).unwrap();
        assert!(o["valid"] == false || expected.contains_key(&name(path)), "{path} rejected ({why}) though pydicom reads it");
    }
}
