//! The sites whose PACS radhub joins, and which patient-identity domain an
//! arriving instance belongs to.
//!
//! A site is where data comes from; its issuer is the domain its local
//! Patient IDs are unique in (PS3.4 C.6.1.1.2). The site of an instance is
//! always configuration (the calling AE's site, `--stow-site`, `import
//! --site`), never the data: data from a sender with no configured site,
//! or naming another site's issuer, is filed under the quarantine site for
//! an admin to review, never into a trust's records.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub code: &'static str,
    pub name: &'static str,
    /// Issuer of Patient ID of the site's local IDs.
    pub issuer: &'static str,
}

pub const SITES: [Site; 3] = [
    Site { code: "RBD", name: "Dorset County Hospital", issuer: "RBD" },
    Site { code: "RD3", name: "Poole Hospital", issuer: "RD3" },
    Site { code: "R0D", name: "Royal Bournemouth and Christchurch Hospitals", issuer: "R0D" },
];

/// Where data with no configured site goes: held apart, for admins.
pub const QUARANTINE: &str = "QUARANTINE";

pub fn find(code: &str) -> Option<&'static Site> {
    SITES.iter().find(|s| s.code == code)
}

/// A site code as configured: one of `SITES`, or an error naming them.
pub fn known(code: &str) -> Result<&'static str, String> {
    find(code).map(|s| s.code).ok_or_else(|| {
        let all: Vec<&str> = SITES.iter().map(|s| s.code).collect();
        format!("unknown site {code:?}; the sites are {}", all.join(", "))
    })
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
    if !data_issuer.is_empty() && data_issuer != s.issuer && SITES.iter().any(|o| o.issuer == data_issuer) {
        return quarantine(format!("site {} sent a Patient ID issued by {data_issuer}", s.code));
    }
    Filing { site: s.code.to_owned(), issuer: s.issuer.to_owned(), quarantined: None }
}

/// The most of the data's issuer kept in a quarantine issuer, which must
/// fit Issuer of Patient ID (LO, 64 characters) with its prefix.
const CLAIMED_MAX: usize = 64 - QUARANTINE.len() - 1;

/// Whether an issuer is quarantine's own (data from no configured site).
pub fn is_quarantine_issuer(issuer: &str) -> bool {
    issuer == QUARANTINE || issuer.starts_with("QUARANTINE/")
}

/// The issuer a query's bare Patient ID means, for a caller at `site`.
pub fn issuer_of(site: &str) -> Option<&'static str> {
    find(site).map(|s| s.issuer)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
