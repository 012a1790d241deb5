//! Request validation: every field is checked here, before anything
//! changes, and a failure names the field.

use std::collections::BTreeMap;
use std::sync::Arc;

use relais_proto::v1 as pb;
use relais_routing::config::{Overflow, Relaxation};
use relais_routing::{MAX_PRIORITY, MAX_PROFICIENCY, QueueConfig, Requirement, Selection, SkillSet};

use crate::error::{NodeError, Result};

pub const MAX_CALL_ID: usize = 128;
pub const MAX_ID: usize = 64;
pub const MAX_NAME: usize = 128;
pub const MAX_ATTRIBUTES: usize = 16;
pub const MAX_ATTRIBUTE_KEY: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 256;
pub const MAX_INFORMANT_SKILLS: usize = 32;
pub const MAX_CALLER_NUMBER: usize = 32;
pub const MAX_PLAN_QUEUES: usize = 1_000;
pub const MAX_PLAN_INFORMANTS: usize = 10_000;

fn check_chars(field: &str, value: &str, max: usize, allowed: impl Fn(char) -> bool, what: &str) -> Result<()> {
    if value.is_empty() {
        return Err(NodeError::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(NodeError::invalid(field, format!("at most {max} characters")));
    }
    if !value.chars().all(allowed) {
        return Err(NodeError::invalid(field, format!("only {what}")));
    }
    Ok(())
}

pub fn call_id(field: &str, value: &str) -> Result<Arc<str>> {
    check_chars(field, value, MAX_CALL_ID, |c| c.is_ascii_alphanumeric() || "_.:-".contains(c), "[A-Za-z0-9_.:-]")?;
    Ok(value.into())
}

/// Offer ids are `<call_id>/<n>`.
pub fn offer_id(field: &str, value: &str) -> Result<Arc<str>> {
    check_chars(
        field,
        value,
        MAX_CALL_ID + 12,
        |c| c.is_ascii_alphanumeric() || "_.:-/".contains(c),
        "[A-Za-z0-9_.:/-]",
    )?;
    Ok(value.into())
}

pub fn queue_id(field: &str, value: &str) -> Result<Arc<str>> {
    check_chars(
        field,
        value,
        MAX_ID,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c),
        "[a-z0-9_-]",
    )?;
    Ok(value.into())
}

pub fn informant_id(field: &str, value: &str) -> Result<Arc<str>> {
    check_chars(field, value, MAX_ID, |c| c.is_ascii_alphanumeric() || "_.-".contains(c), "[A-Za-z0-9_.-]")?;
    Ok(value.into())
}

/// A cluster member's name (it is part of an etcd key).
pub fn node_id(field: &str, value: &str) -> Result<()> {
    check_chars(field, value, MAX_ID, |c| c.is_ascii_alphanumeric() || "_.-".contains(c), "[A-Za-z0-9_.-]")
}

pub fn tenant_id(field: &str, value: &str) -> Result<()> {
    check_chars(
        field,
        value,
        MAX_ID,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c),
        "[a-z0-9_-]",
    )
}

pub fn skill_name(field: &str, value: &str) -> Result<()> {
    check_chars(
        field,
        value,
        MAX_ID,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:-".contains(c),
        "[a-z0-9_:-]",
    )
}

fn text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(NodeError::invalid(field, format!("at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(NodeError::invalid(field, "no control characters"));
    }
    Ok(())
}

pub fn reason(field: &str, value: &str) -> Result<Arc<str>> {
    if value.is_empty() {
        return Err(NodeError::invalid(field, "must not be empty"));
    }
    text(field, value, MAX_ID)?;
    Ok(value.into())
}

pub fn priority(field: &str, value: u32) -> Result<u8> {
    u8::try_from(value)
        .ok()
        .filter(|p| *p <= MAX_PRIORITY)
        .ok_or_else(|| NodeError::invalid(field, format!("must be 0 to {MAX_PRIORITY}")))
}

pub fn proficiency(field: &str, value: u32) -> Result<u8> {
    u8::try_from(value)
        .ok()
        .filter(|p| (1..=MAX_PROFICIENCY).contains(p))
        .ok_or_else(|| NodeError::invalid(field, format!("must be 1 to {MAX_PROFICIENCY}")))
}

pub fn language(field: &str, value: &str) -> Result<Arc<str>> {
    if value.is_empty() {
        return Ok("".into());
    }
    check_chars(field, value, 16, |c| c.is_ascii_lowercase() || c == '-', "[a-z-]")?;
    Ok(value.into())
}

pub fn caller_number(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_CALLER_NUMBER {
        return Err(NodeError::invalid(field, format!("at most {MAX_CALLER_NUMBER} characters")));
    }
    if !value.chars().all(|c| c.is_ascii_digit() || " +-.()".contains(c)) {
        // The value is deliberately not echoed back.
        return Err(NodeError::invalid(field, "only digits, spaces and + - . ( )"));
    }
    Ok(())
}

pub fn attributes(field: &str, map: &std::collections::HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    if map.len() > MAX_ATTRIBUTES {
        return Err(NodeError::invalid(field, format!("at most {MAX_ATTRIBUTES} entries")));
    }
    for (key, value) in map {
        check_chars(
            &format!("{field}.key"),
            key,
            MAX_ATTRIBUTE_KEY,
            |c| c.is_ascii_alphanumeric() || "_.-".contains(c),
            "[A-Za-z0-9_.-]",
        )?;
        text(&format!("{field}[{key}]"), value, MAX_ATTRIBUTE_VALUE)?;
    }
    Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub fn skills(field: &str, list: &[pb::Skill], max: usize) -> Result<Vec<(Arc<str>, u8)>> {
    if list.is_empty() {
        return Err(NodeError::invalid(field, "at least one skill"));
    }
    if list.len() > max {
        return Err(NodeError::invalid(field, format!("at most {max} skills")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, skill) in list.iter().enumerate() {
        skill_name(&format!("{field}[{i}].name"), &skill.name)?;
        let p = proficiency(&format!("{field}[{i}].proficiency"), skill.proficiency)?;
        if out.iter().any(|(n, _): &(Arc<str>, u8)| n.as_ref() == skill.name) {
            return Err(NodeError::invalid(format!("{field}[{i}].name"), "named twice"));
        }
        out.push((Arc::from(skill.name.as_str()), p));
    }
    Ok(out)
}

pub fn skill_set(field: &str, list: &[pb::Skill]) -> Result<SkillSet> {
    Ok(SkillSet::new(skills(field, list, MAX_INFORMANT_SKILLS)?))
}

/// A queue configuration from the wire, with defaults filled in.
pub fn queue_config(config: &pb::QueueConfig) -> Result<QueueConfig> {
    let id = queue_id("id", &config.id)?;
    text("display_name", &config.display_name, MAX_NAME)?;
    let required =
        Requirement::new(skills("required_skills", &config.required_skills, QueueConfig::MAX_REQUIRED_SKILLS)?);
    let mut out = QueueConfig::new(id, required);
    out.display_name = config.display_name.clone();
    if config.service_level_target != 0.0 {
        out.service_level_target = config.service_level_target;
    }
    if config.service_level_threshold_ms != 0 {
        out.service_level_threshold_ms = config.service_level_threshold_ms;
    }
    if config.max_waiting != 0 {
        out.max_waiting = config.max_waiting;
    }
    out.max_wait_ms = config.max_wait_ms;
    out.wrap_up_ms = config.wrap_up_ms;
    if config.offer_timeout_ms != 0 {
        out.offer_timeout_ms = config.offer_timeout_ms;
    }
    if config.max_missed_offers != 0 {
        out.max_missed_offers = config.max_missed_offers;
    }
    out.selection = match pb::Selection::try_from(config.selection) {
        Ok(pb::Selection::Unspecified | pb::Selection::LongestIdle) => Selection::LongestIdle,
        Ok(pb::Selection::MostProficient) => Selection::MostProficient,
        Ok(pb::Selection::LeastOccupied) => Selection::LeastOccupied,
        Err(_) => return Err(NodeError::invalid("selection", "unknown value")),
    };
    let mut relaxations = Vec::with_capacity(config.relaxations.len());
    for (i, step) in config.relaxations.iter().enumerate() {
        skill_name(&format!("relaxations[{i}].skill"), &step.skill)?;
        relaxations.push(Relaxation {
            after_ms: step.after_ms,
            skill: step.skill.as_str().into(),
            min_proficiency: proficiency(&format!("relaxations[{i}].min_proficiency"), step.min_proficiency)?,
        });
    }
    relaxations.sort_by_key(|r| r.after_ms);
    out.relaxations = relaxations;
    if let Some(overflow) = &config.overflow {
        out.overflow = Some(Overflow {
            after_ms: overflow.after_ms,
            queue_id: queue_id("overflow.queue_id", &overflow.queue_id)?,
        });
    }
    out.validate().map_err(|e| NodeError::invalid(e.field, e.reason))?;
    Ok(out)
}

/// An informant profile from the wire.
pub fn informant_profile(profile: &pb::InformantProfile) -> Result<pb::InformantProfile> {
    informant_id("id", &profile.id)?;
    text("display_name", &profile.display_name, MAX_NAME)?;
    skills("skills", &profile.skills, MAX_INFORMANT_SKILLS)?;
    Ok(profile.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: NodeError) -> String {
        match err {
            NodeError::InvalidArgument { field, .. } => field,
            other => panic!("not invalid argument: {other:?}"),
        }
    }

    #[test]
    fn ids_are_bounded_and_charset_checked() {
        assert!(call_id("call_id", "gw1:2026-11-27:0001").is_ok());
        assert_eq!(field_of(call_id("call_id", "").unwrap_err()), "call_id");
        assert!(call_id("call_id", &"x".repeat(129)).is_err());
        assert!(call_id("call_id", "a b").is_err());
        assert!(queue_id("queue_id", "Logement").is_err());
        assert!(informant_id("informant_id", "marie.dupont").is_ok());
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(priority("priority", 9).expect("ok"), 9);
        assert!(priority("priority", 10).is_err());
        assert!(proficiency("p", 0).is_err());
        assert!(proficiency("p", 6).is_err());
    }

    #[test]
    fn skills_name_the_bad_entry() {
        let list = vec![
            pb::Skill { name: "logement".into(), proficiency: 4 },
            pb::Skill { name: "lang:fr".into(), proficiency: 9 },
        ];
        assert_eq!(field_of(skills("skills", &list, 32).unwrap_err()), "skills[1].proficiency");
        let dup = vec![pb::Skill { name: "a".into(), proficiency: 1 }, pb::Skill { name: "a".into(), proficiency: 2 }];
        assert_eq!(field_of(skills("skills", &dup, 32).unwrap_err()), "skills[1].name");
    }

    #[test]
    fn caller_numbers_are_checked_without_echo() {
        assert!(caller_number("caller_number", "+33 3 87 00 00 00").is_ok());
        let err = caller_number("caller_number", "+33387abc").unwrap_err().to_string();
        assert!(!err.contains("33387"));
    }

    #[test]
    fn queue_config_fills_defaults_and_checks_rules() {
        let mut config = pb::QueueConfig {
            id: "logement".into(),
            required_skills: vec![pb::Skill { name: "logement".into(), proficiency: 3 }],
            ..Default::default()
        };
        let parsed = queue_config(&config).expect("valid");
        assert_eq!(parsed.offer_timeout_ms, QueueConfig::DEFAULT_OFFER_TIMEOUT_MS);
        config.overflow = Some(pb::Overflow { after_ms: 10, queue_id: "logement".into() });
        assert_eq!(field_of(queue_config(&config).unwrap_err()), "overflow.queue_id");
    }
}
