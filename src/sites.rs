//! The sites whose PACS radhub joins, and which patient-identity domain an
//! arriving instance belongs to.
//!
//! A site is one PACS; its issuer is the domain its local Patient IDs are
//! unique in (PS3.4 C.6.1.1.2). Two sites may share one issuer (Poole and
//! the Royal Bournemouth became one trust in 2020). Sites are
//! configuration (`radhub serve --sites FILE`, TOML), loaded once at start;
//! the built-in three are the demo's defaults.
//!
//! The site of an instance is always configuration (the calling AE's site,
//! `--stow-site`, `import --site`, the PACS a harvest read it from), never
//! the data: data from a sender with no configured site, or naming another
//! site's issuer, is filed under the quarantine site for an admin to
//! review, never into a trust's records.

use crate::index::model::AccessionIssuer;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

/// How radhub fetches a study from a site's PACS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retrieve {
    /// C-MOVE to radhub's own AE (the PACS must know radhub as a destination).
    #[default]
    CMove,
    /// C-GET on the same association.
    CGet,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Site code, shown everywhere (RBD, RD3, RDZ...).
    pub code: String,
    pub name: String,
    /// Issuer of Patient ID of the site's local IDs.
    pub issuer: String,
    /// The site's PACS, when radhub harvests and retrieves from it.
    #[serde(default)]
    pub ae_title: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub retrieve: Retrieve,
    /// DICOM over TLS to the site's PACS (`[site.tls]`), for every
    /// association radhub requests of it: harvest, retrieve, reports.
    #[serde(default)]
    pub tls: Option<SiteTls>,
    /// The site's Patient IDs are NHS numbers (linked by them when valid).
    #[serde(default)]
    pub nhs_patient_ids: bool,
    /// The site's RIS for signed reports (HL7 v2 ORU^R01 over MLLP), host:port.
    #[serde(default)]
    pub ris: Option<String>,
    /// Other AEs that store into radhub for this site (its modalities),
    /// besides its PACS's own AE.
    #[serde(default)]
    pub senders: Vec<String>,
    /// Which of its arrivals need reporting: `arrivals` (every study; for
    /// sites without an order feed) or `orders` (only ordered ones).
    #[serde(default)]
    pub worklist: crate::worklist::Rule,
    /// AEs allowed to call radhub for this site, each from its hosts and
    /// networks (`[[site.caller]]`: `ae_title`, `from = ["10.1.5.0/24",
    /// "2001:db8::/32"]`); they store for the site, as senders do. One with
    /// the PACS's AE title lets the PACS call from those networks too.
    #[serde(default, rename = "caller")]
    pub callers: Vec<CallerAe>,
    /// C-MOVE destinations of the site (`[[site.destination]]`:
    /// `ae_title`, `host`, `port`), not allowed to call unless also callers.
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationAe>,
    /// Who issues the site's accession numbers, as its RIS and PACS write
    /// them in Issuer of Accession Number Sequence: Local Namespace Entity
    /// ID (default: the site code) and, optionally, a Universal Entity ID
    /// (an ISO OID). Data naming no issuer is filed under this one.
    #[serde(default)]
    pub accession_issuer: Option<String>,
    #[serde(default)]
    pub accession_issuer_uid: Option<String>,
}

/// TLS to a site's PACS: `ca`, the CA file (PEM) its certificate must
/// chain to; `cert` and `key`, radhub's client certificate (when the PACS
/// asks for one); `server_name`, the name the PACS's certificate carries
/// (default: its host).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteTls {
    pub ca: std::path::PathBuf,
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
}

/// An AE allowed to call from the hosts and networks of `from` (CIDR).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallerAe {
    pub ae_title: String,
    pub from: Vec<String>,
}

/// A C-MOVE destination.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationAe {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl Site {
    /// The site's PACS as (AE title, host, port), if configured.
    pub fn pacs(&self) -> Option<(&str, &str, u16)> {
        Some((self.ae_title.as_deref()?, self.host.as_deref()?, self.port?))
    }

    /// The site's PACS to call, over TLS when the site has it. The TLS
    /// files were checked when the sites were loaded; one that stopped
    /// loading since is an error here, never a fall back to plain TCP.
    pub fn pacs_peer(&self) -> Result<Option<pacs_gateway::scu::Peer>, SitesError> {
        let Some((ae, host, port)) = self.pacs() else { return Ok(None) };
        let tls = self.tls.as_ref().map(|t| client_tls(t, host)).transpose()?;
        Ok(Some(pacs_gateway::scu::Peer::new(ae, host, port).with_tls(tls)))
    }

    /// The issuer of the site's own accession numbers.
    pub fn accession_issuer(&self) -> AccessionIssuer {
        AccessionIssuer {
            local: self.accession_issuer.clone().unwrap_or_else(|| self.code.clone()),
            universal: self.accession_issuer_uid.clone().unwrap_or_default(),
            universal_type: if self.accession_issuer_uid.is_some() { "ISO".into() } else { String::new() },
        }
    }

    /// Whether an accession number of `issuer` is one of the site's own
    /// (and so can be the site's order): the same local namespace, or the
    /// same universal ID when both have one. Never by number alone.
    pub fn issues(&self, issuer: &AccessionIssuer) -> bool {
        let own = self.accession_issuer();
        (!own.universal.is_empty() && own.universal == issuer.universal) || (!issuer.local.is_empty() && own.local == issuer.local)
    }
}

/// Whether an accession number of `issuer` at `site` is the site's own,
/// so that its RIS's order of that number can be this study's. Another
/// authority's number (a study imported from elsewhere) never is.
pub fn own_accession(site: &str, issuer: &AccessionIssuer) -> bool {
    find(site).is_some_and(|s| s.issues(issuer))
}

/// The issuer an arrival's accession number is filed under at `site`: the
/// data's own when it names one, else the site's (none for quarantine).
pub fn accession_issuer(site: &str, given: &AccessionIssuer) -> AccessionIssuer {
    match find(site) {
        Some(s) if given.is_empty() => s.accession_issuer(),
        _ => given.clone(),
    }
}

/// The client configuration of `tls`, read once per process.
fn client_tls(tls: &SiteTls, host: &str) -> Result<pacs_gateway::scu::PeerTls, SitesError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    static READ: OnceLock<Mutex<HashMap<SiteTls, Arc<rustls::ClientConfig>>>> = OnceLock::new();
    let mut read = READ.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let config = match read.get(tls) {
        Some(c) => c.clone(),
        None => {
            let own = match (&tls.cert, &tls.key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (None, None) => None,
                _ => return Err(SitesError::Invalid("[site.tls]: cert and key go together".into())),
            };
            let c = crate::tls::dicom_client(&tls.ca, own).map_err(|e| SitesError::Invalid(format!("[site.tls]: {e}")))?;
            read.insert(tls.clone(), c.clone());
            c
        }
    };
    Ok(pacs_gateway::scu::PeerTls { config, server_name: tls.server_name.clone().unwrap_or_else(|| host.to_owned()) })
}

/// The sites file: `[[site]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesFile {
    #[serde(rename = "site")]
    pub sites: Vec<Site>,
}

#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Where data with no configured site goes: held apart, for admins.
pub const QUARANTINE: &str = "QUARANTINE";

/// The three Dorset PACS sites: the demo's defaults. Poole and the Royal
/// Bournemouth and Christchurch are one trust (University Hospitals Dorset,
/// R0D) with, here, separate Patient ID domains.
pub fn defaults() -> Vec<Site> {
    let site = |code: &str, name: &str, issuer: &str| Site {
        code: code.into(),
        name: name.into(),
        issuer: issuer.into(),
        ae_title: None,
        host: None,
        port: None,
        retrieve: Retrieve::CMove,
        tls: None,
        nhs_patient_ids: false,
        senders: Vec::new(),
        ris: None,
        worklist: crate::worklist::Rule::Arrivals,
        callers: Vec::new(),
        destinations: Vec::new(),
        accession_issuer: None,
        accession_issuer_uid: None,
    };
    vec![site("RBD", "Dorset County Hospital", "RBD"), site("RD3", "Poole Hospital", "RD3"), site("R0D", "Royal Bournemouth and Christchurch Hospitals", "R0D")]
}

static SITES: OnceLock<Vec<Site>> = OnceLock::new();

/// Reads and checks a sites file.
pub fn load(path: &Path) -> Result<Vec<Site>, SitesError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SitesError::Read { path: p.clone(), source })?;
    let f: SitesFile = toml::from_str(&text).map_err(|source| SitesError::Parse { path: p, source })?;
    check(&f.sites)?;
    Ok(f.sites)
}

fn check(sites: &[Site]) -> Result<(), SitesError> {
    let bad = |m: String| Err(SitesError::Invalid(m));
    if sites.is_empty() {
        return bad("no [[site]] configured".into());
    }
    for (i, s) in sites.iter().enumerate() {
        let printable = |v: &str| !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_graphic());
        if !printable(&s.code) || s.code == QUARANTINE {
            return bad(format!("site {:?}: a code is 1 to 16 printable characters, not {QUARANTINE}", s.code));
        }
        if s.issuer.trim().is_empty() || s.issuer.len() > 64 || s.issuer.starts_with(QUARANTINE) {
            return bad(format!("site {}: an issuer is 1 to 64 characters and not quarantine's", s.code));
        }
        if sites[..i].iter().any(|o| o.code == s.code) {
            return bad(format!("site {} is configured twice", s.code));
        }
        if s.tls.is_some() {
            if s.pacs().is_none() {
                return bad(format!("site {}: [site.tls] without a PACS (ae_title, host, port)", s.code));
            }
            s.pacs_peer().map_err(|e| SitesError::Invalid(format!("site {}: {e}", s.code)))?;
        }
        for v in [&s.accession_issuer, &s.accession_issuer_uid].into_iter().flatten() {
            if v.trim().is_empty() || v.len() > 64 {
                return bad(format!("site {}: an accession issuer is 1 to 64 characters", s.code));
            }
        }
        if s.accession_issuer_uid.as_deref().is_some_and(|u| !u.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))) {
            return bad(format!("site {}: accession_issuer_uid is an ISO OID (digits and dots)", s.code));
        }
        let own = s.accession_issuer();
        if sites[..i].iter().any(|o| o.accession_issuer().local == own.local) {
            return bad(format!("site {}: its accession issuer {} is another site's too", s.code, own.local));
        }
        let any = s.ae_title.is_some() || s.host.is_some() || s.port.is_some();
        if any && s.pacs().is_none() {
            return bad(format!("site {}: a PACS needs ae_title, host and port together", s.code));
        }
        if let Some(ae) = &s.ae_title {
            if !printable(ae) {
                return bad(format!("site {}: AE title {ae:?} is 1 to 16 printable characters", s.code));
            }
        }
        for c in &s.callers {
            if !printable(&c.ae_title) {
                return bad(format!("site {}: caller AE title {:?} is 1 to 16 printable characters", s.code, c.ae_title));
            }
            if c.from.is_empty() {
                return bad(format!("site {}: caller {} needs `from`, its hosts or networks", s.code, c.ae_title));
            }
            for n in &c.from {
                if let Err(e) = pacs_gateway::Network::parse(n) {
                    return bad(format!("site {}: caller {}: {e}", s.code, c.ae_title));
                }
            }
        }
        for d in &s.destinations {
            if !printable(&d.ae_title) || d.host.trim().is_empty() || d.port == 0 {
                return bad(format!("site {}: destination {:?} needs a 1 to 16 character ae_title, a host and a port", s.code, d.ae_title));
            }
        }
        if let Some(ris) = &s.ris {
            let ok = ris.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return bad(format!("site {}: ris {ris:?} is host:port (its HL7 MLLP listener)", s.code));
            }
        }
    }
    Ok(())
}

/// Sets the process's sites, once, at start (before any lookup).
pub fn configure(sites: Vec<Site>) -> Result<(), SitesError> {
    check(&sites)?;
    SITES.set(sites).map_err(|_| SitesError::Invalid("sites configured twice".into()))
}

/// The configured sites (the built-in three unless `configure` said otherwise).
pub fn all() -> &'static [Site] {
    SITES.get_or_init(defaults)
}

pub fn find(code: &str) -> Option<&'static Site> {
    all().iter().find(|s| s.code == code)
}

/// A site code as configured, or an error naming the sites.
pub fn known(code: &str) -> Result<&'static str, String> {
    find(code).map(|s| s.code.as_str()).ok_or_else(|| {
        let codes: Vec<&str> = all().iter().map(|s| s.code.as_str()).collect();
        format!("unknown site {code:?}; the sites are {}", codes.join(", "))
    })
}

/// The site each sending AE title stores for: every site's PACS, senders
/// and callers.
pub fn senders() -> std::collections::HashMap<String, String> {
    all()
        .iter()
        .flat_map(|s| s.ae_title.iter().chain(&s.senders).chain(s.callers.iter().map(|c| &c.ae_title)).map(move |ae| (ae.clone(), s.code.clone())))
        .collect()
}

/// The sites' callers and move destinations, for the DICOM listener
/// (`pacs_gateway::Handler::peers`). Checked at load: a network that does
/// not parse is left out here.
pub fn peers(sites: &[Site]) -> pacs_gateway::Peers {
    let mut p = pacs_gateway::Peers::default();
    for s in sites {
        for c in &s.callers {
            let from = c.from.iter().filter_map(|n| pacs_gateway::Network::parse(n).ok()).collect();
            p.callers.push(pacs_gateway::Caller { title: c.ae_title.clone(), from });
        }
        for d in &s.destinations {
            p.destinations.push(pacs_gateway::Destination { title: d.ae_title.clone(), host: d.host.clone(), port: d.port });
        }
    }
    p
}

/// Where an instance is filed: the site holding it and the issuer its
/// Patient ID is keyed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filing {
    pub site: String,
    pub issuer: String,
    /// Why the instance was quarantined, if it was.
    pub quarantined: Option<String>,
}

/// The most of the data's issuer kept in a quarantine issuer, which must
/// fit Issuer of Patient ID (LO, 64 characters) with its prefix.
const CLAIMED_MAX: usize = 64 - QUARANTINE.len() - 1;

/// Whether an issuer is quarantine's own (data from no configured site).
pub fn is_quarantine_issuer(issuer: &str) -> bool {
    issuer == QUARANTINE || issuer.starts_with("QUARANTINE/")
}

/// Files an instance from `site` (configuration; `None`: none configured)
/// whose data names `data_issuer` as its Issuer of Patient ID.
pub fn file(site: Option<&str>, data_issuer: &str) -> Filing {
    let quarantine = |why: String| Filing {
        site: QUARANTINE.to_owned(),
        // Apart from every trust's domain, and from each other by the issuer claimed.
        issuer: if data_issuer.is_empty() {
            QUARANTINE.to_owned()
        } else {
            format!("{QUARANTINE}/{}", data_issuer.chars().take(CLAIMED_MAX).collect::<String>())
        },
        quarantined: Some(why),
    };
    let Some(code) = site else { return quarantine("no site is configured for its sender".into()) };
    let Some(s) = find(code) else { return quarantine(format!("sent for unknown site {code:?}")) };
    if !data_issuer.is_empty() && data_issuer != s.issuer && all().iter().any(|o| o.issuer == data_issuer) {
        return quarantine(format!("site {} sent a Patient ID issued by {data_issuer}", s.code));
    }
    Filing { site: s.code.clone(), issuer: s.issuer.clone(), quarantined: None }
}

/// The issuer a query's bare Patient ID means, for a caller at `site`.
pub fn issuer_of(site: &str) -> Option<&'static str> {
    find(site).map(|s| s.issuer.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accession_is_the_sites_own_only_under_its_issuer() {
        let mut s = defaults().remove(0);
        let given = |local: &str, universal: &str| AccessionIssuer { local: local.into(), universal: universal.into(), universal_type: String::new() };
        assert_eq!(accession_issuer("RBD", &AccessionIssuer::default()).local, "RBD", "none named: the site's");
        assert_eq!(accession_issuer("RBD", &given("TELE", "")).local, "TELE", "named: kept");
        assert!(accession_issuer(QUARANTINE, &AccessionIssuer::default()).is_empty());
        assert!(s.issues(&given("RBD", "")) && !s.issues(&given("TELE", "")) && !s.issues(&given("", "")));
        s.accession_issuer_uid = Some("1.2.3".into());
        assert!(s.issues(&given("", "1.2.3")) && !s.issues(&given("", "1.2.4")));
        // Two sites under one accession issuer would meet each other's orders.
        let mut two = defaults();
        two[1].accession_issuer = Some("RBD".into());
        assert!(check(&two).is_err());
        two[1].accession_issuer = None;
        two[1].accession_issuer_uid = Some("1.2.x".into());
        assert!(check(&two).is_err());
    }

    #[test]
    fn tls_settings_that_do_not_load_stop_the_sites_loading() {
        let mut sites = defaults();
        let tls = |ca: &str, cert: Option<&str>| Some(SiteTls { ca: ca.into(), cert: cert.map(Into::into), key: None, server_name: None });
        sites[0].tls = tls("/nonexistent/ca.pem", None);
        assert!(check(&sites).unwrap_err().to_string().contains("without a PACS"), "TLS to no PACS");
        (sites[0].ae_title, sites[0].host, sites[0].port) = (Some("PACS".into()), Some("127.0.0.1".into()), Some(104));
        assert!(check(&sites).unwrap_err().to_string().contains("/nonexistent/ca.pem"), "a CA that is not there");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        sites[0].tls = tls(not_pem.to_str().unwrap(), None);
        assert!(check(&sites).unwrap_err().to_string().contains("no certificate"), "a CA file without a certificate");
        sites[0].tls = tls(not_pem.to_str().unwrap(), Some("/nonexistent/cert.pem"));
        assert!(check(&sites).is_err(), "a certificate without its key");
        sites[0].tls = None;
        assert!(check(&sites).is_ok());
    }

    #[test]
    fn the_site_comes_from_configuration_never_the_data() {
        let f = file(Some("RBD"), "");
        assert_eq!((f.site.as_str(), f.issuer.as_str(), f.quarantined), ("RBD", "RBD", None));
        // An alias the site's PACS writes (an OID, "NHS") is the site's own domain.
        assert_eq!(file(Some("RBD"), "1.2.826.0.1.99").issuer, "RBD");
        // No configured site: quarantine, whatever the data claims.
        let f = file(None, "RBD");
        assert_eq!((f.site.as_str(), f.issuer.as_str()), (QUARANTINE, "QUARANTINE/RBD"));
        assert!(f.quarantined.is_some());
        // A site sending another trust's Patient ID: quarantine.
        assert_eq!(file(Some("RBD"), "RD3").site, QUARANTINE);
        assert_eq!(file(Some("XYZ"), "").site, QUARANTINE);
        assert!(known("XYZ").unwrap_err().contains("RBD"));
        // A long claimed issuer still fits LO with its prefix.
        assert!(file(None, &"X".repeat(64)).issuer.chars().count() <= 64);
        assert!(is_quarantine_issuer(&file(None, "RBD").issuer) && !is_quarantine_issuer("RBD"));
    }

    #[test]
    fn a_sites_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sites.toml");
        std::fs::write(
            &p,
            r#"
[[site]]
code = "RBD"
name = "Dorset County Hospital"
issuer = "RBD"
ae_title = "DCH_PACS"
host = "10.1.2.3"
port = 104
retrieve = "c-get"
senders = ["DCH_CT01"]

[[site]]
code = "RDZ"
name = "Royal Bournemouth"
issuer = "R0D"
"#,
        )
        .unwrap();
        let s = load(&p).unwrap();
        assert_eq!((s[0].pacs(), s[0].retrieve), (Some(("DCH_PACS", "10.1.2.3", 104)), Retrieve::CGet));
        assert_eq!((s[1].pacs(), s[1].retrieve), (None, Retrieve::CMove));
        std::fs::write(&p, "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\nhost = \"h\"\n").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("together"));
        std::fs::write(&p, "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\n[[site]]\ncode = \"RBD\"\nname = \"y\"\nissuer = \"R\"\n").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("twice"));
        std::fs::write(&p, "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\nport = \"104\"\n").unwrap();
        assert!(matches!(load(&p), Err(SitesError::Parse { .. })));
        std::fs::write(&p, "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\nris = \"10.1.2.4\"\n").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("host:port"));
        std::fs::write(&p, "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\nris = \"ris.dch.nhs.uk:2575\"\n").unwrap();
        assert_eq!(load(&p).unwrap()[0].ris.as_deref(), Some("ris.dch.nhs.uk:2575"));

        // Callers by network, and move destinations, apart.
        let site = "[[site]]\ncode = \"RBD\"\nname = \"x\"\nissuer = \"RBD\"\n";
        std::fs::write(
            &p,
            format!(
                "{site}[[site.caller]]\nae_title = \"DCH_CT01\"\nfrom = [\"10.1.5.0/24\", \"2001:db8::/32\", \"10.1.6.7\"]\n\
                 [[site.destination]]\nae_title = \"DCH_WS1\"\nhost = \"10.1.6.8\"\nport = 104\n"
            ),
        )
        .unwrap();
        let s = load(&p).unwrap();
        let peers = peers(&s);
        assert_eq!(peers.callers.len(), 1);
        assert!(peers.callers[0].from.iter().any(|n| n.contains("2001:db8::9".parse().unwrap())));
        assert_eq!(peers.destinations[0].port, 104);
        std::fs::write(&p, format!("{site}[[site.caller]]\nae_title = \"CT\"\nfrom = [\"10.1.5.0/40\"]\n")).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("prefix"));
        std::fs::write(&p, format!("{site}[[site.caller]]\nae_title = \"CT\"\nfrom = []\n")).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("needs `from`"));
        std::fs::write(&p, format!("{site}[[site.destination]]\nae_title = \"WS\"\nhost = \"h\"\nport = 0\n")).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("destination"));
    }
}
