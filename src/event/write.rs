//! The event's JSON text written by hand: serde_json's bytes, in fewer instructions.
//!
//! `Serialize for Event` (in `wire`) stays the reference: the tests below compare the two on
//! every shape of event. What makes this one cheaper: keys are pre-escaped literals, and string
//! values are scanned for bytes to escape eight at a time, clean runs copied whole.

use serde_json::ser::{CompactFormatter, Formatter};

use super::{Click, ClickField, Event, EventKind, FlagField, IdField, NumberField, TextField};

/// Appends `event`'s wire JSON to `out`, byte for byte what `serde_json::to_writer` writes.
pub(super) fn event(event: &Event, out: &mut String) {
    // `type` is always there and only `id` comes before it: every later key starts with `,`.
    if let Some(id) = &event.id {
        out.push_str("{\"id\":\"");
        contents(out, id);
        out.push_str("\",\"type\":\"");
    } else {
        out.push_str("{\"type\":\"");
    }
    match event.kind {
        EventKind::Conversion => out.push_str("conversion\""),
        EventKind::Refund => out.push_str("refund\""),
        EventKind::Custom(n) => {
            out.push_str("event");
            integer(out, i64::from(n));
            out.push('"');
        }
    }
    if let Some(v) = &event.transaction {
        out.push_str(",\"transaction\":\"");
        contents(out, v);
        out.push('"');
    }
    if let Some(v) = &event.visitor {
        out.push_str(",\"visitor\":\"");
        contents(out, v);
        out.push('"');
    }
    for field in NumberField::ALL {
        if let Some(v) = event.number(field) {
            out.push_str(number_key(field));
            if event.number_is_integer(field) {
                // Exact: `set_number_as_sent` marks only integers an f64 holds exactly.
                integer(out, v as i64);
            } else {
                float(out, v);
            }
        }
    }
    for field in FlagField::ALL {
        if let Some(v) = event.flag(field) {
            out.push_str(flag_key(field));
            out.push_str(if v { "true" } else { "false" });
        }
    }
    for field in IdField::ALL {
        if let Some(v) = event.id_value(field) {
            out.push_str(id_key(field));
            contents(out, v);
            out.push('"');
        }
    }
    for field in TextField::ALL {
        if let Some(v) = event.text(field) {
            out.push_str(text_key(field));
            contents(out, v);
            out.push('"');
        }
    }
    out.push_str(",\"firstClick\":{");
    click(out, &event.first_click);
    out.push_str("},\"lastClick\":{");
    click(out, &event.last_click);
    out.push('}');
    if let Some(at) = &event.occurred_at {
        out.push_str(",\"occurredAt\":\"");
        contents(out, at);
        out.push_str("\"}");
    } else {
        out.push('}');
    }
}

/// The fields of one click that are set, between its braces.
fn click(out: &mut String, click: &Click) {
    let mut first = true;
    for field in ClickField::ALL {
        if let Some(v) = click.get(field) {
            let key = click_key(field);
            // The key literal starts with the comma that every entry but the first needs.
            out.push_str(if first { &key[1..] } else { key });
            first = false;
            contents(out, v);
            out.push('"');
        }
    }
}

/// `value` as a JSON string, quotes included, escaped exactly as serde_json escapes: `"` and
/// `\` with a backslash, the C0 controls as `\b \t \n \f \r` or `\u00XX`, nothing else.
pub(crate) fn string(out: &mut String, value: &str) {
    out.push('"');
    contents(out, value);
    out.push('"');
}

/// `value` escaped as in [`string`], without the quotes.
fn contents(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    // `bytes[copied..]` is still to be written; everything before `from` is checked.
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = next_escape(bytes, from) {
        // `at` is an ASCII byte, so both slices end on character boundaries.
        out.push_str(&value[copied..at]);
        escape(out, bytes[at]);
        copied = at + 1;
        from = at + 1;
    }
    out.push_str(&value[copied..]);
}

/// Eight copies of one byte, one per lane of a `u64`.
const fn lanes(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `word` that needs escaping: below 0x20, `"` or `\`. Only the
/// lowest set bit is sure to be a true one (a lane that matches borrows from the lane above it,
/// which may then be flagged too), and that is all [`next_escape`] reads.
#[inline]
fn escapes_in(word: u64) -> u64 {
    let high = lanes(0x80);
    let control = word.wrapping_sub(lanes(0x20));
    let quote = (word ^ lanes(b'"')).wrapping_sub(lanes(1));
    let backslash = (word ^ lanes(b'\\')).wrapping_sub(lanes(1));
    // `!word` drops lanes at or above 0x80 (UTF-8 past ASCII): none of them is escaped, and
    // the XORs above keep that bit, so a lane's high bit survives only if it is ASCII.
    (control | quote | backslash) & !word & high
}

/// The index of the first byte at or after `from` that needs escaping.
#[inline]
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let len = bytes.len();
    if len < 8 {
        // Most short values are clean: two overlapping four-byte words say so at once.
        if len >= 4 && from == 0 {
            let head = u64::from(word32_at(bytes, 0));
            let tail = u64::from(word32_at(bytes, len - 4));
            // 0xff in the upper lanes: flagged by nothing, borrowing from nothing.
            let upper = u64::MAX << 32;
            if escapes_in(head | upper) | escapes_in(tail | upper) == 0 {
                return None;
            }
        }
        return bytes[from..]
            .iter()
            .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
            .map(|i| from + i);
    }
    let mut i = from;
    while i + 8 <= len {
        let found = escapes_in(word_at(bytes, i));
        if found != 0 {
            return Some(i + lowest_lane(found));
        }
        i += 8;
    }
    if i == len {
        return None;
    }
    // The last eight bytes, overlapping what was checked. Lanes before `from` (at most 7; the
    // byte just escaped may be one of them) are set to 0xff, which nothing flags and which
    // borrows from no lane above it.
    let start = len - 8;
    let before = (1u64 << (from.saturating_sub(start) * 8)) - 1;
    let found = escapes_in(word_at(bytes, start) | before);
    (found != 0).then(|| start + lowest_lane(found))
}

/// The eight bytes at `i` as a little-endian word, so lane `k` is `bytes[i + k]`.
#[inline]
fn word_at(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[i..i + 8]);
    u64::from_le_bytes(word)
}

/// The four bytes at `i` as a little-endian word.
#[inline]
fn word32_at(bytes: &[u8], i: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[i..i + 4]);
    u32::from_le_bytes(word)
}

/// The lane of the lowest set high bit.
#[inline]
fn lowest_lane(found: u64) -> usize {
    (found.trailing_zeros() / 8) as usize
}

/// One escaped byte, as serde_json's `CompactFormatter::write_char_escape` writes it.
#[cold]
fn escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        _ => {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

/// An integer, by serde_json's own formatter (`itoa`).
fn integer(out: &mut String, value: i64) {
    let mut buf = [0u8; 24];
    let mut rest = &mut buf[..];
    // 24 bytes hold any i64 (20 at most), so writing cannot fail.
    let _ = CompactFormatter.write_i64(&mut rest, value);
    let written = 24 - rest.len();
    ascii(out, &buf[..written]);
}

/// A float, as serde_json's serializer writes one: its formatter's shortest round-trip form for
/// a finite value, `null` for NaN and the infinities.
fn float(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("null");
        return;
    }
    let mut buf = [0u8; 40];
    let mut rest = &mut buf[..];
    // 40 bytes hold any shortest f64 (24 at most, as in `-2.2250738585072014e-308`).
    let _ = CompactFormatter.write_f64(&mut rest, value);
    let written = 40 - rest.len();
    ascii(out, &buf[..written]);
}

/// A number's digits, signs, point and exponent: ASCII, pushed as they are (no UTF-8 check).
fn ascii(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|&b| char::from(b)));
}

// Each key pre-escaped, with the comma before it and the colon after it (and the opening quote
// of a string value); the tests check each against the field's `name()`.

fn number_key(field: NumberField) -> &'static str {
    match field {
        NumberField::Revenue => ",\"revenue\":",
        NumberField::QualityScore => ",\"qualityScore\":",
        NumberField::ConversionCount => ",\"conversionCount\":",
        NumberField::EventCount => ",\"eventCount\":",
        NumberField::EventNumber => ",\"eventNumber\":",
    }
}

fn flag_key(field: FlagField) -> &'static str {
    match field {
        FlagField::IsFromGoogleAds => ",\"isFromGoogleAds\":",
        FlagField::IsFromFacebookAds => ",\"isFromFacebookAds\":",
        FlagField::IsFromTikTokAds => ",\"isFromTikTokAds\":",
    }
}

fn id_key(field: IdField) -> &'static str {
    match field {
        IdField::LinkId => ",\"linkId\":\"",
        IdField::TargetId => ",\"targetId\":\"",
    }
}

fn text_key(field: TextField) -> &'static str {
    match field {
        TextField::Currency => ",\"currency\":\"",
    }
}

fn click_key(field: ClickField) -> &'static str {
    match field {
        ClickField::UtmSource => ",\"utm_source\":\"",
        ClickField::UtmMedium => ",\"utm_medium\":\"",
        ClickField::UtmCampaign => ",\"utm_campaign\":\"",
        ClickField::UtmContent => ",\"utm_content\":\"",
        ClickField::UtmTerm => ",\"utm_term\":\"",
        ClickField::Country => ",\"country\":\"",
        ClickField::DeviceType => ",\"deviceType\":\"",
        ClickField::Referrer => ",\"referrer\":\"",
        ClickField::ClickId => ",\"clickId\":\"",
        ClickField::ExternalId => ",\"externalId\":\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::wire::MAX_EXACT;
    use proptest::prelude::*;

    /// serde_json's text for `event`, through `Serialize for Event`: what this module must match.
    fn reference(event: &Event) -> String {
        serde_json::to_string(event).unwrap()
    }

    fn written(event: &Event) -> String {
        let mut out = String::new();
        super::event(event, &mut out);
        out
    }

    fn assert_same(event: &Event) {
        assert_eq!(written(event), reference(event), "{event:?}");
    }

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        string(&mut out, value);
        out
    }

    /// Every event object in a cases file: the `event` of a case, or a source case's `mapped`.
    fn events_in(value: &serde_json::Value, found: &mut Vec<Event>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    if matches!(key.as_str(), "event" | "mapped") && inner.is_object() {
                        found.push(Event::from_json(inner).unwrap());
                    } else {
                        events_in(inner, found);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| events_in(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_example_and_case_events_come_out_as_serde_writes_them() {
        let mut events = Vec::new();
        for text in [
            include_str!("../../examples/events/refund-tiktok.json"),
            include_str!("../../examples/events/event3-tiktok-signup.json"),
            include_str!("../../examples/events/event1-dach-lead.json"),
            include_str!("../../examples/events/conversion-facebook-us.json"),
            include_str!("../../fuzz/regressions/event_decode/float-roundtrip.json"),
        ] {
            events.push(Event::from_json_str(text).unwrap());
        }
        for cases in [
            include_str!("../../rules/sales.cases.json"),
            include_str!("../../rules/refunds.cases.json"),
            include_str!("../../rules/engagement.cases.json"),
            include_str!("../../examples/sources/sources.cases.json"),
        ] {
            events_in(&serde_json::from_str(cases).unwrap(), &mut events);
        }
        assert!(events.len() > 20, "{} events", events.len());
        for event in &events {
            assert_same(event);
        }
    }

    #[test]
    fn the_fuzz_corpus_events_come_out_as_serde_writes_them() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/event_decode");
        let mut read = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if let Ok(event) = Event::from_json_str(text) {
                assert_same(&event);
                read += 1;
            }
        }
        assert!(read > 50, "{read} events read from the corpus");
    }

    #[test]
    fn the_wire_tests_events_come_out_as_serde_writes_them() {
        for text in [
            r#"{"id":"e1","type":"conversion","transaction":"t-1","revenue":"49.5","visitor":"v9",
                "linkId":12,"targetId":"x","qualityScore":70,"conversionCount":2,"eventCount":"3",
                "isFromGoogleAds":true,"isFromFacebookAds":"false","isFromTikTokAds":null,
                "currency":"EUR",
                "firstClick":{"utm_source":"facebook","country":"US","clickId":"c1"},
                "lastClick":{"utm_source":"google","deviceType":"mobile","externalId":"gclid-9"},
                "occurredAt":"2026-11-27T10:00:00Z","somethingElse":[1,2]}"#,
            r#"{"type":"refund","lastClick":{"country":"DE"}}"#,
            r#"{"type":"event7"}"#,
            r#"{"type":"event","eventNumber":"3"}"#,
            r#"{"type":"event10"}"#,
            r#"{"type":"conversion","qualityScore":82,"revenue":79.90,"conversionCount":1,
                "eventCount":"4"}"#,
            r#"{"type":"event","eventNumber":3,"qualityScore":82.0,"revenue":"10.50",
                "conversionCount":2.0}"#,
            r#"{"type":"conversion","revenue":18446744073709551615}"#,
            r#"{"type":"refund","revenue":-79.9}"#,
            r#"{"type":"conversion","occurredAt":"2026-11-27T10:15:00+01:00"}"#,
            // The load test's event (benches/ingest-callgrind.sh).
            r#"{"type":"conversion","transaction":"ORD-77","revenue":"79.90","visitor":"v-5521","linkId":12,"targetId":"t-3","qualityScore":82,"conversionCount":1,"eventCount":4,"isFromGoogleAds":false,"isFromFacebookAds":true,"isFromTikTokAds":false,"firstClick":{"utm_source":"facebook","utm_campaign":"spring","country":"CA","deviceType":"mobile"},"lastClick":{"utm_source":"google","country":"US","referrer":"https://www.google.com/"},"occurredAt":"2026-11-27T10:15:00Z"}"#,
        ] {
            assert_same(&Event::from_json_str(text).unwrap());
        }
    }

    #[test]
    fn every_number_shape_comes_out_as_serde_writes_it() {
        let shapes = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            82.0,
            79.9,
            0.1,
            1e-7,
            1.5e-300,
            5e-324,
            1e15,
            1e16,
            1e21,
            1e22,
            1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            MAX_EXACT,
            -MAX_EXACT,
            MAX_EXACT + 1.0,
            MAX_EXACT - 1.0,
            9_223_372_036_854_775_807.0,
            -9_223_372_036_854_775_808.0,
            18_446_744_073_709_551_615.0,
            1_111_111_111_100_000_000_000.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for value in shapes {
            for integer in [false, true] {
                let mut event = Event::new(EventKind::Conversion);
                for field in NumberField::ALL {
                    event.set_number_as_sent(field, Some(value), integer);
                }
                assert_same(&event);
            }
        }
    }

    #[test]
    fn every_escape_at_every_offset_is_serdes() {
        // Each byte serde escapes and some it does not, at each position of strings up to three
        // words long, so every lane of a word and the overlapping last word see it; next to
        // multi-byte characters whose bytes are the specials with the high bit set.
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend([
            '"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', '¢', 'Ü', '€', '😀',
        ]);
        for len in 0..26 {
            for at in 0..len {
                for &special in &specials {
                    // Fillers just past what is flagged catch a borrow out of a flagged lane.
                    for fill in ['a', ' ', '#', ']', 'é'] {
                        let text: String = (0..len)
                            .map(|i| if i == at { special } else { fill })
                            .collect();
                        let serde = serde_json::to_string(&text).unwrap();
                        assert_eq!(escaped(&text), serde, "{text:?}");
                        // Two in a row, and one at each end.
                        let twice = format!("{special}{text}{special}");
                        assert_eq!(
                            escaped(&twice),
                            serde_json::to_string(&twice).unwrap(),
                            "{twice:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_key_literals_are_the_fields_names() {
        let key = |name: &str| format!(",{}:", serde_json::to_string(name).unwrap());
        for field in NumberField::ALL {
            assert_eq!(number_key(field), key(field.name()));
        }
        for field in FlagField::ALL {
            assert_eq!(flag_key(field), key(field.name()));
        }
        for field in IdField::ALL {
            assert_eq!(id_key(field), key(field.name()) + "\"");
        }
        for field in TextField::ALL {
            assert_eq!(text_key(field), key(field.name()) + "\"");
        }
        for field in ClickField::ALL {
            assert_eq!(click_key(field), key(field.name()) + "\"");
        }
    }

    /// Text that needs escaping, text that almost does, and any text at all.
    fn awkward_text() -> impl Strategy<Value = String> {
        let awkward_char = prop_oneof![
            4 => proptest::char::range('\0', '\u{7f}'),
            2 => prop::sample::select(vec![
                '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}',
                '\u{2028}', '\u{2029}', 'é', '¢', '€', '中', '😀', '\u{feff}',
            ]),
            1 => any::<char>(),
        ];
        prop_oneof![
            Just(String::new()),
            proptest::collection::vec(awkward_char, 0..48).prop_map(String::from_iter),
            "[a-z0-9:/._-]{0,40}",
            any::<String>(),
        ]
    }

    /// A number as `set_number_as_sent` may hold it, and whether it was sent as an integer.
    fn sent_number() -> impl Strategy<Value = (f64, bool)> {
        let value = prop_oneof![
            any::<f64>(),
            any::<i64>().prop_map(|n| n as f64),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 100.0),
            (-MAX_EXACT..=MAX_EXACT).prop_map(f64::trunc),
            prop::sample::select(vec![
                MAX_EXACT,
                MAX_EXACT + 1.0,
                -MAX_EXACT,
                -MAX_EXACT - 1.0,
                -0.0,
                1e21,
                1e-7,
                f64::NAN,
                f64::INFINITY,
            ]),
        ];
        (value, any::<bool>())
    }

    fn click_values() -> impl Strategy<Value = Vec<Option<String>>> {
        proptest::collection::vec(proptest::option::of(awkward_text()), ClickField::ALL.len())
    }

    prop_compose! {
        fn any_event()(
            kind in prop_oneof![
                Just(EventKind::Conversion),
                Just(EventKind::Refund),
                (1..=EventKind::MAX_CUSTOM).prop_map(EventKind::Custom),
            ],
            texts in proptest::collection::vec(proptest::option::of(awkward_text()), 7),
            numbers in proptest::collection::vec(proptest::option::of(sent_number()), 5),
            flags in proptest::collection::vec(proptest::option::of(any::<bool>()), 3),
            first in click_values(),
            last in click_values(),
        ) -> Event {
            let mut event = Event::new(kind);
            let mut texts = texts.into_iter();
            event.id = texts.next().flatten();
            event.transaction = texts.next().flatten();
            event.visitor = texts.next().flatten();
            event.occurred_at = texts.next().flatten();
            event.ids = [texts.next().flatten(), texts.next().flatten()];
            event.texts = [texts.next().flatten()];
            for (field, sent) in NumberField::ALL.into_iter().zip(numbers) {
                // The event number of a custom event is kept as `Event::new` set it.
                if sent.is_some() || field != NumberField::EventNumber {
                    event.set_number_as_sent(field, sent.map(|s| s.0), sent.is_some_and(|s| s.1));
                }
            }
            for (field, flag) in FlagField::ALL.into_iter().zip(flags) {
                event.flags[field.slot()] = flag;
            }
            for (field, (f, l)) in ClickField::ALL.into_iter().zip(first.into_iter().zip(last)) {
                event.first_click.set(field, f);
                event.last_click.set(field, l);
            }
            event
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_event_comes_out_as_serde_writes_it(event in any_event()) {
            prop_assert_eq!(written(&event), reference(&event));
        }

        #[test]
        fn any_text_is_escaped_as_serde_escapes_it(text in awkward_text()) {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
