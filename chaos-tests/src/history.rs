//! The history of a run: every request the workload sent, every answer,
//! error and timeout, every stream event and every fault, as seen by the
//! clients, one JSON object per line.
//!
//! The history is the only input of the checker, so it says everything the
//! checker needs in the clients' own words: nothing here is read from the
//! nodes' logs or from etcd. Times are milliseconds since the Unix epoch:
//! `t_ms` is when the client recorded the line, `at_ms` (in stream events)
//! is the time the node stamped on the event. Every process of a run shares
//! one host clock; a node keeps the time it read from it at start, even when
//! the `clock-jump` scenario steps its wall clock, so the checker may compare
//! the nodes' stamps with each other and with the clients' times.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Lines one run may record at most; past it the history says it was cut
/// short (`End { truncated: true }`) and the checker refuses to vouch for it.
pub const MAX_RECORDS: usize = 4_000_000;

/// How a request that got no answer ended for the client.
///
/// A timeout, `UNAVAILABLE` or a broken connection may or may not have taken
/// effect on the node: the outcome is *unknown*, never *failed*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The node answered with an error: nothing happened.
    Failed,
    /// No answer, or an answer that does not say whether it took effect.
    Unknown,
}

/// What a call event (Gateway.WatchCall) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Queued,
    Offered,
    /// Served to an informant who never answered the proposal (`offered`
    /// with `unanswered`): the queue took the call back.
    Unanswered,
    Connected,
    Completed,
    Abandoned,
    Deflected,
    Transferred,
}

impl CallKind {
    /// Whether the event dates a routing decision: the queue served the
    /// call to an informant (who took it, or never answered).
    pub fn serves(self) -> bool {
        matches!(self, Self::Offered | Self::Unanswered)
    }

    /// Whether the call ends with this event.
    pub fn is_end(self) -> bool {
        matches!(self, Self::Completed | Self::Abandoned | Self::Deflected)
    }
}

/// What an informant's session event (Informant.Session) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    State,
    Offer,
    OfferWithdrawn,
    CallEnded,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the client recorded it (ms since the Unix epoch).
    pub t_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run's parameters: the first line.
    Run {
        scenario: String,
        seed: u64,
        nodes: usize,
        etcd_members: usize,
        lease_ttl_s: u64,
        backend: String,
        /// The load, as a multiple of the CAI-like peak.
        #[serde(default)]
        multiple: f64,
    },
    /// A gateway sends OfferCall (attempt 1, then retries under the same id).
    OfferSent {
        call_id: String,
        queue_id: String,
        priority: u32,
        attempt: u32,
        node: String,
    },
    /// The node acknowledged the call.
    OfferAcked {
        call_id: String,
        created: bool,
        arrived_at_ms: i64,
    },
    /// An attempt got no acknowledgement.
    OfferFailed {
        call_id: String,
        attempt: u32,
        node: String,
        code: String,
        outcome: Outcome,
    },
    /// The gateway stopped trying: the call's fate is `outcome`.
    OfferAbandoned {
        call_id: String,
        outcome: Outcome,
    },
    /// The gateway (re)opens the call's stream.
    WatchOpened {
        call_id: String,
        after_sequence: u64,
        node: String,
    },
    /// An event of the call's stream.
    CallEvent {
        call_id: String,
        sequence: u64,
        at_ms: i64,
        kind: CallKind,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        queue_id: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        informant_id: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// The stream ended (normally after the call's end, or broken).
    WatchEnded {
        call_id: String,
        error: Option<String>,
    },
    /// The caller hangs up.
    HangUpSent {
        call_id: String,
        node: String,
    },
    HangUpDone {
        call_id: String,
        state: String,
    },
    HangUpFailed {
        call_id: String,
        code: String,
        outcome: Outcome,
    },
    /// An informant logs in (again).
    LoginSent {
        informant_id: String,
        node: String,
    },
    LoginDone {
        informant_id: String,
        ok: bool,
        code: String,
    },
    /// An event of an informant's session.
    SessionEvent {
        informant_id: String,
        sequence: u64,
        at_ms: i64,
        kind: SessionKind,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        call_id: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        offer_id: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        state: String,
    },
    AcceptSent {
        informant_id: String,
        call_id: String,
        offer_id: String,
    },
    AcceptDone {
        informant_id: String,
        call_id: String,
        ok: bool,
        code: String,
        outcome: Option<Outcome>,
    },
    FinishSent {
        informant_id: String,
        call_id: String,
    },
    FinishDone {
        informant_id: String,
        call_id: String,
        ok: bool,
        code: String,
        outcome: Option<Outcome>,
    },
    /// A fault begins. `queues` are the queues it hits (those its node owned,
    /// with `waiting` calls waiting in them); empty means every queue.
    Fault {
        fault_id: u32,
        kind: String,
        node: Option<String>,
        queues: Vec<String>,
        waiting: u32,
        detail: String,
    },
    /// A fault ends (the node restarted, resumed, the link healed).
    /// `moved` are the queues it hit that another node hosted just before
    /// it ended (asked of partitions only).
    FaultEnded {
        fault_id: u32,
        detail: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        moved: Vec<String>,
    },
    /// A fault of the schedule that this host cannot inject.
    Unsupported {
        kind: String,
        why: String,
    },
    /// A call's state read (GetCall) at the end of the run, for a call whose
    /// stream told no end.
    Final {
        call_id: String,
        state: String,
    },
    /// The last line.
    End {
        truncated: bool,
    },
}

/// Current time in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Collects the records of a run, in the order they happen, up to
/// [`MAX_RECORDS`].
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<(Vec<Record>, bool)>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `event` now.
    pub fn record(&self, event: Event) {
        let record = Record { t_ms: now_ms(), event };
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.0.len() < MAX_RECORDS {
            inner.0.push(record);
        } else {
            inner.1 = true;
        }
    }

    /// Ends the history and hands it over.
    pub fn finish(&self) -> Vec<Record> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let truncated = inner.1;
        let mut records = std::mem::take(&mut inner.0);
        records.push(Record { t_ms: now_ms(), event: Event::End { truncated } });
        records
    }
}

/// Writes `records` as JSON lines.
pub fn write(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a history written by [`write`].
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut records = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        anyhow::ensure!(records.len() < MAX_RECORDS + 1, "{}: more than {MAX_RECORDS} lines", path.display());
        let record = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not a history line: {e}", path.display(), n + 1))?;
        records.push(record);
    }
    Ok(records)
}
