//! Durations as people write them for a time budget (`--timeout 1h30m`,
//! `search.timeout: 45m`): one or more `<number><unit>` parts with units
//! `d`, `h`, `m`, `s`, each unit at most once and largest first, or plain
//! seconds. Parsing says what is wrong and which forms are accepted.
//!
//! ```
//! use snac_core::config::{format_duration, parse_duration};
//! use std::time::Duration;
//!
//! assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
//! assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
//! assert!(parse_duration("10 minutes").unwrap_err().contains("accepted"));
//! ```

use std::time::Duration;

/// The forms [`parse_duration`] accepts, for error messages.
pub const DURATION_FORMS: &str =
    "a positive duration such as 90s, 45m, 2h, 1h30m, 1d12h, or plain seconds such as 90 or 2.5";

/// Longest accepted duration: a year, far beyond any batch job.
const MAX_SECONDS: f64 = 366.0 * 86400.0;

/// Parses a positive duration; the error says what is wrong with `text`
/// (without naming where it came from: the caller adds the flag or key).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = |why: &str| Err(format!("'{text}' {why}; accepted: {DURATION_FORMS}"));
    if trimmed.is_empty() {
        return bad("is empty");
    }
    let seconds = if let Ok(plain) = trimmed.parse::<f64>() {
        plain
    } else {
        let mut total = 0.0;
        let mut rest = trimmed;
        let mut last_unit: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let Ok(amount) = rest[..digits].parse::<f64>() else {
                return bad("is not a duration (each part is a number followed by d, h, m or s)");
            };
            let after = &rest[digits..];
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, seconds_per) = match &after[..unit_len] {
                "d" => (0, 86400.0),
                "h" => (1, 3600.0),
                "m" => (2, 60.0),
                "s" => (3, 1.0),
                "" => return bad("has a number without a unit after another part (units: d, h, m, s)"),
                other => return bad(&format!("has the unit '{other}', which is not one of d, h, m, s")),
            };
            if last_unit.is_some_and(|last| last >= unit) {
                return bad("repeats a unit or puts a smaller one first (write e.g. 1h30m)");
            }
            last_unit = Some(unit);
            total += amount * seconds_per;
            rest = &after[unit_len..];
        }
        total
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return bad("is not positive");
    }
    if seconds > MAX_SECONDS {
        return bad("is longer than a year");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Writes a duration back in the form [`parse_duration`] reads: `1h30m`,
/// `45s`, `2.5s`.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs_f64();
    if duration.subsec_nanos() != 0 {
        return format!("{total}s");
    }
    let mut secs = duration.as_secs();
    let mut text = String::new();
    for (unit, per) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= per {
            text.push_str(&format!("{}{unit}", secs / per));
            secs %= per;
        }
    }
    if text.is_empty() { "0s".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for (text, secs) in [
            ("90s", 90.0),
            ("45m", 2700.0),
            ("2h", 7200.0),
            ("1h30m", 5400.0),
            ("1d12h", 129600.0),
            ("1h0m5s", 3605.0),
            ("90", 90.0),
            ("2.5", 2.5),
            ("0.5s", 0.5),
            (" 10m ", 600.0),
        ] {
            assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
        }
    }

    #[test]
    fn rejected_forms_say_why_and_what_is_accepted() {
        for (text, why) in [
            ("", "is empty"),
            ("0", "not positive"),
            ("-5", "not positive"),
            ("0s", "not positive"),
            ("10 minutes", "unit ' minutes'"),
            ("5x", "unit 'x'"),
            ("30m1h", "smaller one first"),
            ("1h1h", "repeats a unit"),
            ("h", "is not a duration"),
            ("1h30", "without a unit"),
            ("400d", "longer than a year"),
            ("nan", "not positive"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(why) && err.contains("accepted: a positive duration"), "{text}: {err}");
            assert!(err.contains(&format!("'{text}'")), "{err}");
        }
    }

    #[test]
    fn formatting_reads_back() {
        for secs in [1, 59, 60, 61, 3600, 5400, 86400, 90061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
    }
}
