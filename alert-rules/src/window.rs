//! Local time-of-day windows and "silence counted inside the window" math.
//!
//! All arithmetic is done in `i128` and saturated back to `i64`, so arbitrary
//! `Millis` values (even near `i64::MIN`/`MAX`) never overflow.

use crate::Millis;

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
const DAY: i128 = DAY_MS as i128;

fn saturate(x: i128) -> Millis {
    if x > i64::MAX as i128 {
        i64::MAX
    } else if x < i64::MIN as i128 {
        i64::MIN
    } else {
        x as i64
    }
}

/// A daily local-time window `[start, end)`, in minutes after local midnight.
/// `start != end`; `end` may be 1440 ("24:00"); `start > end` wraps midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start_min: u32,
    pub(crate) end_min: u32,
}

impl Window {
    /// Parses `"HH:MM-HH:MM"` (hours may have one digit). Errors are full
    /// English sentences.
    pub(crate) fn parse(text: &str) -> Result<Window, String> {
        let usage =
            "expected \"HH:MM-HH:MM\" in local time, e.g. \"07:00-22:00\" or \"22:00-07:00\"";
        let Some((a, b)) = text.split_once('-') else {
            return Err(format!("invalid window {text:?}: {usage}"));
        };
        let start =
            parse_hhmm(a.trim(), false).map_err(|e| format!("invalid window {text:?}: {e}"))?;
        let end =
            parse_hhmm(b.trim(), true).map_err(|e| format!("invalid window {text:?}: {e}"))?;
        if start == end {
            return Err(format!(
                "invalid window {text:?}: start and end are the same time"
            ));
        }
        if start == 0 && end == 1440 {
            return Err(format!(
                "invalid window {text:?}: it covers the whole day; leave `window` out instead"
            ));
        }
        Ok(Window {
            start_min: start,
            end_min: end,
        })
    }

    fn start(&self) -> i128 {
        i128::from(self.start_min) * i128::from(MINUTE_MS)
    }

    fn end(&self) -> i128 {
        i128::from(self.end_min) * i128::from(MINUTE_MS)
    }

    fn wraps(&self) -> bool {
        self.start_min > self.end_min
    }

    /// Length of the window per day, in ms (> 0).
    fn len(&self) -> i128 {
        if self.wraps() {
            DAY - self.start() + self.end()
        } else {
            self.end() - self.start()
        }
    }

    /// Time inside the window within `[0, r)` of one day, `r` in `[0, DAY]`.
    fn inside_before(&self, r: i128) -> i128 {
        let (s, e) = (self.start(), self.end());
        if self.wraps() {
            r.min(e) + (r - s).max(0)
        } else {
            (r - s).clamp(0, e - s)
        }
    }

    /// Smallest `r` with `inside_before(r) >= y`, for `y` in `[1, len]`.
    fn inside_before_inv(&self, y: i128) -> i128 {
        let (s, e) = (self.start(), self.end());
        if self.wraps() {
            if y <= e {
                y
            } else {
                s + (y - e)
            }
        } else {
            s + y
        }
    }

    /// Time inside the window within `(-inf.., x)` measured from local epoch
    /// day 0 (may be negative); non-decreasing in `x`.
    fn cumulative(&self, x: i128) -> i128 {
        x.div_euclid(DAY) * self.len() + self.inside_before(x.rem_euclid(DAY))
    }

    /// Smallest `x` with `cumulative(x) >= target`.
    fn cumulative_inv(&self, target: i128) -> i128 {
        let len = self.len();
        let q = (target - 1).div_euclid(len);
        let y = target - q * len; // in [1, len]
        q * DAY + self.inside_before_inv(y)
    }

    pub(crate) fn label(&self) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

pub(crate) fn parse_hhmm(s: &str, allow_24: bool) -> Result<u32, String> {
    let Some((h, m)) = s.split_once(':') else {
        return Err(format!("{s:?} is not a time of day (expected HH:MM)"));
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(format!("{s:?} is not a time of day (expected HH:MM)"));
    }
    let hour: u32 = h
        .parse()
        .map_err(|_| format!("{s:?} is not a time of day"))?;
    let minute: u32 = m
        .parse()
        .map_err(|_| format!("{s:?} is not a time of day"))?;
    if minute > 59 {
        return Err(format!("minute {minute} in {s:?} is out of range (00-59)"));
    }
    if hour == 24 && minute == 0 && allow_24 {
        return Ok(1440);
    }
    if hour > 23 {
        let max = if allow_24 {
            "00-23, or 24:00 as an end"
        } else {
            "00-23"
        };
        return Err(format!("hour {hour} in {s:?} is out of range ({max})"));
    }
    Ok(hour * 60 + minute)
}

impl Window {
    /// Whether local time-of-day of `t` (UTC ms at `offset_ms`) is inside the window.
    pub(crate) fn contains(&self, offset_ms: i64, t: Millis) -> bool {
        let r = (i128::from(t) + i128::from(offset_ms)).rem_euclid(DAY);
        let (s, e) = (self.start(), self.end());
        if self.wraps() {
            r >= s || r < e
        } else {
            r >= s && r < e
        }
    }

    /// The first instant after `t` at which the window ends (local `end` time).
    pub(crate) fn next_end(&self, offset_ms: i64, t: Millis) -> Millis {
        next_time_of_day(offset_ms, t, self.end_min)
    }
}

/// The first instant strictly after `t` whose local time of day is `minute`
/// (minutes after local midnight; 1440 = the next midnight).
pub(crate) fn next_time_of_day(offset_ms: i64, t: Millis, minute: u32) -> Millis {
    let local = i128::from(t) + i128::from(offset_ms);
    let day_start = local.div_euclid(DAY) * DAY;
    let mut x = day_start + i128::from(minute) * i128::from(MINUTE_MS);
    while x <= local {
        x += DAY;
    }
    saturate(x - i128::from(offset_ms))
}

/// Local midnight (as a UTC instant) of the local day containing `t`.
pub(crate) fn local_midnight(offset_ms: i64, t: Millis) -> Millis {
    let local = i128::from(t) + i128::from(offset_ms);
    saturate(local.div_euclid(DAY) * DAY - i128::from(offset_ms))
}

/// The first local Monday 00:00 at or after `t`.
pub(crate) fn next_monday(offset_ms: i64, t: Millis) -> Millis {
    let local = i128::from(t) + i128::from(offset_ms);
    // 1970-01-01 was a Thursday: days since the epoch + 3 is days since a Monday.
    let days = local.div_euclid(DAY);
    let since_monday = (days + 3).rem_euclid(7);
    let mut monday = (days - since_monday) * DAY;
    if monday < local {
        monday += 7 * DAY;
    }
    saturate(monday - i128::from(offset_ms))
}

/// How much of `[from, to)` counts as silence: everything without a window,
/// only the local-time window part with one. (The engine only needs
/// [`deadline`]; this is its specification, used by the tests.)
#[cfg(test)]
pub(crate) fn counted(window: Option<&Window>, offset_ms: i64, from: Millis, to: Millis) -> i64 {
    if to <= from {
        return 0;
    }
    match window {
        None => saturate(i128::from(to) - i128::from(from)),
        Some(w) => {
            let off = i128::from(offset_ms);
            saturate(w.cumulative(i128::from(to) + off) - w.cumulative(i128::from(from) + off))
        }
    }
}

/// Earliest instant `t > from` with `counted(from, t) >= need` (`need > 0`).
pub(crate) fn deadline(window: Option<&Window>, offset_ms: i64, from: Millis, need: i64) -> Millis {
    let need = i128::from(need.max(1));
    match window {
        None => saturate(i128::from(from) + need),
        Some(w) => {
            let off = i128::from(offset_ms);
            let target = w.cumulative(i128::from(from) + off) + need;
            saturate(w.cumulative_inv(target) - off)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    #[test]
    fn parse_windows() {
        assert_eq!(
            Window::parse("07:00-22:00").unwrap(),
            Window {
                start_min: 420,
                end_min: 1320
            }
        );
        assert_eq!(Window::parse("7:30 - 22:00").unwrap().start_min, 450);
        assert_eq!(Window::parse("22:00-24:00").unwrap().end_min, 1440);
        assert!(Window::parse("22:00-07:00").unwrap().wraps());
        for bad in [
            "7:00-25:00",
            "07:00",
            "07:60-08:00",
            "24:00-07:00",
            "x-y",
            "07:00-07:00",
            "00:00-24:00",
            "7-8",
            "007:00-08:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Window::parse("7:00-25:00").unwrap_err().contains("hour 25"));
    }

    #[test]
    fn silence_outside_window_does_not_count() {
        let w = Window::parse("07:00-22:00").unwrap();
        // 21:00 day 0 to 08:00 day 1 (UTC, offset 0): 1 h + 1 h
        assert_eq!(counted(Some(&w), 0, 21 * H, 32 * H), 2 * H);
        // need 4 h from 21:00: 1 h on day 0, then 3 h after 07:00 -> 10:00 day 1
        assert_eq!(deadline(Some(&w), 0, 21 * H, 4 * H), 34 * H);
        // starting inside the night: counting starts at 07:00
        assert_eq!(deadline(Some(&w), 0, 2 * H, H), 8 * H);
        // exactly filling a window ends at its end, not the next start
        assert_eq!(deadline(Some(&w), 0, 7 * H, 15 * H), 22 * H);
    }

    #[test]
    fn wrapping_window_and_offset() {
        let w = Window::parse("22:00-07:00").unwrap();
        assert_eq!(counted(Some(&w), 0, 0, 24 * H), 9 * H);
        assert_eq!(deadline(Some(&w), 0, 12 * H, 3 * H), 25 * H);
        // +08:00: local 22:00 is 14:00 UTC
        let day = Window::parse("07:00-22:00").unwrap();
        // from 13:00 UTC = 21:00 local: 1 h until 22:00 local, then 07:00 local = 23:00 UTC, +1 h
        assert_eq!(
            deadline(Some(&day), 8 * 60 * MINUTE_MS, 13 * H, 2 * H),
            24 * H
        );
        assert_eq!(deadline(None, 0, 5, 10), 15);
    }

    #[test]
    fn extreme_times_saturate() {
        let w = Window::parse("22:00-07:00").unwrap();
        assert_eq!(deadline(Some(&w), 0, i64::MAX - 5, H), i64::MAX);
        assert_eq!(deadline(None, 0, i64::MAX - 5, H), i64::MAX);
        assert!(counted(Some(&w), i64::MAX, i64::MIN, i64::MAX) > 0);
    }

    proptest! {
        #[test]
        fn deadline_is_the_first_instant_reaching_need(
            s in 0u32..1440, e in 0u32..=1440, off in -840i64..=840,
            from in -10_000_000_000_000i64..10_000_000_000_000, need in 1i64..(30 * 24 * H),
        ) {
            prop_assume!(s != e && !(s == 0 && e == 1440));
            let w = Window { start_min: s, end_min: e };
            let off = off * MINUTE_MS;
            let d = deadline(Some(&w), off, from, need);
            prop_assert!(d > from);
            prop_assert!(counted(Some(&w), off, from, d) >= need);
            prop_assert!(counted(Some(&w), off, from, d - 1) < need);
        }
    }
}
