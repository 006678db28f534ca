//! Delivery: everything about sending one request to a webhook.
//!
//! [`render`] turns a webhook and an event into a delivery; [`prepare`] turns a stored or
//! rendered delivery ([`Draft`]) into one attempt's [`OutgoingRequest`], headers and signature
//! included; [`Client::send`] makes the attempt under its deadline, after [`Slots::acquire`]
//! gave it a slot; [`record_for`] turns its [`Outcome`] into what the delivery log records,
//! the [`RetryPolicy`] saying when to try again. [`test::run`] is the Test button, shared by
//! `whc test` and the admin API. The dispatcher in `sidecar` owns the loop.

mod client;
mod failure;
mod headers;
mod limits;
mod outcome;
mod prepare;
mod read;
mod record;
mod render;
mod retry;
mod retry_after;
mod sign;
pub mod test;
mod trust;

pub use crate::lang::headers::RESERVED_HEADERS;
pub use client::{Client, Connector, MAX_URL_LEN, OutgoingRequest, Protocols, pooled};
pub use headers::{AttemptHeaders, TEST_HEADER, USER_AGENT, is_reserved, masked, unix_now};
pub use limits::{Limits, SlotPermit, Slots, Windows, endpoint_of};
pub use outcome::{Attempt, Outcome, Response, SendError, Verdict, classify};
pub use prepare::{Draft, MASK, PrepareError, Prepared, Purpose, prepare};
pub use read::{BodyEnd, EXCERPT_LIMIT};
pub use record::{Progress, record_for, unsendable};
pub use render::{envelope, new_body, render, stored_body};
pub use retry::{
    DEFAULT_JITTER, MAX_RETRY_AFTER, RetryPolicy, RetryPolicyError, format_duration, parse_duration,
};
pub use retry_after::parse_retry_after;
pub use sign::{SECRET_PREFIX, Secret, SecretError, sign, verify};
pub use trust::{ExtraRoots, TrustError};
