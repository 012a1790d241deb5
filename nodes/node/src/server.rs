//! Builds the gRPC server: the three public services behind the identity
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

use crate::config::NodeConfig;
use crate::identity::{IdentityInterceptor, IdentityPolicy, Role};
use crate::node::Node;
use crate::services::admin::AdminService;
use crate::services::gateway::GatewayService;
use crate::services::informant::InformantService;

/// Requests in flight per client connection; further ones wait, which
/// bounds the work (and actor mailboxes) a client can queue up.
pub const CONCURRENCY_PER_CONNECTION: usize = 256;

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_message = config.max_message_bytes;
    let policy = Arc::new(IdentityPolicy {
        tenants: config.tenants.iter().map(|t| Arc::from(t.as_str())).collect(),
        default_tenant: (!config.default_tenant.is_empty()).then(|| Arc::from(config.default_tenant.as_str())),
        require_role: config.require_role,
    });
    let node = Node::start(config).await?;

    let gateway = pb::gateway_server::GatewayServer::new(GatewayService::new(node.clone()))
        .max_decoding_message_size(max_message);
    let informant = pb::informant_server::InformantServer::new(InformantService::new(node.clone()))
        .max_decoding_message_size(max_message);
    let admin =
        pb::admin_server::AdminServer::new(AdminService::new(node.clone())).max_decoding_message_size(max_message);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::gateway_server::GatewayServer<GatewayService>>().await;
    health_reporter.set_serving::<pb::informant_server::InformantServer<InformantService>>().await;
    health_reporter.set_serving::<pb::admin_server::AdminServer<AdminService>>().await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Open streams (informant sessions, call watchers) never end by
    // themselves: stopping the actors closes them, so that the server's
    // graceful shutdown completes.
    let stopping = node.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("relais-node stopping");
        stopping.stop();
    };
    let result = Server::builder()
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(InterceptedService::new(gateway, IdentityInterceptor::new(policy.clone(), Role::Gateway)))
        .add_service(InterceptedService::new(informant, IdentityInterceptor::new(policy.clone(), Role::Informant)))
        .add_service(InterceptedService::new(admin, IdentityInterceptor::new(policy, Role::Admin)))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        // Without TCP_NODELAY, Nagle's algorithm and delayed acknowledgements
        // add tens of milliseconds to small request/response exchanges.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await;
    node.stop();
    result?;
    Ok(())
}

/// Runs a node until Ctrl-C or SIGTERM. Prints `relais-node listening on
/// ADDR` on standard output once it accepts connections.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, tenants = ?config.tenants, "relais-node starting");
    println!("relais-node listening on {addr}");
    serve(config, listener, shutdown_signal()).await?;
    tracing::info!("relais-node stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
