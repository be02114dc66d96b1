//! Times and statuses in words, the same on the server and in the browser
//! (so a server-rendered page and its hydrated copy agree).

use lockstep_wire::OpenStatus;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-05 01:13:07 UTC` for a Unix time in milliseconds.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// `01:13:07.250` (time of day, UTC, with milliseconds): the timeline's
/// steps, which are often within one second.
pub fn clock(ms: i64) -> String {
    let t = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        t / 3_600_000,
        t % 3_600_000 / 60_000,
        t % 60_000 / 1000,
        t % 1000
    )
}

/// The start (ms, UTC) of a `YYYY-MM-DD` day; `None` if it is not one.
pub fn day_start_ms(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // 2026-02-31 is not a day.
    (civil_from_days(days) == (y, m, d)).then_some(days * 86_400_000)
}

/// The time (ms, UTC) of a `datetime-local` value, `YYYY-MM-DDTHH:MM`
/// (seconds allowed), read as UTC; `None` if it is not one.
pub fn minute_ms(s: &str) -> Option<i64> {
    let (day, time) = s.trim().split_once('T')?;
    let day = day_start_ms(day)?;
    let mut hms = time.splitn(3, ':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = match hms.next() {
        Some(s) => s.parse::<f64>().ok().filter(|s| (0.0..60.0).contains(s))? as i64,
        None => 0,
    };
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(day + (h * 3600 + m * 60 + sec) * 1000)
}

/// A `datetime-local` value (UTC, to the minute) for a time in ms.
pub fn minute_input(ms: i64) -> String {
    let full = utc(ms);
    // "2026-12-05 01:13:07 UTC" → "2026-12-05T01:13".
    format!("{}T{}", &full[..10], &full[11..16])
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "never" for `None`.
pub fn ago(now_ms: i64, then_ms: Option<i64>) -> String {
    let Some(then) = then_ms else {
        return "never".into();
    };
    let s = ((now_ms - then) / 1000).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The Tailwind classes of a status badge.
pub fn status_badge(status: OpenStatus) -> &'static str {
    match status {
        OpenStatus::Opened => {
            "rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800"
        }
        OpenStatus::Failed | OpenStatus::Denied => {
            "rounded-full bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800"
        }
        OpenStatus::Requested | OpenStatus::Accepted | OpenStatus::Sent => {
            "rounded-full bg-amber-100 px-2 py-0.5 text-xs font-medium text-amber-900"
        }
    }
}

/// A reason code in words (`device_error` → "device error").
pub fn words(code: &str) -> String {
    code.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        let d = day_start_ms("2026-12-05").expect("a day");
        assert_eq!(utc(d), "2026-12-05 00:00:00 UTC");
        assert_eq!(utc(d + 3_723_000), "2026-12-05 01:02:03 UTC");
        assert_eq!(clock(d + 3_723_045), "01:02:03.045");
        assert_eq!(
            day_start_ms("2024-02-29").map(utc).as_deref(),
            Some("2024-02-29 00:00:00 UTC")
        );
        assert_eq!(day_start_ms("2026-02-29"), None);
        assert_eq!(day_start_ms("2026-13-01"), None);
        assert_eq!(day_start_ms("soon"), None);
        assert_eq!(day_start_ms(""), None);
    }

    #[test]
    fn datetime_local_values_read_as_utc() {
        let d = day_start_ms("2026-12-05").expect("a day");
        assert_eq!(minute_ms("2026-12-05T01:02"), Some(d + 3_720_000));
        assert_eq!(minute_ms("2026-12-05T01:02:03"), Some(d + 3_723_000));
        assert_eq!(minute_input(d + 3_723_000), "2026-12-05T01:02");
        assert_eq!(minute_ms("2026-12-05T24:00"), None);
        assert_eq!(minute_ms("2026-12-05"), None);
        assert_eq!(minute_ms("2026-12-05T1x:00"), None);
        assert_eq!(minute_ms(""), None);
    }

    #[test]
    fn ages_in_words() {
        assert_eq!(ago(10_000, Some(9_000)), "1 s ago");
        assert_eq!(ago(10_000_000, Some(10_000_000 - 125_000)), "2 min ago");
        assert_eq!(ago(0, None), "never");
        assert_eq!(
            ago(0, Some(5_000)),
            "0 s ago",
            "a clock behind the server's"
        );
    }
}
