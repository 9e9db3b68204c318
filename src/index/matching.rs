//! Attribute matching as PS3.4 C.2.2.2 defines it, shared by every query
//! path (CLI filters now; C-FIND and QIDO-RS later): single value, wildcard
//! (`*` any run, `?` one character), universal (empty), date ranges, and
//! person names matched case-insensitively, accents folded.

/// Matches `value` against a single-value or wildcard pattern. An empty
/// pattern is universal matching.
pub fn wildcard(pattern: &str, value: &str) -> bool {
    if pattern.is_empty() || pattern == "*" {
        return true;
    }
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // Iterative glob with backtracking to the last '*': linear in practice,
    // never exponential on hostile patterns.
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The literal text before the first wildcard: what an index range scan can use.
pub fn literal_prefix(pattern: &str) -> &str {
    pattern.split(['*', '?']).next().unwrap_or_default()
}

pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The form under which person names are indexed and compared: the first
/// (alphabetic) component group, upper case, Latin accents folded, spaces
/// around components and trailing empty components dropped.
pub fn normalise_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or("");
    let comps: Vec<String> = alphabetic.split('^').map(|c| fold(c.trim())).collect();
    let keep = comps.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
    comps[..keep].join("^")
}

/// Normalises a name pattern the same way, keeping its wildcards.
pub fn normalise_name_pattern(pattern: &str) -> String {
    normalise_name(pattern)
}

fn fold(s: &str) -> String {
    s.chars().flat_map(|c| fold_char(c).chars().collect::<Vec<_>>()).collect::<String>().to_uppercase()
}

fn fold_char(c: char) -> String {
    let plain = match c {
        'À'..='Å' | 'à'..='å' => "A",
        'Æ' | 'æ' => "AE",
        'Ç' | 'ç' => "C",
        'È'..='Ë' | 'è'..='ë' => "E",
        'Ì'..='Ï' | 'ì'..='ï' => "I",
        'Ñ' | 'ñ' => "N",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' => "O",
        'Ù'..='Ü' | 'ù'..='ü' => "U",
        'Ý' | 'ý' | 'ÿ' => "Y",
        'ß' => "SS",
        _ => return c.to_string(),
    };
    plain.to_string()
}

pub fn name_matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (normalise_name_pattern(pattern), normalise_name(value));
    // Trailing empty components are insignificant: "OB^^*" matches "OB^^^^",
    // indexed as "OB"; so try the value with all five components too.
    wildcard(&p, &v) || (p.contains('^') && wildcard(&p, &format!("{v}{}", "^".repeat(4usize.saturating_sub(v.matches('^').count())))))
}

/// An inclusive range of DA values as YYYYMMDD strings; open ends are None.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DateRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a date or date range (YYYYMMDD, YYYYMMDD-, -YYYYMMDD, YYYYMMDD-YYYYMMDD): {0:?}")]
pub struct BadDateRange(pub String);

impl DateRange {
    pub fn parse(s: &str) -> Result<Self, BadDateRange> {
        let bad = || BadDateRange(s.to_owned());
        let date = |d: &str| -> Result<Option<String>, BadDateRange> {
            let d = d.trim().replace('.', "");
            if d.is_empty() {
                return Ok(None);
            }
            if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            Ok(Some(d))
        };
        let r = match s.split_once('-') {
            None => {
                let d = date(s)?.ok_or_else(bad)?;
                DateRange { from: Some(d.clone()), to: Some(d) }
            }
            Some((a, b)) => DateRange { from: date(a)?, to: date(b)? },
        };
        if r.from.is_none() && r.to.is_none() {
            return Err(bad());
        }
        Ok(r)
    }

    /// PS3.4 C.2.2.2.5: an empty value never matches a range.
    /// Only the first eight bytes count, and only when they are digits:
    /// a value that is not a date (a stray non-ASCII byte, in records
    /// indexed before DA values were checked) matches no range.
    pub fn contains(&self, date: &str) -> bool {
        let Some(d) = date.as_bytes().get(..8).filter(|d| d.iter().all(u8::is_ascii_digit)) else {
            return false;
        };
        self.from.as_deref().is_none_or(|f| d >= f.as_bytes()) && self.to.as_deref().is_none_or(|t| d <= t.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("", "anything", true),
            ("*", "", true),
            ("CT", "CT", true),
            ("CT", "MR", false),
            ("C?", "CT", true),
            ("C?", "C", false),
            ("*AB*", "XXABYY", true),
            ("A*B*C", "AXXBYYC", true),
            ("A*B*C", "AXXBYY", false),
            ("1.2.*", "1.2.840", true),
        ];
        for (p, v, want) in cases {
            assert_eq!(wildcard(p, v), want, "{p:?} vs {v:?}");
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let v = "a".repeat(10_000);
        let p = format!("{}b", "*a".repeat(100));
        assert!(!wildcard(&p, &v));
    }

    #[test]
    fn names_fold_case_accents_and_trailing_components() {
        assert_eq!(normalise_name("Müller^Jörg^^^"), "MULLER^JORG");
        assert_eq!(normalise_name("Yamada^Tarou=山田^太郎"), "YAMADA^TAROU");
        assert!(name_matches("muller*", "MÜLLER^JÖRG"));
        assert!(name_matches("O'BRIEN^*", "O'Brien^Siobhan"));
        assert!(!name_matches("SMITH", "SMITHSON^JOHN"));
        assert!(name_matches("smith^john", "SMITH^JOHN^^"));
        assert!(name_matches("ob^^*", "OB^^^^"));
        assert!(!name_matches("ob^^*", "OBAMA"));
    }

    #[test]
    fn date_ranges() {
        let r = DateRange::parse("20200101-20201231").unwrap();
        assert!(r.contains("20200615") && !r.contains("20210101") && !r.contains(""));
        assert!(DateRange::parse("-20200101").unwrap().contains("19991231"));
        assert!(DateRange::parse("20200101-").unwrap().contains("20991231"));
        assert!(DateRange::parse("20200101").unwrap().contains("20200101"));
        assert!(DateRange::parse("2020.01.01-2020.01.02").unwrap().contains("20200102"));
        assert!(DateRange::parse("-").is_err());
        assert!(DateRange::parse("2020").is_err());
    }

    #[test]
    fn date_ranges_never_slice_inside_a_character() {
        let r = DateRange::parse("20240101-20241231").unwrap();
        // U+FFFD (3 bytes) or é (2 bytes) across byte 8: `&date[..8]` panicked.
        for v in ["2024010\u{FFFD}", "2024\u{FFFD}\u{FFFD}01", "2024010\u{e9}", "\u{e9}\u{e9}\u{e9}\u{e9}", "2024\u{FFFD}0101", "2024-06-01"] {
            assert!(!r.contains(v), "{v:?}");
        }
        assert!(r.contains("20240601") && r.contains("20240601120000"));
        assert!(DateRange::parse("2024\u{e9}0101").is_err() && DateRange::parse("\u{e9}\u{e9}\u{e9}\u{e9}-").is_err());
    }
}
