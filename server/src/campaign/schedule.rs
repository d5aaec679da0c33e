//! A recurring maintenance window: on these weekdays, between these
//! times of day, in an IANA time zone (`Europe/Berlin`: the window stays
//! at 22:00 local across daylight-saving changes; the tz database is
//! built into the binary, so a scratch image needs no zoneinfo) or at a
//! fixed UTC offset (`+02:00`).

use serde::{Deserialize, Serialize};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_A_DAY: i64 = 24 * 60;

/// The window as the API and the CLI give it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// Weekdays (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM-HH:MM` (may wrap midnight: `22:00-04:00`).
    pub hours: String,
    /// `+HH:MM` or `-HH:MM`; default `+00:00`.
    pub utc_offset: Option<String>,
    /// An IANA time zone (`Europe/Berlin`), instead of `utc_offset`.
    pub time_zone: Option<String>,
}

/// A validated window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Window {
    /// Weekdays, 0 = Monday; empty = every day. The day is the one the
    /// window opens on (a `22:00-04:00` window opened on Friday runs into
    /// Saturday morning).
    pub days: Vec<u8>,
    /// Opens at this minute of the day (local).
    pub from_minute: i64,
    /// Closes at this minute of the day (local); below `from` it wraps.
    pub to_minute: i64,
    /// Local time = UTC + this many minutes (when no `time_zone`).
    pub offset_minutes: i64,
    /// The IANA time zone local time is read in; it wins over the offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The time zone named `name` from the built-in tz database.
fn zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::db().get(name).map_err(|_| {
        format!("window.time_zone `{name}`: not a time zone of the IANA database; expected a name like Europe/Berlin, America/New_York or UTC")
    })
}

fn hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= MINUTES_A_DAY).then_some(h * 60 + m)
}

impl Window {
    /// Validates `r`.
    pub fn from_request(r: &WindowRequest) -> Result<Self, String> {
        let mut days = Vec::new();
        for d in &r.days {
            let lower = d.trim().to_ascii_lowercase();
            let i = DAY_NAMES
                .iter()
                .position(|n| lower.starts_with(n))
                .ok_or_else(|| format!("window.days `{d}`: expected mon, tue, wed, thu, fri, sat or sun"))?;
            days.push(u8::try_from(i).unwrap_or(0));
        }
        let bad_hours =
            || format!("window.hours `{}`: expected HH:MM-HH:MM (22:00-04:00 wraps midnight)", r.hours);
        let (from, to) = r.hours.split_once('-').ok_or_else(bad_hours)?;
        let (from_minute, to_minute) = (hhmm(from).ok_or_else(bad_hours)?, hhmm(to).ok_or_else(bad_hours)?);
        if from_minute == to_minute {
            return Err(format!("{}; it opens and closes at the same time", bad_hours()));
        }
        if let Some(name) = r.time_zone.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            if r.utc_offset.as_deref().is_some_and(|o| !o.trim().is_empty()) {
                return Err("window: give time_zone or utc_offset, not both".into());
            }
            zone(name)?;
            return Ok(Self {
                days,
                from_minute,
                to_minute,
                offset_minutes: 0,
                time_zone: Some(name.to_string()),
            });
        }
        let offset = r.utc_offset.as_deref().unwrap_or("+00:00");
        let bad_offset = || {
            format!("window.utc_offset `{offset}`: expected +HH:MM or -HH:MM (a fixed offset); a zone name like Europe/Berlin goes in time_zone")
        };
        let (sign, rest) = match offset.as_bytes().first() {
            Some(b'+') => (1, &offset[1..]),
            Some(b'-') => (-1, &offset[1..]),
            _ => return Err(bad_offset()),
        };
        let minutes = hhmm(rest).filter(|m| *m <= 14 * 60).ok_or_else(bad_offset)?;
        Ok(Self { days, from_minute, to_minute, offset_minutes: sign * minutes, time_zone: None })
    }

    /// `now` (unix ms) as (local days since 1970-01-01, minute of the
    /// day) in the window's zone (its offset at that instant) or offset.
    fn local(&self, now: i64) -> (i64, i64) {
        let fixed = |offset: i64| {
            let local_minutes = now.div_euclid(60_000) + offset;
            (local_minutes.div_euclid(MINUTES_A_DAY), local_minutes.rem_euclid(MINUTES_A_DAY))
        };
        let Some(tz) = self.time_zone.as_deref().and_then(|n| zone(n).ok()) else {
            return fixed(self.offset_minutes);
        };
        match jiff::Timestamp::from_millisecond(now) {
            Ok(t) => {
                let offset = tz.to_offset(t).seconds() / 60;
                fixed(i64::from(offset))
            }
            Err(_) => fixed(0),
        }
    }

    /// Whether `now` (unix ms) is inside the window.
    pub fn contains(&self, now: i64) -> bool {
        let (day, minute) = self.local(now);
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = |d: i64| u8::try_from((d + 3).rem_euclid(7)).unwrap_or(0);
        let day_ok = |d: i64| self.days.is_empty() || self.days.contains(&weekday(d));
        if self.from_minute < self.to_minute {
            day_ok(day) && minute >= self.from_minute && minute < self.to_minute
        } else if minute >= self.from_minute {
            day_ok(day)
        } else {
            // After midnight: the window opened the day before.
            minute < self.to_minute && day_ok(day - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], hours: &str, offset: &str) -> Window {
        Window::from_request(&WindowRequest {
            days: days.iter().map(|d| d.to_string()).collect(),
            hours: hours.into(),
            utc_offset: Some(offset.into()),
            time_zone: None,
        })
        .expect("valid window")
    }

    /// 2026-01-02T00:00:00Z, a Friday.
    const FRIDAY: i64 = 1_767_312_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn windows_open_on_their_days_and_hours_at_their_offset() {
        let w = window(&["fri"], "09:00-17:00", "+00:00");
        assert!(!w.contains(FRIDAY + 8 * HOUR));
        assert!(w.contains(FRIDAY + 9 * HOUR));
        assert!(!w.contains(FRIDAY + 17 * HOUR));
        assert!(!w.contains(FRIDAY + 24 * HOUR + 10 * HOUR), "saturday");
        let east = window(&["fri"], "09:00-17:00", "+02:00");
        assert!(east.contains(FRIDAY + 7 * HOUR), "09:00 at +02:00");
        assert!(!east.contains(FRIDAY + 15 * HOUR));
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opens() {
        let w = window(&["fri"], "22:00-04:00", "+00:00");
        assert!(w.contains(FRIDAY + 23 * HOUR));
        assert!(w.contains(FRIDAY + 27 * HOUR), "saturday 03:00");
        assert!(!w.contains(FRIDAY + 3 * HOUR), "friday 03:00 belongs to thursday's window");
        assert!(window(&[], "22:00-04:00", "-05:00").contains(FRIDAY + 4 * HOUR));
    }

    #[test]
    fn bad_windows_say_what_is_allowed() {
        let bad = |days: &[&str], hours: &str, offset: &str| {
            Window::from_request(&WindowRequest {
                days: days.iter().map(|d| d.to_string()).collect(),
                hours: hours.into(),
                utc_offset: Some(offset.into()),
                time_zone: None,
            })
            .expect_err("invalid")
        };
        assert!(bad(&["funday"], "09:00-10:00", "+00:00").contains("mon, tue"));
        assert!(bad(&[], "9-10", "+00:00").contains("HH:MM-HH:MM"));
        assert!(bad(&[], "09:00-09:00", "+00:00").contains("same time"));
        assert!(bad(&[], "09:00-10:00", "Europe/Paris").contains("time_zone"));
        let zoned = |zone: &str, offset: Option<&str>| {
            Window::from_request(&WindowRequest {
                days: Vec::new(),
                hours: "22:00-23:00".into(),
                utc_offset: offset.map(str::to_string),
                time_zone: Some(zone.into()),
            })
        };
        let e = zoned("Europe/Atlantis", None).expect_err("unknown zone");
        assert!(e.contains("Europe/Atlantis") && e.contains("IANA"), "{e}");
        assert!(zoned("Europe/Berlin", Some("+01:00")).expect_err("both").contains("not both"));
    }

    #[test]
    fn a_window_in_a_named_zone_keeps_its_local_hours_across_daylight_saving() {
        let w = Window::from_request(&WindowRequest {
            days: vec!["fri".into()],
            hours: "22:00-23:00".into(),
            utc_offset: None,
            time_zone: Some("Europe/Berlin".into()),
        })
        .expect("valid window");
        // Winter, UTC+1: Friday 2026-01-02 22:00 in Berlin is 21:00Z.
        assert!(!w.contains(FRIDAY + 20 * HOUR + HOUR / 2));
        assert!(w.contains(FRIDAY + 21 * HOUR + HOUR / 2));
        // Summer, UTC+2: Friday 2026-07-03 22:00 in Berlin is 20:00Z (26 weeks later).
        let summer = FRIDAY + 26 * 7 * 24 * HOUR;
        assert!(w.contains(summer + 20 * HOUR + HOUR / 2), "20:30Z is 22:30 in Berlin in July");
        assert!(!w.contains(summer + 21 * HOUR + HOUR / 2), "21:30Z is 23:30 in Berlin in July");
    }
}
