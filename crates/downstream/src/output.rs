//! A call's JSON result as the bytes the backends sent, never copied: one body, or for a call
//! over a list one body per element. Identical requests share one body (`Bytes` clones), and
//! the only copy is the final splice into the answer; [`Budget`] bounds how many bytes all of an
//! endpoint's results may add up to, decided as each body arrives.

use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The JSON a failed list element stands for.
pub const NULL: Bytes = Bytes::from_static(b"null");

/// A call's validated JSON result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// One JSON body.
    Body(Bytes),
    /// A call over a list: one body per element in input order (`null` for failed elements).
    List(Vec<Bytes>),
}

impl Output {
    /// The length of its JSON text (a list counts its brackets and commas).
    pub fn json_len(&self) -> usize {
        match self {
            Output::Body(body) => body.len(),
            Output::List(elements) => list_len(elements.iter().map(Bytes::len)),
        }
    }

    /// Its JSON text as one buffer: a body as it is, a list joined (a copy).
    pub fn into_body(self) -> Bytes {
        match self {
            Output::Body(body) => body,
            Output::List(elements) => {
                let mut text = Vec::with_capacity(list_len(elements.iter().map(Bytes::len)));
                compose::write_list(&elements, &mut text);
                text.into()
            }
        }
    }

    /// Parses it into a tree (a list element by element).
    pub fn parse(&self) -> Result<Value, serde_json::Error> {
        match self {
            Output::Body(body) => serde_json::from_slice(body),
            Output::List(elements) => {
                elements.iter().map(|e| serde_json::from_slice(e)).collect::<Result<_, _>>().map(Value::Array)
            }
        }
    }
}

/// The length of a JSON list of elements of these lengths: `[a,b,c]`.
fn list_len(lengths: impl Iterator<Item = usize>) -> usize {
    lengths.map(|n| n + 1).sum::<usize>().max(1) + 1
}

/// How many result bytes an endpoint's calls may still add to the answer (its
/// `max_response_body`). Shared by every call of one execution; a call whose result does not
/// fit fails with `too_large` and keeps nothing.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0) }
    }

    /// The limit it was made with.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `bytes` from the budget if they fit.
    pub fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Returns `bytes` taken earlier (by a result that is then dropped).
    pub fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_spliced_text() {
        let list = Output::List(vec![Bytes::from_static(b"{}"), NULL, Bytes::from_static(b"12")]);
        assert_eq!(list.json_len(), "[{},null,12]".len());
        assert_eq!(Output::List(Vec::new()).json_len(), "[]".len());
        assert_eq!(Output::Body(Bytes::from_static(b"[1]")).json_len(), 3);
    }

    #[test]
    fn parse_reads_a_list_element_by_element() {
        let list = Output::List(vec![Bytes::from_static(b"{\"a\":1}"), NULL]);
        assert_eq!(list.parse().ok(), Some(serde_json::json!([{"a": 1}, null])));
    }

    #[test]
    fn the_budget_takes_what_fits_and_takes_back_what_is_returned() {
        let budget = Budget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(5), "6 + 5 is over 10");
        assert!(budget.take(4));
        budget.give_back(6);
        assert!(budget.take(6));
        assert!(!budget.take(1));
    }
}
