//! Wall-clock time in milliseconds since the Unix epoch: the unit every
//! routing rule uses, so that arrival times mean the same on every node.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}
