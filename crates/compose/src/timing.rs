//! The `Server-Timing` response header: one `name;dur=ms` entry per call plus `total`, so a
//! browser's DevTools show each backend's share of the latency.

use std::fmt::Write;
use std::time::Duration;

/// Formats `a;dur=12.1, b;dur=40.3, total;dur=41.0` (milliseconds with one decimal).
/// Call names are validated at config load to be HTTP tokens, so they need no quoting.
pub fn server_timing<'a>(calls: impl IntoIterator<Item = (&'a str, Duration)>, total: Duration) -> String {
    let mut out = String::with_capacity(128);
    for (name, elapsed) in calls {
        push_entry(&mut out, name, elapsed);
        out.push_str(", ");
    }
    push_entry(&mut out, "total", total);
    out
}

fn push_entry(out: &mut String, name: &str, elapsed: Duration) {
    let tenths = elapsed.as_micros().div_ceil(100);
    // Writing to a String cannot fail.
    let _ = write!(out, "{name};dur={}.{}", tenths / 10, tenths % 10);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_every_call_and_total() {
        let header = server_timing(
            [("users", Duration::from_micros(12_050)), ("orders", Duration::from_micros(40_300))],
            Duration::from_millis(41),
        );
        assert_eq!(header, "users;dur=12.1, orders;dur=40.3, total;dur=41.0");
    }

    #[test]
    fn no_calls_still_reports_total() {
        assert_eq!(server_timing([], Duration::from_micros(50)), "total;dur=0.1");
    }
}
