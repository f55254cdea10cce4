//! Built-in template filters: `timeago`, `format_date`, `format_datetime`, `format_duration`.
//!
//! Dates are accepted as RFC 3339 strings, `YYYY-MM-DD[ HH:MM[:SS]]` strings (taken as UTC),
//! or Unix timestamps in seconds.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use minijinja::{Error, ErrorKind, Value};

/// Parses a template value into a UTC timestamp.
pub fn to_datetime(value: &Value) -> Result<DateTime<Utc>, Error> {
    if let Some(s) = value.as_str() {
        let s = s.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Ok(dt.with_timezone(&Utc));
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
                return Ok(dt.and_utc());
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
        }
    } else if let Ok(secs) = i64::try_from(value.clone()) {
        if let Some(dt) = DateTime::from_timestamp(secs, 0) {
            return Ok(dt);
        }
    } else if let Ok(secs) = f64::try_from(value.clone())
        && let Some(dt) = DateTime::from_timestamp_millis((secs * 1000.0) as i64)
    {
        return Ok(dt);
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("cannot read {value} as a date (use RFC 3339, YYYY-MM-DD or a Unix timestamp)"),
    ))
}

/// Human distance between `then` and `now`: "3 minutes ago", "in 2 days", or a date beyond 4 years.
pub fn timeago_between(then: DateTime<Utc>, now: DateTime<Utc>, short: bool) -> String {
    let delta = now.signed_duration_since(then);
    let future = delta.num_seconds() < 0;
    let secs = delta.num_seconds().unsigned_abs();
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    if secs < MIN {
        return if short { "now" } else { "just now" }.to_owned();
    }
    if secs >= 4 * 365 * DAY {
        return then.format("%b %d, %Y").to_string();
    }
    if !short && (DAY..2 * DAY).contains(&secs) {
        return if future { "tomorrow" } else { "yesterday" }.to_owned();
    }
    let (n, long, abbrev) = match secs {
        s if s < HOUR => (s / MIN, "minute", "m"),
        s if s < DAY => (s / HOUR, "hour", "h"),
        s if s < 7 * DAY => (s / DAY, "day", "d"),
        s if s < 30 * DAY => (s / (7 * DAY), "week", "w"),
        s if s < 365 * DAY => (s / (30 * DAY), "month", "mo"),
        s => (s / (365 * DAY), "year", "y"),
    };
    let amount = if short {
        format!("{n}{abbrev}")
    } else {
        format!("{n} {long}{}", if n == 1 { "" } else { "s" })
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `{{ dt|timeago }}` or `{{ dt|timeago(short=true) }}`.
pub fn timeago(value: Value, short: Option<bool>) -> Result<String, Error> {
    Ok(timeago_between(
        to_datetime(&value)?,
        Utc::now(),
        short.unwrap_or(false),
    ))
}

/// `{{ dt|format_date }}` → "January 05, 2026"; an optional strftime format overrides.
pub fn format_date(value: Value, format: Option<String>) -> Result<String, Error> {
    let dt = to_datetime(&value)?;
    Ok(dt
        .format(format.as_deref().unwrap_or("%B %d, %Y"))
        .to_string())
}

/// `{{ dt|format_datetime }}` → "January 05, 2026 at 03:04 PM".
pub fn format_datetime(value: Value, format: Option<String>) -> Result<String, Error> {
    let dt = to_datetime(&value)?;
    Ok(dt
        .format(format.as_deref().unwrap_or("%B %d, %Y at %I:%M %p"))
        .to_string())
}

/// `{{ seconds|format_duration }}` → "45 sec" up to 45 seconds, else "N min".
pub fn format_duration(value: Value) -> Result<String, Error> {
    let secs = f64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("format_duration expects a number of seconds, got {value}"),
        )
    })?;
    Ok(if secs <= 45.0 {
        format!("{} sec", secs.round() as i64)
    } else {
        format!("{} min", (secs / 60.0).round() as i64)
    })
}

/// Registers the built-in filters on an environment.
pub fn register(env: &mut minijinja::Environment<'static>) {
    env.add_filter("timeago", timeago);
    env.add_filter("format_date", format_date);
    env.add_filter("format_datetime", format_datetime);
    env.add_filter("format_duration", format_duration);
    env.add_filter("duration", format_duration);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn timeago_past_future_long_and_short() {
        let now = at(2026, 11, 21, 12, 0, 0);
        let cases = [
            (at(2026, 11, 21, 11, 59, 30), "just now", "now"),
            (at(2026, 11, 21, 11, 59, 0), "1 minute ago", "1m ago"),
            (at(2026, 11, 21, 11, 15, 0), "45 minutes ago", "45m ago"),
            (at(2026, 11, 21, 9, 0, 0), "3 hours ago", "3h ago"),
            (at(2026, 11, 20, 10, 0, 0), "yesterday", "1d ago"),
            (at(2026, 11, 16, 12, 0, 0), "5 days ago", "5d ago"),
            (at(2026, 11, 7, 12, 0, 0), "2 weeks ago", "2w ago"),
            (at(2026, 8, 21, 12, 0, 0), "3 months ago", "3mo ago"),
            (at(2024, 11, 21, 12, 0, 0), "2 years ago", "2y ago"),
            (at(2020, 3, 5, 12, 0, 0), "Mar 05, 2020", "Mar 05, 2020"),
            (at(2026, 11, 21, 14, 0, 0), "in 2 hours", "in 2h"),
            (at(2026, 11, 22, 13, 0, 0), "tomorrow", "in 1d"),
        ];
        for (then, long, short) in cases {
            assert_eq!(timeago_between(then, now, false), long);
            assert_eq!(timeago_between(then, now, true), short);
        }
    }

    #[test]
    fn dates_parse_from_strings_and_timestamps() {
        let expected = at(2026, 1, 5, 15, 4, 0);
        for v in [
            Value::from("2026-01-05T15:04:00Z"),
            Value::from("2026-01-05T16:04:00+01:00"),
            Value::from("2026-01-05 15:04"),
            Value::from(expected.timestamp()),
        ] {
            assert_eq!(to_datetime(&v).unwrap(), expected, "{v}");
        }
        let err = to_datetime(&Value::from("soon")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn filters_render_in_templates() {
        let mut env = minijinja::Environment::new();
        register(&mut env);
        let out = env
            .render_str(
                "{{ d|format_date }}|{{ d|format_datetime }}|{{ d|format_date('%Y') }}|{{ 30|format_duration }}|{{ 600|duration }}",
                minijinja::context! { d => "2026-01-05T15:04:00Z" },
            )
            .unwrap();
        assert_eq!(
            out,
            "January 05, 2026|January 05, 2026 at 03:04 PM|2026|30 sec|10 min"
        );
    }
}
