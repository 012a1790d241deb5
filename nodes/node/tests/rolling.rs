//! A rolling restart of a three-member cluster under load: each member in
//! turn is drained, stopped with SIGTERM and started again, while a gateway
//! offers calls and informants take them, each through whichever members
//! are up, as real clients configured with every member would. No
//! acknowledged call is lost, none is connected twice, and none is cut off
//! while an informant talks.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess};
use tonic::Code;

const INFORMANTS: usize = 4;
/// How long an informant talks: calls are in progress during each drain.
const TALK: Duration = Duration::from_millis(150);
/// A call offered every...
const ARRIVALS: Duration = Duration::from_millis(40);

fn member(etcd: &EtcdProcess, id: &str) -> NodeProcess {
    NodeProcess::start(
        &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "3"],
        &[("RUST_LOG", "info,ractor=warn,relais_node=debug")],
    )
}

/// The members up, as clients see them: a request goes to one of them and,
/// if it cannot be served there, to the next.
#[derive(Clone, Default)]
struct Up {
    urls: Arc<Mutex<Vec<String>>>,
    turn: Arc<AtomicUsize>,
}

impl Up {
    fn next(&self) -> Clients {
        let urls = self.urls.lock().unwrap();
        let url = &urls[self.turn.fetch_add(1, Ordering::Relaxed) % urls.len()];
        Clients::at(url, "cai")
    }
}

/// An error after which a client tries another member.
fn elsewhere(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded)
}

/// What the informants saw.
#[derive(Default)]
struct Seen {
    /// Call → informants it was connected to.
    connected: HashMap<String, Vec<String>>,
    /// Calls whose finish was refused: cut off while the informant talked.
    cut_off: Vec<(String, String)>,
    relogins: usize,
    /// Calls an informant logged in on again.
    resumed: Vec<String>,
}

/// One informant's desktop: logs in through a member that is up, takes
/// every offer, talks, finishes; logs in again through another member when
/// its session ends (its member drained or stopped).
async fn desk(id: String, up: Up, seen: Arc<Mutex<Seen>>, stop: tokio::sync::watch::Receiver<bool>) {
    let skills = vec![support::skill("justice", 3)];
    while !*stop.borrow() {
        let mut c = up.next();
        match c.desk.login(pb::LoginRequest { informant_id: id.clone(), skills: skills.clone() }).await {
            // Logged in on a call the cluster still holds as connected to
            // this informant (its finish was lost with a queue's member):
            // the desktop shows it, and it is finished.
            Ok(status) if status.get_ref().state == pb::InformantState::OnCall as i32 => {
                let call_id = status.into_inner().call_id;
                seen.lock().unwrap().resumed.push(call_id.clone());
                finish(&id, &call_id, &up, &mut c, &seen).await;
            }
            Ok(_) => {}
            // Logged in already (its session broke with the member it went
            // through): open the session again.
            Err(e) if e.code() == Code::AlreadyExists => {}
            Err(e) if elsewhere(e.code()) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => panic!("{id} login: {e:?}"),
        }
        let Ok(session) = c.desk.session(pb::SessionRequest { informant_id: id.clone() }).await else { continue };
        let mut session = session.into_inner();
        loop {
            let event = tokio::select! {
                event = session.message() => event,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if *stop.borrow() { break } else { continue }
                }
            };
            let Ok(Some(event)) = event else { break };
            let Some(pb::informant_event::Kind::Offer(offer)) = event.kind else { continue };
            let accept = pb::OfferReply { informant_id: id.clone(), offer_id: offer.offer_id };
            if c.desk.accept_offer(accept).await.is_err() {
                continue;
            }
            seen.lock().unwrap().connected.entry(offer.call_id.clone()).or_default().push(id.clone());
            tokio::time::sleep(TALK).await;
            finish(&id, &offer.call_id, &up, &mut c, &seen).await;
        }
        seen.lock().unwrap().relogins += 1;
    }
    let _ = up.next().desk.logout(pb::InformantRequest { informant_id: id.clone() }).await;
}

/// Finishes a call, through another member if the one asked is going; a
/// refusal on the first try means the call was ended under the informant.
async fn finish(id: &str, call_id: &str, up: &Up, c: &mut Clients, seen: &Arc<Mutex<Seen>>) {
    let request = pb::FinishCallRequest { informant_id: id.into(), call_id: call_id.into() };
    let start = Instant::now();
    let mut retried = false;
    loop {
        match c.desk.finish_call(request.clone()).await {
            Ok(_) => return,
            // A retry refused: the first try landed.
            Err(e) if retried && e.code() == Code::FailedPrecondition => return,
            Err(e) if elsewhere(e.code()) && start.elapsed() < Duration::from_secs(10) => {
                retried = true;
                *c = up.next();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                seen.lock().unwrap().cut_off.push((call_id.into(), format!("{id}: {e:?}")));
                return;
            }
        }
    }
}

/// Offers calls until `stop`, each retried through the next member until it
/// is acknowledged (the same call id); returns the acknowledged ids.
async fn gateway(up: Up, stop: tokio::sync::watch::Receiver<bool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !*stop.borrow() {
        n += 1;
        let id = format!("r{n:04}");
        let start = Instant::now();
        loop {
            match up.next().gateway.offer_call(support::offer(&id, "justice")).await {
                Ok(_) => break,
                Err(e) if elsewhere(e.code()) && start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("offer {id}: {e:?}"),
            }
        }
        acknowledged.push(id);
        tokio::time::sleep(ARRIVALS).await;
    }
    acknowledged
}

async fn until_members(url: &str, n: usize) {
    let mut c = Clients::at(url, "cai");
    let start = Instant::now();
    while c.admin.list_members(pb::ListRequest {}).await.map_or(0, |r| r.into_inner().members.len()) != n {
        assert!(start.elapsed() < Duration::from_secs(15), "{url} sees {n} members");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_no_call_and_cuts_none_off() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let ids = ["node-a", "node-b", "node-c"];
    let mut nodes: Vec<NodeProcess> = ids.iter().map(|id| member(&etcd, id)).collect();
    let up = Up::default();
    *up.urls.lock().unwrap() = nodes.iter().map(NodeProcess::url).collect();
    for node in &nodes {
        until_members(&node.url(), 3).await;
    }
    let mut c = up.next();
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_desks, desks_stop) = tokio::sync::watch::channel(false);
    let desks: Vec<_> = (0..INFORMANTS)
        .map(|i| tokio::spawn(desk(format!("inf-{i}"), up.clone(), seen.clone(), desks_stop.clone())))
        .collect();
    let (stop_gateway, gateway_stop) = tokio::sync::watch::channel(false);
    let offering = tokio::spawn(gateway(up.clone(), gateway_stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Each member in turn: drained until it holds no call and no informant,
    // stopped, started again under the same id.
    for (i, id) in ids.iter().enumerate() {
        let url = nodes[i].url();
        let mut drained = Clients::at(&url, "cai");
        let start = Instant::now();
        loop {
            let left = drained.admin.drain(pb::DrainRequest {}).await.unwrap().into_inner();
            if left.live_calls == 0 && left.informants_logged_in == 0 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{id} still holds {left:?} after 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("{id} drained in {:?}", start.elapsed());
        up.urls.lock().unwrap().retain(|u| *u != url);
        assert_eq!(nodes[i].terminate(Duration::from_secs(15)), Some(true), "{id} stops on SIGTERM");
        nodes[i] = member(&etcd, id);
        up.urls.lock().unwrap().push(nodes[i].url());
        until_members(&nodes[i].url(), 3).await;
    }

    stop_gateway.send(true).unwrap();
    let acknowledged = offering.await.unwrap();
    // Every acknowledged call reaches an informant.
    let start = Instant::now();
    loop {
        let missing: Vec<&String> = {
            let seen = seen.lock().unwrap();
            acknowledged.iter().filter(|c| !seen.connected.contains_key(*c)).collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "calls never connected: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_desks.send(true).unwrap();
    for d in desks {
        d.await.unwrap();
    }
    {
        let seen = seen.lock().unwrap();
        println!(
            "{} calls acknowledged and connected through a rolling restart; {} re-logins, back on a call: {:?}",
            acknowledged.len(),
            seen.relogins,
            seen.resumed
        );
        for call in &acknowledged {
            let to = seen.connected.get(call).unwrap_or_else(|| panic!("{call} was never connected"));
            assert_eq!(to.len(), 1, "{call} connected to {to:?}");
        }
        assert_eq!(seen.connected.len(), acknowledged.len(), "only acknowledged calls were connected");
        assert!(seen.cut_off.is_empty(), "calls cut off: {:?}", seen.cut_off);
    }
    let start = Instant::now();
    while !support::stored_calls(&mut kv).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "ended calls still in etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
