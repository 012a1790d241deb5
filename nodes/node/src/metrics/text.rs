//! Renders collected OpenTelemetry metrics in the Prometheus text
//! exposition format (version 0.0.4), following the OpenTelemetry
//! specification's Prometheus compatibility rules for the parts relais
//! uses: names and attribute keys with `.` become `_`; a unit becomes a
//! suffix (`s` → `_seconds`, `1` on a gauge → `_ratio`, annotations such
//! as `{call}` are dropped); a monotonic sum is a `counter` with `_total`,
//! a non-monotonic sum or a gauge is a `gauge`, a histogram has cumulative
//! `_bucket{le=...}` series, `_sum` and `_count`. Exponential histograms
//! are not rendered (relais records none). Families and series come out
//! sorted, so a scrape's text is stable.
//!
//! Pure: no I/O, no global state.

use std::collections::BTreeMap;
use std::fmt::Write;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};

/// One metric family's text, by name.
struct Family {
    kind: &'static str,
    help: String,
    /// Sample lines, sorted by their labels within the family.
    samples: Vec<(String, String)>,
}

/// The whole collection as Prometheus text.
pub fn render(collected: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            add(&mut families, metric);
        }
    }
    let mut out = String::new();
    for (name, family) in families {
        if !family.help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
        }
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        let mut samples = family.samples;
        samples.sort();
        for (_, line) in samples {
            out.push_str(&line);
        }
    }
    out
}

fn add(families: &mut BTreeMap<String, Family>, metric: &Metric) {
    match metric.data() {
        AggregatedMetrics::F64(data) => add_data(families, metric, data, format_f64),
        AggregatedMetrics::U64(data) => add_data(families, metric, data, |v| v.to_string()),
        AggregatedMetrics::I64(data) => add_data(families, metric, data, |v| v.to_string()),
    }
}

fn add_data<T: Copy + Into<Number>>(
    families: &mut BTreeMap<String, Family>,
    metric: &Metric,
    data: &MetricData<T>,
    format: fn(T) -> String,
) {
    let base = sanitize(metric.name());
    let help = metric.description().to_string();
    match data {
        MetricData::Gauge(gauge) => {
            let name = with_unit(&base, metric.unit(), true);
            let samples =
                gauge.data_points().map(|p| sample(&name, labels(p.attributes(), None), format(p.value()))).collect();
            merge(families, name, "gauge", help, samples);
        }
        MetricData::Sum(sum) => {
            let monotonic = sum.is_monotonic();
            let mut name = with_unit(&base, metric.unit(), !monotonic);
            if monotonic && !name.ends_with("_total") {
                name.push_str("_total");
            }
            let samples =
                sum.data_points().map(|p| sample(&name, labels(p.attributes(), None), format(p.value()))).collect();
            merge(families, name, if monotonic { "counter" } else { "gauge" }, help, samples);
        }
        MetricData::Histogram(histogram) => {
            let name = with_unit(&base, metric.unit(), false);
            let mut samples = Vec::new();
            for point in histogram.data_points() {
                let series = labels(point.attributes(), None);
                let bounds: Vec<f64> = point.bounds().collect();
                let mut cumulative = 0u64;
                for (i, count) in point.bucket_counts().enumerate() {
                    cumulative += count;
                    let le = bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| format_f64(*b));
                    // Buckets in the order of their bounds, then the sum,
                    // then the count.
                    let key = format!("{series}\u{0}0{i:05}");
                    samples.push((
                        key,
                        line(&name, "_bucket", &labels(point.attributes(), Some(&le)), &cumulative.to_string()),
                    ));
                }
                let sum: Number = point.sum().into();
                samples.push((format!("{series}\u{0}1"), line(&name, "_sum", &series, &sum.format())));
                samples.push((format!("{series}\u{0}2"), line(&name, "_count", &series, &point.count().to_string())));
            }
            merge(families, name, "histogram", help, samples);
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// A value of any of the SDK's number types.
pub enum Number {
    F64(f64),
    U64(u64),
    I64(i64),
}

impl Number {
    fn format(&self) -> String {
        match self {
            Self::F64(v) => format_f64(*v),
            Self::U64(v) => v.to_string(),
            Self::I64(v) => v.to_string(),
        }
    }
}

impl From<f64> for Number {
    fn from(v: f64) -> Self {
        Self::F64(v)
    }
}

impl From<u64> for Number {
    fn from(v: u64) -> Self {
        Self::U64(v)
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}

fn merge(
    families: &mut BTreeMap<String, Family>,
    name: String,
    kind: &'static str,
    help: String,
    samples: Vec<(String, String)>,
) {
    let family = families.entry(name).or_insert_with(|| Family { kind, help, samples: Vec::new() });
    family.samples.extend(samples);
}

/// One sample line, and the key it sorts by: its labels.
fn sample(name: &str, labels: String, value: String) -> (String, String) {
    let text = line(name, "", &labels, &value);
    (labels, text)
}

fn line(name: &str, suffix: &str, labels: &str, value: &str) -> String {
    if labels.is_empty() {
        format!("{name}{suffix} {value}\n")
    } else {
        format!("{name}{suffix}{{{labels}}} {value}\n")
    }
}

/// `key="value"` pairs, sorted by key, `le` last.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> =
        attributes.map(|kv| (sanitize(kv.key.as_str()), escape_value(&kv.value.as_str()))).collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".to_string(), le.to_string()));
    }
    pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",")
}

/// The name with its unit's suffix, unless it already ends with it.
fn with_unit(name: &str, unit: &str, gauge_like: bool) -> String {
    let suffix = match unit {
        "" => None,
        "1" if gauge_like => Some("ratio".to_string()),
        "1" => None,
        "s" => Some("seconds".to_string()),
        "ms" => Some("milliseconds".to_string()),
        "By" => Some("bytes".to_string()),
        annotation if annotation.starts_with('{') => None,
        other => Some(sanitize(other)),
    };
    match suffix {
        Some(suffix) if !name.ends_with(&format!("_{suffix}")) => format!("{name}_{suffix}"),
        _ => name.to_string(),
    }
}

/// A metric or label name: letters, digits and `_` (and `:` in metric
/// names, which relais never uses); anything else becomes `_`, and a name
/// starting with a digit gets a leading `_`.
fn sanitize(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::reader::MetricReader;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

    use super::*;

    /// Records through a real SDK pipeline, collects, renders.
    fn rendered(record: impl FnOnce(&opentelemetry::metrics::Meter)) -> String {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder().with_reader(super::super::SharedReader(reader.clone())).build();
        record(&provider.meter("test"));
        let mut collected = ResourceMetrics::default();
        reader.collect(&mut collected).expect("collect");
        render(&collected)
    }

    #[test]
    fn counters_get_total_and_labels_are_sorted_and_escaped() {
        let text = rendered(|meter| {
            let counter = meter
                .u64_counter("relais.queue.calls.ended")
                .with_unit("{call}")
                .with_description("Ended.\nBy outcome \\ queue.")
                .build();
            counter.add(
                2,
                &[KeyValue::new("relais.queue", "a\"b\\c\nd"), KeyValue::new("relais.call.outcome", "completed")],
            );
            counter.add(1, &[KeyValue::new("relais.queue", "x"), KeyValue::new("relais.call.outcome", "abandoned")]);
        });
        assert_eq!(
            text,
            "# HELP relais_queue_calls_ended_total Ended.\\nBy outcome \\\\ queue.\n\
             # TYPE relais_queue_calls_ended_total counter\n\
             relais_queue_calls_ended_total{relais_call_outcome=\"abandoned\",relais_queue=\"x\"} 1\n\
             relais_queue_calls_ended_total{relais_call_outcome=\"completed\",relais_queue=\"a\\\"b\\\\c\\nd\"} 2\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_a_sum_and_a_count() {
        let text = rendered(|meter| {
            let histogram = meter
                .f64_histogram("relais.routing.duration")
                .with_unit("s")
                .with_boundaries(vec![0.001, 0.25])
                .build();
            for v in [0.0009765625, 0.125, 0.25, 3.0] {
                histogram.record(v, &[KeyValue::new("relais.routing.trigger", "call")]);
            }
        });
        assert_eq!(
            text,
            "# TYPE relais_routing_duration_seconds histogram\n\
             relais_routing_duration_seconds_bucket{relais_routing_trigger=\"call\",le=\"0.001\"} 1\n\
             relais_routing_duration_seconds_bucket{relais_routing_trigger=\"call\",le=\"0.25\"} 3\n\
             relais_routing_duration_seconds_bucket{relais_routing_trigger=\"call\",le=\"+Inf\"} 4\n\
             relais_routing_duration_seconds_sum{relais_routing_trigger=\"call\"} 3.3759765625\n\
             relais_routing_duration_seconds_count{relais_routing_trigger=\"call\"} 4\n"
        );
    }

    #[test]
    fn gauges_and_up_down_counters_are_gauges_with_their_unit() {
        let text = rendered(|meter| {
            meter.f64_gauge("relais.queue.service_level").with_unit("1").build().record(0.75, &[]);
            meter.f64_gauge("relais.queue.wait.longest").with_unit("s").build().record(12.5, &[]);
            meter.i64_up_down_counter("relais.informants").with_unit("{informant}").build().add(-2, &[]);
            meter.u64_counter("relais.lease.renewals").build().add(3, &[]);
            meter.u64_counter("already_total").with_unit("{x}").build().add(1, &[]);
        });
        assert_eq!(
            text,
            "# TYPE already_total counter\nalready_total 1\n\
             # TYPE relais_informants gauge\nrelais_informants -2\n\
             # TYPE relais_lease_renewals_total counter\nrelais_lease_renewals_total 3\n\
             # TYPE relais_queue_service_level_ratio gauge\nrelais_queue_service_level_ratio 0.75\n\
             # TYPE relais_queue_wait_longest_seconds gauge\nrelais_queue_wait_longest_seconds 12.5\n"
        );
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(sanitize("relais.queue-x/y"), "relais_queue_x_y");
        assert_eq!(sanitize("9lives"), "_9lives");
        assert_eq!(with_unit("relais_x_seconds", "s", true), "relais_x_seconds");
        assert_eq!(with_unit("relais_x", "By", false), "relais_x_bytes");
        assert_eq!(format_f64(f64::INFINITY), "+Inf");
        assert_eq!(format_f64(1e-6), "0.000001");
    }
}
