//! What happened to every call, and the figures drawn from it at the end of a run.
//!
//! Call tasks produce one [`CallRecord`] each; [`Summary::build`] turns the records into counts, waits,
//! service levels, latencies and, for the poisson profile, a comparison with queueing theory. The
//! building is a pure function of the records, so it is tested on synthetic ones.
//!
//! Definitions (all waits are those the node reports, arrival to connection, converted to simulated
//! time; deflected, failed and unresolved calls are left out of every wait figure):
//! * **service level** = answered within the queue's threshold / answered, the figure the node itself
//!   reports per queue;
//! * **service level with abandons** = answered within the threshold / (answered + abandoned): abandons
//!   count as failures, the stricter variant many call centres publish;
//! * **ASA** = mean wait of answered calls;
//! * **P(wait>0)** = answered calls that waited more than the epsilon / answered calls, the epsilon (real
//!   time, 10 ms by default) absorbing the router's own latency and the offer round trip; **P(wait>0),
//!   all** also counts every abandoned call as having waited, and is what "probability that an arrival
//!   waits" means in Erlang A;
//! * **occupancy** = informants' busy time (reserved, on call, wrap-up) / logged-in time not paused,
//!   over the offering phase;
//! * **routing latency** = real time from sending `OfferCall` to receiving the `Offered` event, for the
//!   calls offered while an eligible informant was idle (see the board); **connect latency** likewise
//!   up to `Connected`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::board::StateTimes;
use crate::erlang::{ErlangA, ErlangC, Mmn};
use crate::units::{TimeScale, format_sim_s};

/// How a call ended, from the gateway's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Connected to an informant (and ended afterwards).
    Answered,
    /// The caller hung up before being connected.
    Abandoned,
    /// The node refused the call.
    Deflected {
        /// The node's reason, e.g. `queue_full` or `max_wait`.
        reason: String,
    },
    /// A request failed in a way retries could not fix.
    Failed {
        /// What failed, e.g. `offer_call: unavailable`.
        reason: String,
    },
    /// No end was seen before the run stopped waiting for it.
    Unresolved,
}

/// Everything measured about one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The queue the call was offered to.
    pub queue_id: String,
    /// That queue's service-level threshold, simulated seconds.
    pub sl_threshold_s: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// The wait the node reported when the call was connected or abandoned, real milliseconds.
    pub waited_real_ms: Option<u64>,
    /// Real time from sending `OfferCall` to receiving the first `Offered` event.
    pub offered_latency: Option<Duration>,
    /// Real time from sending `OfferCall` to receiving `Connected`.
    pub connected_latency: Option<Duration>,
    /// An eligible informant was idle (and claimed) when the call was offered.
    pub idle_at_offer: bool,
    /// The call was transferred or overflowed at least once.
    pub transferred: bool,
    /// `OfferCall` retries: its member was unavailable or gone, and the gateway offered the same call
    /// id again (through the next target when there are several).
    #[serde(default)]
    pub offer_retries: u32,
}

impl CallRecord {
    /// A record for a call to `queue_id` that has not ended yet.
    pub fn new(queue_id: String, sl_threshold_s: f64) -> Self {
        Self {
            queue_id,
            sl_threshold_s,
            outcome: Outcome::Unresolved,
            waited_real_ms: None,
            offered_latency: None,
            connected_latency: None,
            idle_at_offer: false,
            transferred: false,
            offer_retries: 0,
        }
    }
}

/// Call counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Calls sent to the node.
    pub offered: u64,
    /// Connected to an informant.
    pub answered: u64,
    /// The caller hung up first.
    pub abandoned: u64,
    /// Refused by the node.
    pub deflected: u64,
    /// Deflections by reason.
    pub deflected_by_reason: BTreeMap<String, u64>,
    /// Failed requests.
    pub failed: u64,
    /// Failures by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Calls whose end was never seen.
    pub unresolved: u64,
    /// Calls transferred or overflowed at least once.
    pub transferred: u64,
    /// `OfferCall` retries with the same call id, after `UNAVAILABLE` or a broken connection.
    #[serde(default)]
    pub offer_retries: u64,
}

/// Waits and service levels, in simulated seconds; `None` where there is nothing to divide by.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitStats {
    /// Answered within the threshold / answered.
    pub service_level: Option<f64>,
    /// Answered within the threshold / (answered + abandoned).
    pub service_level_with_abandons: Option<f64>,
    /// Mean wait of answered calls.
    pub asa_s: Option<f64>,
    /// Answered calls that waited more than the epsilon / answered.
    pub p_wait: Option<f64>,
    /// (Answered calls that waited + abandoned) / (answered + abandoned).
    pub p_wait_all: Option<f64>,
    /// Abandoned / (answered + abandoned).
    pub abandonment_rate: Option<f64>,
    /// Longest wait of an answered call.
    pub max_wait_s: Option<f64>,
    /// Mean wait of abandoned calls before they hung up.
    pub mean_abandon_wait_s: Option<f64>,
}

/// Counts and waits of one queue (or of all queues, with `queue_id` "all").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Queue id, or "all".
    pub queue_id: String,
    /// The queue's service-level threshold, simulated seconds (each call's own for "all").
    pub sl_threshold_s: Option<f64>,
    /// Counts.
    pub calls: CallCounts,
    /// Waits.
    pub waits: WaitStats,
}

/// Latency percentiles in real milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`, or `None` without samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Some(Self { count: samples.len(), p50_ms: rank(0.5), p90_ms: rank(0.9), p99_ms: rank(0.99), max_ms: rank(1.0) })
    }
}

/// One predicted figure beside the measured one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What is compared.
    pub metric: String,
    /// Queueing theory's value.
    pub predicted: f64,
    /// This run's value.
    pub measured: Option<f64>,
}

/// Queueing theory's prediction for the run, when the workload is one it covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErlangComparison {
    /// "Erlang C" or "Erlang A".
    pub model: String,
    /// Informants N.
    pub agents: u32,
    /// Offered load A, in Erlangs.
    pub load_erlangs: f64,
    /// Mean patience, simulated seconds, for Erlang A.
    pub mean_patience_s: Option<f64>,
    /// The figures.
    pub figures: Vec<Comparison>,
}

/// Informant-side totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InformantTotals {
    /// Informants that logged in.
    pub logged_in: u64,
    /// Offers received.
    pub offers: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Calls finished by the informant.
    pub finished: u64,
    /// Requests that failed for other reasons than a withdrawn offer or an ended call.
    pub errors: u64,
    /// Logins again after the informant's session found it logged out: its member died with its actor
    /// (or the node forgot it), so the desktop logged in again, through another target if need be.
    #[serde(default)]
    pub relogins: u64,
}

/// Everything a run reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Workload name.
    pub profile: String,
    /// Tenant used.
    pub tenant: String,
    /// Seed of the workload.
    pub seed: u64,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Whether the run was stopped early (Ctrl-C).
    pub interrupted: bool,
    /// Simulated duration of the offering phase.
    pub simulated_s: f64,
    /// Real duration of the offering phase.
    pub offering_real_s: f64,
    /// Real duration of the whole run, draining and shutdown included.
    pub real_s: f64,
    /// Calls offered per real second during the offering phase.
    pub offered_per_real_s: f64,
    /// Calls answered per real second over the whole run.
    pub answered_per_real_s: f64,
    /// Calls that had to wait for a permit because `max_concurrent_calls` were in flight; their
    /// arrivals were late, so the workload was not the one asked for when this is not zero.
    pub throttled: u64,
    /// All queues together.
    pub all: QueueSummary,
    /// Each queue, in the profile's order.
    pub queues: Vec<QueueSummary>,
    /// Occupancy over the offering phase.
    pub occupancy: Option<f64>,
    /// Informant time by state over the offering phase, simulated seconds.
    pub informant_time_s: StateTimes,
    /// Informant-side totals.
    pub informants: InformantTotals,
    /// OfferCall → Offered, real time, for calls offered while an informant was idle.
    pub routing_latency: Option<Percentiles>,
    /// OfferCall → Connected, real time, for calls offered while an informant was idle.
    pub connect_latency: Option<Percentiles>,
    /// The epsilon used for P(wait>0), real milliseconds.
    pub wait_epsilon_real_ms: f64,
    /// Queueing theory's prediction, for the poisson profile.
    pub erlang: Option<ErlangComparison>,
}

/// What [`Summary::build`] needs besides the records.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// Workload name.
    pub profile: String,
    /// Tenant used.
    pub tenant: String,
    /// Seed.
    pub seed: u64,
    /// Time scale.
    pub scale: TimeScale,
    /// Epsilon for P(wait>0), real time.
    pub wait_epsilon: Duration,
    /// Queue ids in the profile's order.
    pub queue_ids: Vec<String>,
    /// Interrupted by the user.
    pub interrupted: bool,
    /// Real duration of the offering phase.
    pub offering_real: Duration,
    /// Real duration of the run.
    pub total_real: Duration,
    /// Calls throttled by the concurrency limit.
    pub throttled: u64,
    /// Call tasks that had to be aborted (no record).
    pub aborted_calls: u64,
    /// Informant time by state over the offering phase, real seconds.
    pub state_times: StateTimes,
    /// Informant-side totals.
    pub informants: InformantTotals,
    /// The queueing model of the workload and its mean patience, when it has one.
    pub erlang_model: Option<(Mmn, Option<f64>)>,
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn queue_summary<'a>(
    queue_id: &str,
    records: impl Iterator<Item = &'a CallRecord>,
    scale: TimeScale,
    epsilon_real_ms: f64,
) -> QueueSummary {
    let mut calls = CallCounts::default();
    let mut thresholds: Option<Option<f64>> = None;
    let (mut answered_waits, mut abandon_waits) = (Vec::new(), Vec::new());
    let (mut within, mut waited) = (0u64, 0u64);
    for record in records {
        calls.offered += 1;
        calls.transferred += u64::from(record.transferred);
        calls.offer_retries += u64::from(record.offer_retries);
        thresholds = Some(match thresholds {
            None => Some(record.sl_threshold_s),
            Some(Some(seen)) if seen == record.sl_threshold_s => Some(seen),
            Some(_) => None,
        });
        let wait_s = record.waited_real_ms.map(|ms| scale.real_ms_to_sim_s(ms));
        match &record.outcome {
            Outcome::Answered => {
                calls.answered += 1;
                // A connected call always reports its wait; zero is the safe reading if it did not.
                let wait_s = wait_s.unwrap_or(0.0);
                answered_waits.push(wait_s);
                within += u64::from(wait_s <= record.sl_threshold_s);
                waited += u64::from(record.waited_real_ms.unwrap_or(0) as f64 > epsilon_real_ms);
            }
            Outcome::Abandoned => {
                calls.abandoned += 1;
                if let Some(wait_s) = wait_s {
                    abandon_waits.push(wait_s);
                }
            }
            Outcome::Deflected { reason } => {
                calls.deflected += 1;
                *calls.deflected_by_reason.entry(reason.clone()).or_default() += 1;
            }
            Outcome::Failed { reason } => {
                calls.failed += 1;
                *calls.failed_by_reason.entry(reason.clone()).or_default() += 1;
            }
            Outcome::Unresolved => calls.unresolved += 1,
        }
    }
    let resolved = calls.answered + calls.abandoned;
    let mean = |values: &[f64]| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let waits = WaitStats {
        service_level: ratio(within, calls.answered),
        service_level_with_abandons: ratio(within, resolved),
        asa_s: mean(&answered_waits),
        p_wait: ratio(waited, calls.answered),
        p_wait_all: ratio(waited + calls.abandoned, resolved),
        abandonment_rate: ratio(calls.abandoned, resolved),
        max_wait_s: answered_waits.iter().copied().reduce(f64::max),
        mean_abandon_wait_s: mean(&abandon_waits),
    };
    QueueSummary { queue_id: queue_id.to_owned(), sl_threshold_s: thresholds.flatten(), calls, waits }
}

impl Summary {
    /// Draws the summary from the call records and the facts of the run.
    pub fn build(records: &[CallRecord], facts: RunFacts) -> Self {
        let epsilon_real_ms = facts.wait_epsilon.as_secs_f64() * 1000.0;
        let mut all = queue_summary("all", records.iter(), facts.scale, epsilon_real_ms);
        all.calls.offered += facts.aborted_calls;
        all.calls.unresolved += facts.aborted_calls;
        let mut queue_ids = facts.queue_ids.clone();
        // Calls to queues the profile does not list (there should be none) still get their row.
        for record in records {
            if !queue_ids.contains(&record.queue_id) {
                queue_ids.push(record.queue_id.clone());
            }
        }
        let queues = queue_ids
            .iter()
            .map(|id| {
                let records = records.iter().filter(|record| &record.queue_id == id);
                queue_summary(id, records, facts.scale, epsilon_real_ms)
            })
            .collect();
        let idle = || records.iter().filter(|record| record.idle_at_offer);
        let routing_latency = Percentiles::of(idle().filter_map(|record| record.offered_latency).collect());
        let connect_latency = Percentiles::of(idle().filter_map(|record| record.connected_latency).collect());
        let per_second = |count: u64, real: Duration| {
            if real.is_zero() { 0.0 } else { count as f64 / real.as_secs_f64() }
        };
        let times = facts.state_times;
        let factor = facts.scale.factor();
        let informant_time_s = StateTimes {
            available_s: times.available_s * factor,
            reserved_s: times.reserved_s * factor,
            on_call_s: times.on_call_s * factor,
            wrap_up_s: times.wrap_up_s * factor,
            paused_s: times.paused_s * factor,
        };
        let occupancy = times.occupancy();
        let erlang = facts.erlang_model.and_then(|(queue, patience)| compare(&queue, patience, &all, occupancy));
        Self {
            profile: facts.profile,
            tenant: facts.tenant,
            seed: facts.seed,
            time_scale: factor,
            interrupted: facts.interrupted,
            simulated_s: facts.scale.to_sim_s(facts.offering_real),
            offering_real_s: facts.offering_real.as_secs_f64(),
            real_s: facts.total_real.as_secs_f64(),
            offered_per_real_s: per_second(all.calls.offered, facts.offering_real),
            answered_per_real_s: per_second(all.calls.answered, facts.total_real),
            throttled: facts.throttled,
            all,
            queues,
            occupancy,
            informant_time_s,
            informants: facts.informants,
            routing_latency,
            connect_latency,
            wait_epsilon_real_ms: epsilon_real_ms,
            erlang,
        }
    }
}

/// Puts queueing theory's figures beside the measured ones. Only the "all" row is used: the models
/// apply to single-queue workloads.
fn compare(queue: &Mmn, patience: Option<f64>, all: &QueueSummary, occupancy: Option<f64>) -> Option<ErlangComparison> {
    let row = |metric: &str, predicted: f64, measured: Option<f64>| Comparison {
        metric: metric.to_owned(),
        predicted,
        measured,
    };
    let waits = &all.waits;
    let threshold = all.sl_threshold_s.unwrap_or(20.0);
    let (model, figures) = match patience {
        None => {
            let c = ErlangC::predict(queue)?;
            (
                "Erlang C",
                vec![
                    row("P(wait>0)", c.p_wait, waits.p_wait),
                    row("ASA (s)", c.asa, waits.asa_s),
                    row(
                        &format!("service level ({})", format_sim_s(threshold)),
                        c.service_level(queue, threshold),
                        waits.service_level,
                    ),
                    row("occupancy", c.occupancy, occupancy),
                ],
            )
        }
        Some(mean_patience) => {
            let a = ErlangA::predict(queue, mean_patience)?;
            (
                "Erlang A",
                vec![
                    row("P(wait>0), all arrivals", a.p_wait, waits.p_wait_all),
                    row("P(wait>0), answered", a.p_wait_answered, waits.p_wait),
                    row("P(abandon)", a.p_abandon, waits.abandonment_rate),
                    row("ASA (s)", a.asa, waits.asa_s),
                    row("occupancy", a.occupancy, occupancy),
                ],
            )
        }
    };
    Some(ErlangComparison {
        model: model.to_owned(),
        agents: queue.agents,
        load_erlangs: queue.load_erlangs(),
        mean_patience_s: patience,
        figures,
    })
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{:.1}%", value * 100.0))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), format_sim_s)
}

fn reasons(by_reason: &BTreeMap<String, u64>) -> String {
    if by_reason.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    format!(" ({})", parts.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls = &self.all.calls;
        writeln!(
            f,
            "relais-loadgen: profile {}, tenant {}, seed {}, time scale x{}{}",
            self.profile,
            self.tenant,
            self.seed,
            self.time_scale,
            if self.interrupted { ", INTERRUPTED" } else { "" }
        )?;
        writeln!(
            f,
            "  offered for {} simulated ({:.1} s real); whole run {:.1} s real",
            format_sim_s(self.simulated_s),
            self.offering_real_s,
            self.real_s
        )?;
        writeln!(
            f,
            "calls: offered {}  answered {}  abandoned {}  deflected {}{}  failed {}{}  unresolved {}  transferred {}",
            calls.offered,
            calls.answered,
            calls.abandoned,
            calls.deflected,
            reasons(&calls.deflected_by_reason),
            calls.failed,
            reasons(&calls.failed_by_reason),
            calls.unresolved,
            calls.transferred
        )?;
        writeln!(
            f,
            "throughput: {:.2} calls/s offered, {:.2} calls/s answered (real time){}",
            self.offered_per_real_s,
            self.answered_per_real_s,
            if self.throttled > 0 {
                format!("; {} arrivals delayed by --max-concurrent-calls", self.throttled)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "waits (simulated time; SL = answered within threshold / answered, SL+ab = / (answered + abandoned)):"
        )?;
        let width = self.queues.iter().map(|queue| queue.queue_id.chars().count()).max().unwrap_or(0).max(9);
        writeln!(
            f,
            "  {:<width$} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>7} {:>9} {:>8} {:>9}",
            "queue", "offered", "answer", "aband", "defl", "thresh", "SL", "SL+ab", "ASA", "P(w>0)", "max wait"
        )?;
        for queue in self.queues.iter().chain(std::iter::once(&self.all)) {
            let waits = &queue.waits;
            writeln!(
                f,
                "  {:<width$} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>7} {:>9} {:>8} {:>9}",
                queue.queue_id,
                queue.calls.offered,
                queue.calls.answered,
                queue.calls.abandoned,
                queue.calls.deflected,
                seconds(queue.sl_threshold_s),
                percent(waits.service_level),
                percent(waits.service_level_with_abandons),
                seconds(waits.asa_s),
                percent(waits.p_wait),
                seconds(waits.max_wait_s)
            )?;
        }
        writeln!(
            f,
            "  P(w>0): answered calls that waited more than {} ms real ({}); abandonment {}",
            self.wait_epsilon_real_ms,
            format_sim_s(self.wait_epsilon_real_ms / 1000.0 * self.time_scale),
            percent(self.all.waits.abandonment_rate)
        )?;
        let informants = &self.informants;
        writeln!(
            f,
            "informants: {} logged in, {} offers, {} accepted, {} finished, {} errors; occupancy {} (busy / logged in, not paused)",
            informants.logged_in,
            informants.offers,
            informants.accepted,
            informants.finished,
            informants.errors,
            percent(self.occupancy)
        )?;
        writeln!(
            f,
            "failover: {} informant re-logins (member gone), {} OfferCall retries with the same call id",
            informants.relogins, calls.offer_retries
        )?;
        for (name, latency) in [
            ("routing latency (OfferCall→Offered)", &self.routing_latency),
            ("connect latency (OfferCall→Connected)", &self.connect_latency),
        ] {
            match latency {
                Some(p) => writeln!(
                    f,
                    "{name}, idle informant, real: n={} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
                )?,
                None => writeln!(f, "{name}: no call found an idle informant")?,
            }
        }
        if let Some(erlang) = &self.erlang {
            writeln!(
                f,
                "{}: N = {}, A = {:.2} Erlangs{}",
                erlang.model,
                erlang.agents,
                erlang.load_erlangs,
                erlang.mean_patience_s.map(|p| format!(", mean patience {}", format_sim_s(p))).unwrap_or_default()
            )?;
            writeln!(f, "  {:<26} {:>10} {:>10}", "figure", "predicted", "measured")?;
            for figure in &erlang.figures {
                let show = |value: f64| {
                    if figure.metric.ends_with("(s)") { format!("{value:.1}") } else { format!("{value:.4}") }
                };
                writeln!(
                    f,
                    "  {:<26} {:>10} {:>10}",
                    figure.metric,
                    show(figure.predicted),
                    figure.measured.map_or_else(|| "-".to_owned(), show)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(queue: &str, outcome: Outcome, waited_real_ms: Option<u64>) -> CallRecord {
        CallRecord { outcome, waited_real_ms, ..CallRecord::new(queue.to_owned(), 20.0) }
    }

    fn facts(scale: f64) -> RunFacts {
        RunFacts {
            profile: "test".to_owned(),
            tenant: "cai".to_owned(),
            seed: 1,
            scale: TimeScale::new(scale).unwrap(),
            wait_epsilon: Duration::from_millis(10),
            queue_ids: vec!["a".to_owned(), "b".to_owned()],
            interrupted: false,
            offering_real: Duration::from_secs(10),
            total_real: Duration::from_secs(20),
            throttled: 0,
            aborted_calls: 0,
            state_times: StateTimes { available_s: 30.0, on_call_s: 60.0, wrap_up_s: 10.0, ..Default::default() },
            informants: InformantTotals::default(),
            erlang_model: None,
        }
    }

    #[test]
    fn computes_service_levels_waits_and_counts() {
        // Time scale 100: 100 ms real is 10 s simulated, 300 ms real is 30 s.
        let records = vec![
            record("a", Outcome::Answered, Some(0)),
            record("a", Outcome::Answered, Some(100)),
            record("a", Outcome::Answered, Some(300)),
            record("a", Outcome::Abandoned, Some(500)),
            record("b", Outcome::Answered, Some(5)),
            record("b", Outcome::Deflected { reason: "queue_full".to_owned() }, None),
            record("b", Outcome::Deflected { reason: "max_wait".to_owned() }, None),
            record("b", Outcome::Failed { reason: "offer_call: internal".to_owned() }, None),
            CallRecord { offer_retries: 2, ..record("b", Outcome::Unresolved, None) },
        ];
        let summary = Summary::build(&records, facts(100.0));
        let a = &summary.queues[0];
        assert_eq!((a.calls.offered, a.calls.answered, a.calls.abandoned), (4, 3, 1));
        assert_eq!(a.waits.service_level, Some(2.0 / 3.0));
        assert_eq!(a.waits.service_level_with_abandons, Some(2.0 / 4.0));
        assert!((a.waits.asa_s.unwrap() - 40.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.waits.p_wait, Some(2.0 / 3.0));
        assert_eq!(a.waits.p_wait_all, Some(3.0 / 4.0));
        assert_eq!(a.waits.abandonment_rate, Some(0.25));
        assert_eq!(a.waits.max_wait_s, Some(30.0));
        assert_eq!(a.waits.mean_abandon_wait_s, Some(50.0));
        let b = &summary.queues[1];
        assert_eq!(b.calls.deflected, 2);
        assert_eq!(b.calls.deflected_by_reason.get("max_wait"), Some(&1));
        // 5 ms real is below the 10 ms epsilon: not counted as having waited.
        assert_eq!(b.waits.p_wait, Some(0.0));
        let all = &summary.all;
        assert_eq!((all.calls.offered, all.calls.answered, all.calls.failed, all.calls.unresolved), (9, 4, 1, 1));
        assert_eq!(all.sl_threshold_s, Some(20.0));
        assert_eq!((all.calls.offer_retries, summary.queues[1].calls.offer_retries), (2, 2));
        assert_eq!(summary.offered_per_real_s, 0.9);
        assert_eq!(summary.answered_per_real_s, 0.2);
        assert_eq!(summary.occupancy, Some(0.7));
        assert_eq!(summary.simulated_s, 1000.0);
        assert_eq!(summary.informant_time_s.on_call_s, 6000.0);
        // The text form mentions every queue and the totals.
        let text = summary.to_string();
        assert!(text.contains("queue_full 1") && text.contains("max_wait 1"));
        assert!(text.lines().any(|line| line.trim_start().starts_with("all")));
        assert!(text.contains("failover: 0 informant re-logins (member gone), 2 OfferCall retries"), "{text}");
    }

    #[test]
    fn handles_empty_runs() {
        let summary = Summary::build(&[], facts(1.0));
        assert_eq!(summary.all.calls.offered, 0);
        assert_eq!(summary.all.waits, WaitStats::default());
        assert_eq!(summary.routing_latency, None);
        assert!(summary.to_string().contains("no call found an idle informant"));
    }

    #[test]
    fn computes_latency_percentiles_of_idle_calls_only() {
        let mut records: Vec<CallRecord> = (1..=100)
            .map(|ms| CallRecord {
                idle_at_offer: true,
                offered_latency: Some(Duration::from_millis(ms)),
                connected_latency: Some(Duration::from_millis(ms + 1)),
                ..record("a", Outcome::Answered, Some(0))
            })
            .collect();
        records.push(CallRecord {
            idle_at_offer: false,
            offered_latency: Some(Duration::from_secs(60)),
            ..record("a", Outcome::Answered, Some(60_000))
        });
        let summary = Summary::build(&records, facts(1.0));
        let routing = summary.routing_latency.unwrap();
        assert_eq!(routing.count, 100);
        assert_eq!((routing.p50_ms, routing.p90_ms, routing.p99_ms, routing.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(summary.connect_latency.unwrap().max_ms, 101.0);
        assert_eq!(Percentiles::of(vec![Duration::from_millis(7)]).unwrap().p50_ms, 7.0);
    }

    #[test]
    fn compares_with_erlang_c_and_erlang_a() {
        let records = vec![record("a", Outcome::Answered, Some(0))];
        let queue = Mmn { arrival_rate: 8.5 / 300.0, mean_service: 300.0, agents: 10 };
        let mut with_model = facts(1.0);
        with_model.erlang_model = Some((queue, None));
        let summary = Summary::build(&records, with_model.clone());
        let erlang = summary.erlang.unwrap();
        assert_eq!(erlang.model, "Erlang C");
        assert!((erlang.figures[0].predicted - 0.5299).abs() < 1e-4);
        assert_eq!(erlang.figures[0].measured, Some(0.0));
        with_model.erlang_model = Some((queue, Some(120.0)));
        let erlang = Summary::build(&records, with_model).erlang.unwrap();
        assert_eq!(erlang.model, "Erlang A");
        assert!(erlang.figures.iter().any(|figure| figure.metric == "P(abandon)"));
    }

    #[test]
    fn serialises_to_json_and_back() {
        let records = vec![record("a", Outcome::Deflected { reason: "queue_full".to_owned() }, None)];
        let summary = Summary::build(&records, facts(2.0));
        let json = serde_json::to_string(&summary).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
    }
}
