//! Counters and the attempt-latency histogram, rendered in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::outbox::Stats;

/// Upper bounds of the attempt latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The sidecar's counters; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events stored and acknowledged.
    pub events_accepted: AtomicU64,
    /// Events refused (bad JSON, wrong types, too large, unauthorised).
    pub events_rejected: AtomicU64,
    /// Events whose id had been accepted before.
    pub events_duplicate: AtomicU64,
    /// Valid events the store failed to take (answered 503, nothing stored).
    pub events_unstored: AtomicU64,
    /// Postbacks a source's value map ignores (`-> ignore`: answered 200, nothing stored).
    pub events_ignored: AtomicU64,
    /// Intercepted proxy bodies that were not valid events (forwarded anyway).
    pub proxy_invalid: AtomicU64,
    /// Requests forwarded to the upstream.
    pub proxy_forwarded: AtomicU64,
    /// Intercepted proxy requests without the ingest token (forwarded, not matched).
    pub proxy_unauthorised: AtomicU64,
    /// Attempts answered 2xx.
    pub deliveries_delivered: AtomicU64,
    /// Attempts that failed and will be retried.
    pub deliveries_retried: AtomicU64,
    /// Deliveries given up.
    pub deliveries_dead: AtomicU64,
    /// Attempts whose record the outbox failed to store (each is tried again, never resent).
    pub record_failures: AtomicU64,
    attempt_buckets: [AtomicU64; BUCKETS.len()],
    attempt_count: AtomicU64,
    attempt_micros: AtomicU64,
}

/// Values read at scrape time from elsewhere (the outbox, the live rules).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Pending deliveries.
    pub queue_depth: u64,
    /// Successful reloads since start.
    pub reloads_ok: u64,
    /// Failed reloads since start.
    pub reloads_failed: u64,
    /// The version of the rules being served.
    pub rules_version: u64,
    /// Webhooks in the rules being served.
    pub webhooks: u64,
    /// Whether every rules folder is watched for changes.
    pub rules_watched: bool,
    /// Whether deliveries are paused.
    pub deliveries_paused: bool,
    /// The outbox writer's counters (group commit).
    pub outbox: Stats,
}

impl Metrics {
    /// Records one attempt's duration.
    pub fn observe_attempt(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.attempt_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.attempt_count.fetch_add(1, Ordering::Relaxed);
        self.attempt_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "whc_events_total",
            "Events received, by result.",
            &[
                ("{result=\"accepted\"}", get(&self.events_accepted)),
                ("{result=\"rejected\"}", get(&self.events_rejected)),
                ("{result=\"duplicate\"}", get(&self.events_duplicate)),
                ("{result=\"unstored\"}", get(&self.events_unstored)),
                ("{result=\"ignored\"}", get(&self.events_ignored)),
            ],
        );
        counter(
            "whc_proxy_requests_total",
            "Requests forwarded to the upstream, and intercepted ones not matched: bodies that \
             were not events, requests without the ingest token.",
            &[
                ("{result=\"forwarded\"}", get(&self.proxy_forwarded)),
                ("{result=\"invalid_event\"}", get(&self.proxy_invalid)),
                ("{result=\"unauthorised\"}", get(&self.proxy_unauthorised)),
            ],
        );
        counter(
            "whc_delivery_attempts_total",
            "Delivery attempts, by outcome.",
            &[
                ("{outcome=\"delivered\"}", get(&self.deliveries_delivered)),
                ("{outcome=\"retry\"}", get(&self.deliveries_retried)),
                ("{outcome=\"dead\"}", get(&self.deliveries_dead)),
            ],
        );
        counter(
            "whc_delivery_record_failures_total",
            "Times the outbox failed to store an attempt's record; the record is retried, the request is not resent.",
            &[("", get(&self.record_failures))],
        );
        counter(
            "whc_rule_reloads_total",
            "Rule reloads, by result.",
            &[
                ("{result=\"ok\"}", gauges.reloads_ok),
                ("{result=\"failed\"}", gauges.reloads_failed),
            ],
        );
        counter(
            "whc_outbox_commits_total",
            "Outbox transactions committed; each holds every write queued while the last one synced.",
            &[("", gauges.outbox.commits)],
        );
        counter(
            "whc_outbox_writes_total",
            "Writes (event posts, attempt records, replays, prunes) the outbox writer has taken into a transaction.",
            &[("", gauges.outbox.requests)],
        );
        let _ = writeln!(
            out,
            "# HELP whc_outbox_writer_busy_seconds_total Time the outbox writer spent running and committing batches; a rate near 1 means it is the bottleneck.\n# TYPE whc_outbox_writer_busy_seconds_total counter\nwhc_outbox_writer_busy_seconds_total {}",
            gauges.outbox.busy_micros as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP whc_delivery_attempt_seconds Duration of delivery attempts.\n# TYPE whc_delivery_attempt_seconds histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.attempt_buckets) {
            let _ = writeln!(
                out,
                "whc_delivery_attempt_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.attempt_count);
        let _ = writeln!(
            out,
            "whc_delivery_attempt_seconds_bucket{{le=\"+Inf\"}} {count}\nwhc_delivery_attempt_seconds_sum {}\nwhc_delivery_attempt_seconds_count {count}",
            get(&self.attempt_micros) as f64 / 1e6
        );
        for (name, help, v) in [
            (
                "whc_queue_depth",
                "Deliveries waiting for an attempt.",
                gauges.queue_depth,
            ),
            (
                "whc_deliveries_paused",
                "1 while deliveries are paused (POST /v1/deliveries/pause), else 0.",
                u64::from(gauges.deliveries_paused),
            ),
            (
                "whc_rules_version",
                "Version of the rule set being served (1 at start, +1 per successful reload).",
                gauges.rules_version,
            ),
            (
                "whc_webhooks",
                "Webhooks in the rule set being served.",
                gauges.webhooks,
            ),
            (
                "whc_rules_watched",
                "1 while every rules folder is watched for changes, else 0 (gone, or the watcher failed).",
                u64::from(gauges.rules_watched),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        Metrics::bump(&m.events_accepted);
        m.observe_attempt(Duration::from_millis(20));
        let text = m.render(Gauges {
            queue_depth: 3,
            outbox: Stats {
                commits: 2,
                requests: 5,
                busy_micros: 1_500_000,
                ..Stats::default()
            },
            ..Gauges::default()
        });
        assert!(text.contains("whc_events_total{result=\"accepted\"} 1"));
        assert!(text.contains("whc_delivery_attempt_seconds_bucket{le=\"0.01\"} 0"));
        assert!(text.contains("whc_delivery_attempt_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("whc_queue_depth 3"));
        assert!(text.contains("whc_outbox_commits_total 2"));
        assert!(text.contains("whc_outbox_writes_total 5"));
        assert!(text.contains("whc_outbox_writer_busy_seconds_total 1.5"));
    }
}
