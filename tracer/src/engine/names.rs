//! Small caches of executable names and argument lists, so that the many
//! processes running one program (with one command line) share one copy instead
//! of each exec allocating its own (and, seconds later, freeing it, long out of
//! the caches by then).

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use super::hash::{FxBuild, FxHasher};
use crate::events::Argv;

/// Slots of each cache (a power of two).
const SLOTS: usize = 256;

/// Longest argument list shared (longer ones are kept as they come): bounds
/// what the cache holds on to, at most `SLOTS` times this.
const ARGV_MAX: usize = 512;

fn slot_of(bytes: &[u8]) -> usize {
    let mut h: FxHasher = FxBuild::default().build_hasher();
    h.write(bytes);
    h.finish() as usize & (SLOTS - 1)
}

/// A direct-mapped cache of executable names: a name goes to the slot of its
/// hash, replacing the name there. Bounded (at most `SLOTS` names kept), O(1),
/// no allocation on a hit.
pub(super) struct Names {
    slots: Box<[Option<Arc<str>>]>,
}

impl Default for Names {
    fn default() -> Self {
        Names { slots: vec![None; SLOTS].into_boxed_slice() }
    }
}

impl Names {
    /// The shared copy of `name`.
    pub(super) fn get(&mut self, name: &str) -> Arc<str> {
        let slot = &mut self.slots[slot_of(name.as_bytes())];
        match slot {
            Some(a) if **a == *name => a.clone(),
            _ => slot.insert(Arc::from(name)).clone(),
        }
    }
}

/// A direct-mapped cache of argument lists, like [`Names`]: an exec's argv that
/// equals a cached one takes the cached bytes (a reference count), and the
/// event keeps its own, unshared (freed with the event, while still warm).
pub(super) struct Argvs {
    slots: Box<[Option<Bytes>]>,
}

impl Default for Argvs {
    fn default() -> Self {
        Argvs { slots: vec![None; SLOTS].into_boxed_slice() }
    }
}

impl Argvs {
    /// A copy of `argv` sharing its bytes with an equal one seen before, when
    /// there is one.
    pub(super) fn get(&mut self, argv: &Argv) -> Argv {
        let raw = &argv.raw;
        if raw.is_empty() || raw.len() > ARGV_MAX {
            return argv.clone();
        }
        let slot = &mut self.slots[slot_of(raw)];
        let raw = match slot {
            Some(b) if b == raw => b.clone(),
            _ => slot.insert(raw.clone()).clone(),
        };
        Argv { raw, ..*argv }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_replaces() {
        let mut n = Names::default();
        let a = n.get("/usr/bin/ls");
        let b = n.get("/usr/bin/ls");
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..10_000 {
            assert_eq!(&*n.get(&format!("/bin/p{i}")), format!("/bin/p{i}"));
        }
        assert_eq!(&*n.get("/usr/bin/ls"), "/usr/bin/ls");
        assert!(n.slots.iter().flatten().count() <= SLOTS);
    }

    #[test]
    fn argv_shared_when_equal() {
        let mut c = Argvs::default();
        let mk = |s: &str, truncated| Argv {
            raw: Bytes::copy_from_slice(s.as_bytes()),
            real_len: s.len() as u32 + 7,
            truncated,
            unreadable: false,
        };
        let a = c.get(&mk("ls\0-l\0", false));
        let b = c.get(&mk("ls\0-l\0", true));
        assert_eq!(a.raw.as_ptr(), b.raw.as_ptr());
        // The flags are the event's own.
        assert_eq!((b.truncated, b.real_len), (true, 13));
        assert_eq!(b, mk("ls\0-l\0", true));
        for i in 0..5000 {
            let s = format!("p\0{i}\0");
            assert_eq!(c.get(&mk(&s, false)), mk(&s, false));
        }
        let long = "x".repeat(ARGV_MAX + 1);
        assert_eq!(c.get(&mk(&long, false)), mk(&long, false));
        assert_eq!(c.get(&Argv::default()), Argv::default());
    }
}
