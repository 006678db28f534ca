//! whc: webhook rules for a click tracker, compiled into fast predicates and served by a sidecar.
#![forbid(unsafe_code)]

pub mod deliver;
pub mod event;
