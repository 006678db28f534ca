//! Durable outbox: events and their deliveries in SQLite (WAL), with group commit.
//!
//! * Writes (accept, record, replay, prune) go to one writer thread that commits everything
//!   queued in one transaction and one fsync, then answers; an answer means "committed".
//! * Reads use a small pool of read-only connections on tokio's blocking threads.
//! * [`Outbox::due`] *claims* what it returns, at most so many per endpoint (counted until the
//!   attempt's record is handed in): a claimed delivery is not returned again until its
//!   attempt's record commits (or it is [`Outbox::release`]d). Claims live in memory, so after a
//!   restart every pending delivery is due again: nothing stays stuck "in flight".
//!   One dispatcher task is expected to call `due`; several would still not share a delivery.

mod event_id;
mod fanout;
pub mod payload;
mod query;
mod schema;
mod types;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

use crate::store::ClaimBound;

pub use payload::{Payload, StoredBody, StoredEvent};
pub use types::{
    Accepted, Attempt, AttemptRecord, Delivery, DeliveryFilter, ERROR_LIMIT, EXCERPT_LIMIT,
    NewDelivery, NewEvent, RecordColumns, Stats, Status, StatusCounts, StoredHeader, UnknownStatus,
    WebhookCounts, endpoint_of, new_delivery_id,
};

use types::endpoint_key;
/// Shared with the PostgreSQL store, which caps stored texts the same way.
pub(crate) use types::{error_text, excerpt};
use writer::{Counters, Reply, Request, Stored};

/// Read connections kept open between queries; more are opened when needed.
const IDLE_READERS: usize = 4;

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The folder for the database file could not be created.
    #[error("cannot create the outbox folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the outbox writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// SQLite reported an error, or a stored value could not be read back.
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this request was part of did not commit: nothing of it was stored.
    #[error("outbox commit failed: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    /// The database refused WAL mode (e.g. a file system without shared memory).
    #[error("the outbox needs WAL journal mode, the database is in `{0}` mode")]
    NoWal(String),
    /// The file was written by a newer whc.
    #[error("outbox schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The file's `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A delivery's headers could not be encoded as JSON.
    #[error("cannot encode delivery headers: {0}")]
    Headers(#[source] serde_json::Error),
    /// A number does not fit the database's 64-bit signed integers.
    #[error("{field} is too large to store")]
    OutOfRange {
        /// The field.
        field: &'static str,
    },
    /// An attempt was recorded for a delivery that is unknown, delivered or dead.
    #[error("delivery {0} is not pending")]
    NotPending(String),
    /// `PRAGMA quick_check` found damage: the file is not used.
    #[error(
        "the outbox database {path} is corrupt (PRAGMA quick_check: {details}); whc does not \
         start on it. Stop, keep a copy, and restore it from a backup or recover it with \
         `sqlite3 {path} .recover`"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The first problems quick_check reported.
        details: String,
    },
    /// The database file is missing or empty although the marker says one was created here.
    #[error(
        "the outbox database {path} is missing or empty, but {marker} says an outbox was \
         created in this folder: starting would silently drop its pending deliveries. Restore \
         {path} (with its -wal file) from a backup; or, to start with an empty outbox on \
         purpose, delete {marker} and start again"
    )]
    Vanished {
        /// The database file.
        path: PathBuf,
        /// The marker file.
        marker: PathBuf,
    },
    /// The marker beside a new database could not be written.
    #[error("cannot write the outbox marker {path}: {source}")]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Two deliveries of one event have the same id.
    #[error("delivery id {0} appears twice in one event's deliveries")]
    DuplicateDelivery(String),
    /// An event's stored fan-out could not be read back.
    #[error(transparent)]
    FanOut(#[from] fanout::BadFanOut),
    /// The writer thread is gone; the outbox accepts no more writes.
    #[error("the outbox writer has stopped")]
    Closed,
}

/// The durable outbox: a cheap, cloneable handle shared by the server and the workers.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// What every handle shares; dropping the last one stops the writer after its current batch.
struct Inner {
    path: PathBuf,
    writer: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    claims: Arc<Claims>,
    counters: Arc<Counters>,
    wake: Arc<Notify>,
}

/// Deliveries handed out by [`Outbox::due`] whose attempt is not recorded yet.
#[derive(Debug, Default)]
pub(crate) struct Claims(Mutex<Claimed>);

impl Claims {
    /// The claims, even if a thread panicked while holding them (each change is one map
    /// operation pair that cannot be torn by a panic of ours).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Claimed> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The claimed deliveries and how many each endpoint (by its `endpoint_key`) holds.
///
/// A delivery counts on its endpoint's bound from its claim until its attempt is over (its
/// record is handed in): the bound is on what waits for the endpoint or is on its wire, not on
/// what waits for the writer. It stays claimed, never handed out again, until the record
/// commits.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Each claim's endpoint, and whether it still counts there.
    endpoint_of: HashMap<String, (i64, bool)>,
    per_endpoint: HashMap<i64, Held>,
}

/// One endpoint's claims.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// Those counting on its bound: not attempted yet, or on the wire.
    counted: usize,
    /// All of them, those whose record is on its way to the writer included.
    all: usize,
}

impl Claimed {
    fn contains(&self, id: &str) -> bool {
        self.endpoint_of.contains_key(id)
    }

    fn insert(&mut self, id: String, endpoint: i64) {
        if self.endpoint_of.contains_key(&id) {
            return;
        }
        let held = self.per_endpoint.entry(endpoint).or_default();
        held.counted += 1;
        held.all += 1;
        self.endpoint_of.insert(id, (endpoint, true));
    }

    /// The delivery's attempt is over and its record on its way: it no longer counts on its
    /// endpoint, but stays claimed until the record commits. True when it counted until now.
    fn attempted(&mut self, id: &str) -> bool {
        match self.endpoint_of.get_mut(id) {
            Some((endpoint, counted)) if *counted => {
                *counted = false;
                if let Some(held) = self.per_endpoint.get_mut(endpoint) {
                    held.counted = held.counted.saturating_sub(1);
                }
                true
            }
            _ => false,
        }
    }

    /// Drops a claim, if there is one.
    pub(crate) fn remove(&mut self, id: &str) {
        let Some((endpoint, counted)) = self.endpoint_of.remove(id) else {
            return;
        };
        if let Some(held) = self.per_endpoint.get_mut(&endpoint) {
            if counted {
                held.counted = held.counted.saturating_sub(1);
            }
            held.all = held.all.saturating_sub(1);
            if held.all == 0 {
                self.per_endpoint.remove(&endpoint);
            }
        }
    }

    /// How many deliveries to `endpoint` count on its bound.
    fn on(&self, endpoint: i64) -> usize {
        self.per_endpoint.get(&endpoint).map_or(0, |h| h.counted)
    }

    /// How many deliveries to `endpoint` are claimed, counted or not.
    fn all_on(&self, endpoint: i64) -> usize {
        self.per_endpoint.get(&endpoint).map_or(0, |h| h.all)
    }
}

/// A [`ClaimBound`] keyed as the outbox groups endpoints (`endpoint_key`).
struct KeyedBound {
    base: usize,
    wider: HashMap<i64, usize>,
}

impl KeyedBound {
    fn new(bound: &ClaimBound) -> KeyedBound {
        KeyedBound {
            base: bound.base(),
            wider: bound
                .widened()
                .map(|(endpoint, n)| (endpoint_key(endpoint), n))
                .collect(),
        }
    }

    /// The bound on the endpoint keyed `endpoint`.
    fn on(&self, endpoint: i64) -> usize {
        self.wider
            .get(&endpoint)
            .copied()
            .unwrap_or(self.base)
            .max(self.base)
    }
}

impl Outbox {
    /// Opens (creating the folder and file if needed) and migrates the outbox at `path`,
    /// and starts its writer thread.
    ///
    /// Refuses a file `PRAGMA quick_check` finds damaged ([`OutboxError::Corrupt`]), and a
    /// missing or empty file where the marker beside it (`outbox.created` for `outbox.db`,
    /// written when the outbox is first opened) says one existed ([`OutboxError::Vanished`]):
    /// either would otherwise start and lose acknowledged events.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let marker = marker_of(path);
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if empty && marker.exists() {
            return Err(OutboxError::Vanished {
                path: path.to_path_buf(),
                marker,
            });
        }
        let conn = schema::open_writer(path)?;
        let marks = schema::fan_out_marks(&conn)?;
        if !marker.exists() {
            std::fs::write(&marker, MARKER_TEXT).map_err(|source| OutboxError::Marker {
                path: marker.clone(),
                source,
            })?;
        }
        let reader = schema::open_reader(path)?;
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        counters.set_fan_out_marks(marks);
        let claims = Arc::new(Claims::default());
        let wake = Arc::new(Notify::new());
        let thread = std::thread::Builder::new()
            .name("whc-outbox-writer".into())
            .spawn({
                let counters = Arc::clone(&counters);
                let claims = Arc::clone(&claims);
                let wake = Arc::clone(&wake);
                move || writer::run(conn, rx, counters, claims, wake)
            })
            .map_err(OutboxError::Spawn)?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Some(tx),
                thread: Some(thread),
                readers: Mutex::new(vec![reader]),
                claims,
                counters,
                wake,
            }),
        })
    }

    /// Stores events and their deliveries in one commit shared with concurrent callers.
    ///
    /// Returns only after COMMIT succeeded: an `Ok` answer is durable. An event whose id is
    /// already stored is a duplicate: nothing is written and its existing delivery ids come back.
    pub async fn accept(&self, events: Vec<NewEvent>) -> Result<Vec<Accepted>, OutboxError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The writer thread only reads the events, and answers with what it found stored: the
        // events are freed, and the answers made, here on the thread that made the events. A
        // block freed on another thread than its own costs the allocator several times more.
        let events = Arc::new(events);
        let stored = self
            .write(|reply| Request::Accept(Arc::clone(&events), reply))
            .await?;
        Ok(answers(events, stored))
    }

    /// Claims and returns up to `limit` pending deliveries due at `now_ms`, oldest due first,
    /// with at most `per_endpoint` (a number, or a [`ClaimBound`] with wider windows for some
    /// endpoints) counting per endpoint (scheme://host:port) at any time, those claimed before
    /// included. A claimed delivery counts there until its attempt's record is handed in
    /// ([`Outbox::record`]), not until it commits.
    ///
    /// The per-endpoint bound is what keeps a dead endpoint's backlog from holding every claim:
    /// past its share, its deliveries stay in the store and the others' are claimed. A claimed
    /// delivery is not returned again until [`Outbox::record`] or [`Outbox::release`]; claims
    /// are in memory and vanish on restart. (A shared store would keep them as leases, with the
    /// same per-endpoint bound in its query.)
    pub async fn due(
        &self,
        now_ms: i64,
        limit: usize,
        per_endpoint: impl Into<ClaimBound>,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let bound = KeyedBound::new(&per_endpoint.into());
        // One chunk of the backlog's fan-out per call, not all of it: the events not expanded
        // yet are newer than every row, and `next_due_at` brings the dispatcher straight back
        // for them, so a long paused backlog is claimed while it is written, not after.
        self.expand_fan_out_once().await?;
        self.read_as_is(move |conn, inner| {
            // Held across the queries: a claim is only dropped (after its record committed)
            // before this snapshot or after this filter, never in between.
            // Ids first (from the index alone), whole rows only for the ones not yet claimed:
            // with thousands claimed, re-reading their bodies on every pass dominated the cost.
            let mut claims = inner.claims.lock();
            let mut fresh: Vec<(i64, String, i64)> = Vec::new();
            for endpoint in query::pending_endpoints(conn)? {
                let room = bound
                    .on(endpoint)
                    .saturating_sub(claims.on(endpoint))
                    .min(limit);
                if room == 0 {
                    continue;
                }
                // At most `all` of these are claimed, so they hold the `room` oldest unclaimed.
                let all = claims.all_on(endpoint);
                let oldest = query::oldest_on(conn, endpoint, all.saturating_add(room))?;
                let due = oldest
                    .into_iter()
                    .take_while(|(_, at)| *at <= now_ms)
                    .filter(|(id, _)| !claims.contains(id))
                    .take(room)
                    .map(|(id, at)| (at, id, endpoint));
                fresh.extend(due);
            }
            fresh.sort_unstable();
            fresh.truncate(limit);
            let mut rows = Vec::with_capacity(fresh.len());
            for (_, id, endpoint) in fresh {
                if let Some(delivery) = query::get(conn, &id)? {
                    claims.insert(id, endpoint);
                    rows.push(delivery);
                }
            }
            Ok(rows)
        })
        .await
    }

    /// When the next pending delivery [`Outbox::due`] could claim is due (unix ms; may be in
    /// the past), if any: unclaimed, and on an endpoint with fewer than `per_endpoint` claims
    /// counting on it (see [`Outbox::due`]). Now, while stored events' fan-out is still to be
    /// written as rows (which `due` does a chunk at a time).
    pub async fn next_due_at(
        &self,
        per_endpoint: impl Into<ClaimBound>,
    ) -> Result<Option<i64>, OutboxError> {
        if self.inner.counters.unexpanded() {
            // More fan-out to expand: `due` writes its next chunk.
            return Ok(Some(now_ms()));
        }
        let bound = KeyedBound::new(&per_endpoint.into());
        self.read_as_is(move |conn, inner| {
            let claims = inner.claims.lock();
            let mut next: Option<i64> = None;
            for endpoint in query::pending_endpoints(conn)? {
                if claims.on(endpoint) >= bound.on(endpoint) {
                    continue;
                }
                let all = claims.all_on(endpoint);
                let first = query::oldest_on(conn, endpoint, all.saturating_add(1))?
                    .into_iter()
                    .find(|(id, _)| !claims.contains(id))
                    .map(|(_, at)| at);
                next = match (next, first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(next)
        })
        .await
    }

    /// Resolves after a commit that may have made a delivery due (new deliveries, a retry,
    /// a replay), or at once if one happened since the last call. Meant for the one dispatcher:
    /// `select!` it against a sleep until [`Outbox::next_due_at`].
    pub async fn changed(&self) {
        self.inner.wake.notified().await;
    }

    /// Records one attempt's outcome and releases the claim on the delivery once committed.
    ///
    /// From the call on, the delivery no longer counts on its endpoint's bound (its attempt is
    /// over), and [`Outbox::changed`] wakes: its endpoint may take its next claim. It stays
    /// claimed until the record commits, so it is not handed out again meanwhile, nor after a
    /// record that failed to commit.
    ///
    /// Fails with [`OutboxError::NotPending`] when the delivery is unknown, delivered or dead.
    pub async fn record(&self, id: &str, record: AttemptRecord) -> Result<(), OutboxError> {
        if self.inner.claims.lock().attempted(id) {
            self.inner.wake.notify_one();
        }
        let id = id.to_owned();
        self.write(|reply| Request::Record(id, record, reply)).await
    }

    /// Gives up a claim without recording an attempt (e.g. shutting down mid-attempt).
    pub fn release(&self, id: &str) {
        self.inner.claims.lock().remove(id);
    }

    /// Puts a dead delivery back in the queue: pending, attempts reset, due now.
    /// Returns false when the delivery is unknown or not dead.
    pub async fn replay(&self, id: &str) -> Result<bool, OutboxError> {
        let id = id.to_owned();
        self.write(|reply| Request::Replay(id, reply)).await
    }

    /// Deletes delivered deliveries last updated before `before_ms` (unix ms), then the events
    /// left without deliveries and received before it. Returns the deliveries deleted.
    ///
    /// A pruned event id is forgotten: sent again, it is no longer a duplicate.
    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, OutboxError> {
        self.write(|reply| Request::Prune(before_ms, reply)).await
    }

    /// The delivery log, newest first.
    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, OutboxError> {
        self.read(move |conn, _| query::list(conn, &filter)).await
    }

    /// One delivery by id.
    pub async fn get(&self, id: &str) -> Result<Option<Delivery>, OutboxError> {
        let id = id.to_owned();
        self.read(move |conn, _| query::get(conn, &id)).await
    }

    /// Per webhook, how many deliveries reached each state since `since_ms` (unix ms).
    pub async fn webhook_counts(
        &self,
        since_ms: i64,
    ) -> Result<std::collections::HashMap<String, WebhookCounts>, OutboxError> {
        self.read(move |conn, _| query::webhook_counts(conn, since_ms))
            .await
    }

    /// Puts every dead delivery of a webhook back in the queue (see [`Outbox::replay`]);
    /// returns how many were. Each is its own write, so the writer batches them.
    pub async fn replay_dead(&self, webhook: &str) -> Result<usize, OutboxError> {
        let webhook = webhook.to_owned();
        let ids = self
            .read(move |conn, _| query::dead_ids(conn, &webhook))
            .await?;
        let mut replays = tokio::task::JoinSet::new();
        for id in ids {
            let outbox = self.clone();
            replays.spawn(async move { outbox.replay(&id).await });
        }
        let mut replayed = 0;
        while let Some(done) = replays.join_next().await {
            // A replay task only fails by panicking, which `replay` does not do.
            if let Ok(result) = done
                && result?
            {
                replayed += 1;
            }
        }
        Ok(replayed)
    }

    /// A delivery's attempts, in the order they were made (none for an unknown id).
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, OutboxError> {
        let id = id.to_owned();
        self.read(move |conn, _| query::attempts(conn, &id)).await
    }

    /// An event's JSON as it was received, if it is still stored.
    pub async fn event_json(&self, id: &str) -> Result<Option<String>, OutboxError> {
        let id = id.to_owned();
        self.read_as_is(move |conn, _| query::event_json(conn, &id))
            .await
    }

    /// How many deliveries are pending (claimed ones included), those still only in their
    /// event's fan-out too. Writes nothing: what samples the queue does not expand it.
    pub async fn queue_depth(&self) -> Result<u64, OutboxError> {
        self.read_as_is(|conn, inner| {
            // Before the rows: a fan-out expanded in between is then counted twice rather
            // than not at all, until the next sample.
            let unexpanded = inner.counters.unexpanded_deliveries();
            Ok(query::queue_depth(conn)? + unexpanded)
        })
        .await
    }

    /// How many deliveries are in each state.
    pub async fn counts_by_status(&self) -> Result<StatusCounts, OutboxError> {
        self.read(|conn, _| query::counts(conn)).await
    }

    /// Whether the store takes writes now: the writer commits a probe write (a row written and
    /// deleted in one transaction) through the path every event post takes.
    pub async fn check_writes(&self) -> Result<(), OutboxError> {
        self.write(Request::Probe).await
    }

    /// Whether the store can be read, by a read that touches the tables.
    pub async fn check_reads(&self) -> Result<(), OutboxError> {
        self.read_as_is(|conn, _| query::touch(conn)).await
    }

    /// Why the latest write the writer ran failed, or `None` if it committed (or none ran):
    /// what the store said last, without asking it anything.
    pub fn last_write_failure(&self) -> Option<String> {
        self.inner.counters.write_failure()
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sends a request to the writer thread and waits for its post-commit answer.
    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let writer = self.inner.writer.as_ref().ok_or(OutboxError::Closed)?;
        writer
            .send(make(Reply::new(reply)))
            .map_err(|_| OutboxError::Closed)?;
        self.inner.counters.submitted();
        answer.await.map_err(|_| OutboxError::Closed)?
    }

    /// Writes the delivery rows of every event stored so far whose fan-out has none yet (a
    /// post stores only its event's row). Every read of deliveries runs this first, so it sees
    /// at least what was committed before it started; it costs nothing when nothing is left.
    pub async fn expand_fan_out(&self) -> Result<(), OutboxError> {
        while self.inner.counters.unexpanded() {
            self.write(Request::Expand).await?;
        }
        Ok(())
    }

    /// Writes the delivery rows of the oldest events whose fan-out has none yet, one chunk of
    /// them, if any.
    async fn expand_fan_out_once(&self) -> Result<(), OutboxError> {
        if self.inner.counters.unexpanded() {
            self.write(Request::Expand).await?;
        }
        Ok(())
    }

    /// Runs a query of deliveries on a pooled read connection on a blocking thread, after the
    /// deliveries committed so far have their rows ([`Outbox::expand_fan_out`]).
    async fn read<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Inner) -> Result<T, OutboxError> + Send + 'static,
    {
        self.expand_fan_out().await?;
        self.read_as_is(f).await
    }

    /// Runs a query on a pooled read connection on a blocking thread, whatever is expanded.
    async fn read_as_is<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Inner) -> Result<T, OutboxError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = f(&conn, &inner);
            inner.put_reader(conn);
            result
        })
        .await
        .map_err(|_| OutboxError::Closed)?
    }
}

impl Inner {
    /// A read connection from the pool, or a new one.
    fn take_reader(&self) -> Result<Connection, OutboxError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    /// Returns a read connection to the pool, or closes it when the pool is full.
    fn put_reader(&self, conn: Connection) {
        let mut pool = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < IDLE_READERS {
            pool.push(conn);
        }
    }
}

impl Drop for Inner {
    /// Closes the channel and waits for the writer to finish its batch and close the file.
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What the marker file says to a person who finds it.
const MARKER_TEXT: &str = "whc created its outbox database beside this file. If that database \
is ever missing or empty while this file exists, whc refuses to start rather than silently \
start empty. To start with an empty outbox on purpose, delete this file.\n";

/// The marker beside the database `path`: `outbox.created` for `outbox.db`.
fn marker_of(path: &Path) -> PathBuf {
    path.with_extension("created")
}

/// The current time in unix milliseconds, the outbox's clock for every stored time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The answer to each event of [`Outbox::accept`], from what the writer found stored (stored
/// now, under the id it was given; a duplicate's delivery ids from the first time). The ids are
/// moved out of the
/// events: the writer lets go of them before it answers, so they are copied only should it not.
fn answers(events: Arc<Vec<NewEvent>>, stored: Vec<Stored>) -> Vec<Accepted> {
    let events = Arc::try_unwrap(events).unwrap_or_else(|shared| (*shared).clone());
    (events.into_iter().zip(stored))
        .map(|(event, stored)| match stored {
            Stored::Duplicate(earlier) => Accepted {
                id: event.id,
                duplicate: true,
                deliveries: earlier,
            },
            Stored::New(assigned) => Accepted {
                id: assigned.map_or(event.id, |id| String::from_utf8_lossy(&id).into_owned()),
                duplicate: false,
                deliveries: event.deliveries.into_iter().map(|d| d.id).collect(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
