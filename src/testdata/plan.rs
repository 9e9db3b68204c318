//! The deterministic list of studies, series and instances to write.

use super::people::{self, Person};
use super::sites::{self, PROFILES};
use super::{civil_from_days, days_from_civil, mix, GenOptions, Rng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modality {
    Ct,
    Mr,
    Cr,
    Dx,
    Us,
}

impl Modality {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mr => "MR",
            Modality::Cr => "CR",
            Modality::Dx => "DX",
            Modality::Us => "US",
        }
    }

    pub(crate) fn sop_class(self) -> &'static str {
        match self {
            Modality::Ct => "1.2.840.10008.5.1.4.1.1.2",
            Modality::Mr => "1.2.840.10008.5.1.4.1.1.4",
            Modality::Cr => "1.2.840.10008.5.1.4.1.1.1",
            Modality::Dx => "1.2.840.10008.5.1.4.1.1.1.1",
            Modality::Us => "1.2.840.10008.5.1.4.1.1.6.1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anatomy {
    Head,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MrSeq {
    T1,
    T2,
    Flair,
    T1Post,
}

/// Axial CT/MR geometry. Anatomy is modelled in normalised z (+1 = superior
/// end of the head or the lung apices), `unit_mm` millimetres per unit.
#[derive(Debug, Clone)]
pub(crate) struct Tomo {
    pub anatomy: Anatomy,
    pub z_top: f64,
    pub z_bottom: f64,
    pub unit_mm: f64,
    pub thickness: f64,
    pub spacing: f64,
    pub fov_mm: f64,
    /// (center, width) pairs.
    pub windows: &'static [(f64, f64)],
    pub kernel: &'static str,
}

impl Tomo {
    /// Normalised z and patient z (mm) of slice `i` (0 = most superior).
    pub(crate) fn slice_z(&self, i: u32) -> (f64, f64) {
        let z_mm = self.z_top * self.unit_mm - self.spacing * (f64::from(i) + 0.5);
        (z_mm / self.unit_mm, z_mm)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum SeriesKind {
    Ct(Tomo),
    Mr(Tomo, MrSeq),
    Xr { lateral: bool },
    Us { renal: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct SeriesPlan {
    pub number: u32,
    pub description: &'static str,
    pub kind: SeriesKind,
    pub instances: u32,
    pub rows: u16,
    pub cols: u16,
    /// Seconds after the study start.
    pub offset_s: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct StudyPlan {
    pub site: usize,
    pub person: usize,
    /// Chronological index within the site; also the directory name.
    pub index: usize,
    pub modality: Modality,
    pub description: &'static str,
    pub body_part: &'static str,
    pub contrast: bool,
    pub date: i64,
    pub time_s: u32,
    pub accession: String,
    pub study_id: String,
    pub referrer: &'static str,
    /// Seed for per-study anatomical variation (size, lesions, vessels...).
    pub variant: u64,
    pub series: Vec<SeriesPlan>,
}

/// Everything to generate, fully determined by the options.
#[derive(Debug)]
pub struct Plan {
    pub(crate) key: u64,
    pub(crate) people: Vec<Person>,
    pub(crate) studies: Vec<StudyPlan>,
}

/// Scales a nominal 512-based size, keeping it even and at least 16.
fn scaled(nominal: u32, ct_size: u16) -> u16 {
    let v = (u64::from(nominal) * u64::from(ct_size) / 512).clamp(16, 4096);
    (v & !1) as u16
}

fn tomo(
    anatomy: Anatomy,
    (z_top, z_bottom): (f64, f64),
    thickness: f64,
    nominal_spacing: f64,
    fov_mm: f64,
    windows: &'static [(f64, f64)],
    kernel: &'static str,
) -> Tomo {
    let unit_mm = if anatomy == Anatomy::Head { 90.0 } else { 330.0 };
    let spacing = nominal_spacing;
    Tomo { anatomy, z_top, z_bottom, unit_mm, thickness, spacing, fov_mm, windows, kernel }
}

/// Caps the slice count; coverage is kept by spreading slices further apart.
fn cap(mut t: Tomo, max_slices: usize) -> (Tomo, u32) {
    let coverage = (t.z_top - t.z_bottom) * t.unit_mm;
    let realistic = (coverage / t.spacing).round().max(1.0) as usize;
    let n = realistic.min(max_slices.max(1));
    t.spacing = t.spacing.max(coverage / n as f64);
    (t, n as u32)
}

const BRAIN_W: &[(f64, f64)] = &[(40.0, 80.0)];
const BONE_W: &[(f64, f64)] = &[(600.0, 2800.0)];
const SOFT_W: &[(f64, f64)] = &[(40.0, 400.0), (-600.0, 1500.0)];
const LUNG_W: &[(f64, f64)] = &[(-600.0, 1500.0)];

struct Draft {
    modality: Modality,
    description: &'static str,
    body_part: &'static str,
    contrast: bool,
    series: Vec<SeriesPlan>,
}

fn series(number: u32, description: &'static str, kind: SeriesKind, n: u32, rows: u16, cols: u16) -> SeriesPlan {
    SeriesPlan { number, description, kind, instances: n, rows, cols, offset_s: 0 }
}

fn draft_study(rng: &mut Rng, site: usize, opts: &GenOptions) -> Draft {
    let ms = opts.max_slices;
    let ct = opts.ct_size.clamp(16, 4096) & !1;
    let mr = scaled(256, opts.ct_size);
    let roll = rng.unit();
    let (modality, description, body_part, contrast, mut list) = if roll < 0.30 {
        const HEAD: (f64, f64) = (1.0, -0.8);
        const CHEST: (f64, f64) = (1.0, 0.05);
        let mut list = Vec::new();
        let mut add = |d, (t, n): (Tomo, u32)| {
            let number = list.len() as u32 + 2; // series 1 is the scout, not generated
            list.push(series(number, d, SeriesKind::Ct(t), n, ct, ct));
        };
        let head = Anatomy::Head;
        let body = Anatomy::Body;
        let p = rng.unit();
        let (desc, part, contrast) = if p < 0.4 {
            add("Axial 5mm Brain", cap(tomo(head, HEAD, 5.0, 5.0, 240.0, BRAIN_W, "STANDARD"), ms));
            if rng.chance(0.6) {
                add("Axial 0.625mm Bone", cap(tomo(head, HEAD, 0.625, 0.625, 240.0, BONE_W, "BONE"), ms));
            }
            if rng.chance(0.4) {
                add("Axial 2.5mm Brain", cap(tomo(head, HEAD, 2.5, 2.5, 240.0, BRAIN_W, "STANDARD"), ms));
            }
            ("CT HEAD WITHOUT CONTRAST", "HEAD", false)
        } else if p < 0.6 {
            add("Axial 2.5mm Soft Tissue", cap(tomo(body, (1.0, -1.0), 2.5, 2.5, 400.0, SOFT_W, "STANDARD"), ms));
            add("Axial 1.25mm Lung", cap(tomo(body, CHEST, 1.25, 1.25, 400.0, LUNG_W, "LUNG"), ms));
            ("CT CHEST ABDOMEN PELVIS WITH CONTRAST", "CHESTABDPELVIS", true)
        } else if p < 0.8 {
            let contrast = rng.chance(0.6);
            add("Axial 2.5mm Mediastinum", cap(tomo(body, CHEST, 2.5, 2.5, 380.0, SOFT_W, "STANDARD"), ms));
            add("Axial 1mm Lung", cap(tomo(body, CHEST, 1.0, 1.0, 380.0, LUNG_W, "LUNG"), ms));
            let desc = if contrast { "CT CHEST WITH CONTRAST" } else { "CT CHEST HIGH RESOLUTION" };
            (desc, "CHEST", contrast)
        } else {
            add("Axial 2.5mm Soft Tissue", cap(tomo(body, (0.3, -1.0), 2.5, 2.5, 400.0, SOFT_W, "STANDARD"), ms));
            if rng.chance(0.5) {
                add("Axial 5mm Soft Tissue", cap(tomo(body, (0.3, -1.0), 5.0, 5.0, 400.0, SOFT_W, "STANDARD"), ms));
            }
            ("CT ABDOMEN PELVIS WITH CONTRAST", "ABDOMEN", true)
        };
        (Modality::Ct, desc, part, contrast, list)
    } else if roll < 0.50 {
        let mut list = Vec::new();
        let head = rng.chance(0.6);
        let post = rng.chance(0.35);
        let (anatomy, z, fov, desc, part) =
            if head { (Anatomy::Head, (1.0, -0.8), 230.0, "MR HEAD", "HEAD") } else { (Anatomy::Body, (0.35, -0.35), 380.0, "MR LIVER", "ABDOMEN") };
        let seqs: &[(MrSeq, &'static str)] = if head {
            &[(MrSeq::T1, "AX T1 SE"), (MrSeq::T2, "AX T2 TSE"), (MrSeq::Flair, "AX T2 FLAIR")]
        } else {
            &[(MrSeq::T2, "AX T2 HASTE"), (MrSeq::T1, "AX T1 VIBE PRE")]
        };
        let post_desc = if head { "AX T1 SE POST GAD" } else { "AX T1 VIBE POST" };
        let (thick, gap) = if head { (5.0, 1.0) } else { (6.0, 1.0) };
        let mut all: Vec<(MrSeq, &'static str)> = seqs.to_vec();
        if post {
            all.push((MrSeq::T1Post, post_desc));
        }
        for (k, (seq, d)) in all.into_iter().enumerate() {
            let (t, n) = cap(tomo(anatomy, z, thick, thick + gap, fov, &[], ""), ms);
            list.push(series(k as u32 + 1, d, SeriesKind::Mr(t, seq), n, mr, mr));
        }
        let desc = match (head, post) {
            (true, true) => "MR HEAD WITH CONTRAST",
            (false, true) => "MR LIVER WITH CONTRAST",
            _ => desc,
        };
        (Modality::Mr, desc, part, post, list)
    } else if roll < 0.85 {
        let modality = if PROFILES[site].xr_is_dx { Modality::Dx } else { Modality::Cr };
        let (rows, cols) = (scaled(1280, opts.ct_size), scaled(1024, opts.ct_size));
        let mut list = vec![series(1, "CHEST PA", SeriesKind::Xr { lateral: false }, 1, rows, cols)];
        if rng.chance(0.4) {
            list.push(series(2, "CHEST LAT", SeriesKind::Xr { lateral: true }, 1, rows, cols));
        }
        (modality, "XR CHEST", "CHEST", false, list)
    } else {
        let renal = rng.chance(0.35);
        let n = rng.range(3, 8) as u32;
        let (rows, cols) = (scaled(480, opts.ct_size), scaled(640, opts.ct_size));
        let (desc, sdesc) = if renal { ("US RENAL TRACT", "Renal") } else { ("US ABDOMEN", "Abdomen") };
        let list = vec![series(1, sdesc, SeriesKind::Us { renal }, n, rows, cols)];
        (Modality::Us, desc, "ABDOMEN", false, list)
    };
    let mut offset = 0;
    for s in &mut list {
        s.offset_s = offset;
        offset += rng.range(40, 420) as u32;
    }
    Draft { modality, description, body_part, contrast, series: list }
}

impl Plan {
    pub fn new(opts: &GenOptions) -> Plan {
        let key = [opts.patients as u64, opts.studies_per_patient as u64, opts.max_slices as u64, u64::from(opts.ct_size)]
            .iter()
            .fold(mix(opts.seed), |h, &x| mix(h ^ x.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let people = people::generate(opts.seed, opts.patients);
        let mut rng = Rng::derive(opts.seed, &[2]);
        let first_day = days_from_civil(2021, 1, 1);
        let last_day = days_from_civil(2025, 12, 31);
        let spp = opts.studies_per_patient.max(1) as u64;

        let mut studies = Vec::new();
        for (pi, person) in people.iter().enumerate() {
            for (site, _) in &person.sites {
                // Uniform on 1..=2·spp-1 has mean spp.
                for _ in 0..rng.range(1, 2 * spp - 1) {
                    let d = draft_study(&mut rng, *site, opts);
                    let out_of_hours = d.modality == Modality::Ct && rng.chance(0.2);
                    let time_s = if out_of_hours { rng.below(86_400 - 3600) } else { rng.range(8 * 3600, 19 * 3600) };
                    let referrers = PROFILES[*site].referrers;
                    studies.push(StudyPlan {
                        site: *site,
                        person: pi,
                        index: 0,
                        modality: d.modality,
                        description: d.description,
                        body_part: d.body_part,
                        contrast: d.contrast,
                        date: rng.range(0, (last_day - first_day) as u64) as i64 + first_day,
                        time_s: time_s as u32,
                        accession: String::new(),
                        study_id: String::new(),
                        referrer: referrers[rng.below(referrers.len() as u64) as usize],
                        variant: rng.next_u64(),
                        series: d.series,
                    });
                }
            }
        }

        // Number studies per site in date order, as a RIS would.
        studies.sort_by_key(|s| (s.site, s.date, s.time_s, s.person));
        for site in 0..3 {
            let mut seq = rng.range(10_000, 400_000);
            let mut study_id = rng.range(1000, 8000);
            for (i, s) in studies.iter_mut().filter(|s| s.site == site).enumerate() {
                seq += rng.range(1, 60);
                study_id += rng.range(1, 5);
                s.index = i;
                s.accession = sites::accession(site, civil_from_days(s.date).0, seq);
                s.study_id = study_id.to_string();
            }
        }
        Plan { key, people, studies }
    }

    pub fn total_instances(&self) -> u64 {
        self.studies.iter().flat_map(|s| &s.series).map(|s| u64::from(s.instances)).sum()
    }

    pub fn total_studies(&self) -> u64 {
        self.studies.len() as u64
    }

    /// Distinct people.
    pub fn patients(&self) -> usize {
        self.people.len()
    }
}
