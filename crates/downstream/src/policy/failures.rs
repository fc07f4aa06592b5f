//! Which failed calls a policy acts on: the `on:` lists of `retry` and `circuit_breaker`
//! (`connect`, `timeout`, `invalid_body`, a status such as `503`, or a class such as `5xx`).

use crate::error::CallError;

/// The statuses a list can name: 300 to 599 (2xx answers are successes, and 1xx never ends a
/// call).
const STATUSES: std::ops::RangeInclusive<u16> = 300..=599;

/// A set of call failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    connect: bool,
    timeout: bool,
    invalid_body: bool,
    /// Bit `status - 300`.
    statuses: [u64; 5],
}

impl Failures {
    /// The transient failures of a healthy backend, which retries and breakers act on unless
    /// told otherwise: `connect`, `timeout`, `502`, `503`, `504` (Envoy's `connect-failure`,
    /// `gateway-error` and per-try timeout; Linkerd's and Finagle's defaults are the same kind).
    pub fn transient() -> Self {
        let mut failures = Self { connect: true, timeout: true, ..Self::default() };
        for status in [502, 503, 504] {
            failures.set_status(status);
        }
        failures
    }

    /// Adds one item of an `on:` list, or says why it is not one.
    pub fn add(&mut self, item: &str) -> Result<(), String> {
        match item {
            "connect" => self.connect = true,
            "timeout" => self.timeout = true,
            "invalid_body" => self.invalid_body = true,
            "3xx" | "4xx" | "5xx" => {
                let first = u16::from(item.as_bytes()[0] - b'0') * 100;
                (first..first + 100).for_each(|status| self.set_status(status));
            }
            _ => match item.parse::<u16>() {
                Ok(status) if STATUSES.contains(&status) => self.set_status(status),
                _ => {
                    return Err(format!(
                        "{item:?} is not a failure (write connect, timeout, invalid_body, a status from 300 to 599, or 3xx, 4xx, 5xx)"
                    ));
                }
            },
        }
        Ok(())
    }

    /// Whether `error` is in the set. A call cut by the endpoint deadline (`cancelled`) never
    /// is: nobody waits for another attempt, and the backend was not necessarily slow.
    pub fn contains(&self, error: &CallError) -> bool {
        match error {
            CallError::Connect(_) => self.connect,
            CallError::Timeout(_) => self.timeout,
            CallError::InvalidBody(_) => self.invalid_body,
            CallError::Status(status) if STATUSES.contains(status) => self.has_status(*status),
            _ => false,
        }
    }

    /// The set as an `on:` list: kinds, then statuses (a whole class as `5xx`).
    pub fn items(&self) -> Vec<String> {
        let kinds =
            [("connect", self.connect), ("timeout", self.timeout), ("invalid_body", self.invalid_body)];
        let mut items: Vec<String> =
            kinds.iter().filter(|(_, on)| *on).map(|(kind, _)| (*kind).to_owned()).collect();
        for class in [3, 4, 5] {
            let statuses = class * 100..class * 100 + 100;
            if statuses.clone().all(|status| self.has_status(status)) {
                items.push(format!("{class}xx"));
            } else {
                items.extend(
                    statuses.filter(|&status| self.has_status(status)).map(|status| status.to_string()),
                );
            }
        }
        items
    }

    fn has_status(&self, status: u16) -> bool {
        let bit = usize::from(status - STATUSES.start());
        self.statuses[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn set_status(&mut self, status: u16) {
        let bit = usize::from(status - STATUSES.start());
        self.statuses[bit / 64] |= 1 << (bit % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transient_failures_are_connect_timeout_and_gateway_statuses() {
        let transient = Failures::transient();
        assert!(transient.contains(&CallError::Connect("refused".into())));
        assert!(transient.contains(&CallError::Timeout(Duration::from_millis(5))));
        for status in [502, 503, 504] {
            assert!(transient.contains(&CallError::Status(status)), "{status}");
        }
        for status in [404, 500, 501, 599, 200] {
            assert!(!transient.contains(&CallError::Status(status)), "{status}");
        }
        assert!(!transient.contains(&CallError::Cancelled));
        assert!(!transient.contains(&CallError::InvalidBody("x".into())));
        assert!(!transient.contains(&CallError::Overloaded(1)));
    }

    #[test]
    fn lists_name_kinds_statuses_and_classes() {
        let mut failures = Failures::default();
        failures.add("5xx").unwrap_or_default();
        failures.add("429").unwrap_or_default();
        failures.add("invalid_body").unwrap_or_default();
        assert!(failures.contains(&CallError::Status(500)));
        assert!(failures.contains(&CallError::Status(599)));
        assert!(failures.contains(&CallError::Status(429)));
        assert!(!failures.contains(&CallError::Status(428)));
        assert!(failures.contains(&CallError::InvalidBody("x".into())));
        assert!(!failures.contains(&CallError::Connect("x".into())));
        assert_eq!(failures.items(), ["invalid_body", "429", "5xx"]);
        assert_eq!(Failures::transient().items(), ["connect", "timeout", "502", "503", "504"]);
        for bad in ["200", "600", "6xx", "reset", ""] {
            assert!(failures.add(bad).is_err(), "{bad}");
        }
    }
}
