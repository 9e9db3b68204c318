//! The image attributes the pipeline needs, read from a scanned data set
//! (dicom-scan has already checked every length against the bytes present).

use crate::dicom::scan::{self, Scanned};

use super::lut::{Lut, Palette};
use super::{RenderError, VoiFunction, Window};

pub(crate) mod tag {
    pub const SAMPLES_PER_PIXEL: u32 = 0x0028_0002;
    pub const PHOTOMETRIC: u32 = 0x0028_0004;
    pub const PLANAR_CONFIGURATION: u32 = 0x0028_0006;
    pub const NUMBER_OF_FRAMES: u32 = 0x0028_0008;
    pub const ROWS: u32 = 0x0028_0010;
    pub const COLUMNS: u32 = 0x0028_0011;
    pub const BITS_ALLOCATED: u32 = 0x0028_0100;
    pub const BITS_STORED: u32 = 0x0028_0101;
    pub const HIGH_BIT: u32 = 0x0028_0102;
    pub const PIXEL_REPRESENTATION: u32 = 0x0028_0103;
    pub const PIXEL_PADDING_VALUE: u32 = 0x0028_0120;
    pub const PIXEL_PADDING_RANGE_LIMIT: u32 = 0x0028_0121;
    pub const WINDOW_CENTER: u32 = 0x0028_1050;
    pub const WINDOW_WIDTH: u32 = 0x0028_1051;
    pub const RESCALE_INTERCEPT: u32 = 0x0028_1052;
    pub const RESCALE_SLOPE: u32 = 0x0028_1053;
    pub const VOI_LUT_FUNCTION: u32 = 0x0028_1056;
    pub const MODALITY_LUT_SEQUENCE: u32 = 0x0028_3000;
    pub const LUT_DESCRIPTOR: u32 = 0x0028_3002;
    pub const LUT_DATA: u32 = 0x0028_3006;
    pub const VOI_LUT_SEQUENCE: u32 = 0x0028_3010;
    pub const PRESENTATION_LUT_SHAPE: u32 = 0x2050_0020;
    pub const RED_DESCRIPTOR: u32 = 0x0028_1101;
    pub const RED_DATA: u32 = 0x0028_1201;
    pub const RED_SEGMENTED: u32 = 0x0028_1221;
    pub const EXTENDED_OFFSET_TABLE: u32 = 0x7FE0_0001;
}

/// How the stored samples encode colour (PS3.3 C.7.6.3.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Photometric {
    Monochrome1,
    Monochrome2,
    Rgb,
    YbrFull,
    YbrFull422,
    YbrPartial422,
    YbrPartial420,
    YbrIct,
    YbrRct,
    Palette,
}

impl Photometric {
    fn parse(s: &str) -> Result<Photometric, RenderError> {
        Ok(match s {
            "MONOCHROME1" => Photometric::Monochrome1,
            "MONOCHROME2" => Photometric::Monochrome2,
            "RGB" => Photometric::Rgb,
            "YBR_FULL" => Photometric::YbrFull,
            "YBR_FULL_422" => Photometric::YbrFull422,
            "YBR_PARTIAL_422" => Photometric::YbrPartial422,
            "YBR_PARTIAL_420" => Photometric::YbrPartial420,
            "YBR_ICT" => Photometric::YbrIct,
            "YBR_RCT" => Photometric::YbrRct,
            "PALETTE COLOR" => Photometric::Palette,
            "" => return Err(RenderError::Missing("Photometric Interpretation (0028,0004)")),
            other => return Err(RenderError::Unsupported(format!("photometric interpretation {other}"))),
        })
    }

    pub fn is_mono(&self) -> bool {
        matches!(self, Photometric::Monochrome1 | Photometric::Monochrome2)
    }
}

/// Everything about the image except its pixel bytes.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    pub transfer_syntax: String,
    pub rows: u32,
    pub cols: u32,
    pub samples: u32,
    pub bits_allocated: u32,
    pub bits_stored: u32,
    pub high_bit: u32,
    pub signed: bool,
    pub planar: bool,
    pub photometric: Photometric,
    pub frames: u32,
    pub slope: f64,
    pub intercept: f64,
    pub modality_lut: Option<Lut>,
    pub windows: Vec<Window>,
    pub voi_lut: Option<Lut>,
    /// Pixel Padding Value and, if present, Pixel Padding Range Limit (stored values).
    pub padding: Option<(i64, i64)>,
    /// Presentation LUT Shape INVERSE.
    pub inverse_shape: bool,
    pub palette: Option<Palette>,
}

/// The ceiling on one decoded frame: samples × 4 bytes (as i32) ≤ 1 GiB.
pub const MAX_FRAME_SAMPLES: u64 = (1 << 30) / 4;

pub(crate) fn text(s: &Scanned<'_>, t: u32) -> Option<String> {
    let v = s.get(t)?;
    let v = String::from_utf8_lossy(v);
    let v = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!v.is_empty()).then(|| v.to_owned())
}

/// The values of a DS or IS element.
pub(crate) fn numbers(s: &Scanned<'_>, t: u32) -> Vec<f64> {
    text(s, t).map(|v| v.split('\\').filter_map(|x| x.trim().parse::<f64>().ok()).filter(|x| x.is_finite()).collect()).unwrap_or_default()
}

/// A US (or SS) value read with the data set's byte order.
pub(crate) fn us(v: &[u8], i: usize, be: bool) -> Option<u16> {
    let b = v.get(2 * i..2 * i + 2)?;
    Some(if be { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
}

fn us_attr(s: &Scanned<'_>, t: u32) -> Option<u32> {
    s.get(t).and_then(|v| us(v, 0, s.is_big_endian())).map(u32::from)
}

impl ImageInfo {
    pub fn read(s: &Scanned<'_>) -> Result<ImageInfo, RenderError> {
        let need = |t: u32, what: &'static str| us_attr(s, t).ok_or(RenderError::Missing(what));
        let rows = need(tag::ROWS, "Rows (0028,0010)")?;
        let cols = need(tag::COLUMNS, "Columns (0028,0011)")?;
        let bits_allocated = need(tag::BITS_ALLOCATED, "Bits Allocated (0028,0100)")?;
        let samples = us_attr(s, tag::SAMPLES_PER_PIXEL).unwrap_or(1);
        let bits_stored = us_attr(s, tag::BITS_STORED).unwrap_or(bits_allocated);
        let high_bit = us_attr(s, tag::HIGH_BIT).unwrap_or(bits_stored.saturating_sub(1));
        let signed = us_attr(s, tag::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
        let photometric = Photometric::parse(&text(s, tag::PHOTOMETRIC).unwrap_or_default())?;
        let frames = match numbers(s, tag::NUMBER_OF_FRAMES).first() {
            Some(&n) if n >= 1.0 && n <= f64::from(u32::MAX) => n as u32,
            _ => 1,
        };
        if rows == 0 || cols == 0 {
            return Err(RenderError::Invalid(format!("image of {rows}×{cols} pixels")));
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(RenderError::Unsupported(format!("Bits Allocated {bits_allocated}")));
        }
        if bits_stored == 0 || bits_stored > bits_allocated || high_bit >= bits_allocated || high_bit + 1 < bits_stored {
            return Err(RenderError::Invalid(format!("Bits Stored {bits_stored} / High Bit {high_bit} with Bits Allocated {bits_allocated}")));
        }
        let want = if photometric.is_mono() || photometric == Photometric::Palette { 1 } else { 3 };
        if samples != want {
            return Err(RenderError::Invalid(format!("{samples} samples per pixel for {photometric:?}")));
        }
        let planar = us_attr(s, tag::PLANAR_CONFIGURATION) == Some(1) && samples > 1;
        let native = matches!(s.transfer_syntax.as_str(), scan::TS_IMPLICIT_LE | scan::TS_EXPLICIT_LE | scan::TS_EXPLICIT_BE | scan::TS_DEFLATED);
        // PS3.3 C.7.6.3.1.3: YBR_FULL_422 is stored pixel-interleaved (two
        // luminance samples, then the shared chrominance); a codec's output
        // is unaffected, but native planes of it have no defined layout.
        if planar && native && photometric == Photometric::YbrFull422 {
            return Err(RenderError::Invalid("Planar Configuration 1 with native YBR_FULL_422 pixel data (PS3.3 C.7.6.3.1.3 requires 0)".into()));
        }
        let per_frame = u64::from(rows) * u64::from(cols) * u64::from(samples);
        if per_frame > MAX_FRAME_SAMPLES {
            return Err(RenderError::TooLarge(format!("{rows}×{cols}×{samples} samples per frame exceeds the 1 GiB cap")));
        }
        let be = s.is_big_endian();
        let slope = numbers(s, tag::RESCALE_SLOPE).first().copied().filter(|v| *v != 0.0).unwrap_or(1.0);
        let intercept = numbers(s, tag::RESCALE_INTERCEPT).first().copied().unwrap_or(0.0);
        let modality_lut = first_lut(s, tag::MODALITY_LUT_SEQUENCE, signed)?;
        let voi_lut = first_lut(s, tag::VOI_LUT_SEQUENCE, signed)?;
        let function = match text(s, tag::VOI_LUT_FUNCTION).as_deref() {
            Some("LINEAR_EXACT") => VoiFunction::LinearExact,
            Some("SIGMOID") => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        };
        let windows = numbers(s, tag::WINDOW_CENTER)
            .into_iter()
            .zip(numbers(s, tag::WINDOW_WIDTH))
            .map(|(center, width)| Window { center, width, function })
            .filter(|w| w.is_valid())
            .collect();
        let signed16 = |v: u16| if signed { i64::from(v as i16) } else { i64::from(v) };
        let padding = s.get(tag::PIXEL_PADDING_VALUE).and_then(|v| us(v, 0, be)).map(|p| {
            let p = signed16(p);
            let limit = s.get(tag::PIXEL_PADDING_RANGE_LIMIT).and_then(|v| us(v, 0, be)).map(signed16).unwrap_or(p);
            (p.min(limit), p.max(limit))
        });
        let inverse_shape = text(s, tag::PRESENTATION_LUT_SHAPE).as_deref() == Some("INVERSE");
        let palette = if photometric == Photometric::Palette { Some(Palette::read(s, tag::RED_DESCRIPTOR, tag::RED_DATA, tag::RED_SEGMENTED)?) } else { None };
        Ok(ImageInfo {
            transfer_syntax: s.transfer_syntax.clone(),
            rows,
            cols,
            samples,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            planar,
            photometric,
            frames,
            slope,
            intercept,
            modality_lut,
            windows,
            voi_lut,
            padding,
            inverse_shape,
            palette,
        })
    }

    /// Samples in one decoded frame (checked against the cap at read).
    pub fn frame_samples(&self) -> usize {
        self.rows as usize * self.cols as usize * self.samples as usize
    }
}

/// The first item of a LUT sequence (Modality or VOI), if any.
fn first_lut(s: &Scanned<'_>, seq: u32, signed: bool) -> Result<Option<Lut>, RenderError> {
    let (mut desc, mut data) = (None, None);
    for (item, t, v) in s.nested_values(seq) {
        if item != 0 {
            continue;
        }
        match t {
            tag::LUT_DESCRIPTOR => desc = Some(v),
            tag::LUT_DATA => data = Some(v),
            _ => {}
        }
    }
    match (desc, data) {
        (Some(d), Some(v)) => Lut::parse(d, v, s.is_big_endian(), signed).map(Some),
        _ => Ok(None),
    }
}
