//! The cluster under test: M etcd members and N relais nodes, each node in
//! its own network namespace (see [`crate::net`]), started, signalled, cut
//! off and stopped by the harness. A node is a `relais-node` process, or a
//! container of the project's image where one is named (etcd and the
//! workload stay host processes either way). Everything is killed and
//! removed on drop, also when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::net::{Backend, Cut, Net};

/// Port every node listens on (each node has its own address).
pub const NODE_PORT: u16 = 50051;
/// First etcd client port; member k uses `ETCD_PORT + 2k` (client) and
/// `ETCD_PORT + 2k + 1` (peer) on the host's address of the run.
pub const ETCD_PORT: u16 = 2379;
/// How long a process may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub nodes: usize,
    /// 1 or 3.
    pub etcd_members: usize,
    pub lease_ttl_s: u64,
    /// Whether the nodes run on a wall clock the harness can step (see
    /// [`Cluster::step_clock`]).
    pub fake_clock: bool,
}

/// Where Debian's `libfaketime` package puts the library that fakes the
/// clock of the process it is preloaded into.
fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    let mut candidates: Vec<PathBuf> = dirs.flatten().map(|d| d.path().join("faketime/libfaketime.so.1")).collect();
    candidates.push(PathBuf::from("/usr/lib/faketime/libfaketime.so.1"));
    candidates.into_iter().find(|p| p.is_file())
}

/// One etcd member.
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    initial_cluster: String,
    child: Option<Child>,
}

impl EtcdMember {
    fn spawn(&mut self, log_dir: &Path) -> Result<()> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{}.log", self.name)))?;
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--pre-vote=true", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd (`make deps` installs Debian's etcd-server)")?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&self) -> Result<()> {
        use std::io::{Read, Write};
        let addr = self.client_url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let mut answer = String::new();
            if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let _ = stream.read_to_string(&mut answer);
            }
            if answer.contains("\"health\":\"true\"") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("etcd {} did not become healthy", self.name)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One relais node.
pub struct Node {
    pub id: String,
    pub addr: String,
    /// The process: the node itself, or `docker run` attached to its
    /// container (which exits with it).
    child: Option<Child>,
    /// The node's container, in a container run.
    container: Option<String>,
    log: PathBuf,
    stopped: bool,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to the node. A
    /// container is frozen and thawed as a whole (`docker pause`), as an
    /// engine stops one.
    fn signal(&self, signal: &str) -> Result<()> {
        anyhow::ensure!(self.child.is_some(), "{} is not running", self.id);
        let mut command = match &self.container {
            Some(container) => {
                let mut docker = Command::new("docker");
                match signal {
                    "STOP" => docker.arg("pause"),
                    "CONT" => docker.arg("unpause"),
                    _ => docker.args(["kill", "--signal", signal]),
                };
                docker.arg(container);
                docker
            }
            None => {
                let mut kill = Command::new("kill");
                kill.arg(format!("-{signal}")).arg(self.pid().unwrap_or_default().to_string());
                kill
            }
        };
        let out = command.stdin(Stdio::null()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{signal} to {} failed: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

/// A running cluster. Fields drop in order: nodes, etcd, then the network.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub etcd: Vec<EtcdMember>,
    pub spec: Spec,
    pub dir: PathBuf,
    /// What a node runs: the `relais-node` binary, or the image's.
    runs: Runs,
    /// libfaketime, when the spec asks for steppable clocks and it is here.
    clock_lib: Option<PathBuf>,
    keep_dir: bool,
    pub net: Net,
}

/// What the nodes run.
#[derive(Clone, Debug)]
enum Runs {
    Binary(PathBuf),
    Image(String),
}

/// Where a container finds libfaketime and the files of its run.
const CONTAINER_FAKETIME: &str = "/opt/relais-chaos/libfaketime.so.1";
const CONTAINER_RUN_DIR: &str = "/opt/relais-chaos/run";

/// The `relais-node` binary: `RELAIS_NODE_BIN`, or next to this executable
/// (or its parent, for test executables in `deps/`), built with cargo when
/// missing. Builds are serialized by a lock file.
pub fn node_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RELAIS_NODE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable's directory")?;
    let candidates: Vec<PathBuf> =
        [Some(dir), dir.parent()].into_iter().flatten().map(|d| d.join("relais-node")).collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    // Not built (cargo test -p chaos-tests on a clean clone): build it into a
    // target directory of its own, since the running cargo holds the usual one.
    let target = dir.parent().filter(|d| d.ends_with("debug") || d.ends_with("release")).unwrap_or(dir);
    let own_target = target.join("chaos-node");
    let binary = own_target.join("debug").join("relais-node");
    let lock = target.join("chaos-node.lock");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if binary.is_file() && !lock.exists() {
            return Ok(binary);
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            Err(e) => bail!("{} held for 30 minutes: {e}", lock.display()),
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("chaos: building relais-node into {}", own_target.display());
    let status = Command::new(cargo)
        .args(["build", "-p", "relais-node", "--bin", "relais-node", "--target-dir"])
        .arg(&own_target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    let _ = std::fs::remove_file(&lock);
    anyhow::ensure!(status?.success(), "cargo build -p relais-node failed");
    Ok(binary)
}

impl Cluster {
    /// Starts etcd, then the nodes (containers of `image` if one is named,
    /// processes otherwise), and waits until each node listens.
    pub fn start(spec: Spec, dir: &Path, image: Option<&str>) -> Result<Self> {
        assert!(spec.etcd_members == 1 || spec.etcd_members == 3, "1 or 3 etcd members");
        std::fs::create_dir_all(dir)?;
        // Absolute, as containers mount it.
        let dir = &std::fs::canonicalize(dir)?;
        let (net, runs) = match image {
            Some(image) => {
                let out = Command::new("docker").args(["image", "inspect", image]).output().context("run docker")?;
                anyhow::ensure!(out.status.success(), "no image {image} here (make image builds it)");
                (Net::containers(spec.nodes)?, Runs::Image(image.to_string()))
            }
            None => (Net::new(spec.nodes)?, Runs::Binary(node_binary()?)),
        };
        let host = net.host_ip();
        let mut etcd: Vec<EtcdMember> = (0..spec.etcd_members)
            .map(|k| {
                let client = ETCD_PORT + 2 * k as u16;
                EtcdMember {
                    name: format!("etcd-{k}"),
                    client_url: format!("http://{host}:{client}"),
                    peer_url: format!("http://{host}:{}", client + 1),
                    data_dir: dir.join(format!("etcd-{k}.data")),
                    initial_cluster: String::new(),
                    child: None,
                }
            })
            .collect();
        let initial: Vec<String> = etcd.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        for member in &mut etcd {
            member.initial_cluster = initial.join(",");
            member.spawn(dir)?;
        }
        let nodes = (0..spec.nodes)
            .map(|i| Node {
                id: format!("n{i}"),
                addr: format!("{}:{NODE_PORT}", net.node_ip(i)),
                child: None,
                container: matches!(runs, Runs::Image(_)).then(|| net.container(i)),
                log: dir.join(format!("n{i}.log")),
                stopped: false,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            etcd,
            spec,
            dir: dir.to_path_buf(),
            runs,
            clock_lib: if spec.fake_clock { libfaketime() } else { None },
            keep_dir: std::env::var_os("RELAIS_CHAOS_KEEP").is_some(),
            net,
        };
        for member in &cluster.etcd {
            member.wait_ready()?;
        }
        for i in 0..spec.nodes {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    pub fn backend(&self) -> Backend {
        self.net.backend
    }

    pub fn etcd_urls(&self) -> Vec<String> {
        self.etcd.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Etcd's client and peer ports.
    pub fn etcd_ports(&self) -> Vec<u16> {
        (0..self.etcd.len()).flat_map(|k| [ETCD_PORT + 2 * k as u16, ETCD_PORT + 2 * k as u16 + 1]).collect()
    }

    /// Starts node `i` (again) and waits until it listens.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let out_path = self.dir.join(format!("n{i}.out"));
        let out = std::fs::File::create(&out_path)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.nodes[i].log)?;
        let node = &self.nodes[i];
        let log_filter = std::env::var("RELAIS_CHAOS_NODE_LOG").unwrap_or_else(|_| "info,ractor=warn".into());
        // Only the wall clock is faked, as an NTP step moves only it; the
        // offset file is read again at most every second.
        let mut clock_env: Vec<(&str, String)> = Vec::new();
        if let Some(lib) = &self.clock_lib {
            let file = self.clock_file(i);
            if !file.exists() {
                std::fs::write(&file, "+0\n")?;
            }
            let (lib, file) = match self.runs {
                Runs::Binary(_) => (lib.display().to_string(), file.display().to_string()),
                Runs::Image(_) => (CONTAINER_FAKETIME.into(), format!("{CONTAINER_RUN_DIR}/n{i}.clock")),
            };
            clock_env.extend([
                ("LD_PRELOAD", lib),
                ("FAKETIME_TIMESTAMP_FILE", file),
                ("FAKETIME_CACHE_DURATION", "1".into()),
                ("DONT_FAKE_MONOTONIC", "1".into()),
            ]);
        }
        let mut command =
            match &self.runs {
                Runs::Binary(binary) => {
                    let mut command = self.net.command(i, binary);
                    command.envs(clock_env).env("RUST_LOG", log_filter);
                    command
                }
                Runs::Image(image) => {
                    let container = self.net.container(i);
                    // A container of the same name left by a kill.
                    let _ = Command::new("docker").args(["rm", "--force", &container]).output();
                    let mut command = Command::new("docker");
                    command
                        .args(["run", "--rm", "--name", &container, "--network", &self.net.docker_network()])
                        .args(["--ip", &self.net.node_ip(i), "--env", &format!("RUST_LOG={log_filter}")]);
                    if let Some(lib) = &self.clock_lib {
                        command
                            .arg("--volume")
                            .arg(format!("{}:{CONTAINER_FAKETIME}:ro", lib.display()))
                            .arg("--volume")
                            .arg(format!("{}:{CONTAINER_RUN_DIR}:ro", self.dir.display()));
                    }
                    for (name, value) in clock_env {
                        command.arg("--env").arg(format!("{name}={value}"));
                    }
                    command.arg(image);
                    command
                }
            };
        let child = command
            .args(["--listen", &node.addr, "--etcd", &self.etcd_urls().join(",")])
            .args(["--node-id", &node.id, "--lease-ttl-s", &self.spec.lease_ttl_s.to_string()])
            .args(["--tick-ms", "50"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .context("start relais-node")?;
        self.nodes[i].child = Some(child);
        self.nodes[i].stopped = false;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::fs::read_to_string(&out_path).unwrap_or_default().contains("listening on") {
                return Ok(());
            }
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.nodes[i].child = None;
                bail!("node {} exited at start ({status}); see {}", self.nodes[i].id, self.nodes[i].log.display());
            }
            if Instant::now() > deadline {
                bail!("node {} did not listen in time", self.nodes[i].id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 node `i`.
    pub fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            // A frozen container is killed as it is (the engine allows it); a
            // stopped process is continued and killed at once.
            if node.container.is_some() {
                let _ = node.signal("KILL");
            } else if node.stopped {
                let _ = node.signal("CONT");
            }
        }
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(container) = &node.container {
            let _ = Command::new("docker").args(["rm", "--force", container]).output();
        }
        node.stopped = false;
    }

    /// SIGSTOP node `i` (a container is frozen).
    pub fn pause_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].signal("STOP")?;
        self.nodes[i].stopped = true;
        Ok(())
    }

    /// SIGCONT node `i` (a container is thawed).
    pub fn resume_node(&mut self, i: usize) -> Result<()> {
        self.nodes[i].signal("CONT")?;
        self.nodes[i].stopped = false;
        Ok(())
    }

    /// SIGTERM node `i` and waits up to `within` for it to exit (then kills
    /// it); returns whether it exited by itself.
    pub fn terminate_node(&mut self, i: usize, within: Duration) -> Result<bool> {
        self.nodes[i].signal("TERM")?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = self.nodes[i].child.as_mut()
                && child.try_wait()?.is_some()
            {
                self.nodes[i].child = None;
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_node(i);
        Ok(false)
    }

    pub fn cut(&self, i: usize, cut: Cut) -> Result<()> {
        self.net.cut(i, cut, &self.etcd_ports())
    }

    pub fn heal(&self, i: usize) -> Result<()> {
        self.net.heal(i)
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.clock"))
    }

    /// Sets node `i`'s wall clock `offset_s` seconds from the host's (a
    /// step, as NTP makes when a clock is far off; the node reads it within
    /// a second). Fails where the nodes do not run on a fake clock.
    pub fn step_clock(&self, i: usize, offset_s: i64) -> Result<()> {
        if self.clock_lib.is_none() {
            bail!(
                "{}",
                if self.spec.fake_clock {
                    "libfaketime is not installed (Debian's faketime package; make deps installs it)"
                } else {
                    "this cluster's nodes do not run on a fake clock"
                }
            );
        }
        // Written whole, then renamed: the node never reads half of it.
        let file = self.clock_file(i);
        let partial = file.with_extension("clock.new");
        std::fs::write(&partial, format!("{offset_s:+}\n"))?;
        std::fs::rename(&partial, &file)?;
        Ok(())
    }

    /// kill -9 etcd member `k`.
    pub fn kill_etcd(&mut self, k: usize) {
        self.etcd[k].kill();
    }

    /// Starts etcd member `k` again on its data.
    pub fn restart_etcd(&mut self, k: usize) -> Result<()> {
        self.etcd[k].kill();
        self.etcd[k].spawn(&self.dir)?;
        self.etcd[k].wait_ready()
    }

    /// The etcd member that leads, as the running members say.
    pub async fn etcd_leader(&self) -> Result<usize> {
        for member in self.etcd.iter().filter(|m| m.running()) {
            let connect = etcd_client::Client::connect([member.client_url.as_str()], None);
            let Ok(Ok(mut client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else { continue };
            let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), client.status()).await else { continue };
            let leader = status.leader();
            for (k, other) in self.etcd.iter().enumerate() {
                let connect = etcd_client::Client::connect([other.client_url.as_str()], None);
                let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), connect).await else { continue };
                let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), c.status()).await else { continue };
                if s.header().map(|h| h.member_id()) == Some(leader) {
                    return Ok(k);
                }
            }
        }
        bail!("no etcd member names a leader")
    }

    /// The last lines of node `i`'s log.
    pub fn node_log_tail(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Keeps the run's directory (logs, etcd data) after drop.
    pub fn keep(&mut self) {
        self.keep_dir = true;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        for member in &mut self.etcd {
            member.kill();
        }
        if !self.keep_dir {
            for member in &self.etcd {
                let _ = std::fs::remove_dir_all(&member.data_dir);
            }
        }
    }
}
