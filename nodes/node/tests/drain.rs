//! Draining a node before a restart: no new call or login, the calls it
//! holds are served to their end, health says NOT_SERVING.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use relais_proto::v1 as pb;
use support::{Clients, NodeProcess, Session};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn a_draining_node_takes_no_new_work_and_finishes_what_it_holds() {
    let node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    let mut ana = Session::open(&mut c, "ana", vec![support::skill("justice", 3)]).await;
    c.gateway.offer_call(support::offer("c1", "justice")).await.unwrap();
    let (offer_id, call_id) = ana.next_offer().await;

    let drain = c.admin.drain(pb::DrainRequest {}).await.unwrap().into_inner();
    assert_eq!((drain.live_calls, drain.informants_logged_in), (1, 1));

    let refused = c.gateway.offer_call(support::offer("c2", "justice")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("draining"), "{}", refused.message());
    let retry = c.gateway.offer_call(support::offer("c1", "justice")).await.unwrap().into_inner();
    assert!(!retry.created, "a retry of a held call is still answered");
    let login =
        c.desk.login(pb::LoginRequest { informant_id: "bob".into(), skills: vec![support::skill("justice", 3)] });
    assert_eq!(login.await.unwrap_err().code(), Code::Unavailable);

    let mut health = HealthClient::new(node.channel().await);
    let mut status = ServingStatus::Unknown;
    for _ in 0..50 {
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        status = health.check(request).await.unwrap().into_inner().status();
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);

    // The held call is served to its end.
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    c.desk.finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id }).await.unwrap();
    let mut live = u32::MAX;
    for _ in 0..50 {
        live = c.admin.drain(pb::DrainRequest {}).await.unwrap().into_inner().live_calls;
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(live, 0, "nothing live once the call ended");
}
