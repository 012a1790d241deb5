//! The `/metrics` endpoint of a real node process: scraped over plain
//! HTTP while calls flow through the gRPC API, its figures follow them.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use relais_proto::v1 as pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request's status line and body.
async fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to /metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response)).await.expect("answer in time").unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The node's metrics, as Prometheus text.
async fn scrape(node: &NodeProcess) -> String {
    let (head, body) = http_get(node.metrics_addr.as_deref().expect("serves /metrics"), "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body
}

/// The value of the series `name` whose labels include `labels`; `None`
/// when the text has no such series.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, number) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let wanted = labels.iter().all(|(k, v)| series_labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
        (series_name == name && wanted).then(|| number.parse().expect("a number"))
    })
}

/// Scrapes until `name{labels}` satisfies `check` (figures are published
/// about once a second); panics with the last text after five seconds.
async fn until(node: &NodeProcess, name: &str, labels: &[(&str, &str)], check: impl Fn(f64) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(node).await;
        if value(&text, name, labels).is_some_and(&check) {
            return text;
        }
        assert!(start.elapsed() < WAIT, "{name}{labels:?} never satisfied the check; last scrape:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const QUEUE: [(&str, &str); 2] = [("relais_tenant", "cai"), ("relais_queue", "logement")];

fn queue_and(extra: (&'static str, &'static str)) -> [(&'static str, &'static str); 3] {
    [QUEUE[0], QUEUE[1], extra]
}

fn informants_in(state: &'static str) -> [(&'static str, &'static str); 2] {
    [("relais_tenant", "cai"), ("relais_informant_state", state)]
}

#[tokio::test]
async fn the_figures_follow_calls_through_a_node() {
    let node = NodeProcess::start(&["--metrics-listen", "127.0.0.1:0"], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let (head, _) = http_get(node.metrics_addr.as_deref().unwrap(), "/elsewhere").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    let mut q = queue("logement", "logement", 2);
    q.wrap_up_ms = 60_000;
    apply(&mut c, vec![q]).await;
    let text = until(&node, "relais_queue_waiting", &QUEUE, |v| v == 0.0).await;
    assert_eq!(value(&text, "relais_node_actors", &[("relais_actor_kind", "queue")]), Some(1.0));
    assert!(text.contains("# TYPE relais_queue_wait_longest_seconds gauge"), "units become suffixes:\n{text}");

    // Two callers wait; one hangs up.
    for id in ["c1", "c2"] {
        c.gateway.offer_call(offer(id, "logement")).await.unwrap();
    }
    let text = until(&node, "relais_queue_waiting", &QUEUE, |v| v == 2.0).await;
    assert_eq!(value(&text, "relais_queue_calls_offered_total", &QUEUE), Some(2.0));
    until(&node, "relais_queue_wait_longest_seconds", &QUEUE, |v| v > 0.0).await;
    c.gateway.hang_up(pb::HangUpRequest { call_id: "c2".into() }).await.unwrap();
    until(&node, "relais_queue_calls_ended_total", &queue_and(("relais_call_outcome", "abandoned")), |v| v == 1.0)
        .await;
    let text = until(&node, "relais_queue_waiting", &QUEUE, |v| v == 1.0).await;
    assert_eq!(value(&text, "relais_queue_abandonment_ratio", &QUEUE), Some(1.0), "the only call that ended waiting");

    // An informant logs in, is offered the call (reserved), accepts it.
    // Actors update the metrics right after they answer, hence `until`.
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");
    let text = until(&node, "relais_informants", &informants_in("reserved"), |v| v == 1.0).await;
    assert_eq!(value(&text, "relais_node_actors", &[("relais_actor_kind", "informant")]), Some(1.0));
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    let text = until(&node, "relais_informants", &informants_in("on_call"), |v| v == 1.0).await;
    assert_eq!(value(&text, "relais_informants", &informants_in("reserved")), Some(0.0));
    until(&node, "relais_queue_calls_answered_total", &QUEUE, |v| v == 1.0).await;
    let text = until(&node, "relais_queue_waiting", &QUEUE, |v| v == 0.0).await;
    assert_eq!(value(&text, "relais_queue_connected", &QUEUE), Some(1.0), "{text}");
    for trigger in ["call", "informant"] {
        let count = value(&text, "relais_routing_duration_seconds_count", &[("relais_routing_trigger", trigger)]);
        assert!(count.is_some_and(|n| n >= 1.0), "routing decisions on a {trigger}: {count:?}\n{text}");
    }

    // The call completes; the informant wraps up.
    c.desk.finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id: "c1".into() }).await.unwrap();
    until(&node, "relais_queue_calls_ended_total", &queue_and(("relais_call_outcome", "completed")), |v| v == 1.0)
        .await;
    let text = until(&node, "relais_informants", &informants_in("wrap_up"), |v| v == 1.0).await;
    assert_eq!(value(&text, "relais_informants", &informants_in("on_call")), Some(0.0));
    let text = until(&node, "relais_queue_connected", &QUEUE, |v| v == 0.0).await;
    assert_eq!(value(&text, "relais_queue_abandonment_ratio", &QUEUE), Some(0.5), "{text}");

    // Logged out, the informant is counted nowhere.
    c.desk.logout(pb::InformantRequest { informant_id: "ana".into() }).await.unwrap();
    let text = until(&node, "relais_node_actors", &[("relais_actor_kind", "informant")], |v| v == 0.0).await;
    for state in ["available", "reserved", "on_call", "wrap_up", "paused"] {
        assert_eq!(value(&text, "relais_informants", &informants_in(state)), Some(0.0), "{state}\n{text}");
    }
}

fn member_with_metrics(etcd: &support::etcd::EtcdProcess, id: &str) -> NodeProcess {
    NodeProcess::start(
        &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "2", "--metrics-listen", "127.0.0.1:0"],
        &[],
    )
}

#[tokio::test]
async fn members_count_forwards_takeovers_lease_renewals_and_time_etcd() {
    let etcd = support::etcd::EtcdProcess::start();
    let mut members = vec![member_with_metrics(&etcd, "m1"), member_with_metrics(&etcd, "m2")];
    until_members(&members[0], 2).await;
    let mut c = Clients::new(&members[0], "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 2)]).await;

    // The call goes through the member that does not host the queue.
    let start = Instant::now();
    let owner = loop {
        let mut hosting = Vec::new();
        for m in &members {
            hosting.push(value(&scrape(m).await, "relais_node_actors", &[("relais_actor_kind", "queue")]));
        }
        if let Some(owner) = hosting.iter().position(|n| *n == Some(1.0)) {
            break owner;
        }
        assert!(start.elapsed() < WAIT, "a member hosts the queue: {hosting:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let other = 1 - owner;
    let mut c = Clients::new(&members[other], "cai").await;
    // It mirrors the configuration within a watch round trip.
    while c.admin.list_queues(pb::ListRequest {}).await.unwrap().into_inner().queues.is_empty() {
        assert!(start.elapsed() < WAIT, "the other member knows the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    offer_retrying(&mut c, offer("c1", "logement")).await;
    let text = scrape(&members[other]).await;
    let forwarded =
        value(&text, "relais_forward_requests_total", &[("relais_forward_kind", "unary"), ("relais_result", "ok")]);
    assert!(forwarded.is_some_and(|n| n >= 1.0), "{forwarded:?}\n{text}");
    let text = until(&members[owner], "relais_queue_waiting", &QUEUE, |v| v == 1.0).await;
    for operation in ["calls.read", "calls.write", "lease.renew"] {
        let count = value(&text, "relais_etcd_duration_seconds_count", &[("relais_etcd_operation", operation)]);
        assert!(count.is_some_and(|n| n >= 1.0), "{operation}: {count:?}\n{text}");
    }
    assert_eq!(value(&text, "relais_queue_takeovers_total", &[]), None, "a new queue takes nothing over");

    // The owner dies: the other member takes the queue and its call over.
    drop(members.remove(owner));
    let survivor = &members[0];
    let text = until(survivor, "relais_queue_takeovers_total", &[], |v| v == 1.0).await;
    assert_eq!(value(&text, "relais_queue_calls_restored_total", &[]), Some(1.0));
    until(survivor, "relais_queue_waiting", &QUEUE, |v| v == 1.0).await;
    // A renewal every third of the TTL.
    until(survivor, "relais_lease_renewals_total", &[("relais_result", "renewed")], |v| v >= 2.0).await;
}

/// A fake OTLP collector: hands each export it receives to the test.
struct Collector(tokio::sync::mpsc::Sender<ExportMetricsServiceRequest>);

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let _ = self.0.try_send(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tokio::test]
async fn metrics_are_pushed_by_otlp_when_the_environment_names_a_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (exports, mut received) = tokio::sync::mpsc::channel(16);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(Collector(exports)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let _node = NodeProcess::start(
        &["--node-id", "pushed"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    );
    let export = tokio::time::timeout(WAIT, received.recv()).await.expect("an export in time").unwrap();
    let resource = export.resource_metrics.first().and_then(|r| r.resource.as_ref()).expect("a resource");
    let attribute = |key: &str| {
        resource.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| {
            match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            }
        })
    };
    assert_eq!(attribute("service.name").as_deref(), Some("relais-node"));
    assert_eq!(attribute("service.instance.id").as_deref(), Some("pushed"));
    let metrics: Vec<(&str, &str)> = export.resource_metrics[0]
        .scope_metrics
        .iter()
        .flat_map(|s| s.metrics.iter().map(|m| (m.name.as_str(), m.unit.as_str())))
        .collect();
    assert!(metrics.contains(&("relais.node.actors", "{actor}")), "{metrics:?}");
}

#[test]
fn series_are_found_by_name_and_labels() {
    let text = "# TYPE a counter\na_total{x=\"1\",y=\"2\"} 3\na_total{x=\"2\",y=\"2\"} 4\nb 5.5\n";
    assert_eq!(value(text, "a_total", &[("x", "2")]), Some(4.0));
    assert_eq!(value(text, "a_total", &[("y", "2"), ("x", "1")]), Some(3.0));
    assert_eq!(value(text, "a_total", &[("x", "3")]), None);
    assert_eq!(value(text, "b", &[]), Some(5.5));
    assert_eq!(value(text, "a", &[]), None);
}
