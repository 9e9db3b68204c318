//! The audit trail: every access to patient data over the HTTP API (a
//! study opened, a query, a retrieve, a report read, drafted, signed, a
//! claim, a link, a send) is one record with the fields of a DICOM audit
//! message (PS3.15 A.5: event, action, when, outcome; the user, their role
//! and address; the patient and study touched). Append-only, and each
//! record carries the BLAKE3 hash of the one before it with its own, so a
//! changed, removed or reordered record breaks the chain `verify` walks.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the trail, from 1.
    pub seq: u64,
    pub time_ms: u64,
    /// PS3.15 A.5 EventID, e.g. "DICOM Instances Accessed", "Query".
    pub event: String,
    /// EventActionCode: C(reate), R(ead), U(pdate), D(elete), E(xecute).
    pub action: String,
    /// EventOutcomeIndicator: 0 success, 4 minor failure (refused), 8 serious failure.
    pub outcome: u8,
    pub user: String,
    pub role: String,
    /// NetworkAccessPointID: the client's address.
    pub from: String,
    /// What was asked: method and route.
    pub request: String,
    pub status: u16,
    /// The patient touched, as "issuer/Patient ID", or "NHS/number".
    pub patient: Option<String>,
    pub study: Option<String>,
    /// Hex BLAKE3 of the previous record (zeros for the first) and of this one.
    pub prev: String,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: {0}")]
    Db(#[from] sled::Error),
    #[error("audit record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("the audit trail is broken at record {seq}: {why}")]
    Broken { seq: u64, why: String },
}

/// What a caller records; the trail fills in the rest.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub event: &'static str,
    pub action: &'static str,
    pub outcome: u8,
    pub user: String,
    pub role: String,
    pub from: String,
    pub request: String,
    pub status: u16,
    pub patient: Option<String>,
    pub study: Option<String>,
}

/// Which records to list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filter {
    pub user: Option<String>,
    pub patient: Option<String>,
    pub study: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        self.user.as_ref().is_none_or(|u| *u == e.user)
            && self.patient.as_ref().is_none_or(|p| e.patient.as_ref() == Some(p))
            && self.study.as_ref().is_none_or(|s| e.study.as_ref() == Some(s))
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms < t)
    }
}

/// What the writer is sent: a record, or a barrier answered once every
/// record sent before it is written.
enum Message {
    Record(Record),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Hands records to the trail's writer thread: a request's answer does
/// not wait on the disk (a full queue does make it wait).
#[derive(Clone)]
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<Message>,
}

impl Recorder {
    pub async fn record(&self, r: Record) {
        if self.tx.send(Message::Record(r)).await.is_err() {
            tracing::error!("the audit writer has stopped: a record is lost");
        }
    }

    /// `record` from a thread outside the async runtime (the DICOM
    /// handler's, on the blocking pool).
    pub fn record_blocking(&self, r: Record) {
        if self.tx.blocking_send(Message::Record(r)).is_err() {
            tracing::error!("the audit writer has stopped: a record is lost");
        }
    }

    /// Waits until every record sent so far is in the trail.
    pub async fn settle(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What DICOM associations do with patient data, recorded like HTTP
/// requests: the calling AE title is the user, its role "DICOM AE".
/// A sender's C-STOREs are one record per study (its first instance in a
/// while), not one per instance.
pub struct DimseAudit {
    log: Recorder,
    /// (calling AE, study) → when its arrival was last recorded.
    stores: Mutex<std::collections::HashMap<(String, String), u64>>,
}

/// A study's arrivals from one sender within this long are one record.
const STORE_WINDOW_MS: u64 = 10 * 60_000;

impl DimseAudit {
    pub fn new(log: Recorder) -> Self {
        DimseAudit { log, stores: Default::default() }
    }

    fn record(&self, event: &'static str, action: &'static str, ae: &str, request: String, status: u16, study: Option<&str>) {
        self.log.record_blocking(Record {
            event,
            action,
            outcome: if status == 0 { 0 } else { 4 },
            user: ae.to_owned(),
            role: "DICOM AE".into(),
            from: "DICOM".into(),
            request,
            status,
            patient: None,
            study: study.map(str::to_owned),
        });
    }

    /// A C-STORE received (status 0: stored); `study` unknown when the
    /// data could not be read.
    pub fn stored(&self, ae: &str, study: Option<&str>, status: u16) {
        let now = crate::ingest::now_ms();
        if let Some(study) = study {
            let mut seen = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            let key = (ae.to_owned(), study.to_owned());
            if status == 0 && seen.get(&key).is_some_and(|t| now.saturating_sub(*t) < STORE_WINDOW_MS) {
                return;
            }
            if seen.len() > 10_000 {
                seen.retain(|_, t| now.saturating_sub(*t) < STORE_WINDOW_MS);
            }
            if status == 0 {
                seen.insert(key, now);
            }
        }
        self.record("DICOM Instances Transferred", "C", ae, "C-STORE".into(), status, study);
    }

    /// A C-FIND answered: its level and keys, and how many matches went back.
    pub fn queried(&self, ae: &str, request: String, matches: usize, failed: bool) {
        self.record("Query", "E", ae, format!("C-FIND {request} ({matches} matches)"), if failed { 0xC000 } else { 0 }, None);
    }

    /// Instances a C-MOVE or C-GET selected: one record per study.
    pub fn retrieved(&self, ae: &str, level: &str, studies: &std::collections::BTreeMap<String, usize>) {
        for (study, n) in studies {
            self.record("DICOM Instances Transferred", "R", ae, format!("retrieve {level} ({n} instances)"), 0, Some(study));
        }
    }
}

/// Records queued for the writer at most.
const QUEUE: usize = 16 << 10;

pub struct Audit {
    tree: sled::Tree,
    /// The last record's (seq, hash): appends are one at a time.
    last: Mutex<(u64, [u8; 32])>,
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The hash of a record: its fields but `hash`, after the previous hash.
fn digest(e: &Event) -> Result<[u8; 32], postcard::Error> {
    let mut unhashed = e.clone();
    unhashed.hash.clear();
    let mut h = blake3::Hasher::new();
    h.update(e.prev.as_bytes());
    h.update(&postcard::to_stdvec(&unhashed)?);
    Ok(*h.finalize().as_bytes())
}

impl Audit {
    pub fn new(db: &sled::Db) -> Result<Self, AuditError> {
        let tree = db.open_tree("audit")?;
        let last = match tree.last()? {
            Some((_, v)) => {
                let e: Event = postcard::from_bytes(&v)?;
                let h = digest(&e)?;
                (e.seq, h)
            }
            None => (0, [0; 32]),
        };
        Ok(Audit { tree, last: Mutex::new(last) })
    }

    /// Appends one record. Written through sled's log (flushed within its
    /// interval, not per request: the trail must not slow every query).
    pub fn record(&self, r: Record) -> Result<Event, AuditError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = Event {
            seq: last.0 + 1,
            time_ms: crate::ingest::now_ms(),
            event: r.event.to_owned(),
            action: r.action.to_owned(),
            outcome: r.outcome,
            user: r.user,
            role: r.role,
            from: r.from,
            request: r.request,
            status: r.status,
            patient: r.patient,
            study: r.study,
            prev: hex(&last.1),
            hash: String::new(),
        };
        let h = digest(&e)?;
        e.hash = hex(&h);
        self.tree.insert(e.seq.to_be_bytes(), postcard::to_stdvec(&e)?)?;
        *last = (e.seq, h);
        Ok(e)
    }

    /// Starts the writer thread. `patient_of` names the patient of a study
    /// (looked up there, off the request's path) for records without one.
    pub fn writer(self: std::sync::Arc<Self>, patient_of: impl Fn(&str) -> Option<String> + Send + 'static) -> Recorder {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(QUEUE);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                while let Some(m) = rx.blocking_recv() {
                    match m {
                        Message::Record(mut r) => {
                            if r.patient.is_none() {
                                r.patient = r.study.as_deref().and_then(&patient_of);
                            }
                            if let Err(e) = self.record(r) {
                                tracing::error!(error = %e, "audit record not written");
                            }
                        }
                        Message::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .expect("starting the audit writer");
        Recorder { tx }
    }

    /// Records matching `f`, newest first, at most `limit`.
    pub fn query(&self, f: &Filter, limit: usize) -> Result<Vec<Event>, AuditError> {
        let mut out = Vec::new();
        for kv in self.tree.iter().rev() {
            let (_, v) = kv?;
            let e: Event = postcard::from_bytes(&v)?;
            if f.until_ms.is_none() && f.since_ms.is_some_and(|t| e.time_ms < t) {
                break;
            }
            if f.matches(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Walks the whole chain: the number of records, or where it breaks.
    pub fn verify(&self) -> Result<u64, AuditError> {
        let mut prev = [0u8; 32];
        let mut n = 0;
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            n += 1;
            let e: Event = postcard::from_bytes(&v).map_err(|e| AuditError::Broken { seq: n, why: format!("unreadable: {e}") })?;
            let key_seq = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
            if e.seq != n || key_seq != n {
                return Err(AuditError::Broken { seq: n, why: format!("record {} found where {n} should be", e.seq) });
            }
            if e.prev != hex(&prev) {
                return Err(AuditError::Broken { seq: n, why: "it does not follow the record before it".into() });
            }
            let h = digest(&e)?;
            if e.hash != hex(&h) {
                return Err(AuditError::Broken { seq: n, why: "its content does not match its hash".into() });
            }
            prev = h;
        }
        Ok(n)
    }

    pub fn flush(&self) -> Result<(), AuditError> {
        self.tree.flush()?;
        Ok(())
    }
}

/// The PS3.15 A.5 event and action of an HTTP request to a route.
pub fn classify(method: &str, route: &str) -> (&'static str, &'static str) {
    let action = match method {
        "GET" | "HEAD" => "R",
        "POST"
            if route.ends_with("/sign")
                || route.ends_with("/preliminary")
                || route.ends_with("/sync")
                || route.ends_with("/echo")
                || route.ends_with("/send") =>
        {
            "E"
        }
        "POST" => "C",
        "PUT" | "PATCH" => "U",
        "DELETE" => "D",
        _ => "E",
    };
    let event = if route.starts_with("/api/admin/users") || route.starts_with("/api/tokens") || route.starts_with("/api/session") {
        "Security Alert"
    } else if route.starts_with("/api/admin/audit") {
        "Audit Log Used"
    } else if route.ends_with("/send") || (method == "POST" && route.starts_with("/dicom-web/studies")) {
        "DICOM Instances Transferred"
    } else if route.contains("/reports")
        || route.contains("/addenda")
        || route.ends_with("/claim")
        || route.ends_with("/template")
        || route.starts_with("/api/admin/claims")
        || route.starts_with("/api/worklist/")
    {
        "Report"
    } else if route.starts_with("/api/admin/links") || route.starts_with("/api/patients/") || route == "/fhir/Patient/{nhs}" {
        "Patient Record"
    } else if route == "/dicom-web/studies"
        || (route.ends_with("/series") && !route.contains("{series}"))
        || (route.ends_with("/instances") && !route.contains("{instance}"))
        || route == "/api/studies"
        || route == "/api/patients"
        || route == "/api/worklist"
        || route.starts_with("/fhir/")
    {
        "Query"
    } else if route.contains("{study}") {
        "DICOM Instances Accessed"
    } else {
        "Application Activity"
    };
    (event, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, study: &str) -> Record {
        Record { event: "Query", action: "R", user: user.into(), role: "clinician".into(), study: Some(study.into()), status: 200, ..Default::default() }
    }

    #[test]
    fn the_chain_holds_and_shows_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = Audit::new(&db).unwrap();
        for i in 0..10 {
            a.record(rec(if i % 2 == 0 { "ann" } else { "bob" }, &format!("1.2.{i}"))).unwrap();
        }
        assert_eq!(a.verify().unwrap(), 10);
        assert_eq!(a.query(&Filter { user: Some("ann".into()), ..Default::default() }, 100).unwrap().len(), 5);
        assert_eq!(a.query(&Filter { study: Some("1.2.3".into()), ..Default::default() }, 100).unwrap()[0].user, "bob");
        // Reopened, the chain goes on from its last record.
        drop(a);
        let a = Audit::new(&db).unwrap();
        a.record(rec("cat", "1.2.99")).unwrap();
        assert_eq!(a.verify().unwrap(), 11);
        // A record changed in place (its hash left as it was).
        let tree = db.open_tree("audit").unwrap();
        let mut e: Event = postcard::from_bytes(&tree.get(4u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        e.user = "mallory".into();
        tree.insert(4u64.to_be_bytes(), postcard::to_stdvec(&e).unwrap()).unwrap();
        assert!(matches!(a.verify(), Err(AuditError::Broken { seq: 4, .. })), "{:?}", a.verify());
        // Rehashed to hide it: the next record no longer follows.
        e.hash = hex(&digest(&e).unwrap());
        tree.insert(4u64.to_be_bytes(), postcard::to_stdvec(&e).unwrap()).unwrap();
        assert!(matches!(a.verify(), Err(AuditError::Broken { seq: 5, .. })), "{:?}", a.verify());
        // A record removed.
        let dir2 = tempfile::tempdir().unwrap();
        let db2 = sled::open(dir2.path()).unwrap();
        let b = Audit::new(&db2).unwrap();
        for i in 0..3 {
            b.record(rec("ann", &i.to_string())).unwrap();
        }
        db2.open_tree("audit").unwrap().remove(2u64.to_be_bytes()).unwrap();
        assert!(matches!(b.verify(), Err(AuditError::Broken { seq: 2, .. })));
    }

    #[test]
    fn requests_are_classified() {
        assert_eq!(classify("GET", "/dicom-web/studies"), ("Query", "R"));
        assert_eq!(classify("GET", "/dicom-web/studies/{study}/series/{series}"), ("DICOM Instances Accessed", "R"));
        assert_eq!(classify("POST", "/api/reports/{id}/sign"), ("Report", "E"));
        assert_eq!(classify("POST", "/dicom-web/studies"), ("DICOM Instances Transferred", "C"));
        assert_eq!(classify("POST", "/api/admin/links"), ("Patient Record", "C"));
        assert_eq!(classify("GET", "/api/admin/audit"), ("Audit Log Used", "R"));
        assert_eq!(classify("GET", "/fhir/ImagingStudy"), ("Query", "R"));
        assert_eq!(classify("GET", "/fhir/Patient/{nhs}"), ("Patient Record", "R"));
    }
}
