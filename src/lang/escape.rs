//! String literal escapes: one table that the parser decodes with and `whc fmt` re-escapes with.

/// Each escape as `(the character after the backslash, the character it stands for)`; a
/// backslash before any other character stands for that character.
pub const ESCAPES: [(char, char); 4] = [('"', '"'), ('\\', '\\'), ('n', '\n'), ('t', '\t')];

/// Decodes the inside of a string literal (between its quotes); the flag says whether it held
/// any escape, so that spans into the value can no longer be mapped to the source.
pub fn unescape(raw: &str) -> (String, bool) {
    if memchr::memchr(b'\\', raw.as_bytes()).is_none() {
        return (raw.to_owned(), false); // most strings: one copy
    }
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        escaped = true;
        if let Some(after) = chars.next() {
            let meant = ESCAPES
                .iter()
                .find(|(written, _)| *written == after)
                .map_or(after, |(_, meant)| *meant);
            value.push(meant);
        }
    }
    (value, escaped)
}

/// Writes a value as a quoted string literal, escaping exactly the characters of [`ESCAPES`].
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match ESCAPES.iter().find(|(_, meant)| *meant == c) {
            Some((written, _)) => {
                out.push('\\');
                out.push(*written);
            }
            None => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_table_and_any_other_escaped_character() {
        assert_eq!(unescape(r#"a\"b\\c\nd\te"#), ("a\"b\\c\nd\te".into(), true));
        assert_eq!(unescape(r"\q"), ("q".into(), true));
        assert_eq!(unescape("plain"), ("plain".into(), false));
    }

    #[test]
    fn quoting_round_trips() {
        for value in [
            "a\"b",
            "back\\slash",
            "line\nbreak",
            "tab\there",
            "é # not a comment",
        ] {
            let quoted = quote(value);
            let inner = &quoted[1..quoted.len() - 1];
            assert_eq!(unescape(inner).0, value, "{quoted}");
        }
        assert_eq!(quote("a\"b\\\n\t"), r#""a\"b\\\n\t""#);
    }
}
