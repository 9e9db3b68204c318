//! viewer-wasm: radhub's browser viewer, compiled to wasm32.
//!
//! It talks to the hub only over HTTP (DICOMweb and radhub's JSON). Today it
//! holds the display step the viewer runs on every frame: window/level of
//! modality values to 8-bit grey (PS3.3 C.11.2.1.2, LINEAR).

/// Maps a modality value to 0..=255 under window `center`/`width` with the
/// LINEAR function of PS3.3 C.11.2.1.2.1.
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

/// Window/level of a frame into RGBA pixels for a canvas; `invert` for
/// MONOCHROME1.
pub fn to_rgba(values: &[f64], center: f64, width: f64, invert: bool, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(values.len() * 4);
    for &v in values {
        let g = window_linear(v, center, width);
        let g = if invert { 255 - g } else { g };
        out.extend([g, g, g, 255]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_ends_and_middle() {
        // CT brain window 40/80: -0.5..79.5 maps onto 0..255.
        assert_eq!(window_linear(-100.0, 40.0, 80.0), 0);
        assert_eq!(window_linear(200.0, 40.0, 80.0), 255);
        let mid = window_linear(40.0, 40.0, 80.0);
        assert!((127..=129).contains(&mid), "{mid}");
        let mut out = Vec::new();
        to_rgba(&[-1000.0, 1000.0], 40.0, 80.0, true, &mut out);
        assert_eq!(out, vec![255, 255, 255, 255, 0, 0, 0, 255]);
    }
}
