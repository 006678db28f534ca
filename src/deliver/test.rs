//! Test sends (the product page's Test button): one real request for a webhook, built exactly
//! as a delivery would be, marked with `Whc-Test: true`, and a report of what came back.

use std::time::Duration;

use serde_json::json;

use crate::event::{
    Attribution, ClickField, Event, EventKind, FlagField, IdField, NumberField, TextField,
};
use crate::lang::{Env, Webhook};

use super::client::Client;
use super::headers::masked;
use super::outcome::Outcome;
use super::prepare::{Draft, MASK, prepare};
use super::render::{new_body, render};

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
    e.set_number(NumberField::Revenue, Some(49.99));
    e.set_number(NumberField::QualityScore, Some(80.0));
    e.set_number(NumberField::ConversionCount, Some(1.0));
    e.set_number(NumberField::EventCount, Some(1.0));
    e.flags = [Some(false); 3];
    e.flags[FlagField::IsFromFacebookAds.slot()] = Some(true);
    e.ids[IdField::LinkId.slot()] = Some("1".into());
    e.ids[IdField::TargetId.slot()] = Some("1".into());
    e.texts[TextField::Currency.slot()] = Some("USD".into());
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

/// Whether a test sends its request or only renders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMode {
    /// Send it once, for real.
    Send,
    /// Render it and stop (`whc test --dry-run`).
    DryRun,
}

/// What came of a test send.
#[derive(Debug, Clone)]
pub enum TestResult {
    /// The request could not be built (its signing secret is not set, say): why.
    Unprepared(String),
    /// Rendered and not sent, as a dry run asks.
    Rendered,
    /// Sent once.
    Sent {
        /// The endpoint's answer, or why there was none.
        answer: Result<TestResponse, String>,
        /// How long the attempt took.
        elapsed: Duration,
    },
}

/// What a test send did: the request as sent (secrets masked) and what came of it.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// The webhook tested.
    pub webhook: String,
    /// `GET` or `POST`.
    pub method: String,
    /// The rendered URL.
    pub url: String,
    /// Headers sent, values from the environment masked (empty when unprepared).
    pub headers: Vec<(String, String)>,
    /// The body sent.
    pub body: Option<String>,
    /// What the test was asked to do.
    pub mode: TestMode,
    /// What came of it.
    pub result: TestResult,
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
    /// The endpoint's answer, when it answered.
    pub fn response(&self) -> Option<&TestResponse> {
        match &self.result {
            TestResult::Sent { answer: Ok(r), .. } => Some(r),
            _ => None,
        }
    }

    /// How long the attempt took (zero when nothing was sent).
    pub fn elapsed(&self) -> Duration {
        match &self.result {
            TestResult::Sent { elapsed, .. } => *elapsed,
            _ => Duration::ZERO,
        }
    }

    /// Whether the endpoint answered 2xx.
    pub fn ok(&self) -> bool {
        self.response()
            .is_some_and(|r| (200..300).contains(&r.status))
    }

    /// Why the test failed, in one line: the send error ("no answer within 5 s", "connection
    /// refused by ..."), a non-2xx status, or why the request could not be built. `None` when
    /// the endpoint answered 2xx, or when a dry run rendered the request.
    pub fn failure(&self) -> Option<String> {
        match &self.result {
            TestResult::Rendered => None,
            TestResult::Unprepared(e) => Some(e.clone()),
            TestResult::Sent { answer: Err(e), .. } => Some(e.clone()),
            TestResult::Sent { answer: Ok(r), .. } if (200..300).contains(&r.status) => None,
            TestResult::Sent { answer: Ok(r), .. } => {
                Some(format!("answered {}", status_line(r.status)))
            }
        }
    }

    /// The report as JSON, for `--format json` and the admin API.
    pub fn to_json(&self) -> serde_json::Value {
        let pairs = |h: &[(String, String)]| -> Vec<serde_json::Value> {
            h.iter()
                .map(|(n, v)| json!({ "name": n, "value": v }))
                .collect()
        };
        let response = self.response().map_or(serde_json::Value::Null, |r| {
            json!({
                "status": r.status,
                "headers": pairs(&r.headers),
                "body": r.body,
                "truncated": r.truncated,
            })
        });
        let error = match &self.result {
            TestResult::Unprepared(e) | TestResult::Sent { answer: Err(e), .. } => json!(e),
            TestResult::Rendered => json!("not sent (dry run)"),
            TestResult::Sent { answer: Ok(_), .. } => serde_json::Value::Null,
        };
        json!({
            "webhook": self.webhook,
            "sent": matches!(self.result, TestResult::Sent { .. }),
            "dry_run": self.mode == TestMode::DryRun,
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
            "elapsed_ms": self.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// Renders the webhook's request for `event` exactly as a delivery would be, marked
/// `Whc-Test: true`, and in [`TestMode::Send`] sends it once.
pub async fn run(
    client: &Client,
    webhook: &Webhook,
    event: &Event,
    env: &dyn Env,
    mode: TestMode,
) -> TestReport {
    let delivery = render(webhook, event, 1);
    let body = new_body(&delivery, event);
    let mut report = TestReport {
        webhook: webhook.name.clone(),
        method: delivery.method.clone(),
        url: delivery.url.clone(),
        headers: Vec::new(),
        body: body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        mode,
        result: TestResult::Rendered,
    };
    let prepared = match prepare(&Draft::test(&delivery, body.as_deref()), env) {
        Ok(p) => p,
        Err(err) => {
            report.result = TestResult::Unprepared(err.to_string());
            return report;
        }
    };
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
    if mode == TestMode::DryRun {
        return report;
    }
    let attempt = client.send(prepared.request).await;
    report.result = TestResult::Sent {
        elapsed: attempt.elapsed,
        answer: match attempt.outcome {
            Outcome::Response(r) => Ok(TestResponse {
                status: r.status,
                body: r.excerpt_text(),
                truncated: r.truncated(),
                headers: r.headers,
            }),
            Outcome::Failed(err) => Err(err.to_string()),
        },
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
