//! Hostile names: a process exec'd by a file name full of terminal control
//! sequences, with such arguments (OSC 52, the clipboard; OSC 0, the window
//! title), that names itself with ESC, CSI and BEL (prctl PR_SET_NAME). Every text
//! view (`tracer events`, `ps`, `ps -L`, `ps -C`, `containers`, `stats`, in
//! process and through a daemon) shows it escaped: no control byte reaches the
//! terminal, and the escaped form is there, so the process was shown. So does a
//! plain runc container's start story, with such an entrypoint.

use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{
    self, TempDir,
    daemon::Daemon,
    runc::RuncContainer,
    tracer::TRACER,
    workload::{Workload, compile_c},
};

/// Names itself `argv[1]`, says so, and waits for the end of its stdin.
const NAMER_C: &str = r#"
#include <stdio.h>
#include <sys/prctl.h>

int main(int argc, char **argv) {
    char buf[64];
    if (argc < 2 || prctl(PR_SET_NAME, argv[1], 0, 0, 0) != 0)
        return 2;
    printf("named\n");
    fflush(stdout);
    while (fgets(buf, sizeof buf, stdin))
        ;
    return 0;
}
"#;

/// The file name it is exec'd by (a symlink to the program): its comm after the exec.
const LINK: &str = "ex\x1b[31m\x07";
const LINK_SHOWN: &str = "ex\\x1b[31m\\x07";
/// The name it gives itself: clear the screen, set the title (12 bytes, within comm's 15).
const NAME: &str = "h\x1b[2J\x1b]0;t\x07!";
const NAME_SHOWN: &str = "h\\x1b[2J\\x1b]0;t\\x07!";
/// Arguments: write the clipboard, set the window title.
const OSC52: &str = "\x1b]52;c;aGFja2Vk\x07";
const OSC0: &str = "\x1b]0;title\x07";
const ARGS_SHOWN: &str = "h\\x1b[2J\\x1b]0;t\\x07! \\x1b]52;c;aGFja2Vk\\x07 \\x1b]0;title\\x07";

const WAIT: Duration = Duration::from_secs(30);

/// What is wrong with `out` for a terminal: a C0 control other than newline and
/// tab, DEL, a C1 control (U+0080..U+009F), or bytes that are not UTF-8.
fn unsafe_bytes(out: &[u8]) -> Option<String> {
    if let Some(i) = out.iter().position(|&b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f) {
        return Some(format!("byte {:#04x} at {i}", out[i]));
    }
    let s = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}")).err();
    s.or_else(|| {
        let text = String::from_utf8_lossy(out);
        text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t').map(|c| format!("C1 control {c:?}"))
    })
}

fn assert_safe(what: &str, out: &[u8]) {
    if let Some(problem) = unsafe_bytes(out) {
        panic!("{what}: {problem} in its output:\n{}", String::from_utf8_lossy(out).escape_debug());
    }
}

/// `tracer events ARGS` as text, its stdout in a file.
struct TextEvents {
    child: Child,
    dir: TempDir,
    what: String,
}

impl TextEvents {
    fn start(args: &[&str]) -> TextEvents {
        let dir = TempDir::new("hostile-events");
        let what = format!("tracer events {}", args.join(" "));
        let child = Command::new(TRACER)
            .arg("events")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("err")).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let ev = TextEvents { child, dir, what };
        let t = Instant::now();
        while !ev.stderr().contains("tracing") {
            assert!(t.elapsed() < WAIT, "{} did not start: {}", ev.what, ev.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        ev
    }

    fn stdout(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("out")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("err")).unwrap_or_default()
    }

    /// Waits until a line has every one of `parts`; that line.
    fn wait_line(&self, parts: &[&str]) -> String {
        let found = support::poll(WAIT, || {
            let out = self.stdout();
            String::from_utf8_lossy(&out).lines().find(|l| parts.iter().all(|p| l.contains(p))).map(str::to_string)
        });
        found.unwrap_or_else(|| {
            let out = self.stdout();
            panic!(
                "{}: no line with {parts:?} after {WAIT:?}; the lines with escapes:\n{}\nstderr: {}",
                self.what,
                String::from_utf8_lossy(&out).lines().filter(|l| l.contains("\\x1b")).collect::<Vec<_>>().join("\n"),
                self.stderr()
            )
        })
    }

    /// SIGINT, its end; its whole stdout.
    fn stop(mut self) -> Vec<u8> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "{} ended with {st}: {}", self.what, self.stderr());
                break;
            }
            assert!(t.elapsed() < WAIT, "{} did not end on SIGINT: {}", self.what, self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stdout()
    }
}

impl Drop for TextEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The program, and a symlink to it named [`LINK`] to exec it by.
fn namer(dir: &Path) -> (support::workload::CProgram, PathBuf) {
    let prog = compile_c("namer", NAMER_C);
    let link = dir.join(LINK);
    std::os::unix::fs::symlink(&prog.path, &link).expect("symlink with a hostile name");
    (prog, link)
}

/// Runs `tracer ARGS` (which must succeed) until its output shows `want`, or
/// once when `want` is empty; asserts every output it printed is safe.
fn shown(args: &[&str], want: &[&str]) -> String {
    let out = support::poll(WAIT, || {
        let raw = run_raw(args);
        assert_safe(&format!("tracer {}", args.join(" ")), &raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        want.iter().all(|w| text.contains(w)).then_some(text)
    });
    out.unwrap_or_else(|| {
        let last = String::from_utf8_lossy(&run_raw(args)).into_owned();
        panic!("tracer {}: no {want:?} within {WAIT:?}; it printed:\n{last}", args.join(" "))
    })
}

/// `tracer ARGS`'s stdout, bytes as they are.
fn run_raw(args: &[&str]) -> Vec<u8> {
    let out = support::run(Command::new(TRACER).args(args), Duration::from_secs(60));
    assert!(out.status.success(), "tracer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn hostile_names_are_escaped_in_every_text_view() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let dir = TempDir::new("hostile");
    let (_prog, link) = namer(dir.path());
    let daemon = Daemon::start(&[]);
    let socket = daemon.socket().display().to_string();
    let own = TextEvents::start(&["--standalone"]);
    let via = TextEvents::start(&["--socket", &socket]);

    let mut w = Workload::spawn("namer", Command::new(&link).args([NAME, OSC52, OSC0]));
    assert_eq!(w.line(WAIT), "named", "the workload did not name itself");
    let pid = w.pid().to_string();
    // The oracle: the kernel has the name and the arguments as they were given.
    let comm = std::fs::read(format!("/proc/{pid}/comm")).expect("its comm");
    assert_eq!(comm.strip_suffix(b"\n"), Some(NAME.as_bytes()), "prctl PR_SET_NAME did not take");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its cmdline");
    assert!(cmdline.windows(OSC52.len()).any(|x| x == OSC52.as_bytes()), "{}", cmdline.escape_ascii());
    assert!(link.as_os_str().as_bytes().contains(&0x1b));

    let link_shown = format!("{}/{LINK_SHOWN}", dir.path().display());
    let command = format!("{link_shown} {ARGS_SHOWN}");
    for client in [["--standalone", ""], ["--socket", socket.as_str()]] {
        let client: Vec<&str> = client.into_iter().filter(|a| !a.is_empty()).collect();
        let with =
            |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(client.iter().copied()).collect() };
        let ps = shown(&with(&["ps"]), &[&command]);
        let line = ps.lines().find(|l| l.contains(&command)).unwrap_or_default();
        assert!(line.split_whitespace().nth(1) == Some(pid.as_str()), "ps {client:?}: not pid {pid}: {line}");
        // Filtered by its comm, raw as the kernel has it: the process is there (the
        // daemon saw the rename).
        shown(&with(&["ps", "--comm", NAME]), &[&command]);
        shown(&with(&["ps", "-L"]), &[&command, &pid]);
        shown(&with(&["ps", "-C"]), &[]);
        shown(&with(&["containers"]), &[]);
        shown(&with(&["stats"]), &[]);
    }

    w.close_stdin();
    w.wait_ok(WAIT);
    for ev in [&own, &via] {
        // The exec (the file name and arguments), the exec's rename, the prctl's, and
        // the exit under the new name.
        ev.wait_line(&[" exec ", &pid, &format!("{link_shown}: {command}")]);
        ev.wait_line(&[" rename ", &pid, &format!("-> {LINK_SHOWN}")]);
        ev.wait_line(&[" rename ", &pid, &format!("{LINK_SHOWN} -> {NAME_SHOWN}")]);
        ev.wait_line(&[" exit ", &pid, NAME_SHOWN]);
    }
    for ev in [own, via] {
        let what = ev.what.clone();
        assert_safe(&what, &ev.stop());
    }
    daemon.stop();
}

/// A container whose entrypoint has such arguments: its start story, its `ps -C`
/// header and rows and the containers list are safe, and show them escaped.
#[test]
fn hostile_entrypoint_is_escaped_in_stories_and_container_views() {
    if !support::require_root() || !support::require_tool("runc") {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        assert!(!support::under_ci(), "/bin/busybox (busybox-static) is missing");
        eprintln!("skipping: no /bin/busybox");
        return;
    }
    let stories = TextEvents::start(&["--containers", "--standalone"]);
    // sh stays (a list, not one command to exec), with the arguments as $0 and $1.
    let c = RuncContainer::run_args("hostile", &["/bin/sh", "-c", "sleep 300; :", OSC0, OSC52]);
    let args = "/bin/sh -c sleep 300; : \\x1b]0;title\\x07 \\x1b]52;c;aGFja2Vk\\x07";
    stories.wait_line(&["container start", &c.id]);
    stories.wait_line(&["entrypoint", &format!("/bin/sh: {args}")]);
    let ps = shown(&["ps", "-C", "--standalone"], &[&format!("[runc {}]", c.id), args]);
    let header = ps.lines().position(|l| l.contains(&format!("[runc {}]", c.id)));
    let row = ps.lines().position(|l| l.contains(args));
    assert!(header < row, "ps -C: the process is not under its container's header:\n{ps}");
    shown(&["ps", "-C", "-L", "--standalone"], &[args]);
    shown(&["containers", "--standalone"], &[&c.id]);
    let id = c.id.clone();
    c.stop();
    stories.wait_line(&["container stop", &id]);
    assert_safe(&stories.what.clone(), &stories.stop());
}
