//! Informants' standing kept in etcd, so that an informant whose member
//! dies logs in again where it was: in its pause, or in its wrap-up until
//! it ends.
//!
//! One key per informant that has one, `<prefix>/informants/<tenant>/<id>`,
//! holding its [`Standing`] as JSON; an informant that is free has no key.
//! The informant's actor writes it, fenced by its claim on the informant
//! (see [`Ownership::fenced_patiently`]), before it answers the request
//! that changed it. A call the informant is on is kept by the call's queue
//! (see `calls.rs`), and an offer is not kept: its queue offers the call
//! again.

use std::sync::Arc;

use etcd_client::{Client, TxnOp};
use relais_routing::informant::Standing;
use serde::{Deserialize, Serialize};

use crate::cluster::ownership::{Epoch, Ownership};
use crate::cluster::placement::{ActorKind, actor_key};
use crate::error::{NodeError, Result};

/// The stored form of a standing.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrap_up_until_ms: Option<u64>,
}

impl Stored {
    fn of(standing: &Standing) -> Self {
        match standing {
            Standing::Free => Self::default(),
            Standing::Paused { reason } => Self { paused: Some(reason.to_string()), ..Self::default() },
            Standing::WrapUp { until_ms } => Self { wrap_up_until_ms: Some(*until_ms), ..Self::default() },
        }
    }

    fn standing(self) -> Standing {
        match (self.paused, self.wrap_up_until_ms) {
            (Some(reason), _) => Standing::Paused { reason: reason.into() },
            (None, Some(until_ms)) => Standing::WrapUp { until_ms },
            (None, None) => Standing::Free,
        }
    }
}

/// Reads and writes informants' standing.
pub struct StandingStore {
    client: Client,
    root: String,
    ownership: Ownership,
}

impl StandingStore {
    pub fn new(client: Client, prefix: &str, ownership: Ownership) -> Self {
        Self { client, root: format!("{}/informants/", prefix.trim_end_matches('/')), ownership }
    }

    fn key(&self, tenant: &str, informant_id: &str) -> String {
        format!("{}{tenant}/{informant_id}", self.root)
    }

    /// The informant's standing as last written; free when none is.
    pub async fn read(&self, tenant: &str, informant_id: &str) -> Result<Standing> {
        let mut client = self.client.clone();
        let read = tokio::time::timeout(crate::node::ASK_TIMEOUT, client.get(self.key(tenant, informant_id), None))
            .await
            .map_err(|_| NodeError::Unavailable("etcd did not answer in time".into()))?
            .map_err(|e| NodeError::Unavailable(format!("reading an informant's standing: {e}")))?;
        let Some(kv) = read.kvs().first() else { return Ok(Standing::Free) };
        let stored: Stored = serde_json::from_slice(kv.value())
            .map_err(|e| NodeError::Internal(format!("stored standing of {informant_id}: {e}")))?;
        Ok(stored.standing())
    }

    /// Writes the informant's standing under its claim (`epoch`); a free
    /// one deletes the key.
    pub async fn write(
        &self,
        tenant: &Arc<str>,
        informant_id: &Arc<str>,
        epoch: Epoch,
        standing: &Standing,
    ) -> Result<()> {
        let key = self.key(tenant, informant_id);
        let op = match standing {
            Standing::Free => TxnOp::delete(key, None),
            _ => TxnOp::put(
                key,
                serde_json::to_vec(&Stored::of(standing)).map_err(|e| NodeError::Internal(e.to_string()))?,
                None,
            ),
        };
        let claim = actor_key(ActorKind::Informant, tenant, informant_id);
        self.ownership.fenced_patiently(&claim, epoch, vec![op]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standings_round_trip_through_their_stored_form() {
        for standing in [
            Standing::Free,
            Standing::Paused { reason: "lunch".into() },
            Standing::WrapUp { until_ms: 1_700_000_000_000 },
        ] {
            let bytes = serde_json::to_vec(&Stored::of(&standing)).unwrap();
            let back: Stored = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.standing(), standing);
        }
        assert!(serde_json::from_slice::<Stored>(br#"{"pasued": "x"}"#).is_err(), "unknown fields are refused");
    }
}
