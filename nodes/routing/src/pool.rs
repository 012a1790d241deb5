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

#[derive(Clone, Debug)]
pub struct AvailablePool {
    selection: Selection,
    /// The queue's base requirement, for the most-proficient rank.
    base: Requirement,
    order: BTreeMap<PoolKey, ()>,
    entries: HashMap<Arc<str>, (PoolKey, PoolEntry)>,
}

impl AvailablePool {
    pub fn new(selection: Selection, base: Requirement) -> Self {
        Self { selection, base, order: BTreeMap::new(), entries: HashMap::new() }
    }

    /// Changes the selection rule or base requirement, re-sorting the pool.
    pub fn reconfigure(&mut self, selection: Selection, base: Requirement) {
        let entries: Vec<PoolEntry> = self.entries.drain().map(|(_, (_, e))| e).collect();
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

    /// Adds or replaces an informant.
    pub fn insert(&mut self, entry: PoolEntry) {
        self.remove(&entry.informant_id);
        let key = self.key_of(&entry);
        self.order.insert(key.clone(), ());
        self.entries.insert(entry.informant_id.clone(), (key, entry));
    }

    pub fn remove(&mut self, informant_id: &str) -> Option<PoolEntry> {
        let (key, entry) = self.entries.remove(informant_id)?;
        self.order.remove(&key);
        Some(entry)
    }

    pub fn get(&self, informant_id: &str) -> Option<&PoolEntry> {
        self.entries.get(informant_id).map(|(_, e)| e)
    }

    /// The preferred informant meeting `requirement`, not in `excluded`.
    /// Stops at the first match: with most informants qualified this is a
    /// logarithmic lookup, whatever the pool's size.
    pub fn best_for(&self, requirement: &Requirement, excluded: &[Arc<str>]) -> Option<&PoolEntry> {
        self.order
            .keys()
            .filter_map(|(_, _, id)| self.entries.get(id).map(|(_, e)| e))
            .find(|e| e.skills.meets(requirement) && !excluded.contains(&e.informant_id))
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
        let mut pool = AvailablePool::new(selection, Requirement::new([("q", 1)]));
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
    fn reinserting_moves_to_the_back() {
        let mut pool = pool(Selection::LongestIdle);
        pool.insert(entry("c", 3, 40, 500));
        assert_eq!(best(&pool, 1), Some("b"));
        assert_eq!(pool.len(), 3);
    }
}
