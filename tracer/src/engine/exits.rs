//! How processes end and leave: process exits (held while late thread exits of
//! the same process may still come), processes ended without their exit seen,
//! the reparenting of an exited process's children to its reaper, and the drop
//! of exited processes once their linger is over.

use super::apply::IfAbsent;
use super::{Engine, GoneReason, ProcState, Process, Update, lines};
use crate::events::{Argv, Body, Event, ExitStatus, ProcRef};

/// A process exit waiting for thread exits of the same process.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) proc: ProcRef,
    pub(super) ev: Event,
    pub(super) deadline: u64,
}

/// Most process boxes kept for reuse.
const POOL_MAX: usize = 256;

impl Engine {
    /// A process exit: applied at once when no other thread of the process is
    /// known, else held until their exits come or `exit_hold_ns` has passed. The
    /// exit of a process never seen is skipped: there is nothing to end.
    pub(super) fn on_process_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let task = ev.task;
        let t = &task;
        const LINES: u8 = lines::THREADS | lines::TREE | lines::CHILDREN;
        let Some(r) = self.target::<LINES>(t, ev.ts_ns, IfAbsent::Skip, out) else { return };
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
            let mut h = self.unhold(i);
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

    /// The live process `old` held a pid that a newer process now has: it ended.
    pub(super) fn close_reused(&mut self, old: ProcRef, ts: u64, out: &mut Vec<Update>) {
        self.stats.pid_reuses += 1;
        self.end_unseen(old, GoneReason::PidReused, ts, out);
    }

    /// The live process `r` ended without its exit being applied (`reason`): its
    /// held exit, when there is one, is applied now (that is how it ended); else
    /// it ends with an [`Update::Gone`], at `ts`.
    pub(super) fn end_unseen(&mut self, r: ProcRef, reason: GoneReason, ts: u64, out: &mut Vec<Update>) {
        if let Some(i) = self.held.iter().position(|h| h.proc == r) {
            let h = self.unhold(i);
            self.finish_exit(h.ev, out);
            return;
        }
        out.push(Update::Gone { proc: r, reason, ts_ns: ts });
        self.end_process(r, None, ts, None, out);
    }

    /// Applies a process exit: the event, then the reparenting of its children.
    pub(super) fn finish_exit(&mut self, ev: Event, out: &mut Vec<Update>) {
        let Body::ProcessExit { status, reaper } = ev.body else { return };
        let r = ProcRef { pid: ev.task.pid, start_ns: ev.task.proc_start_ns };
        let ts = ev.ts_ns;
        self.stats.applied.count(&ev.body);
        out.push(Update::Event(ev));
        self.end_process(r, Some(status), ts, reaper, out);
    }

    /// Takes the held exit at `i` out of the held ones.
    fn unhold(&mut self, i: usize) -> Held {
        let h = self.held.swap_remove(i);
        self.recompute_deadline();
        h
    }

    /// Keeps `next_deadline` (the earliest held exit's) so that `apply` need not
    /// look at the held exits for each event.
    fn recompute_deadline(&mut self) {
        self.next_deadline = self.held.iter().map(|h| h.deadline).min().unwrap_or(u64::MAX);
    }

    /// Applies the held exits whose deadline is `now` or earlier, in deadline
    /// order: the thread exits they waited for did not come (counted as forced).
    pub(super) fn release_due(&mut self, now: u64, out: &mut Vec<Update>) {
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
    pub(super) fn try_release(&mut self, r: ProcRef, out: &mut Vec<Update>) {
        let Some(i) = self.held.iter().position(|h| h.proc == r) else { return };
        let tid = self.held[i].ev.task.tid;
        if self.procs.get(&r).is_some_and(|p| p.threads.iter().all(|th| th.tid == tid)) {
            let h = self.unhold(i);
            self.finish_exit(h.ev, out);
        }
    }

    /// Marks a process ended, frees its threads and moves its live children to
    /// `reaper` (pushing a Reparent for each).
    pub(super) fn end_process(
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

    /// Drops exited processes whose linger is over and that have no children
    /// left, and, past `max_exited` exited processes, the oldest without children.
    pub(super) fn drop_lingered(&mut self, now_ns: u64, out: &mut Vec<Update>) {
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
}
