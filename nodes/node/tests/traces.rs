//! Traces and logs of real member processes: a call routed across two
//! members is one trace, exported by OTLP to a collector in this test; and
//! a caller's number shows nowhere, in logs, traces or etcd.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use relais_proto::v1 as pb;
use relais_proto::v1::locator_client::LocatorClient;
use support::etcd::EtcdProcess;
use support::*;

/// A fake OTLP collector: keeps every export it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves on a free loopback port; returns its endpoint.
    async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Self::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                // A batch of spans with debug events may exceed tonic's
                // default 4 MiB: a refused export would lose its spans.
                .add_service(TraceServiceServer::new(collector.clone()).max_decoding_message_size(64 << 20))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, endpoint)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let exports = self.0.lock().unwrap();
        let mut spans = Vec::new();
        for export in exports.iter() {
            for resource in &export.resource_spans {
                let node = resource
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.instance.id"))
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        spans.push(Span {
                            node: node.clone(),
                            name: span.name.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_id: hex(&span.parent_span_id),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Everything received, attributes and events included, as text.
    fn dump(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One received span, reduced to what the tests look at.
#[derive(Clone, Debug)]
struct Span {
    /// The exporting member (`service.instance.id`).
    node: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_id: String,
}

/// A member that exports its traces to `endpoint` within a fifth of a
/// second, and writes JSON logs at `log_filter`.
fn traced_member(etcd: &EtcdProcess, id: &str, endpoint: &str, log_filter: &str) -> NodeProcess {
    NodeProcess::start(
        &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "5", "--log-json", "true"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            // No metrics export: the collector serves traces only.
            ("OTEL_METRICS_EXPORTER", "none"),
            ("RUST_LOG", log_filter),
        ],
    )
}

/// The member hosting `queue_id`, as the locator says.
async fn host_of(node: &NodeProcess, queue_id: &str) -> String {
    let mut locator = LocatorClient::with_interceptor(
        node.channel().await,
        As { tenant: Some("cai".into()), role: Some("admin".into()) },
    );
    let start = Instant::now();
    loop {
        let located = locator
            .locate(pb::LocateRequest { target: Some(pb::locate_request::Target::QueueId(queue_id.into())) })
            .await;
        if let Ok(located) = located {
            return located.into_inner().node_id;
        }
        assert!(start.elapsed() < WAIT, "the queue is placed: {located:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two members exporting to one collector, a queue on one of them, and
/// clients of the other one (the gateway's entry). Returns the members
/// (`[entry, host]`), the entry's clients and the host's id.
async fn two_members(
    etcd: &EtcdProcess,
    endpoint: &str,
    log_filter: &str,
) -> ([NodeProcess; 2], Clients, String, String) {
    let members = [traced_member(etcd, "m1", endpoint, log_filter), traced_member(etcd, "m2", endpoint, log_filter)];
    until_members(&members[0], 2).await;
    let mut c = Clients::new(&members[0], "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 2)]).await;
    let host = host_of(&members[0], "logement").await;
    let [m1, m2] = members;
    let (entry, hosting) = if host == "m1" { (m2, m1) } else { (m1, m2) };
    let entry_id = if host == "m1" { "m2" } else { "m1" }.to_string();
    let mut c = Clients::new(&entry, "cai").await;
    // The entry mirrors the configuration within a watch round trip.
    let start = Instant::now();
    while c.admin.list_queues(pb::ListRequest {}).await.unwrap().into_inner().queues.is_empty() {
        assert!(start.elapsed() < WAIT, "the entry knows the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ([entry, hosting], c, entry_id, host)
}

/// Polls the collector until `check` finds what it wants in the spans;
/// panics with them after a bounded wait.
async fn until_spans<T>(collector: &Collector, what: &str, check: impl Fn(&[Span]) -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        let spans = collector.spans();
        if let Some(found) = check(&spans) {
            return found;
        }
        // Generous: batches are pushed every 200 ms, but CI machines are
        // shared and a busy one can hold an export back for seconds.
        if start.elapsed() > Duration::from_secs(30) {
            let listed: Vec<String> = spans
                .iter()
                .map(|s| {
                    format!("{} {} trace {} span {} parent {}", s.node, s.name, s.trace_id, s.span_id, s.parent_id)
                })
                .collect();
            panic!("{what}; {} exports, spans received:\n{}", collector.0.lock().unwrap().len(), listed.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_call_routed_across_members_is_one_trace() {
    let (collector, endpoint) = Collector::start().await;
    let etcd = EtcdProcess::start();
    let (_members, mut c, entry, host) = two_members(&etcd, &endpoint, "info,ractor=warn").await;
    assert_ne!(entry, host);

    // An informant waits; the call comes in through the member that does
    // not host its queue, and is offered to the informant.
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    offer_retrying(&mut c, offer("c1", "logement")).await;
    let (_, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");

    // Offered means routed: the queue's and the informant's spans are in
    // the trace of the gateway's request, which spans both members.
    let wanted = ["relais.forward", "relais.queue.offer", "relais.queue.propose", "relais.informant.propose"];
    let (trace_id, spans) = until_spans(&collector, "one trace holds the call's whole path", |spans| {
        // Other requests (the login, a retried offer) have traces of their
        // own: the call's is the one with the queue's spans.
        spans.iter().filter(|s| s.name == "relais.forward" && s.node == entry).find_map(|forward| {
            let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == forward.trace_id).cloned().collect();
            let names: HashSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
            // A parent ends after its children: it may come in a later
            // export. Wait until each span's parent has come, or it fails.
            let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
            let whole = trace.iter().all(|s| s.parent_id.is_empty() || ids.contains(s.parent_id.as_str()));
            (whole && wanted.iter().all(|w| names.contains(w))).then(|| (forward.trace_id.clone(), trace))
        })
    })
    .await;

    let nodes: HashSet<&str> = spans.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(nodes, HashSet::from([entry.as_str(), host.as_str()]), "{spans:#?}");
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    // Every span but the root has its parent in the trace (see above), and
    // some have it on the other member.
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root, the gateway's request at the entry: {spans:#?}");
    assert_eq!(roots[0].node, entry);
    let crossing: Vec<(&Span, &Span)> = spans
        .iter()
        .filter_map(|s| by_id.get(s.parent_id.as_str()).map(|parent| (*parent, s)))
        .filter(|(parent, child)| parent.node != child.node)
        .collect();
    assert!(
        crossing.iter().any(|(parent, child)| parent.name == "relais.forward" && child.node == host),
        "the host's request span is the child of the entry's forward: {crossing:#?}"
    );
    // The queue's spans are the host's and descend from the forward.
    let offer_span = spans.iter().find(|s| s.name == "relais.queue.offer").unwrap();
    assert_eq!(offer_span.node, host);
    assert!(ancestors(&by_id, offer_span).iter().any(|n| n == "relais.forward"), "{spans:#?}");
    let informant_span = spans.iter().find(|s| s.name == "relais.informant.propose").unwrap();
    assert!(ancestors(&by_id, informant_span).iter().any(|n| n == "relais.queue.propose"), "{spans:#?}");
    assert_eq!(trace_id.len(), 32);
}

/// The names of `span`'s ancestors, nearest first.
fn ancestors<'a>(by_id: &HashMap<&str, &'a Span>, mut span: &'a Span) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(parent) = by_id.get(span.parent_id.as_str()) {
        names.push(parent.name.clone());
        span = parent;
    }
    names
}

/// A caller's number, spaced as a gateway may send it, and its digits.
const NUMBER: &str = "+41 79 555 01 23";
const DIGITS: &str = "41795550123";

#[tokio::test]
async fn no_caller_number_in_logs_traces_or_etcd() {
    let (collector, endpoint) = Collector::start().await;
    let etcd = EtcdProcess::start();
    let (members, mut c, _, _) = two_members(&etcd, &endpoint, "debug,ractor=warn").await;
    let mut host_c = Clients::new(&members[1], "cai").await;

    // Calls with the number come in through both members; one is answered,
    // one is left waiting (its record stays in etcd), one is abandoned.
    let mut ana = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let with_number = |id: &str| pb::OfferCallRequest { caller_number: NUMBER.into(), ..offer(id, "logement") };
    offer_retrying(&mut c, with_number("c1")).await;
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    offer_retrying(&mut host_c, with_number("c2")).await;
    offer_retrying(&mut c, with_number("c3")).await;
    c.gateway.hang_up(pb::HangUpRequest { call_id: "c3".into() }).await.unwrap();
    let status = c.gateway.get_call(pb::GetCallRequest { call_id: "c2".into() }).await.unwrap().into_inner();
    assert!(!status.caller_pseudonym.is_empty(), "the number was taken, as a pseudonym: {status:?}");

    // Every request's spans reached the collector: each member exports its
    // spans in the order they ended, and the status request came last, to
    // both members (it is forwarded).
    until_spans(&collector, "the calls' spans arrive", |spans| {
        let offers = spans.iter().filter(|s| s.name == "relais.queue.offer").count();
        let last: HashSet<&str> =
            spans.iter().filter(|s| s.name == "/relais.v1.Gateway/GetCall").map(|s| s.node.as_str()).collect();
        let proposed = spans.iter().any(|s| s.name == "relais.informant.propose");
        (offers >= 3 && last.len() == 2 && proposed).then_some(())
    })
    .await;

    let mut etcd_client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let everything = etcd_client.get("", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    let mut stored = String::new();
    for kv in everything.kvs() {
        stored.push_str(&String::from_utf8_lossy(kv.key()));
        stored.push(' ');
        stored.push_str(&String::from_utf8_lossy(kv.value()));
        stored.push('\n');
    }
    assert!(stored.contains("c2"), "the waiting call is stored:\n{stored}");

    let logs: Vec<String> = members.iter().map(NodeProcess::logs).collect();
    for log in &logs {
        assert!(log.lines().count() > 10, "the member logged:\n{log}");
        assert!(log.contains("\"level\":\"DEBUG\""), "at debug level, in JSON:\n{log}");
    }
    assert!(logs.iter().any(|l| l.contains("call offered")), "{logs:?}");
    assert!(
        logs.iter().any(|l| l.lines().any(|line| line.contains("call offered") && line.contains("\"trace_id\""))),
        "a line inside a trace names it:\n{logs:?}"
    );
    let traces = collector.dump();
    assert!(traces.contains("relais.queue.offer"), "{traces}");

    for (name, text) in
        [("logs of the entry", &logs[0]), ("logs of the host", &logs[1]), ("traces", &traces), ("etcd", &stored)]
    {
        for needle in [NUMBER, DIGITS] {
            assert!(!text.contains(needle), "the caller's number {needle:?} is in the {name}");
        }
    }
}

#[tokio::test]
async fn spans_still_buffered_are_pushed_when_the_node_stops() {
    let (collector, endpoint) = Collector::start().await;
    // Batches are due every ten minutes: only the stop pushes them.
    let node = NodeProcess::start(
        &["--node-id", "alone"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
    );
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 2)]).await;
    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    assert!(collector.spans().is_empty(), "nothing is pushed before the batch is due");

    let mut node = node;
    let exited = tokio::task::spawn_blocking(move || node.terminate(Duration::from_secs(10))).await.unwrap();
    assert_eq!(exited, Some(true), "the node stops on SIGTERM");
    let spans = collector.spans();
    assert!(
        spans.iter().any(|s| s.name == "relais.queue.offer" && s.node == "alone"),
        "the call's spans were pushed before the node exited: {spans:#?}"
    );
}
