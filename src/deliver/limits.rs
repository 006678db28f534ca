//! Concurrency limits on attempts: overall, and per endpoint so that a slow or dead endpoint
//! holds at most its own share of the slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::outbox::endpoint_of;

/// Limits on concurrent attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Attempts in flight across every endpoint.
    pub overall: usize,
    /// Attempts in flight to one endpoint (scheme, host and port), so that a slow or dead
    /// endpoint holds at most this many of the overall slots.
    pub per_endpoint: usize,
    /// Deliveries claimed and waiting for a slot, at most.
    pub claimed: usize,
}

impl Limits {
    /// Deliveries to one endpoint claimed at once: its slots' worth in flight and as many
    /// waiting, so a fast endpoint always has its next attempts at hand while a dead one
    /// holds no more than this of the claimed limit.
    pub fn claimed_per_endpoint(&self) -> usize {
        self.per_endpoint.max(1).saturating_mul(2)
    }

    /// The defaults `whc serve` starts with.
    pub const DEFAULT: Limits = Limits {
        overall: 64,
        per_endpoint: 8,
        claimed: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// The slots attempts take before they start: one of the endpoint's, then one of the overall.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    overall: Arc<Semaphore>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while an attempt is on the wire; dropping it frees both slots.
#[derive(Debug)]
pub struct SlotPermit {
    _endpoint: OwnedSemaphorePermit,
    _overall: OwnedSemaphorePermit,
}

impl Slots {
    /// Slots under these limits (each at least 1).
    pub fn new(limits: Limits) -> Slots {
        Slots {
            limits,
            overall: Arc::new(Semaphore::new(limits.overall.max(1))),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn endpoint(&self, url: &str) -> Arc<Semaphore> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(endpoint_of(url))
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_endpoint.max(1)))),
        )
    }

    /// Waits for a slot to send to `url`. The endpoint's slot comes first: a delivery queued
    /// behind a slow endpoint holds none of the overall slots while it waits. `None` only if
    /// the semaphores were closed, which they never are.
    pub async fn acquire(&self, url: &str) -> Option<SlotPermit> {
        let endpoint = self.endpoint(url).acquire_owned().await.ok()?;
        let overall = Arc::clone(&self.overall).acquire_owned().await.ok()?;
        Some(SlotPermit {
            _endpoint: endpoint,
            _overall: overall,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn endpoints_are_scheme_host_port() {
        assert_eq!(
            endpoint_of("https://A.example.com/x?y"),
            "https://a.example.com"
        );
        assert_eq!(
            endpoint_of("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
    }

    #[tokio::test]
    async fn a_busy_endpoint_does_not_hold_the_overall_slots() {
        let slots = Slots::new(Limits {
            overall: 2,
            per_endpoint: 1,
            claimed: 10,
        });
        let _busy = slots.acquire("http://slow.test/a").await;
        // A second attempt to the same endpoint waits …
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            slots.acquire("http://slow.test/b"),
        );
        assert!(waiting.await.is_err(), "the endpoint's one slot is taken");
        // … while another endpoint still gets the remaining overall slot.
        let other =
            tokio::time::timeout(Duration::from_secs(5), slots.acquire("http://fast.test/"));
        assert!(matches!(other.await, Ok(Some(_))));
    }
}
