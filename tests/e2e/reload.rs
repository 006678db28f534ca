//! Hot reload while events flow: add, change, break and fix a rule file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyper::StatusCode;
use serde_json::Value;

use crate::support::{Sidecar, Target, conversion, save, wait_until, wait_until_async, webhook};

/// What the poster saw for one event.
#[derive(Debug, Clone)]
struct Posted {
    id: String,
    status: StatusCode,
    rules: String,
    webhooks: BTreeSet<String>,
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_while_events_flow_and_each_event_sees_one_version() {
    let target = Target::start().await;
    let a = webhook("a_all", "conversion", "", &target.url("/a"), "");
    let b = |path: &str| {
        webhook(
            "b_sales",
            "conversion",
            "revenue greater than 50",
            &target.url(path),
            "",
        )
    };
    let sidecar = Arc::new(Sidecar::builder().file("a.whc", &a).start().await);
    let dir = sidecar.rules.path().to_path_buf();

    // A task posts one event after another until told to stop.
    let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (sidecar, posted, stop) =
            (Arc::clone(&sidecar), Arc::clone(&posted), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("reload-{i}");
                i += 1;
                let answer = sidecar.post_events(conversion(&id).to_string()).await;
                let json = if answer.status == StatusCode::ACCEPTED {
                    answer.json()
                } else {
                    Value::Null
                };
                posted.lock().unwrap().push(Posted {
                    id,
                    status: answer.status,
                    rules: json["rules"].as_str().unwrap_or_default().to_owned(),
                    webhooks: json["events"][0]["webhooks"]
                        .as_array()
                        .map(|l| l.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default(),
                });
            }
        })
    };
    let rules_status = || sidecar.admin_json("/v1/rules");
    // Waits until three events were posted after `from` under `hash`.
    let flowed = |hash: String, from: usize| {
        let posted = Arc::clone(&posted);
        async move {
            wait_until(&format!("events under rules {hash}"), || {
                posted.lock().unwrap()[from..]
                    .iter()
                    .filter(|p| p.rules == hash)
                    .count()
                    >= 3
            })
            .await;
        }
    };
    let len = || posted.lock().unwrap().len();

    let v0 = rules_status().await["hash"].as_str().unwrap().to_owned();
    flowed(v0.clone(), 0).await;

    // Add a file.
    save(&dir, "b.whc", &b("/b-v1"));
    let status = wait_until_async("b.whc to be loaded", rules_status, |s| {
        s["hash"] != v0.as_str()
    })
    .await;
    let v1 = status["hash"].as_str().unwrap().to_owned();
    assert_eq!(
        status["webhooks"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );
    flowed(v1.clone(), 0).await;

    // Change it.
    save(&dir, "b.whc", &b("/b-v2"));
    let status = wait_until_async("the change to be loaded", rules_status, |s| {
        s["hash"] != v1.as_str()
    })
    .await;
    let v2 = status["hash"].as_str().unwrap().to_owned();
    flowed(v2.clone(), 0).await;

    // Break it: the previous rules keep serving.
    save(
        &dir,
        "b.whc",
        &b("/b-v3").replace("greater than 50", "greater than"),
    );
    let status = wait_until_async("the error to show", rules_status, |s| {
        s["last_error"].is_string()
    })
    .await;
    assert_eq!(status["hash"], v2.as_str(), "broken rules are not served");
    assert!(
        status["last_error"].as_str().unwrap().contains("b.whc"),
        "the error names the file: {status:#}"
    );
    let broken_from = len();
    flowed(v2.clone(), broken_from).await;
    let status = rules_status().await;
    assert!(
        status["last_error"].is_string(),
        "still broken while those were posted"
    );
    let broken_until = len();

    // Fix it.
    save(&dir, "b.whc", &b("/b-v3"));
    let status = wait_until_async("the fix to be loaded", rules_status, |s| {
        s["hash"] != v2.as_str()
    })
    .await;
    assert!(status["last_error"].is_null(), "{status:#}");
    let v3 = status["hash"].as_str().unwrap().to_owned();
    flowed(v3.clone(), 0).await;

    stop.store(true, Ordering::SeqCst);
    poster.await.expect("the poster did not panic");
    let posted = posted.lock().unwrap().clone();

    // No post failed during any swap.
    let failed: Vec<_> = posted
        .iter()
        .filter(|p| p.status != StatusCode::ACCEPTED)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");

    // Each event fired what its rules version says, and versions only move forward.
    let expected: BTreeMap<&str, (usize, BTreeSet<String>, Option<&str>)> = BTreeMap::from([
        (v0.as_str(), (0, set(&["a_all"]), None)),
        (v1.as_str(), (1, set(&["a_all", "b_sales"]), Some("/b-v1"))),
        (v2.as_str(), (2, set(&["a_all", "b_sales"]), Some("/b-v2"))),
        (v3.as_str(), (3, set(&["a_all", "b_sales"]), Some("/b-v3"))),
    ]);
    assert_eq!(expected.len(), 4, "four distinct rule set hashes");
    let mut last = 0;
    for p in &posted {
        let (order, webhooks, _) = expected
            .get(p.rules.as_str())
            .unwrap_or_else(|| panic!("{} answered under unknown rules {}", p.id, p.rules));
        assert_eq!(&p.webhooks, webhooks, "{p:#?}");
        assert!(*order >= last, "rules went back in time at {}", p.id);
        last = *order;
    }
    for p in &posted[broken_from..broken_until] {
        assert_eq!(p.rules, v2, "posted while broken: {p:#?}");
    }

    // And the deliveries went where that version's rules said.
    let total: usize = posted.iter().map(|p| p.webhooks.len()).sum();
    wait_until(&format!("{total} deliveries"), || target.count() >= total).await;
    let by_event: BTreeMap<String, &Posted> = posted.iter().map(|p| (p.id.clone(), p)).collect();
    let mut seen = BTreeSet::new();
    for req in target.requests() {
        let body = req.json();
        let id = body["event"]["id"].as_str().unwrap().to_owned();
        let webhook = body["webhook"].as_str().unwrap().to_owned();
        assert!(
            seen.insert((id.clone(), webhook.clone())),
            "{webhook} fired twice for {id}"
        );
        let p = by_event[&id];
        let expected_path = match webhook.as_str() {
            "a_all" => "/a",
            _ => expected[p.rules.as_str()].2.expect("b fires only from v1"),
        };
        assert_eq!(req.path(), expected_path, "{id} under {}", p.rules);
    }
    assert_eq!(seen.len(), total);

    let sidecar = Arc::into_inner(sidecar).expect("the poster is done");
    sidecar.shutdown().await;
}
