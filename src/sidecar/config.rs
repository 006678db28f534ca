//! The sidecar's settings, with the defaults that let it run with no set-up. The defaults live
//! here once; `whc serve`'s flags show them from here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;

use crate::deliver::{Limits, RetryPolicy};

/// Where the tracker posts events by default.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8787));
/// Where the admin API listens by default: loopback only.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8788));
/// The data directory by default.
pub const DEFAULT_DATA: &str = ".whc";
/// The largest event body by default, in bytes.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Days delivered deliveries stay in the delivery log by default.
pub const DEFAULT_RETENTION_DAYS: u64 = 7;
/// Seconds shutdown waits for requests and attempts in flight by default.
pub const DEFAULT_GRACE_SECONDS: u64 = 10;
/// How long a client has to send a request's headers by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's body may take to arrive, from the end of its headers, by default.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection with no request in flight stays open by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections the events listener serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections the admin listener serves at once by default.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// How long the proxy waits for the upstream's answer by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// A route of the upstream whose bodies are events: `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intercept {
    /// The method.
    pub method: Method,
    /// The exact path.
    pub path: String,
    /// The source that maps the request to an event; without one the body is whc's JSON event.
    pub source: Option<String>,
}

/// Why `--intercept` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterceptError {
    /// Not two words.
    #[error("`{0}` is not `METHOD /path`")]
    Shape(String),
    /// The first word is not a method.
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    /// The path is not absolute.
    #[error("`{0}` must start with `/`")]
    Path(String),
    /// A third word that is not `source=NAME`.
    #[error("`{0}` is not `source=NAME`")]
    Source(String),
}

impl Intercept {
    /// whc's own event route, `POST /v1/events`: intercepted by default.
    pub fn events() -> Intercept {
        Intercept {
            method: Method::POST,
            path: "/v1/events".into(),
            source: None,
        }
    }

    /// Parses `"POST /path"`, or `"POST /path source=NAME"` for a tracker's own posts that a
    /// source maps.
    pub fn parse(text: &str) -> Result<Intercept, InterceptError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (method, path, source) = match words.as_slice() {
            [method, path] => (*method, *path, None),
            [method, path, source] => {
                let name = source
                    .strip_prefix("source=")
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| InterceptError::Source((*source).to_owned()))?;
                (*method, *path, Some(name.to_owned()))
            }
            _ => return Err(InterceptError::Shape(text.to_owned())),
        };
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| InterceptError::Method(method.to_owned()))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(InterceptError::Path(path.to_owned()));
        }
        Ok(Intercept {
            method,
            path: path.to_owned(),
            source,
        })
    }

    /// Whether a request with this method and path is intercepted.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

impl fmt::Display for Intercept {
    /// `POST /v1/events`, as [`Intercept::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match &self.source {
            Some(name) => write!(f, " source={name}"),
            None => Ok(()),
        }
    }
}

/// Proxy mode's settings: the sidecar stands in front of the tracker.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The tracker's own address; every request is forwarded there.
    pub upstream: hyper::Uri,
    /// The routes whose bodies are also matched as events.
    pub intercept: Vec<Intercept>,
    /// How long to wait for the upstream's answer (its status and headers).
    pub timeout: Duration,
}

impl ProxyConfig {
    /// Proxying to `upstream`, intercepting `POST /v1/events`, with the default timeout.
    pub fn new(upstream: hyper::Uri) -> ProxyConfig {
        ProxyConfig {
            upstream,
            intercept: vec![Intercept::events()],
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// Everything `whc serve` needs to know. Its `Debug` output names whether a token is set but
/// never shows one, and shows a store URL without its password.
#[derive(Clone)]
pub struct ServeConfig {
    /// The rules directory (or files).
    pub rules: Vec<PathBuf>,
    /// Where the tracker posts events (or, in proxy mode, where its clients connect).
    pub listen: SocketAddr,
    /// Where the admin API listens; loopback by default.
    pub admin_listen: SocketAddr,
    /// The data directory; the outbox lives in `outbox.db` inside it.
    pub data: PathBuf,
    /// Where the queue lives instead: a PostgreSQL URL shared by a fleet of sidecars; `None`
    /// (or `sqlite`) keeps the embedded SQLite outbox in [`ServeConfig::data`].
    pub store: Option<String>,
    /// How a shared store's claims are held (the lease).
    pub store_options: crate::store::StoreOptions,
    /// Proxy mode, when set: every request is forwarded to the tracker.
    pub proxy: Option<ProxyConfig>,
    /// When failed deliveries are tried again.
    pub retry: RetryPolicy,
    /// When set, event posts must carry `Authorization: Bearer <token>`.
    pub ingest_token: Option<String>,
    /// When set, admin requests (but health checks) must carry `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Largest accepted event body.
    pub max_body: usize,
    /// How long delivered deliveries are kept in the delivery log.
    pub retention: Duration,
    /// Concurrency limits of delivery attempts.
    pub limits: Limits,
    /// How long shutdown waits for requests and attempts in flight.
    pub grace: Duration,
    /// Quiet period after a rule file change before reloading.
    pub debounce: Duration,
    /// Start with deliveries paused (events are still accepted and stored).
    pub paused: bool,
    /// How long a client has to send a request's headers, from connecting (or from the first
    /// byte after an answer), on both listeners.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive once its headers are read, on both
    /// listeners (the proxy's forwarded bodies over `max_body` excepted); later, 408.
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight stays open, on both listeners.
    pub idle_timeout: Duration,
    /// Connections the events listener serves at once; more wait.
    pub max_connections: usize,
    /// Connections the admin listener serves at once; more wait.
    pub admin_max_connections: usize,
    /// PEM files of CA certificates trusted beside the Mozilla roots.
    pub ca_certs: Vec<PathBuf>,
}

/// How `Debug` shows a token: whether one is set, never its text.
fn secret(token: &Option<String>) -> &'static str {
    match token {
        Some(_) => "Some(<redacted>)",
        None => "None",
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ServeConfig {
            rules,
            listen,
            admin_listen,
            data,
            store,
            store_options,
            proxy,
            retry,
            ingest_token,
            admin_token,
            max_body,
            retention,
            limits,
            grace,
            debounce,
            paused,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            max_connections,
            admin_max_connections,
            ca_certs,
        } = self;
        f.debug_struct("ServeConfig")
            .field("rules", rules)
            .field("listen", listen)
            .field("admin_listen", admin_listen)
            .field("data", data)
            .field("store", &store.as_deref().map(crate::store::redact))
            .field("store_options", store_options)
            .field("proxy", proxy)
            .field("retry", retry)
            .field("ingest_token", &format_args!("{}", secret(ingest_token)))
            .field("admin_token", &format_args!("{}", secret(admin_token)))
            .field("max_body", max_body)
            .field("retention", retention)
            .field("limits", limits)
            .field("grace", grace)
            .field("debounce", debounce)
            .field("paused", paused)
            .field("header_read_timeout", header_read_timeout)
            .field("body_read_timeout", body_read_timeout)
            .field("idle_timeout", idle_timeout)
            .field("max_connections", max_connections)
            .field("admin_max_connections", admin_max_connections)
            .field("ca_certs", ca_certs)
            .finish()
    }
}

impl ServeConfig {
    /// The defaults: `rules/`, `127.0.0.1:8787`, admin on `127.0.0.1:8788`, data in `.whc/`.
    pub fn new(rules: PathBuf) -> ServeConfig {
        ServeConfig {
            rules: vec![rules],
            listen: DEFAULT_LISTEN,
            admin_listen: DEFAULT_ADMIN_LISTEN,
            data: PathBuf::from(DEFAULT_DATA),
            store: None,
            store_options: crate::store::StoreOptions::default(),
            proxy: None,
            retry: RetryPolicy::default(),
            ingest_token: None,
            admin_token: None,
            max_body: DEFAULT_MAX_BODY,
            retention: Duration::from_secs(DEFAULT_RETENTION_DAYS * 24 * 3600),
            limits: Limits::DEFAULT,
            grace: Duration::from_secs(DEFAULT_GRACE_SECONDS),
            debounce: super::DEFAULT_DEBOUNCE,
            paused: false,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            ca_certs: Vec::new(),
        }
    }

    /// What the events listener allows its connections.
    pub fn events_limits(&self) -> super::http::Limits {
        super::http::Limits {
            deadlines: self.deadlines(),
            max_connections: self.max_connections,
        }
    }

    /// What the admin listener allows its connections.
    pub fn admin_limits(&self) -> super::http::Limits {
        super::http::Limits {
            deadlines: self.deadlines(),
            max_connections: self.admin_max_connections,
        }
    }

    fn deadlines(&self) -> super::deadline::Deadlines {
        super::deadline::Deadlines {
            header_read: self.header_read_timeout,
            idle: self.idle_timeout,
        }
    }

    /// Attempts a delivery gets when its rule sets no `retries`: the first, plus one per step of
    /// the retry schedule.
    pub fn default_attempts(&self) -> u32 {
        self.retry.schedule.len() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intercepts_parse_and_print_back() {
        let route = Intercept::parse(" post  /in/tracker ").expect("valid");
        assert_eq!(route.to_string(), "POST /in/tracker");
        assert_eq!(
            Intercept::parse(&Intercept::events().to_string()),
            Ok(Intercept::events())
        );
        assert_eq!(
            Intercept::parse("POST"),
            Err(InterceptError::Shape("POST".into()))
        );
        assert_eq!(
            Intercept::parse("POST in"),
            Err(InterceptError::Path("in".into()))
        );
        assert!(matches!(
            Intercept::parse("P(ST /x"),
            Err(InterceptError::Method(_))
        ));
        let mapped = Intercept::parse("POST /api/conv source=voluum").expect("valid");
        assert_eq!(mapped.source.as_deref(), Some("voluum"));
        assert_eq!(mapped.to_string(), "POST /api/conv source=voluum");
        assert_eq!(
            Intercept::parse("POST /x voluum"),
            Err(InterceptError::Source("voluum".into()))
        );
        assert_eq!(
            Intercept::parse("POST /x source="),
            Err(InterceptError::Source("source=".into()))
        );
    }

    #[test]
    fn debug_output_never_shows_a_token_or_a_store_password() {
        let mut config = ServeConfig::new(PathBuf::from("rules"));
        config.ingest_token = Some("ingest-s3cret".into());
        config.admin_token = Some("admin-s3cret".into());
        config.store = Some("postgres://whc:db-s3cret@db:5432/whc".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ingest_token: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("postgres://whc:***@db:5432/whc"), "{shown}");
        config.admin_token = None;
        assert!(format!("{config:?}").contains("admin_token: None"));
    }
}
