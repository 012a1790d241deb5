//! Test support: a real `relais-node` process on a free loopback port, and
//! real tonic clients that carry an identity.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod etcd;

/// Runs a request until it stops answering `UNAVAILABLE` (a member failing
/// over), for up to ten seconds; the request is built again each time.
#[allow(unused_macros)]
macro_rules! retrying {
    ($what:expr, $request:expr) => {
        $crate::support::retrying!($what, $request, tonic::Code::Unavailable)
    };
    // Also retries the codes listed (e.g. NOT_FOUND while a queue is taken over).
    ($what:expr, $request:expr, $($code:path),+) => {{
        let start = std::time::Instant::now();
        loop {
            match $request.await {
                Ok(r) => break r.into_inner(),
                Err(e)
                    if matches!(e.code(), $($code)|+) && start.elapsed() < std::time::Duration::from_secs(10) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{}: {e:?}", $what),
            }
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use retrying;

use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use relais_proto::v1::gateway_client::GatewayClient;
use relais_proto::v1::informant_client::InformantClient;
use tonic::Request;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A node process, killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub addr: String,
    /// Where it serves `/metrics`, when started with `--metrics-listen`.
    pub metrics_addr: Option<String>,
    pub stderr_path: PathBuf,
}

impl NodeProcess {
    /// Starts `relais-node` on 127.0.0.1:0 with `args` and waits for its
    /// "listening on" line (after a "metrics on" line, when it serves
    /// `/metrics`).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relais-node"));
        command.args(["--listen", "127.0.0.1:0", "--tick-ms", "50"]).args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        Self::launch(command)
    }

    /// Starts `command`, a server that prints a "listening on" line as
    /// `relais-node` does (the benchmarks' floor server, for one).
    pub fn launch(mut command: Command) -> Self {
        let dir = std::env::temp_dir().join(format!("relais-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let stderr_path = dir.join("node.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut child = command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("start relais-node");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let metrics_addr = line.trim().strip_prefix("relais-node metrics on ").map(str::to_string);
        if metrics_addr.is_some() {
            line.clear();
            stdout.read_line(&mut line).expect("read listening line");
        }
        let addr = line
            .trim()
            .strip_prefix("relais-node listening on ")
            .unwrap_or_else(|| panic!("unexpected line: {line:?}"))
            .to_string();
        Self { child, addr, metrics_addr, stderr_path }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("url").connect().await.expect("connect")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit;
    /// returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> Option<bool> {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failed test shows what each of its nodes said.
            eprintln!("----- {} ({})\n{}", self.addr, self.stderr_path.display(), self.logs());
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(nanos) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Adds the identity headers the node's interceptor reads.
#[derive(Clone)]
pub struct As {
    pub tenant: Option<String>,
    pub role: Option<String>,
}

impl Interceptor for As {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        if let Some(t) = &self.tenant {
            request.metadata_mut().insert("x-relais-tenant", t.parse().expect("ascii"));
        }
        if let Some(r) = &self.role {
            request.metadata_mut().insert("x-relais-role", r.parse().expect("ascii"));
        }
        Ok(request)
    }
}

pub type Gateway = GatewayClient<InterceptedService<Channel, As>>;
pub type Desk = InformantClient<InterceptedService<Channel, As>>;
pub type Admin = AdminClient<InterceptedService<Channel, As>>;

fn as_(tenant: &str, role: &str) -> As {
    As { tenant: Some(tenant.into()), role: Some(role.into()) }
}

/// Clients of one tenant.
pub struct Clients {
    pub gateway: Gateway,
    pub desk: Desk,
    pub admin: Admin,
}

impl Clients {
    /// Clients of a node at `url` that connect on first use: a node that is
    /// down makes each request fail instead.
    pub fn at(url: &str, tenant: &str) -> Self {
        let channel = Channel::from_shared(url.to_string()).expect("url").connect_lazy();
        Self {
            gateway: GatewayClient::with_interceptor(channel.clone(), as_(tenant, "gateway")),
            desk: InformantClient::with_interceptor(channel.clone(), as_(tenant, "informant")),
            admin: AdminClient::with_interceptor(channel, as_(tenant, "admin")),
        }
    }

    pub async fn new(node: &NodeProcess, tenant: &str) -> Self {
        let channel = node.channel().await;
        Self {
            gateway: GatewayClient::with_interceptor(channel.clone(), as_(tenant, "gateway")),
            desk: InformantClient::with_interceptor(channel.clone(), as_(tenant, "informant")),
            admin: AdminClient::with_interceptor(channel, as_(tenant, "admin")),
        }
    }
}

/// A member of the cluster in `etcd` (lease TTL 5 s), logging debug.
pub fn member(etcd: &etcd::EtcdProcess, id: &str) -> NodeProcess {
    NodeProcess::start(
        &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "5"],
        &[("RUST_LOG", "info,ractor=warn,relais_node=debug")],
    )
}

/// Waits until `node` lists `n` members.
pub async fn until_members(node: &NodeProcess, n: usize) {
    let mut c = Clients::new(node, "cai").await;
    let start = std::time::Instant::now();
    while c.admin.list_members(pb::ListRequest {}).await.map_or(0, |r| r.into_inner().members.len()) < n {
        assert!(start.elapsed() < Duration::from_secs(10), "every member sees the {n} members");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn skill(name: &str, proficiency: u32) -> pb::Skill {
    pb::Skill { name: name.into(), proficiency }
}

/// A queue needing `skill_name` at `min`, with short timers for tests.
pub fn queue(id: &str, skill_name: &str, min: u32) -> pb::QueueConfig {
    pb::QueueConfig {
        id: id.into(),
        required_skills: vec![skill(skill_name, min)],
        offer_timeout_ms: 5_000,
        ..Default::default()
    }
}

pub fn offer(call_id: &str, queue_id: &str) -> pb::OfferCallRequest {
    pb::OfferCallRequest { call_id: call_id.into(), queue_id: queue_id.into(), priority: 1, ..Default::default() }
}

/// Offers a call as a gateway does in a cluster: `UNAVAILABLE` (a member
/// failing over, a queue being placed) is retried with the same call id,
/// for up to five seconds.
pub async fn offer_retrying(c: &mut Clients, request: pb::OfferCallRequest) -> pb::OfferCallResponse {
    let start = std::time::Instant::now();
    loop {
        match c.gateway.offer_call(request.clone()).await {
            Ok(r) => return r.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable && start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("offer {}: {e:?}", request.call_id),
        }
    }
}

pub async fn apply(c: &mut Clients, queues: Vec<pb::QueueConfig>) {
    c.admin.apply_plan(pb::RoutingPlan { queues, informants: vec![], prune: false }).await.expect("plan applies");
}

/// An informant's desktop: its session stream. Every event read is checked
/// to follow the previous one's sequence with no gap.
pub struct Session {
    pub id: String,
    pub stream: tonic::Streaming<pb::InformantEvent>,
    /// The sequence of the last event read.
    pub last_sequence: Option<u64>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Session {
    pub async fn open(c: &mut Clients, id: &str, skills: Vec<pb::Skill>) -> Self {
        c.desk.login(pb::LoginRequest { informant_id: id.into(), skills }).await.expect("login");
        Self::attach(c, id).await
    }

    /// Opens the session of an informant logged in already.
    pub async fn attach(c: &mut Clients, id: &str) -> Self {
        let stream =
            c.desk.session(pb::SessionRequest { informant_id: id.into() }).await.expect("session").into_inner();
        Self { id: id.into(), stream, last_sequence: None }
    }

    /// Checks that `event` follows the last one read, and notes it.
    fn numbered(&mut self, event: pb::InformantEvent) -> pb::informant_event::Kind {
        if let Some(last) = self.last_sequence {
            assert_eq!(event.sequence, last + 1, "session events are numbered with no gap");
        }
        self.last_sequence = Some(event.sequence);
        event.kind.expect("kind")
    }

    /// The next event, within five seconds.
    pub async fn next(&mut self) -> pb::informant_event::Kind {
        let event = tokio::time::timeout(WAIT, self.stream.message())
            .await
            .expect("informant event in time")
            .expect("stream ok")
            .expect("stream open");
        self.numbered(event)
    }

    /// Skips events until an offer; returns (offer_id, call_id).
    pub async fn next_offer(&mut self) -> (String, String) {
        loop {
            if let pb::informant_event::Kind::Offer(o) = self.next().await {
                return (o.offer_id, o.call_id);
            }
        }
    }

    /// Skips events until an offer, however long it takes; panics when the
    /// stream ends.
    pub async fn next_offer_forever(&mut self) -> (String, String) {
        loop {
            let event = self.stream.message().await.expect("stream ok").expect("stream open");
            if let pb::informant_event::Kind::Offer(o) = self.numbered(event) {
                return (o.offer_id, o.call_id);
            }
        }
    }

    /// Skips events until a state change to `state`.
    pub async fn until_state(&mut self, state: pb::InformantState) -> pb::InformantStatus {
        loop {
            if let pb::informant_event::Kind::State(s) = self.next().await
                && s.state == state as i32
            {
                return s;
            }
        }
    }

    /// Waits until no event arrives for `quiet`; returns what came.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<pb::informant_event::Kind> {
        let mut out = Vec::new();
        while let Ok(Some(Ok(Some(e)))) = tokio::time::timeout(quiet, async { Some(self.stream.message().await) }).await
        {
            out.push(self.numbered(e));
        }
        out
    }
}

/// A call's event stream.
pub struct Watch {
    stream: tonic::Streaming<pb::CallEvent>,
}

impl Watch {
    pub async fn open(c: &mut Clients, call_id: &str, after: u64) -> Self {
        let stream = c
            .gateway
            .watch_call(pb::WatchCallRequest { call_id: call_id.into(), after_sequence: after })
            .await
            .expect("watch")
            .into_inner();
        Self { stream }
    }

    pub async fn next(&mut self) -> Option<pb::CallEvent> {
        tokio::time::timeout(WAIT, self.stream.message()).await.expect("call event in time").expect("stream ok")
    }

    /// Every event until the stream ends.
    pub async fn rest(&mut self) -> Vec<pb::CallEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// A short name for each event kind, to compare histories.
pub fn kind_name(e: &pb::CallEvent) -> &'static str {
    use pb::call_event::Kind;
    match e.kind.as_ref().expect("kind") {
        Kind::Queued(_) => "queued",
        Kind::Offered(_) => "offered",
        Kind::Connected(_) => "connected",
        Kind::Completed(_) => "completed",
        Kind::Abandoned(_) => "abandoned",
        Kind::Deflected(_) => "deflected",
        Kind::Transferred(_) => "transferred",
    }
}

/// Event kinds, with consecutive position updates folded into one.
pub fn history(events: &[pb::CallEvent]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in events {
        let name = kind_name(e);
        if name == "queued" && out.last() == Some(&"queued") {
            continue;
        }
        out.push(name);
    }
    out
}

pub fn state_of(status: &pb::CallStatus) -> pb::CallState {
    pb::CallState::try_from(status.state).expect("known state")
}

/// The live call records etcd holds (not the last records of ended calls,
/// kept a while): key → value.
#[allow(dead_code)]
pub async fn stored_calls(etcd: &mut etcd_client::Client) -> Vec<(String, Vec<u8>)> {
    use prost::Message;
    use relais_proto::peer::v1::{StoredCall, call_event::Kind};
    let read = etcd.get("/relais/calls/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    read.kvs()
        .iter()
        .filter(|kv| {
            let stored = StoredCall::decode(kv.value()).unwrap();
            let last = stored.call.and_then(|c| c.events.last().cloned()).and_then(|e| e.kind);
            !matches!(last, Some(Kind::Completed(_) | Kind::Abandoned(_) | Kind::Deflected(_)))
        })
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value().to_vec()))
        .collect()
}
