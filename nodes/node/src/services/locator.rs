//! The Locator service: which member serves a queue, a logged-in informant
//! or a call. Any role of a tenant may ask.

use std::sync::Arc;

use relais_proto::v1 as pb;
use relais_proto::v1::locate_request::Target;
use relais_proto::v1::locator_client::LocatorClient;
use tonic::{Request, Response, Status};

use crate::error::{NodeError, Result};
use crate::forward;
use crate::identity::identity_of;
use crate::node::{Node, Place};
use crate::validate;

pub struct LocatorService {
    node: Arc<Node>,
}

impl LocatorService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Where `target` is served.
    async fn place(&self, tenant: &Arc<str>, target: Option<&Target>) -> Result<Place> {
        match target {
            None => Err(NodeError::invalid("target", "one of queue_id, informant_id or call_id is required")),
            Some(Target::QueueId(id)) => self.node.place_of_queue(tenant, &validate::queue_id("queue_id", id)?),
            Some(Target::InformantId(id)) => {
                self.node.place_of_informant(tenant, &validate::informant_id("informant_id", id)?)
            }
            Some(Target::CallId(id)) => self.node.place_of_call(tenant, &validate::call_id("call_id", id)?).await,
        }
    }

    /// NOT_FOUND unless `target`, served here, exists: a configured queue,
    /// a logged-in informant, a live or remembered call.
    fn check_here(&self, tenant: &Arc<str>, target: &Target) -> Result<()> {
        match target {
            Target::QueueId(id) => self.node.queue_actor(tenant, &id.as_str().into()).map(drop),
            Target::InformantId(id) => self.node.informant_actor(tenant, &id.as_str().into()).map(drop),
            Target::CallId(id) => match self.node.directory.call(tenant, &id.as_str().into()) {
                Some(_) => Ok(()),
                None => Err(NodeError::not_found("call", id.as_str())),
            },
        }
    }
}

#[tonic::async_trait]
impl pb::locator_server::Locator for LocatorService {
    async fn locate(&self, request: Request<pb::LocateRequest>) -> Result<Response<pb::LocateResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let place = self.place(&tenant, request.get_ref().target.as_ref()).await?;
        if let Some(owner) = forward::route(place, request.metadata())? {
            // The owner knows whether the actor exists, and names itself.
            let mut response = self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { LocatorClient::new(c).locate(r).await })
                .await?;
            response.get_mut().here = false;
            return Ok(response);
        }
        if let Some(target) = &request.get_ref().target {
            self.check_here(&tenant, target)?;
        }
        let me = self.node.me();
        Ok(Response::new(pb::LocateResponse {
            node_id: me.node_id.to_string(),
            address: me.address.clone(),
            here: true,
        }))
    }
}
