//! Text keys: a click text's first bytes and length packed in 16 bytes, built once per event.
//!
//! Comparing a click field with a short constant is the most common test in rule files. With a
//! key stored beside each value, that test is one 16-byte comparison that reads no other memory,
//! instead of a pointer chase into the string.

/// The first 15 bytes of a text (zero-padded) and, in the last byte, its length capped at 254;
/// 255 there marks a missing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextKey([u64; 2]);

impl TextKey {
    /// How many leading bytes a key holds.
    pub const PREFIX: usize = 15;
    const MISSING_LEN: u8 = u8::MAX;

    /// The key of a value that is not set; it equals no key of a present text.
    pub const MISSING: TextKey = TextKey([0, (Self::MISSING_LEN as u64) << 56]);

    /// The key of a text, ASCII-uppercased when `upper` (fields compared ignoring case).
    pub fn of(text: &str, upper: bool) -> TextKey {
        let mut bytes = [0u8; 16];
        let len = text.len().min(Self::PREFIX);
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        if upper {
            bytes[..len].make_ascii_uppercase();
        }
        bytes[Self::PREFIX] = text.len().min(usize::from(Self::MISSING_LEN) - 1) as u8;
        TextKey::from_bytes(bytes)
    }

    /// The key of a value that may be missing.
    pub fn of_value(text: Option<&str>, upper: bool) -> TextKey {
        text.map_or(TextKey::MISSING, |t| TextKey::of(t, upper))
    }

    fn from_bytes(bytes: [u8; 16]) -> TextKey {
        let (lo, hi) = bytes.split_at(8);
        TextKey([
            u64::from_le_bytes(lo.try_into().unwrap_or_default()),
            u64::from_le_bytes(hi.try_into().unwrap_or_default()),
        ])
    }

    /// The text's length (capped at 254), or `None` for a missing value.
    #[inline]
    pub fn text_len(self) -> Option<u8> {
        let len = (self.0[1] >> 56) as u8;
        (len != Self::MISSING_LEN).then_some(len)
    }

    /// Whether this key can be the whole of a text: the text fits in the key.
    #[inline]
    pub fn is_whole(self) -> bool {
        self.text_len()
            .is_some_and(|n| usize::from(n) <= Self::PREFIX)
    }

    /// Whether a text with key `self` starts with the text of `prefix`, which must be whole.
    #[inline(always)]
    pub fn starts_with(self, prefix: TextKey) -> bool {
        let (Some(len), Some(n)) = (self.text_len(), prefix.text_len()) else {
            return false;
        };
        if len < n {
            return false;
        }
        // Both keys are zero-padded, so masking off the bytes past the prefix compares the rest.
        let n = u32::from(n.min(Self::PREFIX as u8));
        let mask = |bits: u32| {
            if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            }
        };
        let lo_mask = mask(n * 8);
        let hi_mask = mask(n.saturating_sub(8) * 8) & !(0xFFu64 << 56);
        self.0[0] & lo_mask == prefix.0[0] && self.0[1] & hi_mask == prefix.0[1] & hi_mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_equal_keys_and_different_ones_differ() {
        assert_eq!(
            TextKey::of("facebook", false),
            TextKey::of("facebook", false)
        );
        assert_ne!(
            TextKey::of("facebook", false),
            TextKey::of("faceboo", false)
        );
        assert_ne!(TextKey::of("", false), TextKey::MISSING);
        assert_ne!(TextKey::of("a\0", false), TextKey::of("a", false));
        assert_eq!(TextKey::of("us", true), TextKey::of("US", false));
    }

    #[test]
    fn long_texts_share_a_key_only_with_the_same_prefix_and_length() {
        let a = "spring_sale_2026_retargeting";
        let b = "spring_sale_2026_retargetinX";
        assert_eq!(TextKey::of(a, false), TextKey::of(b, false));
        assert!(!TextKey::of(a, false).is_whole());
        assert_ne!(TextKey::of(a, false), TextKey::of(&a[..27], false));
    }

    #[test]
    fn lengths_round_trip() {
        assert_eq!(TextKey::MISSING.text_len(), None);
        assert_eq!(TextKey::of("", false).text_len(), Some(0));
        assert_eq!(TextKey::of("abc", false).text_len(), Some(3));
        assert_eq!(TextKey::of(&"x".repeat(300), false).text_len(), Some(254));
    }

    #[test]
    fn prefixes() {
        let key = |s| TextKey::of(s, false);
        assert!(key("spring_sale").starts_with(key("spring")));
        assert!(key("spring").starts_with(key("spring")));
        assert!(key("spring").starts_with(key("")));
        assert!(!key("sprin").starts_with(key("spring")));
        assert!(!key("summer").starts_with(key("spring")));
        assert!(!TextKey::MISSING.starts_with(key("")));
        assert!(key("abcdefghijklmnopqrstuvwxyz").starts_with(key("abcdefghijklmno")));
        assert!(!key("abcdefghijklmnXpqrstuvwxyz").starts_with(key("abcdefghijklmno")));
        assert!(key("abcdefghij").starts_with(key("abcdefghi")));
        assert!(!key("abcdefghXj").starts_with(key("abcdefghi")));
        assert!(!key("ab").starts_with(key("ab\0")));
    }
}
