//! Radiology reports: a draft per author and study, edited until signed;
//! a signed report is final and never changes (an addendum is a new report).
//!
//! Kept in the hub's application database beside users. Structured
//! reports sent back to the owning PACS as DICOM SR build on these records.

use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Final,
}

/// A report as stored before addenda were recorded.
#[derive(Deserialize)]
struct ReportV1 {
    id: u64,
    study_uid: String,
    site: String,
    author: String,
    status: Status,
    text: String,
    created_ms: u64,
    updated_ms: u64,
    signed_ms: Option<u64>,
}

fn decode(raw: &[u8]) -> Result<Report, ReportError> {
    match postcard::from_bytes::<Report>(raw) {
        Ok(r) => Ok(r),
        Err(e) => match postcard::from_bytes::<ReportV1>(raw) {
            Ok(v) => Ok(Report {
                id: v.id,
                study_uid: v.study_uid,
                site: v.site,
                author: v.author,
                status: v.status,
                text: v.text,
                created_ms: v.created_ms,
                updated_ms: v.updated_ms,
                signed_ms: v.signed_ms,
                addendum_of: None,
            }),
            Err(_) => Err(e.into()),
        },
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: u64,
    pub study_uid: String,
    /// The site holding the study: where the signed report goes back to.
    pub site: String,
    pub author: String,
    pub status: Status,
    pub text: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub signed_ms: Option<u64>,
    /// The final report this one adds to (a final is never edited).
    pub addendum_of: Option<u64>,
}

impl Report {
    /// A draft is its author's until signed (admins see every report);
    /// signed reports are for every reader.
    pub fn readable_by(&self, user: &str, admin: bool) -> bool {
        self.status == Status::Final || self.author == user || admin
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report database: {0}")]
    Db(#[from] sled::Error),
    #[error("report record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("no report {0}")]
    NotFound(u64),
    #[error("report {0} is signed and final")]
    Final(u64),
    #[error("report {0} belongs to another radiologist")]
    NotAuthor(u64),
    #[error("report text is empty")]
    Empty,
    #[error("report text exceeds {MAX_TEXT} bytes")]
    TooLong,
    #[error("study {0} has a final report: add an addendum to it")]
    HasFinal(String),
    #[error("report {0} is not final: only a final report takes an addendum")]
    NotFinal(u64),
}

pub const MAX_TEXT: usize = 256 << 10;

pub struct Reports {
    db: sled::Db,
    by_id: sled::Tree,
    /// study UID, NUL, id (big endian): the reports of one study in order.
    by_study: sled::Tree,
    /// Held from the check to the write of an edit or a signature, so that
    /// an edit racing a signature cannot turn a signed report back.
    edit: std::sync::Mutex<()>,
}

impl Reports {
    pub fn new(db: &sled::Db) -> Result<Self, ReportError> {
        Ok(Reports { db: db.clone(), by_id: db.open_tree("reports")?, by_study: db.open_tree("reports_by_study")?, edit: std::sync::Mutex::new(()) })
    }

    /// A new draft on a study: refused when the study has its final report
    /// (one final per study; what follows is an addendum).
    pub fn create(&self, study_uid: &str, site: &str, author: &str, text: &str) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_reported(study_uid)? {
            return Err(ReportError::HasFinal(study_uid.to_owned()));
        }
        self.insert(study_uid, site, author, text, None)
    }

    /// A draft addendum to final report `of`.
    pub fn addendum(&self, of: u64, author: &str, text: &str) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.get(of)?.ok_or(ReportError::NotFound(of))?;
        if base.status != Status::Final {
            return Err(ReportError::NotFinal(of));
        }
        self.insert(&base.study_uid, &base.site, author, text, Some(of))
    }

    fn insert(&self, study_uid: &str, site: &str, author: &str, text: &str, addendum_of: Option<u64>) -> Result<Report, ReportError> {
        check(text)?;
        let now = now_ms();
        let id = self.db.generate_id()? + 1;
        let r = Report {
            id,
            study_uid: study_uid.to_owned(),
            site: site.to_owned(),
            author: author.to_owned(),
            status: Status::Draft,
            text: text.to_owned(),
            created_ms: now,
            updated_ms: now,
            signed_ms: None,
            addendum_of,
        };
        let mut key = study_uid.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&id.to_be_bytes());
        self.by_id.insert(id.to_be_bytes(), postcard::to_stdvec(&r)?)?;
        self.by_study.insert(key, &[])?;
        self.db.flush()?;
        Ok(r)
    }

    pub fn get(&self, id: u64) -> Result<Option<Report>, ReportError> {
        Ok(match self.by_id.get(id.to_be_bytes())? {
            Some(v) => Some(decode(&v)?),
            None => None,
        })
    }

    fn editable(&self, id: u64, author: &str) -> Result<Report, ReportError> {
        let r = self.get(id)?.ok_or(ReportError::NotFound(id))?;
        if r.status == Status::Final {
            return Err(ReportError::Final(id));
        }
        if r.author != author {
            return Err(ReportError::NotAuthor(id));
        }
        Ok(r)
    }

    fn save(&self, r: &Report) -> Result<(), ReportError> {
        self.by_id.insert(r.id.to_be_bytes(), postcard::to_stdvec(r)?)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn update(&self, id: u64, author: &str, text: &str) -> Result<Report, ReportError> {
        check(text)?;
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = self.editable(id, author)?;
        r.text = text.to_owned();
        r.updated_ms = now_ms();
        self.save(&r)?;
        Ok(r)
    }

    pub fn sign(&self, id: u64, author: &str) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = self.editable(id, author)?;
        let now = now_ms();
        r.status = Status::Final;
        r.updated_ms = now;
        r.signed_ms = Some(now);
        self.save(&r)?;
        tracing::info!(report = id, study = %r.study_uid, author, "report signed");
        Ok(r)
    }

    pub fn of_study(&self, study_uid: &str) -> Result<Vec<Report>, ReportError> {
        let mut prefix = study_uid.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.by_study.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let id = k.get(prefix.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            if let Some(r) = id.map(|id| self.get(id)).transpose()?.flatten() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Whether the study has its final report (off the worklist).
    pub fn is_reported(&self, study_uid: &str) -> Result<bool, ReportError> {
        Ok(self.of_study(study_uid)?.iter().any(|r| r.status == Status::Final && r.addendum_of.is_none()))
    }
}

fn check(text: &str) -> Result<(), ReportError> {
    if text.trim().is_empty() {
        return Err(ReportError::Empty);
    }
    if text.len() > MAX_TEXT {
        return Err(ReportError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_stored_before_addenda_still_read() {
        #[derive(Serialize)]
        struct Old<'a>(u64, &'a str, &'a str, &'a str, Status, &'a str, u64, u64, Option<u64>);
        let raw = postcard::to_stdvec(&Old(7, "1.2.3", "RBD", "ann", Status::Final, "Normal.", 1, 2, Some(2))).unwrap();
        let r = decode(&raw).unwrap();
        assert_eq!((r.id, r.status, r.addendum_of, r.text.as_str()), (7, Status::Final, None, "Normal."));
    }

    #[test]
    fn drafts_are_edited_by_their_author_until_signed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let reports = Reports::new(&db).unwrap();
        let r = reports.create("1.2.3", "RBD", "ann", "No acute abnormality.").unwrap();
        assert!(matches!(reports.update(r.id, "bob", "x"), Err(ReportError::NotAuthor(_))));
        reports.update(r.id, "ann", "No acute intracranial abnormality.").unwrap();
        assert!(!reports.is_reported("1.2.3").unwrap());
        let signed = reports.sign(r.id, "ann").unwrap();
        assert_eq!(signed.status, Status::Final);
        assert!(matches!(reports.update(r.id, "ann", "changed"), Err(ReportError::Final(_))));
        assert!(reports.is_reported("1.2.3").unwrap());
        assert!(!reports.is_reported("1.2.30").unwrap());
        assert_eq!(reports.of_study("1.2.3").unwrap().len(), 1);
        assert!(matches!(reports.create("1.2.3", "RBD", "bob", "A second opinion."), Err(ReportError::HasFinal(_))));
        let draft = reports.addendum(r.id, "ann", "Addendum in progress.").unwrap();
        assert_eq!(draft.addendum_of, Some(r.id));
        assert!(matches!(reports.addendum(draft.id, "ann", "x"), Err(ReportError::NotFinal(_))));
        assert!(draft.readable_by("ann", false) && draft.readable_by("root", true) && !draft.readable_by("bob", false));
        assert!(signed.readable_by("bob", false));
    }
}
