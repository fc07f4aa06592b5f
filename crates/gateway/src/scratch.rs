//! Per-thread scratch buffers: a value built piece by piece (a backend path, a `Server-Timing`
//! value, a log line) is written into a buffer this thread keeps and then copied once into its
//! exact-size home. A `String` handed over as `Bytes` or a header value costs a second
//! allocation unless it is exactly full; the copy costs none.

use std::cell::Cell;
use std::thread::LocalKey;

/// A buffer grown past this (a very long value) is not kept.
const MAX_KEPT: usize = 16 * 1024;

/// What a scratch buffer is: text, or bytes for writers that want `std::io::Write`.
pub trait Buffer: Default {
    /// Empties the buffer, keeping its capacity.
    fn clear(&mut self);
    /// How many bytes it holds without growing.
    fn capacity(&self) -> usize;
}

impl Buffer for String {
    fn clear(&mut self) {
        String::clear(self);
    }

    fn capacity(&self) -> usize {
        String::capacity(self)
    }
}

impl Buffer for Vec<u8> {
    fn clear(&mut self) {
        Vec::clear(self);
    }

    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
}

/// Calls `build` with `buffer` emptied; a buffer it grew past [`MAX_KEPT`] is let go after.
/// The buffer is taken out of its cell for the call, so a use that runs again inside itself (a
/// span created by a field's `Debug` while another span's fields are being written) builds in
/// a fresh buffer instead of finding this one borrowed; each use has its own `thread_local!`
/// buffer.
pub fn with<B: Buffer, T>(buffer: &'static LocalKey<Cell<B>>, build: impl FnOnce(&mut B) -> T) -> T {
    let mut taken = buffer.try_with(Cell::take).unwrap_or_default();
    taken.clear();
    let built = build(&mut taken);
    if taken.capacity() <= MAX_KEPT {
        let _ = buffer.try_with(|cell| cell.set(taken));
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static BUFFER: Cell<String> = const { Cell::new(String::new()) };
    }

    #[test]
    fn a_use_inside_a_use_builds_in_a_fresh_buffer_and_leaves_the_outer_one_alone() {
        let (outer, inner) = with(&BUFFER, |outer| {
            outer.push_str("outer");
            let inner = with(&BUFFER, |inner| {
                let was_empty = inner.is_empty();
                inner.push_str("inner");
                (was_empty, inner.clone())
            });
            (outer.clone(), inner)
        });
        assert_eq!(outer, "outer");
        assert_eq!(inner, (true, "inner".to_owned()));
        // The buffer comes back emptied for the next use, with the capacity it grew.
        let capacity = with(&BUFFER, |again| {
            assert!(again.is_empty());
            again.capacity()
        });
        assert!(capacity >= "outer".len());
    }

    #[test]
    fn a_buffer_grown_past_the_limit_is_let_go() {
        with(&BUFFER, |text| text.push_str(&"x".repeat(MAX_KEPT + 1)));
        assert_eq!(with(&BUFFER, |text| text.capacity()), 0);
    }
}
