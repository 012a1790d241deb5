//! Domain values to wire messages.

use relais_proto::v1 as pb;
use relais_routing::SkillSet;
use relais_routing::call::{CallEvent, CallEventKind};
use relais_routing::informant::{InformantSnapshot, InformantState, SessionEvent};
use relais_routing::queue::{CallSnapshot, CallState, QueueFigures};

use crate::actors::informant::{SessionOut, StatusReply};

fn unix_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub fn call_state(state: CallState) -> pb::CallState {
    match state {
        CallState::Queued => pb::CallState::Queued,
        CallState::Offered => pb::CallState::Offered,
        CallState::Connected => pb::CallState::Connected,
        CallState::Completed => pb::CallState::Completed,
        CallState::Abandoned => pb::CallState::Abandoned,
        CallState::Deflected => pb::CallState::Deflected,
    }
}

pub fn call_status(s: &CallSnapshot) -> pb::CallStatus {
    pb::CallStatus {
        call_id: s.info.call_id.to_string(),
        queue_id: s.queue_id.to_string(),
        state: call_state(s.state) as i32,
        priority: u32::from(s.info.priority),
        vulnerable: s.info.vulnerable,
        informant_id: s.informant_id.as_deref().unwrap_or_default().to_string(),
        arrived_at_unix_ms: unix_ms(s.info.arrived_ms),
        last_sequence: s.last_sequence,
        caller_pseudonym: s.info.caller_pseudonym.to_string(),
        position: s.position,
        deflect_reason: s.deflect_reason.as_deref().unwrap_or_default().to_string(),
    }
}

pub fn call_event(call_id: &str, e: &CallEvent) -> pb::CallEvent {
    use pb::call_event as ce;
    let kind = match &e.kind {
        CallEventKind::Queued { queue_id, position, estimated_wait_ms } => ce::Kind::Queued(ce::Queued {
            queue_id: queue_id.to_string(),
            position: *position,
            estimated_wait_ms: *estimated_wait_ms,
        }),
        CallEventKind::Offered { informant_id, unanswered } => {
            ce::Kind::Offered(ce::Offered { informant_id: informant_id.to_string(), unanswered: *unanswered })
        }
        CallEventKind::Connected { informant_id, waited_ms } => {
            ce::Kind::Connected(ce::Connected { informant_id: informant_id.to_string(), waited_ms: *waited_ms })
        }
        CallEventKind::Completed => ce::Kind::Completed(ce::Completed {}),
        CallEventKind::Abandoned { waited_ms } => ce::Kind::Abandoned(ce::Abandoned { waited_ms: *waited_ms }),
        CallEventKind::Deflected { reason } => ce::Kind::Deflected(ce::Deflected { reason: reason.to_string() }),
        CallEventKind::Transferred { from_queue_id, to_queue_id, reason } => ce::Kind::Transferred(ce::Transferred {
            from_queue_id: from_queue_id.to_string(),
            to_queue_id: to_queue_id.to_string(),
            reason: reason.to_string(),
        }),
    };
    pb::CallEvent { call_id: call_id.to_string(), sequence: e.sequence, at_unix_ms: unix_ms(e.at_ms), kind: Some(kind) }
}

pub fn informant_state(state: InformantState) -> pb::InformantState {
    match state {
        InformantState::Offline => pb::InformantState::Offline,
        InformantState::Available => pb::InformantState::Available,
        InformantState::Reserved => pb::InformantState::Reserved,
        InformantState::OnCall => pb::InformantState::OnCall,
        InformantState::WrapUp => pb::InformantState::WrapUp,
        InformantState::Paused => pb::InformantState::Paused,
    }
}

pub fn skills(skills: &SkillSet) -> Vec<pb::Skill> {
    skills.iter().map(|(name, p)| pb::Skill { name: name.to_string(), proficiency: u32::from(p) }).collect()
}

pub fn informant_status(s: &InformantSnapshot, last_sequence: u64) -> pb::InformantStatus {
    pb::InformantStatus {
        informant_id: s.informant_id.to_string(),
        state: informant_state(s.state) as i32,
        reason: s.reason.as_deref().unwrap_or_default().to_string(),
        in_state_ms: s.in_state_ms,
        call_id: s.call_id.as_deref().unwrap_or_default().to_string(),
        offer_id: s.offer_id.as_deref().unwrap_or_default().to_string(),
        calls_handled: s.calls_handled,
        skills: skills(&s.skills),
        last_sequence,
    }
}

/// A request's reply: the state, and the last session event sent before it.
pub fn status_reply(r: &StatusReply) -> pb::InformantStatus {
    informant_status(&r.snapshot, r.last_sequence)
}

pub fn informant_stats(s: &InformantSnapshot) -> pb::InformantStats {
    pb::InformantStats {
        informant_id: s.informant_id.to_string(),
        state: informant_state(s.state) as i32,
        reason: s.reason.as_deref().unwrap_or_default().to_string(),
        in_state_ms: s.in_state_ms,
        calls_handled: s.calls_handled,
        missed_offers_in_row: s.missed_in_row,
    }
}

pub fn informant_event(informant_id: &str, out: &SessionOut) -> pb::InformantEvent {
    use pb::informant_event as ie;
    let kind = match &out.event {
        SessionEvent::State(s) => ie::Kind::State(informant_status(s, out.sequence)),
        SessionEvent::Offer { proposal, expires_in_ms } => ie::Kind::Offer(ie::Offer {
            offer_id: proposal.offer_id.to_string(),
            call_id: proposal.call.call_id.to_string(),
            queue_id: proposal.queue_id.to_string(),
            priority: u32::from(proposal.call.priority),
            vulnerable: proposal.call.vulnerable,
            language: proposal.call.language.to_string(),
            topic: proposal.call.topic.to_string(),
            attributes: proposal.call.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            expires_in_ms: *expires_in_ms,
            waited_ms: proposal.waited_ms,
        }),
        SessionEvent::OfferWithdrawn { offer_id, reason } => {
            ie::Kind::OfferWithdrawn(ie::OfferWithdrawn { offer_id: offer_id.to_string(), reason: reason.to_string() })
        }
        SessionEvent::CallEnded { call_id, reason } => {
            ie::Kind::CallEnded(ie::CallEnded { call_id: call_id.to_string(), reason: reason.to_string() })
        }
    };
    pb::InformantEvent {
        informant_id: informant_id.to_string(),
        sequence: out.sequence,
        at_unix_ms: unix_ms(out.at_ms),
        kind: Some(kind),
    }
}

pub fn queue_stats(queue_id: &str, target: f64, threshold_ms: u64, f: &QueueFigures) -> pb::QueueStats {
    pb::QueueStats {
        queue_id: queue_id.to_string(),
        waiting: f.waiting,
        offered: f.offered,
        connected: f.connected,
        longest_wait_ms: f.longest_wait_ms,
        offered_total: f.offered_total,
        answered_total: f.answered_total,
        abandoned_total: f.abandoned_total,
        deflected_total: f.deflected_total,
        service_level: f.recent.service_level,
        service_level_target: target,
        service_level_threshold_ms: threshold_ms,
        asa_ms: f.recent.asa_ms,
        abandonment_rate: f.recent.abandonment_rate,
        occupancy: f.occupancy,
        informants_logged_in: f.informants_logged_in,
        informants_available: f.informants_available,
        estimated_wait_ms: f.estimated_wait_ms,
    }
}
