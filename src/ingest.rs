//! Ingest: the one path by which an instance enters radhub (import,
//! C-STORE, STOW-RS). Scan, file under a site (`sites::file`: configuration,
//! never the data), store durably, index, sync: a success is returned only
//! when both the file and its index entry are durable.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dicom::coerce::Identity;
use crate::dicom::{extract, ScanError};
use crate::index::held::{HeldConflict, HeldDecision};
use crate::index::model::{InstanceMeta, InstanceRecord};
use crate::index::rejection::Rejection;
use crate::index::{Index, IndexError, Legacy, SledIndex, SCHEMA_VERSION};
use crate::iocm;
use crate::sites;
use crate::store::{FsStore, ObjectKey, ObjectStore, StagingWriter, StoreError};

/// What to do when a SOP Instance UID arrives again with different bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DuplicatePolicy {
    /// Keep the copy already held; log the conflict.
    #[default]
    Keep,
    /// Replace the held copy with the new one; log it.
    Replace,
}

/// Who sent an instance: the site configured for the sender (`None`: none,
/// so it is quarantined) and the sender's name (a calling AE title, a
/// user), by which storage commitment later asks what it sent.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    pub site: Option<&'a str>,
    pub sender: &'a str,
}

impl<'a> Arrival<'a> {
    pub fn import(site: Option<&'a str>) -> Self {
        Arrival { site, sender: "import" }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    Stored,
    /// The same bytes were held already: success, nothing written.
    Identical,
    /// Different bytes under a held UID, kept per policy: nothing written.
    KeptExisting,
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is at fault; nothing was changed.
    #[error("rejected: {0}")]
    Rejected(#[from] ScanError),
    /// The data set is not what its command announced; nothing was changed.
    #[error("{0}")]
    Mismatch(String),
    /// The instance names another patient than its study is held for.
    #[error("{0}")]
    Identity(String),
    /// The instance was rejected (IOCM) and stays so until an admin restores it.
    #[error("{0}")]
    Withdrawn(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(IndexError),
}

impl IngestError {
    /// Storage ran out of space (the file or the index): nothing was kept,
    /// and the same instance can be sent again once space returns.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            IngestError::Store(e) => e.is_out_of_space(),
            IngestError::Index(IndexError::Db(sled::Error::Io(e))) => crate::store::out_of_space(e),
            _ => false,
        }
    }
}

impl From<IndexError> for IngestError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::PatientMismatch { .. } | IndexError::SeriesMismatch { .. } => IngestError::Identity(e.to_string()),
            IndexError::Rejected(why) => IngestError::Withdrawn(why),
            e => IngestError::Index(e),
        }
    }
}

const UID_LOCKS: usize = 64;

/// Storage and index together, with the rules that bind them.
pub struct Hub {
    pub store: Box<dyn ObjectStore>,
    pub index: Box<dyn Index>,
    pub policy: DuplicatePolicy,
    /// Serialises work on one SOP Instance UID (striped by key).
    uid_locks: Vec<Mutex<()>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl Hub {
    /// Opens (creating) a hub in `dir`: `dir/objects`, `dir/tmp`, `dir/index`,
    /// finishes any write a crash interrupted, and rebuilds an index of an
    /// older schema.
    pub fn open(dir: &Path, policy: DuplicatePolicy) -> Result<Self, OpenError> {
        let store = FsStore::open(dir)?;
        let (index, legacy) = SledIndex::open(&dir.join("index"))?;
        if let Some(old) = legacy {
            // Writes the old index committed are finished before it goes.
            recover(&store, &|sop| old.content_hash(sop))?;
            // Merges, renames, rejections and the link log first: the
            // files still hold what arrived, and aliases file it anew.
            index.carry_over(old.carried()?)?;
            let left_out = migrate(&store, &index, &old)?;
            let replayed = index.replay_demographics()?;
            if replayed > 0 {
                tracing::warn!(replayed, "demographics from the sites' patient administration applied again");
            }
            index.complete_migration()?;
            // Kept while any instance could not be rebuilt: it is the only
            // record of where those were filed.
            if left_out == 0 {
                old.finish()?;
            } else {
                tracing::warn!(left_out, "the old index is kept beside the new one: `radhub verify` lists the files left out");
            }
        }
        let hub = Self::with(Box::new(store), Box::new(index), policy);
        recover(hub.store.as_ref(), &|sop| {
            Ok(match hub.index.instance(sop)? {
                Some(i) => Some(i.content_hash),
                None => hub.index.held(sop)?.map(|c| c.meta.content_hash),
            })
        })?;
        Ok(hub)
    }

    pub fn with(store: Box<dyn ObjectStore>, index: Box<dyn Index>, policy: DuplicatePolicy) -> Self {
        Hub { store, index, policy, uid_locks: (0..UID_LOCKS).map(|_| Mutex::new(())).collect() }
    }

    fn lock(&self, key: &ObjectKey) -> MutexGuard<'_, ()> {
        let m = &self.uid_locks[usize::from(key.0[0]) % UID_LOCKS];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file of an instance the index lists. An instance being committed
    /// is indexed a moment before its file is published (the order that
    /// keeps a crash from exposing half an instance), so a miss waits for
    /// that commit's lock and looks once more.
    pub fn file(&self, sop_uid: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        let key = ObjectKey::for_uid(sop_uid);
        match self.store.get(&key)? {
            Some(b) => Ok(Some(b)),
            None => {
                let _g = self.lock(&key);
                self.store.get(&key)
            }
        }
    }

    /// An instance's file as it is served (C-GET, C-MOVE, WADO-RS, a study
    /// sent to a site): restated to the patient identity the index holds
    /// now when that changed after the file arrived (`index::identity`).
    pub fn served(&self, study_uid: &str, bytes: Vec<u8>) -> Result<Vec<u8>, IngestError> {
        let Some(s) = self.restated_as(study_uid)? else { return Ok(bytes) };
        let now = Identity { key: &s.patient, name: &s.patient_name, birth_date: &s.patient_birth_date, sex: &s.patient_sex };
        match crate::dicom::coerce::restate(&bytes, &now) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Ok(bytes),
            Err(e) => Err(IngestError::Mismatch(format!("restating an instance of {study_uid}: {e}"))),
        }
    }

    /// The study's record when its files are served restated (its
    /// identity changed after some arrived); `None` when they are served as stored.
    pub fn restated_as(&self, study_uid: &str) -> Result<Option<crate::index::model::StudyRecord>, IndexError> {
        if !self.index.restated(study_uid)? {
            return Ok(None);
        }
        self.index.study(study_uid)
    }

    /// `file` of an indexed instance, as served (`served`).
    pub fn served_file(&self, sop_uid: &str) -> Result<Option<Vec<u8>>, IngestError> {
        let Some(rec) = self.index.instance(sop_uid)? else { return Ok(None) };
        match self.file(sop_uid)? {
            Some(b) => self.served(&rec.study_uid, b).map(Some),
            None => Ok(None),
        }
    }

    /// `file`, as a reader.
    pub fn file_reader(&self, sop_uid: &str) -> Result<Option<Box<dyn std::io::Read + Send>>, crate::store::StoreError> {
        let key = ObjectKey::for_uid(sop_uid);
        match self.store.reader(&key)? {
            Some(r) => Ok(Some(r)),
            None => {
                let _g = self.lock(&key);
                self.store.reader(&key)
            }
        }
    }

    /// Reads what the index records from `bytes`, with arrival facts
    /// filled: the site and issuer it is filed under (`sites::file`).
    pub fn describe(bytes: &[u8], site: Option<&str>) -> Result<InstanceMeta, ScanError> {
        Self::describe_hashed(bytes, site, *blake3::hash(bytes).as_bytes())
    }

    /// `describe`, of bytes whose content hash is known.
    fn describe_hashed(bytes: &[u8], site: Option<&str>, content_hash: [u8; 32]) -> Result<InstanceMeta, ScanError> {
        let mut meta = extract::read_meta(bytes)?;
        let filing = sites::file(site, &meta.issuer_of_patient_id);
        if let Some(why) = &filing.quarantined {
            tracing::info!(sop = %meta.sop_uid, patient_id = %meta.patient_id, issuer = %meta.issuer_of_patient_id, %why, "quarantined for an admin");
        }
        if meta.nhs_number.is_none() && sites::find(&filing.site).is_some_and(|s| s.nhs_patient_ids) {
            meta.nhs_number = crate::nhs::normalise(&meta.patient_id);
        }
        meta.accession_issuer = sites::accession_issuer(&filing.site, &meta.accession_issuer);
        meta.site = filing.site;
        meta.issuer = filing.issuer;
        meta.file_size = bytes.len() as u64;
        meta.content_hash = content_hash;
        meta.received_ms = now_ms();
        Ok(meta)
    }

    /// Stores and indexes one Part 10 instance. Returns once the file and its
    /// index entry are durable: stage (fsync), index commit (group flush),
    /// publish (rename). A crash between steps is finished by `recover`.
    pub fn ingest(&self, bytes: &[u8], site: Option<&str>) -> Result<(Outcome, InstanceMeta), IngestError> {
        self.ingest_checked(bytes, Arrival::import(site), |_| Ok(()))
    }

    /// As `ingest`, refusing a data set whose SOP Class and Instance UIDs
    /// are not the `(class, instance)` its C-STORE request announced.
    pub fn ingest_expecting(&self, bytes: &[u8], from: Arrival<'_>, expected: (&str, &str)) -> Result<(Outcome, InstanceMeta), IngestError> {
        self.ingest_checked(bytes, from, |meta| announced(meta, expected))
    }

    /// Starts receiving a Part 10 file piece by piece: written to staging
    /// as it comes (`Receiving::write`), stored by `ingest_received`.
    /// Memory does not grow with its size.
    pub fn receiving(&self) -> Result<Receiving, IngestError> {
        let writer = self.store.stage_writer()?;
        Ok(Receiving { writer, hasher: blake3::Hasher::new(), failed: None })
    }

    /// `ingest_expecting`, of a file received whole by `receiving`: scanned
    /// where it was staged, and committed from there (never written twice).
    pub fn ingest_received(&self, r: Receiving, from: Arrival<'_>, expected: (&str, &str)) -> Result<(Outcome, InstanceMeta), IngestError> {
        self.ingest_received_checked(r, from, |meta| announced(meta, expected))
    }

    /// `ingest_checked`, of a file received whole by `receiving`.
    pub fn ingest_received_checked(
        &self,
        mut r: Receiving,
        from: Arrival<'_>,
        check: impl FnOnce(&InstanceMeta) -> Result<(), String>,
    ) -> Result<(Outcome, InstanceMeta), IngestError> {
        if let Some(e) = r.failed.take() {
            return Err(e.into());
        }
        r.writer.complete();
        let bytes = r.writer.bytes()?;
        let hash = *r.hasher.finalize().as_bytes();
        self.arrive(&bytes, hash, Some(r.writer), from, check)
    }

    /// As `ingest`, refusing (`Mismatch`, nothing changed) a data set whose
    /// description `check` rejects: what the request around it announced.
    pub fn ingest_checked(
        &self,
        bytes: &[u8],
        from: Arrival<'_>,
        check: impl FnOnce(&InstanceMeta) -> Result<(), String>,
    ) -> Result<(Outcome, InstanceMeta), IngestError> {
        self.arrive(bytes, *blake3::hash(bytes).as_bytes(), None, from, check)
    }

    /// An arrival of `bytes` (hashing to `hash`), staged already by
    /// `staging` or else staged here once the index says to keep it.
    fn arrive(
        &self,
        bytes: &[u8],
        hash: [u8; 32],
        staging: Option<Box<dyn StagingWriter>>,
        from: Arrival<'_>,
        check: impl FnOnce(&InstanceMeta) -> Result<(), String>,
    ) -> Result<(Outcome, InstanceMeta), IngestError> {
        let mut meta = Self::describe_hashed(bytes, from.site, hash)?;
        check(&meta).map_err(IngestError::Mismatch)?;
        // Sent by the site's own PACS (a push, or a retrieve from it): it holds it.
        if meta.site != sites::QUARANTINE && sites::find(&meta.site).and_then(|s| s.ae_title.as_deref()) == Some(from.sender) {
            meta.held_at = Some(meta.site.clone());
        }
        let (outcome, meta) = self.commit(bytes, staging, meta, from.sender)?;
        if meta.sop_class_uid == iocm::KOS && outcome != Outcome::KeptExisting {
            self.apply_rejection_note(bytes, &meta, from.sender)?;
        }
        Ok((outcome, meta))
    }

    /// A stored Key Object Selection that is a rejection note (IOCM) takes
    /// the instances it names, of its own study and site, out of every
    /// query and retrieve. Applied again when the note comes again (nothing
    /// left to do), so a sender retrying after an error completes it.
    fn apply_rejection_note(&self, bytes: &[u8], meta: &InstanceMeta, sender: &str) -> Result<usize, IngestError> {
        let note = match iocm::note(bytes) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(0),
            Err(e) => {
                tracing::warn!(sop = %meta.sop_uid, error = %e, "key object selection not read as a rejection note");
                return Ok(0);
            }
        };
        if meta.site == sites::QUARANTINE {
            tracing::warn!(sop = %meta.sop_uid, "a rejection note from no configured site rejects nothing");
            return Ok(0);
        }
        let (mine, others): (Vec<_>, Vec<_>) = note.instances.into_iter().partition(|(study, _, _)| *study == meta.study_uid);
        if !others.is_empty() {
            tracing::warn!(sop = %meta.sop_uid, ignored = others.len(), "a rejection note names instances of other studies: ignored");
        }
        let rs: Vec<Rejection> = mine
            .into_iter()
            .map(|(study_uid, series_uid, sop_uid)| Rejection {
                sop_uid,
                study_uid,
                series_uid,
                site: meta.site.clone(),
                code: note.code.clone(),
                meaning: note.meaning.to_owned(),
                note: meta.sop_uid.clone(),
                by: sender.to_owned(),
                why: String::new(),
                at_ms: now_ms(),
                record: None,
                deleted: false,
            })
            .collect();
        let done = self.index.reject(&rs)?;
        tracing::warn!(note = %meta.sop_uid, study = %meta.study_uid, reason = note.meaning, named = rs.len(), rejected = done.len(), %sender, "rejection note applied");
        Ok(done.len())
    }

    /// An admin's rejection of the instances named (study, series, SOP
    /// Instance UIDs, as the index holds them). Returns those rejected now.
    pub fn reject(&self, instances: &[InstanceRecord], code: &str, by: &str, why: &str) -> Result<Vec<Rejection>, IngestError> {
        let meaning =
            iocm::reason(code).ok_or_else(|| IngestError::Mismatch(format!("{code:?} is no rejection reason (CID 7011: 113001, 113037, 113038, 113039)")))?;
        let rs: Vec<Rejection> = instances
            .iter()
            .map(|rec| Rejection {
                sop_uid: rec.sop_uid.clone(),
                study_uid: rec.study_uid.clone(),
                series_uid: rec.series_uid.clone(),
                site: String::new(),
                code: code.to_owned(),
                meaning: meaning.to_owned(),
                note: String::new(),
                by: by.to_owned(),
                why: why.to_owned(),
                at_ms: now_ms(),
                record: None,
                deleted: false,
            })
            .collect();
        let done = self.index.reject(&rs)?;
        tracing::warn!(rejected = done.len(), reason = meaning, by, why, "instances rejected by an admin");
        Ok(done)
    }

    /// Puts a rejected instance back as it was: its file read again and
    /// indexed under the site it was held at.
    pub fn restore(&self, sop_uid: &str, by: &str) -> Result<Option<Rejection>, IngestError> {
        let Some(r) = self.index.rejection(sop_uid)? else { return Ok(None) };
        let meta = match r.record.as_ref().filter(|rec| rec.local) {
            Some(rec) => {
                let key = ObjectKey::for_uid(sop_uid);
                let _g = self.lock(&key);
                let bytes = self.store.get(&key)?.ok_or_else(|| IngestError::Mismatch(format!("the file of {sop_uid} is missing")))?;
                let mut meta = Self::describe(&bytes, Some(&rec.site))?;
                meta.received_ms = rec.received_ms;
                Some(meta)
            }
            None => None,
        };
        let out = self.index.restore(sop_uid, meta.as_ref())?;
        tracing::warn!(sop = sop_uid, by, "rejected instance restored");
        Ok(out)
    }

    /// An admin's decision on an arrival held for naming another patient
    /// than its study's. `File` indexes it under the study's patient as it
    /// is now (its data's Patient ID stays in the file); `Discard` deletes
    /// it, its hold taken off first.
    pub fn decide_held(&self, sop_uid: &str, decision: HeldDecision, by: &str, why: &str) -> Result<Option<HeldConflict>, IngestError> {
        let Some(c) = self.index.held(sop_uid)? else { return Ok(None) };
        let key = ObjectKey::for_uid(sop_uid);
        let _g = self.lock(&key);
        let out = match decision {
            HeldDecision::File => {
                let mut m = c.meta.clone();
                if let Some(s) = self.index.study(&m.study_uid)? {
                    m.issuer = s.patient.issuer.clone();
                    m.patient_id = s.patient.patient_id.clone();
                }
                self.index.release(sop_uid, Some(&m))?
            }
            HeldDecision::Discard => {
                let out = self.index.release(sop_uid, None)?;
                self.store.delete(&key)?;
                out
            }
        };
        tracing::warn!(sop = sop_uid, ?decision, by, why, sent = %c.sent(), study_patient = %c.study_patient, "held instance decided");
        Ok(out)
    }

    /// Deletes a rejected instance's file for good. Its index entries went
    /// when it was rejected (durably), so no entry is ever left without
    /// its file; the rejection stays, so that nobody sends it back in.
    pub fn delete_rejected(&self, sop_uid: &str, by: &str) -> Result<bool, IngestError> {
        let Some(r) = self.index.rejection(sop_uid)? else { return Ok(false) };
        if !r.deleted {
            let key = ObjectKey::for_uid(sop_uid);
            let _g = self.lock(&key);
            self.store.delete(&key)?;
            self.index.mark_deleted(sop_uid)?;
            tracing::warn!(sop = sop_uid, by, "rejected instance deleted");
        }
        Ok(true)
    }

    /// Files a quarantined study under `site`: every instance re-read and
    /// re-filed at once, as if that site had sent it. Refused when its data
    /// names another site's issuer (`sites::file`). Returns the instances moved.
    pub fn refile_study(&self, study_uid: &str, site: &str, by: &str) -> Result<usize, IngestError> {
        let held = self.index.instances_of(study_uid, None)?;
        if held.is_empty() {
            return Err(IngestError::Mismatch(format!("no study {study_uid}")));
        }
        let mut metas = Vec::with_capacity(held.len());
        for rec in &held {
            let key = ObjectKey::for_uid(&rec.sop_uid);
            let _g = self.lock(&key);
            let bytes = self.store.get(&key)?.ok_or_else(|| IngestError::Mismatch(format!("the file of {} is missing", rec.sop_uid)))?;
            let mut meta = Self::describe(&bytes, Some(site))?;
            if meta.site != site {
                return Err(IngestError::Identity(format!(
                    "study {study_uid} names Patient IDs issued by {:?}: file it under the site that issued them",
                    meta.issuer_of_patient_id
                )));
            }
            meta.received_ms = rec.received_ms;
            metas.push(meta);
        }
        self.index.refile(&metas)?;
        self.index.sync()?;
        tracing::warn!(study = study_uid, site, by, instances = metas.len(), "study filed from quarantine");
        Ok(metas.len())
    }

    /// Stages (unless `staging` holds the bytes staged already: dropped,
    /// it removes them), indexes, publishes.
    fn commit(&self, bytes: &[u8], staging: Option<Box<dyn StagingWriter>>, meta: InstanceMeta, sender: &str) -> Result<(Outcome, InstanceMeta), IngestError> {
        let key = ObjectKey::for_uid(&meta.sop_uid);
        let _g = self.lock(&key);
        let known = self.index.instance(&meta.sop_uid)?;
        let new = known.is_none();
        let outcome = match known {
            // Known only from a site's PACS: this is its first copy (a retrieve).
            Some(held) if !held.local => Outcome::Stored,
            Some(held) if held.content_hash == meta.content_hash && self.store.size(&key)? == Some(held.file_size) => {
                // The sender's latest copy is the one held.
                if self.index.divergent(&meta.sop_uid, sender)?.is_some() {
                    self.index.set_divergent(&meta.sop_uid, sender, None)?;
                    self.index.sync()?;
                }
                return Ok((Outcome::Identical, meta));
            }
            Some(held) if held.content_hash != meta.content_hash && self.policy == DuplicatePolicy::Keep => {
                tracing::warn!(sop = %meta.sop_uid, %sender, held_bytes = held.file_size, new_bytes = meta.file_size, "same SOP Instance UID, different content: kept the held copy");
                // Remembered, so that storage commitment does not vouch for bytes it never kept.
                self.index.set_divergent(&meta.sop_uid, sender, Some(meta.content_hash))?;
                self.index.sync()?;
                return Ok((Outcome::KeptExisting, meta));
            }
            Some(_) => {
                tracing::warn!(sop = %meta.sop_uid, "same SOP Instance UID, different content: replacing the held copy");
                Outcome::Replaced
            }
            None => Outcome::Stored,
        };
        let staged = match staging {
            Some(w) => w.finish(&key)?,
            None => self.store.stage(&key, bytes)?,
        };
        match self.index.upsert(&meta) {
            Ok(_) => {}
            // A new instance naming another patient than its study's: kept
            // for an admin, filed under no one (its file published only
            // once the hold is durable, as an index entry would be).
            Err(IndexError::PatientMismatch { study, held, sent }) if new && !meta.remote => {
                let c = HeldConflict { meta: meta.clone(), study_patient: held.clone(), sender: sender.to_owned(), at_ms: now_ms() };
                if let Err(e) = self.index.hold(&c) {
                    let _ = self.store.discard(&staged.id);
                    return Err(e.into());
                }
                self.index.sync()?;
                self.store.publish(&staged)?;
                tracing::warn!(sop = %meta.sop_uid, %study, %held, %sent, %sender, "held for an admin: the instance names another patient than its study");
                return Err(IngestError::Identity(format!(
                    "study {study} is held for patient {held}; this instance names {sent}: held for an admin, not filed"
                )));
            }
            Err(e) => {
                // Nothing committed: the staged copy must never become visible.
                let _ = self.store.discard(&staged.id);
                return Err(e.into());
            }
        }
        // Should the flush fail, the staged copy stays: if the entry reaches
        // the disk anyway, recovery publishes it; if not, recovery drops it.
        self.index.sync()?;
        self.store.publish(&staged)?;
        Ok((outcome, meta))
    }
}

/// Refuses a data set whose SOP Class and Instance UIDs are not the
/// `(class, instance)` its C-STORE request announced.
fn announced(meta: &InstanceMeta, (class, instance): (&str, &str)) -> Result<(), String> {
    if meta.sop_uid != instance {
        return Err(format!("data set holds SOP Instance UID {}, not {instance}", meta.sop_uid));
    }
    if meta.sop_class_uid != class {
        return Err(format!("data set holds SOP Class UID {}, not {class}", meta.sop_class_uid));
    }
    Ok(())
}

/// A Part 10 file being received piece by piece (`Hub::receiving`): each
/// piece written to staging and hashed on the way. Dropped without
/// `Hub::ingest_received`, it leaves nothing behind.
pub struct Receiving {
    writer: Box<dyn StagingWriter>,
    hasher: blake3::Hasher,
    /// The first write that failed (the disk full): the rest is not written.
    failed: Option<StoreError>,
}

impl Receiving {
    pub fn write(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.hasher.update(data);
            if let Err(e) = self.writer.write(data) {
                self.failed = Some(e);
            }
        }
    }
}

/// Staged objects are the redo log: one whose index entry committed (the
/// same content hash under its SOP Instance UID, as `committed` says) is
/// published; any other was never acknowledged and is discarded.
/// The content hash an index committed for a SOP Instance UID.
type Committed<'a> = &'a dyn Fn(&str) -> Result<Option<[u8; 32]>, IndexError>;

fn recover(store: &dyn ObjectStore, committed: Committed<'_>) -> Result<Recovery, OpenError> {
    let mut r = Recovery::default();
    for id in store.staged()? {
        let bytes = store.read_staged(&id)?;
        let hash = *blake3::hash(&bytes).as_bytes();
        let done = match extract::read_meta(&bytes) {
            Ok(meta) if committed(&meta.sop_uid)? == Some(hash) => Some(ObjectKey::for_uid(&meta.sop_uid)),
            _ => None,
        };
        drop(bytes);
        match done {
            Some(key) => {
                store.publish(&crate::store::Staged { key, id })?;
                r.published += 1;
            }
            None => {
                store.discard(&id)?;
                r.discarded += 1;
            }
        }
    }
    if r.published + r.discarded > 0 {
        tracing::warn!(published = r.published, discarded = r.discarded, "finished writes interrupted by a crash");
    }
    Ok(r)
}

/// Rebuilds the index of an older schema from the instance files, each
/// keeping the site the old index gave it. Returns how many were left out.
fn migrate(store: &dyn ObjectStore, index: &SledIndex, old: &Legacy) -> Result<u64, OpenError> {
    let list = old.instances()?;
    tracing::warn!(instances = list.len(), to = SCHEMA_VERSION, "rebuilding the index for a new schema from the instance files");
    let (mut done, mut left_out) = (0u64, 0u64);
    for (sop, site) in &list {
        let Some(bytes) = store.get(&ObjectKey::for_uid(sop))? else { continue };
        let meta = match Hub::describe(&bytes, Some(site)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%sop, error = %e, "left out of the rebuilt index; `radhub verify` lists its file");
                left_out += 1;
                continue;
            }
        };
        match index.upsert(&meta) {
            Ok(_) => done += 1,
            Err(e @ (IndexError::PatientMismatch { .. } | IndexError::SeriesMismatch { .. })) => {
                tracing::warn!(%sop, error = %e, "left out of the rebuilt index; `radhub verify` lists its file");
                left_out += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    index.sync()?;
    tracing::warn!(done, left_out, "index rebuilt");
    Ok(left_out)
}

/// What `recover` did at open.
#[derive(Debug, Default)]
pub struct Recovery {
    pub published: u64,
    pub discarded: u64,
}
