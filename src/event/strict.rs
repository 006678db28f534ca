//! JSON text to a `serde_json::Value`, or to a lighter [`Doc`], refusing an object repeating a
//! key.
//!
//! serde_json keeps the last of two equal keys (`{"revenue": 1, "revenue": 900}` is 900), so a
//! body that says two things would be read as whichever came last, and whc and the tracker could
//! disagree on what the event was. This builds the same `Value` serde_json would, in one pass,
//! and stops at the first repeated key, remembering where it was. [`doc_from_slice`] does the same
//! into a [`Doc`], which borrows its keys and strings from the text and keeps an object's keys in
//! a `Vec`: what reading an event post needs, at a fraction of a `Value`'s allocations.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// One step from the top of the document down to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The value of this key of an object.
    Key(String),
    /// The element at this index of an array.
    Index(usize),
}

/// Why the text is not a JSON document whc accepts.
#[derive(Debug)]
pub enum StrictJsonError {
    /// Not JSON at all (serde_json's message says where).
    Syntax(serde_json::Error),
    /// An object repeats a key; the path leads to the repeated key, its last step.
    DuplicateKey(Vec<Step>),
}

/// Parses JSON bytes, refusing any object (at any depth) that has the same key twice.
pub fn from_slice(text: &[u8]) -> Result<Value, StrictJsonError> {
    parse(serde_json::Deserializer::from_slice(text))
}

/// [`from_slice`] for text already known to be UTF-8 (its strings need no second check).
pub fn from_str(text: &str) -> Result<Value, StrictJsonError> {
    parse(serde_json::Deserializer::from_str(text))
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Value, StrictJsonError> {
    let found = Cell::new(None);
    let parsed = Strict {
        path: None,
        found: &found,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, found.take()) {
        (_, Some(path)) => Err(StrictJsonError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// A JSON document as read from text: strings and keys borrowed where the text holds them
/// unescaped, an object's keys in the order written (each once).
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json reads it (integers stay integers).
    Number(Number),
    /// A string.
    Text(Cow<'a, str>),
    /// An array.
    Array(Vec<Doc<'a>>),
    /// An object: its keys, each once, in the order written.
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

/// Parses JSON bytes into a [`Doc`], refusing any object (at any depth) that has the same key
/// twice.
pub fn doc_from_slice(text: &[u8]) -> Result<Doc<'_>, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let found = Cell::new(None);
    let parsed = DocSeed(Strict {
        path: None,
        found: &found,
    })
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, found.take()) {
        (_, Some(path)) => Err(StrictJsonError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// Formats a path the way event errors name keys: `firstClick.country`, `items[2].sku`.
pub fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The path to the value being read, as a list linked through the stack: nothing is allocated
/// unless a duplicate is found.
struct Node<'a> {
    step: BorrowedStep<'a>,
    parent: Option<&'a Node<'a>>,
}

#[derive(Clone, Copy)]
enum BorrowedStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// Reads one value at `path`; a repeated key is recorded in `found` before failing.
#[derive(Clone, Copy)]
struct Strict<'a> {
    path: Option<&'a Node<'a>>,
    found: &'a Cell<Option<Vec<Step>>>,
}

impl Strict<'_> {
    fn record(&self, key: &str) {
        let mut path = vec![Step::Key(key.to_owned())];
        let mut node = self.path;
        while let Some(n) = node {
            path.push(match n.step {
                BorrowedStep::Key(k) => Step::Key(k.to_owned()),
                BorrowedStep::Index(i) => Step::Index(i),
            });
            node = n.parent;
        }
        path.reverse();
        self.found.set(Some(path));
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own `Value`: a number it parsed is always finite.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let node = Node {
                step: BorrowedStep::Index(items.len()),
                parent: self.path,
            };
            let seed = Strict {
                path: Some(&node),
                found: self.found,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let node = Node {
                step: BorrowedStep::Key(&key),
                parent: self.path,
            };
            let value = map.next_value_seed(Strict {
                path: Some(&node),
                found: self.found,
            })?;
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    self.record(slot.key());
                    return Err(de::Error::custom(format_args!(
                        "duplicate key `{}`",
                        slot.key()
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads one value at a path into a [`Doc`]; a repeated key is recorded before failing.
struct DocSeed<'a>(Strict<'a>);

/// Past this many keys an object checks for repeats with a hash set instead of a scan.
const SCANNED_KEYS: usize = 32;

/// A string as the deserializer handed it: borrowed from the text when it could be.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = Doc<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Doc<'de>, E> {
        // As serde_json's own `Value`: a number it parsed is always finite.
        Ok(Number::from_f64(v).map_or(Doc::Null, Doc::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::Text(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let node = Node {
                step: BorrowedStep::Index(items.len()),
                parent: self.0.path,
            };
            let seed = DocSeed(Strict {
                path: Some(&node),
                found: self.0.found,
            });
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Doc::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Doc<'de>)> = Vec::with_capacity(16);
        // Filled once an object has more keys than a scan should check (rare: an event has
        // about twenty).
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let repeated = if fields.len() < SCANNED_KEYS {
                fields.iter().any(|(k, _)| *k == key)
            } else {
                if seen.is_empty() {
                    seen.extend(fields.iter().map(|(k, _)| k.to_string()));
                }
                !seen.insert(key.to_string())
            };
            if repeated {
                self.0.record(&key);
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let node = Node {
                step: BorrowedStep::Key(&key),
                parent: self.0.path,
            };
            let value = map.next_value_seed(DocSeed(Strict {
                path: Some(&node),
                found: self.0.found,
            }))?;
            fields.push((key, value));
        }
        Ok(Doc::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> String {
        match from_slice(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(path)) => dotted(&path),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn builds_the_value_serde_json_builds() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":{"d":18446744073709551615}}"#;
        let strict = from_slice(text.as_bytes()).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn finds_a_repeated_key_at_any_depth() {
        assert_eq!(duplicate(r#"{"revenue":1,"revenue":900}"#), "revenue");
        assert_eq!(
            duplicate(r#"{"firstClick":{"country":"US","country":"DE"}}"#),
            "firstClick.country"
        );
        assert_eq!(duplicate(r#"[{"a":1},{"b":1,"b":2}]"#), "[1].b");
        assert_eq!(duplicate(r#"{"x":[0,{"y":{"z":1,"z":1}}]}"#), "x[1].y.z");
    }

    /// The `Value` a [`Doc`] stands for, to compare with serde_json's.
    fn value_of(doc: &Doc<'_>) -> Value {
        match doc {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::Text(s) => Value::String(s.to_string()),
            Doc::Array(items) => Value::Array(items.iter().map(value_of).collect()),
            Doc::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), value_of(v)))
                    .collect(),
            ),
        }
    }

    fn doc_duplicate(text: &str) -> String {
        match doc_from_slice(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(path)) => dotted(&path),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_doc_holds_what_serde_json_reads_keys_in_order_and_borrowed() {
        let text = r#"{"z":[1,-2,3.5,"x",null,true,{"b":{}}],"c":{"d":18446744073709551615},
                       "e":"line\nbreak","a":"plain"}"#;
        let doc = doc_from_slice(text.as_bytes()).unwrap();
        assert_eq!(value_of(&doc), serde_json::from_str::<Value>(text).unwrap());
        let Doc::Object(fields) = &doc else {
            panic!("{doc:?}")
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["z", "c", "e", "a"]);
        assert!(matches!(&fields[3].1, Doc::Text(Cow::Borrowed("plain"))));
        assert!(matches!(&fields[2].1, Doc::Text(Cow::Owned(s)) if s == "line\nbreak"));
    }

    #[test]
    fn a_doc_refuses_a_repeated_key_at_any_depth_and_in_big_objects() {
        assert_eq!(doc_duplicate(r#"{"revenue":1,"revenue":900}"#), "revenue");
        assert_eq!(
            doc_duplicate(r#"{"firstClick":{"country":"US","country":"DE"}}"#),
            "firstClick.country"
        );
        assert_eq!(doc_duplicate(r#"[{"a":1},{"b":1,"b":2}]"#), "[1].b");
        assert_eq!(
            doc_duplicate(r#"{"x":[0,{"y":{"z":1,"z":1}}]}"#),
            "x[1].y.z"
        );
        // An escaped key is the same key.
        assert_eq!(doc_duplicate(r#"{"a":1,"\u0061":2}"#), "a");
        // Past the keys a scan checks, a hash set does, repeats before and after included.
        let keys: Vec<String> = (0..100).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let big = format!("{{{}}}", keys.join(","));
        assert!(doc_from_slice(big.as_bytes()).is_ok());
        for repeated in ["k3", "k40", "k99"] {
            let text = format!("{{{},\"{repeated}\":0}}", keys.join(","));
            assert_eq!(doc_duplicate(&text), repeated);
        }
        for text in ["{", r#"{"a":1} x"#, "", r#"{"a":1,}"#] {
            assert!(
                matches!(
                    doc_from_slice(text.as_bytes()),
                    Err(StrictJsonError::Syntax(_))
                ),
                "{text}"
            );
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(
            doc_from_slice(deep.as_bytes()),
            Err(StrictJsonError::Syntax(_))
        ));
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["{", r#"{"a":1} x"#, "", r#"{"a":1,}"#] {
            assert!(
                matches!(from_slice(text.as_bytes()), Err(StrictJsonError::Syntax(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            from_slice(deep.as_bytes()),
            Err(StrictJsonError::Syntax(_))
        ));
    }
}
