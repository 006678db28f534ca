//! The last hour of the sidecar's own figures (queue depth, events, attempts), sampled in memory
//! for the console's charts, so no Prometheus is needed to see a trend.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::metrics::Metrics;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How many samples are kept: an hour's worth.
pub const SAMPLES_KEPT: usize = 360;

/// The figures at one moment; counters are totals since start (a chart draws their differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When, unix ms.
    pub at: i64,
    /// Deliveries waiting for an attempt.
    pub queue_depth: u64,
    /// Events accepted since start.
    pub events: u64,
    /// Attempts answered 2xx since start.
    pub delivered: u64,
    /// Failed attempts to be retried since start.
    pub retried: u64,
    /// Deliveries given up since start.
    pub dead: u64,
}

/// The kept samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Adds a sample taken now from the counters, dropping the oldest past [`SAMPLES_KEPT`].
    pub fn record(&self, at: i64, queue_depth: u64, metrics: &Metrics) {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let sample = Sample {
            at,
            queue_depth,
            events: get(&metrics.events_accepted),
            delivered: get(&metrics.deliveries_delivered),
            retried: get(&metrics.deliveries_retried),
            dead: get(&metrics.deliveries_dead),
        };
        let mut samples = self.samples();
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every kept sample, oldest first.
    pub fn samples_json(&self) -> serde_json::Value {
        serde_json::json!({
            "every_ms": SAMPLE_EVERY.as_millis() as u64,
            "samples": self.samples().iter().collect::<Vec<_>>(),
        })
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // Plain values: a panic elsewhere cannot leave them half-written.
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hour_oldest_first() {
        let history = History::default();
        let metrics = Metrics::default();
        for at in 0..(SAMPLES_KEPT as i64 + 5) {
            Metrics::bump(&metrics.events_accepted);
            history.record(at, 7, &metrics);
        }
        let json = history.samples_json();
        let samples = json["samples"].as_array().unwrap();
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(samples[0]["at"], 5);
        assert_eq!(samples[0]["events"], 6);
        assert_eq!(samples[SAMPLES_KEPT - 1]["queue_depth"], 7);
    }
}
