//! Scanline rasterisation of (rotated) ellipses and rectangles.
//!
//! Shapes are solved per row (one square root per row), then whole spans are
//! filled, so cost is ~O(rows × shapes + pixels touched) with no per-pixel trig.
//! Coordinates are normalised: the longer image side spans -1..1, centred.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tissue {
    Air,
    Fat,
    Soft,
    Bone,
    Marrow,
    Grey,
    White,
    Csf,
    Eye,
    Blood,
    Lung,
    Liver,
    Kidney,
    Spleen,
    Lesion,
    Table,
    Fluid,
}

pub(crate) const TISSUES: usize = 17;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ell {
    cx: f32,
    cy: f32,
    a: f32,
    b: f32,
    cos: f32,
    sin: f32,
}

pub(crate) fn ell(cx: f32, cy: f32, a: f32, b: f32) -> Ell {
    Ell { cx, cy, a, b, cos: 1.0, sin: 0.0 }
}

/// Ellipse with its `a` axis rotated by `theta` radians (towards +v).
pub(crate) fn rot(cx: f32, cy: f32, a: f32, b: f32, theta: f32) -> Ell {
    Ell { cx, cy, a, b, cos: theta.cos(), sin: theta.sin() }
}

pub(crate) fn circle(cx: f32, cy: f32, r: f32) -> Ell {
    ell(cx, cy, r, r)
}

/// Axis-aligned clip rectangle in normalised coordinates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clip {
    pub u0: f32,
    pub u1: f32,
    pub v0: f32,
    pub v1: f32,
}

pub(crate) const NO_CLIP: Clip = Clip { u0: f32::MIN, u1: f32::MAX, v0: f32::MIN, v1: f32::MAX };

/// `max(0, 1 - x²)`: a smooth bump used to grow and shrink organs along z.
pub(crate) fn bell(x: f32) -> f32 {
    (1.0 - x * x).max(0.0)
}

pub(crate) struct Raster {
    pub w: usize,
    pub h: usize,
    scale: f32,
}

impl Raster {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        Raster { w, h, scale: w.max(h) as f32 / 2.0 }
    }

    /// Normalised coordinate of pixel column `x` / row `y` (pixel centres).
    pub(crate) fn u(&self, x: usize) -> f32 {
        (x as f32 + 0.5 - self.w as f32 / 2.0) / self.scale
    }

    pub(crate) fn v(&self, y: usize) -> f32 {
        (y as f32 + 0.5 - self.h as f32 / 2.0) / self.scale
    }

    fn rows(&self, v0: f32, v1: f32) -> std::ops::Range<usize> {
        let to_px = |v: f32| v * self.scale + self.h as f32 / 2.0 - 0.5;
        let y0 = to_px(v0).ceil().max(0.0) as usize;
        let y1 = (to_px(v1).floor() + 1.0).clamp(0.0, self.h as f32) as usize;
        y0..y1.max(y0)
    }

    fn cols(&self, u0: f32, u1: f32) -> Option<(usize, usize)> {
        let to_px = |u: f32| u * self.scale + self.w as f32 / 2.0 - 0.5;
        let x0 = to_px(u0).ceil().max(0.0) as usize;
        let x1 = (to_px(u1).floor() + 1.0).clamp(0.0, self.w as f32) as usize;
        (x0 < x1).then_some((x0, x1))
    }

    /// Calls `f(row, x0, x1)` for each run of pixel centres inside `e ∩ clip`.
    pub(crate) fn spans(&self, e: &Ell, clip: &Clip, mut f: impl FnMut(usize, usize, usize)) {
        if e.a <= 0.0 || e.b <= 0.0 {
            return;
        }
        let (ia2, ib2) = (1.0 / (e.a * e.a), 1.0 / (e.b * e.b));
        let (c, s) = (e.cos, e.sin);
        // Row-wise quadratic in du: A du² + B du + C ≤ 0.
        let qa = c * c * ia2 + s * s * ib2;
        let qb = 2.0 * c * s * (ia2 - ib2);
        let qc = s * s * ia2 + c * c * ib2;
        let half_h = (e.a * e.a * s * s + e.b * e.b * c * c).sqrt();
        for y in self.rows((e.cy - half_h).max(clip.v0), (e.cy + half_h).min(clip.v1)) {
            let dy = self.v(y) - e.cy;
            let b = qb * dy;
            let disc = b * b - 4.0 * qa * (qc * dy * dy - 1.0);
            if disc < 0.0 {
                continue;
            }
            let root = disc.sqrt();
            let u0 = (e.cx + (-b - root) / (2.0 * qa)).max(clip.u0);
            let u1 = (e.cx + (-b + root) / (2.0 * qa)).min(clip.u1);
            if let Some((x0, x1)) = self.cols(u0, u1) {
                f(y, x0, x1);
            }
        }
    }

    pub(crate) fn rect_spans(&self, r: &Clip, mut f: impl FnMut(usize, usize, usize)) {
        if let Some((x0, x1)) = self.cols(r.u0, r.u1) {
            for y in self.rows(r.v0, r.v1) {
                f(y, x0, x1);
            }
        }
    }

    /// Paints a label (painter's algorithm: later shapes win).
    pub(crate) fn fill(&self, buf: &mut [u8], e: Ell, t: Tissue) {
        self.fill_clipped(buf, e, &NO_CLIP, t);
    }

    pub(crate) fn fill_clipped(&self, buf: &mut [u8], e: Ell, clip: &Clip, t: Tissue) {
        let w = self.w;
        self.spans(&e, clip, |y, x0, x1| buf[y * w + x0..y * w + x1].fill(t as u8));
    }

    pub(crate) fn fill_rect(&self, buf: &mut [u8], r: &Clip, t: Tissue) {
        let w = self.w;
        self.rect_spans(r, |y, x0, x1| buf[y * w + x0..y * w + x1].fill(t as u8));
    }

    /// Adds `val` inside the shape (projection images accumulate density).
    pub(crate) fn add(&self, buf: &mut [f32], e: Ell, clip: &Clip, val: f32) {
        let w = self.w;
        self.spans(&e, clip, |y, x0, x1| buf[y * w + x0..y * w + x1].iter_mut().for_each(|p| *p += val));
    }
}

/// In-place separable box blur (running sums): O(pixels) whatever the radius.
pub(crate) fn box_blur(buf: &mut [f32], w: usize, h: usize, r: usize) {
    if r == 0 || w == 0 || h == 0 {
        return;
    }
    let mut line = Vec::with_capacity(w.max(h));
    let mut pass = |len: usize, get: &dyn Fn(usize) -> usize, buf: &mut [f32]| {
        line.clear();
        line.extend((0..len).map(|i| buf[get(i)]));
        let norm = 1.0 / (2 * r + 1) as f32;
        // Edge pixels are repeated, so borders do not darken.
        let at = |i: isize| line[i.clamp(0, len as isize - 1) as usize];
        let mut acc: f32 = (-(r as isize)..=r as isize).map(at).sum();
        for i in 0..len {
            buf[get(i)] = acc * norm;
            acc += at(i as isize + r as isize + 1) - at(i as isize - r as isize);
        }
    };
    for y in 0..h {
        pass(w, &|x| y * w + x, buf);
    }
    for x in 0..w {
        pass(h, &|y| y * w + x, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_ellipse_area_is_close() {
        let r = Raster::new(200, 200);
        let mut buf = vec![0u8; 200 * 200];
        r.fill(&mut buf, rot(0.1, -0.1, 0.5, 0.2, 0.7), Tissue::Bone);
        let n = buf.iter().filter(|&&p| p == Tissue::Bone as u8).count() as f32;
        let expected = std::f32::consts::PI * 0.5 * 0.2 * 100.0 * 100.0;
        assert!((n - expected).abs() / expected < 0.02, "{n} vs {expected}");
    }

    #[test]
    fn blur_preserves_constant() {
        let mut b = vec![3.0f32; 30 * 20];
        box_blur(&mut b, 30, 20, 4);
        assert!(b.iter().all(|&x| (x - 3.0).abs() < 1e-4));
    }
}
