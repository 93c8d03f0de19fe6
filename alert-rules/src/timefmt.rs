//! Small formatting helpers for decision details (no clock access).

use crate::window::{DAY_MS, MINUTE_MS};
use crate::Millis;

/// `2024-05-01 09:12 (+08:00)` for a UTC instant shown at a fixed offset.
pub(crate) fn local_time(at: Millis, offset_minutes: i32) -> String {
    let local = i128::from(at) + i128::from(offset_minutes) * i128::from(MINUTE_MS);
    let day = i128::from(DAY_MS);
    let days = local.div_euclid(day);
    let in_day = local.rem_euclid(day) / i128::from(MINUTE_MS);
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} ({sign}{:02}:{:02})",
        in_day / 60,
        in_day % 60,
        off / 60,
        off % 60
    )
}

/// Proleptic Gregorian date from days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

/// `45 min`, `4.0 h`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 2 * 60 * MINUTE_MS {
        format!("{} min", ms / MINUTE_MS)
    } else {
        format!("{:.1} h", ms as f64 / (60.0 * MINUTE_MS as f64))
    }
}

/// A number for humans: at most two decimals, no trailing zeros.
pub(crate) fn number(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == 0.0 {
        "0".to_string()
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // 2024-05-01 00:00 UTC
        assert_eq!(
            local_time(1_714_521_600_000, 480),
            "2024-05-01 08:00 (+08:00)"
        );
        assert_eq!(local_time(0, -330), "1969-12-31 18:30 (-05:30)");
        assert_eq!(local_time(951_782_400_000, 0), "2000-02-29 00:00 (+00:00)");
        let _ = local_time(i64::MIN, 840);
        let _ = local_time(i64::MAX, -840);
        assert_eq!(duration(45 * MINUTE_MS), "45 min");
        assert_eq!(duration(4 * 60 * MINUTE_MS), "4.0 h");
        assert_eq!(number(35.0), "35");
        assert_eq!(number(36.456), "36.46");
        assert_eq!(number(-0.001), "0");
    }
}
