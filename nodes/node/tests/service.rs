//! What operators and stock tools see of a node: health, reflection,
//! and logs that never hold a caller's number.

#![allow(clippy::unwrap_used)]

mod support;

use relais_proto::v1 as pb;
use support::*;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_and_reflection_serve_stock_tools() {
    let node = NodeProcess::start(&[], &[]);
    let mut health = HealthClient::new(node.channel().await);
    for service in ["", "relais.v1.Gateway", "relais.v1.Informant", "relais.v1.Admin", "relais.v1.Locator"] {
        let answer = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap();
        assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(node.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(Ok(answer)) = answers.next().await else { panic!("no reflection answer") };
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in
        ["relais.v1.Gateway", "relais.v1.Informant", "relais.v1.Admin", "relais.v1.Locator", "grpc.health.v1.Health"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn a_callers_number_is_never_logged_nor_returned() {
    let number = "+33 3 87 12 34 56";
    let node = NodeProcess::start(&[], &[("RUST_LOG", "trace")]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    let call = pb::OfferCallRequest { caller_number: number.into(), ..offer("c1", "logement") };
    let status = c.gateway.offer_call(call).await.unwrap().into_inner().call.unwrap();
    assert_eq!(status.caller_pseudonym.len(), 32);
    let again = pb::OfferCallRequest { caller_number: "+33387123456".into(), ..offer("c2", "logement") };
    let other = c.gateway.offer_call(again).await.unwrap().into_inner().call.unwrap();
    assert_eq!(status.caller_pseudonym, other.caller_pseudonym, "same number, same pseudonym");
    let bad = pb::OfferCallRequest { caller_number: format!("{number} x"), ..offer("c3", "logement") };
    let refused = c.gateway.offer_call(bad).await.unwrap_err();
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 1)]).await;
    let (offer_id, _) = ana.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    c.gateway.hang_up(pb::HangUpRequest { call_id: "c1".into() }).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let logs = node.logs();
    assert!(logs.contains("call offered"), "trace logs were captured");
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    for needle in [number, "+33387123456", digits.as_str(), "87 12 34 56", "87123456"] {
        assert!(!logs.contains(needle), "the node logged a caller's number ({needle:?})");
        assert!(!refused.message().contains(needle), "an error echoed the number");
        assert!(!format!("{status:?}").contains(needle), "a reply carried the number");
    }
}

#[tokio::test]
async fn sigterm_stops_the_node_even_with_streams_open() {
    let mut node = NodeProcess::start(&[], &[]);
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    let _watch = Watch::open(&mut c, "c1", 0).await;
    let _desk = Session::open(&mut c, "ana", vec![skill("travail", 1)]).await;
    let exited = tokio::task::spawn_blocking(move || node.terminate(std::time::Duration::from_secs(10))).await.unwrap();
    assert_eq!(exited, Some(true), "the node must exit cleanly within 10 s");
}
