//! The daemon's loop ([`server::serve`]) over a real Unix socket in a temporary
//! directory, fed synthetic events (the engine's testkit) instead of the
//! kernel's: every verb of the protocol, a malformed request, a subscriber that
//! does not read, and shutdown. No root and no BPF needed.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, oneshot},
};

use super::server::{self, Config, Rates, Source};
use crate::{
    containers::Enricher,
    engine::{
        Engine, Update,
        testkit::{MS, SEC, cfg, fork, snap, tk},
    },
    events::Event,
    tracker::{Cgroups, Outcome},
};

/// How long a test waits for any one line before it fails (generous: CI runs
/// these beside heavy integration tests on two cores).
pub(super) const PATIENCE: Duration = Duration::from_secs(30);

/// A source fed by the test: each batch sent is one input.
struct TestSource {
    engine: Engine,
    cgroups: Cgroups,
    rx: mpsc::UnboundedReceiver<Vec<Event>>,
}

impl Source for TestSource {
    type Input = Option<Vec<Event>>;

    fn next_input(&mut self) -> impl Future<Output = Option<Vec<Event>>> {
        // Receiving from a channel is cancel-safe, as the loop needs.
        self.rx.recv()
    }

    async fn handle(&mut self, input: Option<Vec<Event>>, out: &mut Vec<Update>) -> Result<Outcome> {
        let Some(evs) = input else { return Ok(Outcome::Ended) };
        for mut ev in evs {
            self.cgroups.name_move(&mut ev);
            self.engine.apply(ev, out);
        }
        Ok(Outcome::Applied)
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn stats(&self, _rates: &Rates, started: Instant) -> Value {
        let s = self.engine.stats();
        json!({"processes": s.processes, "lost": s.lost, "uptime_s": started.elapsed().as_secs_f64()})
    }
}

/// A tree to start from: init (pid 1), and a shell (pid 100) under it.
fn source() -> (TestSource, mpsc::UnboundedSender<Vec<Event>>) {
    let mut engine = Engine::new(cfg());
    let mut out = Vec::new();
    let start = vec![snap(SEC, tk(1, 1, 0), "/sbin/init", &["init"]), snap(SEC, tk(100, 100, 1), "/bin/sh", &["sh"])];
    engine.apply_snapshot(start, Vec::new(), &mut out);
    let (tx, rx) = mpsc::unbounded_channel();
    (TestSource { engine, cgroups: Cgroups::default(), rx }, tx)
}

/// A socket path of its own for each test, in a fresh temporary directory.
pub(super) fn socket_path() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tracer-daemon-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("tracer.sock")
}

/// Test settings: the production ones, a queue of `queue` lines and a stall
/// limit of `stall`.
pub(super) fn config(queue: usize, stall: Duration) -> Config {
    Config { queue, stall_limit: stall, ..Config::new(None, Enricher::none()) }
}

/// What a test body gets: where the daemon listens and how to feed it.
pub(super) struct Harness {
    pub(super) path: PathBuf,
    pub(super) events: mpsc::UnboundedSender<Vec<Event>>,
}

/// Serves with `config` while `body` runs, then stops the daemon and checks that
/// it ended cleanly and removed its socket.
pub(super) async fn with_daemon<F, Fut>(config: Config, body: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let path = socket_path();
    let listener = UnixListener::bind(&path).expect("bind");
    let (src, events) = source();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve = server::serve(
        listener,
        src,
        async move {
            let _ = stop_rx.await;
        },
        config,
    );
    // Kept until the loop ends: a closed channel is the end of the event stream,
    // which the loop reports as an error.
    let h = Harness { path: path.clone(), events: events.clone() };
    let run = async move {
        body(h).await;
        let _ = stop_tx.send(());
    };
    let (served, ()) = tokio::join!(serve, run);
    drop(events);
    served.expect("serve ends cleanly on shutdown");
    assert!(!path.exists(), "the socket file is removed on shutdown");
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One connection: requests written, answers read line by line.
pub(super) struct Client {
    w: OwnedWriteHalf,
    r: BufReader<OwnedReadHalf>,
}

impl Client {
    pub(super) async fn connect(path: &Path) -> Client {
        let (r, w) = UnixStream::connect(path).await.expect("connect").into_split();
        Client { w, r: BufReader::new(r) }
    }

    pub(super) async fn send_raw(&mut self, line: &[u8]) {
        self.w.write_all(line).await.expect("write");
    }

    pub(super) async fn send(&mut self, req: Value) {
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next line, parsed; `None` at the end of the stream.
    pub(super) async fn line(&mut self) -> Option<Value> {
        let mut s = String::new();
        let n = tokio::time::timeout(PATIENCE, self.r.read_line(&mut s)).await.expect("a line in time").expect("read");
        (n > 0).then(|| serde_json::from_str(&s).expect("each line is JSON"))
    }

    pub(super) async fn ask(&mut self, req: Value) -> Value {
        self.send(req).await;
        self.line().await.expect("an answer")
    }

    /// Reads every further line in a task of its own, into a channel (which,
    /// unlike a read, can be waited on with a timeout and nothing lost).
    fn read_on(self) -> (OwnedWriteHalf, mpsc::UnboundedReceiver<Value>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = self.r;
        tokio::spawn(async move {
            let mut s = String::new();
            while matches!(r.read_line(&mut s).await, Ok(n) if n > 0) {
                let Ok(v) = serde_json::from_str(&s) else { return };
                if tx.send(v).is_err() {
                    return;
                }
                s.clear();
            }
        });
        (self.w, rx)
    }
}

/// `n` forks of children of init, pids from `first` on.
fn forks(first: u32, n: u32) -> Vec<Event> {
    (first..first + n).map(|pid| fork(2 * SEC + pid as u64 * MS, tk(pid, pid, 1))).collect()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Option<Value> {
    tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a line in time")
}

#[tokio::test]
async fn version() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let v = c.ask(json!({"verb": "version"})).await;
        assert_eq!(v["ok"], true);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["protocol"], super::protocol::PROTOCOL);
    })
    .await;
}

#[tokio::test]
async fn stats() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let v = c.ask(json!({"verb": "stats"})).await;
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["stats"]["processes"], 2, "{v}");
        // The loop adds its latencies to what the source tells.
        assert!(v["stats"]["latency"]["tree"].is_object(), "{v}");
        assert!(v["stats"]["latency"]["socket"].is_object(), "{v}");
    })
    .await;
}

#[tokio::test]
async fn snapshot_in_each_format() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let v = c.ask(json!({"verb": "snapshot"})).await;
        assert_eq!(v["ok"], true, "{v}");
        let pids: Vec<u64> = v["snapshot"]["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter_map(|p| p["pid"].as_u64())
            .collect();
        assert_eq!(pids, [1, 100], "{v}");
        // A filter narrows it: pid 100 and its descendants.
        let v = c.ask(json!({"verb": "snapshot", "filter": {"pid": 100}})).await;
        assert_eq!(v["snapshot"]["processes"].as_array().map(Vec::len), Some(1), "{v}");
        for format in ["forest", "threads"] {
            let v = c.ask(json!({"verb": "snapshot", "format": format})).await;
            assert_eq!(v["ok"], true, "{v}");
            let text = v["text"].as_str().expect("text");
            assert!(text.contains("init") && text.contains("sh"), "{format}: {text}");
        }
    })
    .await;
}

#[tokio::test]
async fn subscribe_json_with_a_filter() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let first = c.ask(json!({"verb": "subscribe", "filter": {"pid": 100}})).await;
        assert_eq!(first["ok"], true, "{first}");
        assert!(first["snapshot"]["processes"].is_array(), "{first}");
        // A fork under init (filtered out), then one under the shell.
        h.events.send(vec![fork(3 * SEC, tk(200, 200, 1)), fork(3 * SEC + MS, tk(101, 101, 100))]).expect("feed");
        let v = c.line().await.expect("an event");
        assert_eq!(v["event"]["kind"], "fork", "{v}");
        assert_eq!(v["event"]["pid"], 101, "{v}");
    })
    .await;
}

#[tokio::test]
async fn subscribe_text_with_a_filter() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let first = c.ask(json!({"verb": "subscribe", "format": "text", "filter": {"pid": 100}})).await;
        assert_eq!(first["ok"], true, "{first}");
        h.events.send(vec![fork(3 * SEC, tk(200, 200, 1)), fork(3 * SEC + MS, tk(101, 101, 100))]).expect("feed");
        let v = c.line().await.expect("an event");
        assert_eq!(v["kind"], "fork", "{v}");
        let text = v["text"].as_str().expect("text");
        assert!(text.contains("101") && !text.contains("200"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn containers() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        let v = c.ask(json!({"verb": "containers"})).await;
        assert_eq!(v["ok"], true, "{v}");
        // No cgroup of these processes names a container.
        assert_eq!(v["containers"], json!([]), "{v}");
    })
    .await;
}

#[tokio::test]
async fn a_malformed_request_gets_one_error_line() {
    with_daemon(config(64, Duration::from_secs(5)), |h| async move {
        let mut c = Client::connect(&h.path).await;
        c.send_raw(b"not json\n").await;
        let v = c.line().await.expect("an error");
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.starts_with("bad request")), "{v}");
        // One line only: the next answer is that of the next request.
        let v = c.ask(json!({"verb": "version"})).await;
        assert_eq!(v["ok"], true, "{v}");
    })
    .await;
}

/// Subscribes, then floods the daemon without reading: the queue fills once the
/// socket's buffer is full. Returns the client, not yet read from.
async fn stalled_subscriber(h: &Harness) -> Client {
    let mut c = Client::connect(&h.path).await;
    let first = c.ask(json!({"verb": "subscribe"})).await;
    assert_eq!(first["ok"], true, "{first}");
    // Far more than a socket buffer (some 200 KiB) and a 64-line queue hold; in
    // batches, with a pause between, so the writer fills the socket meanwhile.
    for b in 0..40 {
        h.events.send(forks(1000 + b * 100, 100)).expect("feed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_missed_notice_and_a_snapshot() {
    with_daemon(config(64, Duration::from_secs(60)), |h| async move {
        let c = stalled_subscriber(&h).await;
        let (_w, mut rx) = c.read_on();
        // Resyncing happens after an input: keep a trickle of events coming while
        // the client catches up.
        let mut pid = 10_000;
        let notice = loop {
            h.events.send(forks(pid, 1)).expect("feed");
            pid += 1;
            match tokio::time::timeout(Duration::from_millis(5), rx.recv()).await {
                Ok(Some(v)) if v.get("missed").is_some() => break v,
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => panic!("the daemon closed the stream"),
            }
            assert!(pid < 200_000, "no missed notice came");
        };
        assert!(notice["missed"].as_u64().is_some_and(|n| n > 0), "{}", notice["missed"]);
        let procs = notice["snapshot"]["processes"].as_array().expect("a snapshot");
        assert!(procs.len() > 2, "the snapshot has the forks made so far: {}", procs.len());
        // Then the stream goes on: events sent from now on come through.
        let after = 500_000;
        let deadline = Instant::now() + PATIENCE;
        for pid in after.. {
            assert!(Instant::now() < deadline, "no event came after the notice");
            h.events.send(forks(pid, 1)).expect("feed");
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await
                && v["event"]["pid"].as_u64().is_some_and(|p| p >= after as u64)
            {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_stays_stalled_is_cut_loose() {
    with_daemon(config(64, Duration::from_millis(100)), |h| async move {
        let c = stalled_subscriber(&h).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The stall is looked at after an input.
        h.events.send(forks(20_000, 1)).expect("feed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_w, mut rx) = c.read_on();
        let mut last = None;
        while let Some(v) = next(&mut rx).await {
            last = Some(v);
        }
        let last = last.expect("some lines");
        assert_eq!(last["ok"], false, "{last}");
        assert!(last["error"].as_str().is_some_and(|e| e.starts_with("cut loose")), "{last}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_serve_and_its_subscriptions() {
    let path = socket_path();
    let listener = UnixListener::bind(&path).expect("bind");
    let (src, _events) = source();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve = server::serve(
        listener,
        src,
        async move {
            let _ = stop_rx.await;
        },
        config(64, Duration::from_secs(5)),
    );
    let body = async {
        let mut c = Client::connect(&path).await;
        assert_eq!(c.ask(json!({"verb": "subscribe"})).await["ok"], true);
        let _ = stop_tx.send(());
        // The subscription ends with the daemon.
        while c.line().await.is_some() {}
    };
    let (served, ()) = tokio::join!(serve, body);
    served.expect("serve ends cleanly on shutdown");
    assert!(!path.exists(), "the socket file is removed on shutdown");
    assert!(UnixStream::connect(&path).await.is_err(), "no client gets in any more");
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
