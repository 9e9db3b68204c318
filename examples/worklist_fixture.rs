//! The hub `scripts/bench-worklist` measures: 100,000 studies across the
//! three Dorset sites, of which 90,000 are the sites' history (harvested:
//! metadata only, as `radhub sync` leaves it) and 10,000 arrived here
//! (real instances, stored and indexed by ingest) and await reporting.
//!
//! Usage: worklist_fixture DATA_DIR [OPEN] [HISTORY]
//! Prints one JSON line: the open studies (uid, site, accession, patient).

use std::collections::BTreeSet;
use std::io::Write;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use radhub::index::model::InstanceMeta;

const SITES: [&str; 3] = ["RBD", "RD3", "R0D"];
const MODALITIES: [(&str, &str, &str); 5] = [
    ("CT", "HEAD", "1.2.840.10008.5.1.4.1.1.2"),
    ("CT", "CHEST", "1.2.840.10008.5.1.4.1.1.2"),
    ("MR", "BRAIN", "1.2.840.10008.5.1.4.1.1.4"),
    ("DX", "CHEST", "1.2.840.10008.5.1.4.1.1.1.1"),
    ("US", "ABDOMEN", "1.2.840.10008.5.1.4.1.1.6.1"),
];

fn instance(n: u32, site: &str) -> Vec<u8> {
    let (modality, part, class) = MODALITIES[(n % 5) as usize];
    let uid = |k: &str| format!("1.2.826.0.1.3680043.10.{n}{k}");
    let mut o = InMemDicomObject::new_empty();
    let mut s = |t: Tag, vr: VR, v: &str| o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    s(tags::SOP_CLASS_UID, VR::UI, class);
    s(tags::SOP_INSTANCE_UID, VR::UI, &uid(".1.1"));
    s(tags::STUDY_INSTANCE_UID, VR::UI, &uid(""));
    s(tags::SERIES_INSTANCE_UID, VR::UI, &uid(".1"));
    s(tags::PATIENT_ID, VR::LO, &format!("{site}{:06}", n % 20_000));
    s(tags::PATIENT_NAME, VR::PN, &format!("OPEN{n}^ANNE"));
    s(tags::ISSUER_OF_PATIENT_ID, VR::LO, site);
    s(tags::ACCESSION_NUMBER, VR::SH, &format!("W{n:08}"));
    s(tags::STUDY_DATE, VR::DA, "20261201");
    s(tags::STUDY_TIME, VR::TM, "101500");
    s(tags::MODALITY, VR::CS, modality);
    s(tags::BODY_PART_EXAMINED, VR::CS, part);
    s(tags::STUDY_DESCRIPTION, VR::LO, &format!("{modality} {part}"));
    s(tags::SERIES_NUMBER, VR::IS, "1");
    s(tags::INSTANCE_NUMBER, VR::IS, "1");
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(uid(".1.1"))
        .implementation_class_uid("1.2.826.0.1.3680043.10.1")
        .build()
        .expect("file meta");
    let mut buf = Vec::new();
    o.with_exact_meta(meta).write_all(&mut buf).expect("encode");
    buf
}

fn history(n: u32) -> InstanceMeta {
    let site = SITES[(n % 3) as usize];
    let (modality, part, class) = MODALITIES[(n % 5) as usize];
    let day = (n * 7919) % (5 * 365);
    InstanceMeta {
        site: site.into(),
        issuer: site.into(),
        issuer_of_patient_id: site.into(),
        patient_id: format!("{site}{:06}", n % 20_000),
        patient_name: format!("HIST{}^ANNE", n % 20_000),
        study_uid: format!("1.2.826.0.1.3680043.11.{n}"),
        study_date: format!("{}{:02}{:02}", 2020 + day / 365, 1 + day % 365 / 31 % 12, 1 + day % 28),
        accession_number: format!("H{n:08}"),
        series_uid: format!("1.2.826.0.1.3680043.11.{n}.1"),
        modality: modality.into(),
        body_part_examined: part.into(),
        sop_uid: format!("1.2.826.0.1.3680043.11.{n}.1.1"),
        sop_class_uid: class.into(),
        held_at: Some(site.into()),
        remote: true,
        received_ms: radhub::ingest::now_ms(),
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data = std::path::PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: worklist_fixture DATA_DIR [OPEN] [HISTORY]"))?);
    let open: u32 = args.next().map_or(Ok(10_000), |v| v.parse())?;
    let past: u32 = args.next().map_or(Ok(90_000), |v| v.parse())?;
    let hub = radhub::ingest::Hub::open(&data, radhub::ingest::DuplicatePolicy::Keep)?;
    let bar = indicatif::ProgressBar::new(u64::from(past + open));
    for n in 0..past {
        hub.index.upsert(&history(n))?;
        bar.inc(1);
    }
    hub.index.sync()?;
    let mut studies = Vec::new();
    let mut seen = BTreeSet::new();
    for n in 0..open {
        let site = SITES[(n % 3) as usize];
        let (_, meta) = hub.ingest(&instance(n, site), Some(site))?;
        seen.insert(meta.study_uid.clone());
        studies.push(serde_json::json!({"uid": meta.study_uid, "site": site, "accession": meta.accession_number, "patient_id": meta.patient_id, "modality": meta.modality}));
        bar.inc(1);
    }
    bar.finish_and_clear();
    anyhow::ensure!(seen.len() == open as usize, "{} open studies, not {open}", seen.len());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "open": studies, "history": past }))?;
    Ok(())
}
