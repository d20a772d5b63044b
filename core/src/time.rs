//! Wall-clock time as a value the caller passes in.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in wall-clock time: nanoseconds since the Unix epoch, UTC.
///
/// The core never reads a clock. The io layer passes the system time and the simulation passes
/// its own, so TTLs, expiry and timestamps in responses are reproducible.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Makes a timestamp from nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Makes a timestamp from whole seconds since the Unix epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// Milliseconds since the Unix epoch, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// This time plus `duration`, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// The time from `earlier` to this time, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 with nanoseconds in UTC, as Vault prints times: `2018-03-22T02:24:06.945319214Z`.
    pub fn to_rfc3339(self) -> String {
        let datetime = self.to_offset_datetime();
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        );
        datetime
            .format(&format)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000000000Z"))
    }

    /// RFC 3339 with whole seconds in UTC: `2018-03-22T02:24:06Z`.
    pub fn to_rfc3339_seconds(self) -> String {
        let datetime = self.to_offset_datetime();
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        datetime
            .format(&format)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }

    fn to_offset_datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

/// Formats a duration the way Go's `time.Duration` prints, as Vault's KV v2 output does:
/// `0s`, `30m0s`, `3h25m19s`, `1.5s`.
pub fn format_go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if total == 0 && nanos == 0 {
        return String::from("0s");
    }
    let hours = total / 3600;
    let minutes = (total % 3600) / 60;
    let seconds = total % 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if nanos == 0 {
        out.push_str(&format!("{seconds}s"));
    } else {
        let fraction = format!("{nanos:09}");
        out.push_str(&format!("{seconds}.{}s", fraction.trim_end_matches('0')));
    }
    out
}

/// Parses a duration as Vault accepts one: a bare integer of seconds (`"3600"`), or Go-style
/// units (`"90s"`, `"30m"`, `"1h30m"`, `"768h"`, `"1.5h"`, `"500ms"`), plus `d` for days.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(String::from("empty duration"));
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {text:?}: missing unit after the number"))?;
        if number_end == 0 {
            return Err(format!("invalid duration {text:?}: expected a number"));
        }
        let number: f64 = rest[..number_end]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: bad number"))?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            unit => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h or d)"
                ));
            }
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || !(0.0..=1e15).contains(&total) {
        return Err(format!("invalid duration {text:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_formats_like_vault() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(1800)), "30m0s");
        assert_eq!(format_go_duration(Duration::from_secs(12319)), "3h25m19s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn duration_parses_vault_forms() {
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("768h"), Ok(Duration::from_secs(2_764_800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn rfc3339_has_nanoseconds() {
        let at = Timestamp::from_nanos(1_521_685_446_945_319_214);
        assert_eq!(at.to_rfc3339(), "2018-03-22T02:24:06.945319214Z");
        assert_eq!(at.to_rfc3339_seconds(), "2018-03-22T02:24:06Z");
    }
}
