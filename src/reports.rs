//! Radiology reports: a draft per author and study, edited until signed,
//! optionally issued as preliminary on the way; a signed report is final
//! and never changes (an addendum is a new report). Every saved state of a
//! report is kept as a numbered version.
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
    /// Issued for clinicians to read before the final (still its author's
    /// to edit and sign). Last of the variants: records name them by number.
    Preliminary,
}

impl Status {
    /// Draft, then preliminary, then final.
    pub fn rank(self) -> u8 {
        match self {
            Status::Draft => 0,
            Status::Preliminary => 1,
            Status::Final => 2,
        }
    }
}

/// One titled part of a report (a template's clinical details, technique,
/// findings, conclusion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    pub text: String,
}

/// A report's text as its sections, headed, in order.
pub fn render(sections: &[Section]) -> String {
    sections.iter().filter(|s| !s.text.trim().is_empty()).map(|s| format!("{}:\n{}", s.name, s.text.trim())).collect::<Vec<_>>().join("\n\n")
}

/// A report as it stood at one save.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub status: Status,
    pub text: String,
    pub sections: Vec<Section>,
    pub saved_ms: u64,
}

/// A report as stored before versions and sections were recorded: the
/// earlier layout and one field more (postcard lays a nested struct's
/// fields out inline).
#[derive(Deserialize)]
struct ReportV2 {
    v1: ReportV1,
    addendum_of: Option<u64>,
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

// Each older layout is a prefix of the next: a newer parse of an older
// record runs out of bytes and falls back.
fn decode(raw: &[u8]) -> Result<Report, ReportError> {
    let e = match postcard::from_bytes::<Report>(raw) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let v2 = match postcard::from_bytes::<ReportV2>(raw) {
        Ok(v) => v,
        Err(_) => ReportV2 { v1: postcard::from_bytes::<ReportV1>(raw).map_err(|_| e)?, addendum_of: None },
    };
    let (v, addendum_of) = (v2.v1, v2.addendum_of);
    Ok(Report {
        id: v.id,
        study_uid: v.study_uid,
        site: v.site,
        author: v.author,
        status: v.status,
        text: v.text,
        created_ms: v.created_ms,
        updated_ms: v.updated_ms,
        signed_ms: v.signed_ms,
        addendum_of,
        version: 1,
        sections: Vec::new(),
        template: None,
        preliminary_ms: None,
    })
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
    /// Saves so far (each kept, `Reports::versions`).
    pub version: u32,
    /// The template's sections, when written in them (`text` is then
    /// their rendering).
    pub sections: Vec<Section>,
    pub template: Option<String>,
    pub preliminary_ms: Option<u64>,
}

impl Report {
    /// A draft is its author's until issued (admins see every report);
    /// preliminary and signed reports are for every reader.
    pub fn readable_by(&self, user: &str, admin: bool) -> bool {
        self.status != Status::Draft || self.author == user || admin
    }
}

/// What a save writes: plain text, or sections (rendered as the text).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub sections: Option<Vec<Section>>,
    #[serde(default)]
    pub template: Option<String>,
}

impl Content {
    pub fn text(t: &str) -> Self {
        Content { text: Some(t.to_owned()), ..Default::default() }
    }

    /// The text and sections to store.
    fn resolve(&self) -> Result<(String, Vec<Section>), ReportError> {
        let (text, sections) = match (&self.sections, &self.text) {
            (Some(secs), _) => {
                if secs.len() > 32 || secs.iter().any(|s| s.name.trim().is_empty() || s.name.len() > 64) {
                    return Err(ReportError::BadSections);
                }
                (render(secs), secs.clone())
            }
            (None, Some(t)) => (t.clone(), Vec::new()),
            (None, None) => (String::new(), Vec::new()),
        };
        check(&text)?;
        Ok((text, sections))
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
    #[error("report sections: at most 32, each named in 1 to 64 characters")]
    BadSections,
    #[error("report {0} is an addendum: addenda go straight from draft to signed")]
    AddendumPreliminary(u64),
}

pub const MAX_TEXT: usize = 256 << 10;

pub struct Reports {
    db: sled::Db,
    by_id: sled::Tree,
    /// study UID, NUL, id (big endian): the reports of one study in order.
    by_study: sled::Tree,
    /// id, version (both big endian) → `Version`.
    versions: sled::Tree,
    /// Held from the check to the write of an edit or a signature, so that
    /// an edit racing a signature cannot turn a signed report back.
    edit: std::sync::Mutex<()>,
}

impl Reports {
    pub fn new(db: &sled::Db) -> Result<Self, ReportError> {
        Ok(Reports {
            db: db.clone(),
            by_id: db.open_tree("reports")?,
            by_study: db.open_tree("reports_by_study")?,
            versions: db.open_tree("report_versions")?,
            edit: std::sync::Mutex::new(()),
        })
    }

    /// A new draft on a study: refused when the study has its final report
    /// (one final per study; what follows is an addendum).
    pub fn create(&self, study_uid: &str, site: &str, author: &str, content: &Content) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_reported(study_uid)? {
            return Err(ReportError::HasFinal(study_uid.to_owned()));
        }
        self.insert(study_uid, site, author, content, None)
    }

    /// A draft addendum to final report `of`.
    pub fn addendum(&self, of: u64, author: &str, content: &Content) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.get(of)?.ok_or(ReportError::NotFound(of))?;
        if base.status != Status::Final {
            return Err(ReportError::NotFinal(of));
        }
        self.insert(&base.study_uid, &base.site, author, content, Some(of))
    }

    fn insert(&self, study_uid: &str, site: &str, author: &str, content: &Content, addendum_of: Option<u64>) -> Result<Report, ReportError> {
        let (text, sections) = content.resolve()?;
        let now = now_ms();
        let id = self.db.generate_id()? + 1;
        let r = Report {
            id,
            study_uid: study_uid.to_owned(),
            site: site.to_owned(),
            author: author.to_owned(),
            status: Status::Draft,
            text,
            created_ms: now,
            updated_ms: now,
            signed_ms: None,
            addendum_of,
            version: 0,
            sections,
            template: content.template.clone(),
            preliminary_ms: None,
        };
        let mut key = study_uid.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&id.to_be_bytes());
        self.by_study.insert(key, &[])?;
        self.save(r)
    }

    pub fn get(&self, id: u64) -> Result<Option<Report>, ReportError> {
        Ok(match self.by_id.get(id.to_be_bytes())? {
            Some(v) => Some(decode(&v)?),
            None => None,
        })
    }

    /// Every saved state of a report, oldest first.
    pub fn versions(&self, id: u64) -> Result<Vec<Version>, ReportError> {
        self.versions.scan_prefix(id.to_be_bytes()).map(|kv| Ok(postcard::from_bytes(&kv?.1)?)).collect()
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

    /// Writes the report as its next version, and that version beside it.
    fn save(&self, mut r: Report) -> Result<Report, ReportError> {
        r.version += 1;
        let v = Version { version: r.version, status: r.status, text: r.text.clone(), sections: r.sections.clone(), saved_ms: r.updated_ms };
        let mut vkey = r.id.to_be_bytes().to_vec();
        vkey.extend_from_slice(&r.version.to_be_bytes());
        self.versions.insert(vkey, postcard::to_stdvec(&v)?)?;
        self.by_id.insert(r.id.to_be_bytes(), postcard::to_stdvec(&r)?)?;
        self.db.flush()?;
        Ok(r)
    }

    /// The author's edit (an autosave) of a draft or preliminary report.
    pub fn update(&self, id: u64, author: &str, content: &Content) -> Result<Report, ReportError> {
        let (text, sections) = content.resolve()?;
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = self.editable(id, author)?;
        r.text = text;
        r.sections = sections;
        if content.template.is_some() {
            r.template = content.template.clone();
        }
        r.updated_ms = now_ms();
        self.save(r)
    }

    /// Issues a draft as preliminary: readable by everyone, still to be
    /// signed. Addenda have no preliminary stage.
    pub fn preliminary(&self, id: u64, author: &str) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = self.editable(id, author)?;
        if r.addendum_of.is_some() {
            return Err(ReportError::AddendumPreliminary(id));
        }
        let now = now_ms();
        r.status = Status::Preliminary;
        r.updated_ms = now;
        r.preliminary_ms.get_or_insert(now);
        let r = self.save(r)?;
        tracing::info!(report = id, study = %r.study_uid, author, "report issued as preliminary");
        Ok(r)
    }

    pub fn sign(&self, id: u64, author: &str) -> Result<Report, ReportError> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = self.editable(id, author)?;
        let now = now_ms();
        r.status = Status::Final;
        r.updated_ms = now;
        r.signed_ms = Some(now);
        let r = self.save(r)?;
        tracing::info!(report = id, study = %r.study_uid, author, "report signed");
        Ok(r)
    }

    /// Every final report (addenda included), for turnaround figures.
    pub fn finals(&self) -> Result<Vec<Report>, ReportError> {
        let mut out = Vec::new();
        for kv in self.by_id.iter() {
            let r = decode(&kv?.1)?;
            if r.status == Status::Final {
                out.push(r);
            }
        }
        Ok(out)
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
    fn sections_render_as_the_text() {
        let secs = vec![
            Section { name: "Clinical details".into(), text: "Fall.".into() },
            Section { name: "Technique".into(), text: "".into() },
            Section { name: "Conclusion".into(), text: " Normal. ".into() },
        ];
        let c = Content { sections: Some(secs.clone()), ..Default::default() };
        assert_eq!(c.resolve().unwrap(), ("Clinical details:\nFall.\n\nConclusion:\nNormal.".to_owned(), secs));
        let empty = Content { sections: Some(vec![Section { name: "Findings".into(), text: " ".into() }]), ..Default::default() };
        assert!(matches!(empty.resolve(), Err(ReportError::Empty)));
        let unnamed = Content { sections: Some(vec![Section { name: "".into(), text: "x".into() }]), ..Default::default() };
        assert!(matches!(unnamed.resolve(), Err(ReportError::BadSections)));
    }

    #[test]
    fn reports_stored_before_versions_still_read() {
        #[derive(Serialize)]
        struct Old<'a>(u64, &'a str, &'a str, &'a str, Status, &'a str, u64, u64, Option<u64>, Option<u64>);
        let raw = postcard::to_stdvec(&Old(8, "1.2.3", "RBD", "ann", Status::Final, "Addendum.", 1, 2, Some(2), Some(7))).unwrap();
        let r = decode(&raw).unwrap();
        assert_eq!((r.id, r.addendum_of, r.version, r.sections.len()), (8, Some(7), 1, 0));
    }

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
        let t = Content::text;
        let r = reports.create("1.2.3", "RBD", "ann", &t("No acute abnormality.")).unwrap();
        assert!(matches!(reports.update(r.id, "bob", &t("x")), Err(ReportError::NotAuthor(_))));
        reports.update(r.id, "ann", &t("No acute intracranial abnormality.")).unwrap();
        let pre = reports.preliminary(r.id, "ann").unwrap();
        assert!(pre.readable_by("bob", false));
        reports.update(r.id, "ann", &t("No acute intracranial haemorrhage.")).unwrap();
        assert!(!reports.is_reported("1.2.3").unwrap());
        let signed = reports.sign(r.id, "ann").unwrap();
        assert_eq!(signed.status, Status::Final);
        assert!(matches!(reports.update(r.id, "ann", &t("changed")), Err(ReportError::Final(_))));
        let versions = reports.versions(r.id).unwrap();
        let states: Vec<_> = versions.iter().map(|v| (v.version, v.status)).collect();
        assert_eq!(states, [(1, Status::Draft), (2, Status::Draft), (3, Status::Preliminary), (4, Status::Preliminary), (5, Status::Final)]);
        assert_eq!(versions[0].text, "No acute abnormality.");
        assert_eq!(signed.text, "No acute intracranial haemorrhage.");
        assert!(reports.is_reported("1.2.3").unwrap());
        assert!(!reports.is_reported("1.2.30").unwrap());
        assert_eq!(reports.of_study("1.2.3").unwrap().len(), 1);
        assert!(matches!(reports.create("1.2.3", "RBD", "bob", &t("A second opinion.")), Err(ReportError::HasFinal(_))));
        let draft = reports.addendum(r.id, "ann", &t("Addendum in progress.")).unwrap();
        assert_eq!(draft.addendum_of, Some(r.id));
        assert!(matches!(reports.addendum(draft.id, "ann", &t("x")), Err(ReportError::NotFinal(_))));
        assert!(matches!(reports.preliminary(draft.id, "ann"), Err(ReportError::AddendumPreliminary(_))));
        assert!(draft.readable_by("ann", false) && draft.readable_by("root", true) && !draft.readable_by("bob", false));
        assert!(signed.readable_by("bob", false));
    }
}
