//! Reads of the PostgreSQL store: a delivery row with the event its envelope wraps, the log,
//! counts.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PgError, Pool};
use std::collections::HashMap;

use crate::outbox::{
    Attempt, Delivery, DeliveryFilter, Status, StatusCounts, StoredBody, StoredEvent, StoredHeader,
    WebhookCounts,
};

/// The columns [`delivery`] reads, in order, from `whc_deliveries d` joined with
/// `whc_events e`.
pub(crate) const COLUMNS: &str = "d.id, d.event_id, d.webhook, d.method, d.url, d.headers,
    d.body, d.secret_env, d.timeout_ms, d.max_attempts, d.attempts, d.status,
    d.next_attempt_at, d.last_status_code, d.last_error, d.response_excerpt,
    d.last_attempt_ms, d.created_at, d.updated_at, d.envelope, e.type, e.occurred_at, e.body";

/// Maps a row of [`COLUMNS`]; bad data becomes an error, never a panic.
pub(crate) fn delivery(row: &Row) -> Result<Delivery, PgError> {
    let bad = |what: &str| PgError::BadRow(format!("delivery {}: {what}", row.get::<_, &str>(0)));
    let headers: &str = row.try_get(5)?;
    let headers: Vec<StoredHeader> =
        serde_json::from_str(headers).map_err(|e| bad(&format!("headers: {e}")))?;
    let body = if row.try_get::<_, bool>(19)? {
        let kind: Option<String> = row.try_get(20)?;
        let occurred_at: Option<String> = row.try_get(21)?;
        let json: Option<String> = row.try_get(22)?;
        let (Some(kind), Some(json)) = (kind, json) else {
            return Err(bad(
                "its event is missing, so its envelope cannot be rendered",
            ));
        };
        StoredBody::Envelope(StoredEvent {
            kind,
            occurred_at,
            json,
        })
    } else {
        match row.try_get::<_, Option<Vec<u8>>>(6)? {
            Some(bytes) => StoredBody::Bytes(bytes),
            None => StoredBody::Empty,
        }
    };
    let unsigned = |n: i64, what: &str| u64::try_from(n).map_err(|_| bad(what));
    let count = |n: i32, what: &str| u32::try_from(n).map_err(|_| bad(what));
    let status: &str = row.try_get(11)?;
    Ok(Delivery {
        id: row.try_get(0)?,
        event_id: row.try_get(1)?,
        webhook: row.try_get(2)?,
        method: row.try_get(3)?,
        url: row.try_get(4)?,
        headers,
        body,
        secret_env: row.try_get(7)?,
        timeout_ms: unsigned(row.try_get(8)?, "timeout_ms")?,
        max_attempts: count(row.try_get(9)?, "max_attempts")?,
        attempts: count(row.try_get(10)?, "attempts")?,
        status: status.parse().map_err(|e| bad(&format!("{e}")))?,
        next_attempt_at: row.try_get(12)?,
        last_status_code: row
            .try_get::<_, Option<i32>>(13)?
            .map(|c| u16::try_from(c).map_err(|_| bad("last_status_code")))
            .transpose()?,
        last_error: row.try_get(14)?,
        response_excerpt: row.try_get(15)?,
        last_attempt_ms: row
            .try_get::<_, Option<i64>>(16)?
            .map(|n| unsigned(n, "last_attempt_ms"))
            .transpose()?,
        created_at: row.try_get(17)?,
        updated_at: row.try_get(18)?,
    })
}

/// The delivery log, newest first by id (a UUID v7 starts with its creation time), so a page
/// after a cursor is a range of the primary key. The text is matched as typed (`strpos`, not
/// `LIKE`), in the event id or the event's `transaction`.
pub(crate) async fn list(pool: &Pool, filter: &DeliveryFilter) -> Result<Vec<Delivery>, PgError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM whc_deliveries d LEFT JOIN whc_events e ON e.id = d.event_id
         WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR d.webhook = $2)
           AND ($4::text IS NULL OR e.type = $4)
           AND ($5::int8 IS NULL OR d.created_at >= $5) AND ($6::int8 IS NULL OR d.created_at < $6)
           AND ($7::text IS NULL OR strpos(d.event_id, $7) > 0
                OR strpos(e.body::jsonb ->> 'transaction', $7) > 0)
           AND ($8::text IS NULL OR d.id < $8)
         ORDER BY d.id DESC LIMIT $3"
    );
    let status = filter.status.map(Status::as_str);
    let limit = i64::from(filter.limit);
    let params: [&(dyn ToSql + Sync); 8] = [
        &status,
        &filter.webhook,
        &limit,
        &filter.event_type,
        &filter.since,
        &filter.until,
        &filter.text,
        &filter.after,
    ];
    let rows = client
        .query(&client.prepare_cached(&sql).await?, &params)
        .await?;
    rows.iter().map(delivery).collect()
}

/// One delivery by id.
pub(crate) async fn get(pool: &Pool, id: &str) -> Result<Option<Delivery>, PgError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM whc_deliveries d LEFT JOIN whc_events e ON e.id = d.event_id
         WHERE d.id = $1"
    );
    let row = client
        .query_opt(&client.prepare_cached(&sql).await?, &[&id])
        .await?;
    row.as_ref().map(delivery).transpose()
}

/// How many deliveries are in each state.
pub(crate) async fn counts(pool: &Pool) -> Result<StatusCounts, PgError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT status, count(*) FROM whc_deliveries GROUP BY status",
            &[],
        )
        .await?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let n = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
        match row.try_get::<_, &str>(0)?.parse::<Status>() {
            Ok(Status::Pending) => counts.pending = n,
            Ok(Status::Delivered) => counts.delivered = n,
            Ok(Status::Dead) => counts.dead = n,
            Err(e) => return Err(PgError::BadRow(e.to_string())),
        }
    }
    Ok(counts)
}

/// How many deliveries wait for an attempt.
pub(crate) async fn queue_depth(pool: &Pool) -> Result<u64, PgError> {
    let client = pool.get().await?;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM whc_deliveries WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Reads a row of each table: fails when the store cannot be read.
pub(crate) async fn touch(pool: &Pool) -> Result<(), PgError> {
    let client = pool.get().await?;
    client
        .query_one(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM whc_events LIMIT 1) e),
                    (SELECT count(*) FROM (SELECT 1 FROM whc_deliveries LIMIT 1) d)",
            &[],
        )
        .await?;
    Ok(())
}

/// Per webhook, how many deliveries reached each state since `since_ms` (by when they last
/// changed).
pub(crate) async fn webhook_counts(
    pool: &Pool,
    since_ms: i64,
) -> Result<HashMap<String, WebhookCounts>, PgError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT webhook, status, attempts > 0, count(*) FROM whc_deliveries
             WHERE updated_at >= $1 GROUP BY 1, 2, 3",
            &[&since_ms],
        )
        .await?;
    let mut counts: HashMap<String, WebhookCounts> = HashMap::new();
    for row in rows {
        let status: Status = row
            .try_get::<_, &str>(1)?
            .parse()
            .map_err(|e: crate::outbox::UnknownStatus| PgError::BadRow(e.to_string()))?;
        let tried: bool = row.try_get(2)?;
        let n = u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0);
        let c = counts.entry(row.try_get(0)?).or_default();
        match (status, tried) {
            (Status::Delivered, _) => c.delivered += n,
            (Status::Dead, _) => c.dead += n,
            (Status::Pending, true) => c.retrying += n,
            (Status::Pending, false) => c.waiting += n,
        }
    }
    Ok(counts)
}

/// An event's JSON as it was received, if it is still stored.
pub(crate) async fn event_json(pool: &Pool, id: &str) -> Result<Option<String>, PgError> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT body FROM whc_events WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// A delivery's attempts, in the order they were made.
pub(crate) async fn attempts(pool: &Pool, id: &str) -> Result<Vec<Attempt>, PgError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT at, outcome, status_code, error, excerpt, elapsed_ms FROM whc_attempts
             WHERE delivery_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                at: r.try_get(0)?,
                outcome: r.try_get(1)?,
                status_code: r
                    .try_get::<_, Option<i32>>(2)?
                    .map(|c| {
                        u16::try_from(c)
                            .map_err(|_| PgError::BadRow(format!("attempt of {id}: status {c}")))
                    })
                    .transpose()?,
                error: r.try_get(3)?,
                excerpt: r.try_get(4)?,
                elapsed_ms: u64::try_from(r.try_get::<_, i64>(5)?).unwrap_or(0),
            })
        })
        .collect()
}
