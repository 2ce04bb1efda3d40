//! Faults, each followed by the tree checked against /proc (the oracle of
//! `support/oracle.rs`):
//!
//! 1. The daemon killed with SIGKILL in the middle of a fork, exec and thread storm,
//!    and started again on the same socket while the storm goes on: nothing of the
//!    old daemon stays attached (bpftool), and the new daemon's tree, as `tracer ps
//!    --json` shows it through the socket, is /proc's once the storm stops.
//! 2. A 4 KiB ring buffer under a storm: the loss is told by `tracer stats` (JSON and
//!    text), to a `tracer events` subscriber and to a standalone `tracer events`, each
//!    with repairs, and the tree is /proc's after the storm.
//! 3. Clients that go away in the middle of a large snapshot (6,000 threads): each is
//!    a debug line, nothing worse, and the next client gets the whole answer.
//! 4. `tracer events > file` on a full disk (/dev/full, a full 64 KiB tmpfs), alone
//!    and through a daemon: one error line naming the cause and a non-zero exit; the
//!    daemon serves on.
//!
//! Covered elsewhere, and not repeated here: `tree::loss_is_repaired` (a 4 KiB ring
//! buffer: the daemon's counters over the socket, `lost` and `repair` on a raw
//! subscription, the tree over the socket), `tree::startup_during_churn_tree_equals_proc`
//! (a first start amid process churn), `daemon::kill_9_leaves_nothing_attached_and_restart_works`
//! (kill -9 of an idle daemon, its programs freed, a restart answering `version` on
//! the old socket), `hardening::daemon_keeps_only_cap_bpf_and_still_repairs` (repair
//! walks with CAP_BPF alone) and `daemon::malformed_requests_get_errors` (a client
//! gone in the middle of its request).

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    self, TempDir, Timed, bpf,
    daemon::Daemon,
    oracle::{self, Scope, assert_matches_proc, snap_find, snap_procs},
    poll,
    storm::Storm,
    tmpfs::Tmpfs,
    tracer::{TRACER, Tracer, tracer_out},
    workload::{Workload, compile_c},
};

const HOLDER_C: &str = include_str!("workloads/tree_holder.c");
const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Processes of 1000 threads each, for a large snapshot.
const HOLDERS: usize = 6;

fn stat_u64(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("stats without a numeric `{key}`: {stats}"))
}

/// `tracer stats --json --socket S`.
fn cli_stats(socket: &str) -> Value {
    let text = tracer_out(&["stats", "--json", "--socket", socket]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("tracer stats --json printed no JSON ({e}): {text}"))
}

/// Asserts the tree the daemon at `socket` serves (`tracer ps --json` through it) is /proc's.
fn assert_ps_matches_proc(socket: &str, what: &str) {
    oracle::assert_snapshots_match_proc(what, || {
        let text = tracer_out(&["ps", "--json", "--socket", socket]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("tracer ps --json printed no JSON ({e})"))
    });
}

/// Lines of a daemon's stderr logged above debug: warnings, errors, panics.
fn worse_than_debug(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.starts_with("[WARN")
                || l.starts_with("[ERROR")
                || l.starts_with("tracer: error")
                || l.contains("panicked")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. SIGKILL mid-storm, restart on the same socket

#[test]
fn daemon_killed_mid_storm_restarts_with_tree_equal_to_proc() {
    if !support::require_root() || !support::require_tool("bpftool") || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("daemon_killed_mid_storm_restarts_with_tree_equal_to_proc");
    let dir = TempDir::new("faults-restart");
    let socket = dir.path().join("tracer.sock");
    let sock = socket.display().to_string();
    let old = Daemon::start_at(&socket, &[]);
    let old_pid = old.pid();
    // What it holds open, by its descriptors; bpftool must list them all.
    let held = bpf::held_by(old_pid);
    let named = bpf::tracer_programs().intersection(&held.programs).count();
    assert!(
        named >= 3 && !held.links.is_empty(),
        "the daemon (pid {old_pid}) holds {held:?}, {named} of them tracer's programs by name"
    );
    assert!(held.programs.is_subset(&bpf::programs()), "bpftool does not list the daemon's programs {held:?}");
    assert!(held.links.is_subset(&bpf::links()), "bpftool does not list the daemon's links {held:?}");

    let mut storm = Storm::start(2, 1, 1);
    let storm_pid = storm.pid();
    // The old daemon follows the storm: its four loops are in its tree.
    let seen = poll(Duration::from_secs(10), || (snap_procs(&old.snapshot(Some(storm_pid))).len() >= 5).then_some(()));
    assert!(seen.is_some(), "the daemon never showed the storm's loops: {}", old.snapshot(Some(storm_pid)));
    let at_kill = storm.counts();
    old.sigkill();

    // Nothing of the old daemon stays: its programs and links are freed.
    let left = || -> (Vec<u64>, Vec<u64>) {
        (
            bpf::programs().intersection(&held.programs).copied().collect(),
            bpf::links().intersection(&held.links).copied().collect(),
        )
    };
    let gone = poll(Duration::from_secs(10), || {
        let (p, l) = left();
        (p.is_empty() && l.is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "10 s after SIGKILL of the daemon (pid {old_pid}) the kernel still holds its (programs, links) {:?}",
        left()
    );
    assert!(socket.exists(), "the killed daemon left no socket file: the restart would not take over a stale one");
    assert!(storm.running(), "the storm ended on its own");

    // Started again on the same socket while the storm goes on.
    let new = Daemon::start_at(&socket, &[]);
    let at_restart = storm.counts();
    assert!(
        at_restart.tasks() > at_kill.tasks(),
        "the storm made nothing between the kill ({at_kill:?}) and the restart ({at_restart:?})"
    );
    let storm_on = poll(Duration::from_secs(10), || {
        let now = storm.counts();
        (now.forks > at_restart.forks && now.execs > at_restart.execs && now.threads > at_restart.threads)
            .then_some(now)
    });
    assert!(storm_on.is_some(), "the storm did not go on under the new daemon (at restart {at_restart:?})");
    let total = storm.stop();
    eprintln!(
        "storm: {total:?} in all; {} tasks before the kill, {} by the restart",
        at_kill.tasks(),
        at_restart.tasks()
    );

    assert_ps_matches_proc(&sock, "the restarted daemon after the storm");
    let left = new.snapshot(Some(storm_pid));
    assert!(
        left["processes"].as_array().is_some_and(|v| v.is_empty()),
        "the storm (pid {storm_pid}) ended but is in the new daemon's tree: {left}"
    );
    let now = bpf::held_by(new.pid());
    assert!(
        now.programs.is_disjoint(&held.programs) && !now.links.is_empty(),
        "the new daemon holds {now:?}, the old one held {held:?}"
    );
    let stderr = new.stop();
    assert!(worse_than_debug(&stderr).is_empty(), "the restarted daemon's stderr:\n{stderr}");
}

// ---------------------------------------------------------------------------------------
// 2. A 4 KiB ring buffer: the loss told to every client, and repaired

#[test]
fn tiny_ring_buffer_loss_is_told_to_every_client_and_repaired() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("tiny_ring_buffer_loss_is_told_to_every_client_and_repaired");
    let d = Daemon::start(&["--ringbuf-size", "4096"]);
    let sock = d.socket().display().to_string();
    let mut sub = Tracer::start(&["--socket", &sock]);
    let alone = Tracer::start(&["--standalone", "--ringbuf-size", "4096"]);

    let (mut lost, mut alone_lost) = (0, false);
    for round in 1..=3 {
        let storm = Storm::start(2, 1, 2);
        std::thread::sleep(Duration::from_secs(2));
        let made = storm.stop();
        lost = stat_u64(&cli_stats(&sock), "lost");
        alone_lost = alone.events().iter().any(|e| e.is("lost"));
        eprintln!("storm round {round}: {made:?}; daemon lost {lost}; standalone told a loss: {alone_lost}");
        if lost > 0 && alone_lost {
            break;
        }
    }
    assert!(lost > 0, "a 4 KiB ring buffer lost nothing in 3 storms (tracer stats): {}", cli_stats(&sock));
    assert!(alone_lost, "the standalone `tracer events --ringbuf-size 4096` printed no `lost` line in 3 storms");
    let text = tracer_out(&["stats", "--socket", &sock]);
    let shown = text.lines().find_map(|l| l.strip_prefix("lost")?.trim().parse::<u64>().ok());
    assert!(shown.is_some_and(|n| n > 0), "`tracer stats` shows no `lost N` above 0:\n{text}");

    // Repaired: a walk done, not degraded, and the tree is /proc's.
    let repaired = poll(Duration::from_secs(10), || {
        let s = cli_stats(&sock);
        (s["degraded"] == false && stat_u64(&s, "walks") >= 2).then_some(s)
    });
    let stats = repaired.unwrap_or_else(|| panic!("not repaired within 10 s of the storm: {}", cli_stats(&sock)));
    assert_ps_matches_proc(&sock, "after loss and repair");
    let repairs: u64 = stats["repairs"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());

    // The subscriber through the daemon: a `lost` line, and repairs.
    assert!(sub.wait_for("a `lost` line", |evs| evs.iter().any(|e| e.is("lost"))), "no `lost` line to the subscriber");
    let sub = sub.stop();
    let sub_repairs = sub.events.iter().filter(|e| e.is("repair")).count();
    eprintln!("subscriber: {:?}; daemon repairs {}", sub.summary(), stats["repairs"]);
    assert!(sub.summary().lost > 0, "the subscriber's summary counts no loss:\n{}", sub.stderr);
    assert!(sub_repairs > 0 || repairs > 0, "no `repair` line to the subscriber and no repairs in stats: {stats}");

    // The standalone tracer: its own loss, repairs and summary.
    let alone = alone.stop();
    let summary = alone.summary();
    let alone_repairs = alone.events.iter().filter(|e| e.is("repair")).count() as u64;
    eprintln!("standalone: {summary:?}; {alone_repairs} repair lines");
    assert!(summary.lost > 0, "the standalone summary counts no loss:\n{}", alone.stderr);
    assert!(
        alone_repairs > 0 && summary.counters.get("repairs").is_some_and(|&n| n > 0),
        "the standalone tracer lost events but printed no repairs ({alone_repairs} lines):\n{}",
        alone.stderr
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 3. A client gone in the middle of a snapshot

/// The whole answer to `request` on a fresh connection (one line).
fn answer(socket: &Path, request: &[u8]) -> Vec<u8> {
    let mut c = UnixStream::connect(socket).expect("connect to the daemon");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("set_read_timeout");
    c.write_all(request).expect("write the request");
    let mut r = std::io::BufReader::new(c);
    let mut line = Vec::new();
    std::io::BufRead::read_until(&mut r, b'\n', &mut line).expect("read the answer");
    line
}

#[test]
fn client_gone_mid_snapshot_leaves_the_daemon_serving() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("client_gone_mid_snapshot_leaves_the_daemon_serving");
    let hold = compile_c("tree_holder", HOLDER_C);
    let d = Daemon::start_env(&[], &[("RUST_LOG", "warn,tracer=debug")]);
    let holders: Vec<Workload> = (0..HOLDERS)
        .map(|_| {
            let mut w = Workload::spawn("tree_holder 1000", Command::new(&hold.path).arg("1000"));
            assert_eq!(w.line(LINE_TIMEOUT), "ready", "tree_holder 1000 should say ready");
            w
        })
        .collect();
    let all_in = poll(Duration::from_secs(10), || {
        let snap = d.snapshot(None);
        holders.iter().all(|h| snap_find(&snap, h.pid()).is_some_and(|p| p.nlwp == 1000)).then_some(())
    });
    assert!(all_in.is_some(), "the daemon's tree lacks the {HOLDERS} holders of 1000 threads");

    let requests: [&[u8]; 2] =
        [b"{\"verb\":\"snapshot\",\"format\":\"json\"}\n", b"{\"verb\":\"snapshot\",\"format\":\"threads\"}\n"];
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("read /proc/sys/net/core/wmem_default");
    for req in requests {
        let len = answer(d.socket(), req).len();
        assert!(
            len > 2 * wmem,
            "the answer to {} is {len} bytes, not over 2 socket buffers ({wmem} bytes each): \
             the daemon would not be in the middle of writing it",
            String::from_utf8_lossy(req).trim()
        );
    }

    let mark = d.stderr().len();
    let gone = 12;
    for i in 0..gone {
        let mut c = UnixStream::connect(d.socket()).expect("connect to the daemon");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("set_read_timeout");
        c.write_all(requests[i % 2]).expect("write the request");
        let mut head = [0u8; 16];
        c.read_exact(&mut head).expect("the first bytes of the answer");
        assert_eq!(head[0], b'{', "the answer starts with {:?}", String::from_utf8_lossy(&head));
        drop(c);
    }
    // The daemon tells each at debug level, as the end of that client.
    let client_lines = |text: &str| text.lines().filter(|l| l.starts_with("[DEBUG") && l.contains("client:")).count();
    let told = poll(Duration::from_secs(10), || (client_lines(&d.stderr()[mark..]) >= gone).then_some(()));
    let after = d.stderr()[mark..].to_string();
    assert!(told.is_some(), "the daemon did not log the {gone} clients gone mid-answer at debug level:\n{after}");

    // The next client gets the whole answer, and the tree is still /proc's.
    for req in requests {
        let whole = answer(d.socket(), req);
        let v: Value = serde_json::from_slice(&whole).unwrap_or_else(|e| {
            panic!("the answer after the clients left is not whole JSON ({e}; {} bytes)", whole.len())
        });
        assert_eq!(v["ok"], true, "{}", String::from_utf8_lossy(&whole[..whole.len().min(300)]));
    }
    let snap = d.snapshot(None);
    for h in &holders {
        let p = snap_find(&snap, h.pid()).unwrap_or_else(|| panic!("holder {} left the tree", h.pid()));
        assert_eq!(p.threads.len(), 1000, "holder {}: threads in the snapshot", h.pid());
    }
    assert_matches_proc(&d, Scope::All, "after 12 clients left mid-snapshot");
    let after = d.stderr()[mark..].to_string();
    assert!(worse_than_debug(&after).is_empty(), "the daemon logged more than debug lines:\n{after}");
    drop(holders);
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 4. A full disk for `tracer events`

/// What the error line must be.
const ENOSPC_LINE: &str = "tracer: error: writing events to stdout: No space left on device (os error 28)";

/// Runs `tracer events EXTRA` with stdout to `sink` while processes come and go, until
/// it ends (at most 60 s); its status and stderr.
fn events_into(sink: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let out = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(sink)
        .unwrap_or_else(|e| panic!("opening {}: {e}", sink.display()));
    let mut child = Command::new(TRACER)
        .arg("events")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start tracer events: {e}"));
    let mut err = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for tracer events") {
            break s;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tracer events {extra:?} > {} did not end within 60 s; stderr:\n{}",
                sink.display(),
                reader.join().unwrap_or_default()
            );
        }
        // Events to write: a few short processes.
        let st = Command::new("sh").args(["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done"]).status();
        assert!(st.is_ok_and(|s| s.success()), "sh loop failed");
    };
    (status, reader.join().unwrap_or_default())
}

#[test]
fn events_to_a_full_disk_end_with_one_error_line_and_the_daemon_serves_on() {
    if !support::require_root() || !support::require_tool("mount") || !support::require_tool("umount") {
        return;
    }
    let _t = Timed::start("events_to_a_full_disk_end_with_one_error_line_and_the_daemon_serves_on");
    let d = Daemon::start(&[]);
    let sock = d.socket().display().to_string();
    let small = Tmpfs::mount("64k");
    let file = small.path().join("events.out");
    let ways: [(&str, Vec<&str>); 2] =
        [("standalone", vec!["--standalone"]), ("through the daemon", vec!["--json", "--socket", &sock])];
    for (way, extra) in &ways {
        for sink in [Path::new("/dev/full"), file.as_path()] {
            let what = format!("tracer events {way} > {}", sink.display());
            let (status, stderr) = events_into(sink, extra);
            eprintln!("{what}: {status}; stderr:\n{stderr}");
            assert!(!status.success(), "{what} ended with {status}; stderr:\n{stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("tracer: tracing")).collect();
            assert_eq!(errors, [ENOSPC_LINE], "{what}: stderr beside the `tracing` line");
            if sink == file {
                let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                assert!(size > 32 << 10, "{what}: the file has {size} bytes; the 64 KiB tmpfs was not filled");
                std::fs::remove_file(&file).expect("remove the events file");
            }
        }
    }

    // The daemon is unaffected: it answers `tracer stats` and serves another subscriber.
    let stats = cli_stats(&sock);
    assert!(stat_u64(&stats, "processes") > 1, "tracer stats after the full disks: {stats}");
    let mut sub = Tracer::start(&["--socket", &sock]);
    let child = Command::new("sh").args(["-c", "exit 7"]).spawn().expect("sh");
    let pid = child.id();
    let st = child.wait_with_output().expect("wait for sh").status;
    assert_eq!(st.code(), Some(7));
    let seen = sub
        .wait_for("the exit 7 of sh", |evs| evs.iter().any(|e| e.of(pid) && e.is("exit") && e.exit_code() == Some(7)));
    assert!(seen, "a new subscriber did not see sh (pid {pid}) exit 7");
    sub.stop();
    drop(small);
    let stderr = d.stop();
    assert!(worse_than_debug(&stderr).is_empty(), "the daemon's stderr:\n{stderr}");
}
