//! The fuzz targets of fanout, one function each, taking arbitrary bytes and asserting the
//! invariants the contract promises (docs/fuzzing.md). cargo-fuzz (`fuzz/fuzz_targets/*.rs`)
//! and `cargo test` (`tests/corpus.rs`, replaying `fuzz/corpus/` and `fuzz/regressions/`) call
//! the same functions, so a crash found once is checked forever.
//!
//! - [`config`]: YAML through load, validation, compilation and `fanout check`'s listing.
//! - [`templates`]: URL templates parsed and rendered with hostile values.
//! - [`body`]: the strict JSON check against `serde_json`, the raw splice, shaping.
//! - [`request_head`]: raw bytes into the real HTTP server and service stack.

mod body;
mod config;
mod request_head;
mod templates;

pub use body::body;
pub use config::config;
pub use request_head::request_head;
pub use templates::templates;

/// A fuzz target: takes any bytes, panics when an invariant does not hold.
pub type Target = fn(&[u8]);

/// Every target by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: [(&str, Target); 4] =
    [("body", body), ("config", config), ("request_head", request_head), ("templates", templates)];
