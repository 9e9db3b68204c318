//! Deterministic synthetic multi-site DICOM data for three Dorset NHS trusts.
//!
//! Everything derives from [`GenOptions`]: the same options give byte-identical
//! files whatever the thread scheduling, because every file draws from its own
//! random stream keyed by its indices rather than from a shared generator.

pub mod nhs;
mod people;
mod phantom;
mod plan;
mod projection;
mod raster;
mod sites;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;

pub use plan::Plan;

/// Each simulated modality's AE title and the site it stores for.
pub fn modality_sites() -> std::collections::HashMap<String, String> {
    sites::PROFILES.iter().zip(CODES).flat_map(|(p, code)| [p.ct.ae, p.mr.ae, p.xr.ae, p.us.ae].map(|ae| (ae.to_owned(), code.to_owned()))).collect()
}
pub use sites::CODES;

/// What to generate. `Default` gives a small demo set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    pub seed: u64,
    /// Distinct people; each is seen at one to three sites.
    pub patients: usize,
    /// Average studies per patient per site visit (at least 1 is used).
    pub studies_per_patient: usize,
    /// Cap on CT/MR images per series (at least 1); coverage is kept by
    /// widening the slice spacing.
    pub max_slices: usize,
    /// CT rows = columns (16..=4096, made even). The other modalities scale
    /// with `ct_size / 512`: MR 256², CR/DX 1024×1280, US 640×480 at 512.
    pub ct_size: u16,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { seed: 2026, patients: 12, studies_per_patient: 2, max_slices: 24, ct_size: 512 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TestdataError {
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the file meta group for {}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::meta::Error>,
    },
    #[error("cannot encode DICOM for {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::WriteError>,
    },
}

/// splitmix64: tiny, fast, and good enough for synthetic data; no `rand` needed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(mix(seed ^ 0x7261_6468_7562)) // "radhub"
    }

    /// An independent stream for one entity (study, image, ...), so that
    /// parallel writers never share state and results do not depend on order.
    pub(crate) fn derive(seed: u64, path: &[u64]) -> Self {
        let mut h = mix(seed ^ 0x7465_7374_6461_7461); // "testdata"
        for &p in path {
            h = mix(h ^ mix(p.wrapping_add(GOLDEN)));
        }
        Rng(h)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), via the multiply-high trick.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Fast approximately-Gaussian noise: two samples per 64-bit draw, each the
/// sum of four uniform bytes (σ ≈ 147.8 before scaling), scaled in fixed point.
pub(crate) struct Noise {
    rng: Rng,
    scale: i32, // sigma / 147.8 in 1/256 units
    spare: Option<i32>,
}

impl Noise {
    pub(crate) fn new(rng: Rng, sigma: f32) -> Self {
        Noise { rng, scale: (sigma / 147.8 * 256.0).round() as i32, spare: None }
    }

    #[inline]
    pub(crate) fn sample(&mut self) -> i32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let r = self.rng.next_u64();
        let sum = |x: u64| -> i32 { ((x & 0xFF) + ((x >> 8) & 0xFF) + ((x >> 16) & 0xFF) + ((x >> 24) & 0xFF)) as i32 - 510 };
        self.spare = Some((sum(r >> 32) * self.scale) >> 8);
        (sum(r) * self.scale) >> 8
    }
}

/// A `2.25.` UID (UUID-derived integer form, PS3.5 B.2): always ≤ 44 chars,
/// digits and dots, no leading zeros. The key mixes all options, so plans with
/// different options never collide even with the same seed.
pub(crate) fn uid(key: u64, parts: &[u64]) -> String {
    let mut r = Rng::derive(key, parts);
    let mut v = (u128::from(r.next_u64()) << 64) | u128::from(r.next_u64());
    // Make it a well-formed version-4 UUID, as a real generator would.
    v = (v & !(0xF << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    format!("2.25.{v}")
}

pub(crate) use crate::dates::{civil_from_days, da, days_from_civil};

/// DICOM TM (`HHMMSS`) from seconds since midnight (wrapping at 24 h).
pub(crate) fn tm(secs: u32) -> String {
    let s = secs % 86_400;
    format!("{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// DICOM DS: plain decimal (≤ 6 places, ≤ 16 chars), no exponent, no "-0".
pub(crate) fn ds(v: f64) -> String {
    let mut out = String::from("0");
    for places in (0..=6).rev() {
        let s = format!("{v:.places$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
        if s.len() <= 16 {
            out = if s == "-0" { "0".to_owned() } else { s.to_owned() };
            break;
        }
    }
    out
}
