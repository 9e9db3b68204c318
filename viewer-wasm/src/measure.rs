//! Measurements in patient space: lengths and angles from Pixel Spacing
//! (rows and columns may differ), and ROI statistics in modality units.

use crate::image::Frame;

/// Points are (column, row) in image pixels, continuous.
pub fn length_mm(a: (f64, f64), b: (f64, f64), spacing: (f64, f64)) -> f64 {
    let (dr, dc) = spacing;
    ((b.0 - a.0) * dc).hypot((b.1 - a.1) * dr)
}

/// The angle at `vertex` between the arms to `a` and `b`, in degrees.
pub fn angle_deg(a: (f64, f64), vertex: (f64, f64), b: (f64, f64), spacing: (f64, f64)) -> f64 {
    let (dr, dc) = spacing;
    let u = ((a.0 - vertex.0) * dc, (a.1 - vertex.1) * dr);
    let v = ((b.0 - vertex.0) * dc, (b.1 - vertex.1) * dr);
    let cos = (u.0 * v.0 + u.1 * v.1) / (u.0.hypot(u.1) * v.0.hypot(v.1));
    if cos.is_nan() {
        return 0.0;
    }
    cos.clamp(-1.0, 1.0).acos().to_degrees()
}

#[derive(Debug, PartialEq)]
pub struct RoiStats {
    pub mean: f64,
    /// Population standard deviation.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    pub pixels: u64,
    pub area_mm2: f64,
}

/// Statistics of the pixels whose centres fall inside the ellipse with
/// centre `c` and radii `r` (image pixels).
pub fn ellipse_stats(f: &Frame, c: (f64, f64), r: (f64, f64), spacing: Option<(f64, f64)>) -> Option<RoiStats> {
    let (rx, ry) = (r.0.abs().max(1e-9), r.1.abs().max(1e-9));
    let y0 = (c.1 - ry).floor().max(0.0) as u32;
    let y1 = ((c.1 + ry).ceil() as u32).min(f.height);
    let x0 = (c.0 - rx).floor().max(0.0) as u32;
    let x1 = ((c.0 + rx).ceil() as u32).min(f.width);
    let (mut n, mut sum, mut sq, mut lo, mut hi) = (0u64, 0f64, 0f64, f64::MAX, f64::MIN);
    for y in y0..y1 {
        let dy = (y as f64 + 0.5 - c.1) / ry;
        for x in x0..x1 {
            let dx = (x as f64 + 0.5 - c.0) / rx;
            if dx * dx + dy * dy <= 1.0 {
                let v = f.value(x, y)?;
                n += 1;
                sum += v;
                sq += v * v;
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let (dr, dc) = spacing.unwrap_or((1.0, 1.0));
    Some(RoiStats { mean, sd: (sq / n as f64 - mean * mean).max(0.0).sqrt(), min: lo, max: hi, pixels: n, area_mm2: std::f64::consts::PI * rx * ry * dr * dc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{PixelDesc, Pixels};

    #[test]
    fn length_and_angle_honour_anisotropic_spacing() {
        assert!((length_mm((0.0, 0.0), (3.0, 4.0), (1.0, 1.0)) - 5.0).abs() < 1e-12);
        // Rows 2 mm apart: 4 rows down is 8 mm.
        assert!((length_mm((0.0, 0.0), (0.0, 4.0), (2.0, 0.5)) - 8.0).abs() < 1e-12);
        assert!((angle_deg((1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)) - 90.0).abs() < 1e-9);
        // 1 px right and 1 px down is 45° only when pixels are square.
        assert!((angle_deg((1.0, 0.0), (0.0, 0.0), (1.0, 1.0), (2.0, 1.0)) - 63.434_948_8).abs() < 1e-6);
        assert_eq!(angle_deg((0.0, 0.0), (0.0, 0.0), (1.0, 1.0), (1.0, 1.0)), 0.0);
    }

    #[test]
    fn ellipse_stats_in_modality_units() {
        // 4×4: left half 1024 (0 HU), right half 1124 (100 HU).
        let v: Vec<i16> = (0..16).map(|i| if i % 4 < 2 { 1024 } else { 1124 }).collect();
        let d = PixelDesc { rows: 4, columns: 4, signed: true, intercept: -1024.0, ..PixelDesc::default() };
        let f = Frame::new(&d, Pixels::I16(v)).unwrap();
        let s = ellipse_stats(&f, (2.0, 2.0), (2.0, 2.0), Some((0.5, 0.5))).unwrap();
        assert_eq!(s.pixels, 12);
        assert!((s.mean - 50.0).abs() < 1e-9);
        assert!((s.sd - 50.0).abs() < 1e-9);
        assert_eq!((s.min, s.max), (0.0, 100.0));
        assert!((s.area_mm2 - std::f64::consts::PI).abs() < 1e-9);
        let right = ellipse_stats(&f, (3.0, 2.0), (0.9, 1.9), None).unwrap();
        assert_eq!((right.mean, right.sd), (100.0, 0.0));
        assert!(ellipse_stats(&f, (10.0, 10.0), (1.0, 1.0), None).is_none());
    }
}
