//! [`Engine::check_invariants`]: what must hold of the model after every event,
//! checked by the tests (and handy when debugging) rather than on the hot path.

use super::{Engine, FxHashMap};
use crate::events::ProcRef;

impl Engine {
    /// Checks the model's invariants (tests and debugging): thread count, live
    /// index, children index both ways.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_indexes()?;
        self.check_tree()
    }

    /// The thread count and the live and exited indexes agree with the processes.
    fn check_indexes(&self) -> Result<(), String> {
        let threads: usize = self.procs.values().map(|p| p.threads.len()).sum();
        if threads != self.threads {
            return Err(format!("thread count {} but {} threads in processes", self.threads, threads));
        }
        for (&pid, l) in &self.procs.live {
            let p = &l.p;
            if !p.is_alive() || p.pid != pid || p.start_ns != l.start_ns {
                return Err(format!("{:?} is in the live map under pid {pid}", p.id()));
            }
        }
        for p in self.procs.exited.values() {
            if p.is_alive() || self.procs.exited.get(&p.id()).is_none_or(|q| !std::ptr::eq(p, q)) {
                return Err(format!("{:?} is among the exited but not found there", p.id()));
            }
        }
        Ok(())
    }

    /// Every parent lists (or counts) exactly its children, and children whose
    /// parent is not in the model wait in `pending` under it.
    fn check_tree(&self) -> Result<(), String> {
        let mut live_kids: FxHashMap<ProcRef, Vec<ProcRef>> = FxHashMap::default();
        let mut exited_kids: FxHashMap<ProcRef, u32> = FxHashMap::default();
        for p in self.procs.values() {
            if !p.is_alive() && !p.threads.is_empty() {
                return Err(format!("exited {:?} has threads", p.id()));
            }
            let Some(pr) = p.parent().filter(|&pr| pr != p.id()) else { continue };
            if !self.procs.contains_key(&pr) {
                if !self.pending.get(&pr).is_some_and(|v| v.contains(&p.id())) {
                    return Err(format!("{:?} is not pending under its parent {pr:?}", p.id()));
                }
            } else if p.is_alive() {
                live_kids.entry(pr).or_default().push(p.id());
            } else {
                *exited_kids.entry(pr).or_default() += 1;
            }
        }
        for p in self.procs.values() {
            let want = live_kids.get(&p.id()).map_or(&[][..], |v| &v[..]);
            if p.children.len() != want.len() || want.iter().any(|c| !p.children.contains(*c)) {
                return Err(format!("{:?} lists children {:?}, its live children are {want:?}", p.id(), p.children));
            }
            let n = exited_kids.get(&p.id()).copied().unwrap_or(0);
            if p.exited_children != n {
                return Err(format!("{:?} counts {} exited children, there are {n}", p.id(), p.exited_children));
            }
        }
        for (pr, kids) in &self.pending {
            if self.procs.contains_key(pr) {
                return Err(format!("pending children of {pr:?}, which is in the model"));
            }
            for c in kids {
                if self.procs.get(c).is_none_or(|cp| cp.parent() != Some(*pr)) {
                    return Err(format!("pending child {c:?} of {pr:?} is not its child"));
                }
            }
        }
        Ok(())
    }
}
