//! The matcher's fast paths (text keys, number ranges, fused tests, reordering) agree with the
//! plain evaluation of every condition, on random rules and events.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use whc::event::Event;
use whc::lang::predicate::Predicate;
use whc::lang::{self, SourceFile, Webhook};

/// Texts that collide often: equal, equal but for case, prefixes, long ones sharing a key prefix.
const TEXTS: &[&str] = &[
    "",
    "a",
    "US",
    "us",
    "Us",
    "CA",
    "fb",
    "facebook",
    "Facebook",
    "faceboo",
    "spring",
    "spring_sale",
    "spring_sale_2026_a",
    "spring_sale_2026_b",
    "spring_sale_2026",
    "abcdefghijklmno",
    "abcdefghijklmnop",
];

/// Numbers, in events and in rules; equal values make the boundaries of each operator count.
const NUMBERS: &[&str] = &["0", "-1", "49.99", "50", "50.01"];

const TEXT_FIELDS: &[&str] = &[
    "first.utm_source",
    "last.utm_source",
    "utm_campaign",
    "first.country",
    "country",
    "deviceType",
];

const NUMBER_FIELDS: &[&str] = &["revenue", "qualityScore"];

fn text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(TEXTS)
}

fn number() -> impl Strategy<Value = &'static str> {
    prop::sample::select(NUMBERS)
}

/// One condition over the fields above, in any of the shapes the compiler fuses and some it
/// does not.
fn condition() -> impl Strategy<Value = String> {
    let field = prop::sample::select(TEXT_FIELDS);
    let number_field = prop::sample::select(NUMBER_FIELDS);
    prop_oneof![
        3 => (field.clone(), text()).prop_map(|(f, t)| format!("{f} equals {t:?}")),
        1 => (field.clone(), text()).prop_map(|(f, t)| format!("{f} not equals {t:?}")),
        1 => (field.clone(), text()).prop_map(|(f, t)| format!("{f} starts with {t:?}")),
        1 => (field.clone(), text()).prop_map(|(f, t)| format!("{f} contains {t:?}")),
        1 => (field.clone(), prop::collection::vec(text(), 1..4))
            .prop_map(|(f, ts)| format!("{f} in {ts:?}")),
        1 => field.clone().prop_map(|f| format!("{f} is set")),
        1 => field.prop_map(|f| format!("{f} is not set")),
        3 => (
            number_field,
            prop::sample::select(&[">", ">=", "<", "<=", "=="][..]),
            number()
        )
            .prop_map(|(f, op, n)| format!("{f} {op} {n}")),
        1 => Just("isFromTikTokAds".to_owned()),
        1 => Just("not isFromGoogleAds".to_owned()),
    ]
}

/// A click object with some of the text fields set.
fn click() -> impl Strategy<Value = String> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(source, campaign, country, device)| {
            let pairs = [
                ("utm_source", source),
                ("utm_campaign", campaign),
                ("country", country),
                ("deviceType", device),
            ];
            let fields: Vec<String> = pairs
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k:?}: {v:?}")))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
}

fn event() -> impl Strategy<Value = String> {
    (
        prop::option::of(click()),
        prop::option::of(click()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(first, last, revenue, quality, tiktok, google)| {
            let mut fields = vec![r#""type": "conversion""#.to_owned()];
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    fields.push(format!("{k:?}: {v}"));
                }
            };
            put("firstClick", first);
            put("lastClick", last);
            // A number may also come as a numeric string.
            put("revenue", revenue.map(|n| format!("{n:?}")));
            put("qualityScore", quality.map(str::to_owned));
            put("isFromTikTokAds", tiktok.map(|b| b.to_string()));
            put("isFromGoogleAds", google.map(|b| b.to_string()));
            format!("{{{}}}", fields.join(", "))
        })
}

fn compile(conditions: &[String]) -> Webhook {
    let mut src = String::from("webhook w {\n    on conversion\n");
    for c in conditions {
        src.push_str(&format!("    when {c}\n"));
    }
    src.push_str("    post \"https://x.test/\"\n}\n");
    let compiled = lang::compile(
        &[Arc::new(SourceFile::new("w.whc", src.clone()))],
        &HashMap::<String, String>::new(),
    );
    assert!(!compiled.has_errors(), "{src}\n{:?}", compiled.diagnostics);
    compiled.webhooks.into_iter().next().expect("one webhook")
}

/// Evaluation with no fast path: read the value by field, then apply the check.
fn plain(p: &Predicate, event: &Event) -> bool {
    match p {
        Predicate::All(parts) => parts.iter().all(|p| plain(p, event)),
        Predicate::Any(parts) => parts.iter().any(|p| plain(p, event)),
        Predicate::Not(inner) => !plain(inner, event),
        Predicate::Test(test) => test.eval_value(event.value(test.field)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_plan_agrees_with_plain_evaluation(
        conditions in prop::collection::vec(condition(), 0..5),
        json in event(),
    ) {
        let webhook = compile(&conditions);
        let event = Event::from_json_str(&json).expect("event parses");
        let expected = webhook.conditions.iter().all(|c| plain(&c.predicate, &event));
        prop_assert_eq!(webhook.fires_for(&event), expected, "{:?} on {}", conditions, json);
        for c in &webhook.conditions {
            prop_assert_eq!(c.predicate.eval(&event), plain(&c.predicate, &event), "{}", c.source);
        }
    }
}
