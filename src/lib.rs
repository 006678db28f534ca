//! whc: webhook rules for a click tracker, compiled into fast predicates and served by a sidecar.
#![deny(unsafe_code)] // allowed in one place: `sidecar::memory`

pub mod cli;
pub mod deliver;
pub mod engine;
pub mod event;
pub mod lang;
pub mod outbox;
pub mod sidecar;
pub mod source;
pub mod store;
