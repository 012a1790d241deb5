//! The checker on hand-made histories: a clean one passes; a lost call, a
//! double assignment, an order violation and a stream gap are each flagged,
//! naming the call and the time.

#![allow(clippy::unwrap_used)]

use chaos_tests::checker::{FindingKind, Verdict, check};
use chaos_tests::history::{CallKind, Event, Outcome, Record, SessionKind};

/// A history written by hand, line by line.
#[derive(Default)]
struct History(Vec<Record>);

impl History {
    fn at(&mut self, t_ms: i64, event: Event) -> &mut Self {
        self.0.push(Record { t_ms, event });
        self
    }

    /// A call offered to `queue` and acknowledged as arrived at `t`.
    fn arrive(&mut self, t: i64, call: &str, queue: &str) -> &mut Self {
        self.at(
            t,
            Event::OfferSent {
                call_id: call.into(),
                queue_id: queue.into(),
                priority: 1,
                attempt: 1,
                node: "n1".into(),
            },
        )
        .at(t, Event::OfferAcked { call_id: call.into(), created: true, arrived_at_ms: t })
        .at(t, Event::WatchOpened { call_id: call.into(), after_sequence: 0, node: "n1".into() })
        .event(t, call, 1, CallKind::Queued, "")
    }

    fn event(&mut self, t: i64, call: &str, sequence: u64, kind: CallKind, informant: &str) -> &mut Self {
        self.at(
            t,
            Event::CallEvent {
                call_id: call.into(),
                sequence,
                at_ms: t,
                kind,
                queue_id: String::new(),
                informant_id: informant.into(),
                reason: String::new(),
            },
        )
    }

    /// A kill -9 at `t` of node n1, owner of queue q with `waiting` calls.
    fn kill_at(&mut self, t: i64, waiting: u32) -> &mut Self {
        let fault = Event::Fault {
            fault_id: 1,
            kind: "kill".into(),
            node: Some("n1".into()),
            queues: vec!["q".into()],
            waiting,
            detail: String::new(),
        };
        self.at(t, fault)
    }

    /// Offered at `t`, connected 10 ms later, completed at `end`; sequences from `first`.
    fn served(&mut self, t: i64, end: i64, call: &str, informant: &str, first: u64) -> &mut Self {
        self.event(t, call, first, CallKind::Offered, informant)
            .event(t + 10, call, first + 1, CallKind::Connected, informant)
            .event(end, call, first + 2, CallKind::Completed, "")
    }

    fn check(&self) -> Verdict {
        let mut records = self.0.clone();
        records.insert(
            0,
            Record {
                t_ms: 0,
                event: Event::Run {
                    scenario: "hand".into(),
                    seed: 1,
                    nodes: 3,
                    etcd_members: 1,
                    lease_ttl_s: 3,
                    backend: "none".into(),
                    multiple: 1.0,
                },
            },
        );
        records.push(Record { t_ms: 100_000, event: Event::End { truncated: false } });
        check(&records)
    }
}

/// Two calls in one queue, served in order by two informants, with a stream
/// broken and resumed after the last event seen, a fault and its recovery.
fn clean() -> History {
    let mut h = History::default();
    h.arrive(1_000, "c1", "q").arrive(1_100, "c2", "q");
    h.event(1_200, "c1", 2, CallKind::Offered, "ana");
    h.at(1_300, Event::WatchEnded { call_id: "c1".into(), error: Some("unavailable".into()) })
        .at(1_400, Event::WatchOpened { call_id: "c1".into(), after_sequence: 2, node: "n2".into() });
    h.event(1_500, "c1", 3, CallKind::Connected, "ana").event(9_000, "c1", 4, CallKind::Completed, "");
    h.kill_at(2_000, 1);
    h.served(2_600, 9_500, "c2", "bob", 2);
    // A call offered once, never acknowledged: unknown, not lost.
    h.at(
        3_000,
        Event::OfferSent { call_id: "c3".into(), queue_id: "q".into(), priority: 1, attempt: 1, node: "n1".into() },
    )
    .at(
        3_100,
        Event::OfferFailed {
            call_id: "c3".into(),
            attempt: 1,
            node: "n1".into(),
            code: "Unavailable".into(),
            outcome: Outcome::Unknown,
        },
    )
    .at(3_100, Event::OfferAbandoned { call_id: "c3".into(), outcome: Outcome::Unknown });
    h
}

#[test]
fn a_clean_history_passes_with_its_counts_and_recovery() {
    let verdict = clean().check();
    assert!(verdict.clean(), "{:#?}", verdict.findings);
    assert_eq!((verdict.offered, verdict.answered, verdict.completed, verdict.lost), (2, 2, 2, 0));
    assert_eq!(verdict.unknown, 1);
    assert_eq!(verdict.faults.len(), 1);
    assert_eq!(verdict.faults[0].recovery_ms, Some(600), "fault at 2000, c2 offered at 2600");
    // bob, who took c2, held no call at the fault: nothing to discount.
    assert_eq!(verdict.faults[0].recovery_net_ms, Some(600));
}

#[test]
fn recovery_net_of_busy_informants_starts_when_one_is_free() {
    let mut h = History::default();
    // ana and bob are on calls when the queue's member is killed at 2000;
    // c3 arrives at 2100 and goes to bob once he ends c2 at 3000.
    h.arrive(1_000, "c1", "q").served(1_000, 5_000, "c1", "ana", 2);
    h.arrive(1_100, "c2", "q").served(1_100, 3_000, "c2", "bob", 2);
    h.kill_at(2_000, 0);
    h.arrive(2_100, "c3", "q").served(3_005, 4_000, "c3", "bob", 2);
    let verdict = h.check();
    assert!(verdict.clean(), "{:#?}", verdict.findings);
    assert_eq!(verdict.faults[0].recovery_ms, Some(905), "c3 arrived at 2100, offered at 3005");
    assert_eq!(verdict.faults[0].recovery_net_ms, Some(5), "bob free at 3000");
    // Had bob's desktop asked to finish c2 at 2900, the cluster's 100 ms
    // to end it count as recovery.
    h.at(2_900, Event::FinishSent { informant_id: "bob".into(), call_id: "c2".into() });
    let verdict = h.check();
    assert_eq!(verdict.faults[0].recovery_net_ms, Some(105), "bob asked to finish at 2900");
}

#[test]
fn a_lost_call_is_flagged() {
    let mut h = clean();
    h.arrive(4_000, "c4", "q").at(99_000, Event::Final { call_id: "c4".into(), state: "queued".into() });
    let verdict = h.check();
    assert_eq!(verdict.lost, 1);
    let lost = &verdict.findings[0];
    assert_eq!((lost.kind, lost.call_id.as_str(), lost.at_ms), (FindingKind::Lost, "c4", 4_000));
    assert!(lost.detail.contains("queued"), "{}", lost.detail);
}

#[test]
fn an_informant_holding_two_calls_is_flagged() {
    let mut h = clean();
    // ana still holds c1 (connected until 9000) when c4 is offered to her.
    h.arrive(5_000, "c4", "other").served(5_100, 6_000, "c4", "ana", 2);
    let verdict = h.check();
    assert_eq!(verdict.double_assignments, 1, "{:#?}", verdict.findings);
    let f = verdict.findings.iter().find(|f| f.kind == FindingKind::DoubleAssignment).unwrap();
    assert_eq!((f.call_id.as_str(), f.other_call_id.as_deref(), f.at_ms), ("c4", Some("c1"), 5_100));
    assert_eq!(f.informant_id.as_deref(), Some("ana"));
}

#[test]
fn an_offer_withdrawn_on_the_session_releases_the_informant() {
    let mut h = clean();
    // c4 is offered to carl, whose session says the offer was withdrawn at
    // 5200; the call's own stream only tells its next event (queued again)
    // later, after its queue moved. carl then takes c5: no overlap.
    h.arrive(5_000, "c4", "other").event(5_100, "c4", 2, CallKind::Offered, "carl");
    h.at(
        5_100,
        Event::SessionEvent {
            informant_id: "carl".into(),
            sequence: 1,
            at_ms: 5_100,
            kind: SessionKind::Offer,
            call_id: "c4".into(),
            offer_id: "o4".into(),
            state: String::new(),
        },
    )
    .at(
        5_200,
        Event::SessionEvent {
            informant_id: "carl".into(),
            sequence: 2,
            at_ms: 5_200,
            kind: SessionKind::OfferWithdrawn,
            call_id: String::new(),
            offer_id: "o4".into(),
            state: String::new(),
        },
    );
    h.arrive(5_300, "c5", "third").served(5_400, 6_000, "c5", "carl", 2);
    h.event(7_000, "c4", 3, CallKind::Queued, "").event(8_000, "c4", 4, CallKind::Abandoned, "");
    let verdict = h.check();
    assert!(verdict.clean(), "{:#?}", verdict.findings);
}

#[test]
fn a_younger_call_served_before_an_older_waiting_one_is_flagged() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(5_001, "c5", "q");
    // c5 offered at 5100 while c4 waits until 5200.
    h.served(5_100, 6_000, "c5", "dan", 2).served(5_200, 6_000, "c4", "eve", 2);
    let verdict = h.check();
    assert_eq!(verdict.order_violations, 1, "{:#?}", verdict.findings);
    let f = verdict.findings.iter().find(|f| f.kind == FindingKind::OrderViolation).unwrap();
    assert_eq!((f.call_id.as_str(), f.other_call_id.as_deref(), f.at_ms), ("c5", Some("c4"), 5_100));
}

#[test]
fn a_call_offered_first_but_connected_later_is_in_order() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(5_001, "c5", "q");
    // c4 is offered first (its informant then freezes) and connected after c5.
    h.event(5_100, "c4", 2, CallKind::Offered, "fay")
        .served(5_150, 6_000, "c5", "gus", 2)
        .event(8_000, "c4", 3, CallKind::Connected, "fay")
        .event(9_000, "c4", 4, CallKind::Completed, "");
    let verdict = h.check();
    assert!(verdict.clean(), "{:#?}", verdict.findings);
}

#[test]
fn a_call_served_to_an_informant_who_never_answered_is_in_order_and_holds_no_one() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(5_001, "c5", "q");
    // c4 is proposed to fay at 5100, who never answers (say her answer was
    // lost): the queue takes it back at 7100 and gives it to hal. Meanwhile
    // c5 is offered to gus, and fay takes c6 of another queue: c4's
    // unanswered proposal to her held no one.
    h.event(5_100, "c4", 2, CallKind::Unanswered, "fay")
        .served(5_150, 6_000, "c5", "gus", 2)
        .event(7_100, "c4", 3, CallKind::Queued, "")
        .served(7_100, 9_000, "c4", "hal", 4);
    h.arrive(5_200, "c6", "other").served(5_300, 6_500, "c6", "fay", 2);
    let verdict = h.check();
    assert!(verdict.clean(), "{:#?}", verdict.findings);
    // Without the unanswered offer, c5 was served while c4 waited.
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(5_001, "c5", "q");
    h.served(5_150, 6_000, "c5", "gus", 2)
        .event(7_100, "c4", 2, CallKind::Queued, "")
        .served(7_100, 9_000, "c4", "hal", 3);
    assert_eq!(h.check().order_violations, 1);
}

#[test]
fn a_call_abandoned_while_a_younger_one_is_served_is_an_order_violation() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(5_001, "c5", "q");
    h.served(5_100, 6_000, "c5", "dan", 2).event(7_000, "c4", 2, CallKind::Abandoned, "");
    let verdict = h.check();
    assert_eq!(verdict.order_violations, 1, "{:#?}", verdict.findings);
}

#[test]
fn an_event_stamped_before_its_call_was_sent_or_after_it_was_received_is_flagged() {
    // A node whose clock is 30 s behind stamps c1's offer.
    let mut h = History::default();
    h.arrive(1_000, "c1", "q").at(
        1_100,
        Event::CallEvent {
            call_id: "c1".into(),
            sequence: 2,
            at_ms: 1_100 - 30_000,
            kind: CallKind::Offered,
            queue_id: String::new(),
            informant_id: "ana".into(),
            reason: String::new(),
        },
    );
    // One 30 s ahead stamps c2's first event.
    h.at(
        2_000,
        Event::OfferSent { call_id: "c2".into(), queue_id: "q".into(), priority: 1, attempt: 1, node: "n2".into() },
    )
    .at(2_010, Event::OfferAcked { call_id: "c2".into(), created: true, arrived_at_ms: 32_005 })
    .at(
        2_010,
        Event::CallEvent {
            call_id: "c2".into(),
            sequence: 1,
            at_ms: 32_005,
            kind: CallKind::Queued,
            queue_id: "q".into(),
            informant_id: String::new(),
            reason: String::new(),
        },
    );
    let v = check(&h.0);
    let skewed: Vec<(&str, i64)> =
        v.findings.iter().filter(|f| f.kind == FindingKind::ClockSkew).map(|f| (f.call_id.as_str(), f.at_ms)).collect();
    assert_eq!(skewed, [("c1", 1_100), ("c2", 2_010)], "{:?}", v.findings);
    assert!(!v.clean());
    // Stamps within the margin pass: the clean history has none flagged.
    assert_eq!(check(&clean().0).count(FindingKind::ClockSkew), 0);
}

#[test]
fn a_gap_in_a_resumed_stream_is_flagged() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q");
    h.at(5_050, Event::WatchEnded { call_id: "c4".into(), error: Some("broken".into()) })
        .at(5_060, Event::WatchOpened { call_id: "c4".into(), after_sequence: 1, node: "n2".into() });
    // Event 2 (offered) never arrives on the resumed stream.
    h.event(5_200, "c4", 3, CallKind::Connected, "hal").event(6_000, "c4", 4, CallKind::Completed, "");
    let verdict = h.check();
    assert_eq!(verdict.stream_gaps, 1, "{:#?}", verdict.findings);
    let f = verdict.findings.iter().find(|f| f.kind == FindingKind::StreamGap).unwrap();
    assert_eq!((f.call_id.as_str(), f.at_ms), ("c4", 5_200));
}

#[test]
fn a_repeated_event_and_a_double_end_are_flagged() {
    let mut h = clean();
    h.arrive(5_000, "c4", "other").served(5_100, 6_000, "c4", "ivy", 2);
    h.event(6_100, "c4", 4, CallKind::Completed, "").event(6_200, "c4", 5, CallKind::Abandoned, "");
    let verdict = h.check();
    assert_eq!(verdict.count(FindingKind::StreamRepeat), 1, "{:#?}", verdict.findings);
    assert_eq!(verdict.count(FindingKind::DoubleEnd), 1, "{:#?}", verdict.findings);
}

#[test]
fn a_call_connected_twice_is_flagged() {
    let mut h = clean();
    h.arrive(5_000, "c4", "other").served(5_100, 6_000, "c4", "jo", 2);
    h.event(6_100, "c4", 5, CallKind::Connected, "kim");
    let verdict = h.check();
    assert_eq!(verdict.double_connects, 1, "{:#?}", verdict.findings);
}

#[test]
fn an_offer_told_only_by_a_frozen_informants_session_leaves_the_order_undetermined() {
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(6_000, "c5", "q");
    // c4 was proposed to lea, whose node froze: her session tells the offer
    // only after it thaws, and c4's stream never does; c4 is offered again
    // to max after c5 was offered.
    h.served(6_100, 9_000, "c5", "dan", 2);
    h.at(
        9_500,
        Event::SessionEvent {
            informant_id: "lea".into(),
            sequence: 3,
            at_ms: 9_500,
            kind: SessionKind::Offer,
            call_id: "c4".into(),
            offer_id: "o4-1".into(),
            state: String::new(),
        },
    );
    h.served(7_000, 9_000, "c4", "max", 2);
    let verdict = h.check();
    assert_eq!(verdict.order_violations, 0, "{:#?}", verdict.findings);
    assert_eq!(verdict.order_undetermined.len(), 1, "{:?}", verdict.order_undetermined);
    assert!(verdict.order_undetermined[0].contains("c5") && verdict.order_undetermined[0].contains("c4"));

    // Without the session's word, the same history is a violation.
    let mut h = clean();
    h.arrive(5_000, "c4", "q").arrive(6_000, "c5", "q");
    h.served(6_100, 9_000, "c5", "dan", 2).served(7_000, 9_000, "c4", "max", 2);
    assert_eq!(h.check().order_violations, 1);
}
