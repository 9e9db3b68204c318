//! Projection radiographs (chest PA/lateral) and ultrasound sector images.

use super::raster::{box_blur, circle, ell, rot, Clip, Raster, Tissue, NO_CLIP};
use super::{Noise, Rng};

/// Chest radiograph as 12-bit MONOCHROME2 little-endian bytes: accumulated
/// attenuation (bone and soft tissue bright, aerated lung dark), blurred
/// to soften edges, then mapped to detector values with noise.
pub(crate) fn chest_xray(w: usize, h: usize, lateral: bool, variant: u64, noise: &mut Noise) -> Vec<u8> {
    let r = Raster::new(w, h);
    let mut d = vec![0.0f32; w * h];
    let mut rng = Rng::new(variant);
    let size = rng.uniform(0.92, 1.05) as f32;
    let sides = [-1.0f32, 1.0];
    let add = |d: &mut [f32], e, val| r.add(d, e, &NO_CLIP, val);
    if !lateral {
        add(&mut d, ell(0.0, 0.3, 0.66 * size, 1.25), 1.0); // torso
        add(&mut d, ell(0.0, -1.05, 0.16, 0.3), 0.6); // neck
        for s in sides {
            add(&mut d, ell(s * 0.55 * size, -0.62, 0.3, 0.15), 0.4); // shoulders
            add(&mut d, ell(s * 0.78 * size, 0.05, 0.07, 0.95), 0.5); // arms
            add(&mut d, rot(s * 0.29 * size, -0.04, 0.24 * size, 0.58, s * 0.05), -0.75); // lungs
            add(&mut d, ell(s * 0.12, -0.05, 0.06, 0.09), 0.22); // hilum
            add(&mut d, ell(s * 0.55 * size, -0.35, 0.12, 0.3), 0.12); // scapula
            add(&mut d, rot(s * 0.26, -0.63, 0.25, 0.022, -s * 0.22), 0.35); // clavicle
        }
        // Upper abdomen below the diaphragm domes (the right one higher);
        // clipped at the midline so the halves do not double up.
        let right = Clip { u1: 0.0, ..NO_CLIP };
        let left = Clip { u0: 0.0, ..NO_CLIP };
        r.add(&mut d, ell(-0.3 * size, 1.2, 0.36 * size, 0.62), &right, 0.8);
        r.add(&mut d, ell(0.3 * size, 1.26, 0.36 * size, 0.62), &left, 0.8);
        add(&mut d, ell(0.08, 0.22, 0.22 * size, 0.28), 0.75); // heart
        add(&mut d, ell(0.0, -0.32, 0.09, 0.35), 0.3); // upper mediastinum
        add(&mut d, circle(0.1, -0.3, 0.05), 0.2); // aortic knob
        add(&mut d, ell(0.0, 0.0, 0.045, 1.4), 0.45); // spine
        for k in 0..10 {
            let c = -0.6 + 0.105 * k as f32;
            for s in sides {
                // Posterior ribs arch up and out from the spine; anterior ribs
                // are fainter and run down and in.
                let (cu, a) = (s * 0.3 * size, 0.3 * size);
                let upper = Clip { v1: c, ..NO_CLIP };
                r.add(&mut d, ell(cu, c, a, 0.12), &upper, 0.28);
                r.add(&mut d, ell(cu, c, a - 0.028, 0.095), &upper, -0.28);
                let lower = Clip { v0: c - 0.2, ..NO_CLIP };
                r.add(&mut d, ell(cu, c - 0.2, a, 0.1), &lower, 0.1);
                r.add(&mut d, ell(cu, c - 0.2, a - 0.03, 0.075), &lower, -0.1);
            }
        }
    } else {
        // Lateral: anterior to the left (Patient Orientation P\F).
        add(&mut d, ell(0.0, 0.3, 0.52 * size, 1.25), 1.2);
        add(&mut d, ell(-0.02, -0.05, 0.36 * size, 0.56), -0.7); // superimposed lungs
        add(&mut d, ell(-0.18, 0.22, 0.22 * size, 0.28), 0.45); // heart
        add(&mut d, ell(0.0, 1.25, 0.56 * size, 0.62), 0.7); // below the diaphragm
        add(&mut d, rot(-0.44 * size, -0.1, 0.3, 0.025, 1.45), 0.3); // sternum
        for k in 0..14 {
            let c = -0.75 + 0.1 * k as f32;
            add(&mut d, ell(0.36 * size, c, 0.065, 0.04), 0.6); // vertebral bodies
        }
    }
    // Lead "R" marker stand-in, top left, as on every real radiograph.
    r.add(&mut d, ell(-0.7, -0.9, 0.03, 0.04), &NO_CLIP, 2.0);
    box_blur(&mut d, w, h, (w / 200).max(1));
    // Saturating detector response, tabulated so there is no per-pixel exp().
    const STEPS: f32 = 256.0;
    let response: Vec<f32> = (0..=1024).map(|i| 150.0 + 3700.0 * (1.0 - (-1.2 * i as f32 / STEPS).exp())).collect();
    let mut out = Vec::with_capacity(w * h * 2);
    for (y, row) in d.chunks_exact(w).enumerate() {
        let heel = 1.0 - 0.06 * y as f32 / h as f32; // anode heel effect
        for &p in row {
            let idx = ((p * heel).max(0.0) * STEPS) as usize;
            let v = response[idx.min(response.len() - 1)] + noise.sample() as f32;
            out.extend_from_slice(&(v.clamp(0.0, 4095.0) as u16).to_le_bytes());
        }
    }
    out
}

/// Abdominal ultrasound frame as 8-bit RGB (interleaved): a fan-shaped
/// sector with laterally elongated speckle, depth attenuation and a yellow
/// depth scale. `variant` moves the probe a little between images.
pub(crate) fn ultrasound(w: usize, h: usize, renal: bool, variant: u64) -> Vec<u8> {
    use Tissue::*;
    let r = Raster::new(w, h);
    let mut rng = Rng::new(variant);
    let mut f = |lo: f64, hi: f64| rng.uniform(lo, hi) as f32;
    let mut labels = vec![Liver as u8; w * h];
    let (dx, dy) = (f(-0.12, 0.12), f(-0.06, 0.06));
    let top = r.v(0);
    r.fill_rect(&mut labels, &Clip { u0: -2.0, u1: 2.0, v0: top, v1: top + 0.1 }, Fat);
    r.fill_rect(&mut labels, &Clip { u0: -2.0, u1: 2.0, v0: top + 0.1, v1: top + 0.16 }, Soft);
    r.fill(&mut labels, rot(0.1 + dx, 0.45 + dy, 0.9, 0.03, f(-0.2, 0.1)), Bone); // diaphragm
    if renal {
        let k = rot(dx, 0.05 + dy, f(0.3, 0.42), 0.2, f(-0.2, 0.2));
        r.fill(&mut labels, k, Kidney);
        r.fill(&mut labels, ell(dx, 0.05 + dy, 0.16, 0.07), Marrow); // echogenic renal sinus
    } else {
        r.fill(&mut labels, ell(-0.25 + dx, 0.0 + dy, f(0.1, 0.16), f(0.06, 0.09)), Fluid); // gallbladder
        r.fill(&mut labels, circle(0.2 + dx, 0.15 + dy, f(0.04, 0.06)), Blood); // portal vein
        r.fill(&mut labels, circle(0.35 + dx, -0.1 + dy, 0.025), Blood); // hepatic vein
    }
    let mut echo = [0.0f32; super::raster::TISSUES];
    let pairs = [(Fat, 0.3), (Soft, 0.45), (Bone, 1.0), (Marrow, 0.85), (Liver, 0.55), (Kidney, 0.35), (Fluid, 0.02), (Blood, 0.03)];
    for (t, v) in pairs {
        echo[t as usize] = v;
    }

    // Sector geometry, tested without trig: |dx| ≤ dy·tan(half-angle) and r ≤ R.
    let (ax, ay) = (w as f32 / 2.0, h as f32 * 0.04);
    let radius = h as f32 * 0.92;
    let tan_half = 0.75f32;
    let mut speck = Noise::new(Rng::new(variant ^ 0x5EC7), 100.0);
    let lat = (w / 128).max(1); // lateral speckle half-length
    let mut row_sp = vec![0.0f32; w + 1];
    let mut prev = vec![0.0f32; w]; // previous row, for some axial correlation
    let mut enhance = vec![1.0f32; w]; // posterior acoustic enhancement per column
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        let ry = y as f32 + 0.5 - ay;
        if ry <= 0.0 {
            continue;
        }
        let half = (ry * tan_half).min((radius * radius - ry * ry).max(0.0).sqrt());
        let gain = 1.15 * (-1.2 * ry / radius).exp() + 0.25; // attenuation with TGC
                                                             // Rayleigh magnitudes, box-averaged along the row through prefix
                                                             // sums: speckle is elongated laterally in real images.
        row_sp[0] = 0.0;
        for x in 0..w {
            let (a, b) = (speck.sample() as f32, speck.sample() as f32);
            row_sp[x + 1] = row_sp[x] + (a * a + b * b).sqrt();
        }
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(lat), (x + lat + 1).min(w));
            let sp = 0.4 * prev[x] + 0.6 * (row_sp[x1] - row_sp[x0]) / (x1 - x0) as f32;
            prev[x] = sp;
            if (x as f32 + 0.5 - ax).abs() > half {
                continue;
            }
            let label = labels[y * w + x];
            enhance[x] = if label == Fluid as u8 || label == Blood as u8 { (enhance[x] + 0.012).min(1.7) } else { 1.0 + (enhance[x] - 1.0) * 0.995 };
            let e = echo[usize::from(label).min(echo.len() - 1)];
            let v = (e * sp * gain * enhance[x] * 1.5).min(255.0) as u8;
            out[(y * w + x) * 3..][..3].fill(v);
        }
    }
    // Depth scale: a yellow tick each 1/10 of the depth, right of the sector.
    let tick_x = (w as f32 * 0.93) as usize;
    for k in 1..10 {
        let y = (ay + radius * k as f32 / 10.0) as usize;
        if y < h {
            for x in tick_x..(tick_x + (w / 80).max(2)).min(w) {
                out[(y * w + x) * 3..][..3].copy_from_slice(&[255, 220, 0]);
            }
        }
    }
    out
}
