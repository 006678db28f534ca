//! The outbox schema: connection settings and migrations tracked by `PRAGMA user_version`.
//!
//! The tables a person can query (`sqlite3 DATA/outbox.db`), as of the latest step:
//!
//! * `events`, keyed by `seq` (an integer in the order stored): `id` TEXT (the tracker's id,
//!   unique; or for an event that came without one, a UUID v7 whc made that carries the `seq`,
//!   see `super::event_id`), `type` (`conversion`, `refund`, `event1`..`event10`),
//!   `body` (the event as JSON in the wire format; without its `id` when `assigned`: such an
//!   id is in its column only), `received_at` (ms since the epoch),
//!   `occurred_at` (the event's `occurredAt`, or NULL), `fanout` (BLOB: the requests its
//!   webhooks rendered, in whc's encoding, see `super::fanout`; NULL when none matched),
//!   `assigned` (1: the id is one whc made from the `seq`; 0: any other id).
//! * `event_id_key`, one row: `key`, the random key that scrambles the `seq` in the ids whc
//!   assigns (see `super::event_id`).
//! * `fanout_expanded`, one row: `through`, the last event `seq` whose fan-out has been
//!   expanded into `deliveries` rows. A post stores only the event row; `whc serve` writes
//!   the deliveries of the events after `through` before anything reads deliveries (the
//!   dispatcher claiming, the admin API and console, metrics). While it is paused and nothing
//!   reads, new events' deliveries are only in their `fanout`.
//! * `deliveries`, keyed by `seq` (`event_seq * 65536 + n`, n the delivery's place in its
//!   event's fan-out from 0: an event's deliveries are one range, in the order stored): `id`
//!   TEXT UNIQUE (a UUID v7, the delivery's public id), `event_seq` (→ `events.seq`), `webhook`, `method`, `url`,
//!   `headers` (JSON: `[{"name", "value"?, "env"?}]`), `body` (BLOB, NULL for no body or an
//!   envelope), `secret_env`, `timeout_ms`, `max_attempts`, `attempts`, `status` (`pending`,
//!   `delivered` or `dead`; checked in Rust by [`super::Status`], not by SQLite),
//!   `next_attempt_at`, `last_status_code`, `last_error`, `response_excerpt`, `last_attempt_ms`,
//!   `created_at`, `updated_at` (ms since the epoch), `envelope` (1: the body is the envelope
//!   rendered from the event), `endpoint` (`scheme://host:port` of the URL), `endpoint_key`
//!   (an integer of `endpoint`, what the dispatcher's index groups by).
//! * `attempts` (one row per attempt, in the order made): `delivery_id` (→ `deliveries.id`),
//!   `at` (ms since the epoch), `outcome` (`delivered`, `retry` or `dead`), `status_code`,
//!   `error`, `excerpt` (the start of the response body), `elapsed_ms`. Pruned with their
//!   delivery.
//!
//! Indexes: `events_id (id) WHERE assigned = 0`, unique (an assigned id is found by its
//! `seq`, and is unique by how it is made); the deliveries' `id` unique index;
//! `deliveries_pending (endpoint_key, next_attempt_at)` (and so `seq`) of the pending
//! deliveries only, for the dispatcher; `deliveries_dead (webhook)` of the dead ones;
//! `attempts_delivery (delivery_id)` for a delivery's history. An event's deliveries are found
//! by the range of `deliveries.seq` (no index, no foreign key).

use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::OutboxError;
use super::event_id::IdKey;
use super::types::{endpoint_key, endpoint_of};
use super::writer::FanOutMarks;

/// How long a connection waits for a lock before SQLite reports `SQLITE_BUSY`.
///
/// Only the writer thread writes, so waits are short (a checkpoint, another process at start-up).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migration steps, applied in order; step `i` moves the schema to `user_version = i + 1`.
///
/// Never edit a step that has shipped: append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration::sql(STEPS[0]),
    Migration::sql(STEPS[1]),
    Migration::sql(STEPS[2]),
    // 4: each delivery knows its endpoint (scheme://host:port, see `endpoint_of`), so the
    // dispatcher claims a bounded number per endpoint and a dead endpoint cannot hold every
    // claim. Rows stored before get theirs computed from their URL.
    Migration {
        sql: STEP_4,
        then: Some(backfill_endpoints),
    },
    // 5: fewer b-tree writes per event (measured with callgrind under the load test: the
    // writer's share was ~120k instructions of ~230k per event matching 2 webhooks).
    // * Both tables become `WITHOUT ROWID`, keyed by their text id: one b-tree each instead
    //   of the rowid table plus the id's autoindex.
    // * No `CHECK (status IN (...))`: SQLite evaluated it through an ephemeral b-tree opened on
    //   every delivery insert; `Status` already validates in Rust.
    // * `deliveries_due_ids` goes: every due query uses `deliveries_endpoint_due` (checked with
    //   EXPLAIN QUERY PLAN, see the tests).
    // SQLite cannot drop a CHECK, so the tables are rebuilt (copy, drop, rename, recreate the
    // indexes), in this step's transaction. The new deliveries refer to the new events table,
    // which the rename turns into `events`, so dropping the old tables leaves no dangling key.
    Migration::sql(STEP_5),
    // 6: every attempt is kept, not only the last one, so the console shows a delivery's
    // history (each attempt's answer, error, excerpt and time). A rowid table: attempts only
    // grow at the end, and the index finds a delivery's.
    Migration::sql(STEP_6),
    // 7: integer keys in the order rows are stored (measured with callgrind under
    // ingest-vs-limits.sh's load: the writer spent 87.7k instructions of 187.8k per event
    // matching 2 webhooks, most of it seeking and splitting b-trees keyed by text).
    // * Both tables become rowid tables keyed by `seq`: a new row is appended at the right
    //   edge of an integer b-tree, where `WITHOUT ROWID` compared text keys on every level and
    //   moved whole rows (an event's 600-byte body) through its interior pages.
    // * The text ids stay, in unique indexes of their own: one small b-tree each.
    // * A delivery refers to its event by `event_seq`: its foreign-key check and its
    //   `deliveries_event` entry compare integers, not text.
    // * `deliveries_endpoint_due` ends at `next_attempt_at`: an index entry already ends with
    //   the rowid, which orders ties in the order stored.
    // Rows are copied in the order they were stored, so `seq` follows it for old rows too.
    Migration::sql(STEP_7),
    // 8: a delivery's key says which event it belongs to (measured with callgrind under
    // ingest-vs-limits.sh's load: per delivery, the `deliveries_event` entry cost a b-tree seek
    // and insert, and the foreign key a seek into `events`, ~3.9k of 152.6k instructions per
    // event matching 2 webhooks).
    // * `deliveries.seq` is `event_seq * 65536 + n`, n counting the event's deliveries from 0
    //   in the order its webhooks rendered them: the deliveries of an event are one range of
    //   the table's own b-tree, which replaces the `deliveries_event` index, and the table's
    //   order is still the order stored.
    // * No foreign key: the key itself ties a delivery to its event, and the writer is the
    //   only one writing.
    // Rows are copied in the order they were stored, numbered per event in that order.
    Migration::sql(STEP_8),
    // 9: the dispatcher's index compares integers and holds only what it looks for (measured
    // with callgrind: each `deliveries_endpoint_due` entry cost ~10k instructions to insert,
    // most of it comparing the `status` and `endpoint` texts on every level of the b-tree).
    // * `endpoint_key`, an integer of the endpoint (see `endpoint_key`), replaces the text in
    //   the index; the `endpoint` text stays for people.
    // * `deliveries_pending (endpoint_key, next_attempt_at) WHERE status = 'pending'`: a partial
    //   index, so a delivered delivery leaves it instead of moving to a `delivered` entry, and
    //   `status` is not compared at all.
    // * `deliveries_dead (webhook) WHERE status = 'dead'` keeps "a webhook's dead deliveries"
    //   (replaying them) a seek, for the few rows that go dead.
    // Rows stored before get their key computed from their endpoint.
    Migration {
        sql: STEP_9,
        then: Some(backfill_endpoint_keys),
    },
    // 10: a post writes one row per event (measured with callgrind under ingest-vs-limits.sh's
    // load: each delivery row cost ~15k instructions of ~138k per event matching 2 webhooks,
    // inserting into the table, `deliveries_pending` and the `id` index, and binding 15
    // parameters).
    // * `events.fanout` holds the requests the event's webhooks rendered (see `fanout`), NULL
    //   when none matched.
    // * The writer expands them into `deliveries` rows, in the order stored, before anything
    //   reads deliveries: the dispatcher before it claims, the admin API before it answers.
    //   `fanout_expanded.through` is the last event `seq` whose fan-out has rows.
    // Every event stored before has its deliveries as rows already.
    Migration::sql(STEP_10),
    // 11: the ids whc gives events that came without one leave the unique index (measured
    // under ingest-vs-limits.sh's load: the writer thread was the bottleneck, two thirds of its
    // time in the kernel writing WAL frames, and the `id` index's page was one of the ~6
    // frames each commit of ~12 events wrote).
    // * Such an id carries its event's `seq` (see `event_id`): it is found by the `seq`, and is
    //   unique by how it is made. `assigned = 1` marks it. The `seq` is scrambled with the
    //   outbox's random key, `event_id_key.key`, so that an id does not tell how many events
    //   the outbox stored.
    // * `events_id`, a partial unique index, holds the other ids: the trackers', and those of
    //   every event stored before this step.
    // SQLite cannot drop the column's UNIQUE, so the table is rebuilt (copied in `seq` order).
    Migration::sql(STEP_11),
    // 12: an assigned id is kept in the `id` column only, not in `body` too (measured under
    // ingest-vs-limits.sh's load: the one-table reference storing whc's row, 584 bytes, ran at
    // ~0.94 of itself storing the posted 460; the id in the body was 43 of the 124 more bytes
    // every event wrote to the WAL, and a copy of the body in the writer to put it there).
    // Readers put the id back at the head of the JSON they return. Events stored by step 11
    // lose the copy in their body.
    Migration::sql(STEP_12),
];

/// The SQL of step 12: the bodies of events whose id the outbox assigned, without that id (its
/// `{"id":"<id>",` head becomes `{`; `{"id":"<id>"}` becomes `{}`).
pub(crate) const STEP_12: &str = r#"
    UPDATE events SET body = '{' || substr(body, length(id) + 10)
        WHERE assigned = 1 AND substr(body, 1, length(id) + 9) = '{"id":"' || id || '",';
    UPDATE events SET body = '{}'
        WHERE assigned = 1 AND body = '{"id":"' || id || '"}';
"#;

/// The SQL of step 11: the events table without its id's UNIQUE, the `assigned` mark, the
/// partial unique index of the ids not assigned, and the key that scrambles the `seq` in the
/// assigned ones (SQLite's `random()`, seeded from the system's randomness).
pub(crate) const STEP_11: &str = "
    CREATE TABLE events_v11 (
        seq         INTEGER PRIMARY KEY,
        id          TEXT NOT NULL,
        type        TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        occurred_at TEXT,
        fanout      BLOB,
        assigned    INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO events_v11 (seq, id, type, body, received_at, occurred_at, fanout)
        SELECT seq, id, type, body, received_at, occurred_at, fanout FROM events ORDER BY seq;
    DROP TABLE events;
    ALTER TABLE events_v11 RENAME TO events;
    CREATE UNIQUE INDEX events_id ON events (id) WHERE assigned = 0;
    CREATE TABLE event_id_key (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        key INTEGER NOT NULL
    );
    INSERT INTO event_id_key (id, key) VALUES (1, random());
";

/// The outbox's key for the ids it assigns (see `event_id`).
pub(crate) fn id_key(conn: &Connection) -> rusqlite::Result<IdKey> {
    conn.prepare_cached("SELECT key FROM event_id_key")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|key| IdKey(u64::from_ne_bytes(key.to_ne_bytes())))
}

/// The SQL of step 10: the events' fan-out, and how far it has been expanded.
pub(crate) const STEP_10: &str = "
    ALTER TABLE events ADD COLUMN fanout BLOB;
    CREATE TABLE fanout_expanded (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        through INTEGER NOT NULL
    );
    INSERT INTO fanout_expanded (id, through) SELECT 1, coalesce(max(seq), 0) FROM events;
";

/// How many deliveries one event can have: a delivery's `seq` is its event's `seq` times this,
/// plus its place in the event's fan-out.
pub(crate) const FAN_OUT_LIMIT: i64 = 1 << 16;

/// The SQL of step 6: the attempts of each delivery.
pub(crate) const STEP_6: &str = "
    CREATE TABLE attempts (
        delivery_id TEXT NOT NULL,
        at          INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        status_code INTEGER,
        error       TEXT,
        excerpt     TEXT,
        elapsed_ms  INTEGER NOT NULL
    );
    CREATE INDEX attempts_delivery ON attempts (delivery_id);
";

/// The SQL of step 4 (its Rust half is [`backfill_endpoints`]).
pub(crate) const STEP_4: &str = "
    ALTER TABLE deliveries ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
    CREATE INDEX deliveries_endpoint_due
        ON deliveries (status, endpoint, next_attempt_at, id);
";

/// The SQL of step 5: the tables rebuilt without ROWID and CHECK.
pub(crate) const STEP_5: &str = "
    CREATE TABLE events_v5 (
        id          TEXT PRIMARY KEY NOT NULL,
        type        TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        occurred_at TEXT
    ) WITHOUT ROWID;
    INSERT INTO events_v5 (id, type, body, received_at, occurred_at)
        SELECT id, type, body, received_at, occurred_at FROM events;
    CREATE TABLE deliveries_v5 (
        id               TEXT PRIMARY KEY NOT NULL,
        event_id         TEXT NOT NULL REFERENCES events_v5(id),
        webhook          TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        headers          TEXT NOT NULL,
        body             BLOB,
        secret_env       TEXT,
        timeout_ms       INTEGER NOT NULL,
        max_attempts     INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        status           TEXT NOT NULL,
        next_attempt_at  INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error       TEXT,
        response_excerpt TEXT,
        last_attempt_ms  INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        envelope         INTEGER NOT NULL DEFAULT 0,
        endpoint         TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    INSERT INTO deliveries_v5 (id, event_id, webhook, method, url, headers, body, secret_env,
            timeout_ms, max_attempts, attempts, status, next_attempt_at, last_status_code,
            last_error, response_excerpt, last_attempt_ms, created_at, updated_at, envelope,
            endpoint)
        SELECT id, event_id, webhook, method, url, headers, body, secret_env, timeout_ms,
            max_attempts, attempts, status, next_attempt_at, last_status_code, last_error,
            response_excerpt, last_attempt_ms, created_at, updated_at, envelope, endpoint
        FROM deliveries;
    DROP TABLE deliveries;
    DROP TABLE events;
    ALTER TABLE events_v5 RENAME TO events;
    ALTER TABLE deliveries_v5 RENAME TO deliveries;
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE INDEX deliveries_endpoint_due ON deliveries (status, endpoint, next_attempt_at, id);
";

/// The SQL of step 7: the tables rebuilt with integer keys in the order stored.
///
/// A delivery whose event is missing (the foreign key made that impossible) would fail the
/// `NOT NULL` of `event_seq` and so the migration, rather than be dropped.
pub(crate) const STEP_7: &str = "
    CREATE TABLE events_v7 (
        seq         INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        type        TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        occurred_at TEXT
    );
    INSERT INTO events_v7 (id, type, body, received_at, occurred_at)
        SELECT id, type, body, received_at, occurred_at FROM events ORDER BY received_at, id;
    CREATE TABLE deliveries_v7 (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        event_seq        INTEGER NOT NULL REFERENCES events_v7(seq),
        webhook          TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        headers          TEXT NOT NULL,
        body             BLOB,
        secret_env       TEXT,
        timeout_ms       INTEGER NOT NULL,
        max_attempts     INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        status           TEXT NOT NULL,
        next_attempt_at  INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error       TEXT,
        response_excerpt TEXT,
        last_attempt_ms  INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        envelope         INTEGER NOT NULL DEFAULT 0,
        endpoint         TEXT NOT NULL
    );
    INSERT INTO deliveries_v7 (id, event_seq, webhook, method, url, headers, body, secret_env,
            timeout_ms, max_attempts, attempts, status, next_attempt_at, last_status_code,
            last_error, response_excerpt, last_attempt_ms, created_at, updated_at, envelope,
            endpoint)
        SELECT d.id, e.seq, d.webhook, d.method, d.url, d.headers, d.body, d.secret_env,
            d.timeout_ms, d.max_attempts, d.attempts, d.status, d.next_attempt_at,
            d.last_status_code, d.last_error, d.response_excerpt, d.last_attempt_ms,
            d.created_at, d.updated_at, d.envelope, d.endpoint
        FROM deliveries d LEFT JOIN events_v7 e ON e.id = d.event_id
        ORDER BY d.created_at, d.id;
    DROP TABLE deliveries;
    DROP TABLE events;
    ALTER TABLE events_v7 RENAME TO events;
    ALTER TABLE deliveries_v7 RENAME TO deliveries;
    CREATE INDEX deliveries_event ON deliveries (event_seq);
    CREATE INDEX deliveries_endpoint_due ON deliveries (status, endpoint, next_attempt_at);
";

/// The SQL of step 8: each delivery keyed by its event's `seq` and its place in the fan-out.
pub(crate) const STEP_8: &str = "
    CREATE TABLE deliveries_v8 (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        event_seq        INTEGER NOT NULL,
        webhook          TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        headers          TEXT NOT NULL,
        body             BLOB,
        secret_env       TEXT,
        timeout_ms       INTEGER NOT NULL,
        max_attempts     INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        status           TEXT NOT NULL,
        next_attempt_at  INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error       TEXT,
        response_excerpt TEXT,
        last_attempt_ms  INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        envelope         INTEGER NOT NULL DEFAULT 0,
        endpoint         TEXT NOT NULL
    );
    INSERT INTO deliveries_v8 (seq, id, event_seq, webhook, method, url, headers, body,
            secret_env, timeout_ms, max_attempts, attempts, status, next_attempt_at,
            last_status_code, last_error, response_excerpt, last_attempt_ms, created_at,
            updated_at, envelope, endpoint)
        SELECT event_seq * 65536 + row_number() OVER (PARTITION BY event_seq ORDER BY seq) - 1,
            id, event_seq, webhook, method, url, headers, body, secret_env, timeout_ms,
            max_attempts, attempts, status, next_attempt_at, last_status_code, last_error,
            response_excerpt, last_attempt_ms, created_at, updated_at, envelope, endpoint
        FROM deliveries ORDER BY seq;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v8 RENAME TO deliveries;
    CREATE INDEX deliveries_endpoint_due ON deliveries (status, endpoint, next_attempt_at);
";

/// The SQL of step 9 (its Rust half is [`backfill_endpoint_keys`], which also creates the new
/// indexes once every row has its key).
pub(crate) const STEP_9: &str = "
    ALTER TABLE deliveries ADD COLUMN endpoint_key INTEGER NOT NULL DEFAULT 0;
    DROP INDEX deliveries_endpoint_due;
";

/// The indexes of step 9, created after the keys are set.
pub(crate) const STEP_9_INDEXES: &str = "
    CREATE INDEX deliveries_pending ON deliveries (endpoint_key, next_attempt_at)
        WHERE status = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (webhook) WHERE status = 'dead';
";

/// One migration step: SQL, then optionally Rust for what SQL cannot compute, in the same
/// transaction.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

impl Migration {
    const fn sql(sql: &'static str) -> Migration {
        Migration { sql, then: None }
    }
}

/// Sets the endpoint of every delivery stored before the column existed.
fn backfill_endpoints(conn: &Connection) -> rusqlite::Result<()> {
    let rows = conn
        .prepare("SELECT id, url FROM deliveries WHERE endpoint = ''")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut update = conn.prepare("UPDATE deliveries SET endpoint = ?2 WHERE id = ?1")?;
    for (id, url) in rows {
        update.execute([id, endpoint_of(&url)])?;
    }
    Ok(())
}

/// Sets the `endpoint_key` of every delivery stored before the column existed, then creates
/// step 9's indexes.
fn backfill_endpoint_keys(conn: &Connection) -> rusqlite::Result<()> {
    let rows = conn
        .prepare("SELECT seq, endpoint FROM deliveries")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut update = conn.prepare("UPDATE deliveries SET endpoint_key = ?2 WHERE seq = ?1")?;
    for (seq, endpoint) in rows {
        update.execute(params![seq, endpoint_key(&endpoint)])?;
    }
    conn.execute_batch(STEP_9_INDEXES)
}

/// The SQL of the first steps, as they shipped.
pub(crate) const STEPS: [&str; 3] = [
    // 1: events and their deliveries.
    "
    CREATE TABLE events (
        id          TEXT PRIMARY KEY NOT NULL,
        type        TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE TABLE deliveries (
        id               TEXT PRIMARY KEY NOT NULL,
        event_id         TEXT NOT NULL REFERENCES events(id),
        webhook          TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        headers          TEXT NOT NULL,
        body             BLOB,
        secret_env       TEXT,
        timeout_ms       INTEGER NOT NULL,
        max_attempts     INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        next_attempt_at  INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error       TEXT,
        response_excerpt TEXT,
        last_attempt_ms  INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE INDEX deliveries_event ON deliveries (event_id);
    ",
    // 2: the due index covers the id, so the dispatcher lists due ids from the index alone.
    "
    CREATE INDEX deliveries_due_ids ON deliveries (status, next_attempt_at, id);
    DROP INDEX deliveries_due;
    ",
    // 3: a POST's envelope is rendered from the stored event when read, not stored with each
    // delivery (`envelope = 1`, `body` NULL); the event keeps its `occurredAt` for it.
    "
    ALTER TABLE events ADD COLUMN occurred_at TEXT;
    ALTER TABLE deliveries ADD COLUMN envelope INTEGER NOT NULL DEFAULT 0;
    ",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the connection the writer thread owns, in WAL mode with full sync, and migrates it.
///
/// `synchronous = FULL`: every COMMIT fsyncs the WAL, so an acknowledged event survives power
/// loss too, not only `kill -9` (WAL with NORMAL would survive only the latter). Group commit
/// amortises that fsync over every queued request. Measured on the dev VM (release, 1 event +
/// 1-2 deliveries per call): one caller at a time, FULL 0.9-3.2k accepts/s vs NORMAL 9.5k/s;
/// 200 concurrent callers, FULL 16-34k/s vs NORMAL 21-26k/s (noisy, same order): under load
/// the batching hides the fsync, so FULL costs little where it matters.
pub(crate) fn open_writer(path: &std::path::Path) -> Result<Connection, OutboxError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    quick_check(&conn, path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OutboxError::NoWal(mode));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // The page cache stays at SQLite's default (2 MiB), which holds the tables' right edges
    // between batches. A bigger one costs at every COMMIT: SQLite scans the cache's whole hash
    // table to drop pages past the end of the file. Measured under the load test with 128
    // connections: 5.3% of the process's CPU in `pcache1TruncateUnsafe` with 32 MiB, 0.4% with
    // the default.
    migrate(&mut conn)?;
    Ok(conn)
}

/// Runs `PRAGMA quick_check` (every page and index structure, not the index contents: seconds
/// for gigabytes) and refuses a damaged file, which would otherwise start and take posts into
/// pages it may lose.
fn quick_check(conn: &Connection, path: &std::path::Path) -> Result<(), OutboxError> {
    let corrupt = |details: String| OutboxError::Corrupt {
        path: path.to_path_buf(),
        details,
    };
    let rows = conn.prepare("PRAGMA quick_check(5)").and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()
    });
    match rows {
        Ok(rows) if rows == ["ok"] => Ok(()),
        Ok(rows) => Err(corrupt(rows.join("; "))),
        Err(rusqlite::Error::SqliteFailure(e, message))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Err(corrupt(message.unwrap_or_else(|| e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

/// Where the events' fan-out stands in the file: the writer's marks at open (see
/// [`super::Outbox::expand_fan_out`]). Reads the events after the expanded mark, which is
/// what a stop left unexpanded. A fan-out that does not decode counts none.
pub(crate) fn fan_out_marks(conn: &Connection) -> Result<FanOutMarks, OutboxError> {
    let (fanned, expanded) = conn.query_row(
        "SELECT coalesce((SELECT max(seq) FROM events), 0), through FROM fanout_expanded",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut unexpanded_deliveries = 0u64;
    let mut rows = conn
        .prepare("SELECT fanout FROM events WHERE seq > ?1 AND fanout IS NOT NULL ORDER BY seq")?;
    let mut fanouts = rows.query([expanded])?;
    while let Some(row) = fanouts.next()? {
        let bytes = row.get_ref(0)?.as_blob().unwrap_or_default();
        unexpanded_deliveries += super::fanout::count(bytes).unwrap_or(0);
    }
    Ok(FanOutMarks {
        fanned,
        expanded,
        unexpanded_deliveries,
    })
}

/// Opens a read-only connection for queries; WAL lets it read while the writer commits.
pub(crate) fn open_reader(path: &std::path::Path) -> Result<Connection, OutboxError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Applies every migration newer than the file's `user_version`, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > VERSION {
        return Err(OutboxError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (step, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        // IMMEDIATE: a second process migrating at the same time waits instead of interleaving.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current > step as i64 {
            continue; // another process applied it while we waited for the lock
        }
        tx.execute_batch(migration.sql)?;
        if let Some(then) = migration.then {
            then(&tx)?;
        }
        tx.pragma_update(None, "user_version", step as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version")
    }

    #[test]
    fn fresh_file_is_migrated_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        let conn = open_writer(&path).expect("first open");
        assert_eq!(user_version(&conn), VERSION);
        drop(conn);
        let conn = open_writer(&path).expect("second open");
        assert_eq!(user_version(&conn), VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('events', 'deliveries')",
                [],
                |r| r.get(0),
            )
            .expect("count tables");
        assert_eq!(tables, 2);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("set version");
        drop(conn);
        match open_writer(&path) {
            Err(OutboxError::SchemaTooNew { found, .. }) => assert_eq!(found, VERSION + 1),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
