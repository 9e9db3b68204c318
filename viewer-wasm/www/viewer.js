// The image viewer: series strip, viewports (1×1, 1×2, 2×2) with stack
// scroll, window/level, zoom/pan/rotate/flip, measurements, cine, and a
// prior from any site side by side with scrolling synchronised by slice
// position. Pixels: frames over WADO-RS, decoded and windowed in WASM
// (Stack), drawn to a canvas through an offscreen image and the view's
// matrix (View), so a drag costs no round trip to the hub.
import { Stack, View, presets_json } from "./pkg/viewer_wasm.js";
import { api, el, enc, $, status, personName, dicomDate, SignedOut, refusal } from "./app.js";
import { openReport, closeReport } from "./report.js";

let memory = null;
let PRESETS = [];
let wasmReady = null;
/// Given the WASM module's instantiation (app.js); stacks wait for it.
export function ready(instantiating) {
  wasmReady = instantiating.then((wasm) => {
    memory = wasm.memory;
    PRESETS = JSON.parse(presets_json());
  });
}
// Frames as stored when the WASM side decodes them (JPEG baseline,
// extended, lossless; RLE), else uncompressed from the hub (which decodes
// JPEG-LS, JPEG 2000 and the rest).
const JPEG = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];
const ACCEPT = [
  ...JPEG.map((ts) => `multipart/related; type="image/jpeg"; transfer-syntax=${ts}`),
  `multipart/related; type="image/dicom-rle"; transfer-syntax=1.2.840.10008.1.2.5`,
  `multipart/related; type="application/octet-stream"`,
].join(", ");
const NATIVE = `multipart/related; type="application/octet-stream"`;
const FETCHERS = 6;

const TOOLS = [
  ["wl", "W/L", "w"],
  ["pan", "Pan", "p"],
  ["zoom", "Zoom", "z"],
  ["scroll", "Scroll", "s"],
  ["length", "Length", "l"],
  ["angle", "Angle", "a"],
  ["roi", "ROI", "o"],
];

const state = {
  study: null,
  priors: [],
  viewports: [],
  active: 0,
  layout: "1x1",
  tool: "wl",
  sync: true,
  firstImage: false,
  open: 0,
};

async function answer(url, accept, signal) {
  const r = await fetch(url, { headers: { Accept: accept }, credentials: "same-origin", signal });
  if (!r.ok) throw await refusal(r);
  return r;
}

async function metadataText(url, signal) {
  return (await answer(url, "application/dicom+json", signal)).text();
}

async function frameFetch(url, accept, signal) {
  const r = await answer(url, accept, signal);
  return [r.headers.get("content-type") || "", new Uint8Array(await r.arrayBuffer())];
}

/// Puts a frame answer into slice `k`; one not decodable here (e.g. 12-bit
/// lossy JPEG) is asked for again uncompressed, decoded by the hub. Answers
/// what was put, to put into another stack.
async function putFrame(stack, k, [type, body], url, signal) {
  try {
    stack.put(k, type, body, false);
    return { type, body, byHub: false };
  } catch {
    const [t, b] = await frameFetch(url, NATIVE, signal);
    stack.put(k, t, b, true);
    return { type: t, body: b, byHub: true };
  }
}

class Viewport {
  constructor(index) {
    this.index = index;
    this.el = el("div", { className: "vp", tabIndex: 0 });
    this.canvas = el("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.off = document.createElement("canvas");
    this.offCtx = this.off.getContext("2d");
    this.ov = Object.fromEntries(["tl", "tr", "bl", "br"].map((c) => [c, el("div", { className: `ov ${c}` })]));
    this.bar = el("div", { className: "progress" });
    this.el.append(this.canvas, ...Object.values(this.ov), this.bar);
    this.stack = null;
    this.i = 0;
    this.window = null;
    this.invert = false;
    this.measures = new Map();
    this.pending = null;
    this.syncOffset = 0;
    this.rendered = "";
    this.waiters = [];
    this.cine = 0;
    this.note = "";
    this.cursor = null;
    this.bind();
  }

  /// Made on first use: the first image's requests go out before the WASM
  /// module is ready.
  get view() {
    this._view ??= new View();
    return this._view;
  }

  // ---- loading ----

  async load(study, series) {
    this.abort?.abort();
    this.abort = new AbortController();
    const signal = this.abort.signal;
    this.stopCine();
    this.stack?.free();
    Object.assign(this, { stack: null, study, series, i: 0, window: null, invert: false, rendered: "", measures: new Map(), failed: new Set(), fileWindow: -1, syncOffset: 0 });
    this._view?.reset();
    this.note = study.local ? "Loading…" : `Fetching from ${study.site}…`;
    this.paint();
    const poll = study.local ? 0 : setInterval(() => this.fetchProgress(study), 700);
    // The series' first image on its own, beside the series' metadata: it
    // is drawn as soon as it is in, and the rest follow.
    // The series' metadata is asked for once that image is in: on a hub that
    // has not encoded it yet, its encoding would hold up that frame.
    const first = series.first_image ? this.firstImage(study, series, signal).catch(() => null) : Promise.resolve(null);
    try {
      await first;
      const text = await metadataText(`/dicom-web/studies/${enc(study.uid)}/series/${enc(series.uid)}/metadata`, signal);
      await wasmReady;
      const full = new Stack(text);
      const quick = await first;
      if (signal.aborted) return full.free();
      if (quick) {
        const k = full.index_of(series.first_image, 1);
        if (k >= 0) {
          full.put(k, quick.type, quick.body, quick.byHub);
          this.i = k;
        }
      }
      if (this.stack !== full) this.stack?.free();
      this.stack = full;
    } catch (e) {
      if (signal.aborted) return;
      this.note = e.message;
      this.paint();
      throw e;
    } finally {
      clearInterval(poll);
    }
    this.note = "";
    this.started = performance.now();
    this.paint();
    this.fetchAll(signal);
  }

  /// The series' first image alone, shown in a one-slice stack until the
  /// series' own arrives.
  async firstImage(study, series, signal) {
    const base = `/dicom-web/studies/${enc(study.uid)}/series/${enc(series.uid)}/instances/${enc(series.first_image)}`;
    const url = `${base}/frames/1`;
    const [meta, frame] = await Promise.all([metadataText(`${base}/metadata`, signal), frameFetch(url, ACCEPT, signal)]);
    await wasmReady;
    const one = new Stack(meta);
    const put = await putFrame(one, 0, frame, url, signal);
    if (!this.stack && !signal.aborted) {
      this.stack = one;
      this.i = 0;
      this.note = "";
      this.draw();
    } else one.free();
    return put;
  }

  async fetchProgress(study) {
    const s = await api(`/api/studies/${enc(study.uid)}`).catch(() => null);
    if (s && !this.stack) {
      this.note = `Fetching from ${study.site}: ${s.local_instances} of ${s.instances} images`;
      this.paint();
    }
  }

  frameUrl(k) {
    const s = this.stack;
    return `/dicom-web/studies/${enc(this.study.uid)}/series/${enc(this.series.uid)}/instances/${enc(s.sop_uid(k))}/frames/${s.frame_number(k)}`;
  }

  /// Frames nearest the current slice first, re-planned after each, so
  /// scrolling ahead of the download pulls the frames being looked at.
  async fetchAll(signal) {
    const stack = this.stack;
    const inflight = new Set();
    const next = () => {
      for (const k of stack.fetch_order(this.i)) if (!inflight.has(k) && !this.failed.has(k)) return k;
      return -1;
    };
    const worker = async () => {
      for (;;) {
        if (signal.aborted) return;
        const k = next();
        if (k < 0) return;
        inflight.add(k);
        try {
          const url = this.frameUrl(k);
          await putFrame(stack, k, await frameFetch(url, ACCEPT, signal), url, signal);
        } catch (e) {
          if (signal.aborted) return;
          if (e instanceof SignedOut) throw e;
          this.failed.add(k);
          status(`slice ${k + 1}: ${e.message}`);
        }
        inflight.delete(k);
        if (this.stack !== stack) return;
        if (k === this.i) this.paint();
        this.showProgress();
      }
    };
    await Promise.all(Array.from({ length: FETCHERS }, worker)).catch(() => {});
    if (this.stack === stack && stack.loaded_count() === stack.len()) {
      this.bar.style.width = "0";
      if (!performance.getEntriesByName("radhub:series-loaded").length) performance.mark("radhub:series-loaded");
      status(`${stack.len()} images in ${Math.round(performance.now() - this.started)} ms`);
    }
  }

  showProgress() {
    const s = this.stack;
    this.bar.style.width = `${(100 * s.loaded_count()) / s.len()}%`;
  }

  // ---- drawing ----

  /// Draws at the next animation frame (many pointer moves, one draw).
  paint() {
    if (!this.raf) this.raf = requestAnimationFrame(() => ((this.raf = 0), this.draw()));
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  draw() {
    const { canvas, ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const ch = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== cw || canvas.height !== ch) Object.assign(canvas, { width: cw, height: ch });
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cw, ch);
    const s = this.stack;
    const drawn = s && s.loaded(this.i);
    if (drawn) {
      const i = this.i;
      const w = s.width(i);
      const h = s.height(i);
      if (!this.window) {
        const d = s.default_window(i);
        this.window = { center: d[0], width: d[1] };
      }
      const key = `${i} ${this.window.center} ${this.window.width} ${this.invert}`;
      if (key !== this.rendered) {
        const ptr = s.render(i, this.window.center, this.window.width, this.invert);
        if (this.off.width !== w || this.off.height !== h) Object.assign(this.off, { width: w, height: h });
        this.offCtx.putImageData(new ImageData(new Uint8ClampedArray(memory.buffer, ptr, w * h * 4), w, h), 0, 0);
        this.rendered = key;
      }
      const m = this.matrix();
      ctx.setTransform(m[0], m[1], m[2], m[3], m[4], m[5]);
      ctx.imageSmoothingEnabled = this.view.scale(cw, ch, w, h, s.aspect(i)) < 3;
      ctx.drawImage(this.off, 0, 0);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      this.drawMeasures(m);
      if (!state.firstImage) {
        state.firstImage = true;
        performance.mark("radhub:first-image");
      }
      this.drawnOnce?.();
    }
    this.overlay(drawn);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  matrix() {
    const s = this.stack;
    return this.view.matrix(this.canvas.width, this.canvas.height, s.width(this.i), s.height(this.i), s.aspect(this.i));
  }

  toImage(e) {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const s = this.stack;
    const p = this.view.to_image(this.canvas.width, this.canvas.height, s.width(this.i), s.height(this.i), s.aspect(this.i), (e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr);
    return [p[0], p[1]];
  }

  info() {
    return this.stack ? JSON.parse(this.stack.info_json(this.i)) : null;
  }

  units() {
    return this.series?.modality === "CT" ? "HU" : "";
  }

  overlay(drawn) {
    const st = this.study;
    if (!st) return;
    const p = st.patient;
    this.ov.tl.textContent = `${personName(p.name)}\n${p.patient_id} (${p.issuer})\n${dicomDate(p.birth_date)} ${p.sex || ""}`;
    this.ov.tr.textContent = `${st.site}\n${dicomDate(st.date)} ${st.description || ""}\nAcc ${st.accession_number || "—"}`;
    const s = this.stack;
    if (!s) {
      this.ov.bl.textContent = this.note;
      this.ov.br.textContent = "";
      return;
    }
    const info = this.info();
    const loc = info.location === null ? "" : `Loc ${info.location.toFixed(1)} mm`;
    const thick = info.thickness ? `  Thk ${info.thickness} mm` : "";
    const frame = info.frames > 1 ? `  Fr ${info.frame}/${info.frames}` : "";
    this.ov.bl.textContent = `Se ${this.series.number ?? ""} ${this.series.description || ""}\nIm ${this.i + 1}/${s.len()}${frame}\n${loc}${thick}${drawn ? "" : "\nloading…"}${this.note ? `\n${this.note}` : ""}`;
    const zoom = Math.round(100 * this.view.scale(this.canvas.width, this.canvas.height, s.width(this.i), s.height(this.i), s.aspect(this.i)));
    const w = this.window ? `W ${Math.round(this.window.width)} L ${Math.round(this.window.center)}` : "";
    const v = this.cursor && !Number.isNaN(this.cursor) ? `\n${Math.round(this.cursor * 10) / 10} ${this.units()}` : "";
    this.ov.br.textContent = `${w}${this.invert ? " inv" : ""}\nZoom ${zoom}%${this.cine ? "  ▶" : ""}${v}`;
  }

  drawMeasures(m) {
    const ctx = this.ctx;
    const at = (p) => [m[0] * p[0] + m[2] * p[1] + m[4], m[1] * p[0] + m[3] * p[1] + m[5]];
    const list = [...(this.measures.get(this.i) || [])];
    if (this.pending) list.push(this.pending);
    // Setting a font costs about 2 ms: not on every window/level step.
    if (!list.length) return;
    ctx.lineWidth = 1.5;
    ctx.font = "13px ui-monospace, monospace";
    for (const mm of list) {
      ctx.strokeStyle = ctx.fillStyle = "#ffd54f";
      const pts = mm.pts.map(at);
      ctx.beginPath();
      if (mm.kind === "roi" && pts.length === 2) {
        const c = at([(mm.pts[0][0] + mm.pts[1][0]) / 2, (mm.pts[0][1] + mm.pts[1][1]) / 2]);
        const rx = Math.hypot(...sub(at([mm.pts[1][0], (mm.pts[0][1] + mm.pts[1][1]) / 2]), c));
        const ry = Math.hypot(...sub(at([(mm.pts[0][0] + mm.pts[1][0]) / 2, mm.pts[1][1]]), c));
        const rot = Math.atan2(...sub(at([mm.pts[1][0], (mm.pts[0][1] + mm.pts[1][1]) / 2]), c).reverse());
        ctx.ellipse(c[0], c[1], rx, ry, rot, 0, 2 * Math.PI);
      } else {
        pts.forEach((p, k) => (k ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
      }
      ctx.stroke();
      if (mm.text) {
        const last = pts[pts.length - 1];
        mm.text.split("\n").forEach((line, k) => ctx.fillText(line, last[0] + 6, last[1] + 14 * k - 4));
      }
    }
  }

  // ---- changes ----

  setSlice(i, fromSync = false) {
    const s = this.stack;
    if (!s) return;
    i = Math.max(0, Math.min(s.len() - 1, i));
    if (i === this.i) return;
    this.i = i;
    this.paint();
    if (!fromSync && state.sync) syncFrom(this);
  }

  setWindow(center, width) {
    this.window = { center, width: Math.max(1, width) };
    this.paint();
  }

  fileWindows() {
    return this.stack ? JSON.parse(this.stack.windows_json(this.i)) : [];
  }

  /// The file's own windows in turn, then the frame's full range.
  nextFileWindow() {
    const w = this.fileWindows();
    if (!w.length) {
      this.window = null;
      return this.paint();
    }
    this.fileWindow = (this.fileWindow + 1) % w.length;
    this.setWindow(w[this.fileWindow].center, w[this.fileWindow].width);
  }

  toggleCine() {
    if (this.cine) return this.stopCine();
    const ms = this.info()?.frame_ms || 1000 / 20;
    this.cine = setInterval(() => this.setSlice(this.i + 1 >= this.stack.len() ? 0 : this.i + 1), ms);
    this.paint();
  }

  stopCine() {
    clearInterval(this.cine);
    this.cine = 0;
  }

  addMeasure(m) {
    const list = this.measures.get(this.i) || [];
    list.push(m);
    this.measures.set(this.i, list);
  }

  measureText(kind, pts) {
    const s = this.stack;
    const i = this.i;
    if (kind === "length") {
      const mm = s.length_mm(i, pts[0][0], pts[0][1], pts[1][0], pts[1][1]);
      return Number.isNaN(mm) ? `${Math.hypot(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1]).toFixed(1)} px` : `${mm.toFixed(1)} mm`;
    }
    if (kind === "angle" && pts.length === 3) return `${s.angle_deg(i, ...pts[0], ...pts[1], ...pts[2]).toFixed(1)}°`;
    if (kind === "roi" && pts.length === 2) {
      const c = [(pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2];
      const r = s.ellipse_stats(i, c[0], c[1], Math.abs(pts[1][0] - c[0]), Math.abs(pts[1][1] - c[1]));
      if (!r.length) return "";
      const u = this.units();
      return `${r[0].toFixed(1)} ± ${r[1].toFixed(1)} ${u}\n${r[5].toFixed(0)} mm²`;
    }
    return "";
  }

  // ---- input ----

  bind() {
    const c = this.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("pointerdown", (e) => {
      activate(this.index);
      if (!this.stack) return;
      c.setPointerCapture(e.pointerId);
      const tool = e.button === 1 ? "pan" : e.button === 2 ? "zoom" : state.tool;
      const p = this.toImage(e);
      this.drag = { tool, x: e.clientX, y: e.clientY, x0: e.clientX, y0: e.clientY, acc: 0 };
      if (tool === "length" || tool === "roi") this.pending = { kind: tool, pts: [p, p], text: "" };
      if (tool === "angle") {
        if (!this.pending || this.pending.kind !== "angle") this.pending = { kind: "angle", pts: [p, p], text: "" };
        else this.pending.pts.push(p);
      }
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.stack) return;
      const p = this.toImage(e);
      this.cursor = this.stack.value_at(this.i, p[0], p[1]);
      const d = this.drag;
      if (!d) return this.paint();
      const dpr = window.devicePixelRatio || 1;
      const dx = e.clientX - d.x;
      const dy = e.clientY - d.y;
      d.x = e.clientX;
      d.y = e.clientY;
      if (d.tool === "wl" && this.window) {
        const k = Math.max(0.5, this.window.width / 256);
        this.setWindow(this.window.center + dy * k, this.window.width + dx * k);
      } else if (d.tool === "pan") {
        this.view.pan_by(dx * dpr, dy * dpr);
      } else if (d.tool === "zoom") {
        const r = c.getBoundingClientRect();
        const s = this.stack;
        this.view.zoom_at(Math.exp(-dy * 0.01), (d.x0 - r.left) * dpr, (d.y0 - r.top) * dpr, c.width, c.height, s.width(this.i), s.height(this.i), s.aspect(this.i));
      } else if (d.tool === "scroll") {
        d.acc += dy;
        const steps = Math.trunc(d.acc / 6);
        if (steps) {
          d.acc -= steps * 6;
          this.setSlice(this.i + steps);
        }
      } else if (this.pending) {
        this.pending.pts[this.pending.pts.length - 1] = p;
        this.pending.text = this.measureText(this.pending.kind, this.pending.pts);
      }
      this.paint();
    });
    const up = () => {
      const m = this.pending;
      if (m && (m.kind !== "angle" || m.pts.length === 3)) {
        m.text = this.measureText(m.kind, m.pts);
        const [a, b] = [m.pts[0], m.pts[m.pts.length - 1]];
        if (m.kind === "angle" || Math.hypot(b[0] - a[0], b[1] - a[1]) > 0.5) this.addMeasure(m);
        this.pending = null;
      }
      this.drag = null;
      this.paint();
    };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    c.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        if (!this.stack) return;
        activate(this.index);
        if (e.ctrlKey) {
          const r = c.getBoundingClientRect();
          const dpr = window.devicePixelRatio || 1;
          const s = this.stack;
          this.view.zoom_at(Math.exp(-e.deltaY * 0.002), (e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr, c.width, c.height, s.width(this.i), s.height(this.i), s.aspect(this.i));
          this.paint();
        } else this.setSlice(this.i + Math.sign(e.deltaY));
      },
      { passive: false },
    );
  }
}

function sub(a, b) {
  return [a[0] - b[0], a[1] - b[1]];
}

/// The other viewports follow `from` to the slice nearest its position
/// (plus each one's offset, set by "link here").
function syncFrom(from) {
  const loc = from.info()?.location;
  if (loc === null || loc === undefined) return;
  for (const v of visible()) {
    if (v === from || !v.stack) continue;
    const k = v.stack.nearest(loc + v.syncOffset - from.syncOffset);
    if (k >= 0) v.setSlice(k, true);
  }
}

function linkHere() {
  const a = active();
  const loc = a.info()?.location ?? 0;
  for (const v of visible()) v.syncOffset = (v.info()?.location ?? 0) - loc;
  status("Scrolling linked at the current positions");
}

function visible() {
  const n = { "1x1": 1, "1x2": 2, "2x2": 4 }[state.layout];
  return state.viewports.slice(0, n);
}

function active() {
  return state.viewports[state.active];
}

function activate(i) {
  state.active = i;
  state.viewports.forEach((v, k) => v.el.classList.toggle("active", k === i));
  markSeries();
}

// ---- the screen ----

export function closeViewer() {
  for (const v of state.viewports) {
    v.abort?.abort();
    v.stopCine();
  }
  closeReport();
}

function setLayout(layout) {
  state.layout = layout;
  const grid = $("#grid");
  grid.className = `l${layout}`;
  const n = { "1x1": 1, "1x2": 2, "2x2": 4 }[layout];
  while (state.viewports.length < n) state.viewports.push(new Viewport(state.viewports.length));
  grid.replaceChildren(...state.viewports.slice(0, n).map((v) => v.el));
  // New viewports show the study's next series.
  const series = state.study?.series_list || [];
  state.viewports.slice(0, n).forEach((v, k) => {
    if (!v.stack && !v.abort && series.length) v.load(state.study, series[k % series.length]).catch(report);
    v.paint();
  });
  if (state.active >= n) activate(0);
  toolbar();
}

function report(e) {
  if (!(e instanceof SignedOut)) status(e.message);
}

function button(label, title, onclick, pressed) {
  const b = el("button", { textContent: label, title, type: "button" });
  if (pressed !== undefined) b.setAttribute("aria-pressed", String(pressed));
  b.onclick = () => {
    onclick();
    toolbar();
    active()?.el.focus();
  };
  return b;
}

function toolbar() {
  const a = active();
  const sep = () => el("span", { className: "sep" });
  const presets = el("select", { title: "Window presets (1–8)", name: "preset" }, el("option", { value: "", textContent: "Window…" }));
  PRESETS.forEach((p, k) => presets.append(el("option", { value: `p${k}`, textContent: `${k + 1} ${p.name} ${p.width}/${p.center}` })));
  (a?.fileWindows() || []).forEach((w, k) => presets.append(el("option", { value: `f${k}`, textContent: `${w.name} ${w.width}/${w.center}` })));
  presets.onchange = () => {
    const v = presets.value;
    const w = v[0] === "p" ? PRESETS[+v.slice(1)] : a.fileWindows()[+v.slice(1)];
    if (w) a.setWindow(w.center, w.width);
    a.el.focus();
  };
  const priors = el("select", { title: "Compare with a prior from any site", name: "prior" }, el("option", { value: "", textContent: "Compare with…" }));
  for (const p of state.priors) priors.append(el("option", { value: p.uid, textContent: `${dicomDate(p.date)} ${p.site} ${p.modalities.join("/")} ${p.description || ""}${p.local ? "" : " (at site)"}` }));
  priors.onchange = () => priors.value && compare(priors.value).catch(report);
  $("#toolbar").replaceChildren(
    ...TOOLS.map(([t, label, key]) => button(label, `${label} (${key})`, () => (state.tool = t), state.tool === t)),
    sep(),
    presets,
    button("Invert", "Invert (i)", () => a && ((a.invert = !a.invert), a.paint())),
    sep(),
    button("Fit", "Fit (f)", () => a && (a.view.fit(), a.paint())),
    button("1:1", "One image pixel per screen pixel (n)", () => a && (a.view.one_to_one(), a.paint())),
    button("⟳", "Rotate 90° (r)", () => a && (a.view.rotate(), a.paint())),
    button("⇋", "Flip horizontally (h)", () => a && (a.view.flip_h(), a.paint())),
    button("⇵", "Flip vertically (v)", () => a && (a.view.flip_v(), a.paint())),
    button("Reset", "Reset view, window and measurements (Esc)", () => a && resetViewport(a)),
    sep(),
    button("▶", "Cine (c)", () => a?.toggleCine(), Boolean(a?.cine)),
    sep(),
    button("1×1", "One viewport (q)", () => setLayout("1x1"), state.layout === "1x1"),
    button("1×2", "Two side by side (t)", () => setLayout("1x2"), state.layout === "1x2"),
    button("2×2", "Four (g)", () => setLayout("2x2"), state.layout === "2x2"),
    button("Sync", "Synchronise scrolling by slice position (y); link at current positions (k)", () => (state.sync = !state.sync), state.sync),
    priors,
    button("?", "Keyboard shortcuts", showHelp),
  );
}

function resetViewport(a) {
  a.view.reset();
  a.invert = false;
  a.window = null;
  a.fileWindow = -1;
  a.measures = new Map();
  a.pending = null;
  a.paint();
}

const keys = () => [
  ["↑ ↓ / wheel", "previous / next image"],
  ["PgUp PgDn", "10 images back / on"],
  ["Home End", "first / last image"],
  ["1–8", "presets: " + PRESETS.map((p) => p.name).join(", ")],
  ["9", "the file's own windows in turn"],
  ["w p z s", "tools: window/level, pan, zoom, scroll (left drag); middle drag pans, right drag zooms"],
  ["l a o", "measure: length, angle (three clicks), ROI (mean ± SD)"],
  ["i", "invert"],
  ["f n", "fit, 1:1"],
  ["r h v", "rotate 90°, flip horizontally, vertically"],
  ["Esc", "reset view, window and measurements"],
  ["Del", "delete this image's measurements"],
  ["c", "cine play / pause"],
  ["q t g", "layout 1×1, 1×2, 2×2"],
  ["Tab", "next viewport"],
  ["y k", "synchronised scrolling on/off; link at current positions"],
];

function showHelp() {
  const d = $("#help");
  d.replaceChildren(el("table", {}, ...keys().map(([k, t]) => el("tr", {}, el("td", {}, el("kbd", { textContent: k })), el("td", { textContent: t })))), el("form", { method: "dialog" }, el("button", { textContent: "Close" })));
  d.showModal();
}

document.addEventListener("keydown", (e) => {
  if ($("#viewer").hidden || e.target.closest("input, textarea, select, dialog") || e.ctrlKey || e.metaKey || e.altKey) return;
  const a = active();
  if (!a) return;
  const k = e.key;
  const act = {
    ArrowDown: () => a.setSlice(a.i + 1),
    ArrowRight: () => a.setSlice(a.i + 1),
    ArrowUp: () => a.setSlice(a.i - 1),
    ArrowLeft: () => a.setSlice(a.i - 1),
    PageDown: () => a.setSlice(a.i + 10),
    PageUp: () => a.setSlice(a.i - 10),
    Home: () => a.setSlice(0),
    End: () => a.setSlice(a.stack ? a.stack.len() - 1 : 0),
    9: () => a.nextFileWindow(),
    i: () => ((a.invert = !a.invert), a.paint()),
    f: () => (a.view.fit(), a.paint()),
    n: () => (a.view.one_to_one(), a.paint()),
    r: () => (a.view.rotate(), a.paint()),
    h: () => (a.view.flip_h(), a.paint()),
    v: () => (a.view.flip_v(), a.paint()),
    Escape: () => resetViewport(a),
    Delete: () => (a.measures.delete(a.i), a.paint()),
    c: () => a.toggleCine(),
    q: () => setLayout("1x1"),
    t: () => setLayout("1x2"),
    g: () => setLayout("2x2"),
    Tab: () => activate((state.active + 1) % visible().length),
    y: () => (state.sync = !state.sync),
    k: () => linkHere(),
    "?": showHelp,
  };
  for (const [t, , key] of TOOLS) act[key] = () => (state.tool = t);
  if (k >= "1" && k <= "8") act[k] = () => a.setWindow(PRESETS[+k - 1].center, PRESETS[+k - 1].width);
  const f = act[k];
  if (!f) return;
  e.preventDefault();
  f();
  toolbar();
});

function seriesStrip() {
  const strip = $("#series");
  const fig = (study, x) => {
    const f = el("figure", { title: `${x.modality} ${x.description || ""}` });
    f.dataset.uid = x.uid;
    const img = el("img", { alt: "", loading: "lazy" });
    if (study.local) img.src = `/dicom-web/studies/${enc(study.uid)}/series/${enc(x.uid)}/thumbnail`;
    f.append(img, el("figcaption", { textContent: `${x.modality} ${x.description || ""} (${x.instances})` }));
    f.onclick = () => active().load(study, x).then(markSeries).catch(report);
    return f;
  };
  const groups = [state.study, ...state.viewports.map((v) => v.study).filter((s) => s && s.uid !== state.study.uid)];
  const seen = new Set();
  strip.replaceChildren();
  for (const s of groups) {
    if (seen.has(s.uid)) continue;
    seen.add(s.uid);
    strip.append(el("h3", { textContent: `${dicomDate(s.date)} ${s.site}` }), ...(s.series_list || []).map((x) => fig(s, x)));
  }
  markSeries();
}

function markSeries() {
  const uid = active()?.series?.uid;
  for (const f of document.querySelectorAll("#series figure")) f.classList.toggle("active", f.dataset.uid === uid);
}

/// Images first: the study's first (largest, for CT/MR) series goes into
/// the first viewport before anything else is asked for.
function firstSeries(list) {
  const images = list.filter((x) => !["SR", "KO", "PR", "DOC"].includes(x.modality));
  return images[0] || list[0];
}

export async function openStudy(uid) {
  const open = ++state.open;
  closeViewer();
  const study = await api(`/api/studies/${enc(uid)}`);
  if (open !== state.open) return;
  state.study = study;
  state.priors = [];
  if (!state.viewports.length) state.viewports.push(new Viewport(0));
  for (const v of state.viewports) {
    v.stack?.free();
    Object.assign(v, { stack: null, study: null, series: null, abort: null });
  }
  state.layout = "1x1";
  $("#grid").className = "l1x1";
  $("#grid").replaceChildren(state.viewports[0].el);
  activate(0);
  const list = study.series_list || [];
  document.title = `${personName(study.patient.name)} · ${study.description || "study"} · radhub`;
  const first = firstSeries(list);
  const loading = first ? state.viewports[0].load(study, first) : Promise.resolve();
  seriesStrip();
  toolbar();
  // The report panel and the priors once the first image is up (or soon),
  // so that their requests do not queue ahead of its frame.
  const v0 = state.viewports[0];
  new Promise((resolve) => {
    v0.drawnOnce = resolve;
    setTimeout(resolve, 1500);
  }).then(() => {
    v0.drawnOnce = null;
    if (open !== state.open) return;
    openReport(study);
    findPriors(study).then(() => open === state.open && toolbar()).catch(() => {});
  });
  loading
    .then(async () => {
      toolbar();
      // Fetched from its site: the strip's thumbnails can be drawn now.
      if (!study.local && open === state.open) {
        Object.assign(study, await api(`/api/studies/${enc(uid)}`));
        seriesStrip();
      }
    })
    .catch(report);
  status(`${study.site}: ${list.length} series, ${study.instances} images${study.local ? "" : " (fetching from the site)"}`);
}

/// The patient's other studies at every site, through the NHS-number link.
async function findPriors(study) {
  const p = study.patient;
  const found = await api(`/api/patients?patient_id=${enc(p.patient_id)}&issuer=${enc(p.issuer)}&limit=5`);
  const nhs = found.find((x) => x.nhs_number)?.nhs_number;
  if (!nhs) return;
  const record = await api(`/api/patients/${enc(nhs)}`);
  state.priors = record.studies.filter((s) => s.uid !== study.uid);
}

/// A prior beside the current images: its series most like the active
/// one (same modality, then same description, then the largest).
async function compare(uid) {
  const prior = await api(`/api/studies/${enc(uid)}`);
  const cur = active().series || {};
  const list = (prior.series_list || []).filter((x) => !["SR", "KO", "PR"].includes(x.modality));
  const score = (x) => (x.modality === cur.modality ? 2 : 0) + (x.description && x.description === cur.description ? 1 : 0);
  list.sort((a, b) => score(b) - score(a) || b.instances - a.instances);
  if (!list.length) throw new Error("the prior has no images");
  if (state.layout === "1x1") setLayout("1x2");
  const target = state.viewports[state.active === 0 ? 1 : 0];
  state.sync = true;
  await target.load(prior, list[0]);
  seriesStrip();
  // Start level with the current slice.
  await waitFor(() => target.stack && target.stack.loaded(target.i));
  syncFrom(active());
  toolbar();
}

function waitFor(ok, ms = 15000) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const tick = () => (ok() || performance.now() - t0 > ms ? resolve() : setTimeout(tick, 30));
    tick();
  });
}

// For tests and scripts/bench-viewer: `show` resolves once the slice is on
// screen (after the next animation frame), `setWindow` once it is drawn.
window.radhubViewer = {
  slices: () => active()?.stack?.len() ?? 0,
  loaded: () => active()?.stack?.loaded_count() ?? 0,
  current: () => active()?.i ?? -1,
  viewports: () =>
    visible().map((v) => ({
      study: v.study?.uid,
      series: v.series?.uid,
      slice: v.i,
      loaded: v.stack?.loaded_count() ?? 0,
      location: v.info()?.location ?? null,
      window: v.window,
      measures: [...v.measures.values()].flat().map((m) => ({ kind: m.kind, text: m.text })),
    })),
  /// Page (CSS) coordinates of image point (x, y) in viewport `vp`.
  toClient(vp, x, y) {
    const v = state.viewports[vp];
    const m = v.matrix();
    const r = v.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    return [r.left + (m[0] * x + m[2] * y + m[4]) / dpr, r.top + (m[1] * x + m[3] * y + m[5]) / dpr];
  },
  /// The canvas's RGBA at image point (x, y) of viewport `vp`, as drawn.
  pixel(vp, x, y) {
    const v = state.viewports[vp];
    const m = v.matrix();
    return [...v.ctx.getImageData(Math.floor(m[0] * x + m[2] * y + m[4]), Math.floor(m[1] * x + m[3] * y + m[5]), 1, 1).data];
  },
  async show(i) {
    const a = active();
    await waitFor(() => a.stack && a.stack.loaded(Math.min(i, a.stack.len() - 1)));
    a.setSlice(i);
    await a.paint();
  },
  async setWindow(center, width) {
    const a = active();
    a.window = { center, width };
    a.draw();
  },
};
