//! A compiled rule set: webhooks indexed by event kind, matched against events.

pub mod explain;
mod index;
pub mod load;

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::event::{Event, EventKind};
use crate::lang::{SourceFile, Webhook};
use crate::source::Source;

/// Number of distinct event kinds: conversion, refund and ten custom events.
const KINDS: usize = 12;

fn kind_slot(kind: EventKind) -> usize {
    kind.bit().trailing_zeros() as usize
}

/// The webhooks of one rules directory, ready to match events. Immutable once built: a reload
/// builds a new one and swaps it in whole.
#[derive(Debug)]
pub struct RuleSet {
    webhooks: Vec<Webhook>,
    /// For each event kind, the enabled webhooks listening to it, keyed by an exact-text
    /// condition where they have one, so that matching only looks at candidates.
    by_kind: [index::Bucket; KINDS],
    /// A short hash of the source files' names and contents.
    pub hash: String,
    /// The files the rules came from.
    pub files: Vec<String>,
    /// When the rules were compiled.
    pub loaded_at: SystemTime,
    /// The tracker sources, each on its own route.
    sources: Vec<Source>,
}

impl RuleSet {
    /// Indexes compiled webhooks.
    pub fn new(webhooks: Vec<Webhook>, sources: &[Arc<SourceFile>]) -> RuleSet {
        let mut by_kind: [index::Bucket; KINDS] = Default::default();
        for (i, w) in webhooks.iter().enumerate() {
            if w.disabled {
                continue;
            }
            for kind in w.events.kinds() {
                by_kind[kind_slot(kind)].insert(i as u32, w);
            }
        }
        let mut hasher = Sha256::new();
        for s in sources {
            hasher.update(s.name.as_bytes());
            hasher.update([0]);
            hasher.update(s.text.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        RuleSet {
            webhooks,
            by_kind,
            hash,
            files: sources.iter().map(|s| s.name.clone()).collect(),
            loaded_at: SystemTime::now(),
            sources: Vec::new(),
        }
    }

    /// The same rules with these tracker sources.
    pub fn with_sources(mut self, sources: Vec<Source>) -> RuleSet {
        self.sources = sources;
        self
    }

    /// Every tracker source.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The source on a route's path.
    pub fn source_at(&self, path: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.path == path)
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// An empty rule set (nothing fires).
    pub fn empty() -> RuleSet {
        RuleSet::new(Vec::new(), &[])
    }

    /// Every webhook, disabled ones included, in file then source order.
    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// A webhook by name.
    pub fn get(&self, name: &str) -> Option<&Webhook> {
        self.webhooks.iter().find(|w| w.name == name)
    }

    /// The enabled webhooks that fire for an event, in file then source order.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Webhook> + 'a {
        let ids = self.by_kind[kind_slot(event.kind)].candidates(event);
        (0..ids.len())
            .map(move |k| &self.webhooks[ids[k] as usize])
            .filter(move |w| w.plan.holds(event))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::RuleSet;
    use crate::event::Event;
    use crate::lang::{self, SourceFile};

    /// The index must pick exactly the webhooks a scan of every webhook would.
    #[test]
    fn index_agrees_with_a_full_scan() {
        let mut src = String::new();
        for (i, source) in ["facebook", "google", "tiktok", "facebook"]
            .iter()
            .enumerate()
        {
            src.push_str(&format!(
                "webhook k{i} {{ on conversion, event 2\n when first.utm_source equals \"{source}\"\n when revenue > {i}\n post \"https://x.test/{i}\" }}\n"
            ));
        }
        src.push_str(
            "webhook m { on conversion\n when linkId == 7\n post \"https://x.test/m\" }\n",
        );
        src.push_str("webhook u { on conversion\n when last.country equals \"us\" or revenue > 100\n post \"https://x.test/u\" }\n");
        src.push_str("webhook n { on conversion\n when utm_source not equals \"google\"\n post \"https://x.test/n\" }\n");
        // A key inside a `when` joined by `and`, and one beside an `or` (no key).
        src.push_str("webhook a { on conversion\n when revenue > 1 and (last.country equals \"us\" and first.utm_source equals \"google\")\n post \"https://x.test/a\" }\n");
        src.push_str("webhook o { on conversion\n when revenue > 1000 or first.utm_source equals \"google\"\n post \"https://x.test/o\" }\n");
        // Two key fields and no unkeyed webhook: candidates from both, in source order.
        for (name, click, value) in [
            ("p0", "last", "x"),
            ("p1", "first", "y"),
            ("p2", "last", "x"),
        ] {
            src.push_str(&format!(
                "webhook {name} {{ on event 4\n when {click}.utm_source equals \"{value}\"\n post \"https://x.test/p\" }}\n"
            ));
        }
        let compiled = lang::compile(&[Arc::new(SourceFile::new("t.whc", src))], &HashMap::new());
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let rules = RuleSet::new(compiled.webhooks, &[]);
        let events = [
            r#"{"type":"conversion","revenue":5,"firstClick":{"utm_source":"facebook"},"lastClick":{"utm_source":"google","country":"US"}}"#,
            r#"{"type":"conversion","revenue":150,"linkId":7,"firstClick":{"utm_source":"tiktok"}}"#,
            r#"{"type":"event2","revenue":2,"firstClick":{"utm_source":"google"}}"#,
            r#"{"type":"conversion"}"#,
            r#"{"type":"refund","firstClick":{"utm_source":"facebook"}}"#,
            r#"{"type":"event4","firstClick":{"utm_source":"y"},"lastClick":{"utm_source":"x"}}"#,
            r#"{"type":"event4","firstClick":{"utm_source":"x"},"lastClick":{"utm_source":"x"}}"#,
            r#"{"type":"event4","firstClick":{"utm_source":"y"}}"#,
            r#"{"type":"conversion","revenue":5,"firstClick":{"utm_source":"google"},"lastClick":{"country":"US"}}"#,
            r#"{"type":"conversion","revenue":5000,"firstClick":{"utm_source":"tiktok"},"lastClick":{"country":"US"}}"#,
        ];
        for text in events {
            let event = Event::from_json_str(text).unwrap();
            let indexed: Vec<&str> = rules.matching(&event).map(|w| w.name.as_str()).collect();
            let scanned: Vec<&str> = rules
                .webhooks()
                .iter()
                .filter(|w| !w.disabled && w.fires_for(&event))
                .map(|w| w.name.as_str())
                .collect();
            assert_eq!(indexed, scanned, "{text}");
            if text.contains(r#""y"},"lastClick":{"utm_source":"x""#) {
                assert_eq!(indexed, ["p0", "p1", "p2"]);
            }
            // `a` is keyed by the test inside its `and`: no candidate without that value.
            let a = rules.webhooks().iter().position(|w| w.name == "a").unwrap() as u32;
            let candidates = rules.by_kind[super::kind_slot(event.kind)].candidates(&event);
            let google =
                event.first_click.get(crate::event::ClickField::UtmSource) == Some("google");
            assert_eq!(
                candidates.contains(&a),
                google && event.kind == crate::event::EventKind::Conversion,
                "{text}"
            );
        }
    }
}
