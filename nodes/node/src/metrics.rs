//! The node's metrics, through the OpenTelemetry SDK: exposed for
//! Prometheus on a plain HTTP `GET /metrics` (`metrics_listen`), and pushed
//! by OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set.
//!
//! [`Metrics`] is cheap to clone and holds the instruments; the node's
//! parts record into it. Names follow the OpenTelemetry conventions
//! (`relais.queue.waiting`), with units in the instruments' metadata (`s`,
//! `1`, `{call}`); the Prometheus rendering turns them into
//! `relais_queue_waiting`, `relais_routing_duration_seconds_bucket`, ...
//!
//! **Why no Prometheus exporter crate:** `opentelemetry-prometheus` 0.31 is
//! marked discontinued on crates.io (its next release pairs with
//! OpenTelemetry 0.33) and pulls the `prometheus` crate and its protobuf
//! stack in; the `prometheus` and `prometheus-client` crates would mean a
//! second set of instruments beside the SDK's. Instead an SDK pull reader
//! ([`ManualReader`]) collects on each scrape and `text.rs` renders the
//! Prometheus text format (about 200 lines, unit-tested). The pull reader
//! sits behind the SDK's `experimental_metrics_custom_reader` feature,
//! which `opentelemetry-prometheus` itself relies on.
//!
//! Observable instruments' callbacks are synchronous and run during a
//! collection, so they never ask an actor: each queue actor publishes a
//! snapshot of its figures on a [`QueueBoard`] (at start, then at most once
//! per [`QUEUE_SNAPSHOT_PERIOD_MS`], on its tick) and removes it when its
//! state is dropped, and each informant actor moves itself between states
//! in an [`InformantTally`] and leaves it when its state is dropped — so an
//! actor that fails, which ractor ends without `post_stop`, leaves no
//! stale figure behind.
//!
//! **Invariant:** attributes are bounded by the configuration: tenants,
//! their queues, and fixed sets of states, outcomes and operations. No
//! attribute ever names a call, an informant or a caller.
//!
//! This module depends on no actor, service or cluster type: the others
//! call it.

mod http;
mod text;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, ObservableGauge, ObservableUpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};
use relais_routing::informant::InformantState;
use relais_routing::queue::QueueFigures;

pub use http::serve;

/// How often a queue actor publishes its figures, at most.
pub const QUEUE_SNAPSHOT_PERIOD_MS: u64 = 1_000;

/// Attribute keys.
pub mod attr {
    pub const TENANT: &str = "relais.tenant";
    pub const QUEUE: &str = "relais.queue";
    pub const OUTCOME: &str = "relais.call.outcome";
    pub const INFORMANT_STATE: &str = "relais.informant.state";
    pub const ACTOR_KIND: &str = "relais.actor.kind";
    pub const TRIGGER: &str = "relais.routing.trigger";
    pub const OPERATION: &str = "relais.etcd.operation";
    pub const FORWARD_KIND: &str = "relais.forward.kind";
    pub const RESULT: &str = "relais.result";
}

/// Bucket bounds of the routing decision histogram, in seconds: 1 µs to
/// 100 ms (a decision looks at a few informants, never scans them).
const ROUTING_BOUNDS_S: [f64; 13] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 1e-1];
/// Bucket bounds of etcd request durations, in seconds: 250 µs to 5 s
/// (a call batch is given up after 3 s).
const ETCD_BOUNDS_S: [f64; 14] = [2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What a routing decision was triggered by (`relais.routing.duration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A call arrived: offered by a gateway, or moved in from another queue.
    Call,
    /// An informant announced itself available.
    Informant,
    /// An informant answered a proposal or an offer (a refusal routes the
    /// call again).
    Answer,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Informant => "informant",
            Self::Answer => "answer",
        }
    }
}

/// An etcd request the node times (`relais.etcd.duration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdOp {
    /// A fenced batch of a queue's call records.
    CallsWrite,
    /// A tenant's live calls, read when a queue starts (or an informant
    /// logs in again after its member died).
    CallsRead,
    /// One renewal of the membership lease.
    LeaseRenew,
}

impl EtcdOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::CallsWrite => "calls.write",
            Self::CallsRead => "calls.read",
            Self::LeaseRenew => "lease.renew",
        }
    }
}

/// How a call ended (`relais.queue.calls.ended`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Abandoned,
    Deflected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Abandoned => "abandoned",
            Self::Deflected => "deflected",
        }
    }
}

/// A queue's tenant and id.
type QueueKey = (Arc<str>, Arc<str>);

/// The figures each hosted queue last published, by (tenant, queue).
#[derive(Default)]
pub struct QueueBoard {
    queues: Mutex<HashMap<QueueKey, Published>>,
}

struct Published {
    /// The actor that published it: a queue's previous actor stopping
    /// late removes only its own entry.
    actor: u64,
    attributes: [KeyValue; 2],
    figures: QueueFigures,
}

impl QueueBoard {
    fn lock(&self) -> MutexGuard<'_, HashMap<QueueKey, Published>> {
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads each published queue's attributes and figures.
    fn each(&self, mut f: impl FnMut(&[KeyValue], &QueueFigures)) {
        for published in self.lock().values() {
            f(&published.attributes, &published.figures);
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Logged-in informants hosted here, by tenant and state.
#[derive(Default)]
pub struct InformantTally {
    counts: Mutex<HashMap<Arc<str>, [i64; STATES.len()]>>,
}

/// The states counted, in the order of [`InformantTally`]'s arrays.
const STATES: [InformantState; 6] = [
    InformantState::Offline,
    InformantState::Available,
    InformantState::Reserved,
    InformantState::OnCall,
    InformantState::WrapUp,
    InformantState::Paused,
];

fn state_index(state: InformantState) -> usize {
    match state {
        InformantState::Offline => 0,
        InformantState::Available => 1,
        InformantState::Reserved => 2,
        InformantState::OnCall => 3,
        InformantState::WrapUp => 4,
        InformantState::Paused => 5,
    }
}

fn state_name(state: InformantState) -> &'static str {
    match state {
        InformantState::Offline => "offline",
        InformantState::Available => "available",
        InformantState::Reserved => "reserved",
        InformantState::OnCall => "on_call",
        InformantState::WrapUp => "wrap_up",
        InformantState::Paused => "paused",
    }
}

impl InformantTally {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, [i64; STATES.len()]>> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One informant of `tenant` went from `from` to `to` (`None`: not
    /// hosted here).
    pub fn moved(&self, tenant: &Arc<str>, from: Option<InformantState>, to: Option<InformantState>) {
        if from == to {
            return;
        }
        let mut counts = self.lock();
        let row = counts.entry(tenant.clone()).or_default();
        if let Some(from) = from {
            row[state_index(from)] -= 1;
        }
        if let Some(to) = to {
            row[state_index(to)] += 1;
        }
        // A tenant's row stays once it has one (there are at most as many
        // as tenants): the SDK keeps reporting an up-down counter's last
        // value for attributes no longer observed, so its zeros must be.
    }

    /// Informants hosted here, in every state but offline (an actor
    /// logging out is offline for the moment before it stops).
    fn logged_in(&self) -> i64 {
        self.lock().values().map(|row| row.iter().skip(1).sum::<i64>()).sum()
    }
}

/// The node's instruments; clones share them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

struct Inner {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    board: Arc<QueueBoard>,
    tally: Arc<InformantTally>,
    calls_offered: Counter<u64>,
    calls_answered: Counter<u64>,
    calls_ended: Counter<u64>,
    routing: Histogram<f64>,
    forwards: Counter<u64>,
    takeovers: Counter<u64>,
    calls_restored: Counter<u64>,
    etcd: Histogram<f64>,
    renewals: Counter<u64>,
    /// Observable instruments live as long as the provider; kept here so
    /// that their registration is visibly owned.
    _observed: Observed,
}

#[allow(dead_code)]
struct Observed {
    waiting: ObservableGauge<u64>,
    connected: ObservableGauge<u64>,
    longest_wait: ObservableGauge<f64>,
    service_level: ObservableGauge<f64>,
    asa: ObservableGauge<f64>,
    abandonment: ObservableGauge<f64>,
    actors: ObservableUpDownCounter<i64>,
    informants: ObservableUpDownCounter<i64>,
    informants_available: ObservableGauge<u64>,
}

impl Default for Metrics {
    /// Metrics read only through [`Metrics::render`], with no exporter.
    fn default() -> Self {
        Self::build(Resource::builder_empty().with_service_name("relais-node").build(), None)
    }
}

impl Metrics {
    /// The node's metrics, readable by [`Metrics::render`] and pushed by
    /// OTLP/gRPC when the standard environment asks for it
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
    /// set, `OTEL_METRICS_EXPORTER` not `none`; interval
    /// `OTEL_METRIC_EXPORT_INTERVAL`). Must be called inside the tokio
    /// runtime: the exporter's channel lives on it.
    pub fn from_env(node_id: &str) -> anyhow::Result<Self> {
        let exporter = if otlp_wanted(|name| std::env::var(name).ok()) {
            let exporter = opentelemetry_otlp::MetricExporter::builder().with_tonic().build()?;
            tracing::info!("metrics exported by OTLP as the OTEL_* environment says");
            Some(exporter)
        } else {
            None
        };
        Ok(Self::build(crate::telemetry::resource(node_id), exporter))
    }

    fn build(resource: Resource, otlp: Option<opentelemetry_otlp::MetricExporter>) -> Self {
        let reader = Arc::new(ManualReader::builder().build());
        let mut builder = SdkMeterProvider::builder().with_resource(resource).with_reader(SharedReader(reader.clone()));
        if let Some(exporter) = otlp {
            builder = builder.with_periodic_exporter(exporter);
        }
        let provider = builder.build();
        let meter = provider.meter("relais-node");
        let board = Arc::new(QueueBoard::default());
        let tally = Arc::new(InformantTally::default());
        let observed = observe(&meter, &board, &tally);
        let inner = Inner {
            calls_offered: meter
                .u64_counter("relais.queue.calls.offered")
                .with_unit("{call}")
                .with_description("Calls gateways offered to the queue (new calls, not retries).")
                .build(),
            calls_answered: meter
                .u64_counter("relais.queue.calls.answered")
                .with_unit("{call}")
                .with_description("Calls of the queue connected to an informant.")
                .build(),
            calls_ended: meter
                .u64_counter("relais.queue.calls.ended")
                .with_unit("{call}")
                .with_description("Calls that ended in the queue, by outcome: completed, abandoned, deflected.")
                .build(),
            routing: meter
                .f64_histogram("relais.routing.duration")
                .with_unit("s")
                .with_description(
                    "Time a queue actor takes to route on one message: to place an arriving call, to answer an \
                     informant's availability, or to place a call again after an answer, effects sent included \
                     (an etcd write is not).",
                )
                .with_boundaries(ROUTING_BOUNDS_S.to_vec())
                .build(),
            forwards: meter
                .u64_counter("relais.forward.requests")
                .with_unit("{request}")
                .with_description("Requests sent on to the member that owns their actor, by kind and result.")
                .build(),
            takeovers: meter
                .u64_counter("relais.queue.takeovers")
                .with_unit("{queue}")
                .with_description("Queues this member started with live calls a previous actor left in etcd.")
                .build(),
            calls_restored: meter
                .u64_counter("relais.queue.calls.restored")
                .with_unit("{call}")
                .with_description("Live calls this member's queues took over from etcd.")
                .build(),
            etcd: meter
                .f64_histogram("relais.etcd.duration")
                .with_unit("s")
                .with_description("Duration of etcd requests, by operation (failed and timed-out ones included).")
                .with_boundaries(ETCD_BOUNDS_S.to_vec())
                .build(),
            renewals: meter
                .u64_counter("relais.lease.renewals")
                .with_unit("{renewal}")
                .with_description("Renewals of the membership lease, by result: renewed, failed, lost.")
                .build(),
            provider,
            reader,
            board,
            tally,
            _observed: observed,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut collected = ResourceMetrics::default();
        match self.inner.reader.collect(&mut collected) {
            Ok(()) => text::render(&collected),
            Err(e) => {
                tracing::warn!(error = %e, "collecting metrics failed");
                String::new()
            }
        }
    }

    /// Stops the exporter, pushing what it holds.
    pub fn shutdown(&self) {
        if let Err(e) = self.inner.provider.shutdown() {
            tracing::debug!(error = %e, "metrics shutdown");
        }
    }

    /// The attributes of one queue's figures.
    pub fn queue_attributes(tenant: &Arc<str>, queue_id: &Arc<str>) -> [KeyValue; 2] {
        [KeyValue::new(attr::TENANT, tenant.clone()), KeyValue::new(attr::QUEUE, queue_id.clone())]
    }

    /// A queue actor's latest figures.
    pub fn publish_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>, actor: u64, figures: QueueFigures) {
        let attributes = Self::queue_attributes(tenant, queue_id);
        self.inner.board.lock().insert((tenant.clone(), queue_id.clone()), Published { actor, attributes, figures });
    }

    /// A queue actor stopped: its figures go, unless a newer actor of the
    /// same queue replaced them.
    pub fn forget_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>, actor: u64) {
        let mut board = self.inner.board.lock();
        let key = (tenant.clone(), queue_id.clone());
        if board.get(&key).is_some_and(|p| p.actor == actor) {
            board.remove(&key);
        }
    }

    pub fn informants(&self) -> &InformantTally {
        &self.inner.tally
    }

    pub fn calls_offered(&self, queue: &[KeyValue], n: u64) {
        self.inner.calls_offered.add(n, queue);
    }

    pub fn calls_answered(&self, queue: &[KeyValue], n: u64) {
        self.inner.calls_answered.add(n, queue);
    }

    pub fn call_ended(&self, tenant: &Arc<str>, queue_id: &Arc<str>, outcome: Outcome) {
        let [tenant, queue] = Self::queue_attributes(tenant, queue_id);
        self.inner.calls_ended.add(1, &[tenant, queue, KeyValue::new(attr::OUTCOME, outcome.as_str())]);
    }

    pub fn routed(&self, trigger: Trigger, took: Duration) {
        self.inner.routing.record(took.as_secs_f64(), &[KeyValue::new(attr::TRIGGER, trigger.as_str())]);
    }

    /// A request sent on to its actor's member; `stream` for a proxied
    /// stream's opening.
    pub fn forwarded(&self, stream: bool, ok: bool) {
        self.inner.forwards.add(
            1,
            &[
                KeyValue::new(attr::FORWARD_KIND, if stream { "stream" } else { "unary" }),
                KeyValue::new(attr::RESULT, if ok { "ok" } else { "error" }),
            ],
        );
    }

    /// A queue started with `calls` live calls read from etcd.
    pub fn queue_started(&self, calls: usize) {
        if calls > 0 {
            self.inner.takeovers.add(1, &[]);
            self.inner.calls_restored.add(calls as u64, &[]);
        }
    }

    pub fn etcd(&self, op: EtcdOp, took: Duration) {
        self.inner.etcd.record(took.as_secs_f64(), &[KeyValue::new(attr::OPERATION, op.as_str())]);
    }

    /// A lease renewal's result: `Some(true)` renewed, `Some(false)` the
    /// lease is gone, `None` failed (no answer, or an error).
    pub fn lease_renewal(&self, renewed: Option<bool>) {
        let result = match renewed {
            Some(true) => "renewed",
            Some(false) => "lost",
            None => "failed",
        };
        self.inner.renewals.add(1, &[KeyValue::new(attr::RESULT, result)]);
    }
}

/// Whether the OTEL_* environment (read through `var`) asks for OTLP
/// metrics.
fn otlp_wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let exporter = var("OTEL_METRICS_EXPORTER").unwrap_or_default();
    let off = exporter.split(',').any(|e| e.trim() == "none");
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
}

/// The observable instruments, read from the board and the tally.
fn observe(meter: &Meter, board: &Arc<QueueBoard>, tally: &Arc<InformantTally>) -> Observed {
    let gauge_u64 = |name: &'static str, unit: &'static str, help: &'static str, read: fn(&QueueFigures) -> u64| {
        let board = board.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(help)
            .with_callback(move |observer| {
                board.each(|attributes, figures| observer.observe(read(figures), attributes))
            })
            .build()
    };
    let gauge_f64 = |name: &'static str, unit: &'static str, help: &'static str, read: fn(&QueueFigures) -> f64| {
        let board = board.clone();
        meter
            .f64_observable_gauge(name)
            .with_unit(unit)
            .with_description(help)
            .with_callback(move |observer| {
                board.each(|attributes, figures| observer.observe(read(figures), attributes))
            })
            .build()
    };
    let actors = {
        let (board, tally) = (board.clone(), tally.clone());
        meter
            .i64_observable_up_down_counter("relais.node.actors")
            .with_unit("{actor}")
            .with_description("Actors this node hosts, by kind: queues, logged-in informants.")
            .with_callback(move |observer| {
                observer.observe(board.len() as i64, &[KeyValue::new(attr::ACTOR_KIND, "queue")]);
                observer.observe(tally.logged_in(), &[KeyValue::new(attr::ACTOR_KIND, "informant")]);
            })
            .build()
    };
    let informants = {
        let tally = tally.clone();
        meter
            .i64_observable_up_down_counter("relais.informants")
            .with_unit("{informant}")
            .with_description("Logged-in informants this node hosts, by tenant and state.")
            .with_callback(move |observer| {
                for (tenant, row) in tally.lock().iter() {
                    for state in STATES.into_iter().skip(1) {
                        observer.observe(
                            row[state_index(state)],
                            &[
                                KeyValue::new(attr::TENANT, tenant.clone()),
                                KeyValue::new(attr::INFORMANT_STATE, state_name(state)),
                            ],
                        );
                    }
                }
            })
            .build()
    };
    Observed {
        waiting: gauge_u64(
            "relais.queue.waiting",
            "{call}",
            "Calls waiting in the queue for an informant (proposals not yet taken included).",
            |f| u64::from(f.waiting),
        ),
        connected: gauge_u64(
            "relais.queue.connected",
            "{call}",
            "Calls of the queue connected to an informant.",
            |f| u64::from(f.connected),
        ),
        informants_available: gauge_u64(
            "relais.queue.informants.available",
            "{informant}",
            "Informants available to the queue.",
            |f| u64::from(f.informants_available),
        ),
        longest_wait: gauge_f64(
            "relais.queue.wait.longest",
            "s",
            "Wait of the queue's longest-waiting call not yet connected, since it arrived.",
            |f| f.longest_wait_ms as f64 / 1_000.0,
        ),
        service_level: gauge_f64(
            "relais.queue.service_level",
            "1",
            "Share of the calls answered in the last 15 minutes that waited at most the queue's service-level \
             threshold (1 when none was answered).",
            |f| f.recent.service_level,
        ),
        asa: gauge_f64(
            "relais.queue.answer.speed",
            "s",
            "Average speed of answer (ASA): mean wait of the calls answered in the last 15 minutes.",
            |f| f.recent.asa_ms as f64 / 1_000.0,
        ),
        abandonment: gauge_f64(
            "relais.queue.abandonment",
            "1",
            "Share of the calls that ended waiting in the last 15 minutes that were abandoned.",
            |f| f.recent.abandonment_rate,
        ),
        actors,
        informants,
    }
}

/// The pull reader, shared between the meter provider (which owns its
/// readers) and [`Metrics::render`].
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(waiting: u32) -> QueueFigures {
        QueueFigures {
            waiting,
            offered: 0,
            connected: 1,
            longest_wait_ms: 2_500,
            offered_total: 7,
            answered_total: 5,
            abandoned_total: 1,
            deflected_total: 0,
            recent: relais_routing::stats::RecentFigures { service_level: 0.8, asa_ms: 1_500, abandonment_rate: 0.25 },
            occupancy: 0.5,
            informants_logged_in: 2,
            informants_available: 1,
            estimated_wait_ms: 0,
        }
    }

    #[test]
    fn the_otlp_exporter_follows_the_standard_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert!(!otlp_wanted(env(&[])));
        assert!(!otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")])));
        assert!(otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://collector:4317")])));
        assert!(!otlp_wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_METRICS_EXPORTER", "none")
        ])));
    }

    #[test]
    fn a_queue_figures_show_until_its_own_actor_stops() {
        let metrics = Metrics::default();
        let (tenant, queue): (Arc<str>, Arc<str>) = ("cai".into(), "logement".into());
        metrics.publish_queue(&tenant, &queue, 1, figures(3));
        let text = metrics.render();
        assert!(text.contains("relais_queue_waiting{relais_queue=\"logement\",relais_tenant=\"cai\"} 3\n"), "{text}");
        assert!(
            text.contains("relais_queue_wait_longest_seconds{relais_queue=\"logement\",relais_tenant=\"cai\"} 2.5\n")
        );
        assert!(
            text.contains("relais_queue_service_level_ratio{relais_queue=\"logement\",relais_tenant=\"cai\"} 0.8\n")
        );
        assert!(text.contains("relais_node_actors{relais_actor_kind=\"queue\"} 1\n"), "{text}");

        // A newer actor of the same queue replaced the entry: the old one
        // stopping late leaves it.
        metrics.publish_queue(&tenant, &queue, 2, figures(4));
        metrics.forget_queue(&tenant, &queue, 1);
        assert!(metrics.render().contains("relais_queue_waiting{relais_queue=\"logement\",relais_tenant=\"cai\"} 4\n"));
        metrics.forget_queue(&tenant, &queue, 2);
        let text = metrics.render();
        assert!(!text.contains("relais_queue_waiting{"), "{text}");
        assert!(text.contains("relais_node_actors{relais_actor_kind=\"queue\"} 0\n"), "{text}");
    }

    #[test]
    fn informants_are_counted_by_state() {
        let metrics = Metrics::default();
        let tenant: Arc<str> = "cai".into();
        let tally = metrics.informants();
        tally.moved(&tenant, None, Some(InformantState::Available));
        tally.moved(&tenant, None, Some(InformantState::Available));
        tally.moved(&tenant, Some(InformantState::Available), Some(InformantState::OnCall));
        let text = metrics.render();
        let line = |state: &str, n: i64| {
            format!("relais_informants{{relais_informant_state=\"{state}\",relais_tenant=\"cai\"}} {n}\n")
        };
        assert!(text.contains(&line("available", 1)), "{text}");
        assert!(text.contains(&line("on_call", 1)), "{text}");
        assert!(text.contains("relais_node_actors{relais_actor_kind=\"informant\"} 2\n"), "{text}");
        tally.moved(&tenant, Some(InformantState::OnCall), Some(InformantState::Offline));
        tally.moved(&tenant, Some(InformantState::Offline), None);
        let text = metrics.render();
        assert!(text.contains(&line("on_call", 0)), "{text}");
        assert!(text.contains("relais_node_actors{relais_actor_kind=\"informant\"} 1\n"), "{text}");
        // The last one leaves: its state reads 0, not its last value.
        tally.moved(&tenant, Some(InformantState::Available), None);
        assert!(metrics.render().contains(&line("available", 0)));
    }
}
