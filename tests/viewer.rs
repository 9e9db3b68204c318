//! The viewer in a real browser: Debian's Chromium, headless, driven over
//! WebDriver (chromedriver) against a live hub holding a CT measurement
//! phantom at two sites (tests/viewer/phantom.py): the current study sent by
//! STOW-RS to Dorset County (JPEG lossless, so on the worklist) and a prior
//! at Royal Bournemouth (RLE), one person linked by NHS number. Pixels are
//! read back from the canvas; screenshots go to `viewer-screenshots/` in
//! `$RADHUB_ARTIFACTS` (CI's artefacts) or `$CARGO_TARGET_TMPDIR`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const NHS: &str = "9434765919";
const CURRENT: &str = "2.25.71000000000000000000000000000001";
const PRIOR: &str = "2.25.71000000000000000000000000000002";
const SLICES: u32 = 24;
const MARKER_MM: f64 = 80.0;

/// A WebDriver session on a chromedriver of our own.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| wd(&self.base, "DELETE", &format!("/session/{}", self.session), &Value::Null));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver command.
fn wd(base: &str, method: &str, path: &str, body: &Value) -> Value {
    let body = if method == "POST" { body.to_string() } else { String::new() };
    let r = request(base, method, path, &[("Content-Type", "application/json")], body.as_bytes());
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    assert!(r.status == 200, "WebDriver {method} {path}: {} {v}", r.status);
    v["value"].clone()
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver; scripts/setup installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1400,900", format!("--user-data-dir={}", profile.display())]
        }}}});
        let v = wd(&base, "POST", "/session", &caps);
        let session = v["sessionId"].as_str().expect("a session id").to_owned();
        // CI keeps $RADHUB_ARTIFACTS (scripts/test sets it).
        let shots = std::env::var_os("RADHUB_ARTIFACTS").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from).join("viewer-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { driver, base, session, shots }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        wd(&self.base, method, &format!("/session/{}{path}", self.session), &body)
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; may return a promise) in the page.
    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    /// Waits until `script` returns something truthy, and answers it.
    fn until(&self, what: &str, script: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                self.shot("timeout");
                let page = self.js("return [location.href, document.querySelector('#status').textContent, window.radhubErrors || []]");
                panic!("timed out waiting for {what}; page, status line, script errors: {page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("an element id").to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": text }));
    }

    /// Real key presses to the focused element.
    fn keys(&self, keys: &str) {
        let actions: Vec<Value> =
            keys.chars().flat_map(|c| [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]).collect();
        self.cmd("POST", "/actions", json!({"actions": [{"type": "key", "id": "kb", "actions": actions}]}));
    }

    /// A left-button drag between two page points (CSS pixels).
    fn drag(&self, from: (f64, f64), to: (f64, f64)) {
        let p = |x: f64, y: f64| json!({"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x.round() as i64, "y": y.round() as i64});
        let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
        let actions = json!([p(from.0, from.1), {"type": "pointerDown", "button": 0}, {"type": "pause", "duration": 30}, p(mid.0, mid.1), p(to.0, to.1), {"type": "pointerUp", "button": 0}]);
        self.cmd("POST", "/actions", json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]}));
    }

    fn wheel(&self, at: (f64, f64), dy: i64) {
        let actions = json!([{"type": "scroll", "x": at.0.round() as i64, "y": at.1.round() as i64, "deltaX": 0, "deltaY": dy, "origin": "viewport"}]);
        self.cmd("POST", "/actions", json!({"actions": [{"type": "wheel", "id": "wheel", "actions": actions}]}));
    }

    fn shot(&self, name: &str) {
        let v = self.cmd("GET", "/screenshot", Value::Null);
        if let Some(png) = v.as_str().and_then(base64_decode) {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }
}

/// Standard base64 (WebDriver screenshots), without a crate for it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
        acc = (acc << 6) | val(c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn phantom(out: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/viewer/phantom.py");
    let (ok, log) = output(Command::new("python3").arg(script).arg(out).args(args));
    assert!(ok, "phantom.py: {log}");
}

/// Each file through a DCMTK compressor (`dcmcjpeg`, `dcmcrle`), in place.
fn compress(dir: &Path, tool: &str) {
    for f in walk(dir) {
        let tmp = f.with_extension("tmp");
        let (ok, log) = output(Command::new(format!("/usr/bin/{tool}")).arg(&f).arg(&tmp));
        assert!(ok, "{tool}: {log}");
        std::fs::rename(&tmp, &f).unwrap();
    }
}

/// The canvas grey (R) at image point (x, y) of viewport `vp`.
fn grey(b: &Browser, vp: usize, x: f64, y: f64) -> i64 {
    b.js(&format!("return radhubViewer.pixel({vp}, {x}, {y})[0]")).as_i64().expect("a pixel")
}

fn client(b: &Browser, vp: usize, x: f64, y: f64) -> (f64, f64) {
    let v = b.js(&format!("return radhubViewer.toClient({vp}, {x}, {y})"));
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

#[test]
fn radiologist_reads_reports_and_compares_across_sites_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let (cur, prior) = (tmp.path().join("current"), tmp.path().join("sites"));
    let common = ["--slices", "24", "--size", "256", "--spacing", "0.5", "--step", "2", "--nhs", NHS, "--name", "PHANTOM^ALICE", "--marker-mm", "80"];
    let mut a = common.to_vec();
    a.extend([
        "--patient-id",
        "RBD7001",
        "--issuer",
        "RBD",
        "--study-uid",
        CURRENT,
        "--date",
        "20261202",
        "--description",
        "CT HEAD",
        "--accession",
        "RBDACC1",
    ]);
    phantom(&cur, &a);
    compress(&cur, "dcmcjpeg");
    let mut a = common.to_vec();
    a.extend(["--patient-id", "R0D8001", "--issuer", "R0D", "--study-uid", PRIOR, "--date", "20250601", "--description", "CT HEAD PRIOR"]);
    phantom(&prior.join("R0D"), &a);
    compress(&prior.join("R0D"), "dcmcrle");

    let data = tempfile::tempdir().unwrap();
    run(data.path(), &["import", "--site-folders", prior.to_str().unwrap()]);
    let rad = user_token(data.path(), "rad", "radiologist");
    let hub = Server::start_in(data, &["--stow-site", "RBD"]);
    let files: Vec<Vec<u8>> = walk(&cur).iter().map(|f| std::fs::read(f).unwrap()).collect();
    let r = stow(&hub.http(), &rad, &files.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(r.status, 200, "{}", r.text());

    let profile = tempfile::tempdir().unwrap();
    let b = Browser::start(profile.path());
    let http = hub.http();

    // A launch URL before signing in: sign-in first, then straight there.
    b.open(&format!("{http}/viewer/?nhs={NHS}"));
    b.until("the sign-in form", "return !document.querySelector('#signin').hidden");
    b.type_into("#signin [name=username]", "rad");
    b.type_into("#signin [name=password]", "rad-password");
    b.click("#signin button");
    let n = b.until(
        "the patient's two studies",
        "return document.querySelectorAll('#timeline > li').length === 2 && document.querySelector('#timeline').textContent",
    );
    let timeline = n.as_str().unwrap();
    assert!(timeline.contains("RBD") && timeline.contains("R0D"), "both sites on one timeline: {timeline}");
    let at = |d: &str| timeline.find(d).unwrap_or_else(|| panic!("{d} not on the timeline: {timeline}"));
    assert!(at("2026-12-02") < at("2025-06-01"), "newest first: {timeline}");
    b.until("series thumbnails", "return [...document.querySelectorAll('#timeline img')].some(i => i.complete && i.naturalWidth > 0)");
    b.shot("patient-record");

    // The worklist: the STOW-RS arrival is there; claim it, then open it.
    b.open(&format!("{http}/viewer/?worklist"));
    b.until("the worklist row", &format!("return document.querySelector('#worklist tr[data-uid=\"{CURRENT}\"] button.claim')"));
    b.click(&format!("#worklist tr[data-uid=\"{CURRENT}\"] button.claim"));
    b.until("the claim", &format!("return document.querySelector('#worklist tr[data-uid=\"{CURRENT}\"]').textContent.includes('rad')"));
    let claim = get(&http, &format!("/api/studies/{CURRENT}"), &rad).json();
    assert_eq!(claim["claim"]["by"], "rad", "claimed on the hub: {claim}");
    b.shot("worklist");
    b.click(&format!("#worklist tr[data-uid=\"{CURRENT}\"] button.open"));
    b.until("every slice decoded", &format!("return radhubViewer.loaded() === {SLICES}"));
    b.until("the first image drawn", "return performance.getEntriesByName('radhub:first-image').length");
    assert_eq!(b.js("return radhubViewer.slices()"), json!(SLICES));

    // The phantom's structure where it should be (file window 40/400):
    // markers 1000 HU white, water 0 HU mid grey, air black.
    let c = 128.5;
    let (m1, m2) = (c - 80.0, c + 80.0);
    assert!(grey(&b, 0, m1, c) > 240, "marker 1 white");
    assert!(grey(&b, 0, m2, c) > 240, "marker 2 white");
    let water = grey(&b, 0, c, c + 20.0);
    assert!((90..=115).contains(&water), "0 HU in 40/400 is about 102: {water}");
    assert!(grey(&b, 0, 2.0, 2.0) < 5, "air black");
    let insert = (c, c - 32.0);
    let before = grey(&b, 0, insert.0, insert.1) - water;
    // Narrowing the window (stroke preset 40/40, key 3) raises the contrast
    // between the 60 HU insert and water.
    b.click("#grid .vp canvas");
    b.keys("3");
    b.until("the stroke window", "return radhubViewer.viewports()[0].window.width === 40");
    let after = grey(&b, 0, insert.0, insert.1) - grey(&b, 0, c, c + 20.0);
    assert!(before > 20 && after > before + 100, "contrast insert−water: {before} at 40/400, {after} at 40/40");

    // Scroll: wheel and keys.
    let centre = client(&b, 0, c, c);
    b.wheel(centre, 120);
    b.until("the wheel's next slice", "return radhubViewer.current() === 1");
    b.keys("\u{E015}\u{E015}"); // ArrowDown twice
    b.until("two more slices", "return radhubViewer.current() === 3");
    // Window/level by drag: wider to the right.
    b.keys("w");
    let w0 = b.js("return radhubViewer.viewports()[0].window.width").as_f64().unwrap();
    b.drag(centre, (centre.0 + 120.0, centre.1));
    let w1 = b.js("return radhubViewer.viewports()[0].window.width").as_f64().unwrap();
    assert!(w1 > w0 + 20.0, "dragging right widens the window: {w0} → {w1}");
    b.keys("6"); // abdomen 40/400

    // Length between the markers' centres: 80 mm within 1 %.
    b.keys("l");
    b.drag(client(&b, 0, m1, c), client(&b, 0, m2, c));
    let text = b.until("a length", "const m = radhubViewer.viewports()[0].measures; return m.length && m[0].text");
    let mm: f64 = text.as_str().unwrap().trim_end_matches(" mm").parse().unwrap_or(f64::NAN);
    assert!((mm - MARKER_MM).abs() <= MARKER_MM * 0.01, "measured {text} for {MARKER_MM} mm");
    // An ROI inside the insert: 60 HU ± noise.
    b.keys("o");
    b.drag(client(&b, 0, c - 10.0, c - 42.0), client(&b, 0, c + 10.0, c - 26.0));
    let roi = b.until("an ROI", "const m = radhubViewer.viewports()[0].measures; return m.length > 1 && m[1].text");
    let mean: f64 = roi.as_str().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((mean - 60.0).abs() < 2.0, "ROI mean in HU: {roi}");
    b.shot("measure");

    // The prior from the other site beside it, scrolling in step.
    b.js(&format!("const s = document.querySelector('select[name=prior]'); s.value = '{PRIOR}'; s.dispatchEvent(new Event('change')); return true"));
    b.until(
        "the prior loaded beside",
        &format!("const v = radhubViewer.viewports(); return v.length === 2 && v[1].study === '{PRIOR}' && v[1].loaded === {SLICES}"),
    );
    b.click("#grid .vp canvas");
    b.keys("\u{E015}\u{E015}\u{E015}\u{E015}\u{E015}");
    let v = b.until("both at slice 8", "const v = radhubViewer.viewports(); return v[0].slice === 8 && v[1].slice === 8 && v");
    assert_eq!(v[0]["location"], v[1]["location"], "synchronised by position: {v}");
    assert!(grey(&b, 1, m1, c) > 200, "the prior (RLE) decoded: its marker is white");
    b.shot("compare");

    // Report: template draft, autosave, finalise.
    b.click("#start-report");
    b.until("the draft editor", "return document.querySelector('#draft textarea[name=Findings]')");
    b.type_into("#draft textarea[name=Findings]", "Phantom markers 80 mm apart. No acute abnormality.");
    b.until("the autosave", "return document.querySelector('#draft .saved').textContent.startsWith('Saved')");
    b.click("#finalise");
    b.until("the final report", "return [...document.querySelectorAll('#report .report-text')].some(e => e.dataset.status === 'final')");
    b.shot("reported");
    let reports = get(&http, &format!("/api/studies/{CURRENT}/reports"), &rad).json();
    let fin = reports.as_array().unwrap().iter().find(|r| r["status"] == "final").unwrap_or_else(|| panic!("a final report: {reports}"));
    assert!(fin["text"].as_str().unwrap().contains("Phantom markers 80 mm apart"), "{fin}");
    // An addendum to the final: a new draft of its own.
    b.click("#addendum");
    b.until("the addendum's editor", "return document.querySelector('#draft') && document.querySelector('#draft').textContent.includes('Addendum')");
    let wl = get(&http, "/api/worklist", &rad).json();
    assert!(!wl["items"].as_array().unwrap().iter().any(|i| i["uid"] == CURRENT), "reported: off the worklist");

    // A study by accession (the EPR's link), already signed in.
    b.open(&format!("{http}/viewer/?accession=RBDACC1&issuer=RBD"));
    b.until("the study by accession", &format!("return location.search === '?study={CURRENT}' && radhubViewer.slices() === {SLICES}"));
}
