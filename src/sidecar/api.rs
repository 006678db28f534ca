//! The tracker-facing listener: `POST /v1/events`, or in proxy mode every request forwarded
//! to the upstream with event routes matched on the way back.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::outbox::NewEvent;

use super::State;
use super::fanout::fan_out;
use super::http::{Body, error, json};
use super::ingest::{BodyError, parse_events, read_limited};
use super::metrics::Metrics;

/// Handles one request on the events listener.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    if state.upstream.is_some() {
        return super::proxy::forward(state, req).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/events") => ingest(&state, req).await,
        (_, "/v1/events") => error(StatusCode::METHOD_NOT_ALLOWED, "use POST /v1/events"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not found; events go to POST /v1/events",
        ),
    }
}

fn authorised(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.ingest_token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ingest(state: &State, req: Request<Incoming>) -> Response<Body> {
    if !authorised(state, &req) {
        Metrics::bump(&state.metrics.events_rejected);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer` token",
        );
    }
    let body = match read_limited(req.into_body(), state.config.max_body).await {
        Ok(body) => body,
        Err(err) => {
            Metrics::bump(&state.metrics.events_rejected);
            return body_error(state, err);
        }
    };
    match accept(state, &body).await {
        Ok(answer) => json(StatusCode::ACCEPTED, &answer),
        Err(res) => res,
    }
}

fn body_error(state: &State, err: BodyError) -> Response<Body> {
    match err {
        BodyError::TooLarge { .. } => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", state.config.max_body),
        ),
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

/// Parses, matches and durably stores a body of events; the answer lists what each fired.
/// Nothing is stored unless every event in the body is valid.
pub async fn accept(state: &State, body: &Bytes) -> Result<serde_json::Value, Response<Body>> {
    let events = match parse_events(body) {
        Ok(events) => events,
        Err(err) => {
            Metrics::bump(&state.metrics.events_rejected);
            return Err(json(StatusCode::BAD_REQUEST, &err.to_json()));
        }
    };
    // One rule set for the whole body: a reload in between cannot split it.
    let rules = state.rules.current();
    let default_attempts = state.config.default_attempts();
    let batch: Vec<NewEvent> = events
        .into_iter()
        .map(|e| fan_out(&rules, e, default_attempts))
        .collect();
    let fired: Vec<Vec<String>> = batch
        .iter()
        .map(|e| e.deliveries.iter().map(|d| d.webhook.clone()).collect())
        .collect();
    let accepted = match state.outbox.accept(batch).await {
        Ok(accepted) => accepted,
        Err(err) => {
            tracing::error!(%err, "cannot store events");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the events could not be stored; nothing was accepted, send them again",
            ));
        }
    };
    let results: Vec<serde_json::Value> = accepted
        .iter()
        .zip(fired)
        .map(|(a, webhooks)| {
            if a.duplicate {
                Metrics::bump(&state.metrics.events_duplicate);
                json!({ "id": a.id, "duplicate": true, "webhooks": [], "deliveries": a.deliveries })
            } else {
                Metrics::bump(&state.metrics.events_accepted);
                json!({ "id": a.id, "duplicate": false, "webhooks": webhooks, "deliveries": a.deliveries })
            }
        })
        .collect();
    Ok(json!({ "rules": rules.hash, "events": results }))
}
