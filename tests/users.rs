//! User names through NSS: `tracer ps`'s USER column and `--user NAME`, standalone
//! and through a daemon, against `getent passwd` and `ps -o user=` as the
//! oracles, for a user the test makes with `useradd`, and again after
//! `usermod -l` renames it under a running daemon.

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use crate::support::{
    self, TempDir, daemon::Daemon, poll, rootfs::busybox_rootfs, tracer::tracer_out, workload::Group,
};

/// The test's user, and its name after the rename: 8 characters at most, so
/// that `ps` shows them whole.
const USER: &str = "trc-nss1";
const RENAMED: &str = "trc-nss2";

/// How long a daemon may take to show a rename: its passwd check is once a
/// second, the lookup a thread's, its tick 250 ms; the rest is a busy machine.
const RENAME_PATIENCE: Duration = Duration::from_secs(30);

/// Removes the test's user (under either name) when the test ends.
struct UserCleanup;

impl Drop for UserCleanup {
    fn drop(&mut self) {
        remove_test_user();
    }
}

/// Only the names this test makes: no other user is touched. The group
/// useradd made keeps the first name (usermod -l renames the user alone).
fn remove_test_user() {
    for name in [USER, RENAMED] {
        if getent(name).is_some() {
            let _ = Command::new("userdel").arg(name).status();
        }
    }
    for name in [USER, RENAMED] {
        let group = support::run(Command::new("getent").args(["group", name]), Duration::from_secs(30));
        if group.status.success() {
            let _ = Command::new("groupdel").arg(name).status();
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = support::run(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `getent passwd KEY` (a name or a uid): the entry's (name, uid, gid).
fn getent(key: &str) -> Option<(String, u32, u32)> {
    let out = support::run(Command::new("getent").args(["passwd", key]), Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = text.trim().split(':').collect();
    match (f.first(), f.get(2).and_then(|u| u.parse().ok()), f.get(3).and_then(|g| g.parse().ok())) {
        (Some(name), Some(uid), Some(gid)) if out.status.success() => Some((name.to_string(), uid, gid)),
        _ => None,
    }
}

/// What `ps -o user=` shows for `pid`.
fn ps_user(pid: u32) -> String {
    run_ok(Command::new("ps").args(["-o", "user=", "-p", &pid.to_string()])).trim().to_string()
}

/// The USER column of `pid`'s line in `tracer ps ARGS` (USER PID ... lines).
fn tracer_user(args: &[&str], pid: u32) -> Option<String> {
    let text = tracer_out(args);
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let user = f.next()?;
        (f.next()? == pid.to_string()).then(|| user.to_string())
    })
}

#[test]
fn user_names_come_through_nss_and_follow_a_rename() {
    if !support::require_root()
        || !["useradd", "usermod", "userdel", "getent", "ps", "chroot", "busybox"]
            .iter()
            .all(|t| support::require_tool(t))
    {
        return;
    }
    remove_test_user();
    let _cleanup = UserCleanup;
    run_ok(Command::new("useradd").args(["-M", "-s", "/usr/sbin/nologin", USER]));
    let (name, uid, gid) = getent(USER).expect("getent passwd knows the user useradd made");
    assert_eq!(name, USER);
    let d = Daemon::start(&[]);
    let socket = d.socket().display().to_string();
    // The user's process runs chrooted (into a busybox root): usermod -l refuses
    // a user with processes under its own root, and a rename under a running
    // process is the case to see.
    let root = TempDir::new("users-root");
    busybox_rootfs(root.path());
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the root");
    let userspec = format!("--userspec={uid}:{gid}");
    let chroot_args = [userspec.as_str(), &root.path().display().to_string(), "/bin/sleep", "1000"];
    let mut sleeper = Group::spawn("sleep", Command::new("chroot").args(chroot_args));
    let pid = sleeper.pid();
    assert_eq!(ps_user(pid), USER, "the oracle: ps names the process's user");

    // Standalone: the engine of this command names it.
    let alone = ["ps", "--standalone", "--user", USER];
    assert_eq!(tracer_user(&alone, pid).as_deref(), Some(USER), "tracer ps --standalone --user {USER}");
    // Through the daemon, once its events brought the process.
    let through = ["ps", "--socket", &socket, "--user", USER];
    let shown = poll(RENAME_PATIENCE, || tracer_user(&through, pid));
    assert_eq!(shown.as_deref(), Some(USER), "the daemon's ps --user {USER}; stderr:\n{}", d.stderr());

    // The rename, with the process running: the oracles first.
    run_ok(Command::new("usermod").args(["-l", RENAMED, USER]));
    assert_eq!(getent(&uid.to_string()).map(|e| e.0).as_deref(), Some(RENAMED));
    assert_eq!(ps_user(pid), RENAMED);
    // The daemon sees /etc/passwd change and names its processes afresh.
    let renamed = ["ps", "--socket", &socket, "--user", RENAMED];
    let shown = poll(RENAME_PATIENCE, || tracer_user(&renamed, pid));
    assert_eq!(shown.as_deref(), Some(RENAMED), "the daemon after usermod -l; stderr:\n{}", d.stderr());
    assert_eq!(tracer_user(&through, pid), None, "the old name still selects the process");
    let snap = d.snapshot(Some(pid));
    let user = snap["processes"].as_array().and_then(|ps| ps.iter().find(|p| p["pid"] == pid)).map(|p| &p["user"]);
    assert_eq!(user.and_then(|u| u.as_str()), Some(RENAMED), "the daemon's JSON snapshot: {snap}");
    // And a new standalone engine.
    let alone = ["ps", "--standalone", "--user", RENAMED];
    assert_eq!(tracer_user(&alone, pid).as_deref(), Some(RENAMED), "tracer ps --standalone after the rename");

    sleeper.stop();
    d.stop();
}
