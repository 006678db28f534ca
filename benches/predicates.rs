//! The first example webhook's conditions evaluated three ways on the same events: compiled by
//! whc, as a hand-written Rust closure over a typed struct, and through the `cel` crate.
//!
//! Run: `cargo bench --bench predicates -- --warm-up-time 1 --measurement-time 3`.
//!
//! Each event is parsed once, outside the timing loop, and every representation is built from the
//! parsed whc event, so the three read the same data. CEL's context is also built once per event
//! outside the loop (the crate lets a context be reused across executions), so `cel` measures the
//! evaluation only; the separate `cel_context` group measures building the context plus
//! evaluating, which is what a sidecar would pay per event.

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use whc::event::{Attribution, ClickField, Event, EventKind, NumberField};
use whc::lang::{SourceFile, Webhook};

const SRC: &str = r#"
webhook facebook_big_sales {
    on conversion
    when first.utm_source equals "facebook"
    when revenue greater than 50
    when last.country equals "US"
    post "https://api.example.com/track?amount=[revenue]&txn=[transaction]"
}
"#;

/// The same conditions in CEL; `lowerAscii` comes from the strings extension.
const CEL_SRC: &str = r#"event_type == "conversion" && first.utm_source == "facebook" && revenue > 50.0 && last.country.lowerAscii() == "us""#;

/// (name, event JSON, whether the webhook fires).
const EVENTS: [(&str, &str, bool); 3] = [
    (
        "fires",
        r#"{"type": "conversion", "transaction": "T-1001", "revenue": 75.5,
            "firstClick": {"utm_source": "facebook", "country": "DE"},
            "lastClick": {"utm_source": "google", "country": "us"}}"#,
        true,
    ),
    (
        "fails_last",
        r#"{"type": "conversion", "transaction": "T-1002", "revenue": 75.5,
            "firstClick": {"utm_source": "facebook", "country": "DE"},
            "lastClick": {"utm_source": "google", "country": "CA"}}"#,
        false,
    ),
    (
        "fails_early",
        r#"{"type": "conversion", "transaction": "T-1003", "revenue": 75.5,
            "firstClick": {"utm_source": "google", "country": "DE"},
            "lastClick": {"utm_source": "google", "country": "US"}}"#,
        false,
    ),
];

/// What a person would write by hand: a plain struct with only the fields the rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conversion,
    Refund,
    Custom(u8),
}

#[derive(Debug, Clone)]
struct Typed {
    kind: Kind,
    first_utm_source: Option<String>,
    revenue: Option<f64>,
    last_country: Option<String>,
}

impl Typed {
    fn from_event(event: &Event) -> Typed {
        Typed {
            kind: match event.kind {
                EventKind::Conversion => Kind::Conversion,
                EventKind::Refund => Kind::Refund,
                EventKind::Custom(n) => Kind::Custom(n),
            },
            first_utm_source: event
                .click_text(Attribution::First, ClickField::UtmSource)
                .map(str::to_owned),
            revenue: event.number(NumberField::Revenue),
            last_country: event
                .click_text(Attribution::Last, ClickField::Country)
                .map(str::to_owned),
        }
    }
}

fn compile_whc() -> Webhook {
    let files = [Arc::new(SourceFile::new("bench.whc", SRC))];
    let compiled = whc::lang::compile(&files, &HashMap::<String, String>::new());
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    compiled.webhooks.into_iter().next().expect("one webhook")
}

fn cel_click(event: &Event, attribution: Attribution) -> cel::Value {
    let map: HashMap<String, cel::Value> = ClickField::ALL
        .iter()
        .filter_map(|&f| {
            event
                .click_text(attribution, f)
                .map(|v| (f.name().to_owned(), cel::Value::from(v)))
        })
        .collect();
    cel::Value::from(map)
}

/// Binds the variables the CEL expression reads, from the parsed event.
fn cel_context(env: &Arc<cel::Env>, event: &Event) -> cel::Context<'static, 'static> {
    let mut ctx = cel::Context::with_env(Arc::clone(env));
    ctx.add_variable_from_value("event_type", event.kind.wire_name());
    ctx.add_variable_from_value("first", cel_click(event, Attribution::First));
    ctx.add_variable_from_value("last", cel_click(event, Attribution::Last));
    if let Some(r) = event.number(NumberField::Revenue) {
        ctx.add_variable_from_value("revenue", r);
    }
    ctx
}

fn cel_holds(result: &cel::ResolveResult) -> bool {
    matches!(result, Ok(cel::Value::Bool(true)))
}

fn first_example(c: &mut Criterion) {
    let webhook = compile_whc();
    let hand = |e: &Typed| {
        e.kind == Kind::Conversion
            && e.first_utm_source.as_deref() == Some("facebook")
            && e.revenue.is_some_and(|r| r > 50.0)
            && e.last_country
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("US"))
    };
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    let env = Arc::new(env);
    let program = env.compile(CEL_SRC).expect("CEL compiles");

    let mut group = c.benchmark_group("first_example");
    for (name, json, fires) in EVENTS {
        let event = Event::from_json_str(json).expect("event parses");
        let typed = Typed::from_event(&event);
        let ctx = cel_context(&env, &event);
        let cel_result = program.execute(&ctx);
        assert_eq!(webhook.fires_for(&event), fires, "whc on {name}");
        assert_eq!(hand(&typed), fires, "hand-written on {name}");
        assert!(
            matches!(cel_result, Ok(cel::Value::Bool(_))),
            "CEL on {name}: {cel_result:?}"
        );
        assert_eq!(cel_holds(&cel_result), fires, "CEL on {name}");

        group.bench_function(format!("whc/{name}"), |b| {
            b.iter(|| black_box(&webhook).fires_for(black_box(&event)))
        });
        group.bench_function(format!("hand_written/{name}"), |b| {
            b.iter(|| hand(black_box(&typed)))
        });
        group.bench_function(format!("cel/{name}"), |b| {
            b.iter(|| cel_holds(&black_box(&program).execute(black_box(&ctx))))
        });
    }
    group.finish();

    // For reference: what CEL costs when the context is built for each event, as a sidecar must.
    let mut group = c.benchmark_group("cel_context");
    for (name, json, fires) in EVENTS {
        let event = Event::from_json_str(json).expect("event parses");
        assert_eq!(
            cel_holds(&program.execute(&cel_context(&env, &event))),
            fires
        );
        group.bench_function(format!("build_and_eval/{name}"), |b| {
            b.iter(|| {
                let ctx = cel_context(&env, black_box(&event));
                cel_holds(&program.execute(&ctx))
            })
        });
    }
    group.finish();
}

/// Matching one event against 1,000 webhooks, each keyed by its own `first.utm_source`: the
/// rule set's index against evaluating every webhook.
fn many_webhooks(c: &mut Criterion) {
    let mut src = String::new();
    for i in 0..1000 {
        src.push_str(&format!(
            "webhook w{i} {{\n on conversion\n when first.utm_source equals \"source{i}\"\n when revenue > 10\n post \"https://x.test/{i}\"\n}}\n"
        ));
    }
    let compiled = whc::lang::compile(
        &[Arc::new(SourceFile::new("many.whc", src))],
        &HashMap::<String, String>::new(),
    );
    assert!(!compiled.has_errors());
    let rules = whc::engine::RuleSet::new(compiled.webhooks, &[]);
    let event = Event::from_json_str(
        r#"{"type":"conversion","revenue":50,"firstClick":{"utm_source":"source500"}}"#,
    )
    .unwrap();
    assert_eq!(rules.matching(&event).count(), 1);
    let mut group = c.benchmark_group("many_webhooks");
    group.bench_function("indexed", |b| {
        b.iter(|| rules.matching(black_box(&event)).count())
    });
    group.bench_function("scan_all", |b| {
        b.iter(|| {
            rules
                .webhooks()
                .iter()
                .filter(|w| w.fires_for(black_box(&event)))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, first_example, many_webhooks);
criterion_main!(benches);
