//! Tree queries the views and the daemon use: processes by pid or identity,
//! roots, children, parents and ancestry. Read-only: nothing here changes the
//! model.

use super::{Engine, Process};
use crate::events::ProcRef;

/// Longest parent chain walked by the ancestry queries (a guard against cycles
/// left by lost events).
const MAX_DEPTH: usize = 1 << 16;

impl Engine {
    /// The live process with `pid`, else the most recent exited one still kept.
    pub fn process(&self, pid: u32) -> Option<&Process> {
        if let Some(r) = self.live_ref(pid) {
            return self.procs.get(&r);
        }
        self.procs.values().filter(|p| p.pid == pid).max_by_key(|p| p.start_ns)
    }

    /// The process with this identity, alive or exited.
    pub fn get(&self, id: ProcRef) -> Option<&Process> {
        self.procs.get(&id)
    }

    /// Every process in the model, alive or exited, in no order.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.procs.values()
    }

    /// The host's pid namespace (that of the kernel threads), once a kernel thread
    /// is known: processes in another one are in a container or a sandbox.
    pub fn host_pidns(&self) -> Option<u32> {
        (self.host_pidns != 0).then_some(self.host_pidns)
    }

    /// Every live process, in no order.
    pub fn live_processes(&self) -> impl Iterator<Item = &Process> {
        self.procs.live_values()
    }

    /// Processes in the model (alive or exited).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The children of `process(pid)`.
    pub fn children(&self, pid: u32) -> impl Iterator<Item = &Process> {
        self.process(pid).into_iter().flat_map(move |p| self.children_of(p))
    }

    /// The children of `p` in the model, in no order: the live ones (from its
    /// index), then the exited ones still kept (found by a scan of the exited
    /// processes, only when it has any).
    pub fn children_of<'a>(&'a self, p: &'a Process) -> impl Iterator<Item = &'a Process> + 'a {
        let id = p.id();
        let exited = (p.exited_children > 0)
            .then(|| self.procs.exited.values().filter(move |c| c.parent() == Some(id)))
            .into_iter()
            .flatten();
        p.children.iter().filter_map(move |c| self.procs.get(c)).chain(exited)
    }

    /// The parent of `p`, when it is in the model.
    pub fn parent_of(&self, p: &Process) -> Option<&Process> {
        p.parent().filter(|&r| r != p.id()).and_then(|r| self.procs.get(&r))
    }

    /// Whether `process(pid)` descends from `process(ancestor_pid)` (strictly: a
    /// process is not its own descendant), by the current parent chain.
    pub fn is_descendant(&self, pid: u32, ancestor_pid: u32) -> bool {
        match (self.process(pid), self.process(ancestor_pid)) {
            (Some(p), Some(a)) => self.descends_from(p, a.id()),
            _ => false,
        }
    }

    /// Whether `p` descends from the process `ancestor` (by identity).
    pub fn descends_from(&self, p: &Process, ancestor: ProcRef) -> bool {
        let mut cur = p;
        for _ in 0..MAX_DEPTH {
            let Some(parent) = cur.parent() else { return false };
            if parent == ancestor {
                return true;
            }
            match self.procs.get(&parent) {
                Some(pp) if pp.id() != cur.id() => cur = pp,
                _ => return false,
            }
        }
        false
    }

    /// Whether `p` is a root: no parent, or a parent not in the model.
    pub fn is_root(&self, p: &Process) -> bool {
        self.parent_of(p).is_none()
    }

    /// The roots of the forest, by pid (then start time).
    pub fn roots(&self) -> Vec<&Process> {
        let mut v: Vec<&Process> = self.procs.values().filter(|p| self.is_root(p)).collect();
        v.sort_by_key(|p| (p.pid, p.start_ns));
        v
    }

    /// The identity of the live process with `pid`.
    pub(super) fn live_ref(&self, pid: u32) -> Option<ProcRef> {
        self.procs.live_ref(pid)
    }
}
