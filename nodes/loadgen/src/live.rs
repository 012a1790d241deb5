//! What the operator watches during a run: a progress bar, or the live view of the demo.
//!
//! * `Bar`: an indicatif progress bar over the simulated duration (or the call count) with running
//!   counts, for long benchmark runs.
//! * `Live`: a block redrawn about once a second with the progress, each queue's waiting calls, service
//!   level, ASA and abandonment from `Admin.GetStats` (converted to simulated time), and informants by
//!   state. In a terminal, indicatif redraws the block in place; otherwise a plain block is printed every
//!   few seconds, so logs stay readable.
//!
//! The view only reads: the call counters below, the board and the node's statistics. A failing
//! `GetStats` is shown, never fatal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relais_proto::v1::{ListRequest, StatsResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::board::{Board, StateCounts};
use crate::client::{Admin, Retry};
use crate::gateway::code_name;
use crate::sim::Phase;
use crate::summary::Outcome;
use crate::units::{TimeScale, WeekTime, format_sim_s};

/// How the run shows its progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewMode {
    /// Nothing until the summary.
    #[default]
    Quiet,
    /// A progress bar.
    Bar,
    /// The live view.
    Live,
}

/// Running call counts, updated by call tasks.
#[derive(Default)]
pub(crate) struct Counters {
    offered: AtomicU64,
    answered: AtomicU64,
    abandoned: AtomicU64,
    deflected: AtomicU64,
    failed: AtomicU64,
    ended: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CountersSnapshot {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub deflected: u64,
    pub failed: u64,
    pub in_flight: u64,
}

impl Counters {
    pub(crate) fn call_started(&self) {
        self.offered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_connected(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_ended(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Abandoned => Some(&self.abandoned),
            Outcome::Deflected { .. } => Some(&self.deflected),
            Outcome::Failed { .. } | Outcome::Unresolved => Some(&self.failed),
            // Answered calls were counted when they connected.
            Outcome::Answered => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let offered = self.offered.load(Ordering::Relaxed);
        CountersSnapshot {
            offered,
            answered: self.answered.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            deflected: self.deflected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: offered.saturating_sub(self.ended.load(Ordering::Relaxed)),
        }
    }
}

/// What the view needs to know about the run.
pub(crate) struct ViewSetup {
    pub mode: ViewMode,
    pub scale: TimeScale,
    pub profile: String,
    pub tenant: String,
    pub start: WeekTime,
    /// Simulated length of the offering phase, if bounded in time.
    pub duration_s: Option<f64>,
    /// Number of calls to offer, if bounded in count.
    pub max_calls: Option<u64>,
    /// The profile's queue ids, in order.
    pub queue_ids: Vec<String>,
    pub retry: Retry,
}

/// Shows progress until `stop` turns true, then clears the bar or block.
pub(crate) async fn show(
    setup: ViewSetup,
    counters: Arc<Counters>,
    board: Arc<Board>,
    admin: Admin,
    phase: watch::Receiver<Phase>,
    mut stop: watch::Receiver<bool>,
) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let bar = match setup.mode {
        ViewMode::Quiet => return,
        ViewMode::Bar => {
            let (length, template) = match (setup.max_calls, setup.duration_s) {
                (Some(calls), _) => (calls, "{elapsed_precise} [{bar:40}] {pos}/{len} calls {msg}"),
                (None, Some(duration_s)) => (duration_s.ceil() as u64, "{elapsed_precise} [{bar:40}] {percent}% {msg}"),
                (None, None) => (0, "{elapsed_precise} {msg}"),
            };
            let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        }
        ViewMode::Live => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{msg}") {
                bar.set_style(style);
            }
            bar
        }
    };
    let period = if setup.mode == ViewMode::Live { Duration::from_secs(1) } else { Duration::from_millis(250) };
    // Without a terminal the live block is printed rather than redrawn, so less often.
    let plain_every = 5;
    let mut ticks = 0u64;
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        ticks += 1;
        let counts = counters.snapshot();
        let elapsed_s = setup.scale.to_sim_s(started.elapsed());
        match setup.mode {
            ViewMode::Quiet => {}
            ViewMode::Bar => {
                let position = if setup.max_calls.is_some() { counts.offered } else { elapsed_s as u64 };
                bar.set_position(position);
                bar.set_message(format!(
                    "sim {}  answered {}  abandoned {}  deflected {}  in flight {}",
                    format_sim_s(elapsed_s),
                    counts.answered,
                    counts.abandoned,
                    counts.deflected,
                    counts.in_flight
                ));
            }
            ViewMode::Live => {
                let stats = fetch_stats(&admin, setup.retry).await;
                let text =
                    render(&setup, *phase.borrow(), elapsed_s, started.elapsed(), counts, board.counts(), &stats);
                if terminal {
                    bar.set_message(text);
                } else if ticks % plain_every == 1 {
                    eprintln!("{text}\n");
                }
            }
        }
    }
    bar.finish_and_clear();
}

async fn fetch_stats(admin: &Admin, retry: Retry) -> Result<StatsResponse, String> {
    let mut admin = admin.clone();
    let mut request = retry.request(ListRequest {});
    // A stale view is better than a late one: do not wait longer than one refresh.
    request.set_timeout(Duration::from_millis(900));
    admin.get_stats(request).await.map(tonic::Response::into_inner).map_err(|status| code_name(status.code()))
}

fn percent(value: f64) -> String {
    format!("{:.0}%", value * 100.0)
}

/// The live block, as text, at most 80 columns wide with the built-in profiles' queue names.
fn render(
    setup: &ViewSetup,
    phase: Phase,
    elapsed_s: f64,
    real: Duration,
    counts: CountersSnapshot,
    own: StateCounts,
    stats: &Result<StatsResponse, String>,
) -> String {
    let mut text = String::new();
    let progress = match (setup.max_calls, setup.duration_s) {
        (Some(calls), _) => format!("{}/{} calls", counts.offered, calls),
        (None, Some(duration_s)) => format!(
            "{} of {} ({:.0}%)",
            format_sim_s(elapsed_s.min(duration_s)),
            format_sim_s(duration_s),
            100.0 * (elapsed_s / duration_s).min(1.0)
        ),
        (None, None) => format_sim_s(elapsed_s),
    };
    let phase = match phase {
        Phase::Offering => "offering",
        Phase::Draining => "draining",
        Phase::Hurry | Phase::LogOut => "stopping",
    };
    let _ = writeln!(
        text,
        "relais-loadgen  {} @ {}  x{}  {}  real {:.0}s",
        setup.profile,
        setup.tenant,
        setup.scale.factor(),
        phase,
        real.as_secs_f64()
    );
    let _ = writeln!(text, "simulated {}  {}", setup.start.plus(elapsed_s), progress);
    let _ = writeln!(
        text,
        "calls  offered {}  answered {}  abandoned {}  deflected {}  failed {}  live {}",
        counts.offered, counts.answered, counts.abandoned, counts.deflected, counts.failed, counts.in_flight
    );
    let width = setup.queue_ids.iter().map(|id| id.chars().count()).max().unwrap_or(0).max(9);
    let _ = writeln!(
        text,
        "{:<width$} {:>5} {:>5} {:>10} {:>8} {:>8} {:>6} {:>6} {:>7}",
        "queue", "wait", "talk", "SL/thresh", "ASA", "longest", "aband", "occup", "free/in"
    );
    match stats {
        Ok(stats) => {
            let sim = |ms: u64| format_sim_s(setup.scale.real_ms_to_sim_s(ms));
            for id in &setup.queue_ids {
                let Some(queue) = stats.queues.iter().find(|queue| &queue.queue_id == id) else {
                    let _ = writeln!(text, "{id:<width$} (no statistics)");
                    continue;
                };
                let _ = writeln!(
                    text,
                    "{:<width$} {:>5} {:>5} {:>10} {:>8} {:>8} {:>6} {:>6} {:>7}",
                    id,
                    queue.waiting,
                    queue.connected,
                    format!("{}/{}", percent(queue.service_level), sim(queue.service_level_threshold_ms)),
                    sim(queue.asa_ms),
                    sim(queue.longest_wait_ms),
                    percent(queue.abandonment_rate),
                    percent(queue.occupancy),
                    format!("{}/{}", queue.informants_available, queue.informants_logged_in)
                );
            }
            let mut node = StateCounts::default();
            for informant in &stats.informants {
                node.add(informant.state());
            }
            // The node lists the tenant's logged-in informants, those of other runs included.
            let _ = writeln!(text, "informants, node:       {}", state_line(node, false));
        }
        Err(code) => {
            let _ = writeln!(text, "(node statistics unavailable: {code})");
        }
    }
    let _ = write!(text, "informants, simulator:  {}", state_line(own, true));
    text
}

fn state_line(counts: StateCounts, with_offline: bool) -> String {
    let mut line = format!(
        "available {}  reserved {}  on call {}  wrap-up {}  paused {}",
        counts.available, counts.reserved, counts.on_call, counts.wrap_up, counts.paused
    );
    if with_offline && counts.offline > 0 {
        let _ = write!(line, "  offline {}", counts.offline);
    }
    line
}

#[cfg(test)]
mod tests {
    use relais_proto::v1::{InformantState, InformantStats, QueueStats};

    use super::*;

    fn setup() -> ViewSetup {
        ViewSetup {
            mode: ViewMode::Live,
            scale: TimeScale::new(120.0).unwrap(),
            profile: "cai".to_owned(),
            tenant: "cai".to_owned(),
            start: WeekTime(9.0 * 3600.0),
            duration_s: Some(7200.0),
            max_calls: None,
            queue_ids: vec!["justice".to_owned(), "ecoute".to_owned()],
            retry: Retry::default(),
        }
    }

    #[test]
    fn renders_queues_in_simulated_time_and_informants_by_state() {
        let stats = StatsResponse {
            queues: vec![QueueStats {
                queue_id: "justice".to_owned(),
                waiting: 3,
                service_level: 0.82,
                service_level_threshold_ms: 167,
                asa_ms: 100,
                abandonment_rate: 0.05,
                ..Default::default()
            }],
            informants: vec![
                InformantStats { state: InformantState::OnCall as i32, ..Default::default() },
                InformantStats { state: InformantState::Available as i32, ..Default::default() },
            ],
        };
        let counts = CountersSnapshot { offered: 10, answered: 7, in_flight: 3, ..Default::default() };
        let own = StateCounts { available: 1, on_call: 1, ..Default::default() };
        let text = render(&setup(), Phase::Offering, 3600.0, Duration::from_secs(30), counts, own, &Ok(stats));
        assert!(text.contains("mon 10:00"), "{text}");
        assert!(text.contains("1h00m00s of 2h00m00s (50%)"), "{text}");
        assert!(text.lines().all(|line| line.chars().count() <= 80), "{text}");
        let justice = text.lines().find(|line| line.starts_with("justice")).unwrap();
        // 100 ms real at x120 is 12 s simulated; 167 ms is 20 s.
        assert!(justice.contains("12.0s") && justice.contains("82%/20.0s"), "{justice}");
        assert!(text.contains("ecoute    (no statistics)"), "{text}");
        assert!(text.contains("informants, node:       available 1  reserved 0  on call 1"), "{text}");
        let failed =
            render(&setup(), Phase::Draining, 0.0, Duration::ZERO, counts, own, &Err("unavailable".to_owned()));
        assert!(failed.contains("node statistics unavailable: unavailable"));
        assert!(failed.contains("draining"));
    }

    #[test]
    fn counts_calls_in_flight() {
        let counters = Counters::default();
        counters.call_started();
        counters.call_started();
        counters.call_connected();
        counters.call_ended(&Outcome::Answered);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.offered, snapshot.answered, snapshot.in_flight), (2, 1, 1));
    }
}
