//! Proxy mode: every request goes to the upstream tracker unchanged; bodies on intercepted
//! routes are also accepted as events once the upstream accepted them.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;

use crate::deliver::{Connector, ExtraRoots, Protocols, TrustError, pooled};

use super::State;
use super::body::{Bounded, read_bounded};
use super::config::{Intercept, ProxyConfig};
use super::guard::bearer_matches;
use super::http::{Body, error};
use super::ingest::{IngestFailure, Input};
use super::metrics::Metrics;

/// The upstream and how to reach it.
pub struct Proxy {
    upstream: Uri,
    intercept: Vec<Intercept>,
    timeout: Duration,
    client: Client<Connector, Body>,
}

impl Proxy {
    /// A proxy to the configured upstream, through whc's one connector (so `--ca-cert` applies
    /// to an upstream behind a private CA too).
    pub fn new(config: &ProxyConfig, roots: &ExtraRoots) -> Result<Proxy, TrustError> {
        Ok(Proxy {
            upstream: config.upstream.clone(),
            intercept: config.intercept.clone(),
            timeout: config.timeout,
            client: pooled(roots, Protocols::Http1)?,
        })
    }

    /// The intercept a request falls under, if any.
    fn intercept_for(&self, req: &Request<Incoming>) -> Option<&Intercept> {
        self.intercept
            .iter()
            .find(|i| i.matches(req.method(), req.uri().path()))
    }
}

/// Hop-by-hop headers: they describe one connection and are never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(HeaderName::from_static(name));
    }
}

/// The upstream URL for a request's path and query.
fn upstream_uri(base: &Uri, original: &Uri) -> Result<Uri, hyper::http::uri::InvalidUri> {
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = original.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{authority}{prefix}{path_and_query}").parse()
}

/// Forwards one request and streams the upstream's answer back.
pub async fn forward(
    state: Arc<State>,
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
) -> Response<Body> {
    let intercept = proxy.intercept_for(&req).cloned();
    let mut intercepted = intercept.is_some();
    // A source's intercept keeps what a source needs to map the request: its URL and headers.
    let source_request = intercept
        .as_ref()
        .and_then(|i| i.source.clone())
        .map(|name| {
            (
                name,
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
    if intercepted
        && source_request.is_none()
        && !bearer_matches(req.headers(), state.config.ingest_token.as_deref())
    {
        // The tracker's own authentication decides its answer, so the request still goes on;
        // but whc accepts no events the ingest token does not vouch for.
        Metrics::bump(&state.metrics.proxy_unauthorised);
        tracing::warn!(
            path = req.uri().path(),
            "intercepted request without the ingest token: forwarded, not matched"
        );
        intercepted = false;
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = match upstream_uri(&proxy.upstream, &parts.uri) {
        Ok(uri) => uri,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot build the upstream URL: {err}"),
            );
        }
    };
    strip_hop_by_hop(&mut parts.headers);

    // An intercepted body is read whole, so it can be both forwarded and matched. One over
    // the event size limit is still forwarded, streaming, but not matched.
    let (body, events_body) = if intercepted {
        match read_bounded(body, state.config.max_body, state.config.body_read_timeout).await {
            Ok(Bounded::Whole(bytes)) => (
                Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed(),
                Some(bytes),
            ),
            Ok(Bounded::Over(body)) => {
                Metrics::bump(&state.metrics.proxy_invalid);
                tracing::warn!(
                    limit = state.config.max_body,
                    "intercepted body over --max-body: forwarded, not matched"
                );
                (body.boxed(), None)
            }
            // The client stopped sending, or sends too slowly: there is nothing whole to forward.
            Err(err) => return error(err.status(), err.to_string()),
        }
    } else {
        (body.boxed(), None)
    };

    Metrics::bump(&state.metrics.proxy_forwarded);
    let sent = proxy.client.request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout(proxy.timeout, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            tracing::warn!(%err, "upstream request failed");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("the upstream did not answer: {err}"),
            );
        }
        Err(_) => {
            tracing::warn!(timeout = ?proxy.timeout, "upstream did not answer in time");
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream did not answer within {} (--upstream-timeout)",
                    crate::deliver::format_duration(proxy.timeout)
                ),
            );
        }
    };

    if let Some(bytes) = events_body
        && response.status().is_success()
    {
        // The upstream took it: accept it too. A body that is not an event is the tracker's
        // business, never a reason to change its answer.
        let input = match source_request {
            None => Input::Json(&bytes),
            Some((name, method, uri, headers)) => {
                match map_with_source(&state, &name, &method, &uri, headers, bytes.clone()) {
                    Some(event) => Input::Events(vec![event]),
                    None => return finish(response),
                }
            }
        };
        match state.ingest.accept(input).await {
            Ok(_) => {}
            Err(IngestFailure::Invalid(invalid)) => {
                Metrics::bump(&state.metrics.proxy_invalid);
                tracing::warn!(%invalid, "intercepted body is not an event; forwarded only");
            }
            // Counted by ingest as unstored events.
            Err(IngestFailure::Unavailable(err)) => {
                tracing::error!(%err, "intercepted events could not be stored");
            }
        }
    }

    finish(response)
}

/// The upstream's answer as the client gets it.
fn finish(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, body.boxed())
}

/// Maps an intercepted request with the named source (its secret checked); `None`, counted and
/// logged, when the source is gone from the rules, the secret is wrong or the request does not
/// map.
fn map_with_source(
    state: &State,
    name: &str,
    method: &hyper::Method,
    uri: &Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Option<crate::event::Event> {
    let rules = state.rules.current();
    let Some(source) = rules.source(name) else {
        Metrics::bump(&state.metrics.proxy_invalid);
        tracing::warn!(
            source = name,
            "intercept names a source the rules do not have; forwarded only"
        );
        return None;
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = crate::source::Request::new(method.as_str(), path_and_query, headers, body);
    if let Err(err) = source.authorise(&request, &*state.env, super::guard::tokens_match) {
        Metrics::bump(&state.metrics.proxy_unauthorised);
        tracing::warn!(source = name, %err, "intercepted request without the source's secret: forwarded, not matched");
        return None;
    }
    match source.map(&request) {
        Ok(crate::source::Mapped::Event(event)) => Some(*event),
        Ok(crate::source::Mapped::Ignored(ignored)) => {
            Metrics::bump(&state.metrics.events_ignored);
            tracing::debug!(source = name, reason = %ignored.reason(), "intercepted request ignored by its source; forwarded only");
            None
        }
        Err(err) => {
            Metrics::bump(&state.metrics.proxy_invalid);
            tracing::warn!(source = name, %err, "intercepted request does not map to an event; forwarded only");
            None
        }
    }
}
