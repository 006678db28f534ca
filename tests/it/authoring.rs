//! The authoring tools as a user runs them: `whc test` against real loopback servers, `whc cases`
//! (failures, JUnit, coverage), `whc check --format github`, and colour control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;

use super::support::dir;

// === a loopback target ===

/// A request as the target saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How the target behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every request with this status and body.
    Answer(u16, &'static str),
    /// Accept connections and never answer.
    Silent,
}

/// A real hyper HTTP/1 server on 127.0.0.1:0, on its own runtime (the tests block on the
/// binary). Dropping it stops it.
struct Target {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The peer of each accepted connection, in the order accepted.
    accepted: Mutex<mpsc::Receiver<SocketAddr>>,
    _runtime: tokio::runtime::Runtime,
}

impl Target {
    fn start(behaviour: Behaviour) -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_by_server = seen.clone();
        let (accepted_tx, accepted) = mpsc::channel();
        runtime.spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let _ = accepted_tx.send(peer);
                let (status, body) = match behaviour {
                    Behaviour::Silent => {
                        held.push(stream); // open, never read, never answered
                        continue;
                    }
                    Behaviour::Answer(status, body) => (status, body),
                };
                let seen = seen_by_server.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let bytes = incoming.collect().await.unwrap().to_bytes();
                        seen.lock().unwrap().push(Seen {
                            path: parts.uri.to_string(),
                            headers: parts.headers,
                            body: bytes,
                        });
                        let reply = Response::builder()
                            .status(status)
                            .header("X-Target", "loopback")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .unwrap();
                        Ok::<_, Infallible>(reply)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Target {
            addr,
            seen,
            accepted: Mutex::new(accepted),
            _runtime: runtime,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The peer of the next connection accepted; fails the test if none comes in 30 s.
    fn next_connection(&self) -> SocketAddr {
        self.accepted
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("a connection within 30 s")
    }
}

/// A loopback port nothing listens on.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// === running the binary ===

const TOKEN: &str = "tok-3f9a1c-very-secret";

/// Rules with one enabled and one disabled webhook posting to `addr`.
fn target_rules(addr: &str) -> TempDir {
    let rules = format!(
        r#"
webhook hook {{
    on conversion
    post "http://{addr}/hook?txn=[transaction]"
    header "Authorization" = env("WHC_IT_TOKEN")
    header "X-Team" = "growth"
    timeout 300ms
}}

webhook hook_off {{
    on refund
    get "http://{addr}/off?r=[revenue]"
    timeout 300ms
    disabled
}}
"#
    );
    dir(&[("rules/t.whc", &rules)])
}

/// Runs `whc` in `dir` with the token set, `NO_COLOR` set, and the given extra variables.
fn whc(dir: &Path, args: &[&str]) -> Output {
    whc_env(dir, args, &[("NO_COLOR", Some("1"))])
}

fn whc_env(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whc"));
    cmd.args(args)
        .current_dir(dir)
        .env("WHC_IT_TOKEN", TOKEN)
        .env_remove("NO_COLOR");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

// === whc test ===

#[test]
fn test_against_2xx_sends_a_marked_request_and_masks_the_secret() {
    let target = Target::start(Behaviour::Answer(200, "thanks"));
    let rules = target_rules(&target.addr.to_string());
    let out = whc(rules.path(), &["test", "hook", "hook_off"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("< 200 OK"), "{text}");
    assert!(text.contains("< x-target: loopback"), "{text}");
    assert!(text.contains("< thanks"), "{text}");
    assert!(
        text.contains("> POST http://") && text.contains("/hook?txn=whc-test-transaction"),
        "{text}"
    );
    assert!(text.contains("> Authorization: ••••••"), "{text}");
    assert!(text.contains("> Whc-Test: true"), "{text}");
    assert!(text.contains("ok: answered in"), "{text}");
    assert!(text.contains("webhook disabled: tested anyway"), "{text}");
    assert!(!text.contains(TOKEN), "the secret leaked:\n{text}");

    let seen = target.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let hook = seen.iter().find(|s| s.path.starts_with("/hook")).unwrap();
    assert_eq!(hook.headers["whc-test"], "true");
    assert_eq!(hook.headers["authorization"], TOKEN);
    assert_eq!(hook.headers["x-team"], "growth");
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["webhook"], "hook");
    assert_eq!(body["event"]["transaction"], "whc-test-transaction");
    // The disabled webhook was sent too, with the sample event of the kind it listens to.
    let off = seen.iter().find(|s| s.path.starts_with("/off")).unwrap();
    assert_eq!(off.path, "/off?r=49.99");
    assert_eq!(off.headers["whc-test"], "true");
}

#[test]
fn test_against_500_exits_1() {
    let target = Target::start(Behaviour::Answer(500, "boom"));
    let rules = target_rules(&target.addr.to_string());
    let out = whc(rules.path(), &["test", "hook"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("< 500 Internal Server Error"), "{text}");
    assert!(
        text.contains("failed: answered 500 Internal Server Error"),
        "{text}"
    );
    assert_eq!(target.seen().len(), 1);
}

#[test]
fn test_against_a_silent_server_ends_at_the_rule_timeout() {
    let target = Target::start(Behaviour::Silent);
    let rules = target_rules(&target.addr.to_string());
    let started = Instant::now();
    let out = whc(rules.path(), &["test", "hook"]);
    let took = started.elapsed();
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("failed: no answer within 300 ms"), "{text}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn test_against_a_refused_port_says_so() {
    let rules = target_rules(&format!("127.0.0.1:{}", refused_port()));
    let out = whc(rules.path(), &["test", "hook"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("failed: connection refused"), "{text}");
}

#[test]
fn test_dry_run_sends_nothing() {
    let target = Target::start(Behaviour::Answer(200, "ok"));
    let rules = target_rules(&target.addr.to_string());
    let out = whc(rules.path(), &["test", "hook", "--dry-run"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("dry run: not sent"), "{text}");
    assert!(text.contains("> Whc-Test: true"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    // The run has exited, so any connection it made is already queued at the target; the
    // listener accepts first in, first out, so if ours is the first accepted, it made none.
    let barrier = std::net::TcpStream::connect(target.addr).unwrap();
    assert_eq!(
        target.next_connection(),
        barrier.local_addr().unwrap(),
        "the dry run connected to the target"
    );
    assert!(target.seen().is_empty());
}

#[test]
fn test_json_report_and_event_file() {
    let target = Target::start(Behaviour::Answer(201, "{\"id\": 7}"));
    let rules = target_rules(&target.addr.to_string());
    let event = r#"{"type": "conversion", "transaction": "T-1", "revenue": 5}"#;
    std::fs::write(rules.path().join("e.json"), event).unwrap();
    let out = whc(
        rules.path(),
        &["test", "hook", "--event", "e.json", "--format", "json"],
    );
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains(TOKEN));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &doc[0];
    assert_eq!(report["ok"], true);
    assert_eq!(report["sent"], true);
    assert_eq!(report["response"]["status"], 201);
    assert_eq!(report["response"]["body"], "{\"id\": 7}");
    assert!(
        report["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/hook?txn=T-1")
    );
    assert!(report["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(target.seen()[0].path, "/hook?txn=T-1");
}

#[test]
fn test_unknown_webhook_suggests_a_name() {
    let rules = target_rules("127.0.0.1:9");
    let out = whc(rules.path(), &["test", "hok"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("did you mean `hook`?"),
        "{}",
        stderr(&out)
    );
}

// === whc cases ===

const SALES: &str = r#"
webhook big_sales {
    on conversion
    when revenue greater than 50
    when last.country equals "US"
    post "https://api.example.com/track?amount=[revenue]"
}

webhook refunds {
    on refund
    post "https://crm.example.com/refund?txn=[transaction]"
}

webhook tiktok {
    on conversion
    when isFromTikTokAds
    post "https://tiktok.example.com/t"
}
"#;

fn cases_dir(cases: &str) -> TempDir {
    dir(&[
        ("rules/sales.whc", SALES),
        ("rules/sales.cases.json", cases),
        (
            "events/big.json",
            r#"{"type": "conversion", "revenue": 80, "lastClick": {"country": "US"}}"#,
        ),
    ])
}

const PASSING: &str = r#"{"cases": [
  {"name": "big US sale", "event_file": "../events/big.json", "fires": ["big_sales"],
   "urls": {"big_sales": "https://api.example.com/track?amount=80"}},
  {"name": "small sale", "event": {"type": "conversion", "revenue": 10, "isFromTikTokAds": false}, "fires": []},
  {"name": "refund", "event": {"type": "refund", "transaction": "A&B"}, "fires": ["refunds"],
   "urls": {"refunds": "https://crm.example.com/refund?txn=A%26B"}}
]}"#;

const FAILING: &str = r#"{"cases": [
  {"name": "big US sale", "event_file": "../events/big.json", "fires": ["big_sales"]},
  {"name": "small <sale> & \"more\"", "event": {"type": "conversion", "revenue": 10, "lastClick": {"country": "US"}},
   "fires": ["big_sales"]},
  {"name": "refund", "event": {"type": "refund", "transaction": "A"}, "fires": ["refunds"],
   "urls": {"refunds": "https://crm.example.com/refund?txn=B"}}
]}"#;

#[test]
fn cases_pass_and_the_bundled_rules_are_fully_covered() {
    let d = cases_dir(PASSING);
    let out = whc(d.path(), &["cases"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("3 cases in 1 file: 3 passed, 0 failed"));

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = whc(
        repo,
        &["cases", "--rules", "rules", "--min-coverage", "100"],
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("webhooks:   7/7 fired by some case (100%)"),
        "{text}"
    );
    assert!(text.contains("made both true and false (100%)"), "{text}");
}

#[test]
fn cases_failures_show_expected_actual_and_explain() {
    let d = cases_dir(FAILING);
    let out = whc(d.path(), &["cases"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("FAIL small <sale>"), "{text}");
    assert!(text.contains("expected: big_sales\n"), "{text}");
    assert!(text.contains("actual:   (none)"), "{text}");
    assert!(text.contains("missing:  big_sales"), "{text}");
    // explain shows which condition went the other way
    assert!(text.contains("big_sales: does not fire"), "{text}");
    assert!(
        text.contains("✗ revenue greater than 50    (read 10)"),
        "{text}"
    );
    assert!(text.contains("✓ last.country equals \"US\""), "{text}");
    // URL mismatch
    assert!(
        text.contains("expected: https://crm.example.com/refund?txn=B"),
        "{text}"
    );
    assert!(
        text.contains("actual:   https://crm.example.com/refund?txn=A"),
        "{text}"
    );
    assert!(
        text.contains("3 cases in 1 file: 1 passed, 2 failed"),
        "{text}"
    );

    let out = whc(d.path(), &["cases", "--format", "json"]);
    assert_exit(&out, 1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["failed"], 2);
    let case = &doc["files"][0]["cases"][1];
    assert_eq!(case["expected"]["fires"], serde_json::json!(["big_sales"]));
    assert_eq!(case["actual"]["fires"], serde_json::json!([]));
    assert_eq!(case["explain"][0]["webhook"], "big_sales");
}

#[test]
fn cases_junit_counts_and_escaping() {
    let d = cases_dir(FAILING);
    let out = whc(d.path(), &["cases", "--junit", "report.xml"]);
    assert_exit(&out, 1);
    let xml = std::fs::read_to_string(d.path().join("report.xml")).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testsuites name="whc cases" tests="3" failures="2" errors="0""#),
        "{xml}"
    );
    assert!(
        xml.contains(
            r#"<testsuite name="rules/sales.cases.json" tests="3" failures="2" errors="0""#
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(
        xml.contains(r#"name="small &lt;sale&gt; &amp; &quot;more&quot;""#),
        "{xml}"
    );
    assert!(xml.contains(r#"<testcase classname="rules/sales.cases.json" name="big US sale""#));
    assert!(xml.trim_end().ends_with("</testsuites>"));
    // Balanced elements, no raw `<` or `&` in text.
    assert_eq!(
        xml.matches("<testsuite ").count(),
        xml.matches("</testsuite>").count()
    );
    assert_eq!(
        xml.matches("<failure ").count(),
        xml.matches("</failure>").count()
    );
    assert!(!xml.contains("<sale>"), "{xml}");
}

#[test]
fn cases_coverage_gaps_and_threshold() {
    let only_big = r#"{"cases": [
      {"name": "big US sale", "event_file": "../events/big.json", "fires": ["big_sales"]}
    ]}"#;
    let d = cases_dir(only_big);
    let out = whc(d.path(), &["cases", "--coverage"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("webhooks:   1/3 fired by some case (33.3%)"),
        "{text}"
    );
    assert!(text.contains("`refunds`: no case fires it"), "{text}");
    assert!(text.contains("`tiktok`: no case fires it"), "{text}");
    assert!(
        text.contains("conditions: 0/3 made both true and false (0%)"),
        "{text}"
    );
    assert!(
        text.contains("rules/sales.whc:4:10 `big_sales`: `revenue greater than 50` never false"),
        "{text}"
    );
    assert!(text.contains("`isFromTikTokAds` never true"), "{text}");

    let out = whc(d.path(), &["cases", "--min-coverage", "100"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("webhook coverage 33.3% is below --min-coverage 100%"),
        "{text}"
    );
    let out = whc(d.path(), &["cases", "--min-coverage", "0"]);
    assert_exit(&out, 0);

    let d = cases_dir(PASSING);
    let out = whc(d.path(), &["cases", "--coverage", "--format", "json"]);
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["coverage"]["webhooks"]["covered"], 2);
    assert_eq!(
        doc["coverage"]["webhooks_not_fired"],
        serde_json::json!(["tiktok"])
    );
}

#[test]
fn cases_files_are_not_rule_files() {
    let d = cases_dir(PASSING);
    let out = whc(d.path(), &["check", "rules", "--deny-warnings"]);
    assert_exit(&out, 0);
}

// === whc check --format github ===

#[test]
fn check_github_annotations() {
    let rules = r#"webhook a {
    on conversoin
    post "https://x.example.com/"
}

webhook b {
    on conversion
    when country equals "UK"
    post "https://x.example.com/b"
}
"#;
    let d = dir(&[("rules/a.whc", rules)]);
    let out = whc(d.path(), &["check", "--format", "github"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(
            "::error file=rules/a.whc,line=2,col=8,title=whc%3A%3Aunknown_event::unknown event `conversoin`%0Ahelp: "
        ),
        "{text}"
    );
    assert!(
        lines[1].starts_with("::warning file=rules/a.whc,line=8,col="),
        "{text}"
    );
    assert!(lines[1].contains("title=whc%3A%3Acountry_code::"), "{text}");
    assert!(lines.iter().all(|l| !l.contains('\r')));

    // The other commands refuse it clearly.
    let out = whc(d.path(), &["cases", "--format", "github"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("only for `whc check`"),
        "{}",
        stderr(&out)
    );
}

// === colour ===

#[test]
fn no_color_and_color_flag_across_commands() {
    let d = cases_dir(PASSING);
    let event = d.path().join("events/big.json");
    let event = event.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["check"],
        &["explain", event],
        &["cases", "--coverage"],
        &["test", "big_sales", "--dry-run"],
    ];
    for args in commands {
        // NO_COLOR, not a terminal: plain.
        let out = whc_env(d.path(), args, &[("NO_COLOR", Some("1"))]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stdout(&out).contains('\x1b'),
            "{args:?}:\n{}",
            stdout(&out)
        );
        // auto without a terminal: plain.
        let out = whc_env(d.path(), args, &[]);
        assert!(
            !stdout(&out).contains('\x1b'),
            "{args:?}:\n{}",
            stdout(&out)
        );
        // --color never with NO_COLOR unset: plain.
        let mut never = args.to_vec();
        never.extend(["--color", "never"]);
        let out = whc_env(d.path(), &never, &[]);
        assert!(
            !stdout(&out).contains('\x1b'),
            "{args:?}:\n{}",
            stdout(&out)
        );
        // --color always: escapes even without a terminal, the flag beating NO_COLOR.
        let mut always = args.to_vec();
        always.extend(["--color", "always"]);
        for env in [None, Some("1")] {
            let out = whc_env(d.path(), &always, &[("NO_COLOR", env)]);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            assert!(
                stdout(&out).contains("\x1b["),
                "{args:?}:\n{}",
                stdout(&out)
            );
        }
    }
}
