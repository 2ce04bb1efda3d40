//! Processes entering the model and their place in the tree: new processes
//! (from a recycled box when there is one), the parent/child links both ways,
//! children waiting for a parent not in the model yet, and parent changes.

use std::sync::Arc;

use super::{Engine, Origin, ProcState, Process, Thread, Update};
use crate::events::{Argv, Comm, ProcRef, TaskInfo};

impl Engine {
    /// The user name for a new process: its parent's when the uid is the same.
    pub(super) fn user_for(&mut self, t: &TaskInfo) -> Option<Arc<str>> {
        match self.procs.get(&ProcRef { pid: t.ppid, start_ns: t.parent_start_ns }) {
            Some(pp) if t.ppid != 0 && pp.uid == t.uid => pp.user.clone(),
            _ => self.users.name(t.uid),
        }
    }

    /// A new process from what an event says of one of its tasks, without threads.
    pub(super) fn new_process(&mut self, t: &TaskInfo, origin: Origin, user: Option<Arc<str>>) -> Box<Process> {
        self.new_process_with(t, origin, user, None, Argv::default())
    }

    /// [`Engine::new_process`] running `exe` with `argv`. A recycled box (a new
    /// one when there is none) is filled in field by field: its vectors keep their
    /// room, and what it shared was let go of already.
    pub(super) fn new_process_with(
        &mut self,
        t: &TaskInfo,
        origin: Origin,
        user: Option<Arc<str>>,
        exe: Option<Arc<str>>,
        argv: Argv,
    ) -> Box<Process> {
        let (ppid, parent_start_ns) = if t.ppid == 0 { (0, 0) } else { (t.ppid, t.parent_start_ns) };
        if t.kthread && self.host_pidns == 0 {
            self.host_pidns = t.pidns;
        }
        let mut b = self.pool.pop().unwrap_or_default();
        let p = &mut *b;
        debug_assert!(p.threads.is_empty() && p.children.is_empty() && p.exe.is_none() && p.user.is_none());
        p.pid = t.pid;
        p.start_ns = t.proc_start_ns;
        p.ppid = ppid;
        p.parent_start_ns = parent_start_ns;
        p.spawned_by = ProcRef { pid: ppid, start_ns: parent_start_ns };
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
    pub(super) fn insert_process(&mut self, mut p: Box<Process>, linked: bool) -> ProcRef {
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
    pub(super) fn insert_inferred(
        &mut self,
        t: &TaskInfo,
        ts: u64,
        with_thread: Option<Comm>,
        out: &mut Vec<Update>,
    ) -> ProcRef {
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
    pub(super) fn unlink_child(&mut self, child: ProcRef, parent: ProcRef, alive: bool) {
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
    pub(super) fn set_parent(&mut self, child: ProcRef, new: ProcRef, ts: u64, out: &mut Vec<Update>) {
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
    pub(super) fn sync_parent(&mut self, r: ProcRef, t: &TaskInfo, ts: u64, out: &mut Vec<Update>) {
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
}
