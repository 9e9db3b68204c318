//! ADT from a site's patient administration (HL7 v2.5 ADT over the same
//! MLLP listener as orders): demographics (A01, A04, A08, A28, A31), merge
//! (A40) and change of identifier (A47), turned into the index's
//! identity changes for the sending site's issuer.
//!
//! An identifier is taken only when it is the site's own: the PID-3 (or
//! MRG-1) repetition whose assigning authority is the site's issuer, or one
//! naming no authority. A message naming only other authorities' IDs is
//! refused rather than applied to whoever holds the same number here.

use super::{component, fields, unescape, OrderError};
use crate::index::identity::{Demographics, IdentityChange};
use crate::index::model::PatientKey;

/// A parsed ADT message.
#[derive(Debug, PartialEq, Eq)]
pub struct Adt {
    /// MSH-10, for the ACK.
    pub control: String,
    /// The trigger event (A08, A40...).
    pub event: String,
    pub site: String,
    /// `None`: an event radhub does not act on (acknowledged, nothing changed).
    pub change: Option<IdentityChange>,
}

/// Whether a message is ADT (MSH-9's message code), by its first segment.
pub fn is_adt(message: &str) -> bool {
    let msh = message.split(['\r', '\n']).next().unwrap_or("");
    fields(msh).get(8).is_some_and(|t| t.trim().starts_with("ADT^"))
}

pub fn parse(message: &str) -> Result<Adt, OrderError> {
    let bad = |m: String| OrderError::Invalid(m);
    let segs: Vec<&str> = message.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    let seg = |name: &str| segs.iter().find(|s| s.starts_with(name) && s.as_bytes().get(3) == Some(&b'|')).map(|s| fields(s));
    let at = |f: &[&str], n: usize| f.get(n).copied().unwrap_or("").trim().to_owned();
    let msh = seg("MSH").ok_or_else(|| bad("no MSH segment".into()))?;
    let kind = at(&msh, 8);
    let event = [component(&kind, 1).to_owned(), seg("EVN").map(|e| at(&e, 1)).unwrap_or_default()].into_iter().find(|e| !e.is_empty()).unwrap_or_default();
    let control = at(&msh, 9);
    let facility = component(&at(&msh, 3), 0).to_owned();
    let site = crate::sites::find(&facility).ok_or_else(|| bad(format!("sending facility {facility:?} is not a configured site")))?;
    let own = |field: &str, what: &str| -> Result<PatientKey, OrderError> {
        let reps: Vec<&str> = field.split('~').filter(|r| !r.is_empty()).collect();
        let authority = |r: &str| component(r, 3).split('&').next().unwrap_or("").trim().to_owned();
        let mine = reps.iter().find(|r| authority(r) == site.issuer).or_else(|| reps.iter().find(|r| authority(r).is_empty()));
        let id = mine.map(|r| unescape(component(r, 0)).trim().to_owned()).unwrap_or_default();
        if id.is_empty() || id.len() > 64 {
            return Err(bad(format!("{what} names no identifier of {}'s issuer {}", site.code, site.issuer)));
        }
        Ok(PatientKey { issuer: site.issuer.clone(), patient_id: id })
    };
    let pid = seg("PID").ok_or_else(|| bad("no PID segment".into()))?;
    let patient = own(&at(&pid, 3), "PID-3")?;
    let demographics = Demographics { name: person_name(&at(&pid, 5)), birth_date: birth_date(&at(&pid, 7))?, sex: sex(&at(&pid, 8)) };
    let prior = || -> Result<PatientKey, OrderError> {
        let mrg = seg("MRG").ok_or_else(|| bad(format!("{event} has no MRG segment")))?;
        own(&at(&mrg, 1), "MRG-1")
    };
    let change = match event.as_str() {
        "A01" | "A04" | "A08" | "A28" | "A31" => Some(IdentityChange::Demographics { patient, demographics }),
        "A40" => Some(IdentityChange::Merge { from: prior()?, into: patient, demographics }),
        "A47" => Some(IdentityChange::ChangeId { from: prior()?, to: patient, demographics }),
        "" => return Err(bad("MSH-9 names no trigger event".into())),
        _ => None,
    };
    Ok(Adt { control, event, site: site.code.clone(), change })
}

/// An XPN (family^given^middle^suffix^prefix) as a DICOM PN
/// (family^given^middle^prefix^suffix).
fn person_name(xpn: &str) -> String {
    let first = xpn.split('~').next().unwrap_or("");
    let c: Vec<String> = (0..5).map(|i| unescape(first.split('^').nth(i).unwrap_or("").split('&').next().unwrap_or("")).trim().to_owned()).collect();
    let pn = [&c[0], &c[1], &c[2], &c[4], &c[3]].map(|s| s.as_str()).join("^");
    pn.trim_end_matches('^').to_owned()
}

/// PID-7 (a TS) as a DICOM DA.
fn birth_date(ts: &str) -> Result<String, OrderError> {
    let d = component(ts, 0);
    if d.is_empty() {
        return Ok(String::new());
    }
    let day = d.get(..8).unwrap_or(d);
    crate::dates::days_of(day).map(|_| day.to_owned()).ok_or_else(|| OrderError::Invalid(format!("PID-7 {d:?} is not a date")))
}

/// PID-8 (HL7 table 0001) as a DICOM CS: unknown stays unstated.
fn sex(v: &str) -> String {
    match v.trim().to_ascii_uppercase().as_str() {
        "M" => "M",
        "F" => "F",
        "O" | "A" | "N" => "O",
        _ => "",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: &str, pid3: &str, mrg1: Option<&str>) -> String {
        let mut s =
            format!("MSH|^~\\&|PAS|RD3|RADHUB|DORSET|20261203||ADT^{event}^ADT_A39|C1|P|2.5.1\rEVN|{event}\rPID|1||{pid3}||SMITH^JANE^ANN^^MRS||19500101|F");
        if let Some(m) = mrg1 {
            s.push_str(&format!("\rMRG|{m}"));
        }
        s
    }

    #[test]
    fn merges_take_the_sites_own_identifiers() {
        let issuer = crate::sites::find("RD3").map(|s| s.issuer.clone()).unwrap_or_default();
        let a = parse(&msg("A40", &format!("NHS1^^^NHS^NH~P1^^^{issuer}^MR"), Some(&format!("P9^^^{issuer}")))).unwrap();
        let key = |id: &str| PatientKey { issuer: issuer.clone(), patient_id: id.into() };
        let IdentityChange::Merge { from, into, demographics } = a.change.unwrap() else { panic!("not a merge") };
        assert_eq!((from, into), (key("P9"), key("P1")));
        assert_eq!(demographics, Demographics { name: "SMITH^JANE^ANN^MRS".into(), birth_date: "19500101".into(), sex: "F".into() });
        // Only another authority's identifier: refused, not applied to a namesake.
        assert!(parse(&msg("A08", "P1^^^ELSEWHERE", None)).is_err());
        assert!(parse(&msg("A47", "P1", None)).is_err(), "an A47 without MRG");
        assert_eq!(parse(&msg("A02", "P1", None)).unwrap().change, None);
    }
}
