//! The trusts whose PACS radhub joins. Each site's organisation code is the
//! Issuer of Patient ID its local MRNs are issued under.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub code: &'static str,
    pub name: &'static str,
}

pub const SITES: [Site; 3] = [
    Site { code: "RBD", name: "Dorset County Hospital" },
    Site { code: "RD3", name: "Poole Hospital" },
    Site { code: "R0D", name: "Royal Bournemouth and Christchurch Hospitals" },
];

/// Where an instance came from when no site was named: the hub itself.
pub const HUB: &str = "HUB";

/// The site an instance is held for: the one named by the caller, else the
/// site whose code is the instance's Issuer of Patient ID, else the hub.
pub fn resolve(requested: Option<&str>, issuer_of_patient_id: &str) -> String {
    if let Some(s) = requested {
        return s.to_owned();
    }
    SITES.iter().find(|s| s.code == issuer_of_patient_id).map_or(HUB, |s| s.code).to_owned()
}
