//! The engine's model types: processes, threads, and the small keyed vectors that
//! hold a process's threads and children.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::hash::FxHashMap;
use crate::events::{Argv, Comm, ExitStatus, ProcRef, TaskInfo};

/// Something stored in a [`KeyedVec`], found by its key.
pub trait Keyed {
    type Key: Copy + Eq + Hash + fmt::Debug;
    fn key(&self) -> Self::Key;
}

/// Above this many entries a [`KeyedVec`] keeps a hash index of its keys.
const INDEX_ABOVE: usize = 16;
/// Below this many entries the index is dropped again.
const UNINDEX_BELOW: usize = 4;
/// Index value of the inline item.
const HEAD: u32 = u32::MAX;

/// A set of keyed items: the first one inline (most processes have one thread
/// and at most one live child: no allocation, no extra cache miss), the others in
/// a vector, with a key -> position index once large, so that a process with
/// 10,000 threads or children still finds one in O(1). Order is not kept.
#[repr(C)]
pub struct KeyedVec<T: Keyed> {
    head: Option<T>,
    rest: Vec<T>,
    index: Option<Box<FxHashMap<T::Key, u32>>>,
}

impl<T: Keyed> Default for KeyedVec<T> {
    fn default() -> Self {
        KeyedVec { head: None, rest: Vec::new(), index: None }
    }
}

impl<T: Keyed + Clone> Clone for KeyedVec<T> {
    fn clone(&self) -> Self {
        KeyedVec { head: self.head.clone(), rest: self.rest.clone(), index: self.index.clone() }
    }
}

impl<T: Keyed + fmt::Debug> fmt::Debug for KeyedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where an item is.
#[derive(Clone, Copy)]
enum Pos {
    Head,
    Rest(usize),
}

impl<T: Keyed> KeyedVec<T> {
    pub fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub fn iter(&self) -> std::iter::Chain<std::option::Iter<'_, T>, std::slice::Iter<'_, T>> {
        self.head.iter().chain(self.rest.iter())
    }

    fn position(&self, k: T::Key) -> Option<Pos> {
        if let Some(h) = &self.head
            && h.key() == k
        {
            return Some(Pos::Head);
        }
        if self.rest.is_empty() {
            // Then there is no index either: it is not read (another cache line).
            return None;
        }
        match &self.index {
            Some(ix) => ix.get(&k).filter(|&&i| i != HEAD).map(|&i| Pos::Rest(i as usize)),
            None => self.rest.iter().position(|t| t.key() == k).map(Pos::Rest),
        }
    }

    fn at_mut(&mut self, pos: Pos) -> Option<&mut T> {
        match pos {
            Pos::Head => self.head.as_mut(),
            Pos::Rest(i) => self.rest.get_mut(i),
        }
    }

    pub fn get(&self, k: T::Key) -> Option<&T> {
        match self.position(k)? {
            Pos::Head => self.head.as_ref(),
            Pos::Rest(i) => self.rest.get(i),
        }
    }

    pub fn contains(&self, k: T::Key) -> bool {
        self.position(k).is_some()
    }

    pub(crate) fn get_mut(&mut self, k: T::Key) -> Option<&mut T> {
        let pos = self.position(k)?;
        self.at_mut(pos)
    }

    /// Adds `t`, replacing (and returning) an item with the same key.
    pub(crate) fn insert(&mut self, t: T) -> Option<T> {
        if let Some(pos) = self.position(t.key())
            && let Some(slot) = self.at_mut(pos)
        {
            return Some(std::mem::replace(slot, t));
        }
        self.push_new(t);
        None
    }

    /// Adds `t`, whose key the caller knows is not there yet.
    pub(crate) fn push_new(&mut self, t: T) {
        debug_assert!(!self.contains(t.key()), "{:?} is already there", t.key());
        if self.head.is_none() {
            if let Some(ix) = &mut self.index {
                ix.insert(t.key(), HEAD);
            }
            self.head = Some(t);
            return;
        }
        if self.rest.capacity() == 0 {
            self.rest.reserve_exact(2);
        }
        let k = t.key();
        self.rest.push(t);
        let n = self.rest.len();
        if let Some(ix) = &mut self.index {
            ix.insert(k, (n - 1) as u32);
        } else if n + 1 > INDEX_ABOVE {
            let mut ix: FxHashMap<T::Key, u32> =
                self.rest.iter().enumerate().map(|(i, t)| (t.key(), i as u32)).collect();
            if let Some(h) = &self.head {
                ix.insert(h.key(), HEAD);
            }
            self.index = Some(Box::new(ix));
        }
    }

    pub(crate) fn remove(&mut self, k: T::Key) -> Option<T> {
        // With an index: one look to find it (and unlist it), one to move the last.
        let pos = match &mut self.index {
            Some(ix) => match ix.remove(&k)? {
                HEAD => Pos::Head,
                i => Pos::Rest(i as usize),
            },
            None => self.position(k)?,
        };
        let t = match pos {
            Pos::Head => {
                // The last of the rest takes the inline place.
                let moved = self.rest.pop();
                if let (Some(ix), Some(m)) = (&mut self.index, &moved)
                    && let Some(v) = ix.get_mut(&m.key())
                {
                    *v = HEAD;
                }
                std::mem::replace(&mut self.head, moved)?
            }
            Pos::Rest(i) => {
                let t = self.rest.swap_remove(i);
                if let (Some(ix), Some(m)) = (&mut self.index, self.rest.get(i))
                    && let Some(v) = ix.get_mut(&m.key())
                {
                    *v = i as u32;
                }
                t
            }
        };
        if self.len() < UNINDEX_BELOW {
            self.index = None;
        }
        if self.rest.capacity() >= 64 && self.rest.len() * 4 < self.rest.capacity() {
            self.rest.shrink_to(self.rest.len() * 2);
        }
        Some(t)
    }

    /// Removes everything; keeps a small allocation for reuse. Returns how many
    /// items there were.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.len();
        self.head = None;
        self.index = None;
        if self.rest.capacity() > 4 {
            self.rest = Vec::new();
        } else {
            self.rest.clear();
        }
        n
    }

    /// Heap bytes this set holds (for memory accounting in tests).
    pub fn heap_bytes(&self) -> usize {
        self.rest.capacity() * size_of::<T>()
            + self.index.as_ref().map_or(0, |ix| ix.capacity() * (size_of::<(T::Key, u32)>() + 1))
    }
}

impl<'a, T: Keyed> IntoIterator for &'a KeyedVec<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Chain<std::option::Iter<'a, T>, std::slice::Iter<'a, T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Keyed for ProcRef {
    type Key = ProcRef;
    fn key(&self) -> ProcRef {
        *self
    }
}

/// One live thread of a process. Its identity is (tid, start_ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thread {
    pub tid: u32,
    pub comm: Comm,
    /// The tid inside the thread's own pid namespace (in what was padding).
    pub ns_tid: u32,
    /// Boot-clock start time, ns.
    pub start_ns: u64,
}

const _: () = assert!(size_of::<Thread>() == 32);

impl Thread {
    /// The thread an event's task is, named `comm`.
    pub fn of(t: &TaskInfo, comm: Comm) -> Thread {
        Thread { tid: t.tid, comm, ns_tid: t.ns_tid, start_ns: t.start_ns }
    }
}

impl Keyed for Thread {
    type Key = u32;
    fn key(&self) -> u32 {
        self.tid
    }
}

/// Whether a process runs or has ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcState {
    #[default]
    Alive,
    /// Ended at `at_ns` (boot clock). `status` is None when the end was inferred
    /// (pid reused, or gone in a repair walk) rather than seen.
    Exited { status: Option<ExitStatus>, at_ns: u64 },
}

/// How the engine learnt of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Its fork event.
    #[default]
    Fork,
    /// The task iterator (start-up or repair walk).
    Snapshot,
    /// Another event about it (exec, clone, ...) arrived without its fork having been
    /// seen: events were lost, or it predates tracing.
    Inferred,
}

/// CPU and memory use, from the last task iterator walk that saw the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User and system CPU time summed over the threads the walk saw, ns.
    pub utime_ns: u64,
    pub stime_ns: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// Walk generation these sums belong to.
    pub(crate) walk: u32,
}

/// A process. Its identity is (pid, start_ns): see [`Process::id`].
///
/// The fields are laid out by hand in five cache lines, grouped by what reads them
/// (most events touch a process that is not in the cache any more): the threads
/// (line 0); the tree and state checks every event makes (line 1); the children
/// and the rest of the identity (line 2); the program (line 3); the rest (line
/// 4). An exit reads lines 0-2, a drop lines 1-3, a thread event lines 0-1.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Process {
    // Line 0.
    pub threads: KeyedVec<Thread>,
    // Line 1 (after the threads' index).
    /// Current parent's pid (0: none), and that parent's start time.
    pub ppid: u32,
    /// How many exited processes whose parent this is are still kept in the model
    /// (they are not in `children`; [`crate::engine::Engine::children_of`] finds them).
    pub exited_children: u32,
    pub parent_start_ns: u64,
    pub state: ProcState,
    pub pid: u32,
    /// A process exit is being held for late thread exits.
    pub(crate) exit_held: bool,
    pub kthread: bool,
    pub origin: Origin,
    /// Name of `uid` from the passwd file, when it has one.
    pub user: Option<Arc<str>>,
    // Line 2.
    /// The live processes whose parent this is.
    pub children: KeyedVec<ProcRef>,
    /// Boot-clock start time of the process (of its leader), ns.
    pub start_ns: u64,
    // Line 3.
    /// The executable: the file name given to exec, or its base name when only the
    /// task iterator saw it. None until known.
    pub exe: Option<Arc<str>>,
    pub argv: Argv,
    pub pidns: u32,
    /// The pid inside the process's own pid namespace.
    pub ns_pid: u32,
    // Line 4.
    /// The parent it had when the engine first learnt of it (its creator when seen
    /// forking); kept when it is reparented. `pid == 0` when it had none.
    pub spawned_by: ProcRef,
    /// The leader thread's comm.
    pub comm: Comm,
    pub cgroup_id: u64,
    pub usage: Option<Box<Usage>>,
    pub uid: u32,
    pub gid: u32,
    pub mntns: u32,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            pid: 0,
            start_ns: 0,
            ppid: 0,
            parent_start_ns: 0,
            spawned_by: ProcRef { pid: 0, start_ns: 0 },
            uid: 0,
            gid: 0,
            user: None,
            comm: Comm::default(),
            exe: None,
            argv: Argv::default(),
            threads: KeyedVec::default(),
            children: KeyedVec::default(),
            exited_children: 0,
            cgroup_id: 0,
            pidns: 0,
            mntns: 0,
            ns_pid: 0,
            kthread: false,
            origin: Origin::Fork,
            state: ProcState::Alive,
            usage: None,
            exit_held: false,
        }
    }
}

/// The cache lines of a [`Process`] (see its layout), for [`Process::prefetch`].
pub(crate) mod lines {
    pub const THREADS: u8 = 1 << 0;
    pub const TREE: u8 = 1 << 1;
    pub const CHILDREN: u8 = 1 << 2;
    pub const PROGRAM: u8 = 1 << 3;
    pub const REST: u8 = 1 << 4;
    pub const ALL: u8 = THREADS | TREE | CHILDREN | PROGRAM | REST;
}

impl Process {
    /// Hints the CPU to fetch these cache lines of the process (a set of
    /// [`lines`]): a process an event is about has often left the caches, and
    /// fetching the lines it will need at once overlaps their misses.
    #[inline(always)]
    pub(crate) fn prefetch(&self, which: u8) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let base = (self as *const Process).cast::<i8>();
            for line in 0..5 {
                if which & (1 << line) != 0 {
                    // SAFETY: a prefetch is a hint: it reads nothing into the program
                    // and never faults; the address is inside this process anyway.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line * 64)) };
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = which;
    }

    /// Its identity.
    pub fn id(&self) -> ProcRef {
        ProcRef { pid: self.pid, start_ns: self.start_ns }
    }

    /// Its current parent's identity, when it has a parent.
    pub fn parent(&self) -> Option<ProcRef> {
        (self.ppid != 0).then_some(ProcRef { pid: self.ppid, start_ns: self.parent_start_ns })
    }

    /// Whether any process in the model (alive or exited) has this one as parent.
    pub fn has_children(&self) -> bool {
        !self.children.is_empty() || self.exited_children > 0
    }

    pub fn is_alive(&self) -> bool {
        self.state == ProcState::Alive
    }

    /// Number of live threads known.
    pub fn nlwp(&self) -> usize {
        self.threads.len()
    }

    /// When it ended, if it did.
    pub fn exited_at(&self) -> Option<u64> {
        match self.state {
            ProcState::Exited { at_ns, .. } => Some(at_ns),
            ProcState::Alive => None,
        }
    }

    /// How it ended, if it did and that was seen.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self.state {
            ProcState::Exited { status, .. } => status,
            ProcState::Alive => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::mem::offset_of;

    use super::*;

    /// The cache lines the fields are in (see [`Process`] and [`lines`]).
    #[test]
    fn process_layout() {
        let line = |off: usize| 1u8 << (off / 64);
        assert_eq!((size_of::<Process>(), align_of::<Process>()), (320, 64));
        assert_eq!(line(offset_of!(Process, threads)), lines::THREADS);
        assert_eq!(line(offset_of!(Process, threads) + size_of::<Option<Thread>>() + 23), lines::THREADS);
        for off in [
            offset_of!(Process, ppid),
            offset_of!(Process, parent_start_ns),
            offset_of!(Process, state),
            offset_of!(Process, exited_children),
            offset_of!(Process, pid),
            offset_of!(Process, exit_held),
            offset_of!(Process, user),
        ] {
            assert_eq!(line(off), lines::TREE);
        }
        for off in [offset_of!(Process, children), offset_of!(Process, start_ns)] {
            assert_eq!(line(off), lines::CHILDREN);
        }
        for off in [offset_of!(Process, exe), offset_of!(Process, argv)] {
            assert_eq!(line(off), lines::PROGRAM);
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Item(u32, u64);

    impl Keyed for Item {
        type Key = u32;
        fn key(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn keyed_vec_matches_a_map() {
        let mut v: KeyedVec<Item> = KeyedVec::default();
        let mut want: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Sizes sweep up and down through the inline, small and indexed ranges.
            let phase = (step / 5000) % 4;
            let range = [3u64, 20, 200, 40][phase as usize];
            let k = (x % range) as u32;
            if x.is_multiple_of(3) {
                assert_eq!(v.remove(k).map(|i| i.1), want.remove(&k), "remove {k} at {step}");
            } else {
                assert_eq!(v.insert(Item(k, step)).map(|i| i.1), want.insert(k, step), "insert {k} at {step}");
            }
            assert_eq!(v.len(), want.len());
            assert_eq!(v.is_empty(), want.is_empty());
            if step % 97 == 0 {
                for (&k, &val) in &want {
                    assert_eq!(v.get(k), Some(&Item(k, val)));
                }
                assert_eq!(v.iter().count(), want.len());
                assert!(v.iter().all(|i| want.get(&i.0) == Some(&i.1)));
            }
        }
        let n = v.clear();
        assert_eq!((n, v.len(), v.get(1)), (want.len(), 0, None));
    }
}
