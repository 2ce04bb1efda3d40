//! The cgroup table: each cgroup id the kernel side reported, with its path and
//! the container that path names ([`super::paths::from_cgroup_path`]). The
//! tracker fills it from the walk and the live stream, and prunes it; every
//! attribution reads it.

use super::{ContainerRef, paths as container};
use crate::events::CgroupPath;

/// What is known of each cgroup: its path and the container it names.
#[derive(Default, Debug)]
pub struct Cgroups {
    by_id: std::collections::HashMap<u64, CgroupInfo>,
}

#[derive(Debug, Clone)]
pub struct CgroupInfo {
    pub path: String,
    pub container: Option<ContainerRef>,
    /// Learnt since the last [`Cgroups::prune`].
    fresh: bool,
    /// The kernel side was told to send this path again: dropped at the next
    /// prune if still unused.
    forgotten: bool,
}

impl Cgroups {
    pub fn add(&mut self, paths: Vec<CgroupPath>) {
        for c in paths {
            let container = container::from_cgroup_path(&c.path);
            self.by_id.insert(c.id, CgroupInfo { path: c.path, container, fresh: true, forgotten: false });
        }
    }

    /// Drops cgroups no process uses any more, in two steps so that no path is lost
    /// to a race with the kernel side: a cgroup unused at two prunes in a row is
    /// returned, for the kernel side to forget it (it then sends the path again if
    /// the cgroup shows up again); unused at the next prune as well, it is dropped.
    /// Cgroups learnt since the last prune are kept (their first event may not be
    /// applied yet).
    pub fn prune(&mut self, used: &std::collections::HashSet<u64>) -> Vec<u64> {
        let mut forget = Vec::new();
        self.by_id.retain(|id, c| {
            if used.contains(id) {
                c.forgotten = false;
                c.fresh = false;
                return true;
            }
            if c.fresh {
                c.fresh = false;
                return true;
            }
            if c.forgotten {
                return false;
            }
            c.forgotten = true;
            forget.push(*id);
            true
        });
        forget
    }

    pub fn get(&self, id: u64) -> Option<&CgroupInfo> {
        self.by_id.get(&id)
    }

    /// The container cgroup `id` names, if any.
    pub fn container(&self, id: u64) -> Option<&ContainerRef> {
        self.by_id.get(&id)?.container.as_ref()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Gives a cgroup move event the path of the cgroup it went to, when known.
    pub fn name_move(&self, ev: &mut crate::events::Event) {
        if let crate::events::Body::CgroupAttach { path, .. } = &mut ev.body {
            *path = self.get(ev.task.cgroup_id).map(|c| c.path.as_str().into());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(id: u64, p: &str) -> CgroupPath {
        CgroupPath { id, path: p.into(), truncated: false }
    }

    #[test]
    fn prune_forgets_then_drops_unused_cgroups() {
        let mut c = Cgroups::default();
        c.add(vec![path(1, "/"), path(2, "/docker/a"), path(3, "/b")]);
        let used = |ids: &[u64]| ids.iter().copied().collect::<std::collections::HashSet<u64>>();
        // Fresh ones are kept whatever their use.
        assert!(c.prune(&used(&[1])).is_empty());
        assert_eq!(c.len(), 3);
        // Unused at the next prune: the kernel side is told to forget them, they stay.
        assert_eq!(sorted(c.prune(&used(&[1]))), [2, 3]);
        assert_eq!(c.len(), 3);
        // 3 is used again (a process moved back in): kept. 2 is dropped.
        assert!(c.prune(&used(&[1, 3])).is_empty());
        assert!(c.get(1).is_some() && c.get(3).is_some() && c.get(2).is_none());
        // A path sent again (the kernel side forgot it) is fresh again.
        c.add(vec![path(2, "/docker/a")]);
        assert!(c.prune(&used(&[1, 3])).is_empty());
        assert_eq!(c.container(2).map(|r| r.runtime), None, "/docker/a is no container id");
        assert_eq!(c.prune(&used(&[1, 3])), [2]);
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }
}
