//! Tracker postbacks: a request on a source's route, mapped to an event by the source and
//! answered 200 once the event and its deliveries are committed.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde_json::json;

use crate::engine::RuleSet;
use crate::source::{self, Mapped, Source, SourceError};

use super::State;
use super::body::read_limited;
use super::guard::tokens_match;
use super::http::{Body, error, json};
use super::ingest::{IngestFailure, Input};
use super::metrics::Metrics;

/// Handles one request on `source`'s route, with the rule set it was found in (kept for the
/// whole request, so a reload cannot change the mapping half-way).
pub async fn handle(
    state: &State,
    rules: Arc<RuleSet>,
    index: usize,
    req: Request<Incoming>,
) -> Response<Body> {
    let source = &rules.sources()[index];
    if !source.allows(req.method().as_str()) {
        let mut res = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("use {} {}", source.methods_text(), source.path),
        );
        if let Ok(allow) = header::HeaderValue::from_str(&source.methods_text()) {
            res.headers_mut().insert(header::ALLOW, allow);
        }
        return res;
    }
    let (parts, body) = req.into_parts();
    let body = match read_limited(body, state.config.max_body, state.config.body_read_timeout).await
    {
        Ok(body) => body,
        Err(err) => {
            Metrics::bump(&state.metrics.events_rejected);
            return error(err.status(), err.to_string());
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let request = source::Request::new(parts.method.as_str(), path_and_query, parts.headers, body);
    let event = match map(source, &request, state) {
        Ok(Mapped::Event(event)) => *event,
        Ok(Mapped::Ignored(ignored)) => {
            Metrics::bump(&state.metrics.events_ignored);
            tracing::debug!(source = %source.name, reason = %ignored.reason(), "postback ignored");
            return json(
                StatusCode::OK,
                &json!({ "ok": true, "ignored": true, "reason": ignored.reason() }),
            );
        }
        Err(err) => {
            Metrics::bump(&state.metrics.events_rejected);
            return refused(&err);
        }
    };
    match state.ingest.accept(Input::Events(vec![event])).await {
        Ok(accepted) => {
            let e = accepted.events.first();
            json(
                StatusCode::OK,
                &json!({
                    "ok": true,
                    "id": e.map(|e| e.id.as_str()),
                    "duplicate": e.is_some_and(|e| e.duplicate),
                    "webhooks": e.map(|e| e.webhooks.as_slice()).unwrap_or_default(),
                }),
            )
        }
        Err(IngestFailure::Invalid(invalid)) => {
            Metrics::bump(&state.metrics.events_rejected);
            json(
                StatusCode::BAD_REQUEST,
                &json!({ "error": invalid.message, "key": invalid.key }),
            )
        }
        Err(IngestFailure::Unavailable(err)) => {
            tracing::error!(%err, source = %source.name, "cannot store a postback");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored; nothing was accepted, send the postback again",
            )
        }
    }
}

fn map(source: &Source, request: &source::Request, state: &State) -> Result<Mapped, SourceError> {
    source.authorise(request, &*state.env, tokens_match)?;
    source.map(request)
}

/// The 400 (or 401) answer, naming the parameter.
fn refused(err: &SourceError) -> Response<Body> {
    let status = if err.unauthorised {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    json(status, &json!({ "error": err.to_string(), "key": err.key }))
}
