//! Load test: durable ingest of the sidecar against a bare hyper server and a one-table SQLite
//! group-commit server (the durable limit), in one run.
//!
//! ```text
//! cargo run --release --example load -- [--concurrency 32] [--duration 10]
//! ```
//!
//! What one run does:
//!
//! 1. starts a **sink**: a hyper server on `127.0.0.1:0` that reads each request, answers 200
//!    at once and counts the requests; it is the webhook target;
//! 2. starts the **real sidecar in-process** with [`whc::sidecar::start`]: listeners on
//!    `127.0.0.1:0`, the outbox in a fresh temporary data directory (on the same file system
//!    as `std::env::temp_dir()` unless `--data` says otherwise; group commit with full fsync
//!    as in production), and a temporary rules directory with three webhooks pointing at the
//!    sink (`big_conversions`: `on conversion when revenue greater than 10`, which most events
//!    match; `google_ads_sales`: a GET for conversions from Google Ads; `refunds`);
//! 3. drives `POST /v1/events` with `--concurrency` keep-alive HTTP/1.1 connections (raw hyper
//!    client connections, one request in flight each) for `--duration` seconds; every body is
//!    one realistic event (conversions with varied revenue and sources, a tenth refunds) with a
//!    unique id; reports the events accepted per second (answers 202), p50/p99/max latency
//!    and errors (any other answer, or a failed connection);
//! 4. measures deliveries: those the sink received during the load (per second), and how long
//!    the queue takes to drain once the load stops (the outbox's queue depth reaching 0);
//!
//!    steps 2-4 run twice: first with deliveries **paused** during the load (`whc serve
//!    --paused`, resumed when the load stops), which measures durable ingest alone and then
//!    delivery alone (the drain); then **delivering** while ingesting, production's default,
//!    where both share the two cores (and the sink, which in production is another machine,
//!    takes its share too);
//!
//!    a third sidecar run (paused, like the first) sends the same events as **mapped GET
//!    postbacks** instead: `GET /in/load?id=...&et=sale&payout=...` with every field in the
//!    query, mapped by a `source` block as a tracker's postback is; the report compares it with
//!    the JSON post (issue 12's goal: a postback costs at most 1.2× a JSON post);
//! 5. runs the **same load against a bare hyper server** in the same process: it reads the
//!    body, parses it as a whc event with [`whc::event::Event::from_json_str`] (serde_json
//!    into a `Value`, then the event: the same parsing work as the sidecar's ingest) and
//!    answers 202; no storage, no matching;
//! 6. runs the **same load against the one-table SQLite reference** in the same process: the
//!    bare server's parsing, then one `INSERT` of the body per event into a single table (WAL,
//!    `synchronous = FULL`, as the outbox) by a writer thread that commits everything queued in
//!    one transaction, answering 202 only after COMMIT returned: the same durability as the
//!    sidecar with the least work SQLite can do for it, so the sidecar's distance from it is its
//!    own work (rows, indexes, matching, rendering), not the disk's flush;
//! 7. prints a table of the four runs with each rate over the SQLite reference's (`/sqlite`;
//!    issue 11's goal is at least 0.8 for durable ingest), the ratios sidecar/bare (the goal,
//!    at least 0.5, is for durable ingest), and the outbox's group-commit counters
//!    ([`whc::outbox::Outbox::stats`]): events per commit and how busy the writer was.
//!
//! `--store postgres` runs the sidecar on the PostgreSQL store instead of the SQLite outbox: a
//! throwaway server (`initdb` + `pg_ctl`, fsync on, `synchronous_commit = on`) started by the
//! program on the same machine, a fresh database per run (or `--store postgres://...` for a
//! server of your own, whose tables are then shared by the runs). `--sidecars N` starts N
//! sidecars on that one database, each with its own runtime, and spreads the connections over
//! them: a fleet on one machine.
//!
//! `--rate R` offers R events per second in all (each connection paced) instead of as many as
//! the server takes: with `--skip-paused`, whether the sidecar ingests and delivers at that
//! rate (deliveries per second during the load keep pace, and the queue drains at once).
//!
//! `--rounds N` repeats the runs N times and ends with the median and range of the durable/bare
//! and durable/sqlite ratios: on a shared machine a single round can be off by a third.
//!
//! Why in-process rather than spawning `target/release/whc serve`: the commit counters are read
//! straight from the outbox handle (`/metrics` has them too, but scraping would add load), the
//! queue depth can be read without HTTP polling, and both servers are measured under exactly the same conditions. Each
//! server, the sink and the load generator get their own tokio runtime (threads), so they do not
//! share a scheduler; they do share the machine's cores, as a sidecar shares them with its
//! tracker. The generator is kept cheap: bodies come from pre-rendered templates with the id
//! written in place, connections are reused, and it runs on `--client-threads` (default 1)
//! current-thread runtimes. The report prints the CPU the generator used, so a run where it was
//! the bottleneck is visible.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

use whc::event::Event;
use whc::outbox::Stats;
use whc::sidecar::{self, ServeConfig};

/// Load test: the sidecar's durable ingest against a bare hyper server and a one-table SQLite
/// group-commit server.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent keep-alive connections (one request in flight each).
    #[arg(short, long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of load against each server.
    #[arg(short, long, default_value_t = 10)]
    duration: u64,
    /// Threads (current-thread runtimes) of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Worker threads of each server's runtime (default: the number of cores, like `whc serve`).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Delivery attempts in flight to one endpoint (the sidecar's `--per-endpoint`).
    #[arg(long, default_value_t = 8)]
    per_endpoint: usize,
    /// Delivery attempts in flight overall (the sidecar's `--concurrency`).
    #[arg(long, default_value_t = 64)]
    delivery_concurrency: usize,
    /// Seconds to wait for the delivery queue to drain after the load.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Parent folder of the temporary data directory (default: the system's temp folder).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Skip both sidecar runs.
    #[arg(long)]
    skip_sidecar: bool,
    /// Skip the sidecar run with deliveries paused during the load.
    #[arg(long)]
    skip_paused: bool,
    /// Skip the sidecar run that delivers while it ingests.
    #[arg(long)]
    skip_delivering: bool,
    /// Skip the sidecar run that takes mapped GET postbacks.
    #[arg(long)]
    skip_postback: bool,
    /// Skip the bare server run.
    #[arg(long)]
    skip_bare: bool,
    /// Skip the one-table SQLite reference run.
    #[arg(long)]
    skip_sqlite: bool,
    /// The sidecar's store: `sqlite` (the outbox in the data directory), `postgres` (a
    /// throwaway PostgreSQL server started here), or a PostgreSQL URL.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Sidecars sharing the store (PostgreSQL only); the load is spread over them.
    #[arg(long, default_value_t = 1)]
    sidecars: usize,
    /// Offer this many events per second in all (spread over the connections) instead of as
    /// many as the server takes: with the delivering run, whether the sidecar keeps up with a
    /// given rate (its deliveries per second match, and the queue is empty soon after).
    #[arg(long)]
    rate: Option<f64>,
    /// Repeat the runs this many times, alternating the servers, and end with the spread of
    /// the durable/bare ratio: on a shared machine one round can mislead.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // The sidecars' warnings and errors (a claim or a record that fails) on stderr, as
    // `whc serve` logs them; `WHC_LOG` (e.g. `whc=debug`) changes the level.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let threads = args.server_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let sink = Sink::start()?;
    let scratch = match args.store.as_str() {
        "postgres" => Some(whc::store::scratch::ScratchPostgres::start(true)?),
        _ => None,
    };
    if args.sidecars > 1 && args.store == "sqlite" {
        return Err("--sidecars needs a PostgreSQL store (--store postgres)".into());
    }
    println!("load average at the start: {}", loadavg());
    println!(
        "load: {} connections x {} s per server; generator on {} thread(s), servers on {} worker thread(s), {} core(s)",
        args.concurrency,
        args.duration,
        args.client_threads,
        threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let rounds = args.rounds.max(1);
    let mut ratios = Vec::new();
    let mut sqlite_ratios = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("\n=== round {round} of {rounds} ===");
        }
        let paused = if args.skip_sidecar || args.skip_paused {
            None
        } else {
            Some(run_sidecar(
                &args,
                threads,
                &sink,
                Mode::Paused,
                scratch.as_ref(),
            )?)
        };
        let delivering = if args.skip_sidecar || args.skip_delivering {
            None
        } else {
            Some(run_sidecar(
                &args,
                threads,
                &sink,
                Mode::Delivering,
                scratch.as_ref(),
            )?)
        };
        let postback = if args.skip_sidecar || args.skip_postback {
            None
        } else {
            Some(run_sidecar(
                &args,
                threads,
                &sink,
                Mode::Postback,
                scratch.as_ref(),
            )?)
        };
        let bare = if args.skip_bare {
            None
        } else {
            Some(run_bare(&args, threads)?)
        };
        let sqlite = if args.skip_sqlite {
            None
        } else {
            Some(run_sqlite(&args, threads)?)
        };
        report(
            paused.as_ref(),
            delivering.as_ref(),
            bare.as_ref(),
            sqlite.as_ref(),
        );
        if let Some(g) = &postback {
            postback_report(g, paused.as_ref());
        }
        if let (Some(p), Some(b)) = (&paused, &bare) {
            ratios.push(p.load.rate() / b.load.rate());
        }
        if let (Some(p), Some(q)) = (&paused, &sqlite) {
            sqlite_ratios.push(p.load.rate() / q.load.rate());
        }
    }
    spread("durable ingest / bare", &mut ratios);
    spread("durable ingest / sqlite reference", &mut sqlite_ratios);
    println!("load average at the end: {}", loadavg());
    Ok(())
}

/// Prints the median and range of a ratio measured over several rounds.
fn spread(what: &str, ratios: &mut [f64]) {
    if ratios.len() < 2 {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    println!(
        "\n{what} over {n} rounds: median {median:.2}, from {:.2} to {:.2}",
        ratios[0],
        ratios[n - 1]
    );
}

// ---------------------------------------------------------------------------------------------
// The sink: the webhook target.

/// A hyper server that answers 200 to everything and counts the requests.
struct Sink {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
}

impl Sink {
    fn start() -> std::io::Result<Sink> {
        let count = Arc::new(AtomicU64::new(0));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counter = Arc::clone(&count);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("load-sink".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("sink listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let counter = Arc::clone(&counter);
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let counter = Arc::clone(&counter);
                            async move {
                                let _ = req.into_body().collect().await;
                                counter.fetch_add(1, Ordering::Relaxed);
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                    b"ok",
                                ))))
                            }
                        });
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })?;
        Ok(Sink { addr, count })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// The servers.

/// What one server's run measured.
struct Measured {
    name: &'static str,
    load: LoadResult,
    /// Sidecar only.
    deliveries: Option<Deliveries>,
    /// Sidecar only: the outbox writer's counters after the load.
    stats: Option<Stats>,
    /// CPU seconds the whole process used during the load phase.
    process_cpu: Option<f64>,
}

/// How the sidecar's deliveries run during the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Started with deliveries paused (`whc serve --paused`), resumed when the load ends: the
    /// load measures durable ingest alone, the drain measures delivery alone.
    Paused,
    /// Delivering while ingesting, on the same cores: production's default.
    Delivering,
    /// Paused, taking the events as mapped GET postbacks on a source's route.
    Postback,
}

/// The delivery side of the sidecar's run.
struct Deliveries {
    /// Deliveries the sink received while the load ran.
    during_load: u64,
    /// Deliveries the sink received in all, once drained (or at the timeout).
    total: u64,
    /// Deliveries created (pending, delivered or dead) by the run.
    created: u64,
    /// Time from the end of the load until the queue depth reached 0.
    drain: Duration,
    /// Whether deliveries were paused during the load.
    paused: bool,
    /// Whether the queue reached 0 before the timeout.
    drained: bool,
    /// Load duration, for the rate.
    load_secs: f64,
}

fn server_runtime(threads: usize, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
}

/// The rules the sidecar serves in the run: all three webhooks post to the sink.
fn rules_text(sink: SocketAddr) -> String {
    format!(
        r#"# Generated by examples/load.rs: every webhook posts to the load test's sink.

webhook big_conversions {{
    on conversion
    when revenue greater than 10
    post "http://{sink}/hooks/conversion?txn=[transaction]&amount=[revenue]"
}}

webhook google_ads_sales {{
    on conversion
    when isFromGoogleAds
    get "http://{sink}/collect?ti=[transaction]&tr=[revenue]&cs=[first.utm_source]"
    timeout 2s
}}

webhook refunds {{
    on refund
    post "http://{sink}/hooks/refund?txn=[transaction]&visitor=[visitor]"
    header "X-Source" = "whc-load"
}}

# The GET postback run's source: the same event as the JSON body, every field in the query.
source load {{
    route get "/in/load"
    secret query "whc_token" = env("WHC_LOAD_TOKEN")
    id = query "id"
    type = query "et" {{ "sale" -> conversion, "refund" -> refund }}
    transaction = query "txid"
    revenue = query "payout"
    visitor = query "visitor"
    linkId = query "link"
    targetId = query "target"
    qualityScore = query "qs"
    conversionCount = query "cc"
    eventCount = query "ec"
    isFromGoogleAds = query "gads"
    isFromFacebookAds = query "fbads"
    isFromTikTokAds = query "ttads"
    first.utm_source = query "fsrc"
    first.utm_medium = query "fmed"
    first.utm_campaign = query "fcmp"
    first.country = query "fcountry"
    first.deviceType = query "fdev"
    last.utm_source = query "src"
    last.utm_medium = query "med"
    last.utm_campaign = query "cmp"
    last.country = query "country"
    last.deviceType = query "dev"
    last.referrer = query "ref"
    occurredAt = query "at"
}}
"#
    )
}

fn run_sidecar(
    args: &Args,
    threads: usize,
    sink: &Sink,
    mode: Mode,
    scratch: Option<&whc::store::scratch::ScratchPostgres>,
) -> Result<Measured, Box<dyn std::error::Error>> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let store = match (args.store.as_str(), scratch) {
        ("sqlite", _) => None,
        (_, Some(server)) => Some(server.create_database(&format!(
            "whc_load_{}",
            RUNS.fetch_add(1, Ordering::Relaxed)
        ))?),
        (url, None) => Some(url.to_owned()),
    };
    let parent = args.data.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("whc-load-")
        .tempdir_in(&parent)?;
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("load.whc"), rules_text(sink.addr))?;
    let mut config = ServeConfig::new(rules);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.data = dir.path().join("data");
    config.limits.per_endpoint = args.per_endpoint.max(1);
    config.limits.overall = args.delivery_concurrency.max(1);
    config.grace = Duration::from_secs(2);
    config.paused = mode != Mode::Delivering;
    config.store = store;

    let env: Arc<dyn whc::lang::Env + Send + Sync> = Arc::new(std::collections::HashMap::from([(
        "WHC_LOAD_TOKEN".to_owned(),
        "load".to_owned(),
    )]));
    let mut fleet = Vec::new();
    for n in 0..args.sidecars.max(1) {
        let runtime = server_runtime(threads, "whc-sidecar")?;
        let mut config = config.clone();
        config.data = dir.path().join(format!("data-{n}"));
        let running = runtime.block_on(sidecar::start(config, Arc::clone(&env)))?;
        println!(
            "sidecar: events on http://{}, admin on http://{}, store {}",
            running.addr,
            running.admin_addr,
            running.state.outbox.describe()
        );
        fleet.push((runtime, running));
    }
    let addrs: Vec<SocketAddr> = fleet.iter().map(|(_, r)| r.addr).collect();
    let fleet_stats = |fleet: &[(tokio::runtime::Runtime, sidecar::Running)]| {
        fleet.iter().fold(Stats::default(), |a, (_, r)| {
            let s = r.state.outbox.stats();
            Stats {
                submitted: a.submitted + s.submitted,
                commits: a.commits + s.commits,
                requests: a.requests + s.requests,
                events: a.events + s.events,
                busy_micros: a.busy_micros + s.busy_micros,
            }
        })
    };
    let (runtime, running) = &fleet[0];
    let outbox = running.state.outbox.clone();
    let before_stats = fleet_stats(&fleet);
    let sink_before = sink.count();

    let cpu_start = process_cpu();
    let run = match mode {
        Mode::Paused => "paused",
        Mode::Delivering => "delivering",
        Mode::Postback => "postback",
    };
    let load = drive(args, &addrs, run)?;
    let process_cpu = cpu_start.and_then(|s| process_cpu().map(|e| e - s));
    let during_load = sink.count() - sink_before;
    let stats = fleet_stats(&fleet);

    // Drain: resume deliveries if they were paused, and poll the queue depth until nothing is
    // pending.
    let drain_start = Instant::now();
    if mode == Mode::Paused {
        // The fleet's flag too (a shared store's sidecars follow it), then each gate at once.
        if let Some(Err(err)) = runtime.block_on(outbox.set_fleet_paused(false)) {
            return Err(format!("resume the fleet: {err}").into());
        }
        for (_, r) in &fleet {
            r.state.deliveries.resume();
        }
    }
    let timeout = Duration::from_secs(args.drain_timeout);
    let drained = runtime.block_on(async {
        loop {
            match outbox.queue_depth().await {
                Ok(0) => return true,
                Ok(_) | Err(_) if drain_start.elapsed() > timeout => return false,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let drain = drain_start.elapsed();
    let counts = runtime.block_on(outbox.counts_by_status())?;
    let created = counts.pending + counts.delivered + counts.dead;
    let total = sink.count() - sink_before;
    drop(outbox);
    for (runtime, running) in fleet {
        runtime
            .block_on(running.shutdown())
            .map_err(|e| format!("sidecar shutdown: {e}"))?;
        drop(runtime);
    }

    Ok(Measured {
        name: match mode {
            Mode::Paused => "sidecar, paused",
            Mode::Delivering => "sidecar, delivering",
            Mode::Postback => "sidecar, GET postback",
        },
        load,
        deliveries: Some(Deliveries {
            during_load,
            total,
            created,
            drain,
            drained,
            paused: mode != Mode::Delivering,
            load_secs: args.duration as f64,
        }),
        stats: Some(Stats {
            submitted: stats.submitted - before_stats.submitted,
            commits: stats.commits - before_stats.commits,
            requests: stats.requests - before_stats.requests,
            events: stats.events - before_stats.events,
            busy_micros: stats.busy_micros - before_stats.busy_micros,
        }),
        process_cpu,
    })
}

fn run_bare(args: &Args, threads: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let runtime = server_runtime(threads, "bare-hyper")?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(bare_server(listener));
    println!("bare:    events on http://{addr}");
    let cpu_start = process_cpu();
    let load = drive(args, &[addr], "bare")?;
    let process_cpu = cpu_start.and_then(|s| process_cpu().map(|e| e - s));
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(Measured {
        name: "bare hyper (parse only)",
        load,
        deliveries: None,
        stats: None,
        process_cpu,
    })
}

/// A minimal hyper 1 server: read the body, parse the event, answer 202.
async fn bare_server(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let (status, answer) = match body {
                Ok(bytes) => match std::str::from_utf8(&bytes).ok().map(Event::from_json_str) {
                    Some(Ok(event)) => (
                        StatusCode::ACCEPTED,
                        format!(
                            r#"{{"events":[{{"id":"{}","duplicate":false}}]}}"#,
                            event.id.unwrap_or_default()
                        ),
                    ),
                    _ => (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"bad event"}"#.to_owned(),
                    ),
                },
                Err(_) => (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"bad body"}"#.to_owned(),
                ),
            };
            let mut res = Response::new(Full::new(Bytes::from(answer)));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(res)
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A body to store, and where to say it was committed.
type Insert = (Bytes, tokio::sync::oneshot::Sender<bool>);

/// The most events one reference transaction takes (the outbox's `BATCH_EVENTS`).
const SQLITE_BATCH: usize = 1000;

fn run_sqlite(args: &Args, threads: usize) -> Result<Measured, Box<dyn std::error::Error>> {
    let parent = args.data.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("whc-load-sqlite-")
        .tempdir_in(&parent)?;
    let conn = rusqlite::Connection::open(dir.path().join("reference.db"))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("the SQLite reference needs WAL, got {mode}").into());
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")?;
    let (tx, rx) = std::sync::mpsc::channel::<Insert>();
    let writer = std::thread::Builder::new()
        .name("sqlite-ref-writer".into())
        .spawn(move || sqlite_writer(conn, rx))?;

    let runtime = server_runtime(threads, "sqlite-ref")?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(sqlite_server(listener, tx));
    println!("sqlite:  events on http://{addr}, {}", dir.path().display());
    let cpu_start = process_cpu();
    let load = drive(args, &[addr], "sqlite")?;
    let process_cpu = cpu_start.and_then(|s| process_cpu().map(|e| e - s));
    // Dropping the runtime drops the server's sender, which ends the writer.
    runtime.shutdown_timeout(Duration::from_secs(1));
    writer
        .join()
        .map_err(|_| "the SQLite reference writer panicked")??;
    Ok(Measured {
        name: "sqlite one-table ref",
        load,
        deliveries: None,
        stats: None,
        process_cpu,
    })
}

/// The reference's writer thread: takes the first body and whatever else is queued, inserts
/// them in one transaction, commits (one fsync of the WAL), then answers every one.
fn sqlite_writer(
    conn: rusqlite::Connection,
    rx: std::sync::mpsc::Receiver<Insert>,
) -> rusqlite::Result<()> {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < SQLITE_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO events (body) VALUES (?1)")?;
            for (body, _) in &batch {
                insert.execute([&body[..]])?;
            }
        }
        tx.commit()?;
        for (_, done) in batch {
            let _ = done.send(true);
        }
    }
    Ok(())
}

/// The bare server's parsing, then the body stored by the writer before the 202.
async fn sqlite_server(listener: TcpListener, writer: std::sync::mpsc::Sender<Insert>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let writer = writer.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let writer = writer.clone();
            async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let event = body.as_ref().ok().and_then(|bytes| {
                    let text = std::str::from_utf8(bytes).ok()?;
                    Event::from_json_str(text).ok()
                });
                let (status, answer) = match (body, event) {
                    (Ok(bytes), Some(event)) => {
                        let (done, committed) = tokio::sync::oneshot::channel();
                        let stored =
                            writer.send((bytes, done)).is_ok() && committed.await.unwrap_or(false);
                        if stored {
                            (
                                StatusCode::ACCEPTED,
                                format!(
                                    r#"{{"events":[{{"id":"{}","duplicate":false}}]}}"#,
                                    event.id.unwrap_or_default()
                                ),
                            )
                        } else {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                r#"{"error":"not stored"}"#.to_owned(),
                            )
                        }
                    }
                    _ => (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"bad event"}"#.to_owned(),
                    ),
                };
                let mut res = Response::new(Full::new(Bytes::from(answer)));
                *res.status_mut() = status;
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(res)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/// What one load run measured.
struct LoadResult {
    /// Answers 202.
    accepted: u64,
    /// Other answers and failed requests.
    errors: u64,
    /// Latency of every answered request, in microseconds, sorted.
    latencies: Vec<u32>,
    /// Wall time of the load.
    elapsed: Duration,
    /// CPU seconds the generator's threads used.
    client_cpu: Option<f64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        f64::from(self.latencies[i]) / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies
            .last()
            .map_or(f64::NAN, |&v| f64::from(v) / 1000.0)
    }
}

/// One connection's tally.
#[derive(Default)]
struct Tally {
    accepted: u64,
    errors: u64,
    latencies: Vec<u32>,
}

/// Event bodies: templates split around the id, which is written in place per request.
struct Bodies {
    templates: Vec<(Vec<u8>, Vec<u8>)>,
    run: &'static str,
    /// The templates are GET postback paths and queries, not JSON bodies.
    postback: bool,
}

impl Bodies {
    fn new(run: &'static str, postback: bool) -> Bodies {
        let sources = [
            ("facebook", "paid_social", false, true, false),
            ("google", "cpc", true, false, false),
            ("tiktok", "paid_social", false, false, true),
            ("newsletter", "email", false, false, false),
        ];
        let countries = ["US", "DE", "GB", "CA", "FR"];
        let devices = ["mobile", "desktop", "tablet"];
        let mut templates = Vec::new();
        for i in 0..40usize {
            let (source, medium, google, facebook, tiktok) = sources[i % sources.len()];
            let country = countries[i % countries.len()];
            let device = devices[i % devices.len()];
            // Revenue from 4.90 to 199.90: about nine in ten conversions pass "revenue > 10".
            let revenue = 4.9 + (i * 37 % 200) as f64;
            let kind = if i % 10 == 9 { "refund" } else { "conversion" };
            let head = r#"{"id":""#.to_owned();
            let tail = format!(
                r#"","type":"{kind}","transaction":"ORD-{i}{i}7","revenue":"{revenue:.2}","visitor":"v-{visitor}","linkId":{link},"targetId":"t-{target}","qualityScore":{quality},"conversionCount":1,"eventCount":{count},"isFromGoogleAds":{google},"isFromFacebookAds":{facebook},"isFromTikTokAds":{tiktok},"firstClick":{{"utm_source":"{source}","utm_medium":"{medium}","utm_campaign":"spring-sale","country":"{country}","deviceType":"{device}"}},"lastClick":{{"utm_source":"{source}","utm_medium":"{medium}","utm_campaign":"spring-brand","country":"{country}","deviceType":"{device}","referrer":"https://www.example.com/"}},"occurredAt":"2026-11-27T10:15:00Z"}}"#,
                visitor = 5000 + i * 13,
                link = 10 + i % 7,
                target = i % 5,
                quality = 40 + i * 7 % 60,
                count = 1 + i % 9,
            );
            if postback {
                // The same event as a tracker's postback: every field a query parameter.
                let head = "/in/load?whc_token=load&id=".to_owned();
                let tail = format!(
                    "&et={et}&txid=ORD-{i}{i}7&payout={revenue:.2}&visitor=v-{visitor}&link={link}&target=t-{target}&qs={quality}&cc=1&ec={count}&gads={google}&fbads={facebook}&ttads={tiktok}&fsrc={source}&fmed={medium}&fcmp=spring-sale&fcountry={country}&fdev={device}&src={source}&med={medium}&cmp=spring-brand&country={country}&dev={device}&ref=https%3A%2F%2Fwww.example.com%2F&at=2026-11-27T10%3A15%3A00Z",
                    et = if kind == "refund" { "refund" } else { "sale" },
                    visitor = 5000 + i * 13,
                    link = 10 + i % 7,
                    target = i % 5,
                    quality = 40 + i * 7 % 60,
                    count = 1 + i % 9,
                    google = u8::from(google),
                    facebook = u8::from(facebook),
                    tiktok = u8::from(tiktok),
                );
                templates.push((head.into_bytes(), tail.into_bytes()));
                continue;
            }
            templates.push((head.into_bytes(), tail.into_bytes()));
        }
        Bodies {
            templates,
            run,
            postback,
        }
    }

    /// The body of request `n`: template `n mod k`, id `load-RUN-n`.
    fn body(&self, n: u64, buf: &mut BytesMut) -> Bytes {
        let (head, tail) = &self.templates[(n % self.templates.len() as u64) as usize];
        buf.reserve(head.len() + tail.len() + 40);
        buf.put_slice(head);
        let _ = write!(BufWriter(&mut *buf), "load-{}-{n:012}", self.run);
        buf.put_slice(tail);
        buf.split().freeze()
    }
}

/// `io::Write` into a `BytesMut`.
struct BufWriter<'a>(&'a mut BytesMut);

impl std::io::Write for BufWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.put_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Drives `POST /v1/events` at `addr` for the configured duration and merges the tallies.
/// Connection `c` goes to `addrs[c % addrs.len()]`.
fn drive(args: &Args, addrs: &[SocketAddr], run: &'static str) -> std::io::Result<LoadResult> {
    let bodies = Arc::new(Bodies::new(run, run == "postback"));
    let threads = args.client_threads.clamp(1, args.concurrency.max(1));
    let connections = args.concurrency.max(1);
    let duration = Duration::from_secs(args.duration);
    // Every connection connects, then all start together.
    // With --rate, each connection sends one request every `interval`.
    let interval = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(connections as f64 / r));
    let barrier = Arc::new(Barrier::new(connections));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for t in 0..threads {
        let bodies = Arc::clone(&bodies);
        let barrier = Arc::clone(&barrier);
        let started = Arc::clone(&started);
        let mine: Vec<usize> = (0..connections).filter(|c| c % threads == t).collect();
        let addrs = addrs.to_vec();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-client-{t}"))
                .spawn(move || {
                    let cpu_start = thread_cpu();
                    let tallies = runtime.block_on(async move {
                        let mut set = tokio::task::JoinSet::new();
                        for c in mine {
                            set.spawn(connection(
                                addrs[c % addrs.len()],
                                c as u64,
                                connections as u64,
                                Arc::clone(&bodies),
                                Arc::clone(&barrier),
                                Arc::clone(&started),
                                Pace { duration, interval },
                            ));
                        }
                        let mut tallies = Vec::new();
                        while let Some(t) = set.join_next().await {
                            tallies.push(t.expect("load connection task"));
                        }
                        tallies
                    });
                    let cpu = cpu_start.and_then(|s| thread_cpu().map(|e| e - s));
                    (tallies, cpu)
                })?,
        );
    }
    let mut result = LoadResult {
        accepted: 0,
        errors: 0,
        latencies: Vec::new(),
        elapsed: duration,
        client_cpu: Some(0.0),
    };
    for handle in handles {
        let (tallies, cpu) = handle.join().expect("load client thread");
        result.client_cpu = match (result.client_cpu, cpu) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        for tally in tallies {
            result.accepted += tally.accepted;
            result.errors += tally.errors;
            result.latencies.extend(tally.latencies);
        }
    }
    if let Some(start) = started.get() {
        result.elapsed = start.elapsed().min(duration + Duration::from_secs(5));
        result.elapsed = result.elapsed.max(duration);
    }
    result.latencies.sort_unstable();
    Ok(result)
}

/// How long a connection sends, and how often (`None`: back to back).
#[derive(Debug, Clone, Copy)]
struct Pace {
    duration: Duration,
    interval: Option<Duration>,
}

/// One keep-alive connection sending requests back to back (or paced) until the deadline.
async fn connection(
    addr: SocketAddr,
    first: u64,
    stride: u64,
    bodies: Arc<Bodies>,
    barrier: Arc<Barrier>,
    started: Arc<std::sync::OnceLock<Instant>>,
    pace: Pace,
) -> Tally {
    let Pace { duration, interval } = pace;
    let mut tally = Tally {
        latencies: Vec::with_capacity(64 * 1024),
        ..Tally::default()
    };
    let mut sender = connect(addr).await;
    barrier.wait().await;
    let start = *started.get_or_init(Instant::now);
    let deadline = start + duration;
    let host = header::HeaderValue::from_str(&addr.to_string()).expect("host header");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut n = first;
    // Paced connections start spread over one interval, not all at once.
    let mut next_send = interval.map(|i| start + i.mul_f64(first as f64 / stride.max(1) as f64));
    while Instant::now() < deadline {
        if let (Some(at), Some(every)) = (next_send.as_mut(), interval) {
            tokio::time::sleep_until((*at).into()).await;
            *at += every;
            if Instant::now() >= deadline {
                break;
            }
        }
        let Some(s) = sender.as_mut() else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            sender = connect(addr).await;
            continue;
        };
        let body = bodies.body(n, &mut buf);
        n += stride;
        let (mut req, expected) = if bodies.postback {
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = hyper::Uri::from_maybe_shared(body).expect("a postback path");
            (req, StatusCode::OK)
        } else {
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = hyper::Method::POST;
            *req.uri_mut() = hyper::Uri::from_static("/v1/events");
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            (req, StatusCode::ACCEPTED)
        };
        req.headers_mut().insert(header::HOST, host.clone());
        let sent = Instant::now();
        let ok = match s.send_request(req).await {
            Ok(res) => {
                let status = res.status();
                let body = res.into_body().collect().await;
                body.is_ok() && status == expected
            }
            Err(_) => {
                sender = None;
                false
            }
        };
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        tally.latencies.push(micros);
        if ok {
            tally.accepted += 1;
        } else {
            tally.errors += 1;
        }
        if let Some(s) = sender.as_mut()
            && s.ready().await.is_err()
        {
            sender = None;
        }
    }
    tally
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; None elsewhere).

/// CPU seconds (user + system) from a `/proc/.../stat` file.
fn cpu_from_stat(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux (USER_HZ).
    Some((utime + stime) / 100.0)
}

/// The machine's load average (1, 5, 15 minutes): other work on the cores skews the figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn thread_cpu() -> Option<f64> {
    cpu_from_stat("/proc/thread-self/stat")
}

fn process_cpu() -> Option<f64> {
    cpu_from_stat("/proc/self/stat")
}

// ---------------------------------------------------------------------------------------------
// The report.

/// The mapped GET postback run against the JSON post run (both with deliveries paused).
fn postback_report(postback: &Measured, json: Option<&Measured>) {
    let cpu_per_event = |m: &Measured| match (m.process_cpu, m.load.client_cpu) {
        (Some(all), Some(client)) if m.load.accepted > 0 => {
            Some((all - client) / m.load.accepted as f64 * 1e6)
        }
        _ => None,
    };
    let g = &postback.load;
    println!(
        "\nmapped GET postback (deliveries paused): {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} us cpu/event",
        g.rate(),
        g.percentile_ms(0.50),
        g.percentile_ms(0.99),
        g.errors,
        cpu_per_event(postback).map_or("-".to_owned(), |c| format!("{c:.1}"))
    );
    let Some(json) = json else {
        return;
    };
    let by_rate = json.load.rate() / g.rate().max(f64::MIN_POSITIVE);
    println!(
        "postback cost / JSON post cost, by events/s: {by_rate:.2} (goal: at most 1.20) -> {}",
        if by_rate <= 1.2 { "met" } else { "MISSED" }
    );
    if let (Some(p), Some(j)) = (cpu_per_event(postback), cpu_per_event(json)) {
        println!(
            "postback cost / JSON post cost, by cpu per event: {:.2}",
            p / j
        );
    }
}

fn report(
    paused: Option<&Measured>,
    delivering: Option<&Measured>,
    bare: Option<&Measured>,
    sqlite: Option<&Measured>,
) {
    println!();
    println!(
        "{:<24} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7} {:>12} {:>10} {:>10} {:>11}",
        "server",
        "events/s",
        "/sqlite",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "deliveries/s",
        "client cpu",
        "all cpu",
        "us cpu/ev"
    );
    for m in [paused, delivering, bare, sqlite].into_iter().flatten() {
        let l = &m.load;
        let secs = l.elapsed.as_secs_f64();
        let pct =
            |cpu: Option<f64>| cpu.map_or("-".to_owned(), |c| format!("{:.0}%", c / secs * 100.0));
        let deliveries = m.deliveries.as_ref().map_or("-".to_owned(), |d| {
            format!("{:.0}", d.during_load as f64 / d.load_secs)
        });
        // CPU per accepted event outside the generator: steadier than the rate on a shared
        // machine, since a stall slows the rate but costs no CPU.
        let per_event = match (m.process_cpu, l.client_cpu) {
            (Some(all), Some(client)) if l.accepted > 0 => {
                format!("{:.1}", (all - client) / l.accepted as f64 * 1e6)
            }
            _ => "-".to_owned(),
        };
        let over_sqlite = sqlite.map_or("-".to_owned(), |q| {
            format!("{:.2}", l.rate() / q.load.rate().max(f64::MIN_POSITIVE))
        });
        println!(
            "{:<24} {:>10.0} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>12} {:>10} {:>10} {:>11}",
            m.name,
            l.rate(),
            over_sqlite,
            l.percentile_ms(0.50),
            l.percentile_ms(0.99),
            l.max_ms(),
            l.errors,
            deliveries,
            pct(l.client_cpu),
            pct(m.process_cpu),
            per_event,
        );
    }
    if let Some(b) = bare {
        println!();
        if let Some(s) = paused {
            let ratio = s.load.rate() / b.load.rate();
            println!(
                "durable ingest (deliveries paused) / bare events/s: {ratio:.2} (goal: at least 0.50) -> {}",
                if ratio >= 0.5 { "met" } else { "MISSED" }
            );
        }
        if let Some(s) = delivering {
            println!(
                "ingest while delivering on the same cores / bare events/s: {:.2}",
                s.load.rate() / b.load.rate()
            );
        }
    }
    if let (Some(s), Some(q)) = (paused, sqlite) {
        let ratio = s.load.rate() / q.load.rate();
        println!(
            "durable ingest (deliveries paused) / one-table SQLite reference events/s: {ratio:.2} (issue 11's goal: at least 0.80) -> {}",
            if ratio >= 0.8 { "met" } else { "MISSED" }
        );
        let p99 = s.load.percentile_ms(0.99) / q.load.percentile_ms(0.99);
        println!("  p99 sidecar / reference: {p99:.2} (goal: at most 2)");
    }
    for s in [paused, delivering].into_iter().flatten() {
        println!("\n{}:", s.name);
        if let Some(st) = &s.stats {
            let writes = st.requests;
            println!(
                "  group commit: {} commits for {} write requests ({} events, {} other writes): {:.1} events/commit, {:.1} requests/commit; writer busy {:.0}% of the load",
                st.commits,
                writes,
                st.events,
                writes.saturating_sub(s.load.accepted),
                st.events as f64 / st.commits.max(1) as f64,
                writes as f64 / st.commits.max(1) as f64,
                st.busy_micros as f64 / (s.load.elapsed.as_secs_f64() * 1e4),
            );
        }
        if let Some(d) = &s.deliveries {
            let during = if d.paused {
                "paused during the load".to_owned()
            } else {
                format!(
                    "{} at the sink during the load ({:.0}/s)",
                    d.during_load,
                    d.during_load as f64 / d.load_secs
                )
            };
            let rate = match (d.drained, d.paused) {
                (false, _) => String::new(),
                (true, true) => format!(
                    " ({:.0} deliveries/s delivering alone)",
                    d.total as f64 / d.drain.as_secs_f64().max(1e-3)
                ),
                (true, false) => format!(
                    " ({:.0} deliveries/s over load + drain)",
                    d.total as f64 / (d.load_secs + d.drain.as_secs_f64())
                ),
            };
            println!(
                "  deliveries: {} created, {during}, {} in all; queue {} {:.1} s after the load{rate}",
                d.created,
                d.total,
                if d.drained { "drained" } else { "NOT drained" },
                d.drain.as_secs_f64(),
            );
        }
    }
    println!(
        "\n/sqlite: events/s over the one-table SQLite reference's (same durability, least work);\nclient cpu: the load generator's threads; all cpu: the whole process (generator, sink, server) per wall second; 100% = one core;\nus cpu/ev: CPU time of everything but the generator (server, and the sink while delivering) per accepted event"
    );
}
