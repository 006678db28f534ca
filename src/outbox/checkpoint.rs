//! WAL checkpoints on their own thread and connection, so that the writer never runs them.
//!
//! With `wal_autocheckpoint` left on, the commit that crosses 1,000 WAL pages copies them into
//! the database file (and fsyncs it) while every request in that batch waits. Here the writer
//! only signals after each commit; this thread gathers signals for a moment and runs a
//! `PASSIVE` checkpoint, which never blocks the writer or the readers.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::OutboxError;

/// How long the thread lets commits gather after a signal before it checkpoints.
const GATHER: Duration = Duration::from_millis(20);

/// The writer's handle on the checkpoint thread; dropping it runs a last checkpoint and joins.
pub(crate) struct Checkpointer {
    signal: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the outbox at `path`.
    pub(crate) fn start(conn: Connection) -> Result<Checkpointer, OutboxError> {
        let (signal, signals) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("whc-outbox-checkpoint".into())
            .spawn(move || run(conn, signals))
            .map_err(OutboxError::Spawn)?;
        Ok(Checkpointer {
            signal: Some(signal),
            thread: Some(thread),
        })
    }

    /// Says that a commit added to the WAL; cheap, never blocks.
    pub(crate) fn committed(&self) {
        if let Some(signal) = &self.signal {
            match signal.try_send(()) {
                // Full: a checkpoint is already due, which will cover this commit too.
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.signal.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, signals: Receiver<()>) {
    while signals.recv().is_ok() {
        std::thread::sleep(GATHER);
        while signals.try_recv().is_ok() {}
        checkpoint(&conn, "PASSIVE");
    }
    // The writer is gone: fold the whole WAL into the database and empty it.
    checkpoint(&conn, "TRUNCATE");
}

fn checkpoint(conn: &Connection, mode: &str) {
    // The pragma answers one row (busy, WAL frames, frames checkpointed).
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
    if let Err(err) = result {
        tracing::warn!(%err, mode, "WAL checkpoint failed; the WAL keeps the data meanwhile");
    }
}
