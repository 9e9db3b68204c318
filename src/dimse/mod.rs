//! radhub's side of the DICOM services: the `pacs_gateway::Handler` that
//! stores through `ingest::Hub`, answers C-FIND from the index (never from
//! files) and selects and opens instances for C-MOVE and C-GET.
//!
//! Patient identity is (issuer, Patient ID): a bare Patient ID from a
//! caller whose AE belongs to a site means that site's patient, every
//! answer carries Issuer of Patient ID, and a retrieve selects exactly the
//! patient, studies, series or instances its unique keys name.

pub mod commitment;
mod query;
pub mod transcode;

use std::collections::HashMap;
use std::sync::Arc;

use dicom_core::Tag;
use dicom_core::VR;
use dicom_object::InMemDicomObject;
use pacs_gateway::status::Status;
use pacs_gateway::{Answer, Handler, IncomingFile, InstanceRef, Level, Matches, Model, Query, StoreHeader, StoreRequest};

use crate::index::model::{InstanceMeta, InstanceRecord, PatientKey};
use crate::index::{Index, IndexError, PatientFilter};
use crate::ingest::{Arrival, Hub, IngestError, Outcome, Receiving};
use crate::query::rows::tags;
use crate::query::{self as matching, Key};
use query::keys;

pub struct HubHandler {
    hub: Arc<Hub>,
    /// Told of each stored instance, to make thumbnails in the background.
    renderer: Option<crate::thumbs::Renderer>,
    /// The site each known calling AE stores for.
    sites: HashMap<String, String>,
    ae_title: String,
    /// The sites' PACS: told of arrivals (fetches wait on them), and asked
    /// for what a retrieve selects that is held only at a site.
    federation: Option<Arc<crate::federation::Federation>>,
    /// Told of each stored instance: new examinations join it.
    worklist: Option<Arc<crate::worklist::Worklist>>,
    /// Where stores, queries and retrieves are recorded.
    audit: Option<Arc<crate::audit::DimseAudit>>,
    /// Storage commitment reports kept for a new association.
    commitments: Option<Arc<commitment::CommitmentReports>>,
}

impl HubHandler {
    pub fn new(hub: Arc<Hub>, ae_title: &str, sites: HashMap<String, String>, renderer: Option<crate::thumbs::Renderer>) -> Self {
        HubHandler { hub, renderer, sites, ae_title: ae_title.to_owned(), federation: None, worklist: None, audit: None, commitments: None }
    }

    pub fn with_federation(mut self, f: Arc<crate::federation::Federation>) -> Self {
        self.federation = Some(f);
        self
    }

    pub fn with_worklist(mut self, w: Arc<crate::worklist::Worklist>) -> Self {
        self.worklist = Some(w);
        self
    }

    pub fn with_audit(mut self, a: Arc<crate::audit::DimseAudit>) -> Self {
        self.audit = Some(a);
        self
    }

    pub fn with_commitments(mut self, c: Arc<commitment::CommitmentReports>) -> Self {
        self.commitments = Some(c);
        self
    }

    /// Fetches from their sites the studies (or series) of `found` held
    /// only there, waiting until they are here. Runs on the blocking pool.
    fn fetch_remote(&self, found: &mut [InstanceRecord]) -> Result<(), Answer> {
        let remote: std::collections::BTreeSet<(String, String)> =
            found.iter().filter(|i| !i.local).map(|i| (i.study_uid.clone(), i.series_uid.clone())).collect();
        if remote.is_empty() {
            return Ok(());
        }
        let unable = |why: String| Answer::failure(Status::OUT_OF_RESOURCES_SUB_OPERATIONS, why);
        let fed = self.federation.as_ref().ok_or_else(|| unable("held only at its site; radhub is not connected to it".into()))?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| unable("no runtime to fetch from the site".into()))?;
        let mut studies: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for (st, se) in remote {
            studies.entry(st).or_default().insert(se);
        }
        for (st, series) in studies {
            let Some(study) = self.index().study(&st).map_err(failure)? else { continue };
            let all = self.index().series_of(&st).map_err(failure)?.len();
            // The whole study when all of its series are asked for, else each series.
            let scopes: Vec<Option<String>> = if series.len() >= all { vec![None] } else { series.into_iter().map(Some).collect() };
            for scope in scopes {
                rt.block_on(fed.local_scope(&study, scope.as_deref())).map_err(|e| unable(e.to_string()))?;
            }
        }
        // Now held here: with their stored transfer syntaxes.
        for rec in found.iter_mut().filter(|i| !i.local) {
            if let Some(fresh) = self.index().instance(&rec.sop_uid).map_err(failure)? {
                *rec = fresh;
            }
        }
        Ok(())
    }

    fn index(&self) -> &dyn Index {
        self.hub.index.as_ref()
    }

    /// The issuer a bare Patient ID from `calling_ae` means, if its AE
    /// belongs to a site.
    fn caller_issuer(&self, calling_ae: &str) -> Option<&'static str> {
        self.sites.get(calling_ae).and_then(|s| crate::sites::issuer_of(s))
    }

    /// Scopes a Patient ID without an issuer to the caller's site.
    fn scope(&self, calling_ae: &str, keys: &mut Vec<Key>) {
        let has_pid = matching::value_of(keys, tags::PATIENT_ID).is_some();
        let has_issuer = matching::value_of(keys, tags::ISSUER_OF_PATIENT_ID).is_some();
        if let (true, false, Some(issuer)) = (has_pid, has_issuer, self.caller_issuer(calling_ae)) {
            keys.retain(|k| k.tag != tags::ISSUER_OF_PATIENT_ID);
            keys.push(Key { tag: tags::ISSUER_OF_PATIENT_ID, vr: VR::LO, value: issuer.to_owned() });
        }
    }
}

fn failure(e: IndexError) -> Answer {
    tracing::error!(error = %e, "index failure while answering a query");
    Answer::failure(Status::OUT_OF_RESOURCES, "index unavailable")
}

fn text(o: &InMemDicomObject, t: Tag) -> Option<String> {
    o.get(t).and_then(|e| e.to_str().ok()).map(|s| s.trim_matches([' ', '\0']).to_owned()).filter(|s| !s.is_empty())
}

/// The UIDs a key lists, each once (a list repeating one UID must not
/// send it again and again).
fn uids(o: &InMemDicomObject, t: Tag) -> Vec<String> {
    let set: std::collections::BTreeSet<String> =
        text(o, t).map(|v| v.split('\\').map(|u| u.trim_matches([' ', '\0']).to_owned()).filter(|u| !u.is_empty()).collect()).unwrap_or_default();
    set.into_iter().collect()
}

/// A C-FIND's level and the keys it matched on, for the audit trail.
fn describe(q: &Query) -> String {
    let keys = [
        ("PatientID", tags::PATIENT_ID),
        ("PatientName", tags::PATIENT_NAME),
        ("AccessionNumber", tags::ACCESSION_NUMBER),
        ("StudyInstanceUID", tags::STUDY_INSTANCE_UID),
        ("StudyDate", tags::STUDY_DATE),
        ("ModalitiesInStudy", tags::MODALITIES_IN_STUDY),
    ];
    let named: Vec<String> =
        keys.iter().filter_map(|(name, t)| text(&q.identifier, *t).map(|v| format!("{name}={}", v.chars().take(64).collect::<String>()))).collect();
    format!("{} {}", q.level.as_str(), named.join(" "))
}

/// Most instances one C-MOVE or C-GET selects.
const MAX_RETRIEVE: usize = 250_000;

impl HubHandler {
    /// What follows each C-STORE, with what it needs (cheap to clone: one
    /// goes with each instance received piece by piece).
    fn arrivals(&self) -> Arrivals {
        Arrivals {
            hub: self.hub.clone(),
            renderer: self.renderer.clone(),
            federation: self.federation.clone(),
            worklist: self.worklist.clone(),
            audit: self.audit.clone(),
        }
    }

    /// C-FIND's matches, and how many were sent.
    fn search(&self, q: &Query, matches: &Matches) -> (Result<(), Answer>, usize) {
        if let Some(why) = query::malformed(&q.identifier) {
            return (Err(Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, why)), 0);
        }
        // Optional keys radhub neither matches nor returns (group lengths
        // aside, which carry nothing): each match says so with FF01.
        let unsupported = q.identifier.iter().map(dicom_core::header::Header::tag).any(|t| t.element() != 0 && !query::supported(q.level, t));
        let charset = text(&q.identifier, tags::SPECIFIC_CHARACTER_SET);
        let mut keys = keys(&q.identifier);
        self.scope(&q.calling_ae, &mut keys);
        debug_assert!(q.level != Level::Patient || q.model == Model::PatientRoot);
        let level = match q.level {
            Level::Patient => matching::Level::Patient,
            Level::Study => matching::Level::Study,
            Level::Series => matching::Level::Series,
            Level::Image => matching::Level::Image,
        };
        // Other Patient IDs Sequence, asked for, is answered from the patient's record
        // (the NHS number travels in it): a harvest by another hub links by it.
        let other_ids = q.identifier.get(query::OTHER_PATIENT_IDS_SEQUENCE).is_some();
        let mut known: HashMap<PatientKey, Vec<crate::index::model::OtherId>> = HashMap::new();
        let mut n = 0usize;
        let mut send = |row: crate::query::rows::Row| {
            n += 1;
            let mut r = query::response(&keys, &row, q.level.as_str(), &self.ae_title, charset.as_deref());
            if other_ids {
                let key = PatientKey {
                    issuer: row.get(&tags::ISSUER_OF_PATIENT_ID).cloned().unwrap_or_default(),
                    patient_id: row.get(&tags::PATIENT_ID).cloned().unwrap_or_default(),
                };
                let ids = known.entry(key).or_insert_with_key(|k| self.index().patient(k).ok().flatten().map(|p| p.other_ids).unwrap_or_default());
                query::put_other_ids(&mut r, ids);
            }
            if unsupported {
                matches.send_with_unsupported_keys(r)
            } else {
                matches.send(r)
            }
        };
        let out = matching::each(self.index(), level, &keys, &mut send, &|| matches.wanted()).map_err(failure);
        (out, n)
    }
}

impl Handler for HubHandler {
    fn store(&self, req: StoreRequest) -> Answer {
        let site = self.sites.get(&req.calling_ae).map(String::as_str);
        let from = Arrival { site, sender: &req.calling_ae };
        let result = self.hub.ingest_expecting(&req.file, from, (&req.sop_class_uid, &req.sop_instance_uid));
        self.arrivals().stored(&req.calling_ae, &req.sop_instance_uid, result)
    }

    /// Every C-STORE's data set is written to staging as it arrives.
    fn receive(&self, header: &StoreHeader) -> Option<Box<dyn IncomingFile>> {
        let receiving = self.hub.receiving();
        let site = self.sites.get(&header.calling_ae).cloned();
        Some(Box::new(Received { arrivals: self.arrivals(), header: header.clone(), site, receiving }))
    }

    fn find(&self, q: &Query, matches: &Matches) -> Result<(), Answer> {
        let (out, n) = self.search(q, matches);
        if let Some(a) = &self.audit {
            a.queried(&q.calling_ae, describe(q), n, out.is_err());
        }
        out
    }

    fn select(&self, q: &Query) -> Result<Vec<InstanceRef>, Answer> {
        let id = &q.identifier;
        let refuse = |why: String| Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, why);
        // The patient a Patient Root identifier names, when it names one.
        let patient = match (q.model, text(id, tags::PATIENT_ID)) {
            (Model::PatientRoot, Some(pid)) => Some(self.patient_named(&pid, text(id, tags::ISSUER_OF_PATIENT_ID), &q.calling_ae)?),
            _ => None,
        };
        // A study is retrieved only if held for a site (quarantine is for
        // admins) and, in Patient Root, held for the patient named.
        let retrievable = |st: &str| -> Result<bool, Answer> {
            let Some(s) = self.index().study(st).map_err(failure)? else { return Ok(false) };
            Ok(s.site != crate::sites::QUARANTINE && patient.as_ref().is_none_or(|p| s.patient == *p))
        };
        let mut found: Vec<InstanceRecord> = Vec::new();
        let mut add = |more: Vec<InstanceRecord>| -> Result<(), Answer> {
            found.extend(more);
            if found.len() > MAX_RETRIEVE {
                return Err(Answer::failure(Status::OUT_OF_RESOURCES_MATCHES, format!("more than {MAX_RETRIEVE} instances: retrieve fewer at a time")));
            }
            Ok(())
        };
        match q.level {
            Level::Patient => {
                let p = patient.clone().ok_or_else(|| refuse("Patient ID is required".into()))?;
                for st in self.index().studies_of_patient(&p).map_err(failure)? {
                    if retrievable(&st)? {
                        add(self.index().instances_of(&st, None).map_err(failure)?)?;
                    }
                }
            }
            Level::Study => {
                for st in uids(id, tags::STUDY_INSTANCE_UID) {
                    if retrievable(&st)? {
                        add(self.index().instances_of(&st, None).map_err(failure)?)?;
                    }
                }
            }
            Level::Series => {
                let st = text(id, tags::STUDY_INSTANCE_UID).unwrap_or_default();
                if retrievable(&st)? {
                    for se in uids(id, tags::SERIES_INSTANCE_UID) {
                        add(self.index().instances_of(&st, Some(&se)).map_err(failure)?)?;
                    }
                }
            }
            Level::Image => {
                let (st, se) = (text(id, tags::STUDY_INSTANCE_UID).unwrap_or_default(), text(id, tags::SERIES_INSTANCE_UID).unwrap_or_default());
                if retrievable(&st)? {
                    for sop in uids(id, tags::SOP_INSTANCE_UID) {
                        add(self.index().instance(&sop).map_err(failure)?.filter(|i| i.study_uid == st && i.series_uid == se).into_iter().collect())?;
                    }
                }
            }
        }
        self.fetch_remote(&mut found)?;
        crate::index::model::sort_instances(&mut found);
        if let Some(a) = &self.audit {
            let mut studies = std::collections::BTreeMap::new();
            for i in &found {
                *studies.entry(i.study_uid.clone()).or_insert(0usize) += 1;
            }
            a.retrieved(&q.calling_ae, q.level.as_str(), &studies);
        }
        Ok(found.into_iter().map(|i| InstanceRef { sop_class_uid: i.sop_class_uid, sop_instance_uid: i.sop_uid, transfer_syntax: i.transfer_syntax }).collect())
    }

    fn transcode(&self, part10: &[u8], transfer_syntax: &str) -> Result<Vec<u8>, String> {
        transcode::to_native(part10, transfer_syntax)
    }

    fn commitment_undelivered(&self, calling_ae: &str, report: pacs_gateway::commitment::Report) {
        let transaction = report.transaction_uid.clone();
        match &self.commitments {
            Some(c) => {
                if let Err(e) = c.keep(calling_ae, report) {
                    tracing::error!(%calling_ae, %transaction, error = %e, "storage commitment report lost: not kept");
                }
            }
            None => tracing::warn!(%calling_ae, %transaction, "storage commitment report not kept: no outbox"),
        }
    }

    fn committed(&self, calling_ae: &str, refs: &[(String, String)]) -> Vec<Option<u16>> {
        const PROCESSING_FAILURE: u16 = 0x0110;
        const NO_SUCH_INSTANCE: u16 = 0x0112;
        const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
        refs.iter()
            .map(|(class, uid)| {
                let held = match self.index().instance(uid) {
                    Ok(Some(i)) => i,
                    Ok(None) => return Some(NO_SUCH_INSTANCE),
                    Err(_) => return Some(PROCESSING_FAILURE),
                };
                if held.sop_class_uid != *class {
                    return Some(CLASS_INSTANCE_CONFLICT);
                }
                // What this AE sent last must be what is held, byte for byte.
                match self.index().divergent(uid, calling_ae) {
                    Ok(Some(h)) if h != held.content_hash => return Some(PROCESSING_FAILURE),
                    Ok(_) => {}
                    Err(_) => return Some(PROCESSING_FAILURE),
                }
                match self.hub.file(uid) {
                    Ok(Some(bytes)) if *blake3::hash(&bytes).as_bytes() == held.content_hash => None,
                    Ok(Some(_)) => {
                        tracing::error!(sop = %uid, "stored file differs from its index entry");
                        Some(PROCESSING_FAILURE)
                    }
                    Ok(None) => Some(NO_SUCH_INSTANCE),
                    Err(_) => Some(PROCESSING_FAILURE),
                }
            })
            .collect()
    }

    fn peers(&self) -> pacs_gateway::Peers {
        crate::sites::peers(crate::sites::all())
    }

    fn open(&self, inst: &InstanceRef) -> Result<Vec<u8>, String> {
        self.hub.served_file(&inst.sop_instance_uid).map_err(|e| e.to_string())?.ok_or_else(|| "instance file missing".to_owned())
    }
}

/// What follows a C-STORE: the instance's study is told to the renderer,
/// the federation and the worklist, the store is audited, and the outcome
/// answered.
struct Arrivals {
    hub: Arc<Hub>,
    renderer: Option<crate::thumbs::Renderer>,
    federation: Option<Arc<crate::federation::Federation>>,
    worklist: Option<Arc<crate::worklist::Worklist>>,
    audit: Option<Arc<crate::audit::DimseAudit>>,
}

impl Arrivals {
    fn stored(&self, calling_ae: &str, sop: &str, result: Result<(Outcome, InstanceMeta), IngestError>) -> Answer {
        let (answer, study) = self.answer(calling_ae, sop, result);
        if let Some(a) = &self.audit {
            a.stored(calling_ae, study.as_deref(), answer.status.0);
        }
        answer
    }

    /// The answer to a C-STORE, and the study it was of (when it could be read).
    fn answer(&self, calling_ae: &str, sop: &str, result: Result<(Outcome, InstanceMeta), IngestError>) -> (Answer, Option<String>) {
        match result {
            Ok((outcome, meta)) => {
                if let Some(r) = &self.renderer {
                    r.touch(&meta.study_uid, &meta.series_uid);
                }
                if let Some(f) = &self.federation {
                    f.arrived(&meta);
                }
                if let Some(w) = &self.worklist {
                    w.stored(&meta, self.federation.as_deref());
                }
                let answer = match outcome {
                    // Success would tell the sender its correction was taken.
                    Outcome::KeptExisting => Answer::warning(Status::COERCION_OF_DATA_ELEMENTS, "held with other content; this copy was not stored"),
                    _ => Answer::success(),
                };
                (answer, Some(meta.study_uid))
            }
            Err(IngestError::Rejected(e)) => (Answer::failure(Status::CANNOT_UNDERSTAND, e.to_string()), None),
            Err(IngestError::Mismatch(what)) => (Answer::failure(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, what), None),
            Err(IngestError::Identity(what)) => {
                tracing::warn!(%sop, %calling_ae, %what, "C-STORE refused: patient identity");
                (Answer::failure(Status::CANNOT_UNDERSTAND, what), None)
            }
            Err(IngestError::Withdrawn(what)) => {
                tracing::info!(%sop, %calling_ae, %what, "C-STORE refused: a rejected instance");
                (Answer::failure(Status::CANNOT_UNDERSTAND, what), None)
            }
            Err(e) if e.is_out_of_space() => {
                tracing::error!(%sop, error = %e, "C-STORE refused: storage is full");
                (Answer::failure(Status::OUT_OF_RESOURCES, "out of storage space: send again later"), None)
            }
            Err(e) => {
                tracing::error!(%sop, error = %e, "C-STORE failed");
                (Answer::failure(Status::OUT_OF_RESOURCES, "storage failure"), None)
            }
        }
    }
}

/// A C-STORE's Part 10 file as it arrives (`Hub::receiving`); a staging
/// file that could not be made is answered at the end, as a store is.
struct Received {
    arrivals: Arrivals,
    header: StoreHeader,
    site: Option<String>,
    receiving: Result<Receiving, IngestError>,
}

impl IncomingFile for Received {
    fn write(&mut self, bytes: &[u8]) {
        if let Ok(r) = &mut self.receiving {
            r.write(bytes);
        }
    }

    fn finish(self: Box<Self>) -> Answer {
        let Received { arrivals, header, site, receiving } = *self;
        let from = Arrival { site: site.as_deref(), sender: &header.calling_ae };
        let expected = (header.sop_class_uid.as_str(), header.sop_instance_uid.as_str());
        let result = receiving.and_then(|r| arrivals.hub.ingest_received(r, from, expected));
        arrivals.stored(&header.calling_ae, &header.sop_instance_uid, result)
    }
}

impl HubHandler {
    /// The one patient a Patient ID names: under the issuer given, else
    /// the caller's site's, else the only issuer holding that ID. An ID
    /// held under several issuers names no one in particular: refused.
    fn patient_named(&self, pid: &str, issuer: Option<String>, calling_ae: &str) -> Result<PatientKey, Answer> {
        if let Some(issuer) = issuer.or_else(|| self.caller_issuer(calling_ae).map(str::to_owned)) {
            return Ok(PatientKey { issuer, patient_id: pid.to_owned() });
        }
        let f = PatientFilter { patient_id: Some(pid.to_owned()), ..Default::default() };
        let mut found: Vec<PatientKey> = Vec::new();
        for p in self.index().find_patients(&f).take(2) {
            found.push(p.map_err(failure)?.key);
        }
        match found.len() {
            0 => Ok(PatientKey { issuer: String::new(), patient_id: pid.to_owned() }),
            1 => Ok(found.remove(0)),
            _ => Err(Answer::failure(
                Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                format!("Patient ID {pid} is held under more than one issuer: give Issuer of Patient ID"),
            )),
        }
    }
}
