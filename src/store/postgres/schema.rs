//! The PostgreSQL store's tables, created and upgraded by numbered migrations.
//!
//! Each migration runs once, in order, in one transaction with the version it brings, under an
//! advisory lock: sidecars starting together on an empty database do not race, and a database
//! a newer whc migrated is refused rather than misread.

use tokio_postgres::Client;

use super::PgError;

/// The advisory lock key migrations hold ("whc-migr" as bytes).
const MIGRATION_LOCK: i64 = 0x7768_632d_6d69_6772;

/// The migrations, in order; migration `n` brings version `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: events (unique ids fleet-wide), deliveries with their claim (who holds it, until when).
    "CREATE TABLE whc_events (
         id text PRIMARY KEY,
         type text NOT NULL,
         body text NOT NULL,
         occurred_at text,
         received_at bigint NOT NULL
     );
     CREATE TABLE whc_deliveries (
         id text PRIMARY KEY,
         event_id text NOT NULL,
         webhook text NOT NULL,
         method text NOT NULL,
         url text NOT NULL,
         endpoint text NOT NULL,
         headers text NOT NULL,
         body bytea,
         envelope boolean NOT NULL,
         secret_env text,
         timeout_ms bigint NOT NULL,
         max_attempts integer NOT NULL,
         attempts integer NOT NULL DEFAULT 0,
         status text NOT NULL,
         next_attempt_at bigint NOT NULL,
         last_status_code integer,
         last_error text,
         response_excerpt text,
         last_attempt_ms bigint,
         created_at bigint NOT NULL,
         updated_at bigint NOT NULL,
         claimed_by text,
         claimed_until bigint NOT NULL DEFAULT 0
     );
     CREATE INDEX whc_deliveries_due ON whc_deliveries (endpoint, next_attempt_at, id)
         WHERE status = 'pending';
     CREATE INDEX whc_deliveries_event ON whc_deliveries (event_id);
     CREATE INDEX whc_deliveries_log ON whc_deliveries (created_at, id);
     CREATE INDEX whc_deliveries_delivered ON whc_deliveries (updated_at)
         WHERE status = 'delivered';",
    // 2: the fleet's shared settings: whether deliveries are paused.
    "CREATE TABLE whc_fleet (
         only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
         paused boolean NOT NULL
     );
     INSERT INTO whc_fleet (paused) VALUES (false);",
    // 3: each delivery's attempts, in the order they were made.
    "CREATE TABLE whc_attempts (
         seq bigserial PRIMARY KEY,
         delivery_id text NOT NULL,
         at bigint NOT NULL,
         outcome text NOT NULL,
         status_code integer,
         error text,
         excerpt text,
         elapsed_ms bigint NOT NULL
     );
     CREATE INDEX whc_attempts_delivery ON whc_attempts (delivery_id);",
];

/// The newest version this build knows.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`], or refuses one that is newer.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS whc_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM whc_schema",
            &[],
        )
        .await?
        .get(0);
    if found > VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        let version = n as i32 + 1;
        tx.execute("INSERT INTO whc_schema (version) VALUES ($1)", &[&version])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
