//! The delivery dispatcher: claims due deliveries, sends them under per-endpoint and overall
//! limits, and records each attempt's outcome.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deliver::{
    Client, Draft, Limits, Progress, RetryPolicy, Slots, Windows, prepare, record_for, stored_body,
    unsendable,
};
use crate::lang::Env;
use crate::outbox::{AttemptRecord, Delivery, now_ms};
use crate::store::{Store, StoreError};

use super::gate::DeliveryGate;
use super::metrics::Metrics;

/// How long the dispatcher lets commits accumulate after a wake-up before it reads due
/// deliveries again: a few milliseconds of delivery latency for far fewer reads under load.
const COALESCE: Duration = Duration::from_millis(5);

/// The first wait before storing an attempt's record again after the store failed.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between tries to store an attempt's record.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Sends due deliveries until cancelled.
pub struct Dispatcher {
    outbox: Store,
    client: Client,
    retry: RetryPolicy,
    env: Arc<dyn Env + Send + Sync>,
    metrics: Arc<Metrics>,
    slots: Slots,
    windows: Windows,
    gate: DeliveryGate,
}

impl Dispatcher {
    /// A dispatcher over the outbox.
    pub fn new(
        outbox: Store,
        client: Client,
        retry: RetryPolicy,
        env: Arc<dyn Env + Send + Sync>,
        metrics: Arc<Metrics>,
        limits: Limits,
        gate: DeliveryGate,
    ) -> Dispatcher {
        Dispatcher {
            outbox,
            client,
            retry,
            env,
            metrics,
            slots: Slots::new(limits),
            windows: Windows::new(limits),
            gate,
        }
    }

    /// Runs until `cancel` fires; then lets attempts already on the wire finish for up to
    /// `grace`, and leaves waiting deliveries pending in the store for the next start.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, grace: Duration) {
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            if self.gate.is_paused() {
                // Attempts already started go on; nothing new is claimed until resumed.
                tokio::select! {
                    () = self.gate.open() => {}
                    () = cancel.cancelled() => break,
                }
                continue;
            }
            let limits = self.slots.limits();
            let per_endpoint = self.windows.bound();
            let room = limits.claimed.saturating_sub(tasks.len());
            if room > 0 {
                match self
                    .outbox
                    .due(now_ms(), room.min(512), per_endpoint.clone())
                    .await
                {
                    Ok(batch) => {
                        for delivery in batch {
                            let this = Arc::clone(&self);
                            let cancel = cancel.clone();
                            tasks.spawn(async move { this.attempt(delivery, cancel).await });
                        }
                    }
                    Err(err) => tracing::error!(%err, "cannot read due deliveries"),
                }
            }
            // Skips endpoints holding all their claims: their next claim waits for an attempt
            // to end, which the `join_next` below wakes us for.
            let wait = match self.outbox.next_due_at(per_endpoint).await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64),
                Ok(None) => Duration::from_secs(1),
                Err(_) => Duration::from_secs(1),
            };
            if tasks.len() >= limits.claimed {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    () = cancel.cancelled() => break,
                }
                continue;
            }
            tokio::select! {
                () = self.outbox.changed() => {
                    // Under load every commit wakes us: gather a few before reading again.
                    tokio::time::sleep(COALESCE).await;
                }
                // An attempt ended: its endpoint may take another claim.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    tokio::time::sleep(COALESCE).await;
                }
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => break,
            }
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                "delivery attempts still running after the grace period; abandoning them"
            );
        }
    }

    async fn attempt(&self, delivery: Delivery, cancel: CancellationToken) {
        let asked = std::time::Instant::now();
        let permit = tokio::select! {
            permit = self.slots.acquire(&delivery.url) => permit,
            () = cancel.cancelled() => None,
        };
        let Some(permit) = permit else {
            self.outbox.release(&delivery.id).await;
            return;
        };
        let waited = asked.elapsed();
        let record = self.send(&delivery).await;
        // The endpoint is done with: free its slots now, not after the record commits, so the
        // next attempt to it does not wait on the store.
        drop(permit);
        self.windows.observe(
            &delivery.url,
            matches!(record, AttemptRecord::Delivered { .. }),
            waited,
        );
        match &record {
            AttemptRecord::Delivered { .. } => Metrics::bump(&self.metrics.deliveries_delivered),
            AttemptRecord::Retry { .. } => Metrics::bump(&self.metrics.deliveries_retried),
            AttemptRecord::Dead { .. } => Metrics::bump(&self.metrics.deliveries_dead),
        }
        if let AttemptRecord::Dead { error, .. } = &record {
            tracing::warn!(delivery = %delivery.id, webhook = %delivery.webhook, %error, "delivery dead");
        }
        self.keep_recording(&delivery.id, record).await;
    }

    /// Stores an attempt's record, trying again with backoff while the store fails (a full
    /// disk, a locked or read-only file) instead of releasing the delivery: released, it would
    /// be due again at once and the receiver would get a request it already took.
    ///
    /// The delivery stays claimed meanwhile, and the record waits in this task: memory is
    /// bounded by the claimed limit, the record by the excerpt and error caps. At shutdown the
    /// grace period bounds the tries; a record still unstored then is lost and the delivery is
    /// sent again after the restart (at least once, deduplicated on its idempotency key).
    async fn keep_recording(&self, id: &str, record: AttemptRecord) {
        let mut wait = RECORD_RETRY_FIRST;
        loop {
            match self.outbox.record(id, record.clone()).await {
                Ok(()) => return,
                Err(StoreError::NotPending(_)) => {
                    // Replayed or pruned meanwhile: nothing to record, and not ours any more.
                    tracing::warn!(delivery = %id, "attempt not recorded: the delivery is no longer pending");
                    self.outbox.release(id).await;
                    return;
                }
                Err(err) => {
                    Metrics::bump(&self.metrics.record_failures);
                    tracing::error!(delivery = %id, %err, retry_in = ?wait, "cannot record attempt; keeping it and trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RECORD_RETRY_MAX);
                }
            }
        }
    }

    /// Resolves the rule's headers and secret from the environment, sends one attempt and
    /// decides what the delivery log records.
    async fn send(&self, delivery: &Delivery) -> AttemptRecord {
        let body = stored_body(delivery);
        let request = match prepare(&Draft::stored(delivery, body.as_deref()), self.env.as_ref()) {
            Ok(prepared) => prepared.request,
            Err(err) => return unsendable(err),
        };
        let attempt = self.client.send(request).await;
        self.metrics.observe_attempt(attempt.elapsed);
        let progress = Progress {
            attempts: delivery.attempts,
            max_attempts: delivery.max_attempts,
        };
        record_for(&attempt, progress, &self.retry, now_ms())
    }
}
