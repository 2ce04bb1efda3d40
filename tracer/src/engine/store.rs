//! Where the engine keeps its processes: live ones by pid, exited ones in the
//! order they ended.
//!
//! Nearly every event is about a live process, so live processes sit in a small,
//! hot map keyed by pid, with their start time beside them so that checking an
//! identity does not touch the process itself. Exited processes (kept for the
//! linger: tens of thousands in a fork storm) sit in a queue in the order they
//! ended, which is the order they leave in: dropping the oldest is a pop at the
//! front, and the ones to drop next are known in advance, so their memory (cold
//! by then, seconds after their exit) is fetched ahead of time. An index finds an
//! exited process by identity; it is cleaned in bulk rather than at each drop (a
//! drop does not touch it). Processes are boxed: moving one between the live map
//! and the queue, or rehashing a map, moves a pointer, not the whole process.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use super::hash::FxHashMap;
use super::model::{Process, lines};
use crate::events::ProcRef;

pub(super) struct Live {
    pub(super) start_ns: u64,
    pub(super) p: Box<Process>,
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) live: FxHashMap<u32, Live>,
    pub(super) exited: Exited,
}

impl Store {
    pub(super) fn get(&self, r: &ProcRef) -> Option<&Process> {
        match self.live.get(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => Some(&l.p),
            _ => self.exited.get(r),
        }
    }

    pub(super) fn get_mut(&mut self, r: &ProcRef) -> Option<&mut Process> {
        match self.live.get_mut(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => Some(&mut l.p),
            _ => self.exited.get_mut(r),
        }
    }

    pub(super) fn contains_key(&self, r: &ProcRef) -> bool {
        match self.live.get(&r.pid) {
            Some(l) if l.start_ns == r.start_ns => true,
            _ => self.exited.contains(r),
        }
    }

    /// The live process with this pid.
    pub(super) fn live_ref(&self, pid: u32) -> Option<ProcRef> {
        self.live.get(&pid).map(|l| ProcRef { pid, start_ns: l.start_ns })
    }

    /// The start time of the live process with this pid; when it is `start_ns`,
    /// starts fetching these cache lines of it (see [`Process::prefetch`]).
    #[inline]
    pub(super) fn live_start<const LINES: u8>(&self, pid: u32, start_ns: u64) -> Option<u64> {
        let l = self.live.get(&pid)?;
        if l.start_ns == start_ns {
            l.p.prefetch(LINES);
        }
        Some(l.start_ns)
    }

    /// Adds a process (live or exited: an exited one goes to the back of the
    /// queue). A live one must not share its pid with another live one (the
    /// caller ends that one first).
    pub(super) fn insert(&mut self, p: Box<Process>) {
        if p.is_alive() {
            let old = self.live.insert(p.pid, Live { start_ns: p.start_ns, p });
            debug_assert!(old.is_none(), "two live processes with one pid");
        } else {
            self.exited.push(p, 0);
        }
    }

    /// Removes the live process with this identity (one look in the live map).
    pub(super) fn remove_live(&mut self, r: &ProcRef) -> Option<Box<Process>> {
        match self.live.entry(r.pid) {
            Entry::Occupied(o) if o.get().start_ns == r.start_ns => Some(o.remove().p),
            _ => None,
        }
    }

    /// The live process with this identity.
    pub(super) fn live_mut(&mut self, r: &ProcRef) -> Option<&mut Process> {
        self.live.get_mut(&r.pid).filter(|l| l.start_ns == r.start_ns).map(|l| &mut *l.p)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Process> {
        self.live.values().map(|l| &*l.p).chain(self.exited.values())
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

/// No queue place (the end of a chain).
const NONE: u64 = u64::MAX;

/// How far ahead of the front the queue's processes are fetched into the cache.
const PREFETCH_AHEAD: usize = 8;

/// The exited processes.
///
/// Most wait in `queue`, in the order they were added (the order they ended),
/// each with a sequence number (`head` is that of the front). One taken out of
/// the middle leaves a hole. One whose linger is over but that must stay (it has
/// children still shown) is parked in `parked`.
///
/// `index` gives, for a pid, the place of the newest queued process with that
/// pid, and each place the place of the one before it with the same pid (pids
/// are reused): a small map (a pid and a number), looked up once when a process
/// is queued and never when one is dropped. Popping the front leaves entries
/// behind that point before `head` (stale: a chain ends there, as everything
/// older is gone); they are overwritten when their pid exits again, and swept
/// out now and then.
#[derive(Default)]
pub(super) struct Exited {
    queue: VecDeque<Queued>,
    head: u64,
    index: FxHashMap<u32, u64>,
    parked: FxHashMap<ProcRef, Box<Process>>,
    len: usize,
}

/// A place in the queue.
struct Queued {
    /// None: a hole (taken out of the middle); the chain still goes through it.
    p: Option<Box<Process>>,
    start_ns: u64,
    /// The place of the previous process with the same pid (NONE: none).
    prev: u64,
    /// The address of its parent's box when it exited (0: none): only ever
    /// prefetched, never read through (the parent may be gone by then).
    parent: usize,
}

impl Queued {
    /// Hints the CPU to fetch the cache lines that dropping this process reads:
    /// its tree, children and program lines, and its parent's tree and children
    /// lines (see the layout of [`Process`]).
    #[inline]
    fn prefetch(&self) {
        let Some(p) = &self.p else { return };
        p.prefetch(lines::TREE | lines::CHILDREN | lines::PROGRAM);
        #[cfg(target_arch = "x86_64")]
        if self.parent != 0 {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let at = std::ptr::without_provenance::<i8>(self.parent);
            for line in [1, 2] {
                // SAFETY: a prefetch is a hint: it never faults, and reads nothing
                // into the program, whatever the address (the parent's box may
                // have been freed since).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line * 64)) };
            }
        }
    }
}

impl Exited {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The queue place `seq`, while it is in the queue.
    fn place(&self, seq: u64) -> Option<&Queued> {
        self.queue.get(usize::try_from(seq.checked_sub(self.head)?).ok()?)
    }

    /// Where `r` is in the queue, when it is there.
    fn find(&self, r: &ProcRef) -> Option<u64> {
        let mut seq = *self.index.get(&r.pid)?;
        while let Some(q) = self.place(seq) {
            if q.start_ns == r.start_ns && q.p.is_some() {
                return Some(seq);
            }
            seq = q.prev;
        }
        None
    }

    pub(super) fn get(&self, r: &ProcRef) -> Option<&Process> {
        match self.find(r) {
            Some(seq) => self.place(seq)?.p.as_deref(),
            None if self.parked.is_empty() => None,
            None => self.parked.get(r).map(|b| &**b),
        }
    }

    pub(super) fn get_mut(&mut self, r: &ProcRef) -> Option<&mut Process> {
        match self.find(r) {
            Some(seq) => self.queue[(seq - self.head) as usize].p.as_deref_mut(),
            None if self.parked.is_empty() => None,
            None => self.parked.get_mut(r).map(|b| &mut **b),
        }
    }

    pub(super) fn contains(&self, r: &ProcRef) -> bool {
        self.find(r).is_some() || (!self.parked.is_empty() && self.parked.contains_key(r))
    }

    /// Adds `p` at the back of the queue. `parent`: the address of its parent's
    /// box, when it has one in the model (0: none), for fetching it ahead of the
    /// drop.
    pub(super) fn push(&mut self, p: Box<Process>, parent: usize) {
        let seq = self.head + self.queue.len() as u64;
        let prev = self.index.insert(p.pid, seq).unwrap_or(NONE);
        self.queue.push_back(Queued { start_ns: p.start_ns, p: Some(p), prev, parent });
        self.len += 1;
    }

    pub(super) fn remove(&mut self, r: &ProcRef) -> Option<Box<Process>> {
        let p = match self.find(r) {
            Some(seq) => {
                let i = (seq - self.head) as usize;
                let p = self.queue[i].p.take();
                self.trim_front();
                p
            }
            None => self.parked.remove(r),
        };
        self.len -= usize::from(p.is_some());
        p
    }

    /// Pops the holes at the front.
    fn trim_front(&mut self) {
        while self.queue.front().is_some_and(|q| q.p.is_none()) {
            self.queue.pop_front();
            self.head += 1;
        }
    }

    /// The oldest process in the queue (the front is never a hole).
    pub(super) fn front(&self) -> Option<&Process> {
        self.queue.front().and_then(|q| q.p.as_deref())
    }

    /// Places in the queue (holes included).
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Fetches into the cache the process that will be at the front after
    /// `PREFETCH_AHEAD` pops.
    pub(super) fn prefetch_ahead(&self) {
        if let Some(q) = self.queue.get(PREFETCH_AHEAD) {
            q.prefetch();
        }
    }

    /// Fetches into the cache the first processes of the queue.
    pub(super) fn prefetch_front(&self) {
        for q in self.queue.iter().take(PREFETCH_AHEAD) {
            q.prefetch();
        }
    }

    /// Takes the oldest process out of the queue (its index entry stays, stale).
    fn take_front(&mut self) -> Option<Queued> {
        self.trim_front();
        let q = self.queue.pop_front()?;
        self.head += 1;
        self.trim_front();
        Some(q)
    }

    /// Takes the oldest process out.
    pub(super) fn pop_front(&mut self) -> Option<Box<Process>> {
        let p = self.take_front()?.p?;
        self.len -= 1;
        Some(p)
    }

    /// Moves the oldest process out of the queue, to stay until it is removed.
    pub(super) fn park_front(&mut self) {
        if let Some(p) = self.take_front().and_then(|q| q.p) {
            self.parked.insert(p.id(), p);
        }
    }

    /// Moves the oldest process to the back of the queue.
    pub(super) fn requeue_front(&mut self) {
        let Some(Queued { p: Some(p), parent, .. }) = self.take_front() else { return };
        self.len -= 1;
        self.push(p, parent);
    }

    /// Drops the stale index entries.
    fn sweep(&mut self) {
        let mut index = std::mem::take(&mut self.index);
        index.retain(|_, seq| self.place(*seq).is_some());
        self.index = index;
    }

    /// Gives back room: stale entries (once they are most of the index), and the
    /// room of mostly empty tables.
    pub(super) fn shrink(&mut self) {
        if self.index.len() > 2 * self.len + 64 {
            self.sweep();
        }
        if self.index.capacity() > 64 && self.index.len() * 4 < self.index.capacity() {
            self.index.shrink_to(self.index.len() * 2);
        }
        if self.parked.capacity() > 64 && self.parked.len() * 4 < self.parked.capacity() {
            self.parked.shrink_to(self.parked.len() * 2);
        }
        if self.queue.capacity() > 64 && self.queue.len() * 4 < self.queue.capacity() {
            self.queue.shrink_to(self.queue.len() * 2);
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Process> {
        self.queue.iter().filter_map(|q| q.p.as_deref()).chain(self.parked.values().map(|b| &**b))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use super::*;
    use crate::engine::ProcState;

    fn exited(pid: u32, start_ns: u64) -> Box<Process> {
        Box::new(Process { pid, start_ns, state: ProcState::Exited { status: None, at_ns: 0 }, ..Process::default() })
    }

    /// The queue against a plain model: a list in queue order plus a parked set.
    #[test]
    fn exited_matches_a_model() {
        let mut e = Exited::default();
        let mut queue: VecDeque<ProcRef> = VecDeque::new();
        let mut parked: BTreeMap<ProcRef, ()> = BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut start = 0u64;
        let mut most = 0;
        for step in 0..30_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few pids, so that they are reused while older ones with them are kept.
            let pid = (x % 37) as u32 + 1;
            match x % 11 {
                0..4 => {
                    start += 1;
                    e.push(exited(pid, start), 0);
                    queue.push_back(ProcRef { pid, start_ns: start });
                }
                4 => {
                    let p = e.pop_front().map(|p| p.id());
                    assert_eq!(p, queue.pop_front(), "pop at {step}");
                }
                5 => {
                    if let Some(r) = queue.pop_front() {
                        assert_eq!(e.front().map(|p| p.id()), Some(r));
                        e.park_front();
                        parked.insert(r, ());
                    }
                }
                6 => {
                    if let Some(r) = queue.pop_front() {
                        assert_eq!(e.front().map(|p| p.id()), Some(r));
                        e.requeue_front();
                        queue.push_back(r);
                    }
                }
                7 | 8 => {
                    // Remove one from anywhere (or one not there).
                    let all: Vec<ProcRef> = queue.iter().chain(parked.keys()).copied().collect();
                    let r = if all.is_empty() || x.is_multiple_of(5) {
                        ProcRef { pid, start_ns: x % (start + 1) + 1_000_000 }
                    } else {
                        all[(x / 11) as usize % all.len()]
                    };
                    let want = if let Some(i) = queue.iter().position(|q| *q == r) {
                        queue.remove(i)
                    } else {
                        parked.remove(&r).map(|_| r)
                    };
                    assert_eq!(e.remove(&r).map(|p| p.id()), want, "remove {r:?} at {step}");
                }
                9 => e.shrink(),
                _ => {}
            }
            assert_eq!(e.len(), queue.len() + parked.len());
            assert_eq!(e.front().map(|p| p.id()), queue.front().copied());
            most = most.max(queue.len());
            if step % 64 == 0 {
                for r in queue.iter().chain(parked.keys()) {
                    assert_eq!(e.get(r).map(|p| p.id()), Some(*r), "get {r:?} at {step}");
                    assert!(e.contains(r));
                }
                let gone = ProcRef { pid, start_ns: start + 1 };
                assert!(e.get(&gone).is_none() && !e.contains(&gone));
                let mut got: Vec<ProcRef> = e.values().map(|p| p.id()).collect();
                let mut want: Vec<ProcRef> = queue.iter().chain(parked.keys()).copied().collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want);
            }
        }
        // Long enough for pids to be reused many times over while kept.
        assert!(most > 300, "{most}");
    }
}
