//! `tracer watch` screens drawn with ratatui's TestBackend from small synthetic
//! engines: exact lines, styles, keys.

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::{Color, Modifier},
};

use super::daemon::engine_from_snapshot;
use super::filter::{Filter, contains_ci};
use super::ui::{age, spawn_rate};
use super::view::{Action, Config, Counters, Row, RowKey, View, group_key};
use crate::engine::testkit::{MS, SEC, clone, exec, fork, pexit, pr, tk};
use crate::engine::{Engine, EngineConfig, Update};
use crate::events::{Body, Comm, Event, ExitStatus, TaskInfo};
use crate::render::{Containers, Known};
use std::sync::Arc;

const NOW: u64 = 10 * SEC;

fn engine() -> Engine {
    Engine::new(EngineConfig { passwd: None, ..Default::default() })
}

fn task(pid: u32, tid: u32, ppid: u32, comm: &str) -> TaskInfo {
    let mut t = tk(pid, tid, ppid);
    t.comm = Comm::from_str_lossy(comm);
    t
}

/// A thread of apache2 (200) started at `start_ns`.
fn thread(pid: u32, tid: u32, start_ns: u64) -> TaskInfo {
    let mut t = task(pid, tid, 100, "apache2");
    t.start_ns = start_ns;
    t
}

/// Applies events, passing every update to the view as the watch loop does.
fn apply(e: &mut Engine, v: &mut View, evs: Vec<Event>) {
    let mut out = Vec::new();
    for ev in evs {
        e.apply(ev, &mut out);
    }
    for u in &out {
        v.observe(u);
    }
}

fn tick(e: &mut Engine, v: &mut View, now: u64) {
    let mut out: Vec<Update> = Vec::new();
    e.tick(now, &mut out);
    for u in &out {
        v.observe(u);
    }
}

/// init (1) -> bash (100) -> apache2 (200, 4 threads, 3 of them cloned at 9.5 s) ->
/// apache2 (300).
fn world(v: &mut View) -> Engine {
    let mut e = engine();
    let mut init = task(1, 1, 0, "init");
    init.uid = 0;
    let bash = task(100, 100, 1, "bash");
    let httpd = task(200, 200, 100, "apache2");
    let worker = task(300, 300, 200, "apache2");
    let ap = ["/usr/sbin/apache2", "-k", "start"];
    apply(
        &mut e,
        v,
        vec![
            fork(1, init),
            exec(2, init, 1, "/sbin/init", &["/sbin/init"]),
            fork(3, bash),
            exec(4, bash, 100, "/bin/bash", &["bash"]),
            fork(5, httpd),
            exec(6, httpd, 200, "/usr/sbin/apache2", &ap),
            clone(9_500 * MS, thread(200, 201, 9_500 * MS)),
            clone(9_500 * MS, thread(200, 202, 9_500 * MS)),
            clone(9_600 * MS, thread(200, 203, 9_600 * MS)),
            fork(7, worker),
            exec(8, worker, 300, "/usr/sbin/apache2", &ap),
        ],
    );
    e
}

fn view() -> View {
    View::new(Config::default(), "")
}

fn rebuild(v: &mut View, e: &Engine, now: u64) {
    v.rebuild(e, &Containers::default(), Counters::of(e), now);
}

const ID_A: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";

/// Cgroup 5 is docker container `web-a`, cgroup 6 a runc container without a name.
fn two_containers() -> Containers {
    let mut cx = Containers::default();
    let docker = crate::container::from_cgroup_path(&format!("/docker/{ID_A}")).expect("docker");
    cx.insert(5, Arc::new(Known { container: docker, name: Some("web-a".into()), image: Some("busybox:1".into()) }));
    let runc = crate::container::plain("/a-rather-long-box-name").expect("runc");
    cx.insert(6, Arc::new(Known { container: runc, name: None, image: None }));
    cx
}

fn draw(v: &mut View, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| v.draw(f)).expect("draw");
    t.backend().buffer().clone()
}

/// The screen's lines, trailing spaces cut.
fn lines(b: &Buffer) -> Vec<String> {
    let a = b.area;
    (0..a.height)
        .map(|y| {
            let s: String = (0..a.width).map(|x| b.cell((x, y)).map_or(" ", |c| c.symbol())).collect();
            s.trim_end().to_string()
        })
        .collect()
}

fn screen(v: &mut View, w: u16, h: u16) -> Vec<String> {
    lines(&draw(v, w, h))
}

/// The line of the screen whose PID column is `pid`.
fn line_of(lines: &[String], pid: u32) -> String {
    lines
        .iter()
        .skip(3)
        .find(|l| l.get(11..18).is_some_and(|c| c.trim() == pid.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no row of pid {pid} in\n{}", lines.join("\n")))
}

fn key(v: &mut View, code: KeyCode) -> Action {
    v.key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(v: &mut View, s: &str) {
    for c in s.chars() {
        key(v, KeyCode::Char(c));
    }
}

fn pids(v: &View) -> Vec<u32> {
    v.rows()
        .iter()
        .filter_map(|r| match r {
            Row::Proc(p) => Some(p.id.pid),
            _ => None,
        })
        .collect()
}

#[test]
fn small_tree_exact_screen() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 100, 9);
    let want = [
        "tracer watch  tasks 7  processes 4  threads 3  events/s 0  lost 0",
        "4 of 4 processes  ? help  / filter  q quit",
        "  USER         PID    PPID  THR   SPAWN    AGE CONTAINER    COMMAND",
        "  0              1       0    1             9s -            /sbin/init",
        "  1000         100       1    1             9s -             \\_ bash",
        "  1000         200     100    4  +0.6/s     9s -                 \\_ /usr/sbin/apache2 -k start",
        "  1000         300     200    1             9s -                     \\_ /usr/sbin/apache2 -k start",
        "",
        "",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
}

#[test]
fn selection_is_reversed_and_titles_bold() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    let b = draw(&mut v, 100, 9);
    assert!(b.cell((0, 3)).expect("cell").modifier.contains(Modifier::REVERSED), "first row selected");
    assert!(b.cell((99, 3)).expect("cell").modifier.contains(Modifier::REVERSED), "selection spans the line");
    assert!(!b.cell((0, 4)).expect("cell").modifier.contains(Modifier::REVERSED));
    assert!(b.cell((2, 2)).expect("cell").modifier.contains(Modifier::BOLD));
}

#[test]
fn threads_collapsed_then_expanded() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    assert_eq!(pids(&v), [1, 100, 200, 300]);
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(200))));
    assert_eq!(key(&mut v, KeyCode::Enter), Action::Rebuild);
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 100, 12);
    assert_eq!(
        got[5..11],
        [
            "  1000         200     100    4  +0.6/s     9s -                 \\_ /usr/sbin/apache2 -k start",
            "               200     200                  9s                        · apache2",
            "+              201     200                  0s                        · apache2",
            "+              202     200                  0s                        · apache2",
            "+              203     200                  0s                        · apache2",
            "  1000         300     200    1             9s -                     \\_ /usr/sbin/apache2 -k start",
        ],
        "\n{}",
        got.join("\n")
    );
    // The selection stayed on the process; Space collapses it again.
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(200))));
    key(&mut v, KeyCode::Char(' '));
    rebuild(&mut v, &e, NOW);
    assert_eq!(v.rows().len(), 4);
}

#[test]
fn filter_prompt_narrows_the_view() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    assert_eq!(key(&mut v, KeyCode::Char('/')), Action::Redraw);
    typed(&mut v, "APACHE");
    // Filtering applies as one types.
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 100, 8);
    assert_eq!(got[1], "/APACHE   (Enter: keep, Esc: clear)");
    key(&mut v, KeyCode::Enter);
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 100, 8);
    assert_eq!(
        got[1..6],
        [
            "2 of 4 processes  filter: APACHE  ? help  / filter  q quit",
            "  USER         PID    PPID  THR   SPAWN    AGE CONTAINER    COMMAND",
            "  1000         200     100    4  +0.6/s     9s -            /usr/sbin/apache2 -k start",
            "  1000         300     200    1             9s -             \\_ /usr/sbin/apache2 -k start",
            "",
        ],
        "\n{}",
        got.join("\n")
    );
    // Esc clears the filter.
    assert_eq!(key(&mut v, KeyCode::Esc), Action::Rebuild);
    rebuild(&mut v, &e, NOW);
    assert_eq!(pids(&v), [1, 100, 200, 300]);

    // pid:N is a subtree; user: a user; terms combine.
    for (f, want) in [
        ("pid:100", vec![100, 200, 300]),
        ("pid:200 user:1000", vec![200, 300]),
        ("user:0", vec![1]),
        ("bash", vec![100]),
        ("-k start", vec![200, 300]),
        ("pid:999", vec![]),
        ("container:-", vec![1, 100, 200, 300]),
        ("container:7", vec![]),
    ] {
        let mut v = View::new(Config::default(), f);
        rebuild(&mut v, &e, NOW);
        assert_eq!(pids(&v), want, "filter {f:?}");
    }
    let mut v = View::new(Config::default(), "nothing-matches");
    rebuild(&mut v, &e, NOW);
    assert_eq!(screen(&mut v, 60, 5)[3], "  (no process matches the filter)");
}

#[test]
fn exited_processes_show_status_then_go_keeping_the_order() {
    let mut v = view();
    let mut e = world(&mut v);
    // Two more children of init: 150 between 100 and 200, and 400 after them.
    let a = task(150, 150, 1, "sleep");
    let b = task(400, 400, 1, "sleep");
    apply(&mut e, &mut v, vec![fork(9, a), fork(9, b)]);
    rebuild(&mut v, &e, NOW);
    assert_eq!(pids(&v), [1, 100, 200, 300, 150, 400]);
    // Select 400, the last row.
    key(&mut v, KeyCode::End);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(400))));

    // 150 exits (code 3), 300 is killed.
    let mut killed = pexit(NOW + 100 * MS, task(300, 300, 200, "apache2"), 0, None);
    if let Body::ProcessExit { status, .. } = &mut killed.body {
        *status = ExitStatus { raw: 9 };
    }
    apply(&mut e, &mut v, vec![pexit(NOW, a, 3, None), killed]);
    rebuild(&mut v, &e, NOW + SEC);
    assert_eq!(pids(&v), [1, 100, 200, 300, 150, 400], "exited ones stay in place");
    let b = draw(&mut v, 100, 10);
    let got = lines(&b);
    assert_eq!(
        line_of(&got, 150),
        "x 1000         150       1    0            10s -             \\_ <exit 3> /sbin/init",
        "\n{}",
        got.join("\n")
    );
    assert_eq!(
        line_of(&got, 300),
        "x 1000         300     200    0            10s -                     \\_ <SIGKILL> /usr/sbin/apache2"
    );
    // Exited rows are red and dim.
    let row = 3 + got[3..].iter().position(|l| l.contains(" 150 ")).expect("row of 150") as u16;
    let c = b.cell((5, row)).expect("cell");
    assert_eq!(c.fg, Color::Red);
    assert!(c.modifier.contains(Modifier::DIM));
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(400))));

    // The linger ends: they go, the others keep their order and the selection.
    tick(&mut e, &mut v, NOW + 100 * MS + 2 * SEC);
    rebuild(&mut v, &e, NOW + 3 * SEC);
    assert_eq!(pids(&v), [1, 100, 200, 400]);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(400))));
    let got = screen(&mut v, 100, 10);
    assert!(!got.iter().any(|l| l.contains("<exit") || l.contains("<SIGKILL")), "\n{}", got.join("\n"));
}

#[test]
fn selection_follows_its_process_when_rows_come_and_go() {
    let mut v = view();
    let mut e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(300))));
    // A new process sorts above the selection: the selection moves with its row.
    apply(&mut e, &mut v, vec![fork(NOW, task(150, 150, 1, "sleep"))]);
    rebuild(&mut v, &e, NOW);
    assert_eq!(pids(&v), [1, 100, 200, 300, 150]);
    apply(&mut e, &mut v, vec![fork(NOW, task(50, 50, 1, "sleep"))]);
    rebuild(&mut v, &e, NOW);
    assert_eq!(pids(&v), [1, 50, 100, 200, 300, 150]);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(300))));
    let got = screen(&mut v, 100, 12);
    let b = draw(&mut v, 100, 12);
    let sel = (3..12).find(|&y| b.cell((0, y)).expect("cell").modifier.contains(Modifier::REVERSED));
    assert_eq!(sel.map(|y| got[y as usize].contains(" 300 ")), Some(true), "\n{}", got.join("\n"));
}

#[test]
fn new_processes_are_green_with_a_marker() {
    let mut v = view();
    let mut e = world(&mut v);
    let mut t = task(500, 500, 1, "new");
    t.proc_start_ns = NOW - SEC;
    t.start_ns = NOW - SEC;
    apply(&mut e, &mut v, vec![fork(NOW - SEC, t)]);
    rebuild(&mut v, &e, NOW);
    let b = draw(&mut v, 100, 10);
    let got = lines(&b);
    let y = 3 + got[3..].iter().position(|l| l.contains(" 500 ")).expect("row of 500") as u16;
    assert!(got[y as usize].starts_with("+ 1000         500       1    1             1s -"), "{}", got[y as usize]);
    assert_eq!(b.cell((4, y)).expect("cell").fg, Color::Green);
    // Two seconds on, it is not new any more.
    rebuild(&mut v, &e, NOW + 2 * SEC);
    let got = screen(&mut v, 100, 10);
    assert!(line_of(&got, 500).starts_with("  1000"));
}

#[test]
fn no_color_uses_markers_only() {
    let mut v = View::new(Config { no_color: true, source_note: None }, "");
    let mut e = world(&mut v);
    let mut t = task(500, 500, 1, "new");
    t.proc_start_ns = NOW - SEC;
    t.start_ns = NOW - SEC;
    apply(&mut e, &mut v, vec![fork(NOW - SEC, t), pexit(NOW, task(300, 300, 200, "apache2"), 1, None)]);
    e.set_lost(3);
    rebuild(&mut v, &e, NOW);
    key(&mut v, KeyCode::Char('p'));
    let b = draw(&mut v, 110, 10);
    let got = lines(&b);
    assert!(line_of(&got, 500).starts_with("+ "));
    assert!(line_of(&got, 300).starts_with("x "));
    assert!(got[0].starts_with("tracer watch  PAUSED  DEGRADED, repairing  tasks "), "{}", got[0]);
    assert!(got[0].ends_with("lost 3"), "{}", got[0]);
    for y in 0..10 {
        for x in 0..110 {
            let c = b.cell((x, y)).expect("cell");
            assert!(c.fg == Color::Reset && c.bg == Color::Reset, "colour at ({x}, {y}): {c:?}");
        }
    }
}

#[test]
fn header_shows_pause_and_degraded_state() {
    let mut v = view();
    let mut e = world(&mut v);
    e.set_lost(12);
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 120, 5);
    assert_eq!(got[0], "tracer watch  DEGRADED, repairing  tasks 7  processes 4  threads 3  events/s 0  lost 12");
    assert_eq!(key(&mut v, KeyCode::Char('p')), Action::Redraw);
    assert!(v.paused());
    assert!(screen(&mut v, 120, 5)[0].starts_with("tracer watch  PAUSED  DEGRADED, repairing  tasks 7 "));
    // A narrow screen still shows the states.
    assert_eq!(screen(&mut v, 20, 5)[0], "tracer watch  PAUSED");
    assert_eq!(key(&mut v, KeyCode::Char('p')), Action::Rebuild);
    assert!(!v.paused());
}

#[test]
fn events_per_second_from_the_counters() {
    let mut v = view();
    let e = world(&mut v);
    let c = |n| Counters { events_total: n, ..Counters::of(&e) };
    let cx = Containers::default();
    v.rebuild(&e, &cx, c(100), NOW);
    v.rebuild(&e, &cx, c(150), NOW + SEC / 2);
    v.rebuild(&e, &cx, c(300), NOW + SEC);
    assert!(screen(&mut v, 100, 4)[0].contains("events/s 200 "));
}

#[test]
fn narrow_terminal_clips_the_command() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    let got = screen(&mut v, 72, 8);
    assert_eq!(got[5], "  1000         200     100    4  +0.6/s     9s -                 \\_ /usr");
    assert!(got.iter().all(|l| l.chars().count() <= 72));
    let got = screen(&mut v, 20, 8);
    assert_eq!(got[0], "tracer watch  tasks");
    assert_eq!(got[3], "  0              1");
    // Tiny screens draw what fits without panicking.
    for (w, h) in [(1, 1), (5, 2), (10, 3), (0, 0), (200, 4)] {
        screen(&mut v, w, h);
        key(&mut v, KeyCode::Char('?'));
        screen(&mut v, w, h);
        key(&mut v, KeyCode::Esc);
    }
}

#[test]
fn keys_move_page_and_quit() {
    let mut v = view();
    let mut e = engine();
    let mut evs = vec![fork(1, task(1, 1, 0, "init"))];
    evs.extend((2..=200).map(|pid| fork(2, task(pid, pid, 1, "child"))));
    apply(&mut e, &mut v, evs);
    rebuild(&mut v, &e, NOW);
    screen(&mut v, 80, 13); // 10 rows fit
    key(&mut v, KeyCode::PageDown);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(11))));
    key(&mut v, KeyCode::End);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(200))));
    let got = screen(&mut v, 80, 13);
    assert!(got[12].contains(" 200 "), "the last row is on the screen:\n{}", got.join("\n"));
    key(&mut v, KeyCode::PageUp);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(190))));
    key(&mut v, KeyCode::Home);
    key(&mut v, KeyCode::Up);
    assert_eq!(v.selected(), Some(RowKey::Proc(pr(1))));
    assert_eq!(key(&mut v, KeyCode::Char('?')), Action::Redraw);
    let got = screen(&mut v, 80, 24);
    assert!(got.iter().any(|l| l.contains("Enter/Space  show or hide the threads")), "\n{}", got.join("\n"));
    assert_eq!(key(&mut v, KeyCode::Char('?')), Action::Redraw);
    assert_eq!(key(&mut v, KeyCode::Char('q')), Action::Quit);
    assert_eq!(v.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
    // In the prompt, q is text and Ctrl-C still quits.
    key(&mut v, KeyCode::Char('/'));
    assert_eq!(key(&mut v, KeyCode::Char('q')), Action::Rebuild);
    assert_eq!(v.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
}

/// a (10, cgroup 5) -> b (20, cgroup 9) and c (30, cgroup 5) -> d (40, cgroup 6).
fn contained(v: &mut View) -> Engine {
    let mut e = engine();
    let mut a = task(10, 10, 0, "a");
    a.cgroup_id = 5;
    let mut b = task(20, 20, 10, "b");
    b.cgroup_id = 9;
    let mut c = task(30, 30, 10, "c");
    c.cgroup_id = 5;
    let mut d = task(40, 40, 30, "d");
    d.cgroup_id = 6;
    apply(&mut e, v, vec![fork(1, a), fork(2, b), fork(3, c), fork(4, d)]);
    e
}

#[test]
fn container_column_and_filter() {
    let mut v = view();
    let e = contained(&mut v);
    let cx = two_containers();
    v.rebuild(&e, &cx, Counters::of(&e), NOW);
    let got = screen(&mut v, 90, 8);
    assert_eq!(
        got[3..7],
        [
            "  1000          10       0    1             9s web-a        [a]",
            "  1000          20      10    1             9s -             \\_ [b]",
            "  1000          30      10    1             9s web-a         \\_ [c]",
            "  1000          40      30    1             9s a-rather-lo+      \\_ [d]",
        ],
        "\n{}",
        got.join("\n")
    );
    // container: by name, short id, id prefix (any case), `-` for none.
    for (f, want) in [
        ("container:web-a", vec![10, 30]),
        ("container:1a2b3c4d5e6f", vec![10, 30]),
        ("container:1A2B", vec![10, 30]),
        (&format!("container:{ID_A}"), vec![10, 30]),
        ("container:a-rather-long-box-name", vec![40]),
        ("container:a-rather", vec![40]),
        ("container:-", vec![20]),
        ("container:web-b", vec![]),
        ("container:5", vec![]),
    ] {
        let mut v = View::new(Config::default(), f);
        v.rebuild(&e, &cx, Counters::of(&e), NOW);
        assert_eq!(pids(&v), want, "filter {f:?}");
    }
}

#[test]
fn group_by_container() {
    let mut v = view();
    let e = contained(&mut v);
    let cx = two_containers();
    assert_eq!(key(&mut v, KeyCode::Char('c')), Action::Rebuild);
    v.rebuild(&e, &cx, Counters::of(&e), NOW);
    let got = screen(&mut v, 90, 11);
    assert_eq!(
        got[1..10],
        [
            "4 of 4 processes  grouped by container  ? help  / filter  q quit",
            "  USER         PID    PPID  THR   SPAWN    AGE CONTAINER    COMMAND",
            "  no container: 1 process",
            "  1000          20      10    1             9s -            [b]",
            "  runc a-rather-long-box-name: 1 process",
            "  1000          40      30    1             9s a-rather-lo+ [d]",
            "  docker 1a2b3c4d5e6f web-a busybox:1: 2 processes",
            "  1000          10       0    1             9s web-a        [a]",
            "  1000          30      10    1             9s web-a         \\_ [c]",
        ],
        "\n{}",
        got.join("\n")
    );
    assert_eq!(v.rows()[0].key(), RowKey::Group(0));
    let web = Known { container: cx.of_cgroup(5).expect("web-a").container.clone(), name: None, image: None };
    assert_eq!(v.rows()[4].key(), RowKey::Group(group_key(Some(&web))));
    // The selection stays on a group's header when the rows change.
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    key(&mut v, KeyCode::Down);
    assert_eq!(v.selected(), Some(RowKey::Group(group_key(Some(&web)))));
    v.rebuild(&e, &Containers::default(), Counters::of(&e), NOW);
    assert_eq!(pids(&v), [10, 20, 30, 40]);
}

#[test]
fn ten_thousand_tasks() {
    let mut v = view();
    let mut e = engine();
    let mut evs = vec![fork(1, task(1, 1, 0, "init"))];
    for i in 0..2500u32 {
        let pid = 10 + i * 4;
        evs.push(fork(2, task(pid, pid, 1, "worker")));
        evs.extend((1..4).map(|k| clone(3, task(pid, pid + k, 1, "worker"))));
    }
    apply(&mut e, &mut v, evs);
    assert_eq!(e.stats().threads, 10_001);
    let t0 = std::time::Instant::now();
    for _ in 0..10 {
        rebuild(&mut v, &e, NOW);
        screen(&mut v, 200, 50);
    }
    let per_frame = t0.elapsed() / 10;
    // Generous (debug builds, a busy machine): the release build is far below.
    assert!(per_frame < std::time::Duration::from_millis(500), "{per_frame:?} per rebuild and frame");
    assert_eq!(v.rows().len(), 2501);
    key(&mut v, KeyCode::End);
    let got = screen(&mut v, 200, 50);
    assert!(got[49].contains(&format!(" {} ", 10 + 2499 * 4)));
}

#[test]
fn snapshots_load_into_the_same_view() {
    let mut v = view();
    let mut e = world(&mut v);
    apply(&mut e, &mut v, vec![pexit(NOW, task(300, 300, 200, "apache2"), 3, None)]);
    rebuild(&mut v, &e, NOW);
    let direct = screen(&mut v, 100, 9);
    let opts = crate::render::RenderOptions { show_exited: true, ..Default::default() };
    let snap = crate::render::json(&e, &crate::render::Filter::default(), &opts);
    let (copy, unknown) = engine_from_snapshot(&snap, EngineConfig { passwd: None, ..Default::default() });
    assert!(unknown.is_empty());
    assert!(super::daemon::containers_from_snapshot(&snap).is_empty());
    let mut w = view();
    // Spawn rates come from the updates, not the snapshot: count them the same way.
    for ts in [9_500 * MS, 9_500 * MS, 9_600 * MS] {
        w.spawn(pr(200), ts);
    }
    rebuild(&mut w, &copy, NOW);
    assert_eq!(screen(&mut w, 100, 9)[2..], direct[2..]);
}

#[test]
fn containers_come_from_the_daemons_snapshot() {
    let mut v = view();
    let e = contained(&mut v);
    let cx = two_containers();
    v.rebuild(&e, &cx, Counters::of(&e), NOW);
    let direct = screen(&mut v, 90, 8);
    let opts = crate::render::RenderOptions { show_exited: true, ..Default::default() };
    let g = crate::render::Grouping::default();
    let snap = crate::render::json_in(&e, &cx, &crate::render::Filter::default(), &g, &opts);
    let (copy, _) = engine_from_snapshot(&snap, EngineConfig { passwd: None, ..Default::default() });
    let copy_cx = super::daemon::containers_from_snapshot(&snap);
    for cgroup in [5, 6] {
        assert_eq!(copy_cx.of_cgroup(cgroup), cx.of_cgroup(cgroup), "cgroup {cgroup}");
    }
    assert_eq!(copy_cx.of_cgroup(9), None);
    let mut w = view();
    w.rebuild(&copy, &copy_cx, Counters::of(&copy), NOW);
    assert_eq!(screen(&mut w, 90, 8)[2..], direct[2..]);
}

#[test]
fn spawn_rates_ages_and_filters() {
    assert_eq!(spawn_rate(0), "");
    assert_eq!(spawn_rate(4), "+0.8/s");
    assert_eq!(spawn_rate(60), "+12/s");
    assert_eq!(age(0), "0s");
    assert_eq!(age(59 * SEC), "59s");
    assert_eq!(age(65 * SEC), "1m05");
    assert_eq!(age(3 * 3600 * SEC + 7 * 60 * SEC), "3h07");
    assert_eq!(age(12 * 86_400 * SEC + 3 * 3600 * SEC), "12d03");
    assert!(contains_ci(b"/usr/sbin/apache2\0-k\0start\0", b"apache2 -k"));
    assert!(!contains_ci(b"bash", b"bashful"));
    let f = Filter::parse("  Apache  pid:12 user:www-data container:abc pid:x ");
    assert_eq!(f.text, b"apache pid:x");
    assert_eq!((f.pid, f.user.as_deref(), f.container.as_deref()), (Some(12), Some("www-data"), Some("abc")));
    assert!(Filter::parse(" ").is_empty());

    // Spawns older than the window no longer count.
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW + 6 * SEC);
    assert!(v.rows().iter().all(|r| !matches!(r, Row::Proc(p) if p.spawns > 0)));
}

#[test]
fn initial_filter_from_arguments() {
    use clap::Parser;
    let cli = crate::cli::Cli::parse_from(["tracer", "watch", "--filter", "apache2", "--pid", "7", "--container", "x"]);
    let Some(crate::cli::Command::Watch(args)) = cli.command else { panic!("not watch") };
    assert_eq!(super::initial_filter(&args), "apache2 pid:7 container:x");
}

#[test]
fn keys_from_terminal_bytes() {
    use super::keys::KeyParser;
    let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
    let mut p = KeyParser::default();
    assert_eq!(
        p.feed(b"q/a\r\x7f \x1b[A\x1b[B\x1bOH\x1b[4~\x1b[5~\x1b[6~\x1b[1;5C"),
        [
            k(KeyCode::Char('q')),
            k(KeyCode::Char('/')),
            k(KeyCode::Char('a')),
            k(KeyCode::Enter),
            k(KeyCode::Backspace),
            k(KeyCode::Char(' ')),
            k(KeyCode::Up),
            k(KeyCode::Down),
            k(KeyCode::Home),
            k(KeyCode::End),
            k(KeyCode::PageUp),
            k(KeyCode::PageDown),
            k(KeyCode::Right),
        ]
    );
    assert_eq!(p.feed(b"\x03"), [KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)]);
    // A lone Esc is the key; an unknown sequence is dropped whole.
    assert_eq!(p.feed(b"\x1b"), [k(KeyCode::Esc)]);
    assert_eq!(p.feed(b"\x1b[12;40R\x1b[?1;2cx"), [k(KeyCode::Char('x'))]);
    // Sequences and UTF-8 cut between reads wait for their end.
    assert_eq!(p.feed(b"\x1b[5"), []);
    assert_eq!(p.feed(b"~\xc3"), [k(KeyCode::PageUp)]);
    assert_eq!(p.feed(b"\xa9"), [k(KeyCode::Char('é'))]);
    assert_eq!(p.feed(b"\x1bO"), []);
    assert_eq!(p.feed(b"A"), [k(KeyCode::Up)]);
    // Garbage never panics.
    let mut x: u32 = 12345;
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..(x % 40))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        p.feed(&bytes);
    }
}

#[test]
fn container_news_in_the_status_line_while_it_is_news() {
    let mut v = view();
    let e = world(&mut v);
    rebuild(&mut v, &e, NOW);
    v.note("container started: docker web-a, entrypoint after 133.5 ms, init pid 950".into(), NOW);
    let got = screen(&mut v, 160, 10);
    assert_eq!(
        got[1],
        "4 of 4 processes  container started: docker web-a, entrypoint after 133.5 ms, init pid 950  ? help  / filter  q quit"
    );
    // Bold (and cyan with colour) where the news is.
    let b = draw(&mut v, 160, 10);
    let cell = b.cell((20, 1)).expect("cell");
    assert!(cell.modifier.contains(Modifier::BOLD) && cell.fg == Color::Cyan, "{cell:?}");
    // Gone once it is old.
    rebuild(&mut v, &e, NOW + super::view::NEWS_NS);
    let got = screen(&mut v, 160, 10);
    assert_eq!(got[1], "4 of 4 processes  ? help  / filter  q quit");
}

/// A process's comm and argv and a container's name are shown escaped, in the
/// rows of either layout, the threads and the group headers.
#[test]
fn the_traced_worlds_strings_are_escaped() {
    let mut v = view();
    let mut e = engine();
    let mut a = task(10, 10, 0, "a\u{1b}[2J\u{7}");
    a.cgroup_id = 7;
    let b = task(20, 20, 10, "b");
    let mut b2 = task(20, 21, 10, "t\u{9b}1m\\");
    b2.start_ns = 5;
    let evil = ["sh", "\u{1b}]52;c;aGk=\u{7}", "\u{1b}]0;title\u{7}\nfake"];
    apply(&mut e, &mut v, vec![fork(1, a), fork(2, b), exec(3, b, 20, "/bin/sh", &evil), clone(5, b2)]);
    let mut cx = Containers::default();
    let runc = crate::container::plain("/box").expect("runc");
    cx.insert(7, Arc::new(Known { container: runc, name: Some("n\u{1b}]0;x\u{7}".into()), image: None }));
    let inert = |s: &str| s.chars().all(|c| !c.is_control());
    for grouped in [false, true] {
        let mut v = View::new(Config::default(), "");
        if grouped {
            key(&mut v, KeyCode::Char('c'));
        }
        v.rebuild(&e, &cx, Counters::of(&e), NOW);
        for _ in 0..4 {
            if v.selected() != Some(RowKey::Proc(pr(20))) {
                key(&mut v, KeyCode::Down);
            }
        }
        assert_eq!(v.selected(), Some(RowKey::Proc(pr(20))), "grouped {grouped}");
        key(&mut v, KeyCode::Enter);
        v.rebuild(&e, &cx, Counters::of(&e), NOW);
        let texts: Vec<String> = v.rows().iter().map(|r| super::ui::row_text(r, NOW)).collect();
        let all = texts.join("\n");
        assert!(texts.iter().all(|t| inert(t)), "grouped {grouped}:\n{all:?}");
        assert!(all.contains("[a\\x1b[2J\\x07]"), "grouped {grouped}:\n{all}");
        assert!(all.contains("sh \\x1b]52;c;aGk=\\x07 \\x1b]0;title\\x07\\nfake"), "grouped {grouped}:\n{all}");
        assert!(all.contains("n\\x1b]0;x\\x"), "grouped {grouped}: the container's name:\n{all}");
        assert!(all.contains("t\\xc2\\x9b1m\\\\"), "grouped {grouped}: the thread's comm:\n{all}");
        if grouped {
            assert!(all.contains("runc box n\\x1b]0;x\\x07: "), "{all}");
        }
    }
}
