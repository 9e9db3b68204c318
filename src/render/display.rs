//! The display pipeline (PS3.3 C.11, PS3.4 N.2): Modality LUT → VOI LUT →
//! Presentation LUT for grey images; colour models to RGB. 8-bit output.

use super::decode::Frame;
use super::header::{ImageInfo, Photometric};
use super::lut::Lut;
use super::{RenderError, VoiFunction, Window};

/// The largest stored-value range a lookup table is built for.
const MAX_TABLE: i64 = 1 << 16;

fn stored(v: i32, unsigned32: bool) -> i64 {
    if unsigned32 {
        i64::from(v as u32)
    } else {
        i64::from(v)
    }
}

enum Modality<'a> {
    Rescale(f64, f64),
    Lut(&'a Lut),
}

impl Modality<'_> {
    fn of(info: &ImageInfo) -> Modality<'_> {
        match &info.modality_lut {
            Some(l) => Modality::Lut(l),
            None => Modality::Rescale(info.slope, info.intercept),
        }
    }

    fn apply(&self, x: i64) -> f64 {
        match self {
            Modality::Rescale(m, b) => x as f64 * m + b,
            Modality::Lut(l) => f64::from(l.lookup(x)),
        }
    }

    /// The range of modality values for stored values in `lo..=hi`.
    fn range(&self, lo: i64, hi: i64) -> (f64, f64) {
        match self {
            Modality::Rescale(..) => {
                let (a, b) = (self.apply(lo), self.apply(hi));
                (a.min(b), a.max(b))
            }
            Modality::Lut(l) => {
                let (a, b) = l.range(lo, hi);
                (f64::from(a), f64::from(b))
            }
        }
    }
}

enum Voi<'a> {
    Window(Window),
    Lut(&'a Lut),
}

impl Voi<'_> {
    /// Output in [0, 1].
    fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Window(w) => w.apply(x),
            Voi::Lut(l) => f64::from(l.lookup(x.round() as i64)) / l.max_out(),
        }
    }
}

/// Smallest and largest stored values, overall and without padding.
fn stats(info: &ImageInfo, f: &Frame) -> ((i64, i64), Option<(i64, i64)>) {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let (mut plo, mut phi) = (i64::MAX, i64::MIN);
    match info.padding {
        None if !f.unsigned32 => {
            for &v in &f.data {
                lo = lo.min(i64::from(v));
                hi = hi.max(i64::from(v));
            }
            return ((lo, hi), Some((lo, hi)));
        }
        _ => {}
    }
    let (pa, pb) = info.padding.unwrap_or((1, 0));
    for &v in &f.data {
        let v = stored(v, f.unsigned32);
        lo = lo.min(v);
        hi = hi.max(v);
        if v < pa || v > pb {
            plo = plo.min(v);
            phi = phi.max(v);
        }
    }
    ((lo, hi), (plo <= phi).then_some((plo, phi)))
}

/// The window derived from the pixel values: their full modality range
/// (padding excluded) mapped linearly onto the output.
fn derived(info: &ImageInfo, f: &Frame) -> Window {
    let (all, unpadded) = stats(info, f);
    let (lo, hi) = unpadded.unwrap_or(all);
    let (a, b) = Modality::of(info).range(lo, hi);
    Window { center: (a + b + 1.0) / 2.0, width: (b - a + 1.0).max(1.0), function: VoiFunction::Linear }
}

/// The window the pipeline uses without an override: the file's first, else
/// none when the file has a VOI LUT, else the derived one.
pub fn default_window(info: &ImageInfo, f: &Frame) -> Option<Window> {
    if !f.photometric.is_mono() {
        return None;
    }
    if let Some(w) = info.windows.first() {
        return Some(*w);
    }
    if info.voi_lut.is_some() {
        return None;
    }
    Some(derived(info, f))
}

/// Grey frame to 8-bit display values.
pub fn gray(info: &ImageInfo, f: &Frame, window: Option<Window>) -> Result<Vec<u8>, RenderError> {
    if let Some(w) = window {
        if !w.is_valid() {
            return Err(RenderError::Invalid(format!("window center {} width {} ({:?})", w.center, w.width, w.function)));
        }
    }
    let voi = match (window, info.windows.first(), &info.voi_lut) {
        (Some(w), _, _) | (None, Some(&w), _) => Voi::Window(w),
        (None, None, Some(l)) => Voi::Lut(l),
        (None, None, None) => Voi::Window(derived(info, f)),
    };
    let modality = Modality::of(info);
    let invert = (f.photometric == Photometric::Monochrome1) != info.inverse_shape;
    let pixel = |x: i64| {
        let y = (voi.apply(modality.apply(x)) * 255.0 + 0.5) as u8;
        if invert {
            255 - y
        } else {
            y
        }
    };
    if f.data.is_empty() {
        return Ok(Vec::new());
    }
    let ((lo, hi), _) = stats(info, f);
    if hi - lo < MAX_TABLE {
        let table: Vec<u8> = (lo..=hi).map(pixel).collect();
        if f.unsigned32 {
            return Ok(f.data.iter().map(|&v| table[(i64::from(v as u32) - lo) as usize]).collect());
        }
        let lo = lo as i32;
        return Ok(f.data.iter().map(|&v| table[v.wrapping_sub(lo) as u32 as usize]).collect());
    }
    Ok(f.data.iter().map(|&v| pixel(stored(v, f.unsigned32))).collect())
}

/// Colour frame to 8-bit RGB.
pub fn color(info: &ImageInfo, f: &Frame) -> Result<Vec<u8>, RenderError> {
    let bs = info.bits_stored.min(32);
    let max = ((1u64 << bs) - 1) as f64;
    let to8 = |v: f64| -> u8 { (v * 255.0 / max + 0.5).clamp(0.0, 255.0) as u8 };
    let s = |v: i32| stored(v, f.unsigned32) as f64;
    match &f.photometric {
        Photometric::Palette => {
            let p = info.palette.as_ref().ok_or(RenderError::Missing("palette color lookup tables"))?;
            let mut out = Vec::with_capacity(f.data.len() * 3);
            for &v in &f.data {
                out.extend_from_slice(&p.rgb(stored(v, f.unsigned32)));
            }
            Ok(out)
        }
        Photometric::Rgb | Photometric::YbrRct | Photometric::YbrIct if bs == 8 => Ok(f.data.iter().map(|&v| v.clamp(0, 255) as u8).collect()),
        Photometric::Rgb | Photometric::YbrRct | Photometric::YbrIct => Ok(f.data.iter().map(|&v| to8(s(v))).collect()),
        Photometric::YbrFull | Photometric::YbrFull422 | Photometric::YbrPartial422 | Photometric::YbrPartial420 => {
            let partial = matches!(f.photometric, Photometric::YbrPartial422 | Photometric::YbrPartial420);
            let half = (1u64 << (bs - 1)) as f64;
            let k = max / 255.0;
            let mut out = Vec::with_capacity(f.data.len());
            for p in f.data.chunks_exact(3) {
                let (y, cb, cr) = (s(p[0]), s(p[1]) - half, s(p[2]) - half);
                let rgb = if partial {
                    let y = 1.1644 * (y - 16.0 * k);
                    [y + 1.5960 * cr, y - 0.3918 * cb - 0.8130 * cr, y + 2.0172 * cb]
                } else {
                    [y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb]
                };
                out.extend(rgb.map(to8));
            }
            Ok(out)
        }
        Photometric::Monochrome1 | Photometric::Monochrome2 => Err(RenderError::Invalid("grey frame given to the colour path".into())),
    }
}
