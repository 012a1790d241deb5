//! The cluster: membership in etcd and the placement of actors over the
//! live members.
//!
//! A node started without etcd endpoints is a cluster of one that never
//! stops serving; with them, it serves only while its [`LeaseWindow`]
//! proves its membership.

pub mod calls;
pub mod catalog_store;
pub mod detector;
pub mod isolation;
pub mod lease;
pub mod membership;
pub mod owners;
pub mod ownership;
pub mod placement;
pub mod placer;
pub mod standing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use lease::LeaseWindow;
pub use membership::{JoinOptions, MemberInfo, Members, Membership};
use tokio::sync::watch;

use crate::cluster::calls::CallStore;
use crate::cluster::catalog_store::CatalogStore;
use crate::cluster::owners::Owners;
use crate::cluster::ownership::Ownership;
use crate::cluster::placer::Placer;
use crate::cluster::standing::StandingStore;
use crate::config::NodeConfig;
use crate::error::Result;
use crate::node::Node;
use crate::peer::Peers;

/// This node's place in the cluster.
pub struct Cluster {
    me: MemberInfo,
    window: Arc<LeaseWindow>,
    members: Option<watch::Receiver<Arc<Members>>>,
    membership: tokio::sync::Mutex<Option<Membership>>,
    /// Follows the claims in etcd (in a cluster).
    owners_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = &self.owners_task {
            task.abort();
        }
    }
}

impl Cluster {
    /// Joins the cluster the configuration names, or stands alone without
    /// one. `bound` is the server's address, advertised unless the
    /// configuration says otherwise. In a cluster, `node` first mirrors the
    /// configuration kept in etcd; the node registers only then, so that a
    /// member is listed once it can serve.
    pub async fn start(config: &NodeConfig, bound: SocketAddr, node: &Arc<Node>) -> Result<Arc<Self>> {
        let me = MemberInfo {
            node_id: config.node_name(bound.port()),
            address: config.advertised_address(bound),
            started_unix_ms: crate::clock::now_ms(),
            lease_id: 0,
            draining: false,
        };
        if !config.clustered() {
            return Ok(Arc::new(Self {
                me,
                window: Arc::new(LeaseWindow::always()),
                members: None,
                membership: tokio::sync::Mutex::new(None),
                owners_task: None,
            }));
        }
        let options = JoinOptions {
            endpoints: config.etcd_endpoints.clone(),
            prefix: config.cluster_prefix.clone(),
            node_id: me.node_id.clone(),
            address: me.address.clone(),
            lease_ttl: Duration::from_secs(config.lease_ttl_s),
            metrics: node.directory.metrics().clone(),
        };
        let client = Membership::connect(&options).await?;
        let catalog = CatalogStore::new(client.clone(), &config.cluster_prefix);
        node.mirror(catalog).await?;
        let membership = Membership::join_with(client.clone(), options).await?;
        let owners = Owners::new(&config.cluster_prefix);
        let owners_task = tokio::spawn(owners.clone().follow(client.clone()));
        let ownership = Ownership::new(client.clone(), &config.cluster_prefix, &me.node_id, membership.lease_id());
        let calls = Arc::new(CallStore::new(
            client.clone(),
            &config.cluster_prefix,
            ownership.clone(),
            node.directory.metrics().clone(),
        ));
        let standing = Arc::new(StandingStore::new(client, &config.cluster_prefix, ownership.clone()));
        let placer = Arc::new(Placer {
            me: me.node_id.as_str().into(),
            owners: owners.clone(),
            members: membership.subscribe(),
            ownership,
            lease_id: membership.lease_id(),
            window: membership.window(),
            aside: membership.aside(),
            poke: tokio::sync::Notify::new(),
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
            joined: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let peers = Peers::new(&me.node_id, membership.window(), owners, membership.subscribe());
        node.place_with(placer, peers, calls, standing);
        Ok(Arc::new(Self {
            me,
            window: membership.window(),
            members: Some(membership.subscribe()),
            membership: tokio::sync::Mutex::new(Some(membership)),
            owners_task: Some(owners_task),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.me.node_id
    }

    pub fn clustered(&self) -> bool {
        self.members.is_some()
    }

    /// The window in which this node may serve.
    pub fn window(&self) -> &Arc<LeaseWindow> {
        &self.window
    }

    /// The live members; without etcd, this node alone.
    pub fn members(&self) -> Members {
        match &self.members {
            Some(members) => members.borrow().as_ref().clone(),
            None => Members { revision: 0, nodes: BTreeMap::from([(self.me.node_id.clone(), self.me.clone())]) },
        }
    }

    /// Tells the other members this one drains (in a cluster): placement
    /// gives it nothing from now on.
    pub async fn drain(&self) -> Result<()> {
        match self.membership.lock().await.as_ref() {
            Some(membership) => membership.drain().await,
            None => Ok(()),
        }
    }

    /// Leaves the cluster at once (the lease is revoked), if in one.
    pub async fn leave(&self) {
        if let Some(mut membership) = self.membership.lock().await.take() {
            membership.leave().await;
        }
    }
}
