//! The Informant service: informants' desktops log in, receive offers on
//! their session stream, and answer them.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use ractor::{ActorRef, RpcReplyPort};
use relais_proto::v1 as pb;
use relais_proto::v1::informant_client::InformantClient;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::actors::informant::{InformantMsg, SESSION_BUFFER, StatusReply};
use crate::error::{NodeError, Result};
use crate::forward;
use crate::identity::identity_of;
use crate::node::{Node, PeerAddr, ask};
use crate::services::{convert, grpc};
use crate::validate;

pub struct InformantService {
    node: Arc<Node>,
}

impl InformantService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The member that serves the informant, when it is not this node.
    fn owner<T>(&self, request: &Request<T>, informant_id: &str) -> Result<Option<PeerAddr>, Status> {
        let tenant = identity_of(request)?.tenant;
        let id = validate::informant_id("informant_id", informant_id)?;
        Ok(forward::route(self.node.place_of_informant(&tenant, &id)?, request.metadata())?)
    }

    fn actor<T>(&self, request: &Request<T>, informant_id: &str) -> Result<ActorRef<InformantMsg>, Status> {
        let tenant = identity_of(request)?.tenant;
        let id = validate::informant_id("informant_id", informant_id)?;
        Ok(self.node.informant_actor(&tenant, &id)?)
    }

    async fn command(
        &self,
        actor: ActorRef<InformantMsg>,
        build: impl FnOnce(RpcReplyPort<Result<StatusReply>>) -> InformantMsg,
    ) -> Result<Response<pb::InformantStatus>, Status> {
        grpc(ask(&actor, build).await.and_then(|r| r).map(|s| convert::status_reply(&s)))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::InformantEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::informant_server::Informant for InformantService {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let id = validate::informant_id("informant_id", &request.get_ref().informant_id)?;
        if let Some(owner) = forward::route(self.node.place_of_informant(&tenant, &id)?, request.metadata())? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).login(r).await })
                .await;
        }
        let skills = request.into_inner().skills;
        // Carried to its end even when the desktop stops waiting: a login
        // cut off between reserving the id and starting the actor (while
        // it claims the informant in etcd) would leave the id reserved
        // with no actor behind it, refusing every later login.
        let (node, login_id) = (self.node.clone(), id.clone());
        let status = tokio::spawn(async move { node.login(&tenant, login_id, &skills).await })
            .await
            .map_err(|e| NodeError::Internal(format!("login task: {e}")))??;
        tracing::info!(informant_id = %id, "informant logged in");
        Ok(Response::new(convert::status_reply(&status)))
    }

    type SessionStream = EventStream;

    async fn session(&self, request: Request<pb::SessionRequest>) -> Result<Response<EventStream>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            let permit = self.node.stream_permit()?;
            return self
                .node
                .forwarder
                .stream(&owner, request, permit, |c, r| async move { InformantClient::new(c).session(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let permit = self.node.stream_permit()?;
        let (tx, rx) = tokio::sync::mpsc::channel(SESSION_BUFFER);
        ask(&actor, |reply| InformantMsg::Attach { sink: tx, reply }).await?;
        let id = request.into_inner().informant_id;
        let node = self.node.clone();
        let stream = ReceiverStream::new(rx)
            .map(move |out| {
                let _held = &permit;
                Ok(convert::informant_event(&id, &out))
            })
            // A session ended by a drain tells the desktop to log in again.
            .chain(futures::stream::once(async move { node.is_draining() }).filter_map(|draining| {
                draining
                    .then(|| Err(Status::unavailable("this member is draining: log in again (through another member)")))
            }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn accept_offer(&self, request: Request<pb::OfferReply>) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).accept_offer(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let offer_id = validate::offer_id("offer_id", &request.get_ref().offer_id)?;
        self.command(actor, |reply| InformantMsg::Accept { offer_id, reply }).await
    }

    async fn decline_offer(&self, request: Request<pb::OfferReply>) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).decline_offer(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let offer_id = validate::offer_id("offer_id", &request.get_ref().offer_id)?;
        self.command(actor, |reply| InformantMsg::Decline { offer_id, reply }).await
    }

    async fn finish_call(
        &self,
        request: Request<pb::FinishCallRequest>,
    ) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).finish_call(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        self.command(actor, |reply| InformantMsg::Finish { call_id, reply }).await
    }

    async fn end_wrap_up(
        &self,
        request: Request<pb::InformantRequest>,
    ) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).end_wrap_up(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        self.command(actor, |reply| InformantMsg::EndWrapUp { reply }).await
    }

    async fn pause(&self, request: Request<pb::PauseRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).pause(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let reason = validate::reason("reason", &request.get_ref().reason)?;
        self.command(actor, |reply| InformantMsg::Pause { reason, reply }).await
    }

    async fn resume(&self, request: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).resume(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        self.command(actor, |reply| InformantMsg::Resume { reply }).await
    }

    async fn logout(&self, request: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).logout(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        let response = self.command(actor, |reply| InformantMsg::Logout { reply }).await?;
        tracing::info!(informant_id = %response.get_ref().informant_id, "informant logged out");
        Ok(response)
    }

    async fn get_informant(
        &self,
        request: Request<pb::InformantRequest>,
    ) -> Result<Response<pb::InformantStatus>, Status> {
        if let Some(owner) = self.owner(&request, &request.get_ref().informant_id)? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { InformantClient::new(c).get_informant(r).await })
                .await;
        }
        let actor = self.actor(&request, &request.get_ref().informant_id)?;
        grpc(ask(&actor, |reply| InformantMsg::Get { reply }).await.map(|s| convert::status_reply(&s)))
    }
}
