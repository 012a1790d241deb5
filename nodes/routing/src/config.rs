//! A queue's configuration as the routing rules see it, with its defaults
//! and its validation.

use std::sync::Arc;

use crate::skills::Requirement;
use crate::{MAX_PROFICIENCY, Millis};

/// How a queue chooses among several available informants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    LongestIdle,
    MostProficient,
    LeastOccupied,
}

/// A relaxation step: after `after_ms` of waiting, `skill`'s minimum drops
/// to `min_proficiency`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relaxation {
    pub after_ms: Millis,
    pub skill: Arc<str>,
    pub min_proficiency: u8,
}

/// After `after_ms` of waiting in this queue, a call moves to `queue_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub after_ms: Millis,
    pub queue_id: Arc<str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub id: Arc<str>,
    pub display_name: String,
    pub required: Requirement,
    pub service_level_target: f64,
    pub service_level_threshold_ms: Millis,
    pub max_waiting: u32,
    /// Zero: no limit.
    pub max_wait_ms: Millis,
    pub wrap_up_ms: Millis,
    pub offer_timeout_ms: Millis,
    pub max_missed_offers: u32,
    pub selection: Selection,
    /// Sorted by `after_ms`.
    pub relaxations: Vec<Relaxation>,
    pub overflow: Option<Overflow>,
}

impl QueueConfig {
    pub const DEFAULT_SERVICE_LEVEL_TARGET: f64 = 0.8;
    pub const DEFAULT_SERVICE_LEVEL_THRESHOLD_MS: Millis = 20_000;
    pub const DEFAULT_MAX_WAITING: u32 = 1_000;
    pub const LIMIT_MAX_WAITING: u32 = 100_000;
    pub const DEFAULT_OFFER_TIMEOUT_MS: Millis = 15_000;
    pub const DEFAULT_MAX_MISSED_OFFERS: u32 = 3;
    pub const MAX_REQUIRED_SKILLS: usize = 16;
    pub const MAX_RELAXATIONS: usize = 8;
    /// One day: longer durations are configuration mistakes.
    pub const LIMIT_DURATION_MS: Millis = 86_400_000;

    /// A configuration with the defaults and the given required skills.
    pub fn new(id: impl Into<Arc<str>>, required: Requirement) -> Self {
        Self {
            id: id.into(),
            display_name: String::new(),
            required,
            service_level_target: Self::DEFAULT_SERVICE_LEVEL_TARGET,
            service_level_threshold_ms: Self::DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
            max_waiting: Self::DEFAULT_MAX_WAITING,
            max_wait_ms: 0,
            wrap_up_ms: 0,
            offer_timeout_ms: Self::DEFAULT_OFFER_TIMEOUT_MS,
            max_missed_offers: Self::DEFAULT_MAX_MISSED_OFFERS,
            selection: Selection::LongestIdle,
            relaxations: Vec::new(),
            overflow: None,
        }
    }

    /// Checks what the node's wire validation cannot see field by field:
    /// bounds, relaxations that name required skills, overflow to itself.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.required.iter().count() == 0 {
            return err("required_skills", "at least one skill is required".into());
        }
        if self.required.iter().count() > Self::MAX_REQUIRED_SKILLS {
            return err("required_skills", format!("at most {} skills", Self::MAX_REQUIRED_SKILLS));
        }
        if self.required.iter().any(|(_, p)| p == 0 || p > MAX_PROFICIENCY) {
            return err("required_skills.proficiency", format!("must be 1 to {MAX_PROFICIENCY}"));
        }
        if !(self.service_level_target > 0.0 && self.service_level_target <= 1.0) {
            return err("service_level_target", "must be in (0, 1]".into());
        }
        if self.max_waiting == 0 || self.max_waiting > Self::LIMIT_MAX_WAITING {
            return err("max_waiting", format!("must be 1 to {}", Self::LIMIT_MAX_WAITING));
        }
        for (field, value) in [
            ("service_level_threshold_ms", self.service_level_threshold_ms),
            ("max_wait_ms", self.max_wait_ms),
            ("wrap_up_ms", self.wrap_up_ms),
            ("offer_timeout_ms", self.offer_timeout_ms),
        ] {
            if value > Self::LIMIT_DURATION_MS {
                return err(field, format!("at most {} ms", Self::LIMIT_DURATION_MS));
            }
        }
        if self.offer_timeout_ms == 0 {
            return err("offer_timeout_ms", "must be positive".into());
        }
        if self.max_missed_offers == 0 || self.max_missed_offers > 100 {
            return err("max_missed_offers", "must be 1 to 100".into());
        }
        if self.relaxations.len() > Self::MAX_RELAXATIONS {
            return err("relaxations", format!("at most {}", Self::MAX_RELAXATIONS));
        }
        for step in &self.relaxations {
            let Some(min) = self.required.minimum(&step.skill) else {
                return err("relaxations.skill", format!("{:?} is not a required skill", step.skill));
            };
            if step.min_proficiency == 0 || step.min_proficiency > min {
                return err(
                    "relaxations.min_proficiency",
                    format!("must be 1 to the required minimum ({min}) for {:?}", step.skill),
                );
            }
            if step.after_ms > Self::LIMIT_DURATION_MS {
                return err("relaxations.after_ms", format!("at most {} ms", Self::LIMIT_DURATION_MS));
            }
        }
        if let Some(overflow) = &self.overflow {
            if overflow.queue_id == self.id {
                return err("overflow.queue_id", "a queue cannot overflow to itself".into());
            }
            if overflow.after_ms == 0 || overflow.after_ms > Self::LIMIT_DURATION_MS {
                return err("overflow.after_ms", format!("must be 1 to {} ms", Self::LIMIT_DURATION_MS));
            }
        }
        Ok(())
    }

    /// The queue's requirement after `waited_ms`, with every relaxation step
    /// that has passed applied.
    pub fn requirement_after(&self, waited_ms: Millis) -> Requirement {
        self.relaxations
            .iter()
            .filter(|step| step.after_ms <= waited_ms)
            .fold(self.required.clone(), |req, step| req.relaxed(&step.skill, step.min_proficiency))
    }

    /// How many relaxation steps have passed after `waited_ms`.
    pub fn relaxation_steps_passed(&self, waited_ms: Millis) -> usize {
        self.relaxations.iter().filter(|step| step.after_ms <= waited_ms).count()
    }
}

/// A configuration field that is out of bounds, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> QueueConfig {
        QueueConfig::new("logement", Requirement::new([("logement", 4)]))
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(queue().validate(), Ok(()));
    }

    #[test]
    fn relaxation_must_name_a_required_skill_and_lower_it() {
        let mut q = queue();
        q.relaxations.push(Relaxation { after_ms: 60_000, skill: "travail".into(), min_proficiency: 1 });
        assert_eq!(q.validate().unwrap_err().field, "relaxations.skill");
        q.relaxations[0].skill = "logement".into();
        q.relaxations[0].min_proficiency = 5;
        assert_eq!(q.validate().unwrap_err().field, "relaxations.min_proficiency");
        q.relaxations[0].min_proficiency = 1;
        assert_eq!(q.validate(), Ok(()));
    }

    #[test]
    fn requirement_relaxes_with_time() {
        let mut q = queue();
        q.relaxations.push(Relaxation { after_ms: 60_000, skill: "logement".into(), min_proficiency: 1 });
        assert_eq!(q.requirement_after(59_999).minimum("logement"), Some(4));
        assert_eq!(q.requirement_after(60_000).minimum("logement"), Some(1));
    }

    #[test]
    fn overflow_to_itself_is_refused() {
        let mut q = queue();
        q.overflow = Some(Overflow { after_ms: 1, queue_id: "logement".into() });
        assert_eq!(q.validate().unwrap_err().field, "overflow.queue_id");
    }
}
