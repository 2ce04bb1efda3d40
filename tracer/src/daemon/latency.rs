//! Event-to-tree and event-to-socket latency: how long after the kernel stamped
//! an event the daemon's tree had it, and a subscriber's socket took its line.
//!
//! Kept in an HDR histogram (hdrhistogram: constant memory, 3 significant
//! digits, cheap to record) for the daemon's life and reported in its stats.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Longest latency recorded exactly: a minute (longer ones are clamped to it).
const MAX_NS: u64 = 60_000_000_000;

/// One event in this many is recorded: percentiles of a sample that large are
/// as good, and recording costs a few percent of the daemon's time per event.
const SAMPLE_EVERY: u32 = 32;

/// A latency distribution, in ns, of one event in [`SAMPLE_EVERY`].
pub struct Latency {
    hist: Histogram<u64>,
    skip: u32,
}

impl Default for Latency {
    fn default() -> Self {
        // 3 significant digits from 1 µs to a minute: a few tens of KiB.
        let hist =
            Histogram::new_with_bounds(1_000, MAX_NS, 3).unwrap_or_else(|_| Histogram::new(3).expect("3 sig figs"));
        Latency { hist, skip: 0 }
    }
}

impl Latency {
    /// Counts one event stamped `ts_ns` (boot clock) seen at `now_ns`, and
    /// records it if it is the sample's turn.
    pub fn record(&mut self, ts_ns: u64, now_ns: u64) {
        if ts_ns == 0 {
            return;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        self.skip = SAMPLE_EVERY - 1;
        self.hist.saturating_record(now_ns.saturating_sub(ts_ns).clamp(1_000, MAX_NS));
    }

    /// `{"sampled", "p50_ms", "p90_ms", "p99_ms", "max_ms"}` (`sampled`: events recorded).
    pub fn json(&self) -> Value {
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e6;
        json!({
            "sampled": self.hist.len(),
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "max_ms": self.hist.max() as f64 / 1e6,
        })
    }
}

/// A distribution several tasks record into.
pub type Shared = Arc<Mutex<Latency>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut l = Latency::default();
        for i in 1..=100u64 {
            for _ in 0..SAMPLE_EVERY {
                l.record(1_000_000, 1_000_000 + i * 100_000);
            }
        }
        l.record(0, 5);
        let v = l.json();
        assert_eq!(v["sampled"], 100);
        let p50 = v["p50_ms"].as_f64().expect("p50");
        let p99 = v["p99_ms"].as_f64().expect("p99");
        assert!((5.0..=5.01).contains(&p50), "{v}");
        assert!((9.9..=9.91).contains(&p99), "{v}");
        assert!(v["max_ms"].as_f64().is_some_and(|m| (10.0..=10.01).contains(&m)), "{v}");
    }
}
