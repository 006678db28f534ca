//! A hand-written parser for the usual shapes of webhook blocks, a sixth of the grammar's
//! cost; whatever it does not fully recognise is left to the grammar (see [`parse`]).
//!
//! It reads the same language as `grammar/rules.pest` for what it accepts, and yields the
//! syntax tree the grammar's parse yields, spans included (the grammar's quirks too: a
//! comparison without a value, a condition without `and`/`or` and an `on` with one event end
//! after the spaces and comments that follow them). Anything else (a `source` block, an unknown clause or operator, a syntax
//! error, a character it does not expect) makes it give up on the whole text, so every
//! syntax error is still found and worded by the grammar. `lang::parse`'s tests hold it to
//! the grammar's tree on every rule text in the repository and on random webhooks.

use memchr::{memchr, memchr3};

use super::ast::{
    Clause, Comparison, EventSpec, Expr, FieldName, File, Literal, Method, Op, Span, Spanned,
    StringLit, ValueSource, WebhookDecl,
};
use super::escape;

/// The syntax tree of `text`, spans shifted by `offset`, when every block in it is a webhook
/// written in the shapes this parser knows; `None` when the grammar must parse it.
pub fn parse(text: &str, offset: usize) -> Option<File> {
    let mut p = Parser {
        text,
        b: text.as_bytes(),
        pos: 0,
        offset,
    };
    // About one webhook per 300 bytes: one allocation for the list, not one per doubling.
    let mut file = File {
        webhooks: Vec::with_capacity(text.len() / 300 + 1),
        sources: Vec::new(),
    };
    loop {
        p.skip();
        if p.pos == p.b.len() {
            return Some(file);
        }
        if p.word() != b"webhook" {
            return None;
        }
        file.webhooks.push(p.webhook()?);
    }
}

/// A character of a word: what the grammar's `ident_char` is.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The words a field or an unknown operator cannot be (the grammar's `keyword`).
const KEYWORDS: [&[u8]; 31] = [
    b"and",
    b"at",
    b"contains",
    b"disabled",
    b"equals",
    b"ends",
    b"env",
    b"false",
    b"get",
    b"greater",
    b"header",
    b"in",
    b"is",
    b"least",
    b"less",
    b"matches",
    b"most",
    b"not",
    b"on",
    b"or",
    b"post",
    b"retries",
    b"secret",
    b"set",
    b"starts",
    b"timeout",
    b"than",
    b"true",
    b"webhook",
    b"when",
    b"with",
];

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    offset: usize,
}

impl<'a> Parser<'a> {
    /// Skips spaces, line breaks and comments (the grammar's implicit whitespace).
    fn skip(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    self.pos =
                        memchr(b'\n', &self.b[self.pos..]).map_or(self.b.len(), |n| self.pos + n)
                }
                _ => return,
            }
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(start + self.offset, end + self.offset)
    }

    fn text(&self, start: usize, end: usize) -> Spanned<String> {
        Spanned::new(self.span(start, end), self.text[start..end].to_owned())
    }

    /// The word at the position (possibly empty), not consumed.
    fn word(&self) -> &'a [u8] {
        let end = self.b[self.pos..]
            .iter()
            .position(|&c| !is_word(c))
            .map_or(self.b.len(), |n| self.pos + n);
        &self.b[self.pos..end]
    }

    /// Consumes the word at the position if it is `word`.
    fn keyword(&mut self, word: &[u8]) -> bool {
        let found = self.word() == word;
        if found {
            self.pos += word.len();
        }
        found
    }

    /// The next word after spaces and comments, consumed with them if it is `word`.
    fn then_keyword(&mut self, word: &[u8]) -> bool {
        let save = self.pos;
        self.skip();
        let found = self.keyword(word);
        if !found {
            self.pos = save;
        }
        found
    }

    /// Consumes `c` if it is the next byte.
    fn eat(&mut self, c: u8) -> bool {
        let found = self.b.get(self.pos) == Some(&c);
        if found {
            self.pos += 1;
        }
        found
    }

    /// The grammar's `ident`: a word that starts with a letter or `_`; its bounds.
    fn ident(&mut self) -> Option<(usize, usize)> {
        let start = self.pos;
        match self.b.get(start) {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
            _ => return None,
        }
        self.pos += self.word().len();
        Some((start, self.pos))
    }

    /// `webhook NAME { CLAUSE* }`, at the word `webhook`.
    fn webhook(&mut self) -> Option<WebhookDecl> {
        let start = self.pos;
        self.pos += b"webhook".len();
        self.skip();
        let name = if self.b.get(self.pos) == Some(&b'"') {
            let lit = self.string()?;
            Spanned::new(lit.span, lit.value)
        } else {
            let (s, e) = self.ident()?;
            self.text(s, e)
        };
        self.skip();
        if !self.eat(b'{') {
            return None;
        }
        let mut clauses = Vec::with_capacity(8); // most webhooks have a handful of clauses
        loop {
            self.skip();
            if self.eat(b'}') {
                break;
            }
            clauses.push(self.clause()?);
        }
        Some(WebhookDecl {
            span: self.span(start, self.pos),
            name,
            clauses,
        })
    }

    /// One clause of a webhook, by its first word; `None` for an unknown one.
    fn clause(&mut self) -> Option<Spanned<Clause>> {
        let start = self.pos;
        let word = self.word();
        self.pos += word.len();
        let clause = match word {
            b"when" => {
                self.skip();
                Clause::When(self.condition()?.0)
            }
            b"on" => {
                self.skip();
                let mut events = vec![self.event()?];
                loop {
                    let save = self.pos;
                    self.skip();
                    if !self.eat(b',') {
                        self.pos = save;
                        break;
                    }
                    self.skip();
                    events.push(self.event()?);
                }
                if events.len() == 1 {
                    // The grammar's `(comma ~ event_spec)*` matched nothing: the spaces and
                    // comments before it stay in the clause.
                    self.skip();
                }
                Clause::On(events)
            }
            b"post" | b"get" => {
                let method = if word == b"post" {
                    Method::Post
                } else {
                    Method::Get
                };
                let method = Spanned::new(self.span(start, self.pos), method);
                self.skip();
                Clause::Request {
                    method,
                    url: self.string()?,
                }
            }
            b"header" => {
                self.skip();
                let name = self.string()?;
                self.skip();
                if !self.eat(b'=') {
                    return None;
                }
                self.skip();
                Clause::Header {
                    name,
                    value: self.value_source()?,
                }
            }
            b"timeout" => {
                self.skip();
                let digits = self.pos;
                self.pos += self.b[digits..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if self.pos == digits {
                    return None;
                }
                self.pos += self.b[self.pos..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
                Clause::Timeout(self.text(digits, self.pos))
            }
            b"retries" => {
                self.skip();
                let (s, e) = self.integer()?;
                Clause::Retries(self.text(s, e))
            }
            b"secret" => {
                self.skip();
                Clause::Secret(self.value_source()?)
            }
            b"disabled" => Clause::Disabled,
            _ => return None,
        };
        Some(Spanned::new(self.span(start, self.pos), clause))
    }

    /// The grammar's `integer`: digits not followed by a word character.
    fn integer(&mut self) -> Option<(usize, usize)> {
        let start = self.pos;
        let n = self.b[start..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 || self.b.get(start + n).is_some_and(|&c| is_word(c)) {
            return None;
        }
        self.pos += n;
        Some((start, self.pos))
    }

    /// `conversion`, `refund`, `event 3`, or any other name for the checker to judge.
    fn event(&mut self) -> Option<Spanned<EventSpec>> {
        let start = self.pos;
        if self.b[start..].starts_with(b"event") {
            self.pos += b"event".len();
            while matches!(self.b.get(self.pos), Some(b' ' | b'\t')) {
                self.pos += 1;
            }
            if let Some((s, e)) = self.integer() {
                let number = self.text[s..e].to_owned();
                return Some(Spanned::new(
                    self.span(start, e),
                    EventSpec::Numbered(number),
                ));
            }
            self.pos = start;
        }
        let (s, e) = self.ident()?;
        Some(Spanned::new(
            self.span(s, e),
            EventSpec::Named(self.text[s..e].to_owned()),
        ))
    }

    /// `env("NAME")` or a string.
    fn value_source(&mut self) -> Option<ValueSource> {
        if self.keyword(b"env") {
            self.skip();
            if !self.eat(b'(') {
                return None;
            }
            self.skip();
            let name = self.string()?;
            self.skip();
            if !self.eat(b')') {
                return None;
            }
            Some(ValueSource::Env(name))
        } else {
            Some(ValueSource::Literal(self.string()?))
        }
    }

    /// A double-quoted string, its escapes decoded as the grammar's parse decodes them.
    fn string(&mut self) -> Option<StringLit> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        let mut i = self.pos;
        loop {
            i += memchr3(b'"', b'\\', b'\n', &self.b[i..])?;
            match self.b[i] {
                b'"' => break,
                b'\\' if i + 1 < self.b.len() => i += 2, // any character after it
                _ => return None,                        // a line break, or `\` at the end
            }
        }
        let (value, escaped) = escape::unescape(&self.text[start + 1..i]);
        self.pos = i + 1;
        Some(StringLit {
            span: self.span(start, self.pos),
            value,
            escaped,
        })
    }

    /// A condition (the grammar's `expr`), `or` binding loosest, then `and`, then `not`; with
    /// where the grammar's `expr` pair starts and ends.
    fn condition(&mut self) -> Option<(Spanned<Expr>, usize, usize)> {
        let start = self.pos;
        let (mut lhs, mut joined) = self.conjunction()?;
        while self.then_keyword(b"or") {
            self.skip();
            let rhs = self.conjunction()?.0;
            lhs = Spanned::new(
                lhs.span.to(rhs.span),
                Expr::Or(Box::new(lhs), Box::new(rhs)),
            );
            joined = true;
        }
        if !joined {
            // The grammar's `(infix ~ prefix* ~ primary)*` matched nothing: the spaces and
            // comments before it stay in the condition.
            self.skip();
        }
        Some((lhs, start, self.pos))
    }

    /// Conditions joined by `and`; whether there was more than one.
    fn conjunction(&mut self) -> Option<(Spanned<Expr>, bool)> {
        let mut lhs = self.negation()?;
        let mut joined = false;
        while self.then_keyword(b"and") {
            self.skip();
            let rhs = self.negation()?;
            lhs = Spanned::new(
                lhs.span.to(rhs.span),
                Expr::And(Box::new(lhs), Box::new(rhs)),
            );
            joined = true;
        }
        Some((lhs, joined))
    }

    fn negation(&mut self) -> Option<Spanned<Expr>> {
        let start = self.pos;
        if self.keyword(b"not") {
            self.skip();
            let rhs = self.negation()?;
            return Some(Spanned::new(
                self.span(start, start).to(rhs.span),
                Expr::Not(Box::new(rhs)),
            ));
        }
        if self.eat(b'(') {
            self.skip();
            let (mut inner, s, e) = self.condition()?;
            if !self.eat(b')') {
                return None;
            }
            // Keep the parentheses in the span, as the grammar's parse does.
            inner.span = self.span(s - 1, e + 1);
            return Some(inner);
        }
        self.comparison()
    }

    /// `FIELD`, `FIELD OPERATOR`, `FIELD OPERATOR VALUE`.
    fn comparison(&mut self) -> Option<Spanned<Expr>> {
        let start = self.pos;
        let (s, e) = self.ident()?;
        if KEYWORDS.contains(&&self.b[s..e]) {
            return None;
        }
        let field = if self.eat(b'.') {
            let (s2, e2) = self.ident()?;
            FieldName {
                span: self.span(s, e2),
                attribution: Some(self.text(s, e)),
                name: self.text(s2, e2),
            }
        } else {
            FieldName {
                span: self.span(s, e),
                attribution: None,
                name: self.text(s, e),
            }
        };
        if self.b.get(self.pos) == Some(&b'.') {
            return None; // `a.b.c`
        }
        self.skip();
        let Some(op) = self.operator()? else {
            // A bare flag ends after the spaces and comments that follow it.
            let comparison = Comparison {
                field,
                op: None,
                operand: None,
            };
            return Some(Spanned::new(
                self.span(start, self.pos),
                Expr::Compare(comparison),
            ));
        };
        self.skip();
        let operand = self.operand()?;
        let comparison = Comparison {
            field,
            op: Some(op),
            operand,
        };
        Some(Spanned::new(
            self.span(start, self.pos),
            Expr::Compare(comparison),
        ))
    }

    /// The operator at the position: `Some(None)` where the grammar finds none (a bare flag),
    /// `None` for what this parser leaves to the grammar (an unknown operator).
    fn operator(&mut self) -> Option<Option<Spanned<Op>>> {
        let start = self.pos;
        let symbols = self.b[start..]
            .iter()
            .take_while(|c| matches!(c, b'=' | b'!' | b'<' | b'>' | b'~'))
            .count();
        let op = if symbols > 0 {
            let op = match &self.b[start..start + symbols] {
                b"==" => Op::Equals,
                b"!=" => Op::NotEquals,
                b">" => Op::Greater,
                b">=" => Op::AtLeast,
                b"<" => Op::Less,
                b"<=" => Op::AtMost,
                _ => return None,
            };
            self.pos += symbols;
            op
        } else {
            let word = self.word();
            let single = match word {
                b"equals" => Some(Op::Equals),
                b"in" => Some(Op::In),
                b"matches" => Some(Op::Matches),
                b"contains" => Some(Op::Contains),
                b"greater" | b"less" | b"starts" | b"ends" | b"at" | b"not" | b"is" => None,
                // `and`, `or`, the next clause's word, `)`, `}`: no operator.
                _ if word.is_empty() || KEYWORDS.contains(&word) => return Some(None),
                _ => return None, // an unknown operator
            };
            self.pos += word.len();
            match (single, word) {
                (Some(op), _) => op,
                (None, b"greater") if self.then_keyword(b"than") => Op::Greater,
                (None, b"less") if self.then_keyword(b"than") => Op::Less,
                (None, b"starts") if self.then_keyword(b"with") => Op::StartsWith,
                (None, b"ends") if self.then_keyword(b"with") => Op::EndsWith,
                (None, b"at") if self.then_keyword(b"least") => Op::AtLeast,
                (None, b"at") if self.then_keyword(b"most") => Op::AtMost,
                (None, b"not") if self.then_keyword(b"equals") => Op::NotEquals,
                (None, b"not") if self.then_keyword(b"contains") => Op::NotContains,
                (None, b"not") if self.then_keyword(b"in") => Op::NotIn,
                (None, b"is") if self.then_keyword(b"set") => Op::IsSet,
                (None, b"is") if self.then_keyword(b"not") && self.then_keyword(b"set") => {
                    Op::IsNotSet
                }
                _ => return None,
            }
        };
        Some(Some(Spanned::new(self.span(start, self.pos), op)))
    }

    /// The value after an operator: `Some(None)` when there is none.
    fn operand(&mut self) -> Option<Option<Spanned<Literal>>> {
        if self.b.get(self.pos) != Some(&b'[') {
            return self.literal();
        }
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip();
        if let Some(first) = self.literal()? {
            items.push(first);
            loop {
                let save = self.pos;
                self.skip();
                if !self.eat(b',') {
                    self.pos = save;
                    break;
                }
                self.skip();
                match self.literal()? {
                    Some(item) => items.push(item),
                    None => break, // a trailing comma
                }
            }
        }
        self.skip();
        if !self.eat(b']') {
            return None;
        }
        Some(Some(Spanned::new(
            self.span(start, self.pos),
            Literal::List(items),
        )))
    }

    /// A string, number or boolean: `Some(None)` when none starts here, `None` for what this
    /// parser leaves to the grammar.
    fn literal(&mut self) -> Option<Option<Spanned<Literal>>> {
        let start = self.pos;
        let literal = match self.b.get(start) {
            Some(b'"') => Literal::Str(self.string()?),
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                self.eat(b'-');
                let digits = self.pos;
                self.pos += self.b[digits..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if self.pos == digits {
                    return None;
                }
                if self.b.get(self.pos) == Some(&b'.') {
                    let fraction = self.pos + 1;
                    let n = self.b[fraction..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    if n == 0 {
                        return None;
                    }
                    self.pos = fraction + n;
                }
                if self
                    .b
                    .get(self.pos)
                    .is_some_and(|&c| is_word(c) || c == b'.')
                {
                    return None;
                }
                let text = &self.text[start..self.pos];
                Literal::Number(text.parse().unwrap_or(f64::NAN), text.to_owned())
            }
            _ => match self.word() {
                b"true" => {
                    self.pos += 4;
                    Literal::Bool(true)
                }
                b"false" => {
                    self.pos += 5;
                    Literal::Bool(false)
                }
                _ => return Some(None),
            },
        };
        Some(Some(Spanned::new(self.span(start, self.pos), literal)))
    }
}
