//! A throwaway PostgreSQL server for tests, examples and measurements: `initdb` into a temporary
//! folder, `pg_ctl start` on a free loopback port, stopped and deleted when its owner goes away.
//!
//! PostgreSQL refuses to run as root; as root the server runs as the `postgres` user through
//! `runuser`. The server is started by a small shell that waits on a pipe from this process:
//! when the process exits, however it exits, the pipe closes and the shell stops the server
//! and deletes its folder, so no test leaves a server behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that turns "PostgreSQL is not installed, skipping" into a failure (CI sets it).
pub const REQUIRE_VAR: &str = "WHC_REQUIRE_POSTGRES";

/// A running throwaway server.
#[derive(Debug)]
pub struct ScratchPostgres {
    port: u16,
    // Stopping: dropping the child's stdin ends the shell's wait.
    _shell: Child,
    bin: PathBuf,
    dir: PathBuf,
    options: String,
    root: bool,
}

/// Why a scratch server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// No `initdb` and `pg_ctl` in `PATH` or `/usr/lib/postgresql/*/bin`.
    #[error(
        "PostgreSQL is not installed (no initdb and pg_ctl in PATH or /usr/lib/postgresql/*/bin)"
    )]
    NotInstalled,
    /// Starting it failed.
    #[error("cannot start a scratch PostgreSQL: {0}")]
    Start(String),
}

impl ScratchPostgres {
    /// Starts a server. `durable` keeps fsync on (for measurements); tests turn it off, which
    /// changes nothing the store can observe but makes each commit cheap.
    pub fn start(durable: bool) -> Result<ScratchPostgres, ScratchError> {
        let bin = find_bin().ok_or(ScratchError::NotInstalled)?;
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "whc-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| ScratchError::Start(e.to_string()))?;
        if root {
            run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))?;
        }
        let port = free_port()?;
        let fsync = if durable { "on" } else { "off" };
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {dir} -c fsync={fsync} \
             -c synchronous_commit=on -c max_connections=200 -c shared_buffers=128MB",
            dir = dir.display()
        );
        // initdb, start, say "ready", wait for our end of the pipe to close, stop, delete.
        let script = r#"set -e
"$BIN/initdb" -D "$DIR/data" -U whc --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o "$OPTIONS" start >/dev/null
echo ready
cat >/dev/null || true
"$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$DIR"
"#;
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        };
        let mut shell = command
            .env("BIN", &bin)
            .env("DIR", &dir)
            .env("OPTIONS", &options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ScratchError::Start(format!("cannot run the start script: {e}")))?;
        let stdout = shell.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| ScratchError::Start(e.to_string()))?;
        if line.trim() != "ready" {
            let log = std::fs::read_to_string(dir.join("server.log"))
                .or_else(|_| std::fs::read_to_string(dir.join("initdb.log")))
                .unwrap_or_default();
            return Err(ScratchError::Start(format!(
                "the server did not start: {}",
                log.lines().rev().take(5).collect::<Vec<_>>().join(" / ")
            )));
        }
        Ok(ScratchPostgres {
            port,
            _shell: shell,
            bin,
            dir,
            options,
            root,
        })
    }

    /// The URL of database `db` on this server (user `whc`, no password: trust on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://whc@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (fast shutdown), as an outage; [`ScratchPostgres::resume`] starts it
    /// again on the same port and data.
    pub fn stop(&self) -> Result<(), ScratchError> {
        self.pg_ctl(&["-m", "fast", "stop"])
    }

    /// Starts the server again after [`ScratchPostgres::stop`].
    pub fn resume(&self) -> Result<(), ScratchError> {
        let log = self.dir.join("server.log");
        let log = log.to_string_lossy();
        self.pg_ctl(&["-l", &log, "-w", "-o", &self.options, "start"])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), ScratchError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let mut command = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        run(command.arg("-D").arg(data).args(args).stdout(Stdio::null()))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, ScratchError> {
        let createdb = self.bin.join("createdb");
        run(Command::new(createdb).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "whc",
            name,
        ]))?;
        Ok(self.url(name))
    }

    /// A server of the caller's own (to stop and start again), or `None` with a printed line
    /// when PostgreSQL is not installed, unless [`REQUIRE_VAR`] is set.
    pub fn own() -> Option<ScratchPostgres> {
        match ScratchPostgres::start(false) {
            Ok(server) => Some(server),
            Err(ScratchError::NotInstalled) if std::env::var_os(REQUIRE_VAR).is_none() => {
                eprintln!(
                    "skipping the PostgreSQL tests: {} (set {REQUIRE_VAR}=1 to fail instead)",
                    ScratchError::NotInstalled
                );
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// A server shared by every caller in this process (started on first use), or `None`
    /// with a printed line when PostgreSQL is not installed, unless [`REQUIRE_VAR`] is set.
    pub fn shared() -> Option<&'static ScratchPostgres> {
        static SHARED: std::sync::OnceLock<Option<ScratchPostgres>> = std::sync::OnceLock::new();
        SHARED.get_or_init(ScratchPostgres::own).as_ref()
    }

    /// A fresh database on the [`ScratchPostgres::shared`] server, with a unique name.
    pub fn fresh_database() -> Option<String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let server = ScratchPostgres::shared()?;
        let name = format!("whc_test_{}", N.fetch_add(1, Ordering::Relaxed));
        Some(
            server
                .create_database(&name)
                .expect("create a test database"),
        )
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Whether this process runs as root (PostgreSQL then runs as `postgres`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The folder holding `initdb` and `pg_ctl`: from `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn find_bin() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has(&dir) {
                // A wrapper in PATH may live apart from createdb: prefer the real folder.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                return Some(real.filter(|d| has(d)).unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A port free on loopback right now.
fn free_port() -> Result<u16, ScratchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ScratchError::Start(format!("no free port: {e}")))
}

/// Runs a command to completion; a failure carries its output.
fn run(command: &mut Command) -> Result<(), ScratchError> {
    let out = command
        .output()
        .map_err(|e| ScratchError::Start(format!("{command:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScratchError::Start(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
