//! DICOM over TLS (BCP 195 profile). The listener (`serve --dicom-tls-cert
//! --dicom-tls-key [--dicom-tls-ca]`) against DCMTK's TLS: echo, store and
//! find over TLS, plain TCP refused, a renewed certificate taken at
//! SIGHUP, and with a client CA only peers
//! holding a certificate it issued. The associations radhub requests: to
//! DCMTK's storescp over TLS with radhub's client certificate, and to a
//! site's PACS with `[site.tls]` (Orthanc's DICOM TLS): harvested and
//! fetched by C-MOVE over TLS both ways, never falling back to plain TCP.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use pacs_gateway::scu::{self, PeerTls, ScuConfig, StoreAssociation};
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
    output(dcmtk("echoscu").arg("-v").args(tls).args(["-aet", "STORE_RBD", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]))
}

#[test]
fn dcmtk_echoes_stores_and_finds_over_tls_plain_tcp_is_refused_and_sighup_renews() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert) = issued(d, "county-ca", "radhub");
    let ca = d.join("county-ca.crt");
    let mut args: Vec<String> = ["--dicom-tls-cert", path(&cert), "--dicom-tls-key", path(&key)].map(String::from).to_vec();
    args.extend(support::site_peers());
    let s = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Anonymous TLS on the client's side (no certificate of its own), the server's checked against the CA.
    let (ok, log) = echo(&s, &["+tla", "+cf", path(&ca)]);
    assert!(ok, "C-ECHO over TLS: {log}");
    let file = support::testdata_files(&d.join("in"), &["--patients", "1", "--max-slices", "2"]).remove(0);
    let ae = support::store_ae(&support::attr(&file, dicom_core::Tag(0x0010, 0x0021)));
    let (ok, log) =
        output(dcmtk("storescu").args(["-v", "+tla", "+cf", path(&ca), "-aet", &ae, "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]).arg(&file));
    assert!(ok && log.contains("Received Store Response (Success)"), "C-STORE over TLS: {log}");
    let (ok, log) = output(
        dcmtk("findscu")
            .args(["-v", "-S", "+tla", "+cf", path(&ca), "-aet", &ae, "-aec", "RADHUB", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"])
            .args(["127.0.0.1", &s.port.to_string()]),
    );
    assert!(ok && log.contains(&support::attr(&file, dicom_core::Tag(0x0020, 0x000D))), "C-FIND over TLS: {log}");
    // Plain TCP to the TLS port: no association.
    let (ok, log) = echo(&s, &[]);
    assert!(!ok, "a plain association was accepted on the TLS port: {log}");
    // A server certificate its CA does not vouch for is refused by the peer, not by radhub.
    issued(d, "other-ca", "unused");
    let (ok, _) = echo(&s, &["+tla", "+cf", path(&d.join("other-ca.crt"))]);
    assert!(!ok, "DCMTK trusted a certificate of another CA");

    // A renewed certificate (here from another CA) written over the files
    // and SIGHUP: new associations get it; a file that does not load
    // leaves the one in use.
    let (renewed_key, renewed_cert) = issued(d, "renewed-ca", "radhub-renewed");
    std::fs::copy(&renewed_key, &key).unwrap();
    std::fs::copy(&renewed_cert, &cert).unwrap();
    let hangup = |s: &Server| assert!(Command::new("kill").args(["-HUP", &s.pid().to_string()]).status().unwrap().success());
    let renewed_ca = d.join("renewed-ca.crt");
    let until_served = |ca: &Path| {
        let t = std::time::Instant::now();
        while !echo(&s, &["+tla", "+cf", path(ca)]).0 {
            assert!(t.elapsed() < Duration::from_secs(10), "the renewed certificate was not taken");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    hangup(&s);
    until_served(&renewed_ca);
    assert!(!echo(&s, &["+tla", "+cf", path(&ca)]).0, "the old certificate still served after SIGHUP");
    std::fs::write(&cert, "not a certificate").unwrap();
    hangup(&s);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, log) = echo(&s, &["+tla", "+cf", path(&renewed_ca)]);
    assert!(ok, "an unreadable renewal replaced the certificate in use: {log}");

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

fn scu_cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB".into(), connect_timeout: Duration::from_secs(5), dimse_timeout: Duration::from_secs(10), ..Default::default() }
}

/// Stores `file` on one association to `peer`.
async fn store(peer: &scu::Peer, file: &Path) -> Result<scu::Answer, scu::ScuError> {
    let bytes = std::fs::read(file).unwrap();
    let refs = vec![scu::describe(&bytes).unwrap()];
    let mut assoc = StoreAssociation::connect(&scu_cfg(), peer, &scu::classes_of(&refs)).await?;
    let answer = assoc.store(&bytes).await;
    let _ = assoc.release().await;
    answer
}

#[tokio::test]
async fn radhub_stores_to_dcmtk_over_tls_with_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert) = issued(d, "county-ca", "radhub");
    let (peer_key, peer_cert) = issued(d, "county-ca", "storescp");
    issued(d, "other-ca", "unused");
    let ca = d.join("county-ca.crt");
    // storescp over TLS, requiring a client certificate its CA issued.
    let scp = support::storescp("TLSSCP", &["+tls", path(&peer_key), path(&peer_cert), "+cf", path(&ca), "-rc"]);
    let file = support::testdata_files(&d.join("in"), &["--patients", "1", "--max-slices", "1"]).remove(0);
    let tls = |ca: &Path, own: Option<(&Path, &Path)>| Some(PeerTls { config: radhub::tls::dicom_client(ca, own).unwrap(), server_name: "127.0.0.1".into() });

    let peer = scp.peer().with_tls(tls(&ca, Some((&cert, &key))));
    let echo = scu::echo(&scu_cfg(), &peer).await.unwrap_or_else(|e| panic!("C-ECHO over TLS: {e}\n{}", scp.log()));
    assert_eq!(echo.status.0, 0);
    let answer = store(&peer, &file).await.unwrap_or_else(|e| panic!("C-STORE over TLS: {e}\n{}", scp.log()));
    assert_eq!(answer.status.0, 0, "{answer:?}");
    let received: Vec<_> = std::fs::read_dir(scp.received()).unwrap().collect();
    assert_eq!(received.len(), 1, "storescp holds what radhub sent over TLS");

    // Without radhub's certificate, with a CA that does not vouch for the
    // peer, or over plain TCP: no association, and nothing more stored.
    let anonymous = scp.peer().with_tls(tls(&ca, None));
    assert!(store(&anonymous, &file).await.is_err(), "stored without a client certificate");
    let distrusting = scp.peer().with_tls(tls(&d.join("other-ca.crt"), Some((&cert, &key))));
    let e = store(&distrusting, &file).await.expect_err("trusted a certificate of another CA");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    assert!(store(&scp.peer(), &file).await.is_err(), "plain TCP to a TLS peer");
    assert_eq!(std::fs::read_dir(scp.received()).unwrap().count(), 1);
}

#[test]
fn a_site_pacs_on_tls_is_harvested_and_fetched_over_tls_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert) = issued(d, "county-ca", "radhub");
    let (pacs_key, pacs_cert) = issued(d, "county-ca", "orthanc");
    issued(d, "other-ca", "unused");
    let ca = d.join("county-ca.crt");
    let hub_port = support::free_port();
    // Orthanc on DICOM TLS only, requiring client certificates; it calls
    // radhub back (C-MOVE) over TLS with its own.
    let pacs = support::orthanc(
        "PACS_RBD",
        &[],
        serde_json::json!({
            "DicomModalities": {"radhub": {"AET": "RADHUB", "Host": "127.0.0.1", "Port": hub_port, "UseDicomTls": true}},
            "DicomTlsEnabled": true,
            "DicomTlsCertificate": pacs_cert,
            "DicomTlsPrivateKey": pacs_key,
            "DicomTlsTrustedCertificates": ca,
            "DicomTlsRemoteCertificateRequired": true,
        }),
    );
    let files = support::testdata_files(&d.join("gen"), &["--patients", "2", "--studies-per-patient", "1", "--max-slices", "2", "--ct-size", "32"]);
    let files: Vec<PathBuf> = files.into_iter().filter(|f| f.starts_with(d.join("gen/RBD"))).collect();
    assert!(!files.is_empty());
    let base = format!("http://127.0.0.1:{}", pacs.http);
    for f in &files {
        let r = support::request(&base, "POST", "/instances", &[("Content-Type", "application/dicom")], &std::fs::read(f).unwrap());
        assert_eq!(r.status, 200, "{} into Orthanc: {}", f.display(), r.text());
    }
    // RBD over TLS as it should be; RD3 with a CA that does not vouch for
    // the PACS; R0D forgetting TLS. The last two must fail, not fall back.
    // (Each its own AE title: one AE at three sites would be quarantined.)
    let site = |code: &str, tls: &str| {
        format!(
            "[[site]]\ncode = \"{code}\"\nname = \"{code} hospital\"\nissuer = \"{code}\"\nae_title = \"PACS_{code}\"\nhost = \"127.0.0.1\"\nport = {}\nretrieve = \"c-move\"\n{tls}\n",
            pacs.port
        )
    };
    let own = format!("cert = {:?}\nkey = {:?}\n", cert, key);
    let sites = [
        site("RBD", &format!("[site.tls]\nca = {:?}\n{own}", ca)),
        site("RD3", &format!("[site.tls]\nca = {:?}\n{own}", d.join("other-ca.crt"))),
        site("R0D", ""),
    ]
    .concat();
    let sites_file = d.join("sites.toml");
    std::fs::write(&sites_file, sites).unwrap();
    let data = tempfile::tempdir().unwrap();
    let reader = support::user_token(data.path(), "clinician", "clinician");
    let hub = Server::start_on(
        data,
        hub_port,
        &[
            "--sites",
            path(&sites_file),
            "--dicom-tls-cert",
            path(&cert),
            "--dicom-tls-key",
            path(&key),
            "--dicom-tls-ca",
            path(&ca),
            "--sync-interval",
            "0",
            "--site-timeout",
            "3",
            "--fetch-wait",
            "30",
        ],
    );

    // Exits non-zero: two sites fail.
    let (_, text) = output(support::radhub().arg("--data").arg(hub.data.path()).args(["--sites", path(&sites_file), "sync", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&text[text.find('[').unwrap_or_else(|| panic!("radhub sync: {text}"))..]).unwrap();
    let result = |code: &str| json.as_array().unwrap().iter().find(|r| r["site"] == code).unwrap_or_else(|| panic!("{code} in {json}"))["result"].clone();
    let studies: std::collections::BTreeSet<String> = files.iter().map(|f| support::attr(f, dicom_core::Tag(0x0020, 0x000D))).collect();
    let rbd = result("RBD");
    assert_eq!(rbd["ok"], true, "harvest over TLS: {rbd}\n{}", pacs.log());
    assert_eq!(rbd["studies_changed"].as_u64(), Some(studies.len() as u64), "{rbd}");
    let rd3 = result("RD3");
    assert_eq!(rd3["ok"], false, "a PACS certificate of another CA was trusted: {rd3}");
    assert!(rd3.to_string().contains("TLS handshake"), "{rd3}");
    assert_eq!(result("R0D")["ok"], false, "plain TCP to a TLS PACS");

    // A remote study by WADO-RS: radhub's C-MOVE over TLS, Orthanc's C-STOREs back over TLS.
    let uid = studies.iter().next().unwrap();
    let r = support::get(&hub.http(), &format!("/dicom-web/studies/{uid}"), &reader);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), pacs.log());
    let sent: Vec<&PathBuf> = files.iter().filter(|f| support::attr(f, dicom_core::Tag(0x0020, 0x000D)) == *uid).collect();
    for f in &sent {
        let sop = support::attr(f, dicom_core::Tag(0x0008, 0x0018));
        assert!(r.body.windows(sop.len()).any(|w| w == sop.as_bytes()), "instance {sop} missing from the fetched study");
    }
    let (_, data) = hub.stop();
    let stats = support::json(&support::run(data.path(), &["--sites", path(&sites_file), "stats", "--json"]));
    assert_eq!(stats["total"]["local_instances"].as_u64(), Some(sent.len() as u64), "{stats}");
}
