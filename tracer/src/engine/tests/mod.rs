//! Engine tests: synthetic event sequences against exact model state (the
//! harness, and events one by one; walks and repairs in `walk.rs`).

use super::testkit::*;
use super::*;
use crate::events::{Body, Comm, ExitStatus, ProcRef};
use tracer_abi::Kind;

mod walk;

struct T {
    e: Engine,
    out: Vec<Update>,
}

impl T {
    fn new() -> T {
        let users = UserTable::from_passwd("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
        T { e: Engine::with_users(cfg(), users), out: Vec::new() }
    }

    /// A world with init (pid 1, ppid 0) already forked.
    fn with_init() -> T {
        let mut t = T::new();
        let mut init = tk(1, 1, 0);
        init.uid = 0;
        t.apply(&[fork(1, init)]);
        t.take();
        t
    }

    fn apply(&mut self, evs: &[Event]) {
        for e in evs {
            self.e.apply_ref(e, &mut self.out);
        }
        self.e.check_invariants().expect("invariants");
    }

    fn tick(&mut self, now: u64) {
        self.e.tick(now, &mut self.out);
        self.e.check_invariants().expect("invariants");
    }

    fn take(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.out)
    }

    fn p(&self, pid: u32) -> &Process {
        self.e.process(pid).unwrap_or_else(|| panic!("no process {pid}"))
    }

    fn tids(&self, pid: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self.p(pid).threads.iter().map(|t| t.tid).collect();
        v.sort_unstable();
        v
    }

    fn kids(&self, pid: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self.e.children(pid).map(|p| p.pid).collect();
        v.sort_unstable();
        v
    }
}

/// The kinds of updates, compactly: `fork:100`, `exit:100`, `reparent:30:20>10`...
fn kinds(us: &[Update]) -> Vec<String> {
    us.iter()
        .map(|u| match u {
            Update::Event(e) => format!("{}:{}", e.body.name(), e.task.tid),
            Update::Reparent { child, old_ppid, new_ppid, .. } => {
                format!("reparent:{}:{old_ppid}>{new_ppid}", child.pid)
            }
            Update::Added { proc, origin, .. } => format!("added:{}:{origin:?}", proc.pid),
            Update::Gone { proc, reason, .. } => format!("gone:{}:{reason:?}", proc.pid),
            Update::ThreadGone { proc, tid, .. } => format!("thread_gone:{}:{tid}", proc.pid),
            Update::Dropped { proc } => format!("dropped:{}", proc.pid),
        })
        .collect()
}

#[test]
fn fork_exec_exit() {
    let mut t = T::with_init();
    let mut child = tk(100, 100, 1);
    t.apply(&[fork(10, child)]);
    let p = t.p(100);
    assert_eq!((p.pid, p.ppid, p.start_ns, p.spawned_by), (100, 1, 100_000, pr(1)));
    assert_eq!(p.user.as_deref(), Some("alice"));
    assert_eq!(p.comm.to_string(), "sh");
    assert_eq!(p.origin, Origin::Fork);
    assert!(p.is_alive());
    assert_eq!(t.tids(100), [100]);
    assert_eq!(t.kids(1), [100]);

    child.comm = Comm::from_str_lossy("ls");
    t.apply(&[exec(20, child, 100, "/bin/ls", &["ls", "-l", "/tmp"])]);
    let p = t.p(100);
    assert_eq!(p.comm.to_string(), "ls");
    assert_eq!(p.exe.as_deref(), Some("/bin/ls"));
    assert_eq!(p.argv.joined(), "ls -l /tmp");
    assert_eq!(t.tids(100), [100]);

    t.apply(&[pexit(30, child, 2, None)]);
    let p = t.p(100);
    assert_eq!(p.state, ProcState::Exited { status: Some(ExitStatus { raw: 2 << 8 }), at_ns: 30 });
    assert_eq!(p.nlwp(), 0);
    assert_eq!(kinds(&t.take()), ["fork:100", "exec:100", "exit:100"]);
    let s = t.e.stats();
    assert_eq!((s.processes, s.threads, s.exited), (1, 1, 1));
    assert_eq!(
        (s.applied.get(Kind::Fork), s.applied.get(Kind::Exec), s.applied.get(Kind::ProcessExit), s.applied.total()),
        (2, 1, 1, 4)
    );

    // Kept for the linger, then dropped.
    t.tick(30 + 2 * SEC - 1);
    assert!(t.e.process(100).is_some());
    t.tick(30 + 2 * SEC);
    assert!(t.e.process(100).is_none());
    assert_eq!(kinds(&t.take()), ["dropped:100"]);
    assert_eq!(t.kids(1), Vec::<u32>::new());
}

#[test]
fn fifty_threads_then_exit() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1))]);
    for i in 0..50u32 {
        t.apply(&[clone(20 + i as u64, tk(100, 101 + i, 1))]);
    }
    assert_eq!(t.p(100).nlwp(), 51);
    assert_eq!(t.e.stats().threads, 52);
    // Exits in another order than creation, to move entries around the index.
    for i in (0..50u32).rev().step_by(2).chain((0..50u32).step_by(2)) {
        t.apply(&[texit(100 + i as u64, tk(100, 101 + i, 1))]);
        assert!(!t.p(100).threads.contains(101 + i));
    }
    assert_eq!(t.tids(100), [100]);
    t.apply(&[pexit(200, tk(100, 100, 1), 0, None)]);
    assert!(!t.p(100).is_alive());
    let s = t.e.stats();
    assert_eq!((s.processes, s.threads, s.held_exits), (1, 1, 0));
    assert_eq!(
        (s.applied.get(Kind::Clone), s.applied.get(Kind::ThreadExit), s.applied.get(Kind::ProcessExit)),
        (50, 50, 1)
    );
}

#[test]
fn process_exit_before_sibling_thread_exit_is_held() {
    let mut t = T::with_init();
    t.apply(&[
        fork(10, tk(100, 100, 1)),
        clone(11, tk(100, 101, 1)),
        clone(12, tk(100, 102, 1)),
        fork(13, tk(200, 200, 100)),
    ]);
    t.take();
    // 101 exits; the group exit (last thread seen by the kernel: the leader) comes
    // before 102's exit, made on another CPU.
    t.apply(&[texit(20, tk(100, 101, 1)), pexit(21, tk(100, 100, 1), 0, Some(pr(1)))]);
    assert_eq!(kinds(&t.take()), ["thread_exit:101"]);
    assert!(t.p(100).is_alive());
    assert_eq!(t.e.held_exits(), 1);
    t.apply(&[texit(22, tk(100, 102, 1))]);
    assert_eq!(kinds(&t.take()), ["thread_exit:102", "exit:100", "reparent:200>1".replace(">", ":100>").as_str()]);
    let p = t.p(100);
    assert_eq!(p.exited_at(), Some(21));
    assert_eq!(t.e.held_exits(), 0);
    assert_eq!(t.p(200).ppid, 1);
    let s = t.e.stats();
    assert_eq!((s.held_exits, s.forced_exits), (1, 0));
}

/// Before Linux 6.16 the exit program reads signal->live: a thread whose exit
/// races the group's last one can claim the process exit too. The second claim
/// turns the first into that thread's exit; one process exit follows.
#[test]
fn process_exit_claimed_by_two_threads() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1)), clone(11, tk(100, 101, 1))]);
    t.take();
    t.apply(&[pexit(20, tk(100, 101, 1), 0, None)]);
    assert!(t.take().is_empty());
    t.apply(&[pexit(21, tk(100, 100, 1), 3, None)]);
    assert_eq!(kinds(&t.take()), ["thread_exit:101", "exit:100"]);
    assert!(!t.p(100).is_alive());
    assert_eq!(t.e.held_exits(), 0);
    let s = t.e.stats();
    assert_eq!((s.held_exits, s.forced_exits, s.claimed_twice, s.stale), (1, 0, 1, 0));
}

#[test]
fn held_exit_is_released_by_the_deadline() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1)), clone(11, tk(100, 101, 1))]);
    t.apply(&[pexit(100 * MS, tk(100, 100, 1), 0, None)]);
    t.take();
    t.tick(150 * MS - 1);
    assert!(t.take().is_empty());
    assert!(t.p(100).is_alive());
    t.tick(150 * MS);
    assert_eq!(kinds(&t.take()), ["exit:100"]);
    assert_eq!(t.p(100).exited_at(), Some(100 * MS));
    assert_eq!(t.e.stats().threads, 1);
    assert_eq!(t.e.stats().forced_exits, 1);
    // The late thread exit is stale now.
    t.apply(&[texit(151 * MS, tk(100, 101, 1))]);
    assert!(t.take().is_empty());
    assert_eq!(t.e.stats().stale, 1);

    // Event time releases it too: any later event past the deadline.
    t.apply(&[fork(200 * MS, tk(300, 300, 1)), clone(201 * MS, tk(300, 301, 1))]);
    t.apply(&[pexit(202 * MS, tk(300, 300, 1), 0, None)]);
    t.take();
    t.apply(&[fork(260 * MS, tk(400, 400, 1))]);
    assert_eq!(kinds(&t.take()), ["exit:300", "fork:400"]);
}

#[test]
fn exec_from_a_non_leader_thread() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1)), clone(11, tk(100, 101, 1)), clone(12, tk(100, 102, 1))]);
    // 101 execs: the kernel kills 102 and the old leader, then 101 takes tid 100
    // and the leader's start time.
    let mut after = tk(100, 100, 1);
    after.comm = Comm::from_str_lossy("python3");
    t.apply(&[
        texit(20, tk(100, 102, 1)),
        texit(21, tk(100, 100, 1)),
        exec(22, after, 101, "/usr/bin/python3", &["python3", "x.py"]),
    ]);
    let p = t.p(100);
    assert_eq!(p.id(), pr(100));
    assert!(p.is_alive());
    assert_eq!(t.tids(100), [100]);
    let th = t.p(100).threads.get(100).copied();
    assert_eq!(th, Some(Thread { tid: 100, comm: Comm::from_str_lossy("python3"), ns_tid: 100, start_ns: 100_000 }));
    assert_eq!(t.p(100).comm.to_string(), "python3");
    assert_eq!(t.p(100).argv.joined(), "python3 x.py");
    assert_eq!(t.e.stats().threads, 2);
}

#[test]
fn pid_reuse_with_another_start_time() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(200, 200, 1)), clone(11, tk(200, 201, 1))]);
    t.take();
    // The exit of 200 was missed; pid 200 now names a process started later.
    let mut new = tk(200, 200, 1);
    new.proc_start_ns = 9_000_000;
    new.start_ns = 9_000_000;
    t.apply(&[fork(9_000_000, new)]);
    assert_eq!(kinds(&t.take()), ["gone:200:PidReused", "fork:200"]);
    assert_eq!(t.p(200).start_ns, 9_000_000);
    assert_eq!(t.tids(200), [200]);
    let old = t.e.get(pr(200)).expect("old one kept, exited");
    assert_eq!(old.state, ProcState::Exited { status: None, at_ns: 9_000_000 });
    assert_eq!(t.e.stats().pid_reuses, 1);
    assert_eq!(t.e.stats().threads, 2);
    // Late events about the old one are stale: they change nothing.
    t.apply(&[texit(9_000_001, tk(200, 201, 1)), rename(9_000_002, tk(200, 200, 1), "old")]);
    assert!(t.take().is_empty());
    assert_eq!(t.e.stats().stale, 2);
    assert_eq!(t.p(200).comm.to_string(), "sh");
    // Both are children of init: the live one in its index, the exited one counted.
    assert_eq!((t.p(1).children.len(), t.p(1).exited_children), (1, 1));
    let mut kids: Vec<ProcRef> = t.e.children(1).map(|p| p.id()).collect();
    kids.sort();
    assert_eq!(kids, [pr(200), ProcRef { pid: 200, start_ns: 9_000_000 }]);
}

#[test]
fn reparent_to_reaper() {
    let mut t = T::with_init();
    t.apply(&[
        fork(10, tk(10, 10, 1)),
        fork(20, tk(20, 20, 10)),
        fork(30, tk(30, 30, 20)),
        fork(31, tk(31, 31, 20)),
        pexit(40, tk(31, 31, 20), 0, None),
    ]);
    t.take();
    // 20 exits; 10 is a child subreaper: the live child 30 goes to it.
    t.apply(&[pexit(50, tk(20, 20, 10), 0, Some(pr(10)))]);
    assert_eq!(kinds(&t.take()), ["exit:20", "reparent:30:20>10"]);
    let c = t.p(30);
    assert_eq!((c.ppid, c.parent_start_ns, c.spawned_by), (10, 10_000, pr(20)));
    assert_eq!(t.kids(10), [20, 30]);
    // The exited child 31 stays under its exited parent.
    assert_eq!(t.kids(20), [31]);
    assert!(t.e.is_descendant(30, 10));
    assert!(t.e.is_descendant(30, 1));
    assert!(!t.e.is_descendant(30, 20));
    // A later event of 30 shows the new parent: nothing to correct.
    t.apply(&[rename(60, tk(30, 30, 10), "w")]);
    assert_eq!(kinds(&t.take()), ["rename:30"]);
    // An event made before the kernel moved it (old parent, exited in the model) is
    // not taken as a parent change.
    t.apply(&[rename(61, tk(30, 30, 20), "x")]);
    assert_eq!(t.p(30).ppid, 10);
    assert_eq!(t.e.stats().repairs.reparented, 0);
    t.take();
    // After the linger: 31 (exited at 40) goes, then 20 (no children left).
    t.tick(50 + 2 * SEC);
    assert_eq!(kinds(&t.take()), ["dropped:31", "dropped:20"]);
    assert_eq!(t.kids(10), [30]);
}

#[test]
fn orphan_linger_and_exited_ancestor_retention() {
    let mut t = T::with_init();
    // 50 is a container's init: when it exits, the kernel names no reaper and its
    // children stay its own until they die.
    t.apply(&[fork(10, tk(50, 50, 1)), fork(11, tk(51, 51, 50)), fork(12, tk(52, 52, 51)), fork(13, tk(60, 60, 1))]);
    t.apply(&[
        pexit(100, tk(50, 50, 1), 9, None),
        pexit(101, tk(51, 51, 50), 9, None),
        pexit(102, tk(60, 60, 1), 0, None),
    ]);
    t.take();
    // 60 has no children: dropped at its linger. 50 and 51 have a live descendant.
    t.tick(10 * SEC);
    assert_eq!(kinds(&t.take()), ["dropped:60"]);
    assert!(!t.p(50).is_alive() && !t.p(51).is_alive());
    assert!(t.p(52).is_alive());
    assert!(t.e.is_descendant(52, 50));
    assert_eq!(t.e.roots().iter().map(|p| p.pid).collect::<Vec<_>>(), [1]);
    // The last descendant exits: after its linger it goes, and its exited ancestors with it.
    t.apply(&[pexit(11 * SEC, tk(52, 52, 51), 9, None)]);
    t.tick(13 * SEC - 1);
    assert!(t.take().iter().all(|u| matches!(u, Update::Event(_))));
    t.tick(13 * SEC);
    assert_eq!(kinds(&t.take()), ["dropped:52", "dropped:51", "dropped:50"]);
    assert_eq!(t.e.len(), 1);
    let s = t.e.stats();
    assert_eq!((s.processes, s.exited, s.threads), (1, 0, 1));
}

#[test]
fn rename_leader_and_thread() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1)), clone(11, tk(100, 101, 1))]);
    t.apply(&[rename(12, tk(100, 101, 1), "worker"), rename(13, tk(100, 100, 1), "main")]);
    assert_eq!(t.p(100).comm.to_string(), "main");
    assert_eq!(t.p(100).threads.get(101).map(|th| th.comm.to_string()).as_deref(), Some("worker"));
    assert_eq!(t.p(100).threads.get(100).map(|th| th.comm.to_string()).as_deref(), Some("main"));
}

#[test]
fn cgroup_move_without_exec() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(100, 100, 1)), clone(11, tk(100, 101, 1))]);
    assert_eq!(t.p(100).cgroup_id, 7);
    // A non-leader thread moved alone (threaded cgroup): the process stays.
    let mut th = attach(12, tk(100, 101, 1), 55);
    th.body = Body::CgroupAttach { threadgroup: false, path: None };
    t.apply(&[th]);
    assert_eq!(t.p(100).cgroup_id, 7);
    // The process moved (cgroup.procs): the leader's task says where to.
    t.apply(&[attach(13, tk(100, 100, 1), 99)]);
    assert_eq!(t.p(100).cgroup_id, 99);
    assert_eq!(t.e.stats().applied.get(Kind::CgroupAttach), 2);
}

#[test]
fn fork_inherits_program_and_user_from_creator() {
    let mut t = T::with_init();
    let mut a = tk(100, 100, 1);
    a.comm = Comm::from_str_lossy("bash");
    t.apply(&[fork(10, a), exec(11, a, 100, "/bin/bash", &["bash", "-l"]), clone(12, tk(100, 101, 1))]);
    // A thread of 100 forks.
    let mut c = tk(200, 200, 100);
    c.comm = Comm::from_str_lossy("bash");
    t.apply(&[ev(13, c, Body::Fork { creator_tid: 101 })]);
    let p = t.p(200);
    assert_eq!(p.exe.as_deref(), Some("/bin/bash"));
    assert_eq!(p.argv.joined(), "bash -l");
    assert_eq!(p.user.as_deref(), Some("alice"));
    // A setuid exec changes the user.
    let mut r = c;
    r.uid = 0;
    t.apply(&[exec(14, r, 200, "/usr/bin/sudo", &["sudo", "id"])]);
    assert_eq!((t.p(200).uid, t.p(200).user.as_deref()), (0, Some("root")));
}

#[test]
fn events_about_unknown_processes() {
    let mut t = T::with_init();
    // Fork missed: a clone infers the process; an exit of a never seen one is stale.
    t.apply(&[clone(10, tk(300, 301, 1)), pexit(11, tk(400, 400, 1), 0, None)]);
    assert_eq!(kinds(&t.take()), ["added:300:Inferred", "clone:301"]);
    assert_eq!(t.p(300).origin, Origin::Inferred);
    assert_eq!(t.tids(300), [301]);
    let s = t.e.stats();
    assert_eq!((s.inferred, s.stale), (1, 1));
    // Its exit applies at once: no other thread known.
    t.apply(&[pexit(12, tk(300, 301, 1), 0, None)]);
    assert_eq!(kinds(&t.take()), ["exit:301"]);
}

#[test]
fn parent_change_seen_in_an_event_is_followed() {
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(10, 10, 1)), fork(20, tk(20, 20, 10))]);
    t.take();
    // 10's exit was lost; 20's next event shows init as its parent.
    t.apply(&[rename(30, tk(20, 20, 1), "x")]);
    assert_eq!(kinds(&t.take()), ["reparent:20:10>1", "rename:20"]);
    assert_eq!(t.kids(1), [10, 20]);
    assert_eq!(t.e.stats().repairs.reparented, 1);
}

#[test]
fn children_and_threads_large_sets() {
    let mut t = T::with_init();
    for pid in 100..1100u32 {
        t.apply(&[fork(pid as u64, tk(pid, pid, 1))]);
    }
    assert_eq!(t.p(1).children.len(), 1000);
    for pid in (100..1100u32).step_by(3) {
        t.apply(&[pexit(2000 + pid as u64, tk(pid, pid, 1), 0, None)]);
    }
    t.tick(10 * SEC);
    assert_eq!(t.p(1).children.len(), 666);
    assert!(t.p(1).children.heap_bytes() < 666 * 100, "{}", t.p(1).children.heap_bytes());
}

#[test]
fn process_struct_is_compact() {
    assert!(size_of::<Process>() <= 320, "Process is {} bytes", size_of::<Process>());
    assert!(size_of::<KeyedVec<Thread>>() <= 72);
    assert_eq!(size_of::<Thread>(), 32);
}

#[test]
fn exited_processes_are_capped() {
    let users = UserTable::from_passwd("");
    let mut e = Engine::with_users(EngineConfig { max_exited: 10, ..cfg() }, users);
    let mut out = Vec::new();
    e.apply(fork(1, tk(1, 1, 0)), &mut out);
    // 100 exits within the linger; one of the exited processes keeps a live child.
    for pid in 100..200u32 {
        e.apply(fork(pid as u64, tk(pid, pid, 1)), &mut out);
    }
    e.apply(fork(300, tk(300, 300, 150)), &mut out);
    for pid in 100..200u32 {
        e.apply(pexit(1000 + pid as u64, tk(pid, pid, 1), 0, None), &mut out);
    }
    e.tick(2000, &mut out);
    e.check_invariants().expect("invariants");
    let s = e.stats();
    // Ten stay: the one with a live child, and the nine newest.
    assert_eq!(s.exited, 10);
    assert!(e.get(pr(150)).is_some_and(|p| !p.is_alive()));
    assert!(e.get(pr(191)).is_some() && e.get(pr(190)).is_none());
    // It goes once its child is gone and its linger has passed.
    e.apply(pexit(3000, tk(300, 300, 150), 0, None), &mut out);
    e.tick(2 * SEC + 3000, &mut out);
    e.check_invariants().expect("invariants");
    assert!(e.get(pr(150)).is_none() && e.get(pr(300)).is_none());
    assert_eq!(e.stats().exited, 0);
}

#[test]
fn engine_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Engine>();
    send::<Update>();
}

#[test]
fn setuid_without_exec_shows_in_new_threads() {
    // Apache's children: forked as root, setuid to www-data, then start threads.
    let mut t = T::with_init();
    let mut child = tk(20, 20, 1);
    child.uid = 0;
    t.apply(&[fork(2, child)]);
    assert_eq!(t.e.process(20).map(|p| p.uid), Some(0));
    let mut th = tk(20, 21, 1);
    th.uid = 1000;
    th.gid = 1000;
    t.apply(&[clone(3, th)]);
    let p = t.e.process(20).expect("process 20");
    assert_eq!((p.uid, p.gid, p.user.as_deref()), (1000, 1000, Some("alice")));
}
