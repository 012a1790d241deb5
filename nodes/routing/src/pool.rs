//! The informants available to one queue, in the order the queue's
//! selection rule prefers them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::Millis;
use crate::config::Selection;
use crate::skills::{Requirement, SkillSet};

/// What a queue knows of an available informant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEntry {
    pub informant_id: Arc<str>,
    pub skills: SkillSet,
    /// When the informant last became available.
    pub idle_since_ms: Millis,
    /// Share of logged-in time spent on calls, in thousandths.
    pub occupancy_permille: u16,
    /// The informant's availability generation this entry answers to.
    pub generation: u64,
}

/// Order key: selection-specific rank, then longest idle, then id.
type PoolKey = (u32, Millis, Arc<str>);

/// How many informants `best_for` looks at in preference order before it
/// turns to the signature groups.
const DIRECT_LOOKS: usize = 2;

/// Available informants, in the queue's preference order, and grouped by
/// *signature*: the part of their skills that can matter to this queue's
/// calls (the queue's skills, languages, the listening skill).
///
/// Finding the preferred informant for a call first looks at the few most
/// preferred informants (usually the first one qualifies); when none of
/// them does — say every long-idle informant lacks the call's language —
/// it looks at the head of each group whose signature meets the call's
/// requirement, since within a group every informant meets the same
/// requirements. Either way the cost does not grow with the number of
/// informants, only with the number of distinct signatures (a handful in
/// practice).
#[derive(Clone, Debug)]
pub struct AvailablePool {
    selection: Selection,
    /// The queue's base requirement, for the most-proficient rank and for
    /// which skills matter.
    base: Requirement,
    listening_skill: Arc<str>,
    order: BTreeMap<PoolKey, ()>,
    groups: HashMap<SkillSet, BTreeMap<PoolKey, ()>>,
    entries: HashMap<Arc<str>, (SkillSet, PoolKey, PoolEntry)>,
}

impl AvailablePool {
    pub fn new(selection: Selection, base: Requirement, listening_skill: Arc<str>) -> Self {
        Self {
            selection,
            base,
            listening_skill,
            order: BTreeMap::new(),
            groups: HashMap::new(),
            entries: HashMap::new(),
        }
    }

    /// Changes the selection rule or base requirement, regrouping the pool.
    pub fn reconfigure(&mut self, selection: Selection, base: Requirement) {
        let entries: Vec<PoolEntry> = self.entries.drain().map(|(_, (_, _, e))| e).collect();
        self.groups.clear();
        self.order.clear();
        self.selection = selection;
        self.base = base;
        for entry in entries {
            self.insert(entry);
        }
    }

    fn key_of(&self, entry: &PoolEntry) -> PoolKey {
        let rank = match self.selection {
            Selection::LongestIdle => 0,
            // Higher score first: invert it so the map's order is ascending.
            Selection::MostProficient => u32::MAX - entry.skills.score(&self.base),
            Selection::LeastOccupied => u32::from(entry.occupancy_permille),
        };
        (rank, entry.idle_since_ms, entry.informant_id.clone())
    }

    fn signature_of(&self, skills: &SkillSet) -> SkillSet {
        skills.filtered(|name| {
            self.base.minimum(name).is_some() || name == self.listening_skill.as_ref() || name.starts_with("lang:")
        })
    }

    /// Adds or replaces an informant.
    pub fn insert(&mut self, entry: PoolEntry) {
        self.remove(&entry.informant_id);
        let key = self.key_of(&entry);
        let signature = self.signature_of(&entry.skills);
        self.groups.entry(signature.clone()).or_default().insert(key.clone(), ());
        self.order.insert(key.clone(), ());
        self.entries.insert(entry.informant_id.clone(), (signature, key, entry));
    }

    pub fn remove(&mut self, informant_id: &str) -> Option<PoolEntry> {
        let (signature, key, entry) = self.entries.remove(informant_id)?;
        self.order.remove(&key);
        if let Some(group) = self.groups.get_mut(&signature) {
            group.remove(&key);
            if group.is_empty() {
                self.groups.remove(&signature);
            }
        }
        Some(entry)
    }

    pub fn get(&self, informant_id: &str) -> Option<&PoolEntry> {
        self.entries.get(informant_id).map(|(_, _, e)| e)
    }

    /// The preferred informant meeting `requirement`, not in `excluded`:
    /// the best head among the groups whose signature meets it.
    pub fn best_for(&self, requirement: &Requirement, excluded: &[Arc<str>]) -> Option<&PoolEntry> {
        let direct = self
            .order
            .keys()
            .take(DIRECT_LOOKS)
            .filter_map(|(_, _, id)| self.get(id))
            .find(|e| e.skills.meets(requirement) && !excluded.contains(&e.informant_id));
        if direct.is_some() || self.order.len() <= DIRECT_LOOKS {
            return direct;
        }
        self.groups
            .iter()
            .filter(|(signature, _)| signature.meets(requirement))
            .filter_map(|(_, group)| group.keys().find(|(_, _, id)| !excluded.contains(id)))
            .min()
            .and_then(|(_, _, id)| self.get(id))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct signatures among available informants.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, prof: u8, idle_since_ms: Millis, occupancy_permille: u16) -> PoolEntry {
        PoolEntry {
            informant_id: id.into(),
            skills: SkillSet::new([("q", prof)]),
            idle_since_ms,
            occupancy_permille,
            generation: 1,
        }
    }

    fn pool(selection: Selection) -> AvailablePool {
        let mut pool = AvailablePool::new(selection, Requirement::new([("q", 1)]), "ecoute".into());
        pool.insert(entry("a", 2, 30, 100));
        pool.insert(entry("b", 5, 20, 900));
        pool.insert(entry("c", 3, 10, 500));
        pool
    }

    fn best(pool: &AvailablePool, min: u8) -> Option<&str> {
        pool.best_for(&Requirement::new([("q", min)]), &[]).map(|e| e.informant_id.as_ref())
    }

    #[test]
    fn longest_idle_first() {
        assert_eq!(best(&pool(Selection::LongestIdle), 1), Some("c"));
        assert_eq!(best(&pool(Selection::LongestIdle), 4), Some("b"));
        assert_eq!(best(&pool(Selection::LongestIdle), 6), None);
    }

    #[test]
    fn most_proficient_first() {
        assert_eq!(best(&pool(Selection::MostProficient), 1), Some("b"));
    }

    #[test]
    fn least_occupied_first() {
        assert_eq!(best(&pool(Selection::LeastOccupied), 1), Some("a"));
    }

    #[test]
    fn excluded_and_removed_are_skipped() {
        let mut pool = pool(Selection::LongestIdle);
        let excluded: Vec<Arc<str>> = vec!["c".into()];
        let req = Requirement::new([("q", 1)]);
        assert_eq!(pool.best_for(&req, &excluded).map(|e| e.informant_id.as_ref()), Some("b"));
        pool.remove("b");
        assert_eq!(pool.best_for(&req, &excluded).map(|e| e.informant_id.as_ref()), Some("a"));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn groups_follow_relevant_skills_only() {
        let mut pool = AvailablePool::new(Selection::LongestIdle, Requirement::new([("q", 1)]), "ecoute".into());
        let with = |id: &str, skills: Vec<(&str, u8)>, idle: Millis| PoolEntry {
            informant_id: id.into(),
            skills: SkillSet::new(skills),
            idle_since_ms: idle,
            occupancy_permille: 0,
            generation: 1,
        };
        // Irrelevant skills (other queues) do not split groups.
        pool.insert(with("a", vec![("q", 2), ("other", 5)], 10));
        pool.insert(with("b", vec![("q", 2), ("x", 1)], 20));
        pool.insert(with("c", vec![("q", 2), ("lang:en", 3)], 30));
        pool.insert(with("d", vec![("q", 2), ("ecoute", 3)], 40));
        assert_eq!(pool.groups(), 3);
        let english = Requirement::new([("q", 1), ("lang:en", 1)]);
        assert_eq!(pool.best_for(&english, &[]).map(|e| e.informant_id.as_ref()), Some("c"));
        let listening = Requirement::new([("q", 1), ("ecoute", 1)]);
        assert_eq!(pool.best_for(&listening, &[]).map(|e| e.informant_id.as_ref()), Some("d"));
        assert_eq!(pool.best_for(&Requirement::new([("q", 1)]), &[]).map(|e| e.informant_id.as_ref()), Some("a"));
        pool.remove("c");
        assert_eq!(pool.best_for(&english, &[]), None);
        assert_eq!(pool.groups(), 2);
    }

    #[test]
    fn reinserting_moves_to_the_back() {
        let mut pool = pool(Selection::LongestIdle);
        pool.insert(entry("c", 3, 40, 500));
        assert_eq!(best(&pool, 1), Some("b"));
        assert_eq!(pool.len(), 3);
    }
}
