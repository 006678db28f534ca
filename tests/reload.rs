//! Hot reload against real files and the real OS watcher: add, break and fix a rule file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use whc::engine::RuleSet;
use whc::event::Event;
use whc::lang::Env;
use whc::sidecar::{LiveRules, RulesError, RulesStatus};

/// SIGHUP reaches every watcher in this process: the test that sends it runs alone (write lock),
/// the others side by side (read lock), so no test sees a reload it did not cause.
static SIGNALS: RwLock<()> = RwLock::const_new(());

/// How long a change may take to be seen; generous for loaded CI machines.
const PATIENCE: Duration = Duration::from_secs(20);
/// Short debounce to keep the test quick.
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

/// Writes like an editor: a temporary file in the same directory, renamed over the target.
fn save(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!("{name}.tmp~"));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

fn env() -> Arc<dyn Env + Send + Sync> {
    Arc::new(HashMap::<String, String>::new())
}

fn names(rules: &RuleSet) -> Vec<&str> {
    rules.webhooks().iter().map(|w| w.name.as_str()).collect()
}

/// Polls the status until `done` holds, failing after [`PATIENCE`].
async fn wait_for(
    rules: &LiveRules,
    what: &str,
    done: impl Fn(&RulesStatus) -> bool,
) -> RulesStatus {
    let start = Instant::now();
    loop {
        let status = rules.status();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "timed out waiting for {what}; last status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    let _shared = SIGNALS.read().await;
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
    let added = wait_for(&rules, "webhook B", |s| s.version > 1).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    assert_eq!(added.files.len(), 2);
    assert!(added.reloads_ok >= 1);
    // A request that started before the swap still has the rules it started with.
    assert_eq!(names(&first), ["a_sales"]);

    // Break it: the previous rules keep serving and the error is on the status.
    let failed_before = added.reloads_failed;
    save(dir.path(), "b.whc", BROKEN_B);
    let broken = wait_for(&rules, "the failed reload", |s| {
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
    let fixed = wait_for(&rules, "the fix", |s| s.version > broken.version).await;
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
    let _shared = SIGNALS.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    save(dir.path(), "a.whc", WEBHOOK_A);
    let (rules, cancel, watcher) = start(dir.path());

    // Swap files and other noise next to a real change.
    std::fs::write(dir.path().join(".a.whc.swp"), "vim swap").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not rules").expect("write");
    save(dir.path(), "b.whc", WEBHOOK_B);
    let status = wait_for(&rules, "webhook B", |s| s.version > 1).await;
    assert_eq!(names(&rules.current()), ["a_sales", "b_refunds"]);
    assert_eq!(status.reloads_failed, 0);

    cancel.cancel();
    watcher.await.expect("watcher task ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdirectory_moved_in_is_loaded() {
    let _shared = SIGNALS.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    save(&rules_dir, "a.whc", WEBHOOK_A);
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    save(&staging, "b.whc", WEBHOOK_B);
    let (rules, cancel, watcher) = start(&rules_dir);

    std::fs::rename(&staging, rules_dir.join("team_b")).expect("move folder in");
    wait_for(&rules, "the moved folder", |s| s.version > 1).await;
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
    let _alone = SIGNALS.write().await;
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
    let status = wait_for(&rules, "the SIGHUP reload", |s| s.version > 1).await;
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
