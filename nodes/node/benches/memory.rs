//! Memory per idle informant actor and per queued call.
//!
//! The targets: under 4 KiB per idle informant actor and under 2 KiB
//! per queued call. The workspace forbids unsafe code, so there is no counting
//! global allocator here: each figure is the growth of the resident set size
//! (VmRSS in `/proc/self/status`) while a number of objects are created and
//! kept alive, divided by that number. That includes what the allocator keeps
//! around the objects (chunk headers, size-class rounding, free lists, hash
//! tables grown by doubling), which a node really pays, but it is not an exact
//! count of live bytes.
//!
//! Each measurement follows a warm-up that creates (and keeps) objects of the
//! same kind, so that one-off allocations (runtime internals, first table
//! sizes) are not charged to the objects measured:
//! - idle informants with a few skills and no queues, logged in through
//!   `Node::login` as the informant service logs them in: an
//!   `InformantActor` linked to the node's supervisor, registered in the
//!   directory, with no session open;
//! - bare `InformantCore`s logged in to no queue, to show what the actor adds;
//! - calls queued in one `QueueActor`, offered as the gateway service offers
//!   them (claimed in the directory, then `QueueMsg::Offer` with a one-shot
//!   reply), while the actor ticks at the node's default rate;
//! - calls waiting in one bare `QueueCore`;
//! - the same, after every waiting call has moved in line often enough to
//!   fill its event log, the most a waiting call can hold;
//! - bare ractor actors with no state, the floor of any actor: what ractor
//!   and tokio allocate for every actor, before its state.
//!
//! The calls all have the same priority, so that no waiting call moves in
//! line while it is measured: a call that moves records a position event at
//! the next tick, which the last measurement accounts for separately.
//!
//! Everything runs on a current-thread tokio runtime, so every allocation
//! comes from one malloc arena and no worker thread adds its own.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use relais_node::NodeConfig;
use relais_node::actors::queue::{QueueActor, QueueArgs, QueueMsg};
use relais_node::clock::now_ms;
use relais_node::directory::Directory;
use relais_node::node::Node;
use relais_proto::v1 as pb;
use relais_routing::call::{CallEvent, CallInfo};
use relais_routing::informant::{InformantCore, InformantState};
use relais_routing::queue::{CallState, MAX_POSITION_UPDATES, POSITION_UPDATE_MS, QueueCore};
use relais_routing::{EventLog, MAX_PRIORITY, QueueConfig, Requirement, SkillSet};

/// Informants per measurement: enough that a few MiB of noise is under 100
/// bytes per object.
const INFORMANTS: usize = 50_000;
/// Calls per measurement. Fewer than informants because filling a line is
/// quadratic: every arrival counts the calls ahead of it to tell the caller
/// its position (`WaitingLine::position`), so 50,000 calls would take about
/// ten seconds per measurement instead of one or two.
const CALLS: usize = 20_000;
/// Objects created (and kept) before each measurement starts.
const WARM_UP: usize = 1_000;
const INFORMANT_TARGET_BYTES: f64 = 4096.0;
const CALL_TARGET_BYTES: f64 = 2048.0;
/// The node's default queue tick.
const TICK_MS: u64 = 250;
/// Priority of every measured call (see the module documentation).
const PRIORITY: u8 = 2;
const QUEUE_ID: &str = "logement";
/// Slots in each block of a tokio unbounded channel (`BLOCK_CAP` on 64-bit
/// targets), the first of which ractor's mailboxes allocate on creation.
const MAILBOX_BLOCK_SLOTS: usize = 32;

/// Resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Lets every spawned task run until it waits for a message, so that what is
/// measured is idle actors, not actors half-way through starting.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

struct Row {
    what: &'static str,
    count: usize,
    grown_bytes: u64,
    seconds: f64,
    target_bytes: Option<f64>,
}

impl Row {
    fn per_object(&self) -> f64 {
        self.grown_bytes as f64 / self.count as f64
    }
}

/// Runs `create` (which makes `count` objects and keeps them), timing it and
/// measuring how much the resident set grew. A future does nothing until it
/// is awaited, so nothing is created before the first reading.
async fn measure(what: &'static str, count: usize, target_bytes: Option<f64>, create: impl Future<Output = ()>) -> Row {
    settle().await;
    let before = rss_bytes();
    let start = Instant::now();
    create.await;
    settle().await;
    let seconds = start.elapsed().as_secs_f64();
    let grown_bytes = rss_bytes().saturating_sub(before);
    Row { what, count, grown_bytes, seconds, target_bytes }
}

fn informant_id(i: usize) -> Arc<str> {
    format!("inf{i:06}").into()
}

/// A few skills, as a login request carries them.
fn informant_skills(i: usize) -> Vec<(String, u8)> {
    let mut skills = vec![(QUEUE_ID.to_string(), 1 + (i % 5) as u8), ("lang:fr".to_string(), 5)];
    if i.is_multiple_of(5) {
        skills.push(("lang:en".to_string(), 3));
    }
    if i.is_multiple_of(10) {
        skills.push(("ecoute".to_string(), 3));
    }
    skills
}

/// A call as the gateway service builds it: every field is allocated per
/// call, attributes included.
fn call_info(seq: usize, priority: u8) -> CallInfo {
    let pseudonym = format!("{:032x}", (seq as u128 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
    let attributes = BTreeMap::from([
        ("topic_detail".to_string(), "expulsion".to_string()),
        ("region".to_string(), "IDF".to_string()),
    ]);
    CallInfo {
        call_id: format!("gw1:20261127:{seq:06}").into(),
        priority,
        vulnerable: false,
        language: "fr".into(),
        topic: QUEUE_ID.into(),
        caller_pseudonym: pseudonym.into(),
        attributes: Arc::new(attributes),
        arrived_ms: now_ms(),
    }
}

/// A queue that can hold every call: nobody serves it, so they all wait.
fn queue_config() -> QueueConfig {
    let mut config = QueueConfig::new(QUEUE_ID, Requirement::new([(QUEUE_ID, 2)]));
    config.max_waiting = QueueConfig::LIMIT_MAX_WAITING;
    config
}

/// Logs informants in as the informant service does; the node keeps them.
async fn log_in(range: Range<usize>, node: &Node, tenant: &Arc<str>) {
    for i in range {
        let skills: Vec<pb::Skill> = informant_skills(i)
            .into_iter()
            .map(|(name, proficiency)| pb::Skill { name, proficiency: proficiency.into() })
            .collect();
        let reply = node.login(tenant, informant_id(i), &skills).await.expect("log an informant in");
        assert_eq!(reply.snapshot.state, InformantState::Available);
    }
}

/// The least a ractor actor can be: no state, and a message it ignores.
struct BareActor;

impl Actor for BareActor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

async fn spawn_bare(count: usize, kept: &mut Vec<ActorRef<()>>) {
    for _ in 0..count {
        kept.push(Actor::spawn(None, BareActor, ()).await.expect("spawn a bare actor").0);
    }
}

fn new_informant_cores(range: Range<usize>, cores: &mut Vec<InformantCore>) {
    let now = now_ms();
    for i in range {
        let mut core = InformantCore::new(informant_id(i), SkillSet::new(informant_skills(i)), now);
        drop(core.login(Vec::new(), now));
        cores.push(core);
    }
}

/// Offers calls as the gateway service does and checks that each one waits.
async fn offer_calls(range: Range<usize>, queue: &ActorRef<QueueMsg>, tenant: &Arc<str>, directory: &Directory) {
    let queue_id: Arc<str> = QUEUE_ID.into();
    for seq in range {
        let info = call_info(seq, PRIORITY);
        let call_id = info.call_id.clone();
        let (tx, rx) = ractor::concurrency::oneshot();
        let mut sent = false;
        directory
            .claim_call(tenant, &call_id, &queue_id, || {
                sent = queue.cast(QueueMsg::Offer { info, reply: tx.into(), trace: Default::default() }).is_ok();
            })
            .expect("a new call id");
        assert!(sent, "the queue actor is running");
        let snapshot = rx.await.expect("the queue answers").expect("the queue takes the call");
        assert_eq!(snapshot.state, CallState::Queued);
    }
}

fn offer_to_core(range: Range<usize>, core: &mut QueueCore) {
    for seq in range {
        let (snapshot, fx) = core.offer_call(call_info(seq, PRIORITY), now_ms()).expect("a new call");
        assert_eq!(snapshot.state, CallState::Queued);
        drop(fx);
    }
}

/// Moves every waiting call in line until its event log is full: a more
/// urgent call arrives ahead of them all, the next tick tells each caller
/// its new position, then that call is hung up and the tick after tells
/// them again. Each round adds two events to every waiting call.
fn fill_event_logs(core: &mut QueueCore, first_seq: usize) {
    // Each round moves every waiting call back and forth by one place; the
    // clock steps past the minimum interval between position updates, so
    // each round records one update per call until the per-call limit.
    let rounds = EventLog::MAX_EVENTS / 2;
    let mut now = now_ms();
    for round in 0..rounds {
        let urgent = call_info(first_seq + round, MAX_PRIORITY);
        let call_id = urgent.call_id.clone();
        now += POSITION_UPDATE_MS;
        drop(core.offer_call(urgent, now).expect("a new call"));
        drop(core.tick(now, false));
        now += POSITION_UPDATE_MS;
        drop(core.hang_up(&call_id, now).expect("the urgent call waits"));
        drop(core.tick(now, false));
    }
}

async fn run() -> Vec<Row> {
    let config = NodeConfig::default();
    let tenant: Arc<str> = config.tenants[0].as_str().into();
    let bound = config.listen;
    let node = Node::start(config, bound, Default::default()).await.expect("start a node");
    let mut rows = Vec::new();

    log_in(0..WARM_UP, &node, &tenant).await;
    rows.push(
        measure(
            "idle informant (InformantActor, its supervision link, directory entry)",
            INFORMANTS,
            Some(INFORMANT_TARGET_BYTES),
            log_in(WARM_UP..WARM_UP + INFORMANTS, &node, &tenant),
        )
        .await,
    );

    let mut cores = Vec::new();
    new_informant_cores(0..WARM_UP, &mut cores);
    rows.push(
        measure("InformantCore alone", INFORMANTS, None, async {
            cores.reserve(INFORMANTS);
            new_informant_cores(WARM_UP..WARM_UP + INFORMANTS, &mut cores);
        })
        .await,
    );

    let directory = Arc::new(Directory::new(1000, 60_000));

    let args = QueueArgs {
        tenant: tenant.clone(),
        config: queue_config(),
        listening_skill: "ecoute".into(),
        directory: directory.clone(),
        tick_ms: TICK_MS,
        durability: None,
        restored: Vec::new(),
    };
    let (queue, _) = Actor::spawn(None, QueueActor, args).await.expect("spawn the queue actor");
    directory.register_queue(&tenant, &QUEUE_ID.into(), queue.clone());
    offer_calls(0..WARM_UP, &queue, &tenant, &directory).await;
    rows.push(
        measure(
            "queued call in a QueueActor (+ directory entry)",
            CALLS,
            Some(CALL_TARGET_BYTES),
            offer_calls(WARM_UP..WARM_UP + CALLS, &queue, &tenant, &directory),
        )
        .await,
    );

    let mut core = QueueCore::new(queue_config(), "ecoute".into(), now_ms());
    offer_to_core(0..WARM_UP, &mut core);
    rows.push(
        measure("waiting call in a QueueCore alone", CALLS, None, async {
            offer_to_core(WARM_UP..WARM_UP + CALLS, &mut core)
        })
        .await,
    );

    let mut full = QueueCore::new(queue_config(), "ecoute".into(), now_ms());
    offer_to_core(0..WARM_UP, &mut full);
    rows.push(
        measure("waiting call in a QueueCore alone, after every position update", CALLS, None, async {
            offer_to_core(WARM_UP..WARM_UP + CALLS, &mut full);
            fill_event_logs(&mut full, WARM_UP + CALLS);
        })
        .await,
    );
    let last = full.line().iter().last().and_then(|(_, entry)| full.call(&entry.call_id)).expect("calls wait");
    // One Queued event on arrival, then the most position updates a call gets.
    assert_eq!(last.events.len(), 1 + MAX_POSITION_UPDATES as usize, "the last call's log holds every update");

    // Last: the memory freed while so many actors start would be reused by,
    // and lower the figures of, any objects measured after them.
    let mut bare = Vec::with_capacity(WARM_UP + INFORMANTS);
    spawn_bare(WARM_UP, &mut bare).await;
    rows.push(measure("bare ractor actor (state `()`)", INFORMANTS, None, spawn_bare(INFORMANTS, &mut bare)).await);

    rows
}

fn print_table(rows: &[Row]) {
    println!("| object | count | RSS growth (MiB) | bytes per object | target | within target | time (s) |");
    println!("|---|---:|---:|---:|---:|---|---:|");
    for row in rows {
        let (target, within) = match row.target_bytes {
            Some(t) => (format!("< {t:.0}"), if row.per_object() < t { "yes" } else { "NO" }),
            None => ("—".to_string(), "—"),
        };
        println!(
            "| {} | {} | {:.1} | {:.0} | {} | {} | {:.1} |",
            row.what,
            row.count,
            row.grown_bytes as f64 / (1024.0 * 1024.0),
            row.per_object(),
            target,
            within,
            row.seconds
        );
    }
    let difference = |a: usize, b: usize| rows[a].per_object() - rows[b].per_object();
    let supervision_event = std::mem::size_of::<ractor::SupervisionEvent>();
    println!();
    println!(
        "- A bare ractor actor with no state costs {:.0} bytes, the floor of one actor per informant: each of \
         its two unbounded mailboxes allocates a first block of {MAILBOX_BLOCK_SLOTS} slots when it is created \
         ({MAILBOX_BLOCK_SLOTS} supervision events of {supervision_event} bytes: {} bytes), plus the mailboxes' \
         channels, its task, its boxed message loop and its cell.",
        rows[5].per_object(),
        MAILBOX_BLOCK_SLOTS * supervision_event,
    );
    println!(
        "- An idle informant costs {:.0} bytes more than a bare actor: its {}-byte state (the core's {} bytes \
         and the actor's own fields), held inline in the actor's task, makes the task one 128-byte step bigger; \
         the core's heap (its id and skills), its supervision link and its directory entry add the rest. The core \
         alone measures {:.0} bytes.",
        difference(0, 5),
        std::mem::size_of::<relais_node::actors::informant::InformantState>(),
        std::mem::size_of::<InformantCore>(),
        rows[1].per_object(),
    );
    println!(
        "- Through the actor a queued call costs {:.0} bytes more than in the bare core: its directory entry, \
         and allocator slack from the per-offer reply channel and effects.",
        difference(2, 3)
    );
    println!(
        "- A full event log adds {:.0} bytes per waiting call ({} events of {} bytes, in a vector that doubles): \
         a call that moves in line at many ticks grows towards that bound.",
        difference(4, 3),
        EventLog::MAX_EVENTS - 4,
        std::mem::size_of::<CallEvent>()
    );
    println!(
        "- Figures are resident-set growth, so they include allocator slack (chunk headers, size-class rounding, \
         free lists) and hash tables grown by doubling: expect a few hundred bytes of variation with the counts."
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build a tokio runtime");
    let rows = runtime.block_on(run());
    print_table(&rows);
    // Fifty thousand actors need not be stopped one by one: the process ends.
    std::process::exit(0);
}
