//! `radhub demo`, the README's main job: three simulated site PACS
//! harvested, then today's examinations sent by them and ordered by their
//! RIS onto the county worklist (and the sites' history kept off it).

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{get, radhub};

#[test]
fn the_demo_puts_todays_studies_from_three_sites_on_the_county_worklist() {
    let data = tempfile::tempdir().unwrap();
    // The hub's DICOM port and the three after it (the site PACS), and +10 (HL7): all free.
    let http = support::free_port();
    let base = loop {
        let p = support::free_port();
        let free = |q: u16| q != http && std::net::TcpListener::bind(("127.0.0.1", q)).is_ok();
        if p < 60_000 && [1, 2, 3, 10].iter().all(|d| free(p + d)) {
            break p;
        }
    };
    let child = radhub()
        .arg("--data")
        .arg(data.path())
        .args(["demo", "--patients", "4", "--max-slices", "2", "--ct-size", "32"])
        .args(["--dicom-bind", &format!("127.0.0.1:{base}"), "--http-bind", &format!("127.0.0.1:{http}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut demo = Stopped(child);
    let mut lines = BufReader::new(demo.0.stdout.take().unwrap()).lines();
    let (mut token, mut today) = (None, None);
    let t = Instant::now();
    while today.is_none() {
        assert!(t.elapsed() < Duration::from_secs(120), "the demo did not send today's studies");
        let Some(Ok(line)) = lines.next() else { panic!("the demo stopped") };
        if line.contains("/api/worklist") {
            token = line.split("Bearer ").nth(1).and_then(|r| r.split('\'').next()).map(str::to_owned);
        }
        if line.starts_with("today") {
            today = Some(line);
        }
    }
    let today = today.unwrap();
    assert!(today.contains("ordered 3 "), "{today}");
    let token = token.expect("the radiologist's token is printed");
    let base_url = format!("http://127.0.0.1:{http}");
    let wl = get(&base_url, "/api/worklist?limit=1000", &token).json();
    assert_eq!(wl["counts"]["site"].as_object().map(|o| o.len()), Some(3), "{wl}");
    assert_eq!(wl["counts"]["priority"]["S"], 3, "{wl}");
    assert_eq!(wl["items"][0]["priority"], "S");
    // The sites' history (harvested, held only there) is not for reporting here.
    let studies = get(&base_url, "/api/studies?limit=1000", &token).json();
    let listed: Vec<&str> = wl["items"].as_array().unwrap().iter().map(|i| i["uid"].as_str().unwrap()).collect();
    assert!(studies.as_array().unwrap().iter().any(|s| !listed.contains(&s["uid"].as_str().unwrap())), "{studies}");
    assert!(wl["items"].as_array().unwrap().iter().all(|i| i["indication"] == "Collapse, ?stroke" || i["priority"] == "R"), "{wl}");
}

/// The demo, stopped (with its site PACS) however the test ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to the child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}
