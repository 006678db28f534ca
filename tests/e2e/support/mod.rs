//! What every end-to-end test needs: the recording target server, the sidecar started
//! in-process on temporary directories, an HTTP client and polling helpers.

pub mod browser;
pub mod signals;
mod target;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tempfile::TempDir;
use whc::deliver::RetryPolicy;
use whc::sidecar::{Running, ServeConfig};

pub use target::{Reply, Target, Wire};

/// The events and admin addresses a `whc serve` child prints on its first line
/// (`whc serve: events on URL, admin on URL`); its stdout must be piped.
pub async fn listening_urls(child: &mut std::process::Child) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader thread")
    .expect("read the first line");
    let (events, admin) = line
        .trim()
        .strip_prefix("whc serve: events on ")
        .and_then(|rest| rest.split_once(", admin on "))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    (events.to_owned(), admin.to_owned())
}

/// How long anything may take to happen before a test fails; generous for loaded machines.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One process-wide clock of ticks, so that tests can order what happened on different
/// servers without reading wall-clock time.
static TICKS: AtomicU64 = AtomicU64::new(1);

/// The next tick.
pub fn tick() -> u64 {
    TICKS.fetch_add(1, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP client (hyper-util's pooled client).
#[derive(Clone)]
pub struct Http {
    client: LegacyClient<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A new client.
    pub fn new() -> Http {
        Http {
            client: LegacyClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends one request; `Err` when there was no answer (connection refused, reset, ...).
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends one request and expects an answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{url}: no answer: {e}"))
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Answer {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(&self, url: &str, body: impl Into<Bytes>) -> Answer {
        self.send(
            Method::POST,
            url,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Polling
//
// For conditions nothing notifies about (the admin API's view of a delivery, the live rules'
// reload counters, a task's shared state). The sleeps below are the poll interval of a
// bounded wait on the condition itself, not a guess at how long something takes. A target's
// requests have their own waker: `Target::wait`.

/// Polls `cond` every few milliseconds until it holds; fails the test after [`PATIENCE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`] for a condition that has to be fetched; returns the value that held.
pub async fn wait_until_async<T, F, Fut>(what: &str, mut fetch: F, cond: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
    T: std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        let value = fetch().await;
        if cond(&value) {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "timed out waiting for {what}; last value: {value:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The sidecar

/// A rule file that sends one webhook; `extra` goes inside the block.
pub fn webhook(name: &str, on: &str, when: &str, post_url: &str, extra: &str) -> String {
    let when = if when.is_empty() {
        String::new()
    } else {
        format!("    when {when}\n")
    };
    format!("webhook {name} {{\n    on {on}\n{when}    post \"{post_url}\"\n{extra}}}\n")
}

/// Writes like an editor saves: a temporary file beside the target, renamed over it.
pub fn save(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp~"));
    std::fs::write(&tmp, text).expect("write temp rule file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename rule file into place");
}

/// The settings tests start from: ephemeral ports, retries after 50 ms without jitter.
pub fn test_config(rules: &Path, data: &Path) -> ServeConfig {
    let mut config = ServeConfig::new(rules.to_path_buf());
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.data = data.to_path_buf();
    config.retry =
        RetryPolicy::try_new(vec![Duration::from_millis(50)], 0.0).expect("retry policy");
    config.grace = Duration::from_secs(2);
    config.debounce = Duration::from_millis(30);
    config
}

/// A sidecar running in this process on temporary rules and data directories.
pub struct Sidecar {
    running: Option<Running>,
    /// The rules directory.
    pub rules: TempDir,
    /// The data directory (kept until the sidecar is dropped).
    _data: TempDir,
    /// The client tests use.
    pub http: Http,
    config: ServeConfig,
    env: HashMap<String, String>,
    /// Its rules watcher reloads on SIGHUP: keeps the SIGHUP test out while it runs.
    _signals: signals::SignalGuard,
}

/// What is left of a stopped sidecar: enough to start one on its data.
pub struct Stopped {
    /// Its settings (the data directory included).
    pub config: ServeConfig,
    /// Its environment.
    pub env: HashMap<String, String>,
    _data: TempDir,
    _rules: TempDir,
}

/// A change to the settings before start.
type Tweak = Box<dyn FnOnce(&mut ServeConfig)>;

/// Builds a [`Sidecar`].
pub struct SidecarBuilder {
    files: Vec<(String, String)>,
    env: HashMap<String, String>,
    tweak: Vec<Tweak>,
}

impl Sidecar {
    /// A builder with no rule files.
    pub fn builder() -> SidecarBuilder {
        SidecarBuilder {
            files: Vec::new(),
            env: HashMap::new(),
            tweak: Vec::new(),
        }
    }

    /// Starts with one rule file.
    pub async fn start(rules: &str) -> Sidecar {
        Sidecar::builder().file("main.whc", rules).start().await
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("sidecar running")
    }

    /// Makes every event insert fail from now on, as a full disk would: a trigger in the
    /// outbox aborts it, so accepting events fails with a store error.
    pub fn break_store(&self) {
        let conn = rusqlite::Connection::open(
            self.running().state.outbox.path().expect("a SQLite outbox"),
        )
        .expect("open");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        conn.execute_batch(
            "CREATE TRIGGER whc_test_store_broken BEFORE INSERT ON events
             BEGIN SELECT RAISE(ABORT, 'the store is broken (test)'); END;",
        )
        .expect("install the failing trigger");
    }

    /// Makes every attempt's record fail from now on, as a full disk would: a trigger aborts
    /// each update of a delivery, while reads and new events still work.
    pub fn break_records(&self) {
        self.store_sql(
            "CREATE TRIGGER whc_test_records_broken BEFORE UPDATE ON deliveries
             BEGIN SELECT RAISE(ABORT, 'the disk is full (test)'); END;",
        );
    }

    /// Undoes [`Sidecar::break_store`] and [`Sidecar::break_records`].
    pub fn mend_store(&self) {
        self.store_sql(
            "DROP TRIGGER IF EXISTS whc_test_store_broken;
             DROP TRIGGER IF EXISTS whc_test_records_broken;",
        );
    }

    /// Runs SQL on the outbox from a connection of its own, as an operator would.
    fn store_sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(
            self.running().state.outbox.path().expect("a SQLite outbox"),
        )
        .expect("open");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn.execute_batch(sql).expect("run SQL on the outbox");
    }

    /// The events listener's URL for `path`.
    pub fn events_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().addr)
    }

    /// The admin listener's URL for `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().admin_addr)
    }

    /// `POST /v1/events`.
    pub async fn post_events(&self, body: impl Into<Bytes>) -> Answer {
        self.http
            .post_json(&self.events_url("/v1/events"), body)
            .await
    }

    /// `POST /v1/events`, expecting `202`; returns the answer's JSON.
    pub async fn accept(&self, body: impl Into<Bytes>) -> Value {
        let answer = self.post_events(body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "event refused: {}",
            answer.text()
        );
        answer.json()
    }

    /// The `Authorization` header of the admin token, when the sidecar has one.
    fn admin_auth(&self) -> Vec<(&str, String)> {
        self.config
            .admin_token
            .iter()
            .map(|token| ("authorization", format!("Bearer {token}")))
            .collect()
    }

    /// `GET` on the admin API (with its token, if any), expecting `200` and JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        let auth = self.admin_auth();
        let headers: Vec<_> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = self
            .http
            .send(Method::GET, &self.admin_url(path), &headers, Bytes::new())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        answer.json()
    }

    /// `POST` on the admin API (with its token, if any).
    pub async fn admin_post(&self, path: &str) -> Answer {
        let auth = self.admin_auth();
        let headers: Vec<_> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.http
            .send(Method::POST, &self.admin_url(path), &headers, Bytes::new())
            .await
    }

    /// `GET /v1/deliveries?QUERY`, the list.
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let json = self.admin_json(&format!("/v1/deliveries?{query}")).await;
        json["deliveries"]
            .as_array()
            .expect("deliveries is an array")
            .clone()
    }

    /// One delivery from the admin API.
    pub async fn delivery(&self, id: &str) -> Value {
        self.admin_json(&format!("/v1/deliveries/{id}")).await
    }

    /// Waits until the delivery has this status; returns it.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        wait_until_async(
            &format!("delivery {id} to be {status}"),
            || self.delivery(id),
            |d| d["status"] == status,
        )
        .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let answer = self.http.get(&self.admin_url("/metrics")).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.text()
    }

    /// Stops the sidecar and asserts that no background task failed.
    pub async fn shutdown(mut self) {
        let running = self.running.take().expect("sidecar running");
        running
            .shutdown()
            .await
            .expect("the sidecar's tasks ended cleanly");
    }

    /// Stops the sidecar cleanly and hands back its settings and environment, with its data
    /// directory kept, for a test that starts on that data itself.
    pub async fn stop(mut self) -> Stopped {
        let running = self.running.take().expect("sidecar running");
        running
            .shutdown()
            .await
            .expect("the sidecar's tasks ended cleanly");
        Stopped {
            config: self.config,
            env: self.env,
            _data: self._data,
            _rules: self.rules,
        }
    }

    /// Stops the sidecar cleanly and starts it again on the same rules and data (on new
    /// ports).
    pub async fn restart(mut self) -> Sidecar {
        let running = self.running.take().expect("sidecar running");
        running
            .shutdown()
            .await
            .expect("the sidecar's tasks ended cleanly");
        let running = whc::sidecar::start(self.config.clone(), Arc::new(self.env.clone()))
            .await
            .unwrap_or_else(|e| panic!("sidecar did not restart: {e}"));
        self.running = Some(running);
        self
    }
}

impl SidecarBuilder {
    /// Adds a rule file.
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Sets a variable of the environment the sidecar reads secrets from.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Changes the settings.
    pub fn config(mut self, tweak: impl FnOnce(&mut ServeConfig) + 'static) -> Self {
        self.tweak.push(Box::new(tweak));
        self
    }

    /// Writes the files and starts the sidecar.
    pub async fn start(self) -> Sidecar {
        let rules = TempDir::new().expect("rules dir");
        let data = TempDir::new().expect("data dir");
        for (name, text) in &self.files {
            std::fs::write(rules.path().join(name), text).expect("write rule file");
        }
        let mut config = test_config(rules.path(), data.path());
        for tweak in self.tweak {
            tweak(&mut config);
        }
        let signals = signals::watcher().await;
        let running = whc::sidecar::start(config.clone(), Arc::new(self.env.clone()))
            .await
            .unwrap_or_else(|e| panic!("sidecar did not start: {e}"));
        Sidecar {
            running: Some(running),
            rules,
            _data: data,
            http: Http::new(),
            config,
            env: self.env,
            _signals: signals,
        }
    }
}

/// A conversion event with this id (and the fields most rules read).
pub fn conversion(id: &str) -> Value {
    serde_json::json!({
        "id": id,
        "type": "conversion",
        "transaction": format!("txn-{id}"),
        "revenue": "79.90",
        "visitor": "v-1",
        "firstClick": { "utm_source": "facebook", "country": "CA" },
        "lastClick": { "utm_source": "google", "country": "US" },
        "occurredAt": "2026-11-27T10:15:00Z"
    })
}

/// The value of one sample in Prometheus text, such as `whc_events_total{result="rejected"}`.
pub fn counter(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{sample}` in:\n{metrics}"))
        .parse()
        .expect("a number")
}
