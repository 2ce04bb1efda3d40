//! The live model of every process and thread, updated from kernel events alone.
//!
//! [`Engine::apply`] takes the decoded events in ring buffer order and pushes what
//! consumers should see ([`Update`]s) in the order the model changed. The engine
//! never reads /proc: its starting state comes from the BPF task iterator, merged
//! with the events that arrived meanwhile by [`Engine::apply_snapshot`]; a later
//! walk repairs the model after lost events ([`Engine::reconcile`]).
//!
//! How an event flows through: [`Engine::apply`] first releases the held process
//! exits whose deadline the event's time has passed, then hands the event to the
//! handler of its kind. The handler finds the process the event is about (the live
//! one with that identity; one made from the event when the model has none; or
//! none: the event is stale and only counted), changes it, follows the parent the
//! event shows when the model has another, and pushes the event as an
//! [`Update::Event`], after the updates that finding the process and following
//! its parent caused (`Gone`, `Added`, `Reparent`). A process exit may be held
//! for late thread exits of the same process; once applied, it comes before the
//! reparenting of its children to their reaper. [`Engine::tick`]
//! releases held exits past their deadline and drops exited processes once their
//! linger is over.
//!
//! Where things are: this file holds the engine, its settings, counters and
//! public entry points; `apply.rs` the per-kind handlers and the skeleton they
//! share; `exits.rs` process exits, held exits, reparenting to the reaper and the
//! linger; `tree.rs` new processes and the parent/child links; `walk.rs` task
//! iterator walks (merge and repair); `query.rs` the read-only tree queries the
//! views use; `invariants.rs` the model's invariants (tests). Storage: `store.rs`
//! (processes by pid, exited ones in exit order), `model.rs` (the process and
//! thread types), `names.rs` (shared names and argument lists), `hash.rs`,
//! `users.rs` (user names).
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

mod apply;
mod exits;
mod hash;
mod invariants;
mod model;
mod names;
mod query;
mod store;
mod tree;
mod users;
mod walk;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Serialize;
use tracer_abi as abi;

pub use hash::{FxBuild, FxHashMap, FxHashSet, FxHasher};
use model::lines;
pub use model::{Keyed, KeyedVec, Origin, ProcState, Process, Thread, Usage};
pub use users::UserTable;
pub use walk::Seen;

use crate::events::{Body, Event, ProcRef};
use exits::Held;
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

/// Applied events by kind, indexed by the registry (`abi::KINDS`): no field per
/// kind to keep in step. Serialized as `{name: count}` for the kinds that are events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts([u64; abi::KINDS.len()]);

impl KindCounts {
    pub fn get(&self, kind: abi::Kind) -> u64 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn count(&mut self, body: &Body) {
        self.0[body.kind().index()] += 1;
    }
}

impl Serialize for KindCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // A cgroup path record is never applied as an event.
        let kinds = abi::Kind::ALL.into_iter().filter(|k| *k != abi::Kind::Cgroup);
        let mut m = s.serialize_map(None)?;
        for k in kinds {
            m.serialize_entry(k.name(), &self.get(k))?;
        }
        m.end()
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
    /// The user table's generation the processes' names are of.
    users_seen: u64,
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
            users_seen: users.generation(),
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
                self.on_refresh(ev, Some(c), out)
            }
            // The leader's task carries the process's new cgroup: a refresh like a
            // rename, without a new name.
            Body::CgroupAttach { .. } => self.on_refresh(ev, None, out),
            Body::Snapshot { .. } => self.on_lone_snapshot(ev, out),
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
        self.drop_lingered(now_ns, out);
        self.rename_users();
        if now_ns >= self.last_shrink_ns.saturating_add(1_000_000_000) {
            // At most once a second: shrinking rehashes.
            self.last_shrink_ns = now_ns;
            self.shrink();
        }
    }

    /// When user names changed (a rename, a late NSS answer), names the live
    /// processes afresh: a pass over them, once per change.
    fn rename_users(&mut self) {
        let g = self.users.generation();
        if g != self.users_seen {
            self.users_seen = g;
            for l in self.procs.live.values_mut() {
                l.p.user = self.users.name(l.p.uid);
            }
        }
    }

    /// Gives back the room of maps that emptied (after a storm).
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
