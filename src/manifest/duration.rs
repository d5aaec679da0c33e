//! Durations written the way operators write them: `30s`, `5m`, `1h30m`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration read from the manifest or a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

/// The longest duration any setting accepts; beyond it a typo is likelier
/// than intent, and timers would overflow.
pub const MAX: Duration = Duration::from_secs(7 * 24 * 3600);

impl Dur {
    /// Parses `0`, `500ms`, `30s`, `5m`, `1h30m`, `1h 30m` (units: ms, s, m, h, d).
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        let d = humantime::parse_duration(trimmed).map_err(|e| {
            format!("invalid duration `{s}` ({e}); write a number with a unit, e.g. 30s, 5m, 1h30m, or 0")
        })?;
        if d > MAX {
            return Err(format!("duration `{s}` is longer than the limit of 7d"));
        }
        Ok(Self(d))
    }

    /// True for a zero duration (which some settings read as "off").
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for Dur {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare integer is accepted only as 0 ("off"): `30` alone is
        // ambiguous (seconds? minutes?) and is refused with the reason.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Ok(Self(Duration::ZERO)),
            Raw::Int(n) => {
                Err(serde::de::Error::custom(format!("duration `{n}` has no unit; write e.g. {n}s or {n}m")))
            }
            Raw::Text(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_operator_forms() {
        let cases = [("0", 0), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h 30m", 5400), ("2d", 172_800)];
        for (input, secs) in cases {
            assert_eq!(Dur::parse(input), Ok(Dur(Duration::from_secs(secs))), "{input}");
        }
        assert_eq!(Dur::parse("250ms"), Ok(Dur(Duration::from_millis(250))));
    }

    #[test]
    fn refuses_bad_forms_saying_what_is_allowed() {
        for input in ["30", "-1s", "five minutes", "", "8d", "1x"] {
            let err = Dur::parse(input).expect_err(input);
            assert!(err.contains(&format!("`{input}`")), "{input}: {err}");
            assert!(err.contains("e.g. 30s") || err.contains("limit of 7d"), "{input}: {err}");
        }
    }

    #[test]
    fn bare_integers_other_than_zero_are_refused_in_yaml() {
        let zero: Dur = serde_yaml::from_str("0").expect("0 is off");
        assert!(zero.is_zero());
        let err = serde_yaml::from_str::<Dur>("30").expect_err("ambiguous").to_string();
        assert!(err.contains("has no unit"), "{err}");
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_duration(secs in 0u64..(7 * 24 * 3600), ms in 0u64..1000) {
            let d = Dur(Duration::from_secs(secs) + Duration::from_millis(ms));
            prop_assert_eq!(Dur::parse(&d.to_string()), Ok(d));
        }
    }
}
