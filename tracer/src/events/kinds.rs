//! Every kind of line the event stream carries, and counts kept by kind.
//!
//! The kinds are the records' kinds from the registry (`tracer_abi::KINDS`: fork,
//! clone, exec, ...), then the lines the tracker and the daemon make themselves
//! ([`DERIVED`]). Counters index by kind; nothing keeps a field per kind.

use std::collections::BTreeMap;

use serde::Serialize;
use tracer_abi as abi;

/// Lines made in userspace rather than by a kernel program.
pub const DERIVED: [&str; 6] = ["reparent", "repair", "lost", "missed", "container_start", "container_stop"];

/// How many kinds there are, records' and derived.
pub const COUNT: usize = abi::KINDS.len() + DERIVED.len();

/// A line kind by name: its index in [`Counts`], `None` for a name this build
/// does not know.
pub fn index(name: &str) -> Option<usize> {
    abi::KINDS.iter().map(|k| k.name).chain(DERIVED).position(|k| k == name)
}

/// The name of kind `i`.
pub fn name(i: usize) -> &'static str {
    match abi::KINDS.get(i) {
        Some(k) => k.name,
        None => DERIVED.get(i - abi::KINDS.len()).copied().unwrap_or("other"),
    }
}

/// A count per line kind. Serialized as `{name: count}`, kinds never counted left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts([u64; COUNT]);

impl Default for Counts {
    fn default() -> Counts {
        Counts([0; COUNT])
    }
}

impl Counts {
    /// Counts `n` records of `kind`.
    pub fn add(&mut self, kind: abi::Kind, n: u64) {
        self.0[kind.index()] += n;
    }

    /// Counts `n` lines of the kind named `name`; false if no kind is called that.
    pub fn add_named(&mut self, name: &str, n: u64) -> bool {
        match index(name) {
            Some(i) => {
                self.0[i] += n;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        index(name).map_or(0, |i| self.0[i])
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The kinds counted, by name, in name order.
    pub fn by_name(&self) -> BTreeMap<&'static str, u64> {
        self.0.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (name(i), *n)).collect()
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.by_name().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_index_and_name() {
        for i in 0..COUNT {
            assert_eq!(index(name(i)), Some(i), "{}", name(i));
        }
        for k in abi::Kind::ALL {
            assert_eq!(index(k.name()), Some(k.index()));
        }
        assert_eq!(index("nope"), None);
    }

    #[test]
    fn counts_by_name() {
        let mut c = Counts::default();
        c.add(abi::Kind::Fork, 2);
        c.add(abi::Kind::ProcessExit, 1);
        assert!(c.add_named("lost", 5));
        assert!(!c.add_named("bogus", 1));
        assert_eq!((c.get("fork"), c.get("exit"), c.get("lost"), c.total()), (2, 1, 5, 8));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"exit":1,"fork":2,"lost":5}"#);
    }
}
