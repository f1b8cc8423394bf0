//! Count, percentiles and log2 buckets of a histogram of durations, the form
//! every summary shows them in.

use hdrhistogram::Histogram;

/// Count, percentiles and log2 buckets of one histogram, in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Distribution {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// (low µs inclusive, high µs exclusive, count), power-of-two buckets from
    /// the first non-empty one to the last.
    pub log2_us: Vec<(u64, u64, u64)>,
}

impl Distribution {
    /// With the exact maximum: a percentile is the middle of its bucket, and
    /// can never exceed it.
    pub fn capped(self, max_ns: u64) -> Self {
        Self {
            p50_ns: self.p50_ns.min(max_ns),
            p90_ns: self.p90_ns.min(max_ns),
            p99_ns: self.p99_ns.min(max_ns),
            max_ns,
            ..self
        }
    }

    pub fn of(h: &Histogram<u64>) -> Self {
        let mut buckets: Vec<(u64, u64, u64)> = Vec::new();
        for (i, slot) in log2_counts(h).into_iter().enumerate() {
            let (lo, hi) = if i == 0 {
                (0, 1)
            } else {
                (1 << (i - 1), 1 << i)
            };
            buckets.push((lo, hi, slot));
        }
        let first = buckets
            .iter()
            .position(|b| b.2 > 0)
            .unwrap_or(buckets.len());
        let last = buckets.iter().rposition(|b| b.2 > 0).map_or(0, |i| i + 1);
        Self {
            count: h.len(),
            p50_ns: h.median_equivalent(h.value_at_quantile(0.5)),
            p90_ns: h.median_equivalent(h.value_at_quantile(0.9)),
            p99_ns: h.median_equivalent(h.value_at_quantile(0.99)),
            max_ns: h.max(),
            log2_us: if first < last {
                buckets[first..last].to_vec()
            } else {
                Vec::new()
            },
        }
    }
}

/// Counts per power-of-two microsecond bucket: index 0 is [0, 1) µs, index k
/// is [2^(k-1), 2^k) µs.
fn log2_counts(h: &Histogram<u64>) -> Vec<u64> {
    let mut slots = vec![0u64; 64];
    for v in h.iter_recorded() {
        let us = h.lowest_equivalent(v.value_iterated_to()) / 1_000;
        let slot = if us == 0 {
            0
        } else {
            64 - us.leading_zeros() as usize
        };
        slots[slot.min(63)] += v.count_at_value();
    }
    slots
}

/// Cumulative counts at each of `bounds_ns` (ascending): how many durations
/// were at most that long, to the histogram's precision (a recorded value
/// counts as the top of its bucket). For histograms in the Prometheus form.
pub fn cumulative(h: &Histogram<u64>, bounds_ns: &[u64]) -> Vec<u64> {
    let mut counts = vec![0u64; bounds_ns.len()];
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to());
        if let Some(i) = bounds_ns.iter().position(|&b| value <= b) {
            counts[i] += v.count_at_value();
        }
    }
    let mut total = 0;
    for c in &mut counts {
        total += *c;
        *c = total;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_counts() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).unwrap();
        for ns in [500, 1_000, 1_500, 60_000_000_000, 90_000_000_000] {
            h.record(ns).unwrap();
        }
        let bounds = [1_000, 2_000, 61_000_000_000];
        assert_eq!(
            cumulative(&h, &bounds),
            [2, 3, 4],
            "the last one is above every bound"
        );
        assert_eq!(cumulative(&h, &[]), Vec::<u64>::new());
    }
}
