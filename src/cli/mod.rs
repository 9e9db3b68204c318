//! The `radhub` admin commands. Each subcommand lives in its own file and
//! returns `anyhow::Result`, so errors reach the admin with their context.

mod audit;
mod demo;
mod import;
mod links;
mod ls;
mod quarantine;
mod render;
mod serve;
mod sites;
mod stats;
mod testdata;
mod thumbs;
mod users;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::ingest::{DuplicatePolicy, Hub};

#[derive(Parser)]
#[command(name = "radhub", version, about = "Cross-site radiology imaging and reporting hub")]
pub struct Cli {
    /// The hub's data directory (instance files and index).
    #[arg(long, global = true, env = "RADHUB_DATA", default_value = "radhub-data")]
    data: PathBuf,
    /// The sites file (TOML, `[[site]]` tables: code, name, issuer, and the
    /// site's PACS); without it, the three Dorset demo sites.
    #[arg(long, global = true, env = "RADHUB_SITES")]
    sites: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Store and index every DICOM file under the given files and folders.
    Import(import::Args),
    /// Check the store against the index; --repair mends what it finds.
    Verify(verify::Args),
    /// Counts of patients, studies, series, instances, overall and per site.
    Stats(stats::Args),
    /// List patients, studies, series or instances.
    Ls(ls::Args),
    /// Write deterministic synthetic studies from the three Dorset trusts.
    Testdata(testdata::Args),
    /// Generate demo data for three sites, import it, and show the hub.
    Demo(demo::Args),
    /// Render one frame of a held instance at a size and window, as PNG or JPEG.
    Render(render::Args),
    /// Make missing series and study thumbnails (--rebuild: all).
    Thumbs(thumbs::Args),
    /// Run the hub: the DICOM listener and the HTTP API (DICOMweb, radhub's JSON, the viewer).
    Serve(serve::Args),
    /// Manage users, roles and API tokens.
    Users(users::Args),
    /// Each trust's patient records and their NHS-number links: show, link,
    /// unlink, dismiss, conflicts, proposals, the log.
    #[command(alias = "links")]
    Patients(links::Args),
    /// Studies held apart for an admin: list them, file one under a site.
    Quarantine(quarantine::Args),
    /// The sites' PACS: list them with their harvests, C-ECHO them.
    Sites(sites::Args),
    /// Harvest the sites' PACS into the index now (through the running server if there is one).
    Sync(sites::SyncArgs),
    /// The audit trail of access to patient data: list, export (--json), check its chain (--verify).
    Audit(audit::Args),
}

pub fn main() -> ExitCode {
    // Patient data: everything the hub writes is for its own user only
    // (directories 0700, files 0600).
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RADHUB_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(path) = &cli.sites {
        if let Err(e) = crate::sites::load(path).and_then(crate::sites::configure) {
            eprintln!("radhub: --sites: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Import(a) => import::run(&cli.data, a),
        Command::Verify(a) => verify::run(&cli.data, a),
        Command::Stats(a) => stats::run(&cli.data, a),
        Command::Ls(a) => ls::run(&cli.data, a),
        Command::Testdata(a) => testdata::run(a),
        Command::Demo(a) => demo::run(&cli.data, a),
        Command::Serve(a) => serve::run(&cli.data, a),
        Command::Thumbs(a) => thumbs::run(&cli.data, a),
        Command::Render(a) => render::run(&cli.data, a),
        Command::Users(a) => users::run(&cli.data, a),
        Command::Patients(a) => links::run(&cli.data, a),
        Command::Quarantine(a) => quarantine::run(&cli.data, a),
        Command::Sites(a) => sites::run(&cli.data, a),
        Command::Sync(a) => sites::sync(&cli.data, a),
        Command::Audit(a) => audit::run(&cli.data, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("radhub: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A site code from the command line, checked against the configured sites.
fn site_arg(code: &str) -> anyhow::Result<&'static str> {
    crate::sites::known(code).map_err(anyhow::Error::msg)
}

fn open_hub(data: &std::path::Path, policy: DuplicatePolicy) -> anyhow::Result<Hub> {
    Hub::open(data, policy).map_err(|e| in_use(data, e.into()))
}

/// sled allows one process: say which, rather than "could not acquire lock".
fn in_use(data: &std::path::Path, e: anyhow::Error) -> anyhow::Error {
    if format!("{e:#}").contains("could not acquire lock") {
        anyhow::anyhow!("the hub at {} is in use by another radhub process (is `radhub serve` running?); stop it first", data.display())
    } else {
        e.context(format!("opening the hub at {}", data.display()))
    }
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{spinner}} {{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
