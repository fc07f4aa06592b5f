//! The process's memory: its resident size, and giving back what a burst left behind.
//!
//! glibc's allocator returns freed memory to the system only from the top of each arena, so
//! after a burst (thousands of pages at once, each with its buffers) the freed chunks between
//! the allocations that outlive it stay resident: 2,000 concurrent five-call pages left the
//! gateway 112 MB above its RSS before the burst, with every connection idle. `malloc_trim(0)`
//! hands every whole free page back. [`TrimPolicy`] decides when: once the resident size has
//! settled well above the working set, so a steady load (whose freed memory is reused at once)
//! does not trim again and again. Other allocators (musl's, macOS's) give memory back
//! themselves; there [`trim`] does nothing.

/// Resident growth over the working set that is worth a trim. A trim walks every arena under
/// its lock (measured: ~1 ms after a 2,000-page burst) and the pages it returns fault back in
/// when used again; 16 MiB is half the gateway's peak RSS under the peer benchmark's full
/// load (28 MB), so a trim happens only after memory use well beyond the steady state.
pub const TRIM_MARGIN: u64 = 16 * 1024 * 1024;

/// Growth between two looks that still counts as settled: a burst grows the RSS by far more
/// per second, a steady load by far less.
pub const SETTLED: u64 = 1024 * 1024;

/// The process's resident set size, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// When to trim, from the resident size looked at periodically: when it has settled at least
/// [`TRIM_MARGIN`] above the working set. The working set is the resident size one look after
/// the last trim (what the load in progress took back at once), or the lowest seen since.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    working_set: Option<u64>,
    previous: u64,
    trimmed: bool,
}

impl TrimPolicy {
    /// Takes the resident size now; true when it is time to trim.
    pub fn observe(&mut self, resident: u64) -> bool {
        let previous = std::mem::replace(&mut self.previous, resident);
        let working_set = self.working_set.get_or_insert(resident);
        if std::mem::take(&mut self.trimmed) || resident < *working_set {
            *working_set = resident;
            return false;
        }
        self.trimmed = resident >= *working_set + TRIM_MARGIN && resident <= previous + SETTLED;
        self.trimmed
    }
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

    /// Feeds `sizes` (MiB) and returns at which looks the policy trimmed.
    fn trims(sizes: &[u64]) -> Vec<usize> {
        let mut policy = TrimPolicy::default();
        sizes.iter().enumerate().filter(|(_, mib)| policy.observe(*mib * MIB)).map(|(at, _)| at).collect()
    }

    #[test]
    fn a_burst_is_trimmed_once_it_has_settled() {
        // Start at 9, burst to 120 over two looks, then settled.
        assert_eq!(trims(&[9, 60, 120, 120, 20, 20, 20]), [3]);
    }

    #[test]
    fn growth_under_the_margin_is_left_alone() {
        assert_eq!(trims(&[9, 20, 24, 24, 24]), Vec::<usize>::new());
    }

    #[test]
    fn a_steady_load_that_takes_its_memory_back_is_not_trimmed_again() {
        // Steady at 28 after a start at 9: one trim, the load takes the pages back at once,
        // and 28 is then the working set.
        assert_eq!(trims(&[9, 28, 28, 28, 28, 28, 28]), [2]);
    }

    #[test]
    fn the_working_set_follows_the_resident_size_down() {
        // Trimmed at 40, the load then ends: 10 is the working set, and a later burst is
        // measured from it.
        assert_eq!(trims(&[9, 40, 40, 12, 10, 10, 30, 30]), [2, 7]);
    }

    #[test]
    fn the_resident_size_is_read() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
    }
}
