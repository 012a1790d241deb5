//! The cluster's network: one network namespace per node, joined to a
//! bridge in the host's namespace by a veth pair, so that each node has its
//! own address and its links can be cut one by one with iptables inside its
//! namespace. etcd and the workload stay in the host's namespace, on the
//! bridge's address.
//!
//! With the container backend the nodes run from the project's image, each
//! container on a Docker network of the run (`relais-chaos-R`, subnet
//! 10.214.R.0/24) whose gateway, the host's end of Docker's bridge, is where
//! etcd and the workload are; links are cut with iptables inside each
//! container's network namespace (entered with `nsenter`).
//!
//! Without namespaces (not root, no `ip`), every process gets a loopback
//! address of its own (127.213.R.x) and partitions are unsupported.
//!
//! Names carry the run's number R, claimed atomically by creating the bridge
//! `rcbR` (the Docker network `relais-chaos-R` for containers), so parallel
//! runs never clash; everything is removed on drop (which also runs when a
//! test panics).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// How the processes are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A network namespace per node: partitions are possible.
    Netns,
    /// A container per node, from the project's image, on a Docker network
    /// of the run: partitions are possible.
    Container,
    /// Loopback addresses: partitions are unsupported.
    Loopback,
}

impl Backend {
    /// Whether each node has a network namespace of its own, whose links
    /// can be cut (and delayed) one by one.
    pub fn isolates_nodes(self) -> bool {
        self != Self::Loopback
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Netns => "netns",
            Self::Container => "container",
            Self::Loopback => "loopback",
        }
    }
}

/// Which of a node's links a partition cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Both ways between the node and every etcd member.
    FromEtcd,
    /// Both ways between the node and every other node.
    FromPeers,
    /// Only what the other nodes send to the node.
    FromPeersInbound,
}

/// A node's network namespace, where the host's tools run to cut its links.
enum NodeNs {
    /// A namespace of the run, by name (`ip netns exec`).
    Named(String),
    /// A container's, by the pid of its first process (`nsenter`).
    Process(String),
}

impl NodeNs {
    /// The host's `program`, run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut command;
        match self {
            Self::Named(name) => {
                command = Command::new("ip");
                command.args(["netns", "exec", name, program]);
            }
            Self::Process(pid) => {
                command = Command::new("nsenter");
                command.arg(format!("--net=/proc/{pid}/ns/net")).arg(program);
            }
        }
        command
    }
}

/// The network of one run.
pub struct Net {
    pub backend: Backend,
    run: u8,
    nodes: usize,
    created: bool,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("run ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Net {
    /// Namespaces for `nodes` nodes when this host allows them, loopback
    /// addresses otherwise.
    pub fn new(nodes: usize) -> Result<Self> {
        Self::check_size(nodes);
        match Self::with_namespaces(nodes) {
            Ok(net) => Ok(net),
            Err(why) => {
                eprintln!("chaos: no network namespaces ({why:#}); loopback addresses, partitions unsupported");
                Self::loopback(nodes)
            }
        }
    }

    fn check_size(nodes: usize) {
        assert!((1..=200).contains(&nodes), "1 to 200 nodes");
    }

    /// A Docker network for `nodes` containers; fails where no Docker
    /// engine answers.
    pub fn containers(nodes: usize) -> Result<Self> {
        Self::check_size(nodes);
        let mut last_error = None;
        for (k, run) in Self::candidate_runs() {
            let net = Self { backend: Backend::Container, run, nodes, created: false };
            // Creating the network claims the run's number (its name and its
            // subnet are the run's).
            let out = Command::new("docker")
                .args(["network", "create", "--driver", "bridge", "--subnet"])
                .arg(format!("10.214.{run}.0/24"))
                .arg("--gateway")
                .arg(net.host_ip())
                .arg(net.docker_network())
                .stdin(Stdio::null())
                .output()
                .context("run docker")?;
            if out.status.success() {
                return Ok(Self { created: true, ..net });
            }
            last_error = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
            if k == 0 && Command::new("docker").args(["info"]).output().map(|o| !o.status.success()).unwrap_or(true) {
                break;
            }
        }
        bail!("no Docker network for the run: {}", last_error.unwrap_or_default())
    }

    /// The Docker network of a container run.
    pub fn docker_network(&self) -> String {
        format!("relais-chaos-{}", self.run)
    }

    /// The container of node `i`, in a container run.
    pub fn container(&self, i: usize) -> String {
        format!("relais-chaos-{}-n{i}", self.run)
    }

    /// The run numbers to try claiming, 1 to 250, starting from one drawn
    /// from this process's id so that parallel runs rarely collide.
    fn candidate_runs() -> impl Iterator<Item = (u16, u8)> {
        let first = u16::try_from(std::process::id() % 250).unwrap_or(0);
        (0..250u16).map(move |k| (k, u8::try_from((first + k) % 250 + 1).unwrap_or(1)))
    }

    fn with_namespaces(nodes: usize) -> Result<Self> {
        if std::env::var_os("RELAIS_CHAOS_LOOPBACK").is_some() {
            bail!("RELAIS_CHAOS_LOOPBACK is set");
        }
        for (k, run) in Self::candidate_runs() {
            // Creating the bridge claims the run's number.
            if ip(&["link", "add", &format!("rcb{run}"), "type", "bridge"]).is_err() {
                if k == 0 {
                    // Not even one: maybe no permission at all.
                    ip(&["link", "show", &format!("rcb{run}")])?;
                }
                continue;
            }
            let mut net = Self { backend: Backend::Netns, run, nodes, created: true };
            net.build().with_context(|| format!("set up run {run}'s namespaces"))?;
            return Ok(net);
        }
        bail!("no free run number")
    }

    fn loopback(nodes: usize) -> Result<Self> {
        for (_, run) in Self::candidate_runs() {
            if std::net::TcpListener::bind((format!("127.213.{run}.1").as_str(), 2379)).is_ok() {
                return Ok(Self { backend: Backend::Loopback, run, nodes, created: false });
            }
        }
        bail!("no free loopback address")
    }

    fn bridge(&self) -> String {
        format!("rcb{}", self.run)
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("relais-chaos-{}-n{i}", self.run)
    }

    /// The host's rule that lets the bridge forward between nodes: where
    /// bridged traffic goes through iptables (br_netfilter, as with Docker,
    /// whose FORWARD policy drops), nodes would not reach each other.
    fn forward_rule(&self) -> [String; 4] {
        ["FORWARD".into(), "-i".into(), self.bridge(), "-j ACCEPT".into()]
    }

    fn host_iptables(action: &str, rule: &[String]) -> Result<()> {
        let mut args = vec!["-w".to_string(), action.to_string()];
        for part in rule {
            args.extend(part.split(' ').map(str::to_string));
        }
        let out = Command::new("iptables").args(&args).stdin(Stdio::null()).output().context("run iptables")?;
        if !out.status.success() {
            bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    fn build(&mut self) -> Result<()> {
        let bridge = self.bridge();
        Self::host_iptables("-I", &self.forward_rule())?;
        ip(&["addr", "add", &format!("{}/24", self.host_ip()), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            // A namespace left by a run that was killed outright.
            let _ = ip(&["netns", "del", &ns]);
            ip(&["netns", "add", &ns])?;
            let host_end = format!("rch{}x{i}", self.run);
            let node_end = format!("rcn{}x{i}", self.run);
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &node_end])?;
            ip(&["link", "set", &host_end, "master", &bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            ip(&["link", "set", &node_end, "netns", &ns])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.node_ip(i)), "dev", &node_end])?;
            ip(&["-n", &ns, "link", "set", &node_end, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // iptables must answer inside a namespace, or partitions cannot work.
        Self::iptables(&self.node_ns(0)?, &["-L", "-n"])?;
        Ok(())
    }

    /// The address of etcd and of the workload.
    pub fn host_ip(&self) -> String {
        match self.backend {
            Backend::Netns => format!("10.213.{}.1", self.run),
            Backend::Container => format!("10.214.{}.1", self.run),
            Backend::Loopback => format!("127.213.{}.1", self.run),
        }
    }

    /// The address of node `i`.
    pub fn node_ip(&self, i: usize) -> String {
        match self.backend {
            Backend::Netns => format!("10.213.{}.{}", self.run, 10 + i),
            Backend::Container => format!("10.214.{}.{}", self.run, 10 + i),
            Backend::Loopback => format!("127.213.{}.{}", self.run, 10 + i),
        }
    }

    /// `program args…` run in node `i`'s namespace (the process keeps the
    /// pid `Command` gives: `ip netns exec` execs it). Not for containers,
    /// which the cluster starts with `docker run`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        match self.backend {
            Backend::Netns => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &self.namespace(i)]).arg(program);
                command
            }
            Backend::Container => unreachable!("containers are started with docker run"),
            Backend::Loopback => Command::new(program),
        }
    }

    /// Node `i`'s network namespace: its own, or its running container's
    /// (looked up once per fault, not once per command).
    fn node_ns(&self, i: usize) -> Result<NodeNs> {
        match self.backend {
            Backend::Netns => Ok(NodeNs::Named(self.namespace(i))),
            Backend::Container => {
                let out = Command::new("docker")
                    .args(["inspect", "--format", "{{.State.Pid}}", &self.container(i)])
                    .stdin(Stdio::null())
                    .output()
                    .context("run docker inspect")?;
                let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || pid.is_empty() || pid == "0" {
                    bail!("container {} is not running", self.container(i));
                }
                Ok(NodeNs::Process(pid))
            }
            Backend::Loopback => bail!("loopback addresses share the host's namespace"),
        }
    }

    /// Node `i`'s end of its link.
    fn node_link(&self, i: usize) -> String {
        match self.backend {
            Backend::Container => "eth0".into(),
            _ => format!("rcn{}x{i}", self.run),
        }
    }

    fn iptables(ns: &NodeNs, args: &[&str]) -> Result<()> {
        let out = ns.command("iptables").arg("-w").args(args).stdin(Stdio::null()).output().context("run iptables")?;
        if !out.status.success() {
            bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Cuts node `i`'s links as `cut` says (`etcd_ports`: the etcd members'
    /// client and peer ports).
    pub fn cut(&self, i: usize, cut: Cut, etcd_ports: &[u16]) -> Result<()> {
        if !self.backend.isolates_nodes() {
            bail!("partitions need network namespaces");
        }
        let host = self.host_ip();
        let ns = self.node_ns(i)?;
        match cut {
            Cut::FromEtcd => {
                for port in etcd_ports {
                    let port = port.to_string();
                    Self::iptables(&ns, &["-A", "OUTPUT", "-p", "tcp", "-d", &host, "--dport", &port, "-j", "DROP"])?;
                    Self::iptables(&ns, &["-A", "INPUT", "-p", "tcp", "-s", &host, "--sport", &port, "-j", "DROP"])?;
                }
            }
            Cut::FromPeers | Cut::FromPeersInbound => {
                for peer in (0..self.nodes).filter(|p| *p != i) {
                    let peer = self.node_ip(peer);
                    Self::iptables(&ns, &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
                    if cut == Cut::FromPeers {
                        Self::iptables(&ns, &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds latency and loss to node `i`'s link with netem; an error says
    /// why this host cannot (no `tc`, no `sch_netem` in the kernel).
    pub fn netem(&self, i: usize, delay_ms: u32, loss_percent: u32) -> Result<()> {
        if !self.backend.isolates_nodes() {
            bail!("netem needs network namespaces");
        }
        let out = self
            .node_ns(i)?
            .command("tc")
            .args(["qdisc", "add", "dev"])
            .arg(self.node_link(i))
            .args(["root", "netem", "delay", &format!("{delay_ms}ms"), "loss", &format!("{loss_percent}%")])
            .stdin(Stdio::null())
            .output()
            .context("run tc (iproute2)")?;
        if !out.status.success() {
            bail!("tc qdisc add … netem: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Removes netem from node `i`'s link.
    pub fn netem_off(&self, i: usize) {
        if let Ok(ns) = self.node_ns(i) {
            let _ = ns.command("tc").args(["qdisc", "del", "dev"]).arg(self.node_link(i)).arg("root").output();
        }
    }

    /// Restores every link of node `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        if !self.backend.isolates_nodes() {
            return Ok(());
        }
        Self::iptables(&self.node_ns(i)?, &["-F"])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        if self.backend == Backend::Container {
            // The cluster has removed the containers by now.
            let _ = Command::new("docker").args(["network", "rm", &self.docker_network()]).output();
            return;
        }
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
            let _ = ip(&["link", "del", &format!("rch{}x{i}", self.run)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
        let _ = Self::host_iptables("-D", &self.forward_rule());
    }
}
