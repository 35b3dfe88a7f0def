//! Round-trip latency in an HdrHistogram, recorded in TSC ticks on the fast path (one subtraction and
//! one bucket increment per packet) and converted to nanoseconds only for the report. Each generator
//! lcore keeps its own histogram; they are merged at the end.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency tracked: 10 s at 5 GHz, in ticks. Longer samples are clamped to it.
const MAX_TICKS: u64 = 50_000_000_000;

/// One lcore's latency samples.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 3 significant digits: 0.1% resolution; about 200 KB over this range.
        Latency {
            hist: Histogram::new_with_bounds(1, MAX_TICKS, 3).expect("static bounds are valid"),
        }
    }

    /// Records one round trip of `ticks` TSC ticks.
    #[inline]
    pub fn record(&mut self, ticks: u64) {
        self.hist.saturating_record(ticks.max(1));
    }

    /// Adds another lcore's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds by construction, so `add` cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn clear(&mut self) {
        self.hist.reset();
    }

    /// The distribution in nanoseconds, given the TSC frequency.
    pub fn summary(&self, tsc_hz: u64) -> LatencySummary {
        let ns = |t: u64| (t as f64 * 1e9 / tsc_hz.max(1) as f64).round() as u64;
        let h = &self.hist;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let cdf = [
            0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
        ]
        .iter()
        .map(|&q| (q, ns(h.value_at_quantile(q))))
        .collect();
        LatencySummary {
            samples: h.len(),
            min_ns: ns(h.min()),
            mean_ns: ns(h.mean().round() as u64),
            p50_ns: ns(h.value_at_quantile(0.5)),
            p90_ns: ns(h.value_at_quantile(0.9)),
            p99_ns: ns(h.value_at_quantile(0.99)),
            p999_ns: ns(h.value_at_quantile(0.999)),
            max_ns: ns(h.max()),
            cdf,
        }
    }
}

/// What the JSON result says about latency.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// (quantile, nanoseconds) points for plotting the distribution.
    pub cdf: Vec<(f64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Latency::new(), Latency::new(), Latency::new());
        for t in 1..=1000u64 {
            a.record(t * 10);
            all.record(t * 10);
        }
        for t in 1..=3000u64 {
            b.record(100_000 + t);
            all.record(100_000 + t);
        }
        a.merge(&b);
        assert_eq!(a.count(), 4000);
        assert_eq!(a.summary(1_000_000_000), all.summary(1_000_000_000));
        // A quarter of the samples are below 10_001 ticks: the median lies in b's range.
        let s = a.summary(1_000_000_000);
        assert!(s.p50_ns > 100_000 && s.p50_ns < 103_100, "p50 {}", s.p50_ns);
        assert_eq!(s.min_ns, 10);
    }

    #[test]
    fn ticks_are_converted_with_the_tsc_frequency() {
        let mut l = Latency::new();
        l.record(2_000); // 2000 ticks at 2 GHz = 1 us
        let s = l.summary(2_000_000_000);
        assert_eq!(s.samples, 1);
        assert!((999..=1001).contains(&s.p50_ns), "{}", s.p50_ns);
        assert_eq!(s.cdf.first().map(|c| c.0), Some(0.0));
        assert_eq!(s.cdf.last().map(|c| c.0), Some(1.0));
    }

    #[test]
    fn empty_and_huge_samples_do_not_panic() {
        let mut l = Latency::new();
        assert_eq!(l.summary(1).samples, 0);
        l.record(u64::MAX);
        l.record(0);
        assert_eq!(l.count(), 2);
        l.clear();
        assert_eq!(l.count(), 0);
    }
}
