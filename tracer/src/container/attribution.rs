//! Attribution: which container each process is in, from kernel data alone.
//! This is the one rule set every view uses (`ps`, `watch`, `containers`, the
//! daemon, `events --container` and the stories), so that they never disagree:
//! the runtime from the cgroup path ([`super::paths`]), plain runc/crun by a pid
//! namespace of its own, and `nsenter`/setns joins by pid namespace.

use std::collections::{HashMap, HashSet};

use super::{ContainerRef, cgroups::Cgroups, paths as container};
use crate::{
    engine::{Engine, Process},
    events::TaskInfo,
};

/// Which container each live process belongs to, from kernel data alone: the
/// cgroup path when it names a runtime, else (plain runc/crun) a cgroup of its
/// own holding a pid namespace of its own. A process that entered a container's
/// pid namespace without its cgroup (a child of `nsenter --pid`, or of a setns
/// by hand) belongs to that container too.
#[derive(Debug, Default)]
pub struct Attribution {
    by_cgroup: HashMap<u64, ContainerRef>,
    paths: HashMap<u64, String>,
    /// Pid namespaces of containers (other than the host's), and their container.
    by_pidns: HashMap<u32, (ContainerRef, u64)>,
    host_pidns: Option<u32>,
}

impl Attribution {
    /// Builds the attribution for the engine's live processes.
    pub fn build(engine: &Engine, cgroups: &Cgroups) -> Attribution {
        let mut a = Attribution::default();
        let host_pidns = engine.host_pidns();
        // Cgroups that name no runtime but hold the init of another pid namespace,
        // and cgroups that hold any host process (not a container's own).
        let mut plain = HashSet::new();
        let mut shared = HashSet::new();
        for p in engine.live_processes() {
            let Some(info) = cgroups.get(p.cgroup_id) else { continue };
            if let Some(c) = &info.container {
                if let std::collections::hash_map::Entry::Vacant(e) = a.by_cgroup.entry(p.cgroup_id) {
                    e.insert(c.clone());
                    a.paths.insert(p.cgroup_id, info.path.clone());
                }
                continue;
            }
            match host_pidns {
                Some(host) if p.pidns != host => {
                    if p.ns_pid == 1 {
                        plain.insert(p.cgroup_id);
                    }
                }
                _ => {
                    shared.insert(p.cgroup_id);
                }
            }
        }
        for id in plain.difference(&shared) {
            let Some(info) = cgroups.get(*id) else { continue };
            if let Some(c) = container::plain(&info.path) {
                a.by_cgroup.insert(*id, c);
                a.paths.insert(*id, info.path.clone());
            }
        }
        // The pid namespace of each container's pid 1.
        if let Some(host) = host_pidns {
            for p in engine.live_processes() {
                if p.ns_pid == 1
                    && p.pidns != host
                    && let Some(c) = a.by_cgroup.get(&p.cgroup_id)
                {
                    a.by_pidns.entry(p.pidns).or_insert_with(|| (c.clone(), p.cgroup_id));
                }
            }
        }
        a.host_pidns = host_pidns;
        a
    }

    /// The container of a process, if it is in one.
    pub fn of(&self, p: &Process) -> Option<&ContainerRef> {
        self.by_cgroup.get(&p.cgroup_id).or_else(|| self.by_pidns_of(p).map(|(c, _)| c))
    }

    /// The container whose pid namespace a process is in (outside its cgroup).
    fn by_pidns_of(&self, p: &Process) -> Option<&(ContainerRef, u64)> {
        if self.by_pidns.is_empty() || Some(p.pidns) == self.host_pidns {
            return None;
        }
        self.by_pidns.get(&p.pidns)
    }

    /// The cgroup of the container a process belongs to (its own, or that of the
    /// container whose pid namespace it joined).
    pub fn cgroup_of(&self, p: &Process) -> Option<u64> {
        if self.by_cgroup.contains_key(&p.cgroup_id) {
            return Some(p.cgroup_id);
        }
        self.by_pidns_of(p).map(|(_, cg)| *cg)
    }

    /// The container of a cgroup, if it is one.
    pub fn of_cgroup(&self, cgroup_id: u64) -> Option<&ContainerRef> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// The cgroup path of a container's cgroup.
    pub fn path(&self, cgroup_id: u64) -> Option<&str> {
        self.paths.get(&cgroup_id).map(String::as_str)
    }
}

/// The container of one cgroup by the same rules as [`Attribution`], for those
/// that look at one event at a time (`events --container`, the stories) and
/// cannot build the whole attribution per event: a runtime-named path, else a
/// plain runc/crun container when the cgroup holds pid 1 of a pid namespace of
/// its own and no host process. `task` is the event's own task, counted as in
/// the cgroup even when the engine does not show it there yet.
pub fn cgroup_container(engine: &Engine, cgroups: &Cgroups, id: u64, task: Option<&TaskInfo>) -> Option<ContainerRef> {
    let info = cgroups.get(id)?;
    if let Some(c) = &info.container {
        return Some(c.clone());
    }
    let plain = container::plain(&info.path)?;
    // Without the host's pid namespace nothing is known to be a namespace of its
    // own (as in `Attribution::build`).
    let host = engine.host_pidns()?;
    let mut init = false;
    let tasks = task.filter(|t| t.cgroup_id == id).map(|t| (t.pidns, t.ns_pid));
    let procs = engine.live_processes().filter(|p| p.cgroup_id == id).map(|p| (p.pidns, p.ns_pid));
    for (pidns, ns_pid) in tasks.into_iter().chain(procs) {
        if pidns == host {
            // A host process shares it: a cgroup made by hand, not a container's own.
            return None;
        }
        init |= ns_pid == 1;
    }
    init.then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Enricher, Runtime, list};
    use crate::{
        engine::testkit::*,
        events::{CgroupPath, TaskInfo},
    };

    const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";
    const HOST: u32 = 4026531836;

    fn task(pid: u32, ppid: u32, pidns: u32, ns_pid: u32, cgroup_id: u64) -> TaskInfo {
        let mut t = tk(pid, pid, ppid);
        (t.pidns, t.ns_pid, t.ns_tid, t.cgroup_id) = (pidns, ns_pid, ns_pid, cgroup_id);
        t
    }

    #[test]
    fn attribution_by_cgroup_pid_namespace_and_own_cgroup() {
        let mut cgroups = Cgroups::default();
        let paths =
            [(1, "/"), (2, &*format!("/docker/{ID}")), (3, "/box"), (4, "/shared"), (5, "/system.slice/x.service")];
        cgroups
            .add(paths.iter().map(|(id, p)| CgroupPath { id: *id, path: p.to_string(), truncated: false }).collect());
        let mut e = Engine::new(cfg());
        let mut out = Vec::new();
        let mut kthreadd = task(2, 0, HOST, 2, 1);
        kthreadd.kthread = true;
        for t in [
            task(1, 0, HOST, 1, 1),
            kthreadd,
            // A docker container: pid 1 and a child, in its cgroup and pid namespace.
            task(100, 1, 900, 1, 2),
            task(101, 100, 900, 2, 2),
            // `nsenter --pid` into it: a child in its pid namespace, the host's cgroup.
            task(110, 1, HOST, 110, 1),
            task(111, 110, 900, 5, 1),
            // plain runc: a cgroup and pid namespace of its own.
            task(200, 1, 901, 1, 3),
            // a pid namespace in a cgroup shared with a host process: no container.
            task(300, 1, HOST, 300, 4),
            task(301, 300, 902, 1, 4),
            // a pid namespace in a systemd unit: no container.
            task(400, 1, 903, 1, 5),
        ] {
            e.apply(fork(MS, t), &mut out);
        }
        let a = Attribution::build(&e, &cgroups);
        let of = |pid| a.of(e.process(pid).expect("live")).map(|c| c.id.clone());
        assert_eq!(of(100).as_deref(), Some(ID));
        assert_eq!(of(101).as_deref(), Some(ID));
        assert_eq!(of(110), None, "nsenter itself stays on the host");
        assert_eq!(of(111).as_deref(), Some(ID), "a child in the container's pid namespace");
        assert_eq!(a.cgroup_of(e.process(111).expect("live")), Some(2));
        assert_eq!(of(200).as_deref(), Some("box"));
        assert_eq!(a.of(e.process(200).expect("live")).map(|c| c.runtime), Some(Runtime::Runc));
        for pid in [1, 2, 300, 301, 400] {
            assert_eq!(of(pid), None, "pid {pid}");
        }
        // The one-cgroup form of the rules agrees with the whole attribution.
        for id in 1..=5 {
            assert_eq!(cgroup_container(&e, &cgroups, id, None).as_ref(), a.of_cgroup(id), "cgroup {id}");
        }
        let list = list(&e, &cgroups, &Enricher::none());
        let docker = list.iter().find(|c| c.id == ID).expect("listed");
        assert_eq!((docker.init_pid, docker.pids.clone()), (100, vec![100, 101, 111]));
        assert_eq!(docker.cgroup, format!("/docker/{ID}"));
        assert_eq!(list.len(), 2);
    }
}
