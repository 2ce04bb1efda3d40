//! `tracer daemon`: one engine, many clients over a Unix socket.
//!
//! [`run`] loads the programs ([`Tracker::start`]), binds the socket and hands
//! both to [`serve`]. There one task owns the event [`Source`] (and so the
//! engine): it applies events, answers requests and feeds subscribers, so the
//! model needs no lock. The source is a trait so that the loop is tested without
//! BPF, on synthetic events (`daemon/tests.rs`).
//!
//! Each client has a task that reads its requests and, for a subscription, a
//! bounded queue of lines and a writer. The loop never waits for a client: a
//! full queue counts missed lines; once the queue has room again the client is
//! told how many it missed and gets a fresh snapshot to go on from. A client
//! whose queue stays full for [`STALL_LIMIT`] (in tests, [`Config::stall_limit`])
//! is cut loose. A writer sends all the lines waiting in its queue with one
//! write: one system call per batch, not per event.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use super::{
    latency::{self, Latency},
    protocol::{self, Filter, LineFormat, Request, SnapshotFormat},
};
use crate::{
    cli::DaemonArgs,
    clock,
    engine::{Engine, Update},
    output::{self, Line},
    render::{self, RenderOptions},
    shutdown::Shutdown,
    story::{Stories, Story},
    stream,
    tracker::{self, Cgroups, Step, Tracker},
};

/// Lines queued per subscriber.
const QUEUE: usize = 8192;
/// A subscriber whose queue stays full this long is disconnected.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Most bytes a subscriber's writer gathers into one write.
const WRITE_BATCH: usize = 256 << 10;

/// A line for a subscriber, and the kernel time of the event it tells (0 for
/// lines that tell none).
struct Out {
    line: Bytes,
    ts_ns: u64,
}

/// What a client task asks the engine task.
struct Ask {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    Line(Vec<u8>),
    Subscribed { first: Vec<u8>, lines: mpsc::Receiver<Out>, cut: Arc<AtomicBool>, latency: latency::Shared },
}

struct Subscriber {
    filter: Filter,
    /// `filter.container`, resolved per cgroup.
    scope: Option<stream::ContainerScope>,
    format: LineFormat,
    tx: mpsc::Sender<Out>,
    missed: u64,
    stalled_since: Option<Instant>,
    cut: Arc<AtomicBool>,
}

/// Removes the socket file when the daemon stops.
struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the daemon's loop needs of the thing that tracks the processes: the
/// kernel's events in production ([`Tracker`]), synthetic events in tests.
pub trait Source {
    /// One thing to do, as [`Source::next_input`] returns it.
    type Input;

    /// Waits for the next thing to do. Must be cancel-safe: the loop waits for it
    /// and for requests at once, and drops it when a request comes first.
    fn next_input(&mut self) -> impl Future<Output = Self::Input>;

    /// Applies `input`, its updates into `out`. Runs to completion (never
    /// cancelled), so it may take its time (a repair walk).
    fn handle(&mut self, input: Self::Input, out: &mut Vec<Update>) -> impl Future<Output = Result<Step>>;

    /// The model the answers are made from.
    fn engine(&self) -> &Engine;

    /// The cgroups the model's processes are in.
    fn cgroups(&self) -> &Cgroups;

    /// The `stats` answer (without the latencies, which the loop adds).
    fn stats(&self, rates: &Rates, started: Instant) -> serde_json::Value;
}

impl Source for Tracker {
    type Input = tracker::Input;

    fn next_input(&mut self) -> impl Future<Output = tracker::Input> {
        Tracker::next_input(self)
    }

    fn handle(&mut self, input: tracker::Input, out: &mut Vec<Update>) -> impl Future<Output = Result<Step>> {
        Tracker::handle(self, input, out)
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn stats(&self, rates: &Rates, started: Instant) -> serde_json::Value {
        stats_json(self, rates, started)
    }
}

/// How [`serve`] serves, besides what it serves.
pub struct Config {
    /// The group whose members may connect (besides root and our own user).
    pub gid: Option<u32>,
    /// Names of containers, from the runtimes' state.
    pub enrich: crate::containers::Enricher,
    /// Lines queued per subscriber.
    pub queue: usize,
    /// A subscriber whose queue stays full this long is disconnected.
    pub stall_limit: Duration,
}

impl Config {
    /// The daemon's settings: those of production, for `gid` and `enrich`.
    pub fn new(gid: Option<u32>, enrich: crate::containers::Enricher) -> Config {
        Config { gid, enrich, queue: QUEUE, stall_limit: STALL_LIMIT }
    }
}

/// `tracer daemon`: loads the programs, binds the socket and serves until SIGINT
/// or SIGTERM.
pub async fn run(args: DaemonArgs) -> Result<ExitCode> {
    // Handlers first: a stop signal at any point after this ends cleanly.
    let mut shutdown = Shutdown::new()?;
    let path = args.socket.clone();
    let gid = match &args.group {
        Some(g) => Some(group_id(g).with_context(|| format!("--group {g}: no such group in /etc/group"))?),
        None => None,
    };
    let mut updates = Vec::with_capacity(4096);
    let tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
    let listener = bind(&path, gid).await?;
    log::info!("tracer daemon: serving {} ({} processes tracked)", path.display(), tracker.engine.stats().processes);
    eprintln!("tracer: daemon tracing; serving {}", path.display());
    serve(listener, tracker, async move { shutdown.wait().await }, Config::new(gid, args.state.enricher())).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves clients on `listener` from `source` until `shutdown` completes (then
/// removes the socket file) or the source's stream ends (an error).
///
/// One loop owns the source (and so the engine): it applies its inputs, answers
/// requests and feeds subscribers, so the model needs no lock.
pub async fn serve<S: Source>(
    listener: UnixListener,
    mut source: S,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<()> {
    // Removed however the loop ends, by a stop or an error.
    let _guard = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)).map(SocketGuard);
    let Config { gid, enrich, queue, stall_limit } = config;
    let (ask_tx, mut ask_rx) = mpsc::channel::<Ask>(256);
    // The acceptor ends with the loop: dropping the handle's abort guard stops it
    // (and with it the listener), so no client connects to a daemon that is gone.
    let acceptor = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    let ask = ask_tx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_client(conn, gid, ask, stall_limit).await {
                            log::debug!("client: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    log::warn!("accepting a client: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let _acceptor = AbortOnDrop(acceptor);

    let started = Instant::now();
    let mut updates = Vec::with_capacity(4096);
    let mut names = render::NameCache::new(enrich.clone());
    // Container start/stop stories, for the subscribers that ask for them.
    let mut stories = Stories::new(enrich.clone());
    let mut told = Vec::new();
    let mut subs: Vec<Subscriber> = Vec::new();
    let mut rates = Rates::default();
    let mut lat = Latencies::default();
    let boot = clock::WallMap::system();
    let mut json = output::JsonWriter::new(clock::WallMap::system());
    let mut bufs = LineBufs::default();
    let limits = Limits { queue, stall_limit };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            // Only the wait is inside select!: applying (perhaps a repair walk) is
            // never cancelled by a request arriving.
            input = source.next_input() => {
                let step = source.handle(input, &mut updates).await?;
                rates.roll(Instant::now());
                if let Step::Lost { lost, total, ts_ns } = step {
                    rates.count("lost", lost);
                    let line = Line::Lost { ts_ns, lost, total };
                    broadcast(&mut subs, &line, &mut json, &mut bufs, &boot);
                }
                let now = clock::boot_now_ns();
                for u in &updates {
                    if let Update::Event(ev) = u {
                        rates.count(ev.body.name(), 1);
                        if !ev.body.is_snapshot() {
                            lat.tree.record(ev.ts_ns, now);
                        }
                    }
                    stories.update(source.engine(), source.cgroups(), u);
                    dispatch(&mut subs, &source, u, &mut json, &mut bufs, &boot);
                }
                updates.clear();
                stories.tick(clock::boot_now_ns(), &mut told);
                tell(&mut subs, &mut told, &boot);
                resync(&mut subs, &source, &mut names, &limits);
                if step == Step::Ended {
                    bail!("the kernel event stream ended");
                }
            }
            Some(ask) = ask_rx.recv() => {
                let cx = State { source: &source, rates: &rates, lat: &lat, started, enrich: &enrich, limits: &limits };
                let reply = answer(ask.request, &cx, &mut subs, &mut names);
                let _ = ask.reply.send(reply);
            }
            () = &mut shutdown => break,
        }
    }
    log::info!("tracer daemon: stopping");
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sizes and times subscribers are held to (see [`Config`]).
struct Limits {
    queue: usize,
    stall_limit: Duration,
}

/// What an answer is made from, on the loop.
struct State<'a, S> {
    source: &'a S,
    rates: &'a Rates,
    lat: &'a Latencies,
    started: Instant,
    enrich: &'a crate::containers::Enricher,
    limits: &'a Limits,
}

/// Binds the socket: removes a stale file (no daemon answers there), refuses to
/// run over a live daemon, and gives it mode 0660, owner root and group `gid`.
async fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => bail!("another tracer daemon is serving {} already (stop it, or pick --socket)", path.display()),
            Err(_) => {
                log::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
            }
        }
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, Some(0), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(listener)
}

/// The gid of a group name (or a numeric gid), from /etc/group.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(g) = name.parse() {
        return Some(g);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Whether the peer may talk to us: root, our own uid, or a member of the group.
fn peer_allowed(conn: &UnixStream, gid: Option<u32>) -> bool {
    let Ok(cred) = conn.peer_cred() else { return false };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        return true;
    }
    let Some(gid) = gid else { return false };
    cred.gid() == gid || peer_groups(conn).contains(&gid)
}

/// Supplementary groups of the peer (SO_PEERGROUPS).
fn peer_groups(conn: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    const SO_PEERGROUPS: libc::c_int = 59;
    let mut groups = vec![0u32; 256];
    let mut len = (groups.len() * 4) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into our buffer.
    let r = unsafe {
        libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
    };
    if r != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / 4);
    groups
}

/// Reads a client's requests and writes the answers.
async fn serve_client(conn: UnixStream, gid: Option<u32>, ask: mpsc::Sender<Ask>, stall_limit: Duration) -> Result<()> {
    if !peer_allowed(&conn, gid) {
        let (_, mut w) = conn.into_split();
        let _ = w.write_all(&protocol::error_line("permission denied: not root and not in the daemon's group")).await;
        return Ok(());
    }
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = (&mut r).take(protocol::MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > protocol::MAX_REQUEST {
            w.write_all(&protocol::error_line(&format!("request longer than {} bytes", protocol::MAX_REQUEST))).await?;
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = match protocol::parse(&line) {
            Ok(r) => r,
            Err(e) => {
                w.write_all(&protocol::error_line(&e)).await?;
                continue;
            }
        };
        let (tx, rx) = oneshot::channel();
        if ask.send(Ask { request, reply: tx }).await.is_err() {
            return Ok(());
        }
        match rx.await {
            Ok(Reply::Line(l)) => w.write_all(&l).await?,
            Ok(Reply::Subscribed { first, mut lines, cut, latency }) => {
                w.write_all(&first).await?;
                let mut batch: Vec<Out> = Vec::with_capacity(1024);
                while let Some(out) = lines.recv().await {
                    // Everything already queued goes out with this line, in one
                    // vectored write (the lines are not copied).
                    batch.clear();
                    batch.push(out);
                    let mut bytes = batch[0].line.len();
                    while bytes < WRITE_BATCH {
                        let Ok(o) = lines.try_recv() else { break };
                        bytes += o.line.len();
                        batch.push(o);
                    }
                    write_all_vectored(&mut w, &batch).await?;
                    let now = clock::boot_now_ns();
                    if let Ok(mut l) = latency.lock() {
                        batch.iter().for_each(|o| l.record(o.ts_ns, now));
                    }
                }
                if cut.load(Ordering::Relaxed) {
                    let notice = protocol::error_line(&format!(
                        "cut loose: this client did not read its events for {} s",
                        stall_limit.as_secs_f64()
                    ));
                    let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&notice)).await;
                }
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

/// Writes every line of `batch`, with as few system calls as the socket takes.
async fn write_all_vectored<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, batch: &[Out]) -> std::io::Result<()> {
    // Where the write stands: line index and offset within it.
    let (mut i, mut off) = (0, 0);
    while i < batch.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&batch[i].line[off..])
            .chain(batch[i + 1..].iter().take(1023).map(|o| &o.line[..]))
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while i < batch.len() && n >= batch[i].line.len() - off {
            n -= batch[i].line.len() - off;
            i += 1;
            off = 0;
        }
        off += n;
    }
    Ok(())
}

fn to_line(v: &serde_json::Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.push(b'\n');
    l
}

fn render_filter(f: &Filter) -> render::Filter {
    render::Filter { pid: f.pid, comm: f.comm.clone(), user: f.user.clone() }
}

/// The containers of the source's processes, names from the cache.
fn containers<S: Source>(source: &S, names: &mut render::NameCache) -> render::Containers {
    render::Containers::build_cached(source.engine(), source.cgroups(), names)
}

/// Event latencies the daemon measures (see [`latency`]).
#[derive(Default)]
pub struct Latencies {
    /// Kernel stamp to the tree's update, on the engine task.
    pub tree: Latency,
    /// Kernel stamp to a subscriber's socket taking the line, in the writers.
    pub socket: latency::Shared,
}

impl Latencies {
    pub fn json(&self) -> serde_json::Value {
        let socket = self.socket.lock().map(|l| l.json()).unwrap_or_default();
        json!({"tree": self.tree.json(), "socket": socket})
    }
}

/// Answers one request on the loop.
fn answer<S: Source>(
    req: Request,
    cx: &State<'_, S>,
    subs: &mut Vec<Subscriber>,
    names: &mut render::NameCache,
) -> Reply {
    let State { source, rates, lat, started, enrich, limits } = *cx;
    let engine = source.engine();
    match req {
        Request::Version => Reply::Line(to_line(&json!({
            "ok": true, "version": env!("CARGO_PKG_VERSION"), "protocol": protocol::PROTOCOL,
        }))),
        Request::Stats => {
            let mut stats = source.stats(rates, started);
            stats["latency"] = lat.json();
            Reply::Line(to_line(&json!({"ok": true, "stats": stats})))
        }
        Request::Snapshot { format, filter, show_exited, by_container } => {
            let opts = RenderOptions::local(show_exited);
            let f = render_filter(&filter);
            let g = render::Grouping { by_container, container: filter.container.clone() };
            let cx = containers(source, names);
            Reply::Line(to_line(&match format {
                SnapshotFormat::Json => json!({"ok": true, "snapshot": render::json_in(engine, &cx, &f, &g, &opts)}),
                SnapshotFormat::Forest => json!({"ok": true, "text": render::forest_in(engine, &cx, &f, &g, &opts)}),
                SnapshotFormat::Threads => {
                    json!({"ok": true, "text": render::threads_in(engine, &cx, &f, &g, &opts)})
                }
            }))
        }
        Request::Subscribe { filter, .. } if filter.container.as_deref().is_some_and(|c| c.trim().is_empty()) => {
            Reply::Line(protocol::error_line("filter.container is empty: give a short id, an id prefix or a name"))
        }
        Request::Subscribe { format, filter } => {
            let (tx, rx) = mpsc::channel(limits.queue);
            let cut = Arc::new(AtomicBool::new(false));
            let cx = containers(source, names);
            let g = render::Grouping::default();
            let snap = render::json_in(engine, &cx, &render_filter(&filter), &g, &RenderOptions::local(true));
            let first = to_line(&json!({"ok": true, "snapshot": snap}));
            let scope = filter.container.as_deref().map(|q| stream::ContainerScope::new(q, enrich.clone()));
            subs.push(Subscriber { filter, scope, format, tx, missed: 0, stalled_since: None, cut: cut.clone() });
            Reply::Subscribed { first, lines: rx, cut, latency: lat.socket.clone() }
        }
        Request::Containers => {
            let list = crate::containers::list(engine, source.cgroups(), enrich);
            Reply::Line(to_line(&json!({"ok": true, "containers": list})))
        }
    }
}

/// Sends one update to every subscriber that wants it, formatting it once per format.
fn dispatch<S: Source>(
    subs: &mut Vec<Subscriber>,
    source: &S,
    u: &Update,
    json: &mut output::JsonWriter,
    bufs: &mut LineBufs,
    boot: &clock::WallMap,
) {
    let engine = source.engine();
    if subs.is_empty() {
        return;
    }
    let mut as_json: Option<Bytes> = None;
    let mut as_text: Option<Bytes> = None;
    for s in subs.iter_mut().filter(|s| !s.filter.containers) {
        let Some(line) = stream::line_for(engine, &s.filter, u) else { continue };
        if s.scope.as_mut().is_some_and(|sc| !sc.admits(engine, source.cgroups(), u)) {
            continue;
        }
        let bytes = format_line(&line, s.format, &mut as_json, &mut as_text, json, bufs, boot);
        push(s, bytes, ts_of(u));
    }
    subs.retain(|s| !s.tx.is_closed());
}

/// Sends container stories to the subscribers that asked for them: JSON as
/// `{"story": {...}}`, text as `{"kind": "container_start", "text": ...}`.
fn tell(subs: &mut [Subscriber], told: &mut Vec<Story>, boot: &clock::WallMap) {
    for story in told.drain(..) {
        let (mut as_json, mut as_text) = (None, None);
        for s in subs.iter_mut().filter(|s| s.filter.containers) {
            if s.scope.as_ref().is_some_and(|sc| !sc.admits_story(&story)) {
                continue;
            }
            let bytes = match s.format {
                LineFormat::Json => as_json
                    .get_or_insert_with(|| {
                        let mut v = serde_json::to_value(&story).unwrap_or_default();
                        if let Some(m) = v.as_object_mut() {
                            m.insert("time".into(), clock::format_rfc3339(boot.offset(), story.ts_ns()).into());
                        }
                        Bytes::from(to_line(&json!({ "story": v })))
                    })
                    .clone(),
                LineFormat::Text => as_text
                    .get_or_insert_with(|| {
                        Bytes::from(to_line(&json!({"kind": story.kind(), "text": story.text(boot.offset())})))
                    })
                    .clone(),
            };
            push(s, bytes, 0);
        }
    }
}

/// Sends a line that concerns everyone (a loss notice).
fn broadcast(
    subs: &mut [Subscriber],
    line: &Line<'_>,
    json: &mut output::JsonWriter,
    bufs: &mut LineBufs,
    boot: &clock::WallMap,
) {
    let (mut a, mut b) = (None, None);
    for s in subs.iter_mut() {
        let bytes = format_line(line, s.format, &mut a, &mut b, json, bufs, boot);
        push(s, bytes, 0);
    }
}

/// Bytes a line arena is allocated by: lines are cut from it, and it is
/// allocated anew once the lines of the last one are all still queued.
const ARENA: usize = 256 << 10;

/// Where JSON lines are made: a reused scratch buffer and the arena the lines
/// are cut from.
#[derive(Default)]
pub struct LineBufs {
    scratch: Vec<u8>,
    arena: bytes::BytesMut,
}

fn format_line(
    line: &Line<'_>,
    format: LineFormat,
    as_json: &mut Option<Bytes>,
    as_text: &mut Option<Bytes>,
    json: &mut output::JsonWriter,
    bufs: &mut LineBufs,
    boot: &clock::WallMap,
) -> Bytes {
    match format {
        LineFormat::Json => as_json
            .get_or_insert_with(|| {
                // Written once into a reused buffer, then copied into a shared arena
                // whose lines are handed out without an allocation each.
                let LineBufs { scratch, arena } = bufs;
                scratch.clear();
                scratch.extend_from_slice(b"{\"event\":");
                json.write(line, scratch);
                scratch.pop(); // the newline
                scratch.extend_from_slice(b"}\n");
                if arena.capacity() - arena.len() < scratch.len() {
                    arena.reserve(ARENA.max(scratch.len()));
                }
                arena.extend_from_slice(scratch);
                arena.split().freeze()
            })
            .clone(),
        LineFormat::Text => as_text
            .get_or_insert_with(|| {
                Bytes::from(to_line(&json!({"kind": line.kind(), "text": output::text(line, boot.offset())})))
            })
            .clone(),
    }
}

/// The kernel time of the event an update tells, 0 if none.
fn ts_of(u: &Update) -> u64 {
    match u {
        Update::Event(ev) if !ev.body.is_snapshot() => ev.ts_ns,
        _ => 0,
    }
}

fn push(s: &mut Subscriber, line: Bytes, ts_ns: u64) {
    if s.missed > 0 {
        s.missed += 1;
        return;
    }
    match s.tx.try_send(Out { line, ts_ns }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            s.missed = 1;
            s.stalled_since = Some(Instant::now());
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Subscribers that missed lines: once their queue has room, a notice and a fresh
/// snapshot to go on from; those stuck too long are cut loose.
fn resync<S: Source>(subs: &mut Vec<Subscriber>, source: &S, names: &mut render::NameCache, limits: &Limits) {
    for s in subs.iter_mut().filter(|s| s.missed > 0) {
        if s.tx.capacity() >= limits.queue / 2 {
            let cx = containers(source, names);
            let g = render::Grouping::default();
            let snap =
                render::json_in(source.engine(), &cx, &render_filter(&s.filter), &g, &RenderOptions::local(true));
            let notice = to_line(&json!({"missed": s.missed, "snapshot": snap}));
            if s.tx.try_send(Out { line: Bytes::from(notice), ts_ns: 0 }).is_ok() {
                s.missed = 0;
                s.stalled_since = None;
            }
        } else if s.stalled_since.is_some_and(|t| t.elapsed() > limits.stall_limit) {
            log::warn!("cutting loose a client that has not read for {} s", limits.stall_limit.as_secs_f64());
            s.cut.store(true, Ordering::Relaxed);
            // Dropping the sender ends its writer.
            let (dead, _) = mpsc::channel(1);
            s.tx = dead;
        }
    }
    subs.retain(|s| !s.cut.load(Ordering::Relaxed) && !s.tx.is_closed());
}

/// Events per second by kind, over the last full second.
#[derive(Default)]
pub struct Rates {
    window_start: Option<Instant>,
    current: BTreeMap<&'static str, u64>,
    last: BTreeMap<&'static str, u64>,
    total: BTreeMap<&'static str, u64>,
}

impl Rates {
    /// Counts `n` events of `kind` in the current window.
    pub fn count(&mut self, kind: &'static str, n: u64) {
        *self.current.entry(kind).or_default() += n;
        *self.total.entry(kind).or_default() += n;
    }

    /// Starts a new window when the current one is a second old. Called once per
    /// batch of events, not per event: reading the clock costs more than counting.
    pub fn roll(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_secs(1) {
            self.last = std::mem::take(&mut self.current);
            self.window_start = Some(now);
        }
    }
}

/// The `stats` answer: the daemon's counters (`tracer stats` in-process makes the same).
pub fn stats_json(tracker: &Tracker, rates: &Rates, started: Instant) -> serde_json::Value {
    let s = tracker.engine.stats();
    let reader = tracker.reader_stats();
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let features = tracker.features();
    json!({
        "kernel": features.kernel,
        "mode": features.mode(),
        "uptime_s": started.elapsed().as_secs_f64(),
        "events_per_s": rates.last,
        "events_total": rates.total,
        "lost": s.lost,
        "degraded": s.degraded,
        "repairs": s.repairs,
        "walks": s.walks,
        "processes": s.processes,
        "threads": s.threads,
        "exited_kept": s.exited,
        "cgroups_known": tracker.cgroups.len(),
        "ring_records": reader.records.load(Ordering::Relaxed),
        "malformed": reader.malformed.load(Ordering::Relaxed),
        "max_rss_kib": ru.ru_maxrss,
        "heap_bytes": crate::alloc::heap_bytes(),
        "ringbuf_bytes": tracker.ringbuf_bytes(),
        "ringbuf_fill_bytes": reader.fill.load(Ordering::Relaxed),
    })
}
