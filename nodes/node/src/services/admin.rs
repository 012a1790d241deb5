//! The Admin service: operators configure queues and informants' profiles,
//! apply routing plans, read live statistics, and see which actors each
//! member hosts.

use std::sync::Arc;

use ractor::ActorRef;
use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use tonic::{Request, Response, Status};

use crate::actors::informant::InformantMsg;
use crate::actors::queue::QueueMsg;
use crate::cluster::Cluster;
use crate::cluster::placement::ActorKind;
use crate::error::{NodeError, Result};
use crate::forward;
use crate::identity::identity_of;
use crate::node::{Node, ask};
use crate::services::{convert, grpc};
use crate::validate;

pub struct AdminService {
    node: Arc<Node>,
    cluster: Arc<Cluster>,
}

impl AdminService {
    pub fn new(node: Arc<Node>, cluster: Arc<Cluster>) -> Self {
        Self { node, cluster }
    }

    async fn queue_stats(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<pb::QueueStats> {
        let entry = self
            .node
            .catalog
            .queue(tenant, queue_id)
            .ok_or_else(|| NodeError::not_found("queue", queue_id.as_ref()))?;
        let actor = self.node.queue_actor(tenant, queue_id)?;
        let figures = ask(&actor, |reply| QueueMsg::Figures { reply }).await?;
        Ok(convert::queue_stats(
            queue_id,
            entry.parsed.service_level_target,
            entry.parsed.service_level_threshold_ms,
            &figures,
        ))
    }

    /// The tenant's actors this node hosts: each of `kinds` listed (and
    /// asked for its figures) unless `counts_only`, every kind counted.
    async fn hosted_actors(&self, tenant: &Arc<str>, kinds: &[ActorKind], counts_only: bool) -> pb::ListActorsResponse {
        let directory = &self.node.directory;
        let mut queues: Vec<(Arc<str>, ActorRef<QueueMsg>)> = self
            .node
            .catalog
            .queues(tenant)
            .into_iter()
            .filter_map(|entry| directory.queue(tenant, &entry.parsed.id).map(|actor| (entry.parsed.id, actor)))
            .collect();
        let mut informants = directory.informants_of(tenant);
        let mut out = pb::ListActorsResponse {
            node_id: self.node.me().node_id.to_string(),
            address: self.node.me().address.clone(),
            tenant: tenant.to_string(),
            actors: Vec::new(),
            queues: u32::try_from(queues.len()).unwrap_or(u32::MAX),
            informants: u32::try_from(informants.len()).unwrap_or(u32::MAX),
        };
        if counts_only {
            return out;
        }
        let epoch = |kind, id: &Arc<str>| directory.epoch(kind, tenant, id).unwrap_or(0);
        if kinds.contains(&ActorKind::Queue) {
            queues.sort_by(|a, b| a.0.cmp(&b.0));
            // Every actor at once: one slow to answer costs its timeout once.
            let figures = futures::future::join_all(
                queues.iter().map(|(_, actor)| ask(actor, |reply| QueueMsg::Figures { reply })),
            )
            .await;
            for ((id, _), figures) in queues.iter().zip(figures) {
                // A queue that does not answer in time is listed without figures.
                let figures = figures.ok();
                out.actors.push(pb::HostedActor {
                    kind: pb::ActorKind::Queue as i32,
                    id: id.to_string(),
                    epoch: epoch(ActorKind::Queue, id),
                    waiting: figures.as_ref().map_or(0, |f| f.waiting),
                    offered: figures.as_ref().map_or(0, |f| f.offered),
                    connected: figures.as_ref().map_or(0, |f| f.connected),
                    state: pb::InformantState::Unspecified as i32,
                });
            }
        }
        if kinds.contains(&ActorKind::Informant) {
            informants.sort_by(|a, b| a.0.cmp(&b.0));
            let statuses = futures::future::join_all(
                informants.iter().map(|(_, actor)| ask(actor, |reply| InformantMsg::Get { reply })),
            )
            .await;
            for ((id, _), status) in informants.iter().zip(statuses) {
                let state =
                    status.map_or(pb::InformantState::Unspecified, |s| convert::informant_state(s.snapshot.state));
                out.actors.push(pb::HostedActor {
                    kind: pb::ActorKind::Informant as i32,
                    id: id.to_string(),
                    epoch: epoch(ActorKind::Informant, id),
                    state: state as i32,
                    ..Default::default()
                });
            }
        }
        out
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_queue(&self, request: Request<pb::QueueConfig>) -> Result<Response<pb::QueueConfig>, Status> {
        let tenant = identity_of(&request)?.tenant;
        grpc(self.node.create_queue(&tenant, request.into_inner()).await)
    }

    async fn update_queue(&self, request: Request<pb::QueueConfig>) -> Result<Response<pb::QueueConfig>, Status> {
        let tenant = identity_of(&request)?.tenant;
        grpc(self.node.update_queue(&tenant, request.into_inner()).await)
    }

    async fn delete_queue(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let id = validate::queue_id("id", &request.get_ref().id)?;
        grpc(self.node.delete_queue(&tenant, &id).await.map(|()| pb::DeleteResponse {}))
    }

    async fn list_queues(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let queues = self.node.catalog.queues(&tenant).into_iter().map(|q| q.wire).collect();
        Ok(Response::new(pb::ListQueuesResponse { queues }))
    }

    async fn create_informant(
        &self,
        request: Request<pb::InformantProfile>,
    ) -> Result<Response<pb::InformantProfile>, Status> {
        let tenant = identity_of(&request)?.tenant;
        grpc(self.node.put_profile(&tenant, request.into_inner(), true).await)
    }

    async fn update_informant(
        &self,
        request: Request<pb::InformantProfile>,
    ) -> Result<Response<pb::InformantProfile>, Status> {
        let tenant = identity_of(&request)?.tenant;
        grpc(self.node.put_profile(&tenant, request.into_inner(), false).await)
    }

    async fn delete_informant(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let id = validate::informant_id("id", &request.get_ref().id)?;
        grpc(self.node.delete_profile(&tenant, &id).await.map(|()| pb::DeleteResponse {}))
    }

    async fn list_informants(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListInformantsResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        Ok(Response::new(pb::ListInformantsResponse { informants: self.node.catalog.profiles(&tenant) }))
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::QueueStats>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let id = validate::queue_id("queue_id", &request.get_ref().queue_id)?;
        // A queue lives on one member: its figures are there.
        if let Some(owner) = forward::route(self.node.place_of_queue(&tenant, &id)?, request.metadata())? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { AdminClient::new(c).get_queue_stats(r).await })
                .await;
        }
        grpc(self.queue_stats(&tenant, &id).await)
    }

    async fn get_stats(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let mut out = pb::StatsResponse::default();
        for entry in self.node.catalog.queues(&tenant) {
            // In a cluster, each member tells of the queues it hosts.
            if self.node.config.clustered() && self.node.directory.queue(&tenant, &entry.parsed.id).is_none() {
                continue;
            }
            out.queues.push(self.queue_stats(&tenant, &entry.parsed.id).await?);
        }
        for (_, actor) in self.node.directory.informants_of(&tenant) {
            // An informant logging out meanwhile is simply left out.
            if let Ok(status) = ask(&actor, |reply| InformantMsg::Get { reply }).await {
                out.informants.push(convert::informant_stats(&status.snapshot));
            }
        }
        out.informants.sort_by(|a, b| a.informant_id.cmp(&b.informant_id));
        Ok(Response::new(out))
    }

    async fn apply_plan(&self, request: Request<pb::RoutingPlan>) -> Result<Response<pb::ApplyPlanResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let response = self.node.apply_plan(&tenant, request.into_inner()).await;
        if let Ok(r) = &response {
            tracing::info!(tenant = %tenant, created = r.created, updated = r.updated, deleted = r.deleted, unchanged = r.unchanged, "plan applied");
        }
        grpc(response)
    }

    async fn list_members(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        identity_of(&request)?;
        let members = self.cluster.members();
        let me = self.cluster.node_id();
        Ok(Response::new(pb::ListMembersResponse {
            members: members
                .nodes
                .values()
                .map(|m| pb::Member {
                    node_id: m.node_id.clone(),
                    address: m.address.clone(),
                    started_unix_ms: i64::try_from(m.started_unix_ms).unwrap_or(i64::MAX),
                    answering: m.node_id == me,
                    lease: if m.lease_id == 0 { String::new() } else { format!("{:x}", m.lease_id) },
                })
                .collect(),
            clustered: self.cluster.clustered(),
            revision: members.revision,
            serving_for_ms: self.cluster.clustered().then(|| {
                self.cluster.window().remaining().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
        }))
    }

    async fn list_actors(
        &self,
        request: Request<pb::ListActorsRequest>,
    ) -> Result<Response<pb::ListActorsResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let kinds: &[ActorKind] = match pb::ActorKind::try_from(request.get_ref().kind) {
            Ok(pb::ActorKind::Unspecified) => &[ActorKind::Queue, ActorKind::Informant],
            Ok(pb::ActorKind::Queue) => &[ActorKind::Queue],
            Ok(pb::ActorKind::Informant) => &[ActorKind::Informant],
            Err(_) => return Err(NodeError::invalid("kind", "unknown value").into()),
        };
        Ok(Response::new(self.hosted_actors(&tenant, kinds, request.get_ref().counts_only).await))
    }

    async fn drain(&self, request: Request<pb::DrainRequest>) -> Result<Response<pb::DrainResponse>, Status> {
        identity_of(&request)?;
        // Placement hears first, so that this member claims nothing more.
        self.cluster.drain().await?;
        self.node.drain();
        self.node.poke_placer();
        let (calls, informants) = self.node.live_work().await?;
        Ok(Response::new(pb::DrainResponse {
            live_calls: u32::try_from(calls).unwrap_or(u32::MAX),
            informants_logged_in: u32::try_from(informants).unwrap_or(u32::MAX),
        }))
    }
}
