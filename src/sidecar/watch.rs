//! Hot reload: watch the rules directory and SIGHUP, debounce, then reload the live rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{CreateKind, ModifyKind, RemoveKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::rules::LiveRules;
use crate::engine::load::is_rule_file;

/// How long the rules directory must stay quiet before a reload: an editor's save or a
/// `git checkout` is a burst of events, and one reload should follow it, not one per event.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);

/// A directory that never stops changing still gets reloaded this often (in debounce periods).
const MAX_DEBOUNCE_PERIODS: u32 = 20;

impl LiveRules {
    /// Reloads the rules whenever a rule file changes or the process gets SIGHUP, until
    /// `cancel` fires. Uses [`DEFAULT_DEBOUNCE`]. Must be called inside a tokio runtime.
    pub fn watch(self: Arc<Self>, cancel: CancellationToken) -> JoinHandle<()> {
        self.watch_with(cancel, DEFAULT_DEBOUNCE)
    }

    /// [`LiveRules::watch`] with a chosen quiet period before each reload.
    ///
    /// The watcher and the signal handler are installed before this returns, so a change made
    /// or a SIGHUP sent afterwards is seen. A watcher that cannot start (such as inotify's
    /// limit) is logged and SIGHUP still works.
    pub fn watch_with(
        self: Arc<Self>,
        cancel: CancellationToken,
        debounce: Duration,
    ) -> JoinHandle<()> {
        // One slot is enough: a queued signal already means "reload after the next quiet period".
        let (tx, mut changes) = mpsc::channel::<()>(1);
        let watcher = start_watcher(self.paths(), tx);
        let mut hangup = Hangup::install();
        tokio::spawn(async move {
            let _watcher = watcher; // dropping it stops the OS watch
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    Some(()) = changes.recv() => {
                        if !settle(&mut changes, debounce, &cancel).await {
                            break;
                        }
                        tracing::debug!("rule files changed");
                    }
                    () = hangup.recv() => tracing::info!("SIGHUP: reloading rules"),
                }
                let rules = Arc::clone(&self);
                // Reading and compiling files blocks; keep it off the runtime's workers.
                // The outcome is recorded and logged by `reload` itself.
                if let Err(e) = tokio::task::spawn_blocking(move || rules.reload()).await {
                    tracing::error!("rules reload panicked: {e}");
                }
            }
            tracing::debug!("rules watcher stopped");
        })
    }
}

/// Waits until no change arrives for `debounce` (capped); false when cancelled meanwhile.
async fn settle(
    changes: &mut mpsc::Receiver<()>,
    debounce: Duration,
    cancel: &CancellationToken,
) -> bool {
    let deadline = Instant::now() + debounce * MAX_DEBOUNCE_PERIODS;
    loop {
        let quiet = (Instant::now() + debounce).min(deadline);
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep_until(quiet) => return true,
            more = changes.recv() => {
                if more.is_none() {
                    return true; // the watcher is gone; still reload what it reported
                }
            }
        }
    }
}

/// Watches each rules path: a directory recursively, a single file through its directory
/// (editors save by writing a new file and renaming it over the old one).
fn start_watcher(paths: &[PathBuf], tx: mpsc::Sender<()>) -> Option<RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        let relevant = match &res {
            Ok(event) => is_relevant(event),
            Err(e) => {
                // Events may have been lost (such as an overflowing queue): reload to be sure.
                tracing::warn!("rules watcher: {e}");
                true
            }
        };
        if relevant {
            let _ = tx.try_send(()); // full: a reload is already pending
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("cannot watch the rules, reload with SIGHUP instead: {e}");
            return None;
        }
    };
    for path in paths {
        let (target, mode) = if path.is_dir() {
            (path.as_path(), RecursiveMode::Recursive)
        } else {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            (
                parent.unwrap_or(Path::new(".")),
                RecursiveMode::NonRecursive,
            )
        };
        if let Err(e) = watcher.watch(target, mode) {
            tracing::error!(
                "cannot watch {}, reload with SIGHUP instead: {e}",
                target.display()
            );
        }
    }
    Some(watcher)
}

/// Whether an event can change the rules: a `.whc` file written, created, removed or renamed,
/// or a directory created, removed or renamed (a folder of rules moved in or out, or a
/// Kubernetes ConfigMap swapping its `..data` link). Reads and editors' swap files are not.
fn is_relevant(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(_) => false,
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => true,
        EventKind::Modify(ModifyKind::Name(_)) => event
            .paths
            .iter()
            .any(|p| is_rule_file(p) || p.is_dir() || p.extension().is_none()),
        _ => event.paths.iter().any(|p| is_rule_file(p)),
    }
}

/// SIGHUP, on unix; never elsewhere.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|e| tracing::error!("cannot listen for SIGHUP: {e}"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
            self.signal = None; // the stream ended: stop listening
        }
        std::future::pending::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{DataChange, RenameMode};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn rule_files_and_directory_renames_count() {
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(is_relevant(&event(write, &["/r/a.whc"])));
        assert!(is_relevant(&event(rename, &["/r/a.whc.tmp", "/r/a.whc"])));
        assert!(is_relevant(&event(rename, &["/r/old", "/r/new"])));
        assert!(!is_relevant(&event(write, &["/r/a.whc.tmp"])));
        assert!(!is_relevant(&event(write, &["/r/.a.whc.swp"])));
        assert!(!is_relevant(&event(write, &["/r/.#a.whc"])));
        assert!(!is_relevant(&event(
            EventKind::Access(notify::event::AccessKind::Any),
            &["/r/a.whc"]
        )));
    }
}
