//! SIGHUP reaches every rules watcher in this process: a fence so that the one test that sends
//! it runs with no other watcher alive, and no other test sees a reload it did not cause.

use std::sync::LazyLock;

use tokio::sync::watch;

#[derive(Debug, Default)]
struct Fence {
    /// Watchers alive (each in-process sidecar, each reload test's watcher).
    watchers: usize,
    /// A test is sending SIGHUP.
    hangup: bool,
}

static FENCE: LazyLock<watch::Sender<Fence>> =
    LazyLock::new(|| watch::Sender::new(Fence::default()));

/// Held while a watcher is alive, or while a test sends SIGHUP.
#[must_use = "the fence holds only while the guard lives"]
pub struct SignalGuard {
    hangup: bool,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        FENCE.send_modify(|f| {
            if self.hangup {
                f.hangup = false;
            } else {
                f.watchers -= 1;
            }
        });
    }
}

/// Enters beside other watchers; waits only while a SIGHUP test runs.
///
/// Never waits behind a test that is merely waiting to send SIGHUP, so a test may start a
/// second sidecar while holding a first without deadlocking.
pub async fn watcher() -> SignalGuard {
    enter(|f| !f.hangup, |f| f.watchers += 1).await;
    SignalGuard { hangup: false }
}

/// Enters alone: once no watcher but the caller's own (started after this) is alive.
pub async fn hangup() -> SignalGuard {
    enter(|f| !f.hangup && f.watchers == 0, |f| f.hangup = true).await;
    SignalGuard { hangup: true }
}

async fn enter(may: impl Fn(&Fence) -> bool, take: impl Fn(&mut Fence)) {
    let mut changes = FENCE.subscribe();
    loop {
        let entered = FENCE.send_if_modified(|f| {
            let ok = may(f);
            if ok {
                take(f);
            }
            ok
        });
        if entered {
            return;
        }
        // Checked and taken atomically above; `wait_for` looks at the current value first, so
        // a release between the two is not missed.
        changes
            .wait_for(|f| may(f))
            .await
            .expect("the fence lives as long as the process");
    }
}
