//! Products: downscale to fit (area averaging), PNG, JPEG, placeholder.

use super::{Format, RenderError, Rendered};

/// For each output index: the first source index and the weights (summing
/// to 1) of the source samples its area covers.
fn area_weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (a, b) = (i as f64 * scale, ((i + 1) as f64 * scale).min(src as f64));
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).clamp(first + 1, src);
            let w: Vec<f32> = (first..last).map(|j| ((b.min(j as f64 + 1.0) - a.max(j as f64)) / (b - a)) as f32).collect();
            (first, w)
        })
        .collect()
}

impl Rendered {
    /// Downscales to fit within `max` px on its longer side (never
    /// upscales), keeping the aspect ratio, by area averaging.
    pub fn fit(&self, max: u32) -> Rendered {
        let max = max.max(1);
        let (w, h) = (self.width as usize, self.height as usize);
        let longer = w.max(h);
        let ch = usize::from(self.channels);
        if longer <= max as usize || self.pixels.len() != w * h * ch || ch == 0 {
            return self.clone();
        }
        let nw = ((w as u64 * u64::from(max) + longer as u64 / 2) / longer as u64).max(1) as usize;
        let nh = ((h as u64 * u64::from(max) + longer as u64 / 2) / longer as u64).max(1) as usize;
        let (xw, yw) = (area_weights(w, nw), area_weights(h, nh));
        // Horizontal pass into f32 rows, then vertical into bytes.
        let mut tmp = vec![0f32; nw * h * ch];
        for y in 0..h {
            let row = &self.pixels[y * w * ch..(y + 1) * w * ch];
            let out = &mut tmp[y * nw * ch..(y + 1) * nw * ch];
            for (x, (first, ws)) in xw.iter().enumerate() {
                for c in 0..ch {
                    let mut acc = 0f32;
                    for (k, wt) in ws.iter().enumerate() {
                        acc += f32::from(row[(first + k) * ch + c]) * wt;
                    }
                    out[x * ch + c] = acc;
                }
            }
        }
        let mut pixels = vec![0u8; nw * nh * ch];
        let stride = nw * ch;
        for (y, (first, ws)) in yw.iter().enumerate() {
            let out = &mut pixels[y * stride..(y + 1) * stride];
            let mut acc = vec![0f32; stride];
            for (k, wt) in ws.iter().enumerate() {
                let src = &tmp[(first + k) * stride..(first + k + 1) * stride];
                for (a, s) in acc.iter_mut().zip(src) {
                    *a += s * wt;
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                *o = (a + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
        Rendered { width: nw as u32, height: nh as u32, channels: self.channels, pixels }
    }

    pub fn encode(&self, format: Format) -> Result<Vec<u8>, RenderError> {
        let expected = self.width as usize * self.height as usize * usize::from(self.channels);
        if self.pixels.len() != expected || !(self.channels == 1 || self.channels == 3) || self.width == 0 || self.height == 0 {
            return Err(RenderError::Encode(format!("{}×{}×{} image with {} bytes", self.width, self.height, self.channels, self.pixels.len())));
        }
        let mut out = Vec::new();
        match format {
            Format::Png => {
                let mut e = png::Encoder::new(&mut out, self.width, self.height);
                e.set_color(if self.channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
                e.set_depth(png::BitDepth::Eight);
                e.set_compression(png::Compression::Fast);
                let mut w = e.write_header().map_err(|e| RenderError::Encode(e.to_string()))?;
                w.write_image_data(&self.pixels).map_err(|e| RenderError::Encode(e.to_string()))?;
                w.finish().map_err(|e| RenderError::Encode(e.to_string()))?;
            }
            Format::Jpeg { quality } => {
                let (w, h) = (u16::try_from(self.width), u16::try_from(self.height));
                let (Ok(w), Ok(h)) = (w, h) else {
                    return Err(RenderError::Encode(format!("{}×{} is beyond JPEG's 65535 limit", self.width, self.height)));
                };
                let color = if self.channels == 1 { jpeg_encoder::ColorType::Luma } else { jpeg_encoder::ColorType::Rgb };
                jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
                    .encode(&self.pixels, w, h, color)
                    .map_err(|e| RenderError::Encode(e.to_string()))?;
            }
        }
        Ok(out)
    }
}

/// A neutral placeholder image (for instances that cannot be decoded),
/// `size` px square: dark grey with a lighter frame and diagonal cross.
pub fn placeholder(size: u32) -> Rendered {
    let n = size.max(1) as usize;
    let border = (n / 32).max(1);
    let mut pixels = vec![48u8; n * n];
    for y in 0..n {
        for x in 0..n {
            let edge = x < border || y < border || x >= n - border || y >= n - border;
            let diag = x.abs_diff(y) < border || (x + y + 1).abs_diff(n) < border;
            if edge || diag {
                pixels[y * n + x] = 96;
            }
        }
    }
    Rendered { width: n as u32, height: n as u32, channels: 1, pixels }
}
