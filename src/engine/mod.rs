//! A compiled rule set: webhooks indexed by event kind, matched against events.

pub mod explain;
pub mod load;

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::event::{Event, EventKind};
use crate::lang::{SourceFile, Webhook};

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
    /// For each event kind, the enabled webhooks listening to it, so that matching only looks at
    /// candidates.
    by_kind: [Vec<u32>; KINDS],
    /// A short hash of the source files' names and contents.
    pub hash: String,
    /// The files the rules came from.
    pub files: Vec<String>,
    /// When the rules were compiled.
    pub loaded_at: SystemTime,
}

impl RuleSet {
    /// Indexes compiled webhooks.
    pub fn new(webhooks: Vec<Webhook>, sources: &[Arc<SourceFile>]) -> RuleSet {
        let mut by_kind: [Vec<u32>; KINDS] = Default::default();
        for (i, w) in webhooks.iter().enumerate() {
            if w.disabled {
                continue;
            }
            for kind in w.events.kinds() {
                by_kind[kind_slot(kind)].push(i as u32);
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
        }
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
        self.by_kind[kind_slot(event.kind)]
            .iter()
            .map(|&i| &self.webhooks[i as usize])
            .filter(move |w| w.conditions.iter().all(|c| c.predicate.eval(event)))
    }
}
