//! One run, from routing plan to summary.
//!
//! The run goes through these phases, each bounded in time:
//! 1. **Set-up**: apply the profile's routing plan, log the informants in, open their sessions and wait
//!    (bounded) until each has reported its state.
//! 2. **Offering**: place the arrivals at their real times, at most `max_concurrent_calls` in flight,
//!    until the simulated duration or the call count is reached, or the stop signal comes.
//! 3. **Draining**: no new calls; calls in flight end by themselves, for at most the drain time.
//! 4. **Hurry**: waiting callers hang up and informants finish their calls at once; every call task ends
//!    within the shutdown grace or is aborted and counted as unresolved.
//! 5. **Log-out**: informants log out, within the grace too.
//!
//! **Invariant:** every task the run spawns has ended when [`run_until`] returns.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::board::Board;
use crate::client::Connections;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gateway::{CallContext, CallJob, code_name, place_call};
use crate::informant::{HandleBook, InformantContext, SimulatedInformant, log_in};
use crate::live::{self, Counters, ViewSetup};
use crate::profile::{ArrivalGenerator, Profile};
use crate::summary::{CallRecord, InformantTotals, RunFacts, Summary};

/// Where the run stands; call and informant tasks watch it. Ordered: each phase follows the previous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Offering,
    Draining,
    Hurry,
    LogOut,
}

/// Sleeps until `deadline`, or forever without one (for optional branches of `select!`).
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Logins in flight at once during the set-up.
const LOGIN_CONCURRENCY: usize = 16;
/// Extra time, beyond the tasks' own grace, before tasks are aborted.
const ABORT_MARGIN: Duration = Duration::from_secs(2);

/// Runs the configured workload to its end and returns the summary.
pub async fn run(config: Config) -> Result<Summary> {
    run_until(config, std::future::pending()).await
}

/// Runs the configured workload until its end or until `stop` resolves (e.g. on Ctrl-C), then shuts
/// down cleanly and returns the summary.
pub async fn run_until(config: Config, stop: impl Future<Output = ()>) -> Result<Summary> {
    config.validate()?;
    let profile = Profile::build(config.profile, &config.overrides).map_err(Error::InvalidConfig)?;
    run_profile(config, profile, stop).await
}

/// Runs a given workload (for benchmarks and tests that need their own profile); `config.profile`
/// and `config.overrides` are ignored.
pub async fn run_profile(config: Config, profile: Profile, stop: impl Future<Output = ()>) -> Result<Summary> {
    config.validate()?;
    profile.validate().map_err(Error::InvalidConfig)?;
    let scale = config.scale()?;
    let retry = config.retry;
    let tenant = config.tenant.clone().unwrap_or_else(|| profile.default_tenant.clone());
    let run_started = Instant::now();
    let connections = Connections::new(
        &config.targets,
        &tenant,
        profile.informants.len(),
        config.max_concurrent_calls,
        config.connections,
    )?;
    // A fused future may be polled again after it resolved; Ctrl-C's future may not.
    let stop = stop.fuse();
    tokio::pin!(stop);
    let mut interrupted = false;

    // Set-up: the routing plan.
    if config.apply_plan {
        let plan = profile.routing_plan(scale, config.prune);
        let (applied, _) = retry
            .call_across(&mut connections.admin(), |mut admin| {
                let request = retry.request(plan.clone());
                async move { admin.apply_plan(request).await }
            })
            .await;
        let applied = applied.map_err(|status| Error::ApplyPlan(Box::new(status)))?;
        info!(
            created = applied.created,
            updated = applied.updated,
            deleted = applied.deleted,
            unchanged = applied.unchanged,
            "routing plan applied"
        );
    }

    // Set-up: informants log in, then open their sessions.
    let board = Arc::new(Board::new(&profile));
    let book = Arc::new(HandleBook::default());
    let counters = Arc::new(Counters::default());
    let (phase_sender, phase) = watch::channel(Phase::Offering);
    // By index, with the informant's spec owned: a closure taking a reference would keep the run's
    // future from being `Send` (a limit of the compiler's inference of higher-ranked lifetimes).
    let logins: Vec<_> = futures::stream::iter(0..profile.informants.len())
        .map(|index| {
            let mut targets = connections.informant(index);
            let informant = profile.informants[index].clone();
            async move {
                let result = log_in(&mut targets, retry, &informant).await;
                (index, targets, result)
            }
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .collect()
        .await;
    let mut logged_in = Vec::new();
    let mut first_failure = None;
    for (index, targets, result) in logins {
        match result {
            Ok(()) => logged_in.push((index, targets)),
            Err(status) => {
                let id = &profile.informants[index].id;
                warn!(informant_id = %id, code = ?status.code(), message = status.message(), "login failed");
                first_failure
                    .get_or_insert_with(|| format!("{id}: {}: {}", code_name(status.code()), status.message()));
            }
        }
    }
    if logged_in.is_empty() {
        return Err(Error::NoInformant(first_failure.unwrap_or_else(|| "the profile has no informants".to_owned())));
    }
    logged_in.sort_unstable_by_key(|(index, _)| *index);
    let (ready_sender, mut ready) = mpsc::channel(logged_in.len());
    let informant_context = Arc::new(InformantContext {
        scale,
        retry,
        board: Arc::clone(&board),
        book: Arc::clone(&book),
        phase: phase.clone(),
        handle_by_queue: profile.queues.iter().map(|queue| (queue.id.clone(), queue.handle)).collect::<HashMap<_, _>>(),
        default_handle: profile.queues[0].handle,
        failover: config.failover,
        counters: Arc::clone(&counters),
        logout: config.logout,
        ready: ready_sender,
    });
    let mut informants = JoinSet::new();
    let logged_in_count = logged_in.len();
    for (index, targets) in logged_in {
        let informant = SimulatedInformant::new(
            Arc::clone(&informant_context),
            targets,
            index,
            profile.informants[index].clone(),
            // Each informant draws from its own stream, derived from the seed.
            config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64,
        );
        informants.spawn(informant.run());
    }
    let ready_deadline = Instant::now() + config.ready_timeout;
    let mut sessions_ready = 0;
    while sessions_ready < logged_in_count {
        tokio::select! {
            message = ready.recv() => match message {
                Some(_) => sessions_ready += 1,
                None => break,
            },
            () = sleep_until(ready_deadline) => {
                warn!(ready = sessions_ready, logged_in = logged_in_count, "not every session opened in time; starting anyway");
                break;
            }
            () = &mut stop => {
                interrupted = true;
                break;
            }
        }
    }
    info!(informants = logged_in_count, sessions = sessions_ready, "informants ready");

    // Offering.
    let horizon_s = match (config.duration, config.max_calls) {
        (Some(duration), _) => duration.as_secs_f64(),
        (None, Some(_)) => f64::INFINITY,
        (None, None) => profile.default_duration_s,
    };
    let (view_stop, view_stopped) = watch::channel(false);
    let view = tokio::spawn(live::show(
        ViewSetup {
            mode: config.view,
            scale,
            profile: profile.name.clone(),
            tenant: tenant.clone(),
            start: profile.start,
            duration_s: horizon_s.is_finite().then_some(horizon_s),
            max_calls: config.max_calls,
            queue_ids: profile.queues.iter().map(|queue| queue.id.clone()).collect(),
            retry,
            several_targets: config.targets.len() > 1,
        },
        Arc::clone(&counters),
        Arc::clone(&board),
        connections.admin(),
        phase.clone(),
        view_stopped,
    ));
    let call_context = Arc::new(CallContext {
        scale,
        retry,
        failover: config.failover,
        board: Arc::clone(&board),
        book: Arc::clone(&book),
        counters: Arc::clone(&counters),
        phase: phase.clone(),
        grace: config.shutdown_grace,
    });
    let prefix = config.call_id_prefix.clone().unwrap_or_else(|| {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
        format!("lg{}-{unix_ms:x}", config.seed)
    });
    let permits = Arc::new(Semaphore::new(config.max_concurrent_calls));
    let mut generator = ArrivalGenerator::new(profile.clone(), config.seed);
    let mut calls: JoinSet<CallRecord> = JoinSet::new();
    let mut records = Vec::new();
    let mut lost_calls = 0u64;
    let mut collect = |result: Result<CallRecord, JoinError>, records: &mut Vec<CallRecord>| match result {
        Ok(record) => records.push(record),
        Err(error) => {
            warn!(%error, "a call task did not finish");
            lost_calls += 1;
        }
    };
    let mut throttled = 0u64;
    let mut placed = 0u64;
    let offering_started = Instant::now();
    info!(profile = %profile.name, %tenant, horizon_s, "offering calls");
    while !interrupted {
        if config.max_calls.is_some_and(|max_calls| placed >= max_calls) {
            break;
        }
        let Some(arrival) = generator.next_before(horizon_s) else {
            // No arrival is left before the horizon, but the simulated time still runs to its end, so
            // that the offering phase lasts the duration asked for.
            if horizon_s.is_finite() {
                tokio::select! {
                    () = sleep_until(offering_started + scale.to_real(horizon_s)) => {}
                    () = &mut stop => interrupted = true,
                }
            }
            break;
        };
        tokio::select! {
            biased;
            () = &mut stop => {
                interrupted = true;
                break;
            }
            () = sleep_until(offering_started + scale.to_real(arrival.at_s)) => {}
        }
        // Reap ended calls as we go, so that memory is bounded by the calls in flight.
        while let Some(result) = calls.try_join_next() {
            collect(result, &mut records);
        }
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                throttled += 1;
                tokio::select! {
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed; stop offering if it somehow were.
                        Err(_) => break,
                    },
                    () = &mut stop => {
                        interrupted = true;
                        break;
                    }
                }
            }
        };
        let queue = &profile.queues[arrival.queue];
        let job = CallJob {
            call_id: format!("{prefix}-{:07}", arrival.seq),
            queue_id: queue.id.clone(),
            sl_threshold_s: queue.sl_threshold_s,
            arrival,
        };
        let targets = connections.gateway(job.arrival.seq);
        let context = Arc::clone(&call_context);
        calls.spawn(async move {
            let record = place_call(context, targets, job).await;
            drop(permit);
            record
        });
        placed += 1;
    }
    let offering_real = offering_started.elapsed();
    // Occupancy is measured over the offering phase only: draining would dilute it with idle time.
    let state_times = board.state_times();
    info!(placed, interrupted, "offering ended");

    // Draining.
    if !interrupted {
        let _ = phase_sender.send(Phase::Draining);
        let drain_deadline = Instant::now() + scale.to_real(config.drain.as_secs_f64());
        loop {
            tokio::select! {
                result = calls.join_next() => match result {
                    Some(result) => collect(result, &mut records),
                    None => break,
                },
                () = sleep_until(drain_deadline) => {
                    warn!(in_flight = calls.len(), "calls still in flight at the end of the drain");
                    break;
                }
                () = &mut stop => {
                    interrupted = true;
                    break;
                }
            }
        }
    }

    // Hurry: hang up waiting calls, finish connected ones.
    let _ = phase_sender.send(Phase::Hurry);
    let hurry_deadline = Instant::now() + config.shutdown_grace + ABORT_MARGIN;
    loop {
        tokio::select! {
            result = calls.join_next() => match result {
                Some(result) => collect(result, &mut records),
                None => break,
            },
            () = sleep_until(hurry_deadline) => break,
        }
    }
    let aborted_calls = calls.len() as u64;
    calls.shutdown().await;

    // Log-out.
    let _ = phase_sender.send(Phase::LogOut);
    let logout_deadline = Instant::now() + config.shutdown_grace + ABORT_MARGIN;
    let mut informant_totals = InformantTotals::default();
    loop {
        tokio::select! {
            result = informants.join_next() => match result {
                Some(Ok(report)) => {
                    informant_totals.logged_in += report.logged_in;
                    informant_totals.offers += report.offers;
                    informant_totals.accepted += report.accepted;
                    informant_totals.finished += report.finished;
                    informant_totals.errors += report.errors;
                    informant_totals.relogins += report.relogins;
                }
                Some(Err(error)) => {
                    warn!(%error, "an informant task did not finish");
                    informant_totals.errors += 1;
                }
                None => break,
            },
            () = sleep_until(logout_deadline) => {
                warn!(left = informants.len(), "informants still logging out at the deadline");
                break;
            }
        }
    }
    informant_totals.errors += informants.len() as u64;
    informants.shutdown().await;
    let _ = view_stop.send(true);
    if let Err(error) = view.await {
        warn!(%error, "the progress view did not finish");
    }

    Ok(Summary::build(
        &records,
        RunFacts {
            profile: profile.name.clone(),
            tenant,
            seed: config.seed,
            scale,
            wait_epsilon: config.wait_epsilon,
            queue_ids: profile.queues.iter().map(|queue| queue.id.clone()).collect(),
            interrupted,
            offering_real,
            total_real: run_started.elapsed(),
            throttled,
            aborted_calls: aborted_calls + lost_calls,
            state_times,
            informants: informant_totals,
            erlang_model: profile.erlang_model(),
        },
    ))
}
