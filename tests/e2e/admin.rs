//! The admin API: the Test button and the Prometheus metrics.

use std::collections::{BTreeMap, BTreeSet};

use hyper::StatusCode;

use crate::support::{Reply, Sidecar, Target, conversion, counter, webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_button_sends_a_marked_request_and_reports_the_answer() {
    let target = Target::start().await;
    target.script([Reply::Answer {
        status: 418,
        headers: vec![("x-from".into(), "the-target".into())],
        body: "short and stout".into(),
    }]);
    let sidecar = Sidecar::start(&webhook(
        "teapot",
        "conversion",
        "",
        &target.url("/brew"),
        "",
    ))
    .await;

    let answer = sidecar.admin_post("/v1/webhooks/teapot/test").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let report = answer.json();
    assert_eq!(report["webhook"], "teapot");
    assert_eq!(report["sent"], true);
    assert_eq!(report["ok"], false);
    assert_eq!(report["response"]["status"], 418, "{report:#}");
    assert_eq!(report["response"]["body"], "short and stout");
    let headers = report["response"]["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h["name"] == "x-from" && h["value"] == "the-target"),
        "{report:#}"
    );

    let got = target.requests();
    assert_eq!(got.len(), 1, "the test button sends exactly one request");
    assert_eq!(got[0].path(), "/brew");
    assert_eq!(got[0].header("whc-test"), Some("true"));
    assert_eq!(got[0].json()["webhook"], "teapot");
    // A test send is not a delivery.
    assert!(sidecar.deliveries("").await.is_empty());

    let missing = sidecar.admin_post("/v1/webhooks/nope/test").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    sidecar.shutdown().await;
}

/// Checks the Prometheus text format (0.0.4) line by line and returns every sample.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed = BTreeSet::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "TYPE twice for {name}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in `{line}`"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in `{line}`"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in `{line}`"));
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "sample before its TYPE line: {line}"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "sample twice: {series}"
        );
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_counters_of_a_delivery() {
    let target = Target::start().await;
    target.script([Reply::status(503)]);
    let sidecar = Sidecar::start(&webhook("m", "conversion", "", &target.url("/"), "")).await;

    let answer = sidecar.accept(conversion("evt-m").to_string()).await;
    let id = answer["events"][0]["deliveries"][0]
        .as_str()
        .unwrap()
        .to_owned();
    sidecar.wait_status(&id, "delivered").await;
    sidecar.accept(conversion("evt-m").to_string()).await;

    let samples = parse_prometheus(&sidecar.metrics().await);
    let get = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no `{series}` in {samples:#?}"))
    };
    assert_eq!(get("whc_events_total{result=\"accepted\"}"), 1.0);
    assert_eq!(get("whc_events_total{result=\"duplicate\"}"), 1.0);
    assert_eq!(get("whc_events_total{result=\"rejected\"}"), 0.0);
    assert_eq!(get("whc_delivery_attempts_total{outcome=\"retry\"}"), 1.0);
    assert_eq!(
        get("whc_delivery_attempts_total{outcome=\"delivered\"}"),
        1.0
    );
    assert_eq!(get("whc_delivery_attempts_total{outcome=\"dead\"}"), 0.0);
    assert_eq!(get("whc_delivery_attempt_seconds_count"), 2.0);
    assert_eq!(get("whc_delivery_attempt_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert_eq!(get("whc_queue_depth"), 0.0);
    assert_eq!(get("whc_webhooks"), 1.0);
    assert_eq!(get("whc_rules_version"), 1.0);
    // Two event posts and two attempt records went through the writer, in at most that many
    // commits (prunes may add writes of their own).
    let (writes, commits) = (
        get("whc_outbox_writes_total"),
        get("whc_outbox_commits_total"),
    );
    assert!(writes >= 4.0, "{writes} writes");
    assert!((1.0..=writes).contains(&commits), "{commits} commits");
    assert!(get("whc_outbox_writer_busy_seconds_total") > 0.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(k, _)| k.starts_with("whc_delivery_attempt_seconds_bucket"))
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.iter().all(|v| *v <= 2.0));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_button_works_for_quoted_names_and_disabled_webhooks() {
    let target = Target::start().await;
    let rules = format!(
        "webhook \"paused hook\" {{\n    on refund\n    post \"{}\"\n    disabled\n}}\n",
        target.url("/paused")
    );
    let sidecar = Sidecar::start(&rules).await;
    let answer = sidecar.admin_post("/v1/webhooks/paused%20hook/test").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let report = answer.json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["response"]["status"], 200);
    let got = target.wait_for(1).await;
    assert_eq!(got[0].header("whc-test"), Some("true"));
    assert_eq!(
        got[0].json()["type"],
        "refund",
        "the sample is an event it listens to"
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deliveries_are_stored_and_sent_on_resume() {
    let target = Target::start().await;
    let sidecar = Sidecar::builder()
        .file(
            "hooks.whc",
            &webhook("crm", "conversion", "", &target.url("/crm"), ""),
        )
        .config(|c| c.paused = true)
        .start()
        .await;
    let metrics = sidecar.metrics().await;
    assert_eq!(counter(&metrics, "whc_deliveries_paused"), 1.0);

    // Paused from the start: the event is accepted and its delivery waits.
    let answer = sidecar.accept(conversion("p-1").to_string()).await;
    let first = answer["events"][0]["deliveries"][0]
        .as_str()
        .expect("a delivery id")
        .to_owned();
    // Pausing again changes nothing.
    let again = sidecar.admin_post("/v1/deliveries/pause").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["changed"], false);
    // Long enough for an open dispatcher to have sent it many times over. Not
    // synchronisation: nothing happens while paused, so there is no event to wait on; this is
    // the window in which the absence is asserted (a slow machine can only make it pass
    // vacuously, never fail spuriously).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(target.count(), 0, "nothing is sent while paused");
    let waiting = sidecar.delivery(&first).await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["attempts"], 0);

    let resumed = sidecar.admin_post("/v1/deliveries/resume").await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.json()["changed"], true);
    let got = target.wait_for(1).await;
    assert_eq!(got[0].path(), "/crm");
    sidecar.wait_status(&first, "delivered").await;
    assert_eq!(
        counter(&sidecar.metrics().await, "whc_deliveries_paused"),
        0.0
    );

    // Paused through the API this time.
    let paused = sidecar.admin_post("/v1/deliveries/pause").await;
    assert_eq!(paused.json()["changed"], true);
    let answer = sidecar.accept(conversion("p-2").to_string()).await;
    let second = answer["events"][0]["deliveries"][0]
        .as_str()
        .expect("a delivery id")
        .to_owned();
    // The same absence window as above.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(target.count(), 1, "the second waits while paused");
    sidecar.admin_post("/v1/deliveries/resume").await;
    sidecar.wait_status(&second, "delivered").await;
    assert_eq!(target.wait_for(2).await.len(), 2);
    sidecar.shutdown().await;
}
