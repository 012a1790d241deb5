//! The floor: the public API's lifecycle served with as little work as
//! possible behind it, in a process of its own (the benchmark binary run
//! again with [`ARG`]), on the same transport settings as `relais-node`.
//!
//! It answers `OfferCall`, `Login`, `Session`, `AcceptOffer` and
//! `FinishCall` with the same messages a node sends, from one mutex-guarded
//! first-come first-served line: no identity, no validation beyond what the
//! lifecycle needs, no actors, no skills, no timers, no metrics. Whatever a
//! lifecycle costs it is what the transport and the messages cost; the
//! node's share of the echo ceiling is read against the floor's, measured
//! in the same run. Every other method answers `UNIMPLEMENTED`.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use relais_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The argument that makes the benchmark binary serve the floor.
pub const ARG: &str = "--serve-floor";

/// Session events buffered per desk, as on a node.
const SESSION_BUFFER: usize = 64;

type Events = mpsc::Sender<Result<pb::InformantEvent, Status>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::InformantEvent, Status>> + Send + 'static>>;
type CallEvents = Pin<Box<dyn Stream<Item = Result<pb::CallEvent, Status>> + Send + 'static>>;

/// A call as the line keeps it.
#[derive(Clone)]
struct Call {
    call_id: String,
    queue_id: String,
    priority: u32,
    arrived_ms: i64,
}

#[derive(Default)]
struct Desk {
    skills: Vec<pb::Skill>,
    session: Option<Events>,
    sequence: u64,
    offered: Option<(String, Call)>,
    on_call: Option<Call>,
    handled: u64,
}

#[derive(Default)]
struct Line {
    desks: HashMap<String, Desk>,
    idle: VecDeque<String>,
    waiting: VecDeque<Call>,
    next_offer: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Line {
    /// Offers `call` to `desk_id` on its session.
    fn offer(&mut self, desk_id: &str, call: Call) {
        self.next_offer += 1;
        let offer_id = format!("o-{}", self.next_offer);
        let desk = self.desks.get_mut(desk_id).expect("known desk");
        desk.sequence += 1;
        let event = pb::InformantEvent {
            informant_id: desk_id.to_string(),
            sequence: desk.sequence,
            at_unix_ms: now_ms(),
            kind: Some(pb::informant_event::Kind::Offer(pb::informant_event::Offer {
                offer_id: offer_id.clone(),
                call_id: call.call_id.clone(),
                queue_id: call.queue_id.clone(),
                priority: call.priority,
                expires_in_ms: 15_000,
                ..Default::default()
            })),
        };
        if let Some(session) = &desk.session {
            let _ = session.try_send(Ok(event));
        }
        desk.offered = Some((offer_id, call));
    }

    /// A desk is free: it takes the first waiting call, or waits.
    fn free(&mut self, desk_id: String) {
        match self.waiting.pop_front() {
            Some(call) => self.offer(&desk_id, call),
            None => self.idle.push_back(desk_id),
        }
    }

    fn status(&self, desk_id: &str) -> pb::InformantStatus {
        let desk = &self.desks[desk_id];
        let (state, call_id, offer_id) = match (&desk.offered, &desk.on_call) {
            (_, Some(call)) => (pb::InformantState::OnCall, call.call_id.clone(), String::new()),
            (Some((offer, call)), None) => (pb::InformantState::Reserved, call.call_id.clone(), offer.clone()),
            (None, None) => (pb::InformantState::Available, String::new(), String::new()),
        };
        pb::InformantStatus {
            informant_id: desk_id.to_string(),
            state: state as i32,
            reason: String::new(),
            in_state_ms: 0,
            call_id,
            offer_id,
            calls_handled: desk.handled,
            skills: desk.skills.clone(),
            last_sequence: desk.sequence,
        }
    }
}

#[derive(Clone, Default)]
struct Floor {
    line: Arc<Mutex<Line>>,
}

impl Floor {
    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not served by the floor"))
}

#[tonic::async_trait]
impl pb::gateway_server::Gateway for Floor {
    async fn offer_call(
        &self,
        request: Request<pb::OfferCallRequest>,
    ) -> Result<Response<pb::OfferCallResponse>, Status> {
        let request = request.into_inner();
        let call = Call {
            call_id: request.call_id,
            queue_id: request.queue_id,
            priority: request.priority,
            arrived_ms: now_ms(),
        };
        let mut line = self.line();
        let mut status = pb::CallStatus {
            call_id: call.call_id.clone(),
            queue_id: call.queue_id.clone(),
            priority: call.priority,
            arrived_at_unix_ms: call.arrived_ms,
            ..Default::default()
        };
        match line.idle.pop_front() {
            Some(desk) => {
                line.offer(&desk, call);
                status.state = pb::CallState::Offered as i32;
                status.informant_id = desk;
                status.last_sequence = 2;
            }
            None => {
                line.waiting.push_back(call);
                status.state = pb::CallState::Queued as i32;
                status.position = line.waiting.len() as u32;
                status.last_sequence = 1;
            }
        }
        Ok(Response::new(pb::OfferCallResponse { call: Some(status), created: true }))
    }

    type WatchCallStream = CallEvents;

    async fn watch_call(&self, _: Request<pb::WatchCallRequest>) -> Result<Response<CallEvents>, Status> {
        unimplemented()
    }

    async fn hang_up(&self, _: Request<pb::HangUpRequest>) -> Result<Response<pb::HangUpResponse>, Status> {
        unimplemented()
    }

    async fn mark_vulnerable(
        &self,
        _: Request<pb::MarkVulnerableRequest>,
    ) -> Result<Response<pb::MarkVulnerableResponse>, Status> {
        unimplemented()
    }

    async fn transfer_call(
        &self,
        _: Request<pb::TransferCallRequest>,
    ) -> Result<Response<pb::TransferCallResponse>, Status> {
        unimplemented()
    }

    async fn get_call(&self, _: Request<pb::GetCallRequest>) -> Result<Response<pb::CallStatus>, Status> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl pb::informant_server::Informant for Floor {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        let request = request.into_inner();
        let mut line = self.line();
        if line.desks.contains_key(&request.informant_id) {
            return Err(Status::already_exists("logged in already"));
        }
        line.desks.insert(request.informant_id.clone(), Desk { skills: request.skills, ..Default::default() });
        Ok(Response::new(line.status(&request.informant_id)))
    }

    type SessionStream = EventStream;

    async fn session(&self, request: Request<pb::SessionRequest>) -> Result<Response<EventStream>, Status> {
        let id = request.into_inner().informant_id;
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let mut line = self.line();
        let Some(desk) = line.desks.get_mut(&id) else { return Err(Status::not_found("not logged in")) };
        desk.sequence += 1;
        let sequence = desk.sequence;
        // A desk joins the line when it first opens its session; one that
        // reopens it is in the line, or holds an offer or a call, already.
        let first = desk.session.replace(tx.clone()).is_none();
        let snapshot = line.status(&id);
        let event = pb::InformantEvent {
            informant_id: id.clone(),
            sequence,
            at_unix_ms: now_ms(),
            kind: Some(pb::informant_event::Kind::State(snapshot)),
        };
        tx.try_send(Ok(event)).map_err(|_| Status::internal("session buffer"))?;
        if first {
            line.free(id);
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn accept_offer(&self, request: Request<pb::OfferReply>) -> Result<Response<pb::InformantStatus>, Status> {
        let request = request.into_inner();
        let mut line = self.line();
        let desk = line.desks.get_mut(&request.informant_id).ok_or_else(|| Status::not_found("not logged in"))?;
        match desk.offered.take() {
            Some((offer, call)) if offer == request.offer_id => desk.on_call = Some(call),
            other => {
                desk.offered = other;
                return Err(Status::failed_precondition("no such pending offer"));
            }
        }
        Ok(Response::new(line.status(&request.informant_id)))
    }

    async fn decline_offer(&self, _: Request<pb::OfferReply>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }

    async fn finish_call(
        &self,
        request: Request<pb::FinishCallRequest>,
    ) -> Result<Response<pb::InformantStatus>, Status> {
        let request = request.into_inner();
        let mut line = self.line();
        let desk = line.desks.get_mut(&request.informant_id).ok_or_else(|| Status::not_found("not logged in"))?;
        if desk.on_call.as_ref().is_none_or(|call| call.call_id != request.call_id) {
            return Err(Status::failed_precondition("the informant does not hold this call"));
        }
        desk.on_call = None;
        desk.handled += 1;
        // The reply tells the state before any next offer, as a node's does.
        let status = line.status(&request.informant_id);
        line.free(request.informant_id);
        Ok(Response::new(status))
    }

    async fn end_wrap_up(&self, _: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }

    async fn pause(&self, _: Request<pb::PauseRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }

    async fn resume(&self, _: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }

    async fn logout(&self, _: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }

    async fn get_informant(&self, _: Request<pb::InformantRequest>) -> Result<Response<pb::InformantStatus>, Status> {
        unimplemented()
    }
}

/// Serves the floor on a free loopback port, with one worker thread like
/// the node under test, and prints its address as `relais-node` does.
pub fn serve() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("floor runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("relais-node listening on {}", listener.local_addr().expect("address"));
        let (_reporter, health) = tonic_health::server::health_reporter();
        let floor = Floor::default();
        Server::builder()
            // The node's own transport settings.
            .concurrency_limit_per_connection(relais_node::server::CONCURRENCY_PER_CONNECTION)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(pb::gateway_server::GatewayServer::new(floor.clone()))
            .add_service(pb::informant_server::InformantServer::new(floor))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
            .expect("floor serves");
    });
}
