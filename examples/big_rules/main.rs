//! Large rule sets: 10,000 webhooks through `whc check`, loading, reloading and the admin API.
//!
//! ```text
//! cargo run --release --example big_rules -- [--webhooks 10000] [--files 10] [--reloads 100]
//! cargo run --release --example big_rules -- --write-to DIR   # only the rule files
//! cargo run --release --example big_rules -- --load-from DIR    # one LiveRules::load of DIR
//! ```
//!
//! What one run does:
//!
//! 1. writes `--webhooks` webhooks (varied events, `when` conditions of every kind, one in five
//!    with a regex, headers, settings, one in seven signed, one in fifty disabled; about 330
//!    bytes each) into `--files` files of a temporary rules directory;
//! 2. runs `whc check` on it `--samples` times as a separate process (this program re-executed
//!    as the `whc` command line, so no binary has to be built first) and prints the median;
//! 3. in this process: [`LiveRules::load`] and [`LiveRules::reload`], `--samples` times each,
//!    and prints the medians;
//! 4. starts `whc serve --paused` on the directory as a separate process (again this program
//!    as `whc`) and reads its resident memory (`VmRSS` in `/proc/PID/status`) after start,
//!    after one reload, after ten and after `--reloads` reloads (each forced with SIGHUP,
//!    awaited on the "rules reloaded" log line), with the time from signal to log line;
//! 5. times `GET /v1/rules` and `GET /metrics` (`--samples` each, median);
//! 6. posts events while another thread scrapes `/v1/rules` in a loop, and prints the posts'
//!    median and worst latency, next to the same posts with no scrape.
//!
//! Every request is a fresh HTTP/1.1 connection from a plain `std::net::TcpStream`. Figures on
//! a shared machine wander: read medians, and run it twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

mod text;

use whc::sidecar::LiveRules;

/// Large rule sets: check, load, reload, memory and the admin API with 10,000 webhooks.
#[derive(Debug, Parser)]
struct Args {
    /// Webhooks to generate.
    #[arg(long, default_value_t = 10_000)]
    webhooks: usize,
    /// Files to spread them over.
    #[arg(long, default_value_t = 10)]
    files: usize,
    /// Reloads of the running sidecar before the last memory reading.
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    /// Samples of each timing (the median is printed).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Event posts measured with and without a `/v1/rules` scrape in flight.
    #[arg(long, default_value_t = 20)]
    posts: usize,
    /// Only write the rule files into this folder (for a profiler), and stop.
    #[arg(long)]
    write_to: Option<std::path::PathBuf>,
    /// Only load the rules in this folder once with `LiveRules::load` (for a profiler), and stop.
    #[arg(long)]
    load_from: Option<std::path::PathBuf>,
}

/// Set in the environment of the child processes: run as the `whc` command line.
const AS_WHC: &str = "BIG_RULES_AS_WHC";
/// The variable one webhook in seven signs with.
const SECRET: &str = text::SECRET;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(AS_WHC).is_some() {
        std::process::exit(match whc::cli::main() {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        });
    }
    let args = Args::parse();
    if let Some(dir) = &args.write_to {
        let bytes = generate(dir, args.webhooks, args.files)?;
        println!(
            "{} webhooks, {bytes} bytes in {}",
            args.webhooks,
            dir.display()
        );
        return Ok(());
    }
    let env: Arc<dyn whc::lang::Env + Send + Sync> = Arc::new(std::collections::HashMap::from([(
        SECRET.to_owned(),
        "s3cr3t".to_owned(),
    )]));
    if let Some(dir) = &args.load_from {
        let start = Instant::now();
        let live = LiveRules::load(vec![dir.clone()], env).map_err(|e| e.rendered())?;
        let took = start.elapsed();
        println!(
            "LiveRules::load           {:.1} ms, {} webhooks",
            took.as_secs_f64() * 1e3,
            live.current().webhooks().len()
        );
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let rules = tmp.path().join("rules");
    let bytes = generate(&rules, args.webhooks, args.files)?;
    println!(
        "{} webhooks in {} files, {:.1} MB; load average {}",
        args.webhooks,
        args.files,
        bytes as f64 / 1e6,
        loadavg()
    );

    // `whc check`, as a user runs it.
    let mut check = Vec::new();
    for _ in 0..args.samples {
        let start = Instant::now();
        let out = whc().arg("check").arg(&rules).output()?;
        check.push(start.elapsed());
        if !out.status.success() {
            return Err(format!(
                "whc check failed:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
    }
    println!("whc check                 {}", spread(&mut check));

    // Load and reload in this process.
    let mut load = Vec::new();
    let mut live = None;
    for _ in 0..args.samples {
        let start = Instant::now();
        let rules =
            LiveRules::load(vec![rules.clone()], Arc::clone(&env)).map_err(|e| e.rendered())?;
        load.push(start.elapsed());
        live = Some(rules);
    }
    println!("LiveRules::load           {}", spread(&mut load));
    let live = live.expect("at least one sample");
    let mut reload = Vec::new();
    for _ in 0..args.samples {
        let start = Instant::now();
        live.reload().map_err(|e| e.rendered())?;
        reload.push(start.elapsed());
    }
    println!("LiveRules::reload         {}", spread(&mut reload));
    drop(live);

    // The real sidecar.
    let mut sidecar = Sidecar::start(&rules, &tmp.path().join("data"))?;
    println!("sidecar RSS after start   {}", sidecar.rss());
    let mut signalled = vec![sidecar.reload()?];
    println!("sidecar RSS, 1 reload     {}", sidecar.rss());
    for n in 2..=args.reloads {
        signalled.push(sidecar.reload()?);
        if n == 10 && args.reloads > 10 {
            println!("sidecar RSS, 10 reloads    {}", sidecar.rss());
        }
    }
    println!(
        "sidecar RSS, {:>3} reloads {} (peak {})",
        args.reloads,
        sidecar.rss(),
        sidecar.status_kb("VmHWM").map_or("?".into(), mib)
    );
    println!("SIGHUP to reloaded        {}", spread(&mut signalled));

    let admin = sidecar.admin;
    let mut rules_get = Vec::new();
    let mut size = 0;
    for _ in 0..args.samples {
        let start = Instant::now();
        size = get(admin, "/v1/rules")?.len();
        rules_get.push(start.elapsed());
    }
    println!(
        "GET /v1/rules             {} ({:.1} MB)",
        spread(&mut rules_get),
        size as f64 / 1e6
    );
    let mut metrics_get = Vec::new();
    for _ in 0..args.samples {
        let start = Instant::now();
        get(admin, "/metrics")?;
        metrics_get.push(start.elapsed());
    }
    println!("GET /metrics              {}", spread(&mut metrics_get));

    // Event posts, alone and while /v1/rules is scraped in a loop.
    let mut alone = Vec::new();
    for i in 0..args.posts {
        alone.push(post_event(sidecar.events, &format!("alone-{i}"))?);
    }
    println!("event post, no scrape     {}", spread(&mut alone));
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (stop, scrapes) = (Arc::clone(&stop), Arc::clone(&scrapes));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if get(admin, "/v1/rules").is_ok() {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50)); // let the first scrape get going
    let mut scraped = Vec::new();
    for i in 0..args.posts {
        scraped.push(post_event(sidecar.events, &format!("scraped-{i}"))?);
    }
    stop.store(true, Ordering::Relaxed);
    scraper.join().expect("the scraper did not panic");
    println!(
        "event post, scraping      {} ({} scrapes meanwhile)",
        spread(&mut scraped),
        scrapes.load(Ordering::Relaxed)
    );
    sidecar.stop();
    println!("load average {}", loadavg());
    Ok(())
}

/// Writes the rule files; returns their total size in bytes.
fn generate(dir: &Path, webhooks: usize, files: usize) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let files = files.max(1);
    let per_file = webhooks.div_ceil(files);
    let mut total = 0;
    for f in 0..files {
        let text = text::webhooks(f * per_file..((f + 1) * per_file).min(webhooks));
        total += text.len();
        std::fs::write(dir.join(format!("team{f:02}.whc")), text)?;
    }
    Ok(total)
}

/// This program as the `whc` command line.
fn whc() -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(AS_WHC, "1")
        .env(SECRET, "s3cr3t")
        .env("NO_COLOR", "1");
    cmd
}

/// A `whc serve` process.
struct Sidecar {
    child: Child,
    events: SocketAddr,
    admin: SocketAddr,
    /// One message per "rules reloaded" log line.
    reloaded: mpsc::Receiver<()>,
}

impl Sidecar {
    fn start(rules: &Path, data: &Path) -> Result<Sidecar, Box<dyn std::error::Error>> {
        let mut child = whc()
            .args(["serve", "--paused", "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--rules"])
            .arg(rules)
            .arg("--data")
            .arg(data)
            .env("WHC_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        // whc serve: events on http://ADDR, admin on http://ADDR
        let addrs: Vec<SocketAddr> = line
            .split("http://")
            .skip(1)
            .filter_map(|s| {
                s.trim_end_matches(|c: char| c == ',' || c.is_whitespace())
                    .split(',')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let [events, admin] = addrs[..] else {
            let _ = child.kill();
            return Err(format!("unexpected first line from whc serve: {line:?}").into());
        };
        let (tx, reloaded) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("rules reloaded") && tx.send(()).is_err() {
                    break;
                }
                if line.contains("not reloaded") {
                    eprintln!("{line}");
                }
            }
        });
        Ok(Sidecar {
            child,
            events,
            admin,
            reloaded,
        })
    }

    /// Forces a reload with SIGHUP; the time until the sidecar logs it.
    fn reload(&mut self) -> Result<Duration, Box<dyn std::error::Error>> {
        let start = Instant::now();
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            return Err("kill -HUP failed".into());
        }
        self.reloaded
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| "no reload logged within 120 s")?;
        Ok(start.elapsed())
    }

    fn status_kb(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    fn rss(&self) -> String {
        self.status_kb("VmRSS").map_or("?".into(), mib)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill(); // only if `stop` did not run
        let _ = self.child.wait();
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// One request on a fresh connection; the body of a 2xx answer.
fn request(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let ok = answer.starts_with(b"HTTP/1.1 2");
    let start = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    if !ok {
        return Err(std::io::Error::other(format!(
            "answer: {}",
            String::from_utf8_lossy(&answer[..start.min(200)])
        )));
    }
    Ok(answer.split_off(start))
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

/// Posts one conversion that fires a few webhooks; its latency.
fn post_event(addr: SocketAddr, id: &str) -> std::io::Result<Duration> {
    let body = format!(
        r#"{{"id":"{id}","type":"conversion","transaction":"t-{id}","revenue":"480","firstClick":{{"utm_source":"google1"}},"lastClick":{{"country":"US","utm_campaign":"camp3"}}}}"#
    );
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let start = Instant::now();
    request(addr, &head, body.as_bytes())?;
    Ok(start.elapsed())
}

/// `median (min–max, n=N)`.
fn spread(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    match samples {
        [] => "no samples".into(),
        [one] => ms(*one),
        _ => format!(
            "{} median ({}–{}, n={})",
            ms(samples[samples.len() / 2]),
            ms(samples[0]),
            ms(samples[samples.len() - 1]),
            samples.len()
        ),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
