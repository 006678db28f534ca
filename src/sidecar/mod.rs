//! The sidecar (`whc serve`): ingest, durable outbox, fan-out, delivery, hot reload, admin API.

pub mod admin;
pub mod api;
pub mod body;
pub mod config;
pub mod console;
pub mod deadline;
pub mod dispatch;
pub mod gate;
pub mod guard;
pub mod history;
pub mod http;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod postback;
mod proxy;
pub mod query;
pub mod rules;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Client, ExtraRoots};
use crate::lang::Env;
use crate::outbox::now_ms;
use crate::store::{Store, StoreLocation};

pub use body::{BodyError, read_limited};
pub use config::{Intercept, ProxyConfig, ServeConfig};
pub use ingest::{
    Accepted, AcceptedEvent, Ingest, IngestFailure, Input, InvalidEvent, parse_events,
};
pub use rules::{LiveRules, RulesCounts, RulesError, RulesStatus, WatchState, WebhookStatus};
pub use watch::DEFAULT_DEBOUNCE;

use dispatch::Dispatcher;
use gate::DeliveryGate;
use guard::AdminGuard;
use history::History;
use metrics::Metrics;
use proxy::Proxy;

/// Whether the events listener takes whc's own event posts or stands in front of the tracker.
pub enum Mode {
    /// `POST /v1/events` and nothing else.
    Direct,
    /// Every request is forwarded to the upstream; intercepted routes are also accepted.
    Proxy(Arc<Proxy>),
}

/// What every request handler shares.
pub struct State {
    /// The settings.
    pub config: ServeConfig,
    /// The rules being served.
    pub rules: Arc<LiveRules>,
    /// The durable store.
    pub outbox: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where secrets come from.
    pub env: Arc<dyn Env + Send + Sync>,
    /// The delivery client (shared with the Test button).
    pub client: Client,
    /// The one way events get in.
    pub ingest: Ingest,
    /// Direct or proxy.
    pub mode: Mode,
    /// Whether deliveries are paused.
    pub deliveries: DeliveryGate,
    /// The last hour of figures, for the console's charts.
    pub history: Arc<History>,
}

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The rules at start could not be read or had errors.
    #[error(
        "the rules have errors; the sidecar does not start on broken rules:\n{}",
        .0.rendered()
    )]
    Rules(#[source] RulesError),
    /// The store could not be opened.
    #[error("cannot open the outbox in {path}: {source}")]
    Outbox {
        /// The data directory, or the database URL without its password.
        path: String,
        /// Why.
        source: crate::store::StoreError,
    },
    /// A `--ca-cert` file could not be used.
    #[error(transparent)]
    Trust(#[from] crate::deliver::TrustError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Sidecar tasks that panicked or were cancelled before they finished.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TasksFailed(pub Vec<tokio::task::JoinError>);

/// A started sidecar.
pub struct Running {
    /// Where events (or proxied requests) are accepted.
    pub addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The shared state (for tests and the CLI).
    pub state: Arc<State>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// A token that stops the sidecar when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops accepting, lets requests and attempts in flight finish, and waits for every task.
    /// A task that panicked is reported as an error.
    pub async fn shutdown(mut self) -> Result<(), TasksFailed> {
        self.cancel.cancel();
        self.join().await
    }

    /// Waits until the sidecar stops (after its cancel token fires).
    pub async fn join(&mut self) -> Result<(), TasksFailed> {
        let mut failures = Vec::new();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(err) = result {
                failures.push(err);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(TasksFailed(failures))
        }
    }
}

/// Loads the rules, opens the outbox, binds both listeners and starts every task.
pub async fn start(
    config: ServeConfig,
    env: Arc<dyn Env + Send + Sync>,
) -> Result<Running, ServeError> {
    let rules = Arc::new(
        LiveRules::load(config.rules.clone(), Arc::clone(&env)).map_err(ServeError::Rules)?,
    );
    let location = StoreLocation::parse(config.store.as_deref(), &config.data);
    let opened = match &location {
        Ok(location) => Store::open(location, config.store_options).await,
        Err(unknown) => Err(unknown.clone().into()),
    };
    let outbox = opened.map_err(|source| ServeError::Outbox {
        path: match &location {
            Ok(StoreLocation::Postgres(url)) => crate::store::redact(url),
            _ => config.data.display().to_string(),
        },
        source,
    })?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.admin_listen,
            source,
        })?;

    let metrics = Arc::new(Metrics::default());
    let roots = ExtraRoots::load(&config.ca_certs)?;
    let client = Client::with_roots(&roots)?;
    let mode = match &config.proxy {
        None => Mode::Direct,
        Some(proxy) => Mode::Proxy(Arc::new(Proxy::new(proxy, &roots)?)),
    };
    let ingest = Ingest {
        rules: Arc::clone(&rules),
        outbox: outbox.clone(),
        metrics: Arc::clone(&metrics),
        default_attempts: config.default_attempts(),
    };
    let cancel = CancellationToken::new();
    let grace = config.grace;
    let config_paused = config.paused;
    let state = Arc::new(State {
        config,
        rules: Arc::clone(&rules),
        outbox: outbox.clone(),
        metrics: Arc::clone(&metrics),
        env: Arc::clone(&env),
        client: client.clone(),
        ingest,
        mode,
        deliveries: DeliveryGate::new(config_paused),
        history: Arc::new(History::default()),
    });

    let mut tasks = JoinSet::new();
    let s = Arc::clone(&state);
    match &state.mode {
        Mode::Direct => tasks.spawn(http::serve(
            listener,
            move |req, _conn| api::handle(Arc::clone(&s), req),
            cancel.clone(),
            grace,
            state.config.events_limits(),
        )),
        Mode::Proxy(proxy) => {
            let proxy = Arc::clone(proxy);
            tasks.spawn(http::serve(
                listener,
                move |req, _conn| proxy::forward(Arc::clone(&s), Arc::clone(&proxy), req),
                cancel.clone(),
                grace,
                state.config.events_limits(),
            ))
        }
    };
    let s = Arc::clone(&state);
    // Every admin request passes the guard (origin, Host, token) before any route sees it.
    let guard = Arc::new(AdminGuard::new(
        state.config.admin_token.clone(),
        state.config.admin_listen,
    ));
    guard.warn_if_exposed(admin_addr);
    tasks.spawn(http::serve(
        admin_listener,
        move |req, conn: http::Conn| {
            let s = Arc::clone(&s);
            let guard = Arc::clone(&guard);
            async move {
                match guard.check(&req, conn.local) {
                    Ok(()) => admin::handle(s, req).await,
                    Err(refusal) => refusal.answer(),
                }
            }
        },
        cancel.clone(),
        grace,
        state.config.admin_limits(),
    ));
    let dispatcher = Arc::new(Dispatcher::new(
        outbox.clone(),
        client,
        state.config.retry.clone(),
        env,
        metrics,
        state.config.limits,
        state.deliveries.clone(),
    ));
    tasks.spawn(dispatcher.run(cancel.clone(), grace));
    let watcher = Arc::clone(&rules).watch_with(cancel.clone(), state.config.debounce);
    tasks.spawn(async move {
        if let Err(err) = watcher.await {
            tracing::error!(%err, "rule watcher failed");
        }
    });
    if let Some(fleet) = outbox.fleet_paused() {
        if config_paused && let Err(err) = outbox.set_fleet_paused(true).await.transpose() {
            tracing::warn!(%err, "cannot pause the fleet's deliveries");
        }
        tasks.spawn(follow_fleet_pause(
            fleet,
            state.deliveries.clone(),
            cancel.clone(),
        ));
    }
    tasks.spawn(sample(Arc::clone(&state), cancel.clone()));
    tasks.spawn(prune(outbox, state.config.retention, cancel.clone()));
    tracing::info!(%addr, %admin_addr, rules = %rules.current().hash, "whc serve started");
    Ok(Running {
        addr,
        admin_addr,
        state,
        cancel,
        tasks,
    })
}

/// On a shared store, pauses and resumes this sidecar's deliveries as the fleet's flag changes.
async fn follow_fleet_pause(
    mut fleet: tokio::sync::watch::Receiver<bool>,
    gate: DeliveryGate,
    cancel: CancellationToken,
) {
    loop {
        let paused = *fleet.borrow_and_update();
        let changed = if paused { gate.pause() } else { gate.resume() };
        if changed {
            tracing::info!(
                paused,
                "the fleet's deliveries were {}",
                if paused { "paused" } else { "resumed" }
            );
        }
        tokio::select! {
            changed = fleet.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
    }
}

/// Keeps the console's history: a sample at start, then every [`history::SAMPLE_EVERY`].
async fn sample(state: Arc<State>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(history::SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let depth = state.outbox.queue_depth().await.unwrap_or(0);
                state.history.record(now_ms(), depth, &state.metrics);
            }
            () = cancel.cancelled() => break,
        }
    }
}

/// Deletes delivered deliveries older than the retention period, hourly.
async fn prune(outbox: Store, retention: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let before = now_ms() - retention.as_millis() as i64;
                match outbox.prune_delivered(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned delivered deliveries"),
                    Err(err) => tracing::warn!(%err, "pruning failed"),
                }
            }
            () = cancel.cancelled() => break,
        }
    }
}
