//! A fleet: three `whc serve` processes on one PostgreSQL database, four clients posting over
//! them, one sidecar killed with SIGKILL mid-load and not restarted. Every acknowledged event
//! is delivered by the survivors; the duplicates are only those the lease take-over explains.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};
use whc::store::scratch::ScratchPostgres;

use crate::support::{
    Http, Reply, Target, conversion, listening_urls, wait_until, wait_until_async,
};

/// The lease the sidecars hold claims with: short, so the take-over comes quickly.
const LEASE: &str = "2s";

/// One `whc serve` on the shared database; killed if the test fails half-way.
struct Member {
    child: Option<Child>,
    events: String,
    admin: String,
}

impl Member {
    async fn start(rules: &Path, data: &Path, store: &str) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_whc"))
            .arg("serve")
            .arg("--rules")
            .arg(rules)
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--claim-lease", LEASE])
            .args(["--retry-schedule", "100ms,100ms,100ms,100ms,100ms"])
            .env("WHC_STORE", store)
            .env("WHC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start whc serve");
        let (events, admin) = listening_urls(&mut child).await;
        Member {
            events,
            admin,
            child: Some(child),
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the clients saw: each acknowledged event's delivery ids, and which sidecar answered.
#[derive(Default)]
struct Acks {
    deliveries: BTreeMap<String, Vec<String>>,
    by_member: [usize; 3],
    /// Delivery ids the killed member acknowledged.
    via_killed: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_loses_no_acknowledged_event_when_a_member_is_killed() {
    let Some(store) = ScratchPostgres::fresh_database() else {
        return;
    };
    // Two receivers, one webhook each; a short delay keeps attempts on the wire at the kill.
    let receivers = [Target::start().await, Target::start().await];
    for r in &receivers {
        r.set_default(Reply::Delayed(Duration::from_millis(100), 200));
    }
    let rules = tempfile::TempDir::new().unwrap();
    let rule = |name: &str, target: &Target| {
        format!(
            "webhook {name} {{\n    on conversion\n    post \"{}\"\n}}\n",
            target.url(&format!("/{name}?id=[delivery]"))
        )
    };
    std::fs::write(
        rules.path().join("fleet.whc"),
        rule("a", &receivers[0]) + &rule("b", &receivers[1]),
    )
    .unwrap();
    let data: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::TempDir::new().unwrap()).collect();
    let mut members = Vec::new();
    for d in &data {
        members.push(Member::start(rules.path(), d.path(), &store).await);
    }
    let urls: Vec<String> = members
        .iter()
        .map(|m| format!("{}/v1/events", m.events))
        .collect();

    // Four clients; each event goes to the next member in turn, and to the one after it when a
    // member does not answer (as a load balancer retries), with the same event id.
    let http = Http::new();
    let acks: Arc<Mutex<Acks>> = Arc::default();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4usize {
        let (http, acks, urls) = (http.clone(), Arc::clone(&acks), urls.clone());
        clients.spawn(async move {
            for i in 0..300usize {
                let id = format!("fleet-{client}-{i}");
                let body = conversion(&id).to_string();
                let headers = [("content-type", "application/json")];
                let mut acked = false;
                for turn in 0..3 {
                    let member = (client + i + turn) % 3;
                    let sent = http
                        .try_send(Method::POST, &urls[member], &headers, body.clone())
                        .await;
                    match sent {
                        Ok(answer) if answer.status == StatusCode::ACCEPTED => {
                            let json = answer.json();
                            let ids: Vec<String> = json["events"][0]["deliveries"]
                                .as_array()
                                .expect("delivery ids")
                                .iter()
                                .map(|v| v.as_str().expect("an id").to_owned())
                                .collect();
                            assert_eq!(ids.len(), 2, "{json}");
                            let mut acks = acks.lock().unwrap();
                            acks.by_member[member] += 1;
                            if member == 0 {
                                acks.via_killed.extend(ids.iter().cloned());
                            }
                            if let Some(first) = acks.deliveries.insert(id.clone(), ids.clone()) {
                                // Sent again after a lost answer: the same deliveries.
                                assert_eq!(first, ids, "{id}");
                            }
                            acked = true;
                            break;
                        }
                        Ok(answer) => panic!("event refused: {} {}", answer.status, answer.text()),
                        // That member is gone: no answer, no promise; try the next.
                        Err(_) => continue,
                    }
                }
                assert!(acked, "no member took {id}");
            }
        });
    }
    wait_until("300 acknowledged events", || {
        acks.lock().unwrap().deliveries.len() >= 300
    })
    .await;
    members[0].kill();
    // Nothing reaches the receivers from the killed member after this point.
    let at_kill: Vec<usize> = receivers.iter().map(Target::count).collect();
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert_eq!(
        acks.deliveries.len(),
        1200,
        "every event was acknowledged once"
    );
    assert!(acks.by_member[0] > 0, "the killed member took events first");
    let expected: BTreeSet<String> = acks.deliveries.values().flatten().cloned().collect();
    assert_eq!(expected.len(), 2400);

    // Every acknowledged delivery arrives, the killed member's claims after their lease.
    let mut seen: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (r, receiver) in receivers.iter().enumerate() {
        let requests = receiver
            .wait("every acknowledged delivery", |requests| {
                let keys: BTreeSet<&str> = requests
                    .iter()
                    .filter_map(|q| q.header("idempotency-key"))
                    .collect();
                expected
                    .iter()
                    .filter(|id| keys.contains(id.as_str()))
                    .count()
                    >= 1200
            })
            .await;
        for (index, q) in requests.iter().enumerate() {
            let key = q.header("idempotency-key").expect("a key").to_owned();
            seen.entry(key).or_default().push((r, index));
        }
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");

    // A duplicate is a delivery the killed member sent (it reached the receiver before the
    // kill) but never recorded: its lease ran out and a survivor sent it again.
    let duplicates: Vec<(&String, &Vec<(usize, usize)>)> = seen
        .iter()
        .filter(|(_, arrivals)| arrivals.len() > 1)
        .collect();
    for (key, arrivals) in &duplicates {
        assert!(
            arrivals.iter().any(|&(r, index)| index < at_kill[r]),
            "{key} arrived twice, never before the kill: {arrivals:?}"
        );
        assert_eq!(arrivals.len(), 2, "{key}: {arrivals:?}");
    }
    eprintln!(
        "fleet: 1200 events ({} via the killed member before the kill), 2400 deliveries, \
         {} duplicate(s), all from the killed member's expired leases",
        acks.by_member[0],
        duplicates.len()
    );

    // The survivors' admin API sees the whole fleet's log: the killed member's deliveries too.
    let survivor = &members[1];
    let killed_member_delivery = acks.via_killed.last().expect("one").clone();
    let url = format!("{}/v1/deliveries/{killed_member_delivery}", survivor.admin);
    wait_until_async(
        "a delivery to be shown delivered",
        || http.get(&url),
        |a| a.status == StatusCode::OK && a.json()["status"] == "delivered",
    )
    .await;
    let pending = format!("{}/v1/deliveries?status=pending", survivor.admin);
    wait_until_async(
        "no pending delivery left in the fleet",
        || http.get(&pending),
        |a| {
            a.status == StatusCode::OK
                && a.json()["deliveries"].as_array().is_some_and(Vec::is_empty)
        },
    )
    .await;
}

/// A member whose database is down when it starts: it starts anyway, reports not ready and
/// answers posts with 503 (nothing acknowledged, nothing stored); once the database is up it is
/// ready and delivers without a restart. When the database stops mid-run, posts get 503 again
/// until it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waits_for_its_database_and_rides_out_an_outage() {
    let Some(server) = ScratchPostgres::own() else {
        return;
    };
    let store = server.create_database("whc_outage").expect("database");
    server.stop().expect("stop the database");

    let receiver = Target::start().await;
    let rules = tempfile::TempDir::new().unwrap();
    std::fs::write(
        rules.path().join("outage.whc"),
        format!(
            "webhook crm {{\n    on conversion\n    post \"{}\"\n}}\n",
            receiver.url("/crm?t=[transaction]")
        ),
    )
    .unwrap();
    let data = tempfile::TempDir::new().unwrap();
    let member = Member::start(rules.path(), data.path(), &store).await;
    let http = Http::new();
    let events = format!("{}/v1/events", member.events);
    let readyz = format!("{}/readyz", member.admin);
    let post = |id: &str| http.post_json(&events, conversion(id).to_string());

    let not_ready = http.get(&readyz).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        not_ready.json()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("PostgreSQL")),
        "{}",
        not_ready.text()
    );
    let healthz = http.get(&format!("{}/healthz", member.admin)).await;
    assert_eq!(healthz.status, StatusCode::SERVICE_UNAVAILABLE);
    let refused = post("before-the-database").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );

    server.resume().expect("start the database");
    wait_until_async(
        "the member to be ready",
        || http.get(&readyz),
        |a| a.status == StatusCode::OK,
    )
    .await;
    let accepted = post("with-the-database").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    receiver.wait_for(1).await;

    // Mid-run: the database stops; posts are refused, then taken again once it is back.
    server.stop().expect("stop the database again");
    let refused = post("during-the-outage").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    server.resume().expect("start the database again");
    wait_until_async(
        "a post to be taken after the outage",
        || post("after-the-outage"),
        |a| a.status == StatusCode::ACCEPTED,
    )
    .await;

    let requests = receiver.wait_for(2).await;
    let delivered: BTreeSet<&str> = requests.iter().map(|q| q.query()).collect();
    assert_eq!(
        delivered,
        BTreeSet::from(["t=txn-with-the-database", "t=txn-after-the-outage"]),
        "only acknowledged events are delivered"
    );
    let pending = format!("{}/v1/deliveries", member.admin);
    let log = http.get(&pending).await.json();
    assert_eq!(
        log["deliveries"].as_array().map(Vec::len),
        Some(2),
        "nothing of a refused post was stored: {log}"
    );
}
