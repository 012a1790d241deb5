//! The run's configuration: the typed [`Config`] the library takes, and the command line ([`Args`])
//! that builds one.
//!
//! Every flag can also come from a `RELAIS_LOADGEN_*` environment variable. Durations marked
//! "simulated" are divided by the time scale before anything real waits on them; the others are real.
//! The defaults run the CAI demo: `relais-loadgen --live` plays two simulated hours of a Monday
//! morning in about a minute against a node on 127.0.0.1:50051.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::client::Retry;
use crate::error::{Error, Result};
use crate::live::ViewMode;
use crate::profile::{HandleDist, ProfileKind, ProfileOverrides};
use crate::units::{TimeScale, WeekTime, parse_duration};

/// Everything a run needs. [`Config::default`] matches the command line's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The nodes' gRPC addresses, e.g. `http://127.0.0.1:50051`: one node, or several members of a
    /// cluster, over which informants and calls are spread in turn.
    pub targets: Vec<String>,
    /// Tenant to act for; `None` uses the profile's (`cai` for cai and poisson, `sos` for sos).
    pub tenant: Option<String>,
    /// The workload.
    pub profile: ProfileKind,
    /// Changes to the workload.
    pub overrides: ProfileOverrides,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Simulated length of the offering phase; `None` with no `max_calls` uses the profile's default.
    pub duration: Option<Duration>,
    /// Stop offering after this many calls.
    pub max_calls: Option<u64>,
    /// Seed of every random draw of the workload.
    pub seed: u64,
    /// Calls in flight at most; further arrivals wait (and are counted as throttled).
    pub max_concurrent_calls: usize,
    /// HTTP/2 connections to open; `None` sizes them from the informants and `max_concurrent_calls`.
    pub connections: Option<usize>,
    /// Simulated time allowed after the last arrival for the calls in flight to end by themselves.
    pub drain: Duration,
    /// Real time allowed for calls to end and informants to log out once the shutdown begins.
    pub shutdown_grace: Duration,
    /// Real waits up to this are not counted as waiting in P(wait>0).
    pub wait_epsilon: Duration,
    /// Apply the profile's routing plan before starting.
    pub apply_plan: bool,
    /// Let the plan delete the tenant's queues and profiles it does not name.
    pub prune: bool,
    /// Log informants out at the end.
    pub logout: bool,
    /// How to show progress.
    pub view: ViewMode,
    /// Bounds on requests.
    pub retry: Retry,
    /// Bounds on getting through a member's failure: an informant logging in again, a call offered
    /// again, a call's event stream watched again, each through the next target.
    pub failover: Retry,
    /// Prefix of call ids; `None` derives a unique one from the seed and the clock, because call ids are
    /// idempotency keys and a replayed id would return the earlier run's call.
    pub call_id_prefix: Option<String>,
    /// Real time to wait for every informant's first session snapshot before offering calls.
    pub ready_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            targets: vec!["http://127.0.0.1:50051".to_owned()],
            tenant: None,
            profile: ProfileKind::Cai,
            overrides: ProfileOverrides::default(),
            time_scale: 120.0,
            duration: None,
            max_calls: None,
            seed: 1,
            max_concurrent_calls: 1000,
            connections: None,
            drain: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(5),
            wait_epsilon: Duration::from_millis(10),
            apply_plan: true,
            prune: false,
            logout: true,
            view: ViewMode::Quiet,
            retry: Retry::default(),
            failover: Retry::failover(),
            call_id_prefix: None,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The time scale, checked.
    pub fn scale(&self) -> Result<TimeScale> {
        TimeScale::new(self.time_scale)
            .ok_or_else(|| Error::InvalidConfig(format!("time scale {} must be positive", self.time_scale)))
    }

    /// Checks the configuration once, before anything starts.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfig(message));
        self.scale()?;
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return invalid(format!("1 to {MAX_TARGETS} targets"));
        }
        if self.max_concurrent_calls == 0 {
            return invalid("max concurrent calls must be at least 1".to_owned());
        }
        if self.connections == Some(0) {
            return invalid("connections must be at least 1".to_owned());
        }
        if self.max_calls == Some(0) {
            return invalid("calls must be at least 1".to_owned());
        }
        if self.duration.is_some_and(|duration| duration.is_zero()) {
            return invalid("duration must be positive".to_owned());
        }
        if self.retry.attempts == 0 || self.failover.attempts == 0 {
            return invalid("retries must allow at least one attempt".to_owned());
        }
        if let Some(prefix) = &self.call_id_prefix
            && (prefix.is_empty()
                || prefix.len() > 100
                || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)))
        {
            return invalid(format!("call id prefix `{prefix}`: 1 to 100 characters of [a-zA-Z0-9_.:-]"));
        }
        if let Some(rate) = self.overrides.rate_per_hour
            && !(rate.is_finite() && rate >= 0.0)
        {
            return invalid(format!("rate {rate} must be a non-negative number"));
        }
        if let Some(cv) = self.overrides.handle_cv
            && !(cv.is_finite() && cv > 0.0)
        {
            return invalid(format!("handle-time cv {cv} must be positive"));
        }
        if self.overrides.aht.is_some_and(|aht| aht.is_zero()) {
            return invalid("mean handle time must be positive".to_owned());
        }
        if self.overrides.informants == Some(0) {
            return invalid("informants must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Most targets a run spreads its clients over.
pub const MAX_TARGETS: usize = 64;

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// `none`, `off` or `0` disable patience; anything else is a duration.
fn patience_arg(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "none" | "off" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

fn week_time_arg(text: &str) -> Result<WeekTime, String> {
    WeekTime::parse(text)
}

/// Load generator and simulator for relais: plays a telephony gateway and informants over gRPC.
///
/// Durations take units (`250ms`, `90s`, `5m`, `2h`, `1h30m`); "simulated" ones are in the
/// simulation's time, which runs `--time-scale` times faster than the wall clock.
#[derive(Clone, Debug, Parser)]
#[command(name = "relais-loadgen", version, about, long_about = None)]
pub struct Args {
    /// A node's gRPC address; repeat it (or separate with commas) for the members of a cluster:
    /// informants and calls start at each in turn, and move to the next when their member is gone.
    #[arg(
        long = "target",
        env = "RELAIS_LOADGEN_TARGET",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub targets: Vec<String>,
    /// Tenant to act for [default: the profile's: cai, or sos for the sos profile].
    #[arg(long, env = "RELAIS_LOADGEN_TENANT")]
    pub tenant: Option<String>,
    /// Workload.
    #[arg(long, env = "RELAIS_LOADGEN_PROFILE", value_enum, default_value_t = ProfileKind::Cai)]
    pub profile: ProfileKind,
    /// Simulated seconds per real second (120: a simulated hour in 30 real seconds).
    #[arg(long, env = "RELAIS_LOADGEN_TIME_SCALE", default_value_t = 120.0)]
    pub time_scale: f64,
    /// Simulated length of the offering phase [default: the profile's: 2h, or 4h for poisson].
    #[arg(long, env = "RELAIS_LOADGEN_DURATION", value_parser = duration_arg)]
    pub duration: Option<Duration>,
    /// Stop after offering this many calls (with --duration, whichever comes first).
    #[arg(long, env = "RELAIS_LOADGEN_CALLS")]
    pub calls: Option<u64>,
    /// Seed of the workload's random draws.
    #[arg(long, env = "RELAIS_LOADGEN_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Arrival rate in calls per simulated hour (the peak rate for cai and sos, whose shape is scaled).
    #[arg(long, env = "RELAIS_LOADGEN_RATE")]
    pub rate: Option<f64>,
    /// Number of informants (cai and sos scale each group in proportion).
    #[arg(long, env = "RELAIS_LOADGEN_INFORMANTS")]
    pub informants: Option<u32>,
    /// Mean handle time, simulated (other queues keep their ratio to the main one).
    #[arg(long, env = "RELAIS_LOADGEN_AHT", value_parser = duration_arg)]
    pub aht: Option<Duration>,
    /// Handle-time distribution of every queue.
    #[arg(long, env = "RELAIS_LOADGEN_HANDLE_DIST", value_enum)]
    pub handle_dist: Option<HandleDist>,
    /// Coefficient of variation of log-normal handle times.
    #[arg(long, env = "RELAIS_LOADGEN_HANDLE_CV")]
    pub handle_cv: Option<f64>,
    /// Mean exponential patience of waiting callers, simulated; `none` disables abandons.
    #[arg(long, env = "RELAIS_LOADGEN_PATIENCE", value_parser = patience_arg)]
    pub patience: Option<Duration>,
    /// Wrap-up after each call for every queue, simulated.
    #[arg(long, env = "RELAIS_LOADGEN_WRAP_UP", value_parser = duration_arg)]
    pub wrap_up: Option<Duration>,
    /// Service-level threshold of every queue, simulated.
    #[arg(long, env = "RELAIS_LOADGEN_SL_THRESHOLD", value_parser = duration_arg)]
    pub sl_threshold: Option<Duration>,
    /// Simulated clock at the start, e.g. `mon 09:00` [default: the profile's].
    #[arg(long, env = "RELAIS_LOADGEN_START", value_parser = week_time_arg)]
    pub start: Option<WeekTime>,
    /// Calls in flight at most.
    #[arg(long, env = "RELAIS_LOADGEN_MAX_CONCURRENT_CALLS", default_value_t = 1000)]
    pub max_concurrent_calls: usize,
    /// HTTP/2 connections to open [default: one per 100 streams].
    #[arg(long, env = "RELAIS_LOADGEN_CONNECTIONS")]
    pub connections: Option<usize>,
    /// Simulated time allowed after the last arrival for calls to end by themselves.
    #[arg(long, env = "RELAIS_LOADGEN_DRAIN", value_parser = duration_arg, default_value = "30m")]
    pub drain: Duration,
    /// Real time allowed for calls to end and informants to log out at shutdown.
    #[arg(long, env = "RELAIS_LOADGEN_GRACE", value_parser = duration_arg, default_value = "5s")]
    pub grace: Duration,
    /// Real waits up to this do not count as waiting in P(wait>0).
    #[arg(long, env = "RELAIS_LOADGEN_WAIT_EPSILON", value_parser = duration_arg, default_value = "10ms")]
    pub wait_epsilon: Duration,
    /// Do not apply the profile's routing plan (queues and profiles must exist already).
    #[arg(long, env = "RELAIS_LOADGEN_NO_APPLY_PLAN")]
    pub no_apply_plan: bool,
    /// Let the plan delete the tenant's other queues and profiles.
    #[arg(long, env = "RELAIS_LOADGEN_PRUNE")]
    pub prune: bool,
    /// Leave informants logged in at the end.
    #[arg(long, env = "RELAIS_LOADGEN_NO_LOGOUT")]
    pub no_logout: bool,
    /// Show the live view (queues, service levels, informants), refreshed every second.
    #[arg(long, env = "RELAIS_LOADGEN_LIVE")]
    pub live: bool,
    /// No progress bar.
    #[arg(long, short, env = "RELAIS_LOADGEN_QUIET", conflicts_with = "live")]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, env = "RELAIS_LOADGEN_JSON")]
    pub json: Option<PathBuf>,
    /// Deadline of each request, real.
    #[arg(long, env = "RELAIS_LOADGEN_RPC_TIMEOUT", value_parser = duration_arg, default_value = "5s")]
    pub rpc_timeout: Duration,
    /// Attempts per request when the node is unavailable.
    #[arg(long, env = "RELAIS_LOADGEN_ATTEMPTS", default_value_t = 5)]
    pub attempts: u32,
    /// Prefix of call ids [default: derived from the seed and the clock].
    #[arg(long, env = "RELAIS_LOADGEN_CALL_ID_PREFIX")]
    pub call_id_prefix: Option<String>,
}

impl Args {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        Config {
            targets: self.targets.clone(),
            tenant: self.tenant.clone(),
            profile: self.profile,
            overrides: ProfileOverrides {
                rate_per_hour: self.rate,
                informants: self.informants,
                aht: self.aht,
                handle_dist: self.handle_dist,
                handle_cv: self.handle_cv,
                patience: self.patience,
                wrap_up: self.wrap_up,
                sl_threshold: self.sl_threshold,
                start: self.start,
            },
            time_scale: self.time_scale,
            duration: self.duration,
            max_calls: self.calls,
            seed: self.seed,
            max_concurrent_calls: self.max_concurrent_calls,
            connections: self.connections,
            drain: self.drain,
            shutdown_grace: self.grace,
            wait_epsilon: self.wait_epsilon,
            apply_plan: !self.no_apply_plan,
            prune: self.prune,
            logout: !self.no_logout,
            view: if self.live {
                ViewMode::Live
            } else if self.quiet {
                ViewMode::Quiet
            } else {
                ViewMode::Bar
            },
            retry: Retry { attempts: self.attempts, rpc_timeout: self.rpc_timeout, ..defaults.retry },
            failover: Retry { rpc_timeout: self.rpc_timeout, ..defaults.failover },
            call_id_prefix: self.call_id_prefix.clone(),
            ready_timeout: defaults.ready_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Args::try_parse_from(std::iter::once("relais-loadgen").chain(args.iter().copied())).unwrap().config()
    }

    #[test]
    fn command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_run_the_cai_demo() {
        let config = parse(&["--live"]);
        assert_eq!(config.profile, ProfileKind::Cai);
        assert_eq!(config.targets, ["http://127.0.0.1:50051"]);
        assert_eq!(config.view, ViewMode::Live);
        assert_eq!(config.time_scale, 120.0);
        assert_eq!(config.duration, None);
        // Apart from the view, the command line's defaults are the library's.
        assert_eq!(Config { view: ViewMode::Quiet, ..config }, Config::default());
        assert_eq!(parse(&[]).view, ViewMode::Bar);
        assert_eq!(parse(&["-q"]).view, ViewMode::Quiet);
    }

    #[test]
    fn parses_the_documented_example() {
        let config = parse(&[
            "--target",
            "http://127.0.0.1:50051",
            "--profile",
            "cai",
            "--time-scale",
            "120",
            "--duration",
            "2h",
            "--live",
            "--json",
            "out.json",
            "--seed",
            "7",
        ]);
        assert_eq!(config.duration, Some(Duration::from_secs(7200)));
        assert_eq!(config.seed, 7);
        config.validate().unwrap();
    }

    #[test]
    fn takes_several_targets() {
        let three = ["http://127.0.0.1:50051", "http://127.0.0.1:50052", "http://127.0.0.1:50053"];
        let repeated = parse(&["--target", three[0], "--target", three[1], "--target", three[2]]);
        assert_eq!(repeated.targets, three);
        assert_eq!(parse(&["--target", &three.join(",")]).targets, three);
        repeated.validate().unwrap();
        assert_eq!(repeated.failover, Retry::failover());
    }

    #[test]
    fn parses_workload_overrides() {
        let config = parse(&[
            "--profile",
            "poisson",
            "--rate",
            "360",
            "--informants",
            "12",
            "--aht",
            "4m",
            "--handle-dist",
            "lognormal",
            "--handle-cv",
            "0.5",
            "--patience",
            "none",
            "--wrap-up",
            "10s",
            "--start",
            "tue 14:00",
            "--calls",
            "500",
        ]);
        assert_eq!(config.profile, ProfileKind::Poisson);
        assert_eq!(config.max_calls, Some(500));
        let overrides = &config.overrides;
        assert_eq!(overrides.rate_per_hour, Some(360.0));
        assert_eq!(overrides.informants, Some(12));
        assert_eq!(overrides.aht, Some(Duration::from_secs(240)));
        assert_eq!(overrides.handle_dist, Some(HandleDist::Lognormal));
        assert_eq!(overrides.patience, Some(Duration::ZERO));
        assert_eq!(overrides.wrap_up, Some(Duration::from_secs(10)));
        assert_eq!(overrides.start, Some(WeekTime::parse("tue 14:00").unwrap()));
        assert!(Args::try_parse_from(["relais-loadgen", "--live", "--quiet"]).is_err());
        assert!(Args::try_parse_from(["relais-loadgen", "--duration", "2 hours"]).is_err());
    }

    #[test]
    fn rejects_bad_configurations() {
        let bad = [
            Config { time_scale: 0.0, ..Config::default() },
            Config { max_concurrent_calls: 0, ..Config::default() },
            Config { max_calls: Some(0), ..Config::default() },
            Config { duration: Some(Duration::ZERO), ..Config::default() },
            Config { call_id_prefix: Some("bad prefix".to_owned()), ..Config::default() },
            Config { targets: Vec::new(), ..Config::default() },
            Config { failover: Retry { attempts: 0, ..Retry::failover() }, ..Config::default() },
            Config { overrides: ProfileOverrides { informants: Some(0), ..Default::default() }, ..Config::default() },
        ];
        for config in bad {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))), "{config:?}");
        }
        Config::default().validate().unwrap();
    }
}
