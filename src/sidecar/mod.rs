//! The sidecar: the live rule set with hot reload, and parsing of posted events.

pub mod ingest;
pub mod rules;
pub mod watch;

pub use ingest::{BodyError, IngestError, parse_events, read_limited};
pub use rules::{LiveRules, RulesStatus, WebhookStatus};
pub use watch::DEFAULT_DEBOUNCE;
