//! Scenarios: a cluster, a load, and a seeded schedule of faults; running
//! one starts the cluster, plays the workload, injects the faults, writes
//! the history and checks it.
//!
//! The seed decides the arrivals, the calls' queues, priorities and
//! patience, the informants' hold times, the faults' times and which
//! candidate each fault hits; a run replays with the same seed (the
//! cluster's own timing, of course, differs from run to run).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relais_proto::v1 as pb;
use tokio::time::{Instant, sleep, timeout};

use crate::checker::{Verdict, check};
use crate::cluster::{Cluster, Spec};
use crate::history::{self, Event, Recorder};
use crate::net::{Backend, Cut};
use crate::workload::{Load, Targets, Workload};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// kill -9 the owner of a queue with waiting calls; start it again.
    Kill,
    /// SIGSTOP an owner for longer than its lease, then SIGCONT.
    Pause,
    /// Cut an owner from etcd for longer than its lease.
    PartitionEtcd,
    /// Cut an owner from the other nodes (both ways).
    PartitionPeers,
    /// Drop only what the other nodes send to an owner.
    PartitionOneWay,
    /// kill -9 etcd's leader (three etcd members); start it again.
    KillEtcdLeader,
    /// Drain an owner (Admin.Drain), SIGTERM it, start it again.
    Drain,
    /// Drain, SIGTERM and start every node, one by one.
    RollingRestart,
    /// Latency and loss on an owner's link (netem).
    Netem,
    /// Step an owner's wall clock back, past the lease, then forward to
    /// the true time again.
    ClockJump,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::PartitionEtcd => "partition-etcd",
            Self::PartitionPeers => "partition-peers",
            Self::PartitionOneWay => "partition-one-way",
            Self::KillEtcdLeader => "kill-etcd-leader",
            Self::Drain => "drain",
            Self::RollingRestart => "rolling-restart",
            Self::Netem => "netem",
            Self::ClockJump => "clock-jump",
        }
    }

    pub const ALL: [Self; 10] = [
        Self::Kill,
        Self::Pause,
        Self::PartitionEtcd,
        Self::PartitionPeers,
        Self::PartitionOneWay,
        Self::KillEtcdLeader,
        Self::Drain,
        Self::RollingRestart,
        Self::Netem,
        Self::ClockJump,
    ];
}

/// A scenario of the matrix.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub spec: Spec,
    /// Multiple of the CAI-like peak.
    pub multiple: f64,
    /// The faults, in order; the seed draws their times and targets.
    pub faults: Vec<FaultKind>,
    /// Load before the first fault.
    pub warmup: Duration,
    /// Time between the end of a fault and the next one (± a seeded second).
    pub spacing: Duration,
    /// Load after the last fault.
    pub tail: Duration,
    /// The container image the nodes run from; `None`: `relais-node`
    /// processes.
    pub image: Option<String>,
}

/// How many faults each single-kind scenario of the catalog injects: the
/// matrix (the catalog twice, at two loads) must pass 100 faults, and each
/// fault a scenario injects costs seconds where each scenario costs a
/// cluster's start and its warm-up.
pub const FAULTS_PER_KIND: usize = 6;

/// How far a clock jump steps a node's wall clock: more than an offer's
/// time to answer (15 s) and a lease, so that a node that measured time on
/// its wall clock would expire offers and misorder arrivals.
const CLOCK_STEP_S: i64 = 30;

impl Scenario {
    /// A scenario of `count` faults of one kind.
    pub fn of(kind: FaultKind, count: usize, multiple: f64) -> Self {
        let etcd_members = if kind == FaultKind::KillEtcdLeader { 3 } else { 1 };
        Self {
            name: if count == 1 { kind.name().to_string() } else { format!("{}-x{count}", kind.name()) },
            spec: Spec { nodes: 3, etcd_members, lease_ttl_s: 3, fake_clock: kind == FaultKind::ClockJump },
            multiple,
            faults: vec![kind; count],
            warmup: Duration::from_secs(6),
            spacing: Duration::from_secs(4),
            tail: Duration::from_secs(6),
            image: None,
        }
    }

    /// Every named scenario, at 1x the CAI-like peak: each fault kind
    /// injected [`FAULTS_PER_KIND`] times, spaced (a rolling restart
    /// restarts every node once; kinds this machine cannot inject, once),
    /// and a mix of kinds.
    pub fn catalog() -> Vec<Self> {
        let mut all: Vec<Self> = FaultKind::ALL
            .iter()
            .map(|k| match k {
                FaultKind::RollingRestart | FaultKind::Netem => Self::of(*k, 1, 1.0),
                _ => Self { name: k.name().to_string(), ..Self::of(*k, FAULTS_PER_KIND, 1.0) },
            })
            .collect();
        all.push(Self {
            name: "mixed".into(),
            spec: Spec { nodes: 3, etcd_members: 3, lease_ttl_s: 3, fake_clock: false },
            multiple: 1.0,
            faults: vec![
                FaultKind::Kill,
                FaultKind::Pause,
                FaultKind::PartitionEtcd,
                FaultKind::KillEtcdLeader,
                FaultKind::PartitionPeers,
                FaultKind::Drain,
            ],
            warmup: Duration::from_secs(6),
            spacing: Duration::from_secs(4),
            tail: Duration::from_secs(6),
            image: None,
        });
        all
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::catalog().into_iter().find(|s| s.name == name)
    }
}

/// What a run left.
#[derive(Debug)]
pub struct RunResult {
    pub verdict: Verdict,
    pub history: PathBuf,
    pub dir: PathBuf,
    pub backend: Backend,
    pub calls_arrived: u64,
    pub elapsed: Duration,
}

/// Runs `scenario` with `seed`, writing the history and the cluster's logs
/// under `out_dir/<name>-<seed>/`.
pub async fn run(scenario: &Scenario, seed: u64, out_dir: &Path) -> Result<RunResult> {
    let started = Instant::now();
    let dir = out_dir.join(format!("{}-{seed}", scenario.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let recorder = Arc::new(Recorder::new());
    let spec = scenario.spec;
    let cluster = {
        let dir = dir.clone();
        let image = scenario.image.clone();
        tokio::task::spawn_blocking(move || Cluster::start(spec, &dir, image.as_deref())).await??
    };
    recorder.record(Event::Run {
        scenario: scenario.name.clone(),
        seed,
        nodes: spec.nodes,
        etcd_members: spec.etcd_members,
        lease_ttl_s: spec.lease_ttl_s,
        backend: cluster.backend().name().into(),
        multiple: scenario.multiple,
    });
    let backend = cluster.backend();
    let nodes: Vec<(String, String)> = cluster.nodes.iter().map(|n| (n.id.clone(), n.url())).collect();
    let targets = Targets::new(&nodes)?;
    until_members(&targets, spec.nodes).await?;

    let load = Load::cai(scenario.multiple);
    // Bounds: the faults' own time, spacing, warm-up and tail, and margin.
    let budget = scenario.warmup
        + scenario.tail
        + (scenario.spacing + Duration::from_secs(2)) * scenario.faults.len() as u32
        + scenario.faults.iter().map(|k| fault_budget(*k, spec)).sum::<Duration>();
    let give_up_at = Instant::now() + budget + Duration::from_secs(40);
    let workload = Workload::start(recorder.clone(), targets.clone(), load, seed, budget, give_up_at).await?;

    let mut injector = Injector {
        cluster,
        recorder: recorder.clone(),
        targets: targets.clone(),
        rng: StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(7)),
        next_id: 1,
    };
    sleep(scenario.warmup).await;
    for (n, kind) in scenario.faults.iter().enumerate() {
        if n > 0 {
            let jitter = Duration::from_millis(injector.rng.random_range(0..1_000));
            sleep(scenario.spacing + jitter).await;
        }
        injector.inject(*kind).await?;
        // The next fault starts from a whole cluster.
        let _ = until_members(&targets, spec.nodes).await;
    }
    sleep(scenario.tail).await;
    workload.stop_arrivals();
    let calls_arrived = workload.finish(Duration::from_secs(4)).await;

    let records = recorder.finish();
    let history = dir.join("history.jsonl");
    history::write(&history, &records)?;
    let verdict = check(&records);
    let mut cluster = injector.cluster;
    if !verdict.clean() {
        cluster.keep();
    }
    drop(cluster);
    Ok(RunResult { verdict, history, dir, backend, calls_arrived, elapsed: started.elapsed() })
}

/// How long a fault may take, to bound the run.
fn fault_budget(kind: FaultKind, spec: Spec) -> Duration {
    let lease = Duration::from_secs(spec.lease_ttl_s);
    match kind {
        FaultKind::Kill | FaultKind::KillEtcdLeader => Duration::from_secs(8),
        FaultKind::Pause
        | FaultKind::PartitionEtcd
        | FaultKind::PartitionPeers
        | FaultKind::PartitionOneWay
        | FaultKind::Netem
        | FaultKind::ClockJump => lease + Duration::from_secs(6),
        FaultKind::Drain => Duration::from_secs(30),
        FaultKind::RollingRestart => Duration::from_secs(30) * spec.nodes as u32,
    }
}

/// Waits until some node lists `n` members (at most 30 s).
async fn until_members(targets: &Targets, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for i in 0..targets.len() {
            let list = timeout(Duration::from_secs(1), targets.admin(i).list_members(pb::ListRequest {})).await;
            if let Ok(Ok(list)) = list
                && list.into_inner().members.len() == n
            {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the cluster did not gather {n} members in 30 s");
        sleep(Duration::from_millis(200)).await;
    }
}

/// Injects faults into a cluster and records them.
struct Injector {
    cluster: Cluster,
    recorder: Arc<Recorder>,
    targets: Targets,
    rng: StdRng,
    next_id: u32,
}

/// A node's share of the queues: (queue ids, waiting calls).
type Owned = (Vec<String>, u32);

impl Injector {
    /// The queues each running node owns, with their waiting calls.
    async fn owners(&self) -> Vec<Owned> {
        let mut out = Vec::new();
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let mut owned = (Vec::new(), 0);
            if node.running() {
                let request = pb::ListActorsRequest { kind: pb::ActorKind::Queue as i32, counts_only: false };
                if let Ok(Ok(list)) = timeout(Duration::from_secs(2), self.targets.admin(i).list_actors(request)).await
                {
                    for actor in list.into_inner().actors {
                        owned.0.push(actor.id);
                        owned.1 += actor.waiting;
                    }
                }
            }
            out.push(owned);
        }
        out
    }

    /// The node to hit: a seeded pick among the owners of a queue with
    /// waiting calls (waiting up to 5 s for one), else among the owners,
    /// else among all nodes.
    async fn pick(&mut self) -> (usize, Owned) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut owners = self.owners().await;
        while owners.iter().all(|o| o.1 == 0) && Instant::now() < deadline {
            sleep(Duration::from_millis(100)).await;
            owners = self.owners().await;
        }
        let waiting: Vec<usize> = (0..owners.len()).filter(|i| owners[*i].1 > 0).collect();
        let owning: Vec<usize> = (0..owners.len()).filter(|i| !owners[*i].0.is_empty()).collect();
        let all: Vec<usize> = (0..owners.len()).collect();
        let pool = if !waiting.is_empty() {
            waiting
        } else if !owning.is_empty() {
            owning
        } else {
            all
        };
        let i = pool[self.rng.random_range(0..pool.len())];
        (i, owners[i].clone())
    }

    fn record(&mut self, kind: FaultKind, node: Option<usize>, owned: Owned, detail: String) -> u32 {
        let fault_id = self.next_id;
        self.next_id += 1;
        self.recorder.record(Event::Fault {
            fault_id,
            kind: kind.name().into(),
            node: node.map(|i| self.cluster.nodes[i].id.clone()),
            queues: owned.0,
            waiting: owned.1,
            detail,
        });
        fault_id
    }

    fn ended(&self, fault_id: u32, detail: &str) {
        self.recorder.record(Event::FaultEnded { fault_id, detail: detail.into(), moved: Vec::new() });
    }

    fn unsupported(&self, kind: FaultKind, why: String) {
        eprintln!("chaos: {} unsupported: {why}", kind.name());
        self.recorder.record(Event::Unsupported { kind: kind.name().into(), why });
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.cluster.spec.lease_ttl_s)
    }

    async fn inject(&mut self, kind: FaultKind) -> Result<()> {
        let past_lease = self.lease() + Duration::from_secs(2);
        match kind {
            FaultKind::Kill => {
                let (i, owned) = self.pick().await;
                tokio::task::block_in_place(|| self.cluster.kill_node(i));
                let id = self.record(kind, Some(i), owned, "kill -9".into());
                sleep(Duration::from_secs(2)).await;
                tokio::task::block_in_place(|| self.cluster.start_node(i))?;
                self.ended(id, "started again");
            }
            FaultKind::Pause => {
                let (i, owned) = self.pick().await;
                let (stop, cont) = match self.cluster.backend() {
                    Backend::Container => ("docker pause", "docker unpause"),
                    _ => ("SIGSTOP", "SIGCONT"),
                };
                self.cluster.pause_node(i)?;
                let id = self.record(kind, Some(i), owned, format!("{stop} for {past_lease:?}"));
                sleep(past_lease).await;
                self.cluster.resume_node(i)?;
                self.ended(id, cont);
            }
            FaultKind::PartitionEtcd | FaultKind::PartitionPeers | FaultKind::PartitionOneWay => {
                if !self.cluster.backend().isolates_nodes() {
                    self.unsupported(kind, "partitions need network namespaces (run as root)".into());
                    return Ok(());
                }
                let cut = match kind {
                    FaultKind::PartitionEtcd => Cut::FromEtcd,
                    FaultKind::PartitionPeers => Cut::FromPeers,
                    _ => Cut::FromPeersInbound,
                };
                let (i, owned) = self.pick().await;
                self.cluster.cut(i, cut)?;
                let id = self.record(kind, Some(i), owned.clone(), format!("{cut:?} for {past_lease:?}"));
                sleep(past_lease).await;
                // Which of its queues the others took over while it was cut.
                let mut moved: Vec<String> = self
                    .owners()
                    .await
                    .into_iter()
                    .enumerate()
                    .filter(|(n, _)| *n != i)
                    .flat_map(|(_, o)| o.0)
                    .filter(|q| owned.0.contains(q))
                    .collect();
                moved.sort();
                self.cluster.heal(i)?;
                self.recorder.record(Event::FaultEnded { fault_id: id, detail: "healed".into(), moved });
            }
            FaultKind::KillEtcdLeader => {
                if self.cluster.etcd.len() < 3 {
                    self.unsupported(kind, "needs three etcd members".into());
                    return Ok(());
                }
                let leader = self.cluster.etcd_leader().await?;
                self.cluster.kill_etcd(leader);
                let name = self.cluster.etcd[leader].name.clone();
                let id = self.record(kind, None, (Vec::new(), 0), format!("kill -9 {name}"));
                sleep(Duration::from_secs(3)).await;
                tokio::task::block_in_place(|| self.cluster.restart_etcd(leader))?;
                self.ended(id, "started again");
            }
            FaultKind::Drain => {
                let (i, owned) = self.pick().await;
                let id = self.record(kind, Some(i), owned, "drain, SIGTERM, start".into());
                self.restart_drained(i).await?;
                self.ended(id, "started again");
            }
            FaultKind::RollingRestart => {
                for i in 0..self.cluster.nodes.len() {
                    let owned = self.owners().await.swap_remove(i);
                    let id = self.record(kind, Some(i), owned, "drain, SIGTERM, start".into());
                    self.restart_drained(i).await?;
                    self.ended(id, "started again");
                    until_members(&self.targets, self.cluster.nodes.len()).await?;
                }
            }
            FaultKind::Netem => {
                let (i, owned) = self.pick().await;
                match self.cluster.net.netem(i, 200, 10) {
                    Ok(()) => {
                        let id = self.record(kind, Some(i), owned, "netem delay 200ms loss 10%".into());
                        sleep(past_lease).await;
                        self.cluster.net.netem_off(i);
                        self.ended(id, "netem removed");
                    }
                    Err(why) => self.unsupported(kind, format!("{why:#}")),
                }
            }
            FaultKind::ClockJump => {
                let (i, owned) = self.pick().await;
                match self.cluster.step_clock(i, -CLOCK_STEP_S) {
                    Ok(()) => {
                        let detail = format!("wall clock stepped back {CLOCK_STEP_S} s for {past_lease:?}");
                        let id = self.record(kind, Some(i), owned, detail);
                        sleep(past_lease).await;
                        self.cluster.step_clock(i, 0)?;
                        self.ended(id, &format!("wall clock stepped forward {CLOCK_STEP_S} s, to the true time"));
                    }
                    Err(why) => self.unsupported(kind, format!("{why:#}")),
                }
            }
        }
        Ok(())
    }

    /// Drains node `i` until it holds no call and no informant (at most
    /// 20 s), stops it with SIGTERM (killed after 10 s) and starts it again.
    async fn restart_drained(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let drain = timeout(Duration::from_secs(2), self.targets.admin(i).drain(pb::DrainRequest {})).await;
            if let Ok(Ok(left)) = drain {
                let left = left.into_inner();
                if left.live_calls == 0 && left.informants_logged_in == 0 {
                    break;
                }
            }
            if Instant::now() > deadline {
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
        let clean = tokio::task::block_in_place(|| self.cluster.terminate_node(i, Duration::from_secs(10)))?;
        if !clean {
            eprintln!("chaos: {} did not stop within 10 s of SIGTERM; killed", self.cluster.nodes[i].id);
        }
        tokio::task::block_in_place(|| self.cluster.start_node(i)).context("start the drained node again")?;
        Ok(())
    }
}
