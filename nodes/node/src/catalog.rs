//! The tenants' configuration: queues and informants' profiles.
//!
//! Held in memory; in a cluster it mirrors what etcd holds
//! (`cluster::catalog_store`), and only that mirror writes to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use relais_proto::v1 as pb;
use relais_routing::QueueConfig;

/// A queue's configuration, as parsed and as given (to echo back).
#[derive(Clone, Debug)]
pub struct QueueEntry {
    pub parsed: QueueConfig,
    pub wire: pb::QueueConfig,
}

#[derive(Debug, Default)]
struct TenantCatalog {
    queues: BTreeMap<Arc<str>, QueueEntry>,
    profiles: BTreeMap<Arc<str>, pb::InformantProfile>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    tenants: RwLock<HashMap<Arc<str>, TenantCatalog>>,
}

impl Catalog {
    fn read<T>(&self, tenant: &str, f: impl FnOnce(Option<&TenantCatalog>) -> T) -> T {
        let guard = self.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get(tenant))
    }

    fn write<T>(&self, tenant: &Arc<str>, f: impl FnOnce(&mut TenantCatalog) -> T) -> T {
        let mut guard = self.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.entry(tenant.clone()).or_default())
    }

    pub fn queue(&self, tenant: &str, id: &str) -> Option<QueueEntry> {
        self.read(tenant, |t| t.and_then(|t| t.queues.get(id).cloned()))
    }

    pub fn queues(&self, tenant: &str) -> Vec<QueueEntry> {
        self.read(tenant, |t| t.map(|t| t.queues.values().cloned().collect()).unwrap_or_default())
    }

    pub fn queue_count(&self, tenant: &str) -> usize {
        self.read(tenant, |t| t.map_or(0, |t| t.queues.len()))
    }

    pub fn put_queue(&self, tenant: &Arc<str>, entry: QueueEntry) {
        self.write(tenant, |t| t.queues.insert(entry.parsed.id.clone(), entry));
    }

    pub fn remove_queue(&self, tenant: &Arc<str>, id: &str) -> Option<QueueEntry> {
        self.write(tenant, |t| t.queues.remove(id))
    }

    pub fn profile(&self, tenant: &str, id: &str) -> Option<pb::InformantProfile> {
        self.read(tenant, |t| t.and_then(|t| t.profiles.get(id).cloned()))
    }

    pub fn profiles(&self, tenant: &str) -> Vec<pb::InformantProfile> {
        self.read(tenant, |t| t.map(|t| t.profiles.values().cloned().collect()).unwrap_or_default())
    }

    pub fn put_profile(&self, tenant: &Arc<str>, profile: pb::InformantProfile) {
        self.write(tenant, |t| t.profiles.insert(profile.id.as_str().into(), profile));
    }

    pub fn remove_profile(&self, tenant: &Arc<str>, id: &str) -> Option<pb::InformantProfile> {
        self.write(tenant, |t| t.profiles.remove(id))
    }
}
