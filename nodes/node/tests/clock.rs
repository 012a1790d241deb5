//! A step of the host's wall clock changes nothing in routing. The node runs
//! under libfaketime (preloaded), which fakes only the wall clock, from an
//! offset file that the test rewrites: what NTP does when it sets a clock
//! that was far off.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use relais_proto::v1 as pb;
use support::*;

/// The offset file of one node's fake wall clock.
struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl FakeClock {
    fn new(name: &str) -> Self {
        let lib = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("faketime/libfaketime.so.1"))
            .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
            .find(|p| p.is_file())
            .expect("libfaketime (Debian's faketime package; `make deps` installs it)");
        let dir = std::env::temp_dir().join(format!("relais-clock-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("offset");
        std::fs::write(&file, "+0\n").unwrap();
        Self { lib, file, _dir: TempDir(dir) }
    }

    /// The environment that puts a process on this clock; only its wall
    /// clock is faked, and the offset is read again at most every second.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_CACHE_DURATION", "1".into()),
            ("DONT_FAKE_MONOTONIC", "1".into()),
        ]
    }

    /// Sets the wall clock `offset_s` seconds from the host's, and waits
    /// until a process on this clock reads it: checked with `date`, so that
    /// a clock that does not move cannot pass for a node that ignores it.
    async fn step(&self, offset_s: i64) {
        let partial = self.file.with_extension("new");
        std::fs::write(&partial, format!("{offset_s:+}\n")).unwrap();
        std::fs::rename(&partial, &self.file).unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mut date = std::process::Command::new("date");
        date.arg("+%s");
        for (k, v) in self.env() {
            date.env(k, v);
        }
        let faked: i64 = String::from_utf8(date.output().unwrap().stdout).unwrap().trim().parse().unwrap();
        let host = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
        assert!(
            (faked - host - offset_s).abs() <= 2,
            "the fake clock reads {faked}, the host {host}: not {offset_s:+} s"
        );
    }

    fn start_node(&self) -> NodeProcess {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        NodeProcess::start(&[], &env)
    }
}

#[tokio::test]
async fn a_call_that_arrives_after_the_clock_steps_back_waits_behind_the_calls_before_it() {
    let clock = FakeClock::new("back");
    let node = clock.start_node();
    let mut c = Clients::new(&node, "cai").await;
    apply(&mut c, vec![queue("logement", "logement", 1)]).await;

    let first = c.gateway.offer_call(offer("c1", "logement")).await.unwrap().into_inner();
    assert_eq!(first.call.unwrap().position, 1);
    clock.step(-60).await;
    let second = c.gateway.offer_call(offer("c2", "logement")).await.unwrap().into_inner();
    assert_eq!(second.call.unwrap().position, 2, "the later call is second in line");

    let mut desk = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let (_, call_id) = desk.next_offer().await;
    assert_eq!(call_id, "c1", "the call that arrived first is offered first");
}

#[tokio::test]
async fn a_clock_stepping_forward_expires_no_offer_and_deflects_no_waiting_call() {
    let clock = FakeClock::new("forward");
    let node = clock.start_node();
    let mut c = Clients::new(&node, "cai").await;
    let mut q = queue("logement", "logement", 1);
    q.offer_timeout_ms = 20_000;
    q.max_wait_ms = 40_000;
    apply(&mut c, vec![q]).await;

    c.gateway.offer_call(offer("c1", "logement")).await.unwrap();
    let mut desk = Session::open(&mut c, "ana", vec![skill("logement", 3)]).await;
    let (offer_id, call_id) = desk.next_offer().await;
    assert_eq!(call_id, "c1");
    c.gateway.offer_call(offer("c2", "logement")).await.unwrap();

    clock.step(60).await;
    let accepted = c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await;
    assert_eq!(accepted.expect("the offer is still open").into_inner().call_id, "c1");
    let waiting = c.gateway.get_call(pb::GetCallRequest { call_id: "c2".into() }).await.unwrap().into_inner();
    assert_eq!(state_of(&waiting), pb::CallState::Queued, "c2 has waited seconds, not its maximum wait");
}
