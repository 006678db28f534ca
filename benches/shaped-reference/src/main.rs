//! The one-table SQLite reference (`../shared/bench/refserver`, `sqlite` mode) with whc's row and
//! whc's answer as switches, so that a run can tell what each costs against the same server.
//!
//! Usage: `shaped-reference ADDR DB [--row body|whc] [--answer empty|whc]`
//!
//! * `--row body` (the reference): `INSERT INTO events (body)` into a two-column table.
//! * `--row whc`: the row whc's outbox writes for an event whose id it assigned: a 36-byte
//!   text id, the type, the posted body, `received_at`, `occurred_at`, no fan-out, `assigned`
//!   1, in a table shaped as whc's `events`, with its partial unique index.
//! * `--answer empty` (the reference): `202` with `{}`.
//! * `--answer whc`: `202` with whc's 133-byte answer to an event that matches no webhook, and
//!   its `content-type`.
//!
//! Everything else is the reference's: two runtime workers, one writer thread, group commit of
//! whatever is queued (at most 1,000), WAL with `synchronous=FULL`, answers after the commit.

use std::convert::Infallible;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

type Job = (Bytes, oneshot::Sender<()>);

/// A 202 of whc's to one event that matched no webhook: its bytes, and so its length.
const WHC_ANSWER: &[u8] = br#"{"events":[{"deliveries":[],"duplicate":false,"id":"01a239ec-819e-7338-8348-3baab9630f0f","webhooks":[]}],"rules":"7e13f1d3070901c9"}"#;

/// What the writer stores per event.
#[derive(Clone, Copy)]
enum Row {
    Body,
    Whc,
}

fn writer(path: String, row: Row, rx: mpsc::Receiver<Job>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update_and_check(None, "journal_mode", "wal", |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    let (schema, insert) = match row {
        Row::Body => (
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
            "INSERT INTO events (body) VALUES (?1)",
        ),
        Row::Whc => (
            "CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL,
                body TEXT NOT NULL, received_at INTEGER NOT NULL, occurred_at TEXT,
                fanout BLOB, assigned INTEGER NOT NULL DEFAULT 0);
             CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id) WHERE assigned = 0;",
            "INSERT INTO events (id, type, body, received_at, occurred_at, fanout, assigned)
             VALUES (?1, 'conversion', ?2, ?3, '2026-11-27T10:15:00Z', NULL, 1)",
        ),
    };
    conn.execute_batch(schema).unwrap();
    let mut made = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(j) = rx.try_recv() {
            batch.push(j);
            if batch.len() >= 1000 {
                break;
            }
        }
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut st = conn.prepare_cached(insert).unwrap();
            for (b, _) in &batch {
                match row {
                    Row::Body => st.execute([&b[..]]).unwrap(),
                    Row::Whc => {
                        made += 1;
                        let id = format!("01a239ec-819e-7338-8348-{made:012x}");
                        let body = std::str::from_utf8(b).unwrap();
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                        st.execute(rusqlite::params![id, body, now.as_millis() as i64])
                            .unwrap()
                    }
                };
            }
        }
        conn.execute_batch("COMMIT").unwrap();
        for (_, tx) in batch {
            let _ = tx.send(());
        }
    }
}

/// The value after `flag` in `args`, or `default`.
fn switch<'a>(args: &'a [String], flag: &str, default: &'a str) -> &'a str {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str)
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).map_or("127.0.0.1:9901", String::as_str);
    let path = args
        .get(2)
        .map_or("/tmp/shaped-reference.db", String::as_str);
    let row = match switch(&args, "--row", "body") {
        "body" => Row::Body,
        "whc" => Row::Whc,
        other => panic!("--row: body | whc, not {other}"),
    };
    let whc_answer = match switch(&args, "--answer", "empty") {
        "empty" => false,
        "whc" => true,
        other => panic!("--answer: empty | whc, not {other}"),
    };
    let (tx, rx) = mpsc::channel::<Job>();
    let path = path.to_owned();
    std::thread::spawn(move || writer(path, row, rx));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    eprintln!("shaped-reference on {addr}");
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                        let bad = Response::builder()
                            .status(400)
                            .body(Full::new(Bytes::from_static(b"bad")))
                            .unwrap();
                        return Ok::<_, Infallible>(bad);
                    }
                    let (otx, orx) = oneshot::channel();
                    tx.send((body, otx)).unwrap();
                    orx.await.unwrap();
                    let answer = Response::builder().status(StatusCode::ACCEPTED);
                    Ok(if whc_answer {
                        answer
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(WHC_ANSWER)))
                            .unwrap()
                    } else {
                        answer.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
