//! What one attempt produced, and the verdict on it: delivered, retry or dead.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

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
    /// Whether the body went on past the excerpt (or broke off mid-way).
    pub truncated: bool,
    /// The delta-seconds `Retry-After` the target sent, if any.
    pub retry_after: Option<Duration>,
}

impl Response {
    /// The excerpt as text, invalid UTF-8 replaced.
    pub fn excerpt_text(&self) -> String {
        String::from_utf8_lossy(&self.excerpt).into_owned()
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
pub fn classify(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Failed(SendError::InvalidRequest(_)) => Verdict::Dead,
        Outcome::Failed(_) => Verdict::Retry { retry_after: None },
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
            Outcome::Response(response) => write!(f, "HTTP {}", response.status),
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
            truncated: false,
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
