//! From rule-file text to the syntax tree, with syntax errors worded for people.

use std::ops::Range;
use std::sync::LazyLock;

use pest::Parser;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op as PrattOp, PrattParser};

use super::ast::{
    Clause, Comparison, EventSpec, Expr, FieldName, File, Literal, MapEntry, Method, Op, Place,
    SourceClause, SourceDecl, Span, Spanned, StringLit, ValueFrom, ValueSource, WebhookDecl,
};
use super::escape;
use super::grammar::{Rule, RuleParser};

/// A syntax error: where, what was expected and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// What stands where the parser gave up (or the end of the file).
    pub span: Span,
    /// "expected ..., found ..." in plain words.
    pub message: String,
    /// What to say at `span`.
    pub label: &'static str,
    /// The phrases of what would have been accepted.
    pub expected: Vec<&'static str>,
}

/// Parses a whole file. On a syntax error, parsing starts again at the next `webhook` or
/// `source`, so one run reports an error per broken block and still yields the blocks that parse.
pub fn parse_file(text: &str) -> (File, Vec<SyntaxError>) {
    match parse_chunk(text, 0) {
        Ok(file) => (file, Vec::new()),
        Err(_) => {
            let mut file = File::default();
            let mut errors = Vec::new();
            let starts = webhook_starts(text);
            // Text before the first `webhook` still has to be parsed (it may be garbage).
            let mut bounds: Vec<usize> = Vec::with_capacity(starts.len() + 2);
            bounds.push(0);
            bounds.extend(starts.iter().copied().filter(|&s| s > 0));
            bounds.push(text.len());
            for pair in bounds.windows(2) {
                let (start, end) = (pair[0], pair[1]);
                match parse_chunk(&text[start..end], start) {
                    Ok(chunk) => {
                        file.webhooks.extend(chunk.webhooks);
                        file.sources.extend(chunk.sources);
                    }
                    Err(err) => errors.push(err),
                }
            }
            (file, errors)
        }
    }
}

/// The size a piece of a file is cut at (see [`pieces`]): small enough to share a big file
/// among threads, big enough that starting a parse is nothing beside it.
const PIECE_BYTES: usize = 32 * 1024;

/// A file's text cut into pieces of about [`PIECE_BYTES`] each, at lines that start a webhook or a source
/// (the text before the first one is the first piece). Parsed one by one with
/// [`parse_piece`], the pieces yield what [`parse_file`] yields for the whole text when every
/// one of them parses; when one does not, parse the whole text with [`parse_file`], which
/// words the errors.
pub fn pieces(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::with_capacity(text.len() / PIECE_BYTES + 1);
    let mut start = 0;
    // Each cut is looked for from the line a piece's size away, not by finding every block.
    while start + PIECE_BYTES < bytes.len() {
        let mut line = memchr::memrchr(b'\n', &bytes[..start + PIECE_BYTES]).map_or(0, |n| n + 1);
        let cut = loop {
            if line >= bytes.len() {
                break None;
            }
            if let Some(at) = block_start(bytes, line)
                && at - start >= PIECE_BYTES
            {
                break Some(at);
            }
            line = memchr::memchr(b'\n', &bytes[line..]).map_or(bytes.len(), |n| line + n + 1);
        };
        let Some(cut) = cut else { break };
        pieces.push(start..cut);
        start = cut;
    }
    pieces.push(start..text.len());
    pieces
}

/// Where the word `webhook` or `source` starts when the line at `line` starts with it after
/// spaces and tabs.
fn block_start(bytes: &[u8], line: usize) -> Option<usize> {
    let at = line
        + bytes[line..]
            .iter()
            .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\r'))
            .count();
    let word = &bytes[at..];
    let rest = word
        .strip_prefix(b"webhook")
        .or_else(|| word.strip_prefix(b"source"))?;
    matches!(rest.first(), Some(b' ' | b'\t' | b'"' | b'{')).then_some(at)
}

/// Parses one piece of a file's text (see [`pieces`]), with spans in the whole text;
/// `None` when it has a syntax error.
pub fn parse_piece(text: &str, piece: Range<usize>) -> Option<File> {
    parse_chunk(text.get(piece.clone())?, piece.start).ok()
}

/// Byte offsets of lines that start (after indentation) with the word `webhook` or `source`.
fn webhook_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut line = 0;
    while line < bytes.len() {
        let end = bytes[line..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |n| line + n + 1);
        let words = text[line..end].trim_start();
        let indent = end - line - words.len();
        let word = words.as_bytes();
        if let Some(rest) = word
            .strip_prefix(b"webhook")
            .or_else(|| word.strip_prefix(b"source"))
            && matches!(rest.first(), Some(b' ' | b'\t' | b'"' | b'{'))
        {
            starts.push(line + indent);
        }
        line = end;
    }
    starts
}

/// The deepest a condition may nest, counting each `(` and each `not` in front of a condition.
/// The parser and every later phase go one call deeper per level, so without a limit a
/// hostile file (100,000 `(` or `not`) would overflow the stack instead of getting an error.
pub const MAX_NESTING: usize = 64;

/// The most comparisons one condition may join with `and` and `or`. Each `and` or `or` makes
/// the condition's tree one level deeper (`a or b or c` is `(a or b) or c`), so, like
/// [`MAX_NESTING`], this bounds how deep the parser and every later phase go: 20,000 `or`s
/// overflowed the stack. A list of values is one comparison: `utm_source in ["a", "b", ...]`.
pub const MAX_JOINED: usize = 256;

/// How a condition is too big for the parser and the phases after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TooBig {
    /// Nested deeper than [`MAX_NESTING`].
    Deep,
    /// Joins more than [`MAX_JOINED`] comparisons.
    Long,
}

/// The first `(` or `not` in the text that nests a condition deeper than [`MAX_NESTING`], or
/// the first `and`/`or` that joins more than [`MAX_JOINED`] comparisons in one condition,
/// outside strings and comments. Braces and `when` start a condition afresh, so parentheses
/// left open by a broken clause do not add up over a file.
fn too_deep(text: &str) -> Option<(Range<usize>, TooBig)> {
    let bytes = text.as_bytes();
    // Fewer `(` and `not` in the whole text than the limit, and fewer `and` and `or` (counted
    // inside longer words too): no condition is that big (the usual case, found without going
    // through the text word by word).
    let parens = memchr::memchr_iter(b'(', bytes).count();
    let nesting = parens + memchr::memmem::find_iter(bytes, b"not").count();
    let joins = || {
        memchr::memmem::find_iter(bytes, b"or").count()
            + memchr::memmem::find_iter(bytes, b"and").count()
    };
    if nesting <= MAX_NESTING && joins() < MAX_JOINED {
        return None;
    }
    // The `and`s and `or`s of the condition being read.
    let mut joined = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    // The prefix `not`s in front of each open parenthesis; `outer` is the depth they and the
    // parentheses make, `nots` the prefix `not`s since.
    let mut open: Vec<usize> = Vec::new();
    let (mut outer, mut nots) = (0, 0);
    // Whether a `not` here negates a condition (rather than being part of `is not set`).
    let mut prefix = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        i += 1;
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'#' => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'"' => {
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' || c == b'\n' {
                        break;
                    }
                }
                (nots, prefix) = (0, false);
            }
            b'(' => {
                open.push(nots);
                outer += 1 + nots;
                (nots, prefix) = (0, true);
                if outer > MAX_NESTING {
                    return Some((start..i, TooBig::Deep));
                }
            }
            b')' => {
                if let Some(n) = open.pop() {
                    outer -= 1 + n;
                }
                (nots, prefix) = (0, false);
            }
            b'{' | b'}' => {
                open.clear();
                (outer, nots, prefix, joined) = (0, 0, false, 0);
            }
            _ if is_word(b) => {
                while bytes.get(i).is_some_and(|&c| is_word(c)) {
                    i += 1;
                }
                match &bytes[start..i] {
                    b"not" if prefix => {
                        nots += 1;
                        if outer + nots > MAX_NESTING {
                            return Some((start..i, TooBig::Deep));
                        }
                    }
                    b"when" => {
                        open.clear();
                        (outer, nots, prefix, joined) = (0, 0, true, 0);
                    }
                    b"and" | b"or" => {
                        (nots, prefix) = (0, true);
                        joined += 1;
                        if joined >= MAX_JOINED {
                            return Some((start..i, TooBig::Long));
                        }
                    }
                    _ => (nots, prefix) = (0, false),
                }
            }
            _ => (nots, prefix) = (0, false),
        }
    }
    None
}

fn parse_chunk(text: &str, offset: usize) -> Result<File, SyntaxError> {
    if let Some((at, why)) = too_deep(text) {
        let (message, label) = match why {
            TooBig::Deep => (
                format!(
                    "this condition nests more than {MAX_NESTING} deep (parentheses and `not`); \
                     split it into simpler conditions"
                ),
                "too deep",
            ),
            TooBig::Long => (
                format!(
                    "this condition joins more than {MAX_JOINED} comparisons with `and` and `or`; \
                     compare with a list (`field in [\"a\", \"b\"]`) or split it into simpler \
                     conditions"
                ),
                "too long",
            ),
        };
        return Err(SyntaxError {
            span: Span::new(at.start + offset, at.end + offset),
            message,
            label,
            expected: Vec::new(),
        });
    }
    // The usual shapes of webhooks, a sixth of the grammar's cost; the grammar for the rest
    // (sources, unknown clauses, every syntax error).
    if let Some(file) = super::quick::parse(text, offset) {
        return Ok(file);
    }
    parse_with_grammar(text, offset)
}

/// Where the hand-written parser gives a tree for `text`, whether it is the grammar's tree,
/// spans included; for the fuzzer, which holds the two parsers to each other on any text.
/// `Ok(false)`: the hand-written parser leaves the text to the grammar.
#[doc(hidden)]
pub fn quick_parse_agrees(text: &str) -> Result<bool, String> {
    let Some(quick) = super::quick::parse(text, 0) else {
        return Ok(false);
    };
    match parse_with_grammar(text, 0) {
        Ok(grammar) if grammar == quick => Ok(true),
        Ok(grammar) => Err(format!(
            "the trees differ:\nquick:   {quick:?}\ngrammar: {grammar:?}"
        )),
        Err(e) => Err(format!(
            "the quick parser read a text the grammar refuses: {}",
            e.message
        )),
    }
}

/// Parses with the grammar alone (what [`parse_chunk`] falls back on).
fn parse_with_grammar(text: &str, offset: usize) -> Result<File, SyntaxError> {
    let mut pairs =
        RuleParser::parse(Rule::file, text).map_err(|e| syntax_error(&e, text, offset))?;
    let file = pairs.next().expect("the file rule always yields one pair");
    let mut out = File::default();
    for pair in file.into_inner() {
        match pair.as_rule() {
            Rule::webhook => out.webhooks.push(parse_webhook(pair, offset)),
            Rule::source => out.sources.push(parse_source(pair, offset)),
            Rule::EOI => {}
            other => unreachable!("{other:?} in parse_chunk"),
        }
    }
    Ok(out)
}

fn span(pair: &Pair<Rule>, offset: usize) -> Span {
    let s = pair.as_span();
    Span::new(s.start() + offset, s.end() + offset)
}

fn parse_name(pair: Pair<Rule>, offset: usize) -> Spanned<String> {
    let item = pair.into_inner().next().expect("a name has one part");
    match item.as_rule() {
        Rule::string => {
            let lit = parse_string(item, offset);
            Spanned::new(lit.span, lit.value)
        }
        _ => Spanned::new(span(&item, offset), item.as_str().to_owned()),
    }
}

fn parse_webhook(pair: Pair<Rule>, offset: usize) -> WebhookDecl {
    let whole = span(&pair, offset);
    let mut name = None;
    let mut clauses = Vec::new();
    for inner in pair.into_inner() {
        match inner.as_rule() {
            Rule::kw_webhook | Rule::lbrace | Rule::rbrace => {}
            Rule::webhook_name => name = Some(parse_name(inner, offset)),
            _ => clauses.push(parse_clause(inner, offset)),
        }
    }
    WebhookDecl {
        span: whole,
        name: name.expect("the grammar requires a name"),
        clauses,
    }
}

fn parse_clause(pair: Pair<Rule>, offset: usize) -> Spanned<Clause> {
    let whole = span(&pair, offset);
    let rule = pair.as_rule();
    let mut inner = pair.into_inner();
    let clause = match rule {
        Rule::on_clause => Clause::On(
            inner
                .filter(|p| p.as_rule() == Rule::event_spec)
                .map(|p| parse_event_spec(p, offset))
                .collect(),
        ),
        Rule::when_clause => {
            let expr = inner
                .find(|p| p.as_rule() == Rule::expr)
                .expect("when has a condition");
            Clause::When(parse_expr(expr, offset))
        }
        Rule::request_clause => {
            let method = inner.next().expect("a method");
            let url = inner.next().expect("a URL");
            let m = if method.as_str() == "post" {
                Method::Post
            } else {
                Method::Get
            };
            Clause::Request {
                method: Spanned::new(span(&method, offset), m),
                url: parse_string(url, offset),
            }
        }
        Rule::header_clause => {
            let mut parts = inner.filter(|p| matches!(p.as_rule(), Rule::string | Rule::env_call));
            let name = parse_string(parts.next().expect("a header name"), offset);
            let value = parse_value_source(parts.next().expect("a header value"), offset);
            Clause::Header { name, value }
        }
        Rule::timeout_clause => {
            let d = inner
                .find(|p| p.as_rule() == Rule::duration)
                .expect("a duration");
            Clause::Timeout(Spanned::new(span(&d, offset), d.as_str().to_owned()))
        }
        Rule::retries_clause => {
            let n = inner
                .find(|p| p.as_rule() == Rule::integer)
                .expect("a count");
            Clause::Retries(Spanned::new(span(&n, offset), n.as_str().to_owned()))
        }
        Rule::secret_clause => {
            let v = inner
                .find(|p| matches!(p.as_rule(), Rule::string | Rule::env_call))
                .expect("a secret");
            Clause::Secret(parse_value_source(v, offset))
        }
        Rule::disabled_clause => Clause::Disabled,
        Rule::unknown_clause => {
            let word = inner.next().expect("an unknown clause starts with a word");
            Clause::Unknown {
                word: Spanned::new(span(&word, offset), word.as_str().to_owned()),
            }
        }
        other => unreachable!("{other:?} in parse_clause"),
    };
    Spanned::new(whole, clause)
}

fn parse_source(pair: Pair<Rule>, offset: usize) -> SourceDecl {
    let whole = span(&pair, offset);
    let mut name = None;
    let mut clauses = Vec::new();
    for inner in pair.into_inner() {
        match inner.as_rule() {
            Rule::kw_source | Rule::lbrace | Rule::rbrace => {}
            Rule::webhook_name => name = Some(parse_name(inner, offset)),
            _ => clauses.push(parse_source_clause(inner, offset)),
        }
    }
    SourceDecl {
        span: whole,
        name: name.expect("the grammar requires a name"),
        clauses,
    }
}

fn spanned_text(pair: &Pair<Rule>, offset: usize) -> Spanned<String> {
    Spanned::new(span(pair, offset), pair.as_str().to_owned())
}

fn parse_source_clause(pair: Pair<Rule>, offset: usize) -> Spanned<SourceClause> {
    let whole = span(&pair, offset);
    let rule = pair.as_rule();
    let inner: Vec<Pair<Rule>> = pair.into_inner().collect();
    let find = |r: Rule| inner.iter().find(|p| p.as_rule() == r).cloned();
    let clause = match rule {
        Rule::route_clause => SourceClause::Route {
            methods: inner
                .iter()
                .filter(|p| p.as_rule() == Rule::method)
                .map(|m| {
                    let method = if m.as_str() == "post" {
                        Method::Post
                    } else {
                        Method::Get
                    };
                    Spanned::new(span(m, offset), method)
                })
                .collect(),
            path: parse_string(find(Rule::string).expect("a path"), offset),
        },
        Rule::source_secret_clause => {
            let place = find(Rule::place).expect("a place");
            let mut values = inner
                .iter()
                .filter(|p| matches!(p.as_rule(), Rule::string | Rule::env_call));
            let name = parse_string(values.next().expect("a name").clone(), offset);
            let value = parse_value_source(values.next().expect("a value").clone(), offset);
            SourceClause::Secret {
                place: Spanned::new(span(&place, offset), parse_place(&place)),
                name,
                value,
            }
        }
        Rule::negative_clause => SourceClause::Negative {
            field: spanned_text(&find(Rule::field_word).expect("a field"), offset),
            event: parse_event_spec(find(Rule::event_spec).expect("an event"), offset),
        },
        Rule::mapping_clause => {
            let target = spanned_text(&find(Rule::target).expect("a target"), offset);
            let from = find(Rule::value_from).expect("a value");
            let map = find(Rule::value_map).map(|m| parse_value_map(m, offset));
            SourceClause::Mapping {
                target,
                from: parse_value_from(from, offset),
                map,
            }
        }
        Rule::unknown_source_clause => SourceClause::Unknown {
            word: spanned_text(&inner[0], offset),
        },
        other => unreachable!("{other:?} in parse_source_clause"),
    };
    Spanned::new(whole, clause)
}

fn parse_place(pair: &Pair<Rule>) -> Place {
    // The grammar admits only the place keywords.
    Place::from_keyword(pair.as_str()).unwrap_or(Place::Param)
}

fn parse_value_from(pair: Pair<Rule>, offset: usize) -> Spanned<ValueFrom> {
    let whole = span(&pair, offset);
    let inner: Vec<Pair<Rule>> = pair.into_inner().collect();
    let from = match inner[0].as_rule() {
        Rule::hash_call => ValueFrom::Hash(
            inner[0]
                .clone()
                .into_inner()
                .filter(|p| p.as_rule() == Rule::target)
                .map(|p| spanned_text(&p, offset))
                .collect(),
        ),
        Rule::place => ValueFrom::Request(
            parse_place(&inner[0]),
            parse_string(inner[1].clone(), offset),
        ),
        _ => ValueFrom::Literal(parse_literal(inner[0].clone(), offset).node),
    };
    Spanned::new(whole, from)
}

fn parse_value_map(pair: Pair<Rule>, offset: usize) -> Spanned<Vec<MapEntry>> {
    let whole = span(&pair, offset);
    let entries = pair
        .into_inner()
        .filter(|p| p.as_rule() == Rule::map_entry)
        .map(|entry| {
            let entry_span = span(&entry, offset);
            let mut value = None;
            let mut event = None;
            for part in entry.into_inner() {
                match part.as_rule() {
                    Rule::string => value = Some(parse_string(part, offset)),
                    Rule::event_spec => event = Some(parse_event_spec(part, offset)),
                    Rule::kw_else | Rule::arrow => {}
                    other => unreachable!("{other:?} in parse_value_map"),
                }
            }
            MapEntry {
                value,
                event: event.expect("an entry names an event"),
                span: entry_span,
            }
        })
        .collect();
    Spanned::new(whole, entries)
}

fn parse_event_spec(pair: Pair<Rule>, offset: usize) -> Spanned<EventSpec> {
    let whole = span(&pair, offset);
    let inner = pair
        .into_inner()
        .next()
        .expect("an event spec has one part");
    let spec = match inner.as_rule() {
        Rule::event_numbered => {
            let n = inner.into_inner().next().expect("a number after event");
            EventSpec::Numbered(n.as_str().to_owned())
        }
        Rule::event_name => EventSpec::Named(inner.as_str().to_owned()),
        other => unreachable!("{other:?} in parse_event_spec"),
    };
    Spanned::new(whole, spec)
}

fn parse_value_source(pair: Pair<Rule>, offset: usize) -> ValueSource {
    match pair.as_rule() {
        Rule::string => ValueSource::Literal(parse_string(pair, offset)),
        Rule::env_call => {
            let name = pair
                .into_inner()
                .find(|p| p.as_rule() == Rule::string)
                .expect("env takes a name");
            ValueSource::Env(parse_string(name, offset))
        }
        other => unreachable!("{other:?} in parse_value_source"),
    }
}

/// Decodes a string literal's escapes, remembering whether there were any.
fn parse_string(pair: Pair<Rule>, offset: usize) -> StringLit {
    let whole = span(&pair, offset);
    let raw = pair.into_inner().next().map(|p| p.as_str()).unwrap_or("");
    let (value, escaped) = escape::unescape(raw);
    StringLit {
        span: whole,
        value,
        escaped,
    }
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    // Lowest to highest: `or`, then `and`, then `not`.
    PrattParser::new()
        .op(PrattOp::infix(Rule::kw_or, Assoc::Left))
        .op(PrattOp::infix(Rule::kw_and, Assoc::Left))
        .op(PrattOp::prefix(Rule::kw_not))
});

fn parse_expr(pair: Pair<Rule>, offset: usize) -> Spanned<Expr> {
    let pairs = pair
        .into_inner()
        .filter(|p| !matches!(p.as_rule(), Rule::lparen | Rule::rparen));
    PRATT
        .map_primary(|primary| match primary.as_rule() {
            Rule::comparison => parse_comparison(primary, offset),
            Rule::expr => {
                // Keep the parentheses in the span, so explanations quote them.
                let mut inner = parse_expr(primary.clone(), offset);
                let s = span(&primary, offset);
                inner.span = Span::new(s.start.saturating_sub(1), s.end + 1);
                inner
            }
            other => unreachable!("{other:?} in parse_expr"),
        })
        .map_prefix(|op, rhs| {
            let s = span(&op, offset).to(rhs.span);
            Spanned::new(s, Expr::Not(Box::new(rhs)))
        })
        .map_infix(|lhs, op, rhs| {
            let s = lhs.span.to(rhs.span);
            let node = match op.as_rule() {
                Rule::kw_and => Expr::And(Box::new(lhs), Box::new(rhs)),
                Rule::kw_or => Expr::Or(Box::new(lhs), Box::new(rhs)),
                other => unreachable!("{other:?} as an infix operator"),
            };
            Spanned::new(s, node)
        })
        .parse(pairs)
}

fn parse_comparison(pair: Pair<Rule>, offset: usize) -> Spanned<Expr> {
    let whole = span(&pair, offset);
    let mut field = None;
    let mut op = None;
    let mut operand = None;
    for inner in pair.into_inner() {
        match inner.as_rule() {
            Rule::field_ref => field = Some(parse_field_ref(inner, offset)),
            Rule::operator => op = Some(parse_operator(inner, offset)),
            Rule::list | Rule::string | Rule::number | Rule::boolean => {
                operand = Some(parse_literal(inner, offset));
            }
            other => unreachable!("{other:?} in parse_comparison"),
        }
    }
    let comparison = Comparison {
        field: field.expect("a comparison starts with a field"),
        op,
        operand,
    };
    Spanned::new(whole, Expr::Compare(comparison))
}

fn parse_field_ref(pair: Pair<Rule>, offset: usize) -> FieldName {
    let whole = span(&pair, offset);
    let parts: Vec<Spanned<String>> = pair
        .into_inner()
        .map(|p| Spanned::new(span(&p, offset), p.as_str().to_owned()))
        .collect();
    let mut parts = parts.into_iter();
    let first = parts.next().expect("a field has a name");
    match parts.next() {
        Some(name) => FieldName {
            span: whole,
            attribution: Some(first),
            name,
        },
        None => FieldName {
            span: whole,
            attribution: None,
            name: first,
        },
    }
}

fn parse_operator(pair: Pair<Rule>, offset: usize) -> Spanned<Op> {
    Spanned::new(span(&pair, offset), operator_of(pair))
}

/// The operator an `operator` pair stands for (shared with the formatter).
pub(crate) fn operator_of(pair: Pair<Rule>) -> Op {
    let inner = pair
        .into_inner()
        .next()
        .expect("an operator has one alternative");
    match inner.as_rule() {
        Rule::op_equals => Op::Equals,
        Rule::op_not_equals => Op::NotEquals,
        Rule::op_contains => Op::Contains,
        Rule::op_not_contains => Op::NotContains,
        Rule::op_starts_with => Op::StartsWith,
        Rule::op_ends_with => Op::EndsWith,
        Rule::op_greater => Op::Greater,
        Rule::op_at_least => Op::AtLeast,
        Rule::op_less => Op::Less,
        Rule::op_at_most => Op::AtMost,
        Rule::op_in => Op::In,
        Rule::op_not_in => Op::NotIn,
        Rule::op_matches => Op::Matches,
        Rule::op_is_set => Op::IsSet,
        Rule::op_is_not_set => Op::IsNotSet,
        Rule::op_unknown => Op::Unknown(inner.as_str().to_owned()),
        other => unreachable!("{other:?} in operator_of"),
    }
}

fn parse_literal(pair: Pair<Rule>, offset: usize) -> Spanned<Literal> {
    let whole = span(&pair, offset);
    let literal = match pair.as_rule() {
        Rule::string => Literal::Str(parse_string(pair, offset)),
        Rule::number => {
            let text = pair.as_str();
            // The grammar only admits digits, so this parse cannot fail; stay total anyway.
            Literal::Number(text.parse().unwrap_or(f64::NAN), text.to_owned())
        }
        Rule::boolean => Literal::Bool(pair.as_str() == "true"),
        Rule::list => Literal::List(
            pair.into_inner()
                .filter(|p| !matches!(p.as_rule(), Rule::lbracket | Rule::rbracket | Rule::comma))
                .map(|p| parse_literal(p, offset))
                .collect(),
        ),
        other => unreachable!("{other:?} in parse_literal"),
    };
    Spanned::new(whole, literal)
}

/// What a person calls each grammar rule, for "expected ..." messages. Exhaustive on purpose:
/// a new rule does not compile until it has a phrase.
fn phrase(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "the end of the file",
        Rule::WHITESPACE | Rule::COMMENT | Rule::comment_text => "a space",
        Rule::file | Rule::webhook | Rule::kw_webhook => "`webhook`",
        Rule::source | Rule::kw_source => "`source`",
        Rule::webhook_name => "a name",
        Rule::source_clause
        | Rule::source_word
        | Rule::route_clause
        | Rule::source_secret_clause
        | Rule::negative_clause
        | Rule::mapping_clause
        | Rule::unknown_source_clause
        | Rule::kw_route
        | Rule::kw_negative => {
            "a source clause such as `route`, `secret` or `revenue = query \"payout\"`"
        }
        Rule::target | Rule::field_word => "a field such as `revenue` or `last.clickId`",
        Rule::value_from => "where the value comes from, such as `query \"payout\"`",
        Rule::place => "`query`, `form`, `json`, `header` or `param`",
        Rule::hash_call | Rule::kw_hash => "`hash(...)`",
        Rule::value_map => "a value map such as `{ \"sale\" -> conversion }`",
        Rule::map_entry | Rule::kw_else => "`\"value\" -> event` or `else -> event`",
        Rule::arrow => "`->`",
        Rule::clause
        | Rule::clause_word
        | Rule::on_clause
        | Rule::when_clause
        | Rule::request_clause
        | Rule::header_clause
        | Rule::timeout_clause
        | Rule::retries_clause
        | Rule::secret_clause
        | Rule::disabled_clause
        | Rule::unknown_clause
        | Rule::kw_on
        | Rule::kw_when
        | Rule::method
        | Rule::kw_header
        | Rule::kw_timeout
        | Rule::kw_retries
        | Rule::kw_secret
        | Rule::kw_disabled => "a clause such as `on`, `when` or `post`",
        Rule::event_spec | Rule::event_numbered | Rule::event_name => {
            "an event such as `conversion`, `refund` or `event 3`"
        }
        Rule::duration => "a duration such as `5s` or `500ms`",
        Rule::env_call | Rule::kw_env => "`env(\"NAME\")`",
        Rule::expr | Rule::primary | Rule::comparison | Rule::field_ref => {
            "a condition such as `revenue > 50`"
        }
        Rule::infix | Rule::kw_and => "`and`",
        Rule::kw_or => "`or`",
        Rule::prefix | Rule::kw_not => "`not`",
        Rule::operator
        | Rule::op_equals
        | Rule::op_not_equals
        | Rule::op_contains
        | Rule::op_not_contains
        | Rule::op_starts_with
        | Rule::op_ends_with
        | Rule::op_greater
        | Rule::op_at_least
        | Rule::op_less
        | Rule::op_at_most
        | Rule::op_in
        | Rule::op_not_in
        | Rule::op_matches
        | Rule::op_is_set
        | Rule::op_is_not_set
        | Rule::op_unknown
        | Rule::kw_equals
        | Rule::kw_contains
        | Rule::kw_starts
        | Rule::kw_ends
        | Rule::kw_with
        | Rule::kw_greater
        | Rule::kw_less
        | Rule::kw_than
        | Rule::kw_at
        | Rule::kw_least
        | Rule::kw_most
        | Rule::kw_in
        | Rule::kw_matches
        | Rule::kw_is
        | Rule::kw_set => "an operator such as `equals` or `>`",
        Rule::operand | Rule::literal => "a value",
        Rule::list | Rule::lbracket => "a list such as `[\"a\", \"b\"]`",
        Rule::string | Rule::string_inner => "a quoted string",
        Rule::number => "a number",
        Rule::integer => "a whole number",
        Rule::boolean => "`true` or `false`",
        Rule::ident | Rule::ident_char | Rule::keyword => "a name",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::rbracket => "`]`",
        Rule::comma => "`,`",
        Rule::assign => "`=`",
    }
}

/// What stands at `pos`: a word, a quoted string's start, a symbol, or the end of the file.
fn found_at(text: &str, pos: usize) -> (Span, String) {
    let rest = &text[pos..];
    let Some(c) = rest.chars().next() else {
        return (Span::new(pos, pos), "the end of the file".to_owned());
    };
    let len = if c.is_alphanumeric() || c == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len())
    } else {
        c.len_utf8()
    };
    let word = &rest[..len];
    let what = match c {
        '\n' | '\r' => "the end of the line".to_owned(),
        '"' => "a quoted string".to_owned(),
        _ => format!("`{word}`"),
    };
    (Span::new(pos, pos + len), what)
}

fn syntax_error(err: &pest::error::Error<Rule>, text: &str, offset: usize) -> SyntaxError {
    let pos = match err.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&'static str> = Vec::new();
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for rule in positives {
            let p = phrase(*rule);
            if !expected.contains(&p) && p != "a space" {
                expected.push(p);
            }
        }
    }
    if let Some(len) = unclosed_string_len(&text[pos..]) {
        return SyntaxError {
            span: Span::new(pos + offset, pos + len + offset),
            message: "this quoted string is never closed; end it with `\"` on the same line"
                .to_owned(),
            label: "not closed",
            expected: vec!["a quoted string"],
        };
    }
    let (mut found_span, found) = found_at(text, pos);
    // Right after an operator only a value makes sense; the other alternatives pest lists there
    // (a clause, `and`, `}`: the field alone could have been a whole condition) are noise.
    let values: Vec<&'static str> = expected
        .iter()
        .copied()
        .filter(|p| VALUE_PHRASES.contains(p))
        .collect();
    if !values.is_empty()
        && let Some(op) = operator_before(text, pos)
    {
        let list = match values.as_slice() {
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
            [] => String::new(),
        };
        return SyntaxError {
            span: Span::new(found_span.start + offset, found_span.end + offset),
            message: format!("expected a value after `{op}`, such as {list}; found {found}"),
            label: "a value goes here",
            expected: values,
        };
    }
    let message = match expected.as_slice() {
        [] => format!("unexpected {found}"),
        [one] => format!("expected {one}, found {found}"),
        [init @ .., last] => format!("expected {} or {last}, found {found}", init.join(", ")),
    };
    let mut label = "here";
    // At the end of the file there is nothing to point at; the unclosed `{` says more.
    if pos == text.len()
        && expected.contains(&"`}`")
        && let Some(open) = unclosed_brace(text)
    {
        found_span = Span::new(open, open + 1);
        label = "this `{` is never closed";
    }
    SyntaxError {
        span: Span::new(found_span.start + offset, found_span.end + offset),
        message,
        label,
        expected,
    }
}

/// The phrases of [`phrase`] that name a value (what follows an operator).
const VALUE_PHRASES: &[&str] = &[
    "a value",
    "a quoted string",
    "a number",
    "`true` or `false`",
    "a list such as `[\"a\", \"b\"]`",
];

/// The operator that ends the text before `pos` (spaces skipped), as written.
fn operator_before(text: &str, pos: usize) -> Option<&str> {
    let before = text[..pos].trim_end();
    if let Some(sym) = ["==", "!=", ">=", "<=", ">", "<"]
        .into_iter()
        .find(|s| before.ends_with(s))
    {
        return Some(sym);
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let word_at = |end: usize| {
        let start = text[..end]
            .rfind(|c: char| !is_word(c))
            .map_or(0, |i| i + 1);
        (start, &text[start..end])
    };
    let (start, last) = word_at(before.len());
    match last {
        "equals" | "contains" | "matches" | "in" => Some(last),
        // Two-word operators: `starts with`, `greater than`, `at least`, ...
        "with" | "than" | "least" | "most" => {
            let prev_end = text[..start].trim_end().len();
            let (prev_start, _) = word_at(prev_end);
            Some(&text[prev_start..before.len()])
        }
        _ => None,
    }
}

/// When `rest` starts with a `"` that is not closed on its line: the length up to the line's end.
fn unclosed_string_len(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {
                chars.next();
            }
            '\n' => return Some(rest[..i].trim_end_matches('\r').len()),
            _ => {}
        }
    }
    Some(rest.len())
}

/// The byte offset of the last `{` never closed, outside strings and comments.
fn unclosed_brace(text: &str) -> Option<usize> {
    let mut open = Vec::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => open.push(i),
            '}' => {
                open.pop();
            }
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' | '\n' => break,
                        '\\' => {
                            chars.next();
                        }
                        _ => {}
                    }
                }
            }
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    open.pop()
}

/// The generated rule set of `examples/big_rules`, for the tests.
#[cfg(test)]
#[path = "../../examples/big_rules/text.rs"]
mod big_rules;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> File {
        let (file, errors) = parse_file(text);
        assert!(errors.is_empty(), "{errors:#?}");
        file
    }

    fn when_of(text: &str) -> Spanned<Expr> {
        let src = format!("webhook w {{ when {text} }}");
        let file = parse_ok(&src);
        match &file.webhooks[0].clauses[0].node {
            Clause::When(e) => e.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_issue_examples() {
        let file = parse_ok(include_str!("../../examples/issue-examples.whc"));
        assert!(file.webhooks.len() >= 3);
    }

    #[test]
    fn precedence_not_and_or() {
        let e = when_of("isFromTikTokAds and (qualityScore >= 70 or last.referrer is not set)");
        assert!(matches!(e.node, Expr::And(..)));
        let e = when_of("a == 1 or b == 2 and c == 3");
        let Expr::Or(_, rhs) = e.node else {
            panic!("or binds loosest")
        };
        assert!(matches!(rhs.node, Expr::And(..)));
        let e = when_of("not a == 1 and b == 2");
        let Expr::And(lhs, _) = e.node else {
            panic!("not binds tightest")
        };
        assert!(matches!(lhs.node, Expr::Not(..)));
    }

    #[test]
    fn operators_in_words_and_symbols() {
        for (text, op) in [
            ("x equals 1", Op::Equals),
            ("x == 1", Op::Equals),
            ("x not equals 1", Op::NotEquals),
            ("x != 1", Op::NotEquals),
            ("x not contains \"a\"", Op::NotContains),
            ("x starts with \"a\"", Op::StartsWith),
            ("x ends   with \"a\"", Op::EndsWith),
            ("x greater than 1", Op::Greater),
            ("x > 1", Op::Greater),
            ("x at least 1", Op::AtLeast),
            ("x >= 1", Op::AtLeast),
            ("x less than 1", Op::Less),
            ("x < 1", Op::Less),
            ("x at most 1", Op::AtMost),
            ("x <= 1", Op::AtMost),
            ("x in [1, 2]", Op::In),
            ("x not in [1]", Op::NotIn),
            ("x matches \"a\"", Op::Matches),
            ("x is set", Op::IsSet),
            ("x is not set", Op::IsNotSet),
            ("x bigger 1", Op::Unknown("bigger".into())),
        ] {
            let Expr::Compare(c) = when_of(text).node else {
                panic!("{text}")
            };
            assert_eq!(c.op.unwrap().node, op, "{text}");
        }
    }

    #[test]
    fn string_escapes_and_spans() {
        let Expr::Compare(c) = when_of(r#"x == "a\"b""#).node else {
            panic!()
        };
        let Some(Spanned {
            node: Literal::Str(s),
            ..
        }) = c.operand
        else {
            panic!()
        };
        assert_eq!(s.value, "a\"b");
        assert!(s.escaped);
    }

    #[test]
    fn syntax_errors_are_worded_for_people() {
        let (_, errors) = parse_file("webhook w {\n  when revenue > 5 and\n}\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("expected"),
            "{}",
            errors[0].message
        );
        assert!(!errors[0].message.contains("kw_"), "{}", errors[0].message);
    }

    #[test]
    fn after_an_operator_only_values_are_expected() {
        for (condition, op) in [
            ("revenue > > 50", ">"),
            ("revenue >= ,", ">="),
            ("revenue greater than )", "greater than"),
            ("utm_source starts with ]", "starts with"),
        ] {
            let (_, errors) = parse_file(&format!(
                "webhook w {{\n  on conversion\n  when {condition}\n  post \"https://x.test/\"\n}}\n"
            ));
            assert_eq!(errors.len(), 1, "{condition}: {errors:#?}");
            let message = &errors[0].message;
            assert!(
                message.starts_with(&format!("expected a value after `{op}`")),
                "{condition}: {message}"
            );
            assert!(!message.contains("clause"), "{condition}: {message}");
        }
        assert_eq!(
            operator_before("when revenue at least  ", 23),
            Some("at least")
        );
        assert_eq!(operator_before("when revenue", 12), None);
    }

    #[test]
    fn keeps_going_after_a_broken_webhook() {
        let text = "webhook a { on conversion post \"https://x\" }\nwebhook b { when ( }\nwebhook c { on refund post \"https://y\" }\nwebhook d { timeout }\n";
        let (file, errors) = parse_file(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let names: Vec<_> = file.webhooks.iter().map(|w| w.name.node.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    /// Every rule text in the repository (fixtures, example and shipped rules, the fuzz
    /// corpus), with its name.
    fn rule_texts() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, any: bool, out: &mut Vec<(String, String)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            paths.sort();
            for path in paths {
                if path.is_dir() {
                    walk(&path, any, out);
                } else if any || path.extension().is_some_and(|e| e == "whc") {
                    let bytes = std::fs::read(&path).expect("readable");
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = Vec::new();
        for dir in ["tests", "rules", "examples", "docs"] {
            walk(&root.join(dir), false, &mut texts);
        }
        walk(&root.join("fuzz/corpus/rules_roundtrip"), true, &mut texts);
        texts.push(("big_rules".into(), big_rules::webhooks(0..2000)));
        texts
    }

    /// The same text written differently: other spaces, comments, line breaks.
    fn variants(text: &str) -> Vec<String> {
        vec![
            text.to_owned(),
            text.replace(' ', "  "),
            text.replace(' ', "\t"),
            text.replace('\n', "\r\n"),
            text.replace('\n', " # note\n"),
            text.replace('\n', "\n\n# note\n"),
            text.replace(", ", ","),
            text.replace(" ", "\n"),
        ]
    }

    /// Where the quick parser gives a tree, it is the grammar's tree, spans and all: on every
    /// rule text in the repository, written in several ways, whole and in the chunks a
    /// broken file is parsed in.
    #[test]
    fn the_quick_parser_gives_the_grammars_tree() {
        let (mut quick, mut all) = (0, 0);
        for (name, text) in rule_texts() {
            for text in variants(&text) {
                let starts = webhook_starts(&text);
                let whole = std::iter::once(0..text.len());
                let chunks = whole.chain(starts.windows(2).map(|w| w[0]..w[1]));
                for chunk in chunks {
                    let part = &text[chunk.clone()];
                    all += 1;
                    let Some(tree) = super::super::quick::parse(part, chunk.start) else {
                        continue;
                    };
                    quick += 1;
                    match parse_with_grammar(part, chunk.start) {
                        Ok(grammar) => {
                            for (q, g) in tree.webhooks.iter().zip(&grammar.webhooks) {
                                assert_eq!(q, g, "{name} {chunk:?}:\n{part}");
                            }
                            assert_eq!(tree, grammar, "{name} {chunk:?}");
                        }
                        Err(e) => panic!("{name} {chunk:?}: the grammar refuses it: {e:?}\n{part}"),
                    }
                }
            }
        }
        assert!(
            quick * 2 > all,
            "the quick parser took {quick} of {all} texts"
        );
    }

    /// Where the quick parser gives a tree for a random webhook, it is the grammar's tree:
    /// thousands of webhooks of random clauses and conditions, the words joined by random
    /// spaces, line breaks and comments (none at times), one in four with a word swapped for
    /// a random one (fixed seed, so a failure repeats).
    #[test]
    fn the_quick_parser_gives_the_grammars_tree_on_random_webhooks() {
        const WORDS: &[&str] = &[
            "on", "when", "post", "header", "and", "or", "not", "equals", "==", "!=", ">", "=",
            "greater", "at", "is", "set", "in", "true", "env", "event", "event3", "a.b.c", "(",
            ")", "[", "]", ",", "{", "}", "\"\"", "-2", "1.", "7s", "source", "webhook", "é",
        ];
        const FIELDS: &[&str] = &["revenue", "first.utm_source", "last.country", "isX", "x-y"];
        const OPS: &[&str] = &[
            "equals",
            "==",
            "not equals",
            "!=",
            "contains",
            "not contains",
            "starts with",
            "ends with",
            "greater than",
            ">",
            "at least",
            ">=",
            "less than",
            "<",
            "at most",
            "<=",
            "in",
            "not in",
            "matches",
            "is set",
            "is not set",
        ];
        const VALUES: &[&str] = &[
            "\"a\"",
            "\"b\\\"c\"",
            "\"\"",
            "5",
            "-2",
            "1.5",
            "true",
            "false",
            "[\"a\", \"b\"]",
            "[1, 2,]",
            "[]",
        ];
        fn condition(rng: &mut fastrand::Rng, depth: usize, out: &mut Vec<String>) {
            match rng.u8(..6) {
                0 if depth < 3 => {
                    out.push("not".into());
                    condition(rng, depth + 1, out);
                }
                1 if depth < 3 => {
                    out.push("(".into());
                    condition(rng, depth + 1, out);
                    out.push(")".into());
                }
                2 if depth < 3 => {
                    condition(rng, depth + 1, out);
                    out.push(if rng.bool() { "and" } else { "or" }.into());
                    condition(rng, depth + 1, out);
                }
                _ => {
                    out.push(FIELDS[rng.usize(..FIELDS.len())].into());
                    if rng.u8(..5) > 0 {
                        out.extend(OPS[rng.usize(..OPS.len())].split(' ').map(String::from));
                        if rng.u8(..5) > 0 {
                            out.push(VALUES[rng.usize(..VALUES.len())].into());
                        }
                    }
                }
            }
        }
        let mut rng = fastrand::Rng::with_seed(10);
        let (mut quick, mut all) = (0, 0);
        for _ in 0..20_000 {
            let mut words: Vec<String> = vec!["webhook".into(), "w".into(), "{".into()];
            for _ in 0..rng.usize(1..6) {
                match rng.u8(..9) {
                    0 => {
                        words.push("on".into());
                        for i in 0..rng.usize(1..4) {
                            if i > 0 {
                                words.push(",".into());
                            }
                            let events = ["conversion", "refund", "event 3", "event3", "event"];
                            words.push(events[rng.usize(..events.len())].into());
                        }
                    }
                    1 => words.extend(["post", "\"https://x.test/[revenue]\""].map(String::from)),
                    2 => words.extend(
                        ["header", "\"X-A\"", "=", "env", "(", "\"V\"", ")"].map(String::from),
                    ),
                    3 => words.extend(["header", "\"X-A\"", "=", "\"v\""].map(String::from)),
                    4 => words.extend(["timeout", "500ms", "retries", "3"].map(String::from)),
                    5 => words.extend(["secret", "env(\"S\")", "disabled"].map(String::from)),
                    _ => {
                        words.push("when".into());
                        condition(&mut rng, 0, &mut words);
                    }
                }
            }
            words.push("}".into());
            if rng.u8(..4) == 0 {
                let at = rng.usize(..words.len());
                words[at] = WORDS[rng.usize(..WORDS.len())].into();
            }
            const GAPS: &[&str] = &[
                " ",
                " ",
                " ",
                "  ",
                "\n",
                "\n    ",
                "\t",
                " # note\n",
                "\r\n",
                "",
            ];
            let mut text = String::new();
            for word in &words {
                text.push_str(word);
                text.push_str(GAPS[rng.usize(..GAPS.len())]);
            }
            all += 1;
            if let Some(tree) = super::super::quick::parse(&text, 3) {
                quick += 1;
                assert_eq!(Ok(tree), parse_with_grammar(&text, 3), "{text:?}");
            }
        }
        assert!(quick * 4 > all, "the quick parser took {quick} of {all}");
    }

    /// A file is cut at the first block that starts a piece's size or more after the last cut.
    #[test]
    fn pieces_are_cut_at_the_first_block_a_pieces_size_on() {
        for (name, text) in rule_texts() {
            let mut expected = Vec::new();
            let mut start = 0;
            for cut in webhook_starts(&text) {
                if cut - start >= PIECE_BYTES {
                    expected.push(start..cut);
                    start = cut;
                }
            }
            expected.push(start..text.len());
            assert_eq!(pieces(&text), expected, "{name}");
        }
        let text = big_rules::webhooks(0..1000);
        assert!(pieces(&text).len() > 5);
    }

    /// The generated 10,000-webhook set, every clause of it, is read by the quick parser.
    #[test]
    fn the_quick_parser_reads_the_generated_rule_set() {
        let text = big_rules::webhooks(0..1000);
        let file = super::super::quick::parse(&text, 0).expect("the quick parser reads it");
        assert_eq!(file.webhooks.len(), 1000);
    }
}
