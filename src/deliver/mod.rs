//! Delivery: the HTTP client, the per-attempt deadline, retry policy, signing and verdicts.
//!
//! One attempt is [`Client::send`] of an [`OutgoingRequest`] whose headers come from
//! [`AttemptHeaders::build`]; [`classify`] turns its [`Outcome`] into a [`Verdict`], and
//! [`RetryPolicy::delay_after`] says when to try again. The outbox and the workers own the loop.

mod client;
mod failure;
mod headers;
mod outcome;
mod prepare;
mod read;
mod retry;
mod retry_after;
mod sign;
mod trust;

pub use crate::lang::headers::RESERVED_HEADERS;
pub use client::{Client, OutgoingRequest};
pub use headers::{AttemptHeaders, TEST_HEADER, USER_AGENT, is_reserved, masked, unix_now};
pub use outcome::{Attempt, Outcome, Response, SendError, Verdict, classify};
pub use prepare::{Draft, MASK, PrepareError, Prepared, prepare};
pub use read::{EXCERPT_LIMIT, READ_LIMIT};
pub use retry::{DEFAULT_JITTER, MAX_RETRY_AFTER, RetryPolicy, RetryPolicyError};
pub use retry_after::parse_retry_after;
pub use sign::{SECRET_PREFIX, Secret, SecretError, sign, verify};
pub use trust::{ExtraRoots, TrustError};
