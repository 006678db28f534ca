//! Soak test: the real `whc serve` under steady load while its rules are reloaded many times
//! (broken files among them) and the webhook receiver restarts now and then.
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- [--reloads 1000] [--rate 200]
//! ```
//!
//! What one run does:
//!
//! 1. starts a **receiver** on `127.0.0.1:0` that records the `event.id` of every delivery it
//!    gets (and counts repeats by `Idempotency-Key`); every `--restart-every` reloads it is
//!    stopped for `--down-ms` and started again on the same port, so deliveries fail in between
//!    and are retried;
//! 2. starts the **real binary** (`--whc`, default `target/release/whc`) as `whc serve` on free
//!    ports with a fresh data directory, a short retry schedule, and rules that send every
//!    conversion and refund to the receiver;
//! 3. posts events at `--rate` per second from `--connections` keep-alive connections, each with
//!    a unique id, and keeps every id answered 202; any other answer is a failed post;
//! 4. meanwhile rewrites the rules `--reloads` times, every tenth one broken, waiting each time
//!    until the sidecar's `/v1/rules` counts the reload (ok or failed), and samples the
//!    sidecar's RSS (`/proc/PID/status`);
//! 5. stops the load, waits until the receiver has every acknowledged event, and prints the
//!    figures. It exits 1 when a post failed, an acknowledged event was not delivered, or a
//!    broken file was served.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Soak test options.
#[derive(Debug, Parser)]
struct Args {
    /// The whc binary to run.
    #[arg(long, default_value = "target/release/whc")]
    whc: PathBuf,
    /// Rule reloads to make (every tenth one is a broken file).
    #[arg(long, default_value_t = 1000)]
    reloads: u32,
    /// Events posted per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Keep-alive connections the events are posted on.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Restart the receiver after this many reloads.
    #[arg(long, default_value_t = 100)]
    restart_every: u32,
    /// How long the receiver stays down at each restart, in ms.
    #[arg(long, default_value_t = 500)]
    down_ms: u64,
    /// How long to wait for the last deliveries after the load stops, in seconds.
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
}

/// What the receiver saw.
#[derive(Debug, Default)]
struct Received {
    events: HashSet<String>,
    keys: HashMap<String, u32>,
}

type Shared = Arc<Mutex<Received>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ok = runtime.block_on(soak(args))?;
    std::process::exit(if ok { 0 } else { 1 });
}

/// The receiver on a fixed address; dropping `stop` closes it.
struct Receiver {
    stop: Option<oneshot::Sender<()>>,
}

async fn start_receiver(addr: SocketAddr, seen: Shared) -> std::io::Result<(Receiver, SocketAddr)> {
    // The port may linger briefly after a stop: retry the bind for a while.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let bound = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut rx => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let seen = Arc::clone(&seen);
            conns.spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let key = req
                            .headers()
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        if let Ok(body) = body
                            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                            && let Some(id) = v["event"]["id"].as_str()
                        {
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            seen.events.insert(id.to_owned());
                            *seen.keys.entry(key).or_default() += 1;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
        // Down means down: open connections go too.
        conns.abort_all();
    });
    Ok((Receiver { stop: Some(tx) }, bound))
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn rules(receiver: SocketAddr, variant: u32) -> String {
    // Every valid variant sends every conversion and refund to the receiver; the extra
    // webhooks change so that each reload really swaps a different rule set.
    let mut text = format!(
        "webhook all_events {{\n    on conversion, refund\n    post \"http://{receiver}/all?v={variant}\"\n}}\n"
    );
    for i in 0..(variant % 7) {
        text.push_str(&format!(
            "\nwebhook extra_{i} {{\n    on event {}\n    when revenue greater than {i}\n    post \"http://{receiver}/extra\"\n}}\n",
            i % 10 + 1
        ));
    }
    text
}

const BROKEN: &str = "webhook broken {\n    on conversion\n    when revenue greater than\n}\n";

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn spawn_whc(
    whc: &Path,
    rules: &Path,
    data: &Path,
) -> std::io::Result<(Child, SocketAddr, SocketAddr)> {
    let mut child = Command::new(whc)
        .args(["serve", "--color", "never", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--retry-schedule"])
        .arg("200ms,500ms,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s")
        .arg("--rules")
        .arg(rules)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    // "whc serve: events on http://ADDR, admin on http://ADDR"
    let addrs: Vec<SocketAddr> = line
        .split("http://")
        .skip(1)
        .filter_map(|s| s.split([',', '\n']).next()?.trim().parse().ok())
        .collect();
    match addrs.as_slice() {
        [events, admin] => Ok((child, *events, *admin)),
        _ => Err(std::io::Error::other(format!(
            "unexpected first line: {line:?}"
        ))),
    }
}

async fn get_json(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
) -> Option<serde_json::Value> {
    let res = client.get(url.parse().ok()?).await.ok()?;
    let body = res.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

async fn soak(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir)?;
    let seen: Shared = Arc::default();
    let (receiver, receiver_addr) =
        start_receiver(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&seen)).await?;
    let mut receiver = Some(receiver);
    let rules_file = rules_dir.join("soak.whc");
    std::fs::write(&rules_file, rules(receiver_addr, 0))?;
    let (mut child, events_addr, admin_addr) =
        spawn_whc(&args.whc, &rules_dir, &dir.path().join("data"))?;
    let pid = child.id();
    println!(
        "whc serve pid {pid}: events {events_addr}, admin {admin_addr}; receiver {receiver_addr}"
    );

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let posted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // The load: each connection posts at rate/connections per second.
    let mut load = tokio::task::JoinSet::new();
    let per_conn = Duration::from_secs_f64(args.connections as f64 / args.rate.max(1) as f64);
    for c in 0..args.connections {
        let (client, acked, failed, posted, stop) = (
            client.clone(),
            Arc::clone(&acked),
            Arc::clone(&failed),
            Arc::clone(&posted),
            Arc::clone(&stop),
        );
        let url = format!("http://{events_addr}/v1/events");
        load.spawn(async move {
            let mut tick = tokio::time::interval(per_conn);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let id = format!("soak-{c}-{n}");
                let kind = if n.is_multiple_of(10) { "refund" } else { "conversion" };
                let body = format!(
                    r#"{{"id":"{id}","type":"{kind}","revenue":{},"firstClick":{{"utm_source":"soak"}}}}"#,
                    n % 100
                );
                let req = Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)));
                posted.fetch_add(1, Ordering::Relaxed);
                let ok = match req {
                    Ok(req) => match client.request(req).await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let _ = res.into_body().collect().await;
                            status == 202
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    // The reloads.
    let status_url = format!("http://{admin_addr}/v1/rules");
    let mut rss = vec![(0u32, rss_kib(pid).unwrap_or(0))];
    let (mut reloads_ok, mut reloads_failed, mut broken_served, mut restarts) =
        (0u64, 0u64, 0u64, 0u32);
    let counted = |v: &serde_json::Value| {
        (
            v["reloads_ok"].as_u64().unwrap_or(0),
            v["reloads_failed"].as_u64().unwrap_or(0),
        )
    };
    let mut last = get_json(&client, &status_url)
        .await
        .map(|v| counted(&v))
        .unwrap_or((1, 0));
    for i in 1..=args.reloads {
        let broken = i.is_multiple_of(10);
        std::fs::write(
            &rules_file,
            if broken {
                BROKEN.to_owned()
            } else {
                rules(receiver_addr, i)
            },
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(v) = get_json(&client, &status_url).await {
                let now = counted(&v);
                if now != last {
                    reloads_ok += now.0.saturating_sub(last.0);
                    reloads_failed += now.1.saturating_sub(last.1);
                    let names: Vec<&str> = v["webhooks"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|w| w["name"].as_str()).collect())
                        .unwrap_or_default();
                    if names.contains(&"broken") {
                        broken_served += 1;
                    }
                    last = now;
                    break;
                }
            }
            if Instant::now() > deadline {
                eprintln!("reload {i}: not counted within 10 s");
                break;
            }
        }
        if i.is_multiple_of(args.restart_every) {
            drop(receiver.take());
            tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
            receiver = Some(start_receiver(receiver_addr, Arc::clone(&seen)).await?.0);
            restarts += 1;
        }
        if i.is_multiple_of(100) {
            rss.push((i, rss_kib(pid).unwrap_or(0)));
            println!(
                "{:>6.1} s  reload {i:>5}  posted {:>7}  failed {}  RSS {} KiB",
                started.elapsed().as_secs_f64(),
                posted.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                rss.last().map_or(0, |r| r.1)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let load_seconds = started.elapsed().as_secs_f64();

    // Every acknowledged event must arrive.
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let missing = loop {
        let missing = {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            acked.iter().filter(|id| !seen.events.contains(*id)).count()
        };
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (delivered, repeats) = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let repeats: u32 = seen.keys.values().map(|n| n - 1).sum();
        (seen.events.len(), repeats)
    };
    rss.push((args.reloads, rss_kib(pid).unwrap_or(0)));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = child.wait()?;

    let failed = failed.load(Ordering::Relaxed);
    println!(
        "\nsoak: {load_seconds:.0} s of load at {} ev/s on {} connections",
        args.rate, args.connections
    );
    println!(
        "  posts        {} ({} acknowledged, {failed} failed)",
        posted.load(Ordering::Relaxed),
        acked.len()
    );
    println!(
        "  delivered    {delivered} distinct events; {missing} acknowledged events missing; {repeats} repeated deliveries (same idempotency key)"
    );
    println!(
        "  reloads      {reloads_ok} ok, {reloads_failed} failed (broken files), broken rules served {broken_served} times"
    );
    println!(
        "  receiver     restarted {restarts} times, {} ms down each",
        args.down_ms
    );
    let series: Vec<String> = rss.iter().map(|(i, kib)| format!("{i}:{kib}")).collect();
    println!("  RSS KiB      after reload N: {}", series.join(" "));
    println!("  whc serve    exited {exit}");
    Ok(failed == 0 && missing == 0 && broken_served == 0)
}
