//! The equipment each of the three Dorset trusts runs (the trusts
//! themselves are configuration, `crate::sites`; these are its defaults).

/// The site codes (and issuers) the generated data is written for, in the
/// order of [`PROFILES`]: `crate::sites::defaults()`.
pub const CODES: [&str; 3] = ["RBD", "RD3", "R0D"];

pub(crate) struct Equipment {
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub station: &'static str,
    pub ae: &'static str,
}

/// How a site's CT stores Hounsfield units: Siemens/Canon-style unsigned
/// 12-bit with intercept -1024, or GE-style signed 16-bit with a circular
/// reconstruction field of view padded with -2000. Both occur in real archives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtStorage {
    Unsigned12,
    Signed16Padded,
}

pub(crate) struct Profile {
    pub institution: &'static str,
    pub department: &'static str,
    /// Projection radiography is CR at one site, DX at the others.
    pub xr_is_dx: bool,
    pub ct_storage: CtStorage,
    pub ct: Equipment,
    pub mr: Equipment,
    pub xr: Equipment,
    pub us: Equipment,
    pub referrers: &'static [&'static str],
}

const fn eq(manufacturer: &'static str, model: &'static str, station: &'static str, ae: &'static str) -> Equipment {
    Equipment { manufacturer, model, station, ae }
}

pub(crate) const PROFILES: [Profile; 3] = [
    Profile {
        institution: "Dorset County Hospital",
        department: "Radiology",
        xr_is_dx: false,
        ct_storage: CtStorage::Unsigned12,
        ct: eq("SIEMENS", "SOMATOM Definition AS", "DCHCT01", "DCH_CT01"),
        mr: eq("SIEMENS", "MAGNETOM Aera", "DCHMR01", "DCH_MR01"),
        xr: eq("FUJIFILM Corporation", "FCR PROFECT CS", "DCHCR02", "DCH_CR02"),
        us: eq("GE Healthcare", "LOGIQ E10", "DCHUS03", "DCH_US03"),
        referrers: &["HARGREAVES^PETER^^DR", "OKAFOR^CHIAMAKA^^DR", "WELLS^JONATHAN^^DR", ""],
    },
    Profile {
        institution: "Poole Hospital NHS Foundation Trust",
        department: "Diagnostic Imaging",
        xr_is_dx: true,
        ct_storage: CtStorage::Signed16Padded,
        ct: eq("GE MEDICAL SYSTEMS", "Revolution EVO", "PHCT2", "POOLE_CT2"),
        mr: eq("GE MEDICAL SYSTEMS", "SIGNA Artist", "PHMR1", "POOLE_MR1"),
        xr: eq("Philips Medical Systems", "DigitalDiagnost", "PHDR3", "POOLE_DR3"),
        us: eq("Philips Medical Systems", "EPIQ 7G", "PHUS5", "POOLE_US5"),
        referrers: &["GREEN^SARAH^^DR", "NAIR^RAJESH^^DR", "PEMBERTON^LUCY^^DR", ""],
    },
    Profile {
        institution: "The Royal Bournemouth Hospital",
        department: "Radiology",
        xr_is_dx: true,
        ct_storage: CtStorage::Unsigned12,
        ct: eq("Canon Medical Systems", "Aquilion ONE", "RBHCT1", "RBH_CT1"),
        mr: eq("Philips Medical Systems", "Ingenia", "RBHMR2", "RBH_MR2"),
        xr: eq("Carestream Health", "DRX-Evolution", "RBHDX4", "RBH_DX4"),
        us: eq("Canon Medical Systems", "Aplio i800", "RBHUS1", "RBH_US1"),
        referrers: &["ASHFORD^CLAIRE^^DR", "MBEKI^THABO^^DR", "DOYLE^FIONA^^DR", ""],
    },
];

/// Site-specific local MRN formats, as each trust's PAS would issue them.
pub(crate) fn mrn(site: usize, n: u64) -> String {
    match site {
        0 => format!("D{:07}", 1_000_000 + n % 9_000_000),
        1 => format!("P{:06}", 100_000 + n % 900_000),
        _ => format!("RBH{:07}", 1_000_000 + n % 9_000_000),
    }
}

/// Site-specific accession number formats (all ≤ 16 chars, SH).
pub(crate) fn accession(site: usize, year: i64, seq: u64) -> String {
    match site {
        0 => format!("DCH{:02}{:06}", year % 100, seq % 1_000_000),
        1 => format!("{:08}", 20_000_000 + seq % 10_000_000),
        _ => format!("{:02}RBC{:06}", year % 100, seq % 1_000_000),
    }
}
