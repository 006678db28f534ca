//! Hot reload: watch the rules directory and SIGHUP, debounce, then reload the live rules.
//!
//! Each rules folder is watched recursively, and the folder holding it non-recursively, so a
//! folder deleted and created again (`rm -rf rules && cp -r new rules`, a deploy) or renamed
//! over (`mv new rules`) is seen: after every burst of changes the watch is re-established on
//! whatever the path now names, and while a folder is missing it is polled for with a bounded
//! backoff (in case its parent went too).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{CreateKind, ModifyKind, RemoveKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::rules::{LiveRules, WatchState};
use crate::engine::load::is_rule_file;

/// How long the rules directory must stay quiet before a reload: an editor's save or a
/// `git checkout` is a burst of events, and one reload should follow it, not one per event.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);

/// A directory that never stops changing still gets reloaded this often (in debounce periods).
const MAX_DEBOUNCE_PERIODS: u32 = 20;

/// While a rules folder is missing it is looked for after this long, doubling each time...
const FIRST_POLL: Duration = Duration::from_millis(100);
/// ... up to this.
const MAX_POLL: Duration = Duration::from_secs(5);

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
    /// limit) is logged and SIGHUP still works. A rules folder that disappears is reported
    /// ([`WatchState::Missing`] on the status, a warning in the log) and watched again, and
    /// the rules reloaded, when it comes back.
    pub fn watch_with(
        self: Arc<Self>,
        cancel: CancellationToken,
        debounce: Duration,
    ) -> JoinHandle<()> {
        // One slot is enough: a queued signal already means "reload after the next quiet period".
        let (tx, mut changes) = mpsc::channel::<()>(1);
        let mut watch = Watch::start(self.paths(), tx);
        self.set_watch_state(watch.state());
        let mut hangup = Hangup::install();
        let reloader = Reloader::start(Arc::clone(&self));
        tokio::spawn(async move {
            let mut poll = FIRST_POLL;
            loop {
                let missing = watch.state() == WatchState::Missing;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    Some(()) = changes.recv() => {
                        if !settle(&mut changes, debounce, &cancel).await {
                            break;
                        }
                        tracing::debug!("rule files changed");
                        watch.rearm();
                    }
                    () = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading rules");
                        watch.rearm();
                    }
                    () = tokio::time::sleep(poll), if missing => {
                        if !watch.rearm() {
                            poll = (poll * 2).min(MAX_POLL);
                            continue;
                        }
                    }
                }
                if watch.state() != WatchState::Missing {
                    poll = FIRST_POLL;
                }
                self.set_watch_state(watch.state());
                // The outcome is recorded and logged by `reload` itself.
                if !reloader.reload().await {
                    tracing::error!("the rules reload thread is gone; reload stopped");
                    break;
                }
            }
            drop(watch); // stops the OS watch
            self.set_watch_state(WatchState::Off);
            tracing::debug!("rules watcher stopped");
        })
    }
}

/// The one thread that reloads. Reading and compiling files blocks, so it stays off the
/// runtime's workers; and always on the same thread, because glibc's malloc gives each thread
/// that allocates its own arena and keeps what is freed there: reloads on whichever blocking
/// thread was free grew the process by a rule set's worth per new thread.
struct Reloader {
    requests: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Reloader {
    fn start(rules: Arc<LiveRules>) -> Reloader {
        let (requests, incoming) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
        let spawned = std::thread::Builder::new()
            .name("whc-rules-reload".into())
            .spawn(move || {
                for done in incoming {
                    // A panic would only be a bug; keep the thread (and its arena) alive.
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rules.reload()));
                    if outcome.is_err() {
                        tracing::error!("rules reload panicked");
                    }
                    let _ = done.send(());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the rules reload thread: {e}");
        }
        Reloader { requests }
    }

    /// Reloads on the reload thread and waits for it; false when the thread is gone.
    async fn reload(&self) -> bool {
        let (done, finished) = tokio::sync::oneshot::channel();
        self.requests.send(done).is_ok() && finished.await.is_ok()
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

/// What a path names now: its device and inode, so that a folder replaced under the same name
/// is told from the one that was watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity(u64, u64);

impl Identity {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        meta.is_dir().then(|| Identity(meta.dev(), meta.ino()))
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<Identity> {
        // No inode to compare: a folder that exists is taken as the one watched, and replacing
        // it is caught by the events on its parent alone.
        path.is_dir().then_some(Identity(0, 0))
    }
}

/// One folder the rules are read from, as notify names it (absolute, not canonical).
#[derive(Debug)]
struct Folder {
    path: PathBuf,
    /// Recursive for a rules folder; not for the folder of a single rule file.
    mode: RecursiveMode,
}

impl Folder {
    /// Whether an event at `path` is inside what this folder's watch covers.
    fn covers(&self, path: &Path) -> bool {
        match self.mode {
            RecursiveMode::Recursive => path.starts_with(&self.path),
            RecursiveMode::NonRecursive => path.parent() == Some(&self.path) || path == self.path,
        }
    }
}

/// The OS watch over every rules folder and the folders holding them.
struct Watch {
    watcher: Option<RecommendedWatcher>,
    folders: Arc<[Folder]>,
    /// What each folder and its parent named when their watches were added (`None`: not
    /// watched).
    watched: Vec<(Option<Identity>, Option<Identity>)>,
    /// Set by the event handler when a rules folder itself was created, removed or renamed:
    /// its watch must be added again even if the new folder has the old inode.
    replaced: Arc<AtomicBool>,
    /// Whether the watches were added once (later additions are news worth a log line).
    armed: bool,
}

impl Watch {
    /// Starts the OS watcher over `paths`: a directory recursively, a single file through its
    /// directory (editors save by writing a new file and renaming it over the old one).
    fn start(paths: &[PathBuf], tx: mpsc::Sender<()>) -> Watch {
        let cwd = std::env::current_dir().unwrap_or_default();
        let folders: Arc<[Folder]> = paths
            .iter()
            .map(|path| {
                // Absolute the way notify makes it, so that event paths compare.
                let path = cwd.join(path);
                if path.is_dir() {
                    Folder {
                        path,
                        mode: RecursiveMode::Recursive,
                    }
                } else {
                    Folder {
                        path: path.parent().map_or_else(|| cwd.clone(), Path::to_path_buf),
                        mode: RecursiveMode::NonRecursive,
                    }
                }
            })
            .collect();
        let replaced = Arc::new(AtomicBool::new(false));
        let handler = {
            let (folders, replaced) = (Arc::clone(&folders), Arc::clone(&replaced));
            move |res: notify::Result<notify::Event>| {
                let relevant = match &res {
                    Ok(event) => {
                        let itself = !matches!(event.kind, EventKind::Access(_))
                            && event
                                .paths
                                .iter()
                                .any(|p| folders.iter().any(|f| *p == f.path));
                        if itself {
                            replaced.store(true, Ordering::SeqCst);
                        }
                        itself
                            || (is_relevant(event)
                                && event
                                    .paths
                                    .iter()
                                    .any(|p| folders.iter().any(|f| f.covers(p))))
                    }
                    Err(e) => {
                        // Events may have been lost (such as an overflowing queue): reload to
                        // be sure.
                        tracing::warn!("rules watcher: {e}");
                        true
                    }
                };
                if relevant {
                    let _ = tx.try_send(()); // full: a reload is already pending
                }
            }
        };
        let watcher = notify::recommended_watcher(handler)
            .inspect_err(|e| {
                tracing::error!("cannot watch the rules, reload with SIGHUP instead: {e}");
            })
            .ok();
        let mut watch = Watch {
            watcher,
            watched: vec![(None, None); folders.len()],
            folders,
            replaced,
            armed: false,
        };
        watch.rearm();
        watch
    }

    /// Watches each folder (and its parent) again where the path now names another folder than
    /// the one watched, or none was; true when a folder came back or was replaced.
    fn rearm(&mut self) -> bool {
        let Some(watcher) = &mut self.watcher else {
            return false;
        };
        let replaced = self.replaced.swap(false, Ordering::SeqCst);
        let mut back = false;
        for (folder, (dir, parent)) in self.folders.iter().zip(&mut self.watched) {
            if let Some(up) = folder.path.parent() {
                let now = Identity::of(up);
                if now != *parent {
                    let _ = watcher.unwatch(up); // already gone with its folder, most likely
                    *parent = now.filter(|_| add(watcher, up, RecursiveMode::NonRecursive));
                }
            }
            let now = Identity::of(&folder.path);
            if now == *dir && !(replaced && now.is_some()) {
                continue;
            }
            let _ = watcher.unwatch(&folder.path);
            let was = dir.take();
            *dir = now.filter(|_| add(watcher, &folder.path, folder.mode));
            let path = folder.path.display();
            match (was.is_some(), dir.is_some()) {
                (true, false) if now.is_none() => tracing::warn!(
                    "the rules folder {path} is gone: the rules loaded last keep serving; \
                     watching for it to come back"
                ),
                (false, true) if self.armed => {
                    back = true;
                    tracing::info!("the rules folder {path} is back: watching it again");
                }
                (true, true) => {
                    back = true;
                    tracing::info!("the rules folder {path} was replaced: watching the new one");
                }
                _ => {} // at start; or a watch that failed, logged by `add`
            }
        }
        self.armed = true;
        back
    }

    /// Whether every folder is watched.
    fn state(&self) -> WatchState {
        if self.watcher.is_none() {
            WatchState::Failed
        } else if self.watched.iter().all(|(dir, _)| dir.is_some()) {
            WatchState::Watching
        } else {
            WatchState::Missing
        }
    }
}

/// Adds one watch; false (logged) when it cannot be added.
fn add(watcher: &mut RecommendedWatcher, path: &Path, mode: RecursiveMode) -> bool {
    match watcher.watch(path, mode) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "cannot watch {}: {e}; looking again later, SIGHUP reloads",
                path.display()
            );
            false
        }
    }
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
