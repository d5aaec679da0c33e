//! A recurring maintenance window: on these weekdays, between these
//! times of day, at a fixed UTC offset. A fixed offset (`+02:00`), not a
//! time-zone name: a tz database would be a new dependency, and an admin
//! changes the offset twice a year at worst.

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
    /// Local time = UTC + this many minutes.
    pub offset_minutes: i64,
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
        let offset = r.utc_offset.as_deref().unwrap_or("+00:00");
        let bad_offset =
            || format!("window.utc_offset `{offset}`: expected +HH:MM or -HH:MM (a fixed offset)");
        let (sign, rest) = match offset.as_bytes().first() {
            Some(b'+') => (1, &offset[1..]),
            Some(b'-') => (-1, &offset[1..]),
            _ => return Err(bad_offset()),
        };
        let minutes = hhmm(rest).filter(|m| *m <= 14 * 60).ok_or_else(bad_offset)?;
        Ok(Self { days, from_minute, to_minute, offset_minutes: sign * minutes })
    }

    /// Whether `now` (unix ms) is inside the window.
    pub fn contains(&self, now: i64) -> bool {
        let local_minutes = now.div_euclid(60_000) + self.offset_minutes;
        let day = local_minutes.div_euclid(MINUTES_A_DAY);
        let minute = local_minutes.rem_euclid(MINUTES_A_DAY);
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
            })
            .expect_err("invalid")
        };
        assert!(bad(&["funday"], "09:00-10:00", "+00:00").contains("mon, tue"));
        assert!(bad(&[], "9-10", "+00:00").contains("HH:MM-HH:MM"));
        assert!(bad(&[], "09:00-09:00", "+00:00").contains("same time"));
        assert!(bad(&[], "09:00-10:00", "Europe/Paris").contains("fixed offset"));
    }
}
