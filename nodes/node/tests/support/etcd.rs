//! Test support: a real etcd (Debian's `etcd-server`) on free loopback
//! ports with its own data directory: one member, or a cluster of three.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdProcess {
    child: Option<Child>,
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    name: String,
    /// `name=peer_url,…` of every member.
    initial_cluster: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl EtcdProcess {
    /// Starts etcd and waits until it answers.
    pub fn start() -> Self {
        let data_dir = std::env::temp_dir().join(format!("relais-etcd-{}-{}", std::process::id(), free_port()));
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let mut etcd = Self {
            child: None,
            client_url: format!("http://127.0.0.1:{}", free_port()),
            initial_cluster: format!("test={peer_url}"),
            peer_url,
            data_dir,
            name: "test".into(),
        };
        etcd.launch();
        etcd
    }

    /// Starts a cluster of three members and waits until each answers.
    pub fn start_three() -> Vec<Self> {
        let mut members: Vec<Self> = (0..3)
            .map(|i| Self {
                child: None,
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                data_dir: std::env::temp_dir().join(format!("relais-etcd-{}-{}", std::process::id(), free_port())),
                name: format!("e{i}"),
                initial_cluster: String::new(),
            })
            .collect();
        let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        for m in &mut members {
            m.initial_cluster = initial.join(",");
            m.spawn();
        }
        for m in &members {
            m.wait_ready();
        }
        members
    }

    fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.data_dir.with_extension("log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--pre-vote=true", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd ({e}): `make deps` installs Debian's etcd-server"));
        self.child = Some(child);
    }

    /// Polls etcd's `/health` endpoint over plain HTTP.
    fn wait_ready(&self) {
        use std::io::{Read, Write};
        let addr = self.client_url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut answer = String::new();
            if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let _ = stream.read_to_string(&mut answer);
            }
            if answer.contains("\"health\":\"true\"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd at {} did not become healthy", self.client_url);
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        Command::new("kill").args([signal, &pid]).status().expect("kill");
    }

    /// Freezes etcd (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills etcd (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}
