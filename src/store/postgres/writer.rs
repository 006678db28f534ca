//! Group commit on PostgreSQL: one task takes every queued write, runs them in one transaction
//! (events and deliveries as array inserts, attempt records as one array update), commits, and
//! only then answers.
//!
//! While a COMMIT waits for its WAL flush, new requests queue and form the next batch, so the
//! flush is shared by every post that arrived during it, as in the SQLite outbox.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use deadpool_postgres::Transaction;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Claims, Counters, PgError, Pool, WAKE_CHANNEL};
use crate::outbox::{
    Accepted, AttemptRecord, NewEvent, Payload, RecordColumns, endpoint_of, error_text, excerpt,
    now_ms,
};

/// The most events one transaction takes before it commits (bounds commit latency).
const BATCH_EVENTS: usize = 1000;

/// How many times a batch runs again after PostgreSQL aborted it for a deadlock or a
/// serialization failure (two sidecars inserting the same event ids at once).
const CONFLICT_RETRIES: usize = 3;

/// The advisory lock the pruning sidecar holds ("whc-prun").
const PRUNE_LOCK: i64 = 0x7768_632d_7072_756e;

/// One write, with the channel its answer goes back on.
pub(crate) enum Request {
    /// Store events and their deliveries.
    Accept(Vec<NewEvent>, Reply<Vec<Accepted>>),
    /// Record an attempt's outcome.
    Record(String, AttemptRecord, Reply<()>),
    /// Put a dead delivery back in the queue.
    Replay(String, Reply<bool>),
    /// Put every dead delivery of a webhook back in the queue.
    ReplayDead(String, Reply<usize>),
    /// Delete delivered rows last touched before a time; 0 when another sidecar is pruning.
    Prune(i64, Reply<usize>),
    /// Write and delete a row in one commit, for the readiness check.
    Probe(Reply<()>),
    /// Set the fleet's pause flag; answers whether it changed.
    SetPaused(bool, Reply<bool>),
}

/// A write's way back to its caller.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, PgError>>;

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Accept(events, _) => events.len().max(1),
            _ => 1,
        }
    }

    /// Whether this request can make a delivery due sooner than a dispatcher expects.
    fn may_make_due(&self) -> bool {
        match self {
            Request::Accept(..) | Request::Replay(..) | Request::ReplayDead(..) => true,
            Request::Record(_, record, _) => matches!(record, AttemptRecord::Retry { .. }),
            Request::Prune(..) | Request::Probe(..) | Request::SetPaused(..) => false,
        }
    }
}

/// Whether a writer's commits wait for the WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// `synchronous_commit = on`: an answer means the COMMIT is on disk (posts, replays,
    /// pruning, the pause flag).
    Flushed,
    /// `synchronous_commit = off` for attempt records: a record lost to a crash of the
    /// database (its last few hundred milliseconds) costs a resend once the lease runs out,
    /// as a lost claim does, and the receiver drops it by its `Idempotency-Key`.
    Unflushed,
}

/// The writer task: runs until every sender is dropped.
pub(crate) async fn run(
    pool: Pool,
    mut requests: mpsc::UnboundedReceiver<Request>,
    counters: Arc<Counters>,
    claims: Arc<Claims>,
    wake: Arc<Notify>,
    durable: Durable,
) {
    while let Some(first) = requests.recv().await {
        let started = std::time::Instant::now();
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < BATCH_EVENTS {
            match requests.try_recv() {
                Ok(next) => {
                    weight += next.weight();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        commit_batch(&pool, batch, &counters, &claims, &wake, durable).await;
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.busy_micros.fetch_add(busy, Ordering::Relaxed);
    }
}

/// Each request's own result, before they are sent.
#[derive(Default)]
struct Results {
    accepts: Vec<Result<Vec<Accepted>, PgError>>,
    records: Vec<Result<(), PgError>>,
    replays: Vec<bool>,
    /// Counts answered in request order: pruned deliveries, or dead ones replayed.
    prunes: Vec<usize>,
    paused: Vec<bool>,
    events: u64,
}

/// Runs one batch in one transaction (again after a deadlock) and answers after COMMIT.
async fn commit_batch(
    pool: &Pool,
    batch: Vec<Request>,
    counters: &Counters,
    claims: &Claims,
    wake: &Notify,
    durable: Durable,
) {
    let wakes = batch.iter().any(Request::may_make_due);
    let mut tries = 0;
    let outcome = loop {
        match run_batch(pool, &batch, wakes, durable).await {
            Err(e) if e.is_conflict() && tries < CONFLICT_RETRIES => tries += 1,
            other => break other,
        }
    };
    let results = match outcome {
        Ok(results) => results,
        Err(e) => {
            let e = Arc::new(e);
            counters.set_health(Some(e.to_string()));
            for request in batch {
                fail(request, &e);
            }
            return;
        }
    };
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters.events.fetch_add(results.events, Ordering::Relaxed);
    counters.set_health(None);
    if wakes {
        wake.notify_one();
    }
    answer(batch, results, claims);
}

/// Answers a request with the failure of its whole batch.
fn fail(request: Request, e: &Arc<PgError>) {
    let err = || PgError::Commit(Arc::clone(e));
    match request {
        Request::Accept(_, r) => drop(r.send(Err(err()))),
        Request::Record(_, _, r) => drop(r.send(Err(err()))),
        Request::Replay(_, r) => drop(r.send(Err(err()))),
        Request::ReplayDead(_, r) => drop(r.send(Err(err()))),
        Request::Prune(_, r) => drop(r.send(Err(err()))),
        Request::Probe(r) => drop(r.send(Err(err()))),
        Request::SetPaused(_, r) => drop(r.send(Err(err()))),
    }
}

/// Sends every request its own result, in the order they ran; a recorded delivery's claim is
/// dropped first (a record that failed to commit keeps its claim: it is tried again).
fn answer(batch: Vec<Request>, results: Results, claims: &Claims) {
    let mut accepts = results.accepts.into_iter();
    let mut records = results.records.into_iter();
    let mut replays = results.replays.into_iter();
    let mut prunes = results.prunes.into_iter();
    let mut paused = results.paused.into_iter();
    for request in batch {
        match request {
            Request::Accept(_, r) => drop(r.send(accepts.next().unwrap_or(Err(PgError::Closed)))),
            Request::Record(id, _, r) => {
                let result = records.next().unwrap_or(Err(PgError::Closed));
                if matches!(result, Ok(()) | Err(PgError::NotPending(_))) {
                    claims.lock().remove(&id);
                }
                drop(r.send(result));
            }
            Request::Replay(_, r) => drop(r.send(Ok(replays.next().unwrap_or(false)))),
            Request::ReplayDead(_, r) => drop(r.send(Ok(prunes.next().unwrap_or(0)))),
            Request::Prune(_, r) => drop(r.send(Ok(prunes.next().unwrap_or(0)))),
            Request::Probe(r) => drop(r.send(Ok(()))),
            Request::SetPaused(_, r) => drop(r.send(Ok(paused.next().unwrap_or(false)))),
        }
    }
}

/// Runs the batch in one transaction and commits it.
async fn run_batch(
    pool: &Pool,
    batch: &[Request],
    wakes: bool,
    durable: Durable,
) -> Result<Results, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if durable == Durable::Unflushed {
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
    }
    let now = now_ms();
    let mut results = Results::default();

    let accepts: Vec<&[NewEvent]> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Accept(events, _) => Some(events.as_slice()),
            _ => None,
        })
        .collect();
    if !accepts.is_empty() {
        let (answers, stored) = accept(&tx, &accepts, now).await?;
        results.accepts = answers;
        results.events = stored;
    }
    let records: Vec<(&str, &AttemptRecord)> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Record(id, record, _) => Some((id.as_str(), record)),
            _ => None,
        })
        .collect();
    if !records.is_empty() {
        results.records = record(&tx, &records, now).await?;
    }
    let mut paused_changes = false;
    for request in batch {
        match request {
            Request::Replay(id, _) => {
                let n = tx
                    .execute(
                        "UPDATE whc_deliveries SET status = 'pending', attempts = 0,
                             next_attempt_at = $2, updated_at = $2, claimed_by = NULL,
                             claimed_until = 0
                         WHERE id = $1 AND status = 'dead'",
                        &[id, &now],
                    )
                    .await?;
                results.replays.push(n > 0);
            }
            Request::Prune(before, _) => results.prunes.push(prune(&tx, *before).await?),
            Request::ReplayDead(webhook, _) => {
                let n = tx
                    .execute(
                        "UPDATE whc_deliveries SET status = 'pending', attempts = 0,
                             next_attempt_at = $2, updated_at = $2, claimed_by = NULL,
                             claimed_until = 0
                         WHERE webhook = $1 AND status = 'dead'",
                        &[webhook, &now],
                    )
                    .await?;
                results
                    .prunes
                    .push(usize::try_from(n).unwrap_or(usize::MAX));
            }
            Request::Probe(_) => {
                tx.batch_execute(
                    "INSERT INTO whc_events (id, type, body, received_at)
                         VALUES ('whc:readiness-probe', 'probe', '{}', 0)
                         ON CONFLICT (id) DO NOTHING;
                     DELETE FROM whc_events WHERE id = 'whc:readiness-probe';",
                )
                .await?;
            }
            Request::SetPaused(paused, _) => {
                let n = tx
                    .execute(
                        "UPDATE whc_fleet SET paused = $1 WHERE paused <> $1",
                        &[paused],
                    )
                    .await?;
                paused_changes |= n > 0;
                results.paused.push(n > 0);
            }
            Request::Accept(..) | Request::Record(..) => {}
        }
    }
    // Delivered to every listening sidecar at COMMIT, not before.
    if wakes {
        tx.batch_execute(&format!("NOTIFY {WAKE_CHANNEL}")).await?;
    }
    if paused_changes {
        tx.execute("SELECT pg_notify($1, 'paused')", &[&WAKE_CHANNEL])
            .await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Stores the events of every accept request of the batch: one insert of the events (an id
/// already stored, or seen earlier in the batch, is a duplicate), one of the new events'
/// deliveries, one read of the duplicates' delivery ids. Returns each request's answer and
/// how many events were new.
async fn accept(
    tx: &Transaction<'_>,
    requests: &[&[NewEvent]],
    now: i64,
) -> Result<(Vec<Result<Vec<Accepted>, PgError>>, u64), PgError> {
    // The first occurrence of an id in the batch is the one stored.
    let mut first: HashMap<&str, &NewEvent> = HashMap::new();
    for event in requests.iter().flat_map(|r| r.iter()) {
        first.entry(event.id.as_str()).or_insert(event);
    }
    // In id order: two sidecars inserting overlapping batches lock the ids in the same order
    // and wait for each other instead of deadlocking.
    let mut ids: Vec<&str> = first.keys().copied().collect();
    ids.sort_unstable();
    let (mut kinds, mut whole, mut occurred) = (Vec::new(), Vec::new(), Vec::new());
    for id in &ids {
        let e = first[id];
        kinds.push(e.kind.as_str());
        // The id whc made goes into the JSON here: this store keeps it (see `NewEvent::assigned`).
        whole.push(e.body_with_id());
        occurred.push(e.occurred_at.as_deref());
    }
    let bodies: Vec<&str> = whole.iter().map(|b| b.as_ref()).collect();
    let insert_events = tx
        .prepare_cached(
            "INSERT INTO whc_events (id, type, body, occurred_at, received_at)
             SELECT id, type, body, occurred_at, $5
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 AS e(id, type, body, occurred_at)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .await?;
    let inserted: HashSet<String> = tx
        .query(&insert_events, &[&ids, &kinds, &bodies, &occurred, &now])
        .await?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;

    let mut d = DeliveryColumns::default();
    for id in &ids {
        if inserted.contains(*id) {
            d.push_event(first[id])?;
        }
    }
    if !d.id.is_empty() {
        let insert_deliveries = tx
            .prepare_cached(
                "INSERT INTO whc_deliveries (id, event_id, webhook, method, url, endpoint, headers,
                 body, envelope, secret_env, timeout_ms, max_attempts, attempts, status,
                 next_attempt_at, created_at, updated_at)
             SELECT id, event_id, webhook, method, url, endpoint, headers, body, envelope,
                 secret_env, timeout_ms, max_attempts, 0, 'pending', $13, $13, $13
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::bytea[], $9::bool[], $10::text[], $11::int8[],
                 $12::int4[])
                 AS d(id, event_id, webhook, method, url, endpoint, headers, body, envelope,
                      secret_env, timeout_ms, max_attempts)",
            )
            .await?;
        tx.execute(
            &insert_deliveries,
            &[
                &d.id,
                &d.event_id,
                &d.webhook,
                &d.method,
                &d.url,
                &d.endpoint,
                &d.headers,
                &d.body,
                &d.envelope,
                &d.secret_env,
                &d.timeout_ms,
                &d.max_attempts,
                &now,
            ],
        )
        .await?;
    }
    // Duplicates of events stored before: their delivery ids, as first stored.
    let stored_before: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !inserted.contains(*id))
        .collect();
    let mut existing: HashMap<String, Vec<String>> = HashMap::new();
    if !stored_before.is_empty() {
        for row in tx
            .query(
                "SELECT event_id, id FROM whc_deliveries WHERE event_id = ANY($1)
                 ORDER BY created_at, id",
                &[&stored_before],
            )
            .await?
        {
            existing
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
    }

    let mut seen: HashSet<&str> = HashSet::new();
    let mut answers = Vec::with_capacity(requests.len());
    for events in requests {
        let mut answer = Vec::with_capacity(events.len());
        for event in events.iter() {
            let id = event.id.as_str();
            let new_here = inserted.contains(id) && seen.insert(id);
            let deliveries = if new_here {
                event.deliveries.iter().map(|d| d.id.clone()).collect()
            } else if inserted.contains(id) {
                first[id].deliveries.iter().map(|d| d.id.clone()).collect()
            } else {
                existing.get(id).cloned().unwrap_or_default()
            };
            answer.push(Accepted {
                id: event.id.clone(),
                duplicate: !new_here,
                deliveries,
            });
        }
        answers.push(Ok(answer));
    }
    Ok((answers, inserted.len() as u64))
}

/// The new deliveries of a batch, column by column, for one array insert.
#[derive(Default)]
struct DeliveryColumns<'a> {
    id: Vec<&'a str>,
    event_id: Vec<&'a str>,
    webhook: Vec<&'a str>,
    method: Vec<&'a str>,
    url: Vec<&'a str>,
    endpoint: Vec<String>,
    headers: Vec<String>,
    body: Vec<Option<&'a [u8]>>,
    envelope: Vec<bool>,
    secret_env: Vec<Option<&'a str>>,
    timeout_ms: Vec<i64>,
    max_attempts: Vec<i32>,
}

impl<'a> DeliveryColumns<'a> {
    fn push_event(&mut self, event: &'a NewEvent) -> Result<(), PgError> {
        for d in &event.deliveries {
            // Most webhooks set no header: skip the encoder for them.
            let headers = if d.headers.is_empty() {
                "[]".to_owned()
            } else {
                serde_json::to_string(&d.headers).map_err(PgError::Headers)?
            };
            let (body, envelope) = match &d.body {
                Payload::Empty => (None, false),
                Payload::Bytes(bytes) => (Some(bytes.as_slice()), false),
                Payload::Envelope => (None, true),
            };
            self.id.push(&d.id);
            self.event_id.push(&event.id);
            self.webhook.push(&d.webhook);
            self.method.push(&d.method);
            self.url.push(&d.url);
            self.endpoint.push(endpoint_of(&d.url));
            self.headers.push(headers);
            self.body.push(body);
            self.envelope.push(envelope);
            self.secret_env.push(d.secret_env.as_deref());
            self.timeout_ms.push(
                i64::try_from(d.timeout_ms).map_err(|_| PgError::OutOfRange {
                    field: "timeout_ms",
                })?,
            );
            self.max_attempts
                .push(
                    i32::try_from(d.max_attempts).map_err(|_| PgError::OutOfRange {
                        field: "max_attempts",
                    })?,
                );
        }
        Ok(())
    }
}

/// Records attempts with one array update per round; a delivery recorded twice in one batch
/// gets its second record in a later round. A delivery no longer pending is `NotPending`.
async fn record(
    tx: &Transaction<'_>,
    records: &[(&str, &AttemptRecord)],
    now: i64,
) -> Result<Vec<Result<(), PgError>>, PgError> {
    let mut results: Vec<Option<Result<(), PgError>>> = (0..records.len()).map(|_| None).collect();
    let mut left: Vec<usize> = (0..records.len()).collect();
    while !left.is_empty() {
        let mut round = Vec::new();
        let mut later = Vec::new();
        let mut in_round = HashSet::new();
        for i in left {
            if in_round.insert(records[i].0) {
                round.push(i);
            } else {
                later.push(i);
            }
        }
        let mut c = RecordBatch::default();
        for &i in &round {
            c.push(records[i].0, records[i].1);
        }
        // The delivery's new state and, for those still pending, a row of its history.
        let statement = tx
            .prepare_cached(
                "WITH r AS (
                     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[],
                         $5::text[], $6::text[], $7::int8[], $9::text[])
                         AS r(id, status, next_at, code, error, excerpt, elapsed, outcome)
                 ),
                 u AS (
                     UPDATE whc_deliveries d SET attempts = d.attempts + 1, status = r.status,
                         next_attempt_at = coalesce(r.next_at, d.next_attempt_at),
                         last_status_code = r.code, last_error = r.error,
                         response_excerpt = r.excerpt, last_attempt_ms = r.elapsed,
                         updated_at = $8, claimed_by = NULL, claimed_until = 0
                     FROM r WHERE d.id = r.id AND d.status = 'pending'
                     RETURNING d.id
                 ),
                 a AS (
                     INSERT INTO whc_attempts (delivery_id, at, outcome, status_code, error,
                         excerpt, elapsed_ms)
                     SELECT r.id, $8, r.outcome, r.code, r.error, r.excerpt, r.elapsed
                     FROM r JOIN u ON u.id = r.id
                 )
                 SELECT id FROM u",
            )
            .await?;
        let updated: HashSet<String> = tx
            .query(
                &statement,
                &[
                    &c.id, &c.status, &c.next_at, &c.code, &c.error, &c.excerpt, &c.elapsed, &now,
                    &c.outcome,
                ],
            )
            .await?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?;
        for &i in &round {
            let id = records[i].0;
            results[i] = Some(if updated.contains(id) {
                Ok(())
            } else {
                Err(PgError::NotPending(id.to_owned()))
            });
        }
        left = later;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(PgError::Closed)))
        .collect())
}

/// Attempt records column by column, for one array update.
#[derive(Default)]
struct RecordBatch<'a> {
    id: Vec<&'a str>,
    status: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    code: Vec<Option<i32>>,
    error: Vec<Option<String>>,
    excerpt: Vec<Option<&'a str>>,
    elapsed: Vec<i64>,
    outcome: Vec<&'static str>,
}

impl<'a> RecordBatch<'a> {
    fn push(&mut self, id: &'a str, record: &'a AttemptRecord) {
        let RecordColumns {
            outcome,
            status,
            next_attempt_at: next_at,
            status_code: code,
            error,
            excerpt: body,
            elapsed_ms: elapsed,
        } = record.columns();
        self.id.push(id);
        self.outcome.push(outcome);
        self.status.push(status.as_str());
        self.next_at.push(next_at);
        self.code.push(code.map(i32::from));
        self.error.push(error.map(|e| error_text(e).into_owned()));
        self.excerpt.push(body.map(excerpt));
        self.elapsed.push(elapsed);
    }
}

/// Deletes delivered rows last updated before `before`, then events left without deliveries;
/// only while holding the fleet's pruning lock, so one sidecar prunes at a time (the others
/// answer 0 and try at their next tick).
async fn prune(tx: &Transaction<'_>, before: i64) -> Result<usize, PgError> {
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
        .await?
        .try_get(0)?;
    if !locked {
        return Ok(0);
    }
    // A pruned delivery's attempts go with it.
    let removed: i64 = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM whc_deliveries WHERE status = 'delivered' AND updated_at < $1
                 RETURNING id
             ),
             history AS (
                 DELETE FROM whc_attempts WHERE delivery_id IN (SELECT id FROM gone)
             )
             SELECT count(*) FROM gone",
            &[&before],
        )
        .await?
        .try_get(0)?;
    tx.execute(
        "DELETE FROM whc_events e WHERE received_at < $1
         AND NOT EXISTS (SELECT 1 FROM whc_deliveries d WHERE d.event_id = e.id)",
        &[&before],
    )
    .await?;
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}
