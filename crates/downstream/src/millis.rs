//! Durations as the milliseconds that logs and span fields carry (`duration_ms`, `blocked_ms`).

use std::time::Duration;

/// `elapsed` in milliseconds, to the microsecond (as the log's timestamps): `0.959` for
/// 959,506 ns, where `as_secs_f64() * 1000.0` wrote `0.9595060000000001`, binary noise included.
pub fn millis(elapsed: Duration) -> f64 {
    // Microseconds fit an f64 exactly up to 2^53 (285 years); the division rounds once, to the
    // double nearest the decimal, which the shortest formatting then writes back as it is.
    elapsed.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_microsecond_milliseconds_without_binary_noise() {
        let elapsed = Duration::from_nanos(959_506);
        assert_eq!((elapsed.as_secs_f64() * 1000.0).to_string(), "0.9595060000000001", "the noise");
        assert_eq!(millis(elapsed).to_string(), "0.959");
        assert_eq!(millis(Duration::from_micros(959_506)).to_string(), "959.506");
        assert_eq!(millis(Duration::from_micros(1_875)).to_string(), "1.875");
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
    }
}
