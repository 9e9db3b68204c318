//! A signed report as a DICOM Basic Text SR (TID 2000, Basic Diagnostic
//! Imaging Report): the owning trust's PACS files it with the study it
//! reports, under the patient as that site knows them, and lists every
//! series it read in the evidence sequence.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

use crate::index::model::{InstanceRecord, StudyRecord};
use crate::reports::Report;

pub const BASIC_TEXT_SR: &str = "1.2.840.10008.5.1.4.1.1.88.11";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// A fresh UID under 2.25 (a UUID as a decimal integer, PS3.5 B.2).
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// What the SR says beyond the report: who signed it, as a DICOM person name.
pub struct Signer<'a> {
    pub user: &'a str,
    pub organisation: &'a str,
}

/// The SR of `report` on `study`, as a Part 10 file; `instances`, the
/// study's instances (the evidence), `sop_uid` and `series_uid` its own.
pub fn build(study: &StudyRecord, instances: &[InstanceRecord], report: &Report, signer: &Signer, sop_uid: &str, series_uid: &str) -> Result<Vec<u8>, String> {
    let signed = report.signed_ms.unwrap_or(report.updated_ms);
    let (date, time) = da_tm(signed);
    let mut o = InMemDicomObject::new_empty();
    let text = |o: &mut InMemDicomObject, t: Tag, vr: VR, v: &str| o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    // UTF-8: report text and names from any site.
    text(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    text(&mut o, tags::SOP_CLASS_UID, VR::UI, BASIC_TEXT_SR);
    text(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
    text(&mut o, tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    text(&mut o, tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    // Patient and study as the owning site has them.
    text(&mut o, tags::PATIENT_NAME, VR::PN, &study.patient_name);
    text(&mut o, tags::PATIENT_ID, VR::LO, &study.patient.patient_id);
    text(&mut o, tags::ISSUER_OF_PATIENT_ID, VR::LO, &study.patient.issuer);
    text(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, &study.patient_birth_date);
    text(&mut o, tags::PATIENT_SEX, VR::CS, &study.patient_sex);
    text(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &study.uid);
    text(&mut o, tags::STUDY_DATE, VR::DA, &study.date);
    text(&mut o, tags::STUDY_TIME, VR::TM, &study.time);
    text(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, &study.referring_physician_name);
    text(&mut o, tags::STUDY_ID, VR::SH, &study.study_id);
    text(&mut o, tags::ACCESSION_NUMBER, VR::SH, &study.accession_number);
    text(&mut o, tags::STUDY_DESCRIPTION, VR::LO, &study.description);
    // SR Document Series, General Equipment.
    text(&mut o, tags::MODALITY, VR::CS, "SR");
    text(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, series_uid);
    text(&mut o, tags::SERIES_NUMBER, VR::IS, "9901");
    text(&mut o, tags::SERIES_DESCRIPTION, VR::LO, if report.addendum_of.is_some() { "Radiology report addendum" } else { "Radiology report" });
    o.put(DataElement::new(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, VR::SQ, DataSetSequence::from(Vec::<InMemDicomObject>::new())));
    text(&mut o, tags::MANUFACTURER, VR::LO, "radhub");
    // SR Document General.
    text(&mut o, tags::INSTANCE_NUMBER, VR::IS, &report.id.to_string());
    text(&mut o, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    text(&mut o, tags::VERIFICATION_FLAG, VR::CS, "VERIFIED");
    text(&mut o, tags::CONTENT_DATE, VR::DA, &date);
    text(&mut o, tags::CONTENT_TIME, VR::TM, &time);
    let verifier = InMemDicomObject::from_element_iter([
        DataElement::new(tags::VERIFYING_ORGANIZATION, VR::LO, PrimitiveValue::from(signer.organisation)),
        DataElement::new(tags::VERIFICATION_DATE_TIME, VR::DT, PrimitiveValue::from(format!("{date}{time}"))),
        DataElement::new(tags::VERIFYING_OBSERVER_NAME, VR::PN, PrimitiveValue::from(signer.user)),
        DataElement::new(tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE, VR::SQ, DataSetSequence::from(Vec::<InMemDicomObject>::new())),
    ]);
    o.put(DataElement::new(tags::VERIFYING_OBSERVER_SEQUENCE, VR::SQ, DataSetSequence::from(vec![verifier])));
    o.put(DataElement::new(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, VR::SQ, DataSetSequence::from(Vec::<InMemDicomObject>::new())));
    o.put(DataElement::new(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![evidence(study, instances)])));
    // SR Document Content: the root container, TID 2000.
    text(&mut o, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    o.put(code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, "18748-4", "LN", "Diagnostic Imaging Report"));
    text(&mut o, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    let template = InMemDicomObject::from_element_iter([
        DataElement::new(tags::MAPPING_RESOURCE, VR::CS, PrimitiveValue::from("DCMR")),
        DataElement::new(tags::TEMPLATE_IDENTIFIER, VR::CS, PrimitiveValue::from("2000")),
    ]);
    o.put(DataElement::new(tags::CONTENT_TEMPLATE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![template])));
    let mut content = vec![
        // Language of content: English (United Kingdom).
        item("HAS CONCEPT MOD", "CODE", code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, "121049", "DCM", "Language of Content Item and Descendants"), |i| {
            i.put(code_seq(tags::CONCEPT_CODE_SEQUENCE, "en-GB", "RFC5646", "English (United Kingdom)"));
        }),
        item("HAS OBS CONTEXT", "PNAME", code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, "121008", "DCM", "Person Observer Name"), |i| {
            i.put(DataElement::new(tags::PERSON_NAME, VR::PN, PrimitiveValue::from(signer.user)));
        }),
    ];
    for (code, meaning, body) in sections(&report.text) {
        let section = item("CONTAINS", "CONTAINER", code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, code, "DCM", meaning), |i| {
            i.put(DataElement::new(tags::CONTINUITY_OF_CONTENT, VR::CS, PrimitiveValue::from("SEPARATE")));
            let finding = item("CONTAINS", "TEXT", code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, code_of_text(code), "DCM", text_meaning(code)), |t| {
                t.put(DataElement::new(tags::TEXT_VALUE, VR::UT, PrimitiveValue::from(body.as_str())));
            });
            i.put(DataElement::new(tags::CONTENT_SEQUENCE, VR::SQ, DataSetSequence::from(vec![finding])));
        });
        content.push(section);
    }
    o.put(DataElement::new(tags::CONTENT_SEQUENCE, VR::SQ, DataSetSequence::from(content)));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(EXPLICIT_VR_LE)
        .media_storage_sop_class_uid(BASIC_TEXT_SR)
        .media_storage_sop_instance_uid(sop_uid)
        .implementation_class_uid(pacs_gateway::store::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("RADHUB_SR_1")
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    o.with_exact_meta(meta).write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The report's sections (TID 2000's section containers): headed text
/// (`Findings:`, `Conclusion:` / `Impression:`, `Clinical details:` /
/// `History:`, `Technique:`), and any text before a heading as findings.
pub fn sections(text: &str) -> Vec<(&'static str, &'static str, String)> {
    const HEADS: [(&str, &str, &str); 6] = [
        ("clinical details", "121060", "History"),
        ("history", "121060", "History"),
        ("technique", "121064", "Current Procedure Descriptions"),
        ("findings", "121070", "Findings"),
        ("conclusion", "121076", "Conclusions"),
        ("impression", "121072", "Impressions"),
    ];
    let mut out: Vec<(&'static str, &'static str, String)> = Vec::new();
    let mut current: (&'static str, &'static str) = ("121070", "Findings");
    let mut body = String::new();
    let flush = |out: &mut Vec<(&'static str, &'static str, String)>, cur: (&'static str, &'static str), body: &mut String| {
        let b = body.trim();
        if !b.is_empty() {
            match out.iter_mut().find(|(c, _, _)| *c == cur.0) {
                Some((_, _, t)) => {
                    t.push('\n');
                    t.push_str(b);
                }
                None => out.push((cur.0, cur.1, b.to_owned())),
            }
        }
        body.clear();
    };
    for line in text.lines() {
        let head = line.split_once(':').and_then(|(h, rest)| HEADS.iter().find(|(k, _, _)| h.trim().eq_ignore_ascii_case(k)).map(|x| (x, rest)));
        match head {
            Some(((_, code, meaning), rest)) => {
                flush(&mut out, current, &mut body);
                current = (code, meaning);
                body.push_str(rest.trim());
                body.push('\n');
            }
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    flush(&mut out, current, &mut body);
    out
}

/// The TEXT item's concept within a section (CID 7002 and the section's own).
fn code_of_text(section: &str) -> &'static str {
    match section {
        "121060" => "121060",
        "121064" => "121065",
        "121076" => "121077",
        "121072" => "121073",
        _ => "121071",
    }
}

fn text_meaning(section: &str) -> &'static str {
    match section {
        "121060" => "History",
        "121064" => "Procedure Description",
        "121076" => "Conclusion",
        "121072" => "Impression",
        _ => "Finding",
    }
}

fn item(relationship: &str, value_type: &str, concept: DataElement<InMemDicomObject>, fill: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut i = InMemDicomObject::from_element_iter([
        DataElement::new(tags::RELATIONSHIP_TYPE, VR::CS, PrimitiveValue::from(relationship)),
        DataElement::new(tags::VALUE_TYPE, VR::CS, PrimitiveValue::from(value_type)),
        concept,
    ]);
    fill(&mut i);
    i
}

fn code_seq(tag: Tag, value: &str, scheme: &str, meaning: &str) -> DataElement<InMemDicomObject> {
    let code = InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
        DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from(scheme)),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
    ]);
    DataElement::new(tag, VR::SQ, DataSetSequence::from(vec![code]))
}

/// The study's series and instances, as read for the report.
fn evidence(study: &StudyRecord, instances: &[InstanceRecord]) -> InMemDicomObject {
    let mut by_series: std::collections::BTreeMap<&str, Vec<&InstanceRecord>> = std::collections::BTreeMap::new();
    for i in instances.iter().filter(|i| i.sop_class_uid != BASIC_TEXT_SR) {
        by_series.entry(i.series_uid.as_str()).or_default().push(i);
    }
    let series: Vec<InMemDicomObject> = by_series
        .into_iter()
        .map(|(uid, list)| {
            let sops: Vec<InMemDicomObject> = list
                .iter()
                .map(|i| {
                    InMemDicomObject::from_element_iter([
                        DataElement::new(tags::REFERENCED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(i.sop_class_uid.as_str())),
                        DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(i.sop_uid.as_str())),
                    ])
                })
                .collect();
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::REFERENCED_SOP_SEQUENCE, VR::SQ, DataSetSequence::from(sops)),
                DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from(uid)),
            ])
        })
        .collect();
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::REFERENCED_SERIES_SEQUENCE, VR::SQ, DataSetSequence::from(series)),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from(study.uid.as_str())),
    ])
}

/// DA and TM (UTC) of a time in ms since the epoch.
fn da_tm(ms: u64) -> (String, String) {
    let iso = crate::dates::iso_ms(ms);
    (iso[..10].replace('-', ""), iso[11..19].replace(':', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headed_text_becomes_sections() {
        let s = sections("Clinical details: fall.\nFindings: no fracture.\nSoft tissues normal.\nConclusion: normal study.");
        let codes: Vec<&str> = s.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(codes, ["121060", "121070", "121076"]);
        assert_eq!(s[1].2, "no fracture.\nSoft tissues normal.");
        assert_eq!(sections("Unheaded text.")[0], ("121070", "Findings", "Unheaded text.".into()));
    }

    #[test]
    fn uids_are_fresh_and_valid() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        let n = a.strip_prefix("2.25.").unwrap();
        assert!(a.len() <= 64 && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) && (n == "0" || !n.starts_with('0')), "{a}");
    }
}
