//! Where a signed report goes: back to the trust that owns the study, as
//! if it had been written there. Signing a report (or an addendum) puts
//! its deliveries in a durable outbox: a DICOM SR, stored here and sent by
//! C-STORE to the owning site's PACS, and an HL7 ORU^R01 to the site's RIS
//! over MLLP. A worker sends what is due, retrying with backoff; every
//! entry's state is kept, so a restart resumes and a person can see it.

pub mod hl7;
pub mod outbox;
pub mod sr;

use std::sync::Arc;
use std::time::Duration;

use pacs_gateway::scu::{self, ScuConfig, StoreAssociation};
use pacs_gateway::status::Category;

use crate::ingest::{now_ms, Hub};
use crate::reports::Reports;
pub use outbox::{Entry, Kind, Outbox, State};

/// Sends the outbox's due entries.
pub struct Delivery {
    pub hub: Arc<Hub>,
    pub reports: Arc<Reports>,
    pub outbox: Arc<Outbox>,
    pub scu: ScuConfig,
}

/// Why one attempt failed: retried later.
type Attempt = Result<State, String>;

impl Delivery {
    /// Runs until the process ends: each due entry tried, then a wait for
    /// the next due or a new entry.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let (ob, due) = (self.outbox.clone(), now);
            let due = tokio::task::spawn_blocking(move || ob.due(due)).await;
            let due = match due {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "outbox unreadable");
                    Vec::new()
                }
                Err(_) => return,
            };
            // A report's SR and ORU (and other reports') go out side by side.
            let mut sending = tokio::task::JoinSet::new();
            for e in due {
                let me = self.clone();
                sending.spawn(async move { me.attempt(e).await });
            }
            while sending.join_next().await.is_some() {}
            let next = self.outbox.next_due().map(|t| t.saturating_sub(now_ms())).unwrap_or(60_000).clamp(50, 60_000);
            tokio::select! {
                _ = self.outbox.woken() => {}
                _ = tokio::time::sleep(Duration::from_millis(next)) => {}
            }
        }
    }

    async fn attempt(&self, mut e: Entry) {
        let result = match e.kind {
            Kind::Sr => self.send_sr(&e).await,
            Kind::Oru => self.send_oru(&e).await,
        };
        e.attempts += 1;
        match result {
            Ok(state) => {
                tracing::info!(report = e.report_id, kind = ?e.kind, site = %e.site, ?state, attempts = e.attempts, "report delivery");
                e.state = state;
                e.last_error = None;
                e.done_ms = Some(now_ms());
            }
            Err(why) => {
                let wait = backoff(e.attempts);
                tracing::warn!(report = e.report_id, kind = ?e.kind, site = %e.site, error = %why, retry_in_s = wait.as_secs(), "report delivery failed");
                e.last_error = Some(why);
                e.next_ms = now_ms() + wait.as_millis() as u64;
            }
        }
        let ob = self.outbox.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || ob.put(&e)).await.map_err(|j| j.to_string()).and_then(|r| r.map_err(|x| x.to_string())) {
            tracing::error!(error = %err, "outbox entry not saved");
        }
    }

    /// The SR is made once (its UIDs are the entry's) and stored here
    /// before it is sent: a retry sends the same object.
    async fn send_sr(&self, e: &Entry) -> Attempt {
        let Some(site) = crate::sites::find(&e.site) else { return Ok(State::NotConfigured) };
        let Some(peer) = site.pacs_peer().map_err(|e| e.to_string())? else { return Ok(State::NotConfigured) };
        let ae = peer.ae_title.clone();
        let (hub, reports, entry) = (self.hub.clone(), self.reports.clone(), e.clone());
        let bytes = tokio::task::spawn_blocking(move || sr_of(&hub, &reports, &entry)).await.map_err(|j| j.to_string())??;
        let refs = vec![scu::describe(&bytes).map_err(|e| e.to_string())?];
        let mut assoc = StoreAssociation::connect(&self.scu, &peer, &scu::classes_of(&refs)).await.map_err(|e| format!("{peer}: {e}"))?;
        let answer = assoc.store(&bytes).await;
        let _ = assoc.release().await;
        let a = answer.map_err(|e| format!("{ae}: {e}"))?;
        match a.status.category() {
            Category::Success | Category::Warning => Ok(State::Sent),
            _ => Err(format!("{ae} answered the C-STORE with {:04X} {}", a.status.0, a.comment.unwrap_or_default())),
        }
    }

    async fn send_oru(&self, e: &Entry) -> Attempt {
        let Some(site) = crate::sites::find(&e.site) else { return Ok(State::NotConfigured) };
        let Some(ris) = site.ris.clone() else { return Ok(State::NotConfigured) };
        let (hub, reports, entry) = (self.hub.clone(), self.reports.clone(), e.clone());
        let message = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let report = reports.get(entry.report_id).map_err(|e| e.to_string())?.ok_or("the report is gone")?;
            let study = hub.index.study(&report.study_uid).map_err(|e| e.to_string())?.ok_or("the study is no longer indexed")?;
            let nhs = hub.index.patient(&study.patient).map_err(|e| e.to_string())?.and_then(|p| p.nhs_number);
            Ok(hl7::oru(&study, &report, nhs.as_deref(), &entry.site, &format!("RADHUB{}", entry.id)))
        })
        .await
        .map_err(|j| j.to_string())??;
        hl7::send(&ris, &message, Duration::from_secs(10)).await.map(|()| State::Sent).map_err(|e| e.to_string())
    }
}

/// The SR of an entry's report, stored here (idempotent: the same UIDs and
/// content each time), as Part 10 bytes.
fn sr_of(hub: &Hub, reports: &Reports, e: &Entry) -> Result<Vec<u8>, String> {
    let (sop, series) = (e.sop_uid.as_deref().ok_or("no SR UID")?, e.series_uid.as_deref().ok_or("no SR series UID")?);
    if let Some(bytes) = hub.file(sop).map_err(|x| x.to_string())? {
        return Ok(bytes);
    }
    let report = reports.get(e.report_id).map_err(|x| x.to_string())?.ok_or("the report is gone")?;
    let study = hub.index.study(&report.study_uid).map_err(|x| x.to_string())?.ok_or("the study is no longer indexed")?;
    let instances = hub.index.instances_of(&study.uid, None).map_err(|x| x.to_string())?;
    let signer = sr::Signer { user: &report.author, organisation: "radhub, Dorset" };
    let bytes = sr::build(&study, &instances, &report, &signer, sop, series)?;
    hub.ingest(&bytes, Some(&study.site)).map_err(|x| format!("storing the SR: {x}"))?;
    Ok(bytes)
}

/// 5 s, doubling, at most 10 minutes.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs((5u64 << attempts.saturating_sub(1).min(7)).min(600))
}
