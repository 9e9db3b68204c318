//! Calendar days and DICOM DA values (`YYYYMMDD`), without a time zone:
//! a harvest's date windows and the synthetic data's dates.

/// Milliseconds since the epoch as ISO 8601 UTC, to the second.
pub fn iso_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// Days since 1970-01-01 → (year, month, day). Hinnant's civil algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// DICOM DA (`YYYYMMDD`) from days since the epoch.
pub fn da(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

/// Days since the epoch of a DA value (`YYYYMMDD`), if it is a day of
/// the calendar (no 31 April, 29 February only in leap years).
pub fn days_of(da: &str) -> Option<i64> {
    if da.len() != 8 || !da.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (da[..4].parse().ok()?, da[4..6].parse().ok()?, da[6..].parse().ok()?);
    let days = days_from_civil(y, m, d);
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

/// Today (UTC), in days since the epoch.
pub fn today() -> i64 {
    (crate::ingest::now_ms() / 86_400_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_ms(1_767_225_599_999), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn days_and_da_round_trip() {
        for d in [-25_000, 0, 19_000, 20_454] {
            assert_eq!(days_of(&da(d)), Some(d));
        }
        assert_eq!(da(days_from_civil(2024, 2, 29)), "20240229");
        assert_eq!(days_of("2024130"), None);
        assert_eq!(days_of("20241301"), None);
    }
}
