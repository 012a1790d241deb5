//! Calls: their rank in line, what the gateway told us about them, and their
//! numbered event log.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Millis;

/// Rank given to vulnerable callers: above every gateway priority.
pub const VULNERABLE_RANK: u8 = crate::MAX_PRIORITY + 1;

/// A call's place in line. Ordered best first: higher rank, then earlier
/// arrival, then lower arrival sequence (which breaks ties between calls that
/// arrived in the same millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub rank: u8,
    pub arrived_ms: Millis,
    pub seq: u64,
}

impl Ord for CallKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then(self.arrived_ms.cmp(&other.arrived_ms)).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for CallKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl CallKey {
    pub fn rank_of(priority: u8, vulnerable: bool) -> u8 {
        if vulnerable { VULNERABLE_RANK } else { priority }
    }
}

/// What the gateway said about a call. The caller's number never gets here:
/// only its keyed hash (`caller_pseudonym`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: Arc<str>,
    pub priority: u8,
    pub vulnerable: bool,
    pub language: Arc<str>,
    pub topic: Arc<str>,
    pub caller_pseudonym: Arc<str>,
    pub attributes: Arc<BTreeMap<String, String>>,
    /// Arrival in the first queue; kept through overflow and transfer.
    pub arrived_ms: Millis,
}

/// One numbered event of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    pub sequence: u64,
    pub at_ms: Millis,
    pub kind: CallEventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEventKind {
    Queued {
        queue_id: Arc<str>,
        position: u32,
        estimated_wait_ms: u64,
    },
    /// The queue chose the informant (at the event's time). `unanswered`:
    /// she did not take the call — she never answered the proposal, or
    /// refused it having taken another call first (told when the queue
    /// proposed another call meanwhile) — and the queue took it back.
    Offered {
        informant_id: Arc<str>,
        unanswered: bool,
    },
    Connected {
        informant_id: Arc<str>,
        waited_ms: u64,
    },
    Completed,
    Abandoned {
        waited_ms: u64,
    },
    Deflected {
        reason: Arc<str>,
    },
    Transferred {
        from_queue_id: Arc<str>,
        to_queue_id: Arc<str>,
        reason: Arc<str>,
    },
}

impl CallEventKind {
    /// Whether this event ends the call.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Abandoned { .. } | Self::Deflected { .. })
    }
}

/// A call's events, numbered from 1 without gaps.
///
/// Bounded: once `MAX_EVENTS - TERMINAL_RESERVE` events are recorded, further
/// non-terminal events (position updates, repeated offers) are not recorded
/// at all — they take no sequence number, so a watcher resuming from any
/// sequence still sees a gapless history. Terminal events are always
/// recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    events: Vec<CallEvent>,
}

impl EventLog {
    pub const MAX_EVENTS: usize = 128;
    const TERMINAL_RESERVE: usize = 4;

    /// Records an event; returns it, or `None` when the bound dropped it.
    pub fn record(&mut self, at_ms: Millis, kind: CallEventKind) -> Option<CallEvent> {
        let room = if kind.is_terminal() { Self::MAX_EVENTS } else { Self::MAX_EVENTS - Self::TERMINAL_RESERVE };
        if self.events.len() >= room {
            return None;
        }
        let event = CallEvent { sequence: self.last_sequence() + 1, at_ms, kind };
        self.events.push(event.clone());
        Some(event)
    }

    /// Rebuilds a log from events recorded elsewhere (a call that moved to
    /// another node). `None` unless the events are numbered from 1 without
    /// gaps and stay within `MAX_EVENTS`, as `record` leaves them.
    pub fn from_events(events: Vec<CallEvent>) -> Option<Self> {
        let numbered = events.iter().zip(1u64..).all(|(event, sequence)| event.sequence == sequence);
        (numbered && events.len() <= Self::MAX_EVENTS).then_some(Self { events })
    }

    pub fn last_sequence(&self) -> u64 {
        self.events.last().map_or(0, |e| e.sequence)
    }

    /// Events with a sequence greater than `after`.
    pub fn after(&self, after: u64) -> &[CallEvent] {
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(self.events.len());
        &self.events[start..]
    }

    pub fn is_ended(&self) -> bool {
        self.events.last().is_some_and(|e| e.kind.is_terminal())
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rank: u8, arrived_ms: u64, seq: u64) -> CallKey {
        CallKey { rank, arrived_ms, seq }
    }

    #[test]
    fn keys_order_by_rank_then_arrival_then_seq() {
        let mut keys = vec![key(1, 5, 0), key(3, 9, 1), key(1, 2, 2), key(VULNERABLE_RANK, 100, 3), key(1, 2, 1)];
        keys.sort();
        assert_eq!(keys, vec![key(VULNERABLE_RANK, 100, 3), key(3, 9, 1), key(1, 2, 1), key(1, 2, 2), key(1, 5, 0)]);
    }

    #[test]
    fn log_numbers_from_one_and_replays_after() {
        let mut log = EventLog::default();
        log.record(1, CallEventKind::Queued { queue_id: "q".into(), position: 1, estimated_wait_ms: 0 });
        log.record(2, CallEventKind::Offered { informant_id: "i".into(), unanswered: false });
        log.record(3, CallEventKind::Completed);
        assert_eq!(log.last_sequence(), 3);
        assert_eq!(log.after(1).iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![2, 3]);
        assert!(log.after(7).is_empty());
        assert!(log.is_ended());
    }

    #[test]
    fn log_rebuilds_only_from_gapless_events() {
        let mut log = EventLog::default();
        log.record(1, CallEventKind::Queued { queue_id: "q".into(), position: 1, estimated_wait_ms: 0 });
        log.record(2, CallEventKind::Completed);
        assert_eq!(EventLog::from_events(log.after(0).to_vec()), Some(log.clone()));
        assert_eq!(EventLog::from_events(Vec::new()), Some(EventLog::default()));
        assert_eq!(EventLog::from_events(log.after(1).to_vec()), None);
        let too_many = (1..=EventLog::MAX_EVENTS as u64 + 1)
            .map(|sequence| CallEvent { sequence, at_ms: 0, kind: CallEventKind::Completed })
            .collect();
        assert_eq!(EventLog::from_events(too_many), None);
    }

    #[test]
    fn log_is_bounded_but_keeps_room_for_the_end() {
        let mut log = EventLog::default();
        for i in 0..1000 {
            log.record(i, CallEventKind::Offered { informant_id: "i".into(), unanswered: false });
        }
        assert!(log.len() < EventLog::MAX_EVENTS);
        let end = log.record(2000, CallEventKind::Abandoned { waited_ms: 1 }).expect("terminal recorded");
        assert_eq!(end.sequence, log.len() as u64);
        assert!(log.is_ended());
    }
}
