//! The supervisor of every queue and informant actor of the node.
//!
//! A queue actor that fails is started again with its configuration (its
//! calls were in its memory: on a single node they are lost with it, which
//! the cluster's durable state removes). An informant actor that fails is
//! forgotten: the desktop sees its session end and logs in again.
//!
//! The supervisor keeps a record of each queue actor, to start it again. It
//! keeps none per informant (a node may host a hundred thousand): a failed
//! informant's entry is found in the directory by its actor id.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::directory::Directory;

/// Starts a queue again: (tenant, queue id, supervisor).
pub type RestartQueue = Arc<dyn Fn(Arc<str>, Arc<str>, ActorCell) + Send + Sync>;

pub enum SupervisorMsg {
    /// A queue actor, to start again if it fails.
    WatchQueue { actor: ActorId, tenant: Arc<str>, queue_id: Arc<str> },
}

pub struct SupervisorArgs {
    pub directory: Arc<Directory>,
    /// Called to start a queue again after a failure.
    pub restart_queue: RestartQueue,
}

pub struct SupervisorState {
    directory: Arc<Directory>,
    restart_queue: RestartQueue,
    /// Queue actors by id: (tenant, queue id).
    queues: HashMap<ActorId, (Arc<str>, Arc<str>)>,
}

pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState { directory: args.directory, restart_queue: args.restart_queue, queues: HashMap::new() })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::WatchQueue { actor, tenant, queue_id } => {
                state.queues.insert(actor, (tenant, queue_id));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some((tenant, queue_id)) = state.queues.remove(&cell.get_id()) {
                    tracing::error!(tenant = %tenant, queue_id = %queue_id, error = %error, "queue actor failed; starting it again");
                    state.directory.unregister_queue(&tenant, &queue_id);
                    (state.restart_queue)(tenant, queue_id, myself.get_cell());
                } else if let Some((tenant, informant_id)) = state.directory.forget_informant_actor(cell.get_id()) {
                    tracing::error!(tenant = %tenant, informant_id = %informant_id, error = %error, "informant actor failed");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.queues.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
