//! The pooled HTTPS client that makes one attempt under one deadline.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::failure::{Target, describe};
use super::headers::masked;
use super::outcome::{Attempt, Outcome, Response, SendError};
use super::read::{BodyEnd, excerpt};
use super::retry_after::parse_retry_after;
use super::trust::{ExtraRoots, TrustError};

/// The longest URL a request can carry (the `http` crate's limit for a URI).
pub const MAX_URL_LEN: usize = 65_534;

/// How long an idle pooled connection is kept for the next attempt to the same target.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// One request to send: the rendered URL, its headers and body, and the attempt's deadline.
///
/// `Debug` masks credential-like headers (see [`masked`]), so logging a request leaks no token.
#[derive(Clone)]
pub struct OutgoingRequest {
    /// `GET` or `POST` (others are sent as given).
    pub method: Method,
    /// The rendered absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers in sending order, usually from [`AttemptHeaders::build`](super::AttemptHeaders::build).
    pub headers: Vec<(String, String)>,
    /// The body, `None` to send none.
    pub body: Option<Bytes>,
    /// One deadline for connecting, the response headers and reading the body.
    pub timeout: Duration,
}

impl fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &masked(&self.headers))
            .field("body", &self.body)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The HTTP client every delivery goes through: HTTPS by rustls with the Mozilla roots, plain
/// HTTP allowed, HTTP/1.1 and HTTP/2 (by ALPN), connections pooled per target.
///
/// Cloning is cheap and shares the pool. Redirects are never followed.
#[derive(Clone, Debug)]
pub struct Client {
    inner: HyperClient<Connector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// How every outgoing connection of whc is made (deliveries, the Test button, the proxy's
/// upstream): TCP without Nagle, then TLS by rustls with the Mozilla roots and any extra CA
/// certificates, plain HTTP allowed.
pub type Connector = HttpsConnector<HttpConnector>;

/// Which HTTP versions a [`Connector`] offers in TLS's ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only: the proxy forwards requests as its clients sent them.
    Http1,
    /// HTTP/1.1 and HTTP/2, as the target prefers: deliveries and test sends.
    Http1And2,
}

/// The one pooled client builder, for any request body type: connections through a
/// [`Connector`] trusting the Mozilla roots and `extra`, idle ones kept 90 s.
pub fn pooled<B>(
    extra: &ExtraRoots,
    protocols: Protocols,
) -> Result<HyperClient<Connector, B>, TrustError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector(extra, protocols)?))
}

/// The connector: trusts the Mozilla roots and `extra`.
fn connector(extra: &ExtraRoots, protocols: Protocols) -> Result<Connector, TrustError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false); // the TLS layer above takes https:// URLs
    http.set_nodelay(true); // webhook requests are small: don't wait to fill packets
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(extra.client_config()?)
        .https_or_http()
        .enable_http1();
    Ok(match protocols {
        Protocols::Http1 => tls.wrap_connector(http),
        Protocols::Http1And2 => tls.enable_http2().wrap_connector(http),
    })
}

impl Client {
    /// A client with its own connection pool, trusting the Mozilla roots.
    pub fn new() -> Self {
        // The Mozilla roots alone always make a valid TLS configuration with ring.
        Self::with_roots(&ExtraRoots::default()).expect("ring supports TLS 1.2 and 1.3")
    }

    /// A client that also trusts these CA certificates (endpoints behind a private CA).
    pub fn with_roots(extra: &ExtraRoots) -> Result<Self, TrustError> {
        Ok(Self {
            inner: pooled(extra, Protocols::Http1And2)?,
        })
    }

    /// Makes one attempt. Never panics and never fails: every problem is an [`Outcome::Failed`].
    ///
    /// One deadline, `req.timeout`, covers connecting, the status and headers, and reading the
    /// body's excerpt. No status by then is a timeout. Once the status came it is the answer: a
    /// body still arriving at the deadline is cut and noted ([`BodyEnd::StillArriving`]), not
    /// turned into a timeout, since the target did answer.
    pub async fn send(&self, req: OutgoingRequest) -> Attempt {
        let started = Instant::now();
        let timeout = req.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = match build(req) {
            Err(error) => Outcome::Failed(error),
            Ok((request, target)) => self.exchange(request, &target, deadline, timeout).await,
        };
        Attempt {
            outcome,
            elapsed: started.elapsed(),
        }
    }

    /// Sends the request and reads the answer's status, headers and excerpt by `deadline`.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        target: &Target,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Outcome {
        let response = match tokio::time::timeout_at(deadline, self.inner.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Outcome::Failed(describe(&error, target)),
            Err(_) => return Outcome::Failed(SendError::Timeout(timeout)),
        };
        let (parts, body) = response.into_parts();
        let retry_after = parts.headers.get(RETRY_AFTER).and_then(parse_retry_after);
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // Dropped unread past the excerpt: the connection closes instead of going back to the
        // pool, which is what a body we will not read should cost.
        let read = excerpt(body, deadline).await;
        let body = match (read.end, declared) {
            (BodyEnd::BrokeOff(_), Some(declared)) => BodyEnd::BrokeOff(format!(
                "the body ended after {} of the {declared} bytes its Content-Length declared",
                read.received
            )),
            (BodyEnd::BrokeOff(reason), None) => {
                BodyEnd::BrokeOff(format!("the body broke off: {reason}"))
            }
            (end, _) => end,
        };
        Outcome::Response(Response {
            status: parts.status.as_u16(),
            headers,
            excerpt: read.bytes,
            body,
            retry_after,
        })
    }
}

/// The hyper request and where it goes, or why it cannot be sent.
fn build(req: OutgoingRequest) -> Result<(Request<Full<Bytes>>, Target), SendError> {
    let invalid = SendError::InvalidRequest;
    // Token values come from visitors and can make a URL longer than HTTP/1 request lines
    // allow (hyper's limit); say so in a line, without echoing the whole URL.
    if req.url.len() > MAX_URL_LEN {
        return Err(invalid(format!(
            "the rendered URL is {} bytes; at most {MAX_URL_LEN} can be sent",
            req.url.len()
        )));
    }
    let uri: Uri = req
        .url
        .parse()
        .map_err(|e| invalid(format!("`{}` is not a URL: {e}", req.url)))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        Some(other) => return Err(invalid(format!("unsupported scheme `{other}` in {uri}"))),
        None => return Err(invalid(format!("`{}` is not an absolute URL", req.url))),
    };
    let host = match uri.host() {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => return Err(invalid(format!("no host in {uri}"))),
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let target = Target {
        address: format!("{host}:{port}"),
        host,
    };
    let mut builder = Request::builder().method(req.method).uri(uri);
    for (name, value) in &req.headers {
        // Checked one by one so the message names the header; CR/LF can never get through.
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(req.body.unwrap_or_default()))
        .map_err(|e| invalid(e.to_string()))?;
    Ok((request, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let request = OutgoingRequest {
            method: Method::POST,
            url: "https://example.com/".into(),
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            body: None,
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Bearer ***"), "{shown}");
    }
}
