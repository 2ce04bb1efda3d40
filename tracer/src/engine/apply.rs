//! Applying one event to the model: the per-kind handlers and the skeleton they
//! share.
//!
//! Every event about a live process goes the same way: [`Engine::target`] finds
//! the process it is about (closing an older one that held the pid, making one
//! from the event when the model has none, skipping a stale event), then
//! [`Engine::change`] lets the handler change the process, follows the parent
//! the event shows when it differs from the model's, and sends the event on as an
//! [`Update::Event`]. A handler here only says what its kind changes. The fork of
//! an unknown process (the usual case) is built from its parent instead. Process
//! exits are applied in `exits.rs`, snapshot events in `walk.rs`.

use super::{Engine, Origin, Process, Thread, Update, UserTable, lines, names};
use crate::events::{Body, Comm, Event, ProcRef, TaskInfo};

/// Where the process an event is about stands in the model.
pub(super) enum Lookup {
    /// The live process with this identity.
    Live(ProcRef),
    /// Not in the model (any older process with the pid has been closed).
    Absent,
    /// Ended already, or older than the live process with that pid.
    Stale,
}

/// What [`Engine::target`] does with an event about a process the model does not
/// have.
#[derive(Clone, Copy)]
pub(super) enum IfAbsent {
    /// Make the process from the event (an [`Update::Added`], `Inferred`), with
    /// the event's thread, named so, when given.
    Infer(Option<Comm>),
    /// Make it from a walk's visit (`Snapshot`).
    Walked,
    /// Skip the event as stale (an exit of a process never seen).
    Skip,
}

/// What a change to one process may touch besides the process: the engine's
/// other parts, borrowed apart from the store the process is in.
pub(super) struct Parts<'a> {
    /// The engine's count of live threads.
    pub(super) threads: &'a mut usize,
    pub(super) users: &'a mut UserTable,
    pub(super) names: &'a mut names::Names,
    pub(super) argvs: &'a mut names::Argvs,
}

impl Parts<'_> {
    /// Adds `th` to `p` (or refreshes the thread with its tid), counting it when
    /// new: whether it was.
    pub(super) fn add_thread(&mut self, p: &mut Process, th: Thread) -> bool {
        let new = p.threads.insert(th).is_none();
        if new {
            *self.threads += 1;
        }
        new
    }
}

/// Refreshes what the leader's task says of the whole process.
pub(super) fn refresh_leader(p: &mut Process, t: &TaskInfo, users: &mut UserTable) {
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

/// Whether an event shows another parent than the model has (what
/// `sync_parent` checks again, without a second look-up of the process).
fn parent_differs(p: &Process, t: &TaskInfo) -> bool {
    p.ppid != t.ppid || (t.ppid != 0 && p.parent_start_ns != t.parent_start_ns)
}

impl Engine {
    /// Counts an applied event and sends it on.
    pub(super) fn count_applied(&mut self, ev: Event, out: &mut Vec<Update>) {
        self.stats.applied.count(&ev.body);
        out.push(Update::Event(ev));
    }

    /// Finds the process an event is about, closing an older one that held the
    /// pid. `new` skips the check for an exited process of that identity: a fork
    /// event always announces an identity that has not ended yet. `LINES`: the
    /// cache lines of the live process found to start fetching (see
    /// [`Process::prefetch`]), those the caller is about to read.
    pub(super) fn lookup_as<const LINES: u8>(
        &mut self,
        t: &TaskInfo,
        ts: u64,
        new: bool,
        out: &mut Vec<Update>,
    ) -> Lookup {
        let want = ProcRef { pid: t.pid, start_ns: t.proc_start_ns };
        match self.procs.live_start::<LINES>(t.pid, want.start_ns) {
            Some(s) if s == want.start_ns => return Lookup::Live(want),
            Some(s) if s > want.start_ns => return Lookup::Stale,
            Some(s) => self.close_reused(ProcRef { pid: t.pid, start_ns: s }, ts, out),
            None => {}
        }
        if !new && self.procs.exited.contains(&want) { Lookup::Stale } else { Lookup::Absent }
    }

    /// The live process an event about `t` applies to: the one the model has, or
    /// one made as `absent` says when the model has none. None (counted) for a
    /// stale event. `LINES`: as for [`Engine::lookup_as`].
    pub(super) fn target<const LINES: u8>(
        &mut self,
        t: &TaskInfo,
        ts_ns: u64,
        absent: IfAbsent,
        out: &mut Vec<Update>,
    ) -> Option<ProcRef> {
        match self.lookup_as::<LINES>(t, ts_ns, false, out) {
            Lookup::Live(r) => Some(r),
            Lookup::Absent => match absent {
                IfAbsent::Infer(comm) => Some(self.insert_inferred(t, ts_ns, comm, out)),
                IfAbsent::Walked => Some(self.insert_walked(t, ts_ns, out)),
                IfAbsent::Skip => {
                    self.stats.stale += 1;
                    None
                }
            },
            Lookup::Stale => {
                self.stats.stale += 1;
                None
            }
        }
    }

    /// Changes the live process `r` as the event says (`f`, given the process,
    /// the event and the engine's other parts), follows the parent the event
    /// shows when the model has another, then counts the event and sends it on.
    /// What `f` returned; None when `r` is not in the model.
    pub(super) fn change<R>(
        &mut self,
        r: ProcRef,
        ev: Event,
        out: &mut Vec<Update>,
        f: impl FnOnce(&mut Process, &Event, &mut Parts<'_>) -> R,
    ) -> Option<R> {
        let (mut res, mut resync) = (None, false);
        if let Some(p) = self.procs.get_mut(&r) {
            let mut parts = Parts {
                threads: &mut self.threads,
                users: &mut self.users,
                names: &mut self.names,
                argvs: &mut self.argvs,
            };
            res = Some(f(p, &ev, &mut parts));
            resync = parent_differs(p, &ev.task);
        }
        if resync {
            self.sync_parent(r, &ev.task, ev.ts_ns, out);
        }
        self.count_applied(ev, out);
        res
    }

    /// Refreshes what the leader's task says of the whole process `r`.
    pub(super) fn refresh_leader(&mut self, r: ProcRef, t: &TaskInfo) {
        if let Some(p) = self.procs.get_mut(&r) {
            refresh_leader(p, t, &mut self.users);
        }
    }

    /// A fork: the new process, made from its parent; or, when a walk visited
    /// the child before its fork event came, the one the walk made.
    pub(super) fn on_fork(&mut self, ev: Event, creator_tid: u32, out: &mut Vec<Update>) {
        match self.lookup_as::<{ lines::THREADS | lines::TREE }>(&ev.task, ev.ts_ns, true, out) {
            Lookup::Stale => self.stats.stale += 1,
            Lookup::Live(r) => {
                self.change(r, ev, out, |p, ev, parts| {
                    p.origin = Origin::Fork;
                    parts.add_thread(p, Thread::of(&ev.task, ev.task.comm));
                });
            }
            Lookup::Absent => self.insert_forked(ev, creator_tid, out),
        }
    }

    /// The process a fork made, not in the model yet: listed by its parent, with
    /// its parent's user and its creator's program.
    fn insert_forked(&mut self, ev: Event, creator_tid: u32, out: &mut Vec<Update>) {
        let t = &ev.task;
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

    /// A new thread.
    pub(super) fn on_clone(&mut self, ev: Event, out: &mut Vec<Update>) {
        let Some(r) = self.target::<{ lines::THREADS | lines::TREE }>(&ev.task, ev.ts_ns, IfAbsent::Infer(None), out)
        else {
            return;
        };
        self.change(r, ev, out, |p, ev, parts| {
            let t = &ev.task;
            parts.add_thread(p, Thread::of(t, t.comm));
            // A new thread carries the process's credentials as they are now: a
            // setuid() without exec (Apache's children) shows here first.
            if p.uid != t.uid || p.gid != t.gid {
                p.uid = t.uid;
                p.gid = t.gid;
                p.user = parts.users.name(t.uid);
            }
        });
    }

    /// A new program.
    pub(super) fn on_exec(&mut self, ev: Event, out: &mut Vec<Update>) {
        let Some(r) = self.target::<{ lines::ALL }>(&ev.task, ev.ts_ns, IfAbsent::Infer(None), out) else { return };
        self.change(r, ev, out, |p, ev, parts| {
            let Body::Exec { filename, argv, .. } = &ev.body else { return };
            let t = &ev.task;
            // Exec leaves one thread, the leader, whichever thread called it: the others
            // (and, after a non-leader exec, the old leader) were killed, and the caller
            // (`old_tid`) took the leader's tid and start time.
            *parts.threads -= p.threads.clear();
            p.threads.insert(Thread::of(t, t.comm));
            *parts.threads += 1;
            p.exe = Some(parts.names.get(filename));
            p.argv = parts.argvs.get(argv);
            refresh_leader(p, t, parts.users);
        });
    }

    /// A thread's end (not the process's: see `on_process_exit`). It may be the
    /// last one a held process exit waits for.
    pub(super) fn on_thread_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let Some(r) = self.target::<{ lines::THREADS | lines::TREE }>(&ev.task, ev.ts_ns, IfAbsent::Infer(None), out)
        else {
            return;
        };
        let held = self.change(r, ev, out, |p, ev, parts| {
            let t = &ev.task;
            if p.threads.get(t.tid).is_some_and(|th| th.start_ns <= t.start_ns) {
                p.threads.remove(t.tid);
                *parts.threads -= 1;
            }
            p.exit_held
        });
        if held == Some(true) {
            self.try_release(r, out);
        }
    }

    /// An event that only refreshes what the task says of itself: a rename
    /// (`new_comm`), or a cgroup move (`None`: the leader's task carries the
    /// process's new cgroup).
    pub(super) fn on_refresh(&mut self, ev: Event, new_comm: Option<Comm>, out: &mut Vec<Update>) {
        let Some(r) = self.target::<{ lines::ALL }>(&ev.task, ev.ts_ns, IfAbsent::Infer(new_comm), out) else {
            return;
        };
        self.change(r, ev, out, |p, ev, parts| {
            let t = &ev.task;
            refresh_leader(p, t, parts.users);
            if let Some(new_comm) = new_comm {
                if let Some(th) = p.threads.get_mut(t.tid) {
                    th.comm = new_comm;
                }
                if t.is_leader() {
                    p.comm = new_comm;
                }
            }
        });
    }
}
