//! An event's fan-out as its row holds it until the deliveries get rows of their own.
//!
//! A post stores one row per event: the requests its webhooks rendered travel in the event's
//! `fanout` column, and the writer expands them into `deliveries` rows before anything reads
//! deliveries (see [`super::Outbox`]). The encoding is whc's own and versioned by its first
//! byte: a count, then per delivery its strings (a LEB128 length, then UTF-8) and numbers
//! (LEB128), in the order of [`Entry`]'s fields.

use super::payload::Payload;
use super::types::NewDelivery;

/// The encoding's version, its first byte.
const VERSION: u8 = 1;

/// How an entry's body is stored (one byte).
const BODY_EMPTY: u8 = 0;
const BODY_BYTES: u8 = 1;
const BODY_ENVELOPE: u8 = 2;

/// A stored fan-out that does not decode: the row was damaged or written by something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event's stored fan-out is damaged: {0}")]
pub struct BadFanOut(&'static str);

/// One delivery as the event row holds it, borrowed from the stored bytes: the columns its
/// `deliveries` row gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The delivery id.
    pub id: &'a str,
    /// The webhook's name.
    pub webhook: &'a str,
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The rendered URL.
    pub url: &'a str,
    /// The headers as the `headers` column holds them (JSON text).
    pub headers: &'a str,
    /// The body bytes, `None` for no body or the envelope.
    pub body: Option<&'a [u8]>,
    /// Whether the body is the envelope rendered from the event.
    pub envelope: bool,
    /// The environment variable holding the signing secret.
    pub secret_env: Option<&'a str>,
    /// The per-attempt deadline.
    pub timeout_ms: u64,
    /// The attempts allowed.
    pub max_attempts: u32,
}

/// Encodes the deliveries an event's webhooks rendered; `headers` are already the column's
/// JSON text, one per delivery.
pub(crate) fn encode(deliveries: &[NewDelivery], headers: &[std::borrow::Cow<'_, str>]) -> Vec<u8> {
    let size: usize = deliveries
        .iter()
        .map(|d| {
            d.id.len()
                + d.webhook.len()
                + d.method.len()
                + d.url.len()
                + d.secret_env.as_ref().map_or(0, String::len)
                + match &d.body {
                    Payload::Bytes(b) => b.len(),
                    _ => 0,
                }
                + 32
        })
        .sum::<usize>()
        + headers.iter().map(|h| h.len()).sum::<usize>()
        + 8;
    let mut out = Vec::with_capacity(size);
    out.push(VERSION);
    put_number(&mut out, deliveries.len() as u64);
    for (d, headers) in deliveries.iter().zip(headers) {
        put_text(&mut out, d.id.as_bytes());
        put_text(&mut out, d.webhook.as_bytes());
        put_text(&mut out, d.method.as_bytes());
        put_text(&mut out, d.url.as_bytes());
        put_text(&mut out, headers.as_bytes());
        match &d.body {
            Payload::Empty => out.push(BODY_EMPTY),
            Payload::Bytes(bytes) => {
                out.push(BODY_BYTES);
                put_text(&mut out, bytes);
            }
            Payload::Envelope => out.push(BODY_ENVELOPE),
        }
        match &d.secret_env {
            None => out.push(0),
            Some(env) => {
                out.push(1);
                put_text(&mut out, env.as_bytes());
            }
        }
        put_number(&mut out, d.timeout_ms);
        put_number(&mut out, u64::from(d.max_attempts));
    }
    out
}

/// Decodes a stored fan-out into its entries, in the order rendered.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Entry<'_>>, BadFanOut> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != VERSION {
        return Err(BadFanOut("unknown version"));
    }
    let count = r.number()?;
    // Each entry takes at least 10 bytes: never trust a count to size a vector.
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(bytes.len() / 10));
    for _ in 0..count {
        let id = r.text()?;
        let webhook = r.text()?;
        let method = r.text()?;
        let url = r.text()?;
        let headers = r.text()?;
        let (body, envelope) = match r.byte()? {
            BODY_EMPTY => (None, false),
            BODY_BYTES => (Some(r.bytes()?), false),
            BODY_ENVELOPE => (None, true),
            _ => return Err(BadFanOut("unknown body kind")),
        };
        let secret_env = match r.byte()? {
            0 => None,
            1 => Some(r.text()?),
            _ => return Err(BadFanOut("unknown secret marker")),
        };
        let timeout_ms = r.number()?;
        let max_attempts =
            u32::try_from(r.number()?).map_err(|_| BadFanOut("attempts out of range"))?;
        entries.push(Entry {
            id,
            webhook,
            method,
            url,
            headers,
            body,
            envelope,
            secret_env,
            timeout_ms,
            max_attempts,
        });
    }
    if r.at != bytes.len() {
        return Err(BadFanOut("bytes after the last delivery"));
    }
    Ok(entries)
}

/// How many deliveries a stored fan-out holds, read from its head alone.
pub(crate) fn count(bytes: &[u8]) -> Result<u64, BadFanOut> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != VERSION {
        return Err(BadFanOut("unknown version"));
    }
    r.number()
}

/// Appends `n` as LEB128.
fn put_number(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length, then the bytes.
fn put_text(out: &mut Vec<u8>, bytes: &[u8]) {
    put_number(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads the encoding front to back; every read checks the bounds.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BadFanOut> {
        let b = *self.bytes.get(self.at).ok_or(BadFanOut("cut short"))?;
        self.at += 1;
        Ok(b)
    }

    fn number(&mut self) -> Result<u64, BadFanOut> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f)
                .checked_shl(shift)
                .ok_or(BadFanOut("number too long"))?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(BadFanOut("number too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BadFanOut> {
        let len = usize::try_from(self.number()?).map_err(|_| BadFanOut("length too long"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(BadFanOut("cut short"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn text(&mut self) -> Result<&'a str, BadFanOut> {
        std::str::from_utf8(self.bytes()?).map_err(|_| BadFanOut("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn delivery(n: u32, body: Payload, secret_env: Option<&str>) -> NewDelivery {
        NewDelivery {
            id: format!("0190-{n}"),
            webhook: format!("hook_{n}"),
            method: "POST".into(),
            url: format!("https://crm.example.com/h?n={n}&é=ü"),
            headers: Vec::new(),
            body,
            secret_env: secret_env.map(str::to_owned),
            timeout_ms: 10_000 + u64::from(n) * 300,
            max_attempts: n,
        }
    }

    #[test]
    fn every_field_comes_back_in_the_order_rendered() {
        let deliveries = vec![
            delivery(1, Payload::Envelope, None),
            delivery(
                2,
                Payload::Bytes(b"a=1&b=\x00\xff".to_vec()),
                Some("SECRET"),
            ),
            delivery(300, Payload::Empty, Some("")),
        ];
        let headers = vec![
            Cow::Borrowed("[]"),
            Cow::Borrowed(r#"[{"name":"X","value":"y"}]"#),
            Cow::Borrowed("[]"),
        ];
        let bytes = encode(&deliveries, &headers);
        assert_eq!(count(&bytes), Ok(3));
        let entries = decode(&bytes).expect("decodes");
        assert_eq!(entries.len(), 3);
        for ((e, d), h) in entries.iter().zip(&deliveries).zip(&headers) {
            assert_eq!(e.id, d.id);
            assert_eq!(e.webhook, d.webhook);
            assert_eq!(e.method, d.method);
            assert_eq!(e.url, d.url);
            assert_eq!(e.headers, h.as_ref());
            assert_eq!(e.secret_env, d.secret_env.as_deref());
            assert_eq!(e.timeout_ms, d.timeout_ms);
            assert_eq!(e.max_attempts, d.max_attempts);
        }
        assert_eq!((entries[0].body, entries[0].envelope), (None, true));
        assert_eq!(
            (entries[1].body, entries[1].envelope),
            (Some(&b"a=1&b=\x00\xff"[..]), false)
        );
        assert_eq!((entries[2].body, entries[2].envelope), (None, false));
    }

    #[test]
    fn no_deliveries_is_one_count() {
        let bytes = encode(&[], &[]);
        assert_eq!(decode(&bytes), Ok(Vec::new()));
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let bytes = encode(
            &[delivery(7, Payload::Bytes(vec![1, 2, 3]), Some("S"))],
            &[Cow::Borrowed("[]")],
        );
        // Every cut, every single-byte change, a huge count and a wrong version: an error or
        // a decoding, never a panic or an allocation sized by the input.
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "cut at {end}");
        }
        for at in 0..bytes.len() {
            for b in [0u8, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = b;
                let _ = decode(&changed);
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(BadFanOut("bytes after the last delivery"))
        );
        assert!(
            decode(&[
                VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ])
            .is_err()
        );
        assert_eq!(decode(&[9, 0]), Err(BadFanOut("unknown version")));
        assert_eq!(decode(&[]), Err(BadFanOut("cut short")));
    }
}
