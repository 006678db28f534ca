//! What rules mean: (rule, event, fires?) cases over every operator, field type, click, missing
//! value, `and`/`or`/`not`, `on` kind, and how URLs render.
//!
//! `fires!(RULE, EVENT)` and `never!(RULE, EVENT)` compile one webhook and evaluate it on one
//! event. RULE is a condition, wrapped as `on conversion, refund, event` + `when RULE`, unless it
//! starts with `on`, in which case it is the webhook's whole body (minus the URL). EVENT is the
//! tracker's JSON, written with `json!` syntax; `"type": "conversion"` is implied when absent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use whc::engine::RuleSet;
use whc::engine::explain::explain;
use whc::event::Event;
use whc::lang::url::RenderContext;
use whc::lang::{self, SourceFile, Webhook};

fn compile(text: &str) -> (Vec<Webhook>, Vec<Arc<SourceFile>>) {
    let sources = vec![Arc::new(SourceFile::new("t.whc", text))];
    let compiled = lang::compile(&sources, &HashMap::<String, String>::new());
    let errors: Vec<String> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code.as_str(), d.message))
        .collect();
    assert!(
        errors.is_empty(),
        "rule does not compile:\n{text}\n{errors:#?}"
    );
    (compiled.webhooks, sources)
}

/// Compiles one webhook named `t` from a condition or a body (see the module's doc).
#[track_caller]
fn webhook(rule: &str) -> Webhook {
    let body = if rule.trim_start().starts_with("on ") {
        rule.to_owned()
    } else {
        format!("on conversion, refund, event\n    when {rule}")
    };
    let text = format!("webhook t {{\n    {body}\n    post \"https://hooks.example.com/t\"\n}}\n");
    let (mut webhooks, _) = compile(&text);
    assert_eq!(webhooks.len(), 1, "{text}");
    webhooks.remove(0)
}

/// Parses an event, implying `"type": "conversion"`.
#[track_caller]
fn event(mut json: Value) -> Event {
    if let Value::Object(map) = &mut json {
        map.entry("type").or_insert_with(|| json!("conversion"));
    }
    Event::from_json(&json).unwrap_or_else(|e| panic!("bad test event {json}: {e}"))
}

#[track_caller]
fn assert_fires(rule: &str, json: Value, expected: bool) {
    let w = webhook(rule);
    let e = event(json.clone());
    let fired = w.fires_for(&e);
    if fired != expected {
        let why = explain(&w, &e);
        panic!(
            "expected `{rule}` {} for {json}\nexplanation: {:#?}",
            if expected { "to fire" } else { "never to fire" },
            why.conditions
        );
    }
}

/// The rule fires for the event.
macro_rules! fires {
    ($rule:expr, $($event:tt)+) => {
        assert_fires($rule, json!($($event)+), true)
    };
}

/// The rule does not fire for the event.
macro_rules! never {
    ($rule:expr, $($event:tt)+) => {
        assert_fires($rule, json!($($event)+), false)
    };
}

// === Text fields: every operator, case-sensitive ===

#[test]
fn text_equals() {
    fires!(r#"utm_source equals "facebook""#, {"lastClick": {"utm_source": "facebook"}});
    fires!(r#"utm_source == "facebook""#, {"lastClick": {"utm_source": "facebook"}});
    never!(r#"utm_source equals "facebook""#, {"lastClick": {"utm_source": "Facebook"}});
    never!(r#"utm_source == "facebook""#, {"lastClick": {"utm_source": "facebook2"}});
    never!(r#"utm_source equals "face""#, {"lastClick": {"utm_source": "facebook"}});
}

#[test]
fn text_not_equals() {
    fires!(r#"utm_source not equals "facebook""#, {"lastClick": {"utm_source": "google"}});
    fires!(r#"utm_source != "facebook""#, {"lastClick": {"utm_source": "Facebook"}});
    never!(r#"utm_source not equals "facebook""#, {"lastClick": {"utm_source": "facebook"}});
    never!(r#"utm_source != "facebook""#, {"lastClick": {"utm_source": "facebook"}});
}

#[test]
fn text_contains() {
    fires!(r#"utm_campaign contains "sale""#, {"lastClick": {"utm_campaign": "spring_sale_2"}});
    fires!(r#"utm_campaign contains "spring""#, {"lastClick": {"utm_campaign": "spring"}});
    never!(r#"utm_campaign contains "SALE""#, {"lastClick": {"utm_campaign": "spring_sale"}});
    never!(r#"utm_campaign contains "winter""#, {"lastClick": {"utm_campaign": "spring"}});
    fires!(r#"utm_campaign not contains "winter""#, {"lastClick": {"utm_campaign": "spring"}});
    never!(r#"utm_campaign not contains "ring""#, {"lastClick": {"utm_campaign": "spring"}});
}

#[test]
fn text_starts_and_ends_with() {
    fires!(r#"utm_campaign starts with "spring""#, {"lastClick": {"utm_campaign": "spring_sale"}});
    never!(r#"utm_campaign starts with "spring""#, {"lastClick": {"utm_campaign": "Spring_sale"}});
    never!(r#"utm_campaign starts with "sale""#, {"lastClick": {"utm_campaign": "spring_sale"}});
    never!(r#"utm_campaign starts with "spring_sale_""#, {"lastClick": {"utm_campaign": "spr"}});
    fires!(r#"utm_campaign ends with "sale""#, {"lastClick": {"utm_campaign": "spring_sale"}});
    never!(r#"utm_campaign ends with "SALE""#, {"lastClick": {"utm_campaign": "spring_sale"}});
    never!(r#"utm_campaign ends with "spring""#, {"lastClick": {"utm_campaign": "spring_sale"}});
}

#[test]
fn text_in_and_not_in() {
    fires!(r#"deviceType in ["mobile", "tablet"]"#, {"lastClick": {"deviceType": "tablet"}});
    never!(r#"deviceType in ["mobile", "tablet"]"#, {"lastClick": {"deviceType": "desktop"}});
    never!(r#"deviceType in ["mobile", "tablet"]"#, {"lastClick": {"deviceType": "Mobile"}});
    fires!(r#"deviceType not in ["mobile", "tablet"]"#, {"lastClick": {"deviceType": "desktop"}});
    never!(r#"deviceType not in ["mobile", "tablet"]"#, {"lastClick": {"deviceType": "mobile"}});
    // A long list is hashed rather than scanned; it means the same.
    let many = r#"utm_term in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]"#;
    fires!(many, {"lastClick": {"utm_term": "k"}});
    never!(many, {"lastClick": {"utm_term": "K"}});
    never!(many, {"lastClick": {"utm_term": "z"}});
    // An empty list holds nothing (this once panicked the checker; found by the fmt property test).
    never!(r#"deviceType in []"#, {"lastClick": {"deviceType": "mobile"}});
    fires!(r#"country not in []"#, {"lastClick": {"country": "US"}});
}

#[test]
fn text_matches() {
    fires!(r#"referrer matches "^https://(www\\.)?google\\.""#, {"lastClick": {"referrer": "https://www.google.com/"}});
    never!(r#"referrer matches "^https://(www\\.)?google\\.""#, {"lastClick": {"referrer": "https://bing.com/?q=google."}});
    fires!(r#"utm_content matches "v[0-9]+""#, {"lastClick": {"utm_content": "banner_v12"}});
    never!(r#"utm_content matches "V[0-9]+""#, {"lastClick": {"utm_content": "banner_v12"}});
}

#[test]
fn text_is_set_and_is_not_set() {
    fires!("utm_medium is set", {"lastClick": {"utm_medium": "cpc"}});
    never!("utm_medium is set", {"lastClick": {"utm_source": "x"}});
    fires!("utm_medium is not set", {"lastClick": {"utm_source": "x"}});
    never!("utm_medium is not set", {"lastClick": {"utm_medium": "cpc"}});
    // `null` counts as not sent.
    fires!("utm_medium is not set", {"lastClick": {"utm_medium": null}});
}

#[test]
fn every_click_field_reads_its_own_key() {
    for field in [
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "deviceType",
        "referrer",
    ] {
        let rule = format!(r#"{field} equals "x""#);
        assert_fires(&rule, json!({"lastClick": {field: "x"}}), true);
        assert_fires(&rule, json!({"lastClick": {"other": "x"}}), false);
        let rule = format!(r#"first.{field} equals "x""#);
        assert_fires(
            &rule,
            json!({"firstClick": {field: "x"}, "lastClick": {}}),
            true,
        );
        assert_fires(
            &rule,
            json!({"firstClick": {}, "lastClick": {field: "x"}}),
            false,
        );
    }
}

// === country: case-insensitive ===

#[test]
fn country_compares_ignoring_case() {
    fires!(r#"country equals "US""#, {"lastClick": {"country": "us"}});
    fires!(r#"country == "us""#, {"lastClick": {"country": "US"}});
    never!(r#"country equals "US""#, {"lastClick": {"country": "CA"}});
    fires!(r#"country != "us""#, {"lastClick": {"country": "CA"}});
    never!(r#"country != "us""#, {"lastClick": {"country": "Us"}});
    fires!(r#"country in ["us", "CA"]"#, {"lastClick": {"country": "ca"}});
    never!(r#"country not in ["us", "CA"]"#, {"lastClick": {"country": "Ca"}});
    fires!(r#"country contains "s""#, {"lastClick": {"country": "US"}});
    fires!(r#"country starts with "u""#, {"lastClick": {"country": "US"}});
    fires!(r#"country ends with "S""#, {"lastClick": {"country": "us"}});
    never!(r#"country not contains "S""#, {"lastClick": {"country": "us"}});
    fires!(r#"country matches "^(us|ca)$""#, {"lastClick": {"country": "US"}});
    never!(r#"country matches "^(us|ca)$""#, {"lastClick": {"country": "DE"}});
}

#[test]
fn utm_fields_do_not_ignore_case() {
    never!(r#"utm_campaign equals "Spring""#, {"lastClick": {"utm_campaign": "spring"}});
    never!(r#"utm_source in ["FACEBOOK"]"#, {"lastClick": {"utm_source": "facebook"}});
    fires!(r#"utm_source not in ["FACEBOOK"]"#, {"lastClick": {"utm_source": "facebook"}});
    never!(r#"utm_medium contains "CP""#, {"lastClick": {"utm_medium": "cpc"}});
}

// === Flags ===

#[test]
fn a_bare_flag_means_true() {
    fires!("isFromGoogleAds", {"isFromGoogleAds": true});
    never!("isFromGoogleAds", {"isFromGoogleAds": false});
    never!("isFromGoogleAds", {});
    fires!("isFromFacebookAds", {"isFromFacebookAds": "true"});
    fires!("isFromTikTokAds", {"isFromTikTokAds": 1});
    never!("isFromTikTokAds", {"isFromTikTokAds": 0});
}

#[test]
fn flag_operators() {
    fires!("isFromGoogleAds == false", {"isFromGoogleAds": false});
    fires!("isFromGoogleAds equals true", {"isFromGoogleAds": true});
    never!("isFromGoogleAds == false", {"isFromGoogleAds": true});
    never!("isFromGoogleAds == false", {});
    fires!("isFromGoogleAds != true", {"isFromGoogleAds": false});
    fires!("isFromGoogleAds not equals false", {"isFromGoogleAds": true});
    never!("isFromGoogleAds != true", {});
    never!("isFromGoogleAds != false", {"isFromGoogleAds": false});
    fires!("isFromGoogleAds is set", {"isFromGoogleAds": false});
    never!("isFromGoogleAds is set", {});
    fires!("isFromGoogleAds is not set", {});
    never!("isFromGoogleAds is not set", {"isFromGoogleAds": false});
}

// === Numbers ===

#[test]
fn number_comparisons_in_words_and_symbols() {
    fires!("revenue greater than 50", {"revenue": 50.01});
    fires!("revenue > 50", {"revenue": 60});
    never!("revenue > 50", {"revenue": 50});
    fires!("revenue at least 50", {"revenue": 50});
    fires!("revenue >= 50", {"revenue": 50});
    never!("revenue >= 50", {"revenue": 49.99});
    fires!("revenue less than 10", {"revenue": 9.5});
    fires!("revenue < 10", {"revenue": -3});
    never!("revenue < 10", {"revenue": 10});
    fires!("revenue at most 10", {"revenue": 10});
    fires!("revenue <= 10", {"revenue": 10});
    never!("revenue <= 10", {"revenue": 10.01});
    fires!("revenue equals 49.99", {"revenue": 49.99});
    fires!("revenue == 50", {"revenue": 50.0});
    never!("revenue == 50", {"revenue": 50.5});
    fires!("revenue not equals 50", {"revenue": 51});
    fires!("revenue != 50", {"revenue": 0});
    never!("revenue != 50", {"revenue": 50});
    fires!("revenue > -1", {"revenue": 0});
}

#[test]
fn number_lists_and_presence() {
    fires!("conversionCount in [1, 2, 3]", {"conversionCount": 2});
    never!("conversionCount in [1, 2, 3]", {"conversionCount": 4});
    fires!("conversionCount not in [1, 2, 3]", {"conversionCount": 4});
    never!("conversionCount not in [1, 2, 3]", {"conversionCount": 1});
    fires!("eventCount is set", {"eventCount": 0});
    fires!("eventCount is not set", {});
    fires!("qualityScore >= 70", {"qualityScore": 70});
    never!("qualityScore >= 70", {"qualityScore": 69});
}

#[test]
fn numbers_may_arrive_as_numeric_strings() {
    fires!("revenue > 50", {"revenue": "60"});
    fires!("revenue == 49.99", {"revenue": "49.99"});
    never!("revenue > 50", {"revenue": "50"});
    fires!("qualityScore at least 70", {"qualityScore": " 70 "});
    fires!("eventCount in [3]", {"eventCount": "3"});
}

#[test]
fn event_number() {
    let rule = "on event\n    when eventNumber == 3";
    fires!(rule, {"type": "event3"});
    fires!(rule, {"type": "event", "eventNumber": 3});
    fires!(rule, {"type": "event", "eventNumber": "3"});
    never!(rule, {"type": "event4"});
    let rule = "on event\n    when eventNumber in [1, 10]";
    fires!(rule, {"type": "event10"});
    never!(rule, {"type": "event2"});
    fires!("on event\n    when eventNumber > 5", {"type": "event6"});
}

// === Identifiers: text, also written as integer literals ===

#[test]
fn ids_compare_as_text_from_strings_or_integers() {
    fires!(r#"linkId equals "12""#, {"linkId": 12});
    fires!(r#"linkId equals "12""#, {"linkId": "12"});
    fires!("linkId == 12", {"linkId": "12"});
    fires!("linkId == 12", {"linkId": 12});
    never!("linkId == 12", {"linkId": 120});
    never!("linkId == 12", {"linkId": "012"});
    fires!("targetId in [7, 8]", {"targetId": 8});
    fires!(r#"targetId in [7, "abc"]"#, {"targetId": "abc"});
    never!("targetId not in [7, 8]", {"targetId": "7"});
    fires!(r#"linkId contains "2""#, {"linkId": 123});
    fires!(r#"linkId starts with "1""#, {"linkId": 123});
    fires!(r#"linkId matches "^[0-9]+$""#, {"linkId": 123});
    fires!("linkId != 12", {"linkId": 13});
    fires!("targetId is set", {"targetId": 0});
}

// === First and last click ===

#[test]
fn first_and_last_click() {
    let both = json!({
        "firstClick": {"utm_source": "facebook", "country": "DE"},
        "lastClick": {"utm_source": "google", "country": "US"},
    });
    let cases = [
        (r#"first.utm_source equals "facebook""#, true),
        (r#"first.utm_source equals "google""#, false),
        (r#"last.utm_source equals "google""#, true),
        (r#"last.utm_source equals "facebook""#, false),
        // A bare attributable field reads the last click.
        (r#"utm_source equals "google""#, true),
        (r#"utm_source equals "facebook""#, false),
        (r#"first.country == "de" and last.country == "us""#, true),
        (r#"country == "DE""#, false),
    ];
    for (rule, fires) in cases {
        assert_fires(rule, both.clone(), fires);
    }
}

#[test]
fn one_click_serves_as_both() {
    let only_first = json!({"firstClick": {"utm_source": "facebook", "country": "US"}});
    let only_last = json!({"lastClick": {"utm_source": "facebook", "country": "US"}});
    for one in [only_first, only_last] {
        for rule in [
            r#"first.utm_source equals "facebook""#,
            r#"last.utm_source equals "facebook""#,
            r#"utm_source equals "facebook""#,
            r#"first.country == "US" and last.country == "US""#,
        ] {
            assert_fires(rule, one.clone(), true);
        }
    }
}

#[test]
fn two_clicks_are_not_merged() {
    // The last click lacks `country`; it is missing there, not taken from the first click.
    let e = json!({"firstClick": {"country": "US"}, "lastClick": {"utm_source": "x"}});
    assert_fires("last.country is not set", e.clone(), true);
    assert_fires(r#"country == "US""#, e.clone(), false);
    assert_fires(r#"first.country == "US""#, e, true);
    // No click at all: every click field is missing.
    never!(r#"first.utm_source != "x""#, {});
    fires!(
        "first.utm_source is not set and last.utm_source is not set",
        {}
    );
}

// === Missing values ===

#[test]
fn every_operator_is_false_on_a_missing_value_except_is_not_set() {
    let conditions = [
        r#"utm_source equals "x""#,
        r#"utm_source == "x""#,
        r#"utm_source not equals "x""#,
        r#"utm_source != "x""#,
        r#"utm_source contains "x""#,
        r#"utm_source not contains "x""#,
        r#"utm_source starts with "x""#,
        r#"utm_source ends with "x""#,
        r#"utm_source in ["x"]"#,
        r#"utm_source not in ["x"]"#,
        r#"utm_source matches ".*""#,
        "utm_source is set",
        r#"first.country not equals "US""#,
        r#"country not in ["US"]"#,
        "revenue > 0",
        "revenue greater than 0",
        "revenue >= 0",
        "revenue at least 0",
        "revenue < 0",
        "revenue less than 0",
        "revenue <= 0",
        "revenue at most 0",
        "revenue == 0",
        "revenue != 0",
        "revenue not equals 0",
        "revenue in [0]",
        "revenue not in [0]",
        "revenue is set",
        "isFromGoogleAds",
        "isFromGoogleAds == false",
        "isFromGoogleAds != true",
        "isFromGoogleAds is set",
        "linkId == 1",
        "linkId != 1",
        r#"linkId not contains "1""#,
        "linkId not in [1]",
        "linkId is set",
    ];
    for c in conditions {
        assert_fires(c, json!({}), false);
    }
    for c in [
        "utm_source is not set",
        "first.country is not set",
        "revenue is not set",
        "isFromGoogleAds is not set",
        "linkId is not set",
    ] {
        assert_fires(c, json!({}), true);
    }
}

#[test]
fn not_is_logical_negation_even_on_missing_values() {
    // `not equals` is false on a missing value, but `not (... equals ...)` is true.
    never!(r#"utm_source not equals "x""#, {});
    fires!(r#"not (utm_source equals "x")"#, {});
    fires!(r#"not utm_source equals "x""#, {});
    fires!("not (revenue > 50)", {});
    fires!("not isFromGoogleAds", {});
    fires!("not isFromGoogleAds", {"isFromGoogleAds": false});
    never!("not isFromGoogleAds", {"isFromGoogleAds": true});
    never!("not (utm_source is not set)", {});
}

// === and / or / not, parentheses, several `when`s ===

#[test]
fn and_binds_tighter_than_or() {
    // a or (b and c), not (a or b) and c
    let rule = r#"utm_source == "a" or utm_medium == "b" and utm_term == "c""#;
    fires!(rule, {"lastClick": {"utm_source": "a"}});
    fires!(rule, {"lastClick": {"utm_medium": "b", "utm_term": "c"}});
    never!(rule, {"lastClick": {"utm_medium": "b"}});
    let rule = r#"utm_medium == "b" and utm_term == "c" or utm_source == "a""#;
    fires!(rule, {"lastClick": {"utm_source": "a"}});
    never!(rule, {"lastClick": {"utm_term": "c"}});
}

#[test]
fn parentheses_group() {
    let rule = r#"(utm_source == "a" or utm_medium == "b") and utm_term == "c""#;
    never!(rule, {"lastClick": {"utm_source": "a"}});
    fires!(rule, {"lastClick": {"utm_source": "a", "utm_term": "c"}});
    fires!(rule, {"lastClick": {"utm_medium": "b", "utm_term": "c"}});
    fires!("((revenue > 1))", {"revenue": 2});
}

#[test]
fn not_binds_tighter_than_and() {
    // (not a) and b, not not (a and b)
    let rule = r#"not utm_source == "a" and utm_medium == "b""#;
    fires!(rule, {"lastClick": {"utm_source": "z", "utm_medium": "b"}});
    never!(rule, {"lastClick": {"utm_source": "z", "utm_medium": "z"}});
    never!(rule, {"lastClick": {"utm_source": "a", "utm_medium": "b"}});
    let rule = r#"not (utm_source == "a" and utm_medium == "b")"#;
    fires!(rule, {"lastClick": {"utm_source": "z", "utm_medium": "z"}});
    never!(rule, {"lastClick": {"utm_source": "a", "utm_medium": "b"}});
    // (not a) or b
    let rule = r#"not isFromGoogleAds or revenue > 100"#;
    fires!(rule, {"isFromGoogleAds": true, "revenue": 101});
    never!(rule, {"isFromGoogleAds": true, "revenue": 99});
    fires!("not not isFromGoogleAds", {"isFromGoogleAds": true});
    never!("not not isFromGoogleAds", {"isFromGoogleAds": false});
}

#[test]
fn several_whens_must_all_hold() {
    let rule = "on conversion\n    when revenue > 50\n    when isFromFacebookAds\n    when country == \"US\"";
    fires!(rule, {"revenue": 51, "isFromFacebookAds": true, "lastClick": {"country": "us"}});
    never!(rule, {"revenue": 51, "isFromFacebookAds": true, "lastClick": {"country": "CA"}});
    never!(rule, {"revenue": 51, "isFromFacebookAds": false, "lastClick": {"country": "US"}});
    never!(rule, {"revenue": 50, "isFromFacebookAds": true, "lastClick": {"country": "US"}});
    // Each `when` is a unit: an `or` inside one does not leak into the next.
    let rule = "on conversion\n    when revenue > 50 or isFromGoogleAds\n    when qualityScore > 5";
    fires!(rule, {"isFromGoogleAds": true, "qualityScore": 6});
    never!(rule, {"isFromGoogleAds": true, "qualityScore": 5});
}

#[test]
fn no_when_fires_on_every_listened_event() {
    fires!("on conversion", {});
    fires!("on refund", {"type": "refund"});
}

// === `on` kinds ===

#[test]
fn on_conversion_and_refund() {
    fires!("on conversion", {"type": "conversion"});
    never!("on conversion", {"type": "refund"});
    never!("on conversion", {"type": "event1"});
    fires!("on refund", {"type": "refund"});
    never!("on refund", {"type": "conversion"});
    fires!("on refund, conversion", {"type": "conversion"});
    fires!("on refund, conversion", {"type": "refund"});
    never!("on refund, conversion", {"type": "event", "eventNumber": 1});
}

#[test]
fn on_event_is_any_custom_event() {
    for n in 1..=10 {
        assert_fires("on event", json!({"type": format!("event{n}")}), true);
        assert_fires("on event", json!({"type": "event", "eventNumber": n}), true);
    }
    never!("on event", {"type": "conversion"});
    never!("on event", {"type": "refund"});
}

#[test]
fn on_event_n_is_one_custom_event() {
    for rule in ["on event 3", "on event3", "on event   3"] {
        assert_fires(rule, json!({"type": "event3"}), true);
        assert_fires(rule, json!({"type": "event", "eventNumber": 3}), true);
        assert_fires(rule, json!({"type": "event", "eventNumber": "3"}), true);
        assert_fires(rule, json!({"type": "event", "eventNumber": 4}), false);
        assert_fires(rule, json!({"type": "event4"}), false);
        assert_fires(rule, json!({"type": "conversion"}), false);
    }
    fires!("on event 1, event 10", {"type": "event10"});
    fires!("on event 1, event 10", {"type": "event1"});
    never!("on event 1, event 10", {"type": "event5"});
    fires!("on conversion, event 2", {"type": "event2"});
}

// === disabled ===

#[test]
fn disabled_webhooks_match_but_are_never_fired() {
    let text = r#"
webhook off {
    on conversion
    when revenue > 1
    post "https://hooks.example.com/off"
    disabled
}
webhook on_ {
    on conversion
    when revenue > 1
    post "https://hooks.example.com/on"
}
"#;
    let (webhooks, sources) = compile(text);
    let e = event(json!({"revenue": 2}));
    let off = &webhooks[0];
    assert!(off.disabled);
    assert!(off.fires_for(&e), "a disabled webhook stays testable");
    let why = explain(off, &e);
    assert!(!why.fires);
    assert!(why.disabled);
    assert_eq!(why.url.as_deref(), Some("https://hooks.example.com/off"));

    let rules = RuleSet::new(webhooks.clone(), &sources);
    let names: Vec<&str> = rules.matching(&e).map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["on_"]);
    assert_eq!(rules.webhooks().len(), 2);
    assert!(rules.get("off").is_some());
}

#[test]
fn rule_set_matches_by_kind_in_source_order() {
    let text = r#"
webhook a { on conversion post "https://x.test/a" }
webhook b { on refund, conversion when revenue > 5 post "https://x.test/b" }
webhook c { on event 2 post "https://x.test/c" }
webhook d { on event post "https://x.test/d" }
"#;
    let (webhooks, sources) = compile(text);
    let rules = RuleSet::new(webhooks, &sources);
    let names = |json: Value| -> Vec<String> {
        let e = event(json);
        rules.matching(&e).map(|w| w.name.clone()).collect()
    };
    assert_eq!(names(json!({"revenue": 6})), ["a", "b"]);
    assert_eq!(names(json!({"revenue": 5})), ["a"]);
    assert_eq!(names(json!({"type": "refund", "revenue": 6})), ["b"]);
    assert_eq!(names(json!({"type": "event2"})), ["c", "d"]);
    assert_eq!(names(json!({"type": "event7"})), ["d"]);
}

// === Explanations ===

#[test]
fn explanations_name_the_click() {
    let w = webhook(r#"first.utm_source == "fb" and country == "US" and revenue > 1"#);
    let e = event(json!({"firstClick": {"utm_source": "fb"}, "lastClick": {}, "revenue": 2}));
    let why = explain(&w, &e);
    let values: Vec<(&str, &str, bool)> = why
        .conditions
        .iter()
        .map(|c| (c.condition.as_str(), c.value.as_str(), c.holds))
        .collect();
    assert_eq!(
        values,
        [
            (r#"first.utm_source == "fb""#, r#""fb" (first click)"#, true),
            (r#"country == "US""#, "not set (last click)", false),
            ("revenue > 1", "2", true),
        ]
    );
    assert!(!why.fires);
    assert_eq!(why.url, None);
}

// === URL rendering ===

/// Renders the URL of a webhook that posts to `url`, for one event.
#[track_caller]
fn render(url: &str, json: Value) -> String {
    let text =
        format!("webhook hook_1 {{\n    on conversion, refund, event\n    post \"{url}\"\n}}\n");
    let (webhooks, _) = compile(&text);
    let e = event(json);
    webhooks[0].request.url.render(&RenderContext {
        event: &e,
        webhook: "hook_1",
        delivery: "d-1",
    })
}

#[test]
fn url_values_are_percent_encoded_into_one_query_value() {
    assert_eq!(
        render(
            "https://api.example.com/track?amount=[revenue]&txn=[transaction]",
            json!({"revenue": 49.5, "transaction": "a&b=c d"})
        ),
        "https://api.example.com/track?amount=49.5&txn=a%26b%3Dc%20d"
    );
    assert_eq!(
        render("https://x.test/p/[visitor]/x", json!({"visitor": "v/1?#"})),
        "https://x.test/p/v%2F1%3F%23/x"
    );
    assert_eq!(
        render(
            "https://x.test/?c=[utm_campaign]",
            json!({"lastClick": {"utm_campaign": "café+1"}})
        ),
        "https://x.test/?c=caf%C3%A9%2B1"
    );
    assert_eq!(
        render(
            "https://x.test/#[utm_term]",
            json!({"lastClick": {"utm_term": "a b"}})
        ),
        "https://x.test/#a%20b"
    );
}

#[test]
fn url_missing_values_render_empty() {
    assert_eq!(
        render(
            "https://x.test/?a=[revenue]&t=[transaction]&s=[first.utm_source]&l=[linkId]",
            json!({})
        ),
        "https://x.test/?a=&t=&s=&l="
    );
}

#[test]
fn url_tokens_read_the_right_click_and_field() {
    let e = json!({
        "firstClick": {"utm_source": "facebook", "country": "DE"},
        "lastClick": {"utm_source": "google", "country": "US"},
    });
    assert_eq!(
        render(
            "https://x.test/?f=[first.utm_source]&l=[last.utm_source]&b=[utm_source]&c=[country]",
            e
        ),
        "https://x.test/?f=facebook&l=google&b=google&c=US"
    );
    let one = json!({"lastClick": {"utm_source": "tiktok"}});
    assert_eq!(
        render("https://x.test/?f=[first.utm_source]", one),
        "https://x.test/?f=tiktok"
    );
}

#[test]
fn url_tokens_beyond_fields() {
    let e = json!({
        "type": "event", "eventNumber": 3, "revenue": "50", "visitor": "v1",
        "occurredAt": "2026-01-02T03:04:05Z", "isFromGoogleAds": true, "linkId": 12,
        "qualityScore": 70.25,
    });
    assert_eq!(
        render(
            "https://x.test/e?n=[eventNumber]&e=[event]&r=[revenue]&v=[visitor]&w=[webhook]&d=[delivery]",
            e.clone()
        ),
        "https://x.test/e?n=3&e=event3&r=50&v=v1&w=hook_1&d=d-1"
    );
    assert_eq!(
        render(
            "https://x.test/?t=[timestamp]&g=[isFromGoogleAds]&l=[linkId]&q=[qualityScore]",
            e
        ),
        "https://x.test/?t=2026-01-02T03%3A04%3A05Z&g=true&l=12&q=70.25"
    );
    assert_eq!(
        render("https://x.test/?e=[event]", json!({"type": "refund"})),
        "https://x.test/?e=refund"
    );
}

// === Fields trackers send onward: currency and the click ids ===

#[test]
fn currency_compares_ignoring_case() {
    fires!(r#"currency equals "usd""#, {"currency": "USD"});
    fires!(r#"currency in ["EUR", "gbp"]"#, {"currency": "GBP"});
    never!(r#"currency equals "USD""#, {"currency": "EUR"});
    never!(r#"currency not equals "USD""#, {});
    fires!(r#"currency is not set"#, {});
}

#[test]
fn click_ids_read_their_click() {
    let e = json!({
        "firstClick": {"clickId": "c-1", "externalId": "fb-1"},
        "lastClick": {"clickId": "c-2", "externalId": "gclid-2"},
        "currency": "EUR",
    });
    fires!(r#"first.externalId starts with "fb""#, {"firstClick": {"externalId": "fb-1"}});
    never!(r#"last.clickId equals "c-1""#, {"firstClick": {"clickId": "c-1"}, "lastClick": {"clickId": "c-2"}});
    assert_eq!(
        render(
            "https://x.test/?g=[last.externalId]&f=[first.externalId]&c=[clickId]&cur=[currency]",
            e
        ),
        "https://x.test/?g=gclid-2&f=fb-1&c=c-2&cur=EUR"
    );
}
