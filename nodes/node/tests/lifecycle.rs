//! Call lifecycles through a real node process and real gRPC clients.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use pb::informant_event::Kind;
use relais_proto::v1 as pb;
use support::*;

#[tokio::test]
async fn a_call_is_queued_offered_connected_completed_and_the_informant_wraps_up() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("logement", "logement", 2);
    q.wrap_up_ms = 300;
    apply(&mut c, vec![q]).await;

    let offered = c.gateway.offer_call(offer("c1", "logement")).await.unwrap().into_inner();
    assert!(offered.created);
    let status = offered.call.unwrap();
    assert_eq!(state_of(&status), pb::CallState::Queued);
    assert_eq!(status.position, 1);
    let mut watch = Watch::open(&mut c, "c1", 0).await;

    let mut desk = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let (offer_id, call_id) = desk.next_offer().await;
    assert_eq!(call_id, "c1");
    let reply = pb::OfferReply { informant_id: "ana".into(), offer_id };
    let accepted = c.desk.accept_offer(reply.clone()).await.unwrap().into_inner();
    assert_eq!(accepted.state, pb::InformantState::OnCall as i32);
    assert_eq!(accepted.call_id, "c1");
    assert_eq!(Some(accepted.last_sequence), desk.last_sequence, "the offer was the last event before the reply");
    let status = c.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&status), pb::CallState::Connected);
    assert_eq!(status.informant_id, "ana");
    // A desktop that lost the accept's answer asks again: the same answer.
    let again = c.desk.accept_offer(reply).await.unwrap().into_inner();
    assert_eq!((again.state, again.call_id.as_str()), (pb::InformantState::OnCall as i32, "c1"));
    // An offer she never had is still refused.
    let offer_id = "c2/1".to_string();
    let err = c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    let finished = c
        .desk
        .finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(finished.state, pb::InformantState::WrapUp as i32);
    assert_eq!(finished.calls_handled, 1);
    assert_eq!(Some(finished.last_sequence), desk.last_sequence, "no event for the accept nor the finish");
    // A desktop that lost the finish's answer asks again: the same state,
    // and the call is not finished twice.
    let finish = pb::FinishCallRequest { informant_id: "ana".into(), call_id: "c1".into() };
    let again = c.desk.finish_call(finish).await.unwrap().into_inner();
    assert_eq!((again.state, again.calls_handled), (pb::InformantState::WrapUp as i32, 1));
    let events = watch.rest().await;
    assert_eq!(history(&events), vec!["queued", "offered", "connected", "completed"]);
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>(), "gapless sequences from 1");

    // Wrap-up ends by itself after the queue's wrap-up time: the desktop did
    // not cause it, so its session tells it, and that is the next event.
    match desk.next().await {
        Kind::State(s) => assert_eq!(s.state, pb::InformantState::Available as i32),
        other => panic!("expected the end of wrap-up, got {other:?}"),
    }
    let stats =
        c.admin.get_queue_stats(pb::GetQueueStatsRequest { queue_id: "logement".into() }).await.unwrap().into_inner();
    assert_eq!((stats.offered_total, stats.answered_total, stats.waiting), (1, 1, 0));
}

#[tokio::test]
async fn the_session_tells_only_what_the_desktop_did_not_cause() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("travail", "travail", 1);
    q.max_missed_offers = 1;
    apply(&mut c, vec![q.clone()]).await;
    let mut ana = Session::open(&mut c, "ana", vec![skill("travail", 1)]).await;
    match ana.next().await {
        Kind::State(s) => assert_eq!(s.state, pb::InformantState::Available as i32, "the opening snapshot"),
        other => panic!("a session opens with a snapshot, got {other:?}"),
    }

    // An offer comes alone: it means "reserved".
    c.gateway.offer_call(offer("c1", "travail")).await.unwrap();
    let offer_id = match ana.next().await {
        Kind::Offer(o) => o.offer_id,
        other => panic!("expected the offer alone, got {other:?}"),
    };
    let reserved = c.desk.get_informant(pb::InformantRequest { informant_id: "ana".into() }).await.unwrap();
    assert_eq!(reserved.get_ref().state, pb::InformantState::Reserved as i32);

    // The desktop's own requests: each reply tells the new state, in order
    // with the session's events.
    let id = || "ana".to_string();
    let accepted = c.desk.accept_offer(pb::OfferReply { informant_id: id(), offer_id }).await.unwrap().into_inner();
    let finished = c
        .desk
        .finish_call(pb::FinishCallRequest { informant_id: id(), call_id: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    let paused =
        c.desk.pause(pb::PauseRequest { informant_id: id(), reason: "break".into() }).await.unwrap().into_inner();
    let resumed = c.desk.resume(pb::InformantRequest { informant_id: id() }).await.unwrap().into_inner();
    let states: Vec<_> = [&accepted, &finished, &paused, &resumed].map(|s| (s.state, s.last_sequence)).into();
    let last = ana.last_sequence.unwrap();
    assert_eq!(
        states,
        vec![
            (pb::InformantState::OnCall as i32, last),
            (pb::InformantState::Available as i32, last),
            (pb::InformantState::Paused as i32, last),
            (pb::InformantState::Available as i32, last),
        ]
    );
    // ...and the session does not repeat them.
    let repeated = ana.drain(Duration::from_millis(300)).await;
    assert!(repeated.is_empty(), "the session repeated what the replies told: {repeated:?}");

    // A missed offer: the desktop did not cause the withdrawal nor the
    // pause, so the session tells both. (Short offers from here on only, so
    // that a loaded machine does not make the first offer expire.)
    q.offer_timeout_ms = 300;
    c.admin.update_queue(q).await.unwrap();
    c.gateway.offer_call(offer("c2", "travail")).await.unwrap();
    assert!(matches!(ana.next().await, Kind::Offer(o) if o.call_id == "c2"));
    match ana.next().await {
        Kind::OfferWithdrawn(w) => assert_eq!(w.reason, "expired"),
        other => panic!("expected the withdrawal, got {other:?}"),
    }
    match ana.next().await {
        Kind::State(s) => {
            assert_eq!((s.state, s.reason.as_str()), (pb::InformantState::Paused as i32, "missed"));
            assert_eq!(Some(s.last_sequence), ana.last_sequence, "a state event carries its own sequence");
        }
        other => panic!("expected the pause for missed offers, got {other:?}"),
    }
}

#[tokio::test]
async fn a_declined_call_keeps_its_place_and_goes_to_someone_else() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("travail", "travail", 1)]).await;
    for id in ["c1", "c2"] {
        c.gateway.offer_call(offer(id, "travail")).await.unwrap();
    }
    let mut ana = Session::open(&mut c, "ana", vec![skill("travail", 2)]).await;
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");
    c.desk.decline_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    // c1 is back at the head of the line, but ana declined it: she gets c2.
    let status = c.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!((state_of(&status), status.position), (pb::CallState::Queued, 1));
    let (_, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c2");
    let mut bob = Session::open(&mut c, "bob", vec![skill("travail", 2)]).await;
    let (_, call_id) = bob.next_offer().await;
    assert_eq!(call_id, "c1");
}

#[tokio::test]
async fn missed_offers_expire_and_pause_the_informant() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("justice", "justice", 1);
    q.offer_timeout_ms = 200;
    q.max_missed_offers = 2;
    apply(&mut c, vec![q]).await;
    c.gateway.offer_call(offer("c1", "justice")).await.unwrap();
    let mut ana = Session::open(&mut c, "ana", vec![skill("justice", 1)]).await;
    let (first, _) = ana.next_offer().await;
    let paused = ana.until_state(pb::InformantState::Paused).await;
    assert_eq!(paused.reason, "missed");
    // The expired offer cannot be accepted any more.
    let err = c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id: first }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // The call is still waiting, and goes to ana once she resumes.
    let status = c.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&status), pb::CallState::Queued);
    c.desk.resume(pb::InformantRequest { informant_id: "ana".into() }).await.unwrap();
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
}

#[tokio::test]
async fn a_caller_may_abandon_while_queued_or_while_offered() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("interieur", "interieur", 1)]).await;

    c.gateway.offer_call(offer("queued", "interieur")).await.unwrap();
    let hung = c.gateway.hang_up(pb::HangUpRequest { call_id: "queued".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&hung.call.unwrap()), pb::CallState::Abandoned);
    // A retried hang-up answers the same final state.
    let again = c.gateway.hang_up(pb::HangUpRequest { call_id: "queued".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&again.call.unwrap()), pb::CallState::Abandoned);

    c.gateway.offer_call(offer("offered", "interieur")).await.unwrap();
    let mut ana = Session::open(&mut c, "ana", vec![skill("interieur", 1)]).await;
    let (offer_id, _) = ana.next_offer().await;
    c.gateway.hang_up(pb::HangUpRequest { call_id: "offered".into() }).await.unwrap();
    loop {
        if let Kind::OfferWithdrawn(w) = ana.next().await {
            assert_eq!((w.offer_id.as_str(), w.reason.as_str()), (offer_id.as_str(), "caller_hung_up"));
            break;
        }
    }
    ana.until_state(pb::InformantState::Available).await;
    let err = c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let events = Watch::open(&mut c, "offered", 0).await.rest().await;
    assert_eq!(history(&events), vec!["queued", "offered", "abandoned"]);
    let stats =
        c.admin.get_queue_stats(pb::GetQueueStatsRequest { queue_id: "interieur".into() }).await.unwrap().into_inner();
    assert_eq!((stats.abandoned_total, stats.answered_total), (2, 0));
}

#[tokio::test]
async fn vulnerable_callers_are_never_deflected_and_reach_listeners_first() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("logement", "logement", 1);
    q.max_waiting = 1;
    apply(&mut c, vec![q]).await;

    c.gateway.offer_call(offer("first", "logement")).await.unwrap();
    let full = c.gateway.offer_call(offer("second", "logement")).await.unwrap().into_inner().call.unwrap();
    assert_eq!((state_of(&full), full.deflect_reason.as_str()), (pb::CallState::Deflected, "queue_full"));
    let vulnerable = pb::OfferCallRequest { vulnerable: true, ..offer("fragile", "logement") };
    let kept = c.gateway.offer_call(vulnerable).await.unwrap().into_inner().call.unwrap();
    assert_eq!((state_of(&kept), kept.position), (pb::CallState::Queued, 1), "vulnerable callers go first");

    // An informant without the listening skill is not offered the vulnerable call...
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 5)]).await;
    let (_, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "first");
    // ...a listener is, ahead of everything else.
    c.gateway.offer_call(pb::OfferCallRequest { priority: 9, ..offer("urgent", "logement") }).await.unwrap();
    let mut bob = Session::open(&mut c, "bob", vec![skill("logement", 1), skill("ecoute", 3)]).await;
    let (_, call_id) = bob.next_offer().await;
    assert_eq!(call_id, "fragile");
}

#[tokio::test]
async fn max_wait_deflects_ordinary_callers_only() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("travail", "travail", 1);
    q.max_wait_ms = 200;
    apply(&mut c, vec![q]).await;
    c.gateway.offer_call(offer("ordinary", "travail")).await.unwrap();
    c.gateway.offer_call(pb::OfferCallRequest { vulnerable: true, ..offer("fragile", "travail") }).await.unwrap();
    let events = Watch::open(&mut c, "ordinary", 0).await.rest().await;
    let last = events.last().unwrap();
    match last.kind.as_ref().unwrap() {
        pb::call_event::Kind::Deflected(d) => assert_eq!(d.reason, "max_wait"),
        other => panic!("expected deflection, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fragile = c.gateway.get_call(pb::GetCallRequest { call_id: "fragile".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&fragile), pb::CallState::Queued);
}

#[tokio::test]
async fn a_warm_transfer_hands_the_caller_to_a_listener_then_releases_the_first_informant() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1), queue("ecoute", "ecoute", 1)]).await;
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let (offer_id, _) = ana.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    let mut watch = Watch::open(&mut c, "c1", 0).await;

    let moved = c
        .gateway
        .transfer_call(pb::TransferCallRequest { call_id: "c1".into(), queue_id: "ecoute".into() })
        .await
        .unwrap();
    assert_eq!(moved.into_inner().call.unwrap().queue_id, "ecoute");
    // Ana stays on the line until the listener takes the call.
    let ana_now = c.desk.get_informant(pb::InformantRequest { informant_id: "ana".into() }).await.unwrap().into_inner();
    assert_eq!(ana_now.state, pb::InformantState::OnCall as i32);

    let mut bob = Session::open(&mut c, "bob", vec![skill("ecoute", 4)]).await;
    let (offer_id, call_id) = bob.next_offer().await;
    assert_eq!(call_id, "c1");
    c.desk.accept_offer(pb::OfferReply { informant_id: "bob".into(), offer_id }).await.unwrap();
    loop {
        if let Kind::CallEnded(e) = ana.next().await {
            assert_eq!((e.call_id.as_str(), e.reason.as_str()), ("c1", "transferred"));
            break;
        }
    }
    c.desk.finish_call(pb::FinishCallRequest { informant_id: "bob".into(), call_id: "c1".into() }).await.unwrap();
    let events = watch.rest().await;
    assert_eq!(
        history(&events),
        vec!["queued", "offered", "connected", "transferred", "queued", "offered", "connected", "completed"]
    );
}

#[tokio::test]
async fn offering_the_same_call_id_twice_returns_the_existing_call() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("justice", "justice", 1)]).await;
    let first = c.gateway.offer_call(offer("dup", "justice")).await.unwrap().into_inner();
    let second = c.gateway.offer_call(offer("dup", "justice")).await.unwrap().into_inner();
    assert!(first.created && !second.created);
    assert_eq!(first.call.unwrap().arrived_at_unix_ms, second.call.unwrap().arrived_at_unix_ms);
    // Concurrent retries of one call_id make one call too.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut gateway = c.gateway.clone();
        tasks.push(tokio::spawn(async move {
            gateway.offer_call(offer("burst", "justice")).await.unwrap().into_inner().created
        }));
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1);
    let stats =
        c.admin.get_queue_stats(pb::GetQueueStatsRequest { queue_id: "justice".into() }).await.unwrap().into_inner();
    assert_eq!((stats.offered_total, stats.waiting), (2, 2));
}

#[tokio::test]
async fn a_watcher_resuming_after_a_sequence_gets_only_later_events() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("travail", "travail", 1)]).await;
    c.gateway.offer_call(offer("c1", "travail")).await.unwrap();
    let mut ana = Session::open(&mut c, "ana", vec![skill("travail", 1)]).await;
    let (offer_id, _) = ana.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    let mut first = Watch::open(&mut c, "c1", 0).await;
    let seen = [first.next().await.unwrap(), first.next().await.unwrap()];
    drop(first);
    let mut resumed = Watch::open(&mut c, "c1", seen[1].sequence).await;
    c.desk.finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id: "c1".into() }).await.unwrap();
    let rest = resumed.rest().await;
    assert_eq!(rest.first().unwrap().sequence, seen[1].sequence + 1);
    assert_eq!(history(&rest), vec!["connected", "completed"]);
    // After the end, a watcher still gets the history it missed.
    let late = Watch::open(&mut c, "c1", 1).await.rest().await;
    assert_eq!(late.len() as u64, rest.last().unwrap().sequence - 1);
}

#[tokio::test]
async fn an_informant_serving_several_queues_takes_the_best_call_across_them() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("justice", "justice", 1), queue("travail", "travail", 1)]).await;
    c.gateway.offer_call(pb::OfferCallRequest { priority: 2, ..offer("old-low", "justice") }).await.unwrap();
    c.gateway.offer_call(pb::OfferCallRequest { priority: 5, ..offer("new-high", "travail") }).await.unwrap();
    c.gateway.offer_call(pb::OfferCallRequest { priority: 5, ..offer("newer-high", "justice") }).await.unwrap();
    let mut ana = Session::open(&mut c, "ana", vec![skill("justice", 1), skill("travail", 1)]).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let (offer_id, call_id) = ana.next_offer().await;
        c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
        c.desk
            .finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id: call_id.clone() })
            .await
            .unwrap();
        order.push(call_id);
    }
    assert_eq!(order, vec!["new-high", "newer-high", "old-low"]);
}

#[tokio::test]
async fn tenants_never_see_each_others_calls() {
    let node = NodeProcess::start(&[], &[]);
    let mut cai = Clients::new(&node, "cai").await;
    let mut sos = Clients::new(&node, "sos").await;
    apply(&mut cai, vec![queue("ecoute", "ecoute", 1)]).await;
    apply(&mut sos, vec![queue("ecoute", "ecoute", 1)]).await;
    cai.gateway.offer_call(offer("cai-call", "ecoute")).await.unwrap();
    let mut listener = Session::open(&mut sos, "vol-1", vec![skill("ecoute", 5)]).await;
    let seen = listener.drain(Duration::from_millis(500)).await;
    assert!(seen.iter().all(|k| !matches!(k, Kind::Offer(_))), "a sos listener was offered a cai call");
    let err = sos.gateway.get_call(pb::GetCallRequest { call_id: "cai-call".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    sos.gateway.offer_call(offer("sos-call", "ecoute")).await.unwrap();
    let (_, call_id) = listener.next_offer().await;
    assert_eq!(call_id, "sos-call");
}

#[tokio::test]
async fn relaxation_lowers_the_requirement_and_overflow_moves_the_call() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let mut strict = queue("logement", "logement", 4);
    strict.relaxations = vec![pb::Relaxation { after_ms: 200, skill: "logement".into(), min_proficiency: 1 }];
    let mut spill = queue("justice", "justice", 1);
    spill.overflow = Some(pb::Overflow { after_ms: 200, queue_id: "travail".into() });
    apply(&mut c, vec![strict, spill, queue("travail", "travail", 1)]).await;

    let mut novice = Session::open(&mut c, "novice", vec![skill("logement", 1)]).await;
    c.gateway.offer_call(offer("relax", "logement")).await.unwrap();
    let (_, call_id) = novice.next_offer().await;
    assert_eq!(call_id, "relax");

    c.gateway.offer_call(offer("spill", "justice")).await.unwrap();
    let mut worker = Session::open(&mut c, "worker", vec![skill("travail", 1)]).await;
    let (_, call_id) = worker.next_offer().await;
    assert_eq!(call_id, "spill");
    let status = c.gateway.get_call(pb::GetCallRequest { call_id: "spill".into() }).await.unwrap().into_inner();
    assert_eq!(status.queue_id, "travail");
}

/// The headers a member adds to a request it forwards to the actor's owner.
#[derive(Clone)]
struct ForwardedBy {
    role: &'static str,
}

impl tonic::service::Interceptor for ForwardedBy {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("x-relais-tenant", "cai".parse().unwrap());
        request.metadata_mut().insert("x-relais-role", self.role.parse().unwrap());
        request.metadata_mut().insert("x-relais-forwarded-by", "node-elsewhere".parse().unwrap());
        Ok(request)
    }
}

#[tokio::test]
async fn requests_forwarded_by_another_member_are_served_when_their_actors_are_here() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    let channel = node.channel().await;
    let forwarded = |role| ForwardedBy { role };
    let mut gateway = pb::gateway_client::GatewayClient::with_interceptor(channel.clone(), forwarded("gateway"));
    let mut desk = pb::informant_client::InformantClient::with_interceptor(channel.clone(), forwarded("informant"));
    let mut locator = pb::locator_client::LocatorClient::with_interceptor(channel, forwarded("informant"));

    let ana = || pb::InformantRequest { informant_id: "ana".into() };
    desk.login(pb::LoginRequest { informant_id: "ana".into(), skills: vec![skill("logement", 2)] }).await.unwrap();
    let mut session = desk.session(pb::SessionRequest { informant_id: "ana".into() }).await.unwrap().into_inner();
    let opening = session.message().await.unwrap().unwrap();
    assert!(matches!(opening.kind, Some(Kind::State(_))), "the session opens with a snapshot: {opening:?}");

    assert!(gateway.offer_call(offer("c1", "logement")).await.unwrap().into_inner().created);
    let mut watch = gateway
        .watch_call(pb::WatchCallRequest { call_id: "c1".into(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(kind_name(&first), "queued");
    let offer_id = loop {
        match tokio::time::timeout(WAIT, session.message()).await.unwrap().unwrap().unwrap().kind {
            Some(Kind::Offer(o)) => break o.offer_id,
            _ => continue,
        }
    };
    desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    let call = gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&call), pb::CallState::Connected);
    let ended = gateway.hang_up(pb::HangUpRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&ended.call.unwrap()), pb::CallState::Completed);
    let status = desk.get_informant(ana()).await.unwrap().into_inner();
    assert_eq!(status.informant_id, "ana");
    let here = locator
        .locate(pb::LocateRequest { target: Some(pb::locate_request::Target::InformantId("ana".into())) })
        .await
        .unwrap()
        .into_inner();
    assert!(here.here);
    desk.logout(ana()).await.unwrap();
}
