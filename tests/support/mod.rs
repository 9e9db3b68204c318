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
