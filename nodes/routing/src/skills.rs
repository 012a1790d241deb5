//! Skills, proficiencies, and the requirement a call puts on an informant.

use std::sync::Arc;

/// The skills an informant holds, sorted by name for fast lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SkillSet {
    skills: Vec<(Arc<str>, u8)>,
}

impl SkillSet {
    /// Builds a set; a skill named twice keeps its highest proficiency.
    pub fn new<I, S>(skills: I) -> Self
    where
        I: IntoIterator<Item = (S, u8)>,
        S: Into<Arc<str>>,
    {
        let mut skills: Vec<(Arc<str>, u8)> = skills.into_iter().map(|(n, p)| (n.into(), p)).collect();
        skills.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        skills.dedup_by(|later, earlier| later.0 == earlier.0);
        Self { skills }
    }

    /// Proficiency in `name`, if the skill is held.
    pub fn proficiency(&self, name: &str) -> Option<u8> {
        self.skills.binary_search_by(|(n, _)| n.as_ref().cmp(name)).ok().map(|i| self.skills[i].1)
    }

    /// Whether every need of `requirement` is met.
    pub fn meets(&self, requirement: &Requirement) -> bool {
        requirement.needs.iter().all(|(name, min)| self.proficiency(name).is_some_and(|p| p >= *min))
    }

    /// Whether the informant holds every skill name of the requirement, at
    /// any proficiency. Such an informant belongs to the queue: relaxation
    /// may later lower the minimum to what it has.
    pub fn covers_names(&self, requirement: &Requirement) -> bool {
        requirement.needs.iter().all(|(name, _)| self.proficiency(name).is_some())
    }

    /// Sum of proficiencies in the requirement's skills (for the
    /// most-proficient selection).
    pub fn score(&self, requirement: &Requirement) -> u32 {
        requirement.needs.iter().filter_map(|(name, _)| self.proficiency(name)).map(u32::from).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.skills.iter().map(|(n, p)| (n.as_ref(), *p))
    }

    /// The skills whose names `keep` accepts (sharing the names, not
    /// copying them).
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> SkillSet {
        Self { skills: self.skills.iter().filter(|(n, _)| keep(n)).cloned().collect() }
    }

    pub fn len(&self) -> usize {
        self.skills.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }
}

/// Skills a call needs, each with a minimum proficiency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    needs: Vec<(Arc<str>, u8)>,
}

impl Requirement {
    /// Builds a requirement; a skill named twice keeps its highest minimum.
    pub fn new<I, S>(needs: I) -> Self
    where
        I: IntoIterator<Item = (S, u8)>,
        S: Into<Arc<str>>,
    {
        let mut needs: Vec<(Arc<str>, u8)> = needs.into_iter().map(|(n, p)| (n.into(), p)).collect();
        needs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        needs.dedup_by(|later, earlier| later.0 == earlier.0);
        Self { needs }
    }

    /// The requirement plus `name` at `min` (kept at the higher minimum if
    /// already there).
    pub fn with(mut self, name: impl Into<Arc<str>>, min: u8) -> Self {
        let name = name.into();
        match self.needs.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => self.needs[i].1 = self.needs[i].1.max(min),
            Err(i) => self.needs.insert(i, (name, min)),
        }
        self
    }

    /// The requirement with `name`'s minimum set to `min` if it is needed.
    pub fn relaxed(mut self, name: &str, min: u8) -> Self {
        if let Ok(i) = self.needs.binary_search_by(|(n, _)| n.as_ref().cmp(name)) {
            self.needs[i].1 = self.needs[i].1.min(min);
        }
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.needs.iter().map(|(n, p)| (n.as_ref(), *p))
    }

    pub fn minimum(&self, name: &str) -> Option<u8> {
        self.needs.binary_search_by(|(n, _)| n.as_ref().cmp(name)).ok().map(|i| self.needs[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meets_checks_every_minimum() {
        let skills = SkillSet::new([("logement", 4), ("lang:fr", 5)]);
        assert!(skills.meets(&Requirement::new([("logement", 3)])));
        assert!(skills.meets(&Requirement::new([("logement", 4), ("lang:fr", 1)])));
        assert!(!skills.meets(&Requirement::new([("logement", 5)])));
        assert!(!skills.meets(&Requirement::new([("logement", 1), ("ecoute", 1)])));
    }

    #[test]
    fn duplicates_keep_the_highest() {
        let skills = SkillSet::new([("a", 1), ("a", 4)]);
        assert_eq!(skills.proficiency("a"), Some(4));
        assert_eq!(skills.len(), 1);
        let req = Requirement::new([("a", 2), ("a", 3)]).with("a", 1);
        assert_eq!(req.minimum("a"), Some(3));
    }

    #[test]
    fn relaxing_lowers_only_named_skills() {
        let req = Requirement::new([("a", 4), ("b", 4)]).relaxed("a", 1).relaxed("c", 1);
        assert_eq!(req.minimum("a"), Some(1));
        assert_eq!(req.minimum("b"), Some(4));
        assert_eq!(req.minimum("c"), None);
    }
}
