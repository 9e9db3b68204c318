//! The durable outbox of report deliveries, in the application database:
//! an entry per (report, destination), written before the signature is
//! answered, updated after each attempt.

use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;
use crate::reports::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// DICOM SR by C-STORE to the site's PACS.
    Sr,
    /// HL7 ORU^R01 over MLLP to the site's RIS.
    Oru,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not yet delivered: tried at `next_ms`.
    Pending,
    Sent,
    /// The site has no such destination configured.
    NotConfigured,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub report_id: u64,
    pub site: String,
    pub kind: Kind,
    pub state: State,
    pub attempts: u32,
    pub next_ms: u64,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub done_ms: Option<u64>,
    /// The SR's own UIDs, fixed when the entry is made.
    pub sop_uid: Option<String>,
    pub series_uid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Db(#[from] sled::Error),
    #[error("outbox record: {0}")]
    Decode(#[from] postcard::Error),
}

pub struct Outbox {
    db: sled::Db,
    /// id (big endian) → entry.
    entries: sled::Tree,
    /// report id, entry id (big endian) → (): a report's deliveries.
    by_report: sled::Tree,
    wake: tokio::sync::Notify,
}

impl Outbox {
    pub fn new(db: &sled::Db) -> Result<Self, OutboxError> {
        Ok(Outbox { db: db.clone(), entries: db.open_tree("outbox")?, by_report: db.open_tree("outbox_by_report")?, wake: tokio::sync::Notify::new() })
    }

    /// The deliveries of a signed report (or addendum), made durable; the
    /// worker is woken.
    pub fn enqueue(&self, report: &Report) -> Result<Vec<Entry>, OutboxError> {
        let now = now_ms();
        let mut out = Vec::new();
        for kind in [Kind::Sr, Kind::Oru] {
            let id = self.db.generate_id()? + 1;
            let sr = kind == Kind::Sr;
            let e = Entry {
                id,
                report_id: report.id,
                site: report.site.clone(),
                kind,
                state: State::Pending,
                attempts: 0,
                next_ms: now,
                last_error: None,
                created_ms: now,
                done_ms: None,
                sop_uid: sr.then(super::sr::new_uid),
                series_uid: sr.then(super::sr::new_uid),
            };
            self.entries.insert(id.to_be_bytes(), postcard::to_stdvec(&e)?)?;
            let mut k = report.id.to_be_bytes().to_vec();
            k.extend_from_slice(&id.to_be_bytes());
            self.by_report.insert(k, &[])?;
            out.push(e);
        }
        self.db.flush()?;
        self.wake.notify_one();
        Ok(out)
    }

    pub fn put(&self, e: &Entry) -> Result<(), OutboxError> {
        self.entries.insert(e.id.to_be_bytes(), postcard::to_stdvec(e)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Pending entries due by `now`.
    pub fn due(&self, now: u64) -> Result<Vec<Entry>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.entries.iter() {
            let (_, v) = kv?;
            let e: Entry = postcard::from_bytes(&v)?;
            if e.state == State::Pending && e.next_ms <= now {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// When the next pending entry falls due.
    pub fn next_due(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(_, v)| postcard::from_bytes::<Entry>(&v).ok())
            .filter(|e| e.state == State::Pending)
            .map(|e| e.next_ms)
            .min()
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// A report's deliveries, oldest first.
    pub fn of_report(&self, report_id: u64) -> Result<Vec<Entry>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.by_report.scan_prefix(report_id.to_be_bytes()) {
            let (k, _) = kv?;
            let Some(id) = k.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()) else { continue };
            if let Some(v) = self.entries.get(id)? {
                out.push(postcard::from_bytes(&v)?);
            }
        }
        Ok(out)
    }
}
