//! NHS numbers: ten digits whose last is a Modulus 11 check digit
//! (NHS Data Dictionary, "NHS Number"). The key that links one person's
//! records across the trusts.

/// The check digit for the first nine digits, or `None` when the remainder
/// gives 10, which no valid NHS number can have.
pub fn check_digit(first9: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first9.iter().zip((2..=10).rev()).map(|(&d, w)| u32::from(d) * w).sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

/// Accepts "9434765919" and the spaced form "943 476 5919"; refuses
/// numbers that fail the check digit and placeholders (`is_placeholder`).
pub fn normalise(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
    let mut first9 = [0u8; 9];
    first9.copy_from_slice(&d[..9]);
    (check_digit(&first9) == Some(d[9]) && !is_placeholder(&d)).then_some(digits)
}

/// Numbers that pass Modulus 11 but that systems type in when the real
/// one is unknown: one digit repeated (0000000000, 1111111111, ...) and the
/// digits in a run (0123456789, 9876543210). Linking on them would join
/// strangers.
fn is_placeholder(d: &[u8]) -> bool {
    let same = d.iter().all(|&x| x == d[0]);
    let up = d.windows(2).all(|w| w[1] == w[0] + 1);
    let down = d.windows(2).all(|w| w[0] == w[1] + 1);
    same || up || down
}

pub fn is_valid(raw: &str) -> bool {
    normalise(raw).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        assert!(is_valid("9434765919"));
        assert!(is_valid("943 476 5919"));
        assert!(is_valid("4010232137"));
        assert!(!is_valid("9434765918"));
        assert!(!is_valid("943476591"));
        assert!(!is_valid("943476591X"));
    }

    #[test]
    fn placeholders_pass_modulus_11_but_are_refused() {
        for p in ["0000000000", "1111111111", "2222222222", "9999999999", "0123456789", "9876543210"] {
            let d: Vec<u8> = p.bytes().map(|b| b - b'0').collect();
            let mut first9 = [0u8; 9];
            first9.copy_from_slice(&d[..9]);
            assert_eq!(check_digit(&first9), Some(d[9]), "{p} passes the check digit");
            assert!(!is_valid(p), "{p} is a placeholder");
        }
    }

    #[test]
    fn remainder_ten_has_no_check_digit() {
        // 1,0,0,0,0,0,0,0,1: sum 10+2 = 12, 12 % 11 = 1, 11-1 = 10: invalid.
        assert_eq!(check_digit(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }
}
