//! What an attempt becomes in the delivery log: delivered, retry at a time, or dead.

use super::outcome::{Attempt, Outcome, Verdict};
use super::retry::RetryPolicy;
use crate::outbox::AttemptRecord;

/// Where a delivery stands before the attempt being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Attempts made before this one.
    pub attempts: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
}

/// The record of one attempt: the verdict on its outcome, with the retry policy deciding when
/// (and whether) a retryable failure is tried again. `now_ms` is the time the next attempt's
/// delay counts from.
pub fn record_for(
    attempt: &Attempt,
    progress: Progress,
    retry: &RetryPolicy,
    now_ms: i64,
) -> AttemptRecord {
    let elapsed_ms = attempt.elapsed.as_millis() as u64;
    let status_code = attempt.outcome.status();
    let excerpt = match &attempt.outcome {
        Outcome::Response(r) => Some(r.excerpt_text()),
        Outcome::Failed(_) => None,
    };
    let made = progress.attempts + 1;
    match attempt.outcome.verdict() {
        Verdict::Delivered { status } => AttemptRecord::Delivered {
            status_code: status,
            note: match &attempt.outcome {
                Outcome::Response(r) => r.body_note(),
                Outcome::Failed(_) => None,
            },
            excerpt,
            elapsed_ms,
        },
        Verdict::Retry { retry_after } => {
            let error = attempt.outcome.to_string();
            let retries = progress.max_attempts.saturating_sub(1);
            match retry.delay_after(made, retries, retry_after) {
                Some(delay) => AttemptRecord::Retry {
                    next_attempt_at: now_ms + delay.as_millis() as i64,
                    status_code,
                    error,
                    excerpt,
                    elapsed_ms,
                },
                None => AttemptRecord::Dead {
                    status_code,
                    error: format!("gave up after {made} attempts; last: {error}"),
                    excerpt,
                    elapsed_ms,
                },
            }
        }
        Verdict::Dead => AttemptRecord::Dead {
            status_code,
            error: attempt.outcome.to_string(),
            excerpt,
            elapsed_ms,
        },
    }
}

/// The record of a delivery that could not be sent at all (see
/// [`PrepareError`](super::PrepareError)): dead, since retrying cannot help until the set-up
/// changes.
pub fn unsendable(error: impl std::fmt::Display) -> AttemptRecord {
    AttemptRecord::Dead {
        status_code: None,
        error: error.to_string(),
        excerpt: None,
        elapsed_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::deliver::{Response, SendError};

    fn answered(status: u16) -> Attempt {
        Attempt {
            outcome: Outcome::Response(Response {
                status,
                headers: vec![],
                excerpt: Bytes::from_static(b"ok"),
                body: crate::deliver::BodyEnd::Whole,
                retry_after: None,
            }),
            elapsed: Duration::from_millis(12),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::parse("10s,1m")
            .and_then(|p| p.with_jitter(0.0))
            .expect("valid")
    }

    const FRESH: Progress = Progress {
        attempts: 0,
        max_attempts: 3,
    };

    #[test]
    fn a_2xx_is_delivered_with_its_status() {
        let record = record_for(&answered(204), FRESH, &policy(), 0);
        assert_eq!(
            record,
            AttemptRecord::Delivered {
                status_code: 204,
                note: None,
                excerpt: Some("ok".into()),
                elapsed_ms: 12,
            }
        );
    }

    #[test]
    fn a_retryable_failure_waits_its_step_then_gives_up() {
        let timeout = Attempt {
            outcome: Outcome::Failed(SendError::Timeout(Duration::from_secs(5))),
            elapsed: Duration::from_secs(5),
        };
        match record_for(&timeout, FRESH, &policy(), 1_000) {
            AttemptRecord::Retry {
                next_attempt_at,
                status_code: None,
                ..
            } => assert_eq!(next_attempt_at, 11_000),
            other => panic!("expected a retry, got {other:?}"),
        }
        let last = Progress {
            attempts: 2,
            max_attempts: 3,
        };
        match record_for(&answered(503), last, &policy(), 0) {
            AttemptRecord::Dead {
                error,
                status_code: Some(503),
                ..
            } => assert_eq!(error, "gave up after 3 attempts; last: HTTP 503"),
            other => panic!("expected dead, got {other:?}"),
        }
    }

    #[test]
    fn a_4xx_is_dead_at_once() {
        assert!(matches!(
            record_for(&answered(404), FRESH, &policy(), 0),
            AttemptRecord::Dead {
                status_code: Some(404),
                ..
            }
        ));
    }
}
