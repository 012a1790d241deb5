//! A queue's recent service history: service level, speed of answer,
//! abandonment, occupancy, and the wait announced to new callers.

use std::collections::VecDeque;

use crate::Millis;

/// How far back the recent figures look.
pub const WINDOW_MS: Millis = 15 * 60 * 1000;
/// Most outcomes remembered inside the window (the oldest are forgotten
/// first), so memory stays bounded at any call rate.
pub const MAX_OUTCOMES: usize = 10_000;
/// How far back the answer rate behind wait estimates looks.
pub const RATE_WINDOW_MS: Millis = 5 * 60 * 1000;
/// Handle time assumed before any call has completed.
pub const DEFAULT_HANDLE_MS: Millis = 300_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Answered { waited_ms: Millis },
    Abandoned { waited_ms: Millis },
}

#[derive(Clone, Debug, Default)]
pub struct ServiceHistory {
    pub offered_total: u64,
    pub answered_total: u64,
    pub abandoned_total: u64,
    pub deflected_total: u64,
    outcomes: VecDeque<(Millis, Outcome)>,
    /// When calls were answered, for the answer rate (oldest first).
    answered_at: VecDeque<Millis>,
    /// (ended at, talk time) of completed calls.
    talks: VecDeque<(Millis, Millis)>,
}

/// Figures over the recent window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecentFigures {
    /// Answered within the threshold / answered; 1 when nothing was answered.
    pub service_level: f64,
    pub asa_ms: Millis,
    /// Abandoned / (answered + abandoned); 0 when neither happened.
    pub abandonment_rate: f64,
}

impl ServiceHistory {
    pub fn offered(&mut self) {
        self.offered_total += 1;
    }

    pub fn deflected(&mut self) {
        self.deflected_total += 1;
    }

    pub fn answered(&mut self, now: Millis, waited_ms: Millis) {
        self.answered_total += 1;
        push_bounded(&mut self.answered_at, now);
        self.push_outcome(now, Outcome::Answered { waited_ms });
    }

    pub fn abandoned(&mut self, now: Millis, waited_ms: Millis) {
        self.abandoned_total += 1;
        self.push_outcome(now, Outcome::Abandoned { waited_ms });
    }

    pub fn talked(&mut self, now: Millis, talk_ms: Millis) {
        push_bounded(&mut self.talks, (now, talk_ms));
        self.forget_before(now);
    }

    fn push_outcome(&mut self, now: Millis, outcome: Outcome) {
        push_bounded(&mut self.outcomes, (now, outcome));
        self.forget_before(now);
    }

    fn forget_before(&mut self, now: Millis) {
        let horizon = now.saturating_sub(WINDOW_MS);
        forget_older(&mut self.outcomes, horizon, |(at, _)| *at);
        forget_older(&mut self.talks, horizon, |(at, _)| *at);
        forget_older(&mut self.answered_at, now.saturating_sub(RATE_WINDOW_MS), |at| *at);
    }

    pub fn recent(&self, now: Millis, threshold_ms: Millis) -> RecentFigures {
        let horizon = now.saturating_sub(WINDOW_MS);
        let (mut answered, mut within, mut waited_sum, mut abandoned) = (0u64, 0u64, 0u64, 0u64);
        for (_, outcome) in self.outcomes.iter().filter(|(at, _)| *at >= horizon) {
            match outcome {
                Outcome::Answered { waited_ms } => {
                    answered += 1;
                    waited_sum += waited_ms;
                    if *waited_ms <= threshold_ms {
                        within += 1;
                    }
                }
                Outcome::Abandoned { .. } => abandoned += 1,
            }
        }
        RecentFigures {
            service_level: if answered == 0 { 1.0 } else { within as f64 / answered as f64 },
            asa_ms: waited_sum.checked_div(answered).unwrap_or(0),
            abandonment_rate: if answered + abandoned == 0 {
                0.0
            } else {
                abandoned as f64 / (answered + abandoned) as f64
            },
        }
    }

    /// Mean talk time of recently completed calls.
    pub fn mean_handle_ms(&self) -> Millis {
        let total: Millis = self.talks.iter().map(|(_, t)| t).sum();
        total.checked_div(self.talks.len() as u64).unwrap_or(DEFAULT_HANDLE_MS)
    }

    /// Talk time completed inside the window.
    pub fn recent_talk_ms(&self, now: Millis) -> Millis {
        let horizon = now.saturating_sub(WINDOW_MS);
        self.talks.iter().filter(|(at, _)| *at >= horizon).map(|(_, t)| *t).sum()
    }

    /// Estimated wait of the call at 1-based `position`, announced to
    /// callers. From the recent answer rate when at least two calls were
    /// answered in the last five minutes (calls ahead divided by answers per
    /// millisecond); otherwise from the mean handle time shared among the
    /// `informants` serving the queue.
    pub fn estimated_wait_ms(&self, now: Millis, position: u32, informants: usize, available: usize) -> Millis {
        let ahead = u64::from(position.saturating_sub(1));
        if available > ahead as usize {
            return 0;
        }
        let horizon = now.saturating_sub(RATE_WINDOW_MS);
        let start = self.answered_at.partition_point(|at| *at < horizon);
        let recent = self.answered_at.len() - start;
        let per_call_ms = if recent >= 2 {
            let span = now.saturating_sub(self.answered_at[start]).max(1);
            span / recent as u64
        } else {
            self.mean_handle_ms() / informants.max(1) as u64
        };
        (ahead + 1) * per_call_ms
    }
}

/// Appends, forgetting the oldest entry past `MAX_OUTCOMES`.
fn push_bounded<T>(deque: &mut VecDeque<T>, value: T) {
    if deque.len() >= MAX_OUTCOMES {
        deque.pop_front();
    }
    deque.push_back(value);
}

/// Forgets the entries (oldest first) stamped before `horizon`.
fn forget_older<T>(deque: &mut VecDeque<T>, horizon: Millis, at: impl Fn(&T) -> Millis) {
    while deque.front().is_some_and(|entry| at(entry) < horizon) {
        deque.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_level_asa_and_abandonment() {
        let mut h = ServiceHistory::default();
        h.answered(1_000, 5_000);
        h.answered(2_000, 30_000);
        h.answered(3_000, 10_000);
        h.abandoned(4_000, 60_000);
        let f = h.recent(5_000, 20_000);
        assert!((f.service_level - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.asa_ms, 15_000);
        assert!((f.abandonment_rate - 0.25).abs() < 1e-9);
        assert_eq!(h.answered_total, 3);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let mut h = ServiceHistory::default();
        h.answered(0, 100_000);
        h.answered(WINDOW_MS + 10, 1_000);
        let f = h.recent(WINDOW_MS + 10, 20_000);
        assert_eq!(f.service_level, 1.0);
        assert_eq!(f.asa_ms, 1_000);
    }

    #[test]
    fn wait_estimate_follows_the_answer_rate() {
        let mut h = ServiceHistory::default();
        // Ten answers over the last 100 s: one every 10 s.
        for i in 0..10 {
            h.answered(1_000_000 + i * 10_000, 0);
        }
        let now = 1_000_000 + 100_000;
        assert_eq!(h.estimated_wait_ms(now, 3, 5, 0), 30_000);
        // A free informant for every call ahead: no wait.
        assert_eq!(h.estimated_wait_ms(now, 3, 5, 3), 0);
    }

    #[test]
    fn wait_estimate_without_history_uses_handle_time() {
        let h = ServiceHistory::default();
        assert_eq!(h.estimated_wait_ms(0, 2, 10, 0), 2 * DEFAULT_HANDLE_MS / 10);
    }
}
