//! Queueing-theory predictions for one queue served by `N` interchangeable informants.
//!
//! * **Erlang C** (M/M/N): Poisson arrivals at rate λ, exponential service of mean 1/μ, callers wait as
//!   long as needed. Gives P(wait > 0), the average speed of answer and the service level P(W ≤ t).
//! * **Erlang A** (M/M/N+M): the same, but each waiting caller hangs up after an exponential patience of
//!   mean 1/θ. Gives P(wait > 0), P(abandon) and the average wait of the answered calls.
//!
//! These are the acceptance test of the router: a correct, work-conserving FIFO router fed by the
//! `poisson` profile must show the waits predicted here. The module is pure (no I/O, no async) and
//! independent of the rest of the crate, so it is tested against textbook values alone.
//!
//! Units: any time unit will do as long as rates and times agree; the simulator uses simulated seconds.

use serde::{Deserialize, Serialize};

/// The states of the Erlang A chain beyond `N + λ/θ` carry negligible mass; the truncation stops once a
/// state's weight falls below this fraction of the largest weight.
const TRUNCATION_EPSILON: f64 = 1e-16;

/// Hard limit on the number of waiting states of the Erlang A chain, so a pathological input cannot make
/// the computation run for long. With θ > 0 the tail decays faster than geometrically, so real inputs
/// stop far earlier.
const MAX_WAITING_STATES: usize = 1_000_000;

/// A queue seen by queueing theory: arrivals, service and staffing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mmn {
    /// Arrival rate λ, calls per time unit.
    pub arrival_rate: f64,
    /// Mean service time 1/μ, in the same time unit.
    pub mean_service: f64,
    /// Number of informants N.
    pub agents: u32,
}

impl Mmn {
    /// The offered load A = λ/μ, in Erlangs.
    pub fn load_erlangs(&self) -> f64 {
        self.arrival_rate * self.mean_service
    }

    fn service_rate(&self) -> f64 {
        1.0 / self.mean_service
    }

    fn is_valid(&self) -> bool {
        self.arrival_rate.is_finite()
            && self.arrival_rate > 0.0
            && self.mean_service.is_finite()
            && self.mean_service > 0.0
            && self.agents > 0
    }
}

/// Erlang B: the probability that all `agents` are busy in a loss system with `load` Erlangs offered.
///
/// Computed with the recursion B(n) = A·B(n−1) / (n + A·B(n−1)), which never overflows, unlike the
/// textbook ratio of factorials.
pub fn erlang_b(agents: u32, load: f64) -> f64 {
    (1..=agents).fold(1.0, |blocking, n| load * blocking / (f64::from(n) + load * blocking))
}

/// Erlang C: the probability that an arriving call waits, or `None` when the queue is unstable
/// (load ≥ agents), where every call eventually waits.
pub fn erlang_c(agents: u32, load: f64) -> Option<f64> {
    let n = f64::from(agents);
    if agents == 0 || load < 0.0 || load >= n {
        return None;
    }
    let blocking = erlang_b(agents, load);
    Some(n * blocking / (n - load * (1.0 - blocking)))
}

/// What Erlang C predicts for a queue.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErlangC {
    /// Probability that a call waits at all.
    pub p_wait: f64,
    /// Average speed of answer (mean wait over all calls, all of which are answered).
    pub asa: f64,
    /// Fraction of informants' time spent serving, A/N.
    pub occupancy: f64,
}

impl ErlangC {
    /// The prediction for `queue`, or `None` when it is unstable or malformed.
    pub fn predict(queue: &Mmn) -> Option<Self> {
        if !queue.is_valid() {
            return None;
        }
        let load = queue.load_erlangs();
        let p_wait = erlang_c(queue.agents, load)?;
        let spare = f64::from(queue.agents) - load;
        Some(Self { p_wait, asa: p_wait * queue.mean_service / spare, occupancy: load / f64::from(queue.agents) })
    }

    /// Service level: the probability that a call waits at most `threshold`,
    /// 1 − C·exp(−(N − A)·t/AHT). Needs the queue the prediction was made for.
    pub fn service_level(&self, queue: &Mmn, threshold: f64) -> f64 {
        let spare = f64::from(queue.agents) - queue.load_erlangs();
        1.0 - self.p_wait * (-(spare * threshold / queue.mean_service)).exp()
    }
}

/// What Erlang A predicts for a queue whose callers abandon.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErlangA {
    /// Probability that an arriving call waits at all (finds every informant busy).
    pub p_wait: f64,
    /// Among answered calls, the fraction that waited.
    pub p_wait_answered: f64,
    /// Probability that a call abandons.
    pub p_abandon: f64,
    /// Mean wait of the answered calls (the usual "ASA").
    pub asa: f64,
    /// Mean wait over all calls, answered or abandoned (Little's law: E[queue length] / λ).
    pub mean_wait: f64,
    /// Fraction of informants' time spent serving.
    pub occupancy: f64,
}

impl ErlangA {
    /// The prediction for `queue` with exponential patience of mean `mean_patience`, or `None` when the
    /// input is malformed. Unlike Erlang C it exists for any load, since abandons keep the queue finite.
    ///
    /// The steady state of the birth–death chain on the number of calls in the system is computed
    /// directly: births at rate λ, deaths at rate n·μ below N and N·μ + (n − N)·θ above, truncated once
    /// the weights become negligible. Weights are rescaled as they grow, so large loads cannot overflow.
    pub fn predict(queue: &Mmn, mean_patience: f64) -> Option<Self> {
        if !queue.is_valid() || !mean_patience.is_finite() || mean_patience <= 0.0 {
            return None;
        }
        let lambda = queue.arrival_rate;
        let mu = queue.service_rate();
        let theta = 1.0 / mean_patience;
        let agents = queue.agents as usize;

        // Unnormalised weights w[n] of the chain, for n calls in the system.
        let mut weights = vec![1.0_f64];
        let mut largest = 1.0_f64;
        loop {
            let n = weights.len();
            let death = if n <= agents { n as f64 * mu } else { agents as f64 * mu + (n - agents) as f64 * theta };
            let next = weights[n - 1] * lambda / death;
            weights.push(next);
            if next > largest {
                largest = next;
                if largest > 1e250 {
                    // Rescale everything so later weights stay representable.
                    for weight in &mut weights {
                        *weight /= largest;
                    }
                    largest = 1.0;
                }
            }
            let past_the_peak = n > agents && next < weights[n - 1];
            if (past_the_peak && next < largest * TRUNCATION_EPSILON) || n >= agents + MAX_WAITING_STATES {
                break;
            }
        }
        let total: f64 = weights.iter().sum();

        // A call arriving to n ≥ N calls joins the line at position j = n − N + 1. While at position j,
        // it moves forward at rate r_j = N·μ + (j − 1)·θ (a service or an abandon ahead of it) and leaves
        // on its own at rate θ. Holding times do not depend on which of the two happens, so the expected
        // wait of the paths that end in service is a plain sum of mean holding times along the path.
        let mut p_served = 0.0;
        let mut p_waited_and_served = 0.0;
        let mut served_wait = 0.0;
        let mut queue_length = 0.0;
        for weight in weights.iter().take(agents) {
            p_served += weight / total;
        }
        let mut reach_service = 1.0; // P(served | position j), built up one position at a time.
        let mut time_to_service = 0.0; // Σ_{i ≤ j} 1/(r_i + θ)
        for (n, weight) in weights.iter().enumerate().skip(agents) {
            let ahead = (n - agents) as f64;
            let advance = agents as f64 * mu + ahead * theta;
            let leave = advance + theta;
            reach_service *= advance / leave;
            time_to_service += 1.0 / leave;
            let p = weight / total;
            queue_length += ahead * p;
            p_waited_and_served += p * reach_service;
            served_wait += p * reach_service * time_to_service;
        }
        p_served += p_waited_and_served;
        let p_wait = weights.iter().skip(agents).sum::<f64>() / total;
        Some(Self {
            p_wait,
            p_wait_answered: if p_served > 0.0 { p_waited_and_served / p_served } else { 0.0 },
            p_abandon: theta * queue_length / lambda,
            asa: if p_served > 0.0 { served_wait / p_served } else { 0.0 },
            mean_wait: queue_length / lambda,
            occupancy: lambda * p_served / (agents as f64 * mu),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    /// N = 10, A = 8.5 Erlangs, AHT 300 s: λ = 8.5/300 calls a second.
    const QUEUE: Mmn = Mmn { arrival_rate: 8.5 / 300.0, mean_service: 300.0, agents: 10 };

    #[test]
    fn erlang_b_matches_tables() {
        // Erlang B tables: 10 trunks, 5 Erlangs → 1.838 % blocking.
        assert!(close(erlang_b(10, 5.0), 0.018_384_570, 1e-9));
        assert_eq!(erlang_b(0, 3.0), 1.0);
        // Large inputs must not overflow (a naive A^N/N! would).
        let b = erlang_b(2000, 1900.0);
        assert!(b.is_finite() && b > 0.0 && b < 1.0);
    }

    #[test]
    fn erlang_c_matches_textbook_values() {
        assert!(close(erlang_c(10, 8.5).unwrap(), 0.529_861_305, 1e-9));
        // The usual table entry: 11 agents, 10 Erlangs → 68.2 % of calls wait.
        assert!(close(erlang_c(11, 10.0).unwrap(), 0.682_118_205, 1e-9));
        // Two agents, one Erlang: C = 1/3 exactly.
        assert!(close(erlang_c(2, 1.0).unwrap(), 1.0 / 3.0, 1e-12));
        assert_eq!(erlang_c(10, 10.0), None);
        assert_eq!(erlang_c(0, 0.5), None);
    }

    #[test]
    fn erlang_c_predicts_asa_and_service_level() {
        let prediction = ErlangC::predict(&QUEUE).unwrap();
        // ASA = C · AHT / (N − A) = 0.52986 · 300 / 1.5.
        assert!(close(prediction.asa, 105.972_261, 1e-5));
        // SL(20 s) = 1 − C · exp(−1.5 · 20/300).
        assert!(close(prediction.service_level(&QUEUE, 20.0), 0.520_561_665, 1e-8));
        assert!(close(prediction.service_level(&QUEUE, 0.0), 1.0 - prediction.p_wait, 1e-12));
        assert!(close(prediction.occupancy, 0.85, 1e-12));
        let unstable = Mmn { agents: 8, ..QUEUE };
        assert_eq!(ErlangC::predict(&unstable), None);
    }

    #[test]
    fn erlang_a_matches_a_reference_computation() {
        // Reference values from an independent computation of the same chain over 3000 states, with
        // patience of mean 120 s.
        let prediction = ErlangA::predict(&QUEUE, 120.0).unwrap();
        assert!(close(prediction.p_wait, 0.286_624_714, 1e-8));
        assert!(close(prediction.p_abandon, 0.091_300_939, 1e-8));
        assert!(close(prediction.mean_wait, 10.956_112_67, 1e-6));
        // The wait of answered calls, confirmed by a discrete-event simulation of 3 million calls
        // (8.60 s, 21.5 % waited).
        assert!(close(prediction.asa, 8.588_505_43, 1e-6));
        assert!(close(prediction.p_wait_answered, 0.214_948_803, 1e-8));
    }

    #[test]
    fn erlang_a_with_patience_equal_to_service_is_an_infinite_server_queue() {
        // With θ = μ the death rate is n·μ in every state: the chain is M/M/∞ and the number of calls in
        // the system is Poisson(A), so P(wait) = P(Poisson(8.5) ≥ 10).
        let prediction = ErlangA::predict(&QUEUE, 300.0).unwrap();
        assert!(close(prediction.p_wait, 0.347_026_342, 1e-8));
    }

    #[test]
    fn erlang_a_tends_to_erlang_c_when_callers_are_patient() {
        let c = ErlangC::predict(&QUEUE).unwrap();
        let a = ErlangA::predict(&QUEUE, 1e9).unwrap();
        assert!(close(a.p_wait, c.p_wait, 1e-4));
        assert!(close(a.asa, c.asa, 1e-2));
        assert!(a.p_abandon < 1e-6);
        assert!(close(a.occupancy, c.occupancy, 1e-6));
    }

    #[test]
    fn erlang_a_is_self_consistent() {
        for (agents, load, patience) in [(10, 8.5, 120.0), (5, 7.0, 60.0), (50, 45.0, 600.0), (1, 0.5, 10.0)] {
            let queue = Mmn { arrival_rate: load / 300.0, mean_service: 300.0, agents };
            let a = ErlangA::predict(&queue, patience).unwrap();
            // Every call is answered or abandons: the served fraction from the walk over positions must
            // equal 1 − θ·E[Lq]/λ from Little's law, which the occupancy expresses.
            let served = a.occupancy * f64::from(agents) / load;
            assert!(close(served, 1.0 - a.p_abandon, 1e-9), "{agents} {load}: {served} vs {}", a.p_abandon);
            assert!(a.p_wait_answered <= a.p_wait + 1e-12);
            assert!((0.0..=1.0).contains(&a.p_wait));
        }
    }

    #[test]
    fn erlang_a_handles_overload_and_large_systems() {
        // Twice as many calls as informants can take: abandons keep the queue finite, and about half
        // the callers give up (reference: 97.81 % wait, 50.18 % abandon).
        let overloaded = Mmn { arrival_rate: 20.0 / 300.0, mean_service: 300.0, agents: 10 };
        let a = ErlangA::predict(&overloaded, 180.0).unwrap();
        assert!(close(a.p_wait, 0.978_148_802, 1e-8), "{}", a.p_wait);
        assert!(close(a.p_abandon, 0.501_795_400, 1e-8), "{}", a.p_abandon);
        let large = Mmn { arrival_rate: 9_500.0 / 300.0, mean_service: 300.0, agents: 10_000 };
        let a = ErlangA::predict(&large, 120.0).unwrap();
        assert!(a.p_wait.is_finite() && a.p_wait < 0.01);
        assert_eq!(ErlangA::predict(&QUEUE, 0.0), None);
    }
}
