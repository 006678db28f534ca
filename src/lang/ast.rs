//! The syntax tree of a rule file, every node carrying the byte span it came from.

use std::ops::Range;

/// A byte range in one rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (exclusive).
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The span's length in bytes.
    pub fn len(self) -> usize {
        self.end - self.start
    }

    /// Whether the span covers no byte.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The byte range, for slicing the source.
    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> miette::SourceSpan {
        (span.start, span.len()).into()
    }
}

impl From<pest::Span<'_>> for Span {
    fn from(span: pest::Span<'_>) -> Span {
        Span::new(span.start(), span.end())
    }
}

/// A node and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// Where in the file.
    pub span: Span,
    /// What was written there.
    pub node: T,
}

impl<T> Spanned<T> {
    /// Wraps a node with its span.
    pub fn new(span: Span, node: T) -> Spanned<T> {
        Spanned { span, node }
    }
}

/// A parsed rule file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    /// The webhooks in source order.
    pub webhooks: Vec<WebhookDecl>,
    /// The sources in source order.
    pub sources: Vec<SourceDecl>,
}

/// One `source NAME { ... }` block as written.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDecl {
    /// The whole block.
    pub span: Span,
    /// The name, unquoted.
    pub name: Spanned<String>,
    /// The clauses in source order.
    pub clauses: Vec<Spanned<SourceClause>>,
}

/// One clause of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceClause {
    /// `route get, post "/in/x"`
    Route {
        /// The methods, as written.
        methods: Vec<Spanned<Method>>,
        /// The path.
        path: StringLit,
    },
    /// `secret query "token" = env("VAR")`
    Secret {
        /// Where the tracker puts it.
        place: Spanned<Place>,
        /// The parameter or header name.
        name: StringLit,
        /// Its expected value.
        value: ValueSource,
    },
    /// `negative revenue -> refund`
    Negative {
        /// The field written (only `revenue` is checked in).
        field: Spanned<String>,
        /// The event a negative value makes.
        event: Spanned<EventSpec>,
    },
    /// `FIELD = VALUE { map }`
    Mapping {
        /// The field filled, as written (`revenue`, `last.clickId`, `type`).
        target: Spanned<String>,
        /// Where its value comes from.
        from: Spanned<ValueFrom>,
        /// What each value means, for `type` and `status`.
        map: Option<Spanned<Vec<MapEntry>>>,
    },
    /// A line starting with a word that starts no source clause.
    Unknown {
        /// The first word.
        word: Spanned<String>,
    },
}

/// The part of a request a source reads a value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Place {
    /// A query-string parameter.
    Query,
    /// A field of an `application/x-www-form-urlencoded` body.
    Form,
    /// A value in a JSON body, by JSON pointer (`/a/b`) or top-level key.
    Json,
    /// A request header.
    Header,
    /// A query parameter, else a form field, else a top-level JSON key.
    Param,
}

impl Place {
    /// The keyword, as written in rules.
    pub fn keyword(self) -> &'static str {
        match self {
            Place::Query => "query",
            Place::Form => "form",
            Place::Json => "json",
            Place::Header => "header",
            Place::Param => "param",
        }
    }

    /// The place for a keyword.
    pub fn from_keyword(word: &str) -> Option<Place> {
        [
            Place::Query,
            Place::Form,
            Place::Json,
            Place::Header,
            Place::Param,
        ]
        .into_iter()
        .find(|p| p.keyword() == word)
    }
}

/// Where a mapped value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueFrom {
    /// `query "cid"`, `json "/payout"`, ...
    Request(Place, StringLit),
    /// A literal: the same value for every request.
    Literal(Literal),
    /// `hash(a, b)`: a digest of mapped fields (for `id`).
    Hash(Vec<Spanned<String>>),
}

/// One entry of a value map: `"sale" -> conversion`, `else -> refund`.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The value sent; `None` for `else`.
    pub value: Option<StringLit>,
    /// The event it means.
    pub event: Spanned<EventSpec>,
    /// The whole entry.
    pub span: Span,
}

/// One `webhook NAME { ... }` block as written.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDecl {
    /// The whole block.
    pub span: Span,
    /// The name, unquoted.
    pub name: Spanned<String>,
    /// The clauses in source order.
    pub clauses: Vec<Spanned<Clause>>,
}

/// One clause of a webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `on conversion, event 3`
    On(Vec<Spanned<EventSpec>>),
    /// `when CONDITION`
    When(Spanned<Expr>),
    /// `post URL` / `get URL`
    Request {
        /// The method word.
        method: Spanned<Method>,
        /// The URL template.
        url: StringLit,
    },
    /// `header "Name" = value`
    Header {
        /// The header's name.
        name: StringLit,
        /// Its value.
        value: ValueSource,
    },
    /// `timeout 5s`, as written (the unit is checked later).
    Timeout(Spanned<String>),
    /// `retries N`, as written (the range is checked later).
    Retries(Spanned<String>),
    /// `secret env("VAR")`, or a literal the checker refuses.
    Secret(ValueSource),
    /// `disabled`
    Disabled,
    /// A line starting with a word that starts no clause.
    Unknown {
        /// The first word.
        word: Spanned<String>,
    },
}

/// The HTTP method of a webhook's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Method {
    /// `post`: the event goes in a JSON body.
    Post,
    /// `get`: no body; the URL carries everything.
    Get,
}

impl Method {
    /// `POST` or `GET`.
    pub fn as_http(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
        }
    }

    /// `post` or `get`, as written in rules.
    pub fn keyword(self) -> &'static str {
        match self {
            Method::Post => "post",
            Method::Get => "get",
        }
    }
}

/// Where a header's or a secret's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSource {
    /// A literal string in the rule file.
    Literal(StringLit),
    /// `env("VAR")`: read from the environment.
    Env(StringLit),
}

/// A string literal: its decoded value and where its raw text sits.
#[derive(Debug, Clone, PartialEq)]
pub struct StringLit {
    /// The whole literal, quotes included.
    pub span: Span,
    /// The decoded value.
    pub value: String,
    /// Whether the raw text had escapes; when not, byte `i` of `value` sits at `span.start + 1 + i`.
    pub escaped: bool,
}

impl StringLit {
    /// The span of `value[range]` in the file, when it can be told exactly; the whole literal otherwise.
    pub fn inner_span(&self, range: Range<usize>) -> Span {
        if self.escaped {
            self.span
        } else {
            Span::new(
                self.span.start + 1 + range.start,
                self.span.start + 1 + range.end,
            )
        }
    }
}

/// One entry of an `on` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSpec {
    /// `conversion`, `refund`, `event`, or a misspelling for the checker to catch.
    Named(String),
    /// `event N`, with N as written.
    Numbered(String),
}

/// A condition expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Spanned<Expr>>, Box<Spanned<Expr>>),
    /// Either holds.
    Or(Box<Spanned<Expr>>, Box<Spanned<Expr>>),
    /// Does not hold.
    Not(Box<Spanned<Expr>>),
    /// A single comparison.
    Compare(Comparison),
}

/// `FIELD OPERATOR VALUE`, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The field, with its click if one was written.
    pub field: FieldName,
    /// The operator; `None` for a bare flag.
    pub op: Option<Spanned<Op>>,
    /// The value compared with; `None` for `is set`, a bare flag, or a missing value.
    pub operand: Option<Spanned<Literal>>,
}

/// A field as written: `utm_source` or `first.utm_source`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldName {
    /// The whole reference.
    pub span: Span,
    /// The part before the dot, when there is one (`first`, `last`, or a mistake).
    pub attribution: Option<Spanned<String>>,
    /// The field's name.
    pub name: Spanned<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Greater,
    AtLeast,
    Less,
    AtMost,
    In,
    NotIn,
    Matches,
    IsSet,
    IsNotSet,
    /// A word or symbol where an operator belongs that is none of the above.
    Unknown(String),
}

impl Op {
    /// Every known operator.
    pub const KNOWN: [Op; 15] = [
        Op::Equals,
        Op::NotEquals,
        Op::Contains,
        Op::NotContains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Greater,
        Op::AtLeast,
        Op::Less,
        Op::AtMost,
        Op::In,
        Op::NotIn,
        Op::Matches,
        Op::IsSet,
        Op::IsNotSet,
    ];

    /// The canonical spelling, in words (what `whc fmt` writes).
    pub fn words(&self) -> &str {
        match self {
            Op::Equals => "equals",
            Op::NotEquals => "not equals",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
            Op::StartsWith => "starts with",
            Op::EndsWith => "ends with",
            Op::Greater => "greater than",
            Op::AtLeast => "at least",
            Op::Less => "less than",
            Op::AtMost => "at most",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Matches => "matches",
            Op::IsSet => "is set",
            Op::IsNotSet => "is not set",
            Op::Unknown(word) => word,
        }
    }

    /// The symbol, for operators that have one.
    pub fn symbol(&self) -> Option<&'static str> {
        match self {
            Op::Equals => Some("=="),
            Op::NotEquals => Some("!="),
            Op::Greater => Some(">"),
            Op::AtLeast => Some(">="),
            Op::Less => Some("<"),
            Op::AtMost => Some("<="),
            _ => None,
        }
    }

    /// Whether the operator takes a value after it.
    pub fn takes_operand(&self) -> bool {
        !matches!(self, Op::IsSet | Op::IsNotSet)
    }
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"`
    Str(StringLit),
    /// `50`, `49.99`, with the text as written.
    Number(f64, String),
    /// `true` / `false`
    Bool(bool),
    /// `["a", "b"]`
    List(Vec<Spanned<Literal>>),
}

impl Literal {
    /// What kind of literal this is, for diagnostics.
    pub fn describe(&self) -> &'static str {
        match self {
            Literal::Str(_) => "a string",
            Literal::Number(..) => "a number",
            Literal::Bool(_) => "a boolean",
            Literal::List(_) => "a list",
        }
    }
}
