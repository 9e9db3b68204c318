//! Fictitious patients: names, demographics, NHS numbers and local MRNs.

use std::collections::HashSet;

use super::{days_from_civil, nhs, sites, Rng};

const SURNAMES: &[&str] = &[
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILLIAMS",
    "WILSON",
    "JOHNSON",
    "DAVIES",
    "ROBINSON",
    "WRIGHT",
    "THOMPSON",
    "EVANS",
    "WALKER",
    "WHITE",
    "ROBERTS",
    "GREEN",
    "HALL",
    "WOOD",
    "JACKSON",
    "CLARKE",
    "HUGHES",
    "EDWARDS",
    "TURNER",
    "HARRIS",
    "MARTIN",
    "COOPER",
    "HILL",
    "WARD",
    "MORRIS",
    "KING",
    "PATEL",
    "KHAN",
    "AHMED",
    "SINGH",
    "CHAUDHRY",
    "NGUYEN",
    "KOWALSKI",
    "MACDONALD",
    "STEVENS",
    "PARKER",
    "CHAPMAN",
    "DORSET",
    "HARDY",
    "BARNES",
    "LOVELL",
    "PUDDLE",
    "SEYMOUR",
];
/// Real-world punctuation that breaks naive matching and escaping.
const PUNCTUATED_SURNAMES: &[&str] = &["O'BRIEN", "O'NEILL", "D'ARCY", "SMITH-JONES", "ASHWORTH-PRICE", "FFORDE-WHITE", "O'SULLIVAN"];
/// All representable in ISO 8859-1 (Latin-1).
const ACCENTED_SURNAMES: &[&str] = &["MÜLLER", "NÚÑEZ", "GONÇALVES", "BRONTË", "LEFÈVRE", "JØRGENSEN"];
const MALE: &[&str] = &[
    "JAMES", "JOHN", "ROBERT", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "THOMAS", "GEORGE", "OLIVER", "HARRY", "JACK", "ARTHUR", "NOAH", "MOHAMMED", "PETER",
    "STEPHEN", "ANDREW", "IAN", "GARETH",
];
const FEMALE: &[&str] = &[
    "MARY",
    "SUSAN",
    "MARGARET",
    "ELIZABETH",
    "SARAH",
    "EMMA",
    "OLIVIA",
    "AMELIA",
    "ISLA",
    "AVA",
    "JESSICA",
    "HANNAH",
    "CHARLOTTE",
    "SOPHIE",
    "GRACE",
    "JOAN",
    "PATRICIA",
    "PRIYA",
    "FATIMA",
    "RUTH",
];
const ACCENTED_MALE: &[&str] = &["JOSÉ", "ANDRÉ", "FRANÇOIS", "SØREN"];
const ACCENTED_FEMALE: &[&str] = &["ZOË", "RENÉE", "CHLOÉ", "INÊS"];

#[derive(Debug)]
pub(crate) struct Person {
    pub family: &'static str,
    pub given: &'static str,
    pub middle: Option<&'static str>,
    /// Name needs Specific Character Set ISO_IR 100.
    pub latin1: bool,
    pub sex: &'static str,
    /// Days since 1970-01-01.
    pub birth: i64,
    pub nhs: String,
    /// (site index, local MRN), in site order.
    pub sites: Vec<(usize, String)>,
}

impl Person {
    /// DICOM PN: `FAMILY^GIVEN^MIDDLE`, trailing empty components dropped.
    pub(crate) fn pn(&self) -> String {
        match self.middle {
            Some(m) => format!("{}^{}^{}", self.family, self.given, m),
            None => format!("{}^{}", self.family, self.given),
        }
    }
}

/// Generates `n` people. Roughly 45% are seen at one site, 40% at two and 15%
/// at all three; each site issues its own MRN, the NHS number is shared.
pub(crate) fn generate(seed: u64, n: usize) -> Vec<Person> {
    let mut rng = Rng::derive(seed, &[1]);
    let mut used_nhs = HashSet::new();
    let mut used_mrn: [HashSet<String>; 3] = Default::default();
    let mut people = Vec::with_capacity(n);
    for i in 0..n {
        let male = rng.chance(0.5);
        // Guarantee one accented name in any set of four or more people, so
        // character-set handling is always exercised.
        let accented = i == 3 || rng.chance(0.05);
        let (family, given) = if accented {
            if rng.chance(0.5) {
                (*rng.pick(ACCENTED_SURNAMES), *rng.pick(if male { MALE } else { FEMALE }))
            } else {
                (*rng.pick(SURNAMES), *rng.pick(if male { ACCENTED_MALE } else { ACCENTED_FEMALE }))
            }
        } else if rng.chance(0.12) {
            (*rng.pick(PUNCTUATED_SURNAMES), *rng.pick(if male { MALE } else { FEMALE }))
        } else {
            (*rng.pick(SURNAMES), *rng.pick(if male { MALE } else { FEMALE }))
        };
        let middle = rng.chance(0.4).then(|| *rng.pick(if male { MALE } else { FEMALE })).filter(|&m| m != given);
        let birth = days_from_civil(1932, 1, 1) + rng.below(88 * 365) as i64;

        let nhs = loop {
            let candidate = nhs::generate(&mut rng);
            if used_nhs.insert(candidate.clone()) {
                break candidate;
            }
        };

        let home = rng.below(3) as usize;
        let roll = rng.unit();
        let site_set: Vec<usize> = if roll < 0.15 {
            vec![0, 1, 2]
        } else if roll < 0.55 {
            let other = (home + 1 + rng.below(2) as usize) % 3;
            let mut v = vec![home, other];
            v.sort_unstable();
            v
        } else {
            vec![home]
        };
        let sites = site_set
            .into_iter()
            .map(|s| {
                let mrn = loop {
                    let candidate = sites::mrn(s, rng.next_u64());
                    if used_mrn[s].insert(candidate.clone()) {
                        break candidate;
                    }
                };
                (s, mrn)
            })
            .collect();

        people.push(Person { family, given, middle, latin1: accented, sex: if male { "M" } else { "F" }, birth, nhs, sites });
    }
    // Small sets might by chance have nobody at two sites; the hub exists to
    // link such people, so make sure the data always exercises it.
    if n >= 2 && people.iter().all(|p| p.sites.len() == 1) {
        let p = &mut people[0];
        let other = (p.sites[0].0 + 1) % 3;
        let mrn = loop {
            let candidate = sites::mrn(other, rng.next_u64());
            if used_mrn[other].insert(candidate.clone()) {
                break candidate;
            }
        };
        p.sites.push((other, mrn));
        p.sites.sort_unstable();
    }
    people
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_unique_and_linked() {
        let people = generate(2026, 300);
        let nhs: HashSet<_> = people.iter().map(|p| p.nhs.as_str()).collect();
        assert_eq!(nhs.len(), people.len());
        assert!(people.iter().all(|p| crate::nhs::is_valid(&p.nhs)));
        let multi = people.iter().filter(|p| p.sites.len() >= 2).count() as f64 / 300.0;
        let all3 = people.iter().filter(|p| p.sites.len() == 3).count() as f64 / 300.0;
        assert!((0.4..0.7).contains(&multi), "{multi}");
        assert!((0.08..0.25).contains(&all3), "{all3}");
        for p in &people {
            assert!(p.pn().is_ascii() != p.latin1, "{}", p.pn());
            for (s, mrn) in &p.sites {
                let ok = match s {
                    0 => mrn.len() == 8 && mrn.starts_with('D'),
                    1 => mrn.len() == 7 && mrn.starts_with('P'),
                    _ => mrn.len() == 10 && mrn.starts_with("RBH"),
                };
                assert!(ok, "{s} {mrn}");
            }
        }
    }
}
