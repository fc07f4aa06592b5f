//! A client's deadline (`server.deadline_header`): the milliseconds it will still wait, read
//! from one request header. It can only shorten the endpoint deadline, never lengthen it.

use http::{HeaderMap, HeaderName};
use std::time::Duration;

/// The deadline header is there but is not one whole number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deadline header is not one whole number of milliseconds")]
pub struct BadBudget;

/// The budget a client gave in `header`, if it sent one: [`BadBudget`] when the header is there
/// but not one whole number of milliseconds (digits only, one field). Numbers too large for a
/// `u64` stand for "no shorter than the endpoint's own deadline".
pub fn client_budget(headers: &HeaderMap, header: &HeaderName) -> Result<Option<Duration>, BadBudget> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let digits = value.as_bytes();
    if values.next().is_some() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(BadBudget);
    }
    let millis =
        std::str::from_utf8(digits).ok().and_then(|text| text.parse::<u64>().ok()).unwrap_or(u64::MAX);
    Ok(Some(Duration::from_millis(millis)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const HEADER: HeaderName = HeaderName::from_static("x-request-timeout-ms");

    fn budget(values: &[&'static str]) -> Result<Option<Duration>, BadBudget> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HEADER, HeaderValue::from_static(value));
        }
        client_budget(&headers, &HEADER)
    }

    #[test]
    fn a_budget_is_one_whole_number_of_milliseconds() {
        assert_eq!(budget(&[]), Ok(None));
        assert_eq!(budget(&["250"]), Ok(Some(Duration::from_millis(250))));
        assert_eq!(budget(&["0"]), Ok(Some(Duration::ZERO)));
        assert_eq!(budget(&["99999999999999999999999"]), Ok(Some(Duration::from_millis(u64::MAX))));
        for bad in [&[""][..], &["-5"], &["+5"], &["1.5"], &["5 "], &["250ms"], &["1", "2"]] {
            assert_eq!(budget(bad), Err(BadBudget), "{bad:?}");
        }
    }
}
