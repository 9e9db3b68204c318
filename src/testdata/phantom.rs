//! Cross-sectional anatomy phantoms (head, chest/abdomen/pelvis) as tissue
//! label maps, in the spirit of Shepp–Logan: layered ellipses whose sizes vary
//! smoothly with z. Labels are then mapped to CT or MR values with noise.

use std::f32::consts::PI;

use super::plan::{Anatomy, MrSeq};
use super::raster::{bell, circle, ell, rot, Clip, Raster, Tissue, TISSUES};
use super::sites::CtStorage;
use super::{Noise, Rng};

use Tissue::*;

/// Per-study anatomical variation, so patients do not all look identical.
pub(crate) struct Variation {
    size: f32,
    fat: f32,
    /// (u, v, z, radius) in normalised coordinates.
    lesion: Option<[f32; 4]>,
    /// Lung vessels: offsets within the lung (-1..1) and radius factor.
    vessels: [[f32; 3]; 16],
    /// Bowel loops: u, v, radius, gas (>0.6 = gas-filled).
    bowel: [[f32; 4]; 8],
}

impl Variation {
    pub(crate) fn new(variant: u64, anatomy: Anatomy) -> Self {
        let mut r = Rng::new(variant);
        let mut f = |lo: f64, hi: f64| r.uniform(lo, hi) as f32;
        let size = f(0.9, 1.04);
        let fat = f(0.015, 0.085);
        let has_lesion = f(0.0, 1.0) < 0.3;
        let lesion = match anatomy {
            Anatomy::Head => [f(0.12, 0.3) * if f(0.0, 1.0) < 0.5 { -1.0 } else { 1.0 }, f(-0.3, 0.3), f(0.0, 0.6), f(0.04, 0.1)],
            Anatomy::Body => [f(-0.45, -0.25), f(-0.05, 0.15), f(-0.1, 0.15), f(0.03, 0.07)],
        };
        let vessels = std::array::from_fn(|_| [f(-0.8, 0.8), f(-0.8, 0.8), f(0.4, 1.0)]);
        let bowel = std::array::from_fn(|_| [f(-0.45, 0.45), f(-0.25, 0.1), f(0.035, 0.07), f(0.0, 1.0)]);
        Variation { size, fat, lesion: has_lesion.then_some(lesion), vessels, bowel }
    }
}

/// Paints the label map of an axial slice at normalised `z`.
pub(crate) fn slice(anatomy: Anatomy, r: &Raster, z: f32, v: &Variation, buf: &mut [u8]) {
    buf.fill(Air as u8);
    match anatomy {
        Anatomy::Head => head(r, z, v, buf),
        Anatomy::Body => body(r, z, v, buf),
    }
}

fn head(r: &Raster, z: f32, v: &Variation, buf: &mut [u8]) {
    let zc = (z + 0.1) / 1.12;
    if zc.abs() >= 1.0 {
        return;
    }
    let s = (1.0 - zc * zc).sqrt() * v.size;
    let (a, b, cy) = (0.62 * s, 0.78 * s, 0.02);
    if (-1.0..-0.45).contains(&z) {
        r.fill(buf, ell(0.0, cy - b - 0.02, 0.08, 0.1), Soft); // nose
    }
    r.fill(buf, ell(0.0, cy, a + 0.035, b + 0.035), Soft); // skin
    r.fill(buf, ell(0.0, cy, a + 0.025, b + 0.025), Fat); // scalp fat
    r.fill(buf, ell(0.0, cy, a, b), Bone);
    let t = 0.045 + 0.04 * (-z).max(0.0); // the skull thickens towards the base
    let (ia, ib) = (a - t, b - t);
    if ia < 0.03 || ib < 0.03 {
        return;
    }
    r.fill(buf, ell(0.0, cy, ia, ib), Csf);
    r.fill(buf, ell(0.0, cy, ia - 0.012, ib - 0.012), Grey);
    if z > -0.5 {
        r.fill(buf, ell(0.0, cy + 0.01, (ia - 0.08) * 0.9, (ib - 0.09) * 0.9), White);
    }
    if z > -0.3 {
        // Sulci: short radial CSF clefts just inside the cortex.
        for k in 0..14 {
            let th = 2.0 * PI * (k as f32 + 0.3 * (z * 7.0 + k as f32).sin()) / 14.0;
            let (st, ct) = th.sin_cos();
            r.fill(buf, rot(st * (ia - 0.04), cy - ct * (ib - 0.04), 0.035, 0.005, th - PI / 2.0), Csf);
        }
        // Falx, except where the corpus callosum crosses the midline.
        let reach = if z > 0.45 { 1.0 } else { 0.4 };
        r.fill(buf, ell(0.0, cy - ib * (1.0 - reach / 2.0), 0.005, ib * reach / 2.0), Soft);
        r.fill(buf, ell(0.0, cy + ib * (1.0 - reach / 2.0), 0.005, ib * reach / 2.0), Soft);
    }
    if (-0.15..0.55).contains(&z) {
        let w = bell((z - 0.2) / 0.35);
        for side in [-1.0, 1.0] {
            r.fill(buf, rot(side * 0.075, cy - 0.02, 0.06 + 0.17 * w, 0.02 + 0.035 * w, PI / 2.0 + side * 0.2), Csf);
        }
    }
    if (-0.35..-0.05).contains(&z) {
        r.fill(buf, ell(0.0, cy + 0.02, 0.012, 0.07), Csf); // third ventricle
    }
    if (-0.05..0.05).contains(&z) {
        r.fill(buf, circle(0.0, cy + 0.13, 0.012), Bone); // calcified pineal
    }
    if (-0.78..-0.35).contains(&z) {
        r.fill(buf, ell(0.0, cy + 0.12, 0.11, 0.1), White); // brainstem
        r.fill(buf, ell(0.0, cy + 0.26, 0.035, 0.025), Csf); // fourth ventricle
        for side in [-1.0, 1.0] {
            r.fill(buf, rot(side * 0.3, cy + 0.06, 0.22, 0.045, side * 0.7), Bone); // petrous ridge
            r.fill(buf, circle(side * 0.44, cy + 0.2, 0.045), Air); // mastoid air cells
        }
    }
    if (-0.85..-0.4).contains(&z) {
        let w = bell((z + 0.62) / 0.23).sqrt();
        for side in [-1.0, 1.0] {
            let (ou, ov) = (side * 0.24 * s, cy - b * 0.76);
            r.fill(buf, circle(ou, ov, 0.14 * w + 0.01), Bone);
            r.fill(buf, circle(ou, ov, 0.125 * w), Fat);
            r.fill(buf, circle(ou, ov - 0.03, 0.09 * w), Eye);
        }
        r.fill(buf, ell(0.0, cy - b * 0.74, 0.055 * w, 0.16 * w), Air); // nasal cavity
        r.fill(buf, ell(0.0, cy - b * 0.74, 0.006, 0.15 * w), Bone); // septum
    }
    if z < -0.7 {
        for side in [-1.0, 1.0] {
            r.fill(buf, ell(side * 0.2 * s, cy - b * 0.6, 0.14, 0.16), Bone);
            r.fill(buf, ell(side * 0.2 * s, cy - b * 0.6, 0.12, 0.14), Air); // maxillary sinus
        }
    }
    if let Some([lu, lv, lz, lr]) = v.lesion {
        let dz = z - lz;
        if dz.abs() < lr {
            let rr = (lr * lr - dz * dz).sqrt();
            r.fill(buf, ell(lu * s, cy + lv * s, rr, rr * 0.8), Lesion);
        }
    }
}

fn body(r: &Raster, z: f32, v: &Variation, buf: &mut [u8]) {
    r.fill_rect(buf, &Clip { u0: -0.95, u1: 0.95, v0: 0.66, v1: 0.7 }, Table);
    let cy = 0.08;
    let ba = v.size * (0.72 + 0.05 * bell((z - 0.5) / 0.6) + 0.05 * bell((z + 0.85) / 0.35));
    let bb = v.size * (0.46 + 0.03 * bell((z - 0.4) / 0.6)) + v.fat * 0.5;
    r.fill(buf, ell(0.0, cy, ba, bb), Fat);
    let (ma, mb) = (ba - v.fat, bb - v.fat * 0.8);
    r.fill(buf, ell(0.0, cy, ma, mb), Soft);
    let (ca, cb) = (ma - 0.05, mb - 0.05);
    let side2 = [-1.0f32, 1.0];

    // Thorax: lungs fill the cage; abdomen: organs float in visceral fat.
    r.fill(buf, ell(0.0, cy, ca, cb), if z > 0.1 { Soft } else { Fat });
    if z > 0.1 {
        let lw = ((1.04 - z) / 0.3).clamp(0.0, 1.0).sqrt() * ((z - 0.1) / 0.25).clamp(0.0, 1.0).sqrt();
        for (k, side) in side2.into_iter().enumerate() {
            let (lu, la, lb) = (side * ca * 0.5, ca * 0.47 * lw, cb * 0.93 * lw);
            r.fill(buf, rot(lu, cy + 0.02, la, lb, side * 0.08), Lung);
            if lw > 0.2 {
                for vs in v.vessels.iter().skip(k).step_by(2) {
                    let c = circle(lu + vs[0] * la * 0.8, cy + 0.02 + vs[1] * lb * 0.8, vs[2] * 0.018 * lw);
                    r.fill(buf, c, Blood);
                }
            }
        }
        if lw > 0.0 {
            r.fill(buf, ell(0.0, cy, 0.1, cb * 0.75), Fat); // mediastinum
        }
        let hw = bell((z - 0.33) / 0.22);
        if hw > 0.0 {
            r.fill(buf, rot(0.08, cy - 0.1, 0.24 * hw * v.size, 0.19 * hw * v.size, -0.5), Soft);
            r.fill(buf, rot(0.08, cy - 0.1, (0.24 * hw - 0.03) * v.size, (0.19 * hw - 0.03) * v.size, -0.5), Blood);
        }
        if (0.58..0.68).contains(&z) {
            r.fill(buf, rot(0.01, cy - 0.005, 0.11, 0.04, 1.09), Blood); // aortic arch
        }
        if (0.35..0.6).contains(&z) {
            r.fill(buf, circle(-0.03, cy - 0.1, 0.05), Blood); // ascending aorta
        }
        if (0.4..0.52).contains(&z) {
            r.fill(buf, ell(0.06, cy - 0.12, 0.05, 0.045), Blood); // pulmonary trunk
        }
        if (0.4..0.75).contains(&z) {
            r.fill(buf, ell(-0.1, cy - 0.1, 0.03, 0.035), Blood); // SVC
        }
        if z > 0.55 {
            r.fill(buf, ell(0.0, cy + 0.02, 0.035, 0.03), Air); // trachea
        } else if z > 0.48 {
            for side in side2 {
                r.fill(buf, circle(side * 0.07, cy + 0.02, 0.025), Air); // main bronchi
            }
        }
        r.fill(buf, ell(-0.015, cy + 0.1, 0.022, 0.02), Soft); // oesophagus
        if z < 0.85 {
            r.fill(buf, ell(0.0, cy - mb + 0.03, 0.055, 0.022), Bone); // sternum
        }
    }
    if (-0.55..0.62).contains(&z) {
        r.fill(buf, circle(0.06, cy + 0.09, 0.04), Blood); // descending aorta
    }
    if (-0.5..0.45).contains(&z) {
        r.fill(buf, ell(-0.06, cy + 0.06, 0.035, 0.03), Blood); // IVC
    }
    let lvw = if z < 0.3 { bell(z / 0.32) } else { 0.0 };
    if lvw > 0.0 {
        r.fill(buf, ell(-ca * 0.44, cy - 0.02, ca * 0.52 * lvw, cb * 0.78 * lvw), Liver);
        if let Some([lu, lv, lz, lr]) = v.lesion {
            let dz = z - lz;
            if dz.abs() < lr {
                r.fill(buf, circle(lu * ca / 0.7, cy + lv, (lr * lr - dz * dz).sqrt()), Lesion);
            }
        }
    }
    let sw = bell((z - 0.05) / 0.2);
    if sw > 0.0 {
        r.fill(buf, rot(ca * 0.7, cy + 0.12, 0.1 * sw, 0.17 * sw, 0.6), Spleen);
    }
    let gw = bell((z - 0.1) / 0.15);
    if gw > 0.0 {
        let stomach = ell(ca * 0.35, cy - 0.12, 0.17 * gw, 0.12 * gw);
        r.fill(buf, stomach, Fluid);
        // Supine: gas rises anteriorly, giving an air-fluid level.
        let level = Clip { v1: cy - 0.12 - 0.06 * gw, ..super::raster::NO_CLIP };
        r.fill_clipped(buf, stomach, &level, Air);
    }
    let kw = bell((z + 0.2) / 0.22);
    if kw > 0.0 {
        for side in side2 {
            r.fill(buf, rot(side * 0.25, cy + 0.16, 0.12 * kw, 0.075 * kw, PI / 2.0 + side * 0.35), Kidney);
            r.fill(buf, rot(side * 0.23, cy + 0.15, 0.05 * kw, 0.03 * kw, PI / 2.0 + side * 0.35), Fat);
        }
    }
    if (-0.75..-0.05).contains(&z) {
        for (k, &[bu, bv, br, gas]) in v.bowel.iter().enumerate() {
            let u = bu * ca / 0.7 + 0.06 * (z * 9.0 + k as f32).sin();
            r.fill(buf, ell(u, cy + bv, br, br * 0.8), Soft);
            r.fill(buf, ell(u, cy + bv, br - 0.012, br * 0.8 - 0.012), if gas > 0.6 { Air } else { Fluid });
        }
        let pw = ((-0.05 - z) / 0.3).clamp(0.0, 1.0);
        for side in side2 {
            r.fill(buf, ell(side * 0.13, cy + 0.2, 0.035 + 0.05 * pw, 0.05 + 0.02 * pw), Soft);
            // psoas
        }
    }
    if (-0.9..-0.5).contains(&z) {
        let iw = bell((z + 0.7) / 0.2);
        for side in side2 {
            // Iliac wings run from the sacroiliac joints anterolaterally.
            let (cu, cv, a) = (side * 0.33, cy + 0.1, 0.16 + 0.06 * iw);
            r.fill(buf, rot(cu, cv, a, 0.035, -side * 0.7), Bone);
            r.fill(buf, rot(cu, cv, a - 0.02, 0.018, -side * 0.7), Marrow);
        }
        r.fill(buf, ell(0.0, cy + 0.25, 0.13, 0.06), Bone); // sacrum
        r.fill(buf, ell(0.0, cy + 0.25, 0.11, 0.045), Marrow);
    }
    if z < -0.85 {
        for side in side2 {
            r.fill(buf, circle(side * 0.33, cy + 0.02, 0.085), Bone); // femoral head
            r.fill(buf, circle(side * 0.33, cy + 0.02, 0.07), Marrow);
        }
    }
    if z < -0.65 {
        let bw = ((-0.65 - z) / 0.15).clamp(0.0, 1.0).sqrt();
        r.fill(buf, ell(0.0, cy - 0.12, 0.16 * bw, 0.12 * bw), Fluid); // bladder
    }
    if z < -0.6 {
        r.fill(buf, circle(0.0, cy + 0.17, 0.045), Soft); // rectum
        r.fill(buf, circle(0.0, cy + 0.17, 0.025), Air);
    }
    if z > -0.5 {
        // Vertebra, with an intervertebral disc every ~30 mm.
        let disc = (z * 11.0).rem_euclid(1.0) < 0.18;
        r.fill(buf, ell(0.0, cy + 0.19, 0.07, 0.065), if disc { Soft } else { Bone });
        if !disc {
            r.fill(buf, ell(0.0, cy + 0.19, 0.056, 0.052), Marrow);
        }
        r.fill(buf, ell(0.0, cy + 0.3, 0.075, 0.03), Bone); // lamina
        r.fill(buf, ell(0.0, cy + 0.35, 0.014, 0.045), Bone); // spinous process
        r.fill(buf, ell(0.0, cy + 0.29, 0.03, 0.028), Csf); // canal
    }
    if z > -0.15 {
        // Ribs: oblique cross-sections around the cage, drifting with z
        // because ribs slope downwards anteriorly.
        let (ra, rb) = (ma - 0.03, mb - 0.03);
        let phase = (z * 6.0).rem_euclid(1.0);
        for k in 0..7 {
            let th = PI * (0.12 + 0.76 * (k as f32 + phase) / 7.0);
            let (st, ct) = th.sin_cos();
            for side in side2 {
                let tangent = (rb * st).atan2(side * ra * ct);
                r.fill(buf, rot(side * ra * st, cy - rb * ct, 0.04, 0.013, tangent), Bone);
            }
        }
    }
}

/// Hounsfield units per tissue; contrast enhances blood and organs.
pub(crate) fn ct_lut(contrast: bool) -> [i32; TISSUES] {
    let mut hu = [0; TISSUES];
    for (t, v) in [
        (Air, -1000),
        (Fat, -100),
        (Soft, 45),
        (Bone, 1100),
        (Marrow, 260),
        (Grey, 38),
        (White, 27),
        (Csf, 6),
        (Eye, 12),
        (Blood, 42),
        (Lung, -850),
        (Liver, 58),
        (Kidney, 32),
        (Spleen, 48),
        (Lesion, 18),
        (Table, 120),
        (Fluid, 8),
    ] {
        hu[t as usize] = v;
    }
    if contrast {
        hu[Blood as usize] = 190;
        hu[Liver as usize] = 110;
        hu[Kidney as usize] = 180;
        hu[Spleen as usize] = 115;
    }
    hu
}

/// Relative MR signal (0..4095) per tissue and sequence.
pub(crate) fn mr_lut(seq: MrSeq) -> [f32; TISSUES] {
    //            Air Fat   Soft Bone Marr Grey White Csf  Eye  Blood Lung Liver Kid  Spl  Les  Table Fluid
    let t1 = [0., 1900., 700., 60., 1500., 750., 1050., 250., 260., 120., 40., 900., 800., 700., 600., 0., 300.];
    let t2 = [0., 1400., 550., 50., 1000., 1150., 850., 2300., 2200., 80., 30., 500., 1400., 1100., 1800., 0., 2300.];
    let fl = [0., 1300., 600., 50., 900., 1050., 800., 140., 150., 80., 30., 600., 1100., 900., 2000., 0., 180.];
    match seq {
        MrSeq::T1 => t1,
        MrSeq::T2 => t2,
        MrSeq::Flair => fl,
        MrSeq::T1Post => {
            let mut p = t1;
            for (t, v) in [(Blood, 1600.), (Kidney, 1700.), (Liver, 1250.), (Spleen, 1300.), (Lesion, 1500.)] {
                p[t as usize] = v;
            }
            p
        }
    }
}

/// Labels → little-endian CT pixel bytes in the site's storage convention
/// (both use Rescale Intercept -1024).
pub(crate) fn ct_bytes(r: &Raster, labels: &[u8], hu: &[i32; TISSUES], storage: CtStorage, noise: &mut Noise) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * 2);
    let max_label = TISSUES - 1;
    match storage {
        CtStorage::Unsigned12 => {
            for &l in labels {
                let v = (hu[usize::from(l).min(max_label)] + noise.sample() + 1024).clamp(0, 4095) as u16;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        CtStorage::Signed16Padded => {
            // Outside the circular reconstruction FOV: padding, as GE does.
            let radius2 = (r.w as f32 / 2.0).powi(2);
            for (y, row) in labels.chunks_exact(r.w).enumerate() {
                let dy = y as f32 + 0.5 - r.h as f32 / 2.0;
                let half = (radius2 - dy * dy).max(0.0).sqrt();
                let (x0, x1) = (r.w as f32 / 2.0 - half, r.w as f32 / 2.0 + half);
                for (x, &l) in row.iter().enumerate() {
                    let xc = x as f32 + 0.5;
                    let v: i16 =
                        if xc < x0 || xc > x1 { PADDING } else { (hu[usize::from(l).min(max_label)] + noise.sample() + 1024).clamp(-1024, 31_743) as i16 };
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    out
}

pub(crate) const PADDING: i16 = -2000;

/// Labels → little-endian 12-bit MR bytes, with a smooth receive-coil bias
/// field and magnitude (Rician-like) noise.
pub(crate) fn mr_bytes(r: &Raster, labels: &[u8], lut: &[f32; TISSUES], noise: &mut Noise) -> Vec<u8> {
    let fx: Vec<f32> = (0..r.w).map(|x| 1.0 - 0.18 * r.u(x).powi(2)).collect();
    let fy: Vec<f32> = (0..r.h).map(|y| 1.05 - 0.12 * (r.v(y) + 0.2).powi(2)).collect();
    let mut out = Vec::with_capacity(labels.len() * 2);
    for (row, &gy) in labels.chunks_exact(r.w).zip(&fy) {
        for (&l, &gx) in row.iter().zip(&fx) {
            let s = lut[usize::from(l).min(TISSUES - 1)] * gx * gy + noise.sample() as f32;
            out.extend_from_slice(&(s.abs().min(4095.0) as u16).to_le_bytes());
        }
    }
    out
}
