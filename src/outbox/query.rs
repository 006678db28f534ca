//! Reads: due deliveries for the dispatcher, the delivery log for the admin API, counts.

use std::collections::HashMap;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::OutboxError;
use super::payload::{StoredBody, StoredEvent};
use super::types::{
    Attempt, Delivery, DeliveryFilter, Status, StatusCounts, StoredHeader, WebhookCounts,
};

/// The columns [`delivery`] reads, in order, from `deliveries d` joined with `events e` (the
/// event an envelope wraps).
const COLUMNS: &str = "d.id, e.id, d.webhook, d.method, d.url, d.headers, d.body,
    d.secret_env, d.timeout_ms, d.max_attempts, d.attempts, d.status, d.next_attempt_at,
    d.last_status_code, d.last_error, d.response_excerpt, d.last_attempt_ms, d.created_at,
    d.updated_at, d.envelope, e.type, e.occurred_at, e.body, e.assigned";

/// The tables [`COLUMNS`] reads.
const FROM: &str = "deliveries d LEFT JOIN events e ON e.seq = d.event_seq";

/// Maps a row of [`COLUMNS`]; bad data becomes an error, never a panic.
fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let headers: String = row.get(5)?;
    let headers: Vec<StoredHeader> = serde_json::from_str(&headers)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(e)))?;
    let body = if row.get::<_, bool>(19)? {
        let kind: Option<String> = row.get(20)?;
        let occurred_at: Option<String> = row.get(21)?;
        let event: Option<String> = row.get(22)?;
        let (Some(kind), Some(mut json)) = (kind, event) else {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                22,
                Type::Null,
                "the delivery's event is missing, so its envelope cannot be rendered".into(),
            ));
        };
        // An id the outbox assigned is in its column only.
        if row.get::<_, bool>(23)? {
            json = super::event_id::with_id(&json, &row.get::<_, String>(1)?);
        }
        StoredBody::Envelope(StoredEvent {
            kind,
            occurred_at,
            json,
        })
    } else {
        match row.get::<_, Option<Vec<u8>>>(6)? {
            Some(bytes) => StoredBody::Bytes(bytes),
            None => StoredBody::Empty,
        }
    };
    Ok(Delivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        webhook: row.get(2)?,
        method: row.get(3)?,
        url: row.get(4)?,
        headers,
        body,
        secret_env: row.get(7)?,
        timeout_ms: row.get(8)?,
        max_attempts: row.get(9)?,
        attempts: row.get(10)?,
        status: row.get(11)?,
        next_attempt_at: row.get(12)?,
        last_status_code: row.get(13)?,
        last_error: row.get(14)?,
        response_excerpt: row.get(15)?,
        last_attempt_ms: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
    })
}

/// The endpoints (their `endpoint_key`s) that have pending deliveries, in order, each found by
/// one seek in the `deliveries_pending` index (a loose index scan): the cost grows with the
/// endpoints, not with a dead endpoint's backlog.
pub(crate) fn pending_endpoints(conn: &Connection) -> Result<Vec<i64>, OutboxError> {
    let mut first = conn.prepare_cached(
        "SELECT endpoint_key FROM deliveries WHERE status = 'pending'
         ORDER BY endpoint_key LIMIT 1",
    )?;
    let mut next = conn.prepare_cached(
        "SELECT endpoint_key FROM deliveries WHERE status = 'pending' AND endpoint_key > ?1
         ORDER BY endpoint_key LIMIT 1",
    )?;
    let mut endpoints = Vec::new();
    let mut at: Option<i64> = first.query_row([], |r| r.get(0)).optional()?;
    while let Some(endpoint) = at {
        at = next.query_row([endpoint], |r| r.get(0)).optional()?;
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

/// The ids and due times of an endpoint's first `limit` pending deliveries, soonest first.
pub(crate) fn oldest_on(
    conn: &Connection,
    endpoint: i64,
    limit: usize,
) -> Result<Vec<(String, i64)>, OutboxError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .prepare_cached(
            "SELECT id, next_attempt_at FROM deliveries
             WHERE status = 'pending' AND endpoint_key = ?1
             ORDER BY next_attempt_at, seq LIMIT ?2",
        )?
        .query_map(params![endpoint, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The delivery log, newest first.
pub(crate) fn list(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>, OutboxError> {
    // Newest first by id: a delivery id is a UUID v7, whose first bits are the time it was
    // made, so the primary key is the log's order and a page is a range of it (keyset paging:
    // each page costs the same however deep). With a cursor the range is written plainly, so
    // that SQLite seeks to it instead of testing every row before it.
    // `instr` rather than `LIKE`: the text is matched as typed, `%` and `_` included.
    let cursor = if filter.after.is_some() {
        "d.id < ?8"
    } else {
        "?8 IS NULL"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM}
         WHERE {cursor} AND (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.webhook = ?2)
           AND (?4 IS NULL OR e.type = ?4)
           AND (?5 IS NULL OR d.created_at >= ?5) AND (?6 IS NULL OR d.created_at < ?6)
           AND (?7 IS NULL OR instr(e.id, ?7) > 0
                OR instr(CAST(json_extract(e.body, '$.transaction') AS TEXT), ?7) > 0)
         ORDER BY d.id DESC LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                filter.status,
                filter.webhook,
                filter.limit,
                filter.event_type,
                filter.since,
                filter.until,
                filter.text,
                filter.after,
            ],
            delivery,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Per webhook, how many deliveries reached each state since `since_ms` (by the time they last
/// changed).
pub(crate) fn webhook_counts(
    conn: &Connection,
    since_ms: i64,
) -> Result<HashMap<String, WebhookCounts>, OutboxError> {
    let mut stmt = conn.prepare_cached(
        "SELECT webhook, status, attempts > 0, count(*) FROM deliveries
         WHERE updated_at >= ?1 GROUP BY 1, 2, 3",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Status>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, u64>(3)?,
        ))
    })?;
    let mut counts: HashMap<String, WebhookCounts> = HashMap::new();
    for row in rows {
        let (webhook, status, tried, n) = row?;
        let c = counts.entry(webhook).or_default();
        match (status, tried) {
            (Status::Delivered, _) => c.delivered += n,
            (Status::Dead, _) => c.dead += n,
            (Status::Pending, true) => c.retrying += n,
            (Status::Pending, false) => c.waiting += n,
        }
    }
    Ok(counts)
}

/// The ids of a webhook's dead deliveries.
pub(crate) fn dead_ids(conn: &Connection, webhook: &str) -> Result<Vec<String>, OutboxError> {
    let rows = conn
        .prepare_cached("SELECT id FROM deliveries WHERE status = 'dead' AND webhook = ?1")?
        .query_map([webhook], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A delivery's attempts, in the order they were made.
pub(crate) fn attempts(conn: &Connection, id: &str) -> Result<Vec<Attempt>, OutboxError> {
    let rows = conn
        .prepare_cached(
            "SELECT at, outcome, status_code, error, excerpt, elapsed_ms FROM attempts
             WHERE delivery_id = ?1 ORDER BY rowid",
        )?
        .query_map([id], |r| {
            Ok(Attempt {
                at: r.get(0)?,
                outcome: r.get(1)?,
                status_code: r.get(2)?,
                error: r.get(3)?,
                excerpt: r.get(4)?,
                elapsed_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// An event as it was received: its JSON, with its id (which an event whose id the outbox
/// assigned has in its column only).
pub(crate) fn event_json(conn: &Connection, id: &str) -> Result<Option<String>, OutboxError> {
    let found: Option<(String, bool)> = conn
        .prepare_cached(
            "SELECT body, 0 FROM events WHERE id = ?1 AND assigned = 0
             UNION ALL
             SELECT body, 1 FROM events WHERE seq = ?2 AND id = ?1 AND assigned = 1",
        )?
        .query_row(
            rusqlite::params![
                id,
                super::event_id::seq_of(id, super::schema::id_key(conn)?)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(found.map(|(body, assigned)| {
        if assigned {
            super::event_id::with_id(&body, id)
        } else {
            body
        }
    }))
}

/// One delivery by id.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<Delivery>, OutboxError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], delivery)
        .optional()?)
}

/// Reads a row of each table: fails when the store cannot be read.
pub(crate) fn touch(conn: &Connection) -> Result<(), OutboxError> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1)),
                (SELECT count(*) FROM (SELECT 1 FROM deliveries LIMIT 1))",
    )?
    .query_row([], |_| Ok(()))?;
    Ok(())
}

/// How many deliveries wait for an attempt.
pub(crate) fn queue_depth(conn: &Connection) -> Result<u64, OutboxError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

/// How many deliveries are in each state: the pending and the dead counted in their partial
/// indexes, the delivered as the rest of the smallest index of the table.
pub(crate) fn counts(conn: &Connection) -> Result<StatusCounts, OutboxError> {
    let (all, pending, dead): (u64, u64, u64) = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM deliveries),
                    (SELECT count(*) FROM deliveries WHERE status = 'pending'),
                    (SELECT count(*) FROM deliveries WHERE status = 'dead')",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(StatusCounts {
        pending,
        delivered: all.saturating_sub(pending + dead),
        dead,
    })
}
