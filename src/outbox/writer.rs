//! Group commit: one thread owns the write connection and commits every queued request at once.
//!
//! Callers send a [`Request`] and await its oneshot reply. The thread takes the first request,
//! drains whatever else is queued (up to [`BATCH_EVENTS`] events), runs them all in one
//! transaction (each inside its own savepoint, so one failing request does not undo the others),
//! commits, and only then answers. While a commit's fsync runs, new requests queue up and form
//! the next batch, so the fsync cost is shared by everyone who arrived during it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::{Notify, oneshot};

use super::payload::Payload;
use super::types::{AttemptRecord, NewEvent, Stats, Status, excerpt};
use super::{Accepted, Claims, OutboxError, now_ms};

/// The most events one transaction takes before it commits (bounds commit latency).
const BATCH_EVENTS: usize = 1000;

/// One write, with the channel its answer goes back on.
pub(crate) enum Request {
    /// Store events and their deliveries.
    Accept(
        Vec<NewEvent>,
        oneshot::Sender<Result<Vec<Accepted>, OutboxError>>,
    ),
    /// Record an attempt's outcome.
    Record(
        String,
        AttemptRecord,
        oneshot::Sender<Result<(), OutboxError>>,
    ),
    /// Put a dead delivery back in the queue.
    Replay(String, oneshot::Sender<Result<bool, OutboxError>>),
    /// Delete delivered rows last touched before a time, then events left without deliveries.
    Prune(i64, oneshot::Sender<Result<usize, OutboxError>>),
}

impl Request {
    /// Whether this request can make a delivery due sooner than the dispatcher expects.
    fn may_make_due(&self) -> bool {
        match self {
            Request::Accept(..) | Request::Replay(..) => true,
            Request::Record(_, record, _) => matches!(record, AttemptRecord::Retry { .. }),
            Request::Prune(..) => false,
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
}

impl Counters {
    /// Counts a request handed to the writer.
    pub(crate) fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
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

/// The writer thread's loop: runs until every sender is dropped, then returns.
pub(crate) fn run(
    mut conn: Connection,
    requests: Receiver<Request>,
    counters: Arc<Counters>,
    claims: Arc<Claims>,
    wake: Arc<Notify>,
) {
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
        commit_batch(&mut conn, batch, &counters, &claims, &wake);
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
    conn: &mut Connection,
    batch: Vec<Request>,
    counters: &Counters,
    claims: &Claims,
    wake: &Notify,
) {
    let recorded: Vec<String> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Record(id, _, _) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let wakes = batch.iter().any(Request::may_make_due);
    let now = now_ms();
    let mut stored_events = 0u64;
    let run = |conn: &mut Connection, isolated: bool, stored: &mut u64| {
        // IMMEDIATE: take the write lock up front (waiting on busy_timeout if another process
        // holds it) instead of failing with SQLITE_BUSY when a read would upgrade to a write.
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        *stored = 0;
        let answers: Vec<Answer> = batch
            .iter()
            .map(|request| {
                if isolated {
                    request.apply_in_savepoint(&mut tx, now, stored)
                } else {
                    request.apply(&tx, now, stored)
                }
            })
            .collect();
        if !isolated && !answers.iter().all(Answer::left_clean) {
            tx.rollback()?;
            return Ok(None);
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(Some(answers))
    };
    let result = match run(conn, false, &mut stored_events) {
        Ok(None) => run(conn, true, &mut stored_events).map(|a| a.unwrap_or_default()),
        other => other.map(Option::unwrap_or_default),
    };
    let (answers, failed) = match result {
        Ok(answers) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.events.fetch_add(stored_events, Ordering::Relaxed);
            (answers, None)
        }
        Err(e) => (Vec::new(), Some(Arc::new(e))),
    };
    // Unclaim recorded deliveries after COMMIT and before answering: a `due` query that starts
    // later sees the new state; one already running holds the claims lock and sees the claim.
    if !recorded.is_empty() {
        let mut claimed = claims.lock();
        for id in &recorded {
            claimed.remove(id);
        }
    }
    if wakes && failed.is_none() {
        wake.notify_one();
    }
    match &failed {
        Some(e) => batch.into_iter().for_each(|request| request.fail(e)),
        None => batch
            .into_iter()
            .zip(answers)
            .for_each(|(request, answer)| request.answer(answer)),
    }
}

/// A request's own result, before the batch commits.
enum Answer {
    Accept(Result<Vec<Accepted>, OutboxError>),
    Record(Result<(), OutboxError>),
    Replay(Result<bool, OutboxError>),
    Prune(Result<usize, OutboxError>),
}

impl Answer {
    /// Whether the transaction holds none of a failed request's writes: it succeeded, or it
    /// failed before writing (an attempt on a delivery that is no longer pending).
    fn left_clean(&self) -> bool {
        match self {
            Answer::Accept(r) => r.is_ok(),
            Answer::Record(r) => matches!(r, Ok(()) | Err(OutboxError::NotPending(_))),
            Answer::Replay(r) => r.is_ok(),
            Answer::Prune(r) => r.is_ok(),
        }
    }
}

impl Request {
    /// Answers with a failure of the whole batch (the transaction could not start or commit).
    fn fail(self, e: &Arc<rusqlite::Error>) {
        let err = || OutboxError::Commit(Arc::clone(e));
        match self {
            Request::Accept(_, tx) => drop(tx.send(Err(err()))),
            Request::Record(_, _, tx) => drop(tx.send(Err(err()))),
            Request::Replay(_, tx) => drop(tx.send(Err(err()))),
            Request::Prune(_, tx) => drop(tx.send(Err(err()))),
        }
    }

    /// Sends the request's answer after the commit. A caller that stopped waiting (dropped
    /// future) is not an error: send failures are ignored.
    fn answer(self, answer: Answer) {
        match (self, answer) {
            (Request::Accept(_, tx), Answer::Accept(r)) => drop(tx.send(r)),
            (Request::Record(_, _, tx), Answer::Record(r)) => drop(tx.send(r)),
            (Request::Replay(_, tx), Answer::Replay(r)) => drop(tx.send(r)),
            (Request::Prune(_, tx), Answer::Prune(r)) => drop(tx.send(r)),
            // `apply` answers each request with its own kind.
            (request, _) => request.fail(&Arc::new(rusqlite::Error::InvalidQuery)),
        }
    }

    /// Runs the request in the open transaction.
    fn apply(&self, conn: &Connection, now: i64, stored: &mut u64) -> Answer {
        match self {
            Request::Accept(events, _) => Answer::Accept(accept(conn, events, now, stored)),
            Request::Record(id, record, _) => Answer::Record(record_attempt(conn, id, record, now)),
            Request::Replay(id, _) => Answer::Replay(replay(conn, id, now)),
            Request::Prune(before, _) => Answer::Prune(prune(conn, *before)),
        }
    }

    /// Runs the request in its own savepoint: released on success, rolled back when the
    /// request failed.
    fn apply_in_savepoint(&self, tx: &mut Transaction<'_>, now: i64, stored: &mut u64) -> Answer {
        let before = *stored;
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => return self.failed_with(e.into()),
        };
        let answer = self.apply(&sp, now, stored);
        if !answer.left_clean() {
            // Dropping the savepoint rolls it back.
            *stored = before;
            return answer;
        }
        match sp.commit() {
            Ok(()) => answer,
            Err(e) => {
                *stored = before;
                self.failed_with(e.into())
            }
        }
    }

    /// This request's answer for an error.
    fn failed_with(&self, e: OutboxError) -> Answer {
        match self {
            Request::Accept(..) => Answer::Accept(Err(e)),
            Request::Record(..) => Answer::Record(Err(e)),
            Request::Replay(..) => Answer::Replay(Err(e)),
            Request::Prune(..) => Answer::Prune(Err(e)),
        }
    }
}

/// Stores new events and their deliveries; an id already stored is a duplicate.
fn accept(
    conn: &Connection,
    events: &[NewEvent],
    now: i64,
    stored: &mut u64,
) -> Result<Vec<Accepted>, OutboxError> {
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (id, type, body, received_at, occurred_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, webhook, method, url, headers, body, secret_env,
             timeout_ms, max_attempts, attempts, status, next_attempt_at, created_at, updated_at,
             envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, 'pending', ?11, ?11, ?11, ?12)",
    )?;
    let mut existing = conn
        .prepare_cached("SELECT id FROM deliveries WHERE event_id = ?1 ORDER BY created_at, id")?;
    let mut answers = Vec::with_capacity(events.len());
    for event in events {
        let inserted = insert_event.execute(params![
            event.id,
            event.kind,
            event.body,
            now,
            event.occurred_at
        ])?;
        if inserted == 0 {
            let ids = existing
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
        let mut ids = Vec::with_capacity(event.deliveries.len());
        for d in &event.deliveries {
            let id = d.id.clone();
            let headers = serde_json::to_string(&d.headers).map_err(OutboxError::Headers)?;
            let timeout_ms = i64::try_from(d.timeout_ms).map_err(|_| OutboxError::OutOfRange {
                field: "timeout_ms",
            })?;
            let (body, envelope) = match &d.body {
                Payload::Empty => (None, false),
                Payload::Bytes(bytes) => (Some(bytes.as_slice()), false),
                Payload::Envelope => (None, true),
            };
            insert_delivery.execute(params![
                id,
                event.id,
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
            ])?;
            ids.push(id);
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
    let (status, next_at, code, error, body, elapsed) = match record {
        AttemptRecord::Delivered {
            status_code,
            excerpt,
            elapsed_ms,
        } => (
            Status::Delivered,
            None,
            Some(*status_code),
            None,
            excerpt,
            elapsed_ms,
        ),
        AttemptRecord::Retry {
            next_attempt_at,
            status_code,
            error,
            excerpt,
            elapsed_ms,
        } => (
            Status::Pending,
            Some(*next_attempt_at),
            *status_code,
            Some(error.as_str()),
            excerpt,
            elapsed_ms,
        ),
        AttemptRecord::Dead {
            status_code,
            error,
            excerpt,
            elapsed_ms,
        } => (
            Status::Dead,
            None,
            *status_code,
            Some(error.as_str()),
            excerpt,
            elapsed_ms,
        ),
    };
    let elapsed = i64::try_from(*elapsed).unwrap_or(i64::MAX);
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
            error,
            body.as_deref().map(excerpt),
            elapsed,
            now
        ])?;
    if changed == 0 {
        return Err(OutboxError::NotPending(id.to_owned()));
    }
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

/// Deletes delivered rows last updated before `before`, then events with no delivery left.
///
/// An event pruned this way is forgotten: the same id sent again is no longer a duplicate.
fn prune(conn: &Connection, before: i64) -> Result<usize, OutboxError> {
    let removed = conn
        .prepare_cached("DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?1")?
        .execute([before])?;
    conn.prepare_cached(
        "DELETE FROM events WHERE received_at < ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
    )?
    .execute([before])?;
    Ok(removed)
}
