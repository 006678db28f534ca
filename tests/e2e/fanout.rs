//! Matching and fan-out: which webhooks an event fires, and what each target receives.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use whc::deliver::{Secret, verify};

use crate::support::{Sidecar, Target, conversion, webhook};

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_fans_out_to_every_matching_webhook_and_no_other() {
    let [a, b, c, d, e] = [
        Target::start().await,
        Target::start().await,
        Target::start().await,
        Target::start().await,
        Target::start().await,
    ];
    let rules = [
        webhook(
            "big_sales",
            "conversion",
            "revenue greater than 50",
            &a.url("/a"),
            "",
        ),
        webhook(
            "from_facebook",
            "conversion",
            "first.utm_source equals \"facebook\"",
            &b.url("/b"),
            "",
        ),
        webhook("refunds", "refund", "", &c.url("/c"), ""),
        webhook(
            "small_sales",
            "conversion",
            "revenue less than 10",
            &d.url("/d"),
            "",
        ),
        webhook(
            "switched_off",
            "conversion",
            "",
            &e.url("/e"),
            "    disabled\n",
        ),
    ]
    .concat();
    let sidecar = Sidecar::start(&rules).await;

    let answer = sidecar.accept(conversion("evt-1").to_string()).await;
    let event = &answer["events"][0];
    assert_eq!(event["id"], "evt-1");
    assert_eq!(event["duplicate"], false);
    assert_eq!(
        names(&event["webhooks"]),
        BTreeSet::from(["big_sales".to_owned(), "from_facebook".to_owned()])
    );

    let got_a = a.wait_for(1).await;
    let got_b = b.wait_for(1).await;
    // Every delivery is settled before looking at who got nothing.
    let all = sidecar.deliveries("").await;
    assert_eq!(all.len(), 2, "{all:#?}");
    for d in &all {
        sidecar
            .wait_status(d["id"].as_str().unwrap(), "delivered")
            .await;
    }
    for (got, webhook, path) in [(&got_a, "big_sales", "/a"), (&got_b, "from_facebook", "/b")] {
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, hyper::Method::POST);
        assert_eq!(got[0].path(), path);
        let body = got[0].json();
        assert_eq!(body["webhook"], webhook);
        assert_eq!(body["type"], "conversion");
        assert_eq!(body["event"]["id"], "evt-1");
        assert_eq!(
            body["delivery"].as_str(),
            got[0].header("idempotency-key"),
            "the envelope names the delivery"
        );
    }
    assert_eq!((c.count(), d.count(), e.count()), (0, 0, 0));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_reserved_characters_stays_one_query_parameter() {
    let target = Target::start().await;
    let url = target.url("/track?txn=[transaction]&amount=[revenue]");
    let sidecar = Sidecar::start(&webhook("track", "conversion", "", &url, "")).await;

    let mut event = conversion("evt-amp");
    event["transaction"] = json!("a&b=c d");
    sidecar.accept(event.to_string()).await;

    let got = target.wait_for(1).await;
    assert_eq!(got[0].path(), "/track");
    assert_eq!(
        got[0].query_pairs(),
        vec![
            ("txn".to_owned(), "a&b=c d".to_owned()),
            ("amount".to_owned(), "79.9".to_owned()),
        ],
        "raw query: {}",
        got[0].query()
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_event_id_is_not_fanned_out_twice() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("all", "conversion", "", &target.url("/"), "")).await;

    let first = sidecar.accept(conversion("dup-1").to_string()).await;
    assert_eq!(first["events"][0]["duplicate"], false);
    let again = sidecar.accept(conversion("dup-1").to_string()).await;
    assert_eq!(again["events"][0]["duplicate"], true);
    assert_eq!(again["events"][0]["webhooks"], json!([]));
    assert_eq!(
        again["events"][0]["deliveries"], first["events"][0]["deliveries"],
        "a duplicate answers with the first delivery ids"
    );
    sidecar.accept(conversion("other-1").to_string()).await;

    // Two events, two deliveries: no row for the duplicate, and once both are settled the
    // target's count is final.
    let all = sidecar.deliveries("").await;
    assert_eq!(all.len(), 2, "{all:#?}");
    for d in &all {
        sidecar
            .wait_status(d["id"].as_str().unwrap(), "delivered")
            .await;
    }
    let got = target.requests();
    let for_dup = got
        .iter()
        .filter(|r| r.json()["event"]["id"] == "dup-1")
        .count();
    assert_eq!((got.len(), for_dup), (2, 1));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_verifies_with_the_standard_webhooks_algorithm() {
    let target = Target::start().await;
    let secret = Secret::from_bytes(b"e2e-signing-key-32-bytes-long!!!".to_vec()).unwrap();
    let sidecar = Sidecar::builder()
        .file(
            "signed.whc",
            &webhook(
                "signed",
                "conversion",
                "",
                &target.url("/signed"),
                "    secret env(\"HOOK_SECRET\")\n",
            ),
        )
        .env("HOOK_SECRET", &secret.to_whsec())
        .start()
        .await;

    sidecar.accept(conversion("evt-signed").to_string()).await;
    let got = target.wait_for(1).await;
    let req = &got[0];
    let id = req.header("webhook-id").expect("webhook-id");
    let timestamp: i64 = req
        .header("webhook-timestamp")
        .expect("webhook-timestamp")
        .parse()
        .expect("timestamp is an integer");
    let signature = req.header("webhook-signature").expect("webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    assert!(
        verify(&secret, id, timestamp, &req.body, signature),
        "signature {signature} does not verify over {id}.{timestamp}.body"
    );
    let other = Secret::from_bytes(b"some-other-key-that-is-32-bytes!".to_vec()).unwrap();
    assert!(!verify(&other, id, timestamp, &req.body, signature));
    assert_eq!(req.header("idempotency-key"), Some(id));
    // The secret never reaches the store or the admin API.
    target.wait("delivered", |r| r.len() == 1).await;
    let listed = sidecar.deliveries("").await;
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&secret.to_whsec()), "{text}");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_from_the_environment_are_sent_but_never_stored() {
    let target = Target::start().await;
    let rules = r#"
webhook crm {
    on conversion
    get "URL?event=[event]&visitor=[visitor]"
    header "Authorization" = env("CRM_TOKEN")
    header "X-Source" = "whc-e2e"
}
"#
    .replace("URL", &target.url("/crm"));
    let sidecar = Sidecar::builder()
        .file("crm.whc", &rules)
        .env("CRM_TOKEN", "Bearer tok-9f8e")
        .start()
        .await;

    sidecar.accept(conversion("evt-get").to_string()).await;
    let got = target.wait_for(1).await;
    let req = &got[0];
    assert_eq!(req.method, hyper::Method::GET);
    assert!(req.body.is_empty(), "a GET sends no body");
    assert_eq!(
        req.query_pairs(),
        vec![
            ("event".to_owned(), "conversion".to_owned()),
            ("visitor".to_owned(), "v-1".to_owned())
        ]
    );
    assert_eq!(req.header("authorization"), Some("Bearer tok-9f8e"));
    assert_eq!(req.header("x-source"), Some("whc-e2e"));
    assert!(
        req.header("user-agent")
            .is_some_and(|ua| ua.starts_with("whc/")),
        "{:?}",
        req.header("user-agent")
    );
    let key = req.header("idempotency-key").expect("idempotency-key");
    let stored = sidecar.wait_status(key, "delivered").await;
    let text = stored.to_string();
    assert!(!text.contains("tok-9f8e"), "the token was stored: {text}");
    assert!(text.contains("CRM_TOKEN"), "{text}");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_of_one_event_id_fan_out_once() {
    let target = Target::start().await;
    let sidecar = Sidecar::start(&webhook("once", "conversion", "", &target.url("/"), "")).await;
    let sidecar = std::sync::Arc::new(sidecar);
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..16 {
        let sidecar = std::sync::Arc::clone(&sidecar);
        // Every post carries the same id; half of them also carry a new one.
        let body = if i % 2 == 0 {
            json!([conversion("same"), conversion(&format!("own-{i}"))])
        } else {
            conversion("same")
        };
        posts.spawn(async move { sidecar.accept(body.to_string()).await });
    }
    let mut first = 0;
    while let Some(answer) = posts.join_next().await {
        let answer = answer.expect("post task");
        for e in answer["events"].as_array().unwrap() {
            if e["id"] == "same" && e["duplicate"] == false {
                first += 1;
            }
        }
    }
    assert_eq!(first, 1, "exactly one post is the first for the shared id");
    let all = sidecar.deliveries("").await;
    assert_eq!(all.len(), 1 + 8, "{all:#?}");
    for d in &all {
        sidecar
            .wait_status(d["id"].as_str().unwrap(), "delivered")
            .await;
    }
    let same = target
        .requests()
        .iter()
        .filter(|r| r.json()["event"]["id"] == "same")
        .count();
    assert_eq!((same, target.count()), (1, 9));
    let sidecar = std::sync::Arc::into_inner(sidecar).unwrap();
    sidecar.shutdown().await;
}
