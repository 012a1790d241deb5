//! A real relais node for the load generator's tests: the node's own code
//! (`relais_node::server::serve`) on a free loopback port, in a thread with
//! its own runtime so that it does not share worker threads with the load
//! generator under test. Requests cross real gRPC connections. A node may
//! also be a member of a cluster in a real etcd, and crash.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use relais_node::NodeConfig;
use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use tokio::sync::oneshot;

/// How a node's thread ends.
enum End {
    /// A graceful shutdown, as on SIGTERM.
    Stop,
    /// Everything dropped at once, without a word to anyone, as on `kill -9`.
    Crash,
}

pub struct RealNode {
    pub target: String,
    end: Option<oneshot::Sender<End>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RealNode {
    /// Starts a node that requires identity headers, like a production one.
    pub fn start() -> Self {
        Self::spawn(|addr| NodeConfig { listen: addr, require_role: true, tick_ms: 50, ..NodeConfig::default() })
    }

    /// Starts a member of the cluster in the etcd at `etcd_url`.
    pub fn member(etcd_url: &str, node_id: &str) -> Self {
        let (etcd_url, node_id) = (etcd_url.to_owned(), node_id.to_owned());
        Self::spawn(move |addr| NodeConfig {
            listen: addr,
            require_role: true,
            tick_ms: 50,
            node_id,
            etcd_endpoints: vec![etcd_url],
            lease_ttl_s: 5,
            ..NodeConfig::default()
        })
    }

    fn spawn(config: impl FnOnce(std::net::SocketAddr) -> NodeConfig + Send + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let (end, ended) = oneshot::channel::<End>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            let crashed = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let (stop, stopped) = oneshot::channel::<()>();
                let serve = relais_node::server::serve(config(addr), listener, async {
                    let _ = stopped.await;
                });
                tokio::pin!(serve);
                tokio::select! {
                    served = &mut serve => {
                        served.expect("node serves");
                        false
                    }
                    end = ended => {
                        if matches!(end, Ok(End::Crash)) {
                            return true;
                        }
                        let _ = stop.send(());
                        serve.await.expect("node serves");
                        false
                    }
                }
            });
            if crashed {
                // Every task of the node (connections, actors, lease renewals) is dropped where it
                // stands: its sockets close and nothing is said to etcd.
                runtime.shutdown_background();
            }
        });
        Self { target: format!("http://{addr}"), end: Some(end), thread: Some(thread) }
    }

    /// Kills the node at once, as `kill -9` would.
    pub fn crash(&mut self) {
        if let Some(end) = self.end.take() {
            let _ = end.send(End::Crash);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    async fn admin(
        &self,
        tenant: &str,
    ) -> AdminClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, impl tonic::service::Interceptor>,
    > {
        let channel = tonic::transport::Channel::from_shared(self.target.clone()).unwrap().connect().await.unwrap();
        let tenant: tonic::metadata::MetadataValue<_> = tenant.parse().unwrap();
        AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("x-relais-tenant", tenant.clone());
            request.metadata_mut().insert("x-relais-role", "admin".parse().unwrap());
            Ok(request)
        })
    }

    /// The tenant's live statistics, as an operator sees them.
    pub async fn stats(&self, tenant: &str) -> pb::StatsResponse {
        self.admin(tenant).await.get_stats(pb::ListRequest {}).await.unwrap().into_inner()
    }

    /// How many of the tenant's queues and informants this node hosts.
    pub async fn hosted(&self, tenant: &str) -> (u32, u32) {
        let request = pb::ListActorsRequest { kind: pb::ActorKind::Unspecified as i32, counts_only: true };
        let r = self.admin(tenant).await.list_actors(request).await.unwrap().into_inner();
        (r.queues, r.informants)
    }

    /// How many members this node lists.
    pub async fn members(&self) -> usize {
        self.admin("cai").await.list_members(pb::ListRequest {}).await.map_or(0, |r| r.into_inner().members.len())
    }

    /// Calls waiting, offered or connected in the tenant's queues.
    pub async fn live_calls(&self, tenant: &str) -> u32 {
        self.stats(tenant).await.queues.iter().map(|q| q.waiting + q.offered + q.connected).sum()
    }

    pub async fn logged_in(&self, tenant: &str) -> usize {
        self.stats(tenant).await.informants.len()
    }

    /// (offered, answered, abandoned, deflected) over the tenant's queues.
    pub async fn totals(&self, tenant: &str) -> (u64, u64, u64, u64) {
        self.stats(tenant).await.queues.iter().fold((0, 0, 0, 0), |t, q| {
            (t.0 + q.offered_total, t.1 + q.answered_total, t.2 + q.abandoned_total, t.3 + q.deflected_total)
        })
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            let _ = end.send(End::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
