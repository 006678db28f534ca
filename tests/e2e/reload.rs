//! Hot reload: the live rules against real files and the real OS watcher (add, break and fix
//! a rule file; SIGHUP; readers during swaps), and the sidecar while events flow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use whc::engine::RuleSet;
use whc::event::Event;
use whc::lang::Env;
use whc::sidecar::{LiveRules, RulesError, RulesStatus, WatchState};

use crate::support::{
    Sidecar, Target, conversion, save, signals, wait_until, wait_until_async, webhook,
};

/// Short debounce to keep the tests quick.
const DEBOUNCE: Duration = Duration::from_millis(30);

const WEBHOOK_A: &str = r#"
webhook a_sales {
    on conversion
    when revenue greater than 50
    post "https://a.example.com/hook?amount=[revenue]"
}
"#;

const WEBHOOK_B: &str = r#"
webhook b_refunds {
    on refund
    post "https://b.example.com/refund?txn=[transaction]"
}
"#;

const BROKEN_B: &str = r#"
webhook b_refunds {
    on refund
    when revenue greater than
    post "https://b.example.com/refund?txn=[transaction]"
}
"#;

fn env() -> Arc<dyn Env + Send + Sync> {
    Arc::new(HashMap::<String, String>::new())
}

fn names(rules: &RuleSet) -> Vec<&str> {
    rules.webhooks().iter().map(|w| w.name.as_str()).collect()
}

/// Waits until the status (its reload counters, version, last error) shows `done`.
async fn reloaded(
    rules: &LiveRules,
    what: &str,
    done: impl Fn(&RulesStatus) -> bool,
) -> RulesStatus {
    wait_until_async(what, || async { rules.status() }, done).await
}

fn start(
    dir: &Path,
) -> (
    Arc<LiveRules>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let rules = Arc::new(LiveRules::load(vec![dir.to_path_buf()], env()).expect("valid rules"));
    let cancel = CancellationToken::new();
    let watcher = Arc::clone(&rules).watch_with(cancel.clone(), DEBOUNCE);
    (rules, cancel, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_break_and_fix_a_rule_file() {
    let _signals = signals::watcher().await;
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "a.whc", WEBHOOK_A);
    let (rules, cancel, watcher) = start(dir.path());

    let first = rules.current();
    assert_eq!(names(&first), ["a_sales"]);
    let status = rules.status();
    assert_eq!((status.version, status.last_error.as_deref()), (1, None));
    assert_eq!(status.webhooks[0].events, ["conversion"]);
    assert_eq!(status.webhooks[0].method, "POST");

    // Add a file: a new version with both webhooks.
    save(dir.path(), "b.whc", WEBHOOK_B);
    let added = reloaded(&rules, "webhook B", |s| s.version > 1).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    assert_eq!(added.files.len(), 2);
    assert!(added.reloads_ok >= 1);
    // A request that started before the swap still has the rules it started with.
    assert_eq!(names(&first), ["a_sales"]);

    // Break it: the previous rules keep serving and the error is on the status.
    let failed_before = added.reloads_failed;
    save(dir.path(), "b.whc", BROKEN_B);
    let broken = reloaded(&rules, "the failed reload", |s| {
        s.reloads_failed > failed_before
    })
    .await;
    assert_eq!(
        broken.version, added.version,
        "a failed reload swaps nothing"
    );
    assert_eq!(broken.hash, added.hash);
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    let error = broken.last_error.as_deref().expect("last_error set");
    assert!(error.contains("b.whc"), "names the file:\n{error}");
    assert!(error.contains("1 error"), "counts the errors:\n{error}");
    assert!(broken.last_error_at.is_some());
    let json = serde_json::to_value(&broken).expect("status serializes");
    assert_eq!(json["last_error"], error);
    assert_eq!(
        json["webhooks"][1]["url"],
        "https://b.example.com/refund?txn=[transaction]"
    );

    // Fix it: a new version, the error cleared.
    let fixed_text = WEBHOOK_B.replace("txn=[transaction]", "txn=[transaction]&fixed=1");
    save(dir.path(), "b.whc", &fixed_text);
    let fixed = reloaded(&rules, "the fix", |s| s.version > broken.version).await;
    assert_eq!(fixed.last_error, None);
    assert_ne!(fixed.hash, added.hash);
    let current = rules.current();
    let b = current.get("b_refunds").expect("B served");
    assert!(b.request.url.source.ends_with("&fixed=1"));

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_swap_files_are_ignored() {
    let _signals = signals::watcher().await;
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "a.whc", WEBHOOK_A);
    let (rules, cancel, watcher) = start(dir.path());

    // Swap files and other noise next to a real change.
    std::fs::write(dir.path().join(".a.whc.swp"), "vim swap").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not rules").expect("write");
    save(dir.path(), "b.whc", WEBHOOK_B);
    let status = reloaded(&rules, "webhook B", |s| s.version > 1).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    assert_eq!(status.reloads_failed, 0);

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdirectory_moved_in_is_loaded() {
    let _signals = signals::watcher().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    save(&rules_dir, "a.whc", WEBHOOK_A);
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    save(&staging, "b.whc", WEBHOOK_B);
    let (rules, cancel, watcher) = start(&rules_dir);

    std::fs::rename(&staging, rules_dir.join("team_b")).expect("move folder in");
    reloaded(&rules, "the moved folder", |s| s.version > 1).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
}

#[test]
fn a_broken_directory_at_start_is_an_error_with_diagnostics() {
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "b.whc", BROKEN_B);
    let error = LiveRules::load(vec![dir.path().to_path_buf()], env()).expect_err("broken");
    let RulesError::Invalid { errors } = &error else {
        panic!("expected diagnostics: {error:?}");
    };
    assert!(errors.iter().all(|d| d.source.name.ends_with("b.whc")));
    let rendered = error.rendered();
    assert!(rendered.contains("b.whc"), "{rendered}");

    let missing: PathBuf = dir.path().join("nope");
    let error = LiveRules::load(vec![missing], env()).expect_err("missing");
    assert!(matches!(error, RulesError::Read(_)), "{error:?}");
    assert!(error.rendered().contains("nope"), "{}", error.rendered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let _alone = signals::hangup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "a.whc", WEBHOOK_A);
    // A debounce far longer than the test: only the signal can cause the reload.
    let rules = Arc::new(LiveRules::load(vec![dir.path().to_path_buf()], env()).expect("valid"));
    let cancel = CancellationToken::new();
    let watcher = Arc::clone(&rules).watch_with(cancel.clone(), Duration::from_secs(3600));

    // The handler is installed when `watch_with` returns, so the signal cannot kill us.
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = reloaded(&rules, "the SIGHUP reload", |s| s.version > 1).await;
    assert_eq!(status.last_error, None);

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
}

#[test]
fn readers_never_fail_during_swaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "a.whc", WEBHOOK_A);
    let rules = LiveRules::load(vec![dir.path().to_path_buf()], env()).expect("valid");
    let sale = Event::from_json_str(r#"{"type": "conversion", "revenue": 100}"#).expect("event");
    let stop = AtomicBool::new(false);
    const SWAPS: u64 = 40;

    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let set = rules.current();
                        let fired: Vec<_> = set.matching(&sale).map(|w| w.name.as_str()).collect();
                        assert_eq!(fired, ["a_sales"], "every set fires A for a sale");
                        let n = names(&set);
                        assert!(n == ["a_sales"] || n == ["a_sales", "b_refunds"], "{n:?}");
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        for i in 0..SWAPS {
            if i % 2 == 0 {
                save(dir.path(), "b.whc", WEBHOOK_B);
            } else {
                std::fs::remove_file(dir.path().join("b.whc")).expect("remove");
            }
            rules.reload().expect("valid rules reload");
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().expect("reader did not panic") > 0);
        }
    });
    let status = rules.status();
    assert_eq!((status.version, status.reloads_ok), (1 + SWAPS, SWAPS));
    assert_eq!(names(&rules.current()), ["a_sales"]);
}

/// An environment a test can change while the rules are live.
#[derive(Default)]
struct MutableEnv(Mutex<HashMap<String, String>>);

impl Env for MutableEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.lock().expect("env lock").get(name).cloned()
    }
}

/// A reload that finds the same files and the same values of the variables the rules read
/// keeps the served set (no second set is built); a changed file, or a changed variable,
/// compiles a new one. Either way it counts as a successful reload.
#[test]
fn a_reload_of_unchanged_rules_keeps_the_served_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = r#"
webhook signed {
    on conversion
    secret env("HOOK_SECRET")
    post "https://s.example.com/hook"
}
"#;
    save(dir.path(), "a.whc", WEBHOOK_A);
    save(dir.path(), "s.whc", signed);
    let env = Arc::new(MutableEnv::default());
    env.0
        .lock()
        .unwrap()
        .insert("HOOK_SECRET".into(), "one".into());
    let rules = LiveRules::load(vec![dir.path().to_path_buf()], env.clone()).expect("valid");
    let secret = |set: &RuleSet| {
        let w = set.get("signed").expect("signed webhook");
        w.request
            .secret
            .as_ref()
            .and_then(|s| s.value().map(str::to_owned))
    };
    let first = rules.current();

    rules.reload().expect("unchanged");
    assert!(
        Arc::ptr_eq(&first, &rules.current()),
        "the same set is served"
    );
    assert_eq!((rules.status().version, rules.status().reloads_ok), (2, 1));

    // The same text written again is no change either.
    save(dir.path(), "a.whc", WEBHOOK_A);
    rules.reload().expect("unchanged");
    assert!(Arc::ptr_eq(&first, &rules.current()));

    env.0
        .lock()
        .unwrap()
        .insert("HOOK_SECRET".into(), "two".into());
    rules.reload().expect("a changed variable");
    let second = rules.current();
    assert!(!Arc::ptr_eq(&first, &second), "compiled again");
    assert_eq!(secret(&second).as_deref(), Some("two"));

    save(dir.path(), "b.whc", WEBHOOK_B);
    rules.reload().expect("a new file");
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds", "signed"]);

    // A broken file keeps the set, and fixing it back to the served text is no change.
    let third = rules.current();
    save(dir.path(), "b.whc", BROKEN_B);
    rules.reload().expect_err("broken");
    save(dir.path(), "b.whc", WEBHOOK_B);
    rules.reload().expect("fixed");
    assert!(Arc::ptr_eq(&third, &rules.current()));
    let status = rules.status();
    assert_eq!(status.last_error, None, "a good reload clears the error");
    assert_eq!(
        (status.version, status.reloads_ok, status.reloads_failed),
        (6, 5, 1)
    );
}

// === the sidecar while events flow ===

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
    target.wait_for(total).await;
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

// === the rules folder on disk: links, and a folder replaced ===

#[cfg(unix)]
#[test]
fn symbolic_link_loops_load_each_webhook_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(rules_dir.join("team")).expect("mkdir");
    save(&rules_dir, "a.whc", WEBHOOK_A);
    save(&rules_dir.join("team"), "b.whc", WEBHOOK_B);
    symlink(".", rules_dir.join("a")).expect("link");
    symlink(".", rules_dir.join("b")).expect("link");
    symlink("..", rules_dir.join("team/up")).expect("link");

    // Followed, these never end (or read every file 80-120 times); now each folder once.
    let rules = LiveRules::load(vec![rules_dir.clone()], env()).expect("valid rules");
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    rules.reload().expect("a reload walks the same way");
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    assert_eq!(rules.current().files.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_folder_deleted_and_created_again_is_watched_again() {
    let _signals = signals::watcher().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    save(&rules_dir, "a.whc", WEBHOOK_A);
    let (rules, cancel, watcher) = start(&rules_dir);
    assert_eq!(rules.status().watcher, WatchState::Watching);

    // A deploy: `rm -rf rules && cp -r new rules`.
    std::fs::remove_dir_all(&rules_dir).expect("rm -rf");
    let gone = reloaded(&rules, "the failed reload of a missing folder", |s| {
        s.reloads_failed >= 1 && s.watcher == WatchState::Missing
    })
    .await;
    assert_eq!(
        names(&rules.current()),
        ["a_sales"],
        "the old rules keep serving"
    );
    assert!(
        gone.last_error.as_deref().unwrap_or("").contains("rules"),
        "{gone:#?}"
    );
    std::fs::create_dir(&rules_dir).expect("mkdir again");
    save(&rules_dir, "b.whc", WEBHOOK_B);
    let back = reloaded(&rules, "the new folder's rules", |s| {
        s.reloads_ok >= 1 && s.webhooks.len() == 1 && s.webhooks[0].name == "b_refunds"
    })
    .await;
    assert_eq!(back.watcher, WatchState::Watching);
    assert_eq!(back.last_error, None);

    // And the new folder is watched: a change in it is seen.
    save(&rules_dir, "a.whc", WEBHOOK_A);
    reloaded(&rules, "a change in the new folder", |s| {
        s.reloads_ok > back.reloads_ok
    })
    .await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);

    // Twice, and quickly: the new folder may even get the old one's inode.
    std::fs::remove_dir_all(&rules_dir).expect("rm -rf");
    std::fs::create_dir(&rules_dir).expect("mkdir again");
    save(&rules_dir, "a.whc", WEBHOOK_A);
    let before = rules.status().reloads_ok;
    reloaded(&rules, "the rules of the folder replaced at once", |s| {
        s.reloads_ok > before && s.webhooks.len() == 1 && s.webhooks[0].name == "a_sales"
    })
    .await;
    save(&rules_dir, "b.whc", WEBHOOK_B);
    let before = rules.status().reloads_ok;
    reloaded(&rules, "a change in that folder", |s| s.reloads_ok > before).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
    assert_eq!(rules.status().watcher, WatchState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_post_is_answered_while_a_large_rules_listing_is_scraped() {
    // 3,000 webhooks: the listing is about 0.6 MB.
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&webhook(
            &format!("w{i:04}"),
            "conversion",
            &format!("first.utm_source equals \"s{i}\""),
            &format!("https://hooks.example.com/{i}?txn=[transaction]"),
            "",
        ));
    }
    let sidecar = Arc::new(Sidecar::builder().file("big.whc", &text).start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            let (sidecar, stop) = (Arc::clone(&sidecar), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut scraped = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let status = sidecar.admin_json("/v1/rules").await;
                    assert_eq!(status["webhooks"].as_array().map(Vec::len), Some(3000));
                    scraped += 1;
                }
                scraped
            })
        })
        .collect();
    // Posts go on, each answered well within a generous deadline, while scrapes run.
    for i in 0..20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            sidecar.post_events(conversion(&format!("during-scrape-{i}")).to_string()),
        )
        .await
        .expect("an event post is answered while /v1/rules is scraped");
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    stop.store(true, Ordering::SeqCst);
    let mut scraped = 0;
    for s in scrapers {
        scraped += s.await.expect("a scraper did not panic");
    }
    assert!(scraped > 0);
    let metrics = sidecar.metrics().await;
    assert!(metrics.contains("whc_webhooks 3000"), "{metrics}");
    assert!(metrics.contains("whc_rules_watched 1"), "{metrics}");
    Arc::into_inner(sidecar)
        .expect("scrapers done")
        .shutdown()
        .await;
}
