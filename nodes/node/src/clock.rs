//! Time in milliseconds since the Unix epoch: the unit every routing rule
//! uses, so that arrival times mean the same on every node.
//!
//! The node reads the wall clock once, on the first call, and from then on
//! adds the monotonic clock's progress to it. A step of the host's wall
//! clock (NTP setting a clock that was far off, an operator's `date -s`)
//! therefore does not move the node's time: it never runs backward, so a
//! new call is never stamped as older than the calls already waiting, and
//! it never leaps forward over offers' deadlines, wrap-ups and waiting
//! calls' maximum waits. NTP's gradual corrections (slewing) reach it, as
//! they reach the monotonic clock. The price: a node whose wall clock was
//! wrong when it started keeps that error until it restarts.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock's reading and the monotonic clock's at the first call.
static ORIGIN: OnceLock<(u64, Instant)> = OnceLock::new();

pub fn now_ms() -> u64 {
    let (wall_ms, at) = *ORIGIN.get_or_init(|| (wall_ms(), Instant::now()));
    wall_ms.saturating_add(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_time_starts_at_the_wall_clock_and_never_runs_backward() {
        let before = wall_ms();
        let mut last = now_ms();
        assert!(last + 1_000 >= before && last <= wall_ms() + 1_000, "{last} against the wall clock {before}");
        for _ in 0..10_000 {
            let now = now_ms();
            assert!(now >= last, "{now} after {last}");
            last = now;
        }
    }
}
