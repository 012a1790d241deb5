//! Builds the gRPC server: the public services behind the identity
//! interceptor, health, reflection, limits, and a clean shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relais_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::cluster::{Cluster, LeaseWindow};
use crate::config::NodeConfig;
use crate::identity::{IdentityInterceptor, IdentityPolicy, NodeInterceptor, Role};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::peer::service::PeerService;
use crate::services::admin::AdminService;
use crate::services::gateway::GatewayService;
use crate::services::informant::InformantService;
use crate::services::locator::LocatorService;
use crate::telemetry::Telemetry;

/// Requests in flight per client connection; further ones wait, which
/// bounds the work (and actor mailboxes) a client can queue up.
pub const CONCURRENCY_PER_CONNECTION: usize = 256;

/// Serves on `listener` until `shutdown` completes, with metrics that only
/// [`Metrics::render`] reads.
pub async fn serve(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_with_metrics(config, listener, Metrics::default(), shutdown).await
}

/// Serves on `listener` until `shutdown` completes; the node's parts record
/// into `metrics`.
pub async fn serve_with_metrics(
    config: NodeConfig,
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_message = config.max_message_bytes;
    let policy = Arc::new(IdentityPolicy {
        tenants: config.tenants.iter().map(|t| Arc::from(t.as_str())).collect(),
        default_tenant: (!config.default_tenant.is_empty()).then(|| Arc::from(config.default_tenant.as_str())),
        require_role: config.require_role,
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // A stop asked while the node starts (joining a cluster may take up to
    // two lease TTLs) ends the start at once.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let bound = listener.local_addr()?;
    let node = Node::start(config.clone(), bound, metrics).await?;
    let cluster = tokio::select! {
        started = Cluster::start(&config, bound, &node) => match started {
            Ok(cluster) => cluster,
            Err(e) => {
                node.stop();
                return Err(e.into());
            }
        },
        () = shutdown.clone() => {
            tracing::info!("relais-node stopped while starting");
            node.stop();
            return Ok(());
        }
    };

    let gateway = pb::gateway_server::GatewayServer::new(GatewayService::new(node.clone()))
        .max_decoding_message_size(max_message);
    let informant = pb::informant_server::InformantServer::new(InformantService::new(node.clone()))
        .max_decoding_message_size(max_message);
    let admin = pb::admin_server::AdminServer::new(AdminService::new(node.clone(), cluster.clone()))
        .max_decoding_message_size(max_message);
    let peer = relais_proto::peer::v1::peer_server::PeerServer::new(PeerService::new(
        node.directory.clone(),
        node.forwarder.stopping(),
    ))
    .max_decoding_message_size(max_message);
    let window = cluster.window().clone();
    let members_only = move |request: Request<()>| -> Result<Request<()>, Status> {
        window.check()?;
        NodeInterceptor.call(request)
    };
    let locator = pb::locator_server::LocatorServer::new(LocatorService::new(node.clone()))
        .max_decoding_message_size(max_message);

    let (mut health_reporter, health) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health_reporter.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    let health_task = tokio::spawn(report_health(cluster.window().clone(), node.clone(), health_reporter.clone()));
    let health_abort = health_task.abort_handle();

    // Open streams (informant sessions, call watchers) never end by
    // themselves: stopping the actors closes them, so that the server's
    // graceful shutdown completes.
    let stopping = node.clone();
    let leaving = cluster.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("relais-node stopping");
        stopping.stop();
        // Leave before the listener closes: peers would otherwise find the
        // port closed and revoke the lease, and this node register again.
        leaving.leave().await;
        // Health watchers (other members follow this node) would hold the
        // graceful shutdown open: clearing the statuses ends their streams.
        health_task.abort();
        for name in SERVICE_NAMES {
            health_reporter.clear_service_status(name).await;
        }
    };
    let result = Server::builder()
        // Every request runs in a span, the child of the caller's when the
        // request carries a trace context.
        .trace_fn(crate::telemetry::server_span)
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(InterceptedService::new(
            gateway,
            Edge::new(&cluster, IdentityInterceptor::new(policy.clone(), Role::Gateway)),
        ))
        .add_service(InterceptedService::new(
            informant,
            Edge::new(&cluster, IdentityInterceptor::new(policy.clone(), Role::Informant)),
        ))
        .add_service(InterceptedService::new(
            admin,
            Edge::new(&cluster, IdentityInterceptor::new(policy.clone(), Role::Admin)),
        ))
        .add_service(InterceptedService::new(
            locator,
            Edge::new(&cluster, IdentityInterceptor::any_role(policy.clone())),
        ))
        // Only members of a cluster talk to each other.
        .add_optional_service(cluster.clustered().then(|| InterceptedService::new(peer, members_only)))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        // Without TCP_NODELAY, Nagle's algorithm and delayed acknowledgements
        // add tens of milliseconds to small request/response exchanges.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await;
    node.stop();
    health_abort.abort();
    cluster.leave().await;
    result?;
    Ok(())
}

/// What every request to the relais services passes first: the node must
/// be serving (in a cluster, its membership provably alive), then the
/// caller is identified.
#[derive(Clone)]
struct Edge {
    window: Arc<LeaseWindow>,
    identity: IdentityInterceptor,
}

impl Edge {
    fn new(cluster: &Cluster, identity: IdentityInterceptor) -> Self {
        Self { window: cluster.window().clone(), identity }
    }
}

impl Interceptor for Edge {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.window.check()?;
        self.identity.call(request)
    }
}

/// The names the health service answers for: the server as a whole, then
/// each relais service.
const SERVICE_NAMES: [&str; 5] = [
    "",
    pb::gateway_server::SERVICE_NAME,
    pb::informant_server::SERVICE_NAME,
    pb::admin_server::SERVICE_NAME,
    pb::locator_server::SERVICE_NAME,
];

/// How often the health service's answer follows the serving window.
const HEALTH_PERIOD: Duration = Duration::from_millis(100);

/// Keeps the standard health service truthful: NOT_SERVING while the node
/// cannot prove its membership or drains, so that load balancers and
/// Kubernetes take it out of rotation.
async fn report_health(window: Arc<LeaseWindow>, node: Arc<Node>, reporter: tonic_health::server::HealthReporter) {
    let mut serving = true;
    let mut ticker = tokio::time::interval(HEALTH_PERIOD);
    loop {
        ticker.tick().await;
        let open = window.is_open() && !node.is_draining();
        if open == serving {
            continue;
        }
        serving = open;
        let status = if open { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
        for name in SERVICE_NAMES {
            reporter.set_service_status(name, status).await;
        }
    }
}

/// Runs a node until Ctrl-C or SIGTERM, after installing its logs and
/// traces ([`Telemetry`]) and metrics. Prints `relais-node listening on
/// ADDR` on standard output once it accepts connections, preceded by
/// `relais-node metrics on ADDR` when it serves `/metrics`.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    // The node's time is the wall clock at this instant plus the monotonic
    // clock's progress (see `clock`).
    crate::clock::now_ms();
    let stop = futures::FutureExt::shared(Box::pin(shutdown_signal()));
    let listener = TcpListener::bind(config.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let node_id = config.node_name(addr.port());
    let telemetry = Telemetry::init(config.log_json, &node_id)?;
    let metrics = Metrics::from_env(&node_id)?;
    if let Some(wanted) = config.metrics_address()? {
        let metrics_listener = TcpListener::bind(wanted).await?;
        let metrics_addr = metrics_listener.local_addr()?;
        tracing::info!(%metrics_addr, "serving /metrics");
        println!("relais-node metrics on {metrics_addr}");
        tokio::spawn(crate::metrics::serve(metrics_listener, metrics.clone(), stop.clone()));
    }
    tracing::info!(%addr, tenants = ?config.tenants, "relais-node starting");
    println!("relais-node listening on {addr}");
    let served = serve_with_metrics(config, listener, metrics.clone(), stop).await;
    // Pushes what the OTLP exporters hold, if there are any; their
    // threads may wait on the exporters' channels, which this runtime
    // drives.
    let _ = tokio::task::spawn_blocking(move || {
        metrics.shutdown();
        telemetry.shutdown();
    })
    .await;
    served?;
    tracing::info!("relais-node stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a signal that comes while the node is
/// still starting (joining the cluster, reading its configuration) is kept,
/// and stops the node as soon as it serves, instead of killing it outright.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => {}
            () = wait(terminate) => {}
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
