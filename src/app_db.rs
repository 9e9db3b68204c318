//! The hub's application database (`<data>/app`): users, sessions, tokens
//! and reports. Apart from the index, which holds only what DICOM says, so
//! that either can be rebuilt or moved to another backend on its own.

use std::path::Path;

pub fn open(data_dir: &Path) -> sled::Result<sled::Db> {
    sled::open(data_dir.join("app"))
}
