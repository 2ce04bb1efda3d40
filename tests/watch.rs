//! `tracer watch` end to end, in tmux: the live tree of an Apache httpd (mpm_event)
//! under `ab` load, narrowed with the `/` filter, its THR column checked against
//! /proc at a stable moment; then `q` restores the terminal and exits with 0.
//! Also: without a terminal it says so and exits with 2.

use std::{
    collections::BTreeMap,
    io::Write,
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use crate::support::{
    self, TempDir,
    apache::{apache_conf, free_port},
    procfs::proc_threads,
    tmux::Tmux,
    tracer::TRACER,
    workload::Group,
};

/// How long the screen may take to come up (the start-up walk included).
const UP_TIMEOUT: Duration = Duration::from_secs(20);

/// A process row of the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScreenRow {
    marker: char,
    pid: u32,
    ppid: u32,
    thr: Option<usize>,
    command: String,
}

/// The process rows of a screen, read by the column titles' positions (PID, PPID
/// and THR are right-aligned under their titles, COMMAND starts under its title).
fn rows(screen: &str) -> Vec<ScreenRow> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let Some(hi) = lines.iter().position(|l| {
        let s: String = l.iter().collect();
        s.contains(" PID ") && s.contains(" THR ") && s.contains("COMMAND")
    }) else {
        return Vec::new();
    };
    let header: String = lines[hi].iter().collect();
    let end_of = |title: &str| header.find(&format!(" {title} ")).map(|i| i + 1 + title.len());
    let (Some(pid_end), Some(ppid_end), Some(thr_end), Some(cmd_at)) =
        (end_of("PID"), end_of("PPID"), end_of("THR"), header.find("COMMAND"))
    else {
        return Vec::new();
    };
    // The token ending at `end`.
    let token = |l: &[char], end: usize| -> String {
        let end = end.min(l.len());
        let start = l[..end].iter().rposition(|c| *c == ' ').map_or(0, |i| i + 1);
        l[start..end].iter().collect()
    };
    let mut out = Vec::new();
    for l in &lines[hi + 1..] {
        let (Ok(pid), Ok(ppid)) = (token(l, pid_end).parse::<u32>(), token(l, ppid_end).parse::<u32>()) else {
            continue;
        };
        out.push(ScreenRow {
            marker: l.first().copied().unwrap_or(' '),
            pid,
            ppid,
            thr: token(l, thr_end).parse().ok(),
            command: l.get(cmd_at..).map(|c| c.iter().collect::<String>().trim().to_string()).unwrap_or_default(),
        });
    }
    out
}

/// The live process rows (not exited) with a thread count, by pid.
fn live_threads(rows: &[ScreenRow]) -> BTreeMap<u32, usize> {
    rows.iter().filter(|r| r.marker != 'x').filter_map(|r| Some((r.pid, r.thr?))).collect()
}

// ---------------------------------------------------------------------------------------
// Tests

/// Without a terminal: one line on stderr, status 2, no escape codes.
#[test]
fn watch_without_a_terminal_exits_2() {
    let out = support::run(Command::new(TRACER).args(["watch", "--standalone"]), Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "tracer watch without a terminal: {}; stderr: {stderr}", out.status);
    assert_eq!(stderr, "tracer watch needs a terminal; use `tracer ps` or `tracer events`\n");
    assert!(out.stdout.is_empty(), "stdout: {:?}", String::from_utf8_lossy(&out.stdout));
}

/// httpd under ab in `tracer watch`, filtered to `apache2`: the parent and its
/// children with /proc's thread counts; then `q` restores the terminal.
#[test]
fn watch_shows_httpd_under_load() {
    if !support::require_root()
        || !support::require_tool("tmux")
        || !support::require_tool("apache2")
        || !support::require_tool("ab")
    {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("watch-httpd");
    {
        use std::os::unix::fs::PermissionsExt;
        let docs = dir.path().join("htdocs");
        std::fs::create_dir(&docs).expect("mkdir htdocs");
        std::fs::write(docs.join("index.html"), "<html><body>tracer</body></html>\n").expect("write index.html");
        for p in [dir.path(), &docs] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    let port = free_port();
    let conf = dir.path().join("httpd.conf");
    std::fs::write(&conf, apache_conf(dir.path(), port)).expect("write httpd.conf");
    let error_log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();

    // The screen, in a shell that reports how it ended and the terminal modes after.
    let cmd = format!("{TRACER} watch --standalone; echo \"watch-exit=$?\"; stty -a; sleep 600");
    let tmux = Tmux::start("watch", 200, 50, &cmd);
    let (screen, up) = tmux.wait_screen(UP_TIMEOUT, |s| s.starts_with("tracer watch  ") && s.contains(" processes "));
    assert!(up, "tracer watch did not show its header within {UP_TIMEOUT:?}; screen:\n{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "1", "the screen should be the alternate screen");

    // Narrow the view with the filter prompt.
    tmux.keys(&["/"]);
    tmux.type_text("apache2");
    tmux.keys(&["Enter"]);
    let (screen, narrowed) = tmux.wait_screen(Duration::from_secs(5), |s| s.contains("filter: apache2"));
    assert!(narrowed, "the filter did not apply; screen:\n{screen}");

    let mut httpd =
        Group::spawn_as("apache2", Command::new("setsid").arg("apache2").arg("-f").arg(&conf).arg("-DFOREGROUND"));
    let parent = httpd.pid();
    let until = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "apache2 (pid {parent}) does not listen on {port}; error.log:\n{}",
            error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default().trim(),
        "apache2",
        "setsid should have exec'd apache2 as pid {parent}"
    );
    // Connections with an unfinished request each hold a worker, so that httpd
    // starts children whatever ab's pace; ab brings the load.
    let pinned: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to httpd");
            c.write_all(b"GET / HTTP/1.1\r\n").expect("write a partial request");
            c
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/");
    let mut ab = Group::spawn("ab", Command::new("ab").args(["-q", "-n", "20000", "-c", "200", &url]));

    // Let it grow towards its peak (4 children, or 8 s) while the screen follows.
    let grow_until = Instant::now() + Duration::from_secs(8);
    while proc_threads(parent).len() < 5 && Instant::now() < grow_until {
        std::thread::sleep(Duration::from_millis(100));
    }
    // At the peak: capture, read /proc, capture again; accept when both captures show
    // the parent and its live children with /proc's thread counts.
    let until = Instant::now() + Duration::from_secs(30);
    let mut attempts = 0;
    let (seen, screen) = loop {
        attempts += 1;
        let a = tmux.capture();
        let procs = proc_threads(parent);
        let b = tmux.capture();
        let (ra, rb) = (live_threads(&rows(&a)), live_threads(&rows(&b)));
        if procs.len() >= 3 && ra == procs && rb == procs {
            break (procs, b);
        }
        assert!(
            Instant::now() < until,
            "after {attempts} tries in 30 s the screen never agreed with /proc on httpd {parent}'s tree\n\
             /proc (pid -> threads): {procs:?}\nscreen: {rb:?}\n{b}\nerror.log:\n{}",
            error_log()
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    eprintln!(
        "httpd {parent}: the screen agreed with /proc after {attempts} tries at {:?}: {seen:?}\n{screen}",
        started.elapsed()
    );
    let shown = rows(&screen);
    let by_pid: BTreeMap<u32, &ScreenRow> = shown.iter().map(|r| (r.pid, r)).collect();
    let top = by_pid.get(&parent).unwrap_or_else(|| panic!("no row of httpd {parent}:\n{screen}"));
    assert!(top.command.starts_with("apache2 -f "), "httpd's row should start the tree: {top:?}\n{screen}");
    let children: Vec<&&ScreenRow> = by_pid.values().filter(|r| r.ppid == parent && r.marker != 'x').collect();
    assert!(children.len() >= 2, "fewer than 2 children of httpd {parent} shown:\n{screen}");
    for c in &children {
        assert!(c.command.starts_with("\\_ apache2 -f "), "a child row is drawn under its parent: {c:?}\n{screen}");
    }
    // The filter narrowed the view: only apache2 processes, no tmux, shell or ab rows.
    for r in &shown {
        assert!(r.command.contains("apache2"), "the filter let through {r:?}:\n{screen}");
    }
    assert!(!screen.contains("tmux"), "the filtered screen shows tmux:\n{screen}");

    // Quit: the shell reports status 0, the screen and the terminal modes are back.
    drop(pinned);
    ab.stop();
    tmux.keys(&["q"]);
    let (after, quit) = tmux.wait_screen(Duration::from_secs(10), |s| s.contains("watch-exit=") && s.contains("speed"));
    assert!(quit, "tracer watch did not end within 10 s of `q`; screen:\n{after}");
    assert!(after.contains("watch-exit=0"), "tracer watch did not exit with 0:\n{after}");
    assert!(!after.contains("tracer watch  "), "the header is still on the screen:\n{after}");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "the alternate screen was not left:\n{after}");
    let modes: Vec<&str> = after.split_whitespace().collect();
    for m in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&m), "raw mode was not undone (`{m}` missing from stty -a):\n{after}");
    }
    httpd.stop();
    eprintln!("watch test done in {:?}", started.elapsed());
}
