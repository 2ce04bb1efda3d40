//! The live model of every process and thread, updated from kernel events alone.
//!
//! [`Engine::apply`] takes the decoded events in ring buffer order and pushes what
//! consumers should see ([`Update`]s) in the order the model changed. The engine
//! never reads /proc: its starting state comes from the BPF task iterator, merged
//! with the events that arrived meanwhile by [`Engine::apply_snapshot`]; a later
//! walk repairs the model after lost events ([`Engine::reconcile`]).
//!
//! Identities: a process is (pid, start time of its leader) — a [`ProcRef`] — and a
//! thread is (tid, start time). pids wrap (pid_max may be 32768), so an event whose
//! process start time differs from the live process with that pid is about another
//! process: the older one has ended (even if its exit was never seen) and the
//! newer one replaces it; events about an older one are stale and skipped.
//!
//! Time: every `ts_ns`/`now_ns` is the boot clock (CLOCK_BOOTTIME, ns), the clock
//! of `bpf_ktime_get_boot_ns()` that stamps the events.
//!
//! The tree: each process records its current parent (`ppid` + the parent's start
//! time); the parent lists it in `children` while it is alive, and counts it in
//! `exited_children` once it has exited (while it is kept). A process whose parent is not in the
//! model (ppid 0, or never seen, or already dropped) is a root. Exited processes
//! stay for `linger_ns`, and longer while they still have children in the model
//! (live ones, or exited ones still shown): an exited process with live
//! descendants stays visible as their exited ancestor.

mod hash;
mod invariants;
mod model;
mod names;
mod query;
mod snapshot;
mod store;
mod users;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use hash::{FxBuild, FxHashMap, FxHashSet, FxHasher};
use model::lines;
pub use model::{Keyed, KeyedVec, Origin, ProcState, Process, Thread, Usage};
pub use snapshot::Seen;
pub use users::UserTable;

use crate::event::{Argv, Body, Comm, Event, ExitStatus, ProcRef, TaskInfo};
use store::Store;

/// Settings of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long an exited process stays in the model (and so on screen), ns.
    pub linger_ns: u64,
    /// How long a process exit is held for thread exits of the same process that
    /// may still arrive (events from other CPUs), ns of event time or of `tick`.
    pub exit_hold_ns: u64,
    /// The passwd file user names come from; None: no user names.
    pub passwd: Option<PathBuf>,
    /// Most exited processes kept: beyond it, `tick` drops the oldest ones
    /// without children before their linger ends (a bound for exit storms).
    pub max_exited: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            linger_ns: 2_000_000_000,
            exit_hold_ns: 50_000_000,
            passwd: Some(PathBuf::from("/etc/passwd")),
            max_exited: 20_000,
        }
    }
}

/// Why the engine decided a process ended without seeing its exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// An event showed its pid used by a newer process.
    PidReused,
    /// A task iterator walk that started after it did not find it (its exit event
    /// was lost).
    NotInWalk,
}

/// What consumers see, in the order the model changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A kernel event, applied. A held process exit comes when it is released,
    /// after the late thread exits it waited for. Snapshot events come too.
    Event(Event),
    /// A process's parent changed: after its parent's exit (to the exit's reaper),
    /// or because an event or walk showed another parent than the model had.
    Reparent { child: ProcRef, old_ppid: u32, new_ppid: u32, ts_ns: u64 },
    /// A process entered the model without its fork being seen: the other event
    /// about it (`Inferred`), or a repair walk (`Snapshot`). Not sent for the
    /// processes of the first walk (their snapshot events are the news).
    Added { proc: ProcRef, origin: Origin, ts_ns: u64 },
    /// A process ended without its exit being seen (it stays, exited, for the linger).
    Gone { proc: ProcRef, reason: GoneReason, ts_ns: u64 },
    /// A thread was found gone by a walk (or a leader found a zombie) without its
    /// exit being seen.
    ThreadGone { proc: ProcRef, tid: u32, start_ns: u64, ts_ns: u64 },
    /// An exited process left the model (linger over, no children left).
    Dropped { proc: ProcRef },
}

/// Applied events by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub fork: u64,
    pub clone: u64,
    pub exec: u64,
    pub thread_exit: u64,
    pub exit: u64,
    pub rename: u64,
    pub cgroup: u64,
    pub snapshot: u64,
}

impl KindCounts {
    pub fn total(&self) -> u64 {
        self.fork + self.clone + self.exec + self.thread_exit + self.exit + self.rename + self.cgroup + self.snapshot
    }

    fn count(&mut self, body: &Body) {
        let c = match body {
            Body::Fork { .. } => &mut self.fork,
            Body::Clone { .. } => &mut self.clone,
            Body::Exec { .. } => &mut self.exec,
            Body::ThreadExit { .. } => &mut self.thread_exit,
            Body::ProcessExit { .. } => &mut self.exit,
            Body::Rename { .. } => &mut self.rename,
            Body::CgroupAttach { .. } => &mut self.cgroup,
            Body::Snapshot { .. } => &mut self.snapshot,
        };
        *c += 1;
    }
}

/// What repair walks and inconsistent events changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repairs {
    /// Processes and threads a repair walk found that the model did not have.
    pub added_processes: u64,
    pub added_threads: u64,
    /// Processes and threads the model had that a walk no longer found.
    pub removed_processes: u64,
    pub removed_threads: u64,
    /// Parents corrected because an event or walk showed another one.
    pub reparented: u64,
}

/// Counters and sizes of an [`Engine`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Live processes and their live threads.
    pub processes: usize,
    pub threads: usize,
    /// Exited processes still in the model.
    pub exited: usize,
    /// Events applied (and sent on), by kind.
    pub applied: KindCounts,
    /// Events skipped: about a process or thread already ended, an older process
    /// than the one holding the pid, or a process never seen that exits.
    pub stale: u64,
    /// Process exits held for late thread exits, and those released by the deadline.
    pub held_exits: u64,
    /// Process exits claimed by a second thread (see `on_process_exit`): the first
    /// was taken as that thread's exit.
    pub claimed_twice: u64,
    pub forced_exits: u64,
    /// Processes ended because their pid was seen reused.
    pub pid_reuses: u64,
    /// Processes created from an event other than their fork.
    pub inferred: u64,
    pub repairs: Repairs,
    /// Task iterator walks applied.
    pub walks: u32,
    /// Records the kernel could not write (last total given to `set_lost`).
    pub lost: u64,
    /// Records were lost since the last repair walk started.
    pub degraded: bool,
}

/// A process exit waiting for thread exits of the same process.
#[derive(Debug)]
struct Held {
    proc: ProcRef,
    ev: Event,
    deadline: u64,
}

enum Lookup {
    /// The live process with this identity.
    Live(ProcRef),
    /// Not in the model (any older process with the pid has been closed).
    Absent,
    /// Ended already, or older than the live process with that pid.
    Stale,
}

/// The model. See the module documentation.
pub struct Engine {
    cfg: EngineConfig,
    /// Every process in the model, alive or exited.
    procs: Store,
    /// Children whose parent is not in the model, by that parent.
    pending: FxHashMap<ProcRef, Vec<ProcRef>>,
    held: Vec<Held>,
    /// Earliest deadline in `held` (u64::MAX: none).
    next_deadline: u64,
    /// Exited processes that lost a child: to drop if their linger is over.
    recheck: Vec<ProcRef>,
    users: UserTable,
    /// Executable names and argument lists, shared.
    names: names::Names,
    argvs: names::Argvs,
    threads: usize,
    walk_gen: u32,
    /// Inside a repair walk (a walk after the first).
    repairing: bool,
    stats: Stats,
    lost: u64,
    lost_repaired: u64,
    last_shrink_ns: u64,
    /// Boxes of dropped processes, for reuse (the boxes are the point).
    #[allow(clippy::vec_box)]
    pool: Vec<Box<Process>>,
    /// Reusable lists (for adoptions).
    orphans: Vec<ProcRef>,
    adopted: Vec<ProcRef>,
    /// The host's pid namespace: that of the first kernel thread seen (0: none yet).
    host_pidns: u32,
}

/// Refreshes what the leader's task says of the whole process.
fn refresh_leader(p: &mut Process, t: &TaskInfo, users: &mut UserTable) {
    if !t.is_leader() {
        return;
    }
    if p.uid != t.uid {
        p.uid = t.uid;
        p.user = users.name(t.uid);
    }
    p.gid = t.gid;
    p.comm = t.comm;
    p.cgroup_id = t.cgroup_id;
    p.pidns = t.pidns;
    p.mntns = t.mntns;
    p.ns_pid = t.ns_pid;
    p.kthread |= t.kthread;
}

/// Whether an event shows another parent than the model has.
fn parent_differs(p: &Process, t: &TaskInfo) -> bool {
    p.ppid != t.ppid || (t.ppid != 0 && p.parent_start_ns != t.parent_start_ns)
}

/// Most process boxes kept for reuse.
const POOL_MAX: usize = 256;

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let users = UserTable::from_path(cfg.passwd.clone());
        Engine::with_users(cfg, users)
    }

    /// An engine with the given user table (tests, or a table read elsewhere).
    pub fn with_users(cfg: EngineConfig, users: UserTable) -> Engine {
        Engine {
            cfg,
            procs: Store::default(),
            pending: FxHashMap::default(),
            held: Vec::new(),
            next_deadline: u64::MAX,
            recheck: Vec::new(),
            users,
            names: names::Names::default(),
            argvs: names::Argvs::default(),
            threads: 0,
            walk_gen: 0,
            repairing: false,
            stats: Stats::default(),
            lost: 0,
            lost_repaired: 0,
            last_shrink_ns: 0,
            pool: Vec::new(),
            orphans: Vec::new(),
            adopted: Vec::new(),
            host_pidns: 0,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    // ---------------------------------------------------------------- events

    /// Applies one event and pushes what consumers should see onto `out` (the
    /// event itself is moved into its [`Update::Event`], not copied).
    pub fn apply(&mut self, ev: Event, out: &mut Vec<Update>) {
        if self.next_deadline <= ev.ts_ns {
            self.release_due(ev.ts_ns, out);
        }
        match &ev.body {
            Body::Fork { creator_tid } => {
                let c = *creator_tid;
                self.on_fork(ev, c, out)
            }
            Body::Clone { .. } => self.on_clone(ev, out),
            Body::Exec { .. } => self.on_exec(ev, out),
            Body::ThreadExit { .. } => self.on_thread_exit(ev, out),
            Body::ProcessExit { .. } => self.on_process_exit(ev, out),
            Body::Rename { new_comm } => {
                let c = *new_comm;
                self.on_rename(ev, Some(c), out)
            }
            // The leader's task carries the process's new cgroup: applied like a
            // rename without a new name.
            Body::CgroupAttach { .. } => self.on_rename(ev, None, out),
            Body::Snapshot { .. } => {
                // Outside a walk, "its process has live threads" can only come from the model.
                let t = &ev.task;
                let live_threads = self
                    .live_ref(t.pid)
                    .filter(|r| r.start_ns == t.proc_start_ns)
                    .and_then(|r| self.procs.get(&r))
                    .is_some_and(|p| p.threads.iter().any(|th| th.tid != t.tid));
                self.on_snapshot(ev, None, live_threads, out);
            }
        }
    }

    /// [`Engine::apply`] for a borrowed event (copies it).
    pub fn apply_ref(&mut self, ev: &Event, out: &mut Vec<Update>) {
        self.apply(ev.clone(), out);
    }

    /// Releases held process exits whose deadline has passed and drops exited
    /// processes whose linger is over and that have no children left (and, past
    /// `max_exited` exited processes, the oldest without children). Call it
    /// regularly (every 10-100 ms); `now_ns` is the boot clock.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Update>) {
        self.release_due(now_ns, out);
        let linger = self.cfg.linger_ns;
        // Exited processes leave in exit order once their linger is over, or earlier
        // while there are more than `max_exited` (then only those without children).
        let mut budget = self.procs.exited.queued();
        self.procs.exited.prefetch_front();
        while let Some(p) = self.procs.exited.front() {
            let at = p.exited_at().unwrap_or(0);
            let due = at.saturating_add(linger) <= now_ns;
            if !due && (self.procs.exited.len() <= self.cfg.max_exited || budget == 0) {
                break;
            }
            budget = budget.saturating_sub(1);
            let has_children = p.has_children();
            // The ones after it are cold by now (they ended seconds ago).
            self.procs.exited.prefetch_ahead();
            if !has_children {
                if let Some(p) = self.procs.exited.pop_front() {
                    self.dropped(p, out);
                }
            } else if due {
                // Still needed: it stays until its last child leaves (see `recheck`).
                self.procs.exited.park_front();
            } else {
                // Over the cap but still needed: queued again for its linger.
                self.procs.exited.requeue_front();
            }
        }
        while let Some(r) = self.recheck.pop() {
            let due = self.procs.get(&r).is_some_and(|p| {
                !p.has_children() && p.exited_at().is_some_and(|at| at.saturating_add(linger) <= now_ns)
            });
            if due {
                self.drop_process(r, out);
            }
        }
        if now_ns >= self.last_shrink_ns.saturating_add(1_000_000_000) {
            // At most once a second: shrinking rehashes.
            self.last_shrink_ns = now_ns;
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        // Only a map mostly empty is shrunk (to half full): one whose size swings
        // (the exited set in a storm) would otherwise be shrunk and grown again,
        // rehashing each time.
        fn fit<K: std::hash::Hash + Eq, V>(m: &mut FxHashMap<K, V>) {
            if m.capacity() > 64 && m.len() * 4 < m.capacity() {
                m.shrink_to(m.len() * 2);
            }
        }
        fit(&mut self.procs.live);
        fit(&mut self.pending);
        self.procs.exited.shrink();
    }

    fn count_applied(&mut self, ev: Event, out: &mut Vec<Update>) {
        self.stats.applied.count(&ev.body);
        out.push(Update::Event(ev));
    }

    /// Finds the process an event is about, closing an older one that held the pid.
    fn lookup(&mut self, t: &TaskInfo, ts: u64, out: &mut Vec<Update>) -> Lookup {
        self.lookup_as::<{ lines::THREADS | lines::TREE }>(t, ts, false, out)
    }

    /// `lookup`; `new` skips the check for an exited process of that identity: a
    /// fork event always announces an identity that has not ended yet. `LINES`:
    /// the cache lines of the live process found to start fetching (see
    /// [`Process::prefetch`]), those the caller is about to read.
    fn lookup_as<const LINES: u8>(&mut self, t: &TaskInfo, ts: u64, new: bool, out: &mut Vec<Update>) -> Lookup {
        let want = ProcRef { pid: t.pid, start_ns: t.proc_start_ns };
        match self.procs.live_start::<LINES>(t.pid, want.start_ns) {
            Some(s) if s == want.start_ns => return Lookup::Live(want),
            Some(s) if s > want.start_ns => return Lookup::Stale,
            Some(s) => self.close_reused(ProcRef { pid: t.pid, start_ns: s }, ts, out),
            None => {}
        }
        if !new && self.procs.exited.contains(&want) { Lookup::Stale } else { Lookup::Absent }
    }

    /// The live process `old` held a pid that a newer process now has: it ended.
    fn close_reused(&mut self, old: ProcRef, ts: u64, out: &mut Vec<Update>) {
        self.stats.pid_reuses += 1;
        if let Some(i) = self.held.iter().position(|h| h.proc == old) {
            let h = self.held.swap_remove(i);
            self.recompute_deadline();
            self.finish_exit(h.ev, out);
            return;
        }
        out.push(Update::Gone { proc: old, reason: GoneReason::PidReused, ts_ns: ts });
        self.end_process(old, None, ts, None, out);
    }

    /// The user name for a new process: its parent's when the uid is the same.
    fn user_for(&mut self, t: &TaskInfo) -> Option<Arc<str>> {
        match self.procs.get(&ProcRef { pid: t.ppid, start_ns: t.parent_start_ns }) {
            Some(pp) if t.ppid != 0 && pp.uid == t.uid => pp.user.clone(),
            _ => self.users.name(t.uid),
        }
    }

    /// A new process from what an event says of one of its tasks, without threads.
    fn new_process(&mut self, t: &TaskInfo, origin: Origin, user: Option<Arc<str>>) -> Box<Process> {
        self.new_process_with(t, origin, user, None, Argv::default())
    }

    /// [`Engine::new_process`] running `exe` with `argv`. A recycled box is filled
    /// in field by field: its vectors keep their room, and what it shared was let
    /// go of already.
    fn new_process_with(
        &mut self,
        t: &TaskInfo,
        origin: Origin,
        user: Option<Arc<str>>,
        exe: Option<Arc<str>>,
        argv: Argv,
    ) -> Box<Process> {
        let (ppid, parent_start_ns) = if t.ppid == 0 { (0, 0) } else { (t.ppid, t.parent_start_ns) };
        let spawned_by = ProcRef { pid: ppid, start_ns: parent_start_ns };
        if t.kthread && self.host_pidns == 0 {
            self.host_pidns = t.pidns;
        }
        let Some(mut b) = self.pool.pop() else {
            return Box::new(Process {
                pid: t.pid,
                start_ns: t.proc_start_ns,
                ppid,
                parent_start_ns,
                spawned_by,
                uid: t.uid,
                gid: t.gid,
                user,
                comm: t.comm,
                exe,
                argv,
                threads: KeyedVec::default(),
                children: KeyedVec::default(),
                exited_children: 0,
                cgroup_id: t.cgroup_id,
                pidns: t.pidns,
                mntns: t.mntns,
                ns_pid: t.ns_pid,
                kthread: t.kthread,
                origin,
                state: ProcState::Alive,
                usage: None,
                exit_held: false,
            });
        };
        let p = &mut *b;
        debug_assert!(p.threads.is_empty() && p.children.is_empty() && p.exe.is_none() && p.user.is_none());
        p.pid = t.pid;
        p.start_ns = t.proc_start_ns;
        p.ppid = ppid;
        p.parent_start_ns = parent_start_ns;
        p.spawned_by = spawned_by;
        p.uid = t.uid;
        p.gid = t.gid;
        p.user = user;
        p.comm = t.comm;
        p.exe = exe;
        p.argv = argv;
        p.exited_children = 0;
        p.cgroup_id = t.cgroup_id;
        p.pidns = t.pidns;
        p.mntns = t.mntns;
        p.ns_pid = t.ns_pid;
        p.kthread = t.kthread;
        p.origin = origin;
        p.state = ProcState::Alive;
        p.usage = None;
        p.exit_held = false;
        b
    }

    /// Puts a new live process into the model and the tree (`linked`: its parent
    /// lists it already).
    fn insert_process(&mut self, mut p: Box<Process>, linked: bool) -> ProcRef {
        let r = p.id();
        if !self.pending.is_empty()
            && let Some(kids) = self.pending.remove(&r)
        {
            for k in kids {
                match self.procs.get(&k) {
                    Some(kp) if kp.is_alive() => p.children.push_new(k),
                    Some(_) => p.exited_children += 1,
                    None => {}
                }
            }
        }
        let parent = p.parent().filter(|&pr| pr != r);
        self.threads += p.threads.len();
        self.procs.insert(p);
        if let Some(pr) = parent
            && !linked
        {
            self.link_child(r, pr, true);
        }
        r
    }

    /// A process learnt of from an event other than its fork.
    fn insert_inferred(&mut self, t: &TaskInfo, ts: u64, with_thread: Option<Comm>, out: &mut Vec<Update>) -> ProcRef {
        let user = self.user_for(t);
        let mut p = self.new_process(t, Origin::Inferred, user);
        if let Some(comm) = with_thread {
            p.threads.insert(Thread::of(t, comm));
        }
        let r = self.insert_process(p, false);
        self.stats.inferred += 1;
        out.push(Update::Added { proc: r, origin: Origin::Inferred, ts_ns: ts });
        r
    }

    /// Puts `child` (alive or not) under `parent` in the tree.
    fn link_child(&mut self, child: ProcRef, parent: ProcRef, alive: bool) {
        match self.procs.get_mut(&parent) {
            // A process is linked once (when created, or after being unlinked).
            Some(pp) if alive => pp.children.push_new(child),
            Some(pp) => pp.exited_children += 1,
            None => self.pending.entry(parent).or_default().push(child),
        }
    }

    /// Takes `child` (alive or not) from under `parent`.
    fn unlink_child(&mut self, child: ProcRef, parent: ProcRef, alive: bool) {
        match self.procs.get_mut(&parent) {
            Some(pp) => {
                if alive {
                    pp.children.remove(child);
                } else {
                    pp.exited_children = pp.exited_children.saturating_sub(1);
                }
                if !pp.is_alive() && !pp.has_children() {
                    self.recheck.push(parent);
                }
            }
            None => {
                if let Some(v) = self.pending.get_mut(&parent) {
                    v.retain(|c| *c != child);
                    if v.is_empty() {
                        self.pending.remove(&parent);
                    }
                }
            }
        }
    }

    /// Moves `child` under `new` (pid 0: no parent).
    fn set_parent(&mut self, child: ProcRef, new: ProcRef, ts: u64, out: &mut Vec<Update>) {
        let Some(c) = self.procs.get_mut(&child) else { return };
        let old = c.parent();
        let new = (new.pid != 0 && new != child).then_some(new);
        if old == new {
            return;
        }
        let old_ppid = c.ppid;
        let alive = c.is_alive();
        c.ppid = new.map_or(0, |r| r.pid);
        c.parent_start_ns = new.map_or(0, |r| r.start_ns);
        if let Some(o) = old {
            self.unlink_child(child, o, alive);
        }
        if let Some(n) = new {
            self.link_child(child, n, alive);
        }
        out.push(Update::Reparent { child, old_ppid, new_ppid: new.map_or(0, |r| r.pid), ts_ns: ts });
    }

    /// Follows the parent an event shows for a live process, unless that parent is
    /// one the model already saw exit (the event was made before the kernel moved
    /// the children of that exit).
    fn sync_parent(&mut self, r: ProcRef, t: &TaskInfo, ts: u64, out: &mut Vec<Update>) {
        let Some(p) = self.procs.get(&r) else { return };
        if p.ppid == t.ppid && (p.parent_start_ns == t.parent_start_ns || t.ppid == 0) {
            return;
        }
        let new = ProcRef { pid: t.ppid, start_ns: t.parent_start_ns };
        if t.ppid != 0 && self.procs.get(&new).is_some_and(|np| !np.is_alive()) {
            return;
        }
        self.stats.repairs.reparented += 1;
        self.set_parent(r, new, ts, out);
    }

    /// Refreshes what the leader's task says of the whole process.
    fn refresh_leader(&mut self, r: ProcRef, t: &TaskInfo) {
        if let Some(p) = self.procs.get_mut(&r) {
            refresh_leader(p, t, &mut self.users);
        }
    }

    /// Marks a process ended, frees its threads and moves its live children to
    /// `reaper` (pushing a Reparent for each).
    fn end_process(
        &mut self,
        r: ProcRef,
        status: Option<ExitStatus>,
        at_ns: u64,
        reaper: Option<ProcRef>,
        out: &mut Vec<Update>,
    ) {
        // Only a live process ends (an exited one is left as it is).
        let Some(mut p) = self.procs.remove_live(&r) else { return };
        self.threads -= p.threads.clear();
        p.state = ProcState::Exited { status, at_ns };
        p.exit_held = false;
        // Its live children go to the reaper (none given: they stay listed under it).
        let orphans = match reaper {
            Some(rp) if rp != r && !p.children.is_empty() => {
                let mut kids = std::mem::take(&mut self.orphans);
                kids.extend(p.children.iter());
                p.children.clear();
                Some((rp, kids))
            }
            _ => None,
        };
        // Its parent now counts it among its exited children.
        let mut parent_at = 0;
        if let Some(pr) = p.parent().filter(|&pr| pr != r)
            && let Some(pp) = self.procs.get_mut(&pr)
        {
            pp.prefetch(lines::TREE | lines::CHILDREN);
            pp.children.remove(r);
            pp.exited_children += 1;
            parent_at = std::ptr::from_mut(pp).addr();
        }
        self.procs.exited.push(p, parent_at);
        if let Some((reaper, kids)) = orphans {
            self.adopt(r, kids, reaper, at_ns, out);
        }
    }

    /// Moves the live children of the exited `old` (taken from its list) under
    /// `reaper`, in list order, pushing a Reparent for each: what `set_parent`
    /// does for each child, with one look at the reaper for all of them.
    fn adopt(&mut self, old: ProcRef, mut kids: Vec<ProcRef>, reaper: ProcRef, ts: u64, out: &mut Vec<Update>) {
        let mut adopted = std::mem::take(&mut self.adopted);
        for &c in &kids {
            let Some(cp) = self.procs.live_mut(&c) else { continue };
            if cp.parent() != Some(old) || c == reaper {
                // Not as the list says (or its own reaper): the general way.
                self.set_parent(c, reaper, ts, out);
                continue;
            }
            let old_ppid = cp.ppid;
            cp.ppid = reaper.pid;
            cp.parent_start_ns = reaper.start_ns;
            adopted.push(c);
            out.push(Update::Reparent { child: c, old_ppid, new_ppid: reaper.pid, ts_ns: ts });
        }
        kids.clear();
        self.orphans = kids;
        match self.procs.get_mut(&reaper) {
            Some(rp) => {
                for &c in &adopted {
                    rp.children.push_new(c);
                }
            }
            None if !adopted.is_empty() => self.pending.entry(reaper).or_default().extend_from_slice(&adopted),
            None => {}
        }
        adopted.clear();
        self.adopted = adopted;
    }

    /// Drops the exited process `r`.
    fn drop_process(&mut self, r: ProcRef, out: &mut Vec<Update>) {
        if let Some(p) = self.procs.exited.remove(&r) {
            self.dropped(p, out);
        }
    }

    /// Takes an exited process removed from the store out of the tree.
    fn dropped(&mut self, p: Box<Process>, out: &mut Vec<Update>) {
        let r = p.id();
        debug_assert!(!p.has_children() && p.threads.is_empty() && !p.is_alive());
        if let Some(pr) = p.parent().filter(|&pr| pr != r) {
            self.unlink_child(r, pr, false);
        }
        out.push(Update::Dropped { proc: r });
        self.recycle(p);
    }

    /// Keeps the box of a dropped process (and its empty vectors' room) for the
    /// next new process: processes are dropped ~2 s after they were made, too late
    /// for the allocator's caches, so recycling saves most malloc work in storms.
    /// Its threads are not looked at (another cache line): an exited process
    /// has none, and keeps at most a small room for them (see `KeyedVec::clear`).
    fn recycle(&mut self, mut p: Box<Process>) {
        if self.pool.len() < POOL_MAX && p.children.heap_bytes() <= 256 {
            // Let go of shared data now.
            p.argv = Argv::default();
            p.exe = None;
            p.user = None;
            p.children.clear();
            self.pool.push(p);
        }
    }

    fn recompute_deadline(&mut self) {
        self.next_deadline = self.held.iter().map(|h| h.deadline).min().unwrap_or(u64::MAX);
    }

    fn release_due(&mut self, now: u64, out: &mut Vec<Update>) {
        if self.next_deadline > now {
            return;
        }
        let mut due: Vec<Held> = self.held.extract_if(.., |h| h.deadline <= now).collect();
        due.sort_by_key(|h| h.deadline);
        self.recompute_deadline();
        for h in due {
            self.stats.forced_exits += 1;
            self.finish_exit(h.ev, out);
        }
    }

    /// Releases the held exit of `r` if no other thread of it is left.
    fn try_release(&mut self, r: ProcRef, out: &mut Vec<Update>) {
        let Some(i) = self.held.iter().position(|h| h.proc == r) else { return };
        let tid = self.held[i].ev.task.tid;
        if self.procs.get(&r).is_some_and(|p| p.threads.iter().all(|th| th.tid == tid)) {
            let h = self.held.swap_remove(i);
            self.recompute_deadline();
            self.finish_exit(h.ev, out);
        }
    }

    /// Applies a process exit: the event, then the reparenting of its children.
    fn finish_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let Body::ProcessExit { status, reaper } = ev.body else { return };
        let r = ProcRef { pid: ev.task.pid, start_ns: ev.task.proc_start_ns };
        let ts = ev.ts_ns;
        self.stats.applied.count(&ev.body);
        out.push(Update::Event(ev));
        self.end_process(r, Some(status), ts, reaper, out);
    }

    fn on_fork(&mut self, ev: Event, creator_tid: u32, out: &mut Vec<Update>) {
        let t = &ev.task;
        match self.lookup_as::<{ lines::THREADS | lines::TREE }>(t, ev.ts_ns, true, out) {
            Lookup::Stale => self.stats.stale += 1,
            Lookup::Live(r) => {
                // Already known: the walk visited the child before its fork event came.
                if let Some(p) = self.procs.get_mut(&r) {
                    p.origin = Origin::Fork;
                    if p.threads.insert(Thread::of(t, t.comm)).is_none() {
                        self.threads += 1;
                    }
                }
                let t = ev.task;
                self.sync_parent(r, &t, ev.ts_ns, out);
                self.count_applied(ev, out);
            }
            Lookup::Absent => {
                let r = ProcRef { pid: t.pid, start_ns: t.proc_start_ns };
                let parent = (t.ppid != 0).then_some(ProcRef { pid: t.ppid, start_ns: t.parent_start_ns });
                // One look at the parent: it lists the child; the child has its user
                // (same uid) and runs a copy of its creator's memory (same program).
                let (mut linked, mut user, mut prog) = (false, None, None);
                if let Some(pr) = parent.filter(|&pr| pr != r)
                    && let Some(pp) = self.procs.get_mut(&pr)
                {
                    pp.prefetch(lines::ALL);
                    pp.children.push_new(r);
                    linked = true;
                    if pp.uid == t.uid {
                        user = Some(pp.user.clone());
                    }
                    if pp.threads.is_empty() || pp.threads.contains(creator_tid) {
                        prog = Some((pp.exe.clone(), pp.argv.clone()));
                    }
                }
                if prog.is_none()
                    && let Some(c) = self.procs.live_ref(creator_tid).and_then(|cr| self.procs.get(&cr))
                {
                    // CLONE_PARENT: the creator is not the parent.
                    prog = Some((c.exe.clone(), c.argv.clone()));
                }
                let user = match user {
                    Some(u) => u,
                    None => self.users.name(t.uid),
                };
                let (exe, argv) = prog.unwrap_or_default();
                let mut p = self.new_process_with(t, Origin::Fork, user, exe, argv);
                p.threads.push_new(Thread::of(t, t.comm));
                self.insert_process(p, linked);
                self.count_applied(ev, out);
            }
        }
    }

    /// The live process an event about `t` applies to: the one the model has, or
    /// one made from the event when the model has none. None (counted) for a
    /// stale event.
    fn target(&mut self, t: &TaskInfo, ts_ns: u64, out: &mut Vec<Update>) -> Option<ProcRef> {
        match self.lookup(t, ts_ns, out) {
            Lookup::Stale => {
                self.stats.stale += 1;
                None
            }
            Lookup::Absent => Some(self.insert_inferred(t, ts_ns, None, out)),
            Lookup::Live(r) => Some(r),
        }
    }

    fn on_clone(&mut self, ev: Event, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        let Some(r) = self.target(t, ev.ts_ns, out) else { return };
        let mut resync = false;
        if let Some(p) = self.procs.get_mut(&r) {
            if p.threads.insert(Thread::of(t, t.comm)).is_none() {
                self.threads += 1;
            }
            // A new thread carries the process's credentials as they are now: a
            // setuid() without exec (Apache's children) shows here first.
            if p.uid != t.uid || p.gid != t.gid {
                p.uid = t.uid;
                p.gid = t.gid;
                p.user = self.users.name(t.uid);
            }
            resync = parent_differs(p, t);
        }
        if resync {
            self.sync_parent(r, t, ev.ts_ns, out);
        }
        self.count_applied(ev, out);
    }

    fn on_exec(&mut self, ev: Event, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        let r = match self.lookup_as::<{ lines::ALL }>(t, ev.ts_ns, false, out) {
            Lookup::Stale => {
                self.stats.stale += 1;
                return;
            }
            Lookup::Absent => self.insert_inferred(t, ev.ts_ns, None, out),
            Lookup::Live(r) => r,
        };
        let mut resync = false;
        if let Some(p) = self.procs.get_mut(&r)
            && let Body::Exec { filename, argv, .. } = &ev.body
        {
            // Exec leaves one thread, the leader, whichever thread called it: the others
            // (and, after a non-leader exec, the old leader) were killed, and the caller
            // (`old_tid`) took the leader's tid and start time.
            self.threads -= p.threads.clear();
            p.threads.insert(Thread::of(t, t.comm));
            self.threads += 1;
            p.exe = Some(self.names.get(filename));
            p.argv = self.argvs.get(argv);
            refresh_leader(p, t, &mut self.users);
            resync = parent_differs(p, t);
        }
        if resync {
            self.sync_parent(r, t, ev.ts_ns, out);
        }
        self.count_applied(ev, out);
    }

    fn on_thread_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        let Some(r) = self.target(t, ev.ts_ns, out) else { return };
        let (mut held, mut resync) = (false, false);
        if let Some(p) = self.procs.get_mut(&r) {
            if p.threads.get(t.tid).is_some_and(|th| th.start_ns <= t.start_ns) {
                p.threads.remove(t.tid);
                self.threads -= 1;
            }
            held = p.exit_held;
            resync = parent_differs(p, t);
        }
        if resync {
            self.sync_parent(r, t, ev.ts_ns, out);
        }
        self.count_applied(ev, out);
        if held {
            self.try_release(r, out);
        }
    }

    fn on_process_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        let r = match self.lookup_as::<{ lines::THREADS | lines::TREE | lines::CHILDREN }>(t, ev.ts_ns, false, out) {
            Lookup::Live(r) => r,
            Lookup::Stale | Lookup::Absent => {
                self.stats.stale += 1;
                return;
            }
        };
        let Some(p) = self.procs.get_mut(&r) else { return };
        if p.exit_held {
            let earlier = self.held.iter().position(|h| h.proc == r && h.ev.task.tid != t.tid);
            let Some(i) = earlier else {
                self.stats.stale += 1;
                return;
            };
            // A second thread claims the process's exit. Kernels that do not pass
            // group_dead to the tracepoint (before 6.16) make the program read
            // signal->live, and two threads exiting together can both find it at
            // 0. The held one then ended as a thread: the later is the process exit.
            p.exit_held = false;
            let mut h = self.held.swap_remove(i);
            self.recompute_deadline();
            if let Body::ProcessExit { status, .. } = h.ev.body {
                h.ev.body = Body::ThreadExit { status };
            }
            self.stats.claimed_twice += 1;
            self.on_thread_exit(h.ev, out);
            return self.on_process_exit(ev, out);
        }
        if p.threads.iter().any(|th| th.tid != t.tid) {
            // Other threads are still known: their exits, made on other CPUs just
            // before this one, may still be on the way. Hold the exit for them.
            p.exit_held = true;
            let deadline = ev.ts_ns.saturating_add(self.cfg.exit_hold_ns);
            self.held.push(Held { proc: r, ev, deadline });
            self.next_deadline = self.next_deadline.min(deadline);
            self.stats.held_exits += 1;
        } else {
            self.finish_exit(ev, out);
        }
    }

    /// A rename (`new_comm`), or another event that only refreshes what the task
    /// says of itself (a cgroup move: `None`).
    fn on_rename(&mut self, ev: Event, new_comm: Option<Comm>, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        let r = match self.lookup_as::<{ lines::ALL }>(t, ev.ts_ns, false, out) {
            Lookup::Stale => {
                self.stats.stale += 1;
                return;
            }
            Lookup::Absent => self.insert_inferred(t, ev.ts_ns, new_comm, out),
            Lookup::Live(r) => r,
        };
        let mut resync = false;
        if let Some(p) = self.procs.get_mut(&r) {
            refresh_leader(p, t, &mut self.users);
            if let Some(new_comm) = new_comm {
                if let Some(th) = p.threads.get_mut(t.tid) {
                    th.comm = new_comm;
                }
                if t.is_leader() {
                    p.comm = new_comm;
                }
            }
            resync = parent_differs(p, t);
        }
        if resync {
            self.sync_parent(r, t, ev.ts_ns, out);
        }
        self.count_applied(ev, out);
    }

    // ---------------------------------------------------------------- lost events

    /// Records the kernel's lost-record counter (its running total).
    pub fn set_lost(&mut self, total: u64) {
        self.lost = self.lost.max(total);
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Records were lost that no repair walk has made up for yet: the model may be
    /// wrong until [`Engine::reconcile`] after a walk.
    pub fn degraded(&self) -> bool {
        self.lost > self.lost_repaired
    }

    /// Process exits being held for late thread exits.
    pub fn held_exits(&self) -> usize {
        self.held.len()
    }

    /// The user name of `uid` (cached passwd lookup).
    pub fn user_name(&mut self, uid: u32) -> Option<Arc<str>> {
        self.users.name(uid)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            processes: self.procs.live.len(),
            threads: self.threads,
            exited: self.procs.exited.len(),
            lost: self.lost,
            degraded: self.degraded(),
            ..self.stats.clone()
        }
    }
}
