//! pacs-gateway: radhub's DICOM protocol crate.
//!
//! It will hold the async DIMSE layer (C-ECHO, C-STORE, C-FIND, C-MOVE,
//! C-GET, as SCP and SCU) on dicom-ul, and calls traits that the application
//! implements (store an instance, answer a query, open instances to send).
//! It knows nothing of sled, HTTP or rendering, and never depends on the
//! `radhub` crate. Today it holds the PS3.7 status codes every service uses.

pub mod status;
