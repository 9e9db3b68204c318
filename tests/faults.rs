//! Faults while ingesting: the disk filling up (a small tmpfs the test
//! mounts; CI runs as root). C-STORE answers A700, STOW-RS 507, nothing
//! half-written stays, and ingest resumes once space returns.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{dcmtk, output, user_token, Server};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let (ok, log) = output(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(at));
        assert!(ok, "mounting a {size} tmpfs at {} (the disk-full test needs root): {log}", at.display());
        Mount(at.to_owned())
    }

    fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and an out-parameter of the right type.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// storescu of `files` on one association, carrying on past failures: the
/// responses' statuses as DCMTK names them, in order.
fn storescu(server: &Server, files: &[PathBuf]) -> Vec<String> {
    let (_, log) = output(dcmtk("storescu").args(["-v", "--no-halt", "-aet", "FILLER", "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).args(files));
    let statuses: Vec<String> =
        log.lines().filter_map(|l| l.split_once("Received Store Response (")).map(|(_, s)| s.trim_end_matches(')').to_owned()).collect();
    assert_eq!(statuses.len(), files.len(), "a response per file: {log}");
    statuses
}

#[test]
fn a_full_disk_refuses_what_it_cannot_keep_and_ingest_resumes_when_space_returns() {
    let work = tempfile::tempdir().unwrap();
    // Dorset County's studies, sent by an AE of its own.
    let files: Vec<PathBuf> = support::testdata_files(&work.path().join("in"), &["--patients", "4", "--max-slices", "24", "--ct-size", "256"])
        .into_iter()
        .filter(|f| f.starts_with(work.path().join("in").join("RBD")))
        .collect();
    assert!(files.len() >= 30, "{} files", files.len());
    let size: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let disk = Mount::tmpfs(&work.path().join("disk"), "64m");
    let data = tempfile::tempdir_in(&disk.0).unwrap();
    let admin = user_token(data.path(), "admin1", "admin");
    let server = Server::start_in(data, &["--peer", "FILLER@127.0.0.1:0=RBD", "--stow-site", "RBD"]);

    // Leave room for about a third of the files.
    let filler = disk.0.join("filler");
    let leave = size / 3;
    let f = std::fs::File::create(&filler).unwrap();
    f.set_len(disk.free().saturating_sub(leave)).unwrap();
    // tmpfs allocates on write: write it out, so the space is really taken.
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let block = vec![0u8; 1 << 20];
        let mut left = disk.free().saturating_sub(leave);
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if w.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = w.flush();
    }

    // All but one by C-STORE; that one by STOW-RS.
    let (sent, by_stow) = files.split_at(files.len() - 1);
    let first = storescu(&server, sent);
    let stored = first.iter().filter(|s| *s == "Success").count();
    let full = first.iter().filter(|s| s.contains("OutOfResources")).count();
    assert!(stored > 0 && full > 0, "some stored, then out of resources: {first:?}");
    assert_eq!(stored + full, sent.len(), "no other answer: {first:?}");
    // What was acknowledged is what the index holds; nothing half-written stays behind.
    let held = |token: &str| -> usize { support::get(&server.http(), "/dicom-web/instances?limit=1000", token).json().as_array().map_or(0, Vec::len) };
    assert_eq!(held(&admin), stored, "acknowledged instances and indexed ones differ");
    assert_eq!(support::staging_debris(server.data.path()), Vec::<PathBuf>::new(), "staging debris after a full disk");

    // STOW-RS while the disk is full: 507, nothing kept.
    let last = std::fs::read(&by_stow[0]).unwrap();
    let r = support::stow(&server.http(), &admin, &[&last]);
    assert_eq!(r.status, 507, "STOW-RS on a full disk: {}", r.text());
    assert_eq!(held(&admin), stored);

    // Space returns: the rest goes in on the same server, the stored ones answered as held.
    std::fs::remove_file(&filler).unwrap();
    let second = storescu(&server, sent);
    assert!(second.iter().all(|s| s == "Success"), "after space returned: {second:?}");
    assert_eq!(support::stow(&server.http(), &admin, &[&last]).status, 200);
    assert_eq!(held(&admin), files.len());

    // Restarted, the store and the index agree.
    let peak = support::peak_kib(server.pid()) / 1024;
    let (stopped, data) = server.stop();
    assert!(stopped);
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    assert_eq!(v["indexed"].as_u64(), Some(files.len() as u64), "{v}");
    for k in ["orphan_files", "missing_files", "mismatched", "unreadable"] {
        assert!(v[k].as_array().is_some_and(Vec::is_empty), "{k}: {v}");
    }
    assert_eq!(support::staging_debris(data.path()), Vec::<PathBuf>::new());
    support::fault_row(
        "faults::a_full_disk_refuses_what_it_cannot_keep_and_ingest_resumes_when_space_returns",
        &format!("{} instances ({} MB) by storescu and STOW-RS into a 64 MiB tmpfs", files.len(), size / 1_000_000),
        &format!("disk full after {stored}: {full} C-STORE answered A700, STOW-RS 507; space freed, all sent again"),
        files.len(),
        v["indexed"].as_u64().unwrap_or(0) as usize,
        peak,
    );
    drop(data);
}
