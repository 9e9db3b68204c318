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
    /// next attempt (ms), entry id (big endian) → (): the pending entries by
    /// when they fall due, so the worker never reads the delivered ones.
    pending: sled::Tree,
    wake: tokio::sync::Notify,
}

fn due_key(next_ms: u64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&next_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(u64, u64)> {
    Some((u64::from_be_bytes(k.get(..8)?.try_into().ok()?), u64::from_be_bytes(k.get(8..16)?.try_into().ok()?)))
}

impl Outbox {
    pub fn new(db: &sled::Db) -> Result<Self, OutboxError> {
        let o = Outbox {
            db: db.clone(),
            entries: db.open_tree("outbox")?,
            by_report: db.open_tree("outbox_by_report")?,
            pending: db.open_tree("outbox_pending")?,
            wake: tokio::sync::Notify::new(),
        };
        // An outbox from before the pending index: indexed once.
        let meta = db.open_tree("outbox_meta")?;
        if meta.get("pending_indexed")?.is_none() {
            for kv in o.entries.iter() {
                let e: Entry = postcard::from_bytes(&kv?.1)?;
                if e.state == State::Pending {
                    o.pending.insert(due_key(e.next_ms, e.id), &[])?;
                }
            }
            meta.insert("pending_indexed", &[1])?;
            db.flush()?;
        }
        Ok(o)
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
            self.pending.insert(due_key(e.next_ms, id), &[])?;
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

    /// Saves an entry after an attempt. The new due key is written before
    /// the entry and the old one removed after: a crash between leaves a
    /// stale key, which `due` drops, never a pending entry without one.
    pub fn put(&self, e: &Entry) -> Result<(), OutboxError> {
        let old: Option<Entry> = self.entries.get(e.id.to_be_bytes())?.map(|v| postcard::from_bytes(&v)).transpose()?;
        if e.state == State::Pending {
            self.pending.insert(due_key(e.next_ms, e.id), &[])?;
        }
        self.entries.insert(e.id.to_be_bytes(), postcard::to_stdvec(e)?)?;
        if let Some(old) = old.filter(|o| e.state != State::Pending || o.next_ms != e.next_ms) {
            self.pending.remove(due_key(old.next_ms, e.id))?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Pending entries due by `now`.
    pub fn due(&self, now: u64) -> Result<Vec<Entry>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.pending.range(..=due_key(now, u64::MAX)) {
            let (k, _) = kv?;
            let Some((at, id)) = split_key(&k) else { continue };
            match self.entries.get(id.to_be_bytes())? {
                Some(v) => {
                    let e: Entry = postcard::from_bytes(&v)?;
                    if e.state == State::Pending && e.next_ms == at {
                        out.push(e);
                        continue;
                    }
                    // Left by a crash mid-`put`: the entry has moved on.
                    self.pending.remove(&k)?;
                }
                None => {
                    self.pending.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    /// When the next pending entry falls due.
    pub fn next_due(&self) -> Option<u64> {
        self.pending.first().ok().flatten().and_then(|(k, _)| split_key(&k)).map(|(at, _)| at)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64) -> Report {
        let r = crate::reports::Reports::new(&sled::Config::new().temporary(true).open().unwrap()).unwrap();
        let mut rep = r.create("1.2.3", "RBD", "ann", &crate::reports::Content::text("Normal.")).unwrap();
        rep.id = id;
        rep
    }

    #[test]
    fn only_pending_entries_are_read_and_each_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ob = Outbox::new(&db).unwrap();
        let mut made = ob.enqueue(&report(7)).unwrap();
        let now = now_ms();
        assert_eq!(ob.due(now).unwrap().len(), 2);
        made[0].state = State::Sent;
        ob.put(&made[0]).unwrap();
        made[1].next_ms = now + 60_000;
        ob.put(&made[1]).unwrap();
        assert!(ob.due(now).unwrap().is_empty());
        assert_eq!(ob.next_due(), Some(now + 60_000));
        assert_eq!(ob.due(now + 60_000).unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), [made[1].id]);
        // A key left by a crash between writing the entry and dropping its old key.
        ob.pending.insert(due_key(now - 1, made[1].id), &[]).unwrap();
        assert!(ob.due(now).unwrap().is_empty());
        assert_eq!(ob.next_due(), Some(now + 60_000));
        // Reopened: the index is kept, not rebuilt; the report's deliveries all listed.
        drop(ob);
        let ob = Outbox::new(&db).unwrap();
        assert_eq!(ob.next_due(), Some(now + 60_000));
        assert_eq!(ob.of_report(7).unwrap().len(), 2);
    }
}
