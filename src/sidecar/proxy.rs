//! Proxy mode: every request goes to the upstream tracker unchanged; bodies on intercepted
//! routes are also matched and fanned out once the upstream accepted them.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::State;
use super::http::{Body, error};
use super::ingest::{Bounded, read_bounded};
use super::metrics::Metrics;

/// The client that talks to the upstream.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// A pooled HTTP/HTTPS client for the upstream.
pub fn upstream_client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // ring named explicitly, as in the delivery client; it supports TLS 1.2 and 1.3.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring supports TLS 1.2 and 1.3")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
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

fn upstream_uri(base: &Uri, original: &Uri) -> Result<Uri, String> {
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = original.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{authority}{prefix}{path_and_query}")
        .parse()
        .map_err(|e| format!("cannot build the upstream URL: {e}"))
}

/// Forwards one request and streams the upstream's answer back.
pub async fn forward(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let Some(upstream) = &state.upstream else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "proxy mode without an upstream",
        );
    };
    let Some(base) = &state.config.upstream else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "proxy mode without an upstream",
        );
    };
    let intercepted = state
        .config
        .intercept
        .iter()
        .any(|i| i.method == req.method() && i.path == req.uri().path());
    let (mut parts, body) = req.into_parts();
    parts.uri = match upstream_uri(base, &parts.uri) {
        Ok(uri) => uri,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
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
    let response = match upstream.request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(%err, "upstream request failed");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("the upstream did not answer: {err}"),
            );
        }
    };

    if let Some(bytes) = events_body
        && response.status().is_success()
    {
        // The upstream took it: match it too. A body that is not an event is the tracker's
        // business, never a reason to change its answer.
        if let Err(res) = super::api::accept(&state, &bytes).await {
            Metrics::bump(&state.metrics.proxy_invalid);
            tracing::warn!(status = %res.status(), "intercepted body was not stored as events");
        }
    }

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, body.boxed())
}
