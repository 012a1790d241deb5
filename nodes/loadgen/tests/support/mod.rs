//! A real relais node for the load generator's tests: the node's own code
//! (`relais_node::server::serve`) on a free loopback port, in a thread with
//! its own runtime so that it does not share worker threads with the load
//! generator under test. Requests cross real gRPC connections.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use relais_node::NodeConfig;
use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use tokio::sync::oneshot;

pub struct RealNode {
    pub target: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RealNode {
    /// Starts a node that requires identity headers, like a production one.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let config = NodeConfig { listen: addr, require_role: true, tick_ms: 50, ..NodeConfig::default() };
                relais_node::server::serve(config, listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("node serves");
            });
        });
        Self { target: format!("http://{addr}"), stop: Some(stop), thread: Some(thread) }
    }

    /// The tenant's live statistics, as an operator sees them.
    pub async fn stats(&self, tenant: &str) -> pb::StatsResponse {
        let channel = tonic::transport::Channel::from_shared(self.target.clone()).unwrap().connect().await.unwrap();
        let tenant: tonic::metadata::MetadataValue<_> = tenant.parse().unwrap();
        let mut admin = AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("x-relais-tenant", tenant.clone());
            request.metadata_mut().insert("x-relais-role", "admin".parse().unwrap());
            Ok(request)
        });
        admin.get_stats(pb::ListRequest {}).await.unwrap().into_inner()
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
