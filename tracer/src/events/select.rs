//! Which engine updates an event stream shows, and as what line. Shared by
//! `tracer events` in-process and the daemon's subscriptions.

use std::time::Instant;

use crate::{
    container::{self, Enricher, NameCache},
    daemon::protocol::Filter,
    engine::{Engine, FxHashMap, GoneReason, Origin, Update},
    events::format::Line,
    events::{Body, TaskInfo},
    render::Known,
    story::Story,
    tracker::Cgroups,
};

/// The line `u` shows as under `filter`, if any.
pub fn line_for<'a>(engine: &Engine, filter: &Filter, u: &'a Update) -> Option<Line<'a>> {
    match u {
        Update::Event(ev) => {
            if matches!(ev.body, Body::Snapshot { .. }) {
                return None;
            }
            if filter.no_threads && matches!(ev.body, Body::Clone { .. } | Body::ThreadExit { .. }) {
                return None;
            }
            if filter.no_kthreads && ev.task.kthread {
                return None;
            }
            if let Some(comm) = &filter.comm {
                let now = ev.task.comm.as_bytes() == comm.as_bytes();
                let renamed = matches!(&ev.body, Body::Rename { new_comm } if new_comm.as_bytes() == comm.as_bytes());
                if !now && !renamed {
                    return None;
                }
            }
            in_scope(filter, engine, ev.task.pid).then_some(Line::Event(ev))
        }
        Update::Reparent { child, old_ppid, new_ppid, ts_ns } => {
            let p = engine.get(*child)?;
            if !in_scope(filter, engine, child.pid) && !in_scope(filter, engine, *old_ppid) {
                return None;
            }
            if filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes()) {
                return None;
            }
            Some(Line::Reparent {
                ts_ns: *ts_ns,
                child: *child,
                comm: p.comm,
                uid: p.uid,
                old_ppid: *old_ppid,
                new_ppid: *new_ppid,
            })
        }
        Update::Added { proc, ts_ns, origin } => {
            let p = engine.get(*proc)?;
            if !in_scope(filter, engine, proc.pid)
                || filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes())
            {
                return None;
            }
            let what = match origin {
                // Its first event was not its fork: the fork was lost, or made by a
                // process the kernel hides from BPF programs (on some sandboxes, PID 1).
                Origin::Inferred => "added: first seen after its fork (the fork was not visible)",
                _ => "added: found alive by a repair walk, its fork was not seen",
            };
            Some(Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what })
        }
        Update::Gone { proc, ts_ns, reason } => {
            let p = engine.get(*proc)?;
            if !in_scope(filter, engine, proc.pid)
                || filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes())
            {
                return None;
            }
            let what = match reason {
                GoneReason::PidReused => "ended: its pid now belongs to a newer process, its exit was not seen",
                GoneReason::NotInWalk => "ended: gone from the task list, its exit was not seen",
            };
            Some(Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what })
        }
        Update::ThreadGone { .. } | Update::Dropped { .. } => None,
    }
}

/// Whether `pid` is the filter's process or one of its descendants (always, without one).
pub fn in_scope(filter: &Filter, engine: &Engine, pid: u32) -> bool {
    match filter.pid {
        None => true,
        Some(root) => pid == root || engine.is_descendant(pid, root),
    }
}

/// An event stream narrowed to one container (`--container ID`: its short id, a
/// prefix of its id, or its name): an event is in it when its task's cgroup is
/// that container's, by the shared rules of [`container::cgroup_container`] (so a
/// plain runc/crun cgroup counts only once it holds pid 1 of a pid namespace of
/// its own and no host process, as everywhere else). Each cgroup is resolved
/// once (a container's runtime state, where its name comes from, is written
/// before any of its processes run).
#[derive(Debug)]
pub struct ContainerScope {
    query: String,
    names: NameCache,
    by_cgroup: FxHashMap<u64, Verdict>,
}

/// What a cgroup was found to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    In,
    Out,
    /// A cgroup that names no runtime and is no plain container yet (no pid 1 of a
    /// namespace of its own there, or a host process shares it): asked again when
    /// a task of another pid namespace shows up in it, the only thing that can
    /// make it one.
    NotYet,
}

impl ContainerScope {
    pub fn new(query: &str, enrich: Enricher) -> ContainerScope {
        ContainerScope {
            query: query.trim().to_string(),
            names: NameCache::new(enrich),
            by_cgroup: FxHashMap::default(),
        }
    }

    /// Whether cgroup `id` belongs to the container; `task` is the event's own
    /// task, when the update is an event.
    fn has_cgroup(&mut self, engine: &Engine, cgroups: &Cgroups, id: u64, task: Option<&TaskInfo>) -> bool {
        match self.by_cgroup.get(&id) {
            Some(Verdict::In) => return true,
            Some(Verdict::Out) => return false,
            Some(Verdict::NotYet) if task.is_none_or(|t| Some(t.pidns) == engine.host_pidns()) => return false,
            _ => {}
        }
        // A path not known yet: not cached, asked again at the next event.
        let Some(info) = cgroups.get(id) else { return false };
        let verdict = match container::cgroup_container(engine, cgroups, id, task) {
            Some(c) => {
                let (name, image) = self.names.lookup_at(&c, Instant::now());
                if (Known { container: c, name, image }).matches(&self.query) { Verdict::In } else { Verdict::Out }
            }
            None if info.container.is_none() && container::plain(&info.path).is_some() => Verdict::NotYet,
            None => Verdict::Out,
        };
        self.by_cgroup.insert(id, verdict);
        verdict == Verdict::In
    }

    /// Whether an update is about a task of the container.
    pub fn admits(&mut self, engine: &Engine, cgroups: &Cgroups, u: &Update) -> bool {
        let (cgroup, task) = match u {
            Update::Event(ev) => (Some(ev.task.cgroup_id), Some(&ev.task)),
            Update::Reparent { child: p, .. } | Update::Added { proc: p, .. } | Update::Gone { proc: p, .. } => {
                (engine.get(*p).map(|p| p.cgroup_id), None)
            }
            Update::ThreadGone { .. } | Update::Dropped { .. } => (None, None),
        };
        cgroup.is_some_and(|id| self.has_cgroup(engine, cgroups, id, task))
    }

    /// Whether a container story is about the container.
    pub fn admits_story(&self, story: &Story) -> bool {
        let c = story.subject();
        let container =
            container::ContainerRef { runtime: c.runtime, id: c.id.clone(), namespace: None, pod: c.pod.clone() };
        Known { container, name: c.name.clone(), image: c.image.clone() }.matches(&self.query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::{EngineConfig, testkit::*},
        events::CgroupPath,
    };

    const ID: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
    const HOST: u32 = 4026531836;

    fn task(pid: u32, ppid: u32, pidns: u32, ns_pid: u32, cgroup_id: u64) -> crate::events::TaskInfo {
        let mut t = tk(pid, pid, ppid);
        (t.pidns, t.ns_pid, t.ns_tid, t.cgroup_id) = (pidns, ns_pid, ns_pid, cgroup_id);
        t
    }

    /// kthreadd: the engine learns the host's pid namespace from kernel threads.
    fn kthreadd() -> crate::events::TaskInfo {
        let mut t = task(2, 0, HOST, 2, 1);
        t.kthread = true;
        t
    }

    #[test]
    fn container_scope_by_name_prefix_and_plain_cgroup() {
        // Docker's state for ID: its name.
        let root = std::env::temp_dir().join(format!("tracer-unit-scope-{}", std::process::id()));
        let dir = root.join("containers").join(ID);
        std::fs::create_dir_all(&dir).expect("temp docker root");
        std::fs::write(dir.join("config.v2.json"), r#"{"Name":"/web-a","Config":{"Image":"busybox"}}"#).expect("write");
        let enrich = Enricher { docker_roots: vec![root.clone()], storage_roots: vec![] };
        let mut cgroups = Cgroups::default();
        let paths = [(1, "/".to_string()), (2, format!("/docker/{ID}")), (3, "/mybox".to_string())];
        cgroups.add(paths.into_iter().map(|(id, path)| CgroupPath { id, path, truncated: false }).collect());
        // The host's init, and /mybox's pid 1 in a pid namespace of its own.
        let mut e = Engine::new(EngineConfig { passwd: None, ..Default::default() });
        let mut out = Vec::new();
        e.apply(fork(MS, task(1, 0, HOST, 1, 1)), &mut out);
        e.apply(fork(MS, kthreadd()), &mut out);
        e.apply(fork(MS, task(200, 1, 901, 1, 3)), &mut out);
        // A process in a container's pid namespace (a host one would make /mybox a
        // cgroup shared with the host, no container).
        let in_cgroup = |id| Update::Event(fork(MS, task(201, 200, 901, 2, id)));
        for q in ["web-a", "/web-a", "1a2b3c", "1A2B3C4D5E6F", ID] {
            let mut s = ContainerScope::new(q, enrich.clone());
            assert!(s.admits(&e, &cgroups, &in_cgroup(2)), "{q}");
            assert!(!s.admits(&e, &cgroups, &in_cgroup(1)), "{q}: the root cgroup");
            assert!(!s.admits(&e, &cgroups, &in_cgroup(3)), "{q}: another container");
            assert!(!s.admits(&e, &cgroups, &in_cgroup(9)), "{q}: a cgroup whose path is not known");
        }
        let mut s = ContainerScope::new("mybox", enrich.clone());
        assert!(s.admits(&e, &cgroups, &in_cgroup(3)), "a plain runc container, by its id");
        assert!(!s.admits(&e, &cgroups, &in_cgroup(2)));
        // A path learnt later is looked at then (unknown ones are not cached).
        let mut s = ContainerScope::new("late", enrich);
        assert!(!s.admits(&e, &cgroups, &in_cgroup(4)));
        cgroups.add(vec![CgroupPath { id: 4, path: "/late".into(), truncated: false }]);
        let late_init = Update::Event(fork(MS, task(300, 1, 902, 1, 4)));
        assert!(s.admits(&e, &cgroups, &late_init));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A cgroup that names no runtime is a plain runc/crun container only as the
    /// shared attribution has it: pid 1 of a pid namespace of its own there, and no
    /// host process. `--container` used to take any such cgroup by its leaf name.
    #[test]
    fn container_scope_plain_cgroup_needs_its_own_pid_namespace() {
        let mut cgroups = Cgroups::default();
        let paths = [(1, "/"), (3, "/mybox"), (4, "/shared")];
        cgroups
            .add(paths.iter().map(|(id, p)| CgroupPath { id: *id, path: p.to_string(), truncated: false }).collect());
        let mut e = Engine::new(EngineConfig { passwd: None, ..Default::default() });
        let mut out = Vec::new();
        e.apply(fork(MS, task(1, 0, HOST, 1, 1)), &mut out);
        e.apply(fork(MS, kthreadd()), &mut out);
        // /shared: a host process, and pid 1 of another pid namespace beside it.
        e.apply(fork(MS, task(300, 1, HOST, 300, 4)), &mut out);
        e.apply(fork(MS, task(301, 300, 902, 1, 4)), &mut out);
        let ev = |t| Update::Event(fork(MS, t));
        let mut s = ContainerScope::new("shared", Enricher::none());
        assert!(!s.admits(&e, &cgroups, &ev(task(300, 1, HOST, 300, 4))), "a host process's cgroup");
        assert!(!s.admits(&e, &cgroups, &ev(task(301, 300, 902, 1, 4))), "nor by its other pid namespace");
        let a = crate::container::Attribution::build(&e, &cgroups);
        assert_eq!(a.of_cgroup(4), None, "as the attribution has it");
        // /mybox: a host process first (runc init before its child's clone): not yet.
        let mut s = ContainerScope::new("mybox", Enricher::none());
        e.apply(fork(MS, task(400, 1, HOST, 400, 3)), &mut out);
        assert!(!s.admits(&e, &cgroups, &ev(task(400, 1, HOST, 400, 3))));
        // Then it has left and pid 1 of a new pid namespace is there: now it is one.
        e.apply(attach(MS, task(400, 1, HOST, 400, 3), 1), &mut out);
        e.apply(fork(MS, task(401, 1, 903, 1, 3)), &mut out);
        assert!(s.admits(&e, &cgroups, &ev(task(401, 1, 903, 1, 3))));
        let a = crate::container::Attribution::build(&e, &cgroups);
        assert_eq!(a.of_cgroup(3).map(|c| c.id.as_str()), Some("mybox"));
    }

    #[test]
    fn container_scope_of_stories() {
        let subject = crate::story::Subject {
            runtime: container::Runtime::Docker,
            id: ID.into(),
            short_id: ID[..12].into(),
            name: Some("web-a".into()),
            image: None,
            pod: None,
            cgroup: None,
        };
        let story = Story::ContainerStart(crate::story::StartStory {
            container: subject,
            ts_ns: 1,
            steps: vec![],
            to_entrypoint_ns: None,
            init_pid: None,
            init_ns_pid: None,
            forks: 0,
            threads: 0,
        });
        for (q, want) in [("web-a", true), ("/web-a", true), ("1A2B3C", true), ("web", false), ("2b3c", false)] {
            assert_eq!(ContainerScope::new(q, Enricher::none()).admits_story(&story), want, "{q}");
        }
    }
}
