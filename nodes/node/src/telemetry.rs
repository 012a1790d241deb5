//! The node's logs and traces: one `tracing` subscriber that writes the
//! logs (text or JSON) and, when the standard OTel environment names a
//! collector, turns spans into OpenTelemetry traces pushed by OTLP/gRPC.
//!
//! A call's path is one trace across the members it touches: the trace
//! context travels as W3C `traceparent` in gRPC metadata (forwarded
//! requests, the `Peer` service's requests), in each envelope of a peer
//! link (one long stream carries the messages of many calls), and, inside
//! a node, in the actor messages that cross a mailbox ([`Trace`]). The
//! server side reads it in one place, the span the server opens for every
//! request ([`server_span`]).
//!
//! With no collector configured, nothing is exported, no context is read
//! or written, [`Trace`] is empty, and the filter turns the trace's spans
//! (target [`TARGET`]) off: the request path pays nothing for them.
//!
//! Log lines written inside a trace carry its `trace_id` and `span_id`.
//!
//! **Invariant:** no span, attribute or event names a caller's number; the
//! number never leaves the gateway service, which turns it into a
//! pseudonym at once.
//!
//! This module depends on no actor, service or cluster type: the others
//! call it.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The default log filter. ractor opens an INFO span for each actor's
/// whole life, which the subscriber keeps (about 350 bytes per idle
/// informant): off by default.
const DEFAULT_FILTER: &str = "info,ractor=warn";

/// The target of every span that makes a call's trace. With no traces
/// exported the filter turns them off, so that the request path pays
/// nothing for them (a span per request and per routing step measurably
/// slowed a busy node: about 40 % fewer call lifecycles per second in the
/// end-to-end benchmark).
pub const TARGET: &str = "relais::trace";

/// Most trace context entries read from a peer envelope (W3C uses two:
/// `traceparent` and `tracestate`).
pub const MAX_CONTEXT_ENTRIES: usize = 4;

/// Set once, when traces are exported: only then is context read and
/// written.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// The installed logs and, when exported, traces. [`Telemetry::shutdown`]
/// pushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: logs on standard error (JSON when
    /// `log_json`; filter `RUST_LOG`), and traces pushed by OTLP/gRPC when
    /// the standard environment asks for it (`OTEL_EXPORTER_OTLP_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, `OTEL_TRACES_EXPORTER`
    /// not `none`; sampler `OTEL_TRACES_SAMPLER`, batching `OTEL_BSP_*`,
    /// resource `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`). Must be
    /// called inside the tokio runtime: the exporter's channel lives on it.
    pub fn init(log_json: bool, node_id: &str) -> anyhow::Result<Self> {
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs = if log_json {
            logs.json().event_format(WithTraceIds::json(tracing_subscriber::fmt::format().json())).boxed()
        } else {
            logs.event_format(WithTraceIds::text(tracing_subscriber::fmt::format())).boxed()
        };
        let traces = if otlp_wanted(|name| std::env::var(name).ok()) {
            let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource(node_id))
                    // A bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by
                    // default), exported in bounded batches from its own
                    // thread; spans beyond the queue are dropped.
                    .with_batch_exporter(exporter)
                    .build(),
            )
        } else {
            None
        };
        let mut filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
        if traces.is_none() {
            // More specific than any level RUST_LOG sets, so it wins.
            filter = filter.add_directive(format!("{TARGET}=off").parse()?);
        }
        // Only the node's own spans become traces: the exporter's gRPC
        // client would otherwise trace its own exports.
        let otel = traces.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("relais-node"))
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("relais")))
        });
        tracing_subscriber::registry().with(filter).with(logs).with(otel).try_init()?;
        if traces.is_some() {
            let _ = PROPAGATOR.set(TraceContextPropagator::new());
            tracing::info!("traces exported by OTLP as the OTEL_* environment says");
        }
        Ok(Self { traces })
    }

    /// Pushes the spans still buffered and stops the exporter. Blocks: call
    /// it off the runtime's worker threads, which drive the exporter.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::debug!(error = %e, "traces shutdown");
        }
    }
}

/// The node's resource: `relais-node` unless `OTEL_SERVICE_NAME` names the
/// service, and the node's id as the instance.
pub fn resource(node_id: &str) -> Resource {
    let mut resource = Resource::builder().with_attribute(KeyValue::new("service.instance.id", node_id.to_string()));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("relais-node");
    }
    resource.build()
}

/// Whether the OTEL_* environment (read through `var`) asks for OTLP
/// traces.
fn otlp_wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let exporter = var("OTEL_TRACES_EXPORTER").unwrap_or_default();
    let off = exporter.split(',').any(|e| e.trim() == "none")
        || var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Whether traces are exported (and context carried).
pub fn enabled() -> bool {
    PROPAGATOR.get().is_some()
}

/// The span the server opens for every request, named after its method:
/// a child of the caller's span when the request carries a `traceparent`
/// (another member forwarding or relaying, or a gateway that traces).
/// It is the outermost thing a request passes, before the identity
/// interceptor of its service.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "grpc.server",
        otel.name = request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    if let Some(propagator) = PROPAGATOR.get() {
        let parent = propagator.extract(&HeaderExtractor(request.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// Writes the current span's context into `metadata` (for a request to
/// another member), replacing any the caller sent.
pub fn inject_metadata(metadata: &mut MetadataMap) {
    let Some(propagator) = PROPAGATOR.get() else { return };
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        propagator.inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

/// The current span's context as map entries, for a peer envelope; empty
/// when traces are off or outside a trace.
pub fn context_entries() -> HashMap<String, String> {
    let mut entries = HashMap::new();
    if let Some(propagator) = PROPAGATOR.get() {
        let cx = tracing::Span::current().context();
        if cx.span().span_context().is_valid() {
            propagator.inject_context(&cx, &mut entries);
        }
    }
    entries
}

/// The context carried by a peer envelope's entries, if any.
pub fn context_from_entries(entries: &HashMap<String, String>) -> Trace {
    match PROPAGATOR.get() {
        Some(propagator) if !entries.is_empty() && entries.len() <= MAX_CONTEXT_ENTRIES => {
            Trace::of(propagator.extract(entries))
        }
        _ => Trace::default(),
    }
}

/// The trace a message belongs to, carried through an actor's mailbox (a
/// span cannot be a parent there: the actor handles the message later, in
/// its own task). Empty when traces are off.
#[derive(Clone, Default)]
pub struct Trace(Option<Context>);

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(cx) => write!(f, "Trace({})", cx.span().span_context().trace_id()),
            None => f.write_str("Trace(none)"),
        }
    }
}

impl Trace {
    /// The current span's trace.
    pub fn current() -> Self {
        if !enabled() {
            return Self(None);
        }
        Self::of(tracing::Span::current().context())
    }

    fn of(cx: Context) -> Self {
        Self(cx.span().span_context().is_valid().then_some(cx))
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// Makes `span`, not yet entered, a child of this trace's span.
    pub fn adopt(&self, span: tracing::Span) -> tracing::Span {
        if let Some(cx) = &self.0 {
            let _ = span.set_parent(cx.clone());
        }
        span
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value)) {
            self.0.insert(key, value);
        }
    }
}

/// An event format that adds the current span's `trace_id` and `span_id`
/// to each line written inside a trace: as fields of the JSON object, or
/// at the end of a text line.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    fn json(inner: F) -> Self {
        Self { inner, json: true }
    }

    fn text(inner: F) -> Self {
        Self { inner, json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let extensions = span.extensions();
            let data = extensions.get::<OtelData>()?;
            Some((data.trace_id()?, data.span_id()?))
        });
        let Some((trace_id, span_id)) = ids.filter(|(t, _)| *t != opentelemetry::TraceId::INVALID) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = if self.json {
            format!("\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",")
        } else {
            format!(" trace_id={trace_id} span_id={span_id}")
        };
        if self.json && line.starts_with('{') {
            line.insert_str(1, &ids);
        } else if !self.json {
            let end = line.trim_end_matches('\n').len();
            line.insert_str(end, &ids);
        }
        writer.write_str(&line)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_otlp_exporter_follows_the_standard_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string())
        };
        assert!(!otlp_wanted(env(&[])));
        assert!(!otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])));
        assert!(otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")])));
        assert!(otlp_wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4317")])));
        assert!(!otlp_wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
        assert!(!otlp_wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
    }

    /// A log destination the test reads back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(str::to_string).collect()
        }
    }

    /// Logs one line outside any span and one inside a traced span, with
    /// `logs` and a tracer that exports nowhere; returns the lines and the
    /// span's trace and span ids.
    fn log_in_a_span<L>(logs: L) -> (String, String)
    where
        L: Layer<
                tracing_subscriber::layer::Layered<
                    tracing_opentelemetry::OpenTelemetryLayer<
                        tracing_subscriber::Registry,
                        opentelemetry_sdk::trace::SdkTracer,
                    >,
                    tracing_subscriber::Registry,
                >,
            > + Send
            + Sync
            + 'static,
    {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(logs);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("relais.test");
            let _entered = span.enter();
            tracing::info!(call_id = "c1", "inside");
            let cx = span.context();
            let ids = cx.span().span_context().clone();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        })
    }

    #[test]
    fn json_lines_inside_a_trace_name_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceIds::json(tracing_subscriber::fmt::format().json()))
            .with_writer(move || writer.clone());
        let (trace_id, span_id) = log_in_a_span(logs);
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
        assert_eq!(inside["span_id"], span_id.as_str(), "{inside}");
        assert_eq!(inside["fields"]["message"], "inside", "{inside}");
        assert_eq!(inside["fields"]["call_id"], "c1", "{inside}");
    }

    #[test]
    fn text_lines_inside_a_trace_end_with_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let logs = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(WithTraceIds::text(tracing_subscriber::fmt::format().with_ansi(false)))
            .with_writer(move || writer.clone());
        let (trace_id, span_id) = log_in_a_span(logs);
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("outside"), "{lines:?}");
        assert!(
            lines[1].ends_with(&format!("inside call_id=\"c1\" trace_id={trace_id} span_id={span_id}")),
            "{lines:?}"
        );
    }

    #[test]
    fn without_export_no_context_is_carried() {
        assert!(!Trace::current().is_some());
        assert!(context_entries().is_empty());
        let mut entries = HashMap::new();
        entries
            .insert("traceparent".to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string());
        assert!(!context_from_entries(&entries).is_some());
    }
}
