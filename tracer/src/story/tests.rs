//! Story tests: event sequences of container starts and stops (docker, plain
//! runc, and look-alikes that are no container) against the stories told.

use super::*;
use crate::{
    engine::testkit::*,
    events::{CgroupPath, Comm, TaskInfo},
};

const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";
const HOST: u32 = 4026531836;
const NEW: u32 = 4026532180;
const CG: u64 = 500;

struct W {
    e: Engine,
    cg: Cgroups,
    s: Stories,
    out: Vec<Update>,
}

impl W {
    fn new(container_path: &str) -> W {
        let mut cg = Cgroups::default();
        cg.add(vec![
            CgroupPath { id: 7, path: "/".into(), truncated: false },
            CgroupPath { id: CG, path: container_path.into(), truncated: false },
        ]);
        let mut w = W { e: Engine::new(cfg()), cg, s: Stories::new(Enricher::none()), out: Vec::new() };
        let mut kthreadd = tk(2, 2, 0);
        kthreadd.kthread = true;
        w.apply(vec![fork(MS, tk(1, 1, 0)), fork(MS, kthreadd), fork(MS, tk(100, 100, 1))]);
        w
    }

    fn apply(&mut self, evs: Vec<Event>) {
        for ev in evs {
            self.e.apply(ev, &mut self.out);
            for u in self.out.drain(..) {
                self.s.update(&self.e, &self.cg, &u);
            }
        }
    }

    fn tick(&mut self, now: u64) -> Vec<Story> {
        // Held process exits come out on the engine's tick.
        self.e.tick(now, &mut self.out);
        for u in self.out.drain(..) {
            self.s.update(&self.e, &self.cg, &u);
        }
        let mut v = Vec::new();
        self.s.tick(now, &mut v);
        v
    }
}

fn task(pid: u32, ppid: u32, pidns: u32, ns_pid: u32, cgroup_id: u64, comm: &str) -> TaskInfo {
    let mut t = tk(pid, pid, ppid);
    (t.pidns, t.ns_pid, t.ns_tid, t.cgroup_id, t.comm) = (pidns, ns_pid, ns_pid, cgroup_id, Comm::from_str_lossy(comm));
    t
}

fn spawn(ts: u64, pid: u32, ppid: u32, file: &str, args: &[&str]) -> Vec<Event> {
    let t = task(pid, ppid, HOST, pid, 7, "x");
    vec![fork(ts, t), exec(ts + 1, t, pid, file, args)]
}

#[test]
fn docker_start_and_stop() {
    let mut w = W::new(&format!("/docker/{ID}"));
    let shim = "/usr/bin/containerd-shim-runc-v2";
    w.apply(spawn(10 * MS, 200, 100, shim, &["containerd-shim-runc-v2", "-namespace", "moby", "-id", ID, "start"]));
    w.apply(spawn(11 * MS, 201, 200, shim, &["containerd-shim-runc-v2", "-namespace", "moby", "-id", ID]));
    w.apply(spawn(20 * MS, 210, 201, "/usr/sbin/runc", &["runc", "--root", "/r", "create", "--bundle", "/b", ID]));
    w.apply(spawn(30 * MS, 211, 210, "/proc/self/exe", &["runc", "init"]));
    w.apply(vec![attach(40 * MS, task(211, 210, HOST, 211, 7, "runc:[0:PARENT]"), CG)]);
    // runc's stage children: both with runc create as parent (CLONE_PARENT); the
    // second is pid 1 of the new pid namespace.
    w.apply(vec![fork(41 * MS, task(212, 210, HOST, 212, CG, "runc:[1:CHILD]"))]);
    w.apply(vec![fork(42 * MS, task(213, 210, NEW, 1, CG, "runc:[1:CHILD]"))]);
    w.apply(spawn(150 * MS, 220, 201, "/usr/sbin/runc", &["runc", "--root", "/r", "start", ID]));
    let init = task(213, 210, NEW, 1, CG, "httpd");
    w.apply(vec![exec(160 * MS, init, 213, "/bin/httpd", &["httpd", "-f", "-p", "80"])]);
    w.apply(vec![fork(161 * MS, task(230, 213, NEW, 2, CG, "httpd"))]);
    let mut th = task(230, 213, NEW, 2, CG, "httpd");
    (th.tid, th.ns_tid, th.start_ns) = (231, 3, 231_000);
    w.apply(vec![clone(162 * MS, th)]);
    assert!(w.tick(160 * MS + SETTLE_NS - 1).is_empty(), "told before the settle time");
    let told = w.tick(160 * MS + SETTLE_NS);
    let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
    let stages: Vec<Stage> = s.steps.iter().map(|s| s.stage).collect();
    assert_eq!(
        stages,
        [
            Stage::Shim,
            Stage::Create,
            Stage::Init,
            Stage::Cgroup,
            Stage::Namespaces,
            Stage::Start,
            Stage::Entrypoint,
            Stage::FirstChild,
            Stage::FirstThread
        ]
    );
    assert_eq!(s.steps[0].ts_ns, 10 * MS + 1, "the shim's exec starts the story");
    assert_eq!(s.to_entrypoint_ns, Some(150 * MS - 1));
    assert_eq!((s.init_pid, s.init_ns_pid), (Some(213), Some(1)));
    assert_eq!((s.forks, s.threads), (1, 1));
    assert_eq!((s.container.runtime, s.container.id.as_str()), (container::Runtime::Docker, ID));
    assert!(s.steps.windows(2).all(|p| p[0].since_ns <= p[1].since_ns));
    let text = told[0].text(0);
    assert!(text.contains("container start  docker b8cee460296f"), "{text}");
    assert!(text.contains("entrypoint after 150.0 ms"), "{text}");

    // The stop: pid 1 killed, then the rest of the namespace, then the shim.
    w.apply(vec![pexit_signal(5 * SEC, init, 9)]);
    w.apply(vec![pexit_signal(5 * SEC + MS, task(230, 213, NEW, 2, CG, "httpd"), 9)]);
    w.apply(vec![pexit(5 * SEC + 10 * MS, task(201, 200, HOST, 201, 7, "containerd-shim"), 0, None)]);
    let told = w.tick(6 * SEC);
    let [Story::ContainerStop(s)] = told.as_slice() else { panic!("one stop: {told:#?}") };
    assert_eq!(s.init_pid, 213);
    assert_eq!(s.status.signal(), Some(9));
    assert_eq!((s.others_exited, s.last_exit_ns, s.shim_exit_ns), (1, Some(MS), Some(10 * MS)));
    assert!(told[0].text(0).contains("killed by SIGKILL"), "{}", told[0].text(0));
    assert!(w.s.chains.is_empty() && w.s.stopping.is_empty() && w.s.names.is_empty());
}

#[test]
fn plain_runc_run() {
    let mut w = W::new("/box");
    w.apply(spawn(10 * MS, 210, 100, "/usr/sbin/runc", &["runc", "run", "-d", "--bundle", "/b", "box"]));
    w.apply(spawn(20 * MS, 211, 210, "/proc/self/exe", &["runc", "init"]));
    w.apply(vec![attach(25 * MS, task(211, 210, HOST, 211, 7, "runc:[0:PARENT]"), CG)]);
    w.apply(vec![fork(30 * MS, task(213, 210, NEW, 1, CG, "runc:[1:CHILD]"))]);
    w.apply(vec![exec(50 * MS, task(213, 210, NEW, 1, CG, "sleep"), 213, "/bin/sleep", &["sleep", "300"])]);
    let told = w.tick(SEC + 50 * MS);
    let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
    assert_eq!((s.container.runtime, s.container.id.as_str()), (container::Runtime::Runc, "box"));
    assert_eq!(s.container.cgroup.as_deref(), Some("/box"));
    let stages: Vec<Stage> = s.steps.iter().map(|s| s.stage).collect();
    assert_eq!(stages, [Stage::Create, Stage::Init, Stage::Cgroup, Stage::Namespaces, Stage::Entrypoint]);
}

#[test]
fn a_host_process_in_a_new_pid_namespace_is_no_container() {
    let mut w = W::new("/docker/x");
    // unshare --pid --fork in the root cgroup: pid 1 of a new namespace, no container cgroup.
    w.apply(spawn(10 * MS, 300, 100, "/usr/bin/unshare", &["unshare", "--pid", "--fork", "sleep", "1"]));
    w.apply(vec![fork(11 * MS, task(301, 300, NEW, 1, 7, "unshare"))]);
    w.apply(vec![exec(12 * MS, task(301, 300, NEW, 1, 7, "sleep"), 301, "/bin/sleep", &["sleep", "1"])]);
    w.apply(vec![pexit(SEC, task(301, 300, NEW, 1, 7, "sleep"), 0, None)]);
    assert!(w.tick(10 * SEC).is_empty());
}

#[test]
fn a_pid_namespace_in_a_shared_cgroup_is_no_container() {
    let mut w = W::new("/docker/x");
    w.cg.add(vec![CgroupPath { id: 8, path: "/jobs".into(), truncated: false }]);
    // A host process in /jobs, and `unshare --pid --fork` run there.
    w.apply(vec![fork(5 * MS, task(290, 100, HOST, 290, 8, "worker"))]);
    w.apply(spawn(10 * MS, 300, 100, "/usr/bin/unshare", &["unshare", "--pid", "--fork", "sleep", "1"]));
    w.apply(vec![fork(11 * MS, task(301, 300, NEW, 1, 8, "unshare"))]);
    w.apply(vec![exec(12 * MS, task(301, 300, NEW, 1, 8, "sleep"), 301, "/bin/sleep", &["sleep", "1"])]);
    w.apply(vec![pexit(SEC, task(301, 300, NEW, 1, 8, "sleep"), 0, None)]);
    assert!(w.tick(10 * SEC).is_empty());
    // Alone in a cgroup of its own, the same is a (plain runc-like) container.
    w.cg.add(vec![CgroupPath { id: 9, path: "/box".into(), truncated: false }]);
    w.apply(vec![fork(11 * SEC, task(401, 300, NEW, 1, 9, "unshare"))]);
    w.apply(vec![exec(11 * SEC, task(401, 300, NEW, 1, 9, "sleep"), 401, "/bin/sleep", &["sleep", "1"])]);
    let told = w.tick(13 * SEC);
    let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
    assert_eq!(s.container.id, "box");
}

#[test]
fn runtime_argv() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        runtime_command(&a(&["runc", "--root", "/r", "create", "--bundle", "/b", "x1"])),
        Some(("create", "x1".into()))
    );
    assert_eq!(runtime_command(&a(&["runc", "start", "x1"])), Some(("start", "x1".into())));
    assert_eq!(runtime_command(&a(&["runc", "exec", "-d", "x1", "sh"])), None);
    assert_eq!(runtime_command(&a(&["runc", "create"])), None);
    assert_eq!(
        shim_id(&a(&["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc", "start"])),
        Some("abc".into())
    );
    assert_eq!(shim_id(&a(&["containerd-shim-runc-v2", "-id"])), None);
}
