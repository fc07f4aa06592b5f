//! A per-thread xorshift generator of uniform draws in [0, 1): no lock, no syscall. For
//! decisions that only need to spread evenly (retry jitter, trace sampling), never for
//! anything secret.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    /// This thread's state, seeded from the process's random hasher keys.
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
}

/// A uniform draw in [0, 1).
pub fn random_unit() -> f64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
