//! The checker: judges a history alone, offline.
//!
//! It must not depend on the node's code (only on the history's types): a
//! bug in the node must not be able to hide itself in the checker.
//!
//! Definitions (docs/chaos.md says the same for readers):
//! - A call is *acknowledged* once an OfferCall for it was answered. Its
//!   *arrival* is the node's `arrived_at_unix_ms` from that answer.
//! - A call's *events* are the distinct sequences its streams delivered.
//!   Its *end* is a `completed`, `abandoned` or `deflected` event.
//!   *Lost*: acknowledged, no end. *Double end*: two ends. *Bad end*:
//!   completed without being connected. *Double connect*: two `connected`
//!   events.
//! - A call *holds* an informant from an `offered` (or `connected`) event
//!   naming her until its next event that does not keep her (queued again,
//!   offered to another, its end), or until her session says the offer was
//!   withdrawn or the call ended. *Double assignment*: two calls hold one
//!   informant at the same time (the intervals overlap by at least 1 ms).
//!   An `offered` event marked `unanswered` (the informant did not take
//!   the proposal; the queue took the call back) holds no one.
//! - *Served* is the time of a call's first `offered` event, answered or
//!   not (the routing decision), not its connection: a call offered to an
//!   informant whose node then freezes is legitimately connected after a
//!   younger call. A call that ends without being offered leaves the line
//!   at its end.
//!   *Order violation*: within one queue and priority (every call of a
//!   queue suits the same informants in our workloads), a call B is served
//!   while a call A that arrived strictly earlier (by the node's arrival
//!   time) is still in line: A is served or leaves strictly after B.
//!   A call that an informant's session was offered while its own stream
//!   never told that offer (the informant's node froze and told it late)
//!   was routed at a time the history does not tell, between its arrival
//!   and its first offer the stream tells: a pair it would break is
//!   *undetermined*, listed apart, not a violation.
//! - *Stream gap / repeat*: across the successive streams of a call
//!   (resumed with `after_sequence` = last sequence seen), an event whose
//!   sequence is not the last one plus one.
//! - *Recovery* of a fault: for each queue it hits, the time from the fault
//!   (or, when no call of the queue was waiting then, from the next call's
//!   arrival) to the first call offered in that queue from then on; the
//!   fault's recovery is the largest. *Net of busy informants*, each
//!   queue's clock starts only once one of its informants is free (holds
//!   no call, or her desktop asked to finish hers).
//! - *Clock skew*: the order and hold checks compare times the nodes
//!   stamped, so the checker checks that it may: a call's event stamped
//!   more than [`SKEW_MARGIN_MS`] before the gateway first sent the call,
//!   or after the client received the event, comes from a node whose clock
//!   disagrees with the clients'. It is flagged (once per call), and the
//!   history is not vouched for.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::history::{CallKind, Event, Outcome, Record, SessionKind};

/// How far a node's stamp may stray outside the interval in which the
/// clients' clock places the event (every process reads one host clock).
pub const SKEW_MARGIN_MS: i64 = 1_000;

/// What kind of thing went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Lost,
    DoubleEnd,
    BadEnd,
    DoubleConnect,
    DoubleAssignment,
    OrderViolation,
    StreamGap,
    StreamRepeat,
    StreamConflict,
    ClockSkew,
    Truncated,
}

/// One thing that went wrong, naming the call and the time.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub call_id: String,
    /// The other call involved (the older call bypassed, the other call
    /// holding the same informant).
    pub other_call_id: Option<String>,
    pub informant_id: Option<String>,
    /// When it happened (ms since the Unix epoch).
    pub at_ms: i64,
    pub detail: String,
}

/// How long a fault took to recover from.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    pub fault_id: u32,
    pub kind: String,
    pub node: Option<String>,
    pub at_ms: i64,
    /// When the fault ended (the node started again, the link healed…).
    pub ended_ms: Option<i64>,
    /// The queues it hit that another node hosted just before it ended.
    pub moved: Vec<String>,
    /// None: no call was offered again in some queue it hit.
    pub recovery_ms: Option<i64>,
    /// The same, with each queue's clock started only once one of its
    /// informants is free: when every informant the history shows serving
    /// the queue held a call at the start, at the first end of those holds.
    /// It separates the cluster's recovery from the staffing's.
    pub recovery_net_ms: Option<i64>,
    pub queues: Vec<String>,
    pub waiting: u32,
}

/// The verdict on a history.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub scenario: String,
    pub seed: u64,
    /// Calls acknowledged to the gateway.
    pub offered: usize,
    /// Acknowledged calls connected to an informant.
    pub answered: usize,
    pub completed: usize,
    pub abandoned: usize,
    pub deflected: usize,
    pub lost: usize,
    /// Calls never acknowledged whose last attempt's outcome is unknown.
    pub unknown: usize,
    pub double_assignments: usize,
    pub double_connects: usize,
    pub double_ends: usize,
    pub order_violations: usize,
    /// Pairs the history cannot order (see `order`), named.
    pub order_undetermined: Vec<String>,
    pub stream_gaps: usize,
    pub faults: Vec<Recovery>,
    pub unsupported: Vec<String>,
    pub findings: Vec<Finding>,
    /// Start and end of the run (ms since the Unix epoch).
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Verdict {
    /// Whether nothing went wrong.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

#[derive(Default)]
struct Call {
    queue_id: String,
    priority: u32,
    acked: bool,
    /// When the gateway first sent the call (client time).
    sent_ms: Option<i64>,
    /// Whether a stamp of this call was already found skewed.
    skewed: bool,
    arrived_at_ms: Option<i64>,
    last_outcome: Option<Outcome>,
    /// Distinct events by sequence: (kind, at_ms, informant).
    events: BTreeMap<u64, (CallKind, i64, String)>,
    /// Last sequence the streams delivered.
    last_seen: u64,
    final_state: Option<String>,
    /// Informants whose session was offered the call.
    offered_to: Vec<String>,
}

impl Call {
    /// Whether an informant's session was offered the call while its stream
    /// never said so: a routing decision the call's events do not date.
    fn hidden_offer(&self) -> bool {
        self.offered_to.iter().any(|informant| !self.events.values().any(|e| e.0.serves() && e.2 == *informant))
    }
}

/// Judges `records`.
pub fn check(records: &[Record]) -> Verdict {
    let mut verdict = Verdict::default();
    let mut calls: HashMap<String, Call> = HashMap::new();
    // (informant, call) → times her session said the offer went or the call ended.
    let mut released: HashMap<(String, String), Vec<i64>> = HashMap::new();
    let mut offer_calls: HashMap<(String, String), String> = HashMap::new();
    // (informant, call) → when her desktop first asked to finish it.
    let mut finishing: HashMap<(String, String), i64> = HashMap::new();
    verdict.start_ms = records.first().map_or(0, |r| r.t_ms);
    verdict.end_ms = records.last().map_or(0, |r| r.t_ms);

    for record in records {
        match &record.event {
            Event::Run { scenario, seed, .. } => {
                verdict.scenario = scenario.clone();
                verdict.seed = *seed;
            }
            Event::FinishSent { informant_id, call_id } => {
                finishing.entry((informant_id.clone(), call_id.clone())).or_insert(record.t_ms);
            }
            Event::OfferSent { call_id, queue_id, priority, .. } => {
                let call = calls.entry(call_id.clone()).or_default();
                call.queue_id = queue_id.clone();
                call.priority = *priority;
                call.sent_ms.get_or_insert(record.t_ms);
            }
            Event::OfferAcked { call_id, arrived_at_ms, .. } => {
                let call = calls.entry(call_id.clone()).or_default();
                call.acked = true;
                call.arrived_at_ms = Some(call.arrived_at_ms.map_or(*arrived_at_ms, |a| a.min(*arrived_at_ms)));
            }
            Event::OfferFailed { call_id, outcome, .. } | Event::OfferAbandoned { call_id, outcome } => {
                calls.entry(call_id.clone()).or_default().last_outcome = Some(*outcome);
            }
            Event::CallEvent { call_id, sequence, at_ms, kind, informant_id, .. } => {
                let call = calls.entry(call_id.clone()).or_default();
                let before_sent = call.sent_ms.is_some_and(|sent| *at_ms < sent - SKEW_MARGIN_MS);
                if !call.skewed && (before_sent || *at_ms > record.t_ms + SKEW_MARGIN_MS) {
                    call.skewed = true;
                    let sent = call.sent_ms.map_or_else(|| "?".to_string(), |s| s.to_string());
                    verdict.findings.push(Finding {
                        kind: FindingKind::ClockSkew,
                        call_id: call_id.clone(),
                        other_call_id: None,
                        informant_id: None,
                        at_ms: record.t_ms,
                        detail: format!(
                            "event {sequence} stamped {at_ms} by its node, outside [{sent}, {}] when the gateway sent the call and received the event: that node's clock disagrees with the clients'",
                            record.t_ms
                        ),
                    });
                }
                if *sequence <= call.last_seen {
                    verdict.findings.push(Finding {
                        kind: FindingKind::StreamRepeat,
                        call_id: call_id.clone(),
                        other_call_id: None,
                        informant_id: None,
                        at_ms: record.t_ms,
                        detail: format!("event {sequence} delivered again after {}", call.last_seen),
                    });
                } else if *sequence > call.last_seen + 1 {
                    verdict.findings.push(Finding {
                        kind: FindingKind::StreamGap,
                        call_id: call_id.clone(),
                        other_call_id: None,
                        informant_id: None,
                        at_ms: record.t_ms,
                        detail: format!("events {}..{} never delivered", call.last_seen + 1, sequence - 1),
                    });
                }
                call.last_seen = call.last_seen.max(*sequence);
                let event = (*kind, *at_ms, informant_id.clone());
                match call.events.get(sequence) {
                    Some(known) if known.0 != event.0 || known.2 != event.2 => {
                        verdict.findings.push(Finding {
                            kind: FindingKind::StreamConflict,
                            call_id: call_id.clone(),
                            other_call_id: None,
                            informant_id: None,
                            at_ms: record.t_ms,
                            detail: format!("event {sequence} was {:?} and now is {:?}", known.0, event.0),
                        });
                    }
                    Some(_) => {}
                    None => {
                        call.events.insert(*sequence, event);
                    }
                }
            }
            Event::SessionEvent { informant_id, at_ms, kind, call_id, offer_id, .. } => match kind {
                SessionKind::Offer => {
                    offer_calls.insert((informant_id.clone(), offer_id.clone()), call_id.clone());
                    let call = calls.entry(call_id.clone()).or_default();
                    if !call.offered_to.contains(informant_id) {
                        call.offered_to.push(informant_id.clone());
                    }
                }
                SessionKind::OfferWithdrawn => {
                    if let Some(call_id) = offer_calls.get(&(informant_id.clone(), offer_id.clone())) {
                        released.entry((informant_id.clone(), call_id.clone())).or_default().push(*at_ms);
                    }
                }
                SessionKind::CallEnded => {
                    released.entry((informant_id.clone(), call_id.clone())).or_default().push(*at_ms);
                }
                SessionKind::State => {}
            },
            Event::Final { call_id, state } => {
                calls.entry(call_id.clone()).or_default().final_state = Some(state.clone());
            }
            Event::Fault { fault_id, kind, node, queues, waiting, .. } => {
                verdict.faults.push(Recovery {
                    fault_id: *fault_id,
                    kind: kind.clone(),
                    node: node.clone(),
                    at_ms: record.t_ms,
                    ended_ms: None,
                    moved: Vec::new(),
                    recovery_ms: None,
                    recovery_net_ms: None,
                    queues: queues.clone(),
                    waiting: *waiting,
                });
            }
            Event::FaultEnded { fault_id, moved, .. } => {
                if let Some(fault) = verdict.faults.iter_mut().find(|f| f.fault_id == *fault_id) {
                    fault.ended_ms = Some(record.t_ms);
                    fault.moved.clone_from(moved);
                }
            }
            Event::Unsupported { kind, why } => verdict.unsupported.push(format!("{kind}: {why}")),
            Event::End { truncated: true } => verdict.findings.push(Finding {
                kind: FindingKind::Truncated,
                call_id: String::new(),
                other_call_id: None,
                informant_id: None,
                at_ms: record.t_ms,
                detail: "the history was cut short: nothing can be vouched for".into(),
            }),
            _ => {}
        }
    }

    let mut ids: Vec<&String> = calls.keys().collect();
    ids.sort();
    for id in &ids {
        judge_call(id, &calls[*id], &mut verdict);
    }
    let holds = holds(&ids, &calls, &released, verdict.end_ms);
    double_assignments(&holds, &mut verdict);
    order(&ids, &calls, &mut verdict);
    recoveries(&calls, &holds, &finishing, &mut verdict.faults);

    verdict.double_assignments = verdict.count(FindingKind::DoubleAssignment);
    verdict.double_connects = verdict.count(FindingKind::DoubleConnect);
    verdict.double_ends = verdict.count(FindingKind::DoubleEnd) + verdict.count(FindingKind::BadEnd);
    verdict.order_violations = verdict.count(FindingKind::OrderViolation);
    verdict.stream_gaps = verdict.count(FindingKind::StreamGap)
        + verdict.count(FindingKind::StreamRepeat)
        + verdict.count(FindingKind::StreamConflict);
    verdict.lost = verdict.count(FindingKind::Lost);
    verdict.findings.sort_by(|a, b| (a.at_ms, a.kind, &a.call_id).cmp(&(b.at_ms, b.kind, &b.call_id)));
    verdict
}

fn judge_call(id: &str, call: &Call, verdict: &mut Verdict) {
    if !call.acked {
        if call.last_outcome == Some(Outcome::Unknown) {
            verdict.unknown += 1;
        }
        return;
    }
    verdict.offered += 1;
    let finding = |kind, at_ms, detail: String| Finding {
        kind,
        call_id: id.to_string(),
        other_call_id: None,
        informant_id: None,
        at_ms,
        detail,
    };
    let ends: Vec<(&u64, &(CallKind, i64, String))> = call.events.iter().filter(|(_, e)| e.0.is_end()).collect();
    let connects: Vec<(&u64, &(CallKind, i64, String))> =
        call.events.iter().filter(|(_, e)| e.0 == CallKind::Connected).collect();
    if !connects.is_empty() {
        verdict.answered += 1;
    }
    if connects.len() > 1 {
        let informants: Vec<&str> = connects.iter().map(|(_, e)| e.2.as_str()).collect();
        verdict.findings.push(Finding {
            informant_id: Some(connects[1].1.2.clone()),
            ..finding(
                FindingKind::DoubleConnect,
                connects[1].1.1,
                format!("connected {} times: {informants:?}", connects.len()),
            )
        });
    }
    match ends.as_slice() {
        [] => {
            let at = call.events.values().last().map_or(call.arrived_at_ms.unwrap_or(0), |e| e.1);
            let last = call.events.values().last().map_or("none".to_string(), |e| format!("{:?}", e.0));
            let final_state = call.final_state.as_deref().unwrap_or("not read");
            verdict.findings.push(finding(
                FindingKind::Lost,
                at,
                format!("acknowledged, no end: last event {last}, state at the end of the run {final_state}"),
            ));
        }
        [(_, end)] => {
            match end.0 {
                CallKind::Completed => verdict.completed += 1,
                CallKind::Abandoned => verdict.abandoned += 1,
                _ => verdict.deflected += 1,
            }
            if end.0 == CallKind::Completed && connects.is_empty() {
                verdict.findings.push(finding(FindingKind::BadEnd, end.1, "completed without being connected".into()));
            }
        }
        [_, (_, second), ..] => {
            let kinds: Vec<CallKind> = ends.iter().map(|(_, e)| e.0).collect();
            verdict.findings.push(finding(
                FindingKind::DoubleEnd,
                second.1,
                format!("ended {} times: {kinds:?}", kinds.len()),
            ));
        }
    }
}

/// Per informant, the intervals (from, until, call) during which each call
/// held her.
type Holds = HashMap<String, Vec<(i64, i64, String)>>;

/// Intervals during which each call held an informant, cut by her session's
/// releases.
fn holds(
    ids: &[&String],
    calls: &HashMap<String, Call>,
    released: &HashMap<(String, String), Vec<i64>>,
    end_ms: i64,
) -> Holds {
    let mut holds: Holds = HashMap::new();
    for id in ids {
        let call = &calls[*id];
        let close =
            |open: &mut Option<(String, i64)>, until: i64, holds: &mut HashMap<String, Vec<(i64, i64, String)>>| {
                if let Some((informant, from)) = open.take() {
                    let cut = released
                        .get(&(informant.clone(), id.to_string()))
                        .and_then(|times| times.iter().copied().filter(|t| *t >= from).min())
                        .unwrap_or(i64::MAX);
                    holds.entry(informant).or_default().push((from, until.min(cut), id.to_string()));
                }
            };
        let mut open: Option<(String, i64)> = None;
        for (kind, at, informant) in call.events.values() {
            match kind {
                CallKind::Offered | CallKind::Connected => {
                    if open.as_ref().is_some_and(|(who, _)| who == informant) {
                        continue;
                    }
                    close(&mut open, *at, &mut holds);
                    if !informant.is_empty() {
                        open = Some((informant.clone(), *at));
                    }
                }
                _ => close(&mut open, *at, &mut holds),
            }
        }
        close(&mut open, end_ms, &mut holds);
    }
    holds
}

/// Any overlap of two holds of one informant.
fn double_assignments(holds: &Holds, verdict: &mut Verdict) {
    let mut informants: Vec<_> = holds.iter().collect();
    informants.sort();
    for (informant, list) in informants {
        let mut list = list.clone();
        list.sort();
        // The hold reaching furthest so far: any later start before its end overlaps it.
        let mut furthest: Option<(i64, i64, String)> = None;
        for hold in list {
            if let Some(prev) = &furthest
                && hold.0 < prev.1
            {
                verdict.findings.push(Finding {
                    kind: FindingKind::DoubleAssignment,
                    call_id: hold.2.clone(),
                    other_call_id: Some(prev.2.clone()),
                    informant_id: Some(informant.clone()),
                    at_ms: hold.0,
                    detail: format!(
                        "{informant} held {} from {} until {} and {} from {}",
                        prev.2, prev.0, prev.1, hold.2, hold.0
                    ),
                });
            }
            if furthest.as_ref().is_none_or(|prev| hold.1 > prev.1) {
                furthest = Some(hold);
            }
        }
    }
}

/// A call in line: arrival, when it was served or left, whether it was
/// served, its id, whether it had a hidden offer.
type InLine<'a> = (i64, i64, bool, &'a str, bool);

/// Calls served (first offered) while an older call of the same queue and
/// priority was still in line.
fn order(ids: &[&String], calls: &HashMap<String, Call>, verdict: &mut Verdict) {
    // (queue, priority) → (arrival, served or left, served?, call)
    let mut groups: BTreeMap<(&str, u32), Vec<InLine<'_>>> = BTreeMap::new();
    for id in ids {
        let call = &calls[*id];
        let Some(arrival) = call.arrived_at_ms else { continue };
        if !call.acked {
            continue;
        }
        let offered = call.events.values().find(|e| e.0.serves()).map(|e| e.1);
        let left = call.events.values().find(|e| e.0.is_end()).map(|e| e.1);
        let (time, served) = match (offered, left) {
            (Some(t), _) => (t, true),
            (None, Some(t)) => (t, false),
            (None, None) => (i64::MAX, false),
        };
        let entry = (arrival, time, served, id.as_str(), call.hidden_offer());
        groups.entry((call.queue_id.as_str(), call.priority)).or_default().push(entry);
    }
    for ((queue, priority), mut list) in groups {
        list.sort();
        // Of strictly earlier arrivals, the call that left the line last,
        // among calls whose first offer the history dates, and among those
        // it does not.
        let mut latest_before: Option<InLine<'_>> = None;
        let mut latest_hidden: Option<InLine<'_>> = None;
        let mut i = 0;
        while i < list.len() {
            let arrival = list[i].0;
            let mut j = i;
            while j < list.len() && list[j].0 == arrival {
                let call = list[j];
                if call.2
                    && let Some(older) = latest_before
                    && older.1 > call.1
                {
                    let older_fate = if older.2 {
                        format!("served at {}", older.1)
                    } else if older.1 == i64::MAX {
                        "never served".to_string()
                    } else {
                        format!("left unserved at {}", older.1)
                    };
                    verdict.findings.push(Finding {
                        kind: FindingKind::OrderViolation,
                        call_id: call.3.to_string(),
                        other_call_id: Some(older.3.to_string()),
                        informant_id: None,
                        at_ms: call.1,
                        detail: format!(
                            "queue {queue} priority {priority}: {} (arrived {}) served at {} while {} (arrived {}) was waiting, {older_fate}",
                            call.3, call.0, call.1, older.3, older.0
                        ),
                    });
                } else if call.2
                    && let Some(older) = latest_hidden
                    && older.1 > call.1
                {
                    verdict.order_undetermined.push(format!(
                        "queue {queue} priority {priority}: {} (arrived {}) offered at {}; {} (arrived {}) was offered to an informant at a time its events do not tell, then offered again at {}",
                        call.3, call.0, call.1, older.3, older.0, older.1
                    ));
                }
                j += 1;
            }
            for call in &list[i..j] {
                let latest = if call.4 { &mut latest_hidden } else { &mut latest_before };
                if latest.is_none_or(|l| call.1 > l.1) {
                    *latest = Some(*call);
                }
            }
            i = j;
        }
    }
}

fn recoveries(
    calls: &HashMap<String, Call>,
    holds: &Holds,
    finishing: &HashMap<(String, String), i64>,
    faults: &mut [Recovery],
) {
    // queue → offered times, sorted; queue → (arrival, left the line);
    // queue → the informants seen serving it.
    let mut offers: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut lines: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    let mut staff: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for call in calls.values() {
        let serving = call.events.values().filter(|e| e.0 == CallKind::Offered || e.0 == CallKind::Connected);
        staff.entry(call.queue_id.as_str()).or_default().extend(serving.map(|e| e.2.as_str()));
        let times = offers.entry(call.queue_id.as_str()).or_default();
        times.extend(call.events.values().filter(|e| e.0 == CallKind::Offered).map(|e| e.1));
        if let (true, Some(arrival)) = (call.acked, call.arrived_at_ms) {
            let left =
                call.events.values().find(|e| e.0 == CallKind::Offered || e.0.is_end()).map_or(i64::MAX, |e| e.1);
            lines.entry(call.queue_id.as_str()).or_default().push((arrival, left));
        }
    }
    for times in offers.values_mut() {
        times.sort_unstable();
    }
    for fault in faults {
        let at = fault.at_ms;
        let hit: Vec<String> = if fault.queues.is_empty() {
            offers.keys().filter(|q| !q.is_empty()).map(|q| q.to_string()).collect()
        } else {
            fault.queues.clone()
        };
        let mut worst: Option<i64> = Some(0);
        let mut worst_net: Option<i64> = Some(0);
        for queue in &hit {
            // The clock starts at the fault if a call was waiting then, else
            // at the next arrival: a queue nobody calls has nothing to route.
            let line = lines.get(queue.as_str()).map_or(&[][..], Vec::as_slice);
            let waiting = line.iter().any(|(arrival, left)| *arrival <= at && *left > at);
            let start = if waiting { Some(at) } else { line.iter().map(|l| l.0).filter(|a| *a > at).min() };
            let Some(start) = start else { continue };
            let first = offers.get(queue.as_str()).and_then(|times| {
                let i = times.partition_point(|t| *t < start);
                times.get(i).copied()
            });
            worst = match (worst, first) {
                (Some(w), Some(t)) => Some(w.max(t - start)),
                _ => None,
            };
            let free_from = staff.get(queue.as_str()).and_then(|staff| first_free(staff, holds, finishing, start));
            worst_net = match (worst_net, first) {
                (Some(w), Some(t)) => Some(w.max(t - free_from.filter(|f| *f <= t).unwrap_or(start).max(start))),
                _ => None,
            };
        }
        fault.recovery_ms = if hit.is_empty() { None } else { worst };
        fault.recovery_net_ms = if hit.is_empty() { None } else { worst_net };
        fault.queues = hit;
    }
}

/// When one of `staff` is first free from `start` on: `start` if one of
/// them holds no call then, else the first time one of the calls they hold
/// ends or her desktop asks to finish it (what the cluster does after that
/// is its own recovery). None when the queue has no known informant.
fn first_free(
    staff: &std::collections::BTreeSet<&str>,
    holds: &Holds,
    finishing: &HashMap<(String, String), i64>,
    start: i64,
) -> Option<i64> {
    let mut first: Option<i64> = None;
    for informant in staff.iter().filter(|i| !i.is_empty()) {
        let holding = holds.get(*informant).and_then(|list| {
            list.iter()
                .filter(|(from, until, _)| *from <= start && start < *until)
                .map(|(from, until, call)| {
                    let asked = finishing.get(&(informant.to_string(), call.clone())).copied().filter(|t| t >= from);
                    asked.map_or(*until, |t| t.min(*until))
                })
                .max()
        });
        let free_at = holding.unwrap_or(start);
        first = Some(first.map_or(free_at, |f| f.min(free_at)));
    }
    first
}
