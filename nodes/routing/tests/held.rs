//! A call held for an informant who does not answer (its member is cut
//! off from the queue's, its answer was lost) goes back to its place after
//! a deadline and is served by someone else; the silent informant's late
//! answers change nothing.

use std::sync::Arc;

use relais_routing::call::CallEventKind;
use relais_routing::informant::{InformantCore, InformantEffect};
use relais_routing::queue::{OFFER_GRACE_MS, PROPOSAL_TIMEOUT_MS, QueueCore, QueueEffect, QueueError, reason};

mod common;
use common::{call, entry, proposed, queue, skills};

fn withdrawals(fx: &[QueueEffect]) -> Vec<(Arc<str>, Arc<str>, &'static str)> {
    fx.iter()
        .filter_map(|e| match e {
            QueueEffect::WithdrawOffer { informant_id, offer_id, reason, .. } => {
                Some((informant_id.clone(), offer_id.clone(), *reason))
            }
            _ => None,
        })
        .collect()
}

fn offered_at(fx: &[QueueEffect]) -> Option<(Arc<str>, u64)> {
    events(fx).into_iter().find_map(|(kind, at)| kind.strip_prefix("offered to ").map(|who| (who.into(), at)))
}

/// The call events in `fx`, as (what, when).
fn events(fx: &[QueueEffect]) -> Vec<(String, u64)> {
    fx.iter()
        .filter_map(|e| match e {
            QueueEffect::Event { event, .. } => Some(match &event.kind {
                CallEventKind::Offered { informant_id, unanswered: false } => {
                    (format!("offered to {informant_id}"), event.at_ms)
                }
                CallEventKind::Offered { informant_id, unanswered: true } => {
                    (format!("unanswered by {informant_id}"), event.at_ms)
                }
                CallEventKind::Queued { position, .. } => (format!("queued at {position}"), event.at_ms),
                other => (format!("{other:?}"), event.at_ms),
            }),
            _ => None,
        })
        .collect()
}

/// A queue where alice (idle since 0) and bob (since 10) are available.
fn alice_and_bob_available() -> QueueCore {
    let mut q = queue(0);
    for (informant, since) in [("alice", 0), ("bob", 10)] {
        q.join(informant.into(), skills(), true, 0);
        q.available(entry(informant, 1), since);
    }
    q
}

#[test]
fn an_unanswered_proposal_goes_to_the_next_informant_and_a_late_yes_is_refused() {
    // Alice has been idle longest: she is proposed the call.
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (call_id, alice_offer) = proposed(&fx).expect("proposed to alice");
    assert!(matches!(&fx[..], [.., QueueEffect::Propose { informant_id, .. }] if informant_id.as_ref() == "alice"));

    // Just before the deadline nothing moves.
    let fx = q.tick(100 + PROPOSAL_TIMEOUT_MS - 1, true);
    assert!(withdrawals(&fx).is_empty() && proposed(&fx).is_none());

    // At the deadline the call goes to bob, and alice is told. The gateway
    // is told the call was offered to alice when the queue chose her, and
    // is back in line.
    let deadline = 100 + PROPOSAL_TIMEOUT_MS;
    let fx = q.tick(deadline, true);
    assert_eq!(withdrawals(&fx), vec![("alice".into(), alice_offer.clone(), reason::NO_ANSWER)]);
    assert_eq!(events(&fx), vec![("unanswered by alice".to_string(), 100), ("queued at 1".to_string(), deadline)]);
    let (again, bob_offer) = proposed(&fx).expect("proposed again");
    assert_eq!(again, call_id);
    assert!(
        fx.iter().any(|e| matches!(e, QueueEffect::Propose { informant_id, .. } if informant_id.as_ref() == "bob"))
    );
    q.check_invariants().expect("invariants");
    // Alice is not pooled again until she announces herself.
    assert!(q.pool().get("alice").is_none());

    // Alice's yes comes late: the queue refuses it and tells her again.
    let fx = q.proposal_answered(&call_id, &alice_offer, "alice", true, deadline + 500);
    assert_eq!(withdrawals(&fx), vec![("alice".into(), alice_offer.clone(), reason::NO_ANSWER)]);
    assert!(offered_at(&fx).is_none());
    assert_eq!(
        q.connect(&call_id, &alice_offer, "alice", deadline + 600).err(),
        Some(QueueError::NotYourOffer(call_id.clone()))
    );

    // Bob takes it; the offered event carries the time the queue chose him.
    let fx = q.proposal_answered(&call_id, &bob_offer, "bob", true, deadline + 700);
    assert_eq!(offered_at(&fx), Some(("bob".into(), deadline)));
    q.connect(&call_id, &bob_offer, "bob", deadline + 800).expect("bob connects");
    q.check_invariants().expect("invariants");
}

#[test]
fn an_offer_no_one_hears_of_past_its_expiry_is_taken_back() {
    let mut q = queue(0);
    q.join("alice".into(), skills(), true, 0);
    q.available(entry("alice", 1), 0);
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (call_id, offer) = proposed(&fx).expect("proposed");
    q.proposal_answered(&call_id, &offer, "alice", true, 150);
    let timeout = q.config().offer_timeout_ms;
    // The informant's own expiry (and its word about it) should come first.
    assert!(withdrawals(&q.tick(150 + timeout + OFFER_GRACE_MS - 1, true)).is_empty());
    let fx = q.tick(150 + timeout + OFFER_GRACE_MS, true);
    assert_eq!(withdrawals(&fx), vec![("alice".into(), offer.clone(), reason::EXPIRED)]);
    assert!(q.connect(&call_id, &offer, "alice", 150 + timeout + OFFER_GRACE_MS + 1).is_err());
    q.check_invariants().expect("invariants");
    // Alice announcing herself again is proposed the call afresh.
    let fx = q.available(entry("alice", 2), 150 + timeout + OFFER_GRACE_MS + 2);
    let (again, new_offer) = proposed(&fx).expect("proposed again");
    assert_eq!(again, call_id);
    assert_ne!(new_offer, offer);
}

#[test]
fn an_available_informant_told_of_a_withdrawal_announces_itself_again_keeping_its_idle_time() {
    let mut alice = InformantCore::new("alice".into(), skills(), 0);
    let queues: Vec<Arc<str>> = vec!["justice".into(), "travail".into()];
    alice.login(queues.clone(), 100);
    // Both queues answer: nothing for her. She is idle since 100.
    alice.nothing_from("justice", 1, 110);
    let fx = alice.nothing_from("travail", 1, 120);
    assert!(fx.is_empty());
    // A proposal she never received is withdrawn.
    let fx = alice.withdrawn("a/1", reason::NO_ANSWER, 5_000);
    let announced: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            InformantEffect::Announce { queue_id, entry } => {
                Some((queue_id.clone(), entry.idle_since_ms, entry.generation))
            }
            _ => None,
        })
        .collect();
    assert_eq!(announced, vec![("justice".into(), 100, 2), ("travail".into(), 100, 2)]);
    // Her state did not change: her desktop is told nothing.
    assert!(!fx.iter().any(|e| matches!(e, InformantEffect::Session(_))));
    assert!(alice.collecting());
}

#[test]
fn an_offer_id_names_its_call_and_no_other() {
    use relais_routing::queue::offers_call;
    assert!(offers_call("c1/1", "c1") && offers_call("c1/12", "c1"));
    assert!(!offers_call("c12/1", "c1") && !offers_call("c1/", "c1") && !offers_call("c1/1/2", "c1"));
    assert!(!offers_call("c1", "c1") && !offers_call("c2/1", "c1"));
}

#[test]
fn a_queue_handing_over_takes_back_and_tells_its_proposals_and_offers() {
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (a, a_offer) = proposed(&fx).expect("a to alice");
    let (_, fx) = q.offer_call(call("b", 1, 110), 110).expect("offered");
    let (b, b_offer) = proposed(&fx).expect("b to bob");
    // Bob took b: it is his offer. Alice has not answered a.
    q.proposal_answered(&b, &b_offer, "bob", true, 120);
    // The next owner knows neither: both are withdrawn, and the gateway
    // hears both calls are back in line before the next owner can offer
    // alice or bob anything.
    let fx = q.take_back_held(500);
    let mut withdrawn = withdrawals(&fx);
    withdrawn.sort();
    assert_eq!(
        withdrawn,
        vec![("alice".into(), a_offer, reason::HANDED_OVER), ("bob".into(), b_offer, reason::HANDED_OVER)]
    );
    let mut told = events(&fx);
    told.sort();
    assert_eq!(
        told,
        vec![
            ("queued at 1".to_string(), 500),
            ("queued at 2".to_string(), 500),
            ("unanswered by alice".to_string(), 100)
        ]
    );
    assert!(proposed(&fx).is_none(), "nothing proposed while handing over");
    q.check_invariants().expect("invariants");
    for call_id in [&a, &b] {
        let record = q.call(call_id).expect("still here");
        assert!(matches!(record.phase, relais_routing::queue::Phase::Waiting));
    }
}

#[test]
fn a_refusal_is_told_only_when_a_younger_call_was_proposed_meanwhile() {
    // Nobody proposed since: the call is back at the head and goes to bob;
    // the gateway hears nothing of alice.
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (a, alice_offer) = proposed(&fx).expect("proposed to alice");
    let fx = q.proposal_answered(&a, &alice_offer, "alice", false, 110);
    assert!(events(&fx).is_empty(), "{:?}", events(&fx));
    assert!(
        fx.iter().any(|e| matches!(e, QueueEffect::Propose { informant_id, proposal } if informant_id.as_ref() == "bob" && proposal.call.call_id == a))
    );

    // A younger call was proposed to bob while alice had the older one:
    // bob's call may be offered first, so the gateway hears that the older
    // call was served to alice first, then queued again.
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (a, alice_offer) = proposed(&fx).expect("proposed to alice");
    let (_, fx) = q.offer_call(call("b", 1, 105), 105).expect("offered");
    let (b, bob_offer) = proposed(&fx).expect("proposed to bob");
    assert_eq!(b.as_ref(), "b");
    let fx = q.proposal_answered(&b, &bob_offer, "bob", true, 108);
    assert_eq!(events(&fx), vec![("offered to bob".to_string(), 105)]);
    let fx = q.proposal_answered(&a, &alice_offer, "alice", false, 110);
    assert_eq!(events(&fx), vec![("unanswered by alice".to_string(), 100), ("queued at 1".to_string(), 110)]);
    assert!(proposed(&fx).is_none(), "nobody is free for it");
    assert!(matches!(q.call(&a).expect("waiting").phase, relais_routing::queue::Phase::Waiting));
}

#[test]
fn a_proposal_to_an_informant_gone_is_told_unanswered_and_goes_to_the_next() {
    // Alice is proposed the call, then counted gone (her member stepped
    // aside or died: she is nowhere) before she answers.
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (call_id, _) = proposed(&fx).expect("proposed to alice");
    let fx = q.leave("alice", true, 900);
    // The gateway learns the call was served to alice at 100, then queued
    // again; bob is proposed it at once.
    assert_eq!(events(&fx), vec![("unanswered by alice".to_string(), 100), ("queued at 1".to_string(), 900)]);
    let (again, _) = proposed(&fx).expect("proposed to bob");
    assert_eq!(again, call_id);
    assert!(
        fx.iter().any(|e| matches!(e, QueueEffect::Propose { informant_id, .. } if informant_id.as_ref() == "bob"))
    );
}

#[test]
fn an_offer_that_ends_unaccepted_is_told_back_in_line_before_anyone_else_is_offered_it() {
    // The gateway heard "offered to alice"; when her offer ends (missed,
    // declined, or she logged in again elsewhere) it hears the call is
    // back in line, at the time it is, not at the next position update.
    let mut q = alice_and_bob_available();
    let (_, fx) = q.offer_call(call("a", 1, 100), 100).expect("offered");
    let (call_id, offer) = proposed(&fx).expect("proposed to alice");
    let fx = q.proposal_answered(&call_id, &offer, "alice", true, 120);
    assert_eq!(offered_at(&fx), Some(("alice".into(), 100)));
    let fx = q.offer_ended(&call_id, &offer, "alice", false, 5_000);
    assert_eq!(events(&fx), vec![("queued at 1".to_string(), 5_000)]);
    let (again, _) = proposed(&fx).expect("proposed to bob");
    assert_eq!(again, call_id);
}
