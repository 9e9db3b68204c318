//! HTTPS for the API and viewer (`serve --tls-cert --tls-key`), checked with
//! curl and openssl: TLS 1.2 and 1.3 only, plain HTTP refused with a clear
//! answer, HTTP/2 by ALPN, the session cookie `Secure`, a renewed certificate taken at
//! SIGHUP, and the `radhub` commands beside the server still reaching it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{output, Server};

/// A self-signed certificate for 127.0.0.1 named `cn`: (certificate, key).
fn certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let (ok, log) = output(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={cn}"), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    assert!(ok, "openssl req: {log}");
    (cert, key)
}

/// curl's exit status and output (`-w` status code last).
fn curl(args: &[&str]) -> (bool, String) {
    output(Command::new("curl").args(["-s", "-S", "--max-time", "10"]).args(args))
}

fn https(s: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", s.http_port)
}

#[test]
fn the_api_is_served_over_https_only_and_takes_a_renewed_certificate_at_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (one, one_key) = certificate(dir.path(), "radhub-one");
    let (two, two_key) = certificate(dir.path(), "radhub-two");
    let (cert, key) = (dir.path().join("hub.crt"), dir.path().join("hub.key"));
    std::fs::copy(&one, &cert).unwrap();
    std::fs::copy(&one_key, &key).unwrap();
    let data = tempfile::tempdir().unwrap();
    let token = support::user_token(data.path(), "admin1", "admin");
    let s = Server::start_in(data, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);

    // Verified against its certificate, over TLS 1.2 and 1.3.
    let auth = format!("Authorization: Bearer {token}");
    let url = https(&s, "/dicom-web/studies");
    for version in ["--tlsv1.2", "--tlsv1.3"] {
        let (ok, out) = curl(&["--cacert", one.to_str().unwrap(), version, "-H", &auth, "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", &url]);
        assert!(ok && out.trim() == "200 0", "{version}: {out}");
    }
    // HTTP/2 where the client offers it (ALPN), HTTP/1.1 otherwise.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out) = curl(&["--cacert", one.to_str().unwrap(), flag, "-H", &auth, "-o", "/dev/null", "-w", "%{http_code} %{http_version}", &url]);
        assert!(ok && out.trim() == format!("200 {version}"), "{flag}: {out}");
    }
    // Nothing older than TLS 1.2.
    let (ok, out) = curl(&["--cacert", one.to_str().unwrap(), "--tlsv1", "--tls-max", "1.1", "-o", "/dev/null", &url]);
    assert!(!ok, "TLS 1.1 was accepted: {out}");
    // Plain HTTP to the port: told to use HTTPS, and nothing served.
    let (_, out) = curl(&["-H", &auth, "-w", "\n%{http_code}", &format!("http://127.0.0.1:{}/dicom-web/studies", s.http_port)]);
    assert!(out.contains("HTTPS only") && out.trim_end().ends_with("400"), "plain HTTP: {out}");

    // A session signed in over HTTPS gets a Secure cookie.
    let sign_in = r#"{"username":"admin1","password":"admin1-password"}"#;
    let (ok, head) =
        curl(&["--cacert", one.to_str().unwrap(), "-i", "-X", "POST", "-H", "Content-Type: application/json", "--data", sign_in, &https(&s, "/api/session")]);
    assert!(ok && (head.starts_with("HTTP/2 200") || head.starts_with("HTTP/1.1 200")), "{head}");
    let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // A renewed certificate: taken at SIGHUP, for new connections.
    std::fs::copy(&two, &cert).unwrap();
    std::fs::copy(&two_key, &key).unwrap();
    let (ok, _) = curl(&["--cacert", two.to_str().unwrap(), "-o", "/dev/null", &url]);
    assert!(!ok, "the new certificate was served before SIGHUP");
    assert!(Command::new("kill").args(["-HUP", &s.pid().to_string()]).status().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let served = |c: &Path| curl(&["--cacert", c.to_str().unwrap(), "-H", &auth, "-o", "/dev/null", "-w", "%{http_code}", &url]);
    while !served(&two).0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (ok, out) = served(&two);
    assert!(ok && out.trim() == "200", "after SIGHUP: {out}");
    assert!(!served(&one).0, "the old certificate is still served after SIGHUP");

    // A broken file at SIGHUP leaves the certificate in use.
    std::fs::write(&cert, b"not a certificate").unwrap();
    assert!(Command::new("kill").args(["-HUP", &s.pid().to_string()]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(served(&two).0, "a broken certificate file replaced the one in use");

    // `radhub` commands beside the server still reach it.
    let sites = support::run(s.data.path(), &["sites", "list"]);
    assert!(sites.status.success(), "radhub sites list beside an HTTPS server: {}", String::from_utf8_lossy(&sites.stderr));
    let (stopped, _) = s.stop();
    assert!(stopped);
}
