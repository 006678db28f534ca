//! Concurrency limits on attempts: overall, and per endpoint so that a slow or dead endpoint
//! holds at most its own share of the slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::outbox::endpoint_of;
use crate::store::ClaimBound;

/// How far an endpoint's claim window may widen: this many times its in-flight slots.
const WIDEST: usize = 16;

/// An attempt that waited this long for its endpoint's slot means the endpoint does not keep
/// up with what is claimed for it.
const SLOT_WAIT_NARROWS: Duration = Duration::from_millis(100);

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

/// Each endpoint's claim window: how many of its deliveries the dispatcher may hold claimed.
///
/// Every endpoint starts at [`Limits::claimed_per_endpoint`] (its slots and as many waiting).
/// An endpoint that keeps up (an attempt delivered without waiting long for a slot) widens by
/// one claim per such attempt, up to [`WIDEST`] times its slots, so a fast endpoint gets
/// enough claims per read of the queue to keep its slots busy; a failed attempt puts it back
/// to the start at once, and an attempt that waited long for a slot halves it. A slow or dead
/// endpoint therefore holds what it held before windows existed, and no more.
#[derive(Debug)]
pub struct Windows {
    base: usize,
    widest: usize,
    wide: Mutex<HashMap<String, usize>>,
}

impl Windows {
    /// Windows under these limits, all at their start.
    pub fn new(limits: Limits) -> Windows {
        let base = limits.claimed_per_endpoint();
        Windows {
            base,
            widest: base.max(limits.per_endpoint.max(1).saturating_mul(WIDEST)),
            wide: Mutex::new(HashMap::new()),
        }
    }

    /// Takes an attempt to `url` into account: whether it was delivered, and how long it
    /// waited for its slots.
    pub fn observe(&self, url: &str, delivered: bool, waited: Duration) {
        let endpoint = endpoint_of(url);
        let mut wide = self.wide.lock().unwrap_or_else(|p| p.into_inner());
        let now = wide.get(&endpoint).copied().unwrap_or(self.base);
        let next = if !delivered {
            self.base
        } else if waited >= SLOT_WAIT_NARROWS {
            (now / 2).max(self.base)
        } else {
            (now + 1).min(self.widest)
        };
        if next > self.base {
            wide.insert(endpoint, next);
        } else {
            wide.remove(&endpoint);
        }
    }

    /// The windows as a claim bound for the store.
    pub fn bound(&self) -> ClaimBound {
        let wide = self.wide.lock().unwrap_or_else(|p| p.into_inner());
        ClaimBound::new(self.base, wide.clone())
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

    #[test]
    fn a_window_widens_while_its_endpoint_keeps_up_and_narrows_when_it_does_not() {
        let windows = Windows::new(Limits {
            overall: 64,
            per_endpoint: 2,
            claimed: 100,
        });
        let fast = "http://fast.test/hook";
        let on = |w: &Windows| w.bound().on("http://fast.test");
        assert_eq!(on(&windows), 4, "twice the slots to start with");
        for _ in 0..10 {
            windows.observe(fast, true, Duration::ZERO);
        }
        assert_eq!(on(&windows), 14);
        for _ in 0..100 {
            windows.observe(fast, true, Duration::ZERO);
        }
        assert_eq!(on(&windows), 32, "at most 16 times the slots");
        assert_eq!(windows.bound().on("http://other.test"), 4, "per endpoint");
        windows.observe(fast, true, SLOT_WAIT_NARROWS);
        assert_eq!(on(&windows), 16, "a long wait for a slot halves it");
        windows.observe(fast, false, Duration::ZERO);
        assert_eq!(on(&windows), 4, "a failure puts it back to the start");
        assert_eq!(windows.bound(), ClaimBound::from(4));
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
