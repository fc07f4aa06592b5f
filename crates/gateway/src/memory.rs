//! The process's memory: its resident size, and giving back what a burst left behind.
//!
//! glibc's allocator returns freed memory to the system only from the top of each arena, so
//! after a burst (thousands of pages at once, each with its buffers) the freed chunks between
//! the allocations that outlive it stay resident: 2,000 concurrent five-call pages left the
//! gateway 112 MB above its RSS before the burst, with every connection idle. `malloc_trim(0)`
//! hands every whole free page back. [`TrimPolicy`] decides when, from the memory that is
//! resident but not in use (RSS minus glibc's bytes in use): once that has grown well beyond
//! what it was after the last trim and the RSS has settled. A steady load reuses what it frees
//! and is not trimmed again and again. Other allocators (musl's, macOS's) give memory back
//! themselves; there nothing is measured and [`trim`] does nothing.

/// Growth of the memory resident but not in use that is worth a trim. A trim walks every arena
/// under its lock (measured: 8–16 ms after a 2,000-page burst, over ~100 MB of free heap; 1–3.5
/// ms under a steady load) and the pages it returns fault back in when used again. 4 MiB: what
/// 2,000 idle connections leave free once their hyper connections are released (~3.7 KiB each
/// — with 16 MiB they kept 7.7 KiB each); under the peer benchmark's page at 11k pages/s, 20 s
/// at `-c 64` then the concurrency changed every 4 s between 4 and 128, it trimmed 5 times in
/// 45 s (once as the load started, once in the steady 20 s, then at the changes), 1.2–4 ms
/// each (two runs, logged at `debug`).
pub const TRIM_MARGIN: u64 = 4 * 1024 * 1024;

/// Growth between two looks that still counts as settled: a burst grows the RSS by far more
/// per second, a steady load by far less.
pub const SETTLED: u64 = 1024 * 1024;

/// Settled looks in a row before a trim: two, so that the backend pools, which park the
/// connections a burst left idle one sweep after they went idle, have freed their buffers.
pub const SETTLED_LOOKS: u32 = 2;

/// The process's resident set size, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// When to trim, from the resident size and the heap bytes in use looked at periodically:
/// when the memory resident but not in use exceeds its floor by [`TRIM_MARGIN`] and the
/// resident size has settled ([`SETTLED_LOOKS`] looks in a row). The floor is what was resident
/// and unused one look after the last trim (binary, stacks, the free memory the load in
/// progress keeps reusing), or the lowest seen since.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    floor: Option<u64>,
    previous: u64,
    settled: u32,
    trimmed: bool,
}

impl TrimPolicy {
    /// Takes the resident size and the heap bytes in use now; true when it is time to trim.
    pub fn observe(&mut self, resident: u64, in_use: u64) -> bool {
        let previous = std::mem::replace(&mut self.previous, resident);
        self.settled = if resident <= previous + SETTLED { self.settled + 1 } else { 0 };
        let unused = resident.saturating_sub(in_use);
        let floor = self.floor.get_or_insert(unused);
        if std::mem::take(&mut self.trimmed) || unused < *floor {
            *floor = unused;
            return false;
        }
        self.trimmed = self.settled >= SETTLED_LOOKS && unused >= *floor + TRIM_MARGIN;
        self.trimmed
    }
}

/// The heap bytes in use (glibc's `mallinfo2`: arena chunks in use plus mmapped blocks);
/// `None` off glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "a foreign call with no arguments to check")]
pub fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no pointer, returns a plain struct and is thread-safe (glibc
    // locks each arena it walks).
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks.saturating_add(info.hblkhd) as u64)
}

/// Off glibc nothing is measured.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use() -> Option<u64> {
    None
}

/// Asks glibc to return every whole free page of every arena to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "a foreign call with no arguments to check")]
pub fn trim() {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (glibc locks each arena it walks).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return free memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Feeds `looks` (resident, in use; MiB) and returns at which looks the policy trimmed.
    fn trims(looks: &[(u64, u64)]) -> Vec<usize> {
        let mut policy = TrimPolicy::default();
        let mut at = Vec::new();
        for (look, (resident, in_use)) in looks.iter().enumerate() {
            if policy.observe(resident * MIB, in_use * MIB) {
                at.push(look);
            }
        }
        at
    }

    #[test]
    fn a_burst_is_trimmed_once_its_memory_is_free_and_the_rss_settled() {
        // 9 resident, 3 in use; the burst takes 120 (110 in use) over two looks, ends (5 in
        // use), and the RSS holds for two looks.
        assert_eq!(trims(&[(9, 3), (60, 50), (120, 110), (120, 5), (120, 5), (20, 5), (20, 5)]), [4]);
    }

    #[test]
    fn memory_in_use_is_not_trimmed_for() {
        // 120 resident, all of it in use.
        assert_eq!(trims(&[(9, 3), (120, 114), (120, 114), (120, 114), (120, 114)]), Vec::<usize>::new());
    }

    #[test]
    fn a_steady_load_that_reuses_its_memory_is_not_trimmed() {
        // Idle, 6 MiB are resident but not heap in use (binary, stacks); under load the heap
        // keeps 1–3 MiB more free and resident: under the margin, look after look.
        let looks = [(9, 3), (28, 20), (28, 21), (28, 19), (28, 20), (28, 21), (28, 19)];
        assert_eq!(trims(&looks), Vec::<usize>::new());
    }

    #[test]
    fn a_trim_during_a_burst_does_not_hide_the_end_of_the_burst() {
        // Trimmed while the burst's memory is still free but resident, the burst goes on (in
        // use again), then ends: what it frees is trimmed too.
        let looks =
            [(9, 3), (120, 50), (120, 50), (120, 50), (60, 55), (120, 110), (120, 110), (120, 8), (120, 8)];
        assert_eq!(trims(&looks), [3, 7]);
    }

    #[test]
    fn what_is_freed_after_the_first_settled_look_is_trimmed_too() {
        // The peak holds one look, then the pools free their buffers (the RSS does not move:
        // glibc keeps them): the trim waits for the second settled look.
        assert_eq!(trims(&[(9, 3), (120, 110), (120, 30), (120, 10)]), [3]);
    }

    #[test]
    fn heap_in_use_is_read_where_glibc_is_the_allocator() {
        assert_eq!(heap_in_use().is_some(), cfg!(all(target_os = "linux", target_env = "gnu")));
    }

    #[test]
    fn the_resident_size_is_read() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
    }
}
