//! Per-thread scratch text: a value built piece by piece (a backend path, a `Server-Timing`
//! value) is written into a buffer this thread keeps and then copied once into its exact-size
//! home. A `String` handed over as `Bytes` or a header value costs a second allocation unless
//! it is exactly full; the copy costs none.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A buffer grown past this (a very long value) is not kept.
const MAX_KEPT: usize = 16 * 1024;

/// Calls `build` with `buffer` emptied; a buffer it grew past [`MAX_KEPT`] is let go after.
/// Each use has its own `thread_local!` buffer, so one use never finds another's borrowed.
pub fn with<T>(buffer: &'static LocalKey<RefCell<String>>, build: impl FnOnce(&mut String) -> T) -> T {
    buffer.with_borrow_mut(|text| {
        text.clear();
        let built = build(text);
        if text.capacity() > MAX_KEPT {
            *text = String::new();
        }
        built
    })
}
