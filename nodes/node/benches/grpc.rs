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
//! Then the same on a node that is a one-member cluster in a real etcd: its
//! queue writes every call to etcd before answering (durable calls), so
//! its baselines are also etcd's own put rates, measured in the same run
//! (one client putting in sequence, and 16 at once).
//!
//! Figures are reported as ratios to the baseline because the machines are
//! shared and noisy. Node and benchmark each run one tokio worker thread.
//! Bounded: every phase stops after a fixed number of calls or seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Rate {
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
    Rate { per_second: all.len() as f64 / PHASE.as_secs_f64(), p50: percentile(&all, 0.5), p99: percentile(&all, 0.99) }
}

/// Informants that accept every offer and finish at once, reporting when
/// each offer arrived, when each lifecycle ended, and how many session
/// events they read.
struct Desks {
    offered_at: Arc<Mutex<HashMap<String, Instant>>>,
    finished: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
    events: Arc<AtomicU64>,
}

async fn start_desks(c: &mut Clients) -> Desks {
    let offered_at = Arc::new(Mutex::new(HashMap::new()));
    let finished: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>> = Arc::new(Mutex::new(HashMap::new()));
    let events = Arc::new(AtomicU64::new(0));
    for i in 0..INFORMANTS {
        let id = format!("bench-{i}");
        let mut session = Session::open(c, &id, vec![skill("bench", 3)]).await;
        let mut desk = c.desk.clone();
        let (offered_at, finished, events) = (offered_at.clone(), finished.clone(), events.clone());
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
    Desks { offered_at, finished, events }
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

/// What one node measured.
struct Figures {
    echo_1: Rate,
    echo_16: Rate,
    lifecycle_rate: f64,
    lifecycles: u64,
    events_per_lifecycle: f64,
    lat_p50: Duration,
    lat_p99: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = [("TOKIO_WORKER_THREADS", "1"), ("RUST_LOG", "warn")];
    // Kept until the end: its informants' sessions stay open meanwhile.
    let single_node = NodeProcess::start(&[], &env);
    let single = measure(&single_node).await;
    print_single(&single);

    let etcd = EtcdProcess::start();
    let puts_1 = etcd_puts(&etcd, 1).await;
    let puts_16 = etcd_puts(&etcd, CONCURRENCY).await;
    let node = NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", "bench"], &env);
    let clustered = measure(&node).await;
    print_clustered(&single, &clustered, puts_1, puts_16);
}

async fn measure(node: &NodeProcess) -> Figures {
    let mut c = Clients::new(node, "cai").await;
    let mut q = queue("bench", "bench", 1);
    q.max_waiting = 10_000;
    apply(&mut c, vec![q]).await;
    // In a cluster the queue is hosted a moment after it is created.
    offer_retrying(&mut c, offer("warm-up", "bench")).await;
    c.gateway.hang_up(pb::HangUpRequest { call_id: "warm-up".into() }).await.unwrap();
    let desks = start_desks(&mut c).await;

    let echo_1 = baseline(node, 1).await;
    let echo_16 = baseline(node, CONCURRENCY).await;

    // Routing latency: one call at a time, every informant idle.
    let mut latencies = Vec::with_capacity(LATENCY_PROBES);
    for n in 0..LATENCY_PROBES {
        let call_id = format!("probe-{n}");
        let (done, wait) = oneshot::channel();
        desks.finished.lock().unwrap().insert(call_id.clone(), done);
        let sent = Instant::now();
        c.gateway.offer_call(offer(&call_id, "bench")).await.unwrap();
        wait.await.unwrap();
        let offered = desks.offered_at.lock().unwrap().remove(&call_id).unwrap();
        latencies.push(offered.duration_since(sent));
    }
    latencies.sort();
    let (lat_p50, lat_p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

    // Lifecycles per second at concurrency 16.
    let events_before = desks.events.load(Ordering::Relaxed);
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let mut gateway = c.gateway.clone();
        let (finished, offered_at) = (desks.finished.clone(), desks.offered_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut done_count = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let call_id = format!("load-{worker}-{n}");
                let (done, wait) = oneshot::channel();
                finished.lock().unwrap().insert(call_id.clone(), done);
                gateway.offer_call(offer(&call_id, "bench")).await.unwrap();
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
    let events_per_lifecycle = (desks.events.load(Ordering::Relaxed) - events_before) as f64 / lifecycles as f64;
    Figures { echo_1, echo_16, lifecycle_rate, lifecycles, events_per_lifecycle, lat_p50, lat_p99 }
}

fn print_single(f: &Figures) {
    let Figures { echo_1, echo_16, lifecycle_rate, lifecycles, events_per_lifecycle, lat_p50, lat_p99 } = f;
    let (lifecycle_rate, lat_p50, lat_p99) = (*lifecycle_rate, *lat_p50, *lat_p99);
    let ceiling = echo_16.per_second / 3.0;

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

fn print_clustered(single: &Figures, f: &Figures, puts_1: f64, puts_16: f64) {
    println!("\n## Durable calls: a one-member cluster in a real etcd (same run)\n");
    println!("| measure | value | baseline | ratio |");
    println!("|---|---|---|---|");
    println!("| etcd puts/s (1 KiB), one client in sequence | {puts_1:.0}/s | | |");
    println!("| etcd puts/s (1 KiB), {CONCURRENCY} clients | {puts_16:.0}/s | | |");
    println!(
        "| call lifecycles/s, concurrency {CONCURRENCY} | {:.0}/s | single node {:.0}/s | {:.0} % |",
        f.lifecycle_rate,
        single.lifecycle_rate,
        100.0 * f.lifecycle_rate / single.lifecycle_rate
    );
    println!(
        "| call lifecycles/s against etcd's put rate at concurrency {CONCURRENCY} | {:.0}/s | {puts_16:.0} puts/s | {:.2} lifecycles per put |",
        f.lifecycle_rate,
        f.lifecycle_rate / puts_16
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
