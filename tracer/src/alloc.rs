//! The memory allocator of the `tracer` binary, and the heap statistic the
//! daemon reports.
//!
//! The release binary is static (musl), and musl's own allocator is slow for a
//! process that allocates per event; jemalloc is made for long-running
//! multi-threaded servers, builds into a static binary, and reports the bytes
//! it has handed out, on every libc alike (glibc's `mallinfo2` does not exist
//! on musl). The binary installs it with `#[global_allocator]`; the engine
//! benchmark wraps the same allocator to count bytes.

/// The allocator `tracer` runs with.
pub type Allocator = tikv_jemallocator::Jemalloc;

/// The allocator value, for `#[global_allocator]`.
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;

/// Bytes of heap in use (allocated and not freed), as jemalloc counts them;
/// `None` if its statistics cannot be read.
pub fn heap_bytes() -> Option<u64> {
    // jemalloc's statistics are a snapshot refreshed by advancing the epoch.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read().ok().map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn heap_grows_with_an_allocation() {
        // Unit tests run with the system allocator (the global one is the
        // binary's): jemalloc's counters still answer, for its own heap.
        let before = super::heap_bytes();
        assert!(before.is_some(), "jemalloc statistics unreadable");
    }
}
