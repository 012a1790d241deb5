//! The node's configuration: defaults, then a TOML file, then `RELAIS_*`
//! environment variables, then command-line flags. Unknown keys are
//! rejected; everything is validated once, at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{NodeError, Result};
use crate::pseudonym::Pseudonymizer;

/// The embedded default: one node on loopback, two tenants, state in memory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Address of the gRPC server (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Tenants served by this node.
    pub tenants: Vec<String>,
    /// Tenant assumed when a request names none (empty: required).
    pub default_tenant: String,
    /// Refuse requests without an `x-relais-role` header.
    pub require_role: bool,
    /// Key of callers' pseudonyms, 64 hex digits. Empty: a random key per
    /// start (pseudonyms then hold for this process only).
    pub pseudonym_key: String,
    /// Skill that vulnerable callers require.
    pub listening_skill: String,
    /// Period of each queue's housekeeping (relaxation, overflow, maximum
    /// wait, position updates).
    pub tick_ms: u64,
    /// Most event streams (call watchers and informant sessions) open at once.
    pub max_streams: usize,
    /// Largest request accepted.
    pub max_message_bytes: usize,
    /// Most queues per tenant.
    pub max_queues_per_tenant: usize,
    /// Most informants logged in per tenant.
    pub max_informants_per_tenant: usize,
    /// Ended calls remembered for idempotent retries and late watchers...
    pub ended_calls_kept: usize,
    /// ...for at most this long.
    pub ended_call_ttl_ms: u64,
    /// Log lines as JSON instead of text.
    pub log_json: bool,
    /// Address of the Prometheus `/metrics` endpoint (port 0 picks a free
    /// port). Empty: no endpoint (metrics may still go out by OTLP, as the
    /// `OTEL_*` environment says).
    pub metrics_listen: String,
    /// etcd endpoints of the cluster to join. Empty: a single node on its
    /// embedded default, state in memory.
    pub etcd_endpoints: Vec<String>,
    /// Prefix of every key the cluster keeps in etcd.
    pub cluster_prefix: String,
    /// This node's name in the cluster. Empty: `<hostname>-<port>`.
    pub node_id: String,
    /// Address other nodes and clients use to reach this node. Empty: the
    /// address the server is bound to.
    pub advertise: String,
    /// TTL of the node's membership lease, in seconds (etcd's minimum is 2).
    pub lease_ttl_s: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tenants: vec!["cai".into(), "sos".into()],
            default_tenant: "cai".into(),
            require_role: false,
            pseudonym_key: String::new(),
            listening_skill: "ecoute".into(),
            tick_ms: 250,
            max_streams: 10_000,
            max_message_bytes: 64 * 1024,
            max_queues_per_tenant: 1_000,
            max_informants_per_tenant: 100_000,
            ended_calls_kept: 100_000,
            ended_call_ttl_ms: 3_600_000,
            log_json: false,
            metrics_listen: String::new(),
            etcd_endpoints: Vec::new(),
            cluster_prefix: "/relais".into(),
            node_id: String::new(),
            advertise: String::new(),
            lease_ttl_s: 3,
        }
    }
}

/// Command-line flags; each may also come from its `RELAIS_*` variable.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(name = "relais-node", version, about = "A relais call-routing node")]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "RELAIS_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "RELAIS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Comma-separated tenants.
    #[arg(long, env = "RELAIS_TENANTS", value_delimiter = ',')]
    pub tenants: Option<Vec<String>>,
    #[arg(long, env = "RELAIS_DEFAULT_TENANT")]
    pub default_tenant: Option<String>,
    #[arg(long, env = "RELAIS_REQUIRE_ROLE")]
    pub require_role: Option<bool>,
    #[arg(long, env = "RELAIS_PSEUDONYM_KEY", hide_env_values = true)]
    pub pseudonym_key: Option<String>,
    #[arg(long, env = "RELAIS_TICK_MS")]
    pub tick_ms: Option<u64>,
    #[arg(long, env = "RELAIS_LOG_JSON")]
    pub log_json: Option<bool>,
    /// Address of the Prometheus /metrics endpoint, e.g. 0.0.0.0:9464
    /// ("" for none).
    #[arg(long, env = "RELAIS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Comma-separated etcd endpoints: join that cluster.
    #[arg(long = "etcd", env = "RELAIS_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    #[arg(long, env = "RELAIS_CLUSTER_PREFIX")]
    pub cluster_prefix: Option<String>,
    #[arg(long, env = "RELAIS_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "RELAIS_ADVERTISE")]
    pub advertise: Option<String>,
    #[arg(long, env = "RELAIS_LEASE_TTL_S")]
    pub lease_ttl_s: Option<u64>,
}

impl NodeConfig {
    /// Defaults, then the file named by `args.config`, then `args` (flags
    /// and environment).
    pub fn load(args: &Args) -> Result<Self> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| NodeError::invalid("config", format!("{}: {e}", path.display())))?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        if let Some(v) = args.listen {
            config.listen = v;
        }
        if let Some(v) = &args.tenants {
            config.tenants = v.clone();
        }
        if let Some(v) = &args.default_tenant {
            config.default_tenant = v.clone();
        }
        if let Some(v) = args.require_role {
            config.require_role = v;
        }
        if let Some(v) = &args.pseudonym_key {
            config.pseudonym_key = v.clone();
        }
        if let Some(v) = args.tick_ms {
            config.tick_ms = v;
        }
        if let Some(v) = args.log_json {
            config.log_json = v;
        }
        if let Some(v) = &args.metrics_listen {
            config.metrics_listen = v.clone();
        }
        if let Some(v) = &args.etcd_endpoints {
            config.etcd_endpoints = v.clone();
        }
        if let Some(v) = &args.cluster_prefix {
            config.cluster_prefix = v.clone();
        }
        if let Some(v) = &args.node_id {
            config.node_id = v.clone();
        }
        if let Some(v) = &args.advertise {
            config.advertise = v.clone();
        }
        if let Some(v) = args.lease_ttl_s {
            config.lease_ttl_s = v;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| NodeError::invalid("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.tenants.is_empty() || self.tenants.len() > 1_000 {
            return Err(NodeError::invalid("tenants", "1 to 1000 tenants"));
        }
        for tenant in &self.tenants {
            crate::validate::tenant_id("tenants", tenant)?;
        }
        if !self.default_tenant.is_empty() && !self.tenants.contains(&self.default_tenant) {
            return Err(NodeError::invalid("default_tenant", "must be one of tenants"));
        }
        self.pseudonymizer()?;
        crate::validate::skill_name("listening_skill", &self.listening_skill)?;
        let bounded = |field: &str, value: u64, low: u64, high: u64| {
            if value < low || value > high {
                Err(NodeError::invalid(field, format!("must be {low} to {high}")))
            } else {
                Ok(())
            }
        };
        bounded("tick_ms", self.tick_ms, 10, 60_000)?;
        bounded("max_streams", self.max_streams as u64, 1, 1_000_000)?;
        bounded("max_message_bytes", self.max_message_bytes as u64, 1_024, 4 * 1024 * 1024)?;
        bounded("max_queues_per_tenant", self.max_queues_per_tenant as u64, 1, 100_000)?;
        bounded("max_informants_per_tenant", self.max_informants_per_tenant as u64, 1, 1_000_000)?;
        bounded("ended_calls_kept", self.ended_calls_kept as u64, 1, 10_000_000)?;
        bounded("ended_call_ttl_ms", self.ended_call_ttl_ms, 1_000, 7 * 86_400_000)?;
        bounded("lease_ttl_s", self.lease_ttl_s, 2, 60)?;
        bounded("etcd_endpoints", self.etcd_endpoints.len() as u64, 0, 16)?;
        for endpoint in &self.etcd_endpoints {
            if endpoint.is_empty() || endpoint.len() > 256 || endpoint.contains(char::is_whitespace) {
                return Err(NodeError::invalid("etcd_endpoints", format!("{endpoint:?} is not an endpoint")));
            }
        }
        self.metrics_address()?;
        if !self.cluster_prefix.starts_with('/') || self.cluster_prefix.len() > 128 {
            return Err(NodeError::invalid("cluster_prefix", "must start with / and have at most 128 bytes"));
        }
        if !self.node_id.is_empty() {
            crate::validate::node_id("node_id", &self.node_id)?;
        }
        if self.advertise.len() > 256 {
            return Err(NodeError::invalid("advertise", "at most 256 bytes"));
        }
        if self.clustered() && self.advertise.is_empty() && self.listen.ip().is_unspecified() {
            return Err(NodeError::invalid("advertise", "required when listening on an unspecified address"));
        }
        if self.clustered() && self.advertised_on_loopback() && !self.etcd_on_loopback() {
            return Err(NodeError::invalid(
                "advertise",
                "a loopback address cannot be reached by members on other hosts; advertise a routable one",
            ));
        }
        Ok(())
    }

    /// Where the `/metrics` endpoint listens, if it is on.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        let address: SocketAddr = self
            .metrics_listen
            .parse()
            .map_err(|_| NodeError::invalid("metrics_listen", "must be empty or an address such as 0.0.0.0:9464"))?;
        if address == self.listen && address.port() != 0 {
            return Err(NodeError::invalid("metrics_listen", "must differ from listen"));
        }
        Ok(Some(address))
    }

    fn advertised_on_loopback(&self) -> bool {
        if self.advertise.is_empty() { self.listen.ip().is_loopback() } else { on_loopback(&self.advertise) }
    }

    fn etcd_on_loopback(&self) -> bool {
        self.etcd_endpoints.iter().all(|e| on_loopback(e))
    }

    /// Whether this node joins a cluster in etcd.
    pub fn clustered(&self) -> bool {
        !self.etcd_endpoints.is_empty()
    }

    /// The address members and clients reach this node at: the advertised
    /// one, or the address the server is bound to.
    pub fn advertised_address(&self, bound: SocketAddr) -> String {
        if self.advertise.is_empty() { bound.to_string() } else { self.advertise.clone() }
    }

    /// The node's name: the configured one, or `<hostname>-<port>`.
    pub fn node_name(&self, port: u16) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).unwrap_or_default();
        let host: String =
            host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).take(48).collect();
        if host.is_empty() { format!("node-{port}") } else { format!("{host}-{port}") }
    }

    pub fn pseudonymizer(&self) -> Result<Pseudonymizer> {
        if self.pseudonym_key.is_empty() {
            Ok(Pseudonymizer::random())
        } else {
            Pseudonymizer::from_hex(&self.pseudonym_key).map_err(|reason| NodeError::invalid("pseudonym_key", reason))
        }
    }
}

/// Whether an address (`host:port`, with or without a scheme) names this
/// machine's loopback.
fn on_loopback(address: &str) -> bool {
    let host_port = address.split("://").last().unwrap_or(address);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    let host = match host_port.strip_prefix('[') {
        // [v6] or [v6]:port
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_matches_the_defaults_it_documents() {
        let text = include_str!("../relais-node.example.toml");
        let config = NodeConfig::from_toml(text).expect("example parses");
        let mut expected = NodeConfig { pseudonym_key: "00".repeat(32), ..NodeConfig::default() };
        expected.tenants = vec!["cai".into(), "sos".into()];
        assert_eq!(config, expected);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(NodeConfig::from_toml("listne = \"127.0.0.1:1\"").is_err());
        assert!(NodeConfig::from_toml("tick_ms = 1").is_err());
        assert!(NodeConfig::from_toml("default_tenant = \"other\"").is_err());
        assert!(NodeConfig::from_toml("pseudonym_key = \"abc\"").is_err());
        assert!(NodeConfig::from_toml("lease_ttl_s = 1").is_err());
        assert!(NodeConfig::from_toml("node_id = \"a/b\"").is_err());
        assert!(NodeConfig::from_toml("cluster_prefix = \"relais\"").is_err());
        assert!(NodeConfig::from_toml("metrics_listen = \"9464\"").is_err(), "an address, not a port");
        assert!(NodeConfig::from_toml("metrics_listen = \"127.0.0.1:50051\"").is_err(), "not the gRPC port");
        assert_eq!(
            NodeConfig::from_toml("metrics_listen = \"0.0.0.0:9464\"")
                .expect("valid")
                .metrics_address()
                .expect("valid"),
            Some(SocketAddr::from(([0, 0, 0, 0], 9464)))
        );
        assert!(
            NodeConfig::from_toml("listen = \"0.0.0.0:1\"\netcd_endpoints = [\"127.0.0.1:2379\"]").is_err(),
            "a cluster member on 0.0.0.0 must say its address"
        );
        assert!(
            NodeConfig::from_toml("etcd_endpoints = [\"http://10.0.0.5:2379\"]").is_err(),
            "a member on loopback cannot serve members on other hosts"
        );
        assert!(NodeConfig::from_toml("etcd_endpoints = [\"http://127.0.0.1:2379\"]").is_ok());
        assert!(
            NodeConfig::from_toml("etcd_endpoints = [\"http://10.0.0.5:2379\"]\nadvertise = \"10.0.0.7:50051\"")
                .is_ok()
        );
    }

    #[test]
    fn loopback_addresses_are_recognised_in_every_spelling() {
        for address in
            ["127.0.0.1:2379", "http://127.0.0.1:2379", "localhost:1", "http://[::1]:2379", "http://[::1]", "[::1]"]
        {
            assert!(on_loopback(address), "{address}");
        }
        for address in ["10.0.0.5:2379", "http://10.0.0.5:2379", "etcd.relais.svc:2379", "http://[2001:db8::1]:2379"] {
            assert!(!on_loopback(address), "{address}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let args = Args {
            tick_ms: Some(100),
            tenants: Some(vec!["a".into()]),
            default_tenant: Some("a".into()),
            ..Args::default()
        };
        let config = NodeConfig::load(&args).expect("valid");
        assert_eq!(config.tick_ms, 100);
        assert_eq!(config.tenants, vec!["a".to_string()]);
    }
}
