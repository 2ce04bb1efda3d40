//! Task iterator walks: merging one into the model while events keep coming, and
//! repairing the model after lost events.
//!
//! The runtime runs the iterator while it keeps reading the ring buffer. It hands
//! the walk's snapshot events and the events that arrived meanwhile to
//! [`Engine::apply_snapshot`], which applies both in time order: each snapshot
//! event is the task as it was when the walk visited it, each live event what
//! happened when. After a repair walk, [`Engine::reconcile`] ends what the walk
//! should have found and did not. A snapshot event handed to [`Engine::apply`]
//! alone, outside a walk, is applied the same way.

use super::apply::{IfAbsent, refresh_leader};
use super::{Engine, FxHashSet, GoneReason, Origin, ProcRef, Thread, Update, Usage, lines};
use crate::events::{Argv, Body, Event, TaskInfo};

/// What a walk found alive: the identities of processes and threads.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    procs: FxHashSet<ProcRef>,
    threads: FxHashSet<(u32, u64)>,
}

impl Seen {
    pub fn has_process(&self, p: ProcRef) -> bool {
        self.procs.contains(&p)
    }

    pub fn has_thread(&self, tid: u32, start_ns: u64) -> bool {
        self.threads.contains(&(tid, start_ns))
    }

    /// Number of processes and threads seen.
    pub fn counts(&self) -> (usize, usize) {
        (self.procs.len(), self.threads.len())
    }
}

fn proc_ref(t: &TaskInfo) -> ProcRef {
    ProcRef { pid: t.pid, start_ns: t.proc_start_ns }
}

/// Takes the walk's argv unless it is worse than the one the model has: unreadable,
/// empty (kernel threads, zombies), or a cut-short copy of it (the iterator
/// copies less than an exec event does). A walk that could not read argv (a
/// kernel without sleepable iterators) still says so of a process the model knows
/// nothing of, rather than leaving it with an argv that looks empty.
fn merge_argv(cur: &mut Argv, walk: &Argv) {
    if walk.unreadable {
        if cur.raw.is_empty() && !cur.unreadable && walk.real_len > 0 {
            cur.unreadable = true;
            cur.real_len = walk.real_len;
        }
        return;
    }
    if walk.raw.is_empty() {
        return;
    }
    if walk.truncated && cur.raw.len() > walk.raw.len() && cur.raw.starts_with(&walk.raw) {
        return;
    }
    if cur.raw != walk.raw || cur.truncated != walk.truncated {
        *cur = walk.clone();
    }
}

impl Engine {
    /// Merges a task iterator walk into the model. `snapshot` holds the walk's
    /// events (in walk order), `live` the events read from the ring buffer while
    /// the walk ran (in ring buffer order). Both are applied together in time
    /// order (on equal times, live events first). Returns what the walk found
    /// alive, for [`Engine::reconcile`].
    ///
    /// A snapshot event creates its process and thread when unknown and refreshes
    /// them when known. It never brings back a process whose exit was applied (nor
    /// a thread whose exit was applied during the walk). A task that was already
    /// exiting is skipped (its exit event is on the way, or was applied), except
    /// for a zombie leader whose other threads live on: its process is kept, its
    /// leader thread marked gone.
    pub fn apply_snapshot(&mut self, snapshot: Vec<Event>, live: Vec<Event>, out: &mut Vec<Update>) -> Seen {
        self.walk_gen = self.walk_gen.wrapping_add(1);
        self.repairing = self.stats.walks > 0;
        // Processes with at least one task that is not exiting: their zombie leaders
        // do not end them.
        let with_live_threads: FxHashSet<ProcRef> = snapshot
            .iter()
            .filter(|e| matches!(e.body, Body::Snapshot { .. }) && !e.task.exiting)
            .map(|e| proc_ref(&e.task))
            .collect();
        let mut all: Vec<(bool, Event)> = Vec::with_capacity(snapshot.len() + live.len());
        all.extend(live.into_iter().map(|e| (false, e)));
        all.extend(snapshot.into_iter().map(|e| (true, e)));
        all.sort_by_key(|(walk, e)| (e.ts_ns, *walk));

        let mut seen = Seen::default();
        // Threads whose end was applied during the walk: a visit stamped later may
        // have read them before they ended.
        let mut ended: FxHashSet<(u32, u64)> = FxHashSet::default();
        for (walk, ev) in all {
            if walk && matches!(ev.body, Body::Snapshot { .. }) {
                if ended.contains(&(ev.task.tid, ev.task.start_ns)) {
                    self.stats.stale += 1;
                    continue;
                }
                if self.next_deadline <= ev.ts_ns {
                    self.release_due(ev.ts_ns, out);
                }
                let lt = with_live_threads.contains(&proc_ref(&ev.task));
                self.on_snapshot(ev, Some(&mut seen), lt, out);
                continue;
            }
            match &ev.body {
                Body::ThreadExit { .. } => {
                    ended.insert((ev.task.tid, ev.task.start_ns));
                }
                Body::Exec { .. } => {
                    let r = proc_ref(&ev.task);
                    if let Some(p) = self.procs.get(&r) {
                        ended.extend(
                            p.threads.iter().filter(|th| th.tid != ev.task.tid).map(|th| (th.tid, th.start_ns)),
                        );
                    }
                }
                _ => {}
            }
            self.apply(ev, out);
        }
        self.stats.walks += 1;
        self.repairing = false;
        seen
    }

    /// A process found by a walk.
    pub(super) fn insert_walked(&mut self, t: &TaskInfo, ts: u64, out: &mut Vec<Update>) -> ProcRef {
        let user = self.user_for(t);
        let p = self.new_process(t, Origin::Snapshot, user);
        let r = self.insert_process(p, false);
        if self.repairing {
            self.stats.repairs.added_processes += 1;
            out.push(Update::Added { proc: r, origin: Origin::Snapshot, ts_ns: ts });
        }
        r
    }

    /// A snapshot event outside a walk: then "its process has live threads" can
    /// only come from the model.
    pub(super) fn on_lone_snapshot(&mut self, ev: Event, out: &mut Vec<Update>) {
        let t = &ev.task;
        let live_threads = self
            .live_ref(t.pid)
            .filter(|r| r.start_ns == t.proc_start_ns)
            .and_then(|r| self.procs.get(&r))
            .is_some_and(|p| p.threads.iter().any(|th| th.tid != t.tid));
        self.on_snapshot(ev, None, live_threads, out);
    }

    /// Applies one snapshot event. `live_threads`: its process has a task that is
    /// not exiting. `seen` collects what the walk found alive.
    fn on_snapshot(&mut self, ev: Event, seen: Option<&mut Seen>, live_threads: bool, out: &mut Vec<Update>) {
        let t = ev.task;
        if t.exiting {
            if !matches!(ev.body, Body::Snapshot { zombie: true, .. }) {
                // In do_exit now: its exit event is on the way or applied. Not gone.
                if let Some(s) = seen {
                    s.threads.insert((t.tid, t.start_ns));
                    if t.is_leader() {
                        s.procs.insert(proc_ref(&t));
                    }
                }
            } else if t.is_leader() && live_threads {
                self.on_zombie_leader(ev, seen, out);
            }
            return;
        }
        const LINES: u8 = lines::THREADS | lines::TREE;
        let Some(r) = self.target::<LINES>(&t, ev.ts_ns, IfAbsent::Walked, out) else { return };
        let (walk, repairing) = (self.walk_gen, self.repairing);
        let added = self.change(r, ev, out, |p, ev, parts| {
            let mut added = false;
            if let Body::Snapshot { utime_ns, stime_ns, rss_pages, exe, argv, .. } = &ev.body {
                added = parts.add_thread(p, Thread::of(&t, t.comm));
                // exe: the exec'd file name when an exec was seen; else the walk's base name.
                if p.exe.is_none() && !exe.is_empty() {
                    p.exe = Some(parts.names.get(exe));
                }
                merge_argv(&mut p.argv, argv);
                let u = p.usage.get_or_insert_with(Box::default);
                if u.walk != walk {
                    **u = Usage { walk, ..Usage::default() };
                }
                u.utime_ns += utime_ns;
                u.stime_ns += stime_ns;
                u.rss_pages = u.rss_pages.max(*rss_pages);
                if !t.is_leader() && p.threads.len() == 1 && !p.threads.contains(p.pid) {
                    // Only a non-leader known so far: its comm stands in for the process's.
                    p.comm = t.comm;
                }
            }
            refresh_leader(p, &t, parts.users);
            added
        });
        if added == Some(true) && repairing {
            self.stats.repairs.added_threads += 1;
        }
        if let Some(s) = seen {
            s.procs.insert(r);
            s.threads.insert((t.tid, t.start_ns));
        }
    }

    /// A zombie leader (pthread_exit of main) whose threads live on: the process
    /// stays, its leader thread is gone.
    fn on_zombie_leader(&mut self, ev: Event, seen: Option<&mut Seen>, out: &mut Vec<Update>) {
        let t = &ev.task;
        const LINES: u8 = lines::THREADS | lines::TREE;
        let Some(r) = self.target::<LINES>(t, ev.ts_ns, IfAbsent::Walked, out) else { return };
        if let Some(p) = self.procs.get_mut(&r)
            && let Some(th) = p.threads.remove(t.tid)
        {
            self.threads -= 1;
            if self.repairing {
                self.stats.repairs.removed_threads += 1;
            }
            out.push(Update::ThreadGone { proc: r, tid: th.tid, start_ns: th.start_ns, ts_ns: ev.ts_ns });
        }
        self.refresh_leader(r, t);
        self.sync_parent(r, t, ev.ts_ns, out);
        if let Some(s) = seen {
            s.procs.insert(r);
        }
        self.count_applied(ev, out);
    }

    /// After a full walk that started at `walk_start_ts` (boot clock): every live
    /// process and thread that started before the walk and that the walk did not
    /// find has ended without its exit being seen. Each such process ends
    /// ([`Update::Gone`], kept exited for the linger), each such thread goes
    /// ([`Update::ThreadGone`]). `lost_at_walk_start` is the kernel's lost-record
    /// total read just before the walk started: losses up to it count as repaired.
    pub fn reconcile(&mut self, seen: &Seen, walk_start_ts: u64, lost_at_walk_start: u64, out: &mut Vec<Update>) {
        let mut live: Vec<ProcRef> = self.procs.live_values().map(|p| p.id()).collect();
        live.sort_unstable();
        for r in live {
            let Some(p) = self.procs.get(&r) else { continue };
            if !p.is_alive() || p.start_ns > walk_start_ts {
                continue;
            }
            if !seen.has_process(r) {
                self.stats.repairs.removed_processes += 1;
                self.end_unseen(r, GoneReason::NotInWalk, walk_start_ts, out);
                continue;
            }
            let gone: Vec<Thread> = p
                .threads
                .iter()
                .filter(|th| th.start_ns <= walk_start_ts && !seen.has_thread(th.tid, th.start_ns))
                .copied()
                .collect();
            if gone.is_empty() {
                continue;
            }
            let held = p.exit_held;
            if let Some(p) = self.procs.get_mut(&r) {
                for th in gone {
                    p.threads.remove(th.tid);
                    self.threads -= 1;
                    self.stats.repairs.removed_threads += 1;
                    out.push(Update::ThreadGone { proc: r, tid: th.tid, start_ns: th.start_ns, ts_ns: walk_start_ts });
                }
            }
            if held {
                self.try_release(r, out);
            }
        }
        self.lost_repaired = self.lost_repaired.max(lost_at_walk_start);
    }
}
