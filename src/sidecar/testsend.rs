//! Test sends (the product page's Test button): one real request for a webhook, built exactly
//! as a delivery would be, marked with `Whc-Test: true`, and a report of what came back.

use std::time::Duration;

use serde_json::json;

use crate::deliver::{Client, Draft, MASK, Outcome, masked, prepare};
use crate::event::{Attribution, ClickField, Event, EventKind, FlagField, IdField, NumberField};
use crate::lang::{Env, Webhook};

use super::fanout::{body_of, render};

/// The sample event a test sends when none is given. Every field has a value that says it is a
/// test; the event kind is the first the webhook listens to.
pub fn sample_event_for(webhook: &Webhook) -> Event {
    let kind = webhook
        .events
        .kinds()
        .next()
        .unwrap_or(EventKind::Conversion);
    let mut e = Event::new(kind);
    e.id = Some("whc-test-event".into());
    e.transaction = Some("whc-test-transaction".into());
    e.visitor = Some("whc-test-visitor".into());
    e.occurred_at = Some("2026-01-01T00:00:00Z".into());
    e.numbers[NumberField::Revenue.slot()] = Some(49.99);
    e.numbers[NumberField::QualityScore.slot()] = Some(80.0);
    e.numbers[NumberField::ConversionCount.slot()] = Some(1.0);
    e.numbers[NumberField::EventCount.slot()] = Some(1.0);
    e.flags = [Some(false); 3];
    e.flags[FlagField::IsFromFacebookAds.slot()] = Some(true);
    e.ids[IdField::LinkId.slot()] = Some("1".into());
    e.ids[IdField::TargetId.slot()] = Some("1".into());
    for (attribution, click) in [
        (Attribution::First, &mut e.first_click),
        (Attribution::Last, &mut e.last_click),
    ] {
        for field in ClickField::ALL {
            let value = match field {
                ClickField::Country => "US".to_owned(),
                ClickField::DeviceType => "mobile".to_owned(),
                ClickField::Referrer => "https://example.com/".to_owned(),
                other => format!("whc-test-{}-{}", attribution.keyword(), other.name()),
            };
            click.set(field, Some(value));
        }
    }
    e
}

/// What a test send did: the request as sent (secrets masked) and the answer.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// The webhook tested.
    pub webhook: String,
    /// `GET` or `POST`.
    pub method: String,
    /// The rendered URL.
    pub url: String,
    /// Headers sent, values from the environment masked.
    pub headers: Vec<(String, String)>,
    /// The body sent.
    pub body: Option<String>,
    /// The answer, or why there was none.
    pub result: Result<TestResponse, String>,
    /// How long the attempt took.
    pub elapsed: Duration,
    /// Whether a request was actually sent (false for a dry run or when it could not be built).
    pub sent: bool,
    /// Whether the request could be built (false when, say, its signing secret is not set).
    pub prepared: bool,
    /// Whether this was a dry run (rendered, not sent).
    pub dry_run: bool,
}

/// The endpoint's answer to a test send.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The start of the body.
    pub body: String,
    /// Whether the body was cut.
    pub truncated: bool,
}

impl TestReport {
    /// Whether the endpoint answered 2xx.
    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok(r) if (200..300).contains(&r.status))
    }

    /// Why the test failed, in one line: the send error ("no answer within 5 s", "connection
    /// refused by ..."), a non-2xx status, or why the request could not be built. `None` when
    /// the endpoint answered 2xx, or when a dry run rendered the request.
    pub fn failure(&self) -> Option<String> {
        match &self.result {
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(r) => Some(format!("answered {}", status_line(r.status))),
            Err(_) if self.dry_run && self.prepared => None,
            Err(e) => Some(e.clone()),
        }
    }

    /// The report as JSON, for `--format json` and the admin API.
    pub fn to_json(&self) -> serde_json::Value {
        let pairs = |h: &[(String, String)]| -> Vec<serde_json::Value> {
            h.iter()
                .map(|(n, v)| json!({ "name": n, "value": v }))
                .collect()
        };
        let (response, error) = match &self.result {
            Ok(r) => (
                json!({
                    "status": r.status,
                    "headers": pairs(&r.headers),
                    "body": r.body,
                    "truncated": r.truncated,
                }),
                serde_json::Value::Null,
            ),
            Err(e) => (serde_json::Value::Null, json!(e)),
        };
        json!({
            "webhook": self.webhook,
            "sent": self.sent,
            "dry_run": self.dry_run,
            "ok": self.ok(),
            "failure": self.failure(),
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": pairs(&self.headers),
                "body": self.body,
            },
            "response": response,
            "error": error,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1000.0,
        })
    }
}

/// Renders the webhook's request for `event` and, unless `dry_run`, sends it once.
pub async fn run(
    client: &Client,
    webhook: &Webhook,
    event: &Event,
    env: &dyn Env,
    dry_run: bool,
) -> TestReport {
    let delivery = render(webhook, event, 1);
    let body = body_of(&delivery, event);
    let draft = Draft {
        id: &delivery.id,
        method: &delivery.method,
        url: &delivery.url,
        headers: &delivery.headers,
        body: body.as_deref(),
        secret_env: delivery.secret_env.as_deref(),
        timeout_ms: delivery.timeout_ms,
        test: true,
    };
    let mut report = TestReport {
        webhook: webhook.name.clone(),
        method: delivery.method.clone(),
        url: delivery.url.clone(),
        headers: Vec::new(),
        body: body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        result: Err("not sent (dry run)".into()),
        elapsed: Duration::ZERO,
        sent: false,
        prepared: false,
        dry_run,
    };
    let prepared = match prepare(&draft, env) {
        Ok(p) => p,
        Err(err) => {
            report.result = Err(err.to_string());
            return report;
        }
    };
    report.prepared = true;
    // Values from the environment are already masked; credential-like literal headers
    // (`Authorization: Bearer ...` written in the file) are masked too.
    report.headers = prepared
        .shown_headers
        .into_iter()
        .map(|(name, value)| {
            if value == MASK {
                (name, value)
            } else {
                let pair = [(name, value)];
                masked(&pair).swap_remove(0)
            }
        })
        .collect();
    if dry_run {
        return report;
    }
    let attempt = client.send(prepared.request).await;
    report.sent = true;
    report.elapsed = attempt.elapsed;
    report.result = match attempt.outcome {
        Outcome::Response(r) => Ok(TestResponse {
            status: r.status,
            body: r.excerpt_text(),
            headers: r.headers,
            truncated: r.truncated,
        }),
        Outcome::Failed(err) => Err(err.to_string()),
    };
    report
}

/// `200 OK`, `500 Internal Server Error`: the status with its reason phrase when it has one.
pub fn status_line(status: u16) -> String {
    match hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}
