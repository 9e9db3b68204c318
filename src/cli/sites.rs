//! `radhub sites list|echo` and `radhub sync`: the sites' PACS and their
//! harvests. Through the running server when one holds the hub (its
//! control file names it), else in this process.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::serve::{Control, FederationArgs};
use crate::federation::{Federation, SiteStatus};
use crate::ingest::DuplicatePolicy;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Each site: its PACS, whether it answers, its last harvest.
    List {
        #[arg(long)]
        json: bool,
    },
    /// C-ECHO each site's PACS (or the one named).
    Echo { site: Option<String> },
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Only this site (default: every site with a PACS).
    #[arg(long)]
    site: Option<String>,
    /// Every date back to the oldest study, not only what is new since the last pass.
    #[arg(long)]
    full: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    federation: FederationArgs,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        Command::List { json } => {
            let list: Vec<Value> = match Control::read(data) {
                Some(c) => serde_json::from_slice(&call(&c, "GET", "/api/sites", None)?)?,
                None => in_process(data, crate::federation::Options::default(), |fed| async move {
                    Ok(fed.status()?.into_iter().map(|s| serde_json::json!(s)).collect())
                })?,
            };
            if json {
                return super::print_json(&list).map(|_| ExitCode::SUCCESS);
            }
            for s in &list {
                let last = &s["last_sync"];
                let when = if last.is_null() {
                    "never harvested".to_owned()
                } else {
                    format!("last harvest {} ({})", ago(last["finished"].as_u64()), if last["ok"] == true { "ok" } else { "failed" })
                };
                println!(
                    "{}\t{}\t{}\treachable={}\tstudies={}\t{}{}",
                    s["code"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or(""),
                    s["pacs"].as_str().unwrap_or("no PACS"),
                    s["reachable"],
                    s["studies"],
                    when,
                    s["last_error"].as_str().map(|e| format!("\tlast error: {e}")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Echo { site } => {
            let codes = codes(site.as_deref())?;
            let mut failed = false;
            let results: Vec<(String, Result<f64, String>)> = match Control::read(data) {
                Some(c) => codes
                    .iter()
                    .map(|code| {
                        let r = call(&c, "POST", &format!("/api/sites/{code}/echo"), Some(b"")).map_err(|e| format!("{e:#}")).and_then(|b| {
                            let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
                            Ok(v["ms"].as_f64().unwrap_or(0.0))
                        });
                        (code.clone(), r)
                    })
                    .collect(),
                None => in_process(data, crate::federation::Options::default(), |fed| async move {
                    let mut out = Vec::new();
                    for code in codes {
                        let r = fed.echo(&code).await.map_err(|e| e.to_string());
                        out.push((code, r));
                    }
                    Ok(out)
                })?,
            };
            for (code, r) in results {
                match r {
                    Ok(ms) => println!("{code}\tok\t{ms:.1} ms"),
                    Err(e) => {
                        failed = true;
                        println!("{code}\tfailed\t{e}");
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}

/// The sites to work on: the one named, or every one with a PACS.
fn codes(site: Option<&str>) -> anyhow::Result<Vec<String>> {
    match site {
        Some(code) => {
            let s = super::site_arg(code)?;
            anyhow::ensure!(crate::sites::find(s).is_some_and(|s| s.pacs().is_some()), "site {s} has no PACS configured (ae_title, host, port)");
            Ok(vec![s.to_owned()])
        }
        None => {
            let all: Vec<String> = crate::sites::all().iter().filter(|s| s.pacs().is_some()).map(|s| s.code.clone()).collect();
            anyhow::ensure!(!all.is_empty(), "no site has a PACS configured: give --sites FILE");
            Ok(all)
        }
    }
}

impl SyncArgs {
    /// A quick pass of every site with a PACS.
    pub fn all(federation: FederationArgs) -> Self {
        SyncArgs { site: None, full: false, json: false, federation }
    }
}

pub fn sync(data: &Path, a: SyncArgs) -> anyhow::Result<ExitCode> {
    let codes = codes(a.site.as_deref())?;
    let bars = indicatif::MultiProgress::new();
    let bar_of = |code: &str| {
        let b = bars.add(indicatif::ProgressBar::new_spinner());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix:5} {msg}") {
            b.set_style(style);
        }
        b.set_prefix(code.to_owned());
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let show = |b: &indicatif::ProgressBar, s: &Value| {
        let p = &s["progress"];
        if !p.is_null() {
            b.set_message(format!(
                "window {} · studies {} seen, {} new or changed · {} instances added",
                p["window"].as_str().unwrap_or(""),
                p["studies_seen"],
                p["studies_changed"],
                p["instances_added"]
            ));
        }
    };
    let results: Vec<(String, Value)> = match Control::read(data) {
        Some(c) => {
            // Through the running server: ask, then follow its status.
            let asked = crate::ingest::now_ms();
            let body = serde_json::to_vec(&serde_json::json!({"full": a.full}))?;
            for code in &codes {
                call(&c, "POST", &format!("/api/sites/{code}/sync"), Some(&body)).with_context(|| format!("asking the server to harvest {code}"))?;
            }
            let mut pending: Vec<(String, indicatif::ProgressBar)> = codes.iter().map(|c| (c.clone(), bar_of(c))).collect();
            let mut out = Vec::new();
            while !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(300));
                let all: Vec<Value> = serde_json::from_slice(&call(&c, "GET", "/api/sites", None)?)?;
                pending.retain(|(code, bar)| {
                    let Some(s) = all.iter().find(|s| s["code"] == code.as_str()) else { return false };
                    show(bar, s);
                    let finished = s["last_sync"]["finished"].as_u64().unwrap_or(0);
                    if s["syncing"] == false && finished >= asked {
                        bar.finish_and_clear();
                        out.push((code.clone(), s["last_sync"].clone()));
                        return false;
                    }
                    true
                });
            }
            out
        }
        None => {
            let full = a.full;
            in_process(data, a.federation.options(), move |fed| async move {
                let mut tasks = tokio::task::JoinSet::new();
                let mut shown = Vec::new();
                for code in codes {
                    shown.push((code.clone(), bar_of(&code)));
                    let fed = fed.clone();
                    tasks.spawn(async move {
                        let r = fed.sync(&code, full).await;
                        (code, r)
                    });
                }
                let mut out = Vec::new();
                loop {
                    tokio::select! {
                        done = tasks.join_next() => match done {
                            Some(Ok((code, r))) => {
                                if let Some((_, b)) = shown.iter().find(|(c, _)| *c == code) {
                                    b.finish_and_clear();
                                }
                                let v = match r {
                                    Ok(l) => serde_json::json!(l),
                                    Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                                };
                                out.push((code, v));
                            }
                            Some(Err(e)) => anyhow::bail!("a harvest task failed: {e}"),
                            None => break,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            let all: Vec<SiteStatus> = fed.status()?;
                            for (code, b) in &shown {
                                if let Some(s) = all.iter().find(|s| s.code == *code) {
                                    show(b, &serde_json::json!(s));
                                }
                            }
                        }
                    }
                }
                Ok(out)
            })?
        }
    };
    let ok = results.iter().all(|(_, r)| r["ok"] == true);
    if a.json {
        super::print_json(&results.iter().map(|(c, r)| serde_json::json!({"site": c, "result": r})).collect::<Vec<_>>())?;
    } else {
        for (code, r) in &results {
            if r["ok"] == true {
                println!(
                    "{code}: {} pass, {} studies seen, {} new or changed, {} instances added, {} refused, in {:.1} s",
                    if r["full"] == true { "full" } else { "quick" },
                    r["studies_seen"],
                    r["studies_changed"],
                    r["instances_added"],
                    r["refused"],
                    r["seconds"].as_f64().unwrap_or(0.0)
                );
                for why in r["refusals"].as_array().into_iter().flatten() {
                    println!("  refused: {}", why.as_str().unwrap_or(""));
                }
            } else {
                println!("{code}: failed: {}", r["error"].as_str().unwrap_or("unknown"));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs `f` with a federation over the hub opened in this process.
fn in_process<T, F, Fut>(data: &Path, opts: crate::federation::Options, f: F) -> anyhow::Result<T>
where
    F: FnOnce(Arc<Federation>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let hub = Arc::new(super::open_hub(data, DuplicatePolicy::Keep)?);
    let app = crate::app_db::open(data).with_context(|| format!("opening {}", data.join("app").display()))?;
    let fed = Federation::new(hub.clone(), &app, "RADHUB", opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let out = rt.block_on(f(fed));
    hub.index.sync()?;
    out
}

/// One request to the running server, as `radhub-cli`; the body of a 2xx answer.
pub(super) fn call(c: &Control, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let hostport = c.url.strip_prefix("http://").context("the control file names no http:// URL")?.trim_end_matches('/');
    let mut sock = std::net::TcpStream::connect(hostport)
        .with_context(|| format!("connecting to the running server at {hostport} (is it still running? remove control.json if not)"))?;
    sock.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        c.token,
        body.len()
    );
    sock.write_all(head.as_bytes())?;
    sock.write_all(body)?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("an unreadable answer from the server")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut payload = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = unchunk(&payload);
    }
    if !(200..300).contains(&status) {
        let detail: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        anyhow::bail!("the server answered {status}: {}", detail["detail"].as_str().unwrap_or(&String::from_utf8_lossy(&payload)));
    }
    Ok(payload)
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[(eol + 4 + n).min(b.len())..];
    }
    out
}

fn ago(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "at an unknown time".into() };
    let s = crate::ingest::now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}
