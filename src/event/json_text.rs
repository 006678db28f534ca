//! The event as JSON text, written by hand: the bytes serde_json writes for its `Serialize`
//! impl (the wire format), in about half the instructions.

use std::fmt::Write as _;

use super::{ClickField, Event, FlagField, IdField, NumberField, TextField};

/// Writes `event` in the wire format: keys that are not set are left out, both clicks are
/// written, in the order of `Event`'s `Serialize` impl.
///
/// Measured with callgrind under ingest-vs-limits.sh's load: serde_json spent ~8.5k
/// instructions per event, most of it escaping the static keys byte by byte and growing the
/// output.
pub(super) fn write(event: &Event, out: &mut String) {
    let mut map = Map::open(out);
    if let Some(id) = &event.id {
        map.text("id", id);
    }
    map.text("type", &event.kind.wire_name());
    for (key, value) in [
        ("transaction", &event.transaction),
        ("visitor", &event.visitor),
    ] {
        if let Some(v) = value {
            map.text(key, v);
        }
    }
    for field in NumberField::ALL {
        match event.number(field) {
            // Exact: `set_number_as_sent` marks only integers an f64 holds exactly.
            Some(v) if event.number_is_integer(field) => map.integer(field.name(), v as i64),
            Some(v) => map.float(field.name(), v),
            None => {}
        }
    }
    for field in FlagField::ALL {
        if let Some(v) = event.flag(field) {
            map.flag(field.name(), v);
        }
    }
    for field in IdField::ALL {
        if let Some(v) = event.id_value(field) {
            map.text(field.name(), v);
        }
    }
    for field in TextField::ALL {
        if let Some(v) = event.text(field) {
            map.text(field.name(), v);
        }
    }
    for (key, click) in [
        ("firstClick", &event.first_click),
        ("lastClick", &event.last_click),
    ] {
        map.key(key);
        let mut inner = Map::open(map.out);
        for field in ClickField::ALL {
            if let Some(v) = click.get(field) {
                inner.text(field.name(), v);
            }
        }
        inner.close();
    }
    if let Some(at) = &event.occurred_at {
        map.text("occurredAt", at);
    }
    map.close();
}

/// A JSON object being written.
struct Map<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Map<'a> {
    fn open(out: &'a mut String) -> Map<'a> {
        out.push('{');
        Map { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(':');
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn integer(&mut self, key: &str, value: i64) {
        self.key(key);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{value}");
    }

    /// A number as serde_json writes an f64: the shortest text that reads back the same
    /// (`Number`'s Display), `null` when it is not finite.
    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        match serde_json::Number::from_f64(value) {
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
        }
    }

    fn flag(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// A JSON string, escaped as serde_json escapes: `"`, `\` and control characters, the common
/// ones in their short form, the others as `\u00XX` in lower-case hex; everything else as is.
fn string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is an ASCII byte, so both cuts fall on character boundaries.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written text against serde_json's for the same event.
    fn same_as_serde(json: &str) {
        let event = Event::from_json_str(json).expect(json);
        let mut by_hand = String::new();
        write(&event, &mut by_hand);
        let by_serde = serde_json::to_string(&event).expect("serde");
        assert_eq!(by_hand, by_serde, "{json}");
    }

    #[test]
    fn writes_what_serde_json_writes() {
        for json in [
            r#"{"type":"refund"}"#,
            r#"{"type":"event","eventNumber":7,"id":"e-1"}"#,
            r#"{"id":"e1","type":"conversion","transaction":"t-1","revenue":"49.5","visitor":"v9",
                "linkId":12,"targetId":"x","qualityScore":70,"conversionCount":2,"eventCount":"3",
                "isFromGoogleAds":true,"isFromFacebookAds":"false","isFromTikTokAds":null,
                "currency":"EUR",
                "firstClick":{"utm_source":"facebook","country":"US","clickId":"c1"},
                "lastClick":{"utm_source":"google","deviceType":"mobile","externalId":"gclid-9"},
                "occurredAt":"2026-11-27T10:00:00Z"}"#,
            r#"{"type":"conversion","revenue":0.1,"qualityScore":1e21,"linkId":-3,
                "firstClick":{"utm_source":"ünïcödé 🎉","utm_campaign":"a\"b\\c/d"}}"#,
            r#"{"type":"conversion","revenue":123456789.125,"transaction":"\u0000\u0001\b\f\n\r\t\u001f\u007f<>&'"}"#,
            r#"{"type":"conversion","revenue":-0.0,"visitor":"","lastClick":{"country":"\u2028\u2029"}}"#,
        ] {
            same_as_serde(json);
        }
    }

    #[test]
    fn escapes_every_control_character_as_serde_json_does() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut by_hand = String::new();
        string(&mut by_hand, &all);
        assert_eq!(by_hand, serde_json::to_string(&all).expect("serde"));
    }
}
