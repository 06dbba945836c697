//! The device authorization grant's user codes (RFC 8628 section 6.1): what a person reads
//! off a TV or a terminal and types on another device. A client's `userCodeType` picks the
//! shape; the code is compared after [`normalize`] (case-insensitive, dashes and spaces
//! optional).

/// RFC 8628 section 6.1's example alphabet: twenty consonants, no vowels (no words), no
/// digits (no 0/O, 1/I confusion).
const CONSONANTS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const DIGITS: &[u8] = b"0123456789";

/// `userCodeType`: how a client's user codes look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCodeType {
    /// The default (`null`, `""` or `"Consonants"`): 8 characters from
    /// `BCDFGHJKLMNPQRSTVWXZ`, shown `XXXX-XXXX` (about 34.6 bits).
    Consonants,
    /// `"Numeric"`: 9 digits, shown `XXX-XXX-XXX` (about 29.9 bits), for devices with
    /// only a numeric keypad.
    Numeric,
}

/// The accepted `userCodeType` values besides null and `""` (the error message and the
/// OpenAPI description name them).
pub const USER_CODE_TYPES: &[&str] = &["Consonants", "Numeric"];

impl UserCodeType {
    /// `None`: a value this server does not know (refused, naming `userCodeType`).
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("") {
            "" | "Consonants" => Some(UserCodeType::Consonants),
            "Numeric" => Some(UserCodeType::Numeric),
            _ => None,
        }
    }

    fn alphabet(self) -> &'static [u8] {
        match self {
            UserCodeType::Consonants => CONSONANTS,
            UserCodeType::Numeric => DIGITS,
        }
    }

    fn length(self) -> usize {
        match self {
            UserCodeType::Consonants => 8,
            UserCodeType::Numeric => 9,
        }
    }

    fn group(self) -> usize {
        match self {
            UserCodeType::Consonants => 4,
            UserCodeType::Numeric => 3,
        }
    }

    /// A code drawn from `random` bytes by rejection sampling (no modulo bias), in its
    /// normalized form; `None` if the bytes run out first (give at least 64).
    pub fn code_from(self, random: &[u8]) -> Option<String> {
        let alphabet = self.alphabet();
        let n = alphabet.len();
        // The largest multiple of the alphabet's size that fits in a byte.
        let limit = 256 - 256 % n;
        let code: String = random
            .iter()
            .map(|b| usize::from(*b))
            .filter(|b| *b < limit)
            .take(self.length())
            .map(|b| char::from(alphabet[b % n]))
            .collect();
        (code.len() == self.length()).then_some(code)
    }

    /// A normalized code as people read it: groups joined by dashes.
    pub fn display(self, code: &str) -> String {
        code.as_bytes()
            .chunks(self.group())
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// What a person typed, as codes are stored: upper case, without dashes and white space.
/// `None` when it cannot be a code of any type (wrong characters or length), so such
/// input never reaches the store.
pub fn normalize(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let consonants = code.len() == 8 && code.bytes().all(|b| CONSONANTS.contains(&b));
    let numeric = code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit());
    (consonants || numeric).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse() {
        assert_eq!(UserCodeType::parse(None), Some(UserCodeType::Consonants));
        assert_eq!(
            UserCodeType::parse(Some("")),
            Some(UserCodeType::Consonants)
        );
        assert_eq!(
            UserCodeType::parse(Some("Numeric")),
            Some(UserCodeType::Numeric)
        );
        assert_eq!(UserCodeType::parse(Some("numeric")), None);
        assert_eq!(UserCodeType::parse(Some("Emoji")), None);
    }

    #[test]
    fn codes_have_their_shape() {
        let random: Vec<u8> = (0..=255).collect();
        let c = UserCodeType::Consonants.code_from(&random).unwrap();
        assert_eq!(c, "BCDFGHJK");
        assert_eq!(UserCodeType::Consonants.display(&c), "BCDF-GHJK");
        let n = UserCodeType::Numeric.code_from(&random[3..]).unwrap();
        assert_eq!(n, "345678901");
        assert_eq!(UserCodeType::Numeric.display(&n), "345-678-901");
        // Bytes past the last multiple of the alphabet's size are skipped (no bias).
        let c = UserCodeType::Consonants
            .code_from(&[255, 254, 241, 240, 0, 1, 2, 3, 4, 5, 6, 7])
            .unwrap();
        assert_eq!(c, "BCDFGHJK");
        assert_eq!(UserCodeType::Consonants.code_from(&[250; 64]), None);
    }

    #[test]
    fn typed_codes_normalize() {
        for typed in ["BCDF-GHJK", "bcdfghjk", " bcdf ghjk ", "Bc-Df-Gh-Jk"] {
            assert_eq!(normalize(typed).as_deref(), Some("BCDFGHJK"), "{typed:?}");
        }
        assert_eq!(normalize("123-456-789").as_deref(), Some("123456789"));
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "12345678",
            "BCDF-GHJ1",
            "ßCDFGHJK",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a person types, normalizing never panics, and a code of either type
        /// survives being shown and typed back in any case.
        #[test]
        fn normalizing_is_total_and_round_trips(
            typed in "\\PC{0,40}",
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 64),
            numeric in proptest::prelude::any::<bool>(),
        ) {
            let _ = normalize(&typed);
            let kind = if numeric { UserCodeType::Numeric } else { UserCodeType::Consonants };
            if let Some(code) = kind.code_from(&random) {
                proptest::prop_assert_eq!(normalize(&kind.display(&code).to_lowercase()), Some(code.clone()));
                proptest::prop_assert_eq!(normalize(&code), Some(code));
            }
        }
    }
}
