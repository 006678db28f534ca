//! Outbox tests against a real SQLite file in a temporary folder.

use super::*;
use crate::store::contract::{delivered, event, event_to};
use std::collections::HashSet;

fn open(dir: &tempfile::TempDir) -> Outbox {
    Outbox::open(&dir.path().join("data/outbox.db")).expect("open outbox")
}

/// The writer, parked: another connection holds the write lock and the writer has taken a
/// warm-up write and waits on that lock, so every request made before [`Parked::release`]
/// queues behind it and lands in the writer's next batch.
struct Parked {
    blocker: Connection,
    warm_up: tokio::task::JoinHandle<Result<Vec<Accepted>, OutboxError>>,
}

impl Parked {
    async fn new(outbox: &Outbox) -> Parked {
        let blocker = Connection::open(outbox.path()).expect("open blocker");
        blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let taken = outbox.stats().requests;
        let warm_up = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.accept(vec![event("warm-up", &[])]).await })
        };
        while outbox.stats().requests == taken {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        Parked { blocker, warm_up }
    }

    /// Waits until `count` more requests than `since` were handed to the writer, then lets it
    /// go on; the warm-up write commits on its own.
    async fn release(self, outbox: &Outbox, since: &Stats, count: u64) {
        // The warm-up itself was submitted after `since`.
        while outbox.stats().submitted - since.submitted < count + 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.blocker.execute_batch("COMMIT").expect("unlock");
        self.warm_up
            .await
            .expect("join")
            .expect("the warm-up write is stored");
    }
}

/// Far in the future: everything pending is due.
const LATER: i64 = i64::MAX;

/// No bound on the deliveries claimed per endpoint.
const ANY: usize = usize::MAX;

#[test]
fn outbox_is_a_shareable_handle() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Outbox>();
}

#[tokio::test]
async fn accept_due_deliver_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let accepted = outbox
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    assert_eq!(accepted.len(), 1);
    assert!(!accepted[0].duplicate);
    assert_eq!(accepted[0].deliveries.len(), 2);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 2);

    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due.len(), 2);
    let first = &due[0];
    assert_eq!(first.status, Status::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.headers.len(), 2);
    assert_eq!(first.secret_env.as_deref(), Some("HOOK_SECRET"));
    // Claimed: not handed out twice, and not what the dispatcher should wait for.
    assert!(
        outbox
            .due(LATER, 10, ANY)
            .await
            .expect("due again")
            .is_empty()
    );
    assert_eq!(outbox.next_due_at(ANY).await.expect("next"), None);

    outbox
        .record(
            &first.id,
            AttemptRecord::Delivered {
                status_code: 204,
                excerpt: Some("ok".into()),
                elapsed_ms: 12,
                note: None,
            },
        )
        .await
        .expect("record delivered");
    let stored = outbox.get(&first.id).await.expect("get").expect("exists");
    assert_eq!(stored.status, Status::Delivered);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.last_status_code, Some(204));
    assert_eq!(stored.response_excerpt.as_deref(), Some("ok"));
    assert_eq!(stored.last_attempt_ms, Some(12));
    // A delivered delivery takes no more attempts.
    let again = outbox
        .record(
            &first.id,
            AttemptRecord::Delivered {
                status_code: 200,
                excerpt: None,
                elapsed_ms: 1,
                note: None,
            },
        )
        .await;
    assert!(matches!(again, Err(OutboxError::NotPending(_))));

    let counts = outbox.counts_by_status().await.expect("counts");
    assert_eq!(
        counts,
        StatusCounts {
            pending: 1,
            delivered: 1,
            dead: 0
        }
    );
}

#[tokio::test]
async fn retry_then_dead_then_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = outbox.due(LATER, 10, ANY).await.expect("due").remove(0);

    let retry_at = now_ms() + 60_000;
    outbox
        .record(
            &d.id,
            AttemptRecord::Retry {
                next_attempt_at: retry_at,
                status_code: Some(503),
                error: "HTTP 503".into(),
                excerpt: Some("x".repeat(10_000)),
                elapsed_ms: 40,
            },
        )
        .await
        .expect("record retry");
    // Unclaimed after the record, but not due before its time.
    assert!(outbox.due(now_ms(), 10, ANY).await.expect("due").is_empty());
    assert_eq!(outbox.next_due_at(ANY).await.expect("next"), Some(retry_at));
    let stored = outbox.get(&d.id).await.expect("get").expect("exists");
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.status, Status::Pending);
    assert_eq!(
        stored.response_excerpt.map(|e| e.len()),
        Some(EXCERPT_LIMIT)
    );

    let d = outbox.due(retry_at, 10, ANY).await.expect("due").remove(0);
    outbox
        .record(
            &d.id,
            AttemptRecord::Dead {
                status_code: Some(404),
                error: "HTTP 404".into(),
                excerpt: None,
                elapsed_ms: 5,
            },
        )
        .await
        .expect("record dead");
    let stored = outbox.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Dead, 2));
    assert_eq!(stored.last_error.as_deref(), Some("HTTP 404"));
    assert_eq!(outbox.queue_depth().await.expect("depth"), 0);

    let dead = outbox
        .list(DeliveryFilter {
            status: Some(Status::Dead),
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);

    assert!(outbox.replay(&d.id).await.expect("replay"));
    assert!(!outbox.replay(&d.id).await.expect("replay twice"));
    assert!(!outbox.replay("no-such-id").await.expect("replay unknown"));
    let stored = outbox.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Pending, 0));
    assert_eq!(outbox.due(now_ms(), 10, ANY).await.expect("due").len(), 1);
}

#[tokio::test]
async fn duplicate_event_is_not_stored_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let first = outbox
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    // Again later, and twice within one call.
    let second = outbox
        .accept(vec![
            event("e1", &["crm", "ads"]),
            event("e2", &["crm"]),
            event("e2", &["crm"]),
        ])
        .await
        .expect("accept again");
    assert!(second[0].duplicate);
    assert_eq!(second[0].deliveries, first[0].deliveries);
    assert!(!second[1].duplicate);
    assert!(second[2].duplicate);
    assert_eq!(second[2].deliveries, second[1].deliveries);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 3);
    assert_eq!(outbox.stats().events, 2);
}

#[tokio::test]
async fn list_filters_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    outbox
        .accept(vec![event("e2", &["crm"])])
        .await
        .expect("accept");
    let crm = outbox
        .list(DeliveryFilter {
            webhook: Some("crm".into()),
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(crm.len(), 2);
    assert_eq!(crm[0].event_id, "e2");
    let one = outbox
        .list(DeliveryFilter {
            limit: 1,
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    assert!(outbox.get("nope").await.expect("get").is_none());
}

#[tokio::test]
async fn prune_removes_old_delivered_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    outbox
        .record(
            &due[0].id,
            AttemptRecord::Delivered {
                status_code: 200,
                excerpt: None,
                elapsed_ms: 1,
                note: None,
            },
        )
        .await
        .expect("record");
    assert_eq!(outbox.prune_delivered(0).await.expect("prune none"), 0);
    assert_eq!(outbox.prune_delivered(LATER).await.expect("prune old"), 1);
    assert!(outbox.get(&due[0].id).await.expect("get").is_none());
    assert!(outbox.get(&due[1].id).await.expect("get").is_some());
    // The event still has a pending delivery: it stays, and so does its dedup.
    let again = outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
}

#[tokio::test]
async fn reopen_resumes_pending_and_keeps_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let outbox = open(&dir);
        let accepted = outbox
            .accept(vec![event("e1", &["crm"])])
            .await
            .expect("accept");
        // Claimed when the process "stops": the claim must not survive.
        assert_eq!(outbox.due(LATER, 10, ANY).await.expect("due").len(), 1);
        accepted[0].deliveries[0].clone()
    };
    let outbox = open(&dir);
    let due = outbox
        .due(now_ms(), 10, ANY)
        .await
        .expect("due after reopen");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    let version: i64 = Connection::open(outbox.path())
        .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("user_version");
    assert_eq!(version, schema::VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let before = outbox.stats();
    let parked = Parked::new(&outbox).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let outbox = outbox.clone();
            tokio::spawn(
                async move { outbox.accept(vec![event(&format!("e{i}"), &["crm"])]).await },
            )
        })
        .collect();
    parked.release(&outbox, &before, 50).await;
    for task in tasks {
        let accepted = task.await.expect("join").expect("accept");
        assert!(!accepted[0].duplicate);
    }
    let stats = outbox.stats();
    assert_eq!(outbox.queue_depth().await.expect("depth"), 50);
    assert_eq!(stats.events - before.events, 51, "50 and the warm-up");
    assert_eq!(
        stats.commits - before.commits,
        2,
        "the warm-up's commit, then one for all 50 queued accepts"
    );
}

#[tokio::test]
async fn changed_wakes_after_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    // The permit stored by the commit resolves this at once.
    tokio::time::timeout(std::time::Duration::from_secs(5), outbox.changed())
        .await
        .expect("woken");
}

#[tokio::test]
async fn bad_stored_data_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let accepted = outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let id = &accepted[0].deliveries[0];
    outbox.expand_fan_out().await.expect("expand");
    let conn = Connection::open(outbox.path()).expect("open");
    conn.execute(
        "UPDATE deliveries SET headers = 'not json', attempts = -1 WHERE id = ?1",
        [id],
    )
    .expect("corrupt");
    assert!(matches!(outbox.get(id).await, Err(OutboxError::Sqlite(_))));
}

#[tokio::test]
async fn answer_means_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let accepted = outbox
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    // Another connection sees the rows as soon as the answer arrives: they are committed.
    // (A post commits its event's row; the delivery rows are written before any read.)
    assert_eq!(
        count(outbox.path(), "SELECT count(*) FROM events WHERE id = 'e1'"),
        1
    );
    outbox.expand_fan_out().await.expect("expand");
    let conn = Connection::open(outbox.path()).expect("open");
    let (events, deliveries): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM events WHERE id = 'e1'),
                    (SELECT count(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq
                        WHERE e.id = 'e1')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!((events, deliveries), (1, 2));
    let headers: String = conn
        .query_row(
            "SELECT headers FROM deliveries WHERE id = ?1",
            [&accepted[0].deliveries[0]],
            |r| r.get(0),
        )
        .expect("headers");
    assert!(headers.contains(r#""env":"HOOK_TOKEN""#), "{headers}");
}

#[tokio::test]
async fn record_unknown_and_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let unknown = outbox
        .record(
            "no-such-id",
            AttemptRecord::Dead {
                status_code: None,
                error: "x".into(),
                excerpt: None,
                elapsed_ms: 0,
            },
        )
        .await;
    assert!(matches!(unknown, Err(OutboxError::NotPending(id)) if id == "no-such-id"));

    outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = outbox.due(LATER, 10, ANY).await.expect("due").remove(0);
    assert!(outbox.due(LATER, 10, ANY).await.expect("due").is_empty());
    outbox.release(&d.id);
    let again = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
}

/// One dispatcher hands deliveries to concurrent workers that retry once, then deliver.
/// No delivery may be handed out while a worker still holds it, and each takes two attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_never_hands_out_a_delivery_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let events: Vec<NewEvent> = (0..100)
        .map(|i| event(&format!("e{i}"), &["crm", "ads"]))
        .collect();
    outbox.accept(events).await.expect("accept");

    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = tokio::task::JoinSet::new();
    loop {
        let counts = outbox.counts_by_status().await.expect("counts");
        if counts.delivered == 200 {
            break;
        }
        for d in outbox.due(now_ms(), 16, ANY).await.expect("due") {
            let fresh = in_flight.lock().expect("lock").insert(d.id.clone());
            assert!(fresh, "{} handed out while in flight", d.id);
            let outbox = outbox.clone();
            let in_flight = Arc::clone(&in_flight);
            workers.spawn(async move {
                let record = if d.attempts == 0 {
                    AttemptRecord::Retry {
                        next_attempt_at: now_ms(),
                        status_code: Some(500),
                        error: "HTTP 500".into(),
                        excerpt: None,
                        elapsed_ms: 1,
                    }
                } else {
                    AttemptRecord::Delivered {
                        status_code: 200,
                        excerpt: None,
                        elapsed_ms: 1,
                        note: None,
                    }
                };
                // Leave the in-flight set before recording: the outbox may hand it out again
                // as soon as the record committed.
                in_flight.lock().expect("lock").remove(&d.id);
                outbox.record(&d.id, record).await.expect("record");
            });
        }
        while let Some(done) = workers.try_join_next() {
            done.expect("worker");
        }
        tokio::task::yield_now().await;
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let all = outbox
        .list(DeliveryFilter {
            limit: 1000,
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 200);
    assert!(
        all.iter().all(|d| d.attempts == 2),
        "every delivery took 2 attempts"
    );
}

#[tokio::test]
async fn a_failing_request_undoes_only_its_own_writes_in_a_shared_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let before = outbox.stats();
    // Park the writer so that all three requests land in one batch.
    let parked = Parked::new(&outbox).await;
    let good = |id: &str| {
        let outbox = outbox.clone();
        let events = vec![event(id, &["crm"])];
        tokio::spawn(async move { outbox.accept(events).await })
    };
    let first = good("ok-1");
    // The bad request writes its first event, then fails on its second, whose two
    // deliveries share one id.
    let mut twice = event("twice", &["crm", "ads"]);
    twice.deliveries[1].id = twice.deliveries[0].id.clone();
    let bad = {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.accept(vec![event("bad", &["crm"]), twice]).await })
    };
    let second = good("ok-2");
    parked.release(&outbox, &before, 3).await;

    assert!(
        matches!(
            bad.await.expect("join"),
            Err(OutboxError::DuplicateDelivery(_))
        ),
        "the bad request fails"
    );
    for task in [first, second] {
        let accepted = task.await.expect("join").expect("a good request is stored");
        assert!(!accepted[0].duplicate);
    }
    let stats = outbox.stats();
    assert_eq!(
        stats.commits - before.commits,
        2,
        "the warm-up's commit, then one for the shared batch"
    );
    assert_eq!(
        stats.events - before.events,
        3,
        "two good ones and the warm-up"
    );
    // Nothing of the bad request is left: not its event, not its first delivery.
    assert_eq!(outbox.queue_depth().await.expect("depth"), 2);
    let again = outbox
        .accept(vec![event("bad", &["crm"])])
        .await
        .expect("the bad event's id is free");
    assert!(!again[0].duplicate, "the failed event was not stored");
}

#[tokio::test]
async fn an_envelope_is_read_back_as_its_stored_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let mut new = event("env-1", &["crm", "ads"]);
    new.occurred_at = Some("2026-11-27T10:15:00Z".into());
    new.deliveries[0].body = Payload::Envelope;
    new.deliveries[1].body = Payload::Empty;
    let (envelope_id, empty_id) = (new.deliveries[0].id.clone(), new.deliveries[1].id.clone());
    let event_json = new.body.clone();
    outbox.accept(vec![new]).await.expect("accept");

    let want = StoredBody::Envelope(StoredEvent {
        kind: "conversion".into(),
        occurred_at: Some("2026-11-27T10:15:00Z".into()),
        json: event_json,
    });
    let got = outbox
        .get(&envelope_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.body, want);
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    let from_due = due.iter().find(|d| d.id == envelope_id).expect("due");
    assert_eq!(from_due.body, want, "the same event");
    let empty = outbox.get(&empty_id).await.expect("get").expect("stored");
    assert_eq!(empty.body, StoredBody::Empty);
    // The rendered body is never written to the row.
    let conn = Connection::open(outbox.path()).expect("open");
    let (stored, flag): (Option<Vec<u8>>, bool) = conn
        .query_row(
            "SELECT body, envelope FROM deliveries WHERE id = ?1",
            [&envelope_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!((stored, flag), (None, true));
}

#[tokio::test]
async fn the_wal_stays_bounded_under_sustained_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let mut wal = outbox.path().as_os_str().to_owned();
    wal.push("-wal");
    // About 24 MiB of events, six times the 4 MiB (1,000 pages) at which SQLite checkpoints.
    let padding = "x".repeat(2000);
    for batch in 0..24 {
        let events: Vec<NewEvent> = (0..500)
            .map(|i| {
                let mut e = event(&format!("w-{batch}-{i}"), &["crm"]);
                e.body = format!(r#"{{"id":"w-{batch}-{i}","pad":"{padding}"}}"#);
                e
            })
            .collect();
        outbox.accept(events).await.expect("accept");
    }
    let size = std::fs::metadata(&wal).expect("the WAL exists").len();
    assert!(
        size < 12 * 1024 * 1024,
        "the WAL grew to {size} bytes: checkpoints are not keeping up"
    );
}

#[tokio::test]
async fn a_long_error_is_stored_capped() {
    // A 70 KB rendered URL quoted in an error lands in the log as its first KiB.
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = outbox.due(LATER, 10, ANY).await.expect("due").remove(0);
    let url = format!("https://example.test/?q={}", "é".repeat(35_000));
    outbox
        .record(
            &d.id,
            AttemptRecord::Dead {
                status_code: None,
                error: format!("invalid request: `{url}` is not a URL"),
                excerpt: None,
                elapsed_ms: 0,
            },
        )
        .await
        .expect("record");
    let stored = outbox.get(&d.id).await.expect("get").expect("exists");
    let error = stored.last_error.expect("an error");
    assert!(error.len() <= ERROR_LIMIT, "{} bytes", error.len());
    assert!(error.starts_with("invalid request: `https://example.test/?q=é"));
    assert!(error.ends_with('…'), "{error}");
}

#[tokio::test]
async fn a_record_that_fails_to_commit_keeps_its_claim() {
    // Released, the delivery would be due again and sent again though it was attempted.
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = outbox.due(LATER, 10, ANY).await.expect("due").remove(0);
    let operator = Connection::open(outbox.path()).expect("open");
    operator
        .execute_batch(
            "CREATE TRIGGER full BEFORE UPDATE ON deliveries
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .expect("trigger");
    let delivered = AttemptRecord::Delivered {
        status_code: 200,
        excerpt: None,
        elapsed_ms: 3,
        note: None,
    };
    let failed = outbox.record(&d.id, delivered.clone()).await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(outbox.due(LATER, 10, ANY).await.expect("due").is_empty());
    operator.execute_batch("DROP TRIGGER full").expect("drop");
    outbox.record(&d.id, delivered).await.expect("record");
    let stored = outbox.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Delivered, 1));
}

#[tokio::test]
async fn an_attempted_delivery_frees_its_endpoints_claim_before_its_record_commits() {
    // The bound is on what waits for the endpoint or is on its wire: a delivery whose record
    // is handed in no longer counts, but stays claimed until the record commits.
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let events: Vec<NewEvent> = (0..3)
        .map(|i| event_to(&format!("e{i}"), &["http://one.test/hook"]))
        .collect();
    outbox.accept(events).await.expect("accept");
    let claimed = outbox.due(LATER, 10, 2).await.expect("due");
    assert_eq!(claimed.len(), 2);
    assert!(outbox.due(LATER, 10, 2).await.expect("due").is_empty());
    assert_eq!(outbox.next_due_at(2).await.expect("next"), None);
    // The accept's wake, taken.
    outbox.changed().await;
    let operator = Connection::open(outbox.path()).expect("open");
    operator
        .execute_batch(
            "CREATE TRIGGER full BEFORE UPDATE ON deliveries
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .expect("trigger");
    let delivered = AttemptRecord::Delivered {
        status_code: 200,
        excerpt: None,
        elapsed_ms: 3,
        note: None,
    };
    let failed = outbox.record(&claimed[0].id, delivered.clone()).await;
    assert!(failed.is_err(), "{failed:?}");
    // The handed-in record woke the dispatcher's wait.
    tokio::time::timeout(std::time::Duration::from_secs(5), outbox.changed())
        .await
        .expect("woken");
    assert!(outbox.next_due_at(2).await.expect("next").is_some());
    let next = outbox.due(LATER, 10, 2).await.expect("due");
    assert_eq!(next.len(), 1, "the endpoint took its next claim");
    assert!(
        claimed.iter().all(|c| c.id != next[0].id),
        "the attempted delivery stays claimed until its record commits"
    );
    // Two count now (the second claim and the third), the attempted one does not.
    assert!(outbox.due(LATER, 10, 2).await.expect("due").is_empty());
    operator.execute_batch("DROP TRIGGER full").expect("drop");
    outbox
        .record(&claimed[0].id, delivered)
        .await
        .expect("recorded once the store takes writes");
    assert!(outbox.due(LATER, 10, 2).await.expect("due").is_empty());
    assert_eq!(outbox.queue_depth().await.expect("depth"), 2);
}

#[tokio::test]
async fn a_wider_window_on_an_endpoint_with_attempted_claims_still_finds_its_oldest() {
    // Claims whose records are on their way are still pending in the file, among the oldest:
    // the next claims look past them.
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let events: Vec<NewEvent> = (0..10)
        .map(|i| event_to(&format!("e{i}"), &["http://one.test/hook"]))
        .collect();
    outbox.accept(events).await.expect("accept");
    let first = outbox.due(LATER, 10, 3).await.expect("due");
    assert_eq!(first.len(), 3);
    let blocker = Connection::open(outbox.path()).expect("open blocker");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let delivered = AttemptRecord::Delivered {
        status_code: 200,
        excerpt: None,
        elapsed_ms: 3,
        note: None,
    };
    // Handed in, waiting for the write lock: none of the three counts any more.
    let records: Vec<_> = first
        .iter()
        .map(|d| {
            let outbox = outbox.clone();
            let id = d.id.clone();
            let record = delivered.clone();
            tokio::spawn(async move { outbox.record(&id, record).await })
        })
        .collect();
    let wider = ClaimBound::new(3, HashMap::from([("http://one.test".to_owned(), 5)]));
    let mut next = Vec::new();
    for _ in 0..500 {
        next.extend(outbox.due(LATER, 10, wider.clone()).await.expect("due"));
        if next.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(next.len(), 5, "five more claimed while three records wait");
    let ids: HashSet<&str> = first.iter().chain(&next).map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 8, "no delivery handed out twice");
    blocker.execute_batch("COMMIT").expect("unlock");
    for record in records {
        record.await.expect("join").expect("recorded");
    }
    assert_eq!(outbox.queue_depth().await.expect("depth"), 7);
}

#[tokio::test]
async fn claims_are_bounded_per_endpoint_so_a_backlog_cannot_starve_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    // A dead endpoint's backlog, older than the healthy endpoint's one delivery.
    let backlog: Vec<NewEvent> = (0..50)
        .map(|i| event_to(&format!("dead-{i}"), &["http://dead.test:81/hook?n=1"]))
        .collect();
    outbox.accept(backlog).await.expect("accept backlog");
    outbox
        .accept(vec![event_to("ok", &["https://OK.test/x"])])
        .await
        .expect("accept");

    let first = outbox.due(LATER, 5, 3).await.expect("due");
    let urls: Vec<&str> = first.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(urls.len(), 4, "{urls:?}");
    assert_eq!(urls.iter().filter(|u| u.contains("dead.test")).count(), 3);
    assert!(urls.contains(&"https://OK.test/x"), "{urls:?}");
    // The dead endpoint holds its three; nothing more of it is due until one is recorded.
    assert!(outbox.due(LATER, 5, 3).await.expect("due").is_empty());
    assert_eq!(outbox.next_due_at(3).await.expect("next"), None);
    assert!(outbox.next_due_at(4).await.expect("next").is_some());
    let dead = first.iter().find(|d| d.url.contains("dead")).expect("one");
    outbox.release(&dead.id);
    let again = outbox.due(LATER, 5, 3).await.expect("due");
    assert_eq!(again.len(), 1);
    assert!(again[0].url.contains("dead.test"));
}

#[tokio::test]
async fn a_version_3_outbox_migrates_and_its_deliveries_get_their_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).expect("open");
        for step in &schema::STEPS {
            conn.execute_batch(step).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO events (id, type, body, received_at) VALUES ('e1', 'conversion', '{}', 0);
             INSERT INTO deliveries (id, event_id, webhook, method, url, headers, timeout_ms,
                 max_attempts, status, next_attempt_at, created_at, updated_at)
             VALUES ('d1', 'e1', 'crm', 'POST', 'HTTPS://Crm.test:8443/in?x=1', '[]', 5000, 3,
                 'pending', 0, 0, 0);",
        )
        .expect("a version 3 row");
    }
    let outbox = Outbox::open(&path).expect("open and migrate");
    let conn = Connection::open(&path).expect("open");
    let (version, endpoint): (i64, String) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), endpoint
             FROM deliveries WHERE id = 'd1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("read");
    assert_eq!(
        (version, endpoint.as_str()),
        (schema::VERSION, "https://crm.test:8443")
    );
    let due = outbox.due(LATER, 10, 1).await.expect("due");
    assert_eq!(due.len(), 1);
}

/// An outbox at `path` with some events, closed again (its WAL checkpointed into the file).
async fn filled(path: &std::path::Path) {
    let outbox = Outbox::open(path).expect("open");
    let events: Vec<NewEvent> = (0..200)
        .map(|i| event(&format!("e{i}"), &["crm", "ads"]))
        .collect();
    outbox.accept(events).await.expect("accept");
}

#[tokio::test]
async fn a_corrupt_page_is_refused_at_open() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    filled(&path).await;
    let size = std::fs::metadata(&path).expect("size").len();
    assert!(size > 8 * 4096, "{size} bytes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    // Past the 100-byte header and page 1 (the schema): the tables' pages.
    file.seek(SeekFrom::Start(4096)).expect("seek");
    file.write_all(&[0xA5; 3 * 4096]).expect("garbage");
    drop(file);
    match Outbox::open(&path) {
        Err(err @ OutboxError::Corrupt { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("is corrupt (PRAGMA quick_check:"),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn an_emptied_or_missing_outbox_is_refused_when_one_existed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    filled(&path).await;
    let marker = dir.path().join("outbox.created");
    assert!(marker.exists(), "the first open leaves its marker");

    std::fs::File::create(&path).expect("truncate to 0 bytes");
    let message = match Outbox::open(&path) {
        Err(err @ OutboxError::Vanished { .. }) => err.to_string(),
        other => panic!("expected Vanished, got {other:?}"),
    };
    assert!(message.contains("missing or empty"), "{message}");
    assert!(
        message.contains(&format!("delete {}", marker.display())),
        "{message}"
    );
    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(
        Outbox::open(&path),
        Err(OutboxError::Vanished { .. })
    ));

    // Deleting the marker is starting fresh on purpose.
    std::fs::remove_file(&marker).expect("remove marker");
    let outbox = Outbox::open(&path).expect("a fresh outbox");
    assert_eq!(outbox.queue_depth().await.expect("depth"), 0);
    assert!(marker.exists());
}

#[tokio::test]
async fn an_outbox_from_before_the_marker_gets_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    filled(&path).await;
    std::fs::remove_file(dir.path().join("outbox.created")).expect("as if older");
    let outbox = Outbox::open(&path).expect("open");
    assert_eq!(outbox.queue_depth().await.expect("depth"), 400);
    assert!(dir.path().join("outbox.created").exists());
}

#[tokio::test]
async fn write_health_follows_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .check_writes()
        .await
        .expect("a healthy store takes writes");
    outbox.check_reads().await.expect("and reads");
    assert_eq!(outbox.last_write_failure(), None);
    let operator = Connection::open(outbox.path()).expect("open");
    operator
        .execute_batch(
            "CREATE TRIGGER broken BEFORE INSERT ON events
             BEGIN SELECT RAISE(ABORT, 'no room'); END;",
        )
        .expect("trigger");
    assert!(outbox.accept(vec![event("e1", &["crm"])]).await.is_err());
    let failure = outbox.last_write_failure().expect("a failure");
    assert!(failure.contains("no room"), "{failure}");
    assert!(outbox.check_writes().await.is_err());
    operator.execute_batch("DROP TRIGGER broken").expect("drop");
    outbox.check_writes().await.expect("takes writes again");
    assert_eq!(outbox.last_write_failure(), None);
    let depth: i64 = operator
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(depth, 0, "the probe leaves nothing behind");
}

#[tokio::test]
async fn a_version_4_outbox_is_migrated_to_the_latest_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).expect("open");
        for step in schema::STEPS.iter().chain([&schema::STEP_4]) {
            conn.execute_batch(step).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO events (id, type, body, received_at, occurred_at)
                 VALUES ('e1', 'conversion', '{\"type\":\"conversion\"}', 7, '2026-11-27T10:15:00Z');
             INSERT INTO deliveries (id, event_id, webhook, method, url, headers, timeout_ms,
                 max_attempts, status, next_attempt_at, created_at, updated_at, envelope, endpoint)
             VALUES
                 ('d1', 'e1', 'crm', 'POST', 'https://crm.test/in', '[]', 5000, 3, 'pending',
                     0, 1, 1, 1, 'https://crm.test:443'),
                 ('d2', 'e1', 'ads', 'GET', 'http://ads.test/c', '[]', 2000, 3, 'dead',
                     0, 2, 2, 0, 'http://ads.test:80');",
        )
        .expect("version 4 rows");
    }
    let outbox = Outbox::open(&path).expect("open and migrate");
    assert_latest_schema(&path);
    let due = outbox.due(LATER, 10, 1).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, "d1");
    assert!(matches!(due[0].body, StoredBody::Envelope(_)));
    assert!(outbox.replay("d2").await.expect("replay"));
    // The id stays unique, and an event stored before the migration is still a duplicate.
    let again = outbox
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, ["d1", "d2"]);
}

/// The tables, indexes and foreign keys of the latest schema.
fn assert_latest_schema(path: &std::path::Path) {
    let conn = Connection::open(path).expect("open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, schema::VERSION);
    let tables: Vec<String> = conn
        .prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'table'
             AND name NOT IN ('attempts', 'fanout_expanded', 'event_id_key') ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    assert_eq!(tables.len(), 2, "{tables:?}");
    let flat = |sql: &String| sql.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        tables
            .iter()
            .map(flat)
            .any(|sql| sql.contains("fanout BLOB")
                && sql.contains("assigned INTEGER NOT NULL DEFAULT 0")),
        "{tables:?}"
    );
    let (marks, through): (i64, i64) = conn
        .query_row(
            "SELECT count(*), max(through) FROM fanout_expanded",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("fanout_expanded");
    assert_eq!(marks, 1);
    // Never past the last event: the next one SQLite stores must count as not expanded.
    let last: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
        .expect("last event");
    assert!(
        (0..=last).contains(&through),
        "through {through}, last event {last}"
    );
    for sql in &tables {
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(sql.contains("seq INTEGER PRIMARY KEY"), "{sql}");
        // An event's id is unique through `events_id`, which leaves out the ids whc assigned.
        if sql.contains("fanout") {
            assert!(sql.contains("id TEXT NOT NULL,"), "{sql}");
        } else {
            assert!(sql.contains("id TEXT NOT NULL UNIQUE"), "{sql}");
        }
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        assert!(!sql.contains("CHECK"), "{sql}");
        assert!(!sql.contains("_v"), "{sql}");
    }
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
             ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("indexes");
    assert_eq!(
        indexes,
        [
            "attempts_delivery",
            "deliveries_dead",
            "deliveries_pending",
            "events_id"
        ]
    );
    assert!(
        !tables.iter().any(|sql| sql.contains("REFERENCES")),
        "an event's deliveries are a range of keys, with no foreign key: {tables:?}"
    );
    let fk: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign key check");
    assert_eq!(fk, 0);
}

#[tokio::test]
async fn a_version_6_outbox_gets_integer_keys_in_the_order_stored_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).expect("open");
        for step in schema::STEPS
            .iter()
            .chain([&schema::STEP_4, &schema::STEP_5, &schema::STEP_6])
        {
            conn.execute_batch(step).expect("old schema");
        }
        // Ids that sort against the order stored, and an event with no delivery.
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO attempts (delivery_id, at, outcome, status_code, error, excerpt,
                 elapsed_ms)
             VALUES ('d-1', 5, 'dead', 503, 'HTTP 503', 'busy', 12);
             INSERT INTO events (id, type, body, received_at, occurred_at) VALUES
                 ('z-first', 'conversion', '{\"type\":\"conversion\",\"id\":\"z-first\"}', 1,
                     '2026-11-27T10:15:00Z'),
                 ('a-second', 'refund', '{\"type\":\"refund\"}', 2, NULL),
                 ('m-third', 'event3', '{}', 3, NULL);
             INSERT INTO deliveries (id, event_id, webhook, method, url, headers, body,
                 secret_env, timeout_ms, max_attempts, attempts, status, next_attempt_at,
                 last_status_code, last_error, response_excerpt, last_attempt_ms, created_at,
                 updated_at, envelope, endpoint)
             VALUES
                 ('d-3', 'z-first', 'crm', 'POST', 'https://crm.test/in', '[]', NULL, 'SECRET',
                     5000, 3, 0, 'pending', 10, NULL, NULL, NULL, NULL, 1, 1, 1,
                     'https://crm.test:443'),
                 ('d-1', 'z-first', 'ads', 'GET', 'http://ads.test/c', '[]', NULL, NULL,
                     2000, 3, 3, 'dead', 20, 503, 'HTTP 503', 'busy', 12, 1, 5, 0,
                     'http://ads.test:80'),
                 ('d-2', 'a-second', 'crm', 'POST', 'https://crm.test/in', '[]', x'7b7d', NULL,
                     5000, 3, 1, 'delivered', 30, 200, NULL, 'ok', 7, 2, 6, 0,
                     'https://crm.test:443');",
        )
        .expect("version 6 rows");
    }
    let outbox = Outbox::open(&path).expect("open and migrate");
    assert_latest_schema(&path);
    let conn = Connection::open(&path).expect("open");
    let events: Vec<(i64, String)> = conn
        .prepare("SELECT seq, id FROM events ORDER BY seq")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("events");
    assert_eq!(
        events,
        [
            (1, "z-first".to_owned()),
            (2, "a-second".to_owned()),
            (3, "m-third".to_owned())
        ]
    );
    let deliveries: Vec<(i64, String, i64)> = conn
        .prepare("SELECT seq, id, event_seq FROM deliveries ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("deliveries");
    assert_eq!(
        deliveries,
        [
            (65536, "d-1".to_owned(), 1),
            (65537, "d-3".to_owned(), 1),
            (2 * 65536, "d-2".to_owned(), 2)
        ]
    );
    // Every column came across.
    let dead = outbox.get("d-1").await.expect("get").expect("d-1 kept");
    assert_eq!(
        (
            dead.event_id.as_str(),
            dead.status,
            dead.attempts,
            dead.last_status_code,
            dead.last_error.as_deref(),
            dead.response_excerpt.as_deref(),
            dead.last_attempt_ms,
            dead.updated_at
        ),
        (
            "z-first",
            Status::Dead,
            3,
            Some(503),
            Some("HTTP 503"),
            Some("busy"),
            Some(12),
            5
        )
    );
    let history = outbox.attempts("d-1").await.expect("attempts");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, "dead");
    let delivered = outbox.get("d-2").await.expect("get").expect("d-2 kept");
    assert_eq!(delivered.body, StoredBody::Bytes(b"{}".to_vec()));
    let due = outbox.due(LATER, 10, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id.as_str(), due[0].secret_env.as_deref()),
        ("d-3", Some("SECRET"))
    );
    let StoredBody::Envelope(stored) = &due[0].body else {
        panic!("an envelope: {:?}", due[0].body);
    };
    assert_eq!(stored.occurred_at.as_deref(), Some("2026-11-27T10:15:00Z"));
    // Old events are still duplicates, with their deliveries in the order stored; new rows
    // come after the old ones.
    let again = outbox
        .accept(vec![event("z-first", &["crm"]), event("new", &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, ["d-1", "d-3"]);
    let seq: i64 = conn
        .query_row("SELECT seq FROM events WHERE id = 'new'", [], |r| r.get(0))
        .expect("new event");
    assert_eq!(seq, 4);
}

#[test]
fn every_query_of_a_delivery_uses_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    drop(Outbox::open(&path).expect("open"));
    let conn = Connection::open(&path).expect("open");
    // Parameters as literals: a plan does not depend on the values here.
    let plan = |sql: &str| -> String {
        let sql = sql.replace("?1", "'x'").replace("?2", "10");
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("plan")
            .join("; ")
    };
    for (sql, uses) in [
        // The dispatcher's endpoints, an endpoint's oldest, the queue: the pending only.
        (
            "SELECT endpoint_key FROM deliveries WHERE status = 'pending' AND endpoint_key > ?2
             ORDER BY endpoint_key LIMIT 1",
            "USING COVERING INDEX deliveries_pending (endpoint_key>?)",
        ),
        (
            "SELECT id, next_attempt_at FROM deliveries WHERE status = 'pending'
             AND endpoint_key = ?2 ORDER BY next_attempt_at, seq LIMIT ?2",
            "USING INDEX deliveries_pending (endpoint_key=?)",
        ),
        (
            "SELECT count(*) FROM deliveries WHERE status = 'pending'",
            "USING COVERING INDEX deliveries_pending",
        ),
        (
            "SELECT count(*) FROM deliveries WHERE status = 'dead'",
            "USING COVERING INDEX deliveries_dead",
        ),
        (
            "SELECT id FROM deliveries WHERE status = 'dead' AND webhook = ?1",
            "USING INDEX deliveries_dead (webhook=?)",
        ),
        // An event's deliveries (duplicates, pruning): a range of the table's own keys.
        (
            "SELECT d.id FROM events e JOIN deliveries d
                 ON d.seq >= e.seq * 65536 AND d.seq < (e.seq + 1) * 65536
             WHERE e.id = ?1 AND e.assigned = 0 ORDER BY d.seq",
            "SEARCH d USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
        ),
        (
            "SELECT 1 FROM deliveries d WHERE d.seq >= ?2 * 65536 AND d.seq < (?2 + 1) * 65536",
            "SEARCH d USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
        ),
        (
            "SELECT id FROM deliveries WHERE seq >= ?2 * 65536 AND seq < (?2 + 1) * 65536
             ORDER BY seq",
            "SEARCH deliveries USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
        ),
        // The events whose fan-out is not expanded yet: those after the mark, by key.
        (
            "SELECT seq, received_at, fanout FROM events
             WHERE seq > (SELECT through FROM fanout_expanded) AND fanout IS NOT NULL
             ORDER BY seq LIMIT ?2",
            "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)",
        ),
        (
            "UPDATE deliveries SET attempts = attempts + 1 WHERE id = ?1 AND status = 'pending'",
            "sqlite_autoindex_deliveries_1",
        ),
        // An event by id: a tracker's in the partial index, an assigned one at its `seq`.
        (
            "SELECT * FROM events WHERE id = ?1 AND assigned = 0",
            "USING INDEX events_id (id=?)",
        ),
        (
            "SELECT * FROM events WHERE seq = ?2 AND id = ?1 AND assigned = 1",
            "USING INTEGER PRIMARY KEY (rowid=?)",
        ),
        (
            "SELECT d.id FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq
             WHERE d.id = ?1",
            "sqlite_autoindex_deliveries_1",
        ),
        // The log's pages: a range of the delivery ids, newest first.
        (
            "SELECT d.id FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq
             WHERE d.id < ?1 ORDER BY d.id DESC LIMIT ?2",
            "SEARCH d USING INDEX sqlite_autoindex_deliveries_1 (id<?)",
        ),
    ] {
        let plan = plan(sql);
        assert!(plan.contains(uses), "{sql}: {plan}");
    }
}

#[tokio::test]
async fn a_version_7_outbox_keys_each_delivery_by_its_event_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).expect("open");
        for step in schema::STEPS.iter().chain([
            &schema::STEP_4,
            &schema::STEP_5,
            &schema::STEP_6,
            &schema::STEP_7,
        ]) {
            conn.execute_batch(step).expect("old schema");
        }
        // Deliveries of two events stored interleaved (as step 7 allowed), a gap in the keys,
        // and an event with no delivery.
        conn.execute_batch(
            "PRAGMA user_version = 7;
             INSERT INTO events (seq, id, type, body, received_at, occurred_at) VALUES
                 (1, 'first', 'conversion', '{\"type\":\"conversion\"}', 1, NULL),
                 (2, 'second', 'refund', '{\"type\":\"refund\"}', 2, NULL),
                 (5, 'lonely', 'event3', '{}', 3, NULL);
             INSERT INTO deliveries (seq, id, event_seq, webhook, method, url, headers, body,
                 secret_env, timeout_ms, max_attempts, attempts, status, next_attempt_at,
                 last_status_code, last_error, response_excerpt, last_attempt_ms, created_at,
                 updated_at, envelope, endpoint)
             VALUES
                 (3, 'd-a', 1, 'crm', 'POST', 'https://crm.test/in', '[]', NULL, NULL,
                     5000, 3, 0, 'pending', 10, NULL, NULL, NULL, NULL, 1, 1, 1,
                     'https://crm.test:443'),
                 (4, 'd-b', 2, 'crm', 'POST', 'https://crm.test/in', '[]', x'7b7d', NULL,
                     5000, 3, 1, 'delivered', 30, 200, NULL, 'ok', 7, 2, 6, 0,
                     'https://crm.test:443'),
                 (9, 'd-c', 1, 'ads', 'GET', 'http://ads.test/c', '[]', NULL, NULL,
                     2000, 3, 3, 'dead', 20, 503, 'HTTP 503', 'busy', 12, 1, 5, 0,
                     'http://ads.test:80');",
        )
        .expect("version 7 rows");
    }
    let outbox = Outbox::open(&path).expect("open and migrate");
    assert_latest_schema(&path);
    let conn = Connection::open(&path).expect("open");
    let deliveries: Vec<(i64, String, i64)> = conn
        .prepare("SELECT seq, id, event_seq FROM deliveries ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("deliveries");
    assert_eq!(
        deliveries,
        [
            (65536, "d-a".to_owned(), 1),
            (65537, "d-c".to_owned(), 1),
            (2 * 65536, "d-b".to_owned(), 2)
        ]
    );
    let dead = outbox.get("d-c").await.expect("get").expect("d-c kept");
    assert_eq!(
        (dead.event_id.as_str(), dead.status, dead.attempts),
        ("first", Status::Dead, 3)
    );
    // Duplicates answer with their deliveries in the order stored; a new event comes after
    // the old ones, its deliveries keyed by its own seq.
    let again = outbox
        .accept(vec![
            event("first", &["crm"]),
            event("new", &["crm", "ads"]),
        ])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, ["d-a", "d-c"]);
    outbox.expand_fan_out().await.expect("expand");
    let new: Vec<i64> = conn
        .prepare(
            "SELECT d.seq FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE e.id = 'new' ORDER BY d.seq",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("new deliveries");
    assert_eq!(new, [6 * 65536, 6 * 65536 + 1]);
    // Pruning: the delivered d-b goes, then its event; `first` keeps its pending and dead
    // deliveries, and `lonely`, received before, goes too.
    assert_eq!(outbox.prune_delivered(LATER).await.expect("prune"), 1);
    let events: Vec<String> = conn
        .prepare("SELECT id FROM events ORDER BY seq")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("events");
    assert_eq!(events, ["first", "new"]);
}

#[tokio::test]
async fn an_event_with_nine_deliveries_keeps_their_order_and_its_duplicate_answers_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let webhooks = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let accepted = outbox
        .accept(vec![event("many", &webhooks), event("one", &["z"])])
        .await
        .expect("accept");
    assert_eq!(accepted[0].deliveries.len(), webhooks.len());
    outbox.expand_fan_out().await.expect("expand");
    let conn = Connection::open(outbox.path()).expect("open");
    let stored: Vec<(i64, String, String)> = conn
        .prepare(
            "SELECT d.seq - e.seq * 65536, d.id, d.webhook FROM deliveries d
             JOIN events e ON e.seq = d.event_seq WHERE e.id = 'many' ORDER BY d.seq",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("deliveries");
    let expected: Vec<(i64, String, String)> = (0i64..)
        .zip(accepted[0].deliveries.iter().zip(webhooks))
        .map(|(n, (id, w))| (n, id.clone(), w.to_owned()))
        .collect();
    assert_eq!(stored, expected);
    let again = outbox
        .accept(vec![event("many", &["a"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, accepted[0].deliveries);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 10);
}

#[tokio::test]
async fn a_version_8_outbox_keys_each_endpoint_by_an_integer_and_keeps_its_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    {
        let conn = Connection::open(&path).expect("open");
        for step in schema::STEPS.iter().chain([
            &schema::STEP_4,
            &schema::STEP_5,
            &schema::STEP_6,
            &schema::STEP_7,
            &schema::STEP_8,
        ]) {
            conn.execute_batch(step).expect("old schema");
        }
        // Two pending deliveries on one endpoint and one on another, a delivered one and a
        // dead one.
        conn.execute_batch(
            "PRAGMA user_version = 8;
             INSERT INTO events (seq, id, type, body, received_at, occurred_at) VALUES
                 (1, 'first', 'conversion', '{\"type\":\"conversion\"}', 1, NULL),
                 (2, 'second', 'refund', '{\"type\":\"refund\"}', 2, NULL);
             INSERT INTO deliveries (seq, id, event_seq, webhook, method, url, headers, body,
                 secret_env, timeout_ms, max_attempts, attempts, status, next_attempt_at,
                 last_status_code, last_error, response_excerpt, last_attempt_ms, created_at,
                 updated_at, envelope, endpoint)
             VALUES
                 (65536, 'd-a', 1, 'crm', 'POST', 'https://crm.test/in', '[]', NULL, NULL,
                     5000, 3, 0, 'pending', 10, NULL, NULL, NULL, NULL, 1, 1, 1,
                     'https://crm.test'),
                 (65537, 'd-b', 1, 'ads', 'GET', 'http://ads.test/c', '[]', NULL, NULL,
                     2000, 3, 3, 'dead', 20, 503, 'HTTP 503', 'busy', 12, 1, 5, 0,
                     'http://ads.test'),
                 (131072, 'd-c', 2, 'crm', 'POST', 'https://crm.test/in', '[]', x'7b7d', NULL,
                     5000, 3, 1, 'pending', 30, 503, 'HTTP 503', NULL, 7, 2, 6, 0,
                     'https://crm.test'),
                 (131073, 'd-d', 2, 'ads', 'GET', 'http://ads.test/c', '[]', NULL, NULL,
                     2000, 3, 0, 'pending', 40, NULL, NULL, NULL, NULL, 2, 2, 0,
                     'http://ads.test'),
                 (131074, 'd-e', 2, 'log', 'GET', 'http://log.test/', '[]', NULL, NULL,
                     2000, 3, 1, 'delivered', 40, 200, NULL, 'ok', 3, 2, 4, 0,
                     'http://log.test');",
        )
        .expect("version 8 rows");
    }
    let outbox = Outbox::open(&path).expect("open and migrate");
    assert_latest_schema(&path);
    // Step 10: every event stored before has its deliveries as rows already.
    assert_eq!(count(&path, "SELECT through FROM fanout_expanded"), 2);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM events WHERE fanout IS NOT NULL"
        ),
        0
    );
    let conn = Connection::open(&path).expect("open");
    let keys: Vec<(String, i64)> = conn
        .prepare("SELECT endpoint, endpoint_key FROM deliveries ORDER BY seq")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("keys");
    for (endpoint, key) in &keys {
        assert_eq!(*key, types::endpoint_key(endpoint), "{endpoint}");
    }
    assert_eq!(outbox.queue_depth().await.expect("depth"), 3);
    let counts = outbox.counts_by_status().await.expect("counts");
    assert_eq!((counts.pending, counts.delivered, counts.dead), (3, 1, 1));
    // Still one claim per endpoint at most: crm's older delivery and ads's one.
    let due = outbox.due(LATER, 10, 1).await.expect("due");
    let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d-a", "d-d"]);
    assert_eq!(outbox.next_due_at(1).await.expect("next"), None);
    assert_eq!(outbox.next_due_at(2).await.expect("next"), Some(30));
    // The dead one is found by its webhook and put back in the queue.
    assert_eq!(outbox.replay_dead("ads").await.expect("replay"), 1);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 4);
    // New deliveries on an old endpoint share its claims.
    outbox
        .accept(vec![event_to("third", &["https://crm.test/other"])])
        .await
        .expect("accept");
    let more = outbox.due(LATER, 10, 2).await.expect("due");
    let urls: Vec<&str> = more.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(
        urls.iter()
            .filter(|u| u.starts_with("https://crm.test"))
            .count(),
        1,
        "{urls:?}"
    );
}

/// Counts rows straight from the file, as a person with `sqlite3` would.
fn count(path: &std::path::Path, sql: &str) -> i64 {
    Connection::open(path)
        .expect("open")
        .query_row(sql, [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn a_post_stores_one_row_per_event_and_reads_see_its_deliveries_as_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let accepted = outbox
        .accept(vec![event("e1", &["crm", "ads"]), event("e2", &[])])
        .await
        .expect("accept");
    let path = outbox.path().to_path_buf();
    // Committed as one row per event: the fan-out in the event's row, no delivery rows yet.
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 0);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM events WHERE id = 'e1' AND fanout IS NOT NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM events WHERE id = 'e2' AND fanout IS NULL"
        ),
        1
    );
    // The queue's depth counts them without writing their rows (what samples it every few
    // seconds must not undo the saving).
    assert_eq!(outbox.queue_depth().await.expect("depth"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 0);
    // Any other read of deliveries writes their rows first: the log lists them, newest first.
    let listed = outbox.list(DeliveryFilter::default()).await.expect("list");
    let mut ids: Vec<String> = listed.iter().map(|d| d.id.clone()).collect();
    ids.reverse();
    assert_eq!(ids, accepted[0].deliveries);
    assert_eq!(count(&path, "SELECT count(*) FROM deliveries"), 2);
    assert_eq!(
        count(&path, "SELECT through FROM fanout_expanded"),
        count(&path, "SELECT seq FROM events WHERE id = 'e2'")
    );
    // Each row is as the post would have written it: keyed by its event, due, created and
    // updated when the event was received, with every column of the rendered request.
    let conn = Connection::open(&path).expect("open");
    let rows: Vec<(i64, i64, i64, i64, i64, String, i64)> = conn
        .prepare(
            "SELECT d.seq - e.seq * 65536, d.next_attempt_at - e.received_at,
                    d.created_at - e.received_at, d.updated_at - e.received_at, d.attempts,
                    d.status, d.endpoint_key
             FROM deliveries d JOIN events e ON e.seq = d.event_seq ORDER BY d.seq",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect()
        })
        .expect("rows");
    let key = endpoint_key("https://example.test");
    assert_eq!(
        rows,
        [
            (0, 0, 0, 0, 0, "pending".to_owned(), key),
            (1, 0, 0, 0, 0, "pending".to_owned(), key)
        ]
    );
    let first = outbox
        .get(&accepted[0].deliveries[0])
        .await
        .expect("get")
        .expect("stored");
    let sent = event("e1", &["crm"]).deliveries.remove(0);
    assert_eq!(
        (
            first.webhook.as_str(),
            first.url.as_str(),
            &first.headers,
            &first.body,
            first.secret_env.as_deref(),
            first.timeout_ms,
            first.max_attempts
        ),
        (
            "crm",
            sent.url.as_str(),
            &sent.headers,
            &StoredBody::Bytes(b"{}".to_vec()),
            Some("HOOK_SECRET"),
            5000,
            3
        )
    );
}

#[tokio::test]
async fn a_duplicate_of_an_event_not_expanded_yet_answers_the_same_delivery_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let first = outbox
        .accept(vec![event("e1", &["crm", "ads", "mail"])])
        .await
        .expect("accept");
    let again = outbox
        .accept(vec![event("e1", &["other"])])
        .await
        .expect("accept again");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, first[0].deliveries);
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM deliveries"), 0);
    outbox.expand_fan_out().await.expect("expand");
    let third = outbox
        .accept(vec![event("e1", &[])])
        .await
        .expect("accept a third time");
    assert_eq!(third[0].deliveries, first[0].deliveries);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 3);
}

#[tokio::test]
async fn deliveries_only_in_their_events_row_are_claimed_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accepted = {
        let outbox = open(&dir);
        outbox
            .accept(vec![event("e1", &["crm"]), event("e2", &["ads", "crm"])])
            .await
            .expect("accept")
    };
    let outbox = open(&dir);
    assert_eq!(outbox.queue_depth().await.expect("depth"), 3);
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM deliveries"), 0);
    let due: Vec<String> = outbox
        .due(LATER, 10, ANY)
        .await
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    let stored: Vec<String> = accepted.into_iter().flat_map(|a| a.deliveries).collect();
    assert_eq!(due, stored);
}

#[tokio::test]
async fn pruning_keeps_events_not_expanded_and_a_new_event_never_takes_an_expanded_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("old", &["crm"])])
        .await
        .expect("accept");
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    outbox
        .record(&due[0].id, delivered())
        .await
        .expect("record");
    // `kept` has a delivery, only in its row: pruning must not take it for an event done.
    outbox
        .accept(vec![event("kept", &["ads"])])
        .await
        .expect("accept");
    let pruned = outbox.prune_delivered(LATER).await.expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM events"), 1);
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event_id, "kept");
    outbox
        .record(&due[0].id, delivered())
        .await
        .expect("record");
    assert_eq!(outbox.prune_delivered(LATER).await.expect("prune"), 1);
    // Every row is gone: SQLite gives the next event the first `seq` again, which the
    // fan-out's mark counted as expanded; the mark came down with the rows.
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM events"), 0);
    let through = count(outbox.path(), "SELECT through FROM fanout_expanded");
    assert_eq!(through, 0);
    let new = outbox
        .accept(vec![event("new", &["crm"])])
        .await
        .expect("accept");
    assert!(count(outbox.path(), "SELECT seq FROM events WHERE id = 'new'") > through);
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, new[0].deliveries[0]);
    // And after a restart, which starts the writer's count from the file.
    drop(outbox);
    let outbox = open(&dir);
    let again = outbox
        .accept(vec![event("newer", &["crm"])])
        .await
        .expect("accept");
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due.len(), 2, "the unclaimed one again, and the newer one");
    assert!(due.iter().any(|d| d.id == again[0].deliveries[0]));
}

#[tokio::test]
async fn an_event_whose_fan_out_cannot_become_rows_is_passed_over_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let before = outbox
        .accept(vec![event("before", &["crm"])])
        .await
        .expect("accept");
    outbox
        .accept(vec![event("damaged", &["crm"])])
        .await
        .expect("accept");
    // `taken` reuses a delivery id of `before`: its rows cannot be stored.
    let mut taken = event("taken", &["crm", "ads"]);
    taken.deliveries[1].id = before[0].deliveries[0].clone();
    outbox.accept(vec![taken]).await.expect("accept");
    let after = outbox
        .accept(vec![event("after", &["crm"])])
        .await
        .expect("accept");
    Connection::open(outbox.path())
        .expect("open")
        .execute(
            "UPDATE events SET fanout = x'01ff' WHERE id = 'damaged'",
            [],
        )
        .expect("damage");
    // Neither stops the queue: the others' deliveries are claimed, nothing of the two is.
    let due: Vec<String> = outbox
        .due(LATER, 10, ANY)
        .await
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        due,
        [
            before[0].deliveries[0].clone(),
            after[0].deliveries[0].clone()
        ]
    );
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM deliveries"), 2);
    // Their rows stay as they were, for a person to look at.
    assert_eq!(
        count(
            outbox.path(),
            "SELECT count(*) FROM events WHERE id IN ('damaged', 'taken') AND fanout IS NOT NULL"
        ),
        2
    );
    outbox
        .accept(vec![event("later", &["crm"])])
        .await
        .expect("accept");
    assert_eq!(outbox.queue_depth().await.expect("depth"), 3);
}

#[tokio::test]
async fn a_backlog_is_claimed_a_chunk_of_fan_out_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let events: Vec<NewEvent> = (0..2500)
        .map(|i| event(&format!("e{i}"), &["crm"]))
        .collect();
    let accepted = outbox.accept(events).await.expect("accept");
    // The first claim comes after one chunk of rows, not after the whole backlog's.
    let due = outbox.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due[0].id, accepted[0].deliveries[0]);
    assert_eq!(
        count(outbox.path(), "SELECT count(*) FROM deliveries"),
        2000
    );
    // And the dispatcher is told to come straight back for the rest.
    let before = now_ms();
    let next = outbox.next_due_at(ANY).await.expect("next");
    assert!(
        next.is_some_and(|at| at >= before && at <= now_ms()),
        "{next:?}"
    );
    let mut claimed = due.len();
    while claimed < 2500 {
        let due = outbox.due(LATER, 1000, ANY).await.expect("due");
        assert!(!due.is_empty(), "claimed {claimed}");
        claimed += due.len();
    }
    assert_eq!(
        count(outbox.path(), "SELECT count(*) FROM deliveries"),
        2500
    );
    assert_eq!(outbox.next_due_at(ANY).await.expect("next"), None);
}

#[tokio::test]
async fn a_repeated_delivery_id_in_a_large_fan_out_is_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let names: Vec<String> = (0..12).map(|i| format!("hook{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut many = event("many", &names);
    many.deliveries[10].id = many.deliveries[3].id.clone();
    let repeated = many.deliveries[3].id.clone();
    match outbox.accept(vec![many]).await {
        Err(OutboxError::DuplicateDelivery(id)) => assert_eq!(id, repeated),
        other => panic!("expected DuplicateDelivery, got {other:?}"),
    }
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM events"), 0);
}

#[test]
fn answers_are_the_same_whether_or_not_the_writer_still_holds_the_events() {
    let expected = vec![
        event("fresh", &["a", "b"]),
        event("again", &["a"]),
        event("made-here", &[]),
    ];
    let given = *b"01a237ce-4717-7000-8000-000400000001";
    let stored = || {
        vec![
            Stored::New(None),
            Stored::Duplicate(vec!["first-time-id".to_owned()]),
            Stored::New(Some(given)),
        ]
    };
    let owned = answers(Arc::new(expected.clone()), stored());
    let shared = Arc::new(expected.clone());
    let held = Arc::clone(&shared);
    let cloned = answers(shared, stored());
    drop(held);
    for answers in [&owned, &cloned] {
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[2].id, "01a237ce-4717-7000-8000-000400000001");
        assert!(!answers[2].duplicate);
        assert_eq!(answers[0].id, "fresh");
        assert!(!answers[0].duplicate);
        let ids: Vec<_> = expected[0].deliveries.iter().map(|d| &d.id).collect();
        assert_eq!(answers[0].deliveries.iter().collect::<Vec<_>>(), ids);
        assert_eq!(answers[1].id, "again");
        assert!(answers[1].duplicate);
        assert_eq!(answers[1].deliveries, ["first-time-id"]);
    }
}

/// The outbox's key for the ids it assigns.
fn key(path: &std::path::Path) -> event_id::IdKey {
    schema::id_key(&Connection::open(path).expect("open")).expect("the key")
}

/// An event as whc's ingest hands it over when the tracker sent no id: a UUID v7 made on the
/// caller's thread, left out of the body.
fn id_less_event(webhooks: &[&str]) -> NewEvent {
    let id = new_delivery_id();
    let mut e = event(&id, webhooks);
    e.assigned = true;
    e.body = r#"{"type":"conversion"}"#.to_owned();
    e
}

#[tokio::test]
async fn an_event_without_an_id_gets_one_carrying_its_seq_and_stays_out_of_the_id_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let sent = vec![id_less_event(&["crm", "ads"]), id_less_event(&[])];
    let made_here: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
    let accepted = outbox.accept(sent).await.expect("accept");
    for (n, a) in accepted.iter().enumerate() {
        assert!(!a.duplicate);
        assert_ne!(a.id, made_here[n], "the outbox gives its own id");
        let seq = event_id::seq_of(&a.id, key(outbox.path())).expect("carries its seq");
        let (id, assigned, body): (String, bool, String) = Connection::open(outbox.path())
            .expect("open")
            .query_row(
                "SELECT id, assigned, body FROM events WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("the row at its seq");
        assert_eq!(id, a.id);
        assert!(assigned);
        assert_eq!(
            body, r#"{"type":"conversion"}"#,
            "the id in its column only"
        );
        assert_eq!(
            outbox.event_json(&a.id).await.expect("read"),
            Some(format!(r#"{{"id":"{}","type":"conversion"}}"#, a.id)),
            "read back with its id"
        );
        assert_eq!(outbox.event_json(&made_here[n]).await.expect("read"), None);
    }
    assert_eq!(
        count(
            outbox.path(),
            "SELECT count(*) FROM events INDEXED BY events_id WHERE assigned = 0"
        ),
        0
    );
    // A tracker sending an assigned id back: a duplicate, with the deliveries of the first time.
    let again = outbox
        .accept(vec![event(&accepted[0].id, &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, accepted[0].deliveries);
    assert_eq!(count(outbox.path(), "SELECT count(*) FROM events"), 2);
}

#[tokio::test]
async fn an_id_shaped_like_an_assigned_one_but_not_stored_is_a_new_trackers_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    let first = outbox
        .accept(vec![id_less_event(&["crm"])])
        .await
        .expect("accept");
    let key = key(outbox.path());
    let seq = event_id::seq_of(&first[0].id, key).expect("seq");
    // The same seq, another id: what another outbox could have made.
    let other =
        String::from_utf8(event_id::make(seq, 1, key).expect("fits").to_vec()).expect("utf-8");
    assert_eq!(event_id::seq_of(&other, key), Some(seq));
    let accepted = outbox
        .accept(vec![event(&other, &["crm"])])
        .await
        .expect("accept");
    assert!(!accepted[0].duplicate);
    assert_eq!(accepted[0].id, other);
    let again = outbox
        .accept(vec![event(&other, &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate, "now in the id index");
    assert_eq!(again[0].deliveries, accepted[0].deliveries);
    assert_eq!(
        count(
            outbox.path(),
            &format!("SELECT count(*) FROM events WHERE id = '{other}' AND assigned = 0")
        ),
        1
    );
}

#[tokio::test]
async fn past_the_seqs_an_id_can_carry_the_id_made_by_ingest_is_kept_and_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("first", &[])])
        .await
        .expect("accept");
    Connection::open(outbox.path())
        .expect("open")
        .execute("UPDATE events SET seq = 1 << 40", [])
        .expect("a seq past 40 bits");
    // Opened again: the writer reads the last `seq` when it starts.
    drop(outbox);
    let outbox = open(&dir);
    let sent = id_less_event(&["crm"]);
    let made_here = sent.id.clone();
    let accepted = outbox.accept(vec![sent]).await.expect("accept");
    assert_eq!(accepted[0].id, made_here);
    assert_eq!(
        count(
            outbox.path(),
            &format!("SELECT seq FROM events WHERE id = '{made_here}' AND assigned = 0")
        ),
        (1 << 40) + 1
    );
    let again = outbox
        .accept(vec![event(&made_here, &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
}

#[tokio::test]
async fn a_seq_taken_behind_the_writers_back_fails_one_write_and_the_next_reads_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = open(&dir);
    outbox
        .accept(vec![event("first", &[])])
        .await
        .expect("accept");
    // A row stored by hand at the `seq` the writer would give next.
    Connection::open(outbox.path())
        .expect("open")
        .execute(
            "INSERT INTO events (seq, id, type, body, received_at) VALUES
                 (2, 'by-hand', 'refund', '{}', 0)",
            [],
        )
        .expect("a row by hand");
    assert!(outbox.accept(vec![event("second", &[])]).await.is_err());
    let accepted = outbox
        .accept(vec![event("second", &["crm"])])
        .await
        .expect("accepted once the seq is read again");
    assert!(!accepted[0].duplicate);
    assert_eq!(
        count(outbox.path(), "SELECT seq FROM events WHERE id = 'second'"),
        3
    );
    let fresh = outbox
        .accept(vec![id_less_event(&[])])
        .await
        .expect("accept");
    assert_eq!(event_id::seq_of(&fresh[0].id, key(outbox.path())), Some(4));
}

#[tokio::test]
async fn a_version_10_outbox_keeps_every_id_unique_and_its_events_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    // An id whc made before step 11: a plain UUID v7, in the row as any other.
    let made_before = new_delivery_id();
    {
        let conn = Connection::open(&path).expect("open");
        for step in schema::STEPS.iter().chain([
            &schema::STEP_4,
            &schema::STEP_5,
            &schema::STEP_6,
            &schema::STEP_7,
            &schema::STEP_8,
            &schema::STEP_9,
            &schema::STEP_9_INDEXES,
            &schema::STEP_10,
        ]) {
            conn.execute_batch(step).expect("old schema");
        }
        conn.execute(
            "INSERT INTO events (seq, id, type, body, received_at, occurred_at, fanout) VALUES
                 (1, 'tracker-1', 'refund', '{\"id\":\"tracker-1\",\"type\":\"refund\"}', 1,
                     NULL, NULL),
                 (2, ?1, 'refund', '{}', 2, NULL, NULL)",
            [&made_before],
        )
        .expect("rows");
        conn.execute_batch("UPDATE fanout_expanded SET through = 2; PRAGMA user_version = 10;")
            .expect("version 10");
    }
    let outbox = Outbox::open(&path).expect("migrates");
    assert_latest_schema(&path);
    assert_eq!(
        count(&path, "SELECT count(*) FROM events WHERE assigned = 0"),
        2
    );
    for id in ["tracker-1", made_before.as_str()] {
        let again = outbox
            .accept(vec![event(id, &["crm"])])
            .await
            .expect("accept");
        assert!(again[0].duplicate, "{id}");
        assert!(outbox.event_json(id).await.expect("read").is_some(), "{id}");
    }
    let fresh = outbox
        .accept(vec![id_less_event(&["crm"])])
        .await
        .expect("accept");
    assert_eq!(event_id::seq_of(&fresh[0].id, key(&path)), Some(3));
}

#[tokio::test]
async fn a_version_11_outbox_keeps_assigned_ids_in_their_column_only_and_reads_them_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let key;
    let assigned: Vec<String>;
    {
        let mut conn = Connection::open(&path).expect("open");
        for step in schema::STEPS.iter().chain([
            &schema::STEP_4,
            &schema::STEP_5,
            &schema::STEP_6,
            &schema::STEP_7,
            &schema::STEP_8,
            &schema::STEP_9,
            &schema::STEP_9_INDEXES,
            &schema::STEP_10,
            &schema::STEP_11,
        ]) {
            conn.execute_batch(step).expect("old schema");
        }
        key = schema::id_key(&conn).expect("key");
        assigned = (2..=3)
            .map(|seq| {
                let id = event_id::make(seq, 5, key).expect("fits").to_vec();
                String::from_utf8(id).expect("utf-8")
            })
            .collect();
        let tx = conn.transaction().expect("tx");
        // As step 11's writer stored them: an assigned id first in the body, too.
        tx.execute(
            "INSERT INTO events (seq, id, type, body, received_at, assigned) VALUES
                 (1, 'tracker-1', 'refund', '{\"id\":\"tracker-1\",\"type\":\"refund\"}', 1, 0),
                 (2, ?1, 'refund', '{\"id\":\"' || ?1 || '\",\"type\":\"refund\"}', 5, 1),
                 (3, ?2, 'refund', '{\"id\":\"' || ?2 || '\"}', 5, 1)",
            [&assigned[0], &assigned[1]],
        )
        .expect("rows");
        tx.execute_batch("UPDATE fanout_expanded SET through = 3; PRAGMA user_version = 11;")
            .expect("version 11");
        tx.commit().expect("commit");
    }
    let outbox = Outbox::open(&path).expect("migrates");
    assert_latest_schema(&path);
    let bodies: Vec<String> = Connection::open(&path)
        .expect("open")
        .prepare("SELECT body FROM events ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        bodies,
        [
            r#"{"id":"tracker-1","type":"refund"}"#,
            r#"{"type":"refund"}"#,
            "{}"
        ]
    );
    assert_eq!(
        outbox
            .event_json("tracker-1")
            .await
            .expect("read")
            .as_deref(),
        Some(r#"{"id":"tracker-1","type":"refund"}"#)
    );
    assert_eq!(
        outbox.event_json(&assigned[0]).await.expect("read"),
        Some(format!(r#"{{"id":"{}","type":"refund"}}"#, assigned[0]))
    );
    assert_eq!(
        outbox.event_json(&assigned[1]).await.expect("read"),
        Some(format!(r#"{{"id":"{}"}}"#, assigned[1]))
    );
    let again = outbox
        .accept(vec![event(&assigned[0], &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
}

#[test]
fn each_outbox_scrambles_its_ids_with_a_key_of_its_own_kept_across_restarts() {
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let first = open(&a);
    let path = first.path().to_path_buf();
    let key_a = key(&path);
    assert_ne!(key_a, key(open(&b).path()));
    drop(first);
    drop(open(&a));
    assert_eq!(key(&path), key_a);
}
