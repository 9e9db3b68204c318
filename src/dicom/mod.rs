//! Reading untrusted DICOM: a bounded scan of the byte stream (`scan`) and the
//! extraction of what the index records (`extract`); a stored instance's
//! patient identity rewritten (`coerce`). Nothing here touches storage or
//! the index.

pub mod coerce;
pub mod extract;
pub mod json;
pub mod text;

pub use dicom_scan::{self as scan, ScanError};
