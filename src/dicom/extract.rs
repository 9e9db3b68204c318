//! From a scanned data set to the `InstanceMeta` the index records.

use super::scan::{self, Scanned};
use super::text::{self, ascii, decode};
use super::ScanError;
use crate::index::model::{AccessionIssuer, InstanceMeta, OtherId};

mod tag {
    pub const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
    pub const SOP_CLASS_UID: u32 = 0x0008_0016;
    pub const SOP_INSTANCE_UID: u32 = 0x0008_0018;
    pub const STUDY_DATE: u32 = 0x0008_0020;
    pub const SERIES_DATE: u32 = 0x0008_0021;
    pub const STUDY_TIME: u32 = 0x0008_0030;
    pub const SERIES_TIME: u32 = 0x0008_0031;
    pub const ACCESSION_NUMBER: u32 = 0x0008_0050;
    pub const ISSUER_OF_ACCESSION_NUMBER_SEQUENCE: u32 = 0x0008_0051;
    pub const LOCAL_NAMESPACE_ENTITY_ID: u32 = 0x0040_0031;
    pub const UNIVERSAL_ENTITY_ID: u32 = 0x0040_0032;
    pub const UNIVERSAL_ENTITY_ID_TYPE: u32 = 0x0040_0033;
    pub const MODALITY: u32 = 0x0008_0060;
    pub const INSTITUTION_NAME: u32 = 0x0008_0080;
    pub const REFERRING_PHYSICIAN_NAME: u32 = 0x0008_0090;
    pub const STUDY_DESCRIPTION: u32 = 0x0008_1030;
    pub const SERIES_DESCRIPTION: u32 = 0x0008_103E;
    pub const PATIENT_NAME: u32 = 0x0010_0010;
    pub const PATIENT_ID: u32 = 0x0010_0020;
    pub const ISSUER_OF_PATIENT_ID: u32 = 0x0010_0021;
    pub const TYPE_OF_PATIENT_ID: u32 = 0x0010_0022;
    pub const PATIENT_BIRTH_DATE: u32 = 0x0010_0030;
    pub const PATIENT_SEX: u32 = 0x0010_0040;
    pub const OTHER_PATIENT_IDS_SEQUENCE: u32 = 0x0010_1002;
    pub const BODY_PART_EXAMINED: u32 = 0x0018_0015;
    pub const STUDY_INSTANCE_UID: u32 = 0x0020_000D;
    pub const SERIES_INSTANCE_UID: u32 = 0x0020_000E;
    pub const STUDY_ID: u32 = 0x0020_0010;
    pub const SERIES_NUMBER: u32 = 0x0020_0011;
    pub const INSTANCE_NUMBER: u32 = 0x0020_0013;
    pub const SAMPLES_PER_PIXEL: u32 = 0x0028_0002;
    pub const PHOTOMETRIC_INTERPRETATION: u32 = 0x0028_0004;
    pub const NUMBER_OF_FRAMES: u32 = 0x0028_0008;
    pub const ROWS: u32 = 0x0028_0010;
    pub const COLUMNS: u32 = 0x0028_0011;
    pub const BITS_ALLOCATED: u32 = 0x0028_0100;
    pub const MEDIA_SOP_CLASS_UID: u32 = 0x0002_0002;
    pub const MEDIA_SOP_INSTANCE_UID: u32 = 0x0002_0003;
}

/// Issuers under which a Patient ID is an NHS number: the literal "NHS" and
/// the NHS number's OID (2.16.840.1.113883.2.1.4.1).
const NHS_ISSUERS: [&str; 2] = ["NHS", "2.16.840.1.113883.2.1.4.1"];

/// A valid NHS number among a patient's identifiers: one issued by the
/// NHS (an Other Patient IDs item, or the Patient ID itself).
pub fn nhs_number(other: &[OtherId], patient_id: &str, issuer: &str) -> Option<String> {
    other
        .iter()
        .map(|o| (o.id.as_str(), o.issuer.as_str()))
        .chain(std::iter::once((patient_id, issuer)))
        .filter(|(_, iss)| NHS_ISSUERS.contains(iss))
        .find_map(|(id, _)| crate::nhs::normalise(id))
}

/// Scans `bytes` and extracts the indexed attributes. Arrival facts (site,
/// size, hash, time) are left for the caller.
pub fn read_meta(bytes: &[u8]) -> Result<InstanceMeta, ScanError> {
    let s = scan::scan(bytes, &[tag::OTHER_PATIENT_IDS_SEQUENCE, tag::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE])?;
    // Whoever later sizes buffers from the header (render, transcode) can trust it.
    s.check_native_pixel_data()?;
    let cs = text::charset(s.get(tag::SPECIFIC_CHARACTER_SET));
    let t = |tag: u32| s.get(tag).map(|v| decode(&cs, v)).unwrap_or_default();
    let a = |tag: u32| s.get(tag).map(ascii).unwrap_or_default();
    let da = |tag: u32, what: &str| checked(&a(tag), what, normalise_da);
    let tm = |tag: u32, what: &str| checked(&a(tag), what, normalise_tm);

    let sop_uid = uid(&s, tag::SOP_INSTANCE_UID, tag::MEDIA_SOP_INSTANCE_UID, "SOP Instance UID (0008,0018)")?;
    let sop_class_uid = uid(&s, tag::SOP_CLASS_UID, tag::MEDIA_SOP_CLASS_UID, "SOP Class UID (0008,0016)")?;
    let study_uid = uid(&s, tag::STUDY_INSTANCE_UID, 0, "Study Instance UID (0020,000D)")?;
    let series_uid = uid(&s, tag::SERIES_INSTANCE_UID, 0, "Series Instance UID (0020,000E)")?;

    let other_patient_ids = other_ids(&s, &cs);
    let patient_id = t(tag::PATIENT_ID);
    let issuer = t(tag::ISSUER_OF_PATIENT_ID);
    let nhs_number = nhs_number(&other_patient_ids, &patient_id, &issuer);

    let pixel = s.element(scan::PIXEL_DATA);
    let frames = s.get(tag::NUMBER_OF_FRAMES).and_then(text::int).filter(|n| *n > 0).unwrap_or(1);
    Ok(InstanceMeta {
        specific_character_set: a(tag::SPECIFIC_CHARACTER_SET),
        patient_id,
        issuer_of_patient_id: issuer,
        // Trailing empty component groups carry nothing (PS3.5 6.2.1.1).
        patient_name: t(tag::PATIENT_NAME).trim_end_matches('=').to_owned(),
        patient_birth_date: da(tag::PATIENT_BIRTH_DATE, "Patient's Birth Date"),
        patient_sex: a(tag::PATIENT_SEX),
        other_patient_ids,
        nhs_number,
        study_uid,
        study_date: da(tag::STUDY_DATE, "Study Date"),
        study_time: tm(tag::STUDY_TIME, "Study Time"),
        accession_number: t(tag::ACCESSION_NUMBER),
        accession_issuer: accession_issuer(&s, &cs),
        study_id: t(tag::STUDY_ID),
        referring_physician_name: t(tag::REFERRING_PHYSICIAN_NAME),
        study_description: t(tag::STUDY_DESCRIPTION),
        institution_name: t(tag::INSTITUTION_NAME),
        series_uid,
        modality: a(tag::MODALITY),
        series_number: s.get(tag::SERIES_NUMBER).and_then(text::int),
        series_description: t(tag::SERIES_DESCRIPTION),
        body_part_examined: a(tag::BODY_PART_EXAMINED),
        series_date: da(tag::SERIES_DATE, "Series Date"),
        series_time: tm(tag::SERIES_TIME, "Series Time"),
        sop_uid,
        sop_class_uid,
        instance_number: s.get(tag::INSTANCE_NUMBER).and_then(text::int),
        transfer_syntax: s.transfer_syntax.clone(),
        frames: u32::try_from(frames).unwrap_or(u32::MAX),
        rows: s.u16_of(tag::ROWS).unwrap_or(0),
        columns: s.u16_of(tag::COLUMNS).unwrap_or(0),
        bits_allocated: s.u16_of(tag::BITS_ALLOCATED).unwrap_or(0),
        samples_per_pixel: s.u16_of(tag::SAMPLES_PER_PIXEL).unwrap_or(0),
        photometric: a(tag::PHOTOMETRIC_INTERPRETATION),
        has_pixel_data: pixel.is_some(),
        ..InstanceMeta::default()
    })
}

/// A DA or TM value in its standard form, or empty (logged) when it is
/// not one: the instance is still stored, the value just not indexed, so a
/// stray byte cannot reach date matching.
fn checked(v: &str, what: &str, normalise: fn(&str) -> Option<String>) -> String {
    if v.is_empty() {
        return String::new();
    }
    normalise(v).unwrap_or_else(|| {
        tracing::warn!(attribute = what, value = ?v, "not a valid value for its VR; indexed as empty");
        String::new()
    })
}

fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// DA: `YYYYMMDD`, or the ACR-NEMA form `YYYY.MM.DD` (PS3.5 6.2 note), as `YYYYMMDD`.
pub fn normalise_da(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let d = match b.len() {
        8 => v.to_owned(),
        10 if b[4] == b'.' && b[7] == b'.' => v.split('.').collect(),
        _ => return None,
    };
    // A day of the calendar: FHIR, HL7 and ages need one.
    crate::dates::days_of(&d).map(|_| d)
}

/// TM: `HH[MM[SS[.F{1,6}]]]`, or the ACR-NEMA form `HH:MM:SS[.F]`, without colons.
pub fn normalise_tm(v: &str) -> Option<String> {
    let (hms, frac) = match v.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (v, None),
    };
    let hms = if hms.contains(':') {
        let parts: Vec<&str> = hms.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        hms.to_owned()
    };
    let hms_ok = matches!(hms.len(), 2 | 4 | 6) && digits(&hms);
    let frac_ok = frac.is_none_or(|f| hms.len() == 6 && (1..=6).contains(&f.len()) && digits(f));
    (hms_ok && frac_ok).then(|| match frac {
        Some(f) => format!("{hms}.{f}"),
        None => hms,
    })
}

/// A required UID from the data set, falling back to the file meta's copy
/// (`meta_tag`, 0 for none). Refused when absent or not a valid UID.
fn uid(s: &Scanned<'_>, tag: u32, meta_tag: u32, what: &'static str) -> Result<String, ScanError> {
    let v = s
        .uid_of(tag)
        .or_else(|| {
            (meta_tag != 0)
                .then(|| s.meta_value(meta_tag))
                .flatten()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|u| u.trim_end_matches(['\0', ' ']))
                .filter(|u| !u.is_empty())
        })
        .ok_or(ScanError::Missing(what))?;
    scan::check_uid(v, what)?;
    Ok(v.to_owned())
}

fn other_ids(s: &Scanned<'_>, cs: &dicom_encoding::text::SpecificCharacterSet) -> Vec<OtherId> {
    let mut out: Vec<OtherId> = Vec::new();
    for (item, tag, value) in s.nested_values(tag::OTHER_PATIENT_IDS_SEQUENCE) {
        while out.len() <= item {
            out.push(OtherId::default());
        }
        let slot = &mut out[item];
        match tag {
            tag::PATIENT_ID => slot.id = decode(cs, value),
            tag::ISSUER_OF_PATIENT_ID => slot.issuer = decode(cs, value),
            tag::TYPE_OF_PATIENT_ID => slot.kind = ascii(value),
            _ => {}
        }
    }
    out.retain(|o| !o.id.is_empty());
    out
}

/// The first item of Issuer of Accession Number Sequence (one item, PS3.3 10.14).
fn accession_issuer(s: &Scanned<'_>, cs: &dicom_encoding::text::SpecificCharacterSet) -> AccessionIssuer {
    let mut out = AccessionIssuer::default();
    for (_, tag, value) in s.nested_values(tag::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE).filter(|(item, _, _)| *item == 0) {
        match tag {
            tag::LOCAL_NAMESPACE_ENTITY_ID => out.local = decode(cs, value),
            tag::UNIVERSAL_ENTITY_ID => out.universal = decode(cs, value),
            tag::UNIVERSAL_ENTITY_ID_TYPE => out.universal_type = ascii(value),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_normalised_or_dropped() {
        assert_eq!(normalise_da("20240101").as_deref(), Some("20240101"));
        assert_eq!(normalise_da("2024.01.01").as_deref(), Some("20240101"));
        assert_eq!(normalise_da("20240229").as_deref(), Some("20240229"));
        for bad in [
            "2024\u{e9}0101",
            "2024010\u{e9}",
            "2024-01-01",
            "202401",
            "2024.0101.",
            "20240101\\20240102",
            "2024.01.0\u{e9}",
            "18000100",
            "20241301",
            "20230229",
            "20240431",
        ] {
            assert_eq!(normalise_da(bad), None, "{bad:?}");
        }
        assert_eq!(normalise_tm("07").as_deref(), Some("07"));
        assert_eq!(normalise_tm("0730").as_deref(), Some("0730"));
        assert_eq!(normalise_tm("073015.123456").as_deref(), Some("073015.123456"));
        assert_eq!(normalise_tm("07:30:15").as_deref(), Some("073015"));
        assert_eq!(normalise_tm("07:30:15.5").as_deref(), Some("073015.5"));
        for bad in ["7", "073", "0730.5", "073015.1234567", "07:3:15", "0730\u{e9}", "07:30:15:00", "12.", "\u{e9}\u{e9}"] {
            assert_eq!(normalise_tm(bad), None, "{bad:?}");
        }
    }
}
