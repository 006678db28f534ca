//! The PostgreSQL store: one queue shared by a fleet of sidecars.
//!
//! * Writes go through one writer task per sidecar that commits everything queued in one
//!   transaction ([`writer`]); an answer means COMMIT returned (`synchronous_commit = on`).
//!   Attempt records have a writer of their own that does not wait for the WAL flush (a lost
//!   record is a resend after the lease, like a lost claim).
//! * Event ids are the primary key of `whc_events`: a duplicate is one fleet-wide.
//! * Deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease ([`claims`]); a sidecar
//!   renews its leases while it holds them, and one that dies loses them when they run out.
//! * `LISTEN whc_wake` on a connection of its own wakes the dispatcher when any sidecar commits
//!   something due, and carries the fleet's pause flag.
//!
//! Driver: tokio-postgres with deadpool-postgres as its pool, without TLS (see the README:
//! loopback or a private network; TLS to the database is not built in).

mod claims;
mod query;
mod schema;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::outbox::{
    Accepted, AttemptRecord, Delivery, DeliveryFilter, NewEvent, Stats, StatusCounts,
};

use claims::Claims;
use writer::Request;

/// The pool type of this store.
pub(crate) type Pool = deadpool_postgres::Pool;

/// The channel commits notify on: an empty payload when something may be due, `paused` when
/// the fleet's pause flag changed.
pub(crate) const WAKE_CHANNEL: &str = "whc_wake";

/// Connections the pool keeps for reads, claims and the writer.
const POOL_SIZE: usize = 8;

/// How long connecting (or waiting for a pooled connection) may take before the call fails:
/// with the database down, an event post gets its 503 within this, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the listener waits before connecting again after losing its connection.
const RELISTEN: Duration = Duration::from_secs(1);

/// Why a PostgreSQL store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is not a valid connection string.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// PostgreSQL answered with an error, or the connection failed.
    #[error("PostgreSQL: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool (the database is unreachable, or every
    /// connection is busy past the timeout).
    #[error("PostgreSQL unreachable: {}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The batch this request was part of did not commit: nothing of it was stored.
    #[error("commit failed: {0}")]
    Commit(#[source] Arc<PgError>),
    /// The database was migrated by a newer whc.
    #[error(
        "the database's whc schema is version {found}, newer than this build supports ({supported})"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A delivery's headers could not be encoded as JSON.
    #[error("cannot encode delivery headers: {0}")]
    Headers(#[source] serde_json::Error),
    /// A number does not fit the database's column.
    #[error("{field} is too large to store")]
    OutOfRange {
        /// The field.
        field: &'static str,
    },
    /// A stored row could not be read back.
    #[error("bad stored data: {0}")]
    BadRow(String),
    /// An attempt was recorded for a delivery that is unknown, delivered or dead.
    #[error("delivery {0} is not pending")]
    NotPending(String),
    /// The writer task is gone.
    #[error("the store's writer has stopped")]
    Closed,
    /// The database has not been reached (and migrated) since this sidecar started; it is
    /// tried again every second.
    #[error("PostgreSQL not reached since start ({0}); trying again every second")]
    NotReady(String),
}

impl PgError {
    /// Whether the database could not be reached (refused, timed out, shutting down or
    /// starting up), which waiting resolves, as opposed to a wrong password, a missing
    /// database or a schema too new, which it does not.
    fn is_unreachable(&self) -> bool {
        let server_away = |e: &tokio_postgres::Error| match e.as_db_error() {
            None => true,
            Some(db) => {
                let code = db.code().code();
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }
        };
        match self {
            PgError::Db(e) => server_away(e),
            PgError::Pool(deadpool_postgres::PoolError::Backend(e)) => server_away(e),
            PgError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            _ => false,
        }
    }

    /// Whether PostgreSQL aborted the transaction for a deadlock or a serialization failure,
    /// which running it again resolves.
    fn is_conflict(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            PgError::Db(e) => matches!(
                e.code(),
                Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            ),
            _ => false,
        }
    }
}

/// A tokio-postgres error with the server's message when there is one (its own `Display` says
/// only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// A pool error with the driver's reason when it has one ("error connecting to server: Connection
/// refused").
fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// The writer's counters, as the SQLite outbox keeps them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    submitted: AtomicU64,
    commits: AtomicU64,
    requests: AtomicU64,
    events: AtomicU64,
    busy_micros: AtomicU64,
    health: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn set_health(&self, failure: Option<String>) {
        *self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = failure;
    }

    fn health(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn snapshot(&self) -> Stats {
        Stats {
            submitted: self.submitted.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }
}

/// Whether the database was reached and migrated since start, and if not, why.
#[derive(Debug, Default)]
struct Setup {
    ready: std::sync::atomic::AtomicBool,
    failure: std::sync::Mutex<String>,
}

impl Setup {
    fn check(&self) -> Result<(), PgError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Err(PgError::NotReady(failure.clone()))
    }

    fn failed(&self, e: &PgError) {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = e.to_string();
    }
}

/// A handle on the PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL without its password, for logs.
    described: String,
    pool: Pool,
    writer: mpsc::UnboundedSender<Request>,
    /// The attempt records' writer (commits without waiting for the WAL flush).
    records: mpsc::UnboundedSender<Request>,
    claims: Arc<Claims>,
    counters: Arc<Counters>,
    wake: Arc<Notify>,
    paused: watch::Receiver<bool>,
    /// Sets `paused` as soon as this sidecar changed the flag (the notification comes later).
    set_paused: watch::Sender<bool>,
    /// This sidecar's name on its leases: unique per process start.
    owner: String,
    lease_ms: i64,
    setup: Arc<Setup>,
    /// Stops the listener and the lease renewer when the last handle goes.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.inner.described)
            .field("owner", &self.inner.owner)
            .finish()
    }
}

impl PgStore {
    /// Connects, migrates, and starts the writer, the listener and the lease renewer.
    pub async fn open(url: &str, lease: Duration) -> Result<PgStore, PgError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(PgError::Url)?;
        if config.get_application_name().is_none() {
            config.application_name("whc");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // An answer to a post means the COMMIT is on disk, whatever the server's default.
        config.options("-c synchronous_commit=on");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PgError::BadRow(format!("cannot build the connection pool: {e}")))?;
        // Unreachable at start: the sidecar starts anyway, answers 503 and reports not ready
        // until the database is reached; anything else (a wrong password, no such database, a
        // schema too new) is refused now.
        let setup = Arc::new(Setup::default());
        let paused_now = match set_up(&pool).await {
            Ok(paused) => Some(paused),
            Err(e) if e.is_unreachable() => {
                tracing::warn!(err = %e, "PostgreSQL is unreachable; starting anyway, trying again every second");
                setup.failed(&e);
                None
            }
            Err(e) => return Err(e),
        };
        // Not yet known while unreachable: the listener reads it once it is reached, before
        // any claim can be made.
        let (paused_tx, paused) = watch::channel(paused_now.unwrap_or(false));
        let set_paused = paused_tx.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let claims = Arc::new(Claims::default());
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(writer::run(
            pool.clone(),
            rx,
            Arc::clone(&counters),
            Arc::clone(&claims),
            Arc::clone(&wake),
            writer::Durable::Flushed,
        ));
        // Attempt records on a writer of their own: they do not wait behind the posts' WAL
        // flush, nor the posts behind them.
        let (records_tx, records_rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(
            pool.clone(),
            records_rx,
            Arc::new(Counters::default()),
            Arc::clone(&claims),
            Arc::clone(&wake),
            writer::Durable::Unflushed,
        ));
        if paused_now.is_some() {
            setup.ready.store(true, Ordering::Release);
            tokio::spawn(listen(
                config,
                pool.clone(),
                Arc::clone(&wake),
                paused_tx,
                stop.clone(),
            ));
        } else {
            tokio::spawn(set_up_later(
                config,
                pool.clone(),
                Arc::clone(&setup),
                Arc::clone(&wake),
                paused_tx,
                stop.clone(),
            ));
        }
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
        let owner = format!(
            "{}:{}",
            std::process::id(),
            crate::outbox::new_delivery_id()
        );
        tokio::spawn(renew_leases(
            pool.clone(),
            Arc::clone(&claims),
            owner.clone(),
            lease,
            stop.clone(),
        ));
        Ok(PgStore {
            inner: Arc::new(Inner {
                described: super::redact(url),
                pool,
                writer: tx,
                records: records_tx,
                claims,
                counters,
                wake,
                paused,
                set_paused,
                owner,
                lease_ms,
                setup,
                stop,
            }),
        })
    }

    /// `Ok` once the database was reached and migrated.
    fn usable(&self) -> Result<(), PgError> {
        self.inner.setup.check()
    }

    async fn write<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Request) -> Result<T, PgError> {
        self.write_on(&self.inner.writer, make).await
    }

    async fn write_on<T>(
        &self,
        writer: &mpsc::UnboundedSender<Request>,
        make: impl FnOnce(writer::Reply<T>) -> Request,
    ) -> Result<T, PgError> {
        self.usable()?;
        let (reply, answer) = oneshot::channel();
        writer.send(make(reply)).map_err(|_| PgError::Closed)?;
        self.inner
            .counters
            .submitted
            .fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| PgError::Closed)?
    }

    /// See [`super::Store::accept`].
    pub async fn accept(&self, events: Vec<NewEvent>) -> Result<Vec<Accepted>, PgError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Request::Accept(events, reply)).await
    }

    /// See [`super::Store::due`].
    pub async fn due(
        &self,
        now_ms: i64,
        limit: usize,
        per_endpoint: &super::ClaimBound,
    ) -> Result<Vec<Delivery>, PgError> {
        self.usable()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let i = &self.inner;
        claims::claim(
            &i.pool,
            &i.claims,
            &i.owner,
            i.lease_ms,
            now_ms,
            limit,
            per_endpoint,
        )
        .await
    }

    /// See [`super::Store::next_due_at`].
    pub async fn next_due_at(
        &self,
        per_endpoint: &super::ClaimBound,
    ) -> Result<Option<i64>, PgError> {
        self.usable()?;
        let i = &self.inner;
        claims::next_due_at(&i.pool, &i.claims, &i.owner, per_endpoint).await
    }

    /// See [`super::Store::changed`].
    pub async fn changed(&self) {
        self.inner.wake.notified().await;
    }

    /// See [`super::Store::record`].
    pub async fn record(&self, id: &str, record: AttemptRecord) -> Result<(), PgError> {
        // The attempt is over: its endpoint may take another claim now, not after the COMMIT.
        if self.inner.claims.lock().attempted(id) {
            self.inner.wake.notify_one();
        }
        let id = id.to_owned();
        self.write_on(&self.inner.records, |reply| {
            Request::Record(id, record, reply)
        })
        .await
    }

    /// See [`super::Store::release`]. The lease is given up in the database too; if that fails
    /// it runs out on its own.
    pub async fn release(&self, id: &str) {
        if self.inner.claims.lock().remove(id)
            && let Err(err) = claims::release(&self.inner.pool, &self.inner.owner, id).await
        {
            tracing::warn!(delivery = %id, %err, "cannot release a claim; its lease will run out");
        }
    }

    /// See [`super::Store::replay`].
    pub async fn replay(&self, id: &str) -> Result<bool, PgError> {
        let id = id.to_owned();
        self.write(|reply| Request::Replay(id, reply)).await
    }

    /// See [`super::Store::prune_delivered`]; 0 while another sidecar is pruning.
    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, PgError> {
        self.write(|reply| Request::Prune(before_ms, reply)).await
    }

    /// See [`super::Store::list`].
    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, PgError> {
        self.usable()?;
        query::list(&self.inner.pool, &filter).await
    }

    /// See [`super::Store::get`].
    pub async fn get(&self, id: &str) -> Result<Option<Delivery>, PgError> {
        self.usable()?;
        query::get(&self.inner.pool, id).await
    }

    /// See [`super::Store::webhook_counts`].
    pub async fn webhook_counts(
        &self,
        since_ms: i64,
    ) -> Result<std::collections::HashMap<String, crate::outbox::WebhookCounts>, PgError> {
        self.usable()?;
        query::webhook_counts(&self.inner.pool, since_ms).await
    }

    /// See [`super::Store::replay_dead`].
    pub async fn replay_dead(&self, webhook: &str) -> Result<usize, PgError> {
        let webhook = webhook.to_owned();
        self.write(|reply| Request::ReplayDead(webhook, reply))
            .await
    }

    /// See [`super::Store::attempts`].
    pub async fn attempts(&self, id: &str) -> Result<Vec<crate::outbox::Attempt>, PgError> {
        self.usable()?;
        query::attempts(&self.inner.pool, id).await
    }

    /// See [`super::Store::event_json`].
    pub async fn event_json(&self, id: &str) -> Result<Option<String>, PgError> {
        self.usable()?;
        query::event_json(&self.inner.pool, id).await
    }

    /// See [`super::Store::queue_depth`].
    pub async fn queue_depth(&self) -> Result<u64, PgError> {
        self.usable()?;
        query::queue_depth(&self.inner.pool).await
    }

    /// See [`super::Store::counts_by_status`].
    pub async fn counts_by_status(&self) -> Result<StatusCounts, PgError> {
        self.usable()?;
        query::counts(&self.inner.pool).await
    }

    /// See [`super::Store::check_writes`].
    pub async fn check_writes(&self) -> Result<(), PgError> {
        self.write(Request::Probe).await
    }

    /// See [`super::Store::check_reads`].
    pub async fn check_reads(&self) -> Result<(), PgError> {
        self.usable()?;
        query::touch(&self.inner.pool).await
    }

    /// See [`super::Store::last_write_failure`].
    pub fn last_write_failure(&self) -> Option<String> {
        if let Err(e) = self.usable() {
            return Some(e.to_string());
        }
        self.inner.counters.health()
    }

    /// See [`super::Store::stats`].
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The URL without its password.
    pub fn describe(&self) -> &str {
        &self.inner.described
    }

    /// Sets the fleet's pause flag; true when it changed. Every sidecar hears of it.
    pub async fn set_paused(&self, paused: bool) -> Result<bool, PgError> {
        let changed = self
            .write(|reply| Request::SetPaused(paused, reply))
            .await?;
        self.inner
            .set_paused
            .send_if_modified(|p| std::mem::replace(p, paused) != paused);
        Ok(changed)
    }

    /// The fleet's pause flag as this sidecar last heard it.
    pub fn paused(&self) -> watch::Receiver<bool> {
        self.inner.paused.clone()
    }
}

/// Migrates the database and reads the fleet's pause flag.
async fn set_up(pool: &Pool) -> Result<bool, PgError> {
    let mut client = pool.get().await?;
    schema::migrate(&mut client).await?;
    Ok(client
        .query_one("SELECT paused FROM whc_fleet", &[])
        .await?
        .try_get(0)?)
}

/// Tries [`set_up`] every second until it succeeds; then sets the fleet's pause flag, marks
/// the store ready (so no claim is made before the flag is known) and starts listening.
async fn set_up_later(
    config: tokio_postgres::Config,
    pool: Pool,
    setup: Arc<Setup>,
    wake: Arc<Notify>,
    paused: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let now_paused = loop {
        tokio::select! {
            () = tokio::time::sleep(RELISTEN) => {}
            () = stop.cancelled() => return,
        }
        match set_up(&pool).await {
            Ok(now_paused) => break now_paused,
            Err(e) => {
                if !e.is_unreachable() {
                    tracing::error!(err = %e, "PostgreSQL reached, but the store cannot be set up; trying again");
                }
                setup.failed(&e);
            }
        }
    };
    paused.send_replace(now_paused);
    setup.ready.store(true, Ordering::Release);
    tracing::info!("PostgreSQL reached; the store is ready");
    wake.notify_one();
    listen(config, pool, wake, paused, stop).await;
}

/// Listens on [`WAKE_CHANNEL`] on a connection of its own, reconnecting when it drops: wakes
/// the dispatcher on every notification (and after reconnecting, for what it may have missed)
/// and follows the fleet's pause flag.
async fn listen(
    config: tokio_postgres::Config,
    pool: Pool,
    wake: Arc<Notify>,
    paused: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            result = listen_once(&config, &pool, &wake, &paused) => {
                if let Err(err) = result {
                    tracing::warn!(%err, "lost the PostgreSQL notification connection; reconnecting");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RELISTEN) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One listening connection, until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    pool: &Pool,
    wake: &Notify,
    paused: &watch::Sender<bool>,
) -> Result<(), PgError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let statement = format!("LISTEN {WAKE_CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            result = &mut listening => { result?; break; }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(message)) => pending.push(message),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(PgError::Closed),
            },
        }
    }
    // Anything committed while we were not listening: look again, and re-read the flag.
    wake.notify_one();
    refresh_paused(pool, paused).await;
    for message in pending {
        on_message(message, pool, wake, paused).await;
    }
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(message)) => on_message(message, pool, wake, paused).await,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(PgError::Closed),
        }
    }
}

async fn on_message(
    message: AsyncMessage,
    pool: &Pool,
    wake: &Notify,
    paused: &watch::Sender<bool>,
) {
    if let AsyncMessage::Notification(n) = message {
        if n.payload() == "paused" {
            refresh_paused(pool, paused).await;
        } else {
            wake.notify_one();
        }
    }
}

/// Reads the fleet's pause flag into `paused`.
async fn refresh_paused(pool: &Pool, paused: &watch::Sender<bool>) {
    let read = async {
        let client = pool.get().await?;
        let row = client
            .query_one("SELECT paused FROM whc_fleet", &[])
            .await?;
        Ok::<bool, PgError>(row.try_get(0)?)
    };
    match read.await {
        Ok(now) => {
            paused.send_if_modified(|p| std::mem::replace(p, now) != now);
        }
        Err(err) => tracing::warn!(%err, "cannot read whether the fleet's deliveries are paused"),
    }
}

/// Renews this sidecar's leases every third of the lease, so a slow attempt keeps its claim
/// while this sidecar lives.
async fn renew_leases(
    pool: Pool,
    claims: Arc<Claims>,
    owner: String,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(10));
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let ids = claims.lock().ids();
        if let Err(err) = claims::renew(&pool, &owner, &ids, lease_ms).await {
            tracing::warn!(%err, held = ids.len(), "cannot renew the delivery leases");
        }
    }
}
