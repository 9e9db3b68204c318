//! UIDs that real archives hold and PS3.5 9.1 does not allow (64 hex
//! digits from anonymisers, letters, a stray slash, trailing space
//! padding): stored, flagged, and served back byte for byte. A UID never
//! becomes a path, so none of them is a risk.

mod support;

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use support::{dcmtk, get, output, request, user_token, Server};

/// CT_small under the given study, series and SOP Instance UIDs (raw
/// values, padding and all).
fn with_uids(dir: &Path, name: &str, study: &str, series: &str, sop: &str) -> std::path::PathBuf {
    let mut obj = dicom_object::open_file(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    for (t, v) in [(Tag(0x0020, 0x000D), study), (Tag(0x0020, 0x000E), series), (Tag(0x0008, 0x0018), sop)] {
        obj.put(DataElement::new(t, VR::UI, PrimitiveValue::from(v)));
    }
    obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.trim_end().to_owned());
    let p = dir.join(name);
    obj.write_to_file(&p).unwrap();
    p
}

#[test]
fn uids_real_archives_hold_are_stored_flagged_and_served_byte_identical() {
    let data = tempfile::tempdir().unwrap();
    let token = user_token(data.path(), "admin1", "admin");
    let files = tempfile::tempdir().unwrap();
    let hex = "5d2fa0c4".repeat(8);
    let study = "1.2.826.0.1.3680043.8.498.99a";
    let series = "1.2.826.0.1.3680043.8.498.99a.1/2";
    let stowed = std::fs::read(with_uids(files.path(), "hex.dcm", study, series, &hex)).unwrap();
    // Padded with a space, not a NUL: a common writer's slip.
    let padded =
        with_uids(files.path(), "padded.dcm", "1.2.826.0.1.3680043.8.498.100", "1.2.826.0.1.3680043.8.498.100.1", "1.2.826.0.1.3680043.8.498.100.1.1 ");
    let server = Server::start_in(data, &["--accept-any", "--stow-site", "RBD"]);
    let base = server.http();

    let r = support::stow(&base, &token, &[&stowed]);
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0].as_str().unwrap().to_owned();
    assert!(url.contains("%2F"), "a slash in a UID goes into a URL percent-encoded: {url}");
    let (ok, out) = output(dcmtk("storescu").args(["-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&padded));
    assert!(ok, "storescu: {out}");

    // Served back byte for byte, at the URL the STOW-RS answer gave.
    let path = url.trim_start_matches(&base);
    let auth = format!("Bearer {token}");
    let back = request(&base, "GET", path, &[("Authorization", &auth), ("Accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=*")], b"");
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(back.body.windows(stowed.len()).any(|w| w == stowed.as_slice()), "not byte-identical");
    // Found by QIDO, whose RetrieveURL works too.
    let q = get(&base, &format!("/dicom-web/instances?SOPInstanceUID={hex}"), &token).json();
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");
    let found = q[0]["00081190"]["Value"][0].as_str().unwrap();
    assert_eq!(get(&base, &format!("{}/metadata", found.trim_start_matches(&base)), &token).status, 200, "{found}");
    // Flagged where an admin looks.
    let s = get(&base, &format!("/api/studies/{study}"), &token).json();
    let odd: Vec<&str> = s["nonconformant_uids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(odd.contains(&study) && odd.contains(&series) && odd.contains(&hex.as_str()), "{s}");

    let (_, data) = server.stop();
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    let flagged: Vec<&str> = v["nonconformant_uids"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(flagged, vec![hex.as_str()], "{v}");
    assert!(
        support::json(&support::run(data.path(), &["ls", "instances", "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["sop_uid"] == "1.2.826.0.1.3680043.8.498.100.1.1"),
        "the space-padded UID is held without its padding"
    );
}
