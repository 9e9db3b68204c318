// OHIF's origin for scripts/bench-viewer: serves @ohif/app's prebuilt dist
// and forwards /dicom-web/* to radhub with a bearer token, so OHIF reads
// radhub's DICOMweb on its own origin with no CORS and no login of its own.
// A separate process from the browser harness, so proxying 150 MB of frames
// never shares an event loop with the measurements.
//
// usage: node proxy.js PORT DIST_DIR APP_CONFIG RADHUB_PORT LOG_JSONL
// with the token in $RADHUB_TOKEN. Each /dicom-web request is one JSON line
// in LOG_JSONL (start and end in ms since the epoch, method, path, Accept,
// status, bytes, ms), for the report.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const [port, dist, appConfig, radhubPort, logPath] = process.argv.slice(2);
const token = process.env.RADHUB_TOKEN;
if (!logPath || !token) {
  console.error('usage: RADHUB_TOKEN=... node proxy.js PORT DIST_DIR APP_CONFIG RADHUB_PORT LOG_JSONL');
  process.exit(2);
}
const log = fs.createWriteStream(logPath, { flags: 'a' });
// Keep-alive to radhub, as a browser would keep its connections.
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.svg': 'image/svg+xml',
  '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8', '.onnx': 'application/octet-stream',
};
// Cross-origin isolation, as OHIF's deployment notes ask for (SharedArrayBuffer
// for its volume loader and decoders); everything here is same-origin.
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

function forward(req, res) {
  const t0 = process.hrtime.bigint(), start = Date.now();
  const headers = { ...req.headers, host: `127.0.0.1:${radhubPort}`, authorization: `Bearer ${token}` };
  delete headers.cookie;
  const up = http.request({ host: '127.0.0.1', port: radhubPort, method: req.method, path: req.url, headers, agent }, (r) => {
    let bytes = 0;
    const refusal = []; // a 4xx/5xx body (radhub's problem+json reason), for the log
    r.on('data', (c) => { bytes += c.length; if (r.statusCode >= 400) refusal.push(c); });
    r.on('end', () => {
      log.write(JSON.stringify({
        start, t: Date.now(), method: req.method, path: req.url, accept: req.headers.accept || null, status: r.statusCode,
        type: r.headers['content-type'] || null, bytes, ms: Number(process.hrtime.bigint() - t0) / 1e6,
        ...(refusal.length ? { body: Buffer.concat(refusal).toString('utf8').slice(0, 300) } : {}),
      }) + '\n');
    });
    res.writeHead(r.statusCode, { ...r.headers, ...ISOLATION, 'Cross-Origin-Resource-Policy': 'same-origin' });
    r.pipe(res);
  });
  up.on('error', (e) => {
    log.write(JSON.stringify({ t: Date.now(), method: req.method, path: req.url, error: String(e) }) + '\n');
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(up);
}

function serveFile(req, res) {
  let name = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let file = name === '/app-config.js' ? appConfig : path.join(dist, path.normalize(name).replace(/^(\.\.[/\\])+/, ''));
  fs.stat(file, (err, st) => {
    // OHIF is a single-page app: every route that is not a file is index.html.
    if (err || !st.isFile()) file = path.join(dist, 'index.html');
    fs.readFile(file, (err2, body) => {
      if (err2) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
        'Content-Length': body.length, 'Cache-Control': 'no-cache', ...ISOLATION,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
}

http.createServer((req, res) => {
  if (req.url.startsWith('/dicom-web/') || req.url === '/dicom-web') forward(req, res);
  else serveFile(req, res);
}).listen(Number(port), '127.0.0.1', () => console.log(`proxy listening on 127.0.0.1:${port}`));
