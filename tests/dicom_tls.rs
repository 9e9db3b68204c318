//! DICOM over TLS on the listener (`serve --dicom-tls-cert --dicom-tls-key
//! [--dicom-tls-ca]`), against DCMTK's TLS (BCP 195 profile): echo and
//! store over TLS, plain TCP refused, and with a client CA only peers
//! holding a certificate it issued.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{dcmtk, output, Server};

fn openssl(args: &[&str], dir: &Path) {
    let (ok, log) = output(Command::new("openssl").args(args).current_dir(dir));
    assert!(ok, "openssl {args:?}: {log}");
}

/// A CA named `ca`, and a key and certificate it issued to `name` (PEM files in `dir`).
fn issued(dir: &Path, ca: &str, name: &str) -> (PathBuf, PathBuf) {
    if !dir.join(format!("{ca}.crt")).exists() {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
            dir,
        );
    }
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={name}"), "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")], dir);
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.crt")))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// echoscu with `tls` options: whether it succeeded, and its log.
fn echo(s: &Server, tls: &[&str]) -> (bool, String) {
    output(dcmtk("echoscu").arg("-v").args(tls).args(["-aet", "TLSPEER", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]))
}

#[test]
fn dcmtk_echoes_and_stores_over_tls_and_plain_tcp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert) = issued(d, "county-ca", "radhub");
    let ca = d.join("county-ca.crt");
    let s = Server::start(&["--accept-any", "--dicom-tls-cert", path(&cert), "--dicom-tls-key", path(&key)]);

    // Anonymous TLS on the client's side (no certificate of its own), the server's checked against the CA.
    let (ok, log) = echo(&s, &["+tla", "+cf", path(&ca)]);
    assert!(ok, "C-ECHO over TLS: {log}");
    let file = support::testdata_files(&d.join("in"), &["--patients", "1", "--max-slices", "2"]).remove(0);
    let (ok, log) =
        output(dcmtk("storescu").args(["-v", "+tla", "+cf", path(&ca), "-aet", "TLSPEER", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]).arg(&file));
    assert!(ok && log.contains("Received Store Response (Success)"), "C-STORE over TLS: {log}");
    // Plain TCP to the TLS port: no association.
    let (ok, log) = echo(&s, &[]);
    assert!(!ok, "a plain association was accepted on the TLS port: {log}");
    // A server certificate its CA does not vouch for is refused by the peer, not by radhub.
    issued(d, "other-ca", "unused");
    let (ok, _) = echo(&s, &["+tla", "+cf", path(&d.join("other-ca.crt"))]);
    assert!(!ok, "DCMTK trusted a certificate of another CA");
    let (_, data) = s.stop();
    let stats = support::json(&support::run(data.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 1);
}

#[test]
fn with_a_client_ca_only_peers_holding_its_certificates_associate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert) = issued(d, "county-ca", "radhub");
    let (peer_key, peer_cert) = issued(d, "county-ca", "modality");
    let (stranger_key, stranger_cert) = issued(d, "stranger-ca", "stranger");
    let ca = d.join("county-ca.crt");
    let s = Server::start(&["--accept-any", "--dicom-tls-cert", path(&cert), "--dicom-tls-key", path(&key), "--dicom-tls-ca", path(&ca)]);

    let (ok, log) = echo(&s, &["+tls", path(&peer_key), path(&peer_cert), "+cf", path(&ca)]);
    assert!(ok, "a peer with the CA's certificate: {log}");
    let (ok, log) = echo(&s, &["+tla", "+cf", path(&ca)]);
    assert!(!ok, "a peer without a certificate was let in: {log}");
    let (ok, log) = echo(&s, &["+tls", path(&stranger_key), path(&stranger_cert), "+cf", path(&ca)]);
    assert!(!ok, "a peer with another CA's certificate was let in: {log}");
    // Refused handshakes hold nothing: the next peer still associates.
    let (ok, log) = echo(&s, &["+tls", path(&peer_key), path(&peer_cert), "+cf", path(&ca)]);
    assert!(ok, "after refusals: {log}");
}
