//! radhub: a cross-site radiology imaging and reporting hub.
//!
//! The application crate. Layout (see ARCHITECTURE.md for the whole map):
//! - `dicom`: bounded scanning of untrusted DICOM and extraction of indexed attributes
//! - `store`: durable instance files behind the `ObjectStore` trait
//! - `index`: the patient/study/series/instance index behind the `Index` trait
//! - `ingest`: the one path into radhub, binding store and index
//! - `dimse`: the DICOM services' handler (pacs-gateway calls it)
//! - `verify`: store against index, and repair
//! - `group_commit`: one flush shared by concurrent writers
//! - `nhs`, `sites`: the NHS number and the trusts' sites (configuration)
//! - `federation`: the sites' PACS harvested into the index, studies fetched on demand
//! - `dates`: calendar days and DICOM dates
//! - `testdata`: deterministic synthetic multi-site studies
//! - `render`: decoding and the display pipeline; `thumbs`: the thumbnail cache
//! - `orders`, `worklist`, `claims`, `reports`, `findings`, `delivery`: reporting,
//!   from a RIS order to the signed report back at the owning trust
//! - `cli`: the `radhub` admin commands

pub mod app_db;
pub mod audit;
pub mod auth;
pub mod claims;
pub mod cli;
pub mod dates;
pub mod delivery;
pub mod dicom;
pub mod dimse;
pub mod federation;
pub mod findings;
pub mod group_commit;
pub mod http;
pub mod index;
pub mod ingest;
pub mod iocm;
pub mod nhs;
pub mod orders;
pub mod query;
pub mod render;
pub mod reports;
pub mod sites;
pub mod store;
pub mod templates;
pub mod testdata;
pub mod thumbs;
pub mod tls;
pub mod verify;
pub mod worklist;
