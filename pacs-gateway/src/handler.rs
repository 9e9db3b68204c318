//! What the gateway asks of the application. The application (radhub)
//! implements `Handler`; the gateway never sees how instances are stored
//! or indexed. Methods may block (disk, index): the gateway calls them on
//! tokio's blocking pool.

use dicom_object::InMemDicomObject;

use crate::status::Status;

/// A C-STORE, with the data set wrapped as a Part 10 file exactly as
/// received (the gateway adds only the file meta group).
#[derive(Debug)]
pub struct StoreRequest {
    pub calling_ae: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub file: Vec<u8>,
}

/// A C-STORE as its request announced it, before any of its data set.
#[derive(Clone, Debug)]
pub struct StoreHeader {
    pub calling_ae: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
}

/// Where a C-STORE's Part 10 file goes as its bytes arrive: the file meta
/// group, then each P-DATA fragment of the data set, so that no instance
/// is ever held whole. Called on the blocking pool. Dropped without
/// `finish` when the data set does not arrive whole (the association
/// ended, the size limit was passed): then nothing may be stored.
pub trait IncomingFile: Send {
    /// The next bytes. A failure (a full disk) is kept for `finish` to
    /// answer; the rest of the data set still arrives and is ignored.
    fn write(&mut self, bytes: &[u8]);
    /// Every byte is here: stores the instance; returns once it is durable.
    fn finish(self: Box<Self>) -> Answer;
}

/// The answer to a C-STORE: a status from PS3.4 B.2.3 and an optional
/// Error Comment (at most 64 characters are sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    pub comment: Option<String>,
}

impl Answer {
    pub fn success() -> Self {
        Answer { status: Status::SUCCESS, comment: None }
    }

    pub fn failure(status: Status, comment: impl Into<String>) -> Self {
        Answer { status, comment: Some(comment.into()) }
    }

    /// A warning (B0xx): done, but not as asked; the comment says how.
    pub fn warning(status: Status, comment: impl Into<String>) -> Self {
        Answer { status, comment: Some(comment.into()) }
    }
}

/// The query/retrieve information model of a C-FIND, C-MOVE or C-GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    PatientRoot,
    StudyRoot,
}

/// Query/Retrieve Level (0008,0052).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// A C-FIND, C-MOVE or C-GET identifier with its model and level.
#[derive(Debug)]
pub struct Query {
    pub calling_ae: String,
    pub model: Model,
    pub level: Level,
    pub identifier: InMemDicomObject,
}

/// One instance selected for C-MOVE or C-GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRef {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
}

/// Where a C-FIND's matches go: to the gateway, which sends them on as the
/// peer takes them.
pub struct Matches {
    /// Each match, and whether one or more of its optional keys were not
    /// supported for matching or return (sent with FF01, else FF00).
    pub(crate) tx: tokio::sync::mpsc::Sender<(InMemDicomObject, bool)>,
}

impl Matches {
    /// Hands one match over, waiting while the gateway is a few ahead;
    /// false once it wants no more.
    pub fn send(&self, m: InMemDicomObject) -> bool {
        self.tx.blocking_send((m, false)).is_ok()
    }

    /// Hands over a match of an identifier holding optional keys the
    /// application does not support: its pending response is FF01 (PS3.4
    /// C.4.1.1.4, Table C.4-1), those keys returned empty.
    pub fn send_with_unsupported_keys(&self, m: InMemDicomObject) -> bool {
        self.tx.blocking_send((m, true)).is_ok()
    }

    /// Whether the gateway still wants matches. A search asks as it goes,
    /// so that an abandoned query stops even while nothing matches.
    pub fn wanted(&self) -> bool {
        !self.tx.is_closed()
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Stores one instance; returns only once it is durable.
    fn store(&self, req: StoreRequest) -> Answer;

    /// Where the C-STORE `header` announces is written as it arrives.
    /// `None` (the default): the gateway holds the data set, up to
    /// `Config::max_data_set_bytes`, and calls `store` with it whole.
    fn receive(&self, _header: &StoreHeader) -> Option<Box<dyn IncomingFile>> {
        None
    }

    /// Hands each match of a C-FIND to `matches` as it is found, each an
    /// identifier holding the requested keys (and Query/Retrieve Level), in
    /// the order to send them; stops when the gateway wants no more (the
    /// peer cancelled or went away, the match limit or deadline was
    /// reached). Runs on the blocking pool while the gateway sends.
    fn find(&self, query: &Query, matches: &Matches) -> Result<(), Answer>;

    /// The instances a C-MOVE or C-GET identifier selects. The gateway has
    /// checked its unique keys (PS3.4 C.4.2.2.1): present, no wildcards,
    /// a single value above the retrieve level.
    fn select(&self, query: &Query) -> Result<Vec<InstanceRef>, Answer>;

    /// One selected instance as a Part 10 file.
    fn open(&self, instance: &InstanceRef) -> Result<Vec<u8>, String>;

    /// The instance re-encoded as a Part 10 file in `transfer_syntax`
    /// (uncompressed), for a peer that does not accept the stored one.
    /// Needed only for compressed pixel data; the gateway re-encodes the rest.
    fn transcode(&self, _part10: &[u8], transfer_syntax: &str) -> Result<Vec<u8>, String> {
        Err(format!("cannot decode pixel data for {transfer_syntax}"))
    }

    /// Storage commitment for `calling_ae`: for each (SOP Class UID, SOP
    /// Instance UID), `None` if what that AE sent is held durably, else the
    /// Failure Reason (PS3.4 J.3.3.1: 0110 processing failure, 0112 no such
    /// object instance, 0119 class/instance conflict).
    fn committed(&self, calling_ae: &str, refs: &[(String, String)]) -> Vec<Option<u16>>;

    /// A storage commitment report `calling_ae` did not take on its
    /// association (released first, or answered it with a failure): keep it
    /// durably and send it on a new association (`scu::report_commitment`).
    fn commitment_undelivered(&self, calling_ae: &str, report: crate::commitment::Report) {
        tracing::warn!(%calling_ae, transaction = %report.transaction_uid, "storage commitment report dropped: the application keeps none");
    }

    /// Callers (by network) and move destinations the application
    /// configures, added to the gateway's `Config` when it is made.
    fn peers(&self) -> crate::server::Peers {
        crate::server::Peers::default()
    }
}
