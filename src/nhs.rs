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

/// Accepts "9434765919" and the spaced form "943 476 5919".
pub fn normalise(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
    let mut first9 = [0u8; 9];
    first9.copy_from_slice(&d[..9]);
    (check_digit(&first9) == Some(d[9])).then_some(digits)
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
    fn remainder_ten_has_no_check_digit() {
        // 1,0,0,0,0,0,0,0,1: sum 10+2 = 12, 12 % 11 = 1, 11-1 = 10: invalid.
        assert_eq!(check_digit(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }
}
