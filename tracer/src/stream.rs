//! Which engine updates an event stream shows, and as what line. Shared by
//! `tracer events` in-process and the daemon's subscriptions.

use crate::{
    container,
    containers::Enricher,
    daemon::protocol::Filter,
    engine::{Engine, FxHashMap, GoneReason, Origin, Update},
    event::Body,
    output::Line,
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
/// that container's. Each cgroup is resolved once (a container's runtime state,
/// where its name comes from, is written before any of its processes run).
#[derive(Debug)]
pub struct ContainerScope {
    query: String,
    enrich: Enricher,
    by_cgroup: FxHashMap<u64, bool>,
}

impl ContainerScope {
    pub fn new(query: &str, enrich: Enricher) -> ContainerScope {
        ContainerScope { query: query.trim().to_string(), enrich, by_cgroup: FxHashMap::default() }
    }

    /// Whether cgroup `id` belongs to the container.
    pub fn has_cgroup(&mut self, cgroups: &Cgroups, id: u64) -> bool {
        if let Some(&b) = self.by_cgroup.get(&id) {
            return b;
        }
        // A path not known yet: not cached, asked again at the next event.
        let Some(info) = cgroups.get(id) else { return false };
        let found = info.container.clone().or_else(|| container::plain(&info.path)).is_some_and(|c| {
            let (name, image) = self.enrich.lookup(&c);
            Known { container: c, name, image }.matches(&self.query)
        });
        self.by_cgroup.insert(id, found);
        found
    }

    /// Whether an update is about a task of the container.
    pub fn admits(&mut self, engine: &Engine, cgroups: &Cgroups, u: &Update) -> bool {
        let cgroup = match u {
            Update::Event(ev) => Some(ev.task.cgroup_id),
            Update::Reparent { child: p, .. } | Update::Added { proc: p, .. } | Update::Gone { proc: p, .. } => {
                engine.get(*p).map(|p| p.cgroup_id)
            }
            Update::ThreadGone { .. } | Update::Dropped { .. } => None,
        };
        cgroup.is_some_and(|id| self.has_cgroup(cgroups, id))
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
        event::CgroupPath,
    };

    const ID: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";

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
        let e = Engine::new(EngineConfig { passwd: None, ..Default::default() });
        let in_cgroup = |id| {
            let mut t = tk(100, 100, 1);
            t.cgroup_id = id;
            Update::Event(fork(MS, t))
        };
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
        assert!(s.admits(&e, &cgroups, &in_cgroup(4)));
        let _ = std::fs::remove_dir_all(&root);
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
