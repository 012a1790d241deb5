//! What the operator watches during a run: a progress bar, or the live view of the demo.
//!
//! * `Bar`: an indicatif progress bar over the simulated duration (or the call count) with running
//!   counts, for long benchmark runs.
//! * `Live`: a block redrawn about once a second with the progress, each queue's waiting calls, service
//!   level, ASA and abandonment from `Admin.GetStats` (converted to simulated time), and informants by
//!   state. In a terminal, indicatif redraws the block in place; otherwise a plain block is printed every
//!   few seconds, so logs stay readable.
//!
//! With several targets (a cluster's members), each member tells of the queues and informants it
//! hosts: the view asks every target and puts their answers together, with the member each queue
//! lives on (`Admin.ListActors`) and how many informants each member hosts, so that a member's failure
//! shows as its queues and informants moving to the others.
//!
//! The view only reads: the call counters below, the board and the nodes' statistics. A failing
//! `GetStats` is shown, never fatal.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relais_proto::v1::{ActorKind, ListActorsRequest, ListActorsResponse, ListRequest, StatsResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::board::{Board, StateCounts};
use crate::client::{Admin, Retry, Targets};
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
    relogins: AtomicU64,
    offer_retries: AtomicU64,
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
    pub relogins: u64,
    pub offer_retries: u64,
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

    pub(crate) fn relogged_in(&self) {
        self.relogins.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn offers_retried(&self, retries: u32) {
        self.offer_retries.fetch_add(u64::from(retries), Ordering::Relaxed);
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
            relogins: self.relogins.load(Ordering::Relaxed),
            offer_retries: self.offer_retries.load(Ordering::Relaxed),
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
    /// Whether the run spreads over several targets: the view then tells which member hosts what.
    pub several_targets: bool,
}

/// What the nodes told the view: their statistics put together and, with several targets, where each
/// queue lives.
#[derive(Debug, Default)]
pub(crate) struct NodesView {
    /// Every queue once (from the first member that told of it), every informant once.
    stats: StatsResponse,
    /// Queue id → the member that hosts it.
    owners: BTreeMap<String, String>,
    /// Members and how many of the tenant's informants each hosts, by node id.
    informants_by_member: BTreeMap<String, u32>,
    /// Targets that did not answer.
    silent: usize,
}

/// Shows progress until `stop` turns true, then clears the bar or block.
pub(crate) async fn show(
    setup: ViewSetup,
    counters: Arc<Counters>,
    board: Arc<Board>,
    admin: Targets<Admin>,
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
                let stats = fetch_view(&admin, setup.retry, setup.several_targets).await;
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

/// Asks every target for its statistics (and, with several, for the queues it hosts), all at once.
async fn fetch_view(admins: &Targets<Admin>, retry: Retry, several: bool) -> Result<NodesView, String> {
    // A stale view is better than a late one: do not wait longer than one refresh.
    let timeout = Duration::from_millis(900);
    let asks = admins.all().map(|admin| async move {
        let mut request = retry.request(ListRequest {});
        request.set_timeout(timeout);
        let stats = admin.clone().get_stats(request).await.map(tonic::Response::into_inner);
        let actors = if several {
            let mut request = retry.request(ListActorsRequest { kind: ActorKind::Queue as i32, counts_only: false });
            request.set_timeout(timeout);
            admin.clone().list_actors(request).await.map(tonic::Response::into_inner).ok()
        } else {
            None
        };
        (stats, actors)
    });
    let answers = futures::future::join_all(asks).await;
    merge_view(answers).map_err(|status| code_name(status.code()))
}

/// Puts the targets' answers together; fails only when no target answered.
fn merge_view(
    answers: Vec<(Result<StatsResponse, tonic::Status>, Option<ListActorsResponse>)>,
) -> Result<NodesView, tonic::Status> {
    let mut view = NodesView::default();
    let mut first_error = None;
    let mut members_seen = HashSet::new();
    let mut queues_seen = HashSet::new();
    let mut informants_seen = HashSet::new();
    let mut answered = 0;
    for (stats, actors) in answers {
        let stats = match stats {
            Ok(stats) => stats,
            Err(status) => {
                view.silent += 1;
                first_error.get_or_insert(status);
                continue;
            }
        };
        if let Some(actors) = &actors {
            // The same member given twice as a target counts once.
            if !members_seen.insert(actors.node_id.clone()) {
                continue;
            }
            view.informants_by_member.insert(actors.node_id.clone(), actors.informants);
            for queue in &actors.actors {
                view.owners.entry(queue.id.clone()).or_insert_with(|| actors.node_id.clone());
            }
        }
        answered += 1;
        view.stats.queues.extend(stats.queues.into_iter().filter(|q| queues_seen.insert(q.queue_id.clone())));
        view.stats
            .informants
            .extend(stats.informants.into_iter().filter(|i| informants_seen.insert(i.informant_id.clone())));
    }
    match first_error {
        Some(status) if answered == 0 => Err(status),
        _ => Ok(view),
    }
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
    view: &Result<NodesView, String>,
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
    if counts.relogins + counts.offer_retries > 0 {
        let _ = writeln!(
            text,
            "failover  informants logged in again {}  offers retried {}",
            counts.relogins, counts.offer_retries
        );
    }
    let width = setup.queue_ids.iter().map(|id| id.chars().count()).max().unwrap_or(0).max(9);
    // With several members, each queue's member, in 7 columns at most.
    let member = |name: &str| {
        if setup.several_targets { format!(" {:<7}", name.chars().take(7).collect::<String>()) } else { String::new() }
    };
    let _ = writeln!(
        text,
        "{:<width$}{} {:>5} {:>5} {:>10} {:>8} {:>8} {:>6} {:>6} {:>7}",
        "queue",
        member("member"),
        "wait",
        "talk",
        "SL/thresh",
        "ASA",
        "longest",
        "aband",
        "occup",
        "free/in"
    );
    match view {
        Ok(view) => {
            let stats = &view.stats;
            let sim = |ms: u64| format_sim_s(setup.scale.real_ms_to_sim_s(ms));
            for id in &setup.queue_ids {
                let owner = member(view.owners.get(id).map_or("?", String::as_str));
                let Some(queue) = stats.queues.iter().find(|queue| &queue.queue_id == id) else {
                    let _ = writeln!(text, "{id:<width$}{owner} (no statistics)");
                    continue;
                };
                let _ = writeln!(
                    text,
                    "{:<width$}{} {:>5} {:>5} {:>10} {:>8} {:>8} {:>6} {:>6} {:>7}",
                    id,
                    owner,
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
            if setup.several_targets {
                let mut line = String::from("informants by member:  ");
                for (member, count) in &view.informants_by_member {
                    let _ = write!(line, " {member} {count}");
                }
                if view.silent > 0 {
                    let _ = write!(line, "  ({} target(s) silent)", view.silent);
                }
                let _ = writeln!(text, "{line}");
            }
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
            several_targets: false,
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
        let view = NodesView { stats, ..Default::default() };
        let text = render(&setup(), Phase::Offering, 3600.0, Duration::from_secs(30), counts, own, &Ok(view));
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
        assert!(!text.contains("failover") && !text.contains("member"), "{text}");
    }

    #[test]
    fn puts_the_members_answers_together_with_where_each_queue_lives() {
        let queue = |id: &str, waiting: u32| QueueStats { queue_id: id.to_owned(), waiting, ..Default::default() };
        let informant = |id: &str| InformantStats { informant_id: id.to_owned(), ..Default::default() };
        let hosts = |node: &str, queues: &[&str], informants: u32| ListActorsResponse {
            node_id: node.to_owned(),
            actors: queues
                .iter()
                .map(|id| relais_proto::v1::HostedActor { id: (*id).to_owned(), ..Default::default() })
                .collect(),
            informants,
            ..Default::default()
        };
        let answers = vec![
            (
                Ok(StatsResponse { queues: vec![queue("justice", 3)], informants: vec![informant("ana")] }),
                Some(hosts("node-1", &["justice"], 1)),
            ),
            (Err(tonic::Status::unavailable("gone")), None),
            (
                Ok(StatsResponse { queues: vec![queue("ecoute", 1)], informants: vec![informant("bob")] }),
                Some(hosts("node-3-long-name", &["ecoute"], 1)),
            ),
            // The same member given twice counts once.
            (
                Ok(StatsResponse { queues: vec![queue("justice", 9)], informants: vec![informant("ana")] }),
                Some(hosts("node-1", &["justice"], 1)),
            ),
        ];
        let view = merge_view(answers).unwrap();
        assert_eq!(view.stats.queues.len(), 2);
        assert_eq!(view.stats.informants.len(), 2);
        assert_eq!(view.silent, 1);
        assert_eq!(view.owners.get("justice").map(String::as_str), Some("node-1"));

        let several = ViewSetup { several_targets: true, ..setup() };
        let counts = CountersSnapshot { offered: 10, relogins: 4, offer_retries: 7, ..Default::default() };
        let text =
            render(&several, Phase::Offering, 60.0, Duration::from_secs(1), counts, StateCounts::default(), &Ok(view));
        assert!(text.lines().all(|line| line.chars().count() <= 80), "{text}");
        assert!(text.contains("failover  informants logged in again 4  offers retried 7"), "{text}");
        let justice = text.lines().find(|line| line.starts_with("justice")).unwrap();
        assert!(justice.starts_with("justice   node-1      3"), "{justice}");
        assert!(text.lines().any(|line| line.starts_with("ecoute    node-3-")), "{text}");
        assert!(text.contains("informants by member:   node-1 1 node-3-long-name 1  (1 target(s) silent)"), "{text}");

        let nobody = merge_view(vec![(Err(tonic::Status::unavailable("gone")), None)]).unwrap_err();
        assert_eq!(nobody.code(), tonic::Code::Unavailable);
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
