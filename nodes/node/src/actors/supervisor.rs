//! The supervisor of every queue and informant actor of the node.
//!
//! A queue actor that fails is started again with its configuration (its
//! calls were in its memory: on a single node they are lost with it, which
//! the cluster's durable state removes). An informant actor that fails is
//! forgotten: the desktop sees its session end and logs in again.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::directory::Directory;

/// What a supervised actor is.
#[derive(Clone, Debug)]
pub enum Child {
    Queue { tenant: Arc<str>, queue_id: Arc<str> },
    Informant { tenant: Arc<str>, informant_id: Arc<str> },
}

/// Starts a queue again: (tenant, queue id, supervisor).
pub type RestartQueue = Arc<dyn Fn(Arc<str>, Arc<str>, ActorCell) + Send + Sync>;

pub enum SupervisorMsg {
    Watch { actor: ActorId, child: Child },
}

pub struct SupervisorArgs {
    pub directory: Arc<Directory>,
    /// Called to start a queue again after a failure.
    pub restart_queue: RestartQueue,
}

pub struct SupervisorState {
    directory: Arc<Directory>,
    restart_queue: RestartQueue,
    children: HashMap<ActorId, Child>,
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
        Ok(SupervisorState { directory: args.directory, restart_queue: args.restart_queue, children: HashMap::new() })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Watch { actor, child } => {
                state.children.insert(actor, child);
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
                let Some(child) = state.children.remove(&cell.get_id()) else { return Ok(()) };
                match child {
                    Child::Queue { tenant, queue_id } => {
                        tracing::error!(tenant = %tenant, queue_id = %queue_id, error = %error, "queue actor failed; restarting it");
                        state.directory.unregister_queue(&tenant, &queue_id);
                        (state.restart_queue)(tenant, queue_id, myself.get_cell());
                    }
                    Child::Informant { tenant, informant_id } => {
                        tracing::error!(tenant = %tenant, informant_id = %informant_id, error = %error, "informant actor failed");
                        state.directory.unregister_informant(&tenant, &informant_id);
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
