//! Re-encoding a compressed instance as native (uncompressed) Pixel Data, for
//! a C-MOVE or C-GET peer that does not accept the stored transfer syntax.
//! The frames come from `render`'s decoders; every other attribute is kept.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::dicom::extract::read_meta;
use crate::render::Instance;

const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const PHOTOMETRIC: Tag = Tag(0x0028, 0x0004);
const PLANAR_CONFIGURATION: Tag = Tag(0x0028, 0x0006);
const NATIVE: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];
/// Ceiling on the native Pixel Data of one re-encoded instance.
pub const MAX_NATIVE_BYTES: u64 = 2 << 30;

/// `part10` re-encoded in `ts` (explicit or implicit VR little endian).
pub fn to_native(part10: &[u8], ts: &str) -> Result<Vec<u8>, String> {
    if !NATIVE.contains(&ts) {
        return Err(format!("radhub transcodes only to uncompressed syntaxes, not {ts}"));
    }
    let target = TransferSyntaxRegistry.get(ts).ok_or_else(|| format!("unknown transfer syntax {ts}"))?;
    let meta = read_meta(part10).map_err(|e| e.to_string())?;
    let inst = Instance::open(part10).map_err(|e| e.to_string())?;
    let bytes_per_sample: u64 = match meta.bits_allocated {
        8 => 1,
        16 => 2,
        32 => 4,
        b => return Err(format!("cannot re-encode {b}-bit pixel data")),
    };
    // The header's sizes are checked against the pixel data at open, but a
    // compressed image's frames may still decode to far more than its bytes:
    // the product is checked, capped, and reserved fallibly (an infallible
    // reservation aborts the process when it cannot be met).
    let dims = [u64::from(inst.columns()), u64::from(inst.samples()), u64::from(inst.frames()), bytes_per_sample];
    let total = dims.into_iter().try_fold(u64::from(inst.rows()), u64::checked_mul).filter(|&t| t <= MAX_NATIVE_BYTES).ok_or_else(|| {
        format!(
            "{} frames of {}×{}×{} samples of {bytes_per_sample} bytes exceed the {MAX_NATIVE_BYTES}-byte cap on a re-encoded instance",
            inst.frames(),
            inst.rows(),
            inst.columns(),
            inst.samples()
        )
    })?;
    // Re-encodings running at once share one budget of native bytes.
    let _share = crate::render::REENCODES.acquire(total).map_err(|e| e.to_string())?;
    let mut pixels = Vec::new();
    let total = usize::try_from(total).map_err(|_| format!("{total} bytes of native pixel data exceed the address space"))?;
    pixels.try_reserve_exact(total).map_err(|e| format!("cannot hold {total} bytes of native pixel data: {e}"))?;
    for f in 0..inst.frames() {
        for v in inst.raw_frame(f).map_err(|e| e.to_string())? {
            pixels.extend(v.to_le_bytes().into_iter().take(bytes_per_sample as usize));
        }
    }
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    // Skip the preamble: dicom-object reads from the magic code on.
    dicom_scan::scan_ordered(part10).map_err(|e| e.to_string())?;
    let mut obj = dicom_object::from_reader(part10.get(128..).ok_or("not a Part 10 file")?).map_err(|e| e.to_string())?;
    obj.put(DataElement::new(PIXEL_DATA, if bytes_per_sample == 1 { VR::OB } else { VR::OW }, PrimitiveValue::from(pixels)));
    if inst.samples() == 3 {
        // JPEG and JPEG 2000 decoders hand back RGB, interleaved.
        let ts_from = meta.transfer_syntax.as_str();
        let colour_transformed = ts_from.starts_with("1.2.840.10008.1.2.4.");
        if colour_transformed && meta.photometric.starts_with("YBR") {
            obj.put(DataElement::new(PHOTOMETRIC, VR::CS, PrimitiveValue::from("RGB")));
        }
        obj.put(DataElement::new(PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    }
    obj.update_meta(|m| m.set_transfer_syntax(target));
    let mut out = Vec::new();
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
