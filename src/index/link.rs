//! Linking each trust's patient records into one person by NHS number.
//!
//! A record links by the NHS number its data names only when the number is
//! valid (Modulus 11, no placeholder: `nhs::normalise`) and every record
//! already linked by it agrees on birth date and sex. Anything else (a
//! disagreement, a record whose NHS number changes, a linked group whose
//! demographics come to disagree) is a conflict shown to an admin and
//! never resolved by guessing: two people must never be shown as one.
//! Every change to a link is written to the link log.

use serde::{Deserialize, Serialize};

use super::model::{PatientKey, PatientRecord};

/// Why a record is not (or no longer) linked as its data asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Another record linked by the number names another person.
    Demographics { with: PatientKey, detail: String },
    /// The data names a new NHS number for a record linked by another.
    Changed { linked: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConflict {
    pub patient: PatientKey,
    /// The NHS number the data asks the record to be linked by.
    pub nhs_number: String,
    pub conflict: ConflictKind,
    pub first_seen_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAction {
    Linked,
    Unlinked,
    Conflict,
    /// An admin left the record as it was and refused the number.
    Dismissed,
}

/// One change to a link, as the link log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub seq: u64,
    pub at_ms: u64,
    pub nhs_number: String,
    pub patient: PatientKey,
    pub action: LinkAction,
    pub detail: String,
    /// "ingest" for arriving data, else the admin's user name.
    pub by: String,
}

/// What an admin decides about a record's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Link the record by the number (its conflict's, or the one given).
    Link,
    /// Remove the record's link and refuse that number for it.
    Unlink,
    /// Leave the record as it is and refuse the conflict's number for it.
    Dismiss,
}

/// Whether two records can be shown as one person: both name a birth date,
/// the same one (without it an NHS number alone is not enough), and their
/// sexes, where both are known, agree. Names vary in spelling between
/// trusts and are not compared.
pub fn disagreement(a: &PatientRecord, b: &PatientRecord) -> Option<String> {
    let known = |v: &str| !v.trim().is_empty();
    for r in [a, b] {
        if !known(&r.birth_date) {
            return Some(format!("no birth date at {}: the same person cannot be confirmed", r.key));
        }
    }
    if a.birth_date.trim() != b.birth_date.trim() {
        return Some(format!("birth date {} at {} but {} at {}", a.birth_date, a.key, b.birth_date, b.key));
    }
    if known(&a.sex) && known(&b.sex) && !a.sex.trim().eq_ignore_ascii_case(b.sex.trim()) {
        return Some(format!("sex {} at {} but {} at {}", a.sex, a.key, b.sex, b.key));
    }
    None
}

/// What arriving data does to a record's link.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Link(String),
    /// The linked record now disagrees with others linked by its number.
    Suspend {
        nhs: String,
        with: PatientKey,
        detail: String,
    },
    Conflict {
        nhs: String,
        kind: ConflictKind,
    },
}

/// Decides the link of `patient` (demographics already updated from the
/// arriving data, `nhs_in_data` set) given the other records linked by
/// the numbers involved (`others_of(n)`), and whether a conflict is open.
pub fn decide(patient: &PatientRecord, open_conflict: bool, others_of: &dyn Fn(&str) -> Vec<PatientRecord>) -> Step {
    let first_disagreeing =
        |nhs: &str| others_of(nhs).into_iter().filter(|o| o.key != patient.key).find_map(|o| disagreement(patient, &o).map(|d| (o.key.clone(), d)));
    match (&patient.nhs_number, &patient.nhs_in_data) {
        (Some(linked), proposed) => {
            if let Some((with, detail)) = first_disagreeing(linked) {
                return Step::Suspend { nhs: linked.clone(), with, detail };
            }
            match proposed {
                Some(n) if n != linked && !open_conflict && !patient.nhs_refused.contains(n) => {
                    Step::Conflict { nhs: n.clone(), kind: ConflictKind::Changed { linked: linked.clone() } }
                }
                _ => Step::Nothing,
            }
        }
        (None, Some(n)) if !open_conflict && !patient.nhs_refused.contains(n) => match first_disagreeing(n) {
            Some((with, detail)) => Step::Conflict { nhs: n.clone(), kind: ConflictKind::Demographics { with, detail } },
            None => Step::Link(n.clone()),
        },
        (None, _) => Step::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(issuer: &str, id: &str, birth: &str, sex: &str, linked: Option<&str>, data: Option<&str>) -> PatientRecord {
        PatientRecord {
            key: PatientKey { issuer: issuer.into(), patient_id: id.into() },
            name: "DOE^JANE".into(),
            birth_date: birth.into(),
            sex: sex.into(),
            other_ids: Vec::new(),
            nhs_number: linked.map(Into::into),
            nhs_in_data: data.map(Into::into),
            nhs_refused: Vec::new(),
            sites: Default::default(),
            studies: 1,
            series: 1,
            instances: 1,
        }
    }

    #[test]
    fn links_only_when_every_linked_record_agrees() {
        let n = "9434765919";
        let other = rec("RD3", "P1", "19500101", "F", Some(n), Some(n));
        let same = rec("RBD", "D1", "19500101", "F", None, Some(n));
        assert_eq!(decide(&same, false, &|_| vec![other.clone()]), Step::Link(n.into()));
        // Unknown sex on one side is no disagreement; an unknown birth date is.
        let unknown_sex = rec("RBD", "D1", "19500101", "", None, Some(n));
        assert_eq!(decide(&unknown_sex, false, &|_| vec![other.clone()]), Step::Link(n.into()));
        let unknown_birth = rec("RBD", "D1", "", "F", None, Some(n));
        assert!(matches!(decide(&unknown_birth, false, &|_| vec![other.clone()]), Step::Conflict { .. }));
        let older = rec("RBD", "D1", "19490101", "F", None, Some(n));
        assert!(matches!(decide(&older, false, &|_| vec![other.clone()]), Step::Conflict { kind: ConflictKind::Demographics { .. }, .. }));
        let male = rec("RBD", "D1", "19500101", "M", None, Some(n));
        assert!(matches!(decide(&male, false, &|_| vec![other.clone()]), Step::Conflict { .. }));
        // An open conflict waits for an admin; so does a refused number.
        assert_eq!(decide(&same, true, &|_| vec![other.clone()]), Step::Nothing);
        let mut refused = same.clone();
        refused.nhs_refused.push(n.into());
        assert_eq!(decide(&refused, false, &|_| vec![other.clone()]), Step::Nothing);
    }

    #[test]
    fn a_changed_number_is_a_conflict_and_a_disagreeing_group_is_suspended() {
        let changed = rec("RBD", "D1", "19500101", "F", Some("9434765919"), Some("4010232137"));
        assert_eq!(
            decide(&changed, false, &|_| Vec::new()),
            Step::Conflict { nhs: "4010232137".into(), kind: ConflictKind::Changed { linked: "9434765919".into() } }
        );
        let other = rec("RD3", "P1", "19500101", "F", Some("9434765919"), None);
        let corrected = rec("RBD", "D1", "19610101", "F", Some("9434765919"), Some("9434765919"));
        assert!(matches!(decide(&corrected, false, &|_| vec![other.clone()]), Step::Suspend { .. }));
    }
}

/// Records at two or more sites' issuers that agree on name, birth date and
/// sex but are not linked: the same person perhaps, for an admin to check
/// (and link by NHS number). Never linked by radhub itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub records: Vec<PatientKey>,
}

/// Every proposal, over all patients (an admin's view; a scan of the patients).
pub fn proposals(index: &dyn super::Index) -> super::Result<Vec<Proposal>> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String, String), Vec<PatientRecord>> = BTreeMap::new();
    for p in index.find_patients(&super::PatientFilter::default()) {
        let p = p?;
        if p.name.trim().is_empty() || p.birth_date.is_empty() {
            continue;
        }
        let k = (super::matching::normalise_name(&p.name), p.birth_date.clone(), p.sex.clone());
        groups.entry(k).or_default().push(p);
    }
    let mut out = Vec::new();
    for ((_, birth, sex), recs) in groups {
        let issuers: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.key.issuer.as_str()).collect();
        if issuers.len() < 2 {
            continue;
        }
        // Two valid NHS numbers say two people; one number linking them all says it is done.
        let numbers: std::collections::BTreeSet<&str> = recs.iter().filter_map(|r| r.nhs_number.as_deref().or(r.nhs_in_data.as_deref())).collect();
        let all_linked = recs.iter().all(|r| r.nhs_number.is_some()) && numbers.len() == 1;
        if numbers.len() > 1 || all_linked {
            continue;
        }
        out.push(Proposal { name: recs[0].name.clone(), birth_date: birth, sex, records: recs.iter().map(|r| r.key.clone()).collect() });
    }
    Ok(out)
}
