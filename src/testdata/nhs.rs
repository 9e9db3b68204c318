//! Fictitious NHS numbers for generated patients.

use super::Rng;
use crate::nhs::check_digit;

/// A random valid number in the 999 test range, which is never issued to
/// real patients, so generated data is obviously fictitious.
pub(crate) fn generate(rng: &mut Rng) -> String {
    loop {
        let mut d = [9u8; 9];
        for x in &mut d[3..] {
            *x = rng.below(10) as u8;
        }
        if let Some(c) = check_digit(&d) {
            return d.iter().chain(std::iter::once(&c)).map(|&x| char::from(b'0' + x)).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nhs::is_valid;

    #[test]
    fn generated_numbers_are_valid_test_numbers() {
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let n = generate(&mut rng);
            assert!(n.starts_with("999") && n.len() == 10, "{n}");
            assert!(is_valid(&n), "{n}");
        }
    }
}
