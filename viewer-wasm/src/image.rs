//! A decoded frame and its display: the modality LUT (Rescale Slope and
//! Intercept) and the VOI LUT (window, PS3.3 C.11.2.1.2) folded into one
//! table from stored value to RGBA, so a window change costs one table
//! build and one lookup per pixel.

use crate::Error;

/// What a frame's bytes mean, from the instance's metadata.
#[derive(Clone, Debug)]
pub struct PixelDesc {
    pub rows: u32,
    pub columns: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub samples: u16,
    pub photometric: String,
    pub planar: bool,
    pub slope: f64,
    pub intercept: f64,
}

impl Default for PixelDesc {
    fn default() -> Self {
        PixelDesc {
            rows: 0,
            columns: 0,
            bits_allocated: 16,
            bits_stored: 16,
            signed: false,
            samples: 1,
            photometric: "MONOCHROME2".into(),
            planar: false,
            slope: 1.0,
            intercept: 0.0,
        }
    }
}

pub enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    /// Interleaved 8-bit RGB.
    Rgb(Vec<u8>),
}

pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Pixels,
    /// Smallest and largest stored value (grey frames).
    pub min: i32,
    pub max: i32,
    pub slope: f64,
    pub intercept: f64,
    pub monochrome1: bool,
}

impl Frame {
    pub fn new(d: &PixelDesc, pixels: Pixels) -> Result<Frame, Error> {
        let px = d.rows as usize * d.columns as usize;
        let (len, want) = match &pixels {
            Pixels::U8(v) => (v.len(), px),
            Pixels::U16(v) => (v.len(), px),
            Pixels::I16(v) => (v.len(), px),
            Pixels::I32(v) => (v.len(), px),
            Pixels::Rgb(v) => (v.len(), px * 3),
        };
        if len < want {
            return Err(Error::Short { need: want, have: len });
        }
        let (min, max) = match &pixels {
            Pixels::U8(v) => range(v.iter().map(|&x| x as i32)),
            Pixels::U16(v) => range(v.iter().map(|&x| x as i32)),
            Pixels::I16(v) => range(v.iter().map(|&x| x as i32)),
            Pixels::I32(v) => range(v.iter().copied()),
            Pixels::Rgb(_) => (0, 255),
        };
        Ok(Frame {
            width: d.columns,
            height: d.rows,
            pixels,
            min,
            max,
            slope: if d.slope == 0.0 { 1.0 } else { d.slope },
            intercept: d.intercept,
            monochrome1: d.photometric == "MONOCHROME1",
        })
    }

    /// The stored value at a pixel (grey frames), if inside.
    pub fn stored(&self, x: u32, y: u32) -> Option<i32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) as usize;
        Some(match &self.pixels {
            Pixels::U8(v) => v[i] as i32,
            Pixels::U16(v) => v[i] as i32,
            Pixels::I16(v) => v[i] as i32,
            Pixels::I32(v) => v[i],
            Pixels::Rgb(v) => (v[i * 3] as i32 * 299 + v[i * 3 + 1] as i32 * 587 + v[i * 3 + 2] as i32 * 114) / 1000,
        })
    }

    /// Modality value (e.g. HU) at a pixel.
    pub fn value(&self, x: u32, y: u32) -> Option<f64> {
        self.stored(x, y).map(|v| self.modality(v))
    }

    pub fn modality(&self, stored: i32) -> f64 {
        stored as f64 * self.slope + self.intercept
    }

    /// A window spanning the frame's values, for files that carry none.
    pub fn full_window(&self) -> (f64, f64) {
        let (lo, hi) = (self.modality(self.min), self.modality(self.max));
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        ((lo + hi) / 2.0 + 0.5, (hi - lo).max(1.0) + 1.0)
    }

    pub fn is_colour(&self) -> bool {
        matches!(self.pixels, Pixels::Rgb(_))
    }
}

fn range(it: impl Iterator<Item = i32>) -> (i32, i32) {
    it.fold((i32::MAX, i32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Window LINEAR (PS3.3 C.11.2.1.2.1) of a modality value to 0..=255.
pub fn window_linear(x: f64, center: f64, width: f64) -> u8 {
    let w = width.max(1.0);
    let (c, lo, hi) = (center - 0.5, center - 0.5 - (w - 1.0) / 2.0, center - 0.5 + (w - 1.0) / 2.0);
    if x <= lo {
        0
    } else if x > hi {
        255
    } else {
        (((x - c) / (w - 1.0) + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
    }
}

/// Display settings a table is built for.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Display {
    pub center: f64,
    pub width: f64,
    pub invert: bool,
}

/// Renders frames to RGBA (one `u32` per pixel, little endian: R, G, B, A).
/// The table spans the stored values seen (not every 16-bit value: a
/// 12-bit CT needs 4,096 entries, not 65,536) and is kept while the
/// display and rescale stay the same, as when scrolling; a frame with
/// values outside it widens it.
#[derive(Default)]
pub struct Renderer {
    pub out: Vec<u32>,
    lut: Vec<u32>,
    key: Option<(Display, u64, u64, bool, bool)>,
    lo: i32,
    hi: i32,
}

fn grey(g: u8) -> u32 {
    let g = g as u32;
    0xFF00_0000 | (g << 16) | (g << 8) | g
}

impl Renderer {
    pub fn render(&mut self, f: &Frame, d: Display) {
        let invert = d.invert ^ f.monochrome1;
        let n = (f.width * f.height) as usize;
        self.out.resize(n, 0);
        let colour = f.is_colour();
        let key = (d, f.slope.to_bits(), f.intercept.to_bits(), invert, colour);
        let (lo, hi) = if colour { (0, 255) } else { (f.min, f.max) };
        if self.key != Some(key) || lo < self.lo || hi > self.hi {
            let (lo, hi) = if self.key == Some(key) { (lo.min(self.lo), hi.max(self.hi)) } else { (lo, hi) };
            self.lut.clear();
            self.lut.extend((lo..=hi).map(|s| {
                let m = if colour { s as f64 } else { f.modality(s) };
                let g = window_linear(m, d.center, d.width);
                grey(if invert { 255 - g } else { g })
            }));
            (self.key, self.lo, self.hi) = (Some(key), lo, hi);
        }
        let (lut, lo) = (&self.lut[..], self.lo);
        let at = |s: i32| lut[(s - lo) as usize];
        match &f.pixels {
            Pixels::U8(v) => self.out.iter_mut().zip(v).for_each(|(o, &s)| *o = at(s as i32)),
            Pixels::U16(v) => self.out.iter_mut().zip(v).for_each(|(o, &s)| *o = at(s as i32)),
            Pixels::I16(v) => self.out.iter_mut().zip(v).for_each(|(o, &s)| *o = at(s as i32)),
            Pixels::I32(v) => self.out.iter_mut().zip(v).for_each(|(o, &s)| *o = at(s)),
            Pixels::Rgb(v) => {
                // Each channel through the same table: window as contrast.
                for (o, p) in self.out.iter_mut().zip(v.chunks_exact(3)) {
                    let c = |k: usize| at(p[k] as i32) & 0xFF;
                    *o = 0xFF00_0000 | (c(2) << 16) | (c(1) << 8) | c(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(values: Vec<i16>) -> Frame {
        let d = PixelDesc { rows: 1, columns: values.len() as u32, signed: true, intercept: -1024.0, ..PixelDesc::default() };
        Frame::new(&d, Pixels::I16(values)).unwrap()
    }

    #[test]
    fn linear_window_ends_and_middle() {
        assert_eq!(window_linear(-100.0, 40.0, 80.0), 0);
        assert_eq!(window_linear(200.0, 40.0, 80.0), 255);
        assert!((127..=129).contains(&window_linear(40.0, 40.0, 80.0)));
    }

    #[test]
    fn rescale_window_and_invert_in_one_table() {
        // Stored 1024 + 40 is 40 HU, the centre of a 40/80 window.
        let f = ct(vec![0, 1064, 3000]);
        let mut r = Renderer::default();
        r.render(&f, Display { center: 40.0, width: 80.0, invert: false });
        let g: Vec<u32> = r.out.iter().map(|p| p & 0xFF).collect();
        assert_eq!(g[0], 0);
        assert!((127..=129).contains(&g[1]), "{g:?}");
        assert_eq!(g[2], 255);
        assert_eq!(r.out[0] >> 24, 0xFF);
        r.render(&f, Display { center: 40.0, width: 80.0, invert: true });
        assert_eq!(r.out[0] & 0xFF, 255);
        assert_eq!(f.value(1, 0), Some(40.0));
        assert_eq!(f.full_window(), ((-1024.0 + 1976.0) / 2.0 + 0.5, 3001.0));
    }

    #[test]
    fn the_table_widens_for_a_frame_with_other_values() {
        let mut r = Renderer::default();
        let d = Display { center: 40.0, width: 400.0, invert: false };
        r.render(&ct(vec![1000, 1100]), d);
        r.render(&ct(vec![0, 3000]), d);
        assert_eq!(r.out.iter().map(|p| p & 0xFF).collect::<Vec<_>>(), vec![0, 255]);
        r.render(&ct(vec![1064]), d);
        assert!((127..=129).contains(&(r.out[0] & 0xFF)));
    }

    #[test]
    fn narrower_window_raises_contrast() {
        let f = ct(vec![1024, 1084]); // 0 and 60 HU
        let mut r = Renderer::default();
        let spread = |r: &mut Renderer, w| {
            r.render(&f, Display { center: 30.0, width: w, invert: false });
            (r.out[1] & 0xFF) as i32 - (r.out[0] & 0xFF) as i32
        };
        assert!(spread(&mut r, 80.0) > spread(&mut r, 400.0));
    }
}
