//! A member cut off from most of its peers, though not from etcd, steps
//! aside.
//!
//! Such a member keeps its lease, so it keeps its claims: its queues stay
//! on it, served only by its own informants, and every other member's
//! requests and proposals for them fail until the link heals. Fencing keeps
//! that safe, not available. So a member that reaches fewer than half of
//! the members etcd lists (itself included) for [`GRACE`] *steps aside*:
//! it stops serving at once ([`Aside::Leaving`]), hands each of its queues
//! over as a drain does (unanswered proposals taken back and told, last
//! batch written, claim released: the members it cannot reach take them
//! over from etcd), stops its informants' actors so that their desktops'
//! sessions end and they log in elsewhere, then revokes its lease
//! ([`Aside::Out`]; at the latest [`LEAVE_LIMIT`] after it began). It
//! registers again once it reaches more than half of the members listed
//! counting itself, for [`REJOIN_HOLD`].
//!
//! Reaching a peer means following its health stream right now (the crash
//! detector's streams; see [`super::detector`]); an HTTP/2 keep-alive
//! breaks a stream whose link went silent.
//!
//! A tie (two members of four, one of two) is not a minority: a member
//! never steps aside in a cluster of two, nor for a peer that is merely
//! paused while the others answer. When several members are in a minority
//! at once (a three-way split), they do not all step aside together: each
//! waits [`STAGGER`] more per listed member whose id is greater than its
//! own, and looks again, so that the first one's leaving turns the others'
//! minority into a tie. And since a member aside rejoins only with a strict
//! majority counting itself, the one that stays does not pull the others
//! back: no flapping. (This needs etcd to report a revocation within the
//! stagger: it takes milliseconds.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::lease::LeaseWindow;
use crate::cluster::membership::Members;

/// How long a member must reach only a minority before it steps aside.
pub const GRACE: Duration = Duration::from_millis(700);
/// Added to [`GRACE`] per listed member with a greater id (at most
/// [`MAX_STAGGERS`] times).
pub const STAGGER: Duration = Duration::from_millis(200);
const MAX_STAGGERS: u32 = 4;
/// How long a member aside must reach a majority before it registers again.
pub const REJOIN_HOLD: Duration = Duration::from_secs(1);
/// Longest time a member stepping aside spends handing its queues over
/// before its lease is revoked anyway.
pub const LEAVE_LIMIT: Duration = Duration::from_secs(2);
/// How often the rule is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Which peers this member follows, and whether each one's health stream
/// is up now. A peer not followed (beyond the detector's limit) counts as
/// reached: nothing says otherwise.
#[derive(Debug, Default)]
pub struct Reach(Mutex<HashMap<String, bool>>);

impl Reach {
    pub fn set(&self, node_id: &str, up: bool) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(node_id.to_string(), up);
    }

    pub fn forget(&self, node_id: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(node_id);
    }

    /// The followed peers whose stream is down.
    pub fn unreached(&self) -> BTreeSet<String> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().filter(|(_, up)| !**up).map(|(id, _)| id.clone()).collect()
    }
}

/// Where this member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aside {
    /// A member like any other (or registering again).
    No,
    /// Stepping aside: not serving, handing its queues over.
    Leaving,
    /// Aside: its queues handed over, its lease revoked.
    Out,
}

/// What the rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    StepAside,
    Rejoin,
}

/// The rule, pure: fed with what this member sees, in time.
#[derive(Clone, Debug, Default)]
pub struct Isolation {
    aside: bool,
    /// Since when the condition for the next move has held, and how long
    /// it must hold (the stagger counts the members listed when it began:
    /// those that leave meanwhile must not hurry the others).
    since_ms: Option<(u64, u64)>,
}

impl Isolation {
    pub fn is_aside(&self) -> bool {
        self.aside
    }

    /// Looks at the members etcd lists (`listed`, with or without this
    /// member `me`) and the peers this member does not reach at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, me: &str, listed: &[&str], unreached: &BTreeSet<String>) -> Option<Move> {
        let others: Vec<&str> = listed.iter().copied().filter(|id| *id != me).collect();
        let reached = others.iter().filter(|id| !unreached.contains(**id)).count();
        // Counting this member among the listed: in, it is listed; aside,
        // it would be once registered again.
        let total = others.len() + 1;
        let reached = reached + 1;
        let (holds, wait) = if self.aside {
            (reached * 2 > total, REJOIN_HOLD)
        } else {
            let greater = u32::try_from(others.iter().filter(|id| **id > me).count()).unwrap_or(u32::MAX);
            (reached * 2 < total, GRACE + STAGGER * greater.min(MAX_STAGGERS))
        };
        if !holds {
            self.since_ms = None;
            return None;
        }
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let (since, wait) = *self.since_ms.get_or_insert((now_ms, wait));
        if now_ms.saturating_sub(since) < wait {
            return None;
        }
        self.since_ms = None;
        self.aside = !self.aside;
        Some(if self.aside { Move::StepAside } else { Move::Rejoin })
    }
}

/// Applies the rule to this member until the member list's sender goes:
/// `aside` tells the placer (which hands the queues over, stops the
/// actors, then says [`Aside::Out`]) and the lease keeper (which revokes
/// the lease once out, and registers again once back to [`Aside::No`]).
/// The window closes at once, before either acts.
pub async fn watch_isolation(
    me: String,
    mut members: watch::Receiver<Arc<Members>>,
    reach: Arc<Reach>,
    window: Arc<LeaseWindow>,
    aside: watch::Sender<Aside>,
) {
    let started = tokio::time::Instant::now();
    let mut rule = Isolation::default();
    let mut ticker = tokio::time::interval(LOOK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = members.changed() => if changed.is_err() { return },
        }
        let view = members.borrow().clone();
        if view.revision == 0 {
            continue;
        }
        let listed: Vec<&str> = view.nodes.keys().map(String::as_str).collect();
        let unreached = reach.unreached();
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match rule.observe(now_ms, &me, &listed, &unreached) {
            Some(Move::StepAside) => {
                tracing::warn!(
                    listed = listed.len(),
                    unreached = ?unreached,
                    "this member reaches fewer than half of the members: stepping aside (not serving; its queues handed over, then its lease revoked)"
                );
                window.lost();
                aside.send_replace(Aside::Leaving);
            }
            Some(Move::Rejoin) => {
                tracing::info!(listed = listed.len(), "this member reaches most members again: registering again");
                aside.send_replace(Aside::No);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = GRACE.as_millis() as u64;
    const S: u64 = STAGGER.as_millis() as u64;
    const R: u64 = REJOIN_HOLD.as_millis() as u64;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_member_that_reaches_a_minority_for_its_grace_steps_aside() {
        let mut rule = Isolation::default();
        let listed = ["a", "b", "c"];
        // "c" has the greatest id: no stagger.
        assert_eq!(rule.observe(0, "c", &listed, &set(&["a", "b"])), None);
        assert_eq!(rule.observe(G - 1, "c", &listed, &set(&["a", "b"])), None);
        assert_eq!(rule.observe(G, "c", &listed, &set(&["a", "b"])), Some(Move::StepAside));
        assert!(rule.is_aside());
    }

    #[test]
    fn a_minority_must_last_the_whole_grace() {
        let mut rule = Isolation::default();
        let listed = ["a", "b", "c"];
        assert_eq!(rule.observe(0, "c", &listed, &set(&["a", "b"])), None);
        // One peer answers again for a moment: the clock starts over.
        assert_eq!(rule.observe(G / 2, "c", &listed, &set(&["a"])), None);
        assert_eq!(rule.observe(G, "c", &listed, &set(&["a", "b"])), None);
        assert_eq!(rule.observe(G + G / 2, "c", &listed, &set(&["a", "b"])), None);
        assert_eq!(rule.observe(2 * G, "c", &listed, &set(&["a", "b"])), Some(Move::StepAside));
    }

    #[test]
    fn lower_ids_wait_longer() {
        let mut rule = Isolation::default();
        let listed = ["a", "b", "c"];
        assert_eq!(rule.observe(0, "a", &listed, &set(&["b", "c"])), None);
        assert_eq!(rule.observe(G + 2 * S - 1, "a", &listed, &set(&["b", "c"])), None);
        assert_eq!(rule.observe(G + 2 * S, "a", &listed, &set(&["b", "c"])), Some(Move::StepAside));
    }

    #[test]
    fn a_majority_or_a_tie_never_steps_aside() {
        let mut rule = Isolation::default();
        for t in 0..20 {
            // Two of three: one peer paused or cut.
            assert_eq!(rule.observe(t * G, "a", &["a", "b", "c"], &set(&["c"])), None);
            // A cluster of two, its peer out of reach.
            assert_eq!(rule.observe(t * G, "a", &["a", "b"], &set(&["b"])), None);
            assert_eq!(rule.observe(t * G, "b", &["a", "b"], &set(&["a"])), None);
            // Two of four.
            assert_eq!(rule.observe(t * G, "d", &["a", "b", "c", "d"], &set(&["a", "b"])), None);
            // Alone.
            assert_eq!(rule.observe(t * G, "a", &["a"], &set(&[])), None);
        }
    }

    #[test]
    fn a_member_aside_rejoins_only_with_a_strict_majority_held() {
        let mut rule = Isolation { aside: true, since_ms: None };
        // Listed: the two others, reached: one of them. With itself, 2 of 3.
        assert_eq!(rule.observe(0, "c", &["a", "b"], &set(&["b"])), None);
        assert_eq!(rule.observe(R - 1, "c", &["a", "b"], &set(&["b"])), None);
        assert_eq!(rule.observe(R, "c", &["a", "b"], &set(&["b"])), Some(Move::Rejoin));
        // 1 of 2 (itself and one member it cannot reach) is not enough.
        let mut rule = Isolation { aside: true, since_ms: None };
        for t in 0..20 {
            assert_eq!(rule.observe(t * R, "a", &["b"], &set(&["b"])), None);
        }
        // Nobody listed: someone must serve.
        assert_eq!(rule.observe(100 * R, "a", &[], &set(&[])), None);
        assert_eq!(rule.observe(101 * R, "a", &[], &set(&[])), Some(Move::Rejoin));
    }

    /// Members `ids`, all of them listed and none reaching another (a full
    /// split, etcd reachable by all), deciding every `tick` ms; a member's
    /// stepping aside or rejoining reaches the others' member list
    /// `delay` ms later. Returns each member's final standing and how many
    /// moves happened in the last half of the run.
    fn split(ids: &[&'static str], delay: u64, tick: u64, until: u64) -> (Vec<bool>, usize) {
        let mut rules: Vec<Isolation> = ids.iter().map(|_| Isolation::default()).collect();
        // (time a move becomes visible, member, listed after it)
        let mut pending: Vec<(u64, usize, bool)> = Vec::new();
        let mut listed: Vec<bool> = vec![true; ids.len()];
        let mut late_moves = 0;
        let mut now = 0;
        while now <= until {
            pending.retain(|(at, i, is_listed)| {
                if *at <= now {
                    listed[*i] = *is_listed;
                    false
                } else {
                    true
                }
            });
            let view: Vec<&str> = ids.iter().zip(&listed).filter(|(_, l)| **l).map(|(id, _)| *id).collect();
            for (i, rule) in rules.iter_mut().enumerate() {
                let unreached: BTreeSet<String> =
                    ids.iter().filter(|id| **id != ids[i]).map(|id| id.to_string()).collect();
                if let Some(change) = rule.observe(now, ids[i], &view, &unreached) {
                    pending.push((now + delay, i, change == Move::Rejoin));
                    if now > until / 2 {
                        late_moves += 1;
                    }
                }
            }
            now += tick;
        }
        (rules.iter().map(|r| !r.is_aside()).collect(), late_moves)
    }

    #[test]
    fn a_three_way_split_settles_with_one_member_serving_and_no_flapping() {
        let (serving, late_moves) = split(&["a", "b", "c"], 20, 100, 60_000);
        // "c" stepped aside first; "a" and "b" then tie and stay.
        assert_eq!(serving, vec![true, true, false]);
        assert_eq!(late_moves, 0);
    }

    #[test]
    fn splits_settle_with_members_serving_and_no_flapping() {
        // etcd reports a revocation within the stagger (tens of ms here).
        let (serving, late_moves) = split(&["a", "b", "c"], S - 50, 100, 60_000);
        assert_eq!(serving, vec![true, true, false]);
        assert_eq!(late_moves, 0);
        // Five ways: "e", "d", then "c" step aside; "a" and "b" tie.
        let (serving, late_moves) = split(&["a", "b", "c", "d", "e"], 20, 100, 60_000);
        assert_eq!(serving, vec![true, true, false, false, false]);
        assert_eq!(late_moves, 0);
    }
}
