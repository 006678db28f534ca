//! `whc serve`: run the sidecar until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::deliver::{Limits, RetryPolicy, format_duration, parse_duration};
use crate::lang::ProcessEnv;
use crate::sidecar::config::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_MAX_CONNECTIONS, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DATA,
    DEFAULT_GRACE_SECONDS, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY, DEFAULT_MAX_CONNECTIONS, DEFAULT_RETENTION_DAYS, DEFAULT_UPSTREAM_TIMEOUT,
};
use crate::sidecar::{self, Intercept, ProxyConfig, ServeConfig};

use super::default_rules;
use super::log::{MakeQuietStderr, stderr_line, stdout_line};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line.
    Json,
}

/// A duration flag, written `30s`, `500ms`, `2m` (see [`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait(Duration);

impl std::str::FromStr for Wait {
    type Err = crate::deliver::RetryPolicyError;

    fn from_str(text: &str) -> Result<Wait, Self::Err> {
        parse_duration(text.trim()).map(Wait)
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// Arguments of `whc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The rules directory, watched and reloaded on change.
    #[arg(long, default_value_os_t = default_rules())]
    rules: PathBuf,
    /// Where the tracker posts events (or, with --upstream, where its clients connect).
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the admin API listens.
    #[arg(long, default_value_t = DEFAULT_ADMIN_LISTEN)]
    admin_listen: SocketAddr,
    /// The data directory; the outbox is `outbox.db` inside it.
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Where the queue lives: `sqlite` (the default, `outbox.db` in --data) or a PostgreSQL
    /// URL (postgres://user:password@host:port/db) shared by a fleet of sidecars.
    #[arg(long, env = "WHC_STORE", hide_env_values = true, value_parser = parse_store)]
    store: Option<String>,
    /// With a PostgreSQL store, how long a claim on a delivery holds before another sidecar
    /// takes it over (a sidecar that died holds its claims this long).
    #[arg(long, default_value_t = Wait(crate::store::DEFAULT_CLAIM_LEASE))]
    claim_lease: Wait,
    /// Proxy mode: forward every request to this URL (the tracker).
    #[arg(long)]
    upstream: Option<hyper::Uri>,
    /// In proxy mode, a route whose bodies are events, as "METHOD /path" (repeatable); with
    /// "METHOD /path source=NAME" that source maps the tracker's own requests there.
    #[arg(long, value_parser = Intercept::parse, default_values_t = [Intercept::events()])]
    intercept: Vec<Intercept>,
    /// In proxy mode, how long to wait for the upstream's answer before answering 504.
    #[arg(long, default_value_t = Wait(DEFAULT_UPSTREAM_TIMEOUT))]
    upstream_timeout: Wait,
    /// Waits before each retry, e.g. "10s,30s,2m,10m,30m,1h,3h,6h" (the default).
    #[arg(long, value_parser = |s: &str| RetryPolicy::parse(s).map_err(|e| e.to_string()))]
    retry_schedule: Option<RetryPolicy>,
    /// Require `Authorization: Bearer TOKEN` on event posts.
    #[arg(long, env = "WHC_INGEST_TOKEN", hide_env_values = true)]
    ingest_token: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every admin request but `GET /healthz`; needed
    /// for state-changing requests when --admin-listen is off loopback.
    #[arg(long, env = "WHC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest event body, in bytes: a larger post gets 413; in proxy mode a larger
    /// intercepted body is forwarded but not matched.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Days delivered deliveries stay in the delivery log.
    #[arg(long, default_value_t = DEFAULT_RETENTION_DAYS)]
    retention_days: u64,
    /// Delivery attempts in flight, overall.
    #[arg(long, default_value_t = Limits::DEFAULT.overall)]
    concurrency: usize,
    /// Delivery attempts in flight to one endpoint.
    #[arg(long, default_value_t = Limits::DEFAULT.per_endpoint)]
    per_endpoint: usize,
    /// Seconds shutdown waits for requests and attempts in flight.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECONDS)]
    grace_seconds: u64,
    /// On both listeners, how long a client has to send a request's headers (from connecting,
    /// or from the first byte after an answer) before the connection is closed.
    #[arg(long, default_value_t = Wait(DEFAULT_HEADER_READ_TIMEOUT))]
    header_read_timeout: Wait,
    /// On both listeners, how long a request's body may take to arrive once its headers are
    /// read; a slower one is answered 408 and its connection closed.
    #[arg(long, default_value_t = Wait(DEFAULT_BODY_READ_TIMEOUT))]
    body_read_timeout: Wait,
    /// On both listeners, how long a connection with no request in flight stays open.
    #[arg(long, default_value_t = Wait(DEFAULT_IDLE_TIMEOUT))]
    idle_timeout: Wait,
    /// Connections the events listener serves at once; more wait until one closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Connections the admin listener serves at once; more wait until one closes.
    #[arg(long, default_value_t = DEFAULT_ADMIN_MAX_CONNECTIONS)]
    admin_max_connections: usize,
    /// Start with deliveries paused: events are accepted and stored, nothing is sent until
    /// `POST /v1/deliveries/resume` on the admin listener.
    #[arg(long)]
    paused: bool,
    /// A PEM file of CA certificates to trust beside the Mozilla roots, for endpoints behind
    /// a private CA (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

impl ServeArgs {
    fn config(self) -> ServeConfig {
        let mut config = ServeConfig::new(self.rules);
        config.listen = self.listen;
        config.admin_listen = self.admin_listen;
        config.data = self.data;
        config.store = self.store;
        config.store_options.claim_lease = self.claim_lease.0;
        config.proxy = self.upstream.map(|upstream| ProxyConfig {
            upstream,
            intercept: self.intercept,
            timeout: self.upstream_timeout.0,
        });
        if let Some(retry) = self.retry_schedule {
            config.retry = retry;
        }
        config.ingest_token = self.ingest_token.filter(|t| !t.is_empty());
        config.admin_token = self.admin_token.filter(|t| !t.is_empty());
        config.max_body = self.max_body;
        config.retention = Duration::from_secs(self.retention_days * 24 * 3600);
        config.limits.overall = self.concurrency.max(1);
        config.limits.per_endpoint = self.per_endpoint.max(1);
        config.grace = Duration::from_secs(self.grace_seconds);
        config.paused = self.paused;
        config.header_read_timeout = self.header_read_timeout.0;
        config.body_read_timeout = self.body_read_timeout.0;
        config.idle_timeout = self.idle_timeout.0;
        config.max_connections = self.max_connections.max(1);
        config.admin_max_connections = self.admin_max_connections.max(1);
        config.ca_certs = self.ca_certs;
        config
    }
}

/// Checks a `--store` value up front, so a typo stops `whc serve` with a clear error.
fn parse_store(value: &str) -> Result<String, String> {
    crate::store::StoreLocation::parse(Some(value), std::path::Path::new(""))
        .map(|_| value.trim().to_owned())
        .map_err(|e| e.to_string())
}

fn init_logging(format: LogFormat, color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MakeQuietStderr)
        // Its report of a failed write is an `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.with_ansi(color).try_init(),
    };
}

/// Runs the sidecar; exit 0 after a clean shutdown, 1 when it cannot start.
pub fn run(args: ServeArgs, color: bool) -> Result<ExitCode, String> {
    init_logging(args.log_format, color);
    let config = args.config();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let mut running = match sidecar::start(config, Arc::new(ProcessEnv)).await {
            Ok(running) => running,
            Err(err) => {
                stderr_line(&format!("error: {err}"));
                return Ok(ExitCode::FAILURE);
            }
        };
        // One line on stdout for scripts and tests (the ports may have been chosen by the OS).
        stdout_line(&format!(
            "whc serve: events on http://{}, admin on http://{}",
            running.addr, running.admin_addr
        ));
        let cancel = running.cancel_token();
        tokio::spawn(async move {
            wait_for_stop().await;
            // Cancel first: nothing after the signal may stand between it and stopping.
            cancel.cancel();
            tracing::info!("stopping: finishing requests and attempts in flight");
        });
        running
            .join()
            .await
            .map_err(|e| format!("a sidecar task failed: {e}"))?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for Ctrl-C or SIGTERM. A signal that cannot be listened for is logged and left out,
/// never taken as a request to stop.
async fn wait_for_stop() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        interrupt.await;
    }
}
