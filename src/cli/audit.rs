//! `radhub audit`: the audit trail, listed and exported as JSON lines, and
//! its hash chain checked. Through the running server when there is one
//! (it holds the database), else from the database directly.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::serve::Control;

#[derive(clap::Args)]
pub struct Args {
    /// Only this user's actions.
    #[arg(long)]
    user: Option<String>,
    /// Only actions on this patient ("issuer/Patient ID", or "NHS/number").
    #[arg(long)]
    patient: Option<String>,
    /// Only actions on this study (Study Instance UID).
    #[arg(long)]
    study: Option<String>,
    /// Records at most, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Check the whole chain instead of listing: exits 1 if it is broken.
    #[arg(long)]
    verify: bool,
    /// One JSON object per line (an export), not a table.
    #[arg(long)]
    json: bool,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    if a.verify {
        let v: Value = match Control::read(data) {
            Some(c) => serde_json::from_slice(&super::sites::call(&c, "GET", "/api/admin/audit/verify", None)?)?,
            None => {
                let db = crate::app_db::open(data).with_context(|| format!("opening {}", data.join("app").display()))?;
                let audit = crate::audit::Audit::new(&db)?;
                match audit.verify() {
                    Ok(n) => serde_json::json!({"ok": true, "records": n}),
                    Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                }
            }
        };
        println!(
            "{}",
            if v["ok"] == true {
                format!("audit trail intact: {} records", v["records"])
            } else {
                format!("audit trail broken: {}", v["error"].as_str().unwrap_or(""))
            }
        );
        return Ok(if v["ok"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let events: Vec<Value> = match Control::read(data) {
        Some(c) => {
            let mut q = vec![("limit", a.limit.to_string())];
            for (k, v) in [("user", &a.user), ("patient", &a.patient), ("study", &a.study)] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            let qs = serde_urlencoded::to_string(&q)?;
            serde_json::from_slice(&super::sites::call(&c, "GET", &format!("/api/admin/audit?{qs}"), None)?)?
        }
        None => {
            let db = crate::app_db::open(data).with_context(|| format!("opening {}", data.join("app").display()))?;
            let audit = crate::audit::Audit::new(&db)?;
            let f = crate::audit::Filter { user: a.user, patient: a.patient, study: a.study, ..Default::default() };
            audit.query(&f, a.limit)?.into_iter().map(|e| serde_json::json!(e)).collect()
        }
    };
    for e in &events {
        if a.json {
            println!("{e}");
        } else {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                crate::dates::iso_ms(e["time_ms"].as_u64().unwrap_or(0)),
                e["user"].as_str().unwrap_or(""),
                e["role"].as_str().unwrap_or(""),
                e["event"].as_str().unwrap_or(""),
                e["request"].as_str().unwrap_or(""),
                e["status"],
                e["patient"].as_str().unwrap_or("-"),
                e["study"].as_str().unwrap_or("-"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
