//! Claims on a shared queue: `FOR UPDATE SKIP LOCKED` picks due deliveries no other sidecar is
//! picking, and a lease (`claimed_by`, `claimed_until`) keeps them this sidecar's until their
//! attempt is recorded, released, or the lease runs out (a sidecar that died).
//!
//! This sidecar also counts its claims per endpoint in memory, for the per-endpoint bound, and
//! renews their leases while it holds them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio_postgres::types::ToSql;

use super::query::{COLUMNS, delivery};
use super::{PgError, Pool};
use crate::outbox::{Delivery, now_ms};
use crate::store::ClaimBound;

/// How many deliveries past its own claims [`next_due_at`] looks at on each endpoint: those
/// claimed by other sidecars are skipped, and if more than this many are, the answer is later
/// than it could be, never earlier (the dispatcher looks again within a second anyway).
const LOOK_PAST: i64 = 64;

/// The deliveries this sidecar holds, by id, with their endpoints.
#[derive(Debug, Default)]
pub(crate) struct Claims(Mutex<Claimed>);

impl Claims {
    /// The claims, even if a thread panicked while holding them.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Claimed> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The claimed deliveries and how many each endpoint holds.
///
/// A delivery counts on its endpoint from its claim until its attempt is over (its record is
/// handed in): the bound is on what waits for the endpoint or is on its wire, not on what
/// waits for the database. Its lease is held (and renewed) until the record commits.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Each claim's endpoint, and whether it still counts there.
    endpoint_of: HashMap<String, (String, bool)>,
    per_endpoint: HashMap<String, usize>,
}

impl Claimed {
    fn insert(&mut self, id: String, endpoint: String) {
        if self.endpoint_of.contains_key(&id) {
            return;
        }
        *self.per_endpoint.entry(endpoint.clone()).or_default() += 1;
        self.endpoint_of.insert(id, (endpoint, true));
    }

    fn uncount(per_endpoint: &mut HashMap<String, usize>, endpoint: &str) {
        if let Some(n) = per_endpoint.get_mut(endpoint) {
            *n -= 1;
            if *n == 0 {
                per_endpoint.remove(endpoint);
            }
        }
    }

    /// The delivery's attempt is over and its record on its way: it no longer counts on its
    /// endpoint, but stays claimed (and leased) until the record commits. True when it
    /// counted until now.
    pub(crate) fn attempted(&mut self, id: &str) -> bool {
        match self.endpoint_of.get_mut(id) {
            Some((endpoint, counted)) if *counted => {
                *counted = false;
                Self::uncount(&mut self.per_endpoint, endpoint);
                true
            }
            _ => false,
        }
    }

    /// Drops a claim, if there is one; true when there was.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some((endpoint, counted)) = self.endpoint_of.remove(id) else {
            return false;
        };
        if counted {
            Self::uncount(&mut self.per_endpoint, &endpoint);
        }
        true
    }

    fn on(&self, endpoint: &str) -> usize {
        self.per_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    /// The ids held, for renewing their leases.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.endpoint_of.keys().cloned().collect()
    }
}

/// The endpoints with pending deliveries, each found by one seek in the due index (a loose
/// index scan): the cost grows with the endpoints, not with a dead endpoint's backlog.
async fn pending_endpoints(
    client: &deadpool_postgres::ClientWrapper,
) -> Result<Vec<String>, PgError> {
    let statement = client
        .prepare_cached(
            "WITH RECURSIVE e(endpoint) AS (
                 (SELECT endpoint FROM whc_deliveries WHERE status = 'pending'
                  ORDER BY endpoint LIMIT 1)
                 UNION ALL
                 SELECT (SELECT endpoint FROM whc_deliveries
                         WHERE status = 'pending' AND endpoint > e.endpoint
                         ORDER BY endpoint LIMIT 1)
                 FROM e WHERE e.endpoint IS NOT NULL
             )
             SELECT endpoint FROM e WHERE endpoint IS NOT NULL",
        )
        .await?;
    let rows = client.query(&statement, &[]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(PgError::from))
        .collect()
}

/// Claims up to `limit` deliveries due at `due_by` for `owner` until `now + lease_ms`, at most
/// `per_endpoint` held by this sidecar on each endpoint.
pub(crate) async fn claim(
    pool: &Pool,
    claims: &Claims,
    owner: &str,
    lease_ms: i64,
    due_by: i64,
    limit: usize,
    per_endpoint: &ClaimBound,
) -> Result<Vec<Delivery>, PgError> {
    let mut client = pool.get().await?;
    let endpoints = pending_endpoints(&client).await?;
    let (names, rooms): (Vec<String>, Vec<i64>) = {
        let held = claims.lock();
        endpoints
            .into_iter()
            .filter_map(|e| {
                let room = per_endpoint.on(&e).saturating_sub(held.on(&e)).min(limit);
                (room > 0).then(|| (e, i64::try_from(room).unwrap_or(i64::MAX)))
            })
            .unzip()
    };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let until = now.saturating_add(lease_ms);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH picked AS (
             SELECT c.id FROM unnest($1::text[], $2::int8[]) AS e(endpoint, room)
             CROSS JOIN LATERAL (
                 SELECT id, next_attempt_at FROM whc_deliveries
                 WHERE status = 'pending' AND endpoint = e.endpoint
                   AND next_attempt_at <= $3 AND claimed_until <= $4
                 ORDER BY next_attempt_at, id LIMIT e.room
                 FOR UPDATE SKIP LOCKED
             ) c
             ORDER BY c.next_attempt_at, c.id LIMIT $5
         ),
         claimed AS (
             UPDATE whc_deliveries SET claimed_by = $6, claimed_until = $7
             FROM picked WHERE whc_deliveries.id = picked.id
             RETURNING whc_deliveries.*
         )
         SELECT {COLUMNS}, d.endpoint FROM claimed d LEFT JOIN whc_events e ON e.id = d.event_id
         ORDER BY d.next_attempt_at, d.id"
    );
    // A claim is cheap to lose (its lease runs out and another sidecar takes it): it does not
    // wait for the WAL flush.
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    let params: [&(dyn ToSql + Sync); 7] = [&names, &rooms, &due_by, &now, &limit, &owner, &until];
    let rows = tx.query(&tx.prepare_cached(&sql).await?, &params).await?;
    tx.commit().await?;
    let mut held = claims.lock();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let d = delivery(row)?;
        held.insert(d.id.clone(), row.try_get(23)?);
        out.push(d);
    }
    Ok(out)
}

/// When the next delivery this sidecar could claim is due (unix ms): unclaimed or with a
/// lease that runs out, on an endpoint where it holds fewer than `per_endpoint`.
pub(crate) async fn next_due_at(
    pool: &Pool,
    claims: &Claims,
    owner: &str,
    per_endpoint: &ClaimBound,
) -> Result<Option<i64>, PgError> {
    let client = pool.get().await?;
    let endpoints = pending_endpoints(&client).await?;
    let (names, looks): (Vec<String>, Vec<i64>) = {
        let held = claims.lock();
        endpoints
            .into_iter()
            .filter(|e| held.on(e) < per_endpoint.on(e))
            .map(|e| (e, LOOK_PAST))
            .unzip()
    };
    if names.is_empty() {
        return Ok(None);
    }
    let statement = client
        .prepare_cached(
            "SELECT min(greatest(c.next_attempt_at, c.claimed_until))
             FROM unnest($1::text[], $2::int8[]) AS e(endpoint, look)
             CROSS JOIN LATERAL (
                 SELECT next_attempt_at, claimed_until FROM whc_deliveries
                 WHERE status = 'pending' AND endpoint = e.endpoint
                   AND claimed_by IS DISTINCT FROM $3
                 ORDER BY next_attempt_at, id LIMIT e.look
             ) c",
        )
        .await?;
    let row = client
        .query_one(&statement, &[&names, &looks, &owner])
        .await?;
    Ok(row.try_get(0)?)
}

/// Gives up this sidecar's lease on a delivery.
pub(crate) async fn release(pool: &Pool, owner: &str, id: &str) -> Result<(), PgError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE whc_deliveries SET claimed_by = NULL, claimed_until = 0
             WHERE id = $1 AND claimed_by = $2",
            &[&id, &owner],
        )
        .await?;
    Ok(())
}

/// Extends the leases this sidecar holds to `now + lease_ms`.
pub(crate) async fn renew(
    pool: &Pool,
    owner: &str,
    ids: &[String],
    lease_ms: i64,
) -> Result<(), PgError> {
    if ids.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    let until = now_ms().saturating_add(lease_ms);
    client
        .execute(
            "UPDATE whc_deliveries SET claimed_until = $3
             WHERE id = ANY($1) AND claimed_by = $2 AND status = 'pending'",
            &[&ids, &owner, &until],
        )
        .await?;
    Ok(())
}
