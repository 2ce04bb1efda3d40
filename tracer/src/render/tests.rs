//! Render tests: small models against exact output.

use super::*;
use crate::engine::testkit::*;
use crate::engine::{Engine, UserTable};
use crate::events::{Comm, select::CommGlob};

const H: u64 = 3600 * SEC;
/// 2026-05-19T22:00:00Z.
const BOOT: i128 = 1_779_228_000 * 1_000_000_000;

/// Boot at 2026-05-19 22:00 UTC; now is 2026-05-20 10:30 UTC.
fn opts() -> RenderOptions {
    RenderOptions {
        boot_epoch_ns: BOOT,
        tz: jiff::tz::TimeZone::UTC,
        now_ns: 12 * H + 30 * 60 * SEC,
        page_size: 4096,
        show_exited: true,
    }
}

fn at(mut t: crate::events::TaskInfo, start: u64) -> crate::events::TaskInfo {
    t.proc_start_ns = start;
    t.start_ns = start;
    t
}

fn named(mut t: crate::events::TaskInfo, comm: &str) -> crate::events::TaskInfo {
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
    sleep2.ns_tid = 601;
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
USER  PID NSPID PPID NLWP START TIME RSS COMMAND
root    1     -    0    1 May19 0:00 400 /sbin/init splash
alice 500     -    1    1 09:00 0:00 400  \\_ -bash
alice 600     -  500    2 09:30 0:00 400      \\_ sleep 100
alice 700     -  500    0 10:00    -   -      \\_ false <exited: exit 1>
33    800     -    1    1 10:00 0:00 400  \\_ python3 -m http.server
root    2     -    0    1 May19 0:00 400 [kthreadd]
root    3     -    2    1 May19 0:00 400  \\_ [kworker/0:1]
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
USER PID NSPID PPID NLWP START COMMAND
1000   1     -    0    1 22:00 [sh]
1000  10     -    1    1 22:00  \\_ [sh]
1000  20     -   10    1 22:00      \\_ [sh]
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
    assert_eq!(pids(Filter { comm: CommGlob::new("sleep").ok(), ..Filter::default() }), [(600, 0)]);
    assert_eq!(pids(Filter { comm: CommGlob::new("sl*p").ok(), ..Filter::default() }), [(600, 0)]);
    assert_eq!(pids(Filter { comm: CommGlob::new("sl?").ok(), ..Filter::default() }), []);
    assert_eq!(pids(Filter { user: Some("alice".into()), ..Filter::default() }), [(500, 0), (600, 1), (700, 1)]);
    assert_eq!(pids(Filter { user: Some("1000".into()), ..Filter::default() }), [(500, 0), (600, 1), (700, 1)]);
    assert_eq!(pids(Filter { user: Some("33".into()), ..Filter::default() }), [(800, 0)]);
    assert_eq!(pids(Filter { pid: Some(1), user: Some("root".into()), ..Filter::default() }), [(1, 0)],);
    let s = forest(&e, &Filter { pid: Some(500), ..Filter::default() }, &opts());
    let want = "\
USER  PID NSPID PPID NLWP START TIME RSS COMMAND
alice 500     -    1    1 09:00 0:00 400 -bash
alice 600     -  500    2 09:30 0:00 400  \\_ sleep 100
alice 700     -  500    0 10:00    -   -  \\_ false <exited: exit 1>
";
    assert_eq!(s, want, "\n{s}");
}

#[test]
fn threads_like_ps_elf() {
    let e = model();
    let s = threads(&e, &Filter::default(), &opts());
    let want = "\
UID   PID NSPID PPID LWP NSLWP NLWP STIME CMD
root    1     -    0   1     -    1 May19 /sbin/init splash
root    2     -    0   2     -    1 May19 [kthreadd]
root    3     -    2   3     -    1 May19 [kworker/0:1]
alice 500     -    1 500     -    1 09:00 -bash
alice 600     -  500 600     -    2 09:30 sleep 100
alice 600     -  500 601     -    2 09:31 sleep 100
33    800     -    1 800     -    1 10:00 python3 -m http.server
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
            "container": null,
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
                {"tid": 600, "ns_tid": 600, "comm": "sleep", "start_ns": 11 * H + 30 * 60 * SEC},
                {"tid": 601, "ns_tid": 601, "comm": "sleep", "start_ns": 11 * H + 31 * 60 * SEC},
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
    // The rules are clock::start_in's (tested there); here, that the views pass it
    // the options' boot epoch, now and zone.
    let o = opts();
    // Today: HH:MM; earlier this year: MonDD; another year: the year.
    assert_eq!(start_cell(&o, 12 * H), "10:00");
    assert_eq!(start_cell(&o, H), "May19");
    let o2 = RenderOptions { boot_epoch_ns: 1_767_222_000 * 1_000_000_000, now_ns: 2 * H, ..opts() };
    assert_eq!(start_cell(&o2, 0), "2025");
    assert_eq!(start_cell(&o2, 2 * H), "01:00");
    // Local time: two hours east of UTC the day has already turned.
    let o3 = RenderOptions { tz: jiff::tz::TimeZone::fixed(jiff::tz::offset(2)), ..opts() };
    assert_eq!(start_cell(&o3, 12 * H), "12:00");
    assert_eq!(start_cell(&o3, 2 * H), "02:00");
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

const ID_A: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
const HOST_NS: u32 = 4026531836;

/// A task of `pid` (`ns_pid` inside) in cgroup `cgroup` and pid namespace `pidns`.
fn inside(pid: u32, ppid: u32, comm: &str, cgroup: u64, pidns: u32, ns_pid: u32) -> crate::events::TaskInfo {
    let mut t = named(at(tk(pid, pid, ppid), 11 * H), comm);
    t.parent_start_ns = if ppid < 100 { u64::from(ppid) * 1000 } else { 11 * H };
    t.cgroup_id = cgroup;
    t.pidns = pidns;
    t.ns_pid = ns_pid;
    t.ns_tid = ns_pid;
    t.uid = 0;
    t
}

/// init and kthreadd on the host; a docker container (`web-a`) whose init (950)
/// runs under containerd-shim (900), with a shell (990, two threads), a `docker
/// exec`'d process (980) under the shim, and a child (995) moved back to a host
/// cgroup; a plain runc container (`mybox`, init 1200 under runc 1100).
fn containers_model() -> (Engine, Containers) {
    let users = UserTable::from_passwd("root:x:0:0::/root:/bin/sh\n");
    let mut e = Engine::with_users(cfg(), users);
    let mut out = Vec::new();
    let mut init = named(tk(1, 1, 0), "systemd");
    init.uid = 0;
    init.cgroup_id = 1;
    let mut kthreadd = named(tk(2, 2, 0), "kthreadd");
    kthreadd.uid = 0;
    kthreadd.kthread = true;
    kthreadd.cgroup_id = 1;
    let (a, b) = (4026532001, 4026532002);
    let shim = inside(900, 1, "containerd-shim", 10, HOST_NS, 900);
    let sleep = inside(950, 900, "sleep", 20, a, 1);
    let exec = inside(980, 900, "sh", 20, a, 5);
    let sh = inside(990, 950, "sh", 20, a, 7);
    let mut sh2 = sh;
    sh2.tid = 991;
    sh2.ns_tid = 8;
    let back = inside(995, 990, "sleep", 10, HOST_NS, 995);
    let runc = inside(1100, 1, "runc", 11, HOST_NS, 1100);
    let boxed = inside(1200, 1100, "sh", 30, b, 1);
    let walk = vec![
        snap(12 * H, init, "systemd", &["/sbin/init"]),
        snap(12 * H, kthreadd, "", &[]),
        snap(12 * H, shim, "containerd-shim", &["containerd-shim", "-id", "1a2b"]),
        snap(12 * H, sleep, "sleep", &["sleep", "300"]),
        snap(12 * H, exec, "sh", &["sh"]),
        snap(12 * H, sh, "sh", &["sh", "-c", "loop"]),
        snap(12 * H, sh2, "sh", &["sh", "-c", "loop"]),
        snap(12 * H, back, "sleep", &["sleep", "5"]),
        snap(12 * H, runc, "runc", &["runc", "run", "mybox"]),
        snap(12 * H, boxed, "sh", &["sh"]),
    ];
    e.apply_snapshot(walk, Vec::new(), &mut out);
    e.check_invariants().expect("invariants");
    let mut cgroups = crate::tracker::Cgroups::default();
    let paths = [(1, "/init.scope".to_string()), (10, "/system.slice/containerd.service".to_string())];
    let paths = paths.into_iter().chain([
        (11, "/user.slice".to_string()),
        (20, format!("/docker/{ID_A}")),
        (30, "/mybox".to_string()),
    ]);
    cgroups.add(paths.map(|(id, path)| crate::events::CgroupPath { id, path, truncated: false }).collect());
    let cx = Containers::build(&e, &cgroups, |c| {
        if c.id == ID_A { (Some("web-a".into()), Some("tracer-it-busybox:1".into())) } else { (None, None) }
    });
    (e, cx)
}

#[test]
fn forest_marks_container_subtrees_and_pids_inside() {
    let (e, cx) = containers_model();
    let s = forest_in(&e, &cx, &Filter::default(), &Grouping::default(), &opts());
    let want = "\
USER  PID NSPID PPID NLWP START TIME RSS COMMAND
root    1     -    0    1 May19 0:00 400 /sbin/init
root  900     -    1    1 09:00 0:00 400  \\_ containerd-shim -id 1a2b
                                              [docker 1a2b3c4d5e6f web-a tracer-it-busybox:1]
root  950     1  900    1 09:00 0:00 400      \\_ sleep 300
root  990     7  950    2 09:00 0:00 400          \\_ sh -c loop
                                                      [host]
root  995     -  990    1 09:00 0:00 400              \\_ sleep 5
                                              [docker 1a2b3c4d5e6f web-a tracer-it-busybox:1]
root  980     5  900    1 09:00 0:00 400      \\_ sh
root 1100     -    1    1 09:00 0:00 400  \\_ runc run mybox
                                              [runc mybox]
root 1200     1 1100    1 09:00 0:00 400      \\_ sh
root    2     -    0    1 May19 0:00 400 [kthreadd]
";
    assert_eq!(s, want, "\n{s}");
    // A subtree shown from inside a container starts with its header.
    let s = forest_in(&e, &cx, &Filter { pid: Some(990), ..Filter::default() }, &Grouping::default(), &opts());
    let want = "\
USER PID NSPID PPID NLWP START TIME RSS COMMAND
                                        [docker 1a2b3c4d5e6f web-a tracer-it-busybox:1]
root 990     7  950    2 09:00 0:00 400 sh -c loop
                                         [host]
root 995     -  990    1 09:00 0:00 400  \\_ sleep 5
";
    assert_eq!(s, want, "\n{s}");
}

#[test]
fn by_container_lists_containers_only() {
    let (e, cx) = containers_model();
    let g = Grouping { by_container: true, container: None };
    let s = forest_in(&e, &cx, &Filter::default(), &g, &opts());
    let want = "\
USER  PID NSPID PPID NLWP START TIME RSS COMMAND
                                         [docker 1a2b3c4d5e6f web-a tracer-it-busybox:1]
root  950     1  900    1 09:00 0:00 400 sleep 300
root  990     7  950    2 09:00 0:00 400  \\_ sh -c loop
root  980     5  900    1 09:00 0:00 400 sh
                                         [runc mybox]
root 1200     1 1100    1 09:00 0:00 400 sh
";
    assert_eq!(s, want, "\n{s}");
    // One container, by name, short id or id prefix; the threads view likewise.
    for q in ["mybox", "myb", "box"] {
        let g = Grouping { by_container: false, container: Some(q.to_string()) };
        let rows = layout(&e, &cx, &Filter::default(), &g, &opts());
        let pids: Vec<u32> =
            rows.iter().filter_map(|i| if let Item::Proc(r) = i { Some(r.process.pid) } else { None }).collect();
        assert_eq!(pids, if q == "box" { vec![] } else { vec![1200] }, "{q}");
    }
    for q in ["web-a", "1a2b3c4d5e6f", "1A2B3C", ID_A] {
        let g = Grouping { by_container: false, container: Some(q.to_string()) };
        let s = threads_in(&e, &cx, &Filter::default(), &g, &opts());
        let want = "\
UID  PID NSPID PPID LWP NSLWP NLWP STIME CMD
                                         [docker 1a2b3c4d5e6f web-a tracer-it-busybox:1]
root 950     1  900 950     1    1 09:00 sleep 300
root 980     5  900 980     5    1 09:00 sh
root 990     7  950 990     7    2 09:00 sh -c loop
root 990     7  950 991     8    2 09:00 sh -c loop
";
        assert_eq!(s, want, "{q}:\n{s}");
    }
    let g = Grouping { by_container: true, container: Some("nothing".into()) };
    assert_eq!(forest_in(&e, &cx, &Filter::default(), &g, &opts()), "USER PID NSPID PPID NLWP START COMMAND\n");
}

#[test]
fn json_carries_containers_and_ns_pids() {
    let (e, cx) = containers_model();
    let v = json_in(&e, &cx, &Filter::default(), &Grouping::default(), &opts());
    let procs = v["processes"].as_array().expect("array");
    let by_pid = |pid: u32| procs.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("no {pid}"));
    assert_eq!(
        by_pid(990)["container"],
        serde_json::json!({
            "runtime": "docker", "id": ID_A, "short_id": "1a2b3c4d5e6f", "name": "web-a",
            "image": "tracer-it-busybox:1", "pod": null, "namespace": null,
        })
    );
    assert_eq!(by_pid(990)["ns_pid"], 7);
    assert_eq!(by_pid(1200)["container"]["runtime"], "runc");
    assert_eq!(by_pid(1200)["container"]["name"], serde_json::Value::Null);
    for pid in [1, 2, 900, 995, 1100] {
        assert_eq!(by_pid(pid)["container"], serde_json::Value::Null, "{pid}");
    }
    // Read back as the watch's daemon client does.
    let k = Known::from_json(&by_pid(990)["container"]).expect("container");
    assert_eq!((k.label(), k.short_name()), ("docker 1a2b3c4d5e6f web-a tracer-it-busybox:1".into(), "web-a"));
    assert_eq!(Known::from_json(&serde_json::Value::Null), None);
    // Grouped: containers' processes only, depths within their container.
    let g = Grouping { by_container: true, container: None };
    let v = json_in(&e, &cx, &Filter::default(), &g, &opts());
    let order: Vec<(u64, u64)> = v["processes"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap_or(0), p["depth"].as_u64().unwrap_or(9)))
        .collect();
    assert_eq!(order, [(950, 0), (990, 1), (980, 0), (1200, 0)]);
}

#[test]
fn labels_and_pods() {
    let pod = crate::container::from_cgroup_path(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f4c2b7a_1d2e.slice/cri-containerd-{ID_A}.scope"
    ))
    .expect("pod");
    let k = Known { container: pod, name: None, image: None };
    assert_eq!(k.label(), "containerd 1a2b3c4d5e6f pod 3f4c2b7a-1d2e");
    assert_eq!(Known::from_json(&k.to_json()), Some(k.clone()));
    let ctr = crate::container::from_cgroup_path("/default/web").expect("ctr");
    let k = Known { container: ctr, name: None, image: None };
    assert_eq!((k.label(), k.short_name()), ("containerd web ns default".to_string(), "web"));
    assert!(k.matches("web") && k.matches("we") && !k.matches("") && !k.matches("x"));
}

#[test]
fn name_cache_reads_once_and_retries_missing_ones_later() {
    use std::time::{Duration, Instant};
    let root = std::env::temp_dir().join(format!("tracer-names-{}", std::process::id()));
    let dir = root.join("containers").join(ID_A);
    let _ = std::fs::remove_dir_all(&root);
    let mut cache =
        NameCache::new(crate::containers::Enricher { docker_roots: vec![root.clone()], storage_roots: vec![] });
    let c = crate::container::from_cgroup_path(&format!("/docker/{ID_A}")).expect("docker");
    let t0 = Instant::now();
    // Missing: read once, then not again within the retry period.
    assert_eq!(cache.lookup_at(&c, t0), (None, None));
    assert_eq!(cache.lookup_at(&c, t0 + Duration::from_secs(1)), (None, None));
    assert_eq!(cache.reads, 1);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.v2.json"), r#"{"Name":"/web-a","Config":{"Image":"busybox:1"}}"#).expect("write");
    assert_eq!(cache.lookup_at(&c, t0 + Duration::from_secs(2)), (None, None));
    let later = t0 + containers::RETRY_MISSING;
    assert_eq!(cache.lookup_at(&c, later), (Some("web-a".into()), Some("busybox:1".into())));
    assert_eq!(cache.reads, 2);
    // Found: kept (no read per frame) until the refresh.
    for s in 0..50 {
        cache.lookup_at(&c, later + Duration::from_millis(100 * s));
    }
    assert_eq!(cache.reads, 2);
    cache.lookup_at(&c, later + containers::REFRESH_FOUND);
    assert_eq!(cache.reads, 3);
    // Gone containers are forgotten.
    cache.retain(|_| false);
    assert!(cache.is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn ten_thousand_processes_in_a_hundred_containers() {
    let mut e = Engine::with_users(cfg(), UserTable::from_passwd(""));
    let mut out = Vec::new();
    let mut kthreadd = tk(2, 2, 0);
    kthreadd.kthread = true;
    let mut walk = vec![snap(1, tk(1, 1, 0), "init", &["init"]), snap(1, kthreadd, "", &[])];
    let mut paths = Vec::new();
    for c in 0..100u32 {
        let cgroup = 1000 + u64::from(c);
        paths.push(crate::events::CgroupPath { id: cgroup, path: format!("/docker/{c:064x}"), truncated: false });
        // A shim on the host, then 99 processes inside: an init and its children.
        let base = 10_000 + c * 100;
        walk.push(snap(1, tk(base, base, 1), "shim", &["shim"]));
        for k in 1..100 {
            let mut t = tk(base + k, base + k, if k == 1 { base } else { base + 1 });
            t.cgroup_id = cgroup;
            t.pidns = 5_000_000 + c;
            t.ns_pid = k;
            walk.push(snap(1, t, "sh", &["sh", "-c", "work"]));
        }
    }
    e.apply_snapshot(walk, Vec::new(), &mut out);
    let mut cgroups = crate::tracker::Cgroups::default();
    cgroups.add(paths);
    assert_eq!(e.len(), 10_002);
    let t0 = std::time::Instant::now();
    let n = 20;
    let mut cx = Containers::default();
    for _ in 0..n {
        cx = Containers::build(&e, &cgroups, |_| (Some("name".into()), None));
    }
    let build = t0.elapsed() / n;
    let t1 = std::time::Instant::now();
    let mut s = String::new();
    for _ in 0..n {
        s = forest_in(&e, &cx, &Filter::default(), &Grouping::default(), &opts());
    }
    let with = t1.elapsed() / n;
    let t2 = std::time::Instant::now();
    let mut plain = String::new();
    for _ in 0..n {
        plain = forest(&e, &Filter::default(), &opts());
    }
    let without = t2.elapsed() / n;
    eprintln!(
        "10,002 processes, 100 containers: attribution {build:?}, forest {with:?} (without containers {without:?})"
    );
    assert_eq!(s.lines().count(), 1 + 10_002 + 100);
    assert_eq!(plain.lines().count(), 1 + 10_002);
    let g = Grouping { by_container: true, container: None };
    assert_eq!(forest_in(&e, &cx, &Filter::default(), &g, &opts()).lines().count(), 1 + 9_900 + 100);
    // Generous (debug builds, a busy machine): the release build is far below.
    assert!(build < std::time::Duration::from_millis(200), "{build:?}");
}

/// No character a terminal would obey in `s`: no C0 but newline, no DEL, no C1.
fn inert(s: &str) -> bool {
    s.chars().all(|c| c == '\n' || !c.is_control())
}

/// What a process chose (its comm, argv, its user's name, its container's name and
/// image) is shown escaped in the text views, exact in the JSON.
#[test]
fn the_traced_worlds_strings_are_escaped_in_text_exact_in_json() {
    let users = UserTable::from_passwd("root:x:0:0::/root:/bin/sh\nev\u{1b}[1mil:x:1000:1000::/:/bin/sh\n");
    let mut e = Engine::with_users(cfg(), users);
    let mut out = Vec::new();
    let mut init = named(tk(1, 1, 0), "systemd");
    init.uid = 0;
    let mut evil = named(at(tk(500, 500, 1), 11 * H), "x\u{1b}[2J\u{7}");
    evil.uid = 1000;
    let quiet = named(at(tk(501, 501, 1), 11 * H), "q\u{9b}\\");
    let walk = vec![
        snap(12 * H, init, "systemd", &["/sbin/init"]),
        snap(12 * H + 1, evil, "x", &["sh", "\u{1b}]52;c;aGk=\u{7}", "\u{1b}]0;title\u{7}\nroot 1 fake"]),
        snap(12 * H + 2, quiet, "q", &[]),
    ];
    e.apply_snapshot(walk, Vec::new(), &mut out);
    let argv_text = "sh \\x1b]52;c;aGk=\\x07 \\x1b]0;title\\x07\\nroot 1 fake";
    let forest = forest(&e, &Filter::default(), &opts());
    let threads = threads(&e, &Filter::default(), &opts());
    for (view, s) in [("forest", &forest), ("threads", &threads)] {
        assert!(inert(s), "{view}:\n{s:?}");
        assert!(s.contains(argv_text), "{view}:\n{s}");
        assert!(s.contains("[q\\xc2\\x9b\\\\]"), "{view}:\n{s}");
        assert_eq!(s.lines().count(), 4, "{view}: one line per process and the titles:\n{s}");
    }
    assert!(forest.contains("ev\\x1b[1mil"), "{forest}");
    let json = json(&e, &Filter::default(), &opts());
    let p = &json["processes"][1];
    assert_eq!(p["user"], "ev\u{1b}[1mil");
    assert_eq!(p["comm"], "x\u{1b}[2J\u{7}");
    assert_eq!(p["argv"][1], "\u{1b}]52;c;aGk=\u{7}");
    assert_eq!(p["command"], "sh \u{1b}]52;c;aGk=\u{7} \u{1b}]0;title\u{7}\nroot 1 fake");

    let c = crate::container::from_cgroup_path(&format!("/docker/{ID_A}")).expect("docker");
    let k = Known { container: c, name: Some("web\u{1b}]0;t\u{7}".into()), image: Some("i\nmg".into()) };
    assert_eq!(k.label(), "docker 1a2b3c4d5e6f web\\x1b]0;t\\x07 i\\nmg");
    assert_eq!(header_label(Some(&k)), "[docker 1a2b3c4d5e6f web\\x1b]0;t\\x07 i\\nmg]");
    assert_eq!(k.to_json()["name"], "web\u{1b}]0;t\u{7}");
}
