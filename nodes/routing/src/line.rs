//! The waiting line of one queue: calls ordered best first.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Millis;
use std::ops::Bound;

use crate::call::{CallKey, VULNERABLE_RANK};
use crate::skills::{Requirement, SkillSet};

/// Most informants remembered as having declined one call.
pub const MAX_DECLINED_BY: usize = 8;

/// How long an informant who declined a call is passed over for it. After
/// that the call may come back to them: a small team must never leave a
/// caller waiting for good because everyone declined once.
pub const DECLINE_COOLOFF_MS: Millis = 10_000;

#[derive(Clone, Debug)]
pub struct LineEntry {
    pub call_id: Arc<str>,
    /// What an informant needs for this call now (queue skills after
    /// relaxation, language, listening skill for vulnerable callers).
    pub requirement: Requirement,
    /// Held for a proposal or offered: not proposed to anyone else.
    pub busy: bool,
    /// Informants who declined this call, with when, oldest first.
    pub declined_by: Vec<(Arc<str>, Millis)>,
}

impl LineEntry {
    pub fn new(call_id: Arc<str>, requirement: Requirement) -> Self {
        Self { call_id, requirement, busy: false, declined_by: Vec::new() }
    }

    /// Whether `informant_id` with `skills` may be proposed this call at
    /// `now`.
    pub fn suits(&self, informant_id: &str, skills: &SkillSet, now: Millis) -> bool {
        !self.busy && skills.meets(&self.requirement) && !self.passes_over(informant_id, now)
    }

    /// Whether the informant declined this call less than the cool-off ago.
    pub fn passes_over(&self, informant_id: &str, now: Millis) -> bool {
        self.declined_by
            .iter()
            .any(|(d, at)| d.as_ref() == informant_id && now.saturating_sub(*at) < DECLINE_COOLOFF_MS)
    }

    /// Informants passed over for this call at `now`.
    pub fn passed_over(&self, now: Millis) -> Vec<Arc<str>> {
        self.declined_by
            .iter()
            .filter(|(_, at)| now.saturating_sub(*at) < DECLINE_COOLOFF_MS)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Forgets declines past their cool-off; true if any was forgotten.
    pub fn forget_old_declines(&mut self, now: Millis) -> bool {
        let before = self.declined_by.len();
        self.declined_by.retain(|(_, at)| now.saturating_sub(*at) < DECLINE_COOLOFF_MS);
        self.declined_by.len() != before
    }

    /// Remembers a decline, forgetting the oldest past the bound.
    pub fn remember_decline(&mut self, informant_id: Arc<str>, now: Millis) {
        self.declined_by.retain(|(d, _)| *d != informant_id);
        if self.declined_by.len() >= MAX_DECLINED_BY {
            self.declined_by.remove(0);
        }
        self.declined_by.push((informant_id, now));
    }
}

/// Index of a key's rank in `WaitingLine::per_rank`.
fn rank_slot(key: &CallKey) -> usize {
    usize::from(key.rank.min(VULNERABLE_RANK))
}

/// Calls in the order they are served: priority, then arrival.
#[derive(Clone, Debug, Default)]
pub struct WaitingLine {
    entries: BTreeMap<CallKey, LineEntry>,
    /// Calls in line per rank, so that a position costs no scan in the
    /// usual case (a call at the back of its rank).
    per_rank: [u32; VULNERABLE_RANK as usize + 1],
}

impl WaitingLine {
    pub fn insert(&mut self, key: CallKey, entry: LineEntry) {
        if self.entries.insert(key, entry).is_none() {
            self.per_rank[rank_slot(&key)] += 1;
        }
    }

    pub fn remove(&mut self, key: &CallKey) -> Option<LineEntry> {
        let removed = self.entries.remove(key);
        if removed.is_some() {
            self.per_rank[rank_slot(key)] -= 1;
        }
        removed
    }

    pub fn get(&self, key: &CallKey) -> Option<&LineEntry> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &CallKey) -> Option<&mut LineEntry> {
        self.entries.get_mut(key)
    }

    /// The best call this informant may be proposed now: the first in line
    /// that it suits. Stops at the first match, so the cost is the number of
    /// calls it passes over.
    pub fn best_for(&self, informant_id: &str, skills: &SkillSet, now: Millis) -> Option<CallKey> {
        self.entries.iter().find(|(_, entry)| entry.suits(informant_id, skills, now)).map(|(key, _)| *key)
    }

    /// 1-based place in line of the call with `key` (every call in line
    /// before it counts, held or offered ones too). Calls of higher rank are
    /// counted per rank; within its own rank, a call at the back (the usual
    /// case) costs one lookup, and only one further forward is counted.
    pub fn position(&self, key: &CallKey) -> u32 {
        let rank = rank_slot(key);
        let higher: u32 = self.per_rank[rank + 1..].iter().sum();
        let last_of_rank = self
            .entries
            .range((Bound::Excluded(*key), Bound::Unbounded))
            .next()
            .is_none_or(|(next, _)| next.rank != key.rank);
        let same_before = if last_of_rank {
            self.per_rank[rank] - u32::from(self.entries.contains_key(key))
        } else {
            let first_of_rank = CallKey { rank: key.rank, arrived_ms: 0, seq: 0 };
            u32::try_from(self.entries.range(first_of_rank..*key).count()).unwrap_or(u32::MAX)
        };
        higher + same_before + 1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&CallKey, &LineEntry)> {
        self.entries.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &CallKey> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rank: u8, arrived_ms: u64) -> CallKey {
        CallKey { rank, arrived_ms, seq: arrived_ms }
    }

    #[test]
    fn best_for_skips_busy_unsuited_and_declined_calls() {
        let mut line = WaitingLine::default();
        let needs_en = Requirement::new([("q", 1), ("lang:en", 1)]);
        let plain = Requirement::new([("q", 1)]);
        line.insert(key(5, 1), LineEntry::new("en".into(), needs_en));
        line.insert(key(5, 2), LineEntry::new("busy".into(), plain.clone()));
        line.get_mut(&key(5, 2)).expect("present").busy = true;
        line.insert(key(5, 3), LineEntry::new("declined".into(), plain.clone()));
        line.get_mut(&key(5, 3)).expect("present").remember_decline("ana".into(), 1_000);
        line.insert(key(1, 0), LineEntry::new("low".into(), plain));
        let skills = SkillSet::new([("q", 3)]);
        assert_eq!(line.best_for("ana", &skills, 1_000), Some(key(1, 0)));
        assert_eq!(line.best_for("bob", &skills, 1_000), Some(key(5, 3)));
        // After the cool-off, the call may go back to ana.
        assert_eq!(line.best_for("ana", &skills, 1_000 + DECLINE_COOLOFF_MS), Some(key(5, 3)));
        assert_eq!(line.position(&key(1, 0)), 4);
    }

    #[test]
    fn positions_count_every_call_ahead() {
        let mut line = WaitingLine::default();
        let keys = [key(1, 5), key(3, 9), key(1, 2), key(VULNERABLE_RANK, 100), key(1, 7), key(3, 1)];
        for k in keys {
            line.insert(k, LineEntry::new("c".into(), Requirement::default()));
        }
        let mut sorted = keys.to_vec();
        sorted.sort();
        for (i, k) in sorted.iter().enumerate() {
            assert_eq!(line.position(k), i as u32 + 1, "{k:?}");
        }
        // A key not in line: where it would go.
        assert_eq!(line.position(&key(1, 6)), 6);
        assert_eq!(line.position(&key(0, 0)), 7);
        line.remove(&key(3, 1));
        assert_eq!(line.position(&key(1, 2)), 3);
    }

    #[test]
    fn declines_are_bounded() {
        let mut entry = LineEntry::new("c".into(), Requirement::default());
        for i in 0..20 {
            entry.remember_decline(format!("i{i}").into(), i);
        }
        assert_eq!(entry.declined_by.len(), MAX_DECLINED_BY);
        assert_eq!(entry.declined_by[0].0.as_ref(), "i12");
        assert!(entry.forget_old_declines(DECLINE_COOLOFF_MS + 12));
        assert_eq!(entry.declined_by.len(), 7);
    }
}
