//! Docker log timestamps: `2024-05-01T10:00:00.123456789Z`, UTC with nine fraction digits, so
//! that comparing two of them as strings compares the instants.
//!
//! One log entry of Docker's may hold several of our lines (a lone `\r` is a line break for us,
//! not for Docker), and they would share its timestamp; [`line_time`] gives the `k`-th of them the
//! entry's time plus `k` nanoseconds, so every line has its own resume point.

/// Length of a timestamp in the fixed format.
const FIXED_LEN: usize = "2024-05-01T10:00:00.123456789Z".len();

/// Splits a log frame from `logs(timestamps = true)` into its timestamp and its payload.
pub(super) fn split_frame(frame: &[u8]) -> (Option<&str>, &[u8]) {
    let Some(space) = frame.iter().position(|byte| *byte == b' ') else {
        return (None, frame);
    };
    match std::str::from_utf8(&frame[..space]) {
        Ok(time) if time.len() >= 20 && time.as_bytes()[10] == b'T' => {
            (Some(time), &frame[space + 1..])
        }
        _ => (None, frame),
    }
}

/// Whether `time` has the fixed format (nine fraction digits, `Z`).
fn is_fixed(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() == FIXED_LEN
        && bytes[19] == b'.'
        && bytes[29] == b'Z'
        && bytes[20..29].iter().all(u8::is_ascii_digit)
}

/// The time of the `k`-th line (from 0) completed by a log entry written at `entry`.
pub(super) fn line_time(entry: &str, k: u32) -> String {
    if k == 0 || !is_fixed(entry) {
        return entry.to_owned();
    }
    let nanos: u32 = entry[20..29].parse().unwrap_or(0);
    // Saturates in the last nanosecond of a second rather than carry into the seconds.
    let nanos = nanos.saturating_add(k).min(999_999_999);
    format!("{}{nanos:09}Z", &entry[..20])
}

/// Whole seconds since the Unix epoch of an RFC 3339 UTC timestamp (Docker's `since`).
pub(super) fn unix_seconds(time: &str) -> Option<i64> {
    let bytes = time.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { time.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_timestamp_from_the_payload() {
        let (time, rest) = split_frame(b"2024-05-01T10:00:00.123456789Z hello world\n");
        assert_eq!(time, Some("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(rest, b"hello world\n");
        assert_eq!(
            split_frame(b"no timestamp here"),
            (None, &b"no timestamp here"[..])
        );
        let (time, rest) = split_frame(b"2024-05-01T10:00:00.000000001Z \n");
        assert_eq!(time, Some("2024-05-01T10:00:00.000000001Z"));
        assert_eq!(rest, b"\n");
    }

    #[test]
    fn later_lines_of_an_entry_get_later_times() {
        let entry = "2024-05-01T10:00:00.123456789Z";
        assert_eq!(line_time(entry, 0), entry);
        assert_eq!(line_time(entry, 2), "2024-05-01T10:00:00.123456791Z");
        assert!(line_time(entry, 1).as_str() > entry);
        assert_eq!(
            line_time("2024-05-01T10:00:00.999999999Z", 3),
            "2024-05-01T10:00:00.999999999Z"
        );
        assert_eq!(line_time("odd", 3), "odd");
    }

    #[test]
    fn converts_to_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00.000000000Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(
            unix_seconds("2024-05-01T10:00:00.123456789Z"),
            Some(1_714_557_600)
        );
        assert_eq!(unix_seconds(""), None);
        assert_eq!(unix_seconds("yesterday at noon"), None);
    }
}
