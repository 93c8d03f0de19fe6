//! Time arithmetic for the simulated district (fixed UTC+08:00, no daylight saving).

use super::Millis;

pub const SECOND_MS: Millis = 1_000;
pub const MINUTE_MS: Millis = 60 * SECOND_MS;
pub const HOUR_MS: Millis = 60 * MINUTE_MS;
pub const DAY_MS: Millis = 24 * HOUR_MS;
/// The district's local time is UTC+08:00, like `timezone_offset` in the default rules.
pub const UTC_OFFSET_MS: Millis = 8 * HOUR_MS;
/// The default rules' daytime window for `no-activity-daytime`: 07:00–22:00 local.
pub const DAYTIME_FROM_MS: Millis = 7 * HOUR_MS;
pub const DAYTIME_TO_MS: Millis = 22 * HOUR_MS;

/// Local midnight at or before `t`.
pub fn local_midnight(t: Millis) -> Millis {
    (t + UTC_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - UTC_OFFSET_MS
}

/// Local time of day of `t`, in milliseconds since local midnight.
pub fn time_of_day(t: Millis) -> Millis {
    t - local_midnight(t)
}

/// Local day of the week of `t`: 0 = Monday … 6 = Sunday.
pub fn weekday(t: Millis) -> u32 {
    // 1970-01-01 was a Thursday.
    ((t + UTC_OFFSET_MS).div_euclid(DAY_MS) + 3).rem_euclid(7) as u32
}

/// The first instant at which `need` milliseconds of silence since `from` have been
/// counted inside the daily 07:00–22:00 window (how `no-activity-daytime` counts).
pub fn daytime_deadline(from: Millis, need: Millis) -> Millis {
    let mut remaining = need.max(1);
    let mut t = from;
    loop {
        let mid = local_midnight(t);
        let start = t.max(mid + DAYTIME_FROM_MS);
        let end = mid + DAYTIME_TO_MS;
        if start < end {
            if end - start >= remaining {
                return start + remaining;
            }
            remaining -= end - start;
        }
        t = mid + DAY_MS;
    }
}

/// `at` as RFC 3339 in district local time, e.g. `2026-11-02T08:30:00+08:00`.
pub fn rfc3339(at: Millis) -> String {
    let offset = time::UtcOffset::from_whole_seconds((UTC_OFFSET_MS / SECOND_MS) as i32)
        .unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.to_offset(offset)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
