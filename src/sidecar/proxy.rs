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

    fn intercepts(&self, req: &Request<Incoming>) -> bool {
        self.intercept
            .iter()
            .any(|i| i.matches(req.method(), req.uri().path()))
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
    let mut intercepted = proxy.intercepts(&req);
    if intercepted && !bearer_matches(req.headers(), state.config.ingest_token.as_deref()) {
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
        match read_bounded(body, state.config.max_body).await {
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
            // The client stopped sending: there is nothing whole to forward.
            Err(err) => return error(StatusCode::BAD_REQUEST, err.to_string()),
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
        match state.ingest.accept(Input::Json(&bytes)).await {
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

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, body.boxed())
}
