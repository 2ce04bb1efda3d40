//! Where the engine keeps its processes: live ones by pid, exited ones by identity.
//!
//! Nearly every event is about a live process, so live processes sit in a small,
//! hot map keyed by pid, with their start time beside them so that checking an
//! identity does not touch the process itself. Exited processes (kept for the
//! linger: tens of thousands in a fork storm) sit in their own map, touched once
//! when they exit and once when they are dropped, so they do not slow down the
//! live lookups. Processes are boxed: moving one between the maps, or rehashing
//! a map, moves a pointer, not the whole process.

use super::hash::FxHashMap;
use super::model::Process;
use crate::event::ProcRef;

pub(super) struct Live {
    pub(super) start_ns: u64,
    pub(super) p: Box<Process>,
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) live: FxHashMap<u32, Live>,
    pub(super) exited: FxHashMap<ProcRef, Box<Process>>,
}

impl Store {
    pub(super) fn get(&self, r: &ProcRef) -> Option<&Process> {
        match self.live.get(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => Some(&l.p),
            _ => self.exited.get(r).map(|b| &**b),
        }
    }

    pub(super) fn get_mut(&mut self, r: &ProcRef) -> Option<&mut Process> {
        match self.live.get_mut(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => Some(&mut l.p),
            _ => self.exited.get_mut(r).map(|b| &mut **b),
        }
    }

    pub(super) fn contains_key(&self, r: &ProcRef) -> bool {
        match self.live.get(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => true,
            _ => self.exited.contains_key(r),
        }
    }

    /// The live process with this pid.
    pub(super) fn live_ref(&self, pid: u32) -> Option<ProcRef> {
        self.live.get(&pid).map(|l| ProcRef { pid, start_ns: l.start_ns })
    }

    /// The start time of the live process with this pid.
    pub(super) fn live_start(&self, pid: u32) -> Option<u64> {
        self.live.get(&pid).map(|l| l.start_ns)
    }

    /// Adds a process (live or exited). A live one must not share its pid with
    /// another live one (the caller ends that one first).
    pub(super) fn insert(&mut self, p: Box<Process>) {
        if p.is_alive() {
            let old = self.live.insert(p.pid, Live { start_ns: p.start_ns, p });
            debug_assert!(old.is_none(), "two live processes with one pid");
        } else {
            self.exited.insert(p.id(), p);
        }
    }

    pub(super) fn remove(&mut self, r: &ProcRef) -> Option<Box<Process>> {
        match self.live.get(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => self.live.remove(&r.pid).map(|l| l.p),
            _ => self.exited.remove(r),
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Process> {
        self.live.values().map(|l| &*l.p).chain(self.exited.values().map(|b| &**b))
    }

    pub(super) fn live_values(&self) -> impl Iterator<Item = &Process> {
        self.live.values().map(|l| &*l.p)
    }

    pub(super) fn len(&self) -> usize {
        self.live.len() + self.exited.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty() && self.exited.is_empty()
    }
}
