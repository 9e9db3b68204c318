//! Shared by the integration tests: the radhub binary and the real peers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn radhub() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_radhub"));
    c.env("RADHUB_LOG", "error");
    c
}

/// Runs radhub with `args` against `data`, failing the test on a non-zero exit.
pub fn run(data: &Path, args: &[&str]) -> Output {
    let out = radhub().arg("--data").arg(data).args(args).output().expect("radhub runs");
    assert!(out.status.success(), "radhub {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// pydicom's bundled data folder. The suite needs pydicom 3 installed
/// (`.ci/run` installs it); a missing pydicom fails loudly, never skips.
pub fn pydicom_data() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import pydicom, os; print(os.path.dirname(pydicom.data.__file__))"]).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom is required: pip install pydicom==3.0.2 ({})", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The folders of pydicom's test set.
pub fn pydicom_sets() -> Vec<PathBuf> {
    let d = pydicom_data();
    ["test_files", "charset_files", "palettes"].iter().map(|s| d.join(s)).collect()
}

/// A free TCP port on loopback (bound, read, released).
/// A port nothing listens on, for a server a test starts.
///
/// Taken below the kernel's ephemeral range (32768+), because a port from
/// `bind(0)` is released before the server binds it, and meanwhile any
/// outgoing connection (a C-MOVE sub-association, an HTTP client) may be
/// given it as its source port. A per-process counter keeps this process's
/// tests apart; the pid-derived start keeps concurrent test binaries apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id() * 97) % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        let free = |host: &str| std::net::TcpListener::bind((host, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// A DCMTK tool with TCP_NODELAY=1, which it needs to avoid ~40 ms stalls.
/// Called by its Debian path: pynetdicom installs console scripts of the
/// same names (storescu, findscu, ...) that shadow DCMTK's on PATH.
pub fn dcmtk(tool: &str) -> Command {
    let path = format!("/usr/bin/{tool}");
    assert!(Path::new(&path).exists(), "DCMTK's {tool} is required (scripts/setup installs dcmtk)");
    let mut c = Command::new(path);
    c.env("TCP_NODELAY", "1");
    c
}

/// `radhub serve` on a free port over a fresh data folder, stopped (SIGTERM)
/// when dropped.
pub struct Server {
    child: std::process::Child,
    pub port: u16,
    pub http_port: u16,
    pub data: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    pub fn start_in(data: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::start_on(data, free_port(), extra)
    }

    /// On DICOM port `port` (one its peers were told before it started).
    pub fn start_on(data: tempfile::TempDir, port: u16, extra: &[&str]) -> Server {
        use std::io::{BufRead, BufReader};
        let http_port = free_port();
        let mut child = radhub()
            .env("RADHUB_LOG", "warn")
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--dicom-bind", &format!("127.0.0.1:{port}"), "--http-bind", &format!("127.0.0.1:{http_port}")])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("radhub serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("DICOM listening"), "radhub serve did not start: {line:?}");
        Server { child, port, http_port, data }
    }

    /// The HTTP API's base URL.
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops with SIGTERM and waits; returns whether it exited cleanly.
    pub fn stop(mut self) -> (bool, tempfile::TempDir) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        (ok, data)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a user with `role` to a hub (before `serve` opens it) and returns
/// a new API token for them.
pub fn user_token(data: &Path, name: &str, role: &str) -> String {
    use std::io::Write;
    let mut add =
        radhub().arg("--data").arg(data).args(["users", "add", name, "--role", role]).stdin(std::process::Stdio::piped()).spawn().expect("radhub users add");
    add.stdin.take().unwrap().write_all(format!("{name}-password\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success(), "radhub users add {name}");
    let out = run(data, &["users", "token", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs a command, returning (success, stdout+stderr).
pub fn output(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// dcmdump's view of a file's data set, the meta group left out and
/// normalised for encoding choices (defined or undefined lengths).
pub fn dump(p: &Path) -> Vec<String> {
    let (_, out) = output(dcmtk("dcmdump").arg("-q").arg(p));
    out.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        // Group lengths are recomputed and trailing padding dropped by the sender.
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("(0002,")
                && !l.starts_with("(fffe,e00d)")
                && !l.starts_with("(fffe,e0dd)")
                && l.get(5..11) != Some(",0000)")
                && !l.starts_with("(fffc,fffc)")
        })
        .map(|l| if l.contains(" SQ (") || l.starts_with("(fffe,e000)") { l.split(" (").next().unwrap_or(l).to_owned() } else { l.to_owned() })
        .collect()
}

/// A table of expected refusals: `file<TAB>substring of the reason` lines,
/// `#` comments.
pub fn expectations(tsv: &str) -> std::collections::BTreeMap<String, String> {
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, why)| (f.to_owned(), why.to_owned()))
        .collect()
}

/// An HTTP answer: status, headers (names lower-cased) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (a plain client, so that
/// tests can send what real clients would refuse to: bad paths, bodies).
pub fn request(base: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (and close) before reading a refused body.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    // To the end of the answer: its Content-Length when it gives one (some
    // servers, chromedriver among them, keep the connection open whatever
    // the client asks), else until the server closes.
    let (mut raw, mut buf) = (Vec::new(), vec![0u8; 64 << 10]);
    let mut end: Option<usize> = None;
    loop {
        if end.is_none() {
            if let Some(h) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..h]).to_ascii_lowercase();
                let status = head.lines().next().unwrap_or("");
                let bodiless = method == "HEAD" || status.contains(" 204 ") || status.contains(" 304 ");
                let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
                end = Some(if bodiless { h + 4 } else { len.map_or(usize::MAX, |n| h + 4 + n) });
            }
        }
        if let Some(e) = end.filter(|&e| raw.len() >= e) {
            raw.truncate(e);
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer to {method} {target}: {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < eol + 2 + n {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[(eol + 4 + n).min(b.len())..];
    }
}

/// STOW-RS of Part 10 `parts` in one multipart/related request.
pub fn stow(base: &str, token: &str, parts: &[&[u8]]) -> Reply {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(b"\r\n--B0undary\r\nContent-Type: application/dicom\r\n\r\n");
        body.extend_from_slice(p);
    }
    body.extend_from_slice(b"\r\n--B0undary--\r\n");
    let auth = format!("Bearer {token}");
    request(
        base,
        "POST",
        "/dicom-web/studies",
        &[("Authorization", &auth), ("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=B0undary")],
        &body,
    )
}

/// A JSON request with a bearer token.
pub fn call(base: &str, method: &str, path: &str, token: &str, body: &str) -> Reply {
    request(base, method, path, &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], body.as_bytes())
}

/// A GET with a bearer token.
pub fn get(base: &str, target: &str, token: &str) -> Reply {
    request(base, "GET", target, &[("Authorization", &format!("Bearer {token}"))], b"")
}

/// A process's peak resident memory (VmHWM), in KiB.
pub fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// One line for docs/RELIABILITY.md: the case, what the hub answered, the
/// time to answer, and the server's peak memory so far.
pub fn reliability(case: &str, answer: &str, took: std::time::Duration, pid: u32) {
    println!("RELIABILITY\t{case}\t{answer}\t{took:.2?}\t{} MiB", peak_kib(pid) / 1024);
}

/// One row of the faults table in docs/RELIABILITY.md (`scripts/reliability`):
/// the test, its load, the faults injected, instances acknowledged and
/// found intact afterwards, the server's peak memory (MiB).
#[allow(dead_code)]
pub fn fault_row(test: &str, load: &str, faults: &str, acknowledged: usize, intact: usize, peak_mib: u64) {
    println!("FAULT\t{test}\t{load}\t{faults}\t{acknowledged}\t{intact}\t{peak_mib}");
}

/// A TCP connection to `port` on 127.0.0.1 from the loopback address
/// `from` (another host, as far as the server can tell), with a small
/// receive buffer so that a client that stops reading is soon felt.
pub fn connect_from(from: &str, port: u16) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(&format!("{from}:0").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    s.connect(&format!("127.0.0.1:{port}").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    s.into()
}

/// Whether the peer has closed `sock` (a read returns 0 or an error) within `wait`.
pub fn closed_within(sock: &mut std::net::TcpStream, wait: std::time::Duration) -> bool {
    use std::io::Read;
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 64];
    match sock.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Every file under `d`, sorted.
pub fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// What a hub's staging area holds that is not a staging file made ahead
/// (those are empty, in `tmp/pool`): a part written and left behind.
#[allow(dead_code)]
pub fn staging_debris(data: &Path) -> Vec<PathBuf> {
    let pool = data.join("tmp").join("pool");
    walk(&data.join("tmp")).into_iter().filter(|p| !(p.parent() == Some(pool.as_path()) && p.metadata().is_ok_and(|m| m.len() == 0))).collect()
}

/// `radhub testdata` into `out`, then imported into `data` each site's
/// folder for its site.
pub fn import_testdata(data: &Path, out: &Path, args: &[&str]) {
    let mut a = vec!["testdata", "--out", out.to_str().unwrap()];
    a.extend_from_slice(args);
    run(data, &a);
    run(data, &["import", "--site-folders", out.to_str().unwrap()]);
}

static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds a test file's in-process cases apart, so that each one's peak
/// memory is its own.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one in-process case with this process's peak memory reset (Linux
/// clear_refs 5), and prints its RELIABILITY line. Returns its result,
/// time and peak (MiB).
pub fn case<T>(name: &str, run: impl FnOnce() -> T, answer: impl FnOnce(&T) -> String) -> (T, std::time::Duration, u64) {
    std::fs::write("/proc/self/clear_refs", "5").expect("peak memory can be reset");
    let t = std::time::Instant::now();
    let out = run();
    let took = t.elapsed();
    let peak = peak_kib(std::process::id()) / 1024;
    println!("RELIABILITY\t{name}\t{}\t{took:.2?}\t{peak} MiB", answer(&out));
    (out, took, peak)
}

/// A case's answer: accepted, or refused with the reason.
pub fn refused<T>(r: &Result<T, impl std::fmt::Display>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(e) => format!("refused: {e}"),
    }
}

/// `--peer` arguments for one storing AE per site, as each trust's PACS:
/// STORE_RBD stores for RBD, STORE_RD3 for RD3, STORE_R0D for R0D.
pub fn site_peers() -> Vec<String> {
    ["RBD", "RD3", "R0D"].iter().flat_map(|s| ["--peer".to_owned(), format!("STORE_{s}@127.0.0.1:0={s}")]).collect()
}

/// The storing AE for data whose Issuer of Patient ID is `issuer`: its own
/// site's (data naming no site's issuer: Dorset County's).
pub fn store_ae(issuer: &str) -> String {
    match issuer {
        "RD3" | "R0D" => format!("STORE_{issuer}"),
        _ => "STORE_RBD".to_owned(),
    }
}

/// storescu of each file from its site's AE (`store_ae`), one association per site.
pub fn storescu_by_site(port: u16, files: &[(PathBuf, String)]) {
    let mut by: std::collections::BTreeMap<String, Vec<&PathBuf>> = std::collections::BTreeMap::new();
    for (p, issuer) in files {
        by.entry(store_ae(issuer)).or_default().push(p);
    }
    for (ae, paths) in by {
        let (ok, out) = output(dcmtk("storescu").args(["-aet", &ae, "-aec", "RADHUB", "127.0.0.1", &port.to_string()]).args(paths));
        assert!(ok, "storescu as {ae}: {out}");
    }
}

// ---- DICOM peers for the SCU tests (tests/scu_*.rs) ----

/// A peer process a test started (DCMTK, pynetdicom, Orthanc), in a temp
/// folder of its own with its log, killed when dropped.
pub struct PeerProc {
    child: std::process::Child,
    pub ae: String,
    pub port: u16,
    /// Orthanc's REST port.
    pub http: u16,
    pub dir: tempfile::TempDir,
}

impl PeerProc {
    pub fn peer(&self) -> pacs_gateway::scu::Peer {
        pacs_gateway::scu::Peer::new(self.ae.as_str(), "127.0.0.1", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Where storescp writes what it receives.
    pub fn received(&self) -> PathBuf {
        self.dir.path().join("in")
    }

    /// An Orthanc REST call: (HTTP status, body).
    pub fn rest(&self, method: &str, path: &str, body: Option<&str>) -> (u64, serde_json::Value) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/orthanc.py");
        let mut c = Command::new("python3");
        c.args([script, method, &format!("http://127.0.0.1:{}{path}", self.http)]);
        c.args(body);
        let (ok, out) = output(&mut c);
        assert!(ok, "{method} {path}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {out}"));
        (v["status"].as_u64().unwrap_or(0), v["body"].clone())
    }

    fn spawn(mut c: Command, ae: &str, port: u16, http: u16, dir: tempfile::TempDir) -> PeerProc {
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = c
            .current_dir(dir.path())
            .env("TCP_NODELAY", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        let mut p = PeerProc { child, ae: ae.to_owned(), port, http, dir };
        p.wait_listening();
        p
    }

    /// Until the peer listens on its DICOM port (20 s at most).
    fn wait_listening(&mut self) {
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("{} exited ({s}) before listening: {}", self.ae, self.log());
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(20), "{} not listening on {}: {}", self.ae, self.port, self.log());
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// DCMTK storescp as `ae`, writing what it receives into `received()`,
/// verbose (one "Association Received" line per association).
pub fn storescp(ae: &str, extra: &[&str]) -> PeerProc {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let port = free_port();
    let mut c = dcmtk("storescp");
    c.args(["-v", "-aet", ae, "-od", "in", "-uf"]).args(extra).arg(port.to_string());
    PeerProc::spawn(c, ae, port, 0, dir)
}

/// DCMTK dcmqrscp as `ae` over `files` (indexed in place by dcmqridx),
/// knowing `destinations` (AE title, port on 127.0.0.1) for C-MOVE.
pub fn dcmqrscp(ae: &str, files: &[PathBuf], destinations: &[(&str, u16)]) -> PeerProc {
    dcmqrscp_with(ae, files, destinations, &[])
}

/// `dcmqrscp` with more options (`-s`: one process, no fork per association).
pub fn dcmqrscp_with(ae: &str, files: &[PathBuf], destinations: &[(&str, u16)], extra: &[&str]) -> PeerProc {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let hosts: String = destinations.iter().enumerate().map(|(i, (t, p))| format!("dest{i} = ({t}, 127.0.0.1, {p})\n")).collect();
    let port = free_port();
    let cfg = format!(
        "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\nHostTable BEGIN\n{hosts}HostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n\
         AETable BEGIN\n{ae} {} RW (1000, 1024mb) ANY\nAETable END\n",
        db.display()
    );
    std::fs::write(dir.path().join("dcmqrscp.cfg"), cfg).unwrap();
    if !files.is_empty() {
        let abs: Vec<PathBuf> = files.iter().map(|f| std::fs::canonicalize(f).unwrap()).collect();
        let (ok, out) = output(dcmtk("dcmqridx").arg(&db).args(&abs));
        assert!(ok, "dcmqridx: {out}");
    }
    let mut c = dcmtk("dcmqrscp");
    c.args(["-v", "-c", "dcmqrscp.cfg"]).args(extra);
    PeerProc::spawn(c, ae, port, 0, dir)
}

/// pynetdicom's qrscp as `ae`, knowing `destinations` for C-MOVE, loaded
/// with `files` by DCMTK's storescu.
pub fn qrscp(ae: &str, files: &[PathBuf], destinations: &[(&str, u16)]) -> PeerProc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Absolute paths: qrscp takes relative ones from its own package folder.
    let mut ini = format!(
        "[DEFAULT]\n    ae_title: {ae}\n    port: {port}\n    max_pdu: 16382\n    acse_timeout: 30\n    dimse_timeout: 30\n    network_timeout: 30\n    \
         bind_address: 127.0.0.1\n    instance_location: {}\n    database_location: {}\n    log_identifier: False\n",
        dir.path().join("instances").display(),
        dir.path().join("instances.sqlite").display()
    );
    for (t, p) in destinations {
        ini.push_str(&format!("\n[{t}]\n    address: 127.0.0.1\n    port: {p}\n"));
    }
    std::fs::write(dir.path().join("qrscp.ini"), ini).unwrap();
    let mut c = Command::new("python3");
    c.args(["-m", "pynetdicom", "qrscp", "-q", "-c", "qrscp.ini"]);
    let p = PeerProc::spawn(c, ae, port, 0, dir);
    if !files.is_empty() {
        let (ok, out) = output(dcmtk("storescu").args(["-aec", ae, "127.0.0.1", &port.to_string()]).args(files));
        assert!(ok, "storescu to qrscp: {out}\n{}", p.log());
    }
    p
}

/// Orthanc as `ae`, knowing `modalities` (AE title, port on 127.0.0.1) for
/// C-FIND, C-GET and C-MOVE, with `extra` settings merged in.
pub fn orthanc(ae: &str, modalities: &[(&str, u16)], extra: serde_json::Value) -> PeerProc {
    let dir = tempfile::tempdir().unwrap();
    let (port, http) = (free_port(), free_port());
    let mods: serde_json::Map<String, serde_json::Value> = modalities.iter().map(|(t, p)| (t.to_lowercase(), serde_json::json!([t, "127.0.0.1", p]))).collect();
    let mut config = serde_json::json!({
        "Name": "radhub-scu",
        "StorageDirectory": dir.path().join("storage"),
        "IndexDirectory": dir.path().join("index"),
        "HttpPort": http,
        "DicomPort": port,
        "DicomAet": ae,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "DicomModalities": mods,
        "DicomAlwaysAllowFind": true,
        "DicomAlwaysAllowGet": true,
        "DicomAlwaysAllowMove": true,
        "Plugins": [],
        "SyncStorageArea": false,
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    std::fs::write(dir.path().join("orthanc.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let mut c = Command::new("/usr/sbin/Orthanc");
    c.arg("orthanc.json");
    let p = PeerProc::spawn(c, ae, port, http, dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/orthanc.py");
    let (ok, out) = output(Command::new("python3").args([script, "wait", &format!("http://127.0.0.1:{http}"), "20"]));
    assert!(ok, "Orthanc not ready: {out}\n{}", p.log());
    p
}

/// `radhub testdata` into `out` (the rest of its options in `args`); the
/// files written, sorted.
pub fn testdata_files(out: &Path, args: &[&str]) -> Vec<PathBuf> {
    let (ok, log) = output(radhub().args(["testdata", "--out", out.to_str().unwrap()]).args(args));
    assert!(ok, "radhub testdata: {log}");
    let mut files: Vec<PathBuf> =
        walkdir::WalkDir::new(out).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    files.sort();
    files
}

/// A string attribute of a DICOM file, trimmed.
pub fn attr(file: &Path, tag: dicom_core::Tag) -> String {
    let o = dicom_object::open_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    o.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned()).unwrap_or_default()
}

/// The transfer syntax of a Part 10 file, from its meta group.
pub fn transfer_syntax(file: &Path) -> String {
    let o = dicom_object::open_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    o.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_owned()
}

/// Sends HL7 v2 messages to radhub's MLLP listener on one connection
/// (python-hl7's client, as a RIS or PAS); each ACK's [MSA-1, MSA-2, MSA-3].
pub fn hl7_send(port: u16, dir: &Path, messages: &[String]) -> Vec<Vec<String>> {
    let f = dir.join("messages.json");
    std::fs::write(&f, serde_json::to_vec(messages).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/hl7_send.py");
    let (ok, out) = output(Command::new("python3").args([script, &port.to_string(), f.to_str().unwrap()]));
    assert!(ok, "hl7_send: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}
