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
/// log line written while a field of another is being formatted) builds in a fresh buffer
/// instead of finding this one borrowed; each use has its own `thread_local!` buffer.
pub fn with<B: Buffer, T>(buffer: &'static LocalKey<Cell<B>>, build: impl FnOnce(&mut B) -> T) -> T {
    let mut taken = buffer.try_with(Cell::take).unwrap_or_default();
    taken.clear();
    let built = build(&mut taken);
    if taken.capacity() <= MAX_KEPT {
        let _ = buffer.try_with(|cell| cell.set(taken));
    }
    built
}
