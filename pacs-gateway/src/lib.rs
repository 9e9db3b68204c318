//! pacs-gateway: radhub's DICOM protocol crate, an async DIMSE layer on
//! dicom-ul.
//!
//! - `server`: the listener (limits, access control, shutdown) and `Config`
//! - `association`: one association's receive loop and dispatch
//! - `message`, `command`: DIMSE messages from P-DATA fragments, command sets
//! - `store`, `find`, `retrieve`: the C-STORE, C-FIND, C-MOVE/C-GET SCPs
//!   (C-ECHO is answered in `association`)
//! - `commitment`: the Storage Commitment Push Model SCP
//! - `scu`: the service user side (echo, store, find, move, get), whose
//!   C-STORE the C-MOVE and C-GET SCPs use for their sub-operations
//! - `identifier`: query identifiers, validated before parsing
//! - `status`, `sop_classes`: PS3.7 statuses, the SOP classes served
//!
//! It knows nothing of sled, HTTP or rendering and never depends on the
//! `radhub` crate: the application implements `handler::Handler`.

mod association;
pub mod command;
pub mod commitment;
mod find;
pub mod handler;
pub mod identifier;
pub mod message;
mod retrieve;
pub mod scu;
pub mod server;
pub mod sop_classes;
pub mod status;
pub mod store;

pub use handler::{Answer, Handler, IncomingFile, InstanceRef, Level, Matches, Model, Query, StoreHeader, StoreRequest};
pub use server::{Caller, Config, Destination, Gateway, KnownAe, Network, Peers, ServerTls};
