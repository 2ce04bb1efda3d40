//! Which engine updates an event stream shows, and as what line. Shared by
//! `tracer events` in-process and the daemon's subscriptions.

use std::time::Instant;

use crate::{
    container::{self, Enricher, NameCache},
    daemon::protocol::Filter,
    engine::{Engine, FxHashMap, GoneReason, Origin, Process, Update},
    events::format::Line,
    events::{Body, Comm, ProcRef, TaskInfo, kinds},
    render::Known,
    story::Story,
    tracker::Cgroups,
};

/// A comm pattern: a shell glob (`*`, `?`, `[...]`, `{a,b}`) matched against the
/// whole comm; the exact comm matches too (a comm may hold `[` or `*`).
#[derive(Clone, Debug)]
pub struct CommGlob {
    text: String,
    /// `None` when the text is no glob (an unclosed `[`...): then only the exact comm.
    matcher: Option<globset::GlobMatcher>,
}

impl CommGlob {
    /// Never fails: a comm is whatever a process chose, `[` and `*` included, so
    /// text that is no valid glob still names the comm it spells.
    pub fn new(pattern: &str) -> Result<CommGlob, String> {
        let matcher =
            globset::GlobBuilder::new(pattern).backslash_escape(true).build().ok().map(|g| g.compile_matcher());
        Ok(CommGlob { text: pattern.to_string(), matcher })
    }

    /// Whether a comm (its bytes, UTF-8 or not) is the pattern's text exactly, or
    /// matches it as a glob.
    pub fn matches(&self, comm: &Comm) -> bool {
        use std::os::unix::ffi::OsStrExt;
        comm.as_bytes() == self.text.as_bytes()
            || self.matcher.as_ref().is_some_and(|m| m.is_match(std::ffi::OsStr::from_bytes(comm.as_bytes())))
    }
}

impl PartialEq for CommGlob {
    fn eq(&self, other: &CommGlob) -> bool {
        self.text == other.text
    }
}

impl Eq for CommGlob {}

/// The kinds `--kind` takes: every record kind the stream shows (the registry's,
/// `tracer_abi::KINDS`, but the walk's snapshots and the cgroup paths, which
/// are state, not lines), then `reparent` and `repair`.
/// `lost` and `missed` lines are always shown: they say the stream is incomplete.
pub fn selectable_kinds() -> impl Iterator<Item = &'static str> {
    tracer_abi::KINDS
        .iter()
        .map(|k| k.name)
        .filter(|k| !["snapshot", "cgroup_path"].contains(k))
        .chain(["reparent", "repair"])
}

/// The index ([`kinds::index`]) of a kind `--kind` takes, or a one-line error naming them all.
pub fn kind_index(name: &str) -> Result<usize, String> {
    let name = name.trim();
    match selectable_kinds().find(|k| *k == name).and_then(kinds::index) {
        Some(i) => Ok(i),
        None => Err(format!(
            "unknown event kind {name:?}: choose from {}",
            selectable_kinds().collect::<Vec<_>>().join(", ")
        )),
    }
}

const _: () = assert!(kinds::COUNT <= 64, "kind masks are u64");

/// A stream filter ready for use: kinds as a mask, the comm glob compiled, the
/// user as a uid, and `pid` pinned to the identity (pid and start time) of the
/// live process with that pid when the selector is made: a later process that
/// reuses the pid is not followed.
#[derive(Clone, Debug)]
pub struct Selector {
    pub filter: Filter,
    /// Bit [`kinds::index`] set for each kind shown; 0: all.
    kinds: u64,
    comm: Option<CommGlob>,
    uid: Option<u32>,
    root: Option<ProcRef>,
}

impl Selector {
    /// Checks and resolves `filter` against the engine's tree now; the error is one
    /// line that says what is wrong.
    pub fn new(filter: &Filter, engine: &Engine) -> Result<Selector, String> {
        let mut kinds = 0u64;
        for k in &filter.kinds {
            kinds |= 1 << kind_index(k)?;
        }
        let comm = filter.comm.as_deref().map(CommGlob::new).transpose()?;
        let uid = filter.user.as_deref().map(uid_of).transpose()?;
        let root = match filter.pid {
            None => None,
            Some(pid) => match engine.process(pid).filter(|p| p.is_alive()) {
                Some(p) => Some(p.id()),
                None => return Err(format!("no process with pid {pid} is running")),
            },
        };
        Ok(Selector { filter: filter.clone(), kinds, comm, uid, root })
    }

    fn kind_shown(&self, name: &str) -> bool {
        self.kinds == 0 || kinds::index(name).is_some_and(|i| self.kinds & (1 << i) != 0)
    }

    fn comm_ok(&self, comm: &Comm) -> bool {
        self.comm.as_ref().is_none_or(|g| g.matches(comm))
    }

    fn uid_ok(&self, uid: u32) -> bool {
        self.uid.is_none_or(|u| u == uid)
    }

    /// Whether the process `id` (with parent `parent`, when the engine does not
    /// have it) is the followed process or descends from it (always, without one).
    fn in_scope(&self, engine: &Engine, id: ProcRef, parent: Option<ProcRef>) -> bool {
        let Some(root) = self.root else { return true };
        if id == root || parent == Some(root) {
            return true;
        }
        match engine.get(id) {
            Some(p) => engine.descends_from(p, root),
            None => parent.and_then(|r| engine.get(r)).is_some_and(|p| engine.descends_from(p, root)),
        }
    }

    /// Like [`Selector::in_scope`] for a pid alone (the latest process with it).
    fn pid_in_scope(&self, engine: &Engine, pid: u32) -> bool {
        self.root.is_none() || engine.process(pid).is_some_and(|p| self.in_scope(engine, p.id(), p.parent()))
    }
}

/// A user name (through NSS, as `ps -u` has it) or a uid in decimal, as a uid.
fn uid_of(user: &str) -> Result<u32, String> {
    let user = user.trim();
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("--user {user:?}: no such user (give a user name or a uid)")),
        Err(e) => Err(format!("--user {user:?}: looking the user up failed ({e}); give a uid instead")),
    }
}

/// The line `u` shows as under `sel`, if any.
pub fn line_for<'a>(engine: &Engine, sel: &Selector, u: &'a Update) -> Option<Line<'a>> {
    let filter = &sel.filter;
    match u {
        Update::Event(ev) => {
            if matches!(ev.body, Body::Snapshot { .. }) || !sel.kind_shown(ev.body.name()) {
                return None;
            }
            if filter.no_threads && matches!(ev.body, Body::Clone { .. } | Body::ThreadExit { .. }) {
                return None;
            }
            let t = &ev.task;
            if (filter.no_kthreads && t.kthread) || !sel.uid_ok(t.uid) {
                return None;
            }
            let renamed_to = |c: &CommGlob| matches!(&ev.body, Body::Rename { new_comm } if c.matches(new_comm));
            if let Some(c) = &sel.comm
                && !c.matches(&t.comm)
                && !renamed_to(c)
            {
                return None;
            }
            let id = ProcRef { pid: t.pid, start_ns: t.proc_start_ns };
            let parent = ProcRef { pid: t.ppid, start_ns: t.parent_start_ns };
            if !sel.in_scope(engine, id, Some(parent)) {
                return None;
            }
            let parent_comm = match ev.body {
                Body::Exec { .. } => engine.get(parent).map(|p| p.comm),
                _ => None,
            };
            Some(Line::Event(ev, parent_comm))
        }
        Update::Reparent { child, old_ppid, new_ppid, ts_ns } => {
            let p = engine.get(*child)?;
            if !sel.kind_shown("reparent") || !sel.comm_ok(&p.comm) || !sel.uid_ok(p.uid) {
                return None;
            }
            if !sel.in_scope(engine, *child, None) && !sel.pid_in_scope(engine, *old_ppid) {
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
            if !repair_shown(sel, engine, p) {
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
            if !repair_shown(sel, engine, p) {
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

/// Whether a repair of process `p` is shown.
fn repair_shown(sel: &Selector, engine: &Engine, p: &Process) -> bool {
    sel.kind_shown("repair") && sel.comm_ok(&p.comm) && sel.uid_ok(p.uid) && sel.in_scope(engine, p.id(), p.parent())
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

    /// init 1, sh 100 under it, 101 under sh: the lines of `evs` under `f`, as (kind, pid).
    fn shown(f: &Filter, evs: Vec<crate::events::Event>) -> Result<Vec<(&'static str, u32)>, String> {
        let mut e = Engine::new(EngineConfig { passwd: None, ..Default::default() });
        let mut out = Vec::new();
        for t in [tk(1, 1, 0), tk(100, 100, 1), tk(101, 101, 100)] {
            e.apply(fork(MS, t), &mut out);
        }
        let sel = Selector::new(f, &e)?;
        let mut lines = Vec::new();
        for ev in evs {
            out.clear();
            e.apply(ev, &mut out);
            for u in &out {
                if let Some(l) = line_for(&e, &sel, u) {
                    let pid = match &l {
                        Line::Event(ev, _) => ev.task.pid,
                        _ => 0,
                    };
                    lines.push((l.kind(), pid));
                }
            }
        }
        Ok(lines)
    }

    #[test]
    fn kinds_comm_glob_and_user() {
        let mut sleep = tk(102, 102, 101);
        sleep.comm = Comm::from_str_lossy("sleep");
        let evs = || {
            let mut root = tk(103, 103, 1);
            root.uid = 0;
            vec![fork(MS, tk(102, 102, 101)), exec(MS, sleep, 102, "/bin/sleep", &["sleep"]), fork(MS, root)]
        };
        let kinds = |k: &[&str]| Filter { kinds: k.iter().map(|s| s.to_string()).collect(), ..Filter::default() };
        assert_eq!(shown(&kinds(&["exec"]), evs()), Ok(vec![("exec", 102)]));
        assert_eq!(shown(&kinds(&["fork", "exec"]), evs()), Ok(vec![("fork", 102), ("exec", 102), ("fork", 103)]));
        let e = shown(&kinds(&["exce"]), evs()).unwrap_err();
        assert!(e.contains("\"exce\"") && e.contains("exec, thread_exit, exit") && !e.contains("snapshot"), "{e}");
        // The forks are made by (and carry the comm of) sh; the exec is sleep's.
        let sh_forks = vec![("fork", 102), ("fork", 103)];
        for (glob, want) in [("sl*p", vec![("exec", 102)]), ("sleep", vec![("exec", 102)]), ("s?", sh_forks)] {
            assert_eq!(shown(&Filter { comm: Some(glob.into()), ..Filter::default() }, evs()), Ok(want), "{glob}");
        }
        // No glob (an unclosed `[`): the exact comm only, never an error.
        assert_eq!(shown(&Filter { comm: Some("[".into()), ..Filter::default() }, evs()), Ok(vec![]));
        let literal = CommGlob::new("a[1").unwrap();
        assert!(literal.matches(&Comm::from_str_lossy("a[1")) && !literal.matches(&Comm::from_str_lossy("a1")));
        // A glob matches its own text as a comm too.
        assert!(CommGlob::new("h[2J]!").unwrap().matches(&Comm::from_str_lossy("h[2J]!")));
        let user = |u: &str| Filter { user: Some(u.into()), ..Filter::default() };
        assert_eq!(shown(&user("0"), evs()), Ok(vec![("fork", 103)]));
        assert_eq!(shown(&user("root"), evs()), Ok(vec![("fork", 103)]));
        assert!(shown(&user("no-such-user-here"), evs()).unwrap_err().contains("no such user"));
        // Every kind a line can have can be asked for.
        for ev in evs() {
            assert!(kind_index(ev.body.name()).is_ok());
        }
    }

    #[test]
    fn pid_follows_the_process_not_its_number() {
        let f = Filter { pid: Some(100), ..Filter::default() };
        // 100's child forks; 100 and 101 exit; a new 100 (another start time) forks.
        let mut reused = tk(100, 100, 1);
        reused.proc_start_ns = 7_000_000;
        reused.start_ns = 7_000_000;
        let mut grandchild = tk(104, 104, 101);
        grandchild.parent_start_ns = 101_000;
        let mut under_reused = tk(105, 105, 100);
        under_reused.parent_start_ns = 7_000_000;
        let evs = vec![
            fork(MS, grandchild),
            pexit(MS, tk(100, 100, 1), 0, None),
            fork(MS, reused),
            fork(MS, under_reused),
            fork(MS, tk(106, 106, 1)),
        ];
        let got = shown(&f, evs).expect("100 is alive");
        assert_eq!(got, [("fork", 104), ("exit", 100)]);
        let missing = shown(&Filter { pid: Some(4242), ..Filter::default() }, vec![]).unwrap_err();
        assert_eq!(missing, "no process with pid 4242 is running");
    }

    #[test]
    fn exec_lines_name_the_parent() {
        let mut e = Engine::new(EngineConfig { passwd: None, ..Default::default() });
        let mut out = Vec::new();
        let mut sh = tk(100, 100, 1);
        sh.comm = Comm::from_str_lossy("bash");
        e.apply(fork(MS, sh), &mut out);
        e.apply(fork(MS, tk(101, 101, 100)), &mut out);
        let sel = Selector::new(&Filter::default(), &e).expect("no filter");
        out.clear();
        e.apply(exec(MS, tk(101, 101, 100), 101, "/bin/ls", &["ls"]), &mut out);
        let parents: Vec<_> = out
            .iter()
            .filter_map(|u| match line_for(&e, &sel, u) {
                Some(Line::Event(_, p)) => Some(p.map(|c| c.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(parents, [Some("bash".to_string())]);
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
