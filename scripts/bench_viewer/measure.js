// The browser half of scripts/bench-viewer: opens the benchmark CT in
// radhub's viewer and in OHIF 3 (as it renders by default, and with
// cornerstone3D's CPU renderer) in one headless Chromium, page loads
// alternating between them, and prints the figures as JSON lines and a
// Markdown table on stdout (progress on stderr).
//
// Input, from scripts/bench-viewer, in the environment:
//   BENCH_STUDY, BENCH_SLICES        the study and its slice count
//   BENCH_OHIF_URL                   OHIF's origin (the bench proxy), or empty
//   BENCH_RADHUB_URL                 radhub's origin, or empty
//   BENCH_USER, BENCH_PASSWORD       a radhub user, for the viewer's session
//   BENCH_LOADS                      page loads per viewer (median reported)
//   BENCH_WL_UPDATES                 timed window/level updates
//   BENCH_OHIF_CPU                   0: skip the OHIF CPU-rendering column
//   BENCH_RADHUB_LAUNCH              radhub's launch path before the study UID
//                                    (default /viewer/?study=)
//   BENCH_PROXY_LOG                  the proxy's JSON lines, summarised here
//   BENCH_SCREENSHOTS                a folder for one screenshot per viewer
//   BENCH_NOTES                      extra lines for the notes, '\n'-separated
//
// What is measured, the same way in both viewers:
//   first image   ms from the launch navigation's start (performance.timeOrigin)
//                 to the first slice drawn in the page's canvas. radhub: its
//                 performance.mark('radhub:first-image'). OHIF: the first
//                 CORNERSTONE_IMAGE_RENDERED event of a viewport holding an
//                 image (cornerstone3D fires it right after copying the
//                 rendered frame to the viewport's canvas).
//   all slices    ms from the same start until every slice of the series is
//                 decoded and can be shown without a request. radhub: its mark
//                 'radhub:series-loaded'. OHIF (with its studyPrefetcher on):
//                 the latest CORNERSTONE_IMAGE_LOADED (cornerstone's image
//                 cache has the decoded image) over the stack's imageIds, once
//                 every one of them has loaded.
//   scrolling     slices per second stepping once through every slice, each
//                 step awaited until drawn (radhub: await show(i); OHIF:
//                 viewport.setImageIdIndex(i) then its IMAGE_RENDERED), wall
//                 time by performance.now(), after 10 untimed steps; on the
//                 last page load of each viewer, once every slice is loaded.
//   window/level  mean ms per update over BENCH_WL_UPDATES updates alternating
//                 between two windows, each awaited until drawn (radhub: await
//                 setWindow(c, w); OHIF: viewport.setProperties({voiRange}) and
//                 render(), then its IMAGE_RENDERED), after 5 untimed ones,
//                 after the scrolling.
//                 OHIF draws in a requestAnimationFrame callback, so its wall
//                 time includes the wait for the next frame; its drawing alone
//                 (from the start of that frame's callbacks to IMAGE_RENDERED)
//                 is reported beside it.
// Each page load is a fresh browser context: empty HTTP cache and storage.
'use strict';
const fs = require('fs');
const { chromium } = require('playwright-core');

const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const STUDY = env('BENCH_STUDY');
const SLICES = Number(env('BENCH_SLICES', 300));
const OHIF = env('BENCH_OHIF_URL', null);
const RADHUB = env('BENCH_RADHUB_URL', null);
const LOADS = Number(env('BENCH_LOADS', 3));
const WL_UPDATES = Number(env('BENCH_WL_UPDATES', 50));
const FIRST_TIMEOUT = 60e3;
const ALL_TIMEOUT = 120e3;
const VIEWPORT = { width: 1280, height: 900 };
const GOALS = { first: 300, fps: 60, wl: 5 };

const log = (m) => process.stderr.write(`bench-viewer: ${m}\n`);
const median = (v) => { const s = [...v].sort((a, b) => a - b); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : null; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- OHIF ------------------------------------------------------------------

// Runs in the page before OHIF's scripts. cornerstone's element events do not
// bubble, but a capture listener on window sees them on their way down; its
// global events are on cornerstone.eventTarget, which exists once OHIF's
// cornerstone extension assigns window.cornerstone (caught by a setter here,
// so no event is missed by polling late).
const OHIF_PROBE = `(() => {
  const b = window.__bench = { first: null, loaded: new Map(), loadErrors: 0, rendered: 0 };
  window.addEventListener('CORNERSTONE_IMAGE_RENDERED', (e) => {
    b.rendered++;
    if (b.first !== null || !window.cornerstone) return;
    const vp = window.cornerstone.getEnabledElement(e.target)?.viewport;
    if (vp && vp.getImageData && vp.getImageData()) b.first = performance.now();
  }, true);
  let cs;
  Object.defineProperty(window, 'cornerstone', { configurable: true, get: () => cs, set: (v) => {
    cs = v;
    v.eventTarget.addEventListener('CORNERSTONE_IMAGE_LOADED', (e) => {
      const id = e.detail && e.detail.image && e.detail.image.imageId;
      if (id && !b.loaded.has(id)) b.loaded.set(id, performance.now());
    });
    v.eventTarget.addEventListener('IMAGE_LOAD_ERROR', () => { b.loadErrors++; });
  } });
})();`;

// In the page: the stack viewport showing the series.
const OHIF_VIEWPORT = `(() => {
  for (const e of window.cornerstone.getRenderingEngines()) for (const vp of e.getViewports())
    if (vp.getImageIds && vp.getImageIds().length) return vp;
  return null;
})()`;

async function ohifLoad(browser, n, variant, interactive) {
  const ctx = await browser.newContext({ viewport: VIEWPORT });
  await ctx.addInitScript(TIMING_BUFFER + OHIF_PROBE);
  const page = await ctx.newPage();
  watch(page, variant.key);
  const r = { viewer: variant.key, load: n };
  try {
    await page.goto(`${OHIF}/viewer?StudyInstanceUIDs=${STUDY}${variant.query}`, { waitUntil: 'commit' });
    await page.waitForFunction(() => window.__bench.first !== null, null, { timeout: FIRST_TIMEOUT, polling: 20 });
    r.first_image_ms = await page.evaluate(() => window.__bench.first);
    const all = await page.waitForFunction(`(() => {
      const vp = ${OHIF_VIEWPORT};
      if (!vp) return null;
      const ids = vp.getImageIds(), b = window.__bench;
      if (!ids.every((id) => b.loaded.has(id))) return null;
      return { ms: Math.max(...ids.map((id) => b.loaded.get(id))), slices: ids.length, errors: b.loadErrors,
               cached: ids.filter((id) => window.cornerstone.cache.getImage(id)).length,
               cpu: window.cornerstone.getShouldUseCPURendering() };
    })()`, null, { timeout: ALL_TIMEOUT, polling: 50 }).then((h) => h.jsonValue());
    Object.assign(r, { all_slices_ms: all.ms, slices: all.slices, cached: all.cached, load_errors: all.errors,
      rendering: all.cpu ? 'cpu' : 'webgl' });
    Object.assign(r, await page.evaluate(REQUEST_TIMES));
    await screenshot(page, variant.key, n);
    if (all.slices !== SLICES) log(`${variant.key}: the viewport's stack has ${all.slices} images, not ${SLICES}`);
    if (all.cached !== all.slices) log(`${variant.key}: only ${all.cached} of ${all.slices} images still in cornerstone's cache`);
    if (!interactive) return r;
    await sleep(300); // let OHIF settle (overlays, thumbnails) before the interactive timings
    Object.assign(r, await page.evaluate(`(async () => {
      const vp = ${OHIF_VIEWPORT}, n = vp.getImageIds().length, el = vp.element;
      // Resolves at the viewport's next IMAGE_RENDERED; also notes when the
      // animation frame that drew it began (our rAF callback was queued first).
      const drawn = (kick) => new Promise((resolve, reject) => {
        let frameStart = null;
        const t = setTimeout(() => reject(new Error('no IMAGE_RENDERED within 5 s')), 5000);
        requestAnimationFrame((ts) => { frameStart = performance.now(); });
        el.addEventListener('CORNERSTONE_IMAGE_RENDERED', () => {
          clearTimeout(t); resolve(frameStart === null ? null : performance.now() - frameStart);
        }, { once: true });
        kick();
      });
      let i = vp.getCurrentImageIdIndex();
      const step = () => { i = (i + 1) % n; return drawn(() => vp.setImageIdIndex(i)); };
      for (let k = 0; k < 10; k++) await step();
      let t0 = performance.now();
      for (let k = 0; k < n; k++) await step();
      const fps = n / ((performance.now() - t0) / 1000);
      const windows = [[-160, 240], [-125, 225]]; // 40/400 and 50/350 as HU ranges
      const wl = (k) => drawn(() => { const [lower, upper] = windows[k % 2]; vp.setProperties({ voiRange: { lower, upper } }); vp.render(); });
      for (let k = 0; k < 5; k++) await wl(k);
      const work = [];
      t0 = performance.now();
      for (let k = 0; k < ${WL_UPDATES}; k++) work.push(await wl(k));
      const wlMs = (performance.now() - t0) / ${WL_UPDATES};
      const w = work.filter((x) => x !== null).sort((a, b) => a - b);
      return { fps, wl_ms: wlMs, wl_draw_ms: w.length ? w[w.length >> 1] : null };
    })()`));
  } catch (e) {
    r.error = String(e.message || e).split('\n')[0];
  } finally {
    await ctx.close();
  }
  return r;
}

// ---- radhub ----------------------------------------------------------------

async function radhubLoad(browser, n, variant, interactive) {
  const ctx = await browser.newContext({ viewport: VIEWPORT });
  await ctx.addInitScript(TIMING_BUFFER);
  const page = await ctx.newPage();
  watch(page, 'radhub');
  const r = { viewer: 'radhub', load: n };
  try {
    // Sign in from a small same-origin page that is not the viewer, so the
    // timed launch below finds none of the viewer's files already loaded.
    await page.goto(`${RADHUB}/api/health`);
    const status = await page.evaluate(async ([username, password]) => (await fetch('/api/session', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
    })).status, [env('BENCH_USER'), env('BENCH_PASSWORD')]);
    if (status !== 200) throw new Error(`POST /api/session: HTTP ${status}`);
    const launch = `${env('BENCH_RADHUB_LAUNCH', '/viewer/?study=')}${STUDY}`;
    const res = await page.goto(`${RADHUB}${launch}`, { waitUntil: 'load' });
    // A page without the viewer's contract is "n/a", not a failure: the
    // viewer may not be built yet.
    if (res.status() >= 400) { r.na = `GET ${launch.replace(STUDY, '<study>')} answered ${res.status()}`; return r; }
    const has = await page.waitForFunction(() => window.radhubViewer || performance.getEntriesByName('radhub:first-image').length,
      null, { timeout: 15e3, polling: 50 }).then(() => true, () => false);
    if (!has) { r.na = 'no window.radhubViewer nor radhub:first-image mark at /viewer/'; return r; }
    const mark = async (name, timeout) => {
      await page.waitForFunction((m) => performance.getEntriesByName(m).length, name, { timeout, polling: 20 });
      return page.evaluate((m) => performance.getEntriesByName(m)[0].startTime, name);
    };
    r.first_image_ms = await mark('radhub:first-image', FIRST_TIMEOUT);
    r.all_slices_ms = await mark('radhub:series-loaded', ALL_TIMEOUT);
    Object.assign(r, await page.evaluate(REQUEST_TIMES));
    await screenshot(page, 'radhub', n);
    if (!interactive) return r;
    Object.assign(r, await page.evaluate(async (updates) => {
      const v = window.radhubViewer, n = v.slices();
      let i = 0;
      const step = () => { i = (i + 1) % n; return v.show(i); };
      for (let k = 0; k < 10; k++) await step();
      let t0 = performance.now();
      for (let k = 0; k < n; k++) await step();
      const fps = n / ((performance.now() - t0) / 1000);
      const windows = [[40, 400], [50, 350]];
      const wl = (k) => v.setWindow(...windows[k % 2]);
      for (let k = 0; k < 5; k++) await wl(k);
      t0 = performance.now();
      for (let k = 0; k < updates; k++) await wl(k);
      return { slices: n, fps, wl_ms: (performance.now() - t0) / updates };
    }, WL_UPDATES));
    if (r.slices !== SLICES) log(`radhub: the viewer says ${r.slices} slices, not ${SLICES}`);
  } catch (e) {
    r.error = String(e.message || e).split('\n')[0];
  } finally {
    await ctx.close();
  }
  return r;
}

// ---- shared ----------------------------------------------------------------

const refusals = {};
function watch(page, who) {
  // 4xx/5xx the page saw (radhub's own viewer talks to radhub directly; OHIF's
  // are also in the proxy log, with radhub's reason).
  page.on('response', (res) => {
    if (res.status() >= 400) (refusals[who] ||= []).push(`${res.status()} ${res.request().method()} ${res.url()}`);
  });
  page.on('pageerror', (e) => log(`${who}: page error: ${String(e.message || e).split('\n')[0]}`));
}

// With BENCH_SCREENSHOTS (a folder; --keep), one picture of each viewer
// once its series is loaded, to see that the figures are of a real image.
async function screenshot(page, who, n) {
  const dir = env('BENCH_SCREENSHOTS');
  if (dir && n === 1) await page.screenshot({ path: `${dir}/${who}.png` });
}

function proxyLines() {
  const path = env('BENCH_PROXY_LOG');
  if (!path || !fs.existsSync(path)) return [];
  return fs.readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// Where the time to first image goes, from the page's Resource Timing (the
// same in both viewers): the first request to the hub's API or DICOMweb
// sent (the app has started) and the first frame's answer received, in ms
// from navigation start.
const REQUEST_TIMES = `(() => {
  const e = performance.getEntriesByType('resource');
  const first = e.find((x) => x.name.includes('/dicom-web/') || x.name.includes('/api/'));
  const frames = e.filter((x) => x.name.includes('/frames/'));
  return { first_request_ms: first ? first.startTime : null,
           first_frame_answered_ms: frames.length ? Math.min(...frames.map((x) => x.responseEnd)) : null };
})()`;
// Room for every request of a load (the default buffer keeps 250).
const TIMING_BUFFER = 'performance.setResourceTimingBufferSize(5000);';

function proxySummary() {
  const kind = (p) => (/\/frames\//.test(p) ? 'frames' : /\/metadata/.test(p) ? 'metadata'
    : /\/(thumbnail|rendered)/.test(p) ? 'rendered' : /\/(studies|series|instances)(\?|$)/.test(p) ? 'qido' : 'other');
  const out = {};
  for (const l of proxyLines()) {
    const o = (out[kind(l.path || '')] ||= { requests: 0, statuses: {}, accept: {}, bytes: 0, ms: [] });
    const st = l.status || 'error';
    o.requests++;
    o.statuses[st] = (o.statuses[st] || 0) + 1;
    o.accept[l.accept || '(none)'] = (o.accept[l.accept || '(none)'] || 0) + 1;
    o.bytes += l.bytes || 0;
    if (l.ms) o.ms.push(l.ms);
    if (!(l.status < 400)) (o.refused ||= []).length < 5 && o.refused.push(`${st} ${l.path} ${l.body || l.error || ''}`);
  }
  for (const o of Object.values(out)) { o.median_ms = median(o.ms); delete o.ms; }
  return out;
}

const num = (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v)));
const fmt = {
  ms: (v) => (v == null ? 'n/a' : `${num(v)} ms`),
  fps: (v) => (v == null ? 'n/a' : `${num(v)} fps`),
};

function summarise(v, loads) {
  const ok = loads.filter((l) => !l.error && !l.na);
  const s = { viewer: v.key, loads: loads.length, measured: ok.length };
  if (!ok.length) {
    const why = loads.find((l) => l.na) || loads.find((l) => l.error);
    s.na = why ? why.na || `failed: ${why.error}` : 'not run';
    return s;
  }
  for (const k of ['first_image_ms', 'all_slices_ms', 'first_request_ms', 'first_frame_answered_ms', 'fps', 'wl_ms', 'wl_draw_ms']) {
    const vals = ok.map((l) => l[k]).filter((x) => typeof x === 'number');
    if (vals.length) { s[k] = median(vals); s[k + '_range'] = [Math.min(...vals), Math.max(...vals)]; }
  }
  s.rendering = ok[0].rendering;
  return s;
}

function cell(s, k, f) {
  if (s.na || s[k] == null) return 'n/a';
  const [lo, hi] = s[k + '_range'];
  return lo !== hi ? `${f(s[k])} (${num(lo)}–${num(hi)})` : f(s[k]);
}

function table(cols) {
  const rh = cols[0].s, ohifFirst = Math.min(...cols.slice(1).map((c) => c.s.first_image_ms ?? Infinity));
  const mark = (ok) => (ok == null ? '' : ok ? ' ✓' : ' ✗');
  const meets = {
    first: rh.first_image_ms == null ? null : rh.first_image_ms <= GOALS.first && rh.first_image_ms < ohifFirst,
    // A 60 Hz frame clock gives 57–60 fps to a viewer that misses no frame.
    fps: rh.fps == null ? null : rh.fps >= GOALS.fps * 0.95,
    wl: rh.wl_ms == null ? null : rh.wl_ms <= GOALS.wl,
  };
  const row = (label, goal, k, f, goalKey, extra = () => '') =>
    `| ${label} | ${goal} | ` + cols.map((c, i) => cell(c.s, k, f) + (i === 0 ? mark(meets[goalKey]) : extra(c.s))).join(' | ') + ' |';
  return [
    `| measure | goal (radhub) | ${cols.map((c) => c.label).join(' | ')} |`,
    `|---|---|${cols.map(() => '---:').join('|')}|`,
    row('time to first image, from navigation start', `≤ ${GOALS.first} ms and faster than OHIF`, 'first_image_ms', fmt.ms, 'first'),
    row(`time until every slice is displayable (${SLICES})`, '—', 'all_slices_ms', fmt.ms),
    row('scrolling once cached, each slice awaited until drawn', `${GOALS.fps} fps`, 'fps', fmt.fps, 'fps'),
    row('window/level update, 512² frame, awaited until drawn', `≤ ${GOALS.wl} ms`, 'wl_ms', fmt.ms, 'wl',
      (s) => (s.wl_draw_ms != null ? `; drawing alone ${fmt.ms(s.wl_draw_ms)}` : '')),
  ].join('\n');
}

async function main() {
  const version = env('BENCH_OHIF_VERSION', '3');
  // Columns: radhub, then OHIF as it chooses to render here (WebGL, which
  // with --disable-gpu is Chromium's software WebGL), then OHIF told to use
  // cornerstone3D's CPU renderer (its own path for machines without WebGL).
  const variants = [
    { key: 'radhub', label: 'radhub viewer', base: RADHUB, run: radhubLoad },
    { key: 'ohif', label: `OHIF ${version}`, base: OHIF, run: ohifLoad, query: '' },
    { key: 'ohif-cpu', label: `OHIF ${version}, CPU rendering`, base: env('BENCH_OHIF_CPU', '1') === '1' ? OHIF : null,
      run: ohifLoad, query: '&viewportRendering=cpu' },
  ];
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      // Loopback only: OHIF's dist names a few CDNs; nothing may leave the machine.
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
  });
  const chromeVersion = browser.version();
  const hz = await (async () => { // the frame clock that everything drawn in requestAnimationFrame is bound to
    const p = await browser.newPage();
    const v = await p.evaluate(() => new Promise((res) => {
      let n = 0; const t0 = performance.now();
      const f = () => (++n === 60 ? res(60000 / (performance.now() - t0)) : requestAnimationFrame(f));
      requestAnimationFrame(f);
    }));
    await p.close();
    return v;
  })();
  log(`chromium ${chromeVersion}, headless; requestAnimationFrame at ${hz.toFixed(0)} Hz`);
  const results = Object.fromEntries(variants.map((v) => [v.key, []]));
  // Loads alternate between the viewers, so a slow moment of the machine
  // falls on all of them. Scrolling and window/level are timed on each
  // viewer's last load only (they are steady-state figures of a cached
  // series; timing them on every load would double the run).
  for (let n = 1; n <= LOADS; n++) {
    for (const v of variants) {
      if (!v.base || results[v.key].some((l) => l.na)) continue; // no viewer: once is enough
      const r = await v.run(browser, n, v, n === LOADS);
      results[v.key].push(r);
      console.log(JSON.stringify(r));
      log(`${v.key} load ${n}: ` + (r.na ? `n/a (${r.na})` : r.error ? `FAILED: ${r.error}` :
        `first image ${fmt.ms(r.first_image_ms)}, every slice ${fmt.ms(r.all_slices_ms)}` +
        (r.first_request_ms != null ? ` (first API/DICOMweb request sent at ${fmt.ms(r.first_request_ms)}, first frame received at ${fmt.ms(r.first_frame_answered_ms)})` : '') +
        (r.fps != null ? `, ${fmt.fps(r.fps)}, W/L ${fmt.ms(r.wl_ms)}` : '') +
        (r.wl_draw_ms != null ? ` (drawing ${fmt.ms(r.wl_draw_ms)})` : '') + (r.rendering ? `, ${r.rendering} rendering` : '')));
    }
  }
  await browser.close();
  const cols = variants.filter((v) => v.base || v.key === 'radhub').map((v) => ({ ...v, s: v.base ? summarise(v, results[v.key]) : { viewer: v.key, na: 'not run' } }));
  for (const c of cols) console.log(JSON.stringify({ summary: true, ...c.s }));
  const proxy = OHIF ? proxySummary() : null;
  if (proxy) console.log(JSON.stringify({ proxy }));
  for (const [who, list] of Object.entries(refusals)) {
    log(`${who}: ${list.length} answers ≥ 400, e.g. ${list.slice(0, 3).join('; ')}`);
  }
  const rh = cols[0].s, oh = cols.find((c) => c.key === 'ohif')?.s;
  const notes = [
    `Headless Chromium ${chromeVersion} (--disable-gpu: no GPU, WebGL is Chromium's software renderer), ${VIEWPORT.width}×${VIEWPORT.height} window, ` +
    `requestAnimationFrame at ${hz.toFixed(0)} Hz. First image and every slice: median of ${LOADS} page loads per viewer (range in brackets), ` +
    `loads alternating between the viewers, each in a fresh browser context (cold HTTP cache); scrolling and window/level on each viewer's last load.`,
    `radhub: ${rh.na ? `n/a (${rh.na})` : 'its viewer at /viewer/?study=…, signed in by session cookie, talking to radhub directly'}.`,
    ...(oh ? [`OHIF: @ohif/app ${version} prebuilt dist, its DICOMweb data source (WADO-RS frames) on radhub through a Node proxy on loopback that adds the bearer token (one more loopback hop per request than radhub's viewer has); ` +
      `studyPrefetcher on (otherwise OHIF loads only the slices it shows); rendering ${oh.rendering || '?'} by default` +
      (cols.some((c) => c.key === 'ohif-cpu') ? ', the CPU column with \`?viewportRendering=cpu\`. ' : '. ') +
      `Its W/L wall time includes the wait for the next animation frame (cornerstone3D draws in requestAnimationFrame); "drawing alone" runs from that frame's start to IMAGE_RENDERED.`] : []),
    `Where the first image's time goes (medians, ms from navigation start, by the page's Resource Timing): ` +
      cols.filter((c) => c.s.first_request_ms != null).map((c) => `${c.label}: first API/DICOMweb request sent at ${fmt.ms(c.s.first_request_ms)}, ` +
        `first frame received at ${fmt.ms(c.s.first_frame_answered_ms)}, drawn at ${fmt.ms(c.s.first_image_ms)}`).join('; ') + '.',
    ...env('BENCH_NOTES', '').split('\n').filter(Boolean),
  ];
  if (proxy && proxy.frames) {
    const f = proxy.frames;
    notes.push(`OHIF's frame requests: ${f.requests} (${(f.bytes / 1e6).toFixed(0)} MB), statuses ${JSON.stringify(f.statuses)}, ` +
      `Accept ${Object.keys(f.accept).map((a) => '`' + a + '`').join(', ')}, median ${fmt.ms(f.median_ms)} each through the proxy.`);
  }
  console.log('');
  console.log(table(cols));
  console.log('');
  for (const n of notes) console.log(`- ${n}`);
  process.exitCode = cols.some((c) => c.s.na ? c.key !== 'radhub' && c.base : c.s.measured < c.s.loads) ? 1 : 0;
}

main().catch((e) => { log(`error: ${e.stack || e}`); process.exit(1); });
