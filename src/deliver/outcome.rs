//! What one attempt produced, and the verdict on it: delivered, retry or dead.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::read::BodyEnd;

/// One attempt at a delivery: what came back and how long it took.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The answer, or why there was none.
    pub outcome: Outcome,
    /// From the start of the attempt to its end (the body read or the failure).
    pub elapsed: Duration,
}

/// What an attempt produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The target answered, whatever the status.
    Response(Response),
    /// No usable answer: the request could not be built, sent or answered in time.
    Failed(SendError),
}

/// A target's answer, with its body cut to an excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers in order, values read lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The start of the body, at most [`EXCERPT_LIMIT`](super::EXCERPT_LIMIT) bytes.
    pub excerpt: Bytes,
    /// How the body ended, as far as it was read.
    pub body: BodyEnd,
    /// The delta-seconds `Retry-After` the target sent, if any.
    pub retry_after: Option<Duration>,
}

impl Response {
    /// The excerpt as text, invalid UTF-8 replaced.
    pub fn excerpt_text(&self) -> String {
        String::from_utf8_lossy(&self.excerpt).into_owned()
    }

    /// Whether the excerpt is less than the whole body.
    pub fn truncated(&self) -> bool {
        self.body != BodyEnd::Whole
    }

    /// What was odd about the body, in words for the delivery log: cut by our deadline, or
    /// broken off. `None` when it was read whole or cut at the excerpt's size.
    pub fn body_note(&self) -> Option<String> {
        match &self.body {
            BodyEnd::Whole | BodyEnd::Cut => None,
            BodyEnd::StillArriving => Some(format!(
                "the body was still arriving at the deadline; kept its first {} bytes",
                self.excerpt.len()
            )),
            BodyEnd::BrokeOff(reason) => Some(format!("the answer is incomplete: {reason}")),
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an attempt got no answer. `Display` is one line a person understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The deadline (connect, headers and body together) passed.
    #[error("no answer within {}", human_duration(*.0))]
    Timeout(Duration),
    /// The target could not be reached: refused, unreachable, unknown host, reset.
    #[error("{0}")]
    Connect(String),
    /// The TLS handshake failed: bad certificate, wrong host, not speaking TLS.
    #[error("{0}")]
    Tls(String),
    /// The request itself is wrong (URL, header); sending it again cannot help.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Anything else, such as a connection closed before the answer.
    #[error("{0}")]
    Other(String),
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target took it with this 2xx status.
    Delivered {
        /// The status it answered.
        status: u16,
    },
    /// Worth another try, after at least `retry_after` when the target said so.
    Retry {
        /// The target's `Retry-After` (only read on 429 and 503).
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help: 3xx, a 4xx other than 408 and 429, or an invalid request.
    Dead,
}

/// The verdict on an attempt's outcome.
///
/// 2xx is delivered. Failures to connect, TLS failures (certificates get fixed), timeouts, 408,
/// 429 and 5xx are retried; `Retry-After` is passed on for 429 and 503, the statuses that define
/// it. 3xx (redirects are never followed: the rule should name the final URL), other 4xx and
/// invalid requests are dead.
///
/// The status line is the verdict, whatever the body does after it, with one exception: a 2xx
/// whose body broke off short of its end ([`BodyEnd::BrokeOff`]) is retried. HTTP calls such an
/// answer incomplete, and an incomplete "yes" (a crashing receiver, a middlebox cutting the
/// connection) is no proof the event arrived; a resend costs a duplicate the receiver drops by
/// its idempotency key, a false "delivered" would lose the event. A body still arriving at the
/// deadline is not broken: the target answered and is slow to finish, so its 2xx stands.
pub fn classify(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Failed(SendError::InvalidRequest(_)) => Verdict::Dead,
        Outcome::Failed(_) => Verdict::Retry { retry_after: None },
        Outcome::Response(Response {
            status: 200..=299,
            body: BodyEnd::BrokeOff(_),
            ..
        }) => Verdict::Retry { retry_after: None },
        Outcome::Response(response) => match response.status {
            status @ 200..=299 => Verdict::Delivered { status },
            429 | 503 => Verdict::Retry {
                retry_after: response.retry_after,
            },
            408 | 500..=599 => Verdict::Retry { retry_after: None },
            _ => Verdict::Dead,
        },
    }
}

impl Outcome {
    /// The verdict on this outcome; see [`classify`].
    pub fn verdict(&self) -> Verdict {
        classify(self)
    }

    /// The status code, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response(response) => Some(response.status),
            Outcome::Failed(_) => None,
        }
    }
}

impl fmt::Display for Outcome {
    /// `HTTP 503` or the failure's message: the one line a delivery log shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Response(response) => match &response.body {
                BodyEnd::BrokeOff(reason) => {
                    write!(
                        f,
                        "HTTP {}, but the answer is incomplete: {reason}",
                        response.status
                    )
                }
                _ => write!(f, "HTTP {}", response.status),
            },
            Outcome::Failed(error) => error.fmt(f),
        }
    }
}

/// `5 s`, `200 ms`, `1.5 s`: how people say a timeout.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Outcome {
        Outcome::Response(Response {
            status,
            headers: vec![],
            excerpt: Bytes::new(),
            body: BodyEnd::Whole,
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let retry = Verdict::Retry { retry_after: None };
        for (status, verdict) in [
            (200, Verdict::Delivered { status: 200 }),
            (204, Verdict::Delivered { status: 204 }),
            (299, Verdict::Delivered { status: 299 }),
            (301, Verdict::Dead),
            (302, Verdict::Dead),
            (400, Verdict::Dead),
            (404, Verdict::Dead),
            (410, Verdict::Dead),
            (408, retry),
            (429, retry),
            (500, retry),
            (502, retry),
            (599, retry),
            (100, Verdict::Dead),
            (600, Verdict::Dead),
        ] {
            assert_eq!(classify(&answer(status, None)), verdict, "status {status}");
        }
    }

    #[test]
    fn retry_after_is_passed_on_for_429_and_503_only() {
        let seven = Some(Duration::from_secs(7));
        assert_eq!(
            classify(&answer(429, Some(7))),
            Verdict::Retry { retry_after: seven }
        );
        assert_eq!(
            classify(&answer(503, Some(7))),
            Verdict::Retry { retry_after: seven }
        );
        assert_eq!(
            classify(&answer(500, Some(7))),
            Verdict::Retry { retry_after: None }
        );
    }

    #[test]
    fn a_2xx_that_broke_off_is_retried_other_statuses_keep_their_verdict() {
        let broken = |status| {
            Outcome::Response(Response {
                status,
                headers: vec![],
                excerpt: Bytes::from_static(b"ok"),
                body: BodyEnd::BrokeOff("it ended after 2 of 10 bytes".into()),
                retry_after: None,
            })
        };
        assert_eq!(classify(&broken(200)), Verdict::Retry { retry_after: None });
        assert_eq!(
            broken(200).to_string(),
            "HTTP 200, but the answer is incomplete: it ended after 2 of 10 bytes"
        );
        assert_eq!(classify(&broken(404)), Verdict::Dead);
        let slow = Outcome::Response(Response {
            status: 200,
            headers: vec![],
            excerpt: Bytes::from_static(b"partial"),
            body: BodyEnd::StillArriving,
            retry_after: None,
        });
        assert_eq!(classify(&slow), Verdict::Delivered { status: 200 });
    }

    #[test]
    fn failures_retry_unless_the_request_is_invalid() {
        let failed = |e| classify(&Outcome::Failed(e));
        let retry = Verdict::Retry { retry_after: None };
        assert_eq!(failed(SendError::Timeout(Duration::from_secs(5))), retry);
        assert_eq!(failed(SendError::Connect("refused".into())), retry);
        assert_eq!(failed(SendError::Tls("bad cert".into())), retry);
        assert_eq!(failed(SendError::Other("closed".into())), retry);
        assert_eq!(
            failed(SendError::InvalidRequest("bad".into())),
            Verdict::Dead
        );
    }

    #[test]
    fn timeouts_read_like_speech() {
        let timeout = |ms| SendError::Timeout(Duration::from_millis(ms)).to_string();
        assert_eq!(timeout(5_000), "no answer within 5 s");
        assert_eq!(timeout(200), "no answer within 200 ms");
        assert_eq!(timeout(1_500), "no answer within 1.5 s");
        assert_eq!(answer(503, None).to_string(), "HTTP 503");
    }
}
