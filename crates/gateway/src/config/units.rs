//! Human units in config values: durations such as `250ms` or `2s` (humantime), sizes such
//! as `1MiB`, `512KB` or a plain byte count, and rates such as `100/s` or `5/10s`.

/// The longest duration accepted anywhere (keeps every deadline computation far from overflow).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The shortest duration accepted anywhere: below a millisecond no timer of the gateway is
/// meaningful (tokio's timer resolution), and `1ns` once made a zero-length interval panic.
pub const MIN_DURATION: std::time::Duration = std::time::Duration::from_millis(1);

/// Parses a duration from 1 ms to 1 day like `250ms`, `2s`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (write e.g. 250ms, 2s, 1m)"))?;
    if duration < MIN_DURATION {
        return Err(format!("duration {text:?} must be at least 1ms"));
    }
    if duration > MAX_DURATION {
        return Err(format!("duration {text:?} is longer than the 1 day maximum"));
    }
    Ok(duration)
}

/// Parses a size: a byte count, or a number with `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?} (write e.g. 1MiB, 512KB or 4096)"))
}

/// The highest rate accepted: a million requests a second (one per microsecond, the
/// resolution of the limiter's clock).
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000;

/// Parses a rate `COUNT/PERIOD`: the period a unit (`s`, `m`, `h`, `d`) or a duration (`10s`,
/// `100ms`); at most [`MAX_RATE_PER_SECOND`].
pub fn parse_rate(text: &str) -> Result<(u32, std::time::Duration), String> {
    let hint = "(write e.g. 100/s, 600/m or 5/10s)";
    let (count, period) = text.split_once('/').ok_or_else(|| format!("invalid rate {text:?} {hint}"))?;
    let count =
        count.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("invalid rate {text:?}: the count must be a whole number over 0 {hint}")
        })?;
    let period = match period.trim() {
        "s" | "sec" | "second" => std::time::Duration::from_secs(1),
        "m" | "min" | "minute" => std::time::Duration::from_secs(60),
        "h" | "hour" => std::time::Duration::from_secs(3600),
        "d" | "day" => MAX_DURATION,
        other => parse_duration(other).map_err(|e| format!("invalid rate {text:?}: {e}"))?,
    };
    let per_second = u128::from(count) * 1_000_000 / period.as_micros().max(1);
    if per_second > u128::from(MAX_RATE_PER_SECOND) {
        return Err(format!("rate {text:?} is over the {MAX_RATE_PER_SECOND}/s maximum"));
    }
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").unwrap_err().contains("at least 1ms"));
        assert!(parse_duration("1ns").unwrap_err().contains("at least 1ms"));
        assert!(parse_duration("999us").unwrap_err().contains("at least 1ms"));
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_duration("fast").unwrap_err().contains("invalid duration \"fast\""));
        assert!(parse_duration("250").is_err());
        assert!(parse_duration("500000000000y").unwrap_err().contains("1 day maximum"));
        assert!(parse_duration("2d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1TB").unwrap_err().contains("unknown unit \"TB\""));
        assert!(parse_size("0").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok((100, Duration::from_secs(1))));
        assert_eq!(parse_rate(" 600 / m "), Ok((600, Duration::from_secs(60))));
        assert_eq!(parse_rate("5/10s"), Ok((5, Duration::from_secs(10))));
        assert_eq!(parse_rate("1/d"), Ok((1, Duration::from_secs(86_400))));
        assert_eq!(parse_rate("1000000/s"), Ok((1_000_000, Duration::from_secs(1))));
        assert!(parse_rate("1000001/s").unwrap_err().contains("maximum"));
        assert!(parse_rate("0/s").unwrap_err().contains("over 0"));
        assert!(parse_rate("100").unwrap_err().contains("write e.g. 100/s"));
        assert!(parse_rate("100/fortnight").unwrap_err().contains("invalid duration"));
    }
}
