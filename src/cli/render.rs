//! `radhub render SOP_UID`: one frame of a held instance through the display
//! pipeline, at a requested size and window, as PNG or JPEG (what the viewer
//! will ask the HTTP API for).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::ingest::DuplicatePolicy;
use crate::render::{Format, Instance, VoiFunction, Window};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    Png,
    Jpeg,
}

#[derive(clap::Args)]
pub struct Args {
    /// SOP Instance UID of a held instance.
    sop_instance_uid: String,
    /// Frame number, from 0.
    #[arg(long, default_value_t = 0)]
    frame: u32,
    /// Longest side in pixels (never upscaled); full size when absent.
    #[arg(long)]
    size: Option<u32>,
    /// Window as CENTER/WIDTH (e.g. 40/400); the file's own when absent.
    #[arg(long, value_parser = parse_window)]
    window: Option<Window>,
    #[arg(long, value_enum, default_value_t = Kind::Png)]
    format: Kind,
    /// JPEG quality, 1 to 100.
    #[arg(long, default_value_t = 90)]
    quality: u8,
    /// Where to write the image.
    #[arg(long)]
    out: PathBuf,
}

fn parse_window(s: &str) -> Result<Window, String> {
    let (c, w) = s.split_once('/').ok_or("want CENTER/WIDTH")?;
    let (center, width) = (c.trim().parse().map_err(|_| "bad center")?, w.trim().parse::<f64>().map_err(|_| "bad width")?);
    if width < 1.0 {
        return Err("the width must be at least 1".into());
    }
    Ok(Window { center, width, function: VoiFunction::Linear })
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let bytes = hub.file(&a.sop_instance_uid)?.with_context(|| format!("no instance {} is held", a.sop_instance_uid))?;
    let inst = Instance::open(&bytes)?;
    anyhow::ensure!(a.frame < inst.frames(), "frame {} asked for, the instance has {}", a.frame, inst.frames());
    let shown = inst.display(a.frame, a.window)?;
    let shown = match a.size {
        Some(s) => shown.fit(s),
        None => shown,
    };
    let format = match a.format {
        Kind::Png => Format::Png,
        Kind::Jpeg => Format::Jpeg { quality: a.quality },
    };
    std::fs::write(&a.out, shown.encode(format)?).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}×{} {} channel(s) → {}", shown.width, shown.height, shown.channels, a.out.display());
    Ok(ExitCode::SUCCESS)
}
