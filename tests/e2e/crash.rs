//! Crash: the real binary killed with SIGKILL mid-stream loses no acknowledged event.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::support::{Http, Reply, Target, conversion, listening_urls, wait_until, webhook};

/// The binary running as a child; killed if the test fails half-way.
struct Serve {
    child: Option<Child>,
    events: String,
    admin: String,
}

impl Serve {
    /// Starts `whc serve` on ephemeral ports and reads the line that names them.
    async fn start(rules: &Path, data: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_whc"))
            .arg("serve")
            .arg("--rules")
            .arg(rules)
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args([
                "--retry-schedule",
                "50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
            ])
            .env("WHC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start whc serve");
        let (events, admin) = listening_urls(&mut child).await;
        Serve {
            events,
            admin,
            child: Some(child),
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM, and expects a clean exit.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = child.wait().expect("reap");
        assert!(exit.success(), "whc serve exited with {exit} after SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    let target = Target::start().await;
    // No answer before the crash: every acknowledged delivery is pending or on the wire when
    // the process dies.
    target.set_default(Reply::Hang);
    let rules = tempfile::TempDir::new().unwrap();
    let data = tempfile::TempDir::new().unwrap();
    std::fs::write(
        rules.path().join("crash.whc"),
        webhook(
            "sink",
            "conversion",
            "",
            &target.url("/sink?id=[delivery]"),
            "",
        ),
    )
    .unwrap();

    let mut serve = Serve::start(rules.path(), data.path()).await;
    let http = Http::new();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let poster = {
        let (http, acked, url) = (
            http.clone(),
            Arc::clone(&acked),
            format!("{}/v1/events", serve.events),
        );
        tokio::spawn(async move {
            for i in 0..10_000 {
                let body = conversion(&format!("crash-{i}")).to_string();
                let headers = [("content-type", "application/json")];
                match http.try_send(Method::POST, &url, &headers, body).await {
                    Ok(answer) if answer.status == StatusCode::ACCEPTED => {
                        let json = answer.json();
                        let ids = json["events"][0]["deliveries"].as_array().unwrap().clone();
                        assert_eq!(ids.len(), 1, "{json}");
                        acked
                            .lock()
                            .unwrap()
                            .push(ids[0].as_str().unwrap().to_owned());
                    }
                    Ok(answer) => panic!("event refused: {} {}", answer.status, answer.text()),
                    // The process died: no answer, no promise.
                    Err(_) => return i,
                }
            }
            panic!("the sidecar was never killed");
        })
    };
    wait_until("20 acknowledged events", || {
        acked.lock().unwrap().len() >= 20
    })
    .await;
    serve.kill();
    let posted = poster.await.expect("poster");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20 && acked.len() <= posted);

    // Requests that hung before the crash delivered nothing: only what arrives after the
    // restart counts.
    let before = target.count();

    // Back on the same data; the target now answers 200, after a short delay.
    target.set_default(Reply::Delayed(Duration::from_millis(20), 200));
    let mut serve = Serve::start(rules.path(), data.path()).await;
    target
        .wait(
            &format!("all {} acknowledged deliveries to arrive", acked.len()),
            |requests| {
                let keys: BTreeSet<&str> = requests[before..]
                    .iter()
                    .filter_map(|r| r.header("idempotency-key"))
                    .collect();
                acked.iter().all(|id| keys.contains(id.as_str()))
            },
        )
        .await;
    for req in target.requests() {
        let key = req.header("idempotency-key").unwrap();
        assert_eq!(req.query_pairs(), vec![("id".into(), key.to_owned())]);
    }
    // And the restarted sidecar knows they were delivered.
    for id in &acked {
        let url = format!("{}/v1/deliveries/{id}", serve.admin);
        crate::support::wait_until_async(
            &format!("{id} to be delivered"),
            || http.get(&url),
            |a| a.status == StatusCode::OK && a.json()["status"] == "delivered",
        )
        .await;
    }
    let admin = http.get(&format!("{}/healthz", serve.admin)).await;
    assert_eq!(admin.status, StatusCode::OK);
    serve.terminate();
}
