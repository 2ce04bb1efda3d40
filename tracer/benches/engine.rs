//! Engine benchmark: events applied per second on one core, and the model's heap
//! use per live task, measured with a counting global allocator.
//!
//! `cargo bench -p tracer --bench engine` (add `-- --quick` for a short run;
//! `-- --profile` generates the events first, then applies them, for profilers:
//! EVENTS, STEP_NS and INTERLEAVE=1 tune it; LINGER_NS overrides the linger).
//!
//! A small kernel simulator makes realistic event streams: fork/exec/clone/
//! thread exit/exit/rename mixes, pids (and tids) allocated like Linux from one
//! space that wraps at 32768, ring-order races (a process exit before a sibling's
//! thread exit), reparenting to init. The simulator's own state is allocated once
//! up front so that the allocator's counts are the engine's (and the events').
//!
//! The events are made and applied in batches of at most 4096, as the ring
//! buffer reader hands them to the engine; only applying them (and dropping the
//! updates, as a consumer does) is timed. The counting allocator forwards to the
//! system allocator, the one the `tracer` binary uses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracer::containers::Enricher;
use tracer::engine::{Engine, EngineConfig, Update, UserTable};
use tracer::events::{Argv, Body, Comm, Event, ExitStatus, ProcRef, TaskInfo};
use tracer::story::{Stories, Story};
use tracer::tracker::Cgroups;

// ------------------------------------------------------------ counting allocator

struct Counting;

static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

/// The bench runs on one thread: plain loads and stores count as well as atomic
/// read-modify-writes and cost the measured code (each allocation) far less.
fn grew(by: isize) {
    let now = CURRENT.load(Ordering::Relaxed) + by;
    CURRENT.store(now, Ordering::Relaxed);
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.store(now, Ordering::Relaxed);
    }
}

/// Built with TRACER_BENCH_SYSTEM_ALLOC set, the bench measures the C library's
/// allocator instead of the one `tracer` runs with (to compare them).
const SYSTEM_ALLOC: bool = option_env!("TRACER_BENCH_SYSTEM_ALLOC").is_some();
const TRACER_ALLOC: tracer::alloc::Allocator = tracer::alloc::ALLOCATOR;

/// The allocator measured.
fn inner() -> &'static dyn GlobalAlloc {
    if SYSTEM_ALLOC { &System } else { &TRACER_ALLOC }
}

// SAFETY: forwards to one allocator, the same for the process's whole life; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { inner().alloc(l) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { inner().alloc_zeroed(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        grew(-(l.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { inner().dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        grew(new as isize - l.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { inner().realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap() -> isize {
    CURRENT.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK.store(heap(), Ordering::Relaxed);
}

// ------------------------------------------------------------ kernel simulator

const PID_MAX: usize = 32768;
/// Where Linux restarts when pids wrap.
const PID_WRAP_TO: u32 = 300;
const MAX_THREADS: usize = 8;
const SEC: u64 = 1_000_000_000;

#[derive(Clone, Copy, Default)]
struct SimProc {
    start: u64,
    ppid: u32,
    pstart: u64,
    uid: u32,
    comm: Comm,
    kids: u32,
    n: usize,
    threads: [(u32, u64); MAX_THREADS],
}

/// Programs processes exec: (file, argv).
const PROGRAMS: &[(&str, &[&str])] = &[
    ("/usr/bin/ls", &["ls", "--color=auto", "-la", "/var/log"]),
    ("/usr/bin/grep", &["grep", "-E", "^(error|warning)", "/var/log/syslog"]),
    ("/usr/bin/python3", &["python3", "-m", "http.server", "--bind", "127.0.0.1", "8080"]),
    ("/bin/sh", &["sh", "-c", "cat /etc/os-release | head -n 3"]),
    (
        "/usr/lib/jvm/bin/java",
        &["java", "-Xmx4g", "-Dfile.encoding=UTF-8", "-cp", "/opt/app/lib/*", "com.example.Main", "--port=9000"],
    ),
    ("/usr/bin/git", &["git", "status", "--porcelain"]),
    ("/usr/bin/sleep", &["sleep", "1"]),
    ("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"]),
];

struct Sim {
    ts: u64,
    step: u64,
    next: u32,
    /// tid -> pid of the live task holding it (0: free).
    owner: Vec<u32>,
    procs: Vec<SimProc>,
    /// Live pids, for random picks, and each one's index in it.
    live: Vec<u32>,
    pos: Vec<u32>,
    /// Each live process's children, as a doubly linked list through these (0:
    /// none), so that an exit finds its children without scanning every process
    /// (which would flush the caches between batches, unlike the real reader).
    first_kid: Vec<u32>,
    next_sib: Vec<u32>,
    prev_sib: Vec<u32>,
    rng: u64,
    argvs: Vec<(String, Vec<u8>, Comm)>,
}

impl Sim {
    fn new(step: u64) -> Sim {
        let argvs = PROGRAMS
            .iter()
            .map(|(f, args)| {
                let mut raw = Vec::new();
                for a in *args {
                    raw.extend_from_slice(a.as_bytes());
                    raw.push(0);
                }
                let base = f.rsplit('/').next().unwrap_or(f);
                (f.to_string(), raw, Comm::from_str_lossy(base))
            })
            .collect();
        let mut s = Sim {
            ts: SEC,
            step,
            next: 2,
            owner: vec![0; PID_MAX],
            procs: vec![SimProc::default(); PID_MAX],
            live: Vec::with_capacity(PID_MAX),
            pos: vec![0; PID_MAX],
            first_kid: vec![0; PID_MAX],
            next_sib: vec![0; PID_MAX],
            prev_sib: vec![0; PID_MAX],
            rng: 0x2545_f491_4f6c_dd1d,
            argvs,
        };
        // init
        s.owner[1] = 1;
        s.procs[1] = SimProc { start: 1, comm: Comm::from_str_lossy("systemd"), n: 1, ..SimProc::default() };
        s.procs[1].threads[0] = (1, 1);
        s.live.push(1);
        s.pos[1] = 0;
        s
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rand() % n as u64) as usize
    }

    fn tick(&mut self) -> u64 {
        self.ts += self.step;
        self.ts
    }

    fn alloc_pid(&mut self) -> Option<u32> {
        for _ in 0..PID_MAX {
            let p = self.next;
            self.next = if self.next as usize + 1 >= PID_MAX { PID_WRAP_TO } else { self.next + 1 };
            if self.owner[p as usize] == 0 {
                return Some(p);
            }
        }
        None
    }

    fn link_kid(&mut self, parent: u32, kid: u32) {
        let first = self.first_kid[parent as usize];
        self.next_sib[kid as usize] = first;
        self.prev_sib[kid as usize] = 0;
        if first != 0 {
            self.prev_sib[first as usize] = kid;
        }
        self.first_kid[parent as usize] = kid;
    }

    fn unlink_kid(&mut self, parent: u32, kid: u32) {
        let (prev, next) = (self.prev_sib[kid as usize], self.next_sib[kid as usize]);
        if prev == 0 {
            self.first_kid[parent as usize] = next;
        } else {
            self.next_sib[prev as usize] = next;
        }
        if next != 0 {
            self.prev_sib[next as usize] = prev;
        }
    }

    fn task(&self, pid: u32, tid: u32, tstart: u64) -> TaskInfo {
        let p = &self.procs[pid as usize];
        let comm = p.threads[..p.n].iter().position(|t| t.0 == tid).map_or(p.comm, |_| p.comm);
        TaskInfo {
            pid,
            tid,
            ppid: p.ppid,
            ns_pid: pid,
            ns_tid: tid,
            uid: p.uid,
            gid: p.uid,
            start_ns: tstart,
            proc_start_ns: p.start,
            parent_start_ns: p.pstart,
            cgroup_id: 4242,
            pidns: 4026531836,
            mntns: 4026531841,
            comm,
            kthread: false,
            exiting: false,
        }
    }

    fn ev(&mut self, task: TaskInfo, body: Body) -> Event {
        let ts = self.tick();
        Event { ts_ns: ts, cpu: (ts % 8) as u32, task, body }
    }

    fn fork(&mut self, parent: u32, out: &mut Vec<Event>) -> Option<u32> {
        let pid = self.alloc_pid()?;
        let ts = self.ts + self.step;
        let pp = self.procs[parent as usize];
        self.procs[parent as usize].kids += 1;
        let mut p = SimProc {
            start: ts,
            ppid: parent,
            pstart: pp.start,
            uid: pp.uid,
            comm: pp.comm,
            n: 1,
            ..SimProc::default()
        };
        p.threads[0] = (pid, ts);
        self.procs[pid as usize] = p;
        self.owner[pid as usize] = pid;
        self.pos[pid as usize] = self.live.len() as u32;
        self.live.push(pid);
        self.first_kid[pid as usize] = 0;
        self.link_kid(parent, pid);
        let t = self.task(pid, pid, ts);
        let e = self.ev(t, Body::Fork { creator_tid: parent });
        out.push(e);
        Some(pid)
    }

    fn exec(&mut self, pid: u32, out: &mut Vec<Event>) {
        // Only single-threaded processes exec here.
        if self.procs[pid as usize].n != 1 {
            return;
        }
        let i = self.below(self.argvs.len());
        let (file, raw, comm) = &self.argvs[i];
        let (file, argv, comm) = (file.clone(), Bytes::copy_from_slice(raw), *comm);
        self.procs[pid as usize].comm = comm;
        let start = self.procs[pid as usize].start;
        let t = self.task(pid, pid, start);
        let argv = Argv { real_len: argv.len() as u32, raw: argv, truncated: false, unreadable: false };
        let e = self.ev(t, Body::Exec { old_tid: pid, filename: file, filename_truncated: false, argv });
        out.push(e);
    }

    fn clone_thread(&mut self, pid: u32, out: &mut Vec<Event>) {
        if self.procs[pid as usize].n >= MAX_THREADS {
            return;
        }
        let Some(tid) = self.alloc_pid() else { return };
        let ts = self.ts + self.step;
        self.owner[tid as usize] = pid;
        let p = &mut self.procs[pid as usize];
        p.threads[p.n] = (tid, ts);
        p.n += 1;
        let t = self.task(pid, tid, ts);
        let e = self.ev(t, Body::Clone { creator_tid: pid });
        out.push(e);
    }

    fn thread_exit(&mut self, pid: u32, out: &mut Vec<Event>) {
        let p = &mut self.procs[pid as usize];
        if p.n < 2 {
            return;
        }
        p.n -= 1;
        let (tid, start) = p.threads[p.n];
        self.owner[tid as usize] = 0;
        let t = self.task(pid, tid, start);
        let e = self.ev(t, Body::ThreadExit { status: ExitStatus { raw: 0 } });
        out.push(e);
    }

    fn rename(&mut self, pid: u32, out: &mut Vec<Event>) {
        let p = self.procs[pid as usize];
        let (tid, start) = p.threads[self.below(p.n)];
        let t = self.task(pid, tid, start);
        let e = self.ev(t, Body::Rename { new_comm: Comm::from_str_lossy("worker") });
        out.push(e);
    }

    /// The whole process exits: its other threads, then the group exit (sometimes
    /// before the last thread exit, as on another CPU), and its children go to init.
    fn exit(&mut self, pid: u32, out: &mut Vec<Event>) {
        let race = self.procs[pid as usize].n > 1 && self.below(20) == 0;
        while self.procs[pid as usize].n > 1 + usize::from(race) {
            self.thread_exit(pid, out);
        }
        let p = self.procs[pid as usize];
        let reaper = (p.kids > 0).then_some(ProcRef { pid: 1, start_ns: 1 });
        let t = self.task(pid, pid, p.start);
        let e = self.ev(t, Body::ProcessExit { status: ExitStatus { raw: 0 }, reaper });
        out.push(e);
        if race {
            self.thread_exit(pid, out);
        }
        self.owner[pid as usize] = 0;
        if p.ppid != 0 && self.owner[p.ppid as usize] == p.ppid && self.procs[p.ppid as usize].start == p.pstart {
            self.procs[p.ppid as usize].kids -= 1;
            self.unlink_kid(p.ppid, pid);
        }
        let mut c = std::mem::take(&mut self.first_kid[pid as usize]);
        while c != 0 {
            let next = self.next_sib[c as usize];
            self.procs[c as usize].ppid = 1;
            self.procs[c as usize].pstart = 1;
            self.procs[1].kids += 1;
            self.link_kid(1, c);
            c = next;
        }
        let i = self.pos[pid as usize] as usize;
        self.live.swap_remove(i);
        if let Some(&moved) = self.live.get(i) {
            self.pos[moved as usize] = i as u32;
        }
    }

    fn random_live(&mut self) -> u32 {
        let i = self.below(self.live.len());
        self.live[i]
    }

    /// One operation of the mixed workload, keeping about `target` processes.
    fn mixed_op(&mut self, target: usize, out: &mut Vec<Event>) {
        let r = self.below(100);
        let n = self.live.len();
        let pid = self.random_live();
        match r {
            0..22 if n < target + target / 5 => {
                let _ = self.fork(pid, out);
            }
            22..40 if pid != 1 => self.exec(pid, out),
            40..58 => self.clone_thread(pid, out),
            58..76 => self.thread_exit(pid, out),
            76..96 if pid != 1 && n > target - target / 5 => self.exit(pid, out),
            _ => self.rename(pid, out),
        }
    }
}

// ------------------------------------------------------------ phases

fn engine() -> Engine {
    let mut cfg = EngineConfig { passwd: None, ..EngineConfig::default() };
    if let Some(l) = std::env::var("LINGER_NS").ok().and_then(|v| v.parse().ok()) {
        cfg.linger_ns = l;
    }
    Engine::with_users(cfg, UserTable::from_passwd("root:x:0:0::/:/bin/sh\n"))
}

/// Events per batch: what the ring buffer reader hands the engine at most at once
/// (`bpf::reader::BATCH`). The bench makes a batch, then applies it, so that the
/// events are as fresh in the caches as the reader's just-decoded ones.
const BATCH: usize = 4096;

/// Applies a batch of events, draining the updates as a consumer would, and
/// ticking every 1024 events (`n` counts them across batches) with the event
/// clock. Returns the time spent. The events are moved into the engine, as the
/// runtime does with decoded ones.
/// The daemon's container stories, fed every update as the daemon does.
struct Storyteller {
    stories: Stories,
    cgroups: Cgroups,
    told: Vec<Story>,
}

fn apply_chunk(e: &mut Engine, events: &mut Vec<Event>, out: &mut Vec<Update>, n: &mut u64) -> Duration {
    apply_chunk_told(e, events, out, n, None)
}

fn apply_chunk_told(
    e: &mut Engine,
    events: &mut Vec<Event>,
    out: &mut Vec<Update>,
    n: &mut u64,
    mut st: Option<&mut Storyteller>,
) -> Duration {
    let t0 = Instant::now();
    for ev in events.drain(..) {
        let ts = ev.ts_ns;
        // The updates are dropped in batches either way: only the stories' own
        // work differs between the two cases.
        let from = out.len();
        e.apply(ev, out);
        if let Some(st) = st.as_deref_mut() {
            for u in &out[from..] {
                st.stories.update(e, &st.cgroups, u);
            }
        }
        *n += 1;
        if n.is_multiple_of(1024) {
            let from = out.len();
            e.tick(ts, out);
            if let Some(st) = st.as_deref_mut() {
                for u in &out[from..] {
                    st.stories.update(e, &st.cgroups, u);
                }
                st.stories.tick(ts, &mut st.told);
                st.told.clear();
            }
            out.clear();
        }
    }
    out.clear();
    t0.elapsed()
}

fn boot(sim: &mut Sim, e: &mut Engine, out: &mut Vec<Update>) {
    let init = sim.task(1, 1, 1);
    e.apply(Event { ts_ns: 1, cpu: 0, task: init, body: Body::Fork { creator_tid: 0 } }, out);
    out.clear();
}

/// `step_ns`: event time between two events (the event rate the stream models).
fn throughput(total: usize, target: usize, step_ns: u64) {
    throughput_told(total, target, step_ns, false)
}

fn throughput_told(total: usize, target: usize, step_ns: u64, told: bool) {
    let mut st = told.then(|| Storyteller {
        stories: Stories::new(Enricher::none()),
        cgroups: Cgroups::default(),
        told: Vec::new(),
    });
    let mut sim = Sim::new(step_ns);
    let mut e = engine();
    let mut out = Vec::with_capacity(4096);
    boot(&mut sim, &mut e, &mut out);
    let mut evs = Vec::with_capacity(BATCH + 64);
    let mut n = 0;
    // Warm up to the target population.
    while sim.live.len() < target {
        let pid = sim.random_live();
        let _ = sim.fork(pid, &mut evs);
        if evs.len() >= BATCH {
            apply_chunk(&mut e, &mut evs, &mut out, &mut n);
        }
    }
    apply_chunk(&mut e, &mut evs, &mut out, &mut n);
    let before = e.stats();
    let mut spent = Duration::ZERO;
    let mut applied = 0usize;
    while applied < total {
        while evs.len() < BATCH {
            sim.mixed_op(target, &mut evs);
        }
        applied += evs.len();
        spent += apply_chunk_told(&mut e, &mut evs, &mut out, &mut n, st.as_mut());
    }
    let s = e.stats();
    let mix: Vec<String> = tracer_abi::Kind::ALL
        .into_iter()
        .filter(|k| !matches!(k, tracer_abi::Kind::Snapshot | tracer_abi::Kind::Cgroup))
        .map(|k| format!("{} {}", k.name(), s.applied.get(k) - before.applied.get(k)))
        .collect();
    println!(
        "throughput, mixed workload: ~{target} live processes, pids wrapping at {PID_MAX}, stream of {} k events/s of event time{}:",
        SEC / step_ns / 1000,
        if told { ", with the daemon's container stories" } else { "" }
    );
    println!(
        "  {applied} events in {:.3} s: {:.2} M events/s on one core ({:.0} ns/event)",
        spent.as_secs_f64(),
        applied as f64 / spent.as_secs_f64() / 1e6,
        spent.as_nanos() as f64 / applied as f64
    );
    println!(
        "  mix: {}; held exits {} (forced {}), stale {}, pid reuses seen {}",
        mix.join(" "),
        s.held_exits,
        s.forced_exits,
        s.stale,
        s.pid_reuses,
    );
    println!("  model at the end: {} live processes, {} threads, {} exited kept", s.processes, s.threads, s.exited);
    if let Err(err) = e.check_invariants() {
        println!("  INVARIANT BROKEN: {err}");
    }
}

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn memory(procs: usize, churn: usize) {
    // The simulator allocates everything it needs here, before the first reading.
    let mut sim = Sim::new(50_000);
    let mut out: Vec<Update> = Vec::with_capacity(4096);
    let mut long_lived: Vec<u32> = Vec::with_capacity(PID_MAX);
    let mut flight: std::collections::VecDeque<u32> = std::collections::VecDeque::with_capacity(512);
    // The engine's heap: all but the consumer's update buffer (which grows when a
    // tick drops thousands of processes at once) and what existed before.
    let out_bytes = |o: &Vec<Update>| (o.capacity() * size_of::<Update>()) as isize;
    let m0 = heap() - out_bytes(&out);
    let engine_heap = |o: &Vec<Update>| heap() - out_bytes(o) - m0;
    let mut e = engine();
    boot(&mut sim, &mut e, &mut out);

    // Build: `procs` processes of 3 threads each, under a few shells.
    let mut evs = Vec::with_capacity(100_000);
    let mut n = 0;
    let mut shells = Vec::new();
    for _ in 0..16 {
        if let Some(p) = sim.fork(1, &mut evs) {
            sim.exec(p, &mut evs);
            shells.push(p);
        }
    }
    for i in 0..procs - shells.len() {
        let parent = shells[i % shells.len()];
        if let Some(p) = sim.fork(parent, &mut evs) {
            sim.exec(p, &mut evs);
            sim.clone_thread(p, &mut evs);
            sim.clone_thread(p, &mut evs);
        }
        if evs.len() >= 90_000 {
            apply_chunk(&mut e, &mut evs, &mut out, &mut n);
        }
    }
    apply_chunk(&mut e, &mut evs, &mut out, &mut n);
    drop(std::mem::take(&mut evs));
    e.tick(sim.ts + 10 * SEC, &mut out);
    out.clear();
    let s = e.stats();
    let total = engine_heap(&out);
    // The argv bytes held: each buffer once (processes running one command line
    // share it).
    let mut bufs: Vec<(*const u8, usize)> = e.processes().map(|p| (p.argv.raw.as_ptr(), p.argv.raw.len())).collect();
    bufs.sort_unstable();
    bufs.dedup();
    let argv_bytes: usize = bufs.iter().map(|b| b.1).sum();
    drop(bufs);
    let tasks = s.threads;
    println!("memory, {} live processes x 3 threads ({} tasks):", s.processes, tasks);
    println!(
        "  engine heap {:.2} MiB: {:.0} B per process, {:.0} B per task; argv bytes {:.2} MiB; without them {:.0} B per task",
        mib(total),
        total as f64 / s.processes as f64,
        total as f64 / tasks as f64,
        mib(argv_bytes as isize),
        (total - argv_bytes as isize) as f64 / tasks as f64,
    );

    // Churn: short-lived processes (fork, exec, 30% a thread, exit) forked by the
    // long-lived ones, at most 256 in flight, about 20,000 per second of event time.
    long_lived.extend_from_slice(&sim.live);
    let t0 = Instant::now();
    let mut spent = Duration::ZERO;
    let mut n_events = 0usize;
    let mut engine_peak = 0isize;
    let mut made = 0usize;
    evs = Vec::with_capacity(BATCH + 64);
    reset_peak();
    while made < churn {
        let parent = long_lived[sim.below(long_lived.len())];
        if let Some(p) = sim.fork(parent, &mut evs) {
            made += 1;
            sim.exec(p, &mut evs);
            if sim.below(10) < 3 {
                sim.clone_thread(p, &mut evs);
            }
            flight.push_back(p);
        }
        if flight.len() > 256 || made >= churn {
            while let Some(p) = flight.pop_front() {
                if sim.procs[p as usize].n > 1 {
                    sim.thread_exit(p, &mut evs);
                }
                sim.exit(p, &mut evs);
                if flight.len() < 128 && made < churn {
                    break;
                }
            }
        }
        if evs.len() >= BATCH || made >= churn {
            n_events += evs.len();
            spent += apply_chunk(&mut e, &mut evs, &mut out, &mut n);
            engine_peak = engine_peak.max(engine_heap(&out) - (evs.capacity() * size_of::<Event>()) as isize);
        }
    }
    while let Some(p) = flight.pop_front() {
        sim.exit(p, &mut evs);
    }
    n_events += evs.len();
    spent += apply_chunk(&mut e, &mut evs, &mut out, &mut n);
    drop(std::mem::take(&mut evs));
    let mid = e.stats();
    e.tick(sim.ts + 3 * SEC, &mut out);
    out.clear();
    let s2 = e.stats();
    let after = engine_heap(&out);
    println!(
        "churn: {made} short-lived processes ({n_events} events, {:.2} M events/s applied, {:.1} s of event time, {:.1} s wall)",
        n_events as f64 / spent.as_secs_f64() / 1e6,
        (sim.ts - SEC) as f64 / SEC as f64,
        t0.elapsed().as_secs_f64(),
    );
    println!(
        "  engine heap peak {:.2} MiB during the churn (exited processes kept for the 2 s linger: {} at the end)",
        mib(engine_peak),
        mid.exited
    );
    println!(
        "  after the linger: {:.2} MiB (baseline {:.2} MiB, {:+.2}%), {} live processes, {} threads, {} exited kept",
        mib(after),
        mib(total),
        (after - total) as f64 * 100.0 / total as f64,
        s2.processes,
        s2.threads,
        s2.exited
    );
    if let Err(err) = e.check_invariants() {
        println!("  INVARIANT BROKEN: {err}");
    }
    drop(e);
    println!("  engine dropped: {} bytes left", engine_heap(&out));
}

/// Generates `total` mixed events first (in batches), then applies them (for
/// profilers: the apply phase starts after the line "applying").
fn profile(total: usize, target: usize) {
    // STEP_NS: event time between events (5000: 200 k events/s).
    let step = std::env::var("STEP_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let mut sim = Sim::new(step);
    let mut e = engine();
    let mut out = Vec::with_capacity(4096);
    boot(&mut sim, &mut e, &mut out);
    let mut batches: Vec<Vec<Event>> = Vec::with_capacity(total / BATCH + 2);
    let mut evs = Vec::with_capacity(BATCH + 64);
    while sim.live.len() < target {
        let pid = sim.random_live();
        let _ = sim.fork(pid, &mut evs);
    }
    let mut generated = 0;
    if std::env::var("INTERLEAVE").is_ok() {
        // Each batch made just before it is applied, as in the throughput runs (for
        // cache simulators that count only the engine's functions).
        let (mut d, mut n) = (Duration::ZERO, 0);
        while generated < total {
            while evs.len() < BATCH {
                sim.mixed_op(target, &mut evs);
            }
            generated += evs.len();
            d += apply_chunk(&mut e, &mut evs, &mut out, &mut n);
        }
        println!("{generated} events: {:.0} ns/event", d.as_nanos() as f64 / generated as f64);
        return;
    }
    while generated < total {
        while evs.len() < BATCH {
            sim.mixed_op(target, &mut evs);
        }
        generated += evs.len();
        batches.push(std::mem::replace(&mut evs, Vec::with_capacity(BATCH + 64)));
    }
    println!("applying");
    if std::env::var("NOOP").is_ok() {
        let t0 = Instant::now();
        for mut b in batches {
            for ev in b.drain(..) {
                out.push(Update::Event(ev));
                if out.len() >= 1024 {
                    out.clear();
                }
            }
        }
        println!("no engine: {:.0} ns/event", t0.elapsed().as_nanos() as f64 / generated as f64);
        return;
    }
    let (mut d, mut n) = (Duration::ZERO, 0);
    for mut b in batches {
        d += apply_chunk(&mut e, &mut b, &mut out, &mut n);
    }
    println!("{generated} events: {:.0} ns/event", d.as_nanos() as f64 / generated as f64);
}

fn main() {
    if std::env::args().any(|a| a == "--profile") {
        let n = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000_000);
        profile(n, 3000);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (events, churn) = if quick { (1_000_000, 100_000) } else { (10_000_000, 1_000_000) };
    println!(
        "tracer engine benchmark{} ({} allocator, {} build)",
        if quick { " (quick)" } else { "" },
        if SYSTEM_ALLOC { "the C library's" } else { "tracer's (jemalloc)" },
        if cfg!(target_env = "musl") { "static musl" } else { "glibc" }
    );
    // A busy host (20 k events/s: ~8,000 exited processes kept for the 2 s linger)
    // and a fork storm (200 k events/s: the exited set at its cap).
    throughput(events, 3000, 50_000);
    throughput(events, 3000, 5_000);
    throughput(events, 20_000, 5_000);
    throughput_told(events, 3000, 5_000, true);
    memory(10_000, churn);
}
