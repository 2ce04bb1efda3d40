//! Engine tests of task iterator walks: the start-up walk, events during a
//! walk, zombie leaders, and the repair of the model after lost events.

use super::*;

/// A walk of the system at start-up: init, a shell and its child.
fn startup(t: &mut T) -> Seen {
    let mut init = tk(1, 1, 0);
    init.uid = 0;
    init.comm = Comm::from_str_lossy("systemd");
    let mut kthreadd = tk(2, 2, 0);
    kthreadd.kthread = true;
    kthreadd.uid = 0;
    kthreadd.comm = Comm::from_str_lossy("kthreadd");
    let walk = vec![
        snap(1000, init, "systemd", &["/sbin/init"]),
        snap(1001, kthreadd, "", &[]),
        snap(1002, tk(500, 500, 1), "bash", &["-bash"]),
        snap(1003, tk(600, 600, 500), "sleep", &["sleep", "100"]),
    ];
    t.e.apply_snapshot(walk, Vec::new(), &mut t.out)
}

#[test]
fn startup_walk_builds_the_tree() {
    let mut t = T::new();
    let seen = startup(&mut t);
    t.e.check_invariants().expect("invariants");
    assert_eq!(seen.counts(), (4, 4));
    assert_eq!(kinds(&t.take()), ["snapshot:1", "snapshot:2", "snapshot:500", "snapshot:600"]);
    assert_eq!(t.e.roots().iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 2]);
    let p = t.p(600);
    assert_eq!((p.ppid, p.origin, p.exe.as_deref()), (500, Origin::Snapshot, Some("sleep")));
    assert_eq!(p.argv.joined(), "sleep 100");
    assert_eq!(p.usage.as_deref(), Some(&Usage { utime_ns: 3 * MS, stime_ns: MS, rss_pages: 100, walk: 1 }));
    assert!(t.p(2).kthread);
    assert_eq!(t.p(1).user.as_deref(), Some("root"));
    assert_eq!(t.e.stats().walks, 1);
}

/// A walk on a kernel without sleepable iterators reads no argv: the process
/// says its argv is unreadable (with its real length), not that it is empty;
/// an exec after it brings the real argv.
#[test]
fn walk_without_argv_flags_it_unreadable() {
    let mut t = T::new();
    let mut e = snap(1000, tk(500, 500, 1), "bash", &[]);
    if let Body::Snapshot { argv, .. } = &mut e.body {
        argv.unreadable = true;
        argv.real_len = 12;
    }
    t.e.apply_snapshot(vec![snap(999, tk(1, 1, 0), "init", &["init"]), e], Vec::new(), &mut t.out);
    let p = t.p(500);
    assert!(p.argv.unreadable && p.argv.raw.is_empty(), "{:?}", p.argv);
    assert_eq!(p.argv.real_len, 12);
    t.e.apply(exec(2000, tk(500, 500, 1), 500, "/bin/ls", &["ls", "-l"]), &mut t.out);
    let p = t.p(500);
    assert!(!p.argv.unreadable, "{:?}", p.argv);
    assert_eq!(p.argv.joined(), "ls -l");
}

#[test]
fn walk_with_a_fork_during_it() {
    // (a1) The fork event is stamped before the walk visits the child.
    let mut t = T::new();
    let live = vec![fork(1500, tk(700, 700, 500))];
    let walk = vec![
        snap(1000, tk(1, 1, 0), "init", &["init"]),
        snap(1002, tk(500, 500, 1), "bash", &["bash"]),
        snap(1600, tk(700, 700, 500), "bash", &["bash"]),
    ];
    t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(kinds(&t.take()), ["snapshot:1", "snapshot:500", "fork:700", "snapshot:700"]);
    assert_eq!(t.p(700).origin, Origin::Fork);
    assert_eq!(t.p(700).argv.joined(), "bash");
    assert_eq!(t.tids(700), [700]);

    // (a2) The walk visits the child before its fork event is stamped.
    let mut t = T::new();
    let live = vec![fork(1700, tk(700, 700, 500))];
    let walk = vec![
        snap(1000, tk(1, 1, 0), "init", &["init"]),
        snap(1002, tk(500, 500, 1), "bash", &["bash"]),
        snap(1600, tk(700, 700, 500), "bash", &["bash"]),
    ];
    t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(kinds(&t.take()), ["snapshot:1", "snapshot:500", "snapshot:700", "fork:700"]);
    assert_eq!(t.e.len(), 3);
    assert_eq!(t.tids(700), [700]);
    assert_eq!(t.e.stats().threads, 3);
    assert_eq!(t.kids(500), [700]);

    // (a3) The child's pid is below its parent's: visited first, adopted later.
    let mut t = T::new();
    let walk = vec![
        snap(1000, tk(1, 1, 0), "init", &["init"]),
        snap(1001, tk(30, 30, 900), "c", &["c"]),
        snap(1002, tk(900, 900, 1), "p", &["p"]),
    ];
    t.e.apply_snapshot(walk, Vec::new(), &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(t.kids(900), [30]);
    assert_eq!(t.e.roots().iter().map(|p| p.pid).collect::<Vec<_>>(), [1]);
}

#[test]
fn walk_with_an_exit_during_it() {
    // (b1) The exit is stamped before the visit: the visit finds a zombie, or (read
    // just before the exit, stamped after it) a live-looking task: neither brings
    // it back.
    let mut t = T::with_init();
    t.apply(&[
        fork(10, tk(800, 800, 1)),
        fork(11, tk(801, 801, 1)),
        clone(12, tk(802, 802, 1)),
        fork(13, tk(802, 802, 1)),
    ]);
    let live = vec![pexit(1500, tk(800, 800, 1), 0, None), pexit(1501, tk(801, 801, 1), 0, None)];
    let walk = vec![
        snap(1000, tk(1, 1, 0), "init", &["init"]),
        zombie(1600, tk(800, 800, 1)),
        snap(1601, tk(801, 801, 1), "x", &["x"]),
    ];
    t.take();
    let seen = t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(kinds(&t.take()), ["snapshot:1", "exit:800", "exit:801"]);
    assert!(!t.p(800).is_alive() && !t.p(801).is_alive());
    assert!(!seen.has_process(pr(800)) && !seen.has_process(pr(801)));

    // (b2) The exit is stamped after the visit.
    let live = vec![pexit(2500, tk(900, 900, 1), 0, None)];
    t.apply(&[fork(1700, tk(900, 900, 1))]);
    let walk = vec![snap(2000, tk(1, 1, 0), "init", &["init"]), snap(2001, tk(900, 900, 1), "y", &["y"])];
    t.take();
    t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(kinds(&t.take()), ["snapshot:1", "snapshot:900", "exit:900"]);
    assert_eq!(t.p(900).exited_at(), Some(2500));

    // A thread read alive just before its exit but stamped after it is not brought back.
    t.apply(&[fork(2600, tk(950, 950, 1)), clone(2601, tk(950, 951, 1))]);
    let live = vec![texit(3005, tk(950, 951, 1))];
    let walk = vec![snap(3000, tk(950, 950, 1), "z", &["z"]), snap(3010, tk(950, 951, 1), "z", &["z"])];
    let seen = t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(t.tids(950), [950]);
    assert!(!seen.has_thread(951, 951_000));
}

#[test]
fn walk_with_a_zombie_leader_whose_threads_live() {
    let mut t = T::new();
    let walk = vec![
        snap(1000, tk(1, 1, 0), "init", &["init"]),
        zombie(1001, tk(400, 400, 1)),
        snap(1002, tk(400, 401, 1), "srv", &["srv", "-d"]),
        snap(1003, tk(400, 402, 1), "srv", &["srv", "-d"]),
        // A plain zombie: its process has ended.
        zombie(1004, tk(450, 450, 1)),
    ];
    let seen = t.e.apply_snapshot(walk, Vec::new(), &mut t.out);
    t.e.check_invariants().expect("invariants");
    let p = t.p(400);
    assert!(p.is_alive());
    assert_eq!(p.argv.joined(), "srv -d");
    assert_eq!(p.exe.as_deref(), Some("srv"));
    assert_eq!(t.tids(400), [401, 402]);
    assert!(seen.has_process(pr(400)) && !seen.has_thread(400, 400_000));
    assert!(t.e.process(450).is_none());
    assert_eq!(kinds(&t.take()), ["snapshot:1", "snapshot:400", "snapshot:401", "snapshot:402"]);
    // A reconcile with this walk keeps it.
    t.e.reconcile(&seen, 999, 0, &mut t.out);
    assert!(t.take().is_empty());

    // The model had the leader thread (its exit was lost): the walk marks it gone.
    let mut t = T::with_init();
    t.apply(&[fork(10, tk(400, 400, 1)), clone(11, tk(400, 401, 1))]);
    t.take();
    let walk = vec![zombie(1001, tk(400, 400, 1)), snap(1002, tk(400, 401, 1), "srv", &["srv"])];
    t.e.apply_snapshot(walk, Vec::new(), &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(kinds(&t.take()), ["thread_gone:400:400", "snapshot:400", "snapshot:401"]);
    assert_eq!(t.tids(400), [401]);
    assert!(t.p(400).is_alive());
}

#[test]
fn reconcile_after_lost_events() {
    let mut t = T::new();
    startup(&mut t);
    t.apply(&[fork(2000, tk(550, 550, 500)), clone(2001, tk(550, 551, 500))]);
    t.take();
    // Lost: the exit of 600, the fork of 700 and its clone, the exit of thread 551.
    t.e.set_lost(4);
    assert!(t.e.degraded());
    let walk_start = SEC;
    let lost_at_start = t.e.lost();
    // Live during the walk: 800 forks after the walk started (the walk misses it).
    let mut late = tk(800, 800, 1);
    late.start_ns = SEC + 100;
    late.proc_start_ns = SEC + 100;
    let live = vec![fork(SEC + 100, late)];
    let mut init = tk(1, 1, 0);
    init.uid = 0;
    init.comm = Comm::from_str_lossy("systemd");
    let walk = vec![
        snap(SEC + 1, init, "systemd", &["/sbin/init"]),
        snap(SEC + 2, tk(500, 500, 1), "bash", &["-bash"]),
        snap(SEC + 3, tk(550, 550, 500), "bash", &["-bash"]),
        snap(SEC + 4, tk(700, 700, 500), "make", &["make", "-j2"]),
        snap(SEC + 5, tk(700, 701, 500), "make", &["make", "-j2"]),
    ];
    let seen = t.e.apply_snapshot(walk, live, &mut t.out);
    t.e.reconcile(&seen, walk_start, lost_at_start, &mut t.out);
    t.e.check_invariants().expect("invariants");
    assert_eq!(
        kinds(&t.take()),
        [
            "snapshot:1",
            "snapshot:500",
            "snapshot:550",
            "added:700:Snapshot",
            "snapshot:700",
            "snapshot:701",
            "fork:800",
            // kthreadd (2) was not in this walk either.
            "gone:2:NotInWalk",
            "thread_gone:550:551",
            "gone:600:NotInWalk",
        ]
    );
    assert!(!t.p(600).is_alive());
    assert_eq!(t.p(600).state, ProcState::Exited { status: None, at_ns: walk_start });
    assert_eq!(t.tids(700), [700, 701]);
    assert_eq!(t.tids(550), [550]);
    assert!(t.p(800).is_alive());
    let s = t.e.stats();
    assert_eq!(
        s.repairs,
        Repairs { added_processes: 1, added_threads: 2, removed_processes: 2, removed_threads: 1, reparented: 0 }
    );
    assert!(!s.degraded);
    assert_eq!((s.walks, s.lost), (2, 4));
    // More losses after the walk started: degraded again.
    t.e.set_lost(5);
    assert!(t.e.degraded());
}
