//! radhub's side of the DICOM services: the `pacs_gateway::Handler` that
//! stores through `ingest::Hub`, answers C-FIND from the index (never from
//! files) and selects and opens instances for C-MOVE and C-GET.

mod query;
pub mod transcode;

use std::collections::HashMap;
use std::sync::Arc;

use dicom_object::InMemDicomObject;
use pacs_gateway::status::Status;
use pacs_gateway::{Answer, Handler, InstanceRef, Level, Model, Query, StoreRequest};

use crate::index::model::InstanceRecord;
use crate::index::{Index, StudyFilter};
use crate::ingest::{Hub, IngestError};
use crate::query::rows::{tags, Row};
use crate::query::{self as matching, Key};
use crate::store::ObjectKey;
use query::keys;

pub struct HubHandler {
    hub: Arc<Hub>,
    /// Told of each stored instance, to make thumbnails in the background.
    renderer: Option<crate::thumbs::Renderer>,
    /// The site each known calling AE stores for.
    sites: HashMap<String, String>,
    ae_title: String,
}

impl HubHandler {
    pub fn new(hub: Arc<Hub>, ae_title: &str, sites: HashMap<String, String>, renderer: Option<crate::thumbs::Renderer>) -> Self {
        HubHandler { hub, renderer, sites, ae_title: ae_title.to_owned() }
    }

    fn index(&self) -> &dyn Index {
        self.hub.index.as_ref()
    }
}

fn failure(e: crate::index::IndexError) -> Answer {
    tracing::error!(error = %e, "index failure while answering a query");
    Answer::failure(Status::OUT_OF_RESOURCES, "index unavailable")
}

impl Handler for HubHandler {
    fn store(&self, req: StoreRequest) -> Answer {
        let site = self.sites.get(&req.calling_ae).map(String::as_str);
        let expect = (req.sop_class_uid.as_str(), req.sop_instance_uid.as_str());
        match self.hub.ingest_expecting(&req.file, site, expect) {
            Ok((_, meta)) => {
                if let Some(r) = &self.renderer {
                    r.touch(&meta.study_uid, &meta.series_uid);
                }
                Answer::success()
            }
            Err(IngestError::Rejected(e)) => Answer::failure(Status::CANNOT_UNDERSTAND, e.to_string()),
            Err(IngestError::Mismatch(what)) => Answer::failure(Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, what),
            Err(e) => {
                tracing::error!(sop = %req.sop_instance_uid, error = %e, "C-STORE failed");
                Answer::failure(Status::OUT_OF_RESOURCES, "storage failure")
            }
        }
    }

    fn find(&self, q: &Query) -> Result<Vec<InMemDicomObject>, Answer> {
        let keys = keys(&q.identifier);
        let rows = self.rows(q.model, q.level, &keys).map_err(failure)?;
        Ok(rows.iter().map(|r| query::response(&keys, r, q.level.as_str(), &self.ae_title)).collect())
    }

    fn select(&self, q: &Query) -> Result<Vec<InstanceRef>, Answer> {
        let keys = keys(&q.identifier);
        // Retrieval uses the unique keys of the level and above (PS3.4 C.4.2.2.1).
        let rows = self.rows(q.model, q.level, &keys).map_err(failure)?;
        let mut out = Vec::new();
        for row in rows {
            let instances: Vec<InstanceRecord> = match q.level {
                Level::Image => row
                    .get(&tags::SOP_INSTANCE_UID)
                    .and_then(|u| self.index().instance(u).transpose())
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(failure)?,
                Level::Series => {
                    let (study, series) = (row.get(&tags::STUDY_INSTANCE_UID), row.get(&tags::SERIES_INSTANCE_UID));
                    match (study, series) {
                        (Some(st), Some(se)) => self.index().instances_of(st, Some(se)).map_err(failure)?,
                        _ => Vec::new(),
                    }
                }
                Level::Study => match row.get(&tags::STUDY_INSTANCE_UID) {
                    Some(st) => self.index().instances_of(st, None).map_err(failure)?,
                    None => Vec::new(),
                },
                Level::Patient => {
                    let f = StudyFilter {
                        patient_id: row.get(&tags::PATIENT_ID).cloned(),
                        issuer: row.get(&tags::ISSUER_OF_PATIENT_ID).cloned(),
                        ..Default::default()
                    };
                    let mut all = Vec::new();
                    for st in self.index().find_studies(&f).map_err(failure)? {
                        all.extend(self.index().instances_of(&st.uid, None).map_err(failure)?);
                    }
                    all
                }
            };
            out.extend(instances.into_iter().map(|i| InstanceRef {
                sop_class_uid: i.sop_class_uid,
                sop_instance_uid: i.sop_uid,
                transfer_syntax: i.transfer_syntax,
            }));
        }
        Ok(out)
    }

    fn transcode(&self, part10: &[u8], transfer_syntax: &str) -> Result<Vec<u8>, String> {
        transcode::to_native(part10, transfer_syntax)
    }

    fn committed(&self, refs: &[(String, String)]) -> Vec<bool> {
        // Held means indexed with the same class, and its file present with the indexed size.
        refs.iter()
            .map(|(class, uid)| match self.index().instance(uid) {
                Ok(Some(i)) => i.sop_class_uid == *class && self.hub.store.size(&ObjectKey::for_uid(uid)).ok().flatten() == Some(i.file_size),
                _ => false,
            })
            .collect()
    }

    fn open(&self, inst: &InstanceRef) -> Result<Vec<u8>, String> {
        self.hub.store.get(&ObjectKey::for_uid(&inst.sop_instance_uid)).map_err(|e| e.to_string())?.ok_or_else(|| "instance file missing".to_owned())
    }
}

impl HubHandler {
    fn rows(&self, model: Model, level: Level, keys: &[Key]) -> Result<Vec<Row>, crate::index::IndexError> {
        debug_assert!(level != Level::Patient || model == Model::PatientRoot);
        let level = match level {
            Level::Patient => matching::Level::Patient,
            Level::Study => matching::Level::Study,
            Level::Series => matching::Level::Series,
            Level::Image => matching::Level::Image,
        };
        matching::search(self.index(), level, keys, 0, None)
    }
}
