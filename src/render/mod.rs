//! Rendering: from a Part 10 file's pixel data to 8-bit grey or RGB pixels,
//! thumbnails, PNG and JPEG.
//!
//! - `header`: the image attributes, read from dicom-scan's bounded walk
//!   (nothing here hands bytes to dicom-rs)
//! - `decode`: native pixel data (1/8/16/32 bits, either byte order, planar
//!   configuration, YBR_FULL_422) and the mapping of fragments to frames
//! - `codec`: encapsulated frames: `rle`, JPEG (jpeg-decoder, and `jpeg12`
//!   for 12-bit lossy), JPEG-LS (CharLS), JPEG 2000 (OpenJPEG)
//! - `lut`, `display`: Modality LUT → VOI LUT → Presentation LUT; colour
//! - `encode`: resize to fit, PNG, JPEG, placeholder
//! - `budget`: decoded bytes in flight across the process, shared by every codec
//!
//! Frame numbers are 0-based everywhere, in the API and in error messages.
//! Nothing panics on corrupt pixel data: every length is checked, every
//! codec's own header is compared with the DICOM header before it decodes,
//! and a decoded frame is bounded by rows × columns × samples (≤ 1 GiB as
//! i32, checked at open).

mod budget;
pub use budget::REENCODES;
mod codec;
mod decode;
mod display;
mod encode;
mod header;
mod jpeg12;
mod lut;
mod rle;

pub use encode::placeholder;

use crate::dicom::scan;
use decode::PixelSource;
use header::{tag, ImageInfo};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("not a readable DICOM file: {0}")]
    NotDicom(String),
    #[error("no pixel data")]
    NoPixelData,
    #[error("missing or unreadable {0}")]
    Missing(&'static str),
    #[error("invalid image: {0}")]
    Invalid(String),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("busy: {0}")]
    Busy(String),
    #[error("frame {frame} out of range: the image has {frames} frames")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error("pixel data truncated: frame {frame} needs {needed} bytes, {present} present")]
    Truncated { frame: u32, needed: u64, present: u64 },
    #[error("{codec} decode of frame {frame} failed: {reason}")]
    Codec { codec: &'static str, frame: u32, reason: String },
    #[error("invalid lookup table: {0}")]
    Lut(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// VOI LUT Function (0028,1056).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// A VOI window, in modality units (after Rescale Slope/Intercept).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    /// Quality 1–100 (0 is taken as 1, above 100 as 100).
    Jpeg {
        quality: u8,
    },
}

/// An 8-bit image: `channels` is 1 (grey) or 3 (RGB, interleaved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub pixels: Vec<u8>,
}

/// A parsed instance ready to render frames (parse once, render many).
pub struct Instance {
    /// The data set bytes (inflated for the deflated transfer syntax).
    data: Vec<u8>,
    big_endian: bool,
    info: ImageInfo,
    src: PixelSource,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Instance {
    /// Scans a Part 10 file (bounded) and reads the image attributes. Pixel
    /// data is decoded per frame, on demand.
    pub fn open(part10: &[u8]) -> Result<Instance, RenderError> {
        let s = scan::scan(part10, &[tag::MODALITY_LUT_SEQUENCE, tag::VOI_LUT_SEQUENCE]).map_err(|e| RenderError::NotDicom(e.to_string()))?;
        let pixel = match s.element(scan::PIXEL_DATA) {
            Some(e) => *e,
            None if s.element(0x7FE0_0008).is_some() || s.element(0x7FE0_0009).is_some() => {
                return Err(RenderError::Unsupported("float pixel data (7FE0,0008/0009)".into()))
            }
            None => return Err(RenderError::NoPixelData),
        };
        let info = ImageInfo::read(&s)?;
        let ts = info.transfer_syntax.as_str();
        let native = matches!(ts, scan::TS_IMPLICIT_LE | scan::TS_EXPLICIT_LE | scan::TS_EXPLICIT_BE | scan::TS_DEFLATED);
        let big_endian = s.is_big_endian();
        let eot = s.get(tag::EXTENDED_OFFSET_TABLE).map(<[u8]>::to_vec);
        let data = s.dataset.into_owned();
        let src = match (pixel.undefined, native) {
            (false, true) => {
                // Every frame the header declares must be present, so that frame
                // numbers and sizes taken from it (transcode, WADO-RS) are safe.
                let present = (pixel.end - pixel.start) as u64;
                scan::check_frames(u64::from(info.frames), decode::native_frame_bits(&info), present).map_err(|e| RenderError::Invalid(e.to_string()))?;
                PixelSource::Native { start: pixel.start, end: pixel.end, swap_pairs: big_endian && &pixel.vr == b"OW" && info.bits_allocated <= 8 }
            }
            (true, false) if codec::supported(ts) => {
                PixelSource::Encapsulated { frames: decode::map_fragments(&data, pixel.start, pixel.end, &info, eot.as_deref())? }
            }
            (true, false) => return Err(RenderError::UnsupportedTransferSyntax(ts.to_owned())),
            (true, true) => return Err(RenderError::Invalid(format!("encapsulated pixel data in the uncompressed transfer syntax {ts}"))),
            (false, false) => return Err(RenderError::Invalid(format!("native pixel data in the compressed transfer syntax {ts}"))),
        };
        Ok(Instance { data, big_endian, info, src })
    }

    pub fn frames(&self) -> u32 {
        self.info.frames
    }

    pub fn rows(&self) -> u32 {
        self.info.rows
    }

    pub fn columns(&self) -> u32 {
        self.info.cols
    }

    /// Samples per pixel of `raw_frame`'s output (1 or 3).
    pub fn samples(&self) -> u32 {
        self.info.samples
    }

    /// The transfer syntax UID of the pixel data.
    pub fn transfer_syntax(&self) -> &str {
        &self.info.transfer_syntax
    }

    fn frame(&self, frame: u32) -> Result<decode::Frame, RenderError> {
        decode::frame(&self.info, &self.data, &self.src, self.big_endian, frame)
    }

    /// The stored sample values of one frame (0-based), decoded, as i32 (one
    /// per sample, interleaved for colour), before any LUT; for lossless
    /// comparison. Unsigned 32-bit values above `i32::MAX` come back as
    /// their bit pattern. YBR_FULL_422 native data comes back expanded to
    /// three samples per pixel; lossy JPEG colour comes back as RGB when
    /// the codec converted it, JPEG 2000 with a colour transform as RGB.
    pub fn raw_frame(&self, frame: u32) -> Result<Vec<i32>, RenderError> {
        Ok(self.frame(frame)?.data)
    }

    /// One frame (0-based) exactly as stored: native frames as their bytes
    /// (whole bytes; 1-bit frames that start mid-byte are refused), and
    /// encapsulated frames as their fragments joined, still compressed.
    pub fn stored_frame(&self, frame: u32) -> Result<std::borrow::Cow<'_, [u8]>, RenderError> {
        if frame >= self.info.frames {
            return Err(RenderError::FrameOutOfRange { frame, frames: self.info.frames });
        }
        match &self.src {
            decode::PixelSource::Native { start, end, .. } => {
                let bits = decode::native_frame_bits(&self.info);
                let from = bits * u64::from(frame);
                if !from.is_multiple_of(8) {
                    return Err(RenderError::Unsupported("a 1-bit frame that starts inside a byte".into()));
                }
                let (a, b) = ((from / 8) as usize, (from + bits).div_ceil(8) as usize);
                self.data.get(*start..*end).and_then(|v| v.get(a..b)).map(Into::into).ok_or(RenderError::Truncated {
                    frame,
                    needed: (b - a) as u64,
                    present: (end - start).saturating_sub(a) as u64,
                })
            }
            decode::PixelSource::Encapsulated { frames } => {
                let frags = frames.get(frame as usize).ok_or(RenderError::FrameOutOfRange { frame, frames: frames.len() as u32 })?;
                Ok(frags.iter().flat_map(|&(s, e)| self.data[s..e].iter().copied()).collect::<Vec<u8>>().into())
            }
        }
    }

    /// One native frame as stored, in little endian byte order: what the
    /// frame is in Explicit VR Little Endian (a big endian file's words
    /// swapped; the layout, planar configuration included, unchanged).
    pub fn stored_frame_le(&self, frame: u32) -> Result<std::borrow::Cow<'_, [u8]>, RenderError> {
        let bytes = self.stored_frame(frame)?;
        let swap_pairs = matches!(self.src, decode::PixelSource::Native { swap_pairs: true, .. });
        let width = match self.info.bits_allocated {
            16 => 2,
            32 => 4,
            64 => 8,
            _ if swap_pairs => 2,
            _ => 1,
        };
        if !self.big_endian || width == 1 {
            return Ok(bytes);
        }
        Ok(bytes.chunks(width).flat_map(|c| c.iter().rev().copied()).collect::<Vec<u8>>().into())
    }

    /// One frame decoded to native little endian samples of Bits Allocated
    /// (8, 16 or 32), interleaved: what an uncompressed transfer syntax
    /// would carry.
    pub fn native_frame(&self, frame: u32) -> Result<Vec<u8>, RenderError> {
        let samples = self.raw_frame(frame)?;
        Ok(match self.info.bits_allocated {
            8 => samples.iter().map(|&v| v as u8).collect(),
            16 => samples.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
            32 => samples.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
            b => return Err(RenderError::Unsupported(format!("{b} bits allocated as a native frame"))),
        })
    }

    /// The frame (0-based) through the display pipeline: 8-bit grey (1
    /// channel) or RGB (3 channels), full size. `window` overrides the
    /// file's window (grey only).
    pub fn display(&self, frame: u32, window: Option<Window>) -> Result<Rendered, RenderError> {
        let f = self.frame(frame)?;
        let (channels, pixels) = if f.photometric.is_mono() { (1, display::gray(&self.info, &f, window)?) } else { (3, display::color(&self.info, &f)?) };
        Ok(Rendered { width: self.info.cols, height: self.info.rows, channels, pixels })
    }

    /// The window the pipeline would use without an override: the file's
    /// first, or one derived from the frame's values (min/max of modality
    /// values, padding excluded); None for colour, and for grey images
    /// that carry a VOI LUT Sequence and no window.
    pub fn default_window(&self, frame: u32) -> Result<Option<Window>, RenderError> {
        if !self.info.photometric.is_mono() {
            return Ok(None);
        }
        if let Some(w) = self.info.windows.first() {
            return Ok(Some(*w));
        }
        if self.info.voi_lut.is_some() {
            return Ok(None);
        }
        let f = self.frame(frame)?;
        Ok(display::default_window(&self.info, &f))
    }
}
