//! Per-webhook delivery statistics: attempts are counted per minute, per
//! outcome and per latency bucket (the rollup the stores keep), and
//! percentiles are read back from the buckets. One definition for every
//! backend.
//!
//! Buckets grow by a factor of 10^(1/8) ≈ 1.33 from 1 ms: bucket `i` holds
//! durations in (10^((i-1)/8), 10^(i/8)] ms, and a percentile is reported
//! as its bucket's upper bound, so it is exact to within 33 % (never
//! below the true value). The last bucket holds everything from about
//! 75 s up.

use std::time::Duration;

/// Latency buckets (bucket 0 is ≤ 1 ms).
pub const BUCKETS: u32 = 40;

/// The bucket an attempt of this duration falls in.
pub fn bucket_of(duration: Duration) -> u32 {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms <= 1.0 {
        return 0;
    }
    let index = (8.0 * ms.log10()).ceil();
    // A float in [0, BUCKETS): the cast cannot truncate meaningfully.
    (index.max(0.0) as u32).min(BUCKETS - 1)
}

/// The upper bound of bucket `index`, in whole milliseconds (rounded up).
pub fn upper_bound_ms(index: u32) -> u64 {
    let bound = 10f64.powf(f64::from(index.min(BUCKETS - 1)) / 8.0).ceil();
    bound as u64
}

/// The `q`-quantile (0 < q ≤ 1) of a histogram given as `(bucket, count)`
/// pairs, as a bucket upper bound in ms; `None` when it is empty.
pub fn percentile_ms(histogram: &[(u32, u64)], q: f64) -> Option<u64> {
    let total: u64 = histogram.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return None;
    }
    let mut sorted: Vec<(u32, u64)> = histogram.to_vec();
    sorted.sort_unstable();
    // The rank of the q-quantile, 1-based (nearest-rank method).
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, count) in sorted {
        seen += count;
        if seen >= rank {
            return Some(upper_bound_ms(bucket));
        }
    }
    None
}

/// The minute (since the epoch) an instant falls in.
pub fn minute_of(at: super::Timestamp) -> i64 {
    at.as_millis().div_euclid(60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_durations_and_bound_them_from_above() {
        for ms in [0_u64, 1, 2, 7, 10, 99, 100, 101, 250, 1000, 15_000, 60_000] {
            let bucket = bucket_of(Duration::from_millis(ms));
            assert!(upper_bound_ms(bucket) >= ms, "{ms} ms in bucket {bucket}");
            if bucket > 0 {
                // Bucket `i` starts above 10^((i-1)/8) ms (the bound before rounding).
                let lower = 10f64.powf(f64::from(bucket - 1) / 8.0);
                assert!(lower < ms as f64, "{ms} ms is not in a lower bucket");
            }
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(upper_bound_ms(bucket_of(Duration::from_millis(100))), 100);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let b = |ms| bucket_of(Duration::from_millis(ms));
        // 98 attempts at 10 ms, one at 100 ms, one at 1 s.
        let histogram = [(b(10), 98), (b(100), 1), (b(1000), 1)];
        assert_eq!(percentile_ms(&histogram, 0.5), Some(10));
        assert_eq!(percentile_ms(&histogram, 0.9), Some(10));
        assert_eq!(percentile_ms(&histogram, 0.99), Some(100));
        assert_eq!(percentile_ms(&histogram, 1.0), Some(1000));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }
}
