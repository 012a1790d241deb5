//! Every kind of bad input gets a precise gRPC status naming the field, and
//! changes nothing.

#![allow(clippy::unwrap_used)]

mod support;

use relais_proto::v1 as pb;
use relais_proto::v1::gateway_client::GatewayClient;
use relais_proto::v1::locate_request::Target;
use relais_proto::v1::locator_client::LocatorClient;
use support::*;
use tonic::Code;

fn expect(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, mentions: &str) {
    let status = result.expect_err("request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(mentions), "{:?} should mention {mentions:?}", status.message());
}

async fn stats(c: &mut Clients, queue_id: &str) -> pb::QueueStats {
    c.admin.get_queue_stats(pb::GetQueueStatsRequest { queue_id: queue_id.into() }).await.unwrap().into_inner()
}

#[tokio::test]
async fn bad_calls_are_refused_with_the_field_and_change_nothing() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1), queue("travail", "travail", 1)]).await;
    let g = &mut c.gateway;

    expect(g.offer_call(offer("", "logement")).await, Code::InvalidArgument, "call_id");
    expect(g.offer_call(offer(&"x".repeat(129), "logement")).await, Code::InvalidArgument, "call_id");
    expect(g.offer_call(offer("a b", "logement")).await, Code::InvalidArgument, "call_id");
    expect(g.offer_call(offer("c1", "")).await, Code::InvalidArgument, "queue_id");
    expect(g.offer_call(offer("c1", "nowhere")).await, Code::NotFound, "nowhere");
    expect(
        g.offer_call(pb::OfferCallRequest { priority: 10, ..offer("c1", "logement") }).await,
        Code::InvalidArgument,
        "priority",
    );
    expect(
        g.offer_call(pb::OfferCallRequest { language: "FR!".into(), ..offer("c1", "logement") }).await,
        Code::InvalidArgument,
        "language",
    );
    let letters = pb::OfferCallRequest { caller_number: "+33 3 87 ABC".into(), ..offer("c1", "logement") };
    expect(g.offer_call(letters).await, Code::InvalidArgument, "caller_number");
    let many = (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
    expect(
        g.offer_call(pb::OfferCallRequest { attributes: many, ..offer("c1", "logement") }).await,
        Code::InvalidArgument,
        "attributes",
    );
    let long_value = [("note".to_string(), "v".repeat(257))].into_iter().collect();
    expect(
        g.offer_call(pb::OfferCallRequest { attributes: long_value, ..offer("c1", "logement") }).await,
        Code::InvalidArgument,
        "attributes[note]",
    );
    expect(
        g.offer_call(pb::OfferCallRequest { topic: "t".repeat(65), ..offer("c1", "logement") }).await,
        Code::InvalidArgument,
        "topic",
    );
    // A request larger than the node accepts.
    let huge = pb::OfferCallRequest { topic: "t".repeat(70_000), ..offer("c1", "logement") };
    let status = g.offer_call(huge).await.expect_err("too large");
    assert!(matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange), "{status:?}");

    expect(g.hang_up(pb::HangUpRequest { call_id: "unknown".into() }).await, Code::NotFound, "unknown");
    expect(g.mark_vulnerable(pb::MarkVulnerableRequest { call_id: "unknown".into() }).await, Code::NotFound, "unknown");
    expect(g.get_call(pb::GetCallRequest { call_id: "unknown".into() }).await, Code::NotFound, "unknown");

    // A queued call cannot be transferred (only a connected one can).
    g.offer_call(offer("queued", "logement")).await.unwrap();
    let to = |q: &str| pb::TransferCallRequest { call_id: "queued".into(), queue_id: q.into() };
    expect(g.transfer_call(to("nowhere")).await, Code::NotFound, "nowhere");
    expect(g.transfer_call(to("logement")).await, Code::InvalidArgument, "already in this queue");
    expect(g.transfer_call(to("travail")).await, Code::FailedPrecondition, "not connected");

    let s = stats(&mut c, "logement").await;
    assert_eq!((s.offered_total, s.waiting, s.deflected_total), (1, 1, 0), "only the one good call was made");
}

#[tokio::test]
async fn identity_comes_from_the_interceptor_and_is_checked() {
    let node = NodeProcess::start(&["--require-role", "true"], &[]);
    let channel = node.channel().await;
    let mut as_admin_on_gateway =
        GatewayClient::with_interceptor(channel.clone(), As { tenant: Some("cai".into()), role: Some("admin".into()) });
    expect(
        as_admin_on_gateway.get_call(pb::GetCallRequest { call_id: "c".into() }).await,
        Code::PermissionDenied,
        "admin",
    );
    let mut unknown_tenant = GatewayClient::with_interceptor(
        channel.clone(),
        As { tenant: Some("other".into()), role: Some("gateway".into()) },
    );
    expect(unknown_tenant.get_call(pb::GetCallRequest { call_id: "c".into() }).await, Code::NotFound, "tenant");
    let mut anonymous = GatewayClient::with_interceptor(channel, As { tenant: Some("cai".into()), role: None });
    expect(
        anonymous.get_call(pb::GetCallRequest { call_id: "c".into() }).await,
        Code::Unauthenticated,
        "x-relais-role",
    );
}

#[tokio::test]
async fn bad_informant_requests_are_refused_and_change_nothing() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("travail", "travail", 1)]).await;
    let d = &mut c.desk;
    let login = |id: &str, skills: Vec<pb::Skill>| pb::LoginRequest { informant_id: id.into(), skills };

    expect(d.login(login("", vec![skill("travail", 1)])).await, Code::InvalidArgument, "informant_id");
    expect(d.login(login("ana", vec![])).await, Code::InvalidArgument, "skills");
    expect(d.login(login("ana", vec![skill("travail", 6)])).await, Code::InvalidArgument, "skills[0].proficiency");
    expect(d.login(login("ana", vec![skill("travail", 0)])).await, Code::InvalidArgument, "skills[0].proficiency");
    expect(d.login(login("ana", vec![skill("Bad Name", 1)])).await, Code::InvalidArgument, "skills[0].name");
    expect(d.login(login("ana", vec![skill("a", 1), skill("a", 2)])).await, Code::InvalidArgument, "skills[1].name");
    expect(
        d.login(login("ana", (0..33).map(|i| skill(&format!("s{i}"), 1)).collect())).await,
        Code::InvalidArgument,
        "skills",
    );

    d.login(login("ana", vec![skill("travail", 2)])).await.unwrap();
    expect(d.login(login("ana", vec![skill("travail", 2)])).await, Code::AlreadyExists, "ana");
    let ana = |offer_id: &str| pb::OfferReply { informant_id: "ana".into(), offer_id: offer_id.into() };
    expect(d.accept_offer(ana("c9/1")).await, Code::FailedPrecondition, "c9/1");
    expect(d.decline_offer(ana("c9/1")).await, Code::FailedPrecondition, "c9/1");
    expect(
        d.accept_offer(pb::OfferReply { informant_id: "ghost".into(), offer_id: "c9/1".into() }).await,
        Code::NotFound,
        "ghost",
    );
    let finish = pb::FinishCallRequest { informant_id: "ana".into(), call_id: "c9".into() };
    expect(d.finish_call(finish).await, Code::FailedPrecondition, "c9");
    expect(
        d.end_wrap_up(pb::InformantRequest { informant_id: "ana".into() }).await,
        Code::FailedPrecondition,
        "Available",
    );
    expect(d.resume(pb::InformantRequest { informant_id: "ana".into() }).await, Code::FailedPrecondition, "Available");
    expect(
        d.pause(pb::PauseRequest { informant_id: "ana".into(), reason: "".into() }).await,
        Code::InvalidArgument,
        "reason",
    );

    // Another informant's offer is not yours to accept.
    c.gateway.offer_call(offer("c1", "travail")).await.unwrap();
    let mut ana_desk = c.desk.session(pb::SessionRequest { informant_id: "ana".into() }).await.unwrap().into_inner();
    let offer_id = loop {
        if let Some(pb::informant_event::Kind::Offer(o)) = ana_desk.message().await.unwrap().unwrap().kind {
            break o.offer_id;
        }
    };
    c.desk.login(login("bob", vec![skill("travail", 2)])).await.unwrap();
    let steal = pb::OfferReply { informant_id: "bob".into(), offer_id: offer_id.clone() };
    expect(c.desk.accept_offer(steal).await, Code::FailedPrecondition, &offer_id);
    let status = c.desk.get_informant(pb::InformantRequest { informant_id: "ana".into() }).await.unwrap().into_inner();
    assert_eq!((status.state, status.offer_id), (pb::InformantState::Reserved as i32, offer_id));
    let bob = c.desk.get_informant(pb::InformantRequest { informant_id: "bob".into() }).await.unwrap().into_inner();
    assert_eq!(bob.state, pb::InformantState::Available as i32);
}

#[tokio::test]
async fn bad_admin_requests_are_refused_and_change_nothing() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    let a = &mut c.admin;

    expect(a.create_queue(queue("logement", "logement", 1)).await, Code::AlreadyExists, "logement");
    expect(a.update_queue(queue("nowhere", "x", 1)).await, Code::NotFound, "nowhere");
    expect(a.create_queue(queue("Bad", "x", 1)).await, Code::InvalidArgument, "id");
    expect(
        a.create_queue(pb::QueueConfig { required_skills: vec![], ..queue("q2", "x", 1) }).await,
        Code::InvalidArgument,
        "required_skills",
    );
    expect(a.create_queue(queue("q2", "x", 9)).await, Code::InvalidArgument, "required_skills[0].proficiency");
    expect(
        a.create_queue(pb::QueueConfig { service_level_target: 1.5, ..queue("q2", "x", 1) }).await,
        Code::InvalidArgument,
        "service_level_target",
    );
    expect(
        a.create_queue(pb::QueueConfig { max_waiting: 1_000_000, ..queue("q2", "x", 1) }).await,
        Code::InvalidArgument,
        "max_waiting",
    );
    let relax = pb::Relaxation { after_ms: 1000, skill: "other".into(), min_proficiency: 1 };
    expect(
        a.create_queue(pb::QueueConfig { relaxations: vec![relax], ..queue("q2", "x", 1) }).await,
        Code::InvalidArgument,
        "relaxations.skill",
    );
    let spill = pb::Overflow { after_ms: 1000, queue_id: "ghost".into() };
    expect(
        a.create_queue(pb::QueueConfig { overflow: Some(spill), ..queue("q2", "x", 1) }).await,
        Code::InvalidArgument,
        "overflow.queue_id",
    );
    expect(a.delete_queue(pb::DeleteRequest { id: "ghost".into() }).await, Code::NotFound, "ghost");
    expect(a.get_queue_stats(pb::GetQueueStatsRequest { queue_id: "ghost".into() }).await, Code::NotFound, "ghost");

    // A plan with one bad queue changes nothing at all.
    let plan = pb::RoutingPlan {
        queues: vec![queue("fresh", "fresh", 1), queue("broken", "b", 7)],
        informants: vec![],
        prune: true,
    };
    expect(a.apply_plan(plan).await, Code::InvalidArgument, "queues[1].required_skills[0].proficiency");
    let plan =
        pb::RoutingPlan { queues: vec![queue("dup", "d", 1), queue("dup", "d", 1)], informants: vec![], prune: false };
    expect(a.apply_plan(plan).await, Code::InvalidArgument, "queues");
    let ids: Vec<String> =
        a.list_queues(pb::ListRequest {}).await.unwrap().into_inner().queues.into_iter().map(|q| q.id).collect();
    assert_eq!(ids, vec!["logement"]);

    // A queue with a live call cannot be deleted, nor pruned away.
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    expect(
        c.admin.delete_queue(pb::DeleteRequest { id: "logement".into() }).await,
        Code::FailedPrecondition,
        "live calls",
    );
    let prune = pb::RoutingPlan { queues: vec![queue("other", "o", 1)], informants: vec![], prune: true };
    expect(c.admin.apply_plan(prune).await, Code::FailedPrecondition, "live calls");
    let s = stats(&mut c, "logement").await;
    assert_eq!(s.waiting, 1);
}

#[tokio::test]
async fn a_plan_applies_idempotently() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let profile =
        pb::InformantProfile { id: "ana".into(), display_name: "Ana".into(), skills: vec![skill("logement", 4)] };
    let plan = pb::RoutingPlan {
        queues: vec![queue("logement", "logement", 1), queue("travail", "travail", 1)],
        informants: vec![profile],
        prune: true,
    };
    let first = c.admin.apply_plan(plan.clone()).await.unwrap().into_inner();
    assert_eq!((first.created, first.updated, first.deleted, first.unchanged), (3, 0, 0, 0));
    let again = c.admin.apply_plan(plan.clone()).await.unwrap().into_inner();
    assert_eq!((again.created, again.updated, again.deleted, again.unchanged), (0, 0, 0, 3));
    let mut smaller = plan;
    smaller.queues.truncate(1);
    smaller.queues[0].wrap_up_ms = 1_000;
    let third = c.admin.apply_plan(smaller).await.unwrap().into_inner();
    assert_eq!((third.created, third.updated, third.deleted, third.unchanged), (0, 1, 1, 1));
    // Skills come from the stored profile.
    let bad = pb::LoginRequest { informant_id: "ana".into(), skills: vec![skill("travail", 5)] };
    expect(c.desk.login(bad).await, Code::InvalidArgument, "skills");
    let ok = c.desk.login(pb::LoginRequest { informant_id: "ana".into(), skills: vec![] }).await.unwrap().into_inner();
    assert_eq!(ok.skills, vec![skill("logement", 4)]);
}

#[tokio::test]
async fn open_streams_are_bounded() {
    let config = std::env::temp_dir().join(format!("relais-streams-{}.toml", std::process::id()));
    std::fs::write(&config, "max_streams = 2\n").unwrap();
    let node = NodeProcess::start(&["--config", config.to_str().unwrap()], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    let first = Watch::open(&mut c, "c1", 0).await;
    let _second = Session::open(&mut c, "ana", vec![skill("travail", 1)]).await;
    let third = c.gateway.watch_call(pb::WatchCallRequest { call_id: "c1".into(), after_sequence: 0 }).await;
    expect(third, Code::ResourceExhausted, "at most 2 open streams");
    // Closing a stream frees its place.
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        match c.gateway.watch_call(pb::WatchCallRequest { call_id: "c1".into(), after_sequence: 0 }).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(reopened.is_some(), "a closed stream's place was never freed");
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn locate_names_this_node_for_what_it_serves_and_refuses_the_rest() {
    let node = NodeProcess::start(&["--node-id", "solo", "--require-role", "true"], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    let channel = node.channel().await;
    let locator = |role: &str| {
        LocatorClient::with_interceptor(channel.clone(), As { tenant: Some("cai".into()), role: Some(role.into()) })
    };
    let target = |t: Target| pb::LocateRequest { target: Some(t) };

    // Every role of the tenant may ask.
    for role in ["gateway", "informant", "admin"] {
        let here = locator(role).locate(target(Target::QueueId("logement".into()))).await.unwrap().into_inner();
        assert_eq!(
            here,
            pb::LocateResponse { node_id: "solo".into(), address: node.addr.clone(), here: true },
            "{role}"
        );
    }
    let mut l = locator("gateway");
    expect(l.locate(target(Target::QueueId("nowhere".into()))).await, Code::NotFound, "nowhere");
    expect(l.locate(target(Target::InformantId("ana".into()))).await, Code::NotFound, "ana");
    expect(l.locate(target(Target::CallId("c1".into()))).await, Code::NotFound, "c1");
    expect(l.locate(pb::LocateRequest { target: None }).await, Code::InvalidArgument, "target");
    expect(l.locate(target(Target::QueueId(String::new()))).await, Code::InvalidArgument, "queue_id");
    expect(l.locate(target(Target::InformantId("a b".into()))).await, Code::InvalidArgument, "informant_id");
    expect(l.locate(target(Target::CallId("x".repeat(129)))).await, Code::InvalidArgument, "call_id");
    let mut anonymous = LocatorClient::with_interceptor(channel, As { tenant: Some("cai".into()), role: None });
    expect(anonymous.locate(target(Target::QueueId("logement".into()))).await, Code::Unauthenticated, "x-relais-role");

    // Once they exist, a logged-in informant and a call are here too.
    c.desk.login(pb::LoginRequest { informant_id: "ana".into(), skills: vec![skill("travail", 1)] }).await.unwrap();
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    for t in [Target::InformantId("ana".into()), Target::CallId("c1".into())] {
        let here = l.locate(target(t)).await.unwrap().into_inner();
        assert_eq!((here.node_id.as_str(), here.here), ("solo", true));
    }
}

#[tokio::test]
async fn list_actors_tells_what_this_node_hosts_and_refuses_bad_requests() {
    let node = NodeProcess::start(&["--node-id", "solo", "--require-role", "true"], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1), queue("travail", "travail", 1)]).await;
    c.desk.login(pb::LoginRequest { informant_id: "ana".into(), skills: vec![skill("travail", 1)] }).await.unwrap();
    c.desk.pause(pb::PauseRequest { informant_id: "ana".into(), reason: "lunch".into() }).await.unwrap();
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    let list = |kind: pb::ActorKind, counts_only: bool| pb::ListActorsRequest { kind: kind as i32, counts_only };

    // Without etcd every actor lives here, with no claim (epoch 0).
    let all = c.admin.list_actors(list(pb::ActorKind::Unspecified, false)).await.unwrap().into_inner();
    assert_eq!((all.node_id.as_str(), all.address.as_str(), all.tenant.as_str()), ("solo", node.addr.as_str(), "cai"));
    assert_eq!((all.queues, all.informants), (2, 1));
    let queue = |id: &str, waiting: u32| pb::HostedActor {
        kind: pb::ActorKind::Queue as i32,
        id: id.into(),
        waiting,
        ..Default::default()
    };
    let ana = pb::HostedActor {
        kind: pb::ActorKind::Informant as i32,
        id: "ana".into(),
        state: pb::InformantState::Paused as i32,
        ..Default::default()
    };
    assert_eq!(all.actors, vec![queue("logement", 1), queue("travail", 0), ana.clone()]);
    let informants = c.admin.list_actors(list(pb::ActorKind::Informant, false)).await.unwrap().into_inner();
    assert_eq!((informants.actors, informants.queues, informants.informants), (vec![ana], 2, 1));
    let counted = c.admin.list_actors(list(pb::ActorKind::Queue, true)).await.unwrap().into_inner();
    assert_eq!((counted.actors.len(), counted.queues, counted.informants), (0, 2, 1));
    // Another tenant's actors are not the caller's.
    let mut sos = Clients::new(&node, "sos").await;
    let theirs = sos.admin.list_actors(list(pb::ActorKind::Unspecified, false)).await.unwrap().into_inner();
    assert_eq!((theirs.tenant.as_str(), theirs.actors.len(), theirs.queues, theirs.informants), ("sos", 0, 0, 0));

    expect(
        c.admin.list_actors(pb::ListActorsRequest { kind: 7, counts_only: false }).await,
        Code::InvalidArgument,
        "kind",
    );
    let channel = node.channel().await;
    let admin = |tenant: &str, role: Option<&str>| {
        pb::admin_client::AdminClient::with_interceptor(
            channel.clone(),
            As { tenant: Some(tenant.into()), role: role.map(Into::into) },
        )
    };
    let request = list(pb::ActorKind::Unspecified, false);
    expect(admin("cai", Some("gateway")).list_actors(request).await, Code::PermissionDenied, "gateway");
    expect(admin("nope", Some("admin")).list_actors(request).await, Code::NotFound, "tenant");
    expect(admin("cai", None).list_actors(request).await, Code::Unauthenticated, "x-relais-role");
}
