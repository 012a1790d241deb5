//! End-to-end benchmark over gRPC against a real `relais-node` process.
//!
//! Measured in one run, on the same node process and the same connection:
//! - the baseline: a bare unary round trip (the gRPC health check, served by
//!   tonic with no relais code on its path), at concurrency 1 and 16;
//! - routing latency: from `OfferCall` sent to the `Offer` event received on
//!   an idle informant's session, one call at a time;
//! - call lifecycles per second at concurrency 16: `OfferCall`, the offer on
//!   the session, `AcceptOffer`, `FinishCall` (three unary calls and one
//!   stream message per lifecycle: the replies tell the informant's new
//!   states, so the session carries only the offer). The session events
//!   actually read per lifecycle are counted and reported.
//!
//! Then the floor (see `floor/mod.rs`): the same clients and phases against
//! a server of the same API that does nothing but keep one line, so that
//! what the node's own work costs reads as its share of the floor's rate.
//! `-- single` stops there. `-- instructions` runs the node and the floor
//! under callgrind instead and counts their instructions per bare round
//! trip and per lifecycle: deterministic (the same to a few tenths of a
//! percent from run to run) where times move with the machine.
//!
//! Then the same on a node that is a one-member cluster in a real etcd: its
//! queue writes every call to etcd before answering (durable calls), so
//! its baselines are also etcd's own put rates, measured in the same run
//! (one client putting in sequence, and 16 at once), and etcd's writes per
//! lifecycle are counted (its revision moves once per write). Last, a
//! three-member cluster on the same machine: three queues, one per member,
//! calls sent round-robin through the three members, informants logged in
//! through the first (spread over the members by placement).
//!
//! Figures are reported as ratios to the baseline because the machines are
//! shared and noisy. Node and benchmark each run one tokio worker thread.
//! Bounded: every phase stops after a fixed number of calls or seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod floor;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::*;
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const INFORMANTS: usize = 32;
const PHASE: Duration = Duration::from_secs(5);
const LATENCY_PROBES: usize = 2_000;
const CONCURRENCY: usize = 16;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Tells on stderr where the run is, for whoever attaches a profiler to a
/// server for one phase.
fn phase(name: &str) {
    eprintln!("grpc bench: {name}");
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Rate {
    calls: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Health checks at `concurrency` for `PHASE`.
async fn baseline(node: &NodeProcess, concurrency: usize) -> Rate {
    let health = HealthClient::new(node.channel().await);
    let deadline = Instant::now() + PHASE;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut health = health.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
                samples.push(start.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    Rate {
        calls: all.len(),
        per_second: all.len() as f64 / PHASE.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

/// Informants that accept every offer and finish at once, reporting when
/// each offer arrived, when each lifecycle ended, and how many session
/// events they read.
struct Desks {
    offered_at: Arc<Mutex<HashMap<String, Instant>>>,
    finished: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
    events: Arc<AtomicU64>,
}

impl Desks {
    fn new() -> Self {
        Self {
            offered_at: Arc::new(Mutex::new(HashMap::new())),
            finished: Arc::new(Mutex::new(HashMap::new())),
            events: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Logs `ids` in through `c` with one skill, as desks that take every call.
async fn start_desks(desks: &Desks, c: &mut Clients, ids: Vec<String>, skill_name: &str) {
    for id in ids {
        let mut session = Session::open(c, &id, vec![skill(skill_name, 3)]).await;
        let mut desk = c.desk.clone();
        let (offered_at, finished, events) = (desks.offered_at.clone(), desks.finished.clone(), desks.events.clone());
        tokio::spawn(async move {
            loop {
                let before = session.last_sequence;
                let (offer_id, call_id) = session.next_offer_forever().await;
                // Sequences have no gap, so their difference counts the events read.
                let read = session.last_sequence.unwrap() - before.unwrap_or(0);
                events.fetch_add(read, Ordering::Relaxed);
                offered_at.lock().unwrap().insert(call_id.clone(), Instant::now());
                let reply = pb::OfferReply { informant_id: id.clone(), offer_id };
                if desk.accept_offer(reply).await.is_err() {
                    continue;
                }
                desk.finish_call(pb::FinishCallRequest { informant_id: id.clone(), call_id: call_id.clone() })
                    .await
                    .unwrap();
                if let Some(done) = finished.lock().unwrap().remove(&call_id) {
                    let _ = done.send(());
                }
            }
        });
    }
}

/// etcd puts of a 1 KiB value (about a call's record) per second, by
/// `concurrency` clients, for `PHASE`.
async fn etcd_puts(etcd: &EtcdProcess, concurrency: usize) -> f64 {
    let client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                client.put(format!("/bench/{worker}/{}", n % 64), vec![7u8; 1024], None).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut puts = 0;
    for t in tasks {
        puts += t.await.unwrap();
    }
    puts as f64 / started.elapsed().as_secs_f64()
}

/// etcd's current revision: it moves once per write (put, delete or
/// transaction that changes something).
async fn etcd_revision(etcd: &EtcdProcess) -> i64 {
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    client.get("/bench/revision", None).await.unwrap().header().unwrap().revision()
}

/// Counts the keys relais writes in etcd (each put or delete of a key is
/// one watch event), until the task is aborted.
async fn count_key_writes(etcd: &EtcdProcess) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let (_watcher, mut stream) =
        client.watch("/relais/", Some(etcd_client::WatchOptions::new().with_prefix())).await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let task = tokio::spawn(async move {
        let _watcher = _watcher;
        while let Ok(Some(response)) = stream.message().await {
            counted.fetch_add(response.events().len() as u64, Ordering::Relaxed);
        }
    });
    (count, task)
}

/// The node and the floor, each under callgrind in turn: user-space
/// instructions per bare round trip and per lifecycle.
async fn count_instructions(env: &[(&str, &str)]) {
    let node_args = ["--listen", "127.0.0.1:0", "--tick-ms", "50"];
    let (mut command, dir) =
        Callgrind::command("node", std::path::Path::new(env!("CARGO_BIN_EXE_relais-node")), &node_args);
    command.envs(env.iter().copied());
    let node = NodeProcess::launch(command);
    let counter = Callgrind { pid: node.pid(), dir };
    let single = measure(&[&node], None, Some(&counter)).await;
    drop(node);
    let this = std::env::current_exe().expect("this benchmark");
    let (command, dir) = Callgrind::command("floor", &this, &[floor::ARG]);
    let floor_server = NodeProcess::launch(command);
    let counter = Callgrind { pid: floor_server.pid(), dir };
    let floor = measure_floor(&floor_server, Some(&counter)).await;
    let (Some(n), Some(f)) = (&single.instructions, &floor.instructions) else { unreachable!("counted") };
    println!("## Instructions (callgrind; user space, every thread of the server)\n");
    println!("| measure | node | floor | node ÷ floor |");
    println!("|---|---:|---:|---:|");
    println!(
        "| per bare round trip, concurrency {CONCURRENCY} | {:.0} | {:.0} | {:.2} |",
        n.per_echo,
        f.per_echo,
        n.per_echo / f.per_echo
    );
    println!(
        "| per call lifecycle, concurrency {CONCURRENCY} | {:.0} | {:.0} | {:.2} |",
        n.per_lifecycle,
        f.per_lifecycle,
        n.per_lifecycle / f.per_lifecycle
    );
    println!(
        "| per call lifecycle, in bare round trips (were time to follow instructions, the 60 % target would be 5) | {:.2} | {:.2} | |",
        n.per_lifecycle / n.per_echo,
        f.per_lifecycle / f.per_echo
    );
    println!(
        "\n({} and {} bare round trips, {} and {} lifecycles counted; times under callgrind mean nothing.)",
        single.echo_16.calls, floor.echo_16.calls, single.lifecycles, floor.lifecycles
    );
}

/// What one node measured.
struct Figures {
    echo_1: Rate,
    echo_16: Rate,
    lifecycle_rate: f64,
    lifecycles: u64,
    events_per_lifecycle: f64,
    lat_p50: Duration,
    lat_p99: Duration,
    /// etcd key writes (puts and deletes) and transactions per lifecycle
    /// in the throughput phase (in a cluster).
    writes_per_lifecycle: Option<f64>,
    txns_per_lifecycle: Option<f64>,
    /// Concurrent callers in the throughput phase.
    callers: usize,
    /// Counted under callgrind (`-- instructions`).
    instructions: Option<Instructions>,
}

/// The unary calls of one lifecycle: `OfferCall`, `AcceptOffer`,
/// `FinishCall`.
const UNARY_CALLS_PER_LIFECYCLE: f64 = 3.0;

impl Figures {
    /// The lifecycles per second that bare round trips allow: echo calls
    /// per second divided by the unary calls one lifecycle needs.
    fn ceiling(&self) -> f64 {
        self.echo_16.per_second / UNARY_CALLS_PER_LIFECYCLE
    }
}

/// A server's user-space instructions (all its threads), counted by
/// callgrind: deterministic where times are not, but blind to the kernel.
struct Instructions {
    per_echo: f64,
    per_lifecycle: f64,
}

/// A server running under `valgrind --tool=callgrind`, whose counters the
/// benchmark zeroes and dumps around a phase.
struct Callgrind {
    pid: u32,
    dir: std::path::PathBuf,
}

/// Its dumps go with it.
impl Drop for Callgrind {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Callgrind {
    /// `program args` under callgrind, its counts written in a fresh
    /// folder named after `name`.
    fn command(name: &str, program: &std::path::Path, args: &[&str]) -> (std::process::Command, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("relais-callgrind-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("callgrind folder");
        let mut command = std::process::Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}/out.%p", dir.display()))
            .arg(program)
            .args(args);
        (command, dir)
    }

    fn zero(&self) {
        self.control("-z");
    }

    /// Dumps the counts since the last zero and returns their total.
    fn dump(&self) -> u64 {
        let before = self.dumps();
        self.control("-d");
        let dumps = self.dumps();
        let dump = dumps.iter().find(|d| !before.contains(d)).expect("a new callgrind dump");
        let text = std::fs::read_to_string(dump).expect("callgrind dump");
        text.lines().find_map(|l| l.strip_prefix("totals: ")).and_then(|t| t.trim().parse().ok()).expect("totals")
    }

    fn dumps(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&self.dir).expect("callgrind folder").filter_map(|e| e.ok().map(|e| e.path())).collect()
    }

    fn control(&self, command: &str) {
        let status = std::process::Command::new("callgrind_control")
            .args([command, &self.pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("callgrind_control (valgrind) is installed");
        assert!(status.success(), "callgrind_control {command} failed");
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(floor::ARG) {
        floor::serve();
        return;
    }
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(bench());
}

async fn bench() {
    let env = [("TOKIO_WORKER_THREADS", "1"), ("RUST_LOG", "warn")];
    // `cargo bench -p relais-node --bench grpc -- instructions` counts
    // instructions instead of timing.
    if std::env::args().skip(1).any(|arg| arg == "instructions") {
        return count_instructions(&env).await;
    }
    // Kept until the end: its informants' sessions stay open meanwhile.
    let single_node = NodeProcess::start(&[], &env);
    let single = measure(&[&single_node], None, None).await;
    print_single(&single);
    let floor_server = NodeProcess::launch({
        let mut command = std::process::Command::new(std::env::current_exe().expect("this benchmark"));
        command.arg(floor::ARG);
        command
    });
    let floor = measure_floor(&floor_server, None).await;
    print_floor(&single, &floor);
    drop(floor_server);
    // `cargo bench -p relais-node --bench grpc -- single` stops here.
    if std::env::args().skip(1).any(|arg| arg == "single") {
        return;
    }

    let etcd = EtcdProcess::start();
    let puts_1 = etcd_puts(&etcd, 1).await;
    let puts_16 = etcd_puts(&etcd, CONCURRENCY).await;
    let node = NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", "bench"], &env);
    let clustered = measure(&[&node], Some(&etcd), None).await;
    print_clustered("a one-member cluster", &single, &clustered, puts_1, puts_16);

    // Three members in a fresh etcd.
    let etcd = EtcdProcess::start();
    let members: Vec<NodeProcess> =
        MEMBERS.iter().map(|id| NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", id], &env)).collect();
    for m in &members {
        until_members(m, MEMBERS.len()).await;
    }
    let three = measure(&members.iter().collect::<Vec<_>>(), Some(&etcd), None).await;
    print_clustered("three members", &single, &three, puts_1, puts_16);
}

/// The three members' node ids.
const MEMBERS: [&str; 3] = ["bench-a", "bench-b", "bench-c"];

/// The first `n` names from `prefix-0` on that placement gives the
/// member `m` of `nodes` (any name on one node).
fn placed_on(
    kind: relais_node::cluster::placement::ActorKind,
    prefix: &str,
    nodes: usize,
    m: usize,
    n: usize,
) -> Vec<String> {
    use relais_node::cluster::placement::{actor_key, owner};
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|id| nodes == 1 || owner(MEMBERS, &actor_key(kind, "cai", id)) == Some(MEMBERS[m]))
        .take(n)
        .collect()
}

async fn measure(nodes: &[&NodeProcess], etcd: Option<&EtcdProcess>, counter: Option<&Callgrind>) -> Figures {
    let mut all: Vec<Clients> = Vec::new();
    for node in nodes {
        all.push(Clients::new(node, "cai").await);
    }
    // One queue per member, with its own skill, served by informants that
    // placement puts on that member and that log in through it; gateways
    // send each call to its queue's member. Each member routes on its own,
    // and they share etcd.
    use relais_node::cluster::placement::ActorKind;
    let queues: Vec<String> =
        (0..nodes.len()).map(|m| placed_on(ActorKind::Queue, "bench", nodes.len(), m, 1).remove(0)).collect();
    let configs = queues
        .iter()
        .map(|id| {
            let mut q = queue(id, id, 1);
            q.max_waiting = 10_000;
            q
        })
        .collect();
    apply(&mut all[0], configs).await;
    // In a cluster a queue is hosted a moment after it is created.
    for (q, c) in queues.iter().zip(all.iter_mut()) {
        let warm = format!("warm-up-{q}");
        offer_retrying(c, offer(&warm, q)).await;
        c.gateway.hang_up(pb::HangUpRequest { call_id: warm }).await.unwrap();
    }
    phases(nodes, etcd, &queues, all, counter).await
}

/// The floor's figures: the same phases with the same clients, against the
/// floor server (one line, no queue to configure).
async fn measure_floor(server: &NodeProcess, counter: Option<&Callgrind>) -> Figures {
    let all = vec![Clients::new(server, "cai").await];
    phases(&[server], None, &["floor".to_string()], all, counter).await
}

/// Logs the desks in, then measures: the bare round trip, the routing
/// latency, and lifecycles per second.
async fn phases(
    nodes: &[&NodeProcess],
    etcd: Option<&EtcdProcess>,
    queues: &[String],
    mut all: Vec<Clients>,
    counter: Option<&Callgrind>,
) -> Figures {
    use relais_node::cluster::placement::ActorKind;
    let desks = Desks::new();
    for (m, (q, c)) in queues.iter().zip(all.iter_mut()).enumerate() {
        let ids = placed_on(ActorKind::Informant, &format!("desk-{q}"), nodes.len(), m, INFORMANTS / nodes.len());
        start_desks(&desks, c, ids, q).await;
    }
    let gateways: Vec<_> = all.iter().map(|c| c.gateway.clone()).collect();

    phase("bare round trips");
    let echo_1 = baseline(nodes[0], 1).await;
    counter.map(Callgrind::zero);
    let echo_16 = baseline(nodes[0], CONCURRENCY).await;
    let echo_instructions = counter.map(Callgrind::dump);
    let echo_calls = echo_16.calls;

    phase("routing latency");
    // Routing latency: one call at a time, every informant idle.
    let mut latencies = Vec::with_capacity(LATENCY_PROBES);
    for n in 0..LATENCY_PROBES {
        let call_id = format!("probe-{n}");
        let (done, wait) = oneshot::channel();
        desks.finished.lock().unwrap().insert(call_id.clone(), done);
        let member = n % queues.len();
        let mut gateway = gateways[member].clone();
        let sent = Instant::now();
        gateway.offer_call(offer(&call_id, &queues[member])).await.unwrap();
        wait.await.unwrap();
        let offered = desks.offered_at.lock().unwrap().remove(&call_id).unwrap();
        latencies.push(offered.duration_since(sent));
    }
    latencies.sort();
    let (lat_p50, lat_p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

    phase("lifecycles");
    // Lifecycles per second at concurrency 16.
    let events_before = desks.events.load(Ordering::Relaxed);
    let revision_before = match etcd {
        Some(etcd) => etcd_revision(etcd).await,
        None => 0,
    };
    let key_writes = match etcd {
        Some(etcd) => Some(count_key_writes(etcd).await),
        None => None,
    };
    counter.map(Callgrind::zero);
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Callers per queue: 16 (on three members, 48 callers in all).
    let callers = CONCURRENCY * nodes.len();
    for worker in 0..callers {
        // Round-robin over the members and their queues.
        let mut gateway = gateways[worker % gateways.len()].clone();
        let queue = queues[worker % queues.len()].clone();
        let (finished, offered_at) = (desks.finished.clone(), desks.offered_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut done_count = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let call_id = format!("load-{worker}-{n}");
                let (done, wait) = oneshot::channel();
                finished.lock().unwrap().insert(call_id.clone(), done);
                gateway.offer_call(offer(&call_id, &queue)).await.unwrap();
                wait.await.unwrap();
                offered_at.lock().unwrap().remove(&call_id);
                done_count += 1;
            }
            done_count
        }));
    }
    let mut lifecycles = 0u64;
    for t in tasks {
        lifecycles += t.await.unwrap();
    }
    let lifecycle_rate = lifecycles as f64 / started.elapsed().as_secs_f64();
    let lifecycle_instructions = counter.map(Callgrind::dump);
    phase(&format!("lifecycles done: {lifecycles}"));
    let events_per_lifecycle = (desks.events.load(Ordering::Relaxed) - events_before) as f64 / lifecycles as f64;
    let txns_per_lifecycle = match etcd {
        Some(etcd) => Some((etcd_revision(etcd).await - revision_before) as f64 / lifecycles as f64),
        None => None,
    };
    // The watch's last events arrive a moment after the writes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writes_per_lifecycle = key_writes.map(|(count, task)| {
        task.abort();
        count.load(Ordering::Relaxed) as f64 / lifecycles as f64
    });
    Figures {
        echo_1,
        echo_16,
        lifecycle_rate,
        lifecycles,
        events_per_lifecycle,
        lat_p50,
        lat_p99,
        writes_per_lifecycle,
        txns_per_lifecycle,
        callers,
        instructions: echo_instructions.zip(lifecycle_instructions).map(|(echo, lifecycle)| Instructions {
            per_echo: echo as f64 / echo_calls as f64,
            per_lifecycle: lifecycle as f64 / lifecycles as f64,
        }),
    }
}

fn print_single(f: &Figures) {
    let Figures { echo_1, echo_16, lifecycle_rate, lifecycles, events_per_lifecycle, lat_p50, lat_p99, .. } = f;
    let (lifecycle_rate, lat_p50, lat_p99) = (*lifecycle_rate, *lat_p50, *lat_p99);
    let ceiling = f.ceiling();

    println!("## End-to-end over gRPC (one node process, 1 worker thread each side)\n");
    println!("| measure | value | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| bare round trip (health check), concurrency 1 | {:.0}/s, p50 {:.0} µs, p99 {:.0} µs | | | |",
        echo_1.per_second,
        us(echo_1.p50),
        us(echo_1.p99)
    );
    println!(
        "| bare round trip (health check), concurrency {CONCURRENCY} | {:.0}/s, p50 {:.0} µs, p99 {:.0} µs | | | |",
        echo_16.per_second,
        us(echo_16.p50),
        us(echo_16.p99)
    );
    println!(
        "| call lifecycles/s, concurrency {CONCURRENCY} (3 unary calls each) | {lifecycle_rate:.0}/s | ceiling {ceiling:.0}/s (echo/3) | {:.0} % | ≥ 60 % |",
        100.0 * lifecycle_rate / ceiling
    );
    println!(
        "| routing latency p50, offer → offered (idle informants) | {:.0} µs | echo p50 {:.0} µs | {:.2} round trips | |",
        us(lat_p50),
        us(echo_1.p50),
        lat_p50.as_secs_f64() / echo_1.p50.as_secs_f64()
    );
    println!(
        "| routing latency p99, offer → offered (idle informants) | {:.0} µs | echo p50 {:.0} µs | {:.2} round trips | < 3 |",
        us(lat_p99),
        us(echo_1.p50),
        lat_p99.as_secs_f64() / echo_1.p50.as_secs_f64()
    );
    println!(
        "| routing latency p99 against the echo's own p99 | {:.0} µs | echo p99 {:.0} µs | {:.2} round trips | < 3 |",
        us(lat_p99),
        us(echo_1.p99),
        lat_p99.as_secs_f64() / echo_1.p99.as_secs_f64()
    );
    println!(
        "\n({LATENCY_PROBES} latency probes; {lifecycles} lifecycles in the throughput phase, \
         {events_per_lifecycle:.2} session events read per lifecycle; {INFORMANTS} informants.)"
    );
}

/// The node's figures against the floor's: the same lifecycle on the same
/// transport with no routing behind it, in the same run.
fn print_floor(single: &Figures, floor: &Figures) {
    let share = |f: &Figures| f.lifecycle_rate / f.ceiling();
    println!("\n## Against the floor: the same API with no routing behind it (same run)\n");
    println!("| measure | node | floor | node against floor |");
    println!("|---|---|---|---|");
    println!(
        "| bare round trip (health check), concurrency {CONCURRENCY} | {:.0}/s | {:.0}/s | |",
        single.echo_16.per_second, floor.echo_16.per_second
    );
    println!(
        "| call lifecycles/s, concurrency {CONCURRENCY} | {:.0}/s | {:.0}/s | {:.0} % |",
        single.lifecycle_rate,
        floor.lifecycle_rate,
        100.0 * single.lifecycle_rate / floor.lifecycle_rate
    );
    println!(
        "| … as a share of the ceiling echo/3 (target ≥ 60 %) | {:.0} % | {:.0} % | |",
        100.0 * share(single),
        100.0 * share(floor)
    );
    println!(
        "| routing latency p50 / p99, offer → offered | {:.0} / {:.0} µs | {:.0} / {:.0} µs | |",
        us(single.lat_p50),
        us(single.lat_p99),
        us(floor.lat_p50),
        us(floor.lat_p99)
    );
    println!(
        "\n(The floor read {:.2} session events per lifecycle; {} lifecycles.)",
        floor.events_per_lifecycle, floor.lifecycles
    );
}

fn print_clustered(what: &str, single: &Figures, f: &Figures, puts_1: f64, puts_16: f64) {
    println!("\n## Durable calls: {what} in a real etcd (same run)\n");
    println!("| measure | value | baseline | ratio |");
    println!("|---|---|---|---|");
    println!("| etcd puts/s (1 KiB), one client in sequence | {puts_1:.0}/s | | |");
    println!("| etcd puts/s (1 KiB), {CONCURRENCY} clients | {puts_16:.0}/s | | |");
    println!(
        "| call lifecycles/s, {} callers ({CONCURRENCY} per queue) | {:.0}/s | single node {:.0}/s | {:.0} % |",
        f.callers,
        f.lifecycle_rate,
        single.lifecycle_rate,
        100.0 * f.lifecycle_rate / single.lifecycle_rate
    );
    println!(
        "| call lifecycles/s against etcd's put rate ({CONCURRENCY} clients) | {:.0}/s | {puts_16:.0} puts/s | {:.2} lifecycles per put |",
        f.lifecycle_rate,
        f.lifecycle_rate / puts_16
    );
    let writes = f.writes_per_lifecycle.unwrap_or(f64::NAN);
    let etcd_bound = puts_16 / writes;
    println!("| etcd key writes (puts, deletes) per lifecycle | {writes:.2} | | |");
    println!(
        "| etcd transactions per lifecycle (revisions / lifecycles) | {:.2} | | |",
        f.txns_per_lifecycle.unwrap_or(f64::NAN)
    );
    println!(
        "| call lifecycles/s against etcd's bound (puts/s ÷ writes per lifecycle) | {:.0}/s | {etcd_bound:.0}/s | {:.0} % (target ≥ 50 %) |",
        f.lifecycle_rate,
        100.0 * f.lifecycle_rate / etcd_bound
    );
    println!(
        "| routing latency p50, offer → offered | {:.0} µs | etcd put p50 ≈ {:.0} µs (1 / sequential rate) | {:.2} puts |",
        us(f.lat_p50),
        1e6 / puts_1,
        f.lat_p50.as_secs_f64() * puts_1
    );
    println!(
        "| routing latency p99, offer → offered | {:.0} µs | echo p50 {:.0} µs | {:.2} round trips |",
        us(f.lat_p99),
        us(f.echo_1.p50),
        f.lat_p99.as_secs_f64() / f.echo_1.p50.as_secs_f64()
    );
    println!(
        "\n({LATENCY_PROBES} latency probes; {} lifecycles in the throughput phase, {:.2} session events read per lifecycle.)",
        f.lifecycles, f.events_per_lifecycle
    );
}
