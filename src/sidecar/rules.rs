//! The live rule set: the compiled rules the sidecar serves, swapped whole on each good reload.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::value::RawValue;

use crate::engine::RuleSet;
use crate::engine::load;
use crate::lang::diagnostic::render;
use crate::lang::{Diagnostic, Env, Webhook};

/// Why the rules could not be loaded: a path could not be read, or the rules have errors.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A rules path (file or directory) could not be read.
    #[error(transparent)]
    Read(#[from] load::ReadError),
    /// The rules have errors; `errors` holds every error diagnostic, in reading order.
    #[error("the rules have {} error{}", errors.len(), if errors.len() == 1 { "" } else { "s" })]
    Invalid {
        /// The error diagnostics (warnings are logged, not kept here).
        errors: Vec<Diagnostic>,
    },
}

impl RulesError {
    /// The text people read in logs and on `GET /v1/rules`: miette's report of each error
    /// without colour, then a count; or the read error.
    pub fn rendered(&self) -> String {
        match self {
            RulesError::Read(e) => e.to_string(),
            RulesError::Invalid { errors } => {
                let mut out: String = errors.iter().map(|d| render(d, false)).collect();
                let n = errors.len();
                out.push_str(&format!("{n} error{}", if n == 1 { "" } else { "s" }));
                out
            }
        }
    }
}

/// The rules being served and the history of their reloads.
///
/// Matching reads [`LiveRules::current`] once per request and keeps that `Arc` to the end, so a
/// request finishes on the rules it started with while later ones see the new set.
pub struct LiveRules {
    paths: Vec<PathBuf>,
    env: Arc<dyn Env + Send + Sync>,
    rules: ArcSwap<RuleSet>,
    state: Mutex<ReloadState>,
    /// Serialises reloads (watcher and SIGHUP), so versions follow the order of the swaps;
    /// holds what the served set was compiled from.
    reloading: Mutex<Inputs>,
}

/// What a rule set was compiled from: the files as read, and every environment variable the
/// rules read with the value it had. A reload that finds both the same keeps the served set
/// instead of compiling an equal one (no time, and no second set in memory).
#[derive(Debug)]
struct Inputs {
    read: load::Read,
    env: HashMap<String, Option<String>>,
}

impl Inputs {
    /// Whether compiling `read` in `env` would give the set these inputs gave.
    fn same(&self, read: &load::Read, env: &dyn Env) -> bool {
        self.read.same_as(read) && self.env.iter().all(|(name, value)| env.var(name) == *value)
    }
}

/// An environment that remembers each variable read through it and the value it had.
struct Recording<'a> {
    env: &'a dyn Env,
    read: Mutex<HashMap<String, Option<String>>>,
}

impl Env for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let value = self.env.var(name);
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), value.clone());
        value
    }
}

#[derive(Debug, Clone, Default)]
struct ReloadState {
    version: u64,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    reloads_ok: u64,
    reloads_failed: u64,
    watch: WatchState,
    /// The served set's webhooks as the admin API lists them, rendered once per set.
    listing: Arc<Listing>,
}

/// The webhooks of one rule set as `GET /v1/rules` lists them, as JSON: rendered by the first
/// request for the set (not while loading it, where it would add a tenth to the load), so
/// each request after it copies it instead of walking every webhook.
#[derive(Debug, Default)]
struct Listing {
    json: OnceLock<Option<Box<RawValue>>>,
}

impl Listing {
    /// The listing of `rules`, the set this listing belongs to.
    fn json(&self, rules: &RuleSet) -> Option<&RawValue> {
        self.json.get_or_init(|| Listing::render(rules)).as_deref()
    }

    fn render(rules: &RuleSet) -> Option<Box<RawValue>> {
        // Straight from the webhooks, one entry at a time, with no list of entries in between.
        struct Entries<'a>(&'a RuleSet);
        impl serde::Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.webhooks().iter().map(webhook_status))
            }
        }
        serde_json::value::to_raw_value(&Entries(rules)).ok()
    }

    /// Whether the listing has been rendered.
    #[cfg(test)]
    fn rendered(&self) -> bool {
        self.json.get().is_some()
    }
}

/// One webhook's entry; its line is a binary search in its file's line index, built once.
fn webhook_status(w: &Webhook) -> WebhookStatus {
    WebhookStatus {
        name: w.name.clone(),
        file: w.source.name.clone(),
        line: w.source.line_column(w.span.start).0,
        events: w.events.kinds().map(|k| k.wire_name()).collect(),
        disabled: w.disabled,
        method: w.request.method.as_http(),
        url: w.request.url.source.clone(),
        conditions: w.conditions.iter().map(|c| c.source.clone()).collect(),
    }
}

/// Whether the rules folders are watched for changes (see [`LiveRules::watch`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchState {
    /// No watcher runs: changes are not seen (SIGHUP is not handled either).
    #[default]
    Off,
    /// Every rules folder is watched.
    Watching,
    /// A rules folder is gone (or could not be watched): the rules loaded last keep serving,
    /// and the folder is looked for again, with a backoff, and watched when it is back.
    Missing,
    /// The OS watcher could not start (such as inotify's limit): only SIGHUP reloads.
    Failed,
}

/// The served set's numbers, cheap to read (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulesCounts {
    /// See [`RulesStatus::version`].
    pub version: u64,
    /// Webhooks in the served set.
    pub webhooks: usize,
    /// See [`RulesStatus::reloads_ok`].
    pub reloads_ok: u64,
    /// See [`RulesStatus::reloads_failed`].
    pub reloads_failed: u64,
    /// See [`RulesStatus::watcher`].
    pub watcher: WatchState,
}

/// What `GET /v1/rules` shows: the rules being served and how the last reloads went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RulesStatus {
    /// 1 for the rules loaded at start, plus one per successful reload.
    pub version: u64,
    /// A short hash of the source files' names and contents.
    pub hash: String,
    /// The rule files the served set came from.
    pub files: Vec<String>,
    /// When the served set was compiled, RFC 3339 in UTC.
    pub loaded_at: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    /// Every webhook of the served set, disabled ones included.
    pub webhooks: Vec<WebhookStatus>,
    /// The rendered diagnostics of the last reload, when it failed; cleared by a good reload.
    pub last_error: Option<String>,
    /// When the last reload failed, RFC 3339 in UTC.
    pub last_error_at: Option<String>,
    /// Successful reloads since start.
    pub reloads_ok: u64,
    /// Failed reloads since start.
    pub reloads_failed: u64,
    /// Whether changes to the rules folders are seen.
    pub watcher: WatchState,
}

/// [`RulesStatus`] with the webhooks as JSON already rendered (the same fields, in order).
#[derive(serde::Serialize)]
struct RulesStatusJson<'a> {
    version: u64,
    hash: &'a str,
    files: &'a [String],
    loaded_at: String,
    loaded_at_ms: u64,
    webhooks: &'a RawValue,
    last_error: Option<&'a str>,
    last_error_at: Option<String>,
    reloads_ok: u64,
    reloads_failed: u64,
    watcher: WatchState,
}

/// One webhook as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookStatus {
    /// Its name.
    pub name: String,
    /// The file it is written in.
    pub file: String,
    /// The line its name is on, from 1.
    pub line: usize,
    /// The wire names of the events that fire it: `conversion`, `refund`, `event3`.
    pub events: Vec<String>,
    /// Compiled but never fired.
    pub disabled: bool,
    /// `POST` or `GET`.
    pub method: &'static str,
    /// The URL template as written, tokens included.
    pub url: String,
    /// Its `when` clauses as written, all of which must hold.
    pub conditions: Vec<String>,
}

impl LiveRules {
    /// Loads the rules at start. An error here is fatal to the caller: it gets the diagnostics
    /// (see [`RulesError::rendered`]) and there is no previous set to fall back on.
    pub fn load(
        paths: Vec<PathBuf>,
        env: Arc<dyn Env + Send + Sync>,
    ) -> Result<LiveRules, RulesError> {
        let compiled = compile(load::read(&paths)?, &paths, &*env);
        super::memory::give_back(); // the syntax trees, and the set itself on an error
        let (rules, inputs) = compiled?;
        tracing::info!(
            webhooks = rules.webhooks().len(),
            files = rules.files.len(),
            hash = %rules.hash,
            "rules loaded"
        );
        Ok(LiveRules {
            paths,
            env,
            rules: ArcSwap::from_pointee(rules),
            state: Mutex::new(ReloadState {
                version: 1,
                ..ReloadState::default()
            }),
            reloading: Mutex::new(inputs),
        })
    }

    /// The paths the rules are read from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The rules to match a request against; keep the `Arc` for the whole request.
    pub fn current(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// The version of the served set: 1 at start, plus one per successful reload.
    pub fn version(&self) -> u64 {
        self.state().version
    }

    /// Recompiles the whole rules directory. On success the new set replaces the old one at
    /// once; on error the old set keeps serving and the rendered diagnostics are recorded (see
    /// [`LiveRules::status`]) and logged. Blocking: reads files.
    pub fn reload(&self) -> Result<(), RulesError> {
        let mut inputs = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let compiled = load::read(&self.paths)
            .map_err(RulesError::from)
            .and_then(|read| {
                if inputs.same(&read, &*self.env) {
                    return Ok(None);
                }
                compile(read, &self.paths, &*self.env).map(Some)
            });
        let freed_trees = !matches!(compiled, Ok(None));
        match compiled {
            Ok(compiled) => {
                let unchanged = compiled.is_none();
                // Swap and bump under the state lock so a status never pairs a set with
                // another set's version (or listing).
                let mut state = self.state();
                if let Some((rules, read)) = compiled {
                    self.rules.store(Arc::new(rules));
                    state.listing = Arc::default();
                    *inputs = read;
                }
                state.version += 1;
                state.reloads_ok += 1;
                state.last_error = None;
                state.last_error_at = None;
                let rules = self.current();
                tracing::info!(
                    version = state.version,
                    webhooks = rules.webhooks().len(),
                    hash = %rules.hash,
                    unchanged,
                    "rules reloaded"
                );
                drop(state);
                drop(rules);
                if freed_trees {
                    // The syntax trees, and the old set unless a request still holds it.
                    super::memory::give_back();
                }
                Ok(())
            }
            Err(error) => {
                let rendered = error.rendered();
                let mut state = self.state();
                state.reloads_failed += 1;
                state.last_error = Some(rendered.clone());
                state.last_error_at = Some(SystemTime::now());
                tracing::error!(
                    version = state.version,
                    "rules not reloaded, still serving version {}:\n{rendered}",
                    state.version
                );
                drop(state);
                super::memory::give_back(); // the syntax trees and the half-built set
                Err(error)
            }
        }
    }

    /// A snapshot for the admin API, every webhook's entry built anew: the admin API itself
    /// answers with [`LiveRules::status_json`].
    pub fn status(&self) -> RulesStatus {
        let (state, rules) = self.snapshot();
        RulesStatus {
            version: state.version,
            hash: rules.hash.clone(),
            files: rules.files.clone(),
            loaded_at: rfc3339(rules.loaded_at),
            loaded_at_ms: unix_ms(rules.loaded_at),
            webhooks: rules.webhooks().iter().map(webhook_status).collect(),
            last_error: state.last_error,
            last_error_at: state.last_error_at.map(rfc3339),
            reloads_ok: state.reloads_ok,
            reloads_failed: state.reloads_failed,
            watcher: state.watch,
        }
    }

    /// [`LiveRules::status`] as JSON, what `GET /v1/rules` answers: the webhooks' part is
    /// rendered once per rule set, so this costs a copy of it, not a walk over the webhooks.
    pub fn status_json(&self) -> String {
        let (state, rules) = self.snapshot();
        let empty = RawValue::from_string("[]".to_owned()).expect("valid JSON");
        let status = RulesStatusJson {
            version: state.version,
            hash: &rules.hash,
            files: &rules.files,
            loaded_at: rfc3339(rules.loaded_at),
            loaded_at_ms: unix_ms(rules.loaded_at),
            webhooks: state.listing.json(&rules).unwrap_or(&empty),
            last_error: state.last_error.as_deref(),
            last_error_at: state.last_error_at.map(rfc3339),
            reloads_ok: state.reloads_ok,
            reloads_failed: state.reloads_failed,
            watcher: state.watch,
        };
        serde_json::to_string(&status).unwrap_or_default()
    }

    /// The version, counts and watcher state, without the webhooks' list (for `/metrics`).
    pub fn counts(&self) -> RulesCounts {
        let (state, rules) = self.snapshot();
        RulesCounts {
            version: state.version,
            webhooks: rules.webhooks().len(),
            reloads_ok: state.reloads_ok,
            reloads_failed: state.reloads_failed,
            watcher: state.watch,
        }
    }

    /// Whether the rules folders are watched.
    pub fn watch_state(&self) -> WatchState {
        self.state().watch
    }

    pub(super) fn set_watch_state(&self, watch: WatchState) {
        self.state().watch = watch;
    }

    /// The state and the set it describes, read together.
    fn snapshot(&self) -> (ReloadState, Arc<RuleSet>) {
        let state = self.state();
        (state.clone(), self.current())
    }

    fn state(&self) -> MutexGuard<'_, ReloadState> {
        // The state is plain counters: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRules")
            .field("paths", &self.paths)
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

/// Compiles rules read from `paths`; warnings are logged, errors returned. With the set, what
/// it was compiled from.
fn compile(
    read: load::Read,
    paths: &[PathBuf],
    env: &dyn Env,
) -> Result<(RuleSet, Inputs), RulesError> {
    let recording = Recording {
        env,
        read: Mutex::default(),
    };
    let loaded = load::compile(&read, paths, &recording);
    for d in loaded.compiled.diagnostics.iter().filter(|d| !d.is_error()) {
        let (line, column) = d.line_column();
        tracing::warn!(code = d.code.as_str(), file = %d.source.name, line, column, "{}", d.message);
    }
    let rules = loaded
        .into_rule_set()
        .map_err(|diagnostics| RulesError::Invalid {
            errors: diagnostics.into_iter().filter(|d| d.is_error()).collect(),
        })?;
    let env = recording
        .read
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok((rules, Inputs { read, env }))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `2025-01-31T12:34:56.789Z`.
fn rfc3339(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let (secs, millis) = (ms / 1000, ms % 1000);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::lang::SourceFile;
    use crate::lang::diagnostic::tests::LINE_INDEXES_BUILT;

    /// Listing N webhooks of a file looks each line up in one index built once, not by
    /// counting the lines before each webhook (quadratic: 13 s for 10,000 webhooks).
    #[test]
    fn listing_webhooks_builds_one_line_index_per_file() {
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!(
                "# {i}\nwebhook w{i} {{\n  on conversion\n  post \"https://x.test/{i}\"\n}}\n"
            ));
        }
        let sources = [Arc::new(SourceFile::new("big.whc", text))];
        let compiled = crate::lang::compile(&sources, &HashMap::new());
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let rules = RuleSet::new(compiled.webhooks, &sources);
        let before = LINE_INDEXES_BUILT.with(std::cell::Cell::get);
        let listing = Listing::default();
        let json = listing.json(&rules).expect("rendered");
        assert_eq!(LINE_INDEXES_BUILT.with(std::cell::Cell::get) - before, 1);
        let json: serde_json::Value = serde_json::from_str(json.get()).expect("JSON");
        let entries = json.as_array().expect("a list");
        assert_eq!(entries.len(), 2000);
        for (i, w) in entries.iter().enumerate() {
            assert_eq!(w["line"], 5 * i + 2, "{w}");
        }
    }

    /// Loading (or reloading) a set does not render its listing: the first `GET /v1/rules`
    /// does, once, and lists the set it is served with.
    #[test]
    fn the_listing_is_rendered_by_the_first_request_not_by_the_load() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let write = |n: usize| {
            let text: String = (0..n)
                .map(|i| {
                    format!("webhook w{i} {{\n  on conversion\n  post \"https://x.test/{i}\"\n}}\n")
                })
                .collect();
            std::fs::write(dir.path().join("a.whc"), text).expect("written");
        };
        write(3);
        let env: Arc<dyn Env + Send + Sync> = Arc::new(HashMap::<String, String>::new());
        let live = LiveRules::load(vec![dir.path().to_owned()], env).expect("loads");
        let listed = |live: &LiveRules| {
            let status: serde_json::Value =
                serde_json::from_str(&live.status_json()).expect("JSON");
            status["webhooks"].as_array().expect("a list").len()
        };
        assert!(!live.state().listing.rendered(), "rendered by the load");
        assert_eq!(listed(&live), 3);
        assert!(live.state().listing.rendered());
        write(5);
        live.reload().expect("reloads");
        assert!(!live.state().listing.rendered(), "rendered by the reload");
        assert_eq!(listed(&live), 5);
        assert_eq!(live.status().webhooks.len(), 5);
    }

    #[test]
    fn rfc3339_formats_utc_with_millis() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000 is a leap year
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }
}
