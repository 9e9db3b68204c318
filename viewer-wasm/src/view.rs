//! Where an image sits on its canvas: fit, zoom, pan, quarter-turn
//! rotation and flips, as one affine matrix for the canvas's
//! `setTransform`, and its inverse for mapping the pointer back to image
//! pixels (measurements, ROI, the value under the cursor).

#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Magnification relative to "fit".
    pub zoom: f64,
    /// Offset of the image centre from the canvas centre, canvas pixels.
    pub pan: (f64, f64),
    /// Clockwise quarter turns, 0..=3.
    pub turns: u8,
    pub flip_h: bool,
    pub flip_v: bool,
    /// Show one image pixel per canvas pixel instead of fitting.
    pub one_to_one: bool,
}

impl Default for View {
    fn default() -> Self {
        View { zoom: 1.0, pan: (0.0, 0.0), turns: 0, flip_h: false, flip_v: false, one_to_one: false }
    }
}

/// `[a, b, c, d, e, f]`: x' = a·x + c·y + e, y' = b·x + d·y + f.
pub type Matrix = [f64; 6];

impl View {
    /// Canvas pixels per image column; rows are scaled by `aspect`
    /// (row spacing / column spacing) so non-square pixels look right.
    pub fn scale(&self, canvas: (f64, f64), image: (f64, f64), aspect: f64) -> f64 {
        if self.one_to_one {
            return self.zoom;
        }
        let (iw, ih) = (image.0, image.1 * aspect);
        let (iw, ih) = if self.turns % 2 == 1 { (ih, iw) } else { (iw, ih) };
        (canvas.0 / iw).min(canvas.1 / ih) * self.zoom
    }

    pub fn matrix(&self, canvas: (f64, f64), image: (f64, f64), aspect: f64) -> Matrix {
        let s = self.scale(canvas, image, aspect);
        // Image centre to origin, scale (rows by aspect), rotate, flip in
        // screen space, then to the canvas centre plus pan.
        let (sx, sy) = (s, s * aspect);
        let (cos, sin) = match self.turns % 4 {
            0 => (1.0, 0.0),
            1 => (0.0, 1.0),
            2 => (-1.0, 0.0),
            _ => (0.0, -1.0),
        };
        let (fx, fy) = (if self.flip_h { -1.0 } else { 1.0 }, if self.flip_v { -1.0 } else { 1.0 });
        let a = fx * cos * sx;
        let b = fy * sin * sx;
        let c = fx * -sin * sy;
        let d = fy * cos * sy;
        let (cx, cy) = (image.0 / 2.0, image.1 / 2.0);
        let e = canvas.0 / 2.0 + self.pan.0 - (a * cx + c * cy);
        let f = canvas.1 / 2.0 + self.pan.1 - (b * cx + d * cy);
        [a, b, c, d, e, f]
    }
}

/// Canvas point to image point under `m`.
pub fn invert(m: &Matrix, p: (f64, f64)) -> (f64, f64) {
    let [a, b, c, d, e, f] = *m;
    let det = a * d - b * c;
    let (x, y) = (p.0 - e, p.1 - f);
    ((d * x - c * y) / det, (-b * x + a * y) / det)
}

pub fn apply(m: &Matrix, p: (f64, f64)) -> (f64, f64) {
    (m[0] * p.0 + m[2] * p.1 + m[4], m[1] * p.0 + m[3] * p.1 + m[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    #[test]
    fn fit_rotate_flip_and_back() {
        let canvas = (800.0, 400.0);
        let image = (512.0, 256.0);
        let v = View::default();
        let m = v.matrix(canvas, image, 1.0);
        // Fit: 400/256 limits; the image centre is the canvas centre.
        assert!(close(apply(&m, (256.0, 128.0)), (400.0, 200.0)));
        assert!((v.scale(canvas, image, 1.0) - 1.5625).abs() < 1e-12);
        // A quarter turn clockwise puts the image's top-left at the top-right.
        let r = View { turns: 1, ..View::default() };
        let m = r.matrix(canvas, image, 1.0);
        let tl = apply(&m, (0.0, 0.0));
        let br = apply(&m, (512.0, 256.0));
        assert!(tl.0 > br.0 && tl.1 < br.1, "{tl:?} {br:?}");
        // Horizontal flip mirrors about the canvas centre.
        let f = View { flip_h: true, ..View::default() };
        let m = f.matrix(canvas, image, 1.0);
        assert!(close(apply(&m, (0.0, 128.0)), (800.0 - apply(&v.matrix(canvas, image, 1.0), (0.0, 128.0)).0, 200.0)));
        // Every view inverts back to the image point.
        for turns in 0..4 {
            let v = View { zoom: 2.5, pan: (13.0, -7.0), turns, flip_h: turns % 2 == 0, flip_v: turns == 3, one_to_one: false };
            let m = v.matrix(canvas, image, 0.5);
            let p = (100.25, 30.5);
            assert!(close(invert(&m, apply(&m, p)), p));
        }
        assert_eq!(View { one_to_one: true, ..View::default() }.scale(canvas, image, 1.0), 1.0);
    }
}
