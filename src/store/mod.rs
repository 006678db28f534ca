//! The sidecar's queue behind one interface: the embedded SQLite outbox, or PostgreSQL shared
//! by a fleet of sidecars.
//!
//! [`Store`] is what the sidecar holds; it answers the same calls whichever store is behind it
//! (accept events, claim due deliveries, record attempts, replay, prune, read the log), and the
//! contract tests (`contract.rs`) hold both stores to the same behaviour.

pub mod postgres;
pub mod scratch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::HashMap;

use crate::outbox::{
    Accepted, Attempt, AttemptRecord, Delivery, DeliveryFilter, NewEvent, Outbox, OutboxError,
    Stats, StatusCounts, WebhookCounts,
};

/// How many deliveries this sidecar may hold claimed per endpoint (scheme, host and port): a
/// base for every endpoint, and wider windows for endpoints that keep up (the dispatcher
/// widens them; see `deliver::Windows`). Both stores take the wider windows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimBound {
    base: usize,
    wider: HashMap<String, usize>,
}

impl ClaimBound {
    /// `base` claims on every endpoint, and `wider` ones (never fewer than `base`) on those
    /// named.
    pub fn new(base: usize, wider: HashMap<String, usize>) -> ClaimBound {
        ClaimBound { base, wider }
    }

    /// The bound of every endpoint not widened.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The widened endpoints and their windows (each may be below the base, which wins).
    pub fn widened(&self) -> impl Iterator<Item = (&str, usize)> {
        self.wider.iter().map(|(e, n)| (e.as_str(), *n))
    }

    /// The bound on `endpoint`.
    pub fn on(&self, endpoint: &str) -> usize {
        self.wider
            .get(endpoint)
            .copied()
            .unwrap_or(self.base)
            .max(self.base)
    }
}

impl From<usize> for ClaimBound {
    fn from(base: usize) -> ClaimBound {
        ClaimBound {
            base,
            wider: HashMap::new(),
        }
    }
}

/// Where the queue lives, as `whc serve --store` (or `WHC_STORE`) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded SQLite outbox, `outbox.db` in the data directory: the default.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its connection URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl StoreLocation {
    /// Reads a `--store` value: a `postgres://` or `postgresql://` URL picks PostgreSQL,
    /// `sqlite` (or nothing) the SQLite outbox in `data`.
    pub fn parse(store: Option<&str>, data: &Path) -> Result<StoreLocation, UnknownStore> {
        match store.map(str::trim) {
            None | Some("") | Some("sqlite") => Ok(StoreLocation::Sqlite(data.join("outbox.db"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StoreLocation::Postgres(url.to_owned()))
            }
            Some(other) => Err(UnknownStore(redact(other))),
        }
    }

    /// How logs and errors name it: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => redact(url),
        }
    }
}

/// A `--store` value that names no store whc has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown store `{0}`: expected `sqlite` (the default, `outbox.db` in --data) or a \
     PostgreSQL URL such as postgres://whc@db.internal:5432/whc"
)]
pub struct UnknownStore(pub String);

/// A connection string with any password replaced by `***`, fit for logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

/// How a store is opened beyond its location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a claim on a delivery holds in a shared store before another sidecar may take
    /// it over (the SQLite outbox keeps its claims in memory and ignores it).
    pub claim_lease: Duration,
}

/// The default `--claim-lease`.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(30);

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            claim_lease: DEFAULT_CLAIM_LEASE,
        }
    }
}

/// Why a store operation failed, whichever store it was.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An attempt was recorded for a delivery that is unknown, delivered or dead.
    #[error("delivery {0} is not pending")]
    NotPending(String),
    /// The SQLite outbox failed.
    #[error(transparent)]
    Sqlite(OutboxError),
    /// `--store` names no store whc has.
    #[error(transparent)]
    Unknown(#[from] UnknownStore),
    /// The PostgreSQL store failed.
    #[error(transparent)]
    Postgres(postgres::PgError),
}

impl From<postgres::PgError> for StoreError {
    fn from(e: postgres::PgError) -> StoreError {
        match e {
            postgres::PgError::NotPending(id) => StoreError::NotPending(id),
            other => StoreError::Postgres(other),
        }
    }
}

impl From<OutboxError> for StoreError {
    fn from(e: OutboxError) -> StoreError {
        match e {
            OutboxError::NotPending(id) => StoreError::NotPending(id),
            other => StoreError::Sqlite(other),
        }
    }
}

/// The queue: a cheap, cloneable handle shared by ingest, the dispatcher and the admin API.
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded SQLite outbox.
    Sqlite(Outbox),
    /// A PostgreSQL database shared by a fleet.
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating and migrating when needed) the store at `location`.
    pub async fn open(
        location: &StoreLocation,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => {
                let path = path.clone();
                let outbox = tokio::task::spawn_blocking(move || Outbox::open(&path))
                    .await
                    .map_err(|_| StoreError::Sqlite(OutboxError::Closed))??;
                Ok(Store::Sqlite(outbox))
            }
            StoreLocation::Postgres(url) => Ok(Store::Postgres(
                postgres::PgStore::open(url, options.claim_lease).await?,
            )),
        }
    }

    /// Stores events and their deliveries; `Ok` means committed. An event id already stored
    /// is a duplicate: nothing is written and its existing delivery ids come back.
    pub async fn accept(&self, events: Vec<NewEvent>) -> Result<Vec<Accepted>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.accept(events).await?),
            Store::Postgres(p) => Ok(p.accept(events).await?),
        }
    }

    /// Claims up to `limit` deliveries due at `now_ms`, oldest due first, at most
    /// `per_endpoint` (a number, or a [`ClaimBound`] with wider windows) claimed by this
    /// sidecar per endpoint at any time. A delivery counts there until its attempt's record is
    /// handed in ([`Store::record`]), and stays claimed until that record commits.
    pub async fn due(
        &self,
        now_ms: i64,
        limit: usize,
        per_endpoint: impl Into<ClaimBound>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let bound = per_endpoint.into();
        match self {
            Store::Sqlite(o) => Ok(o.due(now_ms, limit, bound).await?),
            Store::Postgres(p) => Ok(p.due(now_ms, limit, &bound).await?),
        }
    }

    /// When the next delivery [`Store::due`] could claim is due (unix ms), if any.
    pub async fn next_due_at(
        &self,
        per_endpoint: impl Into<ClaimBound>,
    ) -> Result<Option<i64>, StoreError> {
        let bound = per_endpoint.into();
        match self {
            Store::Sqlite(o) => Ok(o.next_due_at(bound).await?),
            Store::Postgres(p) => Ok(p.next_due_at(&bound).await?),
        }
    }

    /// Resolves after a commit (here or, for a shared store, anywhere in the fleet) that may
    /// have made a delivery due.
    pub async fn changed(&self) {
        match self {
            Store::Sqlite(o) => o.changed().await,
            Store::Postgres(p) => p.changed().await,
        }
    }

    /// Records one attempt's outcome and releases the claim once committed.
    pub async fn record(&self, id: &str, record: AttemptRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.record(id, record).await?),
            Store::Postgres(p) => Ok(p.record(id, record).await?),
        }
    }

    /// Gives up a claim without recording an attempt.
    pub async fn release(&self, id: &str) {
        match self {
            Store::Sqlite(o) => o.release(id),
            Store::Postgres(p) => p.release(id).await,
        }
    }

    /// Puts a dead delivery back in the queue; false when it is unknown or not dead.
    pub async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.replay(id).await?),
            Store::Postgres(p) => Ok(p.replay(id).await?),
        }
    }

    /// Deletes delivered deliveries last updated before `before_ms`, then events left without
    /// deliveries; returns the deliveries deleted.
    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.prune_delivered(before_ms).await?),
            Store::Postgres(p) => Ok(p.prune_delivered(before_ms).await?),
        }
    }

    /// The delivery log, newest first.
    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.list(filter).await?),
            Store::Postgres(p) => Ok(p.list(filter).await?),
        }
    }

    /// One delivery by id.
    pub async fn get(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.get(id).await?),
            Store::Postgres(p) => Ok(p.get(id).await?),
        }
    }

    /// Per webhook, how many deliveries reached each state since `since_ms` (by when they last
    /// changed).
    pub async fn webhook_counts(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<String, WebhookCounts>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.webhook_counts(since_ms).await?),
            Store::Postgres(p) => Ok(p.webhook_counts(since_ms).await?),
        }
    }

    /// Puts every dead delivery of a webhook back in the queue; returns how many.
    pub async fn replay_dead(&self, webhook: &str) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.replay_dead(webhook).await?),
            Store::Postgres(p) => Ok(p.replay_dead(webhook).await?),
        }
    }

    /// A delivery's attempts, in the order they were made.
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.attempts(id).await?),
            Store::Postgres(p) => Ok(p.attempts(id).await?),
        }
    }

    /// An event's JSON as it was received, if it is still stored.
    pub async fn event_json(&self, id: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.event_json(id).await?),
            Store::Postgres(p) => Ok(p.event_json(id).await?),
        }
    }

    /// How many deliveries are pending (claimed ones included).
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.queue_depth().await?),
            Store::Postgres(p) => Ok(p.queue_depth().await?),
        }
    }

    /// How many deliveries are in each state.
    pub async fn counts_by_status(&self) -> Result<StatusCounts, StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.counts_by_status().await?),
            Store::Postgres(p) => Ok(p.counts_by_status().await?),
        }
    }

    /// Whether the store takes a write now, through the path every event post takes.
    pub async fn check_writes(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.check_writes().await?),
            Store::Postgres(p) => Ok(p.check_writes().await?),
        }
    }

    /// Whether the store can be read.
    pub async fn check_reads(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(o) => Ok(o.check_reads().await?),
            Store::Postgres(p) => Ok(p.check_reads().await?),
        }
    }

    /// Why the latest write failed, or `None` if it committed (or none ran).
    pub fn last_write_failure(&self) -> Option<String> {
        match self {
            Store::Sqlite(o) => o.last_write_failure(),
            Store::Postgres(p) => p.last_write_failure(),
        }
    }

    /// The writer's group-commit counters since open.
    pub fn stats(&self) -> Stats {
        match self {
            Store::Sqlite(o) => o.stats(),
            Store::Postgres(p) => p.stats(),
        }
    }

    /// Whether this store is shared by a fleet (deliveries paused fleet-wide through it).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Pauses or resumes deliveries across the fleet: `Some(changed)` for a shared store, whose
    /// sidecars all hear of it; `None` for the SQLite outbox, where pausing is this process's.
    pub async fn set_fleet_paused(&self, paused: bool) -> Option<Result<bool, StoreError>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(p) => Some(p.set_paused(paused).await.map_err(StoreError::from)),
        }
    }

    /// The fleet's pause flag, followed as the other sidecars change it (shared stores only).
    pub fn fleet_paused(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(p) => Some(p.paused()),
        }
    }

    /// The SQLite file, for a SQLite store.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Store::Sqlite(o) => Some(o.path()),
            Store::Postgres(_) => None,
        }
    }

    /// How logs name the store.
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(o) => o.path().display().to_string(),
            Store::Postgres(p) => p.describe().to_owned(),
        }
    }
}

#[cfg(test)]
pub(crate) mod contract;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_values_pick_the_store() {
        let data = Path::new("/var/lib/whc");
        assert_eq!(
            StoreLocation::parse(None, data),
            Ok(StoreLocation::Sqlite(data.join("outbox.db")))
        );
        assert_eq!(
            StoreLocation::parse(Some("sqlite"), data),
            Ok(StoreLocation::Sqlite(data.join("outbox.db")))
        );
        assert_eq!(
            StoreLocation::parse(Some("postgres://whc@db:5432/whc"), data),
            Ok(StoreLocation::Postgres("postgres://whc@db:5432/whc".into()))
        );
        let err = StoreLocation::parse(Some("mysql://root:hunter2@db/whc"), data).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn passwords_stay_out_of_descriptions() {
        assert_eq!(
            redact("postgres://whc:s3cret@db:5432/whc"),
            "postgres://whc:***@db:5432/whc"
        );
        assert_eq!(redact("postgres://whc@db/whc"), "postgres://whc@db/whc");
        assert_eq!(redact("postgres://db:5432/whc"), "postgres://db:5432/whc");
    }
}
