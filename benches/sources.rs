//! A tracker's GET postback mapped by a `source` block, beside the same event posted as whc's
//! JSON and read by the events route's decoder: the part of a request that differs between the
//! two (issue 12's goal is a postback at most 1.2x a JSON post over the whole request).
//!
//! Run: `cargo bench --bench sources -- --warm-up-time 1 --measurement-time 3`.
//!
//! Instructions per event, steady on a busy machine: `benches/sources-callgrind.sh`.
//!
//! The event is the load test's (`examples/load.rs`): 27 fields, both clicks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use http::HeaderMap;
use whc::lang::{SourceFile, compile};
use whc::sidecar::guard::tokens_match;
use whc::sidecar::ingest::parse_events;
use whc::source::Request;

const SOURCE: &str = r#"
source load {
    route get "/in/load"
    secret query "whc_token" = env("WHC_LOAD_TOKEN")
    id = query "id"
    type = query "et" { "sale" -> conversion, "refund" -> refund }
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
}
"#;

const POSTBACK: &str = "/in/load?whc_token=load&id=load-postback-17&et=sale&txid=ORD-17177&payout=41.90&visitor=v-5221&link=13&target=t-2&qs=59&cc=1&ec=9&gads=0&fbads=1&ttads=0&fsrc=facebook&fmed=cpc&fcmp=spring-sale&fcountry=US&fdev=mobile&src=facebook&med=cpc&cmp=spring-brand&country=US&dev=mobile&ref=https%3A%2F%2Fwww.example.com%2F&at=2026-11-27T10%3A15%3A00Z";

const JSON: &str = r#"{"id":"load-json-17","type":"conversion","transaction":"ORD-17177","revenue":"41.90","visitor":"v-5221","linkId":13,"targetId":"t-2","qualityScore":59,"conversionCount":1,"eventCount":9,"isFromGoogleAds":false,"isFromFacebookAds":true,"isFromTikTokAds":false,"firstClick":{"utm_source":"facebook","utm_medium":"cpc","utm_campaign":"spring-sale","country":"US","deviceType":"mobile"},"lastClick":{"utm_source":"facebook","utm_medium":"cpc","utm_campaign":"spring-brand","country":"US","deviceType":"mobile","referrer":"https://www.example.com/"},"occurredAt":"2026-11-27T10:15:00Z"}"#;

fn bench(c: &mut Criterion) {
    let env = HashMap::from([("WHC_LOAD_TOKEN".to_owned(), "load".to_owned())]);
    let compiled = compile(&[Arc::new(SourceFile::new("load.whc", SOURCE))], &env);
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let source = &compiled.sources[0];
    let mapped = {
        let req = Request::new("GET", POSTBACK, HeaderMap::new(), Bytes::new());
        source
            .map(&req)
            .expect("the postback maps")
            .event()
            .expect("an event")
    };
    let posted = parse_events(JSON.as_bytes()).expect("the JSON reads");
    // Both ways give the same event, but for the id.
    let mut same = posted[0].clone();
    same.id.clone_from(&mapped.id);
    assert_eq!(mapped.to_json(), same.to_json());

    let json_post = || parse_events(black_box(JSON.as_bytes())).unwrap();
    let get_postback = || {
        let req = Request::new("GET", black_box(POSTBACK), HeaderMap::new(), Bytes::new());
        source.authorise(&req, &env, tokens_match).unwrap();
        source.map(&req).unwrap()
    };

    // `WHC_COUNT=json|postback:N` runs one way N times and exits, for an instruction count
    // that a shared machine cannot disturb: `valgrind --tool=callgrind` with N and with 0.
    if let Ok(count) = std::env::var("WHC_COUNT") {
        let (way, n) = count.split_once(':').expect("WHC_COUNT=json|postback:N");
        let n: usize = n.parse().expect("a count");
        for _ in 0..n {
            if way == "json" {
                black_box(json_post());
            } else {
                black_box(get_postback());
            }
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("event_in");
    group.bench_function("json_post", |b| b.iter(json_post));
    group.bench_function("get_postback", |b| b.iter(get_postback));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
