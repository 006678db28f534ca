//! The sidecar's log: stderr through a writer that never fails, so a closed stderr (such as
//! `whc serve 2>&1 | head`) costs the log lines, never the process.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Makes stderr writers that never fail: `Quiet<Stderr>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeQuietStderr;

/// A writer that swallows write errors (EPIPE once the reader is gone, EIO, a full disk): a
/// log line that cannot be written is dropped. tracing-subscriber would otherwise report the
/// error with `eprintln!`, which panics on the same closed stderr.
#[derive(Debug)]
pub struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Claim the whole buffer written so that `write_all` stops at once.
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for MakeQuietStderr {
    type Writer = Quiet<io::Stderr>;

    fn make_writer(&'a self) -> Quiet<io::Stderr> {
        Quiet(io::stderr())
    }
}

/// Writes one line to stderr, ignoring failure: for messages printed outside the log (such
/// as why the sidecar could not start) where there is nobody left to tell.
pub fn stderr_line(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Writes one line to stdout and flushes it, ignoring failure (a closed stdout must not stop
/// the sidecar).
pub fn stdout_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_broken_pipe_is_swallowed() {
        let mut quiet = Quiet(Closed);
        assert!(quiet.write_all(b"a log line\n").is_ok());
        assert!(quiet.flush().is_ok());
    }
}
