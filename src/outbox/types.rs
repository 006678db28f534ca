//! The outbox's data: what goes in (events, deliveries), what comes out, and attempt outcomes.

use super::payload::{Payload, StoredBody};
use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// The most of a target's response body kept with a delivery, in bytes.
pub const EXCERPT_LIMIT: usize = 4096;

/// An event to store, with the deliveries its matching webhooks rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The tracker's event id; a second event with the same id is a duplicate.
    pub id: String,
    /// whc made `id` (the event came without one), and `body` leaves it out: the SQLite outbox
    /// stores the event under an id of its own making instead, one that carries the event's
    /// `seq` (see `event_id`), keeps it in the `id` column only, and answers with it. The
    /// PostgreSQL store keeps `id`. Either adds it to the JSON it reads back
    /// ([`NewEvent::body_with_id`]).
    pub assigned: bool,
    /// The event type on the wire: `conversion`, `refund`, `event1`..`event10`.
    pub kind: String,
    /// The event as received, JSON text; without its `id` when [`NewEvent::assigned`].
    pub body: String,
    /// The event's `occurredAt`, for the envelope.
    pub occurred_at: Option<String>,
    /// One request per matching webhook; ignored when the event is a duplicate.
    pub deliveries: Vec<NewDelivery>,
}

impl NewEvent {
    /// The event's whole JSON, its `id` included (which `body` leaves out when the id is
    /// [`NewEvent::assigned`]).
    pub fn body_with_id(&self) -> std::borrow::Cow<'_, str> {
        if self.assigned {
            std::borrow::Cow::Owned(super::event_id::with_id(&self.body, &self.id))
        } else {
            std::borrow::Cow::Borrowed(&self.body)
        }
    }
}

/// One rendered webhook request, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The delivery id, a UUID v7 made when the request was rendered (the `[delivery]` token
    /// and the idempotency key); see [`new_delivery_id`].
    pub id: String,
    /// The webhook's name in the rules.
    pub webhook: String,
    /// HTTP method, `POST` or `GET`.
    pub method: String,
    /// The URL with its tokens substituted.
    pub url: String,
    /// Headers from the rule; values from the environment are kept as references.
    pub headers: Vec<StoredHeader>,
    /// The request body.
    pub body: Payload,
    /// The environment variable that holds the signing secret, never the secret itself.
    pub secret_env: Option<String>,
    /// The per-attempt deadline.
    pub timeout_ms: u64,
    /// How many attempts the rule allows before the delivery goes dead.
    pub max_attempts: u32,
}

/// A header as stored: secrets stay in the environment and are resolved at send time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredHeader {
    /// A value written in the rule file, stored as is.
    Literal {
        /// Header name.
        name: String,
        /// Header value.
        value: String,
    },
    /// A value read from an environment variable when the request is sent.
    Env {
        /// Header name.
        name: String,
        /// The environment variable holding the value.
        env: String,
    },
}

/// What the outbox answers for one accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The tracker's event id.
    pub id: String,
    /// The id was already stored: nothing new was written.
    pub duplicate: bool,
    /// The delivery ids (idempotency keys) of this event: new ones, or for a duplicate the ones
    /// stored the first time (minus any pruned since).
    pub deliveries: Vec<String>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its next attempt (the first one included).
    Pending,
    /// A target answered 2xx.
    Delivered,
    /// Given up: a permanent failure or attempts exhausted. Can be replayed.
    Dead,
}

impl Status {
    /// The name stored in the database and shown on the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not `pending`, `delivered` or `dead`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status `{0}` (expected pending, delivered or dead)")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Status::Pending),
            "delivered" => Ok(Status::Delivered),
            "dead" => Ok(Status::Dead),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

impl ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A stored delivery with everything known about its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery id, a UUID v7; sent as the idempotency key on every attempt.
    pub id: String,
    /// The event that produced it.
    pub event_id: String,
    /// The webhook's name in the rules.
    pub webhook: String,
    /// HTTP method.
    pub method: String,
    /// The rendered URL.
    pub url: String,
    /// Headers, secrets as environment references.
    pub headers: Vec<StoredHeader>,
    /// The request body as stored; `deliver` renders the bytes it sends.
    pub body: StoredBody,
    /// The environment variable holding the signing secret.
    pub secret_env: Option<String>,
    /// The per-attempt deadline.
    pub timeout_ms: u64,
    /// Attempts allowed before going dead.
    pub max_attempts: u32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Where the delivery is in its life.
    pub status: Status,
    /// When the next attempt is due, unix ms (meaningful while pending).
    pub next_attempt_at: i64,
    /// The HTTP status of the last attempt, if the target answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, or for a delivered one what was odd about its answer (a
    /// body cut at the deadline); at most [`ERROR_LIMIT`] bytes.
    pub last_error: Option<String>,
    /// The first [`EXCERPT_LIMIT`] bytes of the last response body.
    pub response_excerpt: Option<String>,
    /// How long the last attempt took.
    pub last_attempt_ms: Option<u64>,
    /// When the delivery was stored, unix ms.
    pub created_at: i64,
    /// When the delivery last changed, unix ms.
    pub updated_at: i64,
}

/// The outcome of one attempt, as the delivery worker reports it. Every outcome counts one attempt.
///
/// The outbox does not apply the retry policy: the worker compares `attempts` with
/// `max_attempts` and reports `Dead` when they are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptRecord {
    /// The target answered 2xx.
    Delivered {
        /// The HTTP status.
        status_code: u16,
        /// What was odd about the answer though it counts as delivered (a body cut at the
        /// deadline); kept in `last_error`.
        note: Option<String>,
        /// The start of the response body.
        excerpt: Option<String>,
        /// How long the attempt took.
        elapsed_ms: u64,
    },
    /// A retryable failure: try again at `next_attempt_at`.
    Retry {
        /// When to try again, unix ms.
        next_attempt_at: i64,
        /// The HTTP status, if the target answered.
        status_code: Option<u16>,
        /// What went wrong.
        error: String,
        /// The start of the response body.
        excerpt: Option<String>,
        /// How long the attempt took.
        elapsed_ms: u64,
    },
    /// Give up: the delivery goes to the dead letters.
    Dead {
        /// The HTTP status, if the target answered.
        status_code: Option<u16>,
        /// What went wrong.
        error: String,
        /// The start of the response body.
        excerpt: Option<String>,
        /// How long the attempt took.
        elapsed_ms: u64,
    },
}

/// An attempt record as the columns a store writes: one flattening for every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordColumns<'a> {
    /// `delivered`, `retry` or `dead`: the attempt's outcome in the attempts history.
    pub outcome: &'static str,
    /// The delivery's status after this attempt.
    pub status: Status,
    /// When to try again (retries only).
    pub next_attempt_at: Option<i64>,
    /// The HTTP status, if the target answered.
    pub status_code: Option<u16>,
    /// The error, or a delivered attempt's note.
    pub error: Option<&'a str>,
    /// The start of the response body.
    pub excerpt: Option<&'a str>,
    /// How long the attempt took, in ms, saturated to what a database integer holds.
    pub elapsed_ms: i64,
}

impl AttemptRecord {
    /// The columns this record writes.
    pub fn columns(&self) -> RecordColumns<'_> {
        let (outcome, status, next_attempt_at, status_code, error, excerpt, elapsed) = match self {
            AttemptRecord::Delivered {
                status_code,
                note,
                excerpt,
                elapsed_ms,
            } => (
                "delivered",
                Status::Delivered,
                None,
                Some(*status_code),
                note.as_deref(),
                excerpt,
                elapsed_ms,
            ),
            AttemptRecord::Retry {
                next_attempt_at,
                status_code,
                error,
                excerpt,
                elapsed_ms,
            } => (
                "retry",
                Status::Pending,
                Some(*next_attempt_at),
                *status_code,
                Some(error.as_str()),
                excerpt,
                elapsed_ms,
            ),
            AttemptRecord::Dead {
                status_code,
                error,
                excerpt,
                elapsed_ms,
            } => (
                "dead",
                Status::Dead,
                None,
                *status_code,
                Some(error.as_str()),
                excerpt,
                elapsed_ms,
            ),
        };
        RecordColumns {
            outcome,
            status,
            next_attempt_at,
            status_code,
            error,
            excerpt: excerpt.as_deref(),
            elapsed_ms: i64::try_from(*elapsed).unwrap_or(i64::MAX),
        }
    }
}

/// Which deliveries the admin listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only deliveries in this state.
    pub status: Option<Status>,
    /// Only deliveries of this webhook.
    pub webhook: Option<String>,
    /// Only deliveries of events of this type (its wire name: `conversion`, `event3`).
    pub event_type: Option<String>,
    /// Only deliveries stored at or after this time, unix ms.
    pub since: Option<i64>,
    /// Only deliveries stored before this time, unix ms.
    pub until: Option<i64>,
    /// Only deliveries whose event id, or its event's `transaction`, contains this text.
    pub text: Option<String>,
    /// The page after the one that ended with this delivery id: only older deliveries.
    pub after: Option<String>,
    /// At most this many, newest first (by id: a UUID v7 starts with its creation time).
    pub limit: u32,
}

impl Default for DeliveryFilter {
    fn default() -> Self {
        DeliveryFilter {
            status: None,
            webhook: None,
            event_type: None,
            since: None,
            until: None,
            text: None,
            after: None,
            limit: 100,
        }
    }
}

/// One attempt of a delivery, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// When it was recorded, unix ms.
    pub at: i64,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
    /// The HTTP status, if the target answered.
    pub status_code: Option<u16>,
    /// What went wrong (or was odd about a delivered answer).
    pub error: Option<String>,
    /// The start of the response body.
    pub excerpt: Option<String>,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// How many deliveries of one webhook reached each state in a time window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebhookCounts {
    /// Delivered (a target answered 2xx).
    pub delivered: u64,
    /// Pending after at least one failed attempt.
    pub retrying: u64,
    /// Given up.
    pub dead: u64,
    /// Pending, not yet tried.
    pub waiting: u64,
}

/// How many deliveries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Waiting for an attempt.
    pub pending: u64,
    /// Done.
    pub delivered: u64,
    /// Given up.
    pub dead: u64,
}

/// Counters of the writer thread, for metrics and for tests that check batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write requests handed to the writer thread.
    pub submitted: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Write requests the writer has taken into a batch (accept, record, replay, prune calls).
    pub requests: u64,
    /// Events stored (duplicates not counted).
    pub events: u64,
    /// Microseconds the writer spent running and committing batches (the rest it waited for
    /// requests): near the elapsed time, the writer is the bottleneck.
    pub busy_micros: u64,
}

/// Cuts `text` to at most [`EXCERPT_LIMIT`] bytes on a character boundary.
pub(crate) fn excerpt(text: &str) -> &str {
    if text.len() <= EXCERPT_LIMIT {
        return text;
    }
    let mut end = EXCERPT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The most of an error text kept with a delivery (`last_error`), in bytes, ellipsis included.
///
/// An error can quote a rendered URL or a target's words; the log keeps its start, enough to
/// see what went wrong, and never a 70 KB URL.
pub const ERROR_LIMIT: usize = 1024;

/// Cuts `text` to at most [`ERROR_LIMIT`] bytes on a character boundary, ending in `…` when
/// something was cut.
pub(crate) fn error_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= ERROR_LIMIT {
        return text.into();
    }
    const ELLIPSIS: &str = "…";
    let mut end = ERROR_LIMIT - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end]).into()
}

/// The scheme, host and port of a URL, lower-cased: the endpoint a delivery goes to, what
/// per-endpoint limits and claims count by.
pub fn endpoint_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| i + after_scheme);
    url[..end].to_ascii_lowercase()
}

/// The endpoint as the integer the dispatcher's index groups by (`deliveries.endpoint_key`,
/// schema step 9): FNV-1a (64 bits) of [`endpoint_of`]'s text, the same in every build and on
/// every machine.
///
/// Comparing integers instead of text is what makes it cheaper than the text in the index. Two
/// endpoints whose keys collide (about one pair in 2^32 among 2^16 endpoints) would only share
/// one per-endpoint claim bound.
pub(crate) fn endpoint_key(endpoint: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = endpoint
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// A fresh delivery id: a UUID v7 (RFC 9562), so ids sort by creation time; ids made by one
/// process sort in the order they were made (within a millisecond the random part counts up,
/// RFC 9562's method 2).
///
/// The random bits come from `fastrand` (a thread-local generator, seeded once) instead of a
/// `getrandom` syscall per id as `Uuid::now_v7` makes: the ids must be unique, not secret.
pub fn new_delivery_id() -> String {
    use std::sync::{Mutex, PoisonError};
    static LAST: Mutex<u128> = Mutex::new(0);
    // Bit 61 is the top of the 62-bit `rand_b`: left clear, counting up cannot reach the
    // variant bits.
    const HEADROOM: u128 = 1 << 61;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random: [u8; 16] = fastrand::u128(..).to_le_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random[..10]);
    let fresh = uuid::Builder::from_unix_timestamp_millis(millis, &tail)
        .into_uuid()
        .as_u128()
        & !HEADROOM;
    let id = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        // A clock that stepped back, or the same millisecond: one past the last id.
        *last = if fresh > *last { fresh } else { *last + 1 };
        *last
    };
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::from_u128(id)
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_uuid_v7_in_the_order_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_delivery_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a uuid");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    #[test]
    fn endpoint_keys_are_fnv_1a_and_never_change() {
        // Stored in every outbox: a different function would split an endpoint's old and new
        // deliveries into two groups.
        assert_eq!(endpoint_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(endpoint_key("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_ne!(
            endpoint_key("http://127.0.0.1:9909"),
            endpoint_key("http://127.0.0.1:9908")
        );
    }

    #[test]
    fn status_round_trips() {
        for s in [Status::Pending, Status::Delivered, Status::Dead] {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("Pending".parse::<Status>().is_err());
    }

    #[test]
    fn headers_serialize_as_references() {
        let headers = vec![
            StoredHeader::Literal {
                name: "X-A".into(),
                value: "1".into(),
            },
            StoredHeader::Env {
                name: "Authorization".into(),
                env: "TOKEN".into(),
            },
        ];
        let json = serde_json::to_string(&headers).expect("serialize");
        assert_eq!(
            json,
            r#"[{"name":"X-A","value":"1"},{"name":"Authorization","env":"TOKEN"}]"#
        );
        let back: Vec<StoredHeader> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, headers);
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let text = "é".repeat(EXCERPT_LIMIT);
        let cut = excerpt(&text);
        assert!(cut.len() <= EXCERPT_LIMIT);
        assert!(cut.len() >= EXCERPT_LIMIT - 1);
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn error_text_is_capped_on_a_char_boundary_with_an_ellipsis() {
        assert_eq!(error_text("HTTP 503"), "HTTP 503");
        let exact = "a".repeat(ERROR_LIMIT);
        assert_eq!(error_text(&exact), exact.as_str());
        for long in ["x".repeat(70_000), "é".repeat(35_000), "a€".repeat(20_000)] {
            let cut = error_text(&long);
            assert!(cut.len() <= ERROR_LIMIT, "{}", cut.len());
            assert!(cut.len() > ERROR_LIMIT - 8, "{}", cut.len());
            assert!(cut.ends_with('…'));
            assert!(long.starts_with(cut.trim_end_matches('…')));
        }
    }
}
