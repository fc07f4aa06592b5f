//! The `Server-Timing` response header: one `name;dur=ms` entry per call plus `total`, so a
//! browser's DevTools show each backend's share of the latency; a call answered from the cache
//! says so (`desc="hit"`, `desc="stale"`).

use std::time::Duration;

/// Appends `a;dur=12.1, b;dur=40.3;desc="stale", total;dur=41.0` (milliseconds with one
/// decimal; each call with its description, if any) to `out` (the caller's buffer: a header
/// value is copied out of it). Call names are validated at config load to be HTTP tokens, so
/// they need no quoting; descriptions are fanout's own words, quoted.
pub fn server_timing<'a>(
    calls: impl IntoIterator<Item = (&'a str, Duration, Option<&'a str>)>,
    total: Duration,
    out: &mut String,
) {
    for (name, elapsed, desc) in calls {
        push_entry(out, name, elapsed);
        if let Some(desc) = desc {
            out.push_str(";desc=\"");
            out.push_str(desc);
            out.push('"');
        }
        out.push_str(", ");
    }
    push_entry(out, crate::names::TOTAL_TIMING, total);
}

fn push_entry(out: &mut String, name: &str, elapsed: Duration) {
    let tenths = elapsed.as_micros().div_ceil(100);
    out.push_str(name);
    out.push_str(";dur=");
    push_decimal(out, tenths / 10);
    out.push('.');
    push_decimal(out, tenths % 10);
}

/// Appends `n` in decimal without going through `fmt` (this runs on every response).
fn push_decimal(out: &mut String, mut n: u128) {
    let mut digits = [0u8; 40];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted<'a>(
        calls: impl IntoIterator<Item = (&'a str, Duration, Option<&'a str>)>,
        total: Duration,
    ) -> String {
        let mut out = String::from("kept:");
        server_timing(calls, total, &mut out);
        out.strip_prefix("kept:").map(str::to_owned).unwrap_or_else(|| panic!("{out} lost the prefix"))
    }

    #[test]
    fn formats_every_call_and_total() {
        let header = formatted(
            [("users", Duration::from_micros(12_050), None), ("orders", Duration::from_micros(40_300), None)],
            Duration::from_millis(41),
        );
        assert_eq!(header, "users;dur=12.1, orders;dur=40.3, total;dur=41.0");
    }

    #[test]
    fn a_cached_call_says_so() {
        let header =
            formatted([("price", Duration::from_micros(80), Some("stale"))], Duration::from_millis(2));
        assert_eq!(header, "price;dur=0.1;desc=\"stale\", total;dur=2.0");
    }

    #[test]
    fn large_and_zero_durations_format() {
        let header = formatted(
            [("a", Duration::ZERO, None), ("b", Duration::from_secs(12_345), None)],
            Duration::from_micros(1),
        );
        assert_eq!(header, "a;dur=0.0, b;dur=12345000.0, total;dur=0.1");
    }

    #[test]
    fn no_calls_still_reports_total() {
        assert_eq!(formatted([], Duration::from_micros(50)), "total;dur=0.1");
    }
}
