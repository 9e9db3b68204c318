//! Orders from the sites' RIS: HL7 v2 ORM^O01 (or OMI^O23) over MLLP,
//! each the request for an examination radhub's worklist shows until its
//! report is signed. An order is keyed by (site, accession number): the
//! sending facility (MSH-4) must be a configured site, and its studies are
//! matched by the same accession at the same site.

pub mod adt;
pub mod mllp;

use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub site: String,
    pub accession: String,
    /// The patient as the ordering site knows them.
    pub issuer: String,
    pub patient_id: String,
    pub patient_name: String,
    /// Procedure code and text (OBR-4).
    pub procedure: String,
    /// S (stat), A (ASAP), R (routine), P (pre-op), T (timing critical).
    pub priority: String,
    /// Reason for study (OBR-31) or clinical information (OBR-13).
    pub indication: String,
    pub ordering_clinician: String,
    /// ORC-1: NW new, XO changed, CA cancelled, DC discontinued.
    pub control: String,
    pub received_ms: u64,
}

impl Order {
    /// The patient the order names, as the RIS sent it.
    pub fn patient(&self) -> crate::index::model::PatientKey {
        crate::index::model::PatientKey { issuer: self.issuer.clone(), patient_id: self.patient_id.clone() }
    }

    pub fn cancelled(&self) -> bool {
        matches!(self.control.as_str(), "CA" | "DC" | "OC")
    }

    pub fn urgency(&self) -> u8 {
        urgency(&self.priority)
    }
}

/// Sort key of an HL7 priority: stat first, then ASAP and timing
/// critical, pre-op, then routine.
pub fn urgency(priority: &str) -> u8 {
    match priority {
        "S" => 0,
        "A" | "T" => 1,
        "P" => 2,
        _ => 3,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("orders database: {0}")]
    Db(#[from] sled::Error),
    #[error("order record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The fields of one HL7 v2 segment, as text (components left joined).
fn fields(seg: &str) -> Vec<&str> {
    seg.split('|').collect()
}

/// HL7 escapes back to text (\F\ \S\ \T\ \R\ \E\).
fn unescape(v: &str) -> String {
    v.replace("\\F\\", "|").replace("\\S\\", "^").replace("\\T\\", "&").replace("\\R\\", "~").replace("\\E\\", "\\")
}

fn component(field: &str, i: usize) -> &str {
    field.split('~').next().unwrap_or("").split('^').nth(i).unwrap_or("")
}

/// A parsed ORM^O01 or OMI^O23: its control ID (MSH-10) and the order.
pub fn parse(message: &str) -> Result<(String, Order), OrderError> {
    let bad = |m: &str| OrderError::Invalid(m.to_owned());
    let segs: Vec<&str> = message.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    let seg = |name: &str| segs.iter().find(|s| s.starts_with(name) && s.as_bytes().get(3) == Some(&b'|')).map(|s| fields(s));
    let msh = seg("MSH").ok_or_else(|| bad("no MSH segment"))?;
    // MSH-1 is the field separator itself: MSH-n is fields[n - 1].
    let at = |f: &[&str], n: usize| f.get(n).copied().unwrap_or("").trim().to_owned();
    let kind = at(&msh, 8);
    if !(kind.starts_with("ORM^O01") || kind.starts_with("OMI^O23")) {
        return Err(OrderError::Invalid(format!("message type {kind:?} is not ORM^O01 or OMI^O23")));
    }
    let control_id = at(&msh, 9);
    let facility = component(&at(&msh, 3), 0).to_owned();
    let site = crate::sites::find(&facility).ok_or_else(|| OrderError::Invalid(format!("sending facility {facility:?} is not a configured site")))?;
    let pid = seg("PID").ok_or_else(|| bad("no PID segment"))?;
    let orc = seg("ORC").ok_or_else(|| bad("no ORC segment"))?;
    let obr = seg("OBR").ok_or_else(|| bad("no OBR segment"))?;
    // PID-3: the repetition whose assigning authority is the site's issuer, else the first.
    let ids = at(&pid, 3);
    let mine = ids.split('~').find(|r| component(r, 3) == site.issuer).or_else(|| ids.split('~').next()).unwrap_or("");
    let patient_id = unescape(component(mine, 0));
    if patient_id.is_empty() {
        return Err(bad("PID-3 names no patient"));
    }
    // OBR-18 (placer field 1) or OBR-3 (filler order number) carries the accession.
    let accession =
        [at(&obr, 18), component(&at(&obr, 3), 0).to_owned(), component(&at(&orc, 3), 0).to_owned()].into_iter().find(|a| !a.is_empty()).unwrap_or_default();
    if accession.is_empty() || accession.len() > 16 {
        return Err(OrderError::Invalid(format!("accession number {accession:?}: 1 to 16 characters (OBR-18, OBR-3 or ORC-3)")));
    }
    let quantity_timing = at(&obr, 27);
    let priority = [component(&quantity_timing, 5).to_owned(), component(&at(&orc, 7), 5).to_owned(), at(&obr, 5)]
        .into_iter()
        .find(|p| !p.is_empty())
        .unwrap_or_else(|| "R".into());
    let order = Order {
        site: site.code.clone(),
        accession: unescape(&accession),
        issuer: site.issuer.clone(),
        patient_id,
        patient_name: unescape(at(&pid, 5).split('~').next().unwrap_or("")),
        procedure: unescape(&[component(&at(&obr, 4), 0), component(&at(&obr, 4), 1)].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(" ")),
        priority: priority.chars().take(1).collect::<String>().to_ascii_uppercase(),
        indication: unescape([component(&at(&obr, 31), 1), &at(&obr, 13)].into_iter().find(|s| !s.is_empty()).unwrap_or("")),
        ordering_clinician: unescape(&at(&obr, 16).split('^').skip(1).take(2).collect::<Vec<_>>().join(" ")),
        control: at(&orc, 1),
        received_ms: now_ms(),
    };
    Ok((control_id, order))
}

/// One HL7 v2 segment with `values` at their field numbers.
pub fn segment(name: &str, values: &[(usize, &str)]) -> String {
    let n = values.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut f = vec![""; n + 1];
    f[0] = name;
    for (i, v) in values {
        f[*i] = v;
    }
    f.join("|")
}

/// What an ORM^O01 from a site's RIS says (`orm` writes it).
pub struct OrmMessage<'a> {
    pub site: &'a str,
    pub control_id: &'a str,
    /// ORC-1: NW, XO, CA...
    pub order_control: &'a str,
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub accession: &'a str,
    /// OBR-4 as code^text.
    pub procedure: &'a str,
    pub priority: &'a str,
    pub indication: &'a str,
}

/// An ORM^O01 as a site's RIS sends it (the demo's RIS; tests).
pub fn orm(m: &OrmMessage) -> String {
    let ts = crate::dates::iso_ms(now_ms())[..19].replace(['-', ':', 'T'], "");
    let timing = format!("^^^^^{}", m.priority);
    [
        format!("MSH|^~\\&|RIS|{}|RADHUB|DORSET|{ts}||ORM^O01^ORM_O01|{}|P|2.5.1", m.site, m.control_id),
        segment("PID", &[(1, "1"), (3, &format!("{}^^^{}^MR", m.patient_id, m.site)), (5, m.patient_name)]),
        segment("ORC", &[(1, m.order_control), (2, m.accession), (3, m.accession), (5, "SC"), (7, &timing)]),
        segment(
            "OBR",
            &[
                (1, "1"),
                (2, m.accession),
                (3, m.accession),
                (4, m.procedure),
                (16, "^JONES^ANNA"),
                (18, m.accession),
                (27, &timing),
                (31, &format!("^{}", m.indication)),
            ],
        ),
    ]
    .join("\r")
}

/// The ACK for an order with control ID `control` (AA, or AE/AR with why).
pub fn ack(control: &str, code: &str, text: &str) -> String {
    ack_for("O01", control, code, text)
}

/// The ACK for a message of trigger `event` (its MSH-9 names the event acknowledged).
pub fn ack_for(event: &str, control: &str, code: &str, text: &str) -> String {
    let event: String = event.chars().filter(char::is_ascii_alphanumeric).take(3).collect();
    let ts = crate::dates::iso_ms(now_ms())[..19].replace(['-', ':', 'T'], "");
    let clean: String = text.chars().filter(|c| !matches!(c, '|' | '^' | '~' | '\\' | '&' | '\r' | '\n')).take(80).collect();
    format!("MSH|^~\\&|RADHUB|DORSET|||{ts}||ACK^{event}^ACK|ACK{control}|P|2.5.1\rMSA|{code}|{control}|{clean}\r")
}

pub struct Orders {
    db: sled::Db,
    /// site, NUL, accession → order.
    tree: sled::Tree,
}

fn key(site: &str, accession: &str) -> Vec<u8> {
    let mut k = site.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(accession.as_bytes());
    k
}

impl Orders {
    pub fn new(db: &sled::Db) -> Result<Self, OrderError> {
        Ok(Orders { db: db.clone(), tree: db.open_tree("orders")? })
    }

    /// Files an order (a later message for the same accession replaces it), durably.
    pub fn put(&self, o: &Order) -> Result<(), OrderError> {
        self.tree.insert(key(&o.site, &o.accession), postcard::to_stdvec(o)?)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn get(&self, site: &str, accession: &str) -> Result<Option<Order>, OrderError> {
        Ok(match self.tree.get(key(site, accession))? {
            Some(v) => Some(postcard::from_bytes(&v)?),
            None => None,
        })
    }

    /// Every order not cancelled, most urgent first, then oldest.
    pub fn open(&self) -> Result<Vec<Order>, OrderError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            let o: Order = postcard::from_bytes(&v)?;
            if !o.cancelled() {
                out.push(o);
            }
        }
        out.sort_by_key(|o| (o.urgency(), o.received_ms));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::segment as seg;

    fn orm() -> String {
        [
            "MSH|^~\\&|RIS|RBD|RADHUB|DORSET|20261202101500||ORM^O01^ORM_O01|MSG0001|P|2.5.1".to_owned(),
            seg("PID", &[(1, "1"), (3, "D1234567^^^RBD^MR~9434765919^^^NHS^NH"), (5, "SMITH^JANE"), (7, "19700101"), (8, "F")]),
            seg("ORC", &[(1, "NW"), (2, "PL123"), (3, "ACC42"), (5, "SC"), (7, "^^^^^S")]),
            seg(
                "OBR",
                &[
                    (1, "1"),
                    (2, "PL123"),
                    (3, "ACC42"),
                    (4, "CTHEAD^CT Head without contrast"),
                    (16, "^JONES^ANNA"),
                    (18, "ACC42"),
                    (27, "^^^^^S"),
                    (31, "^Fall\\T\\ ?bleed"),
                ],
            ),
        ]
        .join("\r")
    }

    #[test]
    fn an_orm_becomes_an_order() {
        let m = orm();
        let (control, o) = parse(&m).unwrap();
        assert_eq!(control, "MSG0001");
        assert_eq!((o.site.as_str(), o.accession.as_str(), o.patient_id.as_str(), o.issuer.as_str()), ("RBD", "ACC42", "D1234567", "RBD"));
        assert_eq!((o.priority.as_str(), o.procedure.as_str(), o.indication.as_str()), ("S", "CTHEAD CT Head without contrast", "Fall& ?bleed"));
        assert_eq!(o.ordering_clinician, "JONES ANNA");
        assert!(!o.cancelled() && o.urgency() == 0);
        assert!(matches!(parse(&m.replace("|RBD|RADHUB", "|XYZ|RADHUB")), Err(OrderError::Invalid(m)) if m.contains("XYZ")));
        assert!(parse(&m.replace("ORM^O01", "ADT^A01")).is_err());
        assert!(parse("garbage").is_err());
        assert!(ack("MSG0001", "AA", "").contains("MSA|AA|MSG0001"));
    }

    #[test]
    fn an_orm_written_here_reads_back() {
        let m = OrmMessage {
            site: "RD3",
            control_id: "C1",
            order_control: "NW",
            patient_id: "P1",
            patient_name: "DOE^JO",
            accession: "A1",
            procedure: "^MR head",
            priority: "S",
            indication: "Collapse, ?stroke",
        };
        let (control, o) = parse(&super::orm(&m)).unwrap();
        assert_eq!((control.as_str(), o.site.as_str(), o.patient_id.as_str(), o.accession.as_str()), ("C1", "RD3", "P1", "A1"));
        assert_eq!(
            (o.priority.as_str(), o.procedure.as_str(), o.indication.as_str(), o.patient_name.as_str()),
            ("S", "MR head", "Collapse, ?stroke", "DOE^JO")
        );
    }
}
