//! A hand-written reader of the common events body; what it is not sure of, serde_json reads.
//!
//! [`events`] reads a body only when it is sure to read it as `decode`'s serde_json reader does:
//! the same events, through the same checks (`decode::set`, `wire::click_text`,
//! `decode::finish`) on the same values. Everything else it declines, and the body is read
//! again by serde_json, so every refusal and its message stay serde_json's. It declines: any
//! error (syntax, a repeated key, an event's fault), a key with an escape in it, an object with
//! more unknown keys than [`OTHERS`], values nested deeper than [`DEPTH`], and a value at a known
//! key of a type no check of it accepts. Integers of up to 18 digits it reads itself; any other
//! number's text it hands to serde_json, for the very same `Number`.

use std::borrow::Cow;

use serde_json::Number;

use super::decode::{self, Known, Later, Scalar};
use super::{Attribution, Click, Event, EventKind, wire};

/// How deep values may nest (the body's own array counting): well inside serde_json's 128, so
/// that what is read here is never too deep for it.
const DEPTH: usize = 32;

/// How many keys of one object a reader keeps to find a repeat among them, besides those it
/// knows: an event or a click has none as a rule.
const OTHERS: usize = 16;

/// Reads an events body (one event object, or a non-empty array of them) when it holds no
/// fault and nothing this reader leaves to serde_json; `None` otherwise.
pub(super) fn events(text: &str) -> Option<Vec<Event>> {
    let mut scan = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.space();
    let events = match scan.next()? {
        b'{' => {
            // Each event is read where it stays: an event is a kilobyte to move.
            let mut events = vec![Event::new(EventKind::Conversion)];
            scan.event(&mut events[0], 1)?;
            events
        }
        b'[' => {
            let mut events = Vec::with_capacity(1);
            loop {
                scan.space();
                scan.expect(b'{')?;
                events.push(Event::new(EventKind::Conversion));
                scan.event(events.last_mut()?, 2)?;
                scan.space();
                match scan.next()? {
                    b',' => continue,
                    b']' => break,
                    _ => return None,
                }
            }
            events
        }
        _ => return None,
    };
    scan.space();
    (scan.at == scan.bytes.len()).then_some(events)
}

/// A place in the body's text.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// The keys of one object other than those its reader knows, to find a repeat (by a scan: the
/// object is declined past [`OTHERS`]). Nothing is allocated for an object without any.
struct Others<'a>(Vec<&'a str>);

impl<'a> Others<'a> {
    fn new() -> Others<'a> {
        Others(Vec::new())
    }

    /// Adds `key`; `None` when it is there already, or there is no room left.
    fn insert(&mut self, key: &'a str) -> Option<()> {
        if self.0.len() == OTHERS || self.0.contains(&key) {
            return None;
        }
        self.0.push(key);
        Some(())
    }
}

/// Eight bytes' worth of `0x01`.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// Eight bytes' worth of `0x80`.
const HIGH: u64 = ONES * 0x80;

/// Of eight bytes of a string, read little-endian: a high bit set in the byte of the first
/// `"`, `\` or control character (bits above it may be set too), or 0 where there is none.
#[inline]
fn specials(v: u64) -> u64 {
    // A zero byte is one whose borrow reaches its high bit while its own high bit is clear;
    // a borrow only carries upwards, so the lowest bit set is the first byte matched.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    zero(v ^ (ONES * u64::from(b'"')))
        | zero(v ^ (ONES * u64::from(b'\\')))
        | (v.wrapping_sub(ONES * 0x20) & !v & HIGH)
}

impl<'a> Scanner<'a> {
    /// The next byte, taken.
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// Takes `b`, or declines.
    #[inline]
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Skips JSON's whitespace (serde_json's four bytes).
    #[inline]
    fn space(&mut self) {
        // Compact JSON, the common body, has none: one comparison (all four are ≤ b' ').
        if self.bytes.get(self.at).is_some_and(|&b| b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// After a value in an object: `true` at its `,`, `false` at its `}`.
    #[inline]
    fn more(&mut self) -> Option<bool> {
        self.space();
        match self.next()? {
            b',' => {
                self.space();
                Some(true)
            }
            b'}' => Some(false),
            _ => None,
        }
    }

    /// Just past an object's `{`: `false` (and past it) when the object is empty.
    #[inline]
    fn open(&mut self) -> Option<bool> {
        self.space();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(false);
        }
        Some(true)
    }

    /// Takes the bytes of a string up to its first `"`, `\\` or control character, and that
    /// one; eight at a time while there are eight left (a string is a few dozen bytes at most).
    #[inline]
    fn special(&mut self) -> Option<u8> {
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let found = specials(u64::from_le_bytes(chunk.try_into().ok()?));
            if found != 0 {
                self.at += (found.trailing_zeros() / 8) as usize;
                return self.next();
            }
            self.at += 8;
        }
        loop {
            if let b @ (b'"' | b'\\' | 0..=0x1f) = self.next()? {
                return Some(b);
            }
        }
    }

    /// An object's key and its `:`, with the space around them; declined when escaped.
    #[inline]
    fn key(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        if self.special()? != b'"' {
            return None;
        }
        let key = self.text.get(start..self.at - 1)?;
        if self.next()? != b':' {
            self.at -= 1;
            self.space();
            self.expect(b':')?;
        }
        self.space();
        Some(key)
    }

    /// One event's object, just past its `{`, into `event` (a new one).
    fn event(&mut self, event: &mut Event, depth: usize) -> Option<()> {
        let mut later = Later::default();
        let mut seen = 0u32;
        let mut others = Others::new();
        let mut more = self.open()?;
        while more {
            let key = self.key()?;
            match Known::of(key) {
                None => {
                    others.insert(key)?;
                    self.skip(depth + 1)?;
                }
                Some((known, rank)) => {
                    if seen & (1 << rank) != 0 {
                        return None;
                    }
                    seen |= 1 << rank;
                    match known {
                        Known::Click(attribution) => {
                            let (click, sent) = match attribution {
                                Attribution::First => (&mut event.first_click, &mut later.first),
                                Attribution::Last => (&mut event.last_click, &mut later.last),
                            };
                            *sent = self.click(known.name(), click, depth + 1)?;
                        }
                        _ => {
                            let value = self.scalar()?;
                            decode::set(event, &mut later, known, value).ok()?;
                        }
                    }
                }
            }
            more = self.more()?;
        }
        decode::finish(event, &later).ok()
    }

    /// The click at `key` into `click` (a new one): `true` for an object of click fields,
    /// `false` for `null` (what `decode`'s reader makes of them).
    fn click(&mut self, key: &'static str, click: &mut Click, depth: usize) -> Option<bool> {
        match self.next()? {
            b'n' => {
                self.word(b"ull")?;
                return Some(false);
            }
            b'{' => {}
            _ => return None,
        }
        let mut seen = 0u32;
        let mut others = Others::new();
        let mut more = self.open()?;
        while more {
            let name = self.key()?;
            match decode::click_field(name) {
                None => {
                    others.insert(name)?;
                    self.skip(depth + 1)?;
                }
                Some(field) => {
                    if seen & (1 << field.slot()) != 0 {
                        return None;
                    }
                    seen |= 1 << field.slot();
                    let value = self.scalar()?;
                    click.set(field, wire::click_text(Some(value.raw()), key, field).ok()?);
                }
            }
            more = self.more()?;
        }
        Some(true)
    }

    /// A string, a number, `true`, `false` or `null`; declined at an object or an array, which
    /// no check of a known key's value accepts.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        Some(match self.next()? {
            b'"' => Scalar::Text(self.string()?),
            b't' => self.word(b"rue").map(|()| Scalar::Bool(true))?,
            b'f' => self.word(b"alse").map(|()| Scalar::Bool(false))?,
            b'n' => self.word(b"ull").map(|()| Scalar::Null)?,
            b'-' | b'0'..=b'9' => {
                self.at -= 1;
                Scalar::Number(self.number()?)
            }
            _ => return None,
        })
    }

    /// Any value no one reads, checked as serde_json checks it: its syntax, its numbers'
    /// range, its strings' escapes, its objects' keys for a repeat.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > DEPTH {
            return None;
        }
        match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut others = Others::new();
                let mut more = self.open()?;
                while more {
                    others.insert(self.key()?)?;
                    self.skip(depth + 1)?;
                    more = self.more()?;
                }
            }
            b'[' => {
                self.at += 1;
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.space();
                    match self.next()? {
                        b',' => self.space(),
                        b']' => break,
                        _ => return None,
                    }
                }
            }
            _ => {
                self.scalar()?;
            }
        }
        Some(())
    }

    /// The rest of a word whose first byte was taken.
    #[inline]
    fn word(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at + rest.len();
        (self.bytes.get(self.at..end)? == rest).then(|| self.at = end)
    }

    /// A string, just past its opening quote: borrowed from the text unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        match self.special()? {
            b'"' => self.text.get(start..self.at - 1).map(Cow::Borrowed),
            b'\\' => {
                self.at -= 1;
                self.escaped(start).map(Cow::Owned)
            }
            _ => None,
        }
    }

    /// The rest of a string from `start`, the first escape at `self.at`.
    fn escaped(&mut self, start: usize) -> Option<String> {
        let mut out = String::with_capacity(self.at - start + 16);
        out.push_str(self.text.get(start..self.at)?);
        loop {
            let run = self.at;
            let found = self.special()?;
            out.push_str(self.text.get(run..self.at - 1)?);
            match found {
                b'"' => return Some(out),
                b'\\' => {}
                _ => return None,
            }
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode()?,
                _ => return None,
            };
            out.push(c);
        }
    }

    /// The character of a `\u` escape, just past the `u`: one of four hex digits, or a pair of
    /// them for a surrogate pair. A lone surrogate is declined (serde_json refuses it).
    fn unicode(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                self.word(b"\\u")?;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))
            }
            _ => char::from_u32(first),
        }
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16)?;
        }
        self.at += 4;
        Some(n)
    }

    /// A number at `self.at`: JSON's grammar checked here; integers of up to 18 digits read
    /// here, anything else handed to serde_json as text.
    fn number(&mut self) -> Option<Number> {
        let start = self.at;
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        let mut value = 0u64;
        match self.next()? {
            b'0' => {}
            d @ b'1'..=b'9' => {
                value = u64::from(d - b'0');
                while let Some(&d @ b'0'..=b'9') = self.bytes.get(self.at) {
                    value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    self.at += 1;
                }
            }
            _ => return None,
        }
        let whole = self.at - digits <= 18;
        let mut plain = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            plain = false;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            plain = false;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.digits()?;
        }
        match (plain && whole, negative) {
            // `-0` is serde_json's float -0.0: left to it with the rest.
            (true, true) if value != 0 => Some(Number::from(-(value as i64))),
            (true, false) => Some(Number::from(value)),
            _ => serde_json::from_str(self.text.get(start..self.at)?).ok(),
        }
    }

    /// One digit or more.
    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests;
