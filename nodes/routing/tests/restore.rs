//! A queue's calls, written as `DurableCall`s and restored by a fresh
//! `QueueCore` (the queue's next owner after a failure), go on as if
//! nothing happened: same order, same informants, gapless event logs.

use std::sync::Arc;

use relais_routing::call::CallEventKind;
use relais_routing::queue::{DurableCall, QueueEffect};

mod common;
use common::{call, entry, proposed, queue, skills, take_next};

#[test]
fn restored_calls_keep_their_order_informant_and_events() {
    let mut old = queue(0);
    old.join("alice".into(), skills(), true, 0);
    // b and c arrive in the same millisecond: their sequence orders them.
    for (id, priority, at) in [("a", 1, 10), ("b", 1, 20), ("c", 1, 20), ("v", 5, 30)] {
        old.offer_call(call(id, priority, at), at).expect("accepted");
    }
    assert_eq!(take_next(&mut old, "alice", 1, 40).as_ref(), "v");
    // A proposal in progress is not kept as one: its call waits again, and
    // is told served to bob (unanswered) when he was chosen.
    old.join("bob".into(), skills(), true, 0);
    let fx = old.available(entry("bob", 1), 50);
    assert_eq!(proposed(&fx).map(|(c, _)| c).as_deref(), Some("a"));

    let written: Vec<DurableCall> = ["c", "v", "a", "b"].iter().map(|id| old.durable(id).expect("live call")).collect();
    assert_eq!(written[1].connected.as_ref().map(|(i, _)| i.as_ref()), Some("alice"));
    assert!(written.iter().filter(|d| d.call.info.call_id.as_ref() != "v").all(|d| d.connected.is_none()));
    assert_eq!(written[2].proposed, Some(("bob".into(), 50)));
    assert!(written.iter().filter(|d| d.call.info.call_id.as_ref() != "a").all(|d| d.proposed.is_none()));

    let mut new = queue(1_000);
    let told = new.restore(written.clone(), 1_000);
    new.check_invariants().expect("restored queue is consistent");
    assert_eq!(new.live_calls(), 4);
    for d in written.iter().filter(|d| d.call.info.call_id.as_ref() != "a") {
        let call_id = d.call.info.call_id.as_ref();
        assert_eq!(new.durable(call_id).as_ref(), Some(d), "call {call_id} restored as written");
    }
    let a = new.durable("a").expect("a restored");
    assert_eq!((a.seq, a.proposed.clone()), (written[2].seq, None), "a waits in its place");
    let added: Vec<(u64, &CallEventKind)> =
        a.call.events.after(written[2].call.events.last_sequence()).iter().map(|e| (e.at_ms, &e.kind)).collect();
    assert!(
        matches!(
            added.as_slice(),
            [
                (50, CallEventKind::Offered { informant_id, unanswered: true }),
                (1_000, CallEventKind::Queued { .. }),
            ] if informant_id.as_ref() == "bob"
        ),
        "a: offered to bob unanswered at 50, then queued: {added:?}"
    );
    let offer_id = proposed(&fx).expect("the proposal to bob").1;
    let told: Vec<String> = told
        .iter()
        .map(|e| match e {
            QueueEffect::Event { call_id, .. } => format!("event of {call_id}"),
            QueueEffect::WithdrawOffer { informant_id, call_id, offer_id: o, reason } => {
                assert_eq!(o, &offer_id, "the offer bob may hold");
                format!("withdraw {call_id} from {informant_id} ({reason})")
            }
            other => panic!("only a's events and bob's withdrawal are told: {other:?}"),
        })
        .collect();
    assert_eq!(told, ["withdraw a from bob (handed_over)", "event of a", "event of a"]);
    // Restoring again changes nothing.
    assert!(new.restore(written, 1_000).is_empty());
    assert_eq!(new.live_calls(), 4);

    // Waiting calls are served in their original order.
    new.join("bob".into(), skills(), true, 0);
    new.join("carol".into(), skills(), true, 0);
    new.join("dave".into(), skills(), true, 0);
    let served: Vec<Arc<str>> = ["bob", "carol", "dave"].iter().map(|i| take_next(&mut new, i, 2, 1_100)).collect();
    assert_eq!(served.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), ["a", "b", "c"]);

    // The connected call ends with its informant, after its last event.
    let before = new.call("v").expect("live").events.last_sequence();
    let fx = new.complete(&"v".into(), "alice", 1_200).expect("alice holds v");
    let end = fx
        .iter()
        .find_map(|e| match e {
            QueueEffect::Event { event, .. } if event.kind == CallEventKind::Completed => Some(event.sequence),
            _ => None,
        })
        .expect("completed event");
    assert_eq!(end, before + 1);
    new.check_invariants().expect("consistent after serving");
}

#[test]
fn a_new_call_after_a_restore_queues_behind_restored_calls_of_the_same_millisecond() {
    let mut old = queue(0);
    old.offer_call(call("a", 1, 10), 10).expect("accepted");
    let written = vec![old.durable("a").expect("live")];
    let mut new = queue(10);
    new.restore(written, 10);
    new.offer_call(call("b", 1, 10), 10).expect("accepted");
    new.join("bob".into(), skills(), true, 0);
    assert_eq!(take_next(&mut new, "bob", 1, 11).as_ref(), "a");
}

#[test]
fn a_call_moving_here_is_restored_behind_its_arrival() {
    let mut source = queue(0);
    source.offer_call(call("m", 1, 5), 5).expect("accepted");
    let mut moving = source.durable("m").expect("live");
    moving.queue_id = "logement".into();
    moving.seq = 0;
    let mut target = queue(10);
    target.offer_call(call("late", 1, 8), 8).expect("accepted");
    target.restore(vec![moving], 10);
    target.join("bob".into(), skills(), true, 0);
    assert_eq!(take_next(&mut target, "bob", 1, 11).as_ref(), "m", "arrived earlier, served first");
    target.check_invariants().expect("consistent");
}

#[test]
fn an_informant_announcing_itself_ends_the_call_a_lost_finish_left_connected() {
    let mut old = queue(0);
    old.join("alice".into(), skills(), true, 0);
    old.offer_call(call("v", 1, 10), 10).expect("accepted");
    assert_eq!(take_next(&mut old, "alice", 1, 20).as_ref(), "v");
    // Alice finished v, but the member that held the queue died before
    // its finish reached it: the next owner restores v as connected.
    let mut new = queue(100);
    new.restore(vec![old.durable("v").expect("live")], 100);
    new.offer_call(call("w", 1, 50), 100).expect("accepted");
    new.join("alice".into(), skills(), true, 0);
    let fx = new.available(entry("alice", 2), 200);
    assert!(
        fx.iter().any(|e| matches!(e, QueueEffect::Event { call_id, event } if call_id.as_ref() == "v" && event.kind == CallEventKind::Completed)),
        "v completed: {fx:?}"
    );
    assert!(
        fx.iter().any(|e| matches!(e, QueueEffect::Ended { snapshot, .. } if snapshot.info.call_id.as_ref() == "v"))
    );
    assert_eq!(proposed(&fx).map(|(c, _)| c).as_deref(), Some("w"), "and she is proposed the next call");
    new.check_invariants().expect("consistent");
}

#[test]
fn a_connect_asked_again_after_a_takeover_is_answered_the_same() {
    let mut old = queue(0);
    old.join("alice".into(), skills(), true, 0);
    old.offer_call(call("v", 1, 10), 10).expect("accepted");
    let fx = old.available(entry("alice", 1), 20);
    let (call_id, offer_id) = proposed(&fx).expect("proposed");
    old.proposal_answered(&call_id, &offer_id, "alice", true, 20);
    old.connect(&call_id, &offer_id, "alice", 20).expect("connects");
    // The answer was lost with the member; the informant asks the next owner.
    let mut new = queue(100);
    new.restore(vec![old.durable("v").expect("live")], 100);
    let again = new.connect(&call_id, &offer_id, "alice", 100).expect("connected to alice already");
    assert!(again.is_empty(), "nothing new: {again:?}");
    assert!(new.connect(&call_id, &offer_id, "bob", 100).is_err(), "not bob's");
    new.check_invariants().expect("consistent");
}

#[test]
fn a_connect_whose_proposal_answer_was_lost_connects_the_call() {
    let mut q = queue(0);
    q.join("alice".into(), skills(), true, 0);
    q.offer_call(call("a", 1, 10), 10).expect("accepted");
    let fx = q.available(entry("alice", 1), 20);
    let (call_id, offer_id) = proposed(&fx).expect("proposed");
    // Alice's yes never arrived; her connect does.
    let fx = q.connect(&call_id, &offer_id, "alice", 30).expect("connects");
    let kinds: Vec<&CallEventKind> = fx
        .iter()
        .filter_map(|e| match e {
            QueueEffect::Event { event, .. } => Some(&event.kind),
            _ => None,
        })
        .collect();
    assert!(matches!(kinds.as_slice(), [CallEventKind::Offered { .. }, CallEventKind::Connected { .. }]), "{kinds:?}");
    assert!(q.connect(&call_id, &offer_id, "bob", 31).is_err(), "not bob's");
    q.check_invariants().expect("consistent");
}

#[test]
fn an_informant_logging_out_with_a_proposal_on_its_way_gives_the_call_back() {
    let mut q = queue(0);
    q.join("alice".into(), skills(), true, 0);
    q.join("bob".into(), skills(), true, 0);
    q.offer_call(call("a", 1, 10), 10).expect("accepted");
    let fx = q.available(entry("alice", 1), 20);
    assert_eq!(proposed(&fx).map(|(c, _)| c).as_deref(), Some("a"));
    q.available(entry("bob", 1), 25);
    // Leaving to join again keeps the proposal: alice will answer it.
    assert!(proposed(&q.leave("alice", false, 28)).is_none());
    q.join("alice".into(), skills(), false, 28);
    // Logging out gives the call back: her answer will never come.
    let fx = q.leave("alice", true, 30);
    assert_eq!(proposed(&fx).map(|(c, _)| c).as_deref(), Some("a"), "proposed to bob instead");
    q.check_invariants().expect("consistent");
}

#[test]
fn a_call_held_for_an_informant_that_joins_again_goes_back_to_its_place() {
    let mut q = queue(0);
    q.join("alice".into(), skills(), true, 0);
    q.offer_call(call("v", 1, 10), 10).expect("accepted");
    q.offer_call(call("w", 1, 11), 11).expect("accepted");
    let fx = q.available(entry("alice", 1), 20);
    assert_eq!(proposed(&fx).map(|(c, _)| c).as_deref(), Some("v"));
    // Her member died with the proposal: she logs in again elsewhere and
    // joins the queue, which gives up the call it held for her.
    q.join("alice".into(), skills(), true, 30);
    q.check_invariants().expect("consistent");
    // Anyone, her included, is proposed v first again.
    assert_eq!(take_next(&mut q, "alice", 2, 40).as_ref(), "v");
    q.join("bob".into(), skills(), true, 40);
    assert_eq!(take_next(&mut q, "bob", 1, 50).as_ref(), "w");
    q.check_invariants().expect("consistent");
}

#[test]
fn the_informants_a_queue_knows_include_those_it_holds_a_call_for() {
    let mut q = queue(0);
    q.join("alice".into(), skills(), true, 0);
    q.join("bob".into(), skills(), true, 0);
    q.offer_call(call("v", 1, 10), 10).expect("accepted");
    assert!(proposed(&q.available(entry("alice", 1), 20)).is_some());
    // Alice leaves without logging out (to join again): the queue still
    // holds v for her.
    q.leave("alice", false, 30);
    let mut known: Vec<&str> = q.informants().map(|i| i.as_ref()).collect();
    known.sort_unstable();
    assert_eq!(known, ["alice", "bob"]);
    q.leave("alice", true, 40);
    assert_eq!(q.informants().map(|i| i.as_ref()).collect::<Vec<_>>(), ["bob"]);
}
