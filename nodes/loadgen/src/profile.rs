//! Workloads: who calls, when, for which queue, how long they talk and how long they wait.
//!
//! A [`Profile`] describes one workload in simulated time: the queues and informant profiles to set up
//! on the node (turned into a `RoutingPlan` by [`Profile::routing_plan`]), an arrival-rate shape over the
//! week, a weighted mix of call classes, handle-time and patience distributions. Three are built in:
//!
//! * `poisson`: one queue, constant Poisson arrivals, identical informants, exponential handle times by
//!   default. This is the profile queueing theory can predict (see [`Profile::erlang_model`]).
//! * `cai`: a working day of an interministerial call centre: four ministry queues plus a listening
//!   queue, ~50 informants, a Monday-morning peak of ~250 calls an hour, ~5 minute calls.
//! * `sos`: a listening line open 24/7, busiest at night, ~20 minute calls, callers who give up after a
//!   few minutes.
//!
//! [`ArrivalGenerator`] turns a profile and a seed into the same sequence of calls every time. This module
//! does no I/O; it only depends on the generated API types for the plan it builds.

use std::time::Duration;

use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use relais_proto::v1 as api;

use crate::erlang::Mmn;
use crate::units::{TimeScale, WeekTime};

/// The node waits this long at least for our informants to accept an offer, whatever the time scale:
/// the simulated informants answer at once, so the offer timeout is not part of the model, and a scaled
/// timeout of a few milliseconds would only turn scheduling hiccups into missed offers.
const MIN_OFFER_TIMEOUT_REAL_MS: u64 = 1_000;

/// The built-in workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// One queue, Poisson arrivals, N identical informants: the Erlang test bed.
    Poisson,
    /// Interministerial call centre: working hours, Monday-morning peak, five queues.
    Cai,
    /// Listening line: 24/7, night peak, long calls, impatient callers.
    Sos,
}

impl ProfileKind {
    /// The profile's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Poisson => "poisson",
            Self::Cai => "cai",
            Self::Sos => "sos",
        }
    }
}

/// How handle times are distributed when overridden from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HandleDist {
    /// Exponential: what Erlang C and Erlang A assume.
    Exp,
    /// Log-normal: closer to real call centres (a long right tail, few very short calls).
    Lognormal,
}

/// Changes to a built-in profile; `None` keeps the profile's own value. Durations are simulated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileOverrides {
    /// Arrival rate in calls per simulated hour: the constant rate of `poisson`, the peak rate of the
    /// shaped profiles (the whole shape is scaled).
    pub rate_per_hour: Option<f64>,
    /// Number of informants; the shaped profiles scale each group in proportion (at least one each).
    pub informants: Option<u32>,
    /// Mean handle time of the main queues; other queues keep their ratio to it.
    pub aht: Option<Duration>,
    /// Handle-time distribution of every queue.
    pub handle_dist: Option<HandleDist>,
    /// Coefficient of variation of log-normal handle times.
    pub handle_cv: Option<f64>,
    /// Mean exponential patience of waiting callers; zero disables abandons.
    pub patience: Option<Duration>,
    /// Wrap-up after each call, for every queue.
    pub wrap_up: Option<Duration>,
    /// Service-level threshold of every queue.
    pub sl_threshold: Option<Duration>,
    /// Where in the week the simulated clock starts.
    pub start: Option<WeekTime>,
}

/// A skill with a proficiency, held by an informant or required by a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillSpec {
    /// Skill name, e.g. `justice` or `lang:fr`.
    pub name: String,
    /// Proficiency 1 to 5 (the minimum accepted, for a queue).
    pub proficiency: u32,
}

fn skill(name: &str, proficiency: u32) -> SkillSpec {
    SkillSpec { name: name.to_owned(), proficiency }
}

/// A distribution of handle times, in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HandleTime {
    /// Exponential with this mean.
    Exponential {
        /// Mean, simulated seconds.
        mean_s: f64,
    },
    /// Log-normal with this mean and coefficient of variation (standard deviation / mean).
    LogNormal {
        /// Mean, simulated seconds.
        mean_s: f64,
        /// Standard deviation divided by the mean.
        cv: f64,
    },
}

impl HandleTime {
    /// The mean, simulated seconds.
    pub fn mean_s(&self) -> f64 {
        match *self {
            Self::Exponential { mean_s } | Self::LogNormal { mean_s, .. } => mean_s,
        }
    }

    /// Draws one handle time, simulated seconds.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Self::Exponential { mean_s } => sample_exp(rng, mean_s),
            Self::LogNormal { mean_s, cv } => match LogNormal::from_mean_cv(mean_s, cv) {
                Ok(dist) => dist.sample(rng),
                // Validation rejects such parameters; the mean is the sensible fallback.
                Err(_) => mean_s,
            },
        }
    }

    fn with_mean(self, mean_s: f64) -> Self {
        match self {
            Self::Exponential { .. } => Self::Exponential { mean_s },
            Self::LogNormal { cv, .. } => Self::LogNormal { mean_s, cv },
        }
    }
}

fn sample_exp(rng: &mut impl Rng, mean_s: f64) -> f64 {
    match Exp::new(1.0 / mean_s) {
        Ok(dist) => dist.sample(rng),
        Err(_) => mean_s,
    }
}

/// A relaxation step of a queue, in simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct RelaxationSpec {
    /// Wait after which the step applies, simulated seconds.
    pub after_s: f64,
    /// The required skill whose minimum is lowered.
    pub skill: String,
    /// The new minimum proficiency.
    pub min_proficiency: u32,
}

/// A queue of the workload, in simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSpec {
    /// Queue id on the node.
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Skills an informant must hold.
    pub required_skills: Vec<SkillSpec>,
    /// Service-level target, e.g. 0.8.
    pub service_level_target: f64,
    /// Service-level threshold, simulated seconds.
    pub sl_threshold_s: f64,
    /// Most calls waiting at once.
    pub max_waiting: u32,
    /// Longest wait before deflection, simulated seconds; zero for no limit.
    pub max_wait_s: f64,
    /// Wrap-up after each call, simulated seconds.
    pub wrap_up_s: f64,
    /// How long an offer waits for an answer, simulated seconds (floored in real time, see the plan).
    pub offer_timeout_s: f64,
    /// Missed offers in a row before the node pauses an informant.
    pub max_missed_offers: u32,
    /// How the node chooses among available informants.
    pub selection: api::Selection,
    /// Relaxation steps.
    pub relaxations: Vec<RelaxationSpec>,
    /// Handle times of this queue's calls.
    pub handle: HandleTime,
}

/// An informant of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct InformantSpec {
    /// Informant id on the node.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Skills stored in the profile (the informant logs in without skills of its own).
    pub skills: Vec<SkillSpec>,
}

impl InformantSpec {
    /// Whether this informant meets `queue`'s strict requirements (before any relaxation) and speaks
    /// `language`. The simulator uses it to judge whether an idle informant could take a new call.
    pub fn can_serve(&self, queue: &QueueSpec, language: Option<&str>) -> bool {
        let holds = |name: &str, min: u32| self.skills.iter().any(|held| held.name == name && held.proficiency >= min);
        queue.required_skills.iter().all(|required| holds(&required.name, required.proficiency))
            && language.is_none_or(|language| holds(&format!("lang:{language}"), 1))
    }
}

/// Arrival rate over the week.
// One value exists per run, so the size of the weekly variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Arrivals {
    /// The same rate at every moment.
    Constant {
        /// Calls per simulated hour.
        per_hour: f64,
    },
    /// A peak rate shaped by day of the week and hour of the day; the rate at a moment is
    /// `peak_per_hour × day_factors[day] × hour_factors[hour]`, constant within each hour.
    ///
    /// **Invariant:** the largest product of factors is 1, so `peak_per_hour` is the peak.
    Weekly {
        /// Calls per simulated hour at the busiest hour of the week.
        peak_per_hour: f64,
        /// Monday first.
        day_factors: [f64; 7],
        /// Midnight first.
        hour_factors: [f64; 24],
    },
}

impl Arrivals {
    /// Calls per simulated hour at moment `at`.
    pub fn rate_per_hour(&self, at: WeekTime) -> f64 {
        match self {
            Self::Constant { per_hour } => *per_hour,
            Self::Weekly { peak_per_hour, day_factors, hour_factors } => {
                let (day, hour) = at.day_and_hour();
                peak_per_hour * day_factors[day] * hour_factors[hour]
            }
        }
    }

    /// The highest rate at any moment, calls per simulated hour.
    pub fn peak_per_hour(&self) -> f64 {
        match self {
            Self::Constant { per_hour } => *per_hour,
            Self::Weekly { peak_per_hour, day_factors, hour_factors } => {
                let day = day_factors.iter().copied().fold(0.0, f64::max);
                let hour = hour_factors.iter().copied().fold(0.0, f64::max);
                peak_per_hour * day * hour
            }
        }
    }

    /// The expected number of calls in one simulated week.
    pub fn calls_per_week(&self) -> f64 {
        (0..7 * 24).map(|hour| self.rate_per_hour(WeekTime(f64::from(hour) * 3600.0))).sum()
    }

    fn scaled_to_peak(self, new_peak: f64) -> Self {
        match self {
            Self::Constant { .. } => Self::Constant { per_hour: new_peak },
            Self::Weekly { day_factors, hour_factors, .. } => {
                Self::Weekly { peak_per_hour: new_peak, day_factors, hour_factors }
            }
        }
    }
}

/// A kind of call, drawn with probability proportional to `weight`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallClass {
    /// Relative frequency.
    pub weight: f64,
    /// Index of the target queue in [`Profile::queues`].
    pub queue: usize,
    /// The caller is flagged as being in distress.
    pub vulnerable: bool,
    /// Priority 0..9.
    pub priority: u32,
    /// Caller's language, if the queue should require `lang:<language>`.
    pub language: Option<String>,
    /// Topics chosen in the voice menu, drawn uniformly.
    pub topics: Vec<String>,
}

/// One workload, in simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Name shown in summaries.
    pub name: String,
    /// Tenant used when none is given.
    pub default_tenant: String,
    /// Queues to set up.
    pub queues: Vec<QueueSpec>,
    /// Informants to set up and log in.
    pub informants: Vec<InformantSpec>,
    /// Arrival rate over the week.
    pub arrivals: Arrivals,
    /// The call mix.
    pub classes: Vec<CallClass>,
    /// Mean exponential patience of waiting callers, simulated seconds; `None`: callers never hang up.
    pub patience_mean_s: Option<f64>,
    /// Simulated clock at the start of the run.
    pub start: WeekTime,
    /// How long a run lasts when neither a duration nor a call count is given, simulated seconds.
    pub default_duration_s: f64,
}

impl Profile {
    /// Builds a built-in profile with overrides applied.
    pub fn build(kind: ProfileKind, overrides: &ProfileOverrides) -> Result<Self, String> {
        // Informant counts are applied while building, since each profile groups its staff differently.
        let mut profile = match kind {
            ProfileKind::Poisson => poisson(overrides),
            ProfileKind::Cai => cai(overrides.informants),
            ProfileKind::Sos => sos(overrides.informants),
        };
        profile.apply(overrides);
        profile.validate()?;
        Ok(profile)
    }

    fn apply(&mut self, overrides: &ProfileOverrides) {
        if let Some(rate) = overrides.rate_per_hour {
            self.arrivals = self.arrivals.clone().scaled_to_peak(rate);
        }
        if let Some(aht) = overrides.aht {
            // The first queue is the main one in every built-in profile (the ministries share its mean).
            let main_mean = self.queues.first().map_or(1.0, |queue| queue.handle.mean_s());
            let ratio = aht.as_secs_f64() / main_mean;
            for queue in &mut self.queues {
                queue.handle = queue.handle.with_mean(queue.handle.mean_s() * ratio);
            }
        }
        if overrides.handle_dist.is_some() || overrides.handle_cv.is_some() {
            for queue in &mut self.queues {
                let mean_s = queue.handle.mean_s();
                let current_cv = match queue.handle {
                    HandleTime::LogNormal { cv, .. } => cv,
                    HandleTime::Exponential { .. } => 1.0,
                };
                let dist = overrides.handle_dist.unwrap_or(match queue.handle {
                    HandleTime::Exponential { .. } => HandleDist::Exp,
                    HandleTime::LogNormal { .. } => HandleDist::Lognormal,
                });
                queue.handle = match dist {
                    HandleDist::Exp => HandleTime::Exponential { mean_s },
                    HandleDist::Lognormal => {
                        HandleTime::LogNormal { mean_s, cv: overrides.handle_cv.unwrap_or(current_cv) }
                    }
                };
            }
        }
        if let Some(patience) = overrides.patience {
            self.patience_mean_s = (!patience.is_zero()).then_some(patience.as_secs_f64());
        }
        if let Some(wrap_up) = overrides.wrap_up {
            for queue in &mut self.queues {
                queue.wrap_up_s = wrap_up.as_secs_f64();
            }
        }
        if let Some(threshold) = overrides.sl_threshold {
            for queue in &mut self.queues {
                queue.sl_threshold_s = threshold.as_secs_f64();
            }
        }
        if let Some(start) = overrides.start {
            self.start = start;
        }
    }

    /// Checks what the generator and the node rely on.
    pub fn validate(&self) -> Result<(), String> {
        let rate = self.arrivals.peak_per_hour();
        if !rate.is_finite() || rate < 0.0 {
            return Err(format!("profile {}: arrival rate must be finite and non-negative", self.name));
        }
        if self.queues.is_empty() || self.informants.is_empty() || self.classes.is_empty() {
            return Err(format!("profile {}: needs queues, informants and call classes", self.name));
        }
        for queue in &self.queues {
            let (mean_s, cv) = match queue.handle {
                HandleTime::Exponential { mean_s } => (mean_s, 1.0),
                HandleTime::LogNormal { mean_s, cv } => (mean_s, cv),
            };
            if !(mean_s.is_finite() && mean_s > 0.0 && cv.is_finite() && cv > 0.0) {
                return Err(format!("queue {}: handle time mean and cv must be positive", queue.id));
            }
            if queue.sl_threshold_s <= 0.0 || queue.wrap_up_s < 0.0 {
                return Err(format!("queue {}: bad service-level threshold or wrap-up", queue.id));
            }
        }
        if let Some(patience) = self.patience_mean_s
            && !(patience.is_finite() && patience > 0.0)
        {
            return Err("patience must be positive".to_owned());
        }
        if self.classes.iter().any(|class| class.queue >= self.queues.len() || class.weight < 0.0) {
            return Err(format!("profile {}: a call class names no queue", self.name));
        }
        if self.classes.iter().map(|class| class.weight).sum::<f64>() <= 0.0 {
            return Err(format!("profile {}: call class weights sum to zero", self.name));
        }
        Ok(())
    }

    /// The single-queue model queueing theory can predict, with the mean patience when callers abandon,
    /// or `None` when the workload is not one: it must have one queue, a constant arrival rate,
    /// exponential handle times, no wrap-up, and informants that can all serve every call.
    pub fn erlang_model(&self) -> Option<(Mmn, Option<f64>)> {
        let [queue] = self.queues.as_slice() else {
            return None;
        };
        let Arrivals::Constant { per_hour } = self.arrivals else {
            return None;
        };
        let HandleTime::Exponential { mean_s } = queue.handle else {
            return None;
        };
        let all_serve = self
            .classes
            .iter()
            .all(|class| self.informants.iter().all(|informant| informant.can_serve(queue, class.language.as_deref())));
        if queue.wrap_up_s > 0.0 || !all_serve || per_hour <= 0.0 {
            return None;
        }
        let agents = u32::try_from(self.informants.len()).ok()?;
        Some((Mmn { arrival_rate: per_hour / 3600.0, mean_service: mean_s, agents }, self.patience_mean_s))
    }

    /// The node-side plan: queues and informant profiles with every duration converted to real time.
    pub fn routing_plan(&self, scale: TimeScale, prune: bool) -> api::RoutingPlan {
        let skills = |skills: &[SkillSpec]| {
            skills
                .iter()
                .map(|skill| api::Skill { name: skill.name.clone(), proficiency: skill.proficiency })
                .collect::<Vec<_>>()
        };
        let queues = self
            .queues
            .iter()
            .map(|queue| api::QueueConfig {
                id: queue.id.clone(),
                display_name: queue.display_name.clone(),
                required_skills: skills(&queue.required_skills),
                service_level_target: queue.service_level_target,
                service_level_threshold_ms: scale.to_real_ms(queue.sl_threshold_s),
                max_waiting: queue.max_waiting,
                max_wait_ms: scale.to_real_ms(queue.max_wait_s),
                wrap_up_ms: scale.to_real_ms(queue.wrap_up_s),
                offer_timeout_ms: scale.to_real_ms(queue.offer_timeout_s).max(MIN_OFFER_TIMEOUT_REAL_MS),
                max_missed_offers: queue.max_missed_offers,
                selection: queue.selection as i32,
                relaxations: queue
                    .relaxations
                    .iter()
                    .map(|step| api::Relaxation {
                        after_ms: scale.to_real_ms(step.after_s),
                        skill: step.skill.clone(),
                        min_proficiency: step.min_proficiency,
                    })
                    .collect(),
                overflow: None,
            })
            .collect();
        let informants = self
            .informants
            .iter()
            .map(|informant| api::InformantProfile {
                id: informant.id.clone(),
                display_name: informant.display_name.clone(),
                skills: skills(&informant.skills),
            })
            .collect();
        api::RoutingPlan { queues, informants, prune }
    }
}

/// Default sizes and rates of the poisson profile: N = 10, A = 8.5 Erlangs (102 calls an hour of
/// 300 s), a classic Erlang C example where more than half the calls wait.
const POISSON_INFORMANTS: u32 = 10;
const POISSON_RATE_PER_HOUR: f64 = 102.0;
const POISSON_AHT_S: f64 = 300.0;

fn poisson(overrides: &ProfileOverrides) -> Profile {
    let informants = overrides.informants.unwrap_or(POISSON_INFORMANTS).max(1);
    Profile {
        name: "poisson".to_owned(),
        default_tenant: "cai".to_owned(),
        queues: vec![QueueSpec {
            id: "loadgen-poisson".to_owned(),
            display_name: "Load generator, Poisson arrivals".to_owned(),
            required_skills: vec![skill("general", 1)],
            service_level_target: 0.8,
            sl_threshold_s: 20.0,
            // As large as the node allows, so that no call is deflected: Erlang C has no limit.
            max_waiting: 100_000,
            max_wait_s: 0.0,
            wrap_up_s: 0.0,
            offer_timeout_s: 15.0,
            max_missed_offers: 3,
            selection: api::Selection::LongestIdle,
            relaxations: Vec::new(),
            handle: HandleTime::Exponential { mean_s: POISSON_AHT_S },
        }],
        informants: (1..=informants)
            .map(|n| InformantSpec {
                id: format!("lg-agent-{n:04}"),
                display_name: format!("Load generator agent {n}"),
                skills: vec![skill("general", 3)],
            })
            .collect(),
        arrivals: Arrivals::Constant { per_hour: POISSON_RATE_PER_HOUR },
        classes: vec![CallClass {
            weight: 1.0,
            queue: 0,
            vulnerable: false,
            priority: 0,
            language: None,
            topics: Vec::new(),
        }],
        patience_mean_s: None,
        start: WeekTime(0.0),
        default_duration_s: 4.0 * 3600.0,
    }
}

/// Scales a default group size to a requested total, keeping at least one informant per group.
fn scaled_size(default_size: u32, default_total: u32, requested_total: Option<u32>) -> u32 {
    match requested_total {
        None => default_size,
        Some(total) => ((f64::from(default_size) * f64::from(total) / f64::from(default_total)).round() as u32).max(1),
    }
}

/// A ministry queue of the CAI: its id, name, share of the administrative calls, informants by default
/// and menu topics.
struct Ministry {
    id: &'static str,
    name: &'static str,
    share: f64,
    informants: u32,
    topics: [&'static str; 4],
}

const MINISTRIES: [Ministry; 4] = [
    Ministry {
        id: "justice",
        name: "Justice",
        share: 0.27,
        informants: 12,
        topics: ["famille et divorce", "casier judiciaire", "aide juridictionnelle", "succession"],
    },
    Ministry {
        id: "interieur",
        name: "Intérieur",
        share: 0.25,
        informants: 11,
        topics: ["titre de séjour", "permis de conduire", "carte d'identité", "élections"],
    },
    Ministry {
        id: "logement",
        name: "Logement",
        share: 0.26,
        informants: 11,
        topics: ["aide au logement", "expulsion", "copropriété", "logement social"],
    },
    Ministry {
        id: "travail",
        name: "Travail",
        share: 0.22,
        informants: 10,
        topics: ["licenciement", "chômage", "salaire", "arrêt maladie"],
    },
];
const CAI_LISTENERS: u32 = 6;
const CAI_TOTAL: u32 = 12 + 11 + 11 + 10 + CAI_LISTENERS;
/// Share of CAI callers flagged as vulnerable, all sent to the listening queue.
const CAI_VULNERABLE_SHARE: f64 = 0.03;
/// Share of CAI callers who speak English rather than French.
const CAI_ENGLISH_SHARE: f64 = 0.04;

/// The CAI's hours: open 8:30 to 17:30 (the first and last hours count half), busiest 9:00 to 11:00,
/// a lunch dip, a smaller afternoon bump.
const CAI_HOURS: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.35, 1.0, 0.95, 0.75, 0.45, 0.5, 0.7, 0.65, 0.5, 0.3, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0,
];
/// Monday carries the week's backlog; closed at weekends.
const CAI_DAYS: [f64; 7] = [1.0, 0.6, 0.5, 0.55, 0.5, 0.0, 0.0];

fn cai(informants: Option<u32>) -> Profile {
    let mut queues = Vec::new();
    let mut people = Vec::new();
    let mut classes = Vec::new();
    for (index, ministry) in MINISTRIES.iter().enumerate() {
        let next = &MINISTRIES[(index + 1) % MINISTRIES.len()];
        queues.push(QueueSpec {
            id: ministry.id.to_owned(),
            display_name: format!("Ministère — {}", ministry.name),
            required_skills: vec![skill(ministry.id, 3)],
            service_level_target: 0.8,
            sl_threshold_s: 20.0,
            max_waiting: 200,
            max_wait_s: 20.0 * 60.0,
            wrap_up_s: 60.0,
            offer_timeout_s: 15.0,
            max_missed_offers: 3,
            selection: api::Selection::LongestIdle,
            // After a minute, informants of a neighbouring ministry who hold the skill at level 2 may help.
            relaxations: vec![RelaxationSpec { after_s: 60.0, skill: ministry.id.to_owned(), min_proficiency: 2 }],
            handle: HandleTime::LogNormal { mean_s: 300.0, cv: 0.8 },
        });
        let size = scaled_size(ministry.informants, CAI_TOTAL, informants);
        for n in 0..size {
            let mut skills = vec![skill(ministry.id, [4, 3, 5, 4][n as usize % 4]), skill("lang:fr", 5)];
            // The first two of each group speak English, the next two are trained to listen, the next
            // three know the neighbouring ministry's questions a little.
            match n {
                0 | 1 => skills.push(skill("lang:en", 3)),
                2 | 3 => skills.push(skill("ecoute", 3)),
                4..=6 => skills.push(skill(next.id, 2)),
                _ => {}
            }
            people.push(InformantSpec {
                id: format!("cai-{}-{:02}", ministry.id, n + 1),
                display_name: format!("Informant {} {}", ministry.name, n + 1),
                skills,
            });
        }
        let topics: Vec<String> = ministry.topics.iter().map(|topic| (*topic).to_owned()).collect();
        let share = (1.0 - CAI_VULNERABLE_SHARE) * ministry.share;
        for (language, language_share) in [("fr", 1.0 - CAI_ENGLISH_SHARE), ("en", CAI_ENGLISH_SHARE)] {
            classes.push(CallClass {
                weight: share * language_share,
                queue: index,
                vulnerable: false,
                priority: 0,
                language: Some(language.to_owned()),
                topics: topics.clone(),
            });
        }
    }
    let listening = queues.len();
    queues.push(QueueSpec {
        id: "ecoute".to_owned(),
        display_name: "Écoute — appelants en détresse".to_owned(),
        required_skills: vec![skill("ecoute", 3)],
        service_level_target: 0.8,
        sl_threshold_s: 20.0,
        max_waiting: 200,
        // Vulnerable callers are never deflected, so no maximum wait.
        max_wait_s: 0.0,
        wrap_up_s: 120.0,
        offer_timeout_s: 15.0,
        max_missed_offers: 3,
        selection: api::Selection::MostProficient,
        relaxations: Vec::new(),
        handle: HandleTime::LogNormal { mean_s: 600.0, cv: 0.7 },
    });
    for n in 0..scaled_size(CAI_LISTENERS, CAI_TOTAL, informants) {
        people.push(InformantSpec {
            id: format!("cai-ecoute-{:02}", n + 1),
            display_name: format!("Écoutant {}", n + 1),
            skills: vec![skill("ecoute", [4, 5][n as usize % 2]), skill("lang:fr", 5)],
        });
    }
    classes.push(CallClass {
        weight: CAI_VULNERABLE_SHARE,
        queue: listening,
        vulnerable: true,
        priority: 0,
        language: Some("fr".to_owned()),
        topics: MINISTRIES.iter().flat_map(|m| m.topics).map(|topic| topic.to_owned()).collect(),
    });
    Profile {
        name: "cai".to_owned(),
        default_tenant: "cai".to_owned(),
        queues,
        informants: people,
        arrivals: Arrivals::Weekly { peak_per_hour: 250.0, day_factors: CAI_DAYS, hour_factors: CAI_HOURS },
        classes,
        patience_mean_s: Some(4.0 * 60.0),
        start: WeekTime(9.0 * 3600.0),
        default_duration_s: 2.0 * 3600.0,
    }
}

const SOS_VOLUNTEERS: u32 = 36;
/// Busiest late in the evening and at night, quietest early in the morning.
const SOS_HOURS: [f64; 24] = [
    0.95, 0.85, 0.7, 0.55, 0.4, 0.3, 0.3, 0.35, 0.4, 0.45, 0.5, 0.5, 0.5, 0.5, 0.55, 0.55, 0.6, 0.65, 0.7, 0.75, 0.85,
    0.95, 1.0, 1.0,
];
/// Weekends are a little busier.
const SOS_DAYS: [f64; 7] = [0.9, 0.9, 0.9, 0.9, 0.95, 1.0, 1.0];

fn sos(informants: Option<u32>) -> Profile {
    let listening_queue = |id: &str, name: &str, required: Vec<SkillSpec>, mean_s: f64| QueueSpec {
        id: id.to_owned(),
        display_name: name.to_owned(),
        required_skills: required,
        service_level_target: 0.5,
        sl_threshold_s: 60.0,
        max_waiting: 500,
        max_wait_s: 0.0,
        wrap_up_s: 120.0,
        offer_timeout_s: 15.0,
        max_missed_offers: 3,
        selection: api::Selection::LongestIdle,
        relaxations: Vec::new(),
        handle: HandleTime::LogNormal { mean_s, cv: 0.7 },
    };
    let queues = vec![
        // 205,000 listening hours for 600,000 calls: about 20.5 minutes a call.
        listening_queue("ecoute", "Écoute téléphonique", vec![skill("ecoute", 3)], 20.5 * 60.0),
        listening_queue("chat", "Écoute par messagerie", vec![skill("ecoute", 3), skill("chat", 2)], 25.0 * 60.0),
    ];
    let volunteers = informants.unwrap_or(SOS_VOLUNTEERS).max(1);
    let people = (0..volunteers)
        .map(|n| {
            let mut skills = vec![skill("ecoute", [3, 4, 5][n as usize % 3]), skill("lang:fr", 5)];
            if n % 3 == 0 {
                skills.push(skill("chat", 3));
            }
            InformantSpec {
                id: format!("sos-benevole-{:03}", n + 1),
                display_name: format!("Bénévole {}", n + 1),
                skills,
            }
        })
        .collect();
    let class = |weight: f64, queue: usize, vulnerable: bool| CallClass {
        weight,
        queue,
        vulnerable,
        priority: 0,
        language: Some("fr".to_owned()),
        topics: vec!["solitude".to_owned(), "angoisse".to_owned(), "idées noires".to_owned()],
    };
    Profile {
        name: "sos".to_owned(),
        default_tenant: "sos".to_owned(),
        queues,
        informants: people,
        arrivals: Arrivals::Weekly { peak_per_hour: 80.0, day_factors: SOS_DAYS, hour_factors: SOS_HOURS },
        // Most calls are spoken; one in twenty callers says they are in acute distress.
        classes: vec![class(0.855, 0, false), class(0.045, 0, true), class(0.1, 1, false)],
        patience_mean_s: Some(3.0 * 60.0),
        start: WeekTime(5.0 * 86_400.0 + 21.0 * 3600.0),
        default_duration_s: 2.0 * 3600.0,
    }
}

/// One call to place, fully drawn in advance so that a seed fixes the whole workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// 0, 1, 2... in arrival order.
    pub seq: u64,
    /// Simulated seconds since the start of the run.
    pub at_s: f64,
    /// Index of the queue in [`Profile::queues`].
    pub queue: usize,
    /// Flagged as in distress.
    pub vulnerable: bool,
    /// Priority 0..9.
    pub priority: u32,
    /// Caller's language, if any.
    pub language: Option<String>,
    /// Menu topic ("" if none).
    pub topic: String,
    /// A made-up French mobile number.
    pub caller_number: String,
    /// Simulated seconds the caller will wait before hanging up, if they ever do.
    pub patience_s: Option<f64>,
    /// Simulated seconds the conversation lasts once connected.
    pub handle_s: f64,
}

/// Draws arrivals from a profile: a non-homogeneous Poisson process sampled by thinning (candidates at
/// the peak rate, each kept with probability rate(t)/peak), each with its class, patience and handle
/// time drawn from the same seeded generator, in a fixed order.
pub struct ArrivalGenerator {
    profile: Profile,
    rng: StdRng,
    classes: Option<WeightedIndex<f64>>,
    peak_per_s: f64,
    now_s: f64,
    next_seq: u64,
}

impl ArrivalGenerator {
    /// A generator for `profile` seeded with `seed`.
    pub fn new(profile: Profile, seed: u64) -> Self {
        let classes = WeightedIndex::new(profile.classes.iter().map(|class| class.weight)).ok();
        let peak_per_s = profile.arrivals.peak_per_hour() / 3600.0;
        Self { profile, rng: StdRng::seed_from_u64(seed), classes, peak_per_s, now_s: 0.0, next_seq: 0 }
    }

    /// The next arrival at or before `horizon_s` simulated seconds, or `None` when there is none; a run
    /// keeps one horizon, so the generator is spent once it returns `None`.
    pub fn next_before(&mut self, horizon_s: f64) -> Option<Arrival> {
        if self.peak_per_s <= 0.0 {
            return None;
        }
        let classes = self.classes.as_ref()?;
        loop {
            self.now_s += sample_exp(&mut self.rng, 1.0 / self.peak_per_s);
            if self.now_s > horizon_s {
                return None;
            }
            let rate_per_s = self.profile.arrivals.rate_per_hour(self.profile.start.plus(self.now_s)) / 3600.0;
            if self.rng.random::<f64>() * self.peak_per_s < rate_per_s {
                break;
            }
        }
        let class = &self.profile.classes[classes.sample(&mut self.rng)];
        let topic = if class.topics.is_empty() {
            String::new()
        } else {
            class.topics[self.rng.random_range(0..class.topics.len())].clone()
        };
        let caller_number = format!("+336{:08}", self.rng.random_range(0..100_000_000u32));
        let patience_s = self.profile.patience_mean_s.map(|mean_s| sample_exp(&mut self.rng, mean_s));
        let handle_s = self.profile.queues[class.queue].handle.sample(&mut self.rng);
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Arrival {
            seq,
            at_s: self.now_s,
            queue: class.queue,
            vulnerable: class.vulnerable,
            priority: class.priority,
            language: class.language.clone(),
            topic,
            caller_number,
            patience_s,
            handle_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(kind: ProfileKind) -> Profile {
        Profile::build(kind, &ProfileOverrides::default()).unwrap()
    }

    #[test]
    fn cai_peaks_on_monday_morning_and_closes_at_night_and_weekends() {
        let cai = build(ProfileKind::Cai);
        let at = |text: &str| cai.arrivals.rate_per_hour(WeekTime::parse(text).unwrap());
        assert_eq!(cai.arrivals.peak_per_hour(), 250.0);
        assert_eq!(at("mon 09:30"), 250.0);
        assert!(at("mon 12:30") < at("mon 10:30"));
        assert!(at("tue 09:30") < at("mon 09:30"));
        assert_eq!(at("mon 03:00"), 0.0);
        assert_eq!(at("sat 10:00"), 0.0);
        assert_eq!(at("sun 10:00"), 0.0);
        // About 250,000 calls a year over 52 weeks.
        let per_year = cai.arrivals.calls_per_week() * 52.0;
        assert!((220_000.0..280_000.0).contains(&per_year), "{per_year}");
    }

    #[test]
    fn sos_is_open_all_week_and_busiest_at_night() {
        let sos = build(ProfileKind::Sos);
        let at = |text: &str| sos.arrivals.rate_per_hour(WeekTime::parse(text).unwrap());
        for day in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
            for hour in 0..24 {
                assert!(at(&format!("{day} {hour:02}:00")) > 0.0);
            }
        }
        assert!(at("sat 23:00") > at("sat 06:00") * 2.0);
        assert_eq!(sos.arrivals.peak_per_hour(), 80.0);
        // Mostly the spoken listening queue.
        let spoken: f64 = sos.classes.iter().filter(|c| c.queue == 0).map(|c| c.weight).sum();
        assert!(spoken >= 0.85);
        assert!(sos.queues[0].handle.mean_s() > 19.0 * 60.0);
    }

    #[test]
    fn cai_has_about_fifty_informants_and_every_call_class_has_someone_to_serve_it() {
        let cai = build(ProfileKind::Cai);
        assert_eq!(cai.informants.len(), 50);
        assert_eq!(cai.queues.len(), 5);
        for class in &cai.classes {
            let queue = &cai.queues[class.queue];
            let able = cai.informants.iter().filter(|i| i.can_serve(queue, class.language.as_deref())).count();
            assert!(able >= 2, "queue {} language {:?}: {able}", queue.id, class.language);
        }
        let listeners = cai.informants.iter().filter(|i| i.can_serve(&cai.queues[4], None)).count();
        assert!(listeners >= 10);
        let vulnerable: f64 = cai.classes.iter().filter(|c| c.vulnerable).map(|c| c.weight).sum();
        assert!((0.01..0.06).contains(&vulnerable));
        // Scaling the staff keeps every group.
        let small =
            Profile::build(ProfileKind::Cai, &ProfileOverrides { informants: Some(10), ..Default::default() }).unwrap();
        assert!(small.informants.len() >= 5 && small.informants.len() <= 12, "{}", small.informants.len());
    }

    #[test]
    fn poisson_profile_is_an_erlang_model_and_overrides_apply() {
        let poisson = build(ProfileKind::Poisson);
        let (mmn, patience) = poisson.erlang_model().unwrap();
        assert_eq!(mmn.agents, 10);
        assert!((mmn.load_erlangs() - 8.5).abs() < 1e-9);
        assert_eq!(patience, None);
        let overrides = ProfileOverrides {
            rate_per_hour: Some(3600.0),
            informants: Some(40),
            aht: Some(Duration::from_secs(30)),
            patience: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let (mmn, patience) = Profile::build(ProfileKind::Poisson, &overrides).unwrap().erlang_model().unwrap();
        assert_eq!((mmn.agents, mmn.arrival_rate, mmn.mean_service), (40, 1.0, 30.0));
        assert_eq!(patience, Some(60.0));
        // Log-normal handle times or wrap-up take the workload out of Erlang's reach.
        let lognormal = ProfileOverrides { handle_dist: Some(HandleDist::Lognormal), ..Default::default() };
        assert!(Profile::build(ProfileKind::Poisson, &lognormal).unwrap().erlang_model().is_none());
        let wrap = ProfileOverrides { wrap_up: Some(Duration::from_secs(10)), ..Default::default() };
        assert!(Profile::build(ProfileKind::Poisson, &wrap).unwrap().erlang_model().is_none());
        assert!(build(ProfileKind::Cai).erlang_model().is_none());
    }

    #[test]
    fn generated_arrivals_follow_the_rate_and_are_deterministic() {
        let poisson = build(ProfileKind::Poisson);
        let horizon_s = 1000.0 * 3600.0;
        let mut generator = ArrivalGenerator::new(poisson.clone(), 7);
        let mut count = 0;
        let mut handle_total = 0.0;
        let mut last_s = 0.0;
        while let Some(arrival) = generator.next_before(horizon_s) {
            assert!(arrival.at_s >= last_s);
            last_s = arrival.at_s;
            handle_total += arrival.handle_s;
            count += 1;
        }
        // 102,000 expected; the standard deviation of a Poisson count is its square root (~320).
        assert!((100_500..103_500).contains(&count), "{count}");
        assert!((handle_total / f64::from(count) - 300.0).abs() < 5.0);
        let first: Vec<_> = {
            let mut g = ArrivalGenerator::new(poisson.clone(), 7);
            (0..5).filter_map(|_| g.next_before(horizon_s)).collect()
        };
        let again: Vec<_> = {
            let mut g = ArrivalGenerator::new(poisson.clone(), 7);
            (0..5).filter_map(|_| g.next_before(horizon_s)).collect()
        };
        let other: Vec<_> = {
            let mut g = ArrivalGenerator::new(poisson, 8);
            (0..5).filter_map(|_| g.next_before(horizon_s)).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn thinning_reproduces_the_cai_day() {
        let cai = build(ProfileKind::Cai);
        // Monday from 09:00 to midnight: the rest of Monday's expected volume.
        let expected: f64 = (9..24).map(|hour| 250.0 * CAI_HOURS[hour]).sum();
        let mut total = 0.0;
        for seed in 0..20 {
            let mut generator = ArrivalGenerator::new(cai.clone(), seed);
            let mut count = 0;
            while let Some(arrival) = generator.next_before(15.0 * 3600.0) {
                let (day, hour) = cai.start.plus(arrival.at_s).day_and_hour();
                assert!(day == 0 && (9..18).contains(&hour), "call at {day} {hour}");
                count += 1;
            }
            total += f64::from(count);
        }
        let mean = total / 20.0;
        assert!((mean - expected).abs() < expected * 0.03, "{mean} vs {expected}");
    }

    #[test]
    fn handle_time_distributions_have_the_stated_means() {
        let mut rng = StdRng::seed_from_u64(3);
        for handle in [HandleTime::Exponential { mean_s: 300.0 }, HandleTime::LogNormal { mean_s: 300.0, cv: 0.8 }] {
            let samples: Vec<f64> = (0..200_000).map(|_| handle.sample(&mut rng)).collect();
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let variance = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64;
            let cv = variance.sqrt() / mean;
            let expected_cv = if matches!(handle, HandleTime::Exponential { .. }) { 1.0 } else { 0.8 };
            assert!((mean - 300.0).abs() < 5.0, "{handle:?}: mean {mean}");
            assert!((cv - expected_cv).abs() < 0.05, "{handle:?}: cv {cv}");
            assert!(samples.iter().all(|s| *s > 0.0));
        }
    }

    #[test]
    fn routing_plan_scales_durations_to_real_time() {
        let cai = build(ProfileKind::Cai);
        let plan = cai.routing_plan(TimeScale::new(120.0).unwrap(), false);
        assert_eq!(plan.queues.len(), 5);
        assert_eq!(plan.informants.len(), 50);
        let justice = &plan.queues[0];
        assert_eq!(justice.service_level_threshold_ms, 167);
        assert_eq!(justice.wrap_up_ms, 500);
        assert_eq!(justice.max_wait_ms, 10_000);
        assert_eq!(justice.relaxations[0].after_ms, 500);
        assert_eq!(justice.offer_timeout_ms, MIN_OFFER_TIMEOUT_REAL_MS);
        assert_eq!(plan.queues[4].max_wait_ms, 0);
        assert!(!plan.prune);
    }
}
