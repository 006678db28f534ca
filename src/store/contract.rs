//! The store contract: one suite of behaviours every store must have, run against each store
//! (a real SQLite file; a real throwaway PostgreSQL server when its binaries are installed).

use std::collections::HashSet;
use std::time::Duration;

use super::{Store, StoreError, StoreLocation, StoreOptions};
use crate::outbox::{
    AttemptRecord, DeliveryFilter, EXCERPT_LIMIT, NewDelivery, NewEvent, Payload, Status,
    StoredBody, StoredHeader, new_delivery_id, now_ms,
};

/// Far in the future: everything pending is due.
const LATER: i64 = i64::MAX;

/// No bound on the deliveries claimed per endpoint.
const ANY: usize = usize::MAX;

/// A fresh, empty store of one kind, and the way to open more handles on it (more sidecars).
pub(crate) struct Harness {
    location: StoreLocation,
    /// Keeps the SQLite folder (or the PostgreSQL database) alive for the test.
    _keep: Box<dyn std::any::Any + Send>,
}

impl Harness {
    /// A fresh SQLite outbox in a temporary folder.
    pub(crate) fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        Harness {
            location: StoreLocation::Sqlite(dir.path().join("data/outbox.db")),
            _keep: Box::new(dir),
        }
    }

    /// A fresh database on this process's throwaway PostgreSQL server, or `None` (with a
    /// printed line) when PostgreSQL is not installed.
    pub(crate) fn postgres() -> Option<Harness> {
        let url = super::scratch::ScratchPostgres::fresh_database()?;
        Some(Harness {
            location: StoreLocation::Postgres(url),
            _keep: Box::new(()),
        })
    }

    /// Opens a handle with the default options.
    pub(crate) async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }

    /// Opens a handle: for a shared store, one more sidecar on the same queue.
    pub(crate) async fn open_with(&self, options: StoreOptions) -> Store {
        Store::open(&self.location, options)
            .await
            .expect("open the store")
    }
}

/// Generates one `#[tokio::test]` per store for each contract function named.
macro_rules! contract {
    ($store:ident => $harness:expr; $($name:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = $harness else { return };
                    super::$name(harness).await;
                }
            )*
        }
    };
}

contract!(sqlite => Some(super::Harness::sqlite());
    accept_claim_deliver,
    retry_then_dead_then_replay,
    duplicates_answer_the_first_deliveries,
    the_log_filters_newest_first,
    the_consoles_filters_pages_and_counts,
    prune_removes_old_delivered_only,
    a_claim_is_not_handed_out_twice_until_recorded_or_released,
    claims_are_bounded_per_endpoint,
    an_envelope_reads_back_its_event,
    changed_wakes_after_accept,
    health_checks_pass_on_a_working_store,
    concurrent_accepts_are_all_stored,
    a_drain_with_records_in_flight_leaves_nothing_behind,
    a_wider_window_claims_more_of_its_endpoint,
);

contract!(postgres => super::Harness::postgres();
    accept_claim_deliver,
    retry_then_dead_then_replay,
    duplicates_answer_the_first_deliveries,
    the_log_filters_newest_first,
    the_consoles_filters_pages_and_counts,
    prune_removes_old_delivered_only,
    a_claim_is_not_handed_out_twice_until_recorded_or_released,
    claims_are_bounded_per_endpoint,
    an_envelope_reads_back_its_event,
    changed_wakes_after_accept,
    health_checks_pass_on_a_working_store,
    concurrent_accepts_are_all_stored,
    a_drain_with_records_in_flight_leaves_nothing_behind,
    fleet_event_ids_are_unique_across_sidecars,
    fleet_claimers_never_share_a_delivery,
    fleet_a_lease_that_runs_out_is_taken_over,
    fleet_a_held_lease_is_renewed_not_taken,
    fleet_a_commit_wakes_the_other_sidecars,
    fleet_one_sidecar_prunes_at_a_time,
    fleet_pause_is_heard_by_every_sidecar,
    fleet_the_log_is_the_whole_fleets,
    a_wider_window_claims_more_of_its_endpoint,
);

/// An event with one delivery per webhook, to `https://example.test/<webhook>`.
pub(crate) fn event(id: &str, webhooks: &[&str]) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        assigned: false,
        kind: "conversion".to_owned(),
        body: format!(r#"{{"id":"{id}","type":"conversion"}}"#),
        occurred_at: None,
        deliveries: webhooks
            .iter()
            .map(|w| NewDelivery {
                id: new_delivery_id(),
                webhook: (*w).to_owned(),
                method: "POST".to_owned(),
                url: format!("https://example.test/{w}?tx=1"),
                headers: vec![
                    StoredHeader::Literal {
                        name: "X-Source".into(),
                        value: "whc".into(),
                    },
                    StoredHeader::Env {
                        name: "Authorization".into(),
                        env: "HOOK_TOKEN".into(),
                    },
                ],
                body: Payload::Bytes(b"{}".to_vec()),
                secret_env: Some("HOOK_SECRET".into()),
                timeout_ms: 5000,
                max_attempts: 3,
            })
            .collect(),
    }
}

/// An event with one delivery per URL.
pub(crate) fn event_to(id: &str, urls: &[&str]) -> NewEvent {
    let mut event = event(id, &vec!["hook"; urls.len()]);
    for (d, url) in event.deliveries.iter_mut().zip(urls) {
        d.url = (*url).to_owned();
    }
    event
}

/// A 2xx outcome.
pub(crate) fn delivered() -> AttemptRecord {
    AttemptRecord::Delivered {
        status_code: 200,
        note: None,
        excerpt: None,
        elapsed_ms: 1,
    }
}

async fn accept_claim_deliver(h: Harness) {
    let store = h.open().await;
    let accepted = store
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    assert_eq!(accepted.len(), 1);
    assert!(!accepted[0].duplicate);
    assert_eq!(accepted[0].deliveries.len(), 2);
    assert_eq!(store.queue_depth().await.expect("depth"), 2);

    let due = store.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(due.len(), 2);
    let first = &due[0];
    assert_eq!(first.status, Status::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.event_id, "e1");
    assert_eq!(first.method, "POST");
    assert_eq!(first.headers.len(), 2);
    assert_eq!(first.body, StoredBody::Bytes(b"{}".to_vec()));
    assert_eq!(first.secret_env.as_deref(), Some("HOOK_SECRET"));
    assert_eq!((first.timeout_ms, first.max_attempts), (5000, 3));
    let ids: HashSet<&str> = due.iter().map(|d| d.id.as_str()).collect();
    let answered: HashSet<&str> = accepted[0].deliveries.iter().map(String::as_str).collect();
    assert_eq!(ids, answered);

    for d in &due {
        store.record(&d.id, delivered()).await.expect("record");
    }
    let stored = store.get(&due[0].id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Delivered, 1));
    assert_eq!(stored.last_status_code, Some(200));
    assert_eq!(store.queue_depth().await.expect("depth"), 0);
    let counts = store.counts_by_status().await.expect("counts");
    assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 2, 0));
    // Delivered: recording again is refused, and nothing is due.
    let again = store.record(&due[0].id, delivered()).await;
    assert!(matches!(again, Err(StoreError::NotPending(ref id)) if *id == due[0].id));
    assert!(store.due(LATER, 10, ANY).await.expect("due").is_empty());
    let unknown = store.record("no-such-id", delivered()).await;
    assert!(
        matches!(unknown, Err(StoreError::NotPending(_))),
        "{unknown:?}"
    );
}

async fn retry_then_dead_then_replay(h: Harness) {
    let store = h.open().await;
    store
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = store.due(LATER, 10, ANY).await.expect("due").remove(0);

    let retry_at = now_ms() + 60_000;
    store
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
    assert!(store.due(now_ms(), 10, ANY).await.expect("due").is_empty());
    assert_eq!(store.next_due_at(ANY).await.expect("next"), Some(retry_at));
    let stored = store.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Pending, 1));
    assert_eq!(stored.last_status_code, Some(503));
    assert_eq!(stored.last_attempt_ms, Some(40));
    assert_eq!(
        stored.response_excerpt.map(|e| e.len()),
        Some(EXCERPT_LIMIT)
    );

    let d = store.due(retry_at, 10, ANY).await.expect("due").remove(0);
    store
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
    let stored = store.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Dead, 2));
    assert_eq!(stored.last_error.as_deref(), Some("HTTP 404"));
    assert_eq!(store.queue_depth().await.expect("depth"), 0);

    assert!(store.replay(&d.id).await.expect("replay"));
    assert!(!store.replay(&d.id).await.expect("replay twice"));
    assert!(!store.replay("no-such-id").await.expect("replay unknown"));
    let stored = store.get(&d.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.attempts), (Status::Pending, 0));
    assert_eq!(store.due(now_ms(), 10, ANY).await.expect("due").len(), 1);
}

async fn duplicates_answer_the_first_deliveries(h: Harness) {
    let store = h.open().await;
    let first = store
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    // Again later, and twice within one call.
    let second = store
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
    assert_eq!(store.queue_depth().await.expect("depth"), 3);
}

async fn the_log_filters_newest_first(h: Harness) {
    let store = h.open().await;
    store
        .accept(vec![event("e1", &["crm", "ads"])])
        .await
        .expect("accept");
    // Stored times are milliseconds: make the second event's later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .accept(vec![event("e2", &["crm"])])
        .await
        .expect("accept");
    let crm = store
        .list(DeliveryFilter {
            webhook: Some("crm".into()),
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(crm.len(), 2);
    assert_eq!(crm[0].event_id, "e2");
    let one = store
        .list(DeliveryFilter {
            limit: 1,
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    let pending = store
        .list(DeliveryFilter {
            status: Some(Status::Dead),
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert!(pending.is_empty());
    assert!(store.get("nope").await.expect("get").is_none());
}

async fn the_consoles_filters_pages_and_counts(h: Harness) {
    let store = h.open().await;
    let mut refund = event("r1", &["crm"]);
    refund.kind = "refund".into();
    refund.body = r#"{"id":"r1","type":"refund","transaction":"ORD-5%"}"#.into();
    store
        .accept(vec![event("e1", &["crm", "ads"]), refund])
        .await
        .expect("accept");
    let list = |filter: DeliveryFilter| {
        let store = store.clone();
        async move { store.list(filter).await.expect("list") }
    };
    let refunds = list(DeliveryFilter {
        event_type: Some("refund".into()),
        ..DeliveryFilter::default()
    })
    .await;
    assert_eq!(refunds.len(), 1);
    for (text, found) in [("ORD-5%", 1), ("ORD-5x", 0), ("e1", 2), ("r", 1)] {
        let rows = list(DeliveryFilter {
            text: Some(text.into()),
            ..DeliveryFilter::default()
        })
        .await;
        assert_eq!(rows.len(), found, "{text}");
    }
    // Keyset pages of one cover the log, newest first, each row once.
    let all = list(DeliveryFilter::default()).await;
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(DeliveryFilter {
            limit: 1,
            after: after.clone(),
            ..DeliveryFilter::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.push(last.id.clone());
    }
    assert_eq!(paged, all.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
    let since = all[0].created_at;
    let until = list(DeliveryFilter {
        until: Some(since),
        since: Some(since - 60_000),
        ..DeliveryFilter::default()
    })
    .await;
    assert!(until.iter().all(|d| d.created_at < since));

    // Two of crm's go dead; a replay of crm's dead puts both back.
    let claimed = store.due(LATER, 10, ANY).await.expect("due");
    for d in &claimed {
        let record = if d.webhook == "crm" {
            AttemptRecord::Dead {
                status_code: Some(404),
                error: "HTTP 404".into(),
                excerpt: None,
                elapsed_ms: 1,
            }
        } else {
            delivered()
        };
        store.record(&d.id, record).await.expect("record");
    }
    let dead = claimed
        .iter()
        .find(|d| d.webhook == "crm")
        .expect("a crm delivery");
    let history = store.attempts(&dead.id).await.expect("attempts");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].outcome.as_str(),
            history[0].status_code,
            history[0].error.as_deref()
        ),
        ("dead", Some(404), Some("HTTP 404"))
    );
    assert!(store.attempts("nope").await.expect("attempts").is_empty());
    let counts = store.webhook_counts(0).await.expect("counts");
    assert_eq!((counts["crm"].dead, counts["ads"].delivered), (2, 1));
    assert!(
        store
            .webhook_counts(now_ms() + 60_000)
            .await
            .expect("counts")
            .is_empty()
    );
    assert_eq!(store.replay_dead("crm").await.expect("replay"), 2);
    assert_eq!(store.replay_dead("crm").await.expect("replay"), 0);
    assert_eq!(
        store.webhook_counts(0).await.expect("counts")["crm"].waiting,
        2
    );

    let json = store
        .event_json("r1")
        .await
        .expect("event")
        .expect("stored");
    assert!(json.contains("ORD-5%"));
    assert!(store.event_json("nope").await.expect("event").is_none());
}

async fn prune_removes_old_delivered_only(h: Harness) {
    let store = h.open().await;
    store
        .accept(vec![event("e1", &["crm", "ads"]), event("e2", &["crm"])])
        .await
        .expect("accept");
    let due = store.due(LATER, 10, ANY).await.expect("due");
    let e1: Vec<_> = due.iter().filter(|d| d.event_id == "e1").collect();
    let e2 = due.iter().find(|d| d.event_id == "e2").expect("e2");
    store.record(&e1[0].id, delivered()).await.expect("record");
    store.record(&e2.id, delivered()).await.expect("record");
    assert_eq!(store.prune_delivered(0).await.expect("prune none"), 0);
    assert_eq!(store.attempts(&e2.id).await.expect("attempts").len(), 1);
    assert_eq!(store.prune_delivered(LATER).await.expect("prune old"), 2);
    assert!(store.get(&e1[0].id).await.expect("get").is_none());
    assert!(
        store.attempts(&e2.id).await.expect("attempts").is_empty(),
        "a pruned delivery's attempts go with it"
    );
    assert!(store.get(&e1[1].id).await.expect("get").is_some());
    // e1 still has a pending delivery: it stays, and so does its dedupe; e2 is forgotten.
    let again = store
        .accept(vec![event("e1", &["crm"]), event("e2", &["crm"])])
        .await
        .expect("accept");
    assert!(again[0].duplicate);
    assert!(!again[1].duplicate);
}

async fn a_claim_is_not_handed_out_twice_until_recorded_or_released(h: Harness) {
    let store = h.open().await;
    store
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let d = store.due(LATER, 10, ANY).await.expect("due").remove(0);
    assert!(store.due(LATER, 10, ANY).await.expect("due").is_empty());
    assert_eq!(store.next_due_at(ANY).await.expect("next"), None);
    store.release(&d.id).await;
    let again = store.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
}

async fn claims_are_bounded_per_endpoint(h: Harness) {
    let store = h.open().await;
    // A dead endpoint's backlog, older than the healthy endpoint's one delivery.
    let backlog: Vec<NewEvent> = (0..50)
        .map(|i| event_to(&format!("dead-{i}"), &["http://dead.test:81/hook?n=1"]))
        .collect();
    store.accept(backlog).await.expect("accept backlog");
    store
        .accept(vec![event_to("ok", &["https://OK.test/x"])])
        .await
        .expect("accept");

    let first = store.due(LATER, 5, 3).await.expect("due");
    let urls: Vec<&str> = first.iter().map(|d| d.url.as_str()).collect();
    assert_eq!(urls.len(), 4, "{urls:?}");
    assert_eq!(urls.iter().filter(|u| u.contains("dead.test")).count(), 3);
    assert!(urls.contains(&"https://OK.test/x"), "{urls:?}");
    // The dead endpoint holds its three; nothing more of it is due until one is recorded.
    assert!(store.due(LATER, 5, 3).await.expect("due").is_empty());
    assert_eq!(store.next_due_at(3).await.expect("next"), None);
    assert!(store.next_due_at(4).await.expect("next").is_some());
    let dead = first.iter().find(|d| d.url.contains("dead")).expect("one");
    store.release(&dead.id).await;
    let again = store.due(LATER, 5, 3).await.expect("due");
    assert_eq!(again.len(), 1);
    assert!(again[0].url.contains("dead.test"));
    // The overall limit holds too.
    let many: Vec<NewEvent> = (0..20)
        .map(|i| event(&format!("many-{i}"), &["crm"]))
        .collect();
    store.accept(many).await.expect("accept");
    assert_eq!(store.due(LATER, 7, ANY).await.expect("due").len(), 7);
}

async fn an_envelope_reads_back_its_event(h: Harness) {
    let store = h.open().await;
    let mut e = event("e1", &["crm", "get"]);
    e.occurred_at = Some("2026-01-02T03:04:05Z".into());
    e.deliveries[0].body = Payload::Envelope;
    e.deliveries[1].body = Payload::Empty;
    e.deliveries[1].method = "GET".into();
    e.deliveries[1].headers.clear();
    e.deliveries[1].secret_env = None;
    let body = e.body.clone();
    store.accept(vec![e]).await.expect("accept");
    let due = store.due(LATER, 10, ANY).await.expect("due");
    let crm = due.iter().find(|d| d.webhook == "crm").expect("crm");
    match &crm.body {
        StoredBody::Envelope(event) => {
            assert_eq!(event.kind, "conversion");
            assert_eq!(event.occurred_at.as_deref(), Some("2026-01-02T03:04:05Z"));
            assert_eq!(event.json, body);
        }
        other => panic!("expected an envelope, got {other:?}"),
    }
    let get = due.iter().find(|d| d.webhook == "get").expect("get");
    assert_eq!(get.body, StoredBody::Empty);
    assert!(get.headers.is_empty());
    assert_eq!(get.secret_env, None);
}

async fn changed_wakes_after_accept(h: Harness) {
    let store = h.open().await;
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.changed().await }
    });
    store
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken after the accept")
        .expect("join");
}

async fn health_checks_pass_on_a_working_store(h: Harness) {
    let store = h.open().await;
    store.check_writes().await.expect("writes");
    store.check_reads().await.expect("reads");
    assert_eq!(store.last_write_failure(), None);
    // The probe leaves nothing behind.
    assert_eq!(store.queue_depth().await.expect("depth"), 0);
    assert!(
        store
            .get("whc:readiness-probe")
            .await
            .expect("get")
            .is_none()
    );
}

async fn concurrent_accepts_are_all_stored(h: Harness) {
    let store = h.open().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.spawn(async move { store.accept(vec![event(&format!("c{i}"), &["crm"])]).await });
    }
    while let Some(result) = tasks.join_next().await {
        let accepted = result.expect("join").expect("accept");
        assert!(!accepted[0].duplicate);
    }
    assert_eq!(store.queue_depth().await.expect("depth"), 100);
    assert!(store.stats().commits >= 1);
}

async fn fleet_event_ids_are_unique_across_sidecars(h: Harness) {
    let a = h.open().await;
    let b = h.open().await;
    // Both sidecars get the same ids at once; each id is stored by exactly one of them.
    let ids: Vec<String> = (0..200).map(|i| format!("shared-{i}")).collect();
    let batch = |reverse: bool| {
        let mut events: Vec<NewEvent> = ids.iter().map(|id| event(id, &["crm"])).collect();
        if reverse {
            events.reverse();
        }
        events
    };
    let (first, second) = tokio::join!(a.accept(batch(false)), b.accept(batch(true)));
    let (first, second) = (first.expect("a accepts"), second.expect("b accepts"));
    let new = first.iter().chain(&second).filter(|e| !e.duplicate).count();
    assert_eq!(new, ids.len());
    for e in first.iter().chain(&second) {
        assert_eq!(e.deliveries.len(), 1, "{e:?}");
    }
    assert_eq!(a.queue_depth().await.expect("depth"), 200);
}

async fn fleet_claimers_never_share_a_delivery(h: Harness) {
    let sidecars = [h.open().await, h.open().await, h.open().await];
    let events: Vec<NewEvent> = (0..300)
        .map(|i| event_to(&format!("e{i}"), &[&format!("https://t{}.test/x", i % 7)]))
        .collect();
    sidecars[0].accept(events).await.expect("accept");
    let mut tasks = tokio::task::JoinSet::new();
    for store in sidecars.clone() {
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.due(LATER, 16, 4).await.expect("due");
                if batch.is_empty() && store.next_due_at(4).await.expect("next").is_none() {
                    return mine;
                }
                for d in batch {
                    store.record(&d.id, delivered()).await.expect("record");
                    mine.push(d.id);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        all.extend(mine.expect("join"));
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(all.len(), 300);
    let counts = sidecars[1].counts_by_status().await.expect("counts");
    assert_eq!((counts.pending, counts.delivered), (0, 300));
}

/// Waits until `check` passes, for at most ten seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within ten seconds");
}

async fn fleet_a_lease_that_runs_out_is_taken_over(h: Harness) {
    let short = StoreOptions {
        claim_lease: Duration::from_millis(300),
    };
    let crashed = h.open_with(short).await;
    crashed
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let taken = crashed.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(taken.len(), 1);
    // The sidecar dies holding its claim: its lease is not renewed any more.
    drop(crashed);
    let survivor = h.open_with(short).await;
    assert!(survivor.due(LATER, 10, ANY).await.expect("due").is_empty());
    let next = survivor.next_due_at(ANY).await.expect("next");
    assert!(next.is_some_and(|at| at > now_ms() - 1000), "{next:?}");
    let mut again = Vec::new();
    for _ in 0..1000 {
        again = survivor.due(LATER, 10, ANY).await.expect("due");
        if !again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(again.len(), 1, "the survivor takes the delivery over");
    assert_eq!(again[0].id, taken[0].id);
    survivor
        .record(&again[0].id, delivered())
        .await
        .expect("record");
}

async fn fleet_a_held_lease_is_renewed_not_taken(h: Harness) {
    // Renewed every third of it: a renewal would have to be 650 ms late to lose it.
    let short = StoreOptions {
        claim_lease: Duration::from_secs(1),
    };
    let holder = h.open_with(short).await;
    let other = h.open_with(short).await;
    holder
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    let held = holder.due(LATER, 10, ANY).await.expect("due");
    assert_eq!(held.len(), 1);
    // Several leases long: the holder renews, the other never gets it.
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(other.due(LATER, 10, ANY).await.expect("due").is_empty());
    }
    holder.release(&held[0].id).await;
    assert_eq!(other.due(LATER, 10, ANY).await.expect("due").len(), 1);
}

async fn fleet_a_commit_wakes_the_other_sidecars(h: Harness) {
    let writer = h.open().await;
    let dispatcher = h.open().await;
    // Let the dispatcher's listener start, then drain the wake-up its start gives.
    eventually("the listener is up", || {
        let d = dispatcher.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(50), d.changed())
                .await
                .is_ok()
        }
    })
    .await;
    let waiting = tokio::spawn({
        let d = dispatcher.clone();
        async move { d.changed().await }
    });
    writer
        .accept(vec![event("e1", &["crm"])])
        .await
        .expect("accept");
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the other sidecar is woken by the commit")
        .expect("join");
}

async fn fleet_one_sidecar_prunes_at_a_time(h: Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let events: Vec<NewEvent> = (0..50).map(|i| event(&format!("p{i}"), &["crm"])).collect();
    a.accept(events).await.expect("accept");
    loop {
        let due = a.due(LATER, 100, ANY).await.expect("due");
        if due.is_empty() {
            break;
        }
        for d in due {
            a.record(&d.id, delivered()).await.expect("record");
        }
    }
    let (x, y) = tokio::join!(a.prune_delivered(LATER), b.prune_delivered(LATER));
    let (x, y) = (x.expect("prune a"), y.expect("prune b"));
    assert_eq!(x + y, 50, "{x} + {y}");
    assert_eq!(a.counts_by_status().await.expect("counts").delivered, 0);
}

async fn fleet_pause_is_heard_by_every_sidecar(h: Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let mut heard = b.fleet_paused().expect("a shared store");
    assert!(!*heard.borrow());
    assert!(
        a.set_fleet_paused(true)
            .await
            .expect("shared")
            .expect("pause")
    );
    assert!(
        !a.set_fleet_paused(true)
            .await
            .expect("shared")
            .expect("pause twice")
    );
    tokio::time::timeout(Duration::from_secs(10), heard.wait_for(|p| *p))
        .await
        .expect("b hears the pause")
        .expect("watch");
    assert!(
        a.set_fleet_paused(false)
            .await
            .expect("shared")
            .expect("resume")
    );
    tokio::time::timeout(Duration::from_secs(10), heard.wait_for(|p| !*p))
        .await
        .expect("b hears the resume")
        .expect("watch");
}

async fn fleet_the_log_is_the_whole_fleets(h: Harness) {
    let a = h.open().await;
    let b = h.open().await;
    a.accept(vec![event("from-a", &["crm"])])
        .await
        .expect("accept");
    b.accept(vec![event("from-b", &["crm"])])
        .await
        .expect("accept");
    let d = a.due(LATER, 10, ANY).await.expect("due");
    for d in &d {
        a.record(
            &d.id,
            AttemptRecord::Dead {
                status_code: Some(410),
                error: "HTTP 410".into(),
                excerpt: None,
                elapsed_ms: 1,
            },
        )
        .await
        .expect("record");
    }
    let log = b.list(DeliveryFilter::default()).await.expect("list");
    let events: HashSet<&str> = log.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events, HashSet::from(["from-a", "from-b"]));
    // A retry from the other sidecar puts it back for the whole fleet.
    assert!(b.replay(&d[0].id).await.expect("replay"));
    assert_eq!(a.due(LATER, 10, ANY).await.expect("due").len(), 1);
}

/// With the database stopped, writes fail (nothing is acknowledged) and the health checks say
/// so; once it is back, the same handle works again, without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_when_the_database_comes_back() {
    let Some(server) = super::scratch::ScratchPostgres::own() else {
        return;
    };
    let url = server.create_database("outage").expect("database");
    let store = Store::open(&StoreLocation::Postgres(url), StoreOptions::default())
        .await
        .expect("open");
    store
        .accept(vec![event("before", &["crm"])])
        .await
        .expect("accept");
    server.stop().expect("stop the server");
    let refused = store.accept(vec![event("during", &["crm"])]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(store.check_writes().await.is_err());
    assert!(store.last_write_failure().is_some());
    server.resume().expect("start the server again");
    let mut accepted = None;
    for _ in 0..500 {
        if let Ok(a) = store.accept(vec![event("during", &["crm"])]).await {
            accepted = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted = accepted.expect("accepted once the database is back");
    assert!(
        !accepted[0].duplicate,
        "nothing of the refused post was stored"
    );
    assert_eq!(store.last_write_failure(), None);
    store.check_writes().await.expect("writes");
    assert_eq!(store.queue_depth().await.expect("depth"), 2);
}

/// The store takes the dispatcher's wider windows: an endpoint that keeps up may hold more
/// claims than the base, the others still the base.
async fn a_wider_window_claims_more_of_its_endpoint(h: Harness) {
    let store = h.open().await;
    let fast: Vec<NewEvent> = (0..10)
        .map(|i| event_to(&format!("fast-{i}"), &["http://fast.test/hook"]))
        .collect();
    let slow: Vec<NewEvent> = (0..10)
        .map(|i| event_to(&format!("slow-{i}"), &["http://slow.test/hook"]))
        .collect();
    store.accept(fast).await.expect("accept");
    store.accept(slow).await.expect("accept");
    let bound = crate::store::ClaimBound::new(
        2,
        std::collections::HashMap::from([("http://fast.test".to_owned(), 5)]),
    );
    let first = store.due(LATER, 100, bound.clone()).await.expect("due");
    let on = |host: &str| first.iter().filter(|d| d.url.contains(host)).count();
    assert_eq!((on("fast.test"), on("slow.test")), (5, 2));
    assert!(
        store
            .due(LATER, 100, bound.clone())
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(store.next_due_at(bound.clone()).await.expect("next"), None);
    // Back to the base, the fast endpoint holds more than its bound: nothing more of it.
    assert!(store.due(LATER, 100, 2).await.expect("due").is_empty());
}

/// On PostgreSQL a delivery stops counting on its endpoint once its attempt's record is handed
/// in, not when it commits: a record the database could not take (stopped) keeps the delivery
/// claimed, but lets the endpoint take its next claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_attempted_delivery_frees_its_endpoints_claim_before_its_record_commits() {
    let Some(server) = super::scratch::ScratchPostgres::own() else {
        return;
    };
    let url = server.create_database("attempted").expect("database");
    let store = Store::open(&StoreLocation::Postgres(url), StoreOptions::default())
        .await
        .expect("open");
    let events: Vec<NewEvent> = (0..3)
        .map(|i| event_to(&format!("e{i}"), &["http://one.test/hook"]))
        .collect();
    store.accept(events).await.expect("accept");
    let claimed = store.due(LATER, 10, 2).await.expect("due");
    assert_eq!(claimed.len(), 2);
    assert!(store.due(LATER, 10, 2).await.expect("due").is_empty());
    server.stop().expect("stop the server");
    let failed = store.record(&claimed[0].id, delivered()).await;
    assert!(failed.is_err(), "{failed:?}");
    server.resume().expect("start the server again");
    let mut next = Vec::new();
    for _ in 0..500 {
        if let Ok(d) = store.due(LATER, 10, 2).await {
            next = d;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next.len(), 1, "the endpoint took its next claim");
    assert!(
        claimed.iter().all(|c| c.id != next[0].id),
        "the attempted delivery stays claimed until its record commits"
    );
    store
        .record(&claimed[0].id, delivered())
        .await
        .expect("recorded once the database is back");
    assert_eq!(store.queue_depth().await.expect("depth"), 2);
}

/// The dispatcher's way of draining, under a tight bound: claims while earlier attempts'
/// records are still being stored, each record in its own task, a tenth of the attempts
/// retried at once, and new events accepted meanwhile. Every delivery ends delivered: nothing
/// is left pending with no claim in flight (a claim count that leaks would stall an endpoint
/// for good).
async fn a_drain_with_records_in_flight_leaves_nothing_behind(h: Harness) {
    let store = h.open().await;
    let batch_of = |from: usize| -> Vec<NewEvent> {
        (from..from + 100)
            .map(|i| event_to(&format!("e{i}"), &[&format!("https://t{}.test/x", i % 2)]))
            .collect()
    };
    store.accept(batch_of(0)).await.expect("accept");
    let mut accepted = 100;
    let mut records = tokio::task::JoinSet::new();
    let mut attempts = 0usize;
    loop {
        let batch = store.due(LATER, 64, 4).await.expect("due");
        if batch.is_empty() {
            if records.is_empty() {
                break;
            }
            records.join_next().await.expect("a record").expect("join");
            continue;
        }
        if accepted < 500 {
            store.accept(batch_of(accepted)).await.expect("accept");
            accepted += 100;
        }
        for d in batch {
            attempts += 1;
            let record = if attempts.is_multiple_of(10) {
                AttemptRecord::Retry {
                    next_attempt_at: 0,
                    status_code: Some(503),
                    error: "HTTP 503".into(),
                    excerpt: None,
                    elapsed_ms: 1,
                }
            } else {
                delivered()
            };
            let store = store.clone();
            records.spawn(async move { store.record(&d.id, record).await.expect("record") });
        }
    }
    assert_eq!(
        store.queue_depth().await.expect("depth"),
        0,
        "deliveries left pending with no claim in flight"
    );
    let counts = store.counts_by_status().await.expect("counts");
    assert_eq!((counts.delivered, counts.dead), (500, 0));
}
