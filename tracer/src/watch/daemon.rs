//! `tracer watch` through a running daemon: the view is rebuilt from the daemon's
//! JSON snapshots (`{"verb":"snapshot","format":"json","show_exited":true}`), taken
//! every [`SNAPSHOT_EVERY`]. Each snapshot is loaded into a fresh engine (as a task
//! iterator walk would be), so that the same view code draws it; each process's
//! container is the snapshot's (the daemon attributes and names them). Threads
//! that appeared since the previous snapshot count as spawns.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use serde_json::Value;

use super::view::{Counters, View};
use crate::{
    daemon::{
        client::Client,
        protocol::{Filter, LineFormat, Request, SnapshotFormat},
    },
    engine::{Engine, EngineConfig, FxHashSet},
    events::{Argv, Body, Comm, Event, ExitStatus, ProcRef, TaskInfo},
    render::{Containers, Known},
    story::Story,
};

/// Container stories from the daemon, as headlines: a second connection
/// subscribed to them, read by a task of its own (a line read is not cancel-safe,
/// a channel receive is). None when the daemon does not offer them; the channel
/// closes when the daemon closes the subscription.
pub async fn subscribe_news(socket: &std::path::Path) -> Option<tokio::sync::mpsc::Receiver<String>> {
    let mut c = Client::connect(socket).await.ok()??;
    let filter = Filter { containers: true, ..Filter::default() };
    if let Err(e) = c.request(&Request::Subscribe { format: LineFormat::Json, filter }).await {
        log::info!("no container news from the daemon: {e:#}");
        return None;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok(Some(v)) = c.next().await {
            let Some(story) = v.get("story") else { continue };
            match serde_json::from_value::<Story>(story.clone()) {
                Ok(s) => {
                    if tx.send(s.headline()).await.is_err() {
                        break;
                    }
                }
                Err(e) => log::debug!("a story the daemon sent does not parse: {e}"),
            }
        }
    });
    Some(rx)
}

/// The next headline; pends forever without news, None once it ended.
pub async fn next_news(news: &mut Option<tokio::sync::mpsc::Receiver<String>>) -> Option<String> {
    match news {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How often a snapshot is requested.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// The daemon's tree, as of the last snapshot.
pub struct DaemonSource {
    client: Client,
    pub engine: Engine,
    /// The containers of its processes, as the daemon gave them.
    pub containers: Containers,
    pub counters: Counters,
    /// Threads of the previous snapshot, (tid, start).
    threads: FxHashSet<(u32, u64)>,
    first: bool,
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn u32_of(v: &Value, k: &str) -> u32 {
    u32::try_from(u64_of(v, k)).unwrap_or(0)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn argv_of(v: &Value) -> Argv {
    let mut raw = Vec::new();
    for a in v.get("argv").and_then(Value::as_array).into_iter().flatten() {
        raw.extend_from_slice(a.as_str().unwrap_or("").as_bytes());
        raw.push(0);
    }
    Argv {
        real_len: raw.len() as u32,
        raw: Bytes::from(raw),
        truncated: v.get("argv_truncated").and_then(Value::as_bool).unwrap_or(false),
        unreadable: v.get("argv_unreadable").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// Loads a snapshot (`tracer ps --json`'s object) into a new engine. Returns it and
/// the exited processes whose exit status the snapshot does not give.
pub fn engine_from_snapshot(snap: &Value, cfg: EngineConfig) -> (Engine, FxHashSet<ProcRef>) {
    let mut engine = Engine::new(cfg);
    let mut events = Vec::new();
    let mut exits = Vec::new();
    let mut unknown = FxHashSet::default();
    for p in snap.get("processes").and_then(Value::as_array).into_iter().flatten() {
        let pid = u32_of(p, "pid");
        let start_ns = u64_of(p, "start_ns");
        let task = TaskInfo {
            pid,
            tid: pid,
            ppid: u32_of(p, "ppid"),
            ns_pid: u32_of(p, "ns_pid"),
            ns_tid: u32_of(p, "ns_pid"),
            uid: u32_of(p, "uid"),
            gid: u32_of(p, "gid"),
            start_ns,
            proc_start_ns: start_ns,
            parent_start_ns: u64_of(p, "parent_start_ns"),
            cgroup_id: u64_of(p, "cgroup_id"),
            pidns: u32_of(p, "pidns"),
            mntns: u32_of(p, "mntns"),
            comm: Comm::from_str_lossy(str_of(p, "comm")),
            kthread: p.get("kthread").and_then(Value::as_bool).unwrap_or(false),
            exiting: false,
        };
        let body = |argv: Argv| Body::Snapshot {
            utime_ns: u64_of(p, "utime_ns"),
            stime_ns: u64_of(p, "stime_ns"),
            rss_pages: u64_of(p, "rss_pages"),
            exe: str_of(p, "exe").to_string(),
            argv,
            zombie: false,
        };
        let argv = argv_of(p);
        let threads = p.get("threads").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        // The leader's visit first: it carries the process's own fields.
        let mut leader = task;
        if let Some(th) = threads.iter().find(|th| u32_of(th, "tid") == pid) {
            leader.comm = Comm::from_str_lossy(str_of(th, "comm"));
        }
        events.push(Event { ts_ns: 0, cpu: 0, task: leader, body: body(argv.clone()) });
        for th in threads.iter().filter(|th| u32_of(th, "tid") != pid) {
            let mut t = task;
            t.tid = u32_of(th, "tid");
            t.start_ns = u64_of(th, "start_ns");
            t.comm = Comm::from_str_lossy(str_of(th, "comm"));
            events.push(Event { ts_ns: 0, cpu: 0, task: t, body: body(argv.clone()) });
        }
        if str_of(p, "state") == "exited" {
            let raw = p.get("exit").and_then(|e| e.get("raw")).and_then(Value::as_u64);
            if raw.is_none() {
                unknown.insert(ProcRef { pid, start_ns });
            }
            let status = ExitStatus { raw: raw.map_or(0, |r| r as u32) };
            let at = u64_of(p, "exited_at_ns");
            exits.push(Event { ts_ns: at, cpu: 0, task, body: Body::ProcessExit { status, reaper: None } });
        }
    }
    let mut out = Vec::new();
    engine.apply_snapshot(events, Vec::new(), &mut out);
    // Exits in time order, after the visits (the model holds no exit for a thread it
    // does not know: the leader's visit gave it one).
    exits.sort_by_key(|e| e.ts_ns);
    for ev in exits {
        engine.apply(ev, &mut out);
    }
    // Release exits held for threads.
    engine.tick(0, &mut out);
    (engine, unknown)
}

/// The containers of a snapshot's processes (their `container` objects), by cgroup.
pub fn containers_from_snapshot(snap: &Value) -> Containers {
    let mut cx = Containers::default();
    let mut by_id: HashMap<String, Arc<Known>> = HashMap::new();
    for p in snap.get("processes").and_then(Value::as_array).into_iter().flatten() {
        let cgroup = u64_of(p, "cgroup_id");
        if cx.of_cgroup(cgroup).is_some() {
            continue;
        }
        let Some(k) = p.get("container").and_then(Known::from_json) else { continue };
        let k = by_id.entry(k.container.id.clone()).or_insert_with(|| Arc::new(k)).clone();
        cx.insert(cgroup, k);
    }
    cx
}

impl DaemonSource {
    pub fn new(client: Client) -> DaemonSource {
        DaemonSource {
            client,
            engine: Engine::new(crate::tracker::engine_config()),
            containers: Containers::default(),
            counters: Counters::default(),
            threads: FxHashSet::default(),
            first: true,
        }
    }

    /// Takes a new snapshot (and the daemon's counters); counts the threads that
    /// appeared since the previous one as spawns in `view`.
    pub async fn refresh(&mut self, view: &mut View) -> Result<()> {
        let req = Request::Snapshot {
            format: SnapshotFormat::Json,
            filter: Filter::default(),
            show_exited: true,
            by_container: false,
        };
        let v = self.client.request(&req).await?;
        let snap = v.get("snapshot").ok_or_else(|| anyhow!("the tracer daemon sent no snapshot"))?;
        let (engine, unknown) = engine_from_snapshot(snap, crate::tracker::engine_config());
        self.containers = containers_from_snapshot(snap);
        let mut threads = FxHashSet::default();
        for p in engine.live_processes() {
            for th in &p.threads {
                threads.insert((th.tid, th.start_ns));
                if !self.first && th.tid != p.pid && !self.threads.contains(&(th.tid, th.start_ns)) {
                    view.spawn(p.id(), th.start_ns);
                }
            }
        }
        self.threads = threads;
        self.first = false;
        view.unknown_exits = unknown;
        let stats = self.client.request(&Request::Stats).await?;
        let s = stats.get("stats").cloned().unwrap_or(Value::Null);
        let total = match s.get("events_total") {
            Some(Value::Object(m)) => {
                m.iter().filter(|(k, _)| k.as_str() != "snapshot").filter_map(|(_, n)| n.as_u64()).sum()
            }
            Some(n) => n.as_u64().unwrap_or(0),
            None => 0,
        };
        let es = engine.stats();
        self.counters = Counters {
            tasks: s.get("threads").and_then(Value::as_u64).unwrap_or(es.threads as u64),
            processes: s.get("processes").and_then(Value::as_u64).unwrap_or(es.processes as u64),
            events_total: total,
            lost: s.get("lost").and_then(Value::as_u64).unwrap_or(0),
            degraded: s.get("degraded").and_then(Value::as_bool).unwrap_or(false),
        };
        self.engine = engine;
        Ok(())
    }
}
