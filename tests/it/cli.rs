//! The `whc` binary: `whc check` and `whc explain` run as a user runs them, on temporary dirs.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::support::{command, dir as rules, whc};

const CLEAN: &str = r#"
webhook facebook_big_sales {
    on conversion
    when first.utm_source equals "facebook"
    when revenue greater than 50
    when last.country equals "US"
    post "https://api.example.com/track?amount=[revenue]&txn=[transaction]"
}
"#;

fn whc_with_env(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = command(dir, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(out)))
}

/// The string at `key` of every object in a JSON array, in order.
#[track_caller]
fn strings<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array: {list}"))
        .iter()
        .map(|item| {
            item[key]
                .as_str()
                .unwrap_or_else(|| panic!("no string `{key}` in {item}"))
        })
        .collect()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_exits_0_on_clean_rules() {
    let dir = rules(&[("rules/sales.whc", CLEAN)]);
    let out = whc(dir.path(), &["check"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("ok: 1 webhooks in 1 file"),
        "{}",
        stdout(&out)
    );
    let out = whc(
        dir.path(),
        &["check", "rules", "--format", "json", "--deny-warnings"],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out), serde_json::json!([]));
}

#[test]
fn check_exits_1_on_errors() {
    let dir = rules(&[(
        "bad.whc",
        "webhook w {\n    on conversion\n    when revenue contains \"5\"\n    post \"https://x.test/\"\n}\n",
    )]);
    let out = whc(dir.path(), &["check", "bad.whc"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("whc::operator_type"), "{text}");
    assert!(text.contains("1 error, 0 warnings in 1 file"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour when piped: {text:?}");
}

#[test]
fn warnings_exit_0_unless_denied() {
    let dir = rules(&[(
        "http.whc",
        "webhook w {\n    on conversion\n    post \"http://api.example.com/\"\n}\n",
    )]);
    let out = whc(dir.path(), &["check", "."]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("0 errors, 1 warning in 1 file"),
        "{}",
        stdout(&out)
    );
    let out = whc(dir.path(), &["check", ".", "--deny-warnings"]);
    assert_exit(&out, 1);
    let out = whc(
        dir.path(),
        &["check", ".", "--deny-warnings", "--format", "json"],
    );
    assert_exit(&out, 1);
    assert_eq!(json(&out)[0]["severity"], "warning");
    assert_eq!(json(&out)[0]["code"], "whc::insecure_url");
}

#[test]
fn json_lists_every_problem_with_one_based_positions() {
    let text = "\
webhook one {
    on conversion
    when utm_sorce equals \"facebook\"
    post \"https://x.test/1\"
}

webhook two {
    on conversoin
    post \"https://x.test/2\"
}

webhook three {
    on refund
\twhen revenue > \"50\"
    post \"https://x.test/[revenu]\"
}
";
    let dir = rules(&[("three.whc", text)]);
    let out = whc(dir.path(), &["check", "three.whc", "--format", "json"]);
    assert_exit(&out, 1);
    let list = json(&out);
    let list = list.as_array().expect("one JSON array");
    let got: Vec<(&str, &str, u64, u64)> = list
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap(),
                d["severity"].as_str().unwrap(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("whc::unknown_field", "error", 3, 10),
            ("whc::unknown_event", "error", 8, 8),
            ("whc::literal_type", "error", 14, 17),
            ("whc::unknown_token", "error", 15, 26),
        ]
    );
    for d in list {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        let mut keys = keys;
        keys.sort();
        assert_eq!(
            keys,
            [
                "code", "column", "file", "help", "line", "message", "severity"
            ]
        );
        assert_eq!(d["file"], "three.whc");
    }
    assert_eq!(list[0]["message"], "unknown field `utm_sorce`");
    assert!(
        list[0]["help"]
            .as_str()
            .unwrap()
            .starts_with("the fields are")
    );
}

#[test]
fn every_file_of_a_directory_is_checked_in_one_run() {
    let dir = rules(&[
        (
            "rules/a.whc",
            "webhook a {\n    on conversoin\n    post \"https://x.test/\"\n}\n",
        ),
        ("rules/nested/b.whc", "webhook b {\n    on refund\n}\n"),
        ("rules/.hidden.whc", "this is not checked"),
        ("rules/notes.txt", "nor is this"),
    ]);
    let out = whc(dir.path(), &["check", "--format", "json"]);
    assert_exit(&out, 1);
    let list = json(&out);
    assert_eq!(
        strings(&list, "file"),
        ["rules/a.whc", "rules/nested/b.whc"]
    );
}

#[test]
fn check_on_a_missing_path_is_a_usage_error() {
    let dir = rules(&[]);
    let out = whc(dir.path(), &["check", "nope"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn explain_json_shows_each_condition_and_the_url() {
    let dir = rules(&[
        ("rules/sales.whc", CLEAN),
        (
            "rules/refunds.whc",
            "webhook refunds {\n    on refund\n    when revenue > 1\n    post \"https://x.test/r\"\n}\n",
        ),
        (
            "event.json",
            r#"{"type": "conversion", "revenue": "60", "transaction": "a&b=c d",
                "firstClick": {"utm_source": "facebook", "country": "DE"},
                "lastClick": {"utm_source": "google", "country": "us"}}"#,
        ),
    ]);
    let out = whc(
        dir.path(),
        &[
            "explain",
            "--rules",
            "rules",
            "event.json",
            "--format",
            "json",
        ],
    );
    assert_exit(&out, 0);
    let list = json(&out);
    let by_name = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["webhook"] == name)
            .unwrap_or_else(|| panic!("no report for {name}: {list}"))
            .clone()
    };
    assert_eq!(list.as_array().unwrap().len(), 2);
    let sales = &by_name("facebook_big_sales");
    assert_eq!(sales["webhook"], "facebook_big_sales");
    assert_eq!(sales["fires"], true);
    assert_eq!(
        sales["url"],
        "https://api.example.com/track?amount=60&txn=a%26b%3Dc%20d"
    );
    assert_eq!(
        sales["conditions"],
        serde_json::json!([
            {"condition": "first.utm_source equals \"facebook\"", "value": "\"facebook\" (first click)", "holds": true},
            {"condition": "revenue greater than 50", "value": "60", "holds": true},
            {"condition": "last.country equals \"US\"", "value": "\"us\" (last click)", "holds": true},
        ])
    );
    let refunds = &by_name("refunds");
    assert_eq!(refunds["webhook"], "refunds");
    assert_eq!(refunds["fires"], false);
    assert_eq!(refunds["url"], Value::Null);

    // The human form says the same.
    let out = whc(dir.path(), &["explain", "--rules", "rules", "event.json"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("facebook_big_sales: fires"), "{text}");
    assert!(text.contains("(read \"facebook\" (first click))"), "{text}");
    assert!(
        text.contains("refunds: does not fire: listens to refund"),
        "{text}"
    );
}

#[test]
fn explain_refuses_a_bad_event_or_broken_rules() {
    let dir = rules(&[
        ("rules/sales.whc", CLEAN),
        (
            "bad_event.json",
            r#"{"type": "conversion", "revenue": "lots"}"#,
        ),
        (
            "broken/x.whc",
            "webhook x {\n    on sale\n    post \"https://x.test/\"\n}\n",
        ),
        ("event.json", r#"{"type": "refund"}"#),
    ]);
    let out = whc(
        dir.path(),
        &["explain", "--rules", "rules", "bad_event.json"],
    );
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revenue"), "names the key: {err}");
    let out = whc(dir.path(), &["explain", "--rules", "broken", "event.json"]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("whc::unknown_event"), "{err}");
}

#[test]
fn the_bundled_rules_check_clean() {
    let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The only acceptable problems are unset variables; set those and check again.
    let out = whc(here, &["check", bundled, "--format", "json"]);
    assert_exit(&out, 0);
    let mut vars = Vec::new();
    for d in json(&out).as_array().unwrap() {
        assert_eq!(d["code"], "whc::env_unset", "{d}");
        let message = d["message"].as_str().unwrap();
        let var = message.split('`').nth(1).unwrap().to_owned();
        vars.push((var, "test-value".to_owned()));
    }
    let out = whc_with_env(here, &["check", bundled, "--deny-warnings"], &vars);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("no problems"), "{}", stdout(&out));
}

#[test]
fn a_path_without_rule_files_is_a_warning() {
    let dir = rules(&[("rules/notes.txt", "not a rule file")]);
    let out = whc(dir.path(), &["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let list = json(&out);
    assert_eq!(list[0]["code"], "whc::no_rules");
    assert_eq!(list[0]["severity"], "warning");
    let denied = whc(dir.path(), &["check", "--deny-warnings"]);
    assert_eq!(denied.status.code(), Some(1));
}

#[test]
fn an_unreadable_rule_file_is_one_error_among_the_others() {
    let dir = rules(&[
        ("good.whc", CLEAN),
        (
            "bad.whc",
            "webhook w {\n    on conversion\n    when revenue contains \"5\"\n    post \"https://x.test/\"\n}\n",
        ),
    ]);
    // Latin-1 bytes: not UTF-8.
    std::fs::write(dir.path().join("latin1.whc"), b"# caf\xe9\nwebhook x {}\n").unwrap();
    let out = whc(dir.path(), &["check", "--format", "json", "."]);
    assert_exit(&out, 1);
    let problems = json(&out);
    let codes = strings(&problems, "code");
    assert!(codes.contains(&"whc::read_file"), "{problems:#}");
    assert!(
        codes.contains(&"whc::operator_type"),
        "the other files are still checked: {problems:#}"
    );
    let unreadable = problems
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "whc::read_file")
        .unwrap();
    assert!(
        unreadable["file"].as_str().unwrap().ends_with("latin1.whc"),
        "{unreadable:#}"
    );
    assert_eq!(unreadable["severity"], "error");
    assert!(
        unreadable["help"].as_str().unwrap().contains("UTF-8"),
        "{unreadable:#}"
    );

    // The human report names the file too.
    let human = stdout(&whc(dir.path(), &["check", "."]));
    assert!(human.contains("latin1.whc"), "{human}");
    assert!(human.contains("cannot read the rule file"), "{human}");
    assert!(human.contains("in 3 files"), "{human}");
}

#[test]
fn a_ca_cert_that_cannot_be_read_is_a_usage_error_naming_it() {
    let dir = rules(&[("hooks.whc", CLEAN)]);
    std::fs::write(dir.path().join("junk.pem"), "no certificate here\n").unwrap();
    for file in ["missing.pem", "junk.pem"] {
        let out = whc(
            dir.path(),
            &[
                "test",
                "--rules",
                ".",
                "--dry-run",
                "--ca-cert",
                file,
                "facebook_big_sales",
            ],
        );
        assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file), "{err}");
    }
}

/// Runs `whc` in `dir` and kills it after `limit`: a walk that never ends fails the test
/// instead of hanging it.
#[cfg(unix)]
fn whc_within(dir: &Path, args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = command(dir, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "whc {args:?} still running after {limit:?}; stdout so far:\n{}",
                stdout(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn symbolic_link_loops_are_walked_once_with_a_warning() {
    use std::os::unix::fs::symlink;
    let limit = std::time::Duration::from_secs(60);
    let dir = rules(&[
        ("rules/hooks.whc", CLEAN),
        (
            "rules/team/more.whc",
            &CLEAN.replace("facebook_big_sales", "team_sales"),
        ),
    ]);
    let rules_dir = dir.path().join("rules");
    // Two links to the folder itself: 2^40 paths before the kernel's ELOOP, if followed.
    symlink(".", rules_dir.join("a")).unwrap();
    symlink(".", rules_dir.join("b")).unwrap();
    // A link up: walking it finds the rules folder again.
    symlink("..", rules_dir.join("team/up")).unwrap();
    // A second name of a file already read.
    symlink("hooks.whc", rules_dir.join("again.whc")).unwrap();

    let out = whc_within(dir.path(), &["check", "--format", "json", "rules"], limit);
    assert_exit(&out, 0);
    let problems = json(&out);
    let codes = strings(&problems, "code");
    assert!(
        codes.iter().all(|c| *c == "whc::skipped_link"),
        "{problems:#}"
    );
    let files = strings(&problems, "file");
    for skipped in ["rules/a", "rules/b", "rules/again.whc"] {
        assert!(files.contains(&skipped), "{skipped} reported: {problems:#}");
    }
    assert!(
        files.iter().any(|f| f.starts_with("rules/team/up")),
        "the link up reported: {problems:#}"
    );
    assert!(
        problems[0]["message"].as_str().unwrap().contains("loop"),
        "{problems:#}"
    );

    // Each webhook once: no duplicate_webhook, and the summary counts two files.
    let human = whc_within(dir.path(), &["check", "rules"], limit);
    assert_exit(&human, 0);
    assert!(stdout(&human).contains("in 2 files"), "{}", stdout(&human));
    let denied = whc_within(dir.path(), &["check", "--deny-warnings", "rules"], limit);
    assert_exit(&denied, 1);
}

/// `whc serve` running as the real binary; killed if the test fails half-way.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on its own connection; the answer's status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e}): {answer:?}"));
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn serve_keeps_working_and_stops_on_sigterm_after_its_stderr_is_closed() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // Port 1 refuses connections: every attempt fails and is logged.
    let dir = rules(&[(
        "rules/hook.whc",
        "webhook hook {\n    on conversion\n    post \"http://127.0.0.1:1/hook\"\n}\n",
    )]);
    let mut child = command(
        dir.path(),
        &[
            "serve",
            "--rules",
            "rules",
            "--data",
            "data",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--retry-schedule",
            "50ms",
        ],
    )
    .env("WHC_LOG", "debug")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start whc serve");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut serving = Serving(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the first line");
    let (events, admin) = line
        .trim()
        .strip_prefix("whc serve: events on http://")
        .and_then(|rest| rest.split_once(", admin on http://"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let (events, admin) = (events.to_owned(), admin.to_owned());
    // As `whc serve 2>&1 | head -1` does when head has its line: both pipes lose their reader,
    // and every later write to them fails with EPIPE.
    drop(stderr);

    let mut ids = Vec::new();
    for i in 0..3 {
        let event = format!(r#"{{"id": "e{i}", "type": "conversion", "revenue": "1"}}"#);
        let (status, body) = http(&events, "POST", "/v1/events", &event);
        assert_eq!(status, 202, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        ids.push(
            answer["events"][0]["deliveries"][0]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The dispatcher keeps working: each delivery is attempted (and fails, logging).
    let start = Instant::now();
    for id in &ids {
        loop {
            let (status, body) = http(&admin, "GET", &format!("/v1/deliveries/{id}"), "");
            assert_eq!(status, 200, "{body}");
            let delivery: Value = serde_json::from_str(&body).unwrap();
            if delivery["attempts"].as_u64() >= Some(1) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "delivery never attempted: {delivery:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let pid = serving.0.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = serving.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "whc serve ignored SIGTERM with its stderr closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "whc serve exited with {exit} after SIGTERM");
}

#[test]
fn the_source_presets_check_clean_and_their_cases_pass() {
    let presets = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sources");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = whc(here, &["check", presets, "--format", "json"]);
    assert_exit(&out, 0);
    let mut vars = Vec::new();
    for d in json(&out).as_array().unwrap() {
        assert_eq!(d["code"], "whc::env_unset", "{d}");
        let message = d["message"].as_str().unwrap();
        vars.push((
            message.split('`').nth(1).unwrap().to_owned(),
            "t".to_owned(),
        ));
    }
    assert_eq!(vars.len(), 7, "one secret per preset");
    let out = whc_with_env(here, &["check", presets, "--deny-warnings"], &vars);
    assert_exit(&out, 0);
    let out = whc(here, &["fmt", "--check", presets]);
    assert_exit(&out, 0);
    let out = whc(
        here,
        &[
            "cases",
            "--rules",
            presets,
            "--min-coverage",
            "100",
            "--format",
            "json",
        ],
    );
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(report["coverage"]["sources"]["covered"], 7, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
}

#[test]
fn a_case_through_a_source_fails_when_the_mapping_differs() {
    let dir = rules(&[
        (
            "rules/in.whc",
            r#"
source t {
    route get "/in/t"
    secret query "k" = env("K")
    id = query "txid"
    revenue = query "sum"
    status = query "st" { "ok" -> conversion, "pending" -> ignore }
}
webhook w {
    on conversion
    post "https://x.test/w?sum=[revenue]"
}
"#,
        ),
        (
            "rules/in.cases.json",
            r#"{"cases": [
                {"name": "maps", "source": "t", "request": {"url": "/in/t?txid=1&sum=5&st=ok"},
                 "mapped": {"revenue": 6}, "fires": ["w"]},
                {"name": "refuses", "source": "t", "request": {"url": "/in/t?sum=x&st=ok"},
                 "refused": "sum", "fires": []},
                {"name": "ignores", "source": "t", "request": {"url": "/in/t?sum=1&st=pending"},
                 "ignored": "st", "fires": []},
                {"name": "ignored, not mapped", "source": "t",
                 "request": {"url": "/in/t?sum=1&st=pending"}, "fires": ["w"]},
                {"name": "mapped, not ignored", "source": "t",
                 "request": {"url": "/in/t?sum=1&st=ok"}, "ignored": "st", "fires": ["w"]},
                {"name": "unknown source", "source": "s", "request": {"url": "/in/t"}, "fires": []}
            ]}"#,
        ),
    ]);
    let out = whc(dir.path(), &["cases", "--format", "json"]);
    assert_exit(&out, 1);
    let report = json(&out);
    assert_eq!(report["passed"], 2, "{report}");
    assert_eq!(report["failed"], 4, "{report}");
    let text = report.to_string();
    assert!(text.contains("there is no source `s`"), "{text}");
    assert!(
        text.contains(r#"the source ignored the request: st \"pending\" is ignored"#),
        "{text}"
    );
    assert!(
        text.contains("expected the source to ignore the request naming `st`"),
        "{text}"
    );
}

#[test]
fn explain_maps_a_postback_url_with_a_source() {
    let dir = rules(&[(
        "rules/in.whc",
        r#"
source voluum {
    route get "/in/voluum"
    secret query "k" = env("K")
    id = query "txid"
    type = query "et" { "sale" -> conversion, "lead" -> event 2 }
    status = query "st" { "hold" -> ignore }
    last.externalId = query "externalid"
}
webhook net {
    on event 2
    get "https://net.example/pb?click=[last.externalId]"
}
"#,
    )]);
    let out = whc(
        dir.path(),
        &[
            "explain",
            "--source",
            "voluum",
            "https://whc.example/in/voluum?txid=1&et=lead&externalid=g1",
        ],
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("\"type\": \"event2\""), "{text}");
    assert!(text.contains("net: fires"), "{text}");
    assert!(text.contains("click=g1"), "{text}");
    let out = whc(
        dir.path(),
        &["explain", "--source", "voluum", "/in/voluum?et=refund"],
    );
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("query parameter \"et\""), "{err}");
    let out = whc(
        dir.path(),
        &[
            "explain",
            "--source",
            "voluum",
            "/in/voluum?et=lead&st=hold",
        ],
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("source voluum ignores the request: st \"hold\" is ignored"),
        "{text}"
    );
    assert!(!text.contains("net:"), "{text}");
}
