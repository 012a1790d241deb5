//! The actors' messages on the wire between nodes: conversions between
//! [`QueueMsg`] / [`InformantMsg`] and the bodies of `relais.peer.v1`
//! envelopes.
//!
//! Only what one actor sends another crosses a link: the routing protocol's
//! messages from informants to queues and back, and a call adopted by
//! another queue. Requests from gateways and desktops, timers and queries
//! stay on their node; the encoders give them back untouched.
//!
//! Pure: no I/O, no actor, no link state. The link (streams, sequence
//! numbers, epochs, reconnection) calls these both ways.
//!
//! **Invariant:** decoding never panics, and never yields a message that a
//! local actor could not have sent: required parts are present, ids are not
//! empty, proficiencies are 1 to 5, priorities 0 to 9, ranks at most
//! [`VULNERABLE_RANK`], and event logs are numbered from 1 without gaps. It
//! trusts the peer to be a node of the same cluster, so it does not repeat
//! the public API's character and length rules (the ids were checked by
//! them where they entered the cluster).

use std::sync::Arc;

use ractor::RpcReplyPort;
use relais_proto::peer::v1 as pb;
use relais_proto::peer::v1::envelope::Body;
use relais_routing::call::VULNERABLE_RANK;
use relais_routing::pool::PoolEntry;
use relais_routing::queue::{DurableCall, MovedCall, Proposal, QueueError};
use relais_routing::{CallEvent, CallEventKind, CallInfo, CallKey, EventLog, MAX_PRIORITY, MAX_PROFICIENCY, SkillSet};

use crate::actors::informant::InformantMsg;
use crate::actors::queue::QueueMsg;
use crate::error::{NodeError, Result};
use crate::telemetry::Trace;

/// A queue message made ready for the wire.
pub enum Outgoing {
    /// Sent and forgotten, like a local cast.
    Cast(Body),
    /// Sent, and answered by the receiving node with a `ConnectResult`,
    /// which the link hands to `reply` (see [`connect_result_in`]): a
    /// connect or a complete.
    Ask { body: Body, reply: RpcReplyPort<Result<(), QueueError>> },
}

/// Encodes a message for a queue on another node, or gives it back if it
/// never crosses a link.
///
/// An `Adopt` loses its watchers: they are gateways' streams on this node.
/// Dropping them ends those streams, and each gateway watches again, from
/// its last sequence, wherever the call now lives.
// The message given back is as large as any queue message because it is
// one: the caller sends it on locally, so boxing it would only add an
// allocation.
#[allow(clippy::result_large_err)]
pub fn queue_msg_out(msg: QueueMsg) -> Result<Outgoing, QueueMsg> {
    let body = match msg {
        QueueMsg::Join { informant_id, skills, login } => {
            Body::Join(pb::Join { informant_id: informant_id.to_string(), skills: skills_out(&skills), login })
        }
        QueueMsg::Leave { informant_id, logged_out } => {
            Body::Leave(pb::Leave { informant_id: informant_id.to_string(), logged_out })
        }
        QueueMsg::Announce(entry) => Body::Announce(pb::Announce { entry: Some(pool_entry_out(&entry)) }),
        QueueMsg::Unavailable { informant_id } => {
            Body::Unavailable(pb::Unavailable { informant_id: informant_id.to_string() })
        }
        QueueMsg::Answer { informant_id, call_id, offer_id, accepted } => Body::Answer(pb::Answer {
            informant_id: informant_id.to_string(),
            call_id: call_id.to_string(),
            offer_id: offer_id.to_string(),
            accepted,
        }),
        QueueMsg::OfferEnded { informant_id, call_id, offer_id, declined } => Body::OfferEnded(pb::OfferEnded {
            informant_id: informant_id.to_string(),
            call_id: call_id.to_string(),
            offer_id: offer_id.to_string(),
            declined,
        }),
        QueueMsg::Complete { informant_id, call_id, reply } => {
            let body =
                Body::Complete(pb::Complete { informant_id: informant_id.to_string(), call_id: call_id.to_string() });
            return Ok(Outgoing::Ask { body, reply });
        }
        QueueMsg::Connect { informant_id, call_id, offer_id, reply } => {
            let body = Body::Connect(pb::Connect {
                informant_id: informant_id.to_string(),
                call_id: call_id.to_string(),
                offer_id: offer_id.to_string(),
            });
            return Ok(Outgoing::Ask { body, reply });
        }
        QueueMsg::Adopt { call, watchers: _ } => Body::Adopt(pb::Adopt { call: Some(moved_call_out(&call)) }),
        // Listed one by one, so that a new variant has to be placed on one
        // side or the other.
        local @ (QueueMsg::Offer { .. }
        | QueueMsg::GetCall { .. }
        | QueueMsg::HangUp { .. }
        | QueueMsg::MarkVulnerable { .. }
        | QueueMsg::Transfer { .. }
        | QueueMsg::Watch { .. }
        | QueueMsg::Reconfigure(_)
        | QueueMsg::Figures { .. }
        | QueueMsg::LiveCalls { .. }
        | QueueMsg::Tick
        | QueueMsg::Written(_)
        | QueueMsg::HandOver { .. }) => return Err(local),
    };
    Ok(Outgoing::Cast(body))
}

/// Encodes a message for an informant on another node, or gives it back if
/// it never crosses a link. None of these expects a reply.
pub fn informant_msg_out(msg: InformantMsg) -> Result<Body, InformantMsg> {
    Ok(match msg {
        // The trace travels in the envelope (see `Peers::envelope`).
        InformantMsg::Propose(proposal, _) => Body::Propose(pb::Propose { proposal: Some(proposal_out(&proposal)) }),
        InformantMsg::Nothing { queue_id, generation } => {
            Body::Nothing(pb::Nothing { queue_id: queue_id.to_string(), generation })
        }
        InformantMsg::Withdraw { offer_id, reason } => {
            Body::Withdraw(pb::Withdraw { offer_id: offer_id.to_string(), reason: reason.to_string() })
        }
        InformantMsg::EndCall { call_id, reason } => {
            Body::EndCall(pb::EndCall { call_id: call_id.to_string(), reason: reason.to_string() })
        }
        local @ (InformantMsg::OfferTimer { .. }
        | InformantMsg::WrapUpTimer { .. }
        | InformantMsg::CollectTimer { .. }
        | InformantMsg::Accept { .. }
        | InformantMsg::Decline { .. }
        | InformantMsg::Finish { .. }
        | InformantMsg::EndWrapUp { .. }
        | InformantMsg::Pause { .. }
        | InformantMsg::Resume { .. }
        | InformantMsg::Logout { .. }
        | InformantMsg::Get { .. }
        | InformantMsg::Attach { .. }
        | InformantMsg::SetQueues(_)) => return Err(local),
    })
}

/// The actor that sent `body`, when the body names it.
pub fn sender(body: &Body) -> Option<(crate::cluster::placement::ActorKind, &str)> {
    use crate::cluster::placement::ActorKind::{Informant, Queue};
    match body {
        Body::Join(m) => Some((Informant, &m.informant_id)),
        Body::Leave(m) => Some((Informant, &m.informant_id)),
        Body::Announce(m) => m.entry.as_ref().map(|e| (Informant, e.informant_id.as_str())),
        Body::Unavailable(m) => Some((Informant, &m.informant_id)),
        Body::Answer(m) => Some((Informant, &m.informant_id)),
        Body::OfferEnded(m) => Some((Informant, &m.informant_id)),
        Body::Complete(m) => Some((Informant, &m.informant_id)),
        Body::Connect(m) => Some((Informant, &m.informant_id)),
        Body::Propose(m) => m.proposal.as_ref().map(|p| (Queue, p.queue_id.as_str())),
        Body::Nothing(m) => Some((Queue, &m.queue_id)),
        Body::Adopt(_) | Body::Withdraw(_) | Body::EndCall(_) => None,
    }
}

/// A received body, as the local actor's message.
pub enum Incoming {
    /// For a queue; cast it.
    Queue(QueueMsg),
    /// For a queue, expecting an answer: the link supplies the reply port
    /// ([`Ask::into_queue_msg`]) and sends the answer back.
    Ask(Ask),
    /// For an informant; cast it.
    Informant(InformantMsg),
}

/// A received `Connect` or `Complete`, waiting for the port its answer
/// goes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Connect { informant_id: Arc<str>, call_id: Arc<str>, offer_id: Arc<str> },
    Complete { informant_id: Arc<str>, call_id: Arc<str> },
}

impl Ask {
    pub fn call_id(&self) -> &Arc<str> {
        match self {
            Self::Connect { call_id, .. } | Self::Complete { call_id, .. } => call_id,
        }
    }

    pub fn into_queue_msg(self, reply: RpcReplyPort<Result<(), QueueError>>) -> QueueMsg {
        match self {
            Self::Connect { informant_id, call_id, offer_id } => {
                QueueMsg::Connect { informant_id, call_id, offer_id, reply }
            }
            Self::Complete { informant_id, call_id } => QueueMsg::Complete { informant_id, call_id, reply },
        }
    }
}

/// Decodes a received body. An error names the offending field, from the
/// body's own name down (`announce.entry.skills[0].proficiency`).
pub fn incoming(body: Body) -> Result<Incoming> {
    Ok(match body {
        Body::Join(m) => Incoming::Queue(QueueMsg::Join {
            informant_id: id("join.informant_id", m.informant_id)?,
            skills: skills_in("join.skills", m.skills)?,
            login: m.login,
        }),
        Body::Leave(m) => Incoming::Queue(QueueMsg::Leave {
            informant_id: id("leave.informant_id", m.informant_id)?,
            logged_out: m.logged_out,
        }),
        Body::Announce(m) => {
            Incoming::Queue(QueueMsg::Announce(pool_entry_in("announce.entry", required("announce.entry", m.entry)?)?))
        }
        Body::Unavailable(m) => {
            Incoming::Queue(QueueMsg::Unavailable { informant_id: id("unavailable.informant_id", m.informant_id)? })
        }
        Body::Answer(m) => Incoming::Queue(QueueMsg::Answer {
            informant_id: id("answer.informant_id", m.informant_id)?,
            call_id: id("answer.call_id", m.call_id)?,
            offer_id: id("answer.offer_id", m.offer_id)?,
            accepted: m.accepted,
        }),
        Body::OfferEnded(m) => Incoming::Queue(QueueMsg::OfferEnded {
            informant_id: id("offer_ended.informant_id", m.informant_id)?,
            call_id: id("offer_ended.call_id", m.call_id)?,
            offer_id: id("offer_ended.offer_id", m.offer_id)?,
            declined: m.declined,
        }),
        Body::Complete(m) => Incoming::Ask(Ask::Complete {
            informant_id: id("complete.informant_id", m.informant_id)?,
            call_id: id("complete.call_id", m.call_id)?,
        }),
        Body::Connect(m) => Incoming::Ask(Ask::Connect {
            informant_id: id("connect.informant_id", m.informant_id)?,
            call_id: id("connect.call_id", m.call_id)?,
            offer_id: id("connect.offer_id", m.offer_id)?,
        }),
        Body::Adopt(m) => Incoming::Queue(QueueMsg::Adopt {
            call: Box::new(moved_call_in("adopt.call", required("adopt.call", m.call)?)?),
            watchers: Vec::new(),
        }),
        // In the trace of the span delivering the envelope, which continues
        // the sender's.
        Body::Propose(m) => Incoming::Informant(InformantMsg::Propose(
            Box::new(proposal_in("propose.proposal", required("propose.proposal", m.proposal)?)?),
            Trace::current(),
        )),
        Body::Nothing(m) => Incoming::Informant(InformantMsg::Nothing {
            queue_id: id("nothing.queue_id", m.queue_id)?,
            generation: m.generation,
        }),
        Body::Withdraw(m) => Incoming::Informant(InformantMsg::Withdraw {
            offer_id: id("withdraw.offer_id", m.offer_id)?,
            reason: m.reason.into(),
        }),
        Body::EndCall(m) => Incoming::Informant(InformantMsg::EndCall {
            call_id: id("end_call.call_id", m.call_id)?,
            reason: m.reason.into(),
        }),
    })
}

/// A queue's answer to a `Connect` or a `Complete`, for the wire.
pub fn connect_result_out(result: &Result<(), QueueError>) -> pb::ConnectResult {
    use pb::queue_error::Kind;
    let error = result.as_ref().err().map(|error| {
        let (kind, call_id) = match error {
            QueueError::UnknownCall(call_id) => (Kind::UnknownCall, call_id),
            QueueError::NotYourOffer(call_id) => (Kind::NotYourOffer, call_id),
            QueueError::NotHolder(call_id) => (Kind::NotHolder, call_id),
            QueueError::NotConnected(call_id) => (Kind::NotConnected, call_id),
            QueueError::Duplicate(call_id) => (Kind::Duplicate, call_id),
        };
        pb::QueueError { kind: kind.into(), call_id: call_id.to_string() }
    });
    pb::ConnectResult { error }
}

/// A queue's answer to a `Connect` or a `Complete`, from the wire. An
/// error of a kind this node does not know reads as `UnknownCall`: still a
/// refusal, never a yes.
pub fn connect_result_in(result: pb::ConnectResult) -> Result<(), QueueError> {
    use pb::queue_error::Kind;
    let Some(error) = result.error else { return Ok(()) };
    let call_id: Arc<str> = error.call_id.into();
    Err(match Kind::try_from(error.kind).unwrap_or(Kind::Unspecified) {
        Kind::Unspecified | Kind::UnknownCall => QueueError::UnknownCall(call_id),
        Kind::NotYourOffer => QueueError::NotYourOffer(call_id),
        Kind::NotHolder => QueueError::NotHolder(call_id),
        Kind::NotConnected => QueueError::NotConnected(call_id),
        Kind::Duplicate => QueueError::Duplicate(call_id),
    })
}

// Encoding: routing types to wire types. It cannot fail.

fn skills_out(skills: &SkillSet) -> Vec<pb::Skill> {
    skills
        .iter()
        .map(|(name, proficiency)| pb::Skill { name: name.to_owned(), proficiency: proficiency.into() })
        .collect()
}

fn pool_entry_out(entry: &PoolEntry) -> pb::PoolEntry {
    pb::PoolEntry {
        informant_id: entry.informant_id.to_string(),
        skills: skills_out(&entry.skills),
        idle_since_ms: entry.idle_since_ms,
        occupancy_permille: entry.occupancy_permille.into(),
        generation: entry.generation,
    }
}

fn call_info_out(info: &CallInfo) -> pb::CallInfo {
    pb::CallInfo {
        call_id: info.call_id.to_string(),
        priority: info.priority.into(),
        vulnerable: info.vulnerable,
        language: info.language.to_string(),
        topic: info.topic.to_string(),
        caller_pseudonym: info.caller_pseudonym.to_string(),
        attributes: info.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        arrived_ms: info.arrived_ms,
    }
}

fn proposal_out(proposal: &Proposal) -> pb::Proposal {
    pb::Proposal {
        offer_id: proposal.offer_id.to_string(),
        queue_id: proposal.queue_id.to_string(),
        key: Some(pb::CallKey {
            rank: proposal.key.rank.into(),
            arrived_ms: proposal.key.arrived_ms,
            seq: proposal.key.seq,
        }),
        generation: proposal.generation,
        call: Some(call_info_out(&proposal.call)),
        waited_ms: proposal.waited_ms,
        offer_timeout_ms: proposal.offer_timeout_ms,
        wrap_up_ms: proposal.wrap_up_ms,
        max_missed_offers: proposal.max_missed_offers,
    }
}

fn event_out(event: &CallEvent) -> pb::CallEvent {
    use pb::call_event::{self as ev, Kind};
    let kind = match &event.kind {
        CallEventKind::Queued { queue_id, position, estimated_wait_ms } => Kind::Queued(ev::Queued {
            queue_id: queue_id.to_string(),
            position: *position,
            estimated_wait_ms: *estimated_wait_ms,
        }),
        CallEventKind::Offered { informant_id, unanswered } => {
            Kind::Offered(ev::Offered { informant_id: informant_id.to_string(), unanswered: *unanswered })
        }
        CallEventKind::Connected { informant_id, waited_ms } => {
            Kind::Connected(ev::Connected { informant_id: informant_id.to_string(), waited_ms: *waited_ms })
        }
        CallEventKind::Completed => Kind::Completed(ev::Completed {}),
        CallEventKind::Abandoned { waited_ms } => Kind::Abandoned(ev::Abandoned { waited_ms: *waited_ms }),
        CallEventKind::Deflected { reason } => Kind::Deflected(ev::Deflected { reason: reason.to_string() }),
        CallEventKind::Transferred { from_queue_id, to_queue_id, reason } => Kind::Transferred(ev::Transferred {
            from_queue_id: from_queue_id.to_string(),
            to_queue_id: to_queue_id.to_string(),
            reason: reason.to_string(),
        }),
    };
    pb::CallEvent { sequence: event.sequence, at_ms: event.at_ms, kind: Some(kind) }
}

fn moved_call_out(call: &MovedCall) -> pb::MovedCall {
    pb::MovedCall {
        info: Some(call_info_out(&call.info)),
        events: call.events.after(0).iter().map(event_out).collect(),
        transfer_from: call.transfer_from.as_ref().map(|q| q.to_string()),
        proposals: call.proposals,
    }
}

/// A live call as it is written to etcd.
pub fn stored_call_out(call: &DurableCall) -> pb::StoredCall {
    pb::StoredCall {
        queue_id: call.queue_id.to_string(),
        call: Some(moved_call_out(&call.call)),
        seq: call.seq,
        entered_ms: call.entered_ms,
        connected: call.connected.as_ref().map(|(informant_id, since_ms)| pb::stored_call::Connection {
            informant_id: informant_id.to_string(),
            since_ms: *since_ms,
        }),
        proposed: call.proposed.as_ref().map(|(informant_id, since_ms)| pb::stored_call::Proposal {
            informant_id: informant_id.to_string(),
            since_ms: *since_ms,
        }),
    }
}

/// A live call as read back from etcd, checked like a message from a peer.
pub fn stored_call_in(call: pb::StoredCall) -> Result<DurableCall> {
    let connected = match call.connected {
        Some(c) => Some((id("connected.informant_id", c.informant_id)?, c.since_ms)),
        None => None,
    };
    let proposed = match call.proposed {
        Some(p) => Some((id("proposed.informant_id", p.informant_id)?, p.since_ms)),
        None => None,
    };
    Ok(DurableCall {
        queue_id: id("queue_id", call.queue_id)?,
        call: moved_call_in("call", required("call", call.call)?)?,
        seq: call.seq,
        entered_ms: call.entered_ms,
        connected,
        proposed,
    })
}

// Decoding: wire types to routing types, checked. `at` is the path of the
// part being decoded, for error messages.

fn required<T>(field: &str, part: Option<T>) -> Result<T> {
    part.ok_or_else(|| NodeError::invalid(field, "missing"))
}

fn id(field: &str, value: String) -> Result<Arc<str>> {
    if value.is_empty() {
        return Err(NodeError::invalid(field, "must not be empty"));
    }
    Ok(value.into())
}

fn skills_in(at: &str, skills: Vec<pb::Skill>) -> Result<SkillSet> {
    let mut out = Vec::with_capacity(skills.len());
    for (i, skill) in skills.into_iter().enumerate() {
        if skill.name.is_empty() {
            return Err(NodeError::invalid(format!("{at}[{i}].name"), "must not be empty"));
        }
        let proficiency =
            u8::try_from(skill.proficiency).ok().filter(|p| (1..=MAX_PROFICIENCY).contains(p)).ok_or_else(|| {
                NodeError::invalid(format!("{at}[{i}].proficiency"), format!("must be 1 to {MAX_PROFICIENCY}"))
            })?;
        out.push((skill.name, proficiency));
    }
    Ok(SkillSet::new(out))
}

fn pool_entry_in(at: &str, entry: pb::PoolEntry) -> Result<PoolEntry> {
    Ok(PoolEntry {
        informant_id: id(&format!("{at}.informant_id"), entry.informant_id)?,
        skills: skills_in(&format!("{at}.skills"), entry.skills)?,
        idle_since_ms: entry.idle_since_ms,
        occupancy_permille: u16::try_from(entry.occupancy_permille)
            .map_err(|_| NodeError::invalid(format!("{at}.occupancy_permille"), "must fit 16 bits"))?,
        generation: entry.generation,
    })
}

fn call_info_in(at: &str, info: pb::CallInfo) -> Result<CallInfo> {
    let priority = u8::try_from(info.priority)
        .ok()
        .filter(|p| *p <= MAX_PRIORITY)
        .ok_or_else(|| NodeError::invalid(format!("{at}.priority"), format!("must be 0 to {MAX_PRIORITY}")))?;
    Ok(CallInfo {
        call_id: id(&format!("{at}.call_id"), info.call_id)?,
        priority,
        vulnerable: info.vulnerable,
        language: info.language.into(),
        topic: info.topic.into(),
        caller_pseudonym: info.caller_pseudonym.into(),
        attributes: Arc::new(info.attributes.into_iter().collect()),
        arrived_ms: info.arrived_ms,
    })
}

fn proposal_in(at: &str, proposal: pb::Proposal) -> Result<Proposal> {
    let key_at = format!("{at}.key");
    let key = required(&key_at, proposal.key)?;
    let rank = u8::try_from(key.rank)
        .ok()
        .filter(|r| *r <= VULNERABLE_RANK)
        .ok_or_else(|| NodeError::invalid(format!("{key_at}.rank"), format!("must be 0 to {VULNERABLE_RANK}")))?;
    let call_at = format!("{at}.call");
    Ok(Proposal {
        offer_id: id(&format!("{at}.offer_id"), proposal.offer_id)?,
        queue_id: id(&format!("{at}.queue_id"), proposal.queue_id)?,
        key: CallKey { rank, arrived_ms: key.arrived_ms, seq: key.seq },
        generation: proposal.generation,
        call: call_info_in(&call_at, required(&call_at, proposal.call)?)?,
        waited_ms: proposal.waited_ms,
        offer_timeout_ms: proposal.offer_timeout_ms,
        wrap_up_ms: proposal.wrap_up_ms,
        max_missed_offers: proposal.max_missed_offers,
    })
}

fn event_in(at: &str, event: pb::CallEvent) -> Result<CallEvent> {
    use pb::call_event::Kind;
    let kind = match required(&format!("{at}.kind"), event.kind)? {
        Kind::Queued(k) => CallEventKind::Queued {
            queue_id: id(&format!("{at}.queued.queue_id"), k.queue_id)?,
            position: k.position,
            estimated_wait_ms: k.estimated_wait_ms,
        },
        Kind::Offered(k) => CallEventKind::Offered {
            informant_id: id(&format!("{at}.offered.informant_id"), k.informant_id)?,
            unanswered: k.unanswered,
        },
        Kind::Connected(k) => CallEventKind::Connected {
            informant_id: id(&format!("{at}.connected.informant_id"), k.informant_id)?,
            waited_ms: k.waited_ms,
        },
        Kind::Completed(_) => CallEventKind::Completed,
        Kind::Abandoned(k) => CallEventKind::Abandoned { waited_ms: k.waited_ms },
        Kind::Deflected(k) => CallEventKind::Deflected { reason: k.reason.into() },
        Kind::Transferred(k) => CallEventKind::Transferred {
            from_queue_id: id(&format!("{at}.transferred.from_queue_id"), k.from_queue_id)?,
            to_queue_id: id(&format!("{at}.transferred.to_queue_id"), k.to_queue_id)?,
            reason: k.reason.into(),
        },
    };
    Ok(CallEvent { sequence: event.sequence, at_ms: event.at_ms, kind })
}

fn moved_call_in(at: &str, call: pb::MovedCall) -> Result<MovedCall> {
    let info_at = format!("{at}.info");
    let info = call_info_in(&info_at, required(&info_at, call.info)?)?;
    let events = call
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| event_in(&format!("{at}.events[{i}]"), event))
        .collect::<Result<Vec<_>>>()?;
    let events = EventLog::from_events(events).ok_or_else(|| {
        NodeError::invalid(
            format!("{at}.events"),
            format!("must be numbered from 1 without gaps, at most {}", EventLog::MAX_EVENTS),
        )
    })?;
    let transfer_from = match call.transfer_from {
        Some(queue_id) => Some(id(&format!("{at}.transfer_from"), queue_id)?),
        None => None,
    };
    Ok(MovedCall { info, events, transfer_from, proposals: call.proposals })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn info(call_id: &str) -> CallInfo {
        CallInfo {
            call_id: call_id.into(),
            priority: 3,
            vulnerable: true,
            language: "fr".into(),
            topic: "logement".into(),
            caller_pseudonym: "p-1a2b".into(),
            attributes: Arc::new(BTreeMap::from([
                ("crm".to_owned(), "42".to_owned()),
                ("x".to_owned(), "".to_owned()),
            ])),
            arrived_ms: 1_700_000_000_000,
        }
    }

    fn proposal() -> Proposal {
        Proposal {
            offer_id: "c1/2".into(),
            queue_id: "accueil".into(),
            key: CallKey { rank: VULNERABLE_RANK, arrived_ms: 1_700_000_000_000, seq: 7 },
            generation: 12,
            call: info("c1"),
            waited_ms: 4_500,
            offer_timeout_ms: 15_000,
            wrap_up_ms: 30_000,
            max_missed_offers: 3,
        }
    }

    fn moved_call() -> MovedCall {
        let mut events = EventLog::default();
        events.record(1, CallEventKind::Queued { queue_id: "accueil".into(), position: 2, estimated_wait_ms: 9 });
        events.record(2, CallEventKind::Offered { informant_id: "ana".into(), unanswered: false });
        events.record(3, CallEventKind::Connected { informant_id: "ana".into(), waited_ms: 2 });
        events.record(
            4,
            CallEventKind::Transferred {
                from_queue_id: "accueil".into(),
                to_queue_id: "logement".into(),
                reason: "transfer".into(),
            },
        );
        events.record(5, CallEventKind::Abandoned { waited_ms: 4 });
        events.record(6, CallEventKind::Deflected { reason: "queue_full".into() });
        events.record(7, CallEventKind::Completed);
        MovedCall { info: info("c1"), events, transfer_from: Some("accueil".into()), proposals: 2 }
    }

    fn cast(msg: QueueMsg) -> Body {
        match queue_msg_out(msg) {
            Ok(Outgoing::Cast(body)) => body,
            Ok(Outgoing::Ask { .. }) => panic!("a cast became a request"),
            Err(_) => panic!("an inter-actor message was kept local"),
        }
    }

    /// Encodes, goes through the bytes as a link would, and decodes.
    fn through_the_wire(body: Body) -> Incoming {
        let envelope = pb::Envelope {
            seq: 1,
            tenant: "t".into(),
            to_id: "x".into(),
            to_epoch: 5,
            body: Some(body),
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&envelope);
        let envelope: pb::Envelope = prost::Message::decode(bytes.as_slice()).expect("decodes");
        incoming(envelope.body.expect("has a body")).expect("valid")
    }

    fn queue_round_trip(msg: QueueMsg) -> QueueMsg {
        match through_the_wire(cast(msg)) {
            Incoming::Queue(msg) => msg,
            _ => panic!("not a queue message"),
        }
    }

    fn informant_round_trip(msg: InformantMsg) -> InformantMsg {
        let Ok(body) = informant_msg_out(msg) else { panic!("an inter-actor message was kept local") };
        match through_the_wire(body) {
            Incoming::Informant(msg) => msg,
            _ => panic!("not an informant message"),
        }
    }

    #[test]
    fn stored_calls_round_trip_and_bad_ones_are_refused() {
        let mut call = DurableCall {
            queue_id: "ecoute".into(),
            call: moved_call(),
            seq: 7,
            entered_ms: 1_700_000_000_100,
            connected: Some(("i-1".into(), 1_700_000_000_200)),
            proposed: None,
        };
        assert_eq!(stored_call_in(stored_call_out(&call)).expect("decodes"), call);
        call.connected = None;
        assert_eq!(stored_call_in(stored_call_out(&call)).expect("decodes"), call);
        call.proposed = Some(("i-2".into(), 1_700_000_000_300));
        assert_eq!(stored_call_in(stored_call_out(&call)).expect("decodes"), call);
        let mut bad = stored_call_out(&call);
        bad.queue_id.clear();
        assert!(stored_call_in(bad).is_err(), "empty queue id refused");
        let mut bad = stored_call_out(&call);
        bad.call = None;
        assert!(stored_call_in(bad).is_err(), "missing call refused");
        let mut bad = stored_call_out(&call);
        bad.connected = Some(pb::stored_call::Connection { informant_id: String::new(), since_ms: 1 });
        assert!(stored_call_in(bad).is_err(), "empty informant refused");
        let mut bad = stored_call_out(&call);
        bad.proposed = Some(pb::stored_call::Proposal { informant_id: String::new(), since_ms: 1 });
        assert!(stored_call_in(bad).is_err(), "empty proposed informant refused");
    }

    fn moved_call_round_trip(call: &MovedCall) -> MovedCall {
        let msg = QueueMsg::Adopt { call: Box::new(call.clone()), watchers: Vec::new() };
        match queue_round_trip(msg) {
            QueueMsg::Adopt { call, watchers } => {
                assert!(watchers.is_empty());
                *call
            }
            _ => panic!("not an adopt"),
        }
    }

    fn assert_same_call(a: &MovedCall, b: &MovedCall) {
        assert_eq!(a.info, b.info);
        assert_eq!(a.events, b.events);
        assert_eq!(a.transfer_from, b.transfer_from);
        assert_eq!(a.proposals, b.proposals);
    }

    #[test]
    fn queue_casts_round_trip() {
        let skills = SkillSet::new([("logement", 4), ("lang:fr", 5), ("ecoute", 1)]);
        match queue_round_trip(QueueMsg::Join { informant_id: "ana".into(), skills: skills.clone(), login: true }) {
            QueueMsg::Join { informant_id, skills: s, login } => {
                assert_eq!((&*informant_id, s, login), ("ana", skills.clone(), true))
            }
            _ => panic!("not a join"),
        }
        match queue_round_trip(QueueMsg::Leave { informant_id: "ana".into(), logged_out: true }) {
            QueueMsg::Leave { informant_id, logged_out } => assert_eq!((&*informant_id, logged_out), ("ana", true)),
            _ => panic!("not a leave"),
        }
        let entry = PoolEntry {
            informant_id: "ana".into(),
            skills,
            idle_since_ms: 1_700_000_000_123,
            occupancy_permille: 1000,
            generation: 9,
        };
        match queue_round_trip(QueueMsg::Announce(entry.clone())) {
            QueueMsg::Announce(e) => assert_eq!(e, entry),
            _ => panic!("not an announce"),
        }
        match queue_round_trip(QueueMsg::Unavailable { informant_id: "ana".into() }) {
            QueueMsg::Unavailable { informant_id } => assert_eq!(&*informant_id, "ana"),
            _ => panic!("not an unavailable"),
        }
        for accepted in [true, false] {
            let msg = QueueMsg::Answer {
                informant_id: "ana".into(),
                call_id: "c1".into(),
                offer_id: "c1/1".into(),
                accepted,
            };
            match queue_round_trip(msg) {
                QueueMsg::Answer { informant_id, call_id, offer_id, accepted: a } => {
                    assert_eq!((&*informant_id, &*call_id, &*offer_id, a), ("ana", "c1", "c1/1", accepted));
                }
                _ => panic!("not an answer"),
            }
        }
        for declined in [true, false] {
            let msg = QueueMsg::OfferEnded {
                informant_id: "ana".into(),
                call_id: "c1".into(),
                offer_id: "c1/1".into(),
                declined,
            };
            match queue_round_trip(msg) {
                QueueMsg::OfferEnded { informant_id, call_id, offer_id, declined: d } => {
                    assert_eq!((&*informant_id, &*call_id, &*offer_id, d), ("ana", "c1", "c1/1", declined));
                }
                _ => panic!("not an offer ended"),
            }
        }
    }

    #[test]
    fn complete_is_asked_and_round_trips() {
        let (tx, _rx) = ractor::concurrency::oneshot();
        let msg = QueueMsg::Complete { informant_id: "ana".into(), call_id: "c1".into(), reply: tx.into() };
        let Ok(Outgoing::Ask { body, .. }) = queue_msg_out(msg) else { panic!("not asked") };
        let Incoming::Ask(request) = through_the_wire(body) else { panic!("not asked") };
        assert_eq!(request, Ask::Complete { informant_id: "ana".into(), call_id: "c1".into() });
        assert_eq!(&**request.call_id(), "c1");
    }

    #[test]
    fn adopt_round_trips_without_its_watchers() {
        let call = moved_call();
        let (sink, _stream) = tokio::sync::mpsc::channel(1);
        let body = cast(QueueMsg::Adopt { call: Box::new(call.clone()), watchers: vec![sink.clone()] });
        // The watcher given with the call was dropped, not carried.
        assert_eq!(sink.strong_count(), 1);
        let Incoming::Queue(QueueMsg::Adopt { call: back, watchers }) = through_the_wire(body) else {
            panic!("not an adopt")
        };
        assert!(watchers.is_empty());
        assert_same_call(&back, &call);

        let fresh = MovedCall { events: EventLog::default(), transfer_from: None, ..moved_call() };
        assert_same_call(&moved_call_round_trip(&fresh), &fresh);
    }

    #[test]
    fn connect_round_trips_and_its_answer_comes_back() {
        let (tx, mut rx) = ractor::concurrency::oneshot();
        let msg = QueueMsg::Connect {
            informant_id: "ana".into(),
            call_id: "c1".into(),
            offer_id: "c1/1".into(),
            reply: tx.into(),
        };
        let Ok(Outgoing::Ask { body, reply }) = queue_msg_out(msg) else { panic!("not a connect") };
        let Incoming::Ask(request) = through_the_wire(body) else { panic!("not a connect") };
        assert_eq!(request, Ask::Connect { informant_id: "ana".into(), call_id: "c1".into(), offer_id: "c1/1".into() });

        // The receiving node hands the request its own port; the queue's
        // answer travels back and reaches the sender's port.
        let (queue_tx, mut queue_rx) = ractor::concurrency::oneshot();
        let QueueMsg::Connect { reply: queue_reply, .. } = request.into_queue_msg(queue_tx.into()) else {
            panic!("not a connect")
        };
        queue_reply.send(Err(QueueError::NotYourOffer("c1".into()))).expect("sent");
        let answer = queue_rx.try_recv().expect("answered");
        let wire = prost::Message::encode_to_vec(&connect_result_out(&answer));
        let result: pb::ConnectResult = prost::Message::decode(wire.as_slice()).expect("decodes");
        reply.send(connect_result_in(result)).expect("sent");
        assert_eq!(rx.try_recv().expect("answered"), Err(QueueError::NotYourOffer("c1".into())));
    }

    #[test]
    fn connect_results_round_trip() {
        let results = [
            Ok(()),
            Err(QueueError::UnknownCall("c1".into())),
            Err(QueueError::NotYourOffer("c2".into())),
            Err(QueueError::NotHolder("c3".into())),
            Err(QueueError::NotConnected("c4".into())),
            Err(QueueError::Duplicate("c5".into())),
        ];
        for result in results {
            assert_eq!(connect_result_in(connect_result_out(&result)), result);
        }
    }

    #[test]
    fn an_unknown_error_kind_is_still_a_refusal() {
        for kind in [0, 99] {
            let result = pb::ConnectResult { error: Some(pb::QueueError { kind, call_id: "c1".into() }) };
            assert_eq!(connect_result_in(result), Err(QueueError::UnknownCall("c1".into())));
        }
    }

    #[test]
    fn informant_casts_round_trip() {
        match informant_round_trip(InformantMsg::Propose(Box::new(proposal()), Trace::default())) {
            InformantMsg::Propose(p, _) => assert_eq!(*p, proposal()),
            _ => panic!("not a propose"),
        }
        match informant_round_trip(InformantMsg::Nothing { queue_id: "accueil".into(), generation: 4 }) {
            InformantMsg::Nothing { queue_id, generation } => assert_eq!((&*queue_id, generation), ("accueil", 4)),
            _ => panic!("not a nothing"),
        }
        match informant_round_trip(InformantMsg::Withdraw { offer_id: "c1/1".into(), reason: "caller_hung_up".into() })
        {
            InformantMsg::Withdraw { offer_id, reason } => {
                assert_eq!((&*offer_id, &*reason), ("c1/1", "caller_hung_up"))
            }
            _ => panic!("not a withdraw"),
        }
        match informant_round_trip(InformantMsg::EndCall { call_id: "c1".into(), reason: "transferred".into() }) {
            InformantMsg::EndCall { call_id, reason } => assert_eq!((&*call_id, &*reason), ("c1", "transferred")),
            _ => panic!("not an end call"),
        }
    }

    #[test]
    fn local_messages_are_given_back() {
        assert!(matches!(queue_msg_out(QueueMsg::Tick), Err(QueueMsg::Tick)));
        let (tx, _rx) = ractor::concurrency::oneshot();
        assert!(matches!(
            queue_msg_out(QueueMsg::GetCall { call_id: "c1".into(), reply: tx.into() }),
            Err(QueueMsg::GetCall { call_id, .. }) if &*call_id == "c1"
        ));
        assert!(matches!(
            informant_msg_out(InformantMsg::OfferTimer { offer_id: "c1/1".into() }),
            Err(InformantMsg::OfferTimer { offer_id }) if &*offer_id == "c1/1"
        ));
        assert!(matches!(
            informant_msg_out(InformantMsg::SetQueues(vec!["accueil".into()])),
            Err(InformantMsg::SetQueues(queues)) if queues.len() == 1
        ));
    }

    fn refused(body: Body) -> String {
        match incoming(body) {
            Err(NodeError::InvalidArgument { field, .. }) => field,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        let skill = |proficiency| pb::Skill { name: "logement".into(), proficiency };
        for proficiency in [0, 6, 9, 300] {
            let join =
                pb::Join { informant_id: "ana".into(), skills: vec![skill(3), skill(proficiency)], login: false };
            assert_eq!(refused(Body::Join(join)), "join.skills[1].proficiency");
        }
        let nameless = pb::Join {
            informant_id: "ana".into(),
            skills: vec![pb::Skill { name: "".into(), proficiency: 1 }],
            login: false,
        };
        assert_eq!(refused(Body::Join(nameless)), "join.skills[0].name");
        assert_eq!(
            refused(Body::Leave(pb::Leave { informant_id: "".into(), logged_out: false })),
            "leave.informant_id"
        );
        assert_eq!(refused(Body::Announce(pb::Announce { entry: None })), "announce.entry");
        let crowded = pb::PoolEntry { informant_id: "ana".into(), occupancy_permille: 70_000, ..Default::default() };
        assert_eq!(refused(Body::Announce(pb::Announce { entry: Some(crowded) })), "announce.entry.occupancy_permille");

        let mut propose = proposal_out(&proposal());
        propose.call = None;
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: Some(propose) })), "propose.proposal.call");
        let mut propose = proposal_out(&proposal());
        propose.key = None;
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: Some(propose) })), "propose.proposal.key");
        let mut propose = proposal_out(&proposal());
        propose.key = Some(pb::CallKey { rank: u32::from(VULNERABLE_RANK) + 1, arrived_ms: 0, seq: 0 });
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: Some(propose) })), "propose.proposal.key.rank");
        let mut propose = proposal_out(&proposal());
        propose.call.as_mut().expect("has a call").priority = 10;
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: Some(propose) })), "propose.proposal.call.priority");
        let mut propose = proposal_out(&proposal());
        propose.offer_id.clear();
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: Some(propose) })), "propose.proposal.offer_id");
        assert_eq!(refused(Body::Propose(pb::Propose { proposal: None })), "propose.proposal");

        assert_eq!(refused(Body::Adopt(pb::Adopt { call: None })), "adopt.call");
        let mut moved = moved_call_out(&moved_call());
        moved.info = None;
        assert_eq!(refused(Body::Adopt(pb::Adopt { call: Some(moved) })), "adopt.call.info");
        let mut moved = moved_call_out(&moved_call());
        moved.events.remove(1);
        assert_eq!(refused(Body::Adopt(pb::Adopt { call: Some(moved) })), "adopt.call.events");
        let mut moved = moved_call_out(&moved_call());
        moved.events[2].kind = None;
        assert_eq!(refused(Body::Adopt(pb::Adopt { call: Some(moved) })), "adopt.call.events[2].kind");
        let mut moved = moved_call_out(&moved_call());
        moved.transfer_from = Some("".into());
        assert_eq!(refused(Body::Adopt(pb::Adopt { call: Some(moved) })), "adopt.call.transfer_from");

        let connect = pb::Connect { informant_id: "ana".into(), call_id: "c1".into(), offer_id: "".into() };
        assert_eq!(refused(Body::Connect(connect)), "connect.offer_id");
        assert_eq!(refused(Body::Nothing(pb::Nothing { queue_id: "".into(), generation: 1 })), "nothing.queue_id");
    }

    fn id_strategy() -> impl Strategy<Value = Arc<str>> {
        "[a-z0-9_.:-]{1,12}".prop_map(Arc::from)
    }

    fn text_strategy() -> impl Strategy<Value = Arc<str>> {
        "\\PC{0,12}".prop_map(Arc::from)
    }

    fn info_strategy() -> impl Strategy<Value = CallInfo> {
        (
            id_strategy(),
            0..=MAX_PRIORITY,
            any::<bool>(),
            (text_strategy(), text_strategy(), text_strategy()),
            proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,12}", 0..4),
            any::<u64>(),
        )
            .prop_map(
                |(call_id, priority, vulnerable, (language, topic, caller_pseudonym), attributes, arrived_ms)| {
                    CallInfo {
                        call_id,
                        priority,
                        vulnerable,
                        language,
                        topic,
                        caller_pseudonym,
                        attributes: Arc::new(attributes),
                        arrived_ms,
                    }
                },
            )
    }

    fn kind_strategy() -> impl Strategy<Value = CallEventKind> {
        prop_oneof![
            (id_strategy(), any::<u32>(), any::<u64>()).prop_map(|(queue_id, position, estimated_wait_ms)| {
                CallEventKind::Queued { queue_id, position, estimated_wait_ms }
            }),
            (id_strategy(), any::<bool>())
                .prop_map(|(informant_id, unanswered)| CallEventKind::Offered { informant_id, unanswered }),
            (id_strategy(), any::<u64>())
                .prop_map(|(informant_id, waited_ms)| CallEventKind::Connected { informant_id, waited_ms }),
            Just(CallEventKind::Completed),
            any::<u64>().prop_map(|waited_ms| CallEventKind::Abandoned { waited_ms }),
            text_strategy().prop_map(|reason| CallEventKind::Deflected { reason }),
            (id_strategy(), id_strategy(), text_strategy()).prop_map(|(from_queue_id, to_queue_id, reason)| {
                CallEventKind::Transferred { from_queue_id, to_queue_id, reason }
            }),
        ]
    }

    proptest! {
        #[test]
        fn proposals_round_trip(
            call in info_strategy(),
            offer_id in id_strategy(),
            queue_id in id_strategy(),
            rank in 0..=VULNERABLE_RANK,
            numbers in any::<[u64; 6]>(),
            max_missed_offers in any::<u32>(),
        ) {
            let [arrived_ms, seq, generation, waited_ms, offer_timeout_ms, wrap_up_ms] = numbers;
            let proposal = Proposal {
                offer_id,
                queue_id,
                key: CallKey { rank, arrived_ms, seq },
                generation,
                call,
                waited_ms,
                offer_timeout_ms,
                wrap_up_ms,
                max_missed_offers,
            };
            match informant_round_trip(InformantMsg::Propose(Box::new(proposal.clone()), Trace::default())) {
                InformantMsg::Propose(back, _) => prop_assert_eq!(*back, proposal),
                _ => prop_assert!(false, "not a propose"),
            }
        }

        #[test]
        fn moved_calls_round_trip(
            info in info_strategy(),
            kinds in proptest::collection::vec((any::<u64>(), kind_strategy()), 0..40),
            transfer_from in proptest::option::of(id_strategy()),
            proposals in any::<u32>(),
        ) {
            let mut events = EventLog::default();
            for (at_ms, kind) in kinds {
                events.record(at_ms, kind);
            }
            let call = MovedCall { info, events, transfer_from, proposals };
            assert_same_call(&moved_call_round_trip(&call), &call);
        }
    }
}
