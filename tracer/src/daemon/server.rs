//! `tracer daemon`: one engine, many clients over a Unix socket.
//!
//! [`run`] loads the programs ([`Tracker::start`]), binds the socket and hands
//! both to [`serve`]. There one task owns the event [`Source`] (and so the
//! engine): it applies events, answers requests and feeds subscribers, so the
//! model needs no lock. The source is a trait so that the loop is tested without
//! BPF, on synthetic events (`daemon/tests.rs`).
//!
//! Each client has a task that reads its requests and, for a subscription, an
//! outbox of lines (`outbox.rs`) and a writer. The loop never waits for a client:
//! a full outbox counts missed lines; once it has room again the client is told
//! how many it missed and gets a fresh snapshot to go on from. A client whose
//! outbox stays full for [`STALL_LIMIT`] (in tests, [`Config::stall_limit`]) is
//! cut loose. A writer sends all the lines waiting in its outbox with one write:
//! one system call per batch, not per event.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use super::{
    latency::{self, Latency},
    listen,
    outbox::{self, Outbox},
    privileges,
    protocol::{self, Filter, LineFormat, Request, SnapshotFormat},
};
use crate::{
    cli::DaemonArgs,
    clock,
    engine::{Engine, Update},
    events::kinds::Counts,
    events::{
        format::{self, Line},
        select,
    },
    render::{self, RenderOptions},
    shutdown::Shutdown,
    story::{Stories, Story},
    tracker::{self, Cgroups, Outcome, Tracker},
};

/// Lines queued per subscriber.
const QUEUE: usize = 8192;
/// A subscriber whose queue stays full this long is disconnected.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Most clients served at once, unless `--max-clients` says otherwise.
pub const MAX_CLIENTS: usize = 256;
/// How long a request line may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client task asks the engine task.
struct Ask {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    Line(Vec<u8>),
    Subscribed { first: Vec<u8>, outbox: Arc<Outbox>, latency: latency::Shared },
}

struct Subscriber {
    /// The subscription's filter, resolved (`sel.filter` is as asked).
    sel: select::Selector,
    /// The same filter for its snapshots.
    view: render::Filter,
    /// `filter.container`, resolved per cgroup.
    scope: Option<select::ContainerScope>,
    format: LineFormat,
    outbox: Arc<Outbox>,
    missed: u64,
    stalled_since: Option<Instant>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.outbox.finish();
    }
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
    fn handle(&mut self, input: Self::Input, out: &mut Vec<Update>) -> impl Future<Output = Result<Outcome>>;

    /// The model the answers are made from.
    fn engine(&self) -> &Engine;

    /// The cgroups the model's processes are in.
    fn cgroups(&self) -> &Cgroups;

    /// The `stats` answer (without the latencies, which the loop adds).
    fn stats(&self, rates: &Rates, started: Instant) -> serde_json::Value;
}

impl Source for Tracker {
    type Input = tracker::Next;

    fn next_input(&mut self) -> impl Future<Output = tracker::Next> {
        Tracker::next_input(self)
    }

    fn handle(&mut self, input: tracker::Next, out: &mut Vec<Update>) -> impl Future<Output = Result<Outcome>> {
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
    /// Most clients served at once (`--max-clients`).
    pub max_clients: usize,
    /// A request line must be complete this long after its first byte (after the
    /// connection, for the first request), or the client is dropped.
    pub request_timeout: Duration,
}

impl Config {
    /// The daemon's settings: those of production, for `gid` and `enrich`.
    pub fn new(gid: Option<u32>, enrich: crate::containers::Enricher) -> Config {
        Config {
            gid,
            enrich,
            queue: QUEUE,
            stall_limit: STALL_LIMIT,
            max_clients: MAX_CLIENTS,
            request_timeout: REQUEST_TIMEOUT,
        }
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
    let listener = listen::bind(&path, gid).await?;
    // Loaded, attached, walked and bound: from here on only repair walks need a privilege.
    let kept = privileges::drop_all_but_needed()?;
    log::debug!("capabilities kept: {}", privileges::names(&kept));
    log::info!("tracer daemon: serving {} ({} processes tracked)", path.display(), tracker.engine.stats().processes);
    eprintln!("tracer: daemon tracing; serving {}", path.display());
    let config = Config { max_clients: args.max_clients as usize, ..Config::new(gid, args.state.enricher()) };
    // For systemd (Type=notify): ready once the first walk is done and the socket bound.
    notify(&[sd_notify::NotifyState::Ready]);
    serve(listener, tracker, async move { shutdown.wait().await }, config).await?;
    notify(&[sd_notify::NotifyState::Stopping]);
    Ok(ExitCode::SUCCESS)
}

/// Tells the service manager, if one started us (NOTIFY_SOCKET), how we stand.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        log::debug!("telling the service manager: {e}");
    }
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
    let Config { gid, enrich, queue, stall_limit, max_clients, request_timeout } = config;
    let (ask_tx, mut ask_rx) = mpsc::channel::<Ask>(256);
    let times = ClientTimes { stall_limit, request_timeout };
    // The acceptor ends with the loop: dropping the handle's abort guard stops it
    // (and with it the listener), so no client connects to a daemon that is gone.
    let acceptor = tokio::spawn(listen::accept(listener, max_clients, move |conn, permit| {
        let ask = ask_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(conn, gid, ask, times).await {
                log::debug!("client: {e:#}");
            }
            drop(permit);
        });
    }));
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
    let mut json = format::JsonWriter::new(clock::WallMap::system());
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
                if let Outcome::Lost { lost, total, ts_ns } = step {
                    rates.count_named("lost", lost);
                    let line = Line::Lost { ts_ns, lost, total };
                    broadcast(&mut subs, &line, &mut json, &mut bufs, &boot);
                }
                let now = clock::boot_now_ns();
                for u in &updates {
                    if let Update::Event(ev) = u {
                        rates.count(ev.body.kind(), 1);
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
                wake(&mut subs);
                if step == Outcome::Ended {
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

/// The times a client is held to (see [`Config`]).
#[derive(Clone, Copy)]
struct ClientTimes {
    stall_limit: Duration,
    request_timeout: Duration,
}

/// Reads one request line into `line` (cleared first): `Ok(false)` at the end of
/// the stream. The line is cut at [`protocol::MAX_REQUEST`] + 1 bytes, never
/// buffered whole. Waiting for a request's first byte has no limit (a client may
/// rest between requests) except for the first request; from there the whole
/// line must come within `timeout`.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    first: bool,
    timeout: Duration,
) -> std::io::Result<Read> {
    line.clear();
    if !first && r.fill_buf().await?.is_empty() {
        return Ok(Read::End);
    }
    let mut limited = r.take(protocol::MAX_REQUEST as u64 + 1);
    match tokio::time::timeout(timeout, limited.read_until(b'\n', line)).await {
        Ok(n) => Ok(if n? > 0 { Read::Line } else { Read::End }),
        Err(_) => Ok(Read::TooSlow),
    }
}

/// What [`read_request`] got.
enum Read {
    Line,
    End,
    TooSlow,
}

/// Reads a client's requests and writes the answers.
async fn serve_client(conn: UnixStream, gid: Option<u32>, ask: mpsc::Sender<Ask>, times: ClientTimes) -> Result<()> {
    let ClientTimes { stall_limit, request_timeout } = times;
    if !peer_allowed(&conn, gid) {
        let (_, mut w) = conn.into_split();
        let _ = w.write_all(&protocol::error_line("permission denied: not root and not in the daemon's group")).await;
        return Ok(());
    }
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut line = Vec::with_capacity(1024);
    let mut first_request = true;
    loop {
        match read_request(&mut r, &mut line, first_request, request_timeout).await? {
            Read::Line => first_request = false,
            Read::End => return Ok(()),
            Read::TooSlow => {
                let secs = request_timeout.as_secs_f64();
                w.write_all(&protocol::error_line(&format!("request not complete within {secs} s"))).await?;
                return Ok(());
            }
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
            Ok(Reply::Subscribed { first, outbox, latency }) => {
                w.write_all(&first).await?;
                if outbox.send(&mut w, &latency).await? == outbox::Ended::Cut {
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

fn to_line(v: &serde_json::Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.push(b'\n');
    l
}

fn render_filter(f: &Filter) -> Result<render::Filter, String> {
    let comm = f.comm.as_deref().map(select::CommGlob::new).transpose()?;
    Ok(render::Filter { pid: f.pid, comm, user: f.user.clone() })
}

/// A snapshot request's filter, or the error line to answer with: a bad comm
/// glob, or, when the request says so, a pid no live process has (as `ps -p`
/// fails for one; others get the tree of what is left, perhaps nothing).
fn snapshot_filter(f: &Filter, engine: &crate::engine::Engine) -> Result<render::Filter, Vec<u8>> {
    if let Some(pid) = f.pid
        && f.pid_must_live
        && engine.process(pid).is_none_or(|p| !p.is_alive())
    {
        return Err(protocol::error_line(&format!("no process with pid {pid} is running")));
    }
    render_filter(f).map_err(|e| protocol::error_line(&e))
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
            let f = match snapshot_filter(&filter, engine) {
                Ok(f) => f,
                Err(line) => return Reply::Line(line),
            };
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
            let (sel, view) =
                match select::Selector::new(&filter, engine).and_then(|s| Ok((s, render_filter(&filter)?))) {
                    Ok(v) => v,
                    Err(e) => return Reply::Line(protocol::error_line(&e)),
                };
            let outbox = Arc::new(Outbox::new(limits.queue));
            let cx = containers(source, names);
            let g = render::Grouping::default();
            let snap = render::json_in(engine, &cx, &view, &g, &RenderOptions::local(true));
            let first = to_line(&json!({"ok": true, "snapshot": snap}));
            let scope = filter.container.as_deref().map(|q| select::ContainerScope::new(q, enrich.clone()));
            subs.push(Subscriber { sel, view, scope, format, outbox: outbox.clone(), missed: 0, stalled_since: None });
            Reply::Subscribed { first, outbox, latency: lat.socket.clone() }
        }
        Request::Containers => {
            let list = crate::containers::list(engine, source.cgroups(), enrich);
            Reply::Line(to_line(&json!({"ok": true, "containers": list})))
        }
    }
}

/// Sends one update to every subscriber that wants it, formatting it once per format.
fn dispatch<S: Source>(
    subs: &mut [Subscriber],
    source: &S,
    u: &Update,
    json: &mut format::JsonWriter,
    bufs: &mut LineBufs,
    boot: &clock::WallMap,
) {
    if subs.is_empty() {
        return;
    }
    let engine = source.engine();
    bufs.clear();
    for s in subs.iter_mut().filter(|s| !s.sel.filter.containers) {
        let Some(line) = select::line_for(engine, &s.sel, u) else { continue };
        if s.scope.as_mut().is_some_and(|sc| !sc.admits(engine, source.cgroups(), u)) {
            continue;
        }
        push(s, bufs.format(&line, s.format, json, boot), ts_of(u));
    }
}

/// Sends container stories to the subscribers that asked for them: JSON as
/// `{"story": {...}}`, text as `{"kind": "container_start", "text": ...}`.
fn tell(subs: &mut [Subscriber], told: &mut Vec<Story>, boot: &clock::WallMap) {
    for story in told.drain(..) {
        let (mut as_json, mut as_text) = (None, None);
        for s in subs.iter_mut().filter(|s| s.sel.filter.containers) {
            if s.scope.as_ref().is_some_and(|sc| !sc.admits_story(&story)) {
                continue;
            }
            let bytes: &[u8] = match s.format {
                LineFormat::Json => as_json.get_or_insert_with(|| {
                    let mut v = serde_json::to_value(&story).unwrap_or_default();
                    if let Some(m) = v.as_object_mut() {
                        m.insert("time".into(), clock::format_rfc3339(boot.offset(), story.ts_ns()).into());
                    }
                    to_line(&json!({ "story": v }))
                }),
                LineFormat::Text => as_text
                    .get_or_insert_with(|| to_line(&json!({"kind": story.kind(), "text": story.text(boot.offset())}))),
            };
            push(s, bytes, 0);
        }
    }
}

/// Sends a line that concerns everyone (a loss notice).
fn broadcast(
    subs: &mut [Subscriber],
    line: &Line<'_>,
    json: &mut format::JsonWriter,
    bufs: &mut LineBufs,
    boot: &clock::WallMap,
) {
    bufs.clear();
    for s in subs.iter_mut() {
        push(s, bufs.format(line, s.format, json, boot), 0);
    }
}

/// Where a line is formatted, once per format, for every subscriber that takes it.
#[derive(Default)]
pub struct LineBufs {
    json: Vec<u8>,
    text: Vec<u8>,
}

impl LineBufs {
    /// Forgets the last line (the buffers are kept).
    fn clear(&mut self) {
        self.json.clear();
        self.text.clear();
    }

    /// The line in `format`, formatted the first time it is asked for since [`LineBufs::clear`].
    fn format(
        &mut self,
        line: &Line<'_>,
        format: LineFormat,
        json: &mut format::JsonWriter,
        boot: &clock::WallMap,
    ) -> &[u8] {
        match format {
            LineFormat::Json => {
                if self.json.is_empty() {
                    self.json.extend_from_slice(b"{\"event\":");
                    json.write(line, &mut self.json);
                    self.json.pop(); // the newline
                    self.json.extend_from_slice(b"}\n");
                }
                &self.json
            }
            LineFormat::Text => {
                if self.text.is_empty() {
                    self.text = to_line(&json!({"kind": line.kind(), "text": format::text(line, boot.offset())}));
                }
                &self.text
            }
        }
    }
}

/// The kernel time of the event an update tells, 0 if none.
fn ts_of(u: &Update) -> u64 {
    match u {
        Update::Event(ev) if !ev.body.is_snapshot() => ev.ts_ns,
        _ => 0,
    }
}

fn push(s: &mut Subscriber, line: &[u8], ts_ns: u64) {
    if s.missed > 0 {
        s.missed += 1;
        return;
    }
    if s.outbox.push(line, ts_ns) == outbox::Pushed::Full {
        s.missed = 1;
        s.stalled_since = Some(Instant::now());
    }
}

/// Wakes the writers of the subscribers that have lines waiting, once per batch.
fn wake(subs: &mut Vec<Subscriber>) {
    subs.iter().for_each(|s| s.outbox.wake());
    subs.retain(|s| !s.outbox.is_closed());
}

/// Subscribers that missed lines: once their outbox has room, a notice and a fresh
/// snapshot to go on from; those stuck too long are cut loose.
fn resync<S: Source>(subs: &mut Vec<Subscriber>, source: &S, names: &mut render::NameCache, limits: &Limits) {
    for s in subs.iter_mut().filter(|s| s.missed > 0) {
        if s.outbox.pending() <= limits.queue / 2 {
            let cx = containers(source, names);
            let g = render::Grouping::default();
            let snap = render::json_in(source.engine(), &cx, &s.view, &g, &RenderOptions::local(true));
            let notice = to_line(&json!({"missed": s.missed, "snapshot": snap}));
            if s.outbox.push_anyway(&notice) {
                s.missed = 0;
                s.stalled_since = None;
            }
        } else if s.stalled_since.is_some_and(|t| t.elapsed() > limits.stall_limit) {
            log::warn!("cutting loose a client that has not read for {} s", limits.stall_limit.as_secs_f64());
            s.outbox.cut();
        }
    }
    subs.retain(|s| !s.outbox.is_closed());
}

/// Events per second by kind, over the last full second.
#[derive(Default)]
pub struct Rates {
    window_start: Option<Instant>,
    current: Counts,
    last: Counts,
    total: Counts,
}

impl Rates {
    /// Counts `n` records of `kind` in the current window.
    pub fn count(&mut self, kind: tracer_abi::Kind, n: u64) {
        self.current.add(kind, n);
        self.total.add(kind, n);
    }

    /// Counts `n` lines the daemon made itself (`lost`, ...).
    pub fn count_named(&mut self, name: &str, n: u64) {
        self.current.add_named(name, n);
        self.total.add_named(name, n);
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
