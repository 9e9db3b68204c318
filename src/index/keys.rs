//! The index's key space. One sled tree holds every record and secondary
//! index under a one-byte prefix, so that all writes for an instance go in
//! one atomic batch. Components are joined with NUL, which no UID and no
//! valid text value contains (NULs are stripped from text components).

use super::model::PatientKey;

pub const META: u8 = b'M';
pub const PATIENT: u8 = b'P';
pub const STUDY: u8 = b'S';
pub const SERIES: u8 = b'R';
pub const SERIES_TO_STUDY: u8 = b'r';
pub const INSTANCE: u8 = b'I';
pub const INSTANCE_LOCATOR: u8 = b'i';
/// Patient ID → studies.
pub const BY_PATIENT_ID: u8 = b'p';
/// Accession Number → studies.
pub const BY_ACCESSION: u8 = b'a';
/// Study Date (YYYYMMDD), Study Time → studies: read backwards, newest first.
pub const BY_DATE: u8 = b'd';
/// Site, Study Date, Study Time → studies: a site's studies, newest first.
pub const BY_SITE: u8 = b's';
/// Normalised patient name → studies.
pub const BY_NAME: u8 = b'n';
/// NHS number → patient keys (issuer, ID): the cross-site link.
pub const BY_NHS: u8 = b'N';
/// Patient key → its studies.
pub const PATIENT_STUDIES: u8 = b'T';
/// Patient ID → issuers holding a patient of that ID.
pub const PATIENT_ISSUERS: u8 = b'x';
/// Patient key → an open NHS-number link conflict, for an admin.
pub const LINK_CONFLICT: u8 = b'C';
/// Sequence number → one change to an NHS-number link (the link log).
pub const LINK_LOG: u8 = b'L';
/// SOP Instance UID, sender → content hash of a copy that was not kept
/// (other bytes under a held UID, `--policy keep`).
pub const DIVERGENT: u8 = b'K';
/// Patient key → the key it was merged into or renamed to (HL7 A40/A47):
/// data still naming the old identity is filed under the new.
pub const PATIENT_ALIAS: u8 = b'A';
/// Sequence number → one change of patient identity (the identity log).
pub const IDENTITY_LOG: u8 = b'V';
/// SOP Instance UID → its rejection (IOCM): out of the index, kept apart.
pub const REJECTED: u8 = b'J';
/// SOP Instance UID → an arrival held for an admin (it names another
/// patient than its study's): its file kept, filed under no one.
pub const HELD: u8 = b'H';
/// Study Instance UID → (): its patient identity changed after some of its
/// files arrived (a merge, a new ID, new demographics), so they are served
/// restated (`dicom::coerce::restate`).
pub const RESTATED: u8 = b'X';

pub const SEP: u8 = 0;

pub fn key(prefix: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend(p.bytes().filter(|&b| b != SEP));
    }
    k
}

/// The key prefix of every entry whose first parts are `parts` (ends in SEP).
pub fn prefix(prefix: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = key(prefix, parts);
    k.push(SEP);
    k
}

pub fn patient(k: &PatientKey) -> Vec<u8> {
    key(PATIENT, &[&k.issuer, &k.patient_id])
}

/// The last NUL-separated component of a key (a UID in every index here).
pub fn last_part(k: &[u8]) -> &str {
    let start = k.iter().rposition(|&b| b == SEP).map_or(1, |p| p + 1);
    std::str::from_utf8(&k[start..]).unwrap_or("")
}

/// The NUL-separated parts after the prefix byte.
pub fn parts(k: &[u8]) -> Vec<&str> {
    k.get(1..).unwrap_or_default().split(|&b| b == SEP).map(|p| std::str::from_utf8(p).unwrap_or("")).collect()
}
