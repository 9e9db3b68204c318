//! A stored instance with its patient identity rewritten: coerced to
//! another site's identity for the same person (a study sent there), or
//! restated to the identity the index holds now (after a merge, a change
//! of identifier or a demographics update from the site's patient
//! administration). The Patient ID it had is kept as an Other Patient IDs
//! item. Run only on files that were scanned (bounded) when they arrived.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{FileDicomObject, InMemDicomObject};

use crate::index::model::PatientKey;

const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER: Tag = Tag(0x0010, 0x0021);
const TYPE_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0022);
const BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
const SEX: Tag = Tag(0x0010, 0x0040);
const OTHER_PATIENT_IDS_SEQUENCE: Tag = Tag(0x0010, 0x1002);

/// A patient as the index holds them: key and demographics.
pub struct Identity<'a> {
    pub key: &'a PatientKey,
    pub name: &'a str,
    pub birth_date: &'a str,
    pub sex: &'a str,
}

type Obj = FileDicomObject<InMemDicomObject>;

fn open(part10: &[u8]) -> Result<Obj, String> {
    dicom_scan::scan_ordered(part10).map_err(|e| e.to_string())?;
    dicom_object::from_reader(part10.get(128..).ok_or("not a Part 10 file")?).map_err(|e| e.to_string())
}

fn text(o: &InMemDicomObject, t: Tag) -> String {
    o.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned()).unwrap_or_default()
}

/// Sets Patient ID and Issuer to `to`, keeping `from` among Other Patient IDs.
fn set_key(obj: &mut Obj, from: &PatientKey, to: &PatientKey) {
    let mut items: Vec<InMemDicomObject> = obj.element(OTHER_PATIENT_IDS_SEQUENCE).ok().and_then(|e| e.items()).map(<[_]>::to_vec).unwrap_or_default();
    if !items.iter().any(|i| text(i, PATIENT_ID) == from.patient_id && text(i, ISSUER) == from.issuer) && !from.patient_id.is_empty() {
        items.push(InMemDicomObject::from_element_iter([
            DataElement::new(PATIENT_ID, VR::LO, PrimitiveValue::from(from.patient_id.as_str())),
            DataElement::new(ISSUER, VR::LO, PrimitiveValue::from(from.issuer.as_str())),
            DataElement::new(TYPE_OF_PATIENT_ID, VR::CS, PrimitiveValue::from("TEXT")),
        ]));
    }
    obj.put(DataElement::new(PATIENT_ID, VR::LO, PrimitiveValue::from(to.patient_id.as_str())));
    obj.put(DataElement::new(ISSUER, VR::LO, PrimitiveValue::from(to.issuer.as_str())));
    obj.put(DataElement::new(OTHER_PATIENT_IDS_SEQUENCE, VR::SQ, DataSetSequence::from(items)));
}

/// The file written again, and checked as every arrival is: what radhub
/// serves must read as well as what it was sent.
fn write(obj: &Obj) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    dicom_scan::scan(&out, &[]).map_err(|e| format!("the rewritten file does not read back: {e}"))?;
    Ok(out)
}

/// The instance with its patient identity coerced from `from` to `to`.
pub fn coerce(part10: &[u8], from: &PatientKey, to: &PatientKey) -> Result<Vec<u8>, String> {
    let mut obj = open(part10)?;
    set_key(&mut obj, from, to);
    write(&obj)
}

/// The instance with the identity `now` (values left empty keep the
/// file's), or `None` when it carries that identity already.
pub fn restate(part10: &[u8], now: &Identity<'_>) -> Result<Option<Vec<u8>>, String> {
    let mut obj = open(part10)?;
    let sent = PatientKey { issuer: text(&obj, ISSUER), patient_id: text(&obj, PATIENT_ID) };
    let differs = |t: Tag, v: &str| !v.is_empty() && text(&obj, t) != v;
    // The issuer a file leaves out is its site's: only a new ID is a new key.
    let key_differs = sent.patient_id != now.key.patient_id;
    let (name, birth, sex) = (differs(PATIENT_NAME, now.name), differs(BIRTH_DATE, now.birth_date), differs(SEX, now.sex));
    if !(key_differs || name || birth || sex) {
        return Ok(None);
    }
    if key_differs {
        set_key(&mut obj, &sent, now.key);
    }
    if name {
        // A name the file's character set cannot hold is written in UTF-8.
        if !now.name.is_ascii() {
            obj.put(DataElement::new(SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from("ISO_IR 192")));
        }
        obj.put(DataElement::new(PATIENT_NAME, VR::PN, PrimitiveValue::from(now.name)));
    }
    if birth {
        obj.put(DataElement::new(BIRTH_DATE, VR::DA, PrimitiveValue::from(now.birth_date)));
    }
    if sex {
        obj.put(DataElement::new(SEX, VR::CS, PrimitiveValue::from(now.sex)));
    }
    write(&obj).map(Some)
}
