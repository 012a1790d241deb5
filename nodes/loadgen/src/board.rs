//! The simulator's own view of its informants: each one's state as the node last reported it (in the
//! reply to the informant's own request, or on its session for what the informant did not cause), the
//! time spent in each state, and which idle informants a new call is counting on.
//!
//! The board serves three purposes:
//! * occupancy, from the time informants spend in each state;
//! * the live view's counts when the node's statistics are unavailable;
//! * telling whether an informant was idle when a call was offered, so that the routing latency is only
//!   measured for calls that did not have to wait for someone to become free. A call *claims* the
//!   longest-idle eligible informant (the node's default choice), so two calls offered together cannot
//!   both count on the same person. This is an approximation from the outside: replies and session
//!   events arrive a little after the node's state changes, so a few calls may be misjudged either way.
//!
//! The board is behind one short-lived mutex; nothing awaits while holding it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use relais_proto::v1::InformantState;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// States indexed by their protobuf number (0 = unspecified ... 6 = paused).
const STATES: usize = 7;

/// Who may take a call: a queue index and a caller's language.
type Eligibility = (usize, Option<String>);

struct Slot {
    state: InformantState,
    since: Instant,
    claimed_by: Option<u64>,
    time_in_state: [Duration; STATES],
}

struct Inner {
    slots: Vec<Slot>,
    /// For each queue and language of the profile's call mix, the informants that can take such a call.
    eligible: HashMap<Eligibility, Vec<usize>>,
}

/// See the module documentation.
pub(crate) struct Board {
    inner: Mutex<Inner>,
}

/// Total informant time in each state, over all informants, in seconds (real seconds on the board,
/// simulated seconds in a [`crate::Summary`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateTimes {
    /// Seconds available.
    pub available_s: f64,
    /// Seconds reserved (an offer pending).
    pub reserved_s: f64,
    /// Seconds on a call.
    pub on_call_s: f64,
    /// Seconds in wrap-up.
    pub wrap_up_s: f64,
    /// Seconds paused.
    pub paused_s: f64,
}

impl StateTimes {
    /// Occupancy: time busy (reserved, on call or in wrap-up) over time logged in and not paused, the
    /// usual contact-centre definition; `None` before anyone was logged in.
    pub fn occupancy(&self) -> Option<f64> {
        let busy = self.reserved_s + self.on_call_s + self.wrap_up_s;
        let staffed = busy + self.available_s;
        (staffed > 0.0).then(|| busy / staffed)
    }
}

/// How many informants are in each state now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateCounts {
    pub offline: u32,
    pub available: u32,
    pub reserved: u32,
    pub on_call: u32,
    pub wrap_up: u32,
    pub paused: u32,
}

impl StateCounts {
    pub(crate) fn add(&mut self, state: InformantState) {
        match state {
            InformantState::Unspecified | InformantState::Offline => self.offline += 1,
            InformantState::Available => self.available += 1,
            InformantState::Reserved => self.reserved += 1,
            InformantState::OnCall => self.on_call += 1,
            InformantState::WrapUp => self.wrap_up += 1,
            InformantState::Paused => self.paused += 1,
        }
    }
}

impl Board {
    /// A board for the profile's informants, all offline, with eligibility precomputed for every call
    /// class.
    pub(crate) fn new(profile: &Profile) -> Self {
        let now = Instant::now();
        let slots = profile
            .informants
            .iter()
            .map(|_| Slot {
                state: InformantState::Offline,
                since: now,
                claimed_by: None,
                time_in_state: [Duration::ZERO; STATES],
            })
            .collect();
        let mut eligible = HashMap::new();
        for class in &profile.classes {
            let queue = &profile.queues[class.queue];
            eligible.entry((class.queue, class.language.clone())).or_insert_with(|| {
                profile
                    .informants
                    .iter()
                    .enumerate()
                    .filter(|(_, informant)| informant.can_serve(queue, class.language.as_deref()))
                    .map(|(index, _)| index)
                    .collect::<Vec<_>>()
            });
        }
        Self { inner: Mutex::new(Inner { slots, eligible }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the board half-updated in a way that matters
        // more than losing the run, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records informant `index`'s new state, as reported by a reply or by its session.
    pub(crate) fn set_state(&self, index: usize, state: InformantState) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(index) else {
            return;
        };
        if slot.state != state {
            slot.time_in_state[slot.state as usize] += now.saturating_duration_since(slot.since);
            slot.state = state;
            slot.since = now;
        }
        if state != InformantState::Available {
            slot.claimed_by = None;
        }
    }

    /// Claims the longest-idle available informant able to take a call of `queue` in `language`, for
    /// call `seq`; returns its index, or `None` when nobody is idle.
    pub(crate) fn claim(&self, queue: usize, language: Option<&str>, seq: u64) -> Option<usize> {
        let mut inner = self.lock();
        let Inner { slots, eligible } = &mut *inner;
        let candidates = eligible.get(&(queue, language.map(str::to_owned)))?;
        let chosen = candidates
            .iter()
            .copied()
            .filter(|&index| {
                let slot = &slots[index];
                slot.state == InformantState::Available && slot.claimed_by.is_none()
            })
            .min_by_key(|&index| slots[index].since)?;
        slots[chosen].claimed_by = Some(seq);
        Some(chosen)
    }

    /// Gives back a claim made by call `seq`, unless the informant has moved on since.
    pub(crate) fn release(&self, index: usize, seq: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(index)
            && slot.claimed_by == Some(seq)
        {
            slot.claimed_by = None;
        }
    }

    /// Time spent in each state by all informants up to now.
    pub(crate) fn state_times(&self) -> StateTimes {
        let now = Instant::now();
        let inner = self.lock();
        let mut totals = [Duration::ZERO; STATES];
        for slot in &inner.slots {
            for (total, spent) in totals.iter_mut().zip(slot.time_in_state) {
                *total += spent;
            }
            totals[slot.state as usize] += now.saturating_duration_since(slot.since);
        }
        let seconds = |state: InformantState| totals[state as usize].as_secs_f64();
        StateTimes {
            available_s: seconds(InformantState::Available),
            reserved_s: seconds(InformantState::Reserved),
            on_call_s: seconds(InformantState::OnCall),
            wrap_up_s: seconds(InformantState::WrapUp),
            paused_s: seconds(InformantState::Paused),
        }
    }

    /// How many informants are in each state now.
    pub(crate) fn counts(&self) -> StateCounts {
        let inner = self.lock();
        let mut counts = StateCounts::default();
        for slot in &inner.slots {
            counts.add(slot.state);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileKind, ProfileOverrides};

    fn board(informants: u32) -> Board {
        let overrides = ProfileOverrides { informants: Some(informants), ..Default::default() };
        Board::new(&Profile::build(ProfileKind::Poisson, &overrides).unwrap())
    }

    #[test]
    fn claims_longest_idle_informants_once_each() {
        let board = board(3);
        assert_eq!(board.claim(0, None, 1), None);
        board.set_state(2, InformantState::Available);
        std::thread::sleep(Duration::from_millis(2));
        board.set_state(0, InformantState::Available);
        // Informant 2 has been idle longest.
        assert_eq!(board.claim(0, None, 1), Some(2));
        assert_eq!(board.claim(0, None, 2), Some(0));
        assert_eq!(board.claim(0, None, 3), None);
        board.release(0, 2);
        assert_eq!(board.claim(0, None, 3), Some(0));
        // A claim ends when the informant leaves the available state.
        board.set_state(2, InformantState::Reserved);
        board.set_state(2, InformantState::Available);
        assert_eq!(board.claim(0, None, 4), Some(2));
        // Releasing someone else's claim does nothing.
        board.release(2, 99);
        assert_eq!(board.claim(0, None, 5), None);
        // A call class the profile does not have finds nobody.
        assert_eq!(board.claim(0, Some("en"), 6), None);
    }

    #[test]
    fn counts_states_and_accumulates_time() {
        let board = board(2);
        board.set_state(0, InformantState::Available);
        board.set_state(1, InformantState::OnCall);
        let counts = board.counts();
        assert_eq!((counts.available, counts.on_call, counts.offline), (1, 1, 0));
        std::thread::sleep(Duration::from_millis(20));
        let times = board.state_times();
        assert!(times.available_s > 0.015 && times.on_call_s > 0.015);
        let occupancy = times.occupancy().unwrap();
        assert!((occupancy - 0.5).abs() < 0.1, "{occupancy}");
        assert_eq!(StateTimes::default().occupancy(), None);
    }
}
