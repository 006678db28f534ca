//! Group commit: one thread owns the write connection and commits every queued request at once.
//!
//! Callers send a [`Request`] and await its oneshot reply. The thread takes the first request,
//! drains whatever else is queued (up to [`BATCH_EVENTS`] events), runs them all in one
//! transaction (a request that fails part-way makes the batch run again with a savepoint per
//! request, so that it undoes only its own writes), commits, and only then answers. While a
//! commit's fsync runs, new requests queue up and form the next batch, so the fsync cost is
//! shared by everyone who arrived during it.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, OptionalExtension, Statement, params};
use tokio::sync::{Notify, oneshot};

use super::schema::FAN_OUT_LIMIT;
use super::types::{
    AttemptRecord, NewDelivery, NewEvent, RecordColumns, Stats, endpoint_key, endpoint_of,
    error_text, excerpt,
};
use super::{Claims, OutboxError, now_ms};
use super::{event_id, fanout};

/// The most events one transaction takes before it commits (bounds commit latency).
const BATCH_EVENTS: usize = 1000;

/// The most events whose fan-out one [`Request::Expand`] writes as delivery rows.
const EXPAND_EVENTS: i64 = 2000;

/// One write, with the channel its answer goes back on.
pub(crate) enum Request {
    /// Store events and their deliveries; answers what became of each (see [`Stored`]). The
    /// events are shared with the caller, who frees them (see [`super::Outbox::accept`]).
    Accept(Arc<Vec<NewEvent>>, Reply<Vec<Stored>>),
    /// Record an attempt's outcome.
    Record(String, AttemptRecord, Reply<()>),
    /// Put a dead delivery back in the queue.
    Replay(String, Reply<bool>),
    /// Delete delivered rows last touched before a time, then events left without deliveries.
    Prune(i64, Reply<usize>),
    /// Write and commit a row that is deleted in the same transaction: whether the store takes
    /// writes now (triggers, a read-only file, a full disk), for the readiness check.
    Probe(Reply<()>),
    /// Write the deliveries of the oldest events whose fan-out has no rows yet (at most
    /// [`EXPAND_EVENTS`] of them); answers the last event `seq` expanded through.
    Expand(Reply<i64>),
}

/// What became of one event of an [`Request::Accept`]: only what the caller does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Stored now; with the id the outbox gave it instead of the one whc made (see
    /// [`NewEvent::assigned`]), as text.
    New(Option<[u8; 36]>),
    /// Its id was stored before: the delivery ids stored the first time.
    Duplicate(Vec<String>),
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
            Request::Expand($r) => $body,
        }
    };
}

impl Request {
    /// Whether this request can make a delivery due sooner than the dispatcher expects.
    fn may_make_due(&self) -> bool {
        match self {
            Request::Accept(..) | Request::Replay(..) => true,
            Request::Record(_, record, _) => matches!(record, AttemptRecord::Retry { .. }),
            // Expanding writes rows its caller reads next; a new event woke the dispatcher.
            Request::Prune(..) | Request::Probe(..) | Request::Expand(..) => false,
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
    /// The last event `seq` committed with a fan-out (or at open, the last stored).
    fanned: AtomicI64,
    /// The last event `seq` whose fan-out is committed as delivery rows.
    expanded: AtomicI64,
    /// The deliveries committed in events' fan-out and not yet as rows.
    unexpanded_deliveries: AtomicU64,
}

impl Counters {
    /// Starts the fan-out marks from what the file holds at open.
    pub(crate) fn set_fan_out_marks(&self, marks: FanOutMarks) {
        self.fanned.store(marks.fanned, Ordering::Release);
        self.expanded.store(marks.expanded, Ordering::Release);
        self.unexpanded_deliveries
            .store(marks.unexpanded_deliveries, Ordering::Release);
    }

    /// How many committed deliveries are only in their event's fan-out, not rows yet.
    pub(crate) fn unexpanded_deliveries(&self) -> u64 {
        self.unexpanded_deliveries.load(Ordering::Acquire)
    }

    /// Whether a committed event's fan-out may still lack its delivery rows.
    pub(crate) fn unexpanded(&self) -> bool {
        self.fanned.load(Ordering::Acquire) > self.expanded.load(Ordering::Acquire)
    }

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
    last_event: Statement<'c>,
    existing_event: Statement<'c>,
    existing_deliveries: Statement<'c>,
    unexpanded: Statement<'c>,
    last_seq: Statement<'c>,
    set_expanded: Statement<'c>,
    drop_rows: Statement<'c>,
    /// The key that scrambles the `seq` in the ids the outbox assigns.
    id_key: event_id::IdKey,
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
                "INSERT INTO events (seq, id, type, body, received_at, occurred_at, fanout,
                     assigned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            insert_delivery: conn.prepare(
                "INSERT INTO deliveries (seq, id, event_seq, webhook, method, url, headers, body,
                     secret_env, timeout_ms, max_attempts, status, next_attempt_at, created_at,
                     updated_at, envelope, endpoint, endpoint_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?12, ?12,
                     ?13, ?14, ?15)",
            )?,
            last_event: conn.prepare("SELECT coalesce(max(seq), 0) FROM events")?,
            // A tracker's id is in the partial index; an id whc assigned is at the `seq` it
            // carries (?2, NULL when it carries none).
            existing_event: conn.prepare(
                "SELECT e.seq, e.fanout, e.seq > x.through FROM events e, fanout_expanded x
                 WHERE e.id = ?1 AND e.assigned = 0
                 UNION ALL
                 SELECT e.seq, e.fanout, e.seq > x.through FROM events e, fanout_expanded x
                 WHERE e.seq = ?2 AND e.id = ?1 AND e.assigned = 1",
            )?,
            // An event's deliveries are the range of keys its own `seq` starts.
            existing_deliveries: conn.prepare(
                "SELECT id FROM deliveries WHERE seq >= ?1 * 65536 AND seq < (?1 + 1) * 65536
                 ORDER BY seq",
            )?,
            unexpanded: conn.prepare(
                "SELECT seq, received_at, fanout FROM events
                 WHERE seq > (SELECT through FROM fanout_expanded) AND fanout IS NOT NULL
                 ORDER BY seq LIMIT ?1",
            )?,
            last_seq: conn.prepare(
                "SELECT max(coalesce((SELECT max(seq) FROM events), 0), through)
                 FROM fanout_expanded",
            )?,
            set_expanded: conn.prepare("UPDATE fanout_expanded SET through = ?1")?,
            drop_rows: conn.prepare("DELETE FROM deliveries WHERE seq >= ?1 AND seq < ?2")?,
            id_key: super::schema::id_key(conn)?,
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
    // The `seq` the next event gets, once read: this thread is the only one storing events.
    let mut next_seq = None;
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
            next_seq = commit_batch(
                &conn, statements, batch, next_seq, &counters, &claims, &wake,
            );
        }
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.busy_micros.fetch_add(busy, Ordering::Relaxed);
    }
}

/// Runs one batch in one transaction and answers every request after COMMIT returned. Events
/// get their `seq` from `next_seq` on (read from the table when `None`); returns the `seq` the
/// next event gets, `None` when the batch failed.
///
/// The requests run straight in the transaction. When one fails in a way that may have left
/// part of its writes behind, the transaction is rolled back and the batch runs again with each
/// request in its own savepoint, so that the failure undoes only that request. Savepoints cost
/// a statement pair and a sub-journal per request, which the common case does without.
fn commit_batch(
    conn: &Connection,
    statements: &mut Statements<'_>,
    mut batch: Vec<Request>,
    next_seq: Option<i64>,
    counters: &Counters,
    claims: &Claims,
    wake: &Notify,
) -> Option<i64> {
    let wakes = batch.iter().any(Request::may_make_due);
    let now = now_ms();
    let mut effects = Effects::default();
    let result = match run_batch(
        conn,
        statements,
        &mut batch,
        Isolation::Straight,
        now,
        next_seq,
        &mut effects,
    ) {
        Ok(false) => run_batch(
            conn,
            statements,
            &mut batch,
            Isolation::Savepoints,
            now,
            next_seq,
            &mut effects,
        )
        .map(|_| ()),
        other => other.map(|_| ()),
    };
    let failed = match result {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.events.fetch_add(effects.events, Ordering::Relaxed);
            // Published after COMMIT: a reader that sees `fanned` ahead asks for an expansion,
            // and one that sees `expanded` reaches it finds the rows committed.
            // First: a later request of the batch may have stored an event past it.
            if let Some(last) = effects.lowered {
                counters.fanned.store(last, Ordering::Release);
                counters.expanded.store(last, Ordering::Release);
            }
            if effects.fanned > 0 {
                counters
                    .unexpanded_deliveries
                    .fetch_add(effects.fanned_deliveries, Ordering::AcqRel);
                counters.fanned.fetch_max(effects.fanned, Ordering::AcqRel);
            }
            if let Some(through) = effects.expanded {
                counters.expanded.fetch_max(through, Ordering::AcqRel);
                // Only this thread changes the count: once every fan-out has rows it is 0,
                // whatever a damaged fan-out (whose count could not be read) left behind.
                let left = if through >= counters.fanned.load(Ordering::Acquire) {
                    0
                } else {
                    counters
                        .unexpanded_deliveries()
                        .saturating_sub(effects.expanded_deliveries)
                };
                counters
                    .unexpanded_deliveries
                    .store(left, Ordering::Release);
            }
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
    let failure = match &failed {
        Some(e) => Some(e.to_string()),
        None => batch.iter().find_map(Request::store_failure),
    };
    // After any failure the next batch reads the `seq` again: a row stored behind this
    // thread's back (by hand, in the file) costs one failed write, not every one after it.
    let next_seq = if failure.is_none() {
        effects.next_seq
    } else {
        None
    };
    counters.set_health(failure);
    if wakes && failed.is_none() {
        wake.notify_one();
    }
    match &failed {
        Some(e) => {
            batch.into_iter().for_each(|request| request.fail(e));
            None
        }
        None => {
            batch.into_iter().for_each(Request::answer);
            next_seq
        }
    }
}

/// Where the events' fan-out stands, as the writer publishes it (see [`Counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FanOutMarks {
    /// The last event `seq` stored (with a fan-out or not).
    pub fanned: i64,
    /// The last event `seq` whose fan-out has rows.
    pub expanded: i64,
    /// The deliveries of the events after `expanded`.
    pub unexpanded_deliveries: u64,
}

/// What a batch's requests changed that the others learn after COMMIT.
#[derive(Debug, Default, Clone, Copy)]
struct Effects {
    /// New events stored.
    events: u64,
    /// The last event `seq` stored with a fan-out, 0 for none.
    fanned: i64,
    /// The deliveries in the fan-out stored.
    fanned_deliveries: u64,
    /// The deliveries of the fan-out expanded (rows written, or passed over).
    expanded_deliveries: u64,
    /// The event `seq` the fan-out is now expanded through, if an expansion ran.
    expanded: Option<i64>,
    /// The mark pruning brought down to the last event left (both marks start again there).
    lowered: Option<i64>,
    /// The `seq` the next event stored gets, once known (from the batch before, or read).
    next_seq: Option<i64>,
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
    next_seq: Option<i64>,
    effects: &mut Effects,
) -> Result<bool, rusqlite::Error> {
    statements.begin.execute([])?;
    let result = run_open_batch(conn, statements, batch, isolation, now, next_seq, effects);
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
    next_seq: Option<i64>,
    effects: &mut Effects,
) -> Result<bool, rusqlite::Error> {
    *effects = Effects {
        next_seq,
        ..Effects::default()
    };
    for request in batch.iter_mut() {
        match isolation {
            Isolation::Savepoints => request.apply_in_savepoint(conn, statements, now, effects),
            Isolation::Straight => request.apply(conn, statements, now, effects),
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
        match self {
            // Let go of the events before the caller hears back, so that its copy is the last.
            Request::Accept(events, r) => {
                drop(events);
                r.send();
            }
            other => with_reply!(other, r => r.send()),
        }
    }

    /// Runs the request in the open transaction and keeps its result.
    fn apply(
        &mut self,
        conn: &Connection,
        statements: &mut Statements<'_>,
        now: i64,
        effects: &mut Effects,
    ) {
        match self {
            Request::Accept(events, r) => {
                r.result = Some(accept(statements, events, now, effects));
            }
            Request::Record(id, record, r) => {
                r.result = Some(record_attempt(conn, id, record, now));
            }
            Request::Replay(id, r) => r.result = Some(replay(conn, id, now)),
            Request::Prune(before, r) => r.result = Some(prune(conn, *before, effects)),
            Request::Probe(r) => r.result = Some(probe(conn)),
            Request::Expand(r) => r.result = Some(expand(statements, effects)),
        }
    }

    /// Runs the request in its own savepoint: released on success, rolled back when the
    /// request failed.
    fn apply_in_savepoint(
        &mut self,
        conn: &Connection,
        statements: &mut Statements<'_>,
        now: i64,
        effects: &mut Effects,
    ) {
        let before = *effects;
        if let Err(e) = conn.execute_batch("SAVEPOINT request") {
            return self.failed_with(e.into());
        }
        self.apply(conn, statements, now, effects);
        if !self.left_clean() {
            *effects = before;
            // The request's own error is the one it answers with.
            drop(conn.execute_batch("ROLLBACK TO request; RELEASE request"));
            return;
        }
        if let Err(e) = conn.execute_batch("RELEASE request") {
            *effects = before;
            drop(conn.execute_batch("ROLLBACK TO request; RELEASE request"));
            self.failed_with(e.into());
        }
    }

    /// Keeps an error as this request's result.
    fn failed_with(&mut self, e: OutboxError) {
        with_reply!(self, r => r.result = Some(Err(e)))
    }
}

/// Stores new events, each with its fan-out in its own row (see [`fanout`]); an id already
/// stored is a duplicate, answered with the delivery ids it got the first time. Nothing made
/// here is freed by the caller but the answer itself.
///
/// Each event's `seq` is given here, one past the largest stored (read by the first batch
/// that stores an event, then carried from batch to batch; see [`commit_batch`]), so
/// that an id whc made can be swapped for one carrying it (see [`event_id`]): such an event
/// needs no duplicate check and no index entry.
///
/// The deliveries get rows of their own later ([`expand`]), keyed by the event's `seq` times
/// [`FAN_OUT_LIMIT`] plus their place in the fan-out (see the schema's step 8).
fn accept(
    statements: &mut Statements<'_>,
    events: &[NewEvent],
    now: i64,
    effects: &mut Effects,
) -> Result<Vec<Stored>, OutboxError> {
    let mut answers = Vec::with_capacity(events.len());
    for event in events {
        if i64::try_from(event.deliveries.len()).map_or(true, |n| n > FAN_OUT_LIMIT) {
            return Err(OutboxError::OutOfRange {
                field: "deliveries per event",
            });
        }
        let seq = match effects.next_seq {
            Some(seq) => seq,
            None => {
                statements
                    .last_event
                    .query_row([], |r| r.get::<_, i64>(0))?
                    + 1
            }
        };
        seq.checked_mul(FAN_OUT_LIMIT)
            .ok_or(OutboxError::OutOfRange { field: "event seq" })?;
        let made = if event.assigned {
            event_id::make(seq, u64::try_from(now).unwrap_or(0), statements.id_key)
        } else {
            None
        };
        if made.is_none()
            && let Some(earlier) = existing_ids(statements, &event.id)?
        {
            answers.push(Stored::Duplicate(earlier));
            continue;
        }
        let fanout = encode_fan_out(&event.deliveries)?;
        // An assigned id is kept in its column only, the body as it came (without it); the id
        // made by the caller, when the `seq` cannot carry one, goes into the JSON as a
        // tracker's id would be.
        let (id, body) = match &made {
            Some(id) => (
                std::str::from_utf8(id).unwrap_or_default(),
                Cow::Borrowed(event.body.as_str()),
            ),
            None => (event.id.as_str(), event.body_with_id()),
        };
        statements.insert_event.execute(params![
            seq,
            id,
            event.kind,
            body,
            now,
            event.occurred_at,
            fanout,
            made.is_some()
        ])?;
        effects.next_seq = Some(seq + 1);
        effects.events += 1;
        if fanout.is_some() {
            effects.fanned = seq;
            effects.fanned_deliveries += event.deliveries.len() as u64;
        }
        answers.push(Stored::New(made));
    }
    Ok(answers)
}

/// An event's fan-out as its row holds it, `None` when no webhook matched; refuses what its
/// `deliveries` rows could not hold.
fn encode_fan_out(deliveries: &[NewDelivery]) -> Result<Option<Vec<u8>>, OutboxError> {
    if deliveries.is_empty() {
        return Ok(None);
    }
    for d in deliveries {
        i64::try_from(d.timeout_ms).map_err(|_| OutboxError::OutOfRange {
            field: "timeout_ms",
        })?;
    }
    // Ids are unique by how they are made; this keeps a hand-made event from having its
    // deliveries passed over later (what the `id` index refused at once before).
    if let Some(id) = repeated_id(deliveries) {
        return Err(OutboxError::DuplicateDelivery(id.to_owned()));
    }
    // Most webhooks set no header: skip the encoder for them.
    let headers = deliveries
        .iter()
        .map(|d| {
            if d.headers.is_empty() {
                Ok(std::borrow::Cow::Borrowed("[]"))
            } else {
                serde_json::to_string(&d.headers)
                    .map(std::borrow::Cow::Owned)
                    .map_err(OutboxError::Headers)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(fanout::encode(deliveries, &headers)))
}

/// A delivery id that appears twice in one event's deliveries: pairwise for the usual few,
/// through a set for a large fan-out (an event matching thousands of webhooks).
fn repeated_id(deliveries: &[NewDelivery]) -> Option<&str> {
    if deliveries.len() <= 8 {
        return deliveries
            .iter()
            .enumerate()
            .find(|(n, d)| deliveries[..*n].iter().any(|other| other.id == d.id))
            .map(|(_, d)| d.id.as_str());
    }
    let mut seen = std::collections::HashSet::with_capacity(deliveries.len());
    deliveries
        .iter()
        .map(|d| d.id.as_str())
        .find(|id| !seen.insert(*id))
}

/// The delivery ids of the stored event `id` (from its rows, or from its fan-out while that is
/// not expanded yet), or `None` when no event has that id.
fn existing_ids(
    statements: &mut Statements<'_>,
    id: &str,
) -> Result<Option<Vec<String>>, OutboxError> {
    let found = statements
        .existing_event
        .query_row(params![id, event_id::seq_of(id, statements.id_key)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })
        .optional()?;
    match found {
        None => Ok(None),
        Some((_, Some(fanout), true)) => Ok(Some(
            fanout::decode(&fanout)?
                .into_iter()
                .map(|e| e.id.to_owned())
                .collect(),
        )),
        Some((seq, _, _)) => Ok(Some(
            statements
                .existing_deliveries
                .query_map([seq], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?,
        )),
    }
}

/// Writes the delivery rows of the oldest events whose fan-out has none yet, at most
/// [`EXPAND_EVENTS`] events, and moves `fanout_expanded.through` past them. Each delivery is
/// due, created and updated at its event's `received_at`, as if written with it.
///
/// An event whose fan-out cannot become rows (its bytes damaged, or a delivery id taken) is
/// logged and passed over with its row kept as it is, rather than stopping every later
/// event's deliveries; any other failure fails the request, to be tried again.
fn expand(statements: &mut Statements<'_>, effects: &mut Effects) -> Result<i64, OutboxError> {
    let events = statements
        .unexpanded
        .query_map([EXPAND_EVENTS], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (event_seq, received_at, fanout) in &events {
        let first = event_seq
            .checked_mul(FAN_OUT_LIMIT)
            .ok_or(OutboxError::OutOfRange { field: "event seq" })?;
        let entries = match fanout::decode(fanout) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(event_seq, err = %e, "an event's deliveries cannot be read; they are not sent");
                continue;
            }
        };
        effects.expanded_deliveries += entries.len() as u64;
        match insert_entries(statements, first, *event_seq, *received_at, &entries) {
            Ok(()) => {}
            Err(OutboxError::Sqlite(rusqlite::Error::SqliteFailure(e, message)))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                statements
                    .drop_rows
                    .execute([first, first + FAN_OUT_LIMIT])?;
                tracing::error!(event_seq, err = %message.unwrap_or_default(), "an event's deliveries cannot be stored; they are not sent");
            }
            Err(e) => return Err(e),
        }
    }
    // A full chunk stops at its last event; a short one covers every event stored.
    let through = match events.last() {
        Some((last, _, _)) if events.len() as i64 == EXPAND_EVENTS => *last,
        _ => statements.last_seq.query_row([], |r| r.get::<_, i64>(0))?,
    };
    statements.set_expanded.execute([through])?;
    effects.expanded = Some(through);
    Ok(through)
}

/// Inserts one event's deliveries, keyed from `first`.
fn insert_entries(
    statements: &mut Statements<'_>,
    first: i64,
    event_seq: i64,
    received_at: i64,
    entries: &[fanout::Entry<'_>],
) -> Result<(), OutboxError> {
    for (n, d) in (0i64..).zip(entries) {
        let timeout_ms = i64::try_from(d.timeout_ms).map_err(|_| OutboxError::OutOfRange {
            field: "timeout_ms",
        })?;
        let endpoint = endpoint_of(d.url);
        let key = endpoint_key(&endpoint);
        statements.insert_delivery.execute(params![
            first + n,
            d.id,
            event_seq,
            d.webhook,
            d.method,
            d.url,
            d.headers,
            d.body,
            d.secret_env,
            timeout_ms,
            d.max_attempts,
            received_at,
            d.envelope,
            endpoint,
            key,
        ])?;
    }
    Ok(())
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
             ON CONFLICT (id) WHERE assigned = 0 DO NOTHING",
        )?
        .execute([ID])?;
    if inserted > 0 {
        conn.prepare_cached("DELETE FROM events WHERE id = ?1 AND assigned = 0")?
            .execute([ID])?;
    }
    Ok(())
}

/// Deletes delivered rows (and their attempts) last updated before `before`, then events with
/// no delivery left.
///
/// When the last events go, SQLite gives the next one a `seq` it gave before: the fan-out's
/// mark comes down to the last event left, so that the new one counts as not expanded.
///
/// An event pruned this way is forgotten: the same id sent again is no longer a duplicate.
fn prune(conn: &Connection, before: i64, effects: &mut Effects) -> Result<usize, OutboxError> {
    conn.prepare_cached(
        "DELETE FROM attempts WHERE delivery_id IN
             (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < ?1)",
    )?
    .execute([before])?;
    let removed = conn
        .prepare_cached("DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?1")?
        .execute([before])?;
    // An event whose fan-out is not expanded yet has no delivery rows but is not done.
    conn.prepare_cached(
        "DELETE FROM events WHERE received_at < ?1
         AND (fanout IS NULL OR seq <= (SELECT through FROM fanout_expanded))
         AND NOT EXISTS (SELECT 1 FROM deliveries d
             WHERE d.seq >= events.seq * 65536 AND d.seq < (events.seq + 1) * 65536)",
    )?
    .execute([before])?;
    let (last, through): (i64, i64) = conn
        .prepare_cached(
            "SELECT coalesce((SELECT max(seq) FROM events), 0), through FROM fanout_expanded",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if last < through {
        conn.prepare_cached("UPDATE fanout_expanded SET through = ?1")?
            .execute([last])?;
        effects.lowered = Some(last);
    }
    Ok(removed)
}
