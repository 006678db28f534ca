//! The admin listener: health, metrics, the rules being served, the delivery log, replays and
//! the Test button.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::json;

use crate::deliver::stored_body;
use crate::deliver::test::{self, TestMode};
use crate::engine::explain::explain;
use crate::event::Event;
use crate::outbox::{Delivery, now_ms};

use super::State;
use super::WatchState;
use super::body::read_limited;
use super::console;
use super::http::{Body, error, json, text};
use super::metrics::Gauges;
use super::query::delivery_filter;

/// Handles one admin request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => healthz(&state).await,
        (&Method::GET, ["readyz"]) => readyz(&state).await,
        (&Method::GET, ["metrics"]) => metrics(&state).await,
        // Rendered once per rule set; copying it is still megabytes with 10,000 webhooks, so
        // it is done off the runtime's workers.
        (&Method::GET, ["v1", "rules"]) => {
            let rules = Arc::clone(&state.rules);
            match tokio::task::spawn_blocking(move || rules.status_json()).await {
                Ok(body) => text(StatusCode::OK, body, "application/json"),
                Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
            }
        }
        (&Method::GET, ["v1", "deliveries"]) => deliveries(&state, &query).await,
        (&Method::POST, ["v1", "deliveries", "pause"]) => set_paused(&state, true).await,
        (&Method::POST, ["v1", "deliveries", "resume"]) => set_paused(&state, false).await,
        (&Method::GET, ["v1", "deliveries", id]) => match state.outbox.get(&decode(id)).await {
            Ok(Some(d)) => {
                let mut body = delivery_json(&d);
                match state.outbox.attempts(&d.id).await {
                    Ok(attempts) => body["history"] = json!(attempts),
                    Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
                }
                json(StatusCode::OK, &body)
            }
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no delivery `{id}`")),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        },
        (&Method::POST, ["v1", "deliveries", id, "retry"]) => {
            let id = decode(id);
            match state.outbox.replay(&id).await {
                Ok(true) => json(StatusCode::OK, &json!({ "id": id, "status": "pending" })),
                Ok(false) => error(
                    StatusCode::CONFLICT,
                    format!(
                        "delivery `{id}` is not dead (or does not exist); only dead deliveries are replayed"
                    ),
                ),
                Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
            }
        }
        (&Method::POST, ["v1", "webhooks", name, "test"]) => {
            test_button(&state, &decode(name)).await
        }
        (&Method::GET, ["v1", "webhooks"]) => webhooks(&state).await,
        (&Method::POST, ["v1", "webhooks", name, "replay"]) => {
            replay_dead(&state, &decode(name)).await
        }
        (&Method::POST, ["v1", "explain"]) => try_event(&state, req).await,
        (&Method::GET, ["v1", "events", id]) => match state.outbox.event_json(&decode(id)).await {
            Ok(Some(body)) => text(StatusCode::OK, body, "application/json"),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no stored event `{id}`")),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        },
        (&Method::GET, ["v1", "examples"]) => json(StatusCode::OK, &console::examples()),
        (&Method::GET, ["v1", "history"]) => json(StatusCode::OK, &state.history.samples_json()),
        (&Method::GET, [asset]) if console::asset(asset).is_some() => console::serve(asset),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// How long `/readyz` waits for the store's probe write before answering not ready: a writer
/// stuck on a lock or a slow disk is not ready either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Health: `200` while the store's writer committed its latest write and a read succeeds,
/// `503` with the reason otherwise. Cheap: it asks the store to write nothing.
async fn healthz(state: &State) -> Response<Body> {
    let failure = match state.outbox.last_write_failure() {
        Some(failure) => Some(format!("the outbox's last write failed: {failure}")),
        None => match state.outbox.check_reads().await {
            Ok(()) => None,
            Err(err) => Some(format!("the outbox cannot be read: {err}")),
        },
    };
    match failure {
        None => json(StatusCode::OK, &json!({ "status": "ok" })),
        Some(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "failing", "reason": reason }),
        ),
    }
}

/// Readiness, for a load balancer: `200` only when the rules are loaded and the store takes a
/// write now (a probe row written and deleted in one commit), `503` with the reason otherwise.
async fn readyz(state: &State) -> Response<Body> {
    // The sidecar does not start without rules; a version says they are in place.
    let version = state.rules.version();
    let reason = if version == 0 {
        Some("no rules are loaded".to_owned())
    } else {
        match tokio::time::timeout(PROBE_TIMEOUT, state.outbox.check_writes()).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("the outbox does not take writes: {err}")),
            Err(_) => Some(format!(
                "the outbox did not commit a write within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    };
    match reason {
        None => json(
            StatusCode::OK,
            &json!({ "status": "ready", "rules_version": version }),
        ),
        Some(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not ready", "reason": reason }),
        ),
    }
}

/// Pauses or resumes deliveries; the answer says whether that changed anything. On a shared
/// store the whole fleet pauses: the flag is stored and every sidecar hears of it.
async fn set_paused(state: &State, paused: bool) -> Response<Body> {
    let fleet = match state.outbox.set_fleet_paused(paused).await {
        None => None,
        Some(Ok(changed)) => Some(changed),
        Some(Err(err)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot change the fleet's pause: {err}"),
            );
        }
    };
    let here = if paused {
        state.deliveries.pause()
    } else {
        state.deliveries.resume()
    };
    let changed = fleet.unwrap_or(here);
    if changed {
        tracing::info!(
            paused,
            "deliveries {}",
            if paused { "paused" } else { "resumed" }
        );
    }
    json(
        StatusCode::OK,
        &json!({ "paused": paused, "changed": changed }),
    )
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

async fn metrics(state: &State) -> Response<Body> {
    let rules = state.rules.counts();
    let gauges = Gauges {
        queue_depth: state.outbox.queue_depth().await.unwrap_or(0),
        reloads_ok: rules.reloads_ok,
        reloads_failed: rules.reloads_failed,
        rules_version: rules.version,
        rules_watched: rules.watcher == WatchState::Watching,
        deliveries_paused: state.deliveries.is_paused(),
        webhooks: rules.webhooks as u64,
        outbox: state.outbox.stats(),
    };
    text(
        StatusCode::OK,
        state.metrics.render(gauges),
        "text/plain; version=0.0.4",
    )
}

async fn deliveries(state: &State, query: &str) -> Response<Body> {
    let filter = match delivery_filter(query) {
        Ok(filter) => filter,
        Err(err) => return error(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let limit = filter.limit as usize;
    match state.outbox.list(filter).await {
        // A full page may have a next one: it starts after this page's last delivery.
        Ok(list) => {
            let next = list
                .last()
                .filter(|_| list.len() == limit)
                .map(|d| d.id.clone());
            json(
                StatusCode::OK,
                &json!({
                    "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>(),
                    "next": next,
                }),
            )
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// A delivery as the admin API shows it, its body as sent; header values from the environment
/// show the variable's name, never the value.
pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    let body = stored_body(d);
    json!({
        "id": d.id,
        "event": d.event_id,
        "webhook": d.webhook,
        "method": d.method,
        "url": d.url,
        "headers": d.headers,
        "body": body.as_deref().map(String::from_utf8_lossy),
        "signed_with": d.secret_env,
        "timeout_ms": d.timeout_ms,
        "status": d.status,
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "response_excerpt": d.response_excerpt,
        "last_attempt_ms": d.last_attempt_ms,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    })
}

async fn test_button(state: &State, name: &str) -> Response<Body> {
    let rules = state.rules.current();
    let Some(webhook) = rules.get(name) else {
        return error(StatusCode::NOT_FOUND, format!("no webhook named `{name}`"));
    };
    let event = test::sample_event_for(webhook);
    let report = test::run(
        &state.client,
        webhook,
        &event,
        state.env.as_ref(),
        TestMode::Send,
    )
    .await;
    json(StatusCode::OK, &report.to_json())
}

/// The webhooks being served with their delivery counts over the last hour and day, and the
/// rules' reload state (the last reload error with its diagnostics).
async fn webhooks(state: &State) -> Response<Body> {
    const HOUR_MS: i64 = 3_600_000;
    let now = now_ms();
    let (hour, day) = match tokio::try_join!(
        state.outbox.webhook_counts(now - HOUR_MS),
        state.outbox.webhook_counts(now - 24 * HOUR_MS),
    ) {
        Ok(counts) => counts,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    };
    let status = state.rules.status();
    let webhooks: Vec<_> = status
        .webhooks
        .iter()
        .map(|w| {
            let hour = hour.get(&w.name).cloned().unwrap_or_default();
            let day = day.get(&w.name).cloned().unwrap_or_default();
            // Of the deliveries settled today, the share delivered; none settled, no rate.
            let settled = day.delivered + day.dead;
            let success_rate = (settled > 0).then(|| day.delivered as f64 / settled as f64);
            json!({
                "webhook": w,
                "last_hour": hour,
                "last_day": day,
                "success_rate": success_rate,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "version": status.version,
            "hash": status.hash,
            "files": status.files,
            "loaded_at": status.loaded_at,
            "last_error": status.last_error,
            "last_error_at": status.last_error_at,
            "reloads_ok": status.reloads_ok,
            "reloads_failed": status.reloads_failed,
            "watcher": status.watcher,
            "paused": state.deliveries.is_paused(),
            "webhooks": webhooks,
        }),
    )
}

/// Replays every dead delivery of a webhook (one the rules may no longer have).
async fn replay_dead(state: &State, name: &str) -> Response<Body> {
    match state.outbox.replay_dead(name).await {
        Ok(replayed) => {
            if replayed > 0 {
                tracing::info!(webhook = name, replayed, "dead deliveries replayed");
            }
            json(
                StatusCode::OK,
                &json!({ "webhook": name, "replayed": replayed }),
            )
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// `explain` for the posted event against the rules being served: every webhook's verdict,
/// each condition with the value it read, the rendered URL. Nothing is stored or sent.
async fn try_event(state: &State, req: Request<Incoming>) -> Response<Body> {
    let body = match read_limited(
        req.into_body(),
        state.config.max_body,
        state.config.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(err) => return error(err.status(), err.to_string()),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the event is not UTF-8 text");
    };
    let event = match Event::from_json_str(text) {
        Ok(event) => event,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("not a valid event: {err}")),
    };
    let rules = state.rules.current();
    let explanations: Vec<_> = rules
        .webhooks()
        .iter()
        .map(|w| explain(w, &event))
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "event": { "id": event.id, "type": event.kind.wire_name() },
            "rules": rules.hash,
            "webhooks": explanations,
        }),
    )
}
