//! Reading untrusted DICOM: a bounded scan of the byte stream (`scan`) and the
//! extraction of what the index records (`extract`). Nothing here touches
//! storage or the index.

pub mod extract;
pub mod scan;
pub mod text;

/// Why a byte stream was refused. Each message names the fault plainly, for
/// import reports, C-STORE failure comments and STOW-RS answers.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("not a DICOM Part 10 file (no 'DICM' prefix at byte 128)")]
    NotPart10,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("invalid {0}")]
    BadUid(&'static str),
    #[error("truncated at byte {offset}: needs {needed} bytes, {available} present")]
    Truncated { offset: usize, needed: usize, available: usize },
    #[error("element ({:04X},{:04X}) declares {declared} bytes but only {available} remain", tag >> 16, tag & 0xFFFF)]
    LengthBeyondData { tag: u32, declared: u64, available: u64 },
    #[error("malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("deflated data set: {0}")]
    Inflate(String),
}
