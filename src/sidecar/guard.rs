//! Who may use the listeners: bearer tokens compared in constant time (ingest and admin), and
//! the admin API's guard against other web pages: its origin and Host checks, its optional
//! token, and read-only when it listens off loopback without one.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{AUTHORIZATION, HOST, HeaderValue, ORIGIN, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::http::{Body, error};

/// Admin routes that answer without the token: health checks, which probes call bare (and the
/// console's static files, which hold no data).
const OPEN_ROUTES: [&str; 2] = ["/healthz", "/readyz"];

/// The checks every admin request passes before any route sees it.
#[derive(Debug)]
pub struct AdminGuard {
    token: Option<String>,
    /// Listening off loopback: anyone on the network can reach it.
    exposed: bool,
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Sent by a page of another site (`Origin` is not the admin listener's own).
    Origin(String),
    /// Addressed to a name other than loopback's (DNS rebinding).
    Host(String),
    /// No or another admin token.
    Token,
    /// A state-changing request while listening off loopback without a token.
    ReadOnly,
}

impl AdminGuard {
    /// The guard of an admin listener bound to `listen`.
    pub fn new(token: Option<String>, listen: SocketAddr) -> AdminGuard {
        AdminGuard {
            token,
            exposed: !listen.ip().is_loopback(),
        }
    }

    /// Logs, at start, that the admin API can be reached from other machines.
    pub fn warn_if_exposed(&self, addr: SocketAddr) {
        if !self.exposed {
            return;
        }
        if self.token.is_some() {
            tracing::warn!(%addr, "the admin API listens off loopback; --admin-token guards it");
        } else {
            tracing::warn!(
                %addr,
                "the admin API listens off loopback without --admin-token: it is read-only \
                 (state-changing requests are refused); set --admin-token, or listen on loopback"
            );
        }
    }

    /// `Ok` when the request may go on to the admin routes; `local` is the address the client
    /// connected to.
    pub fn check<B>(&self, req: &Request<B>, local: SocketAddr) -> Result<(), Refusal> {
        let headers = req.headers();
        // A browser names the page that sent a request; only the admin API's own pages (such
        // as a console it serves) may use it.
        if let Some(origin) = headers.get(ORIGIN)
            && !own_origin(origin, local)
        {
            return Err(Refusal::Origin(lossy(origin)));
        }
        // A page of a name that resolves to loopback (DNS rebinding) has that name as its Host.
        // No Host at all is no browser (HTTP/1.0 tools), so nothing to defend against.
        let host = headers
            .get(HOST)
            .map(lossy)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
        if let Some(host) = host
            && !own_host(&host, local)
        {
            return Err(Refusal::Host(host));
        }
        let path = req.uri().path();
        let open = matches!(*req.method(), Method::GET | Method::HEAD)
            && (OPEN_ROUTES.contains(&path) || super::console::is_asset(path));
        if !open && !bearer_matches(headers, self.token.as_deref()) {
            return Err(Refusal::Token);
        }
        // Explaining an event is a POST only to carry the event: it changes nothing.
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            || (*req.method() == Method::POST && path == "/v1/explain");
        if self.exposed && self.token.is_none() && !safe {
            return Err(Refusal::ReadOnly);
        }
        Ok(())
    }
}

impl Refusal {
    /// The answer: `403` or, for the token, `401` with `WWW-Authenticate: Bearer`.
    pub fn answer(&self) -> Response<Body> {
        match self {
            Refusal::Origin(origin) => error(
                StatusCode::FORBIDDEN,
                format!("requests from pages of {origin} are refused by the admin API"),
            ),
            Refusal::Host(host) => error(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is refused: the admin API answers to loopback names and \
                     addresses and to its own IP address"
                ),
            ),
            Refusal::Token => {
                let mut res = error(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong `Authorization: Bearer` admin token",
                );
                res.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                res
            }
            Refusal::ReadOnly => error(
                StatusCode::FORBIDDEN,
                "the admin API listens off loopback without --admin-token, so it is read-only",
            ),
        }
    }
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Whether `Origin` is the admin listener's own: `http://` and a loopback name or address, or
/// the address connected to, with the listener's port.
fn own_origin(origin: &HeaderValue, local: SocketAddr) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some(authority) = origin
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &origin[7..])
    else {
        return false;
    };
    let (name, port) = split_port(authority);
    // An origin without a port is on port 80.
    port.unwrap_or(Some(80)) == Some(local.port()) && own_name(name, local)
}

/// Whether a `Host` names this listener: a loopback name or address, or the address connected
/// to (any port: a port forward may change it, and a rebinding page cannot pick the name).
fn own_host(host: &str, local: SocketAddr) -> bool {
    let (name, port) = split_port(host);
    port != Some(None) && own_name(name, local)
}

fn own_name(name: &str, local: SocketAddr) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let ip = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ip.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback() || ip == local.ip())
}

/// `name[:port]` apart: `None` for no port, `Some(None)` for one that is not a number.
fn split_port(authority: &str) -> (&str, Option<Option<u16>>) {
    let colon = if authority.starts_with('[') {
        // `[::1]:8788`: the colon after the bracket.
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match colon {
        Some(i) => (&authority[..i], Some(authority[i + 1..].parse().ok())),
        None => (authority, None),
    }
}

/// Whether two tokens are equal, in time that depends on neither's content nor length: both
/// are hashed to fixed-size digests first, and every byte of those is compared.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme's name in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Whether the request carries `Authorization: Bearer <expected>`; always true when no token
/// is required.
pub fn bearer_matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    bearer(headers).is_some_and(|given| tokens_match(given, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:8788";

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap()
    }

    fn check(guard: &AdminGuard, req: &Request<()>) -> Result<(), Refusal> {
        guard.check(req, LOCAL.parse().unwrap())
    }

    #[test]
    fn only_the_listeners_own_origin_passes() {
        let guard = AdminGuard::new(None, LOCAL.parse().unwrap());
        for origin in [
            "http://127.0.0.1:8788",
            "http://localhost:8788",
            "HTTP://LocalHost:8788",
            "http://[::1]:8788",
        ] {
            let req = request(Method::POST, "/v1/deliveries/pause", &[("origin", origin)]);
            assert_eq!(check(&guard, &req), Ok(()), "{origin}");
        }
        for origin in [
            "http://evil.example:8788",
            "https://127.0.0.1:8788",
            "http://127.0.0.1:8789",
            "http://127.0.0.1",
            "http://localhost.evil.example:8788",
            "null",
        ] {
            let req = request(Method::POST, "/v1/deliveries/pause", &[("origin", origin)]);
            assert_eq!(
                check(&guard, &req),
                Err(Refusal::Origin(origin.into())),
                "{origin}"
            );
        }
    }

    #[test]
    fn only_loopback_names_and_the_local_address_are_hosts() {
        let guard = AdminGuard::new(None, "0.0.0.0:8788".parse().unwrap());
        let local: SocketAddr = "10.1.2.3:8788".parse().unwrap();
        for host in [
            "127.0.0.1:8788",
            "localhost",
            "localhost.:8788",
            "[::1]:8788",
            "127.0.0.2:1",
            "10.1.2.3:8788",
        ] {
            let req = request(Method::GET, "/metrics", &[("host", host)]);
            assert_eq!(guard.check(&req, local), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8788",
            "evil.example",
            "10.1.2.4:8788",
            "127.0.0.1:port",
            "[::1",
        ] {
            let req = request(Method::GET, "/metrics", &[("host", host)]);
            assert_eq!(
                guard.check(&req, local),
                Err(Refusal::Host(host.into())),
                "{host}"
            );
        }
    }

    #[test]
    fn a_token_guards_everything_but_health() {
        let guard = AdminGuard::new(Some("adm".into()), LOCAL.parse().unwrap());
        let req = request(Method::GET, "/healthz", &[]);
        assert_eq!(check(&guard, &req), Ok(()));
        let req = request(Method::POST, "/healthz", &[]);
        assert_eq!(check(&guard, &req), Err(Refusal::Token));
        // The console's files hold no data; the page asks for the token.
        for path in ["/", "/console.js", "/console.css"] {
            assert_eq!(check(&guard, &request(Method::GET, path, &[])), Ok(()));
        }
        let req = request(Method::GET, "/v1/examples", &[]);
        assert_eq!(check(&guard, &req), Err(Refusal::Token));
        for auth in [None, Some("Bearer ad"), Some("Bearer admin"), Some("adm")] {
            let headers: Vec<_> = auth.iter().map(|a| ("authorization", *a)).collect();
            let req = request(Method::GET, "/v1/deliveries", &headers);
            assert_eq!(check(&guard, &req), Err(Refusal::Token), "{auth:?}");
        }
        let req = request(
            Method::POST,
            "/v1/deliveries/pause",
            &[("authorization", "Bearer adm")],
        );
        assert_eq!(check(&guard, &req), Ok(()));
    }

    #[test]
    fn off_loopback_without_a_token_is_read_only() {
        let guard = AdminGuard::new(None, "0.0.0.0:8788".parse().unwrap());
        let req = request(Method::GET, "/v1/deliveries", &[]);
        assert_eq!(check(&guard, &req), Ok(()));
        let req = request(Method::POST, "/v1/deliveries/pause", &[]);
        assert_eq!(check(&guard, &req), Err(Refusal::ReadOnly));
        let req = request(Method::POST, "/v1/explain", &[]);
        assert_eq!(check(&guard, &req), Ok(()), "explaining changes nothing");
        let guard = AdminGuard::new(Some("adm".into()), "0.0.0.0:8788".parse().unwrap());
        let req = request(
            Method::POST,
            "/v1/deliveries/pause",
            &[("authorization", "Bearer adm")],
        );
        assert_eq!(check(&guard, &req), Ok(()));
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        for other in [&b""[..], b"s3cre", b"s3cret0", b"S3cret", b"t3cret"] {
            assert!(!tokens_match(other, b"s3cret"), "{other:?}");
        }
    }

    #[test]
    fn bearer_reads_the_scheme_in_any_case() {
        assert_eq!(bearer(&with_auth("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with_auth("BEARER abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with_auth("Basic abc")), None);
        assert_eq!(bearer(&with_auth("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert!(bearer_matches(&HeaderMap::new(), None));
        assert!(!bearer_matches(&HeaderMap::new(), Some("abc")));
        assert!(bearer_matches(&with_auth("Bearer abc"), Some("abc")));
    }
}
