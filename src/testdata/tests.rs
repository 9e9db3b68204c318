//! End-to-end checks: determinism, read-back, cross-site linkage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use super::*;

fn tiny() -> GenOptions {
    GenOptions { seed: 7, patients: 3, studies_per_patient: 1, max_slices: 2, ct_size: 64 }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn write(opts: &GenOptions, dir: &Path) -> WriteSummary {
    let count = std::sync::atomic::AtomicU64::new(0);
    let plan = Plan::new(opts);
    let summary = plan.write_all(dir, &|b| {
        assert!(b > 132);
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let summary = summary.expect("write_all");
    assert_eq!(summary.files, plan.total_instances());
    assert_eq!(count.into_inner(), summary.files);
    summary
}

#[test]
fn same_options_give_identical_bytes() {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let sa = write(&tiny(), a.path());
    let sb = write(&tiny(), b.path());
    assert_eq!(sa, sb);
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.len() as u64, sa.files);
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.strip_prefix(a.path()).ok(), y.strip_prefix(b.path()).ok());
        assert!(std::fs::read(x).ok() == std::fs::read(y).ok(), "{} differs", x.display());
    }
    let other = Plan::new(&GenOptions { seed: 8, ..tiny() });
    let mine = Plan::new(&tiny());
    assert_ne!(other.studies[0].accession, mine.studies[0].accession);
}

fn is_uid(s: &str) -> bool {
    s.len() <= 64 && s.split('.').all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

#[test]
fn files_read_back_with_consistent_attributes() {
    // Many small people, so every modality and multi-site patients appear.
    let opts = GenOptions { seed: 2026, patients: 14, studies_per_patient: 2, max_slices: 1, ct_size: 32 };
    let dir = tempfile::tempdir().expect("tmp");
    let summary = write(&opts, dir.path());
    let mut by_nhs: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut modalities = BTreeSet::new();
    let mut latin1 = false;
    for path in files(dir.path()) {
        let site = path.strip_prefix(dir.path()).ok().and_then(|p| p.iter().next()).and_then(|s| s.to_str()).map(str::to_owned);
        let obj = dicom_object::open_file(&path).expect("open");
        let text = |t| obj.element(t).expect("element").to_str().expect("str").trim().to_owned();
        let num = |t| obj.element(t).expect("element").to_int::<usize>().expect("int");
        assert_eq!(Some(text(tags::ISSUER_OF_PATIENT_ID)), site);
        let seq = obj.element(tags::OTHER_PATIENT_I_DS_SEQUENCE).expect("seq");
        let items = seq.items().expect("items");
        assert_eq!(items.len(), 1);
        let item_text = |t| items[0].element(t).expect("item element").to_str().expect("str").trim().to_owned();
        let nhs = item_text(tags::PATIENT_ID);
        assert!(crate::nhs::is_valid(&nhs), "{nhs}");
        assert_eq!(item_text(tags::ISSUER_OF_PATIENT_ID), "NHS");
        assert_eq!(item_text(tags::TYPE_OF_PATIENT_ID), "TEXT");
        by_nhs.entry(nhs).or_default().insert((text(tags::ISSUER_OF_PATIENT_ID), text(tags::PATIENT_ID)));

        let frames = obj.element(tags::NUMBER_OF_FRAMES).map_or(1, |e| e.to_int::<usize>().expect("frames"));
        let expected = num(tags::ROWS) * num(tags::COLUMNS) * num(tags::SAMPLES_PER_PIXEL) * num(tags::BITS_ALLOCATED) / 8 * frames;
        let pixels = obj.element(tags::PIXEL_DATA).expect("pixels").to_bytes().expect("bytes");
        assert_eq!(pixels.len(), expected, "{}", path.display());
        assert_eq!(num(tags::HIGH_BIT) + 1, num(tags::BITS_STORED));

        let modality = text(tags::MODALITY);
        let sop_class = text(tags::SOP_CLASS_UID);
        let want = match modality.as_str() {
            "CT" => "1.2.840.10008.5.1.4.1.1.2",
            "MR" => "1.2.840.10008.5.1.4.1.1.4",
            "CR" => "1.2.840.10008.5.1.4.1.1.1",
            "DX" => "1.2.840.10008.5.1.4.1.1.1.1",
            "US" => "1.2.840.10008.5.1.4.1.1.6.1",
            m => panic!("modality {m}"),
        };
        assert_eq!(sop_class, want);
        assert_eq!(obj.meta().media_storage_sop_class_uid().trim_end_matches('\0'), want);
        for t in [tags::SOP_INSTANCE_UID, tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID] {
            assert!(is_uid(&text(t)), "{}", text(t));
        }
        let name = text(tags::PATIENT_NAME);
        if !name.is_ascii() {
            latin1 = true;
            assert_eq!(text(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        }
        modalities.insert(modality);
    }
    assert!(summary.files > 20);
    assert!(latin1, "an accented name should round-trip through ISO_IR 100");
    assert_eq!(modalities.len(), 5, "{modalities:?}");
    let linked = by_nhs.values().filter(|ids| {
        let issuers: BTreeSet<_> = ids.iter().map(|(i, _)| i).collect();
        let pids: BTreeSet<_> = ids.iter().map(|(_, p)| p).collect();
        issuers.len() >= 2 && pids.len() == ids.len()
    });
    assert!(linked.count() >= 1);
    // Each (issuer, patient id) belongs to exactly one NHS number.
    let mut owners = BTreeMap::new();
    for (nhs, ids) in &by_nhs {
        for id in ids {
            assert!(owners.insert(id.clone(), nhs.clone()).is_none(), "{id:?}");
        }
    }
}

#[test]
fn tiny_plan_has_cross_site_people() {
    let plan = Plan::new(&tiny());
    assert_eq!(plan.patients(), 3);
    assert!(plan.people.iter().any(|p| p.sites.len() >= 2));
    assert!(plan.total_studies() >= 3);
}
