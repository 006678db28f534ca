//! The sidecar's settings, with the defaults that let it run with no set-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;

use crate::deliver::RetryPolicy;

use super::dispatch::Limits;

/// A route of the upstream whose bodies are events: `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intercept {
    /// The method.
    pub method: Method,
    /// The exact path.
    pub path: String,
}

impl Intercept {
    /// Parses `"POST /path"`.
    pub fn parse(text: &str) -> Result<Intercept, String> {
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("`{text}` is not `METHOD /path`"))?;
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("`{method}` is not an HTTP method"))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(format!("`{path}` must start with `/`"));
        }
        Ok(Intercept {
            method,
            path: path.to_owned(),
        })
    }
}

/// Everything `whc serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The rules directory (or files).
    pub rules: Vec<PathBuf>,
    /// Where the tracker posts events (or, in proxy mode, where its clients connect).
    pub listen: SocketAddr,
    /// Where the admin API listens; loopback by default.
    pub admin_listen: SocketAddr,
    /// The data directory; the outbox lives in `outbox.db` inside it.
    pub data: PathBuf,
    /// Proxy mode: the tracker's own address, every request is forwarded there.
    pub upstream: Option<hyper::Uri>,
    /// In proxy mode, the routes whose bodies are also matched as events.
    pub intercept: Vec<Intercept>,
    /// When failed deliveries are tried again.
    pub retry: RetryPolicy,
    /// When set, event posts must carry `Authorization: Bearer <token>`.
    pub ingest_token: Option<String>,
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
    /// PEM files of CA certificates trusted beside the Mozilla roots.
    pub ca_certs: Vec<PathBuf>,
}

impl ServeConfig {
    /// The defaults: `rules/`, `127.0.0.1:8787`, admin on `127.0.0.1:8788`, data in `.whc/`.
    pub fn new(rules: PathBuf) -> ServeConfig {
        ServeConfig {
            rules: vec![rules],
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8788)),
            data: PathBuf::from(".whc"),
            upstream: None,
            intercept: vec![Intercept {
                method: Method::POST,
                path: "/v1/events".into(),
            }],
            retry: RetryPolicy::default(),
            ingest_token: None,
            max_body: 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            limits: Limits::default(),
            grace: Duration::from_secs(10),
            debounce: super::DEFAULT_DEBOUNCE,
            paused: false,
            ca_certs: Vec::new(),
        }
    }

    /// Attempts a delivery gets when its rule sets no `retries`: the first, plus one per step of
    /// the retry schedule.
    pub fn default_attempts(&self) -> u32 {
        self.retry.schedule.len() as u32 + 1
    }
}
