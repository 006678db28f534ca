//! The console in a real browser (headless Chromium) against a real sidecar and loopback
//! receivers: every page loads, the log filters, a dead delivery opens and is replayed, the
//! Test button shows the answer, an event is explained, deliveries pause and resume; what a
//! receiver answers shows as text, never as markup.

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{Reply, Sidecar, Target, conversion, wait_until_async, webhook};

/// What the receiver of the failing webhook answers: markup that must not run or render.
const HOSTILE: &str = "<script>document.title='pwned'</script><b>no such hook</b>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_dead_delivery_replays_it_tests_and_explains() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let crm = Target::start().await;
    crm.script([Reply::with_body(404, HOSTILE)]);
    let sheet = Target::start().await;
    sheet.set_default(Reply::with_body(
        200,
        "{\"ok\": true, \"note\": \"<i>saved</i>\"}",
    ));
    let rules = format!(
        "{}{}{}",
        webhook(
            "crm",
            "conversion",
            "revenue > 50",
            &crm.url("/orders/[transaction]"),
            ""
        ),
        webhook("sheet", "conversion, refund", "", &sheet.url("/rows"), ""),
        webhook(
            "tiktok_refunds",
            "refund",
            "first.utm_source equals \"tiktok\"",
            &sheet.url("/tiktok"),
            ""
        )
    );
    let sidecar = Sidecar::builder()
        .file("sales.whc", &rules)
        .config(|c| c.admin_token = Some("s3cret-admin".into()))
        .start()
        .await;
    sidecar.accept(conversion("evt-1001").to_string()).await;
    for i in 0..4 {
        let mut event = conversion(&format!("evt-20{i}"));
        event["revenue"] = json!("12.50");
        sidecar.accept(event.to_string()).await;
    }
    sidecar
        .accept(
            json!({"id": "rf-7", "type": "refund", "transaction": "ORD-7", "revenue": "-12.5"})
                .to_string(),
        )
        .await;
    let dead = wait_until_async(
        "the crm delivery to go dead",
        || sidecar.deliveries("status=dead"),
        |d| d.len() == 1,
    )
    .await;
    let dead_id = dead[0]["id"].as_str().unwrap().to_owned();
    sheet.wait_for(6).await;
    if std::env::var_os("WHC_CONSOLE_SCREENSHOTS").is_some() {
        // The charts need two samples, 10 s apart.
        wait_until_async(
            "a second metrics sample",
            || sidecar.admin_json("/v1/history"),
            |h| h["samples"].as_array().unwrap().len() >= 3,
        )
        .await;
    }

    // The page loads without the token and asks for it; typed once, it is kept for the tab.
    let c = &browser.client;
    c.goto(&sidecar.admin_url("/")).await.unwrap();
    let token = browser.find("#token-input").await;
    assert!(
        browser
            .find("#token-form")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    token.send_keys("s3cret-admin").await.unwrap();
    browser.click("#token-form button[type=submit]").await;
    browser.find("main[data-ready=deliveries]").await;
    browser.wait_text("#page-info", "7 shown").await;
    assert!(
        !c.current_url().await.unwrap().as_str().contains("s3cret"),
        "never in a URL"
    );
    browser.screenshot("deliveries").await;

    // Filter the log: the dead one alone.
    browser
        .find("#f-status")
        .await
        .select_by_value("dead")
        .await
        .unwrap();
    browser.click("#apply").await;
    browser.wait_text("#page-info", "1 shown").await;
    assert_eq!(
        browser
            .count("#deliveries tbody tr[data-status=dead]")
            .await,
        1
    );
    // Free text on the transaction.
    browser.click("#reset").await;
    browser.wait_text("#page-info", "7 shown").await;
    browser.find("#f-q").await.send_keys("ORD-7").await.unwrap();
    browser.click("#apply").await;
    browser.wait_text("#page-info", "1 shown").await;
    browser.wait_text("#deliveries tbody", "rf-7").await;
    browser.click("#reset").await;
    browser.wait_text("#page-info", "7 shown").await;

    // Open the dead delivery: the receiver's markup shows as text and did not run.
    browser
        .click(&format!("#deliveries button[data-id='{dead_id}']"))
        .await;
    let excerpt = browser.wait_text("#response-excerpt", "<script>").await;
    assert_eq!(excerpt, HOSTILE);
    assert_eq!(browser.count("#delivery script, #delivery b").await, 0);
    assert_eq!(c.title().await.unwrap(), "whc console");
    browser
        .wait_text("#request-line", "/orders/txn-evt-1001")
        .await;

    // Replay it: the receiver now answers 200.
    browser.click("#replay").await;
    browser.wait_text("#message", "queued again").await;
    sidecar.wait_status(&dead_id, "delivered").await;
    assert_eq!(crm.count(), 2);
    // Opened again, it shows both attempts: the 404 and the 200.
    browser
        .click(&format!("#deliveries button[data-id='{dead_id}']"))
        .await;
    browser
        .wait_text("#attempts li[data-outcome=delivered]", "HTTP 200")
        .await;
    browser
        .wait_text("#attempts li[data-outcome=dead]", "HTTP 404")
        .await;
    browser
        .find(&format!(
            "#deliveries tr[data-id='{dead_id}'][data-status=delivered]"
        ))
        .await;
    browser.screenshot("delivery").await;

    // Webhooks: the rules, their counts, and the Test button's answer, as text.
    c.goto(&sidecar.admin_url("/#webhooks")).await.unwrap();
    browser.find("main[data-ready=webhooks]").await;
    browser
        .wait_text("#webhooks tr[data-webhook=crm]", "sales.whc:1")
        .await;
    browser
        .wait_text(
            "#webhooks tr[data-webhook=tiktok_refunds]",
            "first.utm_source",
        )
        .await;
    browser.click("button[data-test=sheet]").await;
    let report = browser
        .wait_text(".test-report[data-report-for=sheet]", "HTTP 200")
        .await;
    assert!(report.contains("<i>saved</i>"), "{report}");
    assert!(report.contains("/rows"), "{report}");
    assert_eq!(browser.count(".test-report i").await, 0);
    browser.screenshot("webhooks").await;

    // Try an event: an example, explained by the served rules.
    c.goto(&sidecar.admin_url("/#try")).await.unwrap();
    browser.find("main[data-ready=try]").await;
    browser
        .find("#pick")
        .await
        .select_by_value("example:conversion-facebook-us")
        .await
        .unwrap();
    browser.wait_text_value("#event", "evt-1001").await;
    browser.click("#explain").await;
    let crm_verdict = browser
        .wait_text(".verdict[data-webhook=crm]", "fires")
        .await;
    assert!(crm_verdict.contains("revenue > 50"), "{crm_verdict}");
    assert!(crm_verdict.contains("79.9"), "{crm_verdict}");
    browser
        .wait_text(".verdict[data-webhook=tiktok_refunds]", "does not listen")
        .await;
    browser.screenshot("try").await;

    // Health: pause and resume deliveries.
    c.goto(&sidecar.admin_url("/#health")).await.unwrap();
    browser.find("main[data-ready=health]").await;
    browser.wait_text("#paused-state", "running").await;
    browser.screenshot("health").await;
    browser.click("#pause-toggle").await;
    browser.wait_text("#paused-state", "paused").await;
    assert_eq!(sidecar.admin_json("/v1/webhooks").await["paused"], true);
    assert!(
        browser
            .find("#paused-badge")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    browser.click("#pause-toggle").await;
    browser.wait_text("#paused-state", "running").await;
    assert_eq!(sidecar.admin_json("/v1/webhooks").await["paused"], false);

    browser.close().await;
    sidecar.shutdown().await;
}
