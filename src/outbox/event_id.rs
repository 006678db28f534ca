//! The ids the outbox gives events that came without one: a UUID v7 that carries the event's
//! `seq`, so that no index has to hold them.
//!
//! A tracker's id has to be looked up before its event is stored (a second event with the same
//! id is a duplicate), and so it sits in the unique index `events_id`. An id whc makes itself
//! needs no such check, and finding it again needs no index either: its `seq` is in its bits.
//! Leaving these ids out of the index spares every commit the index's page (measured under
//! `ingest-vs-limits.sh`'s load: about one WAL frame of the ~6 a commit of 12 events wrote).
//!
//! The layout, RFC 9562's UUID v7 with its random bits partly given to the `seq`:
//!
//! * bits 127..80: milliseconds since the Unix epoch, when the event was stored;
//! * bits 79..76: the version, 7;
//! * bits 75..64 (`rand_a`, 12 bits): bits 39..28 of the scrambled `seq`;
//! * bits 63..62: the variant, `10`;
//! * bits 61..34 (28 bits of `rand_b`): bits 27..0 of the scrambled `seq`;
//! * bits 33..0 (34 bits): random.
//!
//! The `seq` is scrambled by a permutation of the 40-bit numbers keyed by the outbox's own
//! random key ([`IdKey`], stored in `event_id_key`): the id goes to the tracker and, in the
//! envelope, to every receiver, and a plain `seq` would tell them how many events the outbox
//! stored, and how many between two of theirs. Two outboxes make the same id only for the
//! same millisecond, the same scrambled `seq` and the same 34 random bits. An event whose
//! `seq` does not fit in 40 bits (past 10^12 events) keeps an ordinary UUID v7, indexed like a
//! tracker's id.

/// The largest `seq` an id carries (40 bits).
const SEQ_LIMIT: i64 = (1 << 40) - 1;

/// Half of the 40 bits the permutation works on.
const HALF: u64 = (1 << 20) - 1;

/// The rounds of the permutation (a Feistel network on two 20-bit halves).
const ROUNDS: u64 = 4;

/// An outbox's key for scrambling the `seq` in its ids (`event_id_key.key`, random, made
/// with the table in schema step 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdKey(pub u64);

impl IdKey {
    /// The round function: 20 bits of a multiply-xorshift of the half and the round's key.
    fn round(self, n: u64, half: u64) -> u64 {
        let k = self.0.rotate_left((n * 16) as u32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let x = (half ^ k).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb) >> 44 & HALF
    }

    /// The 40-bit number `seq` becomes.
    fn scramble(self, seq: u64) -> u64 {
        let (mut left, mut right) = (seq >> 20 & HALF, seq & HALF);
        for n in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(n, right));
        }
        left << 20 | right
    }

    /// The `seq` a scrambled number came from.
    fn unscramble(self, scrambled: u64) -> u64 {
        let (mut left, mut right) = (scrambled >> 20 & HALF, scrambled & HALF);
        for n in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(n, left), left);
        }
        left << 20 | right
    }
}

/// The id of the event stored as `seq` at `millis` (ms since the Unix epoch), as text, or
/// `None` when `seq` does not fit in the id.
pub(crate) fn make(seq: i64, millis: u64, key: IdKey) -> Option<[u8; 36]> {
    if !(1..=SEQ_LIMIT).contains(&seq) {
        return None;
    }
    let seq = u128::from(key.scramble(seq as u64));
    let id = (u128::from(millis) & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (seq >> 28) << 64
        | 0b10 << 62
        | (seq & ((1 << 28) - 1)) << 34
        | u128::from(fastrand::u64(..)) & ((1 << 34) - 1);
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::from_u128(id)
        .hyphenated()
        .encode_lower(&mut text);
    Some(text)
}

/// The `seq` an id made by [`make`] would carry, or `None` when the text cannot be one (not a
/// UUID v7 in lower-case hyphenated form, or no `seq` in it). Any id, a tracker's too, may
/// decode: the event at that `seq` is the id's only if its stored id is the same text.
pub(crate) fn seq_of(id: &str, key: IdKey) -> Option<i64> {
    if id.len() != uuid::fmt::Hyphenated::LENGTH || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    if uuid.get_version_num() != 7 || uuid.get_variant() != uuid::Variant::RFC4122 {
        return None;
    }
    let bits = uuid.as_u128();
    let scrambled = ((bits >> 64) & 0xfff) << 28 | ((bits >> 34) & ((1 << 28) - 1));
    let seq = key.unscramble(u64::try_from(scrambled).ok()?);
    i64::try_from(seq).ok().filter(|s| *s >= 1)
}

/// The event's JSON with `id` as its first key: how an event whose id the outbox keeps apart
/// (in the `id` column: one it assigned, see [`crate::outbox::NewEvent::assigned`]) is read
/// back, and what [`crate::event::Event::to_json_string`] writes for it with the id set. JSON
/// that is not an object is returned as it is.
pub(crate) fn with_id(body: &str, id: &str) -> String {
    let Some(rest) = body.strip_prefix('{') else {
        return body.to_owned();
    };
    let rest = rest.trim_start();
    let mut out = String::with_capacity(body.len() + id.len() + 8);
    out.push_str("{\"id\":");
    crate::event::write::string(&mut out, id);
    if !rest.starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: IdKey = IdKey(0x5eed_1234_abcd_0042);

    fn text(id: [u8; 36]) -> String {
        String::from_utf8(id.to_vec()).expect("ascii")
    }

    #[test]
    fn the_scrambling_is_a_permutation_of_40_bits() {
        let mut rng = fastrand::Rng::with_seed(7);
        for key in [IdKey(0), KEY, IdKey(u64::MAX), IdKey(rng.u64(..))] {
            for seq in (0..2000).chain([HALF, HALF + 1, SEQ_LIMIT as u64]) {
                let s = key.scramble(seq);
                assert!(s <= SEQ_LIMIT as u64, "{seq} -> {s}");
                assert_eq!(key.unscramble(s), seq, "{key:?} {seq}");
            }
            for _ in 0..10_000 {
                let seq = rng.u64(..=SEQ_LIMIT as u64);
                assert_eq!(key.unscramble(key.scramble(seq)), seq, "{key:?} {seq}");
            }
        }
    }

    #[test]
    fn ids_do_not_count_up_with_the_seq() {
        // Consecutive seqs: the scrambled numbers are far apart and in no order.
        let scrambled: Vec<u64> = (1..=1000).map(|s| KEY.scramble(s)).collect();
        let rising = scrambled.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((300..700).contains(&rising), "{rising} of 999 rising");
        let close = scrambled
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) < 1 << 20)
            .count();
        assert!(close < 10, "{close} of 999 within 2^20 of the last");
        // Another outbox's key gives other ids for the same seq.
        assert_ne!(KEY.scramble(5), IdKey(KEY.0 ^ 1).scramble(5));
    }

    #[test]
    fn an_id_carries_its_seq_and_is_a_uuid_v7() {
        for seq in [
            1,
            2,
            4095,
            1 << 28,
            (1 << 28) + 1,
            123_456_789_012,
            SEQ_LIMIT,
        ] {
            let id = text(make(seq, 1_764_000_000_000, KEY).expect("fits"));
            let uuid = uuid::Uuid::parse_str(&id).expect("a uuid");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (secs, _) = uuid.get_timestamp().expect("v7").to_unix();
            assert_eq!(secs, 1_764_000_000, "{id}");
            assert_eq!(seq_of(&id, KEY), Some(seq), "{id}");
            assert_ne!(seq_of(&id, IdKey(KEY.0 ^ 1)), Some(seq), "{id}");
        }
    }

    #[test]
    fn a_seq_past_40_bits_or_below_1_gets_no_id() {
        assert_eq!(make(SEQ_LIMIT + 1, 1, KEY), None);
        assert_eq!(make(0, 1, KEY), None);
        assert_eq!(make(-5, 1, KEY), None);
    }

    #[test]
    fn ids_of_one_seq_differ_in_their_random_bits() {
        let ids: Vec<String> = (1..500)
            .map(|s| text(make(s, 7, KEY).expect("fits")))
            .collect();
        let again: Vec<String> = (1..500)
            .map(|s| text(make(s, 7, KEY).expect("fits")))
            .collect();
        assert!(
            ids.iter().zip(&again).all(|(a, b)| a != b),
            "34 random bits each"
        );
    }

    #[test]
    fn what_cannot_be_a_made_id_has_no_seq() {
        for id in [
            "",
            "e1",
            "not-a-uuid-at-all-but-36-characters",
            // v4, not v7.
            "0f7a2c3e-9b1d-4e8f-a2b3-c4d5e6f70812",
            // A v7 in upper case, braces, or without hyphens: not the text `make` writes.
            "01A237CE-4717-7203-9A3A-0F3DADA5A951",
            "{01a237ce-4717-7203-9a3a-0f3dada5a951}",
            "01a237ce47177203",
        ] {
            assert_eq!(seq_of(id, KEY), None, "{id}");
        }
        // A v7 whose bits hold the scrambled 0, which is no seq.
        let zero = KEY.scramble(0) as u128;
        let id = uuid::Uuid::from_u128(
            0x01a2_37ce_4717_u128 << 80
                | 0x7 << 76
                | (zero >> 28) << 64
                | 0b10 << 62
                | (zero & ((1 << 28) - 1)) << 34,
        );
        assert_eq!(seq_of(&id.hyphenated().to_string(), KEY), None);
    }

    #[test]
    fn an_id_kept_apart_opens_the_json_read_back() {
        let id = "01a237ce-4718-7000-8000-000400000001";
        assert_eq!(
            with_id(r#"{"type":"refund"}"#, id),
            format!(r#"{{"id":"{id}","type":"refund"}}"#)
        );
        assert_eq!(with_id("{}", id), format!(r#"{{"id":"{id}"}}"#));
        assert_eq!(with_id("{ }", id), format!(r#"{{"id":"{id}"}}"#));
        assert_eq!(with_id(r#"{"a":1}"#, r#"q"u"#), r#"{"id":"q\"u","a":1}"#);
        assert_eq!(with_id("[1]", id), "[1]");
        for body in [r#"{"type":"refund","revenue":1.5}"#, "{}"] {
            let read: serde_json::Value = serde_json::from_str(&with_id(body, id)).expect("JSON");
            assert_eq!(read["id"], id);
        }
    }
}
