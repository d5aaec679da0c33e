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

/// What a duration may be, for every refusal.
const ALLOWED: &str =
    "allowed: a number with a unit — ms, s, m (minutes), h, d — such as 500ms, 30s, 5m, 1h30m, 2d; or 0";

impl Dur {
    /// Parses `0`, `500ms`, `30s`, `5m`, `1h30m`, `1h 30m` (units: ms, s,
    /// m, h, d, lower case). Refuses what could be read two ways: a bare
    /// number other than 0 (seconds or minutes?), `M` or `mo` (months or
    /// minutes?) and every other unit.
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        if trimmed == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if trimmed.is_empty() {
            return Err(format!("duration `{s}` is empty; {ALLOWED}"));
        }
        if trimmed.starts_with('-') {
            return Err(format!("duration `{s}` is negative; {ALLOWED}"));
        }
        let too_long = || format!("duration `{s}` is longer than the limit of 7d; {ALLOWED}");
        let mut total = Duration::ZERO;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(format!("duration `{s}` is not a number with a unit; {ALLOWED}"));
            }
            let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest.len() - rest.trim_start_matches(|c: char| c.is_alphabetic()).len();
            let unit = &rest[..unit_len];
            let step = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86_400)),
                "" if trimmed.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(format!(
                        "duration `{s}` has no unit, so it could be seconds or minutes; write e.g. {n}s or {n}m; {ALLOWED}"
                    ))
                }
                "" => return Err(format!("duration `{s}` has a number without a unit; {ALLOWED}")),
                "M" | "mo" | "mon" | "month" | "months" => {
                    return Err(format!(
                        "duration `{s}`: `{unit}` could mean months or minutes; write minutes as m; {ALLOWED}"
                    ))
                }
                other => return Err(format!("duration `{s}` has the unit `{other}`, which is not one of ms, s, m, h, d; {ALLOWED}")),
            };
            total = total.checked_add(step).filter(|t| *t <= MAX).ok_or_else(too_long)?;
            rest = &rest[unit_len..];
            rest = rest.trim_start_matches(' ');
        }
        Ok(Self(total))
    }

    /// True for a zero duration (which some settings read as "off").
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Dur {
    /// In the units [`Dur::parse`] reads (`1h 30m`, `500ms`), so a shown
    /// duration can be pasted back; `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        let secs = self.0.as_secs();
        let parts = [
            (secs / 86_400, "d"),
            (secs % 86_400 / 3600, "h"),
            (secs % 3600 / 60, "m"),
            (secs % 60, "s"),
            (u64::from(self.0.subsec_millis()), "ms"),
        ];
        let mut shown: Vec<String> =
            parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect();
        let nanos = self.0.subsec_nanos() % 1_000_000;
        if nanos > 0 {
            // Only a duration made in code has these; the manifest has no unit for them.
            shown.push(format!("{nanos}ns"));
        }
        f.write_str(&shown.join(" "))
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
        // Read as text (a plain `30` is the text "30" here), so one parser
        // decides, and `30` is refused as ambiguous by it with the reason.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&ALLOWED["allowed: ".len()..])
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        let text = d.deserialize_str(Text)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
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
        for input in ["30", "-1s", "five minutes", "", "8d", "1x", "5M", "1mo", "1ns", "2w", "1.5h", "-0"] {
            let err = Dur::parse(input).expect_err(input);
            assert!(err.contains(&format!("`{input}`")), "{input}: {err}");
            assert!(err.contains("such as 500ms, 30s, 5m"), "{input}: {err}");
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
