//! Routing decisions in the pure core, with 1,000 queues and 100, 10,000 or
//! 100,000 informants.
//!
//! The question this answers: does the cost of one routing decision stay
//! near-flat as informants grow? Three groups, each parameterised by the
//! number of informants, each reporting decisions per second:
//!
//! - `call_arrives`: a call arrives at a queue whose pool holds available
//!   informants, and `QueueCore::offer_call` proposes it to one of them.
//! - `informant_available`: calls wait in every queue (every informant is busy,
//!   which is why they wait), one informant becomes available, and
//!   `QueueCore::available` proposes it the best waiting call.
//! - `call_arrives_unqualified_longest_idle`: as `call_arrives`, but the
//!   pooled informants below the queue's minimum proficiency are the longest
//!   idle. Under the longest-idle selection this is where a pool drifts when
//!   those informants take no calls elsewhere: the queue never takes them, so
//!   nothing moves them to the back. It shows what `AvailablePool::best_for`
//!   pays for the entries it passes over.
//!
//! Only the decision itself is timed. Each timed batch makes one decision in
//! each of up to 1,000 different queues (so every decision finds its queue as
//! the previous batch left it), then, untimed, puts every queue back as it
//! found it: the caller hangs up and the informant returns to the pool with
//! its former idle time, or the informant refuses the proposal and the call
//! waits again. The cost measured is therefore steady from batch to batch.
//!
//! Going round the queues is deliberate: a node serves many queues, so a
//! decision rarely finds its queue's pool, line and informants in the CPU
//! cache. With 100,000 informants the queues hold hundreds of megabytes, and
//! part of what grows with N is cache misses rather than work.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use relais_routing::call::CallInfo;
use relais_routing::pool::PoolEntry;
use relais_routing::queue::{CallSnapshot, QueueCore, QueueEffect};
use relais_routing::{Millis, QueueConfig, Requirement, SkillSet};

const QUEUES: usize = 1_000;
const INFORMANT_COUNTS: [usize; 3] = [100, 10_000, 100_000];
/// Queue skills per informant: each informant serves this many queues.
const QUEUE_SKILLS_PER_INFORMANT: usize = 4;
/// Calls waiting in each queue in the `informant_available` group.
const WAITING_CALLS_PER_QUEUE: usize = 5;
/// Virtual time between two decisions. Every hang-up adds an outcome to its
/// queue's service history for 15 minutes; a coarse step keeps that history
/// (and the benchmark's memory) small.
const STEP_MS: Millis = 10;
/// When the benchmark's informants logged in; idle times are spread over the
/// hour after it.
const LOGIN_MS: Millis = 1_764_201_600_000;
const START_MS: Millis = LOGIN_MS + 3_600_000;

/// Deterministic pseudo-random numbers (splitmix64), so every run routes the
/// same population.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn queue_id(q: usize) -> String {
    format!("q{q}")
}

/// Each queue requires its own skill, at a minimum of 1, 2 or 3.
fn queue_minimum(q: usize) -> u8 {
    1 + (q % 3) as u8
}

struct Informant {
    id: Arc<str>,
    skills: SkillSet,
    /// Queue index and proficiency in that queue's skill.
    queues: Vec<(usize, u8)>,
    /// When it last became available (it announces the same time to every
    /// queue it serves).
    idle_since_ms: Millis,
}

impl Informant {
    fn qualifies_for(&self, q: usize) -> bool {
        self.queues.iter().any(|&(queue, proficiency)| queue == q && proficiency >= queue_minimum(q))
    }
}

/// `n` informants, each with four distinct queue skills at proficiency 1 to
/// 5 (so some are below a queue's minimum: they belong to the queue, since
/// relaxation may lower the minimum, but cannot take its calls yet), French
/// for all, English for one in five and the listening skill for one in ten.
fn population(n: usize) -> Vec<Informant> {
    let mut draws = Draws(0x5EED_0000 + n as u64);
    (0..n)
        .map(|i| {
            let mut queues: Vec<(usize, u8)> = Vec::with_capacity(QUEUE_SKILLS_PER_INFORMANT);
            while queues.len() < QUEUE_SKILLS_PER_INFORMANT {
                let q = draws.below(QUEUES as u64) as usize;
                if queues.iter().all(|&(other, _)| other != q) {
                    queues.push((q, 1 + draws.below(5) as u8));
                }
            }
            let mut skills: Vec<(String, u8)> = queues.iter().map(|&(q, p)| (queue_id(q), p)).collect();
            skills.push(("lang:fr".into(), 5));
            if draws.below(5) == 0 {
                skills.push(("lang:en".into(), 3));
            }
            if draws.below(10) == 0 {
                skills.push(("ecoute".into(), 3));
            }
            Informant {
                id: format!("inf{i:06}").into(),
                skills: SkillSet::new(skills),
                queues,
                idle_since_ms: LOGIN_MS + draws.below(3_600_000),
            }
        })
        .collect()
}

/// How a queue's pool is ordered when the benchmark starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PoolOrder {
    /// Idle times come from each informant's own history: qualified and
    /// unqualified members are mixed.
    AsAnnounced,
    /// Members below the queue's minimum have been idle since login.
    UnqualifiedLongestIdle,
}

struct World {
    informants: Vec<Informant>,
    by_id: HashMap<Arc<str>, usize>,
    queues: Vec<QueueCore>,
    /// Informants of each queue (they hold its skill).
    members: Vec<Vec<usize>>,
    /// Those of them who meet its minimum: they can take its calls.
    qualified: Vec<Vec<usize>>,
    /// Queues a decision can be made in (they have a qualified member);
    /// decisions go round them in turn.
    targets: Vec<usize>,
    cursor: usize,
    order: PoolOrder,
    now: Millis,
    next_call: u64,
    next_generation: u64,
    pseudonyms: Draws,
    attributes: Arc<BTreeMap<String, String>>,
}

impl World {
    /// 1,000 queues and `n` informants who have joined every queue whose skill
    /// they hold.
    fn new(n: usize, order: PoolOrder) -> Self {
        let informants = population(n);
        let by_id = informants.iter().enumerate().map(|(i, inf)| (inf.id.clone(), i)).collect();
        let mut queues: Vec<QueueCore> = (0..QUEUES)
            .map(|q| {
                let config = QueueConfig::new(queue_id(q), Requirement::new([(queue_id(q), queue_minimum(q))]));
                QueueCore::new(config, "ecoute".into(), LOGIN_MS)
            })
            .collect();
        let mut members = vec![Vec::new(); QUEUES];
        let mut qualified = vec![Vec::new(); QUEUES];
        for (i, informant) in informants.iter().enumerate() {
            for &(q, _) in &informant.queues {
                queues[q].join(informant.id.clone(), informant.skills.clone(), true, LOGIN_MS);
                members[q].push(i);
                if informant.qualifies_for(q) {
                    qualified[q].push(i);
                }
            }
        }
        let targets = (0..QUEUES).filter(|&q| !qualified[q].is_empty()).collect();
        let attributes = Arc::new(BTreeMap::from([
            ("topic_detail".to_string(), "expulsion".to_string()),
            ("region".to_string(), "IDF".to_string()),
        ]));
        World {
            informants,
            by_id,
            queues,
            members,
            qualified,
            targets,
            cursor: 0,
            order,
            now: START_MS,
            next_call: 0,
            next_generation: 1,
            pseudonyms: Draws(0xCA11),
            attributes,
        }
    }

    /// The idle time informant `i` shows queue `q`.
    fn idle_since_ms(&self, i: usize, q: usize) -> Millis {
        let informant = &self.informants[i];
        match self.order {
            PoolOrder::UnqualifiedLongestIdle if !informant.qualifies_for(q) => LOGIN_MS,
            _ => informant.idle_since_ms,
        }
    }

    fn pool_entry(&mut self, i: usize, idle_since_ms: Millis) -> PoolEntry {
        self.next_generation += 1;
        let informant = &self.informants[i];
        PoolEntry {
            informant_id: informant.id.clone(),
            skills: informant.skills.clone(),
            idle_since_ms,
            occupancy_permille: 500,
            generation: self.next_generation,
        }
    }

    /// Every informant announces itself available to each of its queues.
    fn fill_pools(&mut self) {
        for i in 0..self.informants.len() {
            for k in 0..self.informants[i].queues.len() {
                let q = self.informants[i].queues[k].0;
                let entry = self.pool_entry(i, self.idle_since_ms(i, q));
                let fx = self.queues[q].available(entry, self.now);
                assert!(matches!(fx.as_slice(), [QueueEffect::NothingFor { .. }]), "no call waits yet");
            }
        }
    }

    /// Every queue with a qualified member gets a few waiting calls, while
    /// every informant is busy (not in any pool).
    fn fill_lines(&mut self) {
        for k in 0..self.targets.len() {
            let q = self.targets[k];
            for _ in 0..WAITING_CALLS_PER_QUEUE {
                let info = self.call_info();
                let (_, fx) = self.queues[q].offer_call(info, self.now).expect("a new call");
                assert!(!fx.iter().any(|e| matches!(e, QueueEffect::Propose { .. })), "nobody is available");
            }
        }
    }

    /// A call as a gateway would describe it.
    fn call_info(&mut self) -> CallInfo {
        self.next_call += 1;
        self.now += STEP_MS;
        let seq = self.next_call;
        let pseudonym = format!("{:016x}{:016x}", self.pseudonyms.next(), self.pseudonyms.next());
        CallInfo {
            call_id: format!("gw1:20261127:{seq:06}").into(),
            priority: (seq % 4) as u8,
            vulnerable: false,
            language: "fr".into(),
            topic: "logement".into(),
            caller_pseudonym: pseudonym.into(),
            attributes: self.attributes.clone(),
            arrived_ms: self.now,
        }
    }

    /// The next `count` target queues, each at most once.
    fn next_targets(&mut self, count: usize) -> Vec<usize> {
        let picked = (0..count).map(|k| self.targets[(self.cursor + k) % self.targets.len()]).collect();
        self.cursor = (self.cursor + count) % self.targets.len();
        picked
    }

    /// Facts about the target queues, for the report: mean members, pool
    /// size and line length, and the mean number of pooled members ranked
    /// before the first one who can take a call (each of them costs
    /// `AvailablePool::best_for` a step).
    fn describe(&self) -> String {
        let (mut members, mut pooled, mut waiting, mut passed_over) = (0usize, 0usize, 0usize, 0usize);
        for &q in &self.targets {
            members += self.members[q].len();
            pooled += self.queues[q].pool().len();
            waiting += self.queues[q].line().len();
            if self.queues[q].pool().is_empty() {
                continue;
            }
            let mut ranked: Vec<(Millis, &Arc<str>, bool)> = self.members[q]
                .iter()
                .map(|&i| (self.idle_since_ms(i, q), &self.informants[i].id, self.informants[i].qualifies_for(q)))
                .collect();
            ranked.sort();
            passed_over += ranked.iter().take_while(|(_, _, qualifies)| !qualifies).count();
        }
        let per_queue = |total: usize| total as f64 / self.targets.len().max(1) as f64;
        format!(
            "{} target queues; per queue {:.1} members, {:.1} pooled, {:.1} waiting calls, \
             {:.1} pooled members ranked before the first qualified one",
            self.targets.len(),
            per_queue(members),
            per_queue(pooled),
            per_queue(waiting),
            per_queue(passed_over)
        )
    }
}

fn proposal_of(fx: &[QueueEffect]) -> (&Arc<str>, &relais_routing::queue::Proposal) {
    fx.iter()
        .find_map(|e| match e {
            QueueEffect::Propose { informant_id, proposal } => Some((informant_id, proposal)),
            _ => None,
        })
        .expect("the decision proposes a call")
}

/// One iteration: a call arrives at the next target queue and is proposed to
/// the queue's preferred available informant (`offer_call`, which records the
/// call, numbers its first event, estimates its wait and picks the
/// informant). Untimed afterwards: the caller hangs up (the proposal is
/// withdrawn) and the informant announces itself available again with its
/// former idle time, which puts it back at the same place in the pool.
fn call_arrives(world: &mut World, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let batch = (iters - done).min(world.targets.len() as u64) as usize;
        let calls: Vec<(usize, CallInfo, Millis)> = world
            .next_targets(batch)
            .into_iter()
            .map(|q| {
                let info = world.call_info();
                (q, info, world.now)
            })
            .collect();
        let mut decisions: Vec<(usize, Millis, CallSnapshot, Vec<QueueEffect>)> = Vec::with_capacity(batch);
        let start = Instant::now();
        for (q, info, now) in calls {
            let (snapshot, fx) = world.queues[q].offer_call(black_box(info), now).expect("a new call");
            decisions.push((q, now, snapshot, fx));
        }
        timed += start.elapsed();
        for (q, now, snapshot, fx) in black_box(decisions) {
            let (informant_id, _) = proposal_of(&fx);
            let i = world.by_id[informant_id];
            world.queues[q].hang_up(&snapshot.info.call_id, now).expect("the call is live");
            let entry = world.pool_entry(i, world.idle_since_ms(i, q));
            let back = world.queues[q].available(entry, now);
            assert!(matches!(back.as_slice(), [QueueEffect::NothingFor { .. }]), "the line is empty again");
        }
        done += batch as u64;
    }
    timed
}

/// One iteration: an informant who can take the next target queue's calls
/// becomes available there and is proposed the best of the calls waiting
/// (`available`, which walks the line in order and holds the call). Untimed
/// afterwards: the informant refuses the proposal (as it does when another
/// queue's proposal was better), the call waits again, and the informant stays
/// out of the pool, as busy as every other informant.
fn informant_available(world: &mut World, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let batch = (iters - done).min(world.targets.len() as u64) as usize;
        let offers: Vec<(usize, PoolEntry, Millis)> = world
            .next_targets(batch)
            .into_iter()
            .map(|q| {
                world.now += STEP_MS;
                let members = &world.qualified[q];
                let i = members[(world.now / STEP_MS) as usize % members.len()];
                let entry = world.pool_entry(i, world.now);
                (q, entry, world.now)
            })
            .collect();
        let mut decisions: Vec<(usize, Millis, Vec<QueueEffect>)> = Vec::with_capacity(batch);
        let start = Instant::now();
        for (q, entry, now) in offers {
            let fx = world.queues[q].available(black_box(entry), now);
            decisions.push((q, now, fx));
        }
        timed += start.elapsed();
        for (q, now, fx) in black_box(decisions) {
            let (informant_id, proposal) = proposal_of(&fx);
            let again =
                world.queues[q].proposal_answered(&proposal.call.call_id, &proposal.offer_id, informant_id, false, now);
            assert!(again.is_empty(), "nobody else is available for the refused call");
        }
        done += batch as u64;
    }
    timed
}

/// Makes `iters` decisions in a world and returns the time they took.
type Routine = fn(&mut World, u64) -> Duration;

/// Each group: its name, what one iteration does, and how the pools start
/// (`None`: the pools are empty and calls wait instead).
fn routing(c: &mut Criterion) {
    let groups: [(&str, Routine, Option<PoolOrder>); 3] = [
        ("call_arrives", call_arrives, Some(PoolOrder::AsAnnounced)),
        ("informant_available", informant_available, None),
        ("call_arrives_unqualified_longest_idle", call_arrives, Some(PoolOrder::UnqualifiedLongestIdle)),
    ];
    for (name, routine, pools) in groups {
        let mut group = c.benchmark_group(name);
        // Short runs: the machine is shared, and a few seconds per case
        // already give stable figures for a routine this small.
        group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(1));
        for n in INFORMANT_COUNTS {
            // Built on first use, so a filtered run builds only the worlds it
            // measures, and dropped before the next one is built.
            let mut world: Option<World> = None;
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                let world = world.get_or_insert_with(|| {
                    let mut world = World::new(n, pools.unwrap_or(PoolOrder::AsAnnounced));
                    match pools {
                        Some(_) => world.fill_pools(),
                        None => world.fill_lines(),
                    }
                    eprintln!("{name}/{n}: {}", world.describe());
                    world
                });
                b.iter_custom(|iters| routine(world, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
