//! Storage commitment reports for a new association (PS3.4 J.3.3.1.2):
//! those the requestor did not take on its own association are kept here,
//! durably, and sent to the AE's configured address (`--peer
//! AE@host:port`, a site's PACS), radhub taking the SCP role; retried with
//! backoff until the AE answers with success, and through restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pacs_gateway::commitment::Report;
use pacs_gateway::scu::{self, Peer, ScuConfig};
use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum CommitmentError {
    #[error("commitment reports: {0}")]
    Db(#[from] sled::Error),
    #[error("commitment reports: {0}")]
    Codec(#[from] postcard::Error),
}

/// A report waiting for its AE.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    calling_ae: String,
    transaction_uid: String,
    event_type: u16,
    data: Vec<u8>,
    transfer_syntax: String,
    attempts: u32,
    next_ms: u64,
    last_error: Option<String>,
}

/// Kept until delivered (the `commitments` tree of the application
/// database), keyed by Transaction UID.
pub struct CommitmentReports {
    db: sled::Db,
    tree: sled::Tree,
    wake: tokio::sync::Notify,
}

/// Attempts before a report is given up (logged): about two days of backoff.
const MAX_ATTEMPTS: u32 = 60;

impl CommitmentReports {
    pub fn new(db: &sled::Db) -> Result<Self, CommitmentError> {
        Ok(CommitmentReports { db: db.clone(), tree: db.open_tree("commitments")?, wake: tokio::sync::Notify::new() })
    }

    /// Keeps a report durably and wakes the sender.
    pub fn keep(&self, calling_ae: &str, r: Report) -> Result<(), CommitmentError> {
        let p = Pending {
            calling_ae: calling_ae.to_owned(),
            transaction_uid: r.transaction_uid,
            event_type: r.event_type,
            data: r.data,
            transfer_syntax: r.transfer_syntax,
            attempts: 0,
            next_ms: 0,
            last_error: None,
        };
        self.tree.insert(p.transaction_uid.as_bytes(), postcard::to_stdvec(&p)?)?;
        self.db.flush()?;
        self.wake.notify_one();
        Ok(())
    }

    fn pending(&self) -> Result<Vec<Pending>, CommitmentError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            out.push(postcard::from_bytes(&v)?);
        }
        Ok(out)
    }

    /// How many wait (for status pages and tests).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Sends what is due until the process ends. `peers`: AE title →
    /// the peer (address, and TLS for a site's PACS that has it) of every AE radhub knows.
    pub async fn run(self: Arc<Self>, scu: ScuConfig, peers: HashMap<String, Peer>) {
        loop {
            let due: Vec<Pending> = match self.pending() {
                Ok(all) => all.into_iter().filter(|p| p.next_ms <= now_ms()).collect(),
                Err(e) => {
                    tracing::error!(error = %e, "commitment reports unreadable");
                    Vec::new()
                }
            };
            for p in due {
                self.attempt(&scu, &peers, p).await;
            }
            let next = self.pending().ok().and_then(|all| all.iter().map(|p| p.next_ms).min()).map_or(60_000, |t| t.saturating_sub(now_ms()).clamp(50, 60_000));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(next)) => {}
            }
        }
    }

    async fn attempt(&self, scu: &ScuConfig, peers: &HashMap<String, Peer>, mut p: Pending) {
        let report =
            Report { transaction_uid: p.transaction_uid.clone(), event_type: p.event_type, data: p.data.clone(), transfer_syntax: p.transfer_syntax.clone() };
        let result = match peers.get(&p.calling_ae) {
            None => Err(format!("no address is configured for {} (--peer AE@host:port, or a site's PACS)", p.calling_ae)),
            Some(peer) => match scu::report_commitment(scu, peer, &report).await {
                Ok(a) if a.status == pacs_gateway::status::Status::SUCCESS => Ok(()),
                Ok(a) => Err(format!("{} answered {:04X} {}", p.calling_ae, a.status.0, a.comment.unwrap_or_default())),
                Err(e) => Err(e.to_string()),
            },
        };
        p.attempts += 1;
        let key = p.transaction_uid.clone();
        let done = match result {
            Ok(()) => {
                tracing::info!(transaction = %key, calling_ae = %p.calling_ae, attempts = p.attempts, "storage commitment report delivered on a new association");
                self.tree.remove(key.as_bytes()).map(|_| ())
            }
            Err(why) if p.attempts >= MAX_ATTEMPTS => {
                tracing::error!(transaction = %key, calling_ae = %p.calling_ae, error = %why, attempts = p.attempts, "storage commitment report given up");
                self.tree.remove(key.as_bytes()).map(|_| ())
            }
            Err(why) => {
                let wait = Duration::from_secs(2u64 << p.attempts.min(11)).min(Duration::from_secs(3600));
                tracing::warn!(transaction = %key, calling_ae = %p.calling_ae, error = %why, retry_in_s = wait.as_secs(), "storage commitment report not delivered");
                p.last_error = Some(why);
                p.next_ms = now_ms() + wait.as_millis() as u64;
                match postcard::to_stdvec(&p) {
                    Ok(v) => self.tree.insert(key.as_bytes(), v).map(|_| ()),
                    Err(e) => {
                        tracing::error!(error = %e, "commitment report not saved");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = done.and_then(|()| self.db.flush().map(|_| ())) {
            tracing::error!(error = %e, "commitment reports not saved");
        }
    }
}
