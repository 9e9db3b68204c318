//! IHE IOCM rejection notes: a Key Object Selection document whose title
//! (Concept Name Code Sequence) is one of the rejection reasons of
//! CID 7011 names instances that must no longer be shown or retrieved.
//! Read from the bounded scan tree (`dicom-scan`), never with a parser
//! that trusts declared lengths.

use crate::dicom::scan::{self, Node};
use crate::dicom::text::ascii;
use crate::dicom::ScanError;

/// Key Object Selection Document Storage.
pub const KOS: &str = "1.2.840.10008.5.1.4.1.1.88.59";

/// The rejection reasons (DCM codes of CID 7011) radhub acts on.
pub const REASONS: [(&str, &str); 4] = [
    ("113001", "Rejected for Quality Reasons"),
    ("113037", "Rejected for Patient Safety Reasons"),
    ("113038", "Incorrect Modality Worklist Entry"),
    ("113039", "Data Retention Policy Expired"),
];

/// A rejection reason's meaning, if `code` is one.
pub fn reason(code: &str) -> Option<&'static str> {
    REASONS.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// What a rejection note says.
#[derive(Debug, PartialEq, Eq)]
pub struct Note {
    pub code: String,
    pub meaning: &'static str,
    /// (Study, Series, SOP Instance UID) of each instance it rejects.
    pub instances: Vec<(String, String, String)>,
}

mod tag {
    pub const CONCEPT_NAME_CODE_SEQUENCE: u32 = 0x0040_A043;
    pub const CODE_VALUE: u32 = 0x0008_0100;
    pub const CODING_SCHEME_DESIGNATOR: u32 = 0x0008_0102;
    pub const EVIDENCE: u32 = 0x0040_A375;
    pub const STUDY_INSTANCE_UID: u32 = 0x0020_000D;
    pub const REFERENCED_SERIES_SEQUENCE: u32 = 0x0008_1115;
    pub const SERIES_INSTANCE_UID: u32 = 0x0020_000E;
    pub const REFERENCED_SOP_SEQUENCE: u32 = 0x0008_1199;
    pub const REFERENCED_SOP_INSTANCE_UID: u32 = 0x0008_1155;
}

/// The rejection note in a KOS's bytes (a Part 10 file), or `None` when
/// its title is no rejection reason (an ordinary key image note).
pub fn note(part10: &[u8]) -> Result<Option<Note>, ScanError> {
    let s = scan::scan(part10, &[])?;
    let t = scan::tree(&s.dataset, s.encoding)?;
    let buf: &[u8] = &s.dataset;
    let value = |nodes: &[Node], tag: u32| -> String {
        nodes
            .iter()
            .find(|n| n.el.tag == tag)
            .and_then(|n| buf.get(n.el.start..n.el.end))
            .map(ascii)
            .unwrap_or_default()
            .trim_end_matches(['\0', ' '])
            .trim()
            .to_owned()
    };
    let items = |nodes: &'_ [Node], tag: u32| -> Vec<Vec<Node>> { nodes.iter().find(|n| n.el.tag == tag).map(|n| n.items.clone()).unwrap_or_default() };
    let Some(title) = items(&t.nodes, tag::CONCEPT_NAME_CODE_SEQUENCE).into_iter().next() else { return Ok(None) };
    let code = value(&title, tag::CODE_VALUE);
    let Some(meaning) = reason(&code).filter(|_| value(&title, tag::CODING_SCHEME_DESIGNATOR) == "DCM") else { return Ok(None) };
    let mut instances = Vec::new();
    for study in items(&t.nodes, tag::EVIDENCE) {
        let study_uid = value(&study, tag::STUDY_INSTANCE_UID);
        for series in items(&study, tag::REFERENCED_SERIES_SEQUENCE) {
            let series_uid = value(&series, tag::SERIES_INSTANCE_UID);
            for sop in items(&series, tag::REFERENCED_SOP_SEQUENCE) {
                let sop_uid = value(&sop, tag::REFERENCED_SOP_INSTANCE_UID);
                if !sop_uid.is_empty() && scan::check_uid(&sop_uid, "Referenced SOP Instance UID").is_ok() {
                    instances.push((study_uid.clone(), series_uid.clone(), sop_uid));
                }
            }
        }
    }
    Ok(Some(Note { code, meaning, instances }))
}
