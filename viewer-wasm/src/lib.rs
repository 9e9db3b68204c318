//! viewer-wasm: the image side of radhub's browser viewer, compiled to
//! wasm32 and driven by the page's script (`www/`), which owns the screens
//! and talks to the hub only over HTTP (DICOMweb and radhub's JSON).
//!
//! Here: a series from its WADO-RS metadata ([`series`]), frames decoded
//! from WADO-RS answers ([`multipart`], [`decode`]: uncompressed, RLE, JPEG
//! baseline/extended/lossless), rescale and window folded into one lookup
//! table per display ([`image`]), where the image sits on the canvas
//! ([`view`]), measurements in mm and modality units ([`measure`]) and the
//! CT presets ([`presets`]). Every function is plain Rust, tested natively;
//! the `#[wasm_bindgen]` layer below only converts.

pub mod decode;
pub mod image;
pub mod measure;
pub mod multipart;
pub mod presets;
pub mod series;
pub mod view;

use wasm_bindgen::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("multipart answer: {0}")]
    Multipart(&'static str),
    #[error("frame has {have} bytes or values where {need} are needed")]
    Short { need: usize, have: usize },
    #[error("not decoded in the browser: {0}")]
    Unsupported(String),
    #[error("RLE: {0}")]
    Rle(&'static str),
    #[error("JPEG: {0}")]
    Jpeg(String),
    #[error("metadata: {0}")]
    Metadata(String),
}

fn js(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

/// One series' slices, their decoded frames and the RGBA buffer the page
/// draws from (shared memory: no copy per frame).
#[wasm_bindgen]
pub struct Stack {
    series: series::Series,
    frames: Vec<Option<image::Frame>>,
    renderer: image::Renderer,
}

// Plain numbers across the JS boundary: points arrive as coordinates.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
impl Stack {
    /// A stack from the series' WADO-RS metadata (the JSON text).
    #[wasm_bindgen(constructor)]
    pub fn new(metadata: &str) -> Result<Stack, JsError> {
        let series = series::Series::from_metadata(metadata).map_err(js)?;
        let frames = series.slices.iter().map(|_| None).collect();
        Ok(Stack { series, frames, renderer: image::Renderer::default() })
    }

    pub fn len(&self) -> usize {
        self.series.slices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.slices.is_empty()
    }

    pub fn sop_uid(&self, i: usize) -> String {
        self.slice(i).map(|s| s.sop_uid.clone()).unwrap_or_default()
    }

    /// The slice that is frame `frame` (1-based) of instance `sop_uid`, or -1.
    pub fn index_of(&self, sop_uid: &str, frame: u32) -> i32 {
        self.series.slices.iter().position(|s| s.sop_uid == sop_uid && s.frame == frame).map_or(-1, |i| i as i32)
    }

    /// The 1-based frame of the instance that slice `i` is.
    pub fn frame_number(&self, i: usize) -> u32 {
        self.slice(i).map_or(1, |s| s.frame)
    }

    /// Decodes a frame answer for slice `i`; an error means the page should
    /// ask again for `application/octet-stream` (the hub decodes), and say
    /// so with `decoded_by_hub`.
    pub fn put(&mut self, i: usize, content_type: &str, body: &[u8], decoded_by_hub: bool) -> Result<(), JsError> {
        let s = self.series.slices.get(i).ok_or_else(|| JsError::new("no such slice"))?;
        let f = decode::frame(content_type, body, &s.desc, decoded_by_hub).map_err(js)?;
        self.frames[i] = Some(f);
        Ok(())
    }

    pub fn loaded(&self, i: usize) -> bool {
        self.frames.get(i).is_some_and(Option::is_some)
    }

    pub fn loaded_count(&self) -> usize {
        self.frames.iter().filter(|f| f.is_some()).count()
    }

    /// Slices still to fetch, nearest `current` first.
    pub fn fetch_order(&self, current: usize) -> Vec<u32> {
        let loaded: Vec<bool> = self.frames.iter().map(Option::is_some).collect();
        self.series.fetch_order(current, &loaded)
    }

    pub fn width(&self, i: usize) -> u32 {
        self.slice(i).map_or(0, |s| s.desc.columns)
    }

    pub fn height(&self, i: usize) -> u32 {
        self.slice(i).map_or(0, |s| s.desc.rows)
    }

    /// Row spacing / column spacing (1 without Pixel Spacing).
    pub fn aspect(&self, i: usize) -> f64 {
        self.slice(i).and_then(|s| s.spacing).map_or(1.0, |(r, c)| r / c)
    }

    /// Renders slice `i` and answers the address of its RGBA pixels in
    /// wasm memory (width × height × 4 bytes), or 0 if not loaded.
    pub fn render(&mut self, i: usize, center: f64, width: f64, invert: bool) -> usize {
        let Some(Some(f)) = self.frames.get(i) else { return 0 };
        self.renderer.render(f, image::Display { center, width, invert });
        self.renderer.out.as_ptr() as usize
    }

    /// The windows the file carries, as JSON `[{center, width, name}]`.
    pub fn windows_json(&self, i: usize) -> String {
        let w: Vec<serde_json::Value> = self
            .slice(i)
            .map(|s| &s.windows[..])
            .unwrap_or(&[])
            .iter()
            .map(|w| serde_json::json!({"center": w.center, "width": w.width, "name": w.name}))
            .collect();
        serde_json::Value::Array(w).to_string()
    }

    /// `[center, width]`: the file's first window, else one spanning the
    /// loaded frame's values.
    pub fn default_window(&self, i: usize) -> Vec<f64> {
        if let Some(w) = self.slice(i).and_then(|s| s.windows.first()) {
            return vec![w.center, w.width];
        }
        match self.frames.get(i) {
            Some(Some(f)) if f.is_colour() => vec![127.5, 256.0],
            Some(Some(f)) => {
                let (c, w) = f.full_window();
                vec![c, w]
            }
            _ => vec![],
        }
    }

    /// What the overlay and sync need about slice `i`, as JSON.
    pub fn info_json(&self, i: usize) -> String {
        let Some(s) = self.slice(i) else { return "null".into() };
        serde_json::json!({
            "sop_uid": s.sop_uid,
            "instance_number": s.instance_number,
            "frame": s.frame,
            "frames": s.frames_in_instance,
            "location": s.location(),
            "position": s.position,
            "thickness": s.thickness,
            "spacing": s.spacing.map(|(r, c)| [r, c]),
            "frame_ms": s.frame_ms,
            "rows": s.desc.rows,
            "columns": s.desc.columns,
            "photometric": s.desc.photometric,
            "colour": s.desc.samples == 3,
        })
        .to_string()
    }

    /// The slice nearest `location` (mm along the normal), or -1.
    pub fn nearest(&self, location: f64) -> i32 {
        self.series.nearest(location).map_or(-1, |i| i as i32)
    }

    /// Modality value under image point (x, y), NaN outside or unloaded.
    pub fn value_at(&self, i: usize, x: f64, y: f64) -> f64 {
        match self.frames.get(i) {
            Some(Some(f)) if x >= 0.0 && y >= 0.0 => f.value(x as u32, y as u32).unwrap_or(f64::NAN),
            _ => f64::NAN,
        }
    }

    /// Length in mm between two image points; NaN without Pixel Spacing.
    pub fn length_mm(&self, i: usize, x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
        self.slice(i).and_then(|s| s.spacing).map_or(f64::NAN, |sp| measure::length_mm((x0, y0), (x1, y1), sp))
    }

    pub fn angle_deg(&self, i: usize, ax: f64, ay: f64, vx: f64, vy: f64, bx: f64, by: f64) -> f64 {
        let sp = self.slice(i).and_then(|s| s.spacing).unwrap_or((1.0, 1.0));
        measure::angle_deg((ax, ay), (vx, vy), (bx, by), sp)
    }

    /// `[mean, sd, min, max, pixels, area_mm2]` inside an ellipse, or empty.
    pub fn ellipse_stats(&self, i: usize, cx: f64, cy: f64, rx: f64, ry: f64) -> Vec<f64> {
        let (Some(Some(f)), Some(s)) = (self.frames.get(i), self.slice(i)) else { return vec![] };
        measure::ellipse_stats(f, (cx, cy), (rx, ry), s.spacing).map(|r| vec![r.mean, r.sd, r.min, r.max, r.pixels as f64, r.area_mm2]).unwrap_or_default()
    }
}

impl Stack {
    fn slice(&self, i: usize) -> Option<&series::Slice> {
        self.series.slices.get(i)
    }
}

/// Zoom, pan, rotation and flips of one viewport.
#[wasm_bindgen]
#[derive(Default)]
pub struct View {
    v: view::View,
}

#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
impl View {
    #[wasm_bindgen(constructor)]
    pub fn new() -> View {
        View::default()
    }

    /// The canvas transform `[a, b, c, d, e, f]` for an image of `iw`×`ih`.
    pub fn matrix(&self, cw: f64, ch: f64, iw: f64, ih: f64, aspect: f64) -> Vec<f64> {
        self.v.matrix((cw, ch), (iw, ih), aspect).to_vec()
    }

    /// The image point under canvas point (x, y): `[x, y]`.
    pub fn to_image(&self, cw: f64, ch: f64, iw: f64, ih: f64, aspect: f64, x: f64, y: f64) -> Vec<f64> {
        let p = view::invert(&self.v.matrix((cw, ch), (iw, ih), aspect), (x, y));
        vec![p.0, p.1]
    }

    /// Zooms by `factor`, keeping the image point under (x, y) in place.
    pub fn zoom_at(&mut self, factor: f64, x: f64, y: f64, cw: f64, ch: f64, iw: f64, ih: f64, aspect: f64) {
        let (canvas, image) = ((cw, ch), (iw, ih));
        let p = view::invert(&self.v.matrix(canvas, image, aspect), (x, y));
        self.v.zoom = (self.v.zoom * factor).clamp(0.05, 40.0);
        let q = view::apply(&self.v.matrix(canvas, image, aspect), p);
        self.v.pan.0 += x - q.0;
        self.v.pan.1 += y - q.1;
    }

    pub fn pan_by(&mut self, dx: f64, dy: f64) {
        self.v.pan.0 += dx;
        self.v.pan.1 += dy;
    }

    pub fn rotate(&mut self) {
        self.v.turns = (self.v.turns + 1) % 4;
    }

    pub fn flip_h(&mut self) {
        self.v.flip_h = !self.v.flip_h;
    }

    pub fn flip_v(&mut self) {
        self.v.flip_v = !self.v.flip_v;
    }

    /// Fit the canvas (keeping rotation and flips).
    pub fn fit(&mut self) {
        self.v.zoom = 1.0;
        self.v.pan = (0.0, 0.0);
        self.v.one_to_one = false;
    }

    /// One image pixel per canvas pixel, centred.
    pub fn one_to_one(&mut self) {
        self.v = view::View { one_to_one: true, zoom: 1.0, pan: (0.0, 0.0), ..self.v.clone() };
    }

    pub fn reset(&mut self) {
        self.v = view::View::default();
    }

    /// Canvas pixels per image column.
    pub fn scale(&self, cw: f64, ch: f64, iw: f64, ih: f64, aspect: f64) -> f64 {
        self.v.scale((cw, ch), (iw, ih), aspect)
    }
}

/// The CT presets as JSON `[{name, center, width}]`.
#[wasm_bindgen]
pub fn presets_json() -> String {
    let p: Vec<serde_json::Value> = presets::PRESETS.iter().map(|(n, c, w)| serde_json::json!({"name": n, "center": c, "width": w})).collect();
    serde_json::Value::Array(p).to_string()
}
