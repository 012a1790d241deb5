//! How long this node may go on serving: the window in which its etcd lease
//! is provably alive.
//!
//! A renewal sent at instant `s` that etcd answers with a TTL of `t` proves
//! the lease alive until at least `s + t`: etcd starts counting the TTL when
//! it receives the renewal, which is after `s`. The node keeps a margin below
//! that and stops serving the moment the window closes, whatever the reason
//! it could not renew (etcd down, a partition, this process paused).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::NodeError;

/// Share of a renewal's TTL that the node trusts; the rest covers the rate
/// at which this machine's clock and etcd's may differ. (`Instant` does not
/// count time the host spends suspended; servers are not suspended.)
const TRUSTED_SHARE: f64 = 0.9;

/// The serving window. A single node on its embedded default (no etcd) is
/// always inside it.
#[derive(Debug)]
pub struct LeaseWindow {
    base: Instant,
    /// Milliseconds after `base` until which the lease is provably alive;
    /// 0 while it is not; `u64::MAX` when the node has no lease to hold.
    until_ms: AtomicU64,
}

impl LeaseWindow {
    /// A window that never closes: the single-node mode.
    pub fn always() -> Self {
        Self { base: Instant::now(), until_ms: AtomicU64::new(u64::MAX) }
    }

    /// A closed window, opened by the first renewal.
    pub fn closed() -> Self {
        Self { base: Instant::now(), until_ms: AtomicU64::new(0) }
    }

    /// Records a renewal sent at `sent` that etcd answered with `ttl`.
    /// A window only moves forward, so a late answer to an old renewal
    /// cannot shorten it.
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        let until = sent + ttl.mul_f64(TRUSTED_SHARE);
        let ms = u64::try_from(until.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX - 1);
        if ms > 0 {
            self.until_ms.fetch_max(ms, Ordering::AcqRel);
        }
    }

    /// The lease is gone (expired or revoked): close the window at once.
    pub fn lost(&self) {
        self.until_ms.store(0, Ordering::Release);
    }

    /// Time left in the window, `None` when it is closed.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::Acquire);
        if until == u64::MAX {
            return Some(Duration::MAX);
        }
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn is_open(&self) -> bool {
        self.remaining().is_some()
    }

    /// `Ok` while the node may serve; otherwise the error every request gets.
    pub fn check(&self) -> Result<(), NodeError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(NodeError::Unavailable(
                "this node is not serving: it cannot prove its cluster membership (etcd unreachable or its lease \
                 lost); retry on another node"
                    .into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instant the window closes, `None` when closed or never closing.
    fn closes_at(window: &LeaseWindow) -> Option<Instant> {
        let until = window.until_ms.load(Ordering::Acquire);
        (until != 0 && until != u64::MAX).then(|| window.base + Duration::from_millis(until))
    }

    #[test]
    fn a_renewal_opens_the_window_for_less_than_its_ttl() {
        let window = LeaseWindow::closed();
        assert!(!window.is_open());
        assert!(window.check().is_err());
        let sent = Instant::now();
        window.renewed(sent, Duration::from_secs(3));
        let closes = closes_at(&window).expect("open");
        let trusted = closes.duration_since(sent);
        assert!(trusted <= Duration::from_millis(2_700), "{trusted:?}");
        assert!(trusted >= Duration::from_millis(2_690), "{trusted:?}");
        assert!(window.check().is_ok());
    }

    #[test]
    fn an_old_renewal_does_not_shorten_the_window_and_loss_closes_it() {
        let window = LeaseWindow::closed();
        let early = Instant::now();
        window.renewed(early + Duration::from_secs(5), Duration::from_secs(3));
        let late = closes_at(&window).expect("open");
        window.renewed(early, Duration::from_secs(3));
        assert_eq!(closes_at(&window), Some(late));
        window.lost();
        assert!(!window.is_open());
    }

    #[test]
    fn a_renewal_too_old_leaves_the_window_closed() {
        let window = LeaseWindow::closed();
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(10)) else { return };
        window.renewed(long_ago, Duration::from_secs(3));
        assert!(!window.is_open());
    }

    #[test]
    fn the_single_node_window_never_closes() {
        let window = LeaseWindow::always();
        assert!(window.is_open());
        assert_eq!(closes_at(&window), None);
    }
}
