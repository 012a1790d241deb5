//! `relaisctl`: what operators ask a relais cluster. Each command reads
//! through one node's Admin service (or, for `locate`, its Locator), and
//! through every member's when each tells of its own actors (`stats`,
//! `actors`), and prints a table, or JSON with `--output json`.

use std::fmt::Write as _;

use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use relais_proto::v1::locate_request::Target;
use relais_proto::v1::locator_client::LocatorClient;
use serde::Serialize;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[derive(Clone, Debug, clap::Parser)]
#[command(name = "relaisctl", version, about = "Operate a relais cluster")]
pub struct Args {
    /// Any node of the cluster.
    #[arg(long, env = "RELAIS_TARGET", default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Tenant whose queues and informants to show.
    #[arg(long, env = "RELAIS_TENANT", default_value = "cai")]
    pub tenant: String,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum Cmd {
    /// The cluster's live members.
    Members,
    /// Live statistics of the tenant's queues and informants, on every
    /// member (each member routes the clients connected to it).
    Stats,
    /// Where each of the tenant's queues and logged-in informants lives:
    /// every member lists the actors it hosts.
    Actors {
        /// Only queues, or only informants.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
    },
    /// Drains a member before a restart: it takes no new call or login and
    /// serves the calls it holds; waits until none is left.
    Drain {
        /// The member's node id (see `members`).
        node: String,
        /// Give up after this many seconds (the node stays draining).
        #[arg(long, default_value_t = 1800)]
        timeout_s: u64,
    },
    /// Which member serves a queue, a logged-in informant or a call.
    Locate {
        #[command(flatten)]
        target: LocateTarget,
    },
}

/// A kind of actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Queue,
    Informant,
}

/// What `locate` looks for: exactly one of these.
#[derive(Clone, Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct LocateTarget {
    /// A queue's id.
    #[arg(long)]
    pub queue: Option<String>,
    /// A logged-in informant's id.
    #[arg(long)]
    pub informant: Option<String>,
    /// A call's id.
    #[arg(long)]
    pub call: Option<String>,
}

impl LocateTarget {
    /// The kind of actor, its id, and the request's target.
    fn target(&self) -> anyhow::Result<(&'static str, &str, Target)> {
        Ok(match (&self.queue, &self.informant, &self.call) {
            (Some(id), _, _) => ("queue", id, Target::QueueId(id.clone())),
            (_, Some(id), _) => ("informant", id, Target::InformantId(id.clone())),
            (_, _, Some(id)) => ("call", id, Target::CallId(id.clone())),
            (None, None, None) => anyhow::bail!("one of --queue, --informant or --call is required"),
        })
    }
}

/// Adds an operator's identity to each request.
#[derive(Clone)]
struct Operator {
    tenant: MetadataValue<tonic::metadata::Ascii>,
}

impl tonic::service::Interceptor for Operator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request.metadata_mut().insert("x-relais-tenant", self.tenant.clone());
        request.metadata_mut().insert("x-relais-role", MetadataValue::from_static("admin"));
        Ok(request)
    }
}

type Admin = AdminClient<tonic::service::interceptor::InterceptedService<Channel, Operator>>;

/// A channel to `target`, connected.
async fn connect(target: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(target.to_string())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {target}: {e}"))
}

/// An Admin client for `target` acting as an operator of `tenant`.
async fn admin_client(target: &str, tenant: &str) -> anyhow::Result<Admin> {
    Ok(AdminClient::with_interceptor(connect(target).await?, Operator { tenant: tenant.parse()? }))
}

/// Members' answers by node id, and the members that did not answer, with
/// the reason.
type Answers<T> = (Vec<(String, T)>, Vec<(String, String)>);

/// Asks every member at its own address (each tells of the actors it
/// hosts); a member that does not answer is named with the reason.
async fn ask_members<T, F, Fut>(members: &pb::ListMembersResponse, tenant: &str, ask: F) -> Answers<T>
where
    F: Fn(Admin) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    // All at once: a silent member costs its timeout once, not once per member.
    let asks = members.members.iter().map(|m| {
        let ask = &ask;
        async move {
            let answer = match admin_client(&format!("http://{}", m.address), tenant).await {
                Ok(admin) => ask(admin).await.map_err(|e| e.message().to_string()),
                Err(e) => Err(e.to_string()),
            };
            (m.node_id.clone(), answer)
        }
    });
    let mut answered = Vec::new();
    let mut silent = Vec::new();
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(r) => answered.push((node, r.into_inner())),
            Err(e) => silent.push((node, e)),
        }
    }
    (answered, silent)
}

/// Asks every member of a cluster, or the one node without etcd through
/// the channel already open to it.
async fn ask_every_member<T, F, Fut>(
    admin: &Admin,
    members: &pb::ListMembersResponse,
    tenant: &str,
    ask: F,
) -> anyhow::Result<Answers<T>>
where
    F: Fn(Admin) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    if members.clustered {
        return Ok(ask_members(members, tenant, ask).await);
    }
    let node = members.members.first().map(|m| m.node_id.clone()).unwrap_or_default();
    let r = ask(admin.clone()).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    Ok((vec![(node, r.into_inner())], Vec::new()))
}

/// How many of the tenant's actors a member hosts: `None` when it cannot
/// say (unreachable, or too old to know `ListActors`).
async fn member_actors(address: &str, tenant: &str) -> Option<(u32, u32)> {
    let mut admin = admin_client(&format!("http://{address}"), tenant).await.ok()?;
    let mut request =
        Request::new(pb::ListActorsRequest { kind: pb::ActorKind::Unspecified as i32, counts_only: true });
    request.set_timeout(std::time::Duration::from_secs(1));
    let r = admin.list_actors(request).await.ok()?.into_inner();
    Some((r.queues, r.informants))
}

/// Runs one command and returns what to print.
pub async fn run(args: &Args) -> anyhow::Result<String> {
    let channel = connect(&args.target).await?;
    let operator = Operator { tenant: args.tenant.parse()? };
    let mut admin = AdminClient::with_interceptor(channel.clone(), operator.clone());
    let status = |e: tonic::Status| anyhow::anyhow!("{}: {}", args.target, e.message());
    match args.command {
        Cmd::Locate { ref target } => {
            let (kind, id, target) = target.target()?;
            let mut locator = LocatorClient::with_interceptor(channel, operator);
            let request = pb::LocateRequest { target: Some(target) };
            let r = locator.locate(request).await.map_err(status)?.into_inner();
            Ok(match args.output {
                Output::Table => locate_table(kind, id, &r),
                Output::Json => serde_json::to_string_pretty(&LocateJson {
                    kind,
                    id: id.to_string(),
                    node_id: r.node_id,
                    address: r.address,
                    here: r.here,
                })?,
            })
        }
        Cmd::Members => {
            let r = admin.list_members(pb::ListRequest {}).await.map_err(status)?.into_inner();
            let health = futures::future::join_all(r.members.iter().map(|m| member_health(&m.address))).await;
            let actors =
                futures::future::join_all(r.members.iter().map(|m| member_actors(&m.address, &args.tenant))).await;
            Ok(match args.output {
                Output::Table => members_table(&r, &health, &actors),
                Output::Json => serde_json::to_string_pretty(&MembersJson::new(&r, &health, &actors))?,
            })
        }
        Cmd::Drain { ref node, timeout_s } => {
            let members = admin.list_members(pb::ListRequest {}).await.map_err(status)?.into_inner();
            let member = members
                .members
                .iter()
                .find(|m| &m.node_id == node)
                .ok_or_else(|| anyhow::anyhow!("no member {node:?}; see relaisctl members"))?;
            // The member that answered is reached as it was; another one at
            // the address it registered.
            let mut drained = if member.answering {
                admin
            } else {
                admin_client(&format!("http://{}", member.address), &args.tenant).await?
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
            let mut last = None;
            loop {
                let r = match drained.drain(pb::DrainRequest {}).await {
                    Ok(r) => r.into_inner(),
                    // A passing failure (a queue slow to answer its count):
                    // ask again rather than let a caller stop a busy node.
                    Err(e)
                        if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                            && std::time::Instant::now() < deadline =>
                    {
                        eprintln!("{node}: {}; asking again", e.message());
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => anyhow::bail!("{node}: {}", e.message()),
                };
                if r.live_calls == 0 {
                    return Ok(format!(
                        "{node} drained: no live calls ({} informants still logged in); stop it now\n",
                        r.informants_logged_in
                    ));
                }
                if last != Some(r.live_calls) {
                    eprintln!("{node}: draining, {} live calls", r.live_calls);
                    last = Some(r.live_calls);
                }
                if std::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "{node} still holds {} live calls after {timeout_s} s; it stays draining",
                        r.live_calls
                    );
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        Cmd::Stats => {
            let members = admin.list_members(pb::ListRequest {}).await.map_err(status)?.into_inner();
            let (answered, silent) = ask_every_member(&admin, &members, &args.tenant, |mut admin| async move {
                admin.get_stats(pb::ListRequest {}).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.target))?;
            Ok(match args.output {
                Output::Table => stats_table(&answered, &silent),
                Output::Json => serde_json::to_string_pretty(&StatsJson::new(&answered, &silent))?,
            })
        }
        Cmd::Actors { kind } => {
            let members = admin.list_members(pb::ListRequest {}).await.map_err(status)?.into_inner();
            let kind = match kind {
                None => pb::ActorKind::Unspecified,
                Some(Kind::Queue) => pb::ActorKind::Queue,
                Some(Kind::Informant) => pb::ActorKind::Informant,
            };
            let request = pb::ListActorsRequest { kind: kind as i32, counts_only: false };
            let (answered, silent) = ask_every_member(&admin, &members, &args.tenant, |mut admin| async move {
                admin.list_actors(request).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.target))?;
            Ok(match args.output {
                Output::Table => actors_table(&answered, &silent),
                Output::Json => serde_json::to_string_pretty(&ActorsJson::new(&answered, &silent))?,
            })
        }
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A member's answer to the standard gRPC health check, asked directly at
/// its address: "serving", "not serving" (it cannot prove its membership),
/// or "unreachable".
pub async fn member_health(address: &str) -> &'static str {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let timeout = std::time::Duration::from_secs(1);
    let Ok(endpoint) = Channel::from_shared(format!("http://{address}")) else { return "unreachable" };
    let Ok(channel) = endpoint.connect_timeout(timeout).timeout(timeout).connect().await else { return "unreachable" };
    match HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await {
        Ok(r) if r.get_ref().status() == tonic_health::pb::health_check_response::ServingStatus::Serving => "serving",
        Ok(_) => "not serving",
        Err(_) => "unreachable",
    }
}

/// The members, with each one's health and the tenant's actors it hosts
/// (queues, informants), in the order of `r.members`.
pub fn members_table(r: &pb::ListMembersResponse, health: &[&'static str], actors: &[Option<(u32, u32)>]) -> String {
    let rows: Vec<Vec<String>> = r
        .members
        .iter()
        .zip(health)
        .zip(actors)
        .map(|((m, h), a)| {
            vec![
                format!("{}{}", m.node_id, if m.answering { " *" } else { "" }),
                m.address.clone(),
                (*h).to_string(),
                a.map_or_else(|| "-".to_string(), |(queues, informants)| (queues + informants).to_string()),
                m.lease.clone(),
                format_unix_ms(m.started_unix_ms),
            ]
        })
        .collect();
    let mut out = table(&["NODE", "ADDRESS", "HEALTH", "ACTORS", "LEASE", "STARTED (UTC)"], &rows);
    match r.serving_for_ms {
        Some(ms) => {
            let _ = writeln!(
                out,
                "\n{} member(s) at etcd revision {}; * answered, lease proven for {ms} ms more",
                r.members.len(),
                r.revision
            );
        }
        None => {
            let _ = writeln!(out, "\na single node without etcd");
        }
    }
    let _ = writeln!(out, "ACTORS: the tenant's queues and informants each member hosts (see relaisctl actors)");
    out
}

/// The member that serves one actor.
pub fn locate_table(kind: &str, id: &str, r: &pb::LocateResponse) -> String {
    let here = if r.here { "yes" } else { "no" };
    let row = vec![kind.to_string(), id.to_string(), r.node_id.clone(), r.address.clone(), here.to_string()];
    table(&["KIND", "ID", "NODE", "ADDRESS", "ANSWERED HERE"], &[row])
}

/// Queues and informants of each member that answered (one row per queue
/// and member), then the members that did not.
pub fn stats_table(answered: &[(String, pb::StatsResponse)], silent: &[(String, String)]) -> String {
    let queues: Vec<Vec<String>> = answered
        .iter()
        .flat_map(|(node, r)| r.queues.iter().map(move |q| (node, q)))
        .map(|(node, q)| {
            vec![
                q.queue_id.clone(),
                node.clone(),
                q.waiting.to_string(),
                format!("{:.1}", q.longest_wait_ms as f64 / 1000.0),
                format!("{:.0}%", q.service_level * 100.0),
                format!("{:.0}%", q.service_level_target * 100.0),
                format!("{:.1}", q.asa_ms as f64 / 1000.0),
                format!("{:.1}%", q.abandonment_rate * 100.0),
                format!("{:.0}%", q.occupancy * 100.0),
                format!("{}/{}", q.informants_available, q.informants_logged_in),
            ]
        })
        .collect();
    let mut out = table(
        &["QUEUE", "NODE", "WAITING", "LONGEST(s)", "SL", "TARGET", "ASA(s)", "ABANDON", "OCCUPANCY", "AVAILABLE"],
        &queues,
    );
    let informants: Vec<Vec<String>> = answered
        .iter()
        .flat_map(|(node, r)| r.informants.iter().map(move |i| (node, i)))
        .map(|(node, i)| {
            vec![
                i.informant_id.clone(),
                node.clone(),
                state_name(i.state).to_string(),
                i.reason.clone(),
                format!("{:.0}", i.in_state_ms as f64 / 1000.0),
                i.calls_handled.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["INFORMANT", "NODE", "STATE", "REASON", "IN STATE(s)", "CALLS"], &informants));
    for (node, why) in silent {
        let _ = writeln!(out, "\n{node} did not answer: {why}");
    }
    out
}

/// One row per actor, sorted by kind (queues first), id and member, then
/// the members that did not answer.
pub fn actors_table(answered: &[(String, pb::ListActorsResponse)], silent: &[(String, String)]) -> String {
    let rows: Vec<Vec<String>> = actor_rows(answered)
        .into_iter()
        .map(|(node, r, a)| {
            let queue = a.kind == pb::ActorKind::Queue as i32;
            vec![
                r.tenant.clone(),
                kind_name(a.kind).to_string(),
                a.id.clone(),
                node.to_string(),
                if a.epoch == 0 { "-".to_string() } else { a.epoch.to_string() },
                if queue { String::new() } else { state_name(a.state).to_string() },
                if queue { format!("{}/{}/{}", a.waiting, a.offered, a.connected) } else { String::new() },
            ]
        })
        .collect();
    let mut out = table(&["TENANT", "KIND", "ID", "NODE", "EPOCH", "STATE", "WAIT/OFFER/TALK"], &rows);
    let _ = writeln!(
        out,
        "\n{} queue(s) and {} informant(s) hosted by {} member(s); WAIT/OFFER/TALK: a queue's calls waiting, offered, connected",
        answered.iter().map(|(_, r)| r.queues).sum::<u32>(),
        answered.iter().map(|(_, r)| r.informants).sum::<u32>(),
        answered.len()
    );
    for (node, why) in silent {
        let _ = writeln!(out, "{node} did not answer: {why}");
    }
    out
}

/// Every actor of every answer with the member that hosts it, sorted by
/// kind, id and member.
fn actor_rows(answered: &[(String, pb::ListActorsResponse)]) -> Vec<(&str, &pb::ListActorsResponse, &pb::HostedActor)> {
    let mut rows: Vec<_> =
        answered.iter().flat_map(|(node, r)| r.actors.iter().map(move |a| (node.as_str(), r, a))).collect();
    rows.sort_by(|x, y| (x.2.kind, &x.2.id, x.0).cmp(&(y.2.kind, &y.2.id, y.0)));
    rows
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ActorKind::try_from(kind).unwrap_or(pb::ActorKind::Unspecified) {
        pb::ActorKind::Queue => "queue",
        pb::ActorKind::Informant => "informant",
        pb::ActorKind::Unspecified => "?",
    }
}

fn state_name(state: i32) -> &'static str {
    match pb::InformantState::try_from(state).unwrap_or(pb::InformantState::Unspecified) {
        pb::InformantState::Available => "available",
        pb::InformantState::Reserved => "reserved",
        pb::InformantState::OnCall => "on call",
        pb::InformantState::WrapUp => "wrap-up",
        pb::InformantState::Paused => "paused",
        pb::InformantState::Offline => "offline",
        pb::InformantState::Unspecified => "?",
    }
}

/// `YYYY-MM-DD HH:MM:SS` from Unix milliseconds (UTC), without a date crate.
pub fn format_unix_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[derive(Serialize)]
struct MembersJson {
    clustered: bool,
    revision: i64,
    serving_for_ms: Option<u64>,
    members: Vec<MemberJson>,
}

#[derive(Serialize)]
struct MemberJson {
    node_id: String,
    address: String,
    health: &'static str,
    /// The tenant's actors the member hosts; null when it could not say.
    actors: Option<ActorCountsJson>,
    lease: String,
    started_unix_ms: i64,
    answering: bool,
}

#[derive(Serialize)]
struct ActorCountsJson {
    queues: u32,
    informants: u32,
}

impl MembersJson {
    fn new(r: &pb::ListMembersResponse, health: &[&'static str], actors: &[Option<(u32, u32)>]) -> Self {
        Self {
            clustered: r.clustered,
            revision: r.revision,
            serving_for_ms: r.serving_for_ms,
            members: r
                .members
                .iter()
                .zip(health)
                .zip(actors)
                .map(|((m, h), a)| MemberJson {
                    node_id: m.node_id.clone(),
                    address: m.address.clone(),
                    health: h,
                    actors: a.map(|(queues, informants)| ActorCountsJson { queues, informants }),
                    lease: m.lease.clone(),
                    started_unix_ms: m.started_unix_ms,
                    answering: m.answering,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct ActorsJson {
    /// Sorted by kind (queues first), id and member.
    actors: Vec<ActorJson>,
    /// Members that did not answer, with the reason.
    silent: Vec<SilentJson>,
}

#[derive(Serialize)]
struct ActorJson {
    tenant: String,
    kind: &'static str,
    id: String,
    node_id: String,
    address: String,
    /// The member's claim on the actor in etcd; 0 without etcd.
    epoch: i64,
    /// An informant's state; null for a queue.
    state: Option<&'static str>,
    /// A queue's calls; null for an informant.
    waiting: Option<u32>,
    offered: Option<u32>,
    connected: Option<u32>,
}

impl ActorsJson {
    fn new(answered: &[(String, pb::ListActorsResponse)], silent: &[(String, String)]) -> Self {
        let actors = actor_rows(answered)
            .into_iter()
            .map(|(node, r, a)| {
                let queue = a.kind == pb::ActorKind::Queue as i32;
                ActorJson {
                    tenant: r.tenant.clone(),
                    kind: kind_name(a.kind),
                    id: a.id.clone(),
                    node_id: node.to_string(),
                    address: r.address.clone(),
                    epoch: a.epoch,
                    state: (!queue).then(|| state_name(a.state)),
                    waiting: queue.then_some(a.waiting),
                    offered: queue.then_some(a.offered),
                    connected: queue.then_some(a.connected),
                }
            })
            .collect();
        let silent =
            silent.iter().map(|(node, why)| SilentJson { node_id: node.clone(), reason: why.clone() }).collect();
        Self { actors, silent }
    }
}

#[derive(Serialize)]
struct LocateJson {
    kind: &'static str,
    id: String,
    node_id: String,
    address: String,
    /// Whether the node asked is the one that serves it.
    here: bool,
}

#[derive(Serialize)]
struct StatsJson {
    queues: Vec<QueueJson>,
    informants: Vec<InformantJson>,
    /// Members that did not answer, with the reason.
    silent: Vec<SilentJson>,
}

#[derive(Serialize)]
struct SilentJson {
    node_id: String,
    reason: String,
}

#[derive(Serialize)]
struct QueueJson {
    queue_id: String,
    node_id: String,
    waiting: u32,
    longest_wait_ms: u64,
    service_level: f64,
    service_level_target: f64,
    asa_ms: u64,
    abandonment_rate: f64,
    occupancy: f64,
    informants_logged_in: u32,
    informants_available: u32,
    offered_total: u64,
    answered_total: u64,
    abandoned_total: u64,
    deflected_total: u64,
}

#[derive(Serialize)]
struct InformantJson {
    informant_id: String,
    node_id: String,
    state: &'static str,
    reason: String,
    in_state_ms: u64,
    calls_handled: u64,
}

impl StatsJson {
    fn new(answered: &[(String, pb::StatsResponse)], silent: &[(String, String)]) -> Self {
        let mut out = Self { queues: Vec::new(), informants: Vec::new(), silent: Vec::new() };
        for (node, r) in answered {
            out.queues.extend(r.queues.iter().map(|q| QueueJson {
                queue_id: q.queue_id.clone(),
                node_id: node.clone(),
                waiting: q.waiting,
                longest_wait_ms: q.longest_wait_ms,
                service_level: q.service_level,
                service_level_target: q.service_level_target,
                asa_ms: q.asa_ms,
                abandonment_rate: q.abandonment_rate,
                occupancy: q.occupancy,
                informants_logged_in: q.informants_logged_in,
                informants_available: q.informants_available,
                offered_total: q.offered_total,
                answered_total: q.answered_total,
                abandoned_total: q.abandoned_total,
                deflected_total: q.deflected_total,
            }));
            out.informants.extend(r.informants.iter().map(|i| InformantJson {
                informant_id: i.informant_id.clone(),
                node_id: node.clone(),
                state: state_name(i.state),
                reason: i.reason.clone(),
                in_state_ms: i.in_state_ms,
                calls_handled: i.calls_handled,
            }));
        }
        out.silent =
            silent.iter().map(|(node, why)| SilentJson { node_id: node.clone(), reason: why.clone() }).collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_unix_ms(1_795_834_861_000), "2026-11-28 03:01:01");
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(&["A", "LONG HEADER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONG HEADER\nwide cell  x\n");
    }
}
