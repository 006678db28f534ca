//! Group commit: one thread owns the write connection and commits every queued request at once.
//!
//! Callers send a [`Request`] and await its oneshot reply. The thread takes the first request,
//! drains whatever else is queued (up to [`BATCH_EVENTS`] events), runs them all in one
//! transaction (a request that fails part-way makes the batch run again with a savepoint per
//! request, so that it undoes only its own writes), commits, and only then answers. While a
//! commit's fsync runs, new requests queue up and form the next batch, so the fsync cost is
//! shared by everyone who arrived during it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, Statement, params};
use tokio::sync::{Notify, oneshot};

use super::payload::Payload;
use super::schema::FAN_OUT_LIMIT;
use super::types::{
    AttemptRecord, NewEvent, RecordColumns, Stats, endpoint_key, endpoint_of, error_text, excerpt,
};
use super::{Accepted, Claims, OutboxError, now_ms};

/// The most events one transaction takes before it commits (bounds commit latency).
const BATCH_EVENTS: usize = 1000;

/// One write, with the channel its answer goes back on.
pub(crate) enum Request {
    /// Store events and their deliveries.
    Accept(Vec<NewEvent>, Reply<Vec<Accepted>>),
    /// Record an attempt's outcome.
    Record(String, AttemptRecord, Reply<()>),
    /// Put a dead delivery back in the queue.
    Replay(String, Reply<bool>),
    /// Delete delivered rows last touched before a time, then events left without deliveries.
    Prune(i64, Reply<usize>),
    /// Write and commit a row that is deleted in the same transaction: whether the store takes
    /// writes now (triggers, a read-only file, a full disk), for the readiness check.
    Probe(Reply<()>),
}

/// A write's way back to its caller, and its own result once it ran in the transaction.
pub(crate) struct Reply<T> {
    tx: oneshot::Sender<Result<T, OutboxError>>,
    result: Option<Result<T, OutboxError>>,
}

impl<T> Reply<T> {
    /// A reply on `tx`, not run yet.
    pub(crate) fn new(tx: oneshot::Sender<Result<T, OutboxError>>) -> Self {
        Reply { tx, result: None }
    }

    /// Sends the result after the commit; a write that never ran is answered as not stored.
    /// A caller that stopped waiting (dropped future) is not an error.
    fn send(self) {
        let result = self.result.unwrap_or(Err(OutboxError::Closed));
        drop(self.tx.send(result));
    }

    /// Sends a failure of the whole batch.
    fn fail(self, e: OutboxError) {
        drop(self.tx.send(Err(e)));
    }

    /// Whether the transaction holds none of this write's changes should it have failed: it
    /// has not run, it succeeded, or it failed before writing (an attempt on a delivery no
    /// longer pending).
    fn left_clean(&self) -> bool {
        matches!(
            self.result,
            None | Some(Ok(_)) | Some(Err(OutboxError::NotPending(_)))
        )
    }
}

/// Runs `$body` on the [`Reply`] of any kind of [`Request`], bound to `$r`.
macro_rules! with_reply {
    ($request:expr, $r:ident => $body:expr) => {
        match $request {
            Request::Accept(_, $r) => $body,
            Request::Record(_, _, $r) => $body,
            Request::Replay(_, $r) => $body,
            Request::Prune(_, $r) => $body,
            Request::Probe($r) => $body,
        }
    };
}

impl Request {
    /// Whether this request can make a delivery due sooner than the dispatcher expects.
    fn may_make_due(&self) -> bool {
        match self {
            Request::Accept(..) | Request::Replay(..) => true,
            Request::Record(_, record, _) => matches!(record, AttemptRecord::Retry { .. }),
            Request::Prune(..) | Request::Probe(..) => false,
        }
    }

    /// How much of a batch this request uses.
    fn weight(&self) -> usize {
        match self {
            Request::Accept(events, _) => events.len().max(1),
            _ => 1,
        }
    }
}

/// The writer's counters, shared with [`super::Outbox::stats`].
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
    /// Counts a request handed to the writer.
    pub(crate) fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the last batch with a write failing for the store's sake failed, or `None` when
    /// the latest write that ran committed (or none ran yet).
    pub(crate) fn write_failure(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Keeps what the last batch said about the store's health.
    fn set_health(&self, failure: Option<String>) {
        *self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = failure;
    }

    /// A snapshot of the counters.
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            submitted: self.submitted.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }
}

/// The statements every batch runs, prepared once by the writer thread: a statement-cache
/// lookup hashes the SQL text, and `BEGIN`/`COMMIT` through `execute_batch` are parsed again
/// on every batch (measured with callgrind: ~4k and ~3k instructions per event under load).
pub(crate) struct Statements<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    insert_event: Statement<'c>,
    insert_delivery: Statement<'c>,
    existing: Statement<'c>,
}

impl<'c> Statements<'c> {
    /// Prepares them on the writer's connection.
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Statements<'c>> {
        Ok(Statements {
            // IMMEDIATE: take the write lock up front (waiting on busy_timeout if another
            // process holds it) instead of failing with SQLITE_BUSY when a read would upgrade
            // to a write.
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            rollback: conn.prepare("ROLLBACK")?,
            insert_event: conn.prepare(
                "INSERT INTO events (id, type, body, received_at, occurred_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            )?,
            insert_delivery: conn.prepare(
                "INSERT INTO deliveries (seq, id, event_seq, webhook, method, url, headers, body,
                     secret_env, timeout_ms, max_attempts, status, next_attempt_at, created_at,
                     updated_at, envelope, endpoint, endpoint_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?12, ?12,
                     ?13, ?14, ?15)",
            )?,
            // An event's deliveries are the range of keys its own `seq` starts.
            existing: conn.prepare(
                "SELECT d.id FROM events e JOIN deliveries d
                     ON d.seq >= e.seq * 65536 AND d.seq < (e.seq + 1) * 65536
                 WHERE e.id = ?1 ORDER BY d.seq",
            )?,
        })
    }
}

/// The writer thread's loop: runs until every sender is dropped, then returns.
pub(crate) fn run(
    conn: Connection,
    requests: Receiver<Request>,
    counters: Arc<Counters>,
    claims: Arc<Claims>,
    wake: Arc<Notify>,
) {
    let mut statements: Option<Statements<'_>> = None;
    while let Ok(first) = requests.recv() {
        let started = std::time::Instant::now();
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < BATCH_EVENTS {
            match requests.try_recv() {
                Ok(next) => {
                    weight += next.weight();
                    batch.push(next);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if statements.is_none() {
            match Statements::prepare(&conn) {
                Ok(prepared) => statements = Some(prepared),
                Err(e) => {
                    let e = Arc::new(e);
                    counters.set_health(Some(e.to_string()));
                    batch.into_iter().for_each(|request| request.fail(&e));
                    continue;
                }
            }
        }
        if let Some(statements) = statements.as_mut() {
            commit_batch(&conn, statements, batch, &counters, &claims, &wake);
        }
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.busy_micros.fetch_add(busy, Ordering::Relaxed);
    }
}

/// Runs one batch in one transaction and answers every request after COMMIT returned.
///
/// The requests run straight in the transaction. When one fails in a way that may have left
/// part of its writes behind, the transaction is rolled back and the batch runs again with each
/// request in its own savepoint, so that the failure undoes only that request. Savepoints cost
/// a statement pair and a sub-journal per request, which the common case does without.
fn commit_batch(
    conn: &Connection,
    statements: &mut Statements<'_>,
    mut batch: Vec<Request>,
    counters: &Counters,
    claims: &Claims,
    wake: &Notify,
) {
    let wakes = batch.iter().any(Request::may_make_due);
    let now = now_ms();
    let mut stored_events = 0u64;
    let result = match run_batch(
        conn,
        statements,
        &mut batch,
        Isolation::Straight,
        now,
        &mut stored_events,
    ) {
        Ok(false) => run_batch(
            conn,
            statements,
            &mut batch,
            Isolation::Savepoints,
            now,
            &mut stored_events,
        )
        .map(|_| ()),
        other => other.map(|_| ()),
    };
    let failed = match result {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.events.fetch_add(stored_events, Ordering::Relaxed);
            None
        }
        Err(e) => Some(Arc::new(e)),
    };
    // Unclaim recorded deliveries after COMMIT and before answering: a `due` query that starts
    // later sees the new state; one already running holds the claims lock and sees the claim.
    // A record that was not stored keeps its claim: the delivery was attempted, and the
    // dispatcher tries the record again rather than letting the delivery be sent again.
    if failed.is_none() && batch.iter().any(|r| matches!(r, Request::Record(..))) {
        let mut claimed = claims.lock();
        for request in &batch {
            if let Request::Record(id, _, reply) = request
                && matches!(
                    reply.result,
                    Some(Ok(())) | Some(Err(OutboxError::NotPending(_)))
                )
            {
                claimed.remove(id);
            }
        }
    }
    counters.set_health(match &failed {
        Some(e) => Some(e.to_string()),
        None => batch.iter().find_map(Request::store_failure),
    });
    if wakes && failed.is_none() {
        wake.notify_one();
    }
    match &failed {
        Some(e) => batch.into_iter().for_each(|request| request.fail(e)),
        None => batch.into_iter().for_each(Request::answer),
    }
}

/// How the requests of one batch share its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// One after another, no savepoints: the fast path, rolled back whole if a request fails
    /// in a way that may have left writes behind.
    Straight,
    /// Each request in its own savepoint, so a failing one undoes only its own writes.
    Savepoints,
}

/// Runs every request of the batch in one transaction, each keeping its own result. Returns
/// whether it committed: `false` when, run [`Isolation::Straight`], a request failed in a way
/// that may have left writes behind, and the transaction was rolled back. A transaction that
/// could not commit is rolled back before the error returns.
fn run_batch(
    conn: &Connection,
    statements: &mut Statements<'_>,
    batch: &mut [Request],
    isolation: Isolation,
    now: i64,
    stored: &mut u64,
) -> Result<bool, rusqlite::Error> {
    statements.begin.execute([])?;
    let result = run_open_batch(conn, statements, batch, isolation, now, stored);
    if !matches!(result, Ok(true)) && !conn.is_autocommit() {
        // What dropping a rusqlite `Transaction` does; its own failure changes nothing more.
        drop(statements.rollback.execute([]));
    }
    result
}

/// The part of [`run_batch`] inside the open transaction: the requests, then COMMIT, or
/// `Ok(false)` to have the caller roll back.
fn run_open_batch(
    conn: &Connection,
    statements: &mut Statements<'_>,
    batch: &mut [Request],
    isolation: Isolation,
    now: i64,
    stored: &mut u64,
) -> Result<bool, rusqlite::Error> {
    *stored = 0;
    for request in batch.iter_mut() {
        match isolation {
            Isolation::Savepoints => request.apply_in_savepoint(conn, statements, now, stored),
            Isolation::Straight => request.apply(conn, statements, now, stored),
        }
    }
    if isolation == Isolation::Straight && !batch.iter().all(Request::left_clean) {
        return Ok(false);
    }
    statements.commit.execute([])?;
    Ok(true)
}

impl Request {
    /// The error of this request if it failed for the store's sake (not because the delivery
    /// was no longer pending).
    fn store_failure(&self) -> Option<String> {
        with_reply!(self, r => match &r.result {
            Some(Err(OutboxError::NotPending(_))) | Some(Ok(_)) | None => None,
            Some(Err(e)) => Some(e.to_string()),
        })
    }

    /// Whether the transaction holds none of this request's writes should it have failed.
    fn left_clean(&self) -> bool {
        with_reply!(self, r => r.left_clean())
    }

    /// Answers with a failure of the whole batch (the transaction could not start or commit).
    fn fail(self, e: &Arc<rusqlite::Error>) {
        with_reply!(self, r => r.fail(OutboxError::Commit(Arc::clone(e))))
    }

    /// Sends the request's own result, after the commit.
    fn answer(self) {
        with_reply!(self, r => r.send())
    }

    /// Runs the request in the open transaction and keeps its result.
    fn apply(
        &mut self,
        conn: &Connection,
        statements: &mut Statements<'_>,
        now: i64,
        stored: &mut u64,
    ) {
        match self {
            Request::Accept(events, r) => {
                r.result = Some(accept(conn, statements, events, now, stored));
            }
            Request::Record(id, record, r) => {
                r.result = Some(record_attempt(conn, id, record, now));
            }
            Request::Replay(id, r) => r.result = Some(replay(conn, id, now)),
            Request::Prune(before, r) => r.result = Some(prune(conn, *before)),
            Request::Probe(r) => r.result = Some(probe(conn)),
        }
    }

    /// Runs the request in its own savepoint: released on success, rolled back when the
    /// request failed.
    fn apply_in_savepoint(
        &mut self,
        conn: &Connection,
        statements: &mut Statements<'_>,
        now: i64,
        stored: &mut u64,
    ) {
        let before = *stored;
        if let Err(e) = conn.execute_batch("SAVEPOINT request") {
            return self.failed_with(e.into());
        }
        self.apply(conn, statements, now, stored);
        if !self.left_clean() {
            *stored = before;
            // The request's own error is the one it answers with.
            drop(conn.execute_batch("ROLLBACK TO request; RELEASE request"));
            return;
        }
        if let Err(e) = conn.execute_batch("RELEASE request") {
            *stored = before;
            drop(conn.execute_batch("ROLLBACK TO request; RELEASE request"));
            self.failed_with(e.into());
        }
    }

    /// Keeps an error as this request's result.
    fn failed_with(&mut self, e: OutboxError) {
        with_reply!(self, r => r.result = Some(Err(e)))
    }
}

/// Stores new events and their deliveries; an id already stored is a duplicate.
///
/// A delivery's `seq` is its event's `seq` times [`FAN_OUT_LIMIT`] plus its place in the
/// fan-out (see the schema's step 8).
fn accept(
    conn: &Connection,
    statements: &mut Statements<'_>,
    events: &[NewEvent],
    now: i64,
    stored: &mut u64,
) -> Result<Vec<Accepted>, OutboxError> {
    let mut answers = Vec::with_capacity(events.len());
    for event in events {
        if i64::try_from(event.deliveries.len()).map_or(true, |n| n > FAN_OUT_LIMIT) {
            return Err(OutboxError::OutOfRange {
                field: "deliveries per event",
            });
        }
        let inserted = statements.insert_event.execute(params![
            event.id,
            event.kind,
            event.body,
            now,
            event.occurred_at
        ])?;
        if inserted == 0 {
            let ids = statements
                .existing
                .query_map([&event.id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            answers.push(Accepted {
                id: event.id.clone(),
                duplicate: true,
                deliveries: ids,
            });
            continue;
        }
        *stored += 1;
        let event_seq = conn.last_insert_rowid();
        let first = event_seq
            .checked_mul(FAN_OUT_LIMIT)
            .ok_or(OutboxError::OutOfRange { field: "event seq" })?;
        let mut ids = Vec::with_capacity(event.deliveries.len());
        for (n, d) in (0i64..).zip(&event.deliveries) {
            // Most webhooks set no header: skip the encoder for them.
            let headers = if d.headers.is_empty() {
                std::borrow::Cow::Borrowed("[]")
            } else {
                serde_json::to_string(&d.headers)
                    .map_err(OutboxError::Headers)?
                    .into()
            };
            let timeout_ms = i64::try_from(d.timeout_ms).map_err(|_| OutboxError::OutOfRange {
                field: "timeout_ms",
            })?;
            let (body, envelope) = match &d.body {
                Payload::Empty => (None, false),
                Payload::Bytes(bytes) => (Some(bytes.as_slice()), false),
                Payload::Envelope => (None, true),
            };
            let endpoint = endpoint_of(&d.url);
            let key = endpoint_key(&endpoint);
            statements.insert_delivery.execute(params![
                first + n,
                d.id,
                event_seq,
                d.webhook,
                d.method,
                d.url,
                headers,
                body,
                d.secret_env,
                timeout_ms,
                d.max_attempts,
                now,
                envelope,
                endpoint,
                key,
            ])?;
            ids.push(d.id.clone());
        }
        answers.push(Accepted {
            id: event.id.clone(),
            duplicate: false,
            deliveries: ids,
        });
    }
    Ok(answers)
}

/// Records one attempt on a pending delivery.
fn record_attempt(
    conn: &Connection,
    id: &str,
    record: &AttemptRecord,
    now: i64,
) -> Result<(), OutboxError> {
    let RecordColumns {
        outcome,
        status,
        next_attempt_at: next_at,
        status_code: code,
        error,
        excerpt: body,
        elapsed_ms: elapsed,
    } = record.columns();
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, status = ?2,
                 next_attempt_at = coalesce(?3, next_attempt_at), last_status_code = ?4,
                 last_error = ?5, response_excerpt = ?6, last_attempt_ms = ?7, updated_at = ?8
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            id,
            status,
            next_at,
            code,
            error.map(error_text),
            body.map(excerpt),
            elapsed,
            now
        ])?;
    if changed == 0 {
        return Err(OutboxError::NotPending(id.to_owned()));
    }
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, at, outcome, status_code, error, excerpt, elapsed_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        now,
        outcome,
        code,
        error.map(error_text),
        body.map(excerpt),
        elapsed
    ])?;
    Ok(())
}

/// Puts a dead delivery back in the queue, due now, with its attempts reset.
fn replay(conn: &Connection, id: &str, now: i64) -> Result<bool, OutboxError> {
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 updated_at = ?2
             WHERE id = ?1 AND status = 'dead'",
        )?
        .execute(params![id, now])?;
    Ok(changed > 0)
}

/// Writes an event row and deletes it again: the write path every post takes (its triggers,
/// constraints and pages), with nothing left behind once committed.
fn probe(conn: &Connection) -> Result<(), OutboxError> {
    const ID: &str = "whc:readiness-probe";
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, type, body, received_at) VALUES (?1, 'probe', '{}', 0)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute([ID])?;
    if inserted > 0 {
        conn.prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([ID])?;
    }
    Ok(())
}

/// Deletes delivered rows (and their attempts) last updated before `before`, then events with
/// no delivery left.
///
/// An event pruned this way is forgotten: the same id sent again is no longer a duplicate.
fn prune(conn: &Connection, before: i64) -> Result<usize, OutboxError> {
    conn.prepare_cached(
        "DELETE FROM attempts WHERE delivery_id IN
             (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < ?1)",
    )?
    .execute([before])?;
    let removed = conn
        .prepare_cached("DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?1")?
        .execute([before])?;
    conn.prepare_cached(
        "DELETE FROM events WHERE received_at < ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries d
             WHERE d.seq >= events.seq * 65536 AND d.seq < (events.seq + 1) * 65536)",
    )?
    .execute([before])?;
    Ok(removed)
}
