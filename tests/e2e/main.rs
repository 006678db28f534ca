//! End-to-end tests: the sidecar (in-process, or the real binary for the crash test) against
//! real hyper servers on loopback ports. No mock of HTTP or of the store.

mod access;
mod admin;
mod browser;
mod client;
mod console;
mod crash;
mod delivery;
mod fanout;
mod fleet;
mod ingest;
mod listeners;
mod proxy;
mod reload;
mod sources;
mod store;
mod support;
mod tls;
