//! The delivery dispatcher: claims due deliveries, sends them under per-endpoint and overall
//! limits, and records each attempt's outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Client, Draft, RetryPolicy, Verdict, prepare};
use crate::lang::Env;
use crate::outbox::{AttemptRecord, Delivery, Outbox, now_ms};

use super::gate::DeliveryGate;
use super::metrics::Metrics;

/// How long the dispatcher lets commits accumulate after a wake-up before it reads due
/// deliveries again: a few milliseconds of delivery latency for far fewer reads under load.
const COALESCE: Duration = Duration::from_millis(5);

/// Limits on concurrent attempts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts in flight across every endpoint.
    pub overall: usize,
    /// Attempts in flight to one endpoint (scheme, host and port), so that a slow or dead
    /// endpoint holds at most this many of the overall slots.
    pub per_endpoint: usize,
    /// Deliveries claimed and waiting for a slot, at most.
    pub claimed: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            overall: 64,
            per_endpoint: 8,
            claimed: 10_000,
        }
    }
}

/// Sends due deliveries until cancelled.
pub struct Dispatcher {
    outbox: Outbox,
    client: Client,
    retry: RetryPolicy,
    env: Arc<dyn Env + Send + Sync>,
    metrics: Arc<Metrics>,
    limits: Limits,
    overall: Arc<Semaphore>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
    gate: DeliveryGate,
}

/// The scheme, host and port of a URL: what one endpoint's limit applies to.
fn endpoint_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| i + after_scheme);
    url[..end].to_ascii_lowercase()
}

impl Dispatcher {
    /// A dispatcher over the outbox.
    pub fn new(
        outbox: Outbox,
        client: Client,
        retry: RetryPolicy,
        env: Arc<dyn Env + Send + Sync>,
        metrics: Arc<Metrics>,
        limits: Limits,
        gate: DeliveryGate,
    ) -> Dispatcher {
        Dispatcher {
            overall: Arc::new(Semaphore::new(limits.overall.max(1))),
            outbox,
            client,
            retry,
            env,
            metrics,
            limits,
            endpoints: Mutex::new(HashMap::new()),
            gate,
        }
    }

    fn endpoint_slots(&self, url: &str) -> Arc<Semaphore> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(endpoint_of(url))
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_endpoint.max(1)))),
        )
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
            let room = self.limits.claimed.saturating_sub(tasks.len());
            if room > 0 {
                match self.outbox.due(now_ms(), room.min(512)).await {
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
            let wait = match self.outbox.next_due_at().await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64),
                Ok(None) => Duration::from_secs(1),
                Err(_) => Duration::from_secs(1),
            };
            if tasks.len() >= self.limits.claimed {
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

    async fn slots(
        &self,
        url: &str,
        cancel: &CancellationToken,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let endpoint = self.endpoint_slots(url);
        // The endpoint's slot first: a delivery queued behind a slow endpoint holds none of
        // the overall slots while it waits.
        let endpoint_permit = tokio::select! {
            p = endpoint.acquire_owned() => p.ok()?,
            () = cancel.cancelled() => return None,
        };
        let overall = tokio::select! {
            p = Arc::clone(&self.overall).acquire_owned() => p.ok()?,
            () = cancel.cancelled() => return None,
        };
        Some((endpoint_permit, overall))
    }

    async fn attempt(&self, delivery: Delivery, cancel: CancellationToken) {
        let Some(permits) = self.slots(&delivery.url, &cancel).await else {
            self.outbox.release(&delivery.id);
            return;
        };
        let record = self.send(&delivery).await;
        // The endpoint is done with: free its slots now, not after the record commits, so the
        // next attempt to it does not wait on the store.
        drop(permits);
        match &record {
            AttemptRecord::Delivered { .. } => Metrics::bump(&self.metrics.deliveries_delivered),
            AttemptRecord::Retry { .. } => Metrics::bump(&self.metrics.deliveries_retried),
            AttemptRecord::Dead { .. } => Metrics::bump(&self.metrics.deliveries_dead),
        }
        if let AttemptRecord::Dead { error, .. } = &record {
            tracing::warn!(delivery = %delivery.id, webhook = %delivery.webhook, %error, "delivery dead");
        }
        if let Err(err) = self.outbox.record(&delivery.id, record).await {
            tracing::error!(delivery = %delivery.id, %err, "cannot record attempt");
            self.outbox.release(&delivery.id);
        }
    }

    /// Resolves the rule's headers and secret from the environment, sends one attempt and
    /// decides what happens next.
    async fn send(&self, d: &Delivery) -> AttemptRecord {
        let dead = |error: String| AttemptRecord::Dead {
            status_code: None,
            error,
            excerpt: None,
            elapsed_ms: 0,
        };
        let draft = Draft {
            id: &d.id,
            method: &d.method,
            url: &d.url,
            headers: &d.headers,
            body: d.body.as_deref(),
            secret_env: d.secret_env.as_deref(),
            timeout_ms: d.timeout_ms,
            test: false,
        };
        let request = match prepare(&draft, self.env.as_ref()) {
            Ok(prepared) => prepared.request,
            Err(err) => return dead(err.to_string()),
        };
        let attempt = self.client.send(request).await;
        self.metrics.observe_attempt(attempt.elapsed);
        let elapsed_ms = attempt.elapsed.as_millis() as u64;
        let status_code = attempt.outcome.status();
        let excerpt = match &attempt.outcome {
            crate::deliver::Outcome::Response(r) => Some(r.excerpt_text()),
            crate::deliver::Outcome::Failed(_) => None,
        };
        let made = d.attempts + 1;
        match attempt.outcome.verdict() {
            Verdict::Delivered => AttemptRecord::Delivered {
                status_code: status_code.unwrap_or(200),
                excerpt,
                elapsed_ms,
            },
            Verdict::Retry { retry_after } => {
                let error = attempt.outcome.to_string();
                match self
                    .retry
                    .delay_after(made, d.max_attempts.saturating_sub(1), retry_after)
                {
                    Some(delay) => AttemptRecord::Retry {
                        next_attempt_at: now_ms() + delay.as_millis() as i64,
                        status_code,
                        error,
                        excerpt,
                        elapsed_ms,
                    },
                    None => AttemptRecord::Dead {
                        status_code,
                        error: format!("gave up after {made} attempts; last: {error}"),
                        excerpt,
                        elapsed_ms,
                    },
                }
            }
            Verdict::Dead => AttemptRecord::Dead {
                status_code,
                error: attempt.outcome.to_string(),
                excerpt,
                elapsed_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_of;

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
}
