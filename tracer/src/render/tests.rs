//! Render tests: small models against exact output.

use super::*;
use crate::engine::testkit::*;
use crate::engine::{Engine, UserTable};
use crate::event::Comm;

const H: u64 = 3600 * SEC;
/// 2026-05-19T22:00:00Z.
const BOOT: i128 = 1_779_228_000 * 1_000_000_000;

/// Boot at 2026-05-19 22:00 UTC; now is 2026-05-20 10:30 UTC.
fn opts() -> RenderOptions {
    RenderOptions {
        boot_epoch_ns: BOOT,
        utc_offset_s: 0,
        now_ns: 12 * H + 30 * 60 * SEC,
        page_size: 4096,
        show_exited: true,
    }
}

fn at(mut t: crate::event::TaskInfo, start: u64) -> crate::event::TaskInfo {
    t.proc_start_ns = start;
    t.start_ns = start;
    t
}

fn named(mut t: crate::event::TaskInfo, comm: &str) -> crate::event::TaskInfo {
    t.comm = Comm::from_str_lossy(comm);
    t
}

/// init and kthreadd (started at boot, yesterday), a kworker, a shell with a
/// two-threaded sleep and an exited child, and a daemon of a user without a name.
fn model() -> Engine {
    let users = UserTable::from_passwd("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    let mut e = Engine::with_users(cfg(), users);
    let mut out = Vec::new();
    let mut init = named(tk(1, 1, 0), "systemd");
    init.uid = 0;
    let mut kthreadd = named(tk(2, 2, 0), "kthreadd");
    kthreadd.uid = 0;
    kthreadd.kthread = true;
    let mut kworker = named(tk(3, 3, 2), "kworker/0:1");
    kworker.uid = 0;
    kworker.kthread = true;
    kworker.parent_start_ns = 2000;
    let bash = named(at(tk(500, 500, 1), 11 * H), "bash");
    let mut sleep = named(at(tk(600, 600, 500), 11 * H + 30 * 60 * SEC), "sleep");
    sleep.parent_start_ns = 11 * H;
    let mut sleep2 = sleep;
    sleep2.tid = 601;
    sleep2.start_ns = 11 * H + 31 * 60 * SEC;
    let mut daemon = named(at(tk(800, 800, 1), 12 * H), "python3");
    daemon.uid = 33;
    let walk = vec![
        snap(12 * H, init, "systemd", &["/sbin/init", "splash"]),
        snap(12 * H + 1, kthreadd, "", &[]),
        snap(12 * H + 2, kworker, "", &[]),
        snap(12 * H + 3, bash, "bash", &["-bash"]),
        snap(12 * H + 4, sleep, "sleep", &["sleep", "100"]),
        snap(12 * H + 5, sleep2, "sleep", &["sleep", "100"]),
        snap(12 * H + 6, daemon, "python3.11", &["python3", "-m", "http.server"]),
    ];
    e.apply_snapshot(walk, Vec::new(), &mut out);
    // After the walk: the shell runs `false`, which exits 1.
    let mut f = at(tk(700, 700, 500), 12 * H + 10 * SEC);
    f.parent_start_ns = 11 * H;
    e.apply(fork(12 * H + 10 * SEC, f), &mut out);
    e.apply(exec(12 * H + 10 * SEC + 1, named(f, "false"), 700, "/bin/false", &["false"]), &mut out);
    e.apply(pexit(12 * H + 11 * SEC, f, 1, None), &mut out);
    e.check_invariants().expect("invariants");
    e
}

#[test]
fn forest_like_ps_afx() {
    let e = model();
    let s = forest(&e, &Filter::default(), &opts());
    let want = "\
USER  PID PPID NLWP START TIME RSS COMMAND
root    1    0    1 May19 0:00 400 /sbin/init splash
alice 500    1    1 09:00 0:00 400  \\_ -bash
alice 600  500    2 09:30 0:00 400      \\_ sleep 100
alice 700  500    0 10:00    -   -      \\_ false <exited: exit 1>
33    800    1    1 10:00 0:00 400  \\_ python3 -m http.server
root    2    0    1 May19 0:00 400 [kthreadd]
root    3    2    1 May19 0:00 400  \\_ [kworker/0:1]
";
    assert_eq!(s, want, "\n{s}");
}

#[test]
fn forest_without_usage_or_exited() {
    let users = UserTable::from_passwd("");
    let mut e = Engine::with_users(cfg(), users);
    let mut out = Vec::new();
    e.apply(fork(10, tk(1, 1, 0)), &mut out);
    e.apply(fork(11, tk(10, 10, 1)), &mut out);
    e.apply(fork(12, tk(20, 20, 10)), &mut out);
    e.apply(fork(13, tk(30, 30, 20)), &mut out);
    e.apply(pexit(14, tk(30, 30, 20), 0, None), &mut out);
    let o = RenderOptions { boot_epoch_ns: BOOT, now_ns: 0, show_exited: false, ..RenderOptions::default() };
    let want = "\
USER PID PPID NLWP START COMMAND
1000   1    0    1 22:00 [sh]
1000  10    1    1 22:00  \\_ [sh]
1000  20   10    1 22:00      \\_ [sh]
";
    assert_eq!(forest(&e, &Filter::default(), &o), want);
}

#[test]
fn filters() {
    let e = model();
    let pids = |f: Filter| select(&e, &f, &opts()).iter().map(|r| (r.process.pid, r.depth)).collect::<Vec<_>>();
    assert_eq!(pids(Filter { pid: Some(500), ..Filter::default() }), [(500, 0), (600, 1), (700, 1)]);
    assert_eq!(pids(Filter { pid: Some(2), ..Filter::default() }), [(2, 0), (3, 1)]);
    assert_eq!(pids(Filter { pid: Some(4242), ..Filter::default() }), []);
    assert_eq!(pids(Filter { comm: Some("sleep".into()), ..Filter::default() }), [(600, 0)]);
    assert_eq!(pids(Filter { user: Some("alice".into()), ..Filter::default() }), [(500, 0), (600, 1), (700, 1)]);
    assert_eq!(pids(Filter { user: Some("1000".into()), ..Filter::default() }), [(500, 0), (600, 1), (700, 1)]);
    assert_eq!(pids(Filter { user: Some("33".into()), ..Filter::default() }), [(800, 0)]);
    assert_eq!(pids(Filter { pid: Some(1), user: Some("root".into()), ..Filter::default() }), [(1, 0)],);
    let s = forest(&e, &Filter { pid: Some(500), ..Filter::default() }, &opts());
    let want = "\
USER  PID PPID NLWP START TIME RSS COMMAND
alice 500    1    1 09:00 0:00 400 -bash
alice 600  500    2 09:30 0:00 400  \\_ sleep 100
alice 700  500    0 10:00    -   -  \\_ false <exited: exit 1>
";
    assert_eq!(s, want, "\n{s}");
}

#[test]
fn threads_like_ps_elf() {
    let e = model();
    let s = threads(&e, &Filter::default(), &opts());
    let want = "\
UID   PID PPID LWP NLWP STIME CMD
root    1    0   1    1 May19 /sbin/init splash
root    2    0   2    1 May19 [kthreadd]
root    3    2   3    1 May19 [kworker/0:1]
alice 500    1 500    1 09:00 -bash
alice 600  500 600    2 09:30 sleep 100
alice 600  500 601    2 09:31 sleep 100
33    800    1 800    1 10:00 python3 -m http.server
";
    assert_eq!(s, want, "\n{s}");
}

#[test]
fn json_is_a_flat_list_in_forest_order() {
    let e = model();
    let v = json(&e, &Filter::default(), &opts());
    assert_eq!(v["degraded"], false);
    let procs = v["processes"].as_array().expect("array");
    let order: Vec<(u64, u64)> =
        procs.iter().map(|p| (p["pid"].as_u64().unwrap_or(0), p["depth"].as_u64().unwrap_or(9))).collect();
    assert_eq!(order, [(1, 0), (500, 1), (600, 2), (700, 2), (800, 1), (2, 0), (3, 1)]);
    let sleep = &procs[2];
    assert_eq!(
        *sleep,
        serde_json::json!({
            "pid": 600,
            "start_ns": 11 * H + 30 * 60 * SEC,
            "start_time": "2026-05-20T09:30:00.000000000Z",
            "ppid": 500,
            "parent_start_ns": 11 * H,
            "spawned_by": {"pid": 500, "start_ns": 11 * H},
            "uid": 1000,
            "gid": 1000,
            "user": "alice",
            "comm": "sleep",
            "exe": "sleep",
            "argv": ["sleep", "100"],
            "argv_truncated": false,
            "argv_unreadable": false,
            "command": "sleep 100",
            "cgroup_id": 7,
            "pidns": 4026531836u32,
            "mntns": 4026531841u32,
            "ns_pid": 600,
            "kthread": false,
            "origin": "snapshot",
            "state": "alive",
            "exit": null,
            "exited_at_ns": null,
            "utime_ns": 6 * MS,
            "stime_ns": 2 * MS,
            "rss_pages": 100,
            "nlwp": 2,
            "depth": 2,
            "children": [],
            "threads": [
                {"tid": 600, "comm": "sleep", "start_ns": 11 * H + 30 * 60 * SEC},
                {"tid": 601, "comm": "sleep", "start_ns": 11 * H + 31 * 60 * SEC},
            ],
        })
    );
    let exited = &procs[3];
    assert_eq!(exited["state"], "exited");
    assert_eq!(exited["exit"]["code"], 1);
    assert_eq!(exited["exited_at_ns"], 12 * H + 11 * SEC);
    assert_eq!(exited["exe"], "/bin/false");
    assert_eq!(exited["rss_pages"], serde_json::Value::Null);
    assert_eq!(procs[1]["children"], serde_json::json!([600, 700]));
    assert_eq!(procs[4]["user"], serde_json::Value::Null);
    assert_eq!(procs[6]["command"], "[kworker/0:1]");
}

#[test]
fn start_column_like_ps() {
    let o = opts();
    // Today: HH:MM; earlier this year: MonDD; another year: the year.
    assert_eq!(format_start(&o, 12 * H), "10:00");
    assert_eq!(format_start(&o, H), "May19");
    let o2 = RenderOptions { boot_epoch_ns: 1_767_222_000 * 1_000_000_000, now_ns: 2 * H, ..o };
    assert_eq!(format_start(&o2, 0), "2025");
    assert_eq!(format_start(&o2, 2 * H), "01:00");
    // Local time: two hours east of UTC the day has already turned.
    let o3 = RenderOptions { utc_offset_s: 2 * 3600, ..o };
    assert_eq!(format_start(&o3, 12 * H), "12:00");
    assert_eq!(format_start(&o3, 2 * H), "02:00");
    assert_eq!(format_rfc3339(BOOT, 1), "2026-05-19T22:00:00.000000001Z");
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(20_513), (2026, 3, 1));
}

#[test]
fn deep_chains_do_not_overflow() {
    let users = UserTable::from_passwd("");
    let mut e = Engine::with_users(cfg(), users);
    let mut out = Vec::new();
    e.apply(fork(1, tk(1, 1, 0)), &mut out);
    for pid in 2..20_000u32 {
        e.apply(fork(pid as u64, tk(pid, pid, pid - 1)), &mut out);
    }
    let rows = select(&e, &Filter::default(), &RenderOptions::default());
    assert_eq!(rows.len(), 19_999);
    assert_eq!(rows.last().map(|r| r.depth), Some(19_998));
    assert!(e.is_descendant(19_999, 1));
}
