//! The socket's safety and the daemon's limits: what [`listen::bind`] does with
//! whatever is at the path, and how [`server::serve`] holds up against a flood
//! of connections, a client over the cap, a trickling client and an endless
//! request. No root and no BPF needed.

use std::{
    io::ErrorKind,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixStream, unix::OwnedReadHalf},
};

use super::{
    listen,
    server::Config,
    tests::{Client, PATIENCE, config, socket_path, with_daemon},
};

/// A fresh temporary directory (the one [`socket_path`] made), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        TempDir(socket_path().parent().expect("a directory").to_path_buf())
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bind_error(path: &Path) -> String {
    match listen::bind(path, None).await {
        Ok(_) => panic!("bind over {} succeeded", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_regular_file_at_the_path_survives_and_bind_fails() {
    let dir = TempDir::new();
    let path = dir.join("passwd");
    std::fs::write(&path, "root:x:0:0\n").expect("write");
    let e = bind_error(&path).await;
    assert!(e.contains("is a regular file, not a socket") && e.contains("--socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "root:x:0:0\n");
}

#[tokio::test]
async fn a_symlink_is_refused_and_its_target_survives() {
    let dir = TempDir::new();
    let target = dir.join("target");
    std::fs::write(&target, "keep").expect("write");
    let path = dir.join("tracer.sock");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let e = bind_error(&path).await;
    assert!(e.contains("is a symbolic link"), "{e}");
    assert!(std::fs::symlink_metadata(&path).expect("link").file_type().is_symlink(), "the link is left");
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
}

#[tokio::test]
async fn a_directory_is_refused() {
    let dir = TempDir::new();
    let path = dir.join("sockdir");
    std::fs::create_dir(&path).expect("mkdir");
    std::fs::write(path.join("inside"), "x").expect("write");
    let e = bind_error(&path).await;
    assert!(e.contains("is a directory"), "{e}");
    assert!(path.join("inside").exists(), "the directory is left whole");
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = TempDir::new();
    let path = dir.join("tracer.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(std::fs::symlink_metadata(&path).is_ok(), "a dropped listener leaves its socket file");
    let listener = listen::bind(&path, None).await.expect("bind over a stale socket");
    let (_client, accepted) = tokio::join!(UnixStream::connect(&path), listener.accept());
    accepted.expect("the new socket accepts");
    let mode = std::fs::metadata(&path).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
}

#[tokio::test]
async fn a_live_socket_makes_bind_fail() {
    let dir = TempDir::new();
    let path = dir.join("tracer.sock");
    let live = tokio::net::UnixListener::bind(&path).expect("bind");
    let e = bind_error(&path).await;
    assert!(e.contains("already running"), "{e}");
    // The live daemon's socket is left alone: it still accepts.
    let (_client, accepted) = tokio::join!(UnixStream::connect(&path), live.accept());
    accepted.expect("the live socket still accepts");
}

#[tokio::test]
async fn a_missing_directory_is_made_0750_for_the_group() {
    let dir = TempDir::new();
    let path = dir.join("run").join("tracer").join("tracer.sock");
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let _listener = listen::bind(&path, Some(gid)).await.expect("bind");
    let dir = std::fs::metadata(path.parent().expect("dir")).expect("dir made");
    assert_eq!(dir.permissions().mode() & 0o777, 0o750, "{:o}", dir.permissions().mode());
    assert_eq!(dir.gid(), gid);
    let sock = std::fs::metadata(&path).expect("socket");
    assert_eq!(sock.gid(), gid);
}

/// Test settings with `max` clients at once and requests due within `timeout`.
fn limited(max: usize, timeout: Duration) -> Config {
    Config { max_clients: max, request_timeout: timeout, ..config(64, Duration::from_secs(5)) }
}

/// Whether `v` is the error line of a client over the cap.
fn is_over_cap(v: &Value) -> bool {
    v["ok"] == false && v["error"].as_str().is_some_and(|e| e.starts_with("too many clients"))
}

/// A connection, retried while the listener's backlog is full.
async fn connect_raw(path: &Path) -> UnixStream {
    loop {
        match UnixStream::connect(path).await {
            Ok(c) => return c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => tokio::task::yield_now().await,
            Err(e) => panic!("connect: {e}"),
        }
    }
}

#[tokio::test]
async fn a_client_over_the_cap_gets_one_error_line() {
    with_daemon(limited(2, PATIENCE), |h| async move {
        let mut a = Client::connect(&h.path).await;
        let mut b = Client::connect(&h.path).await;
        assert_eq!(a.ask(json!({"verb": "version"})).await["ok"], true);
        assert_eq!(b.ask(json!({"verb": "version"})).await["ok"], true);
        let mut c = Client::connect(&h.path).await;
        let first = c.line().await.expect("an error line");
        assert!(is_over_cap(&first), "{first}");
        assert_eq!(c.line().await, None, "closed after the one line");
        assert_eq!(a.ask(json!({"verb": "stats"})).await["ok"], true, "the others are still served");
    })
    .await;
}

/// Raises the soft limit on open files to at least `want` (within the hard limit).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= want {
        return;
    }
    assert!(lim.rlim_max >= want, "RLIMIT_NOFILE hard limit {} is below the {want} this test needs", lim.rlim_max);
    lim.rlim_cur = want;
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_leaves_the_daemon_serving() {
    const FLOOD: usize = 2000;
    const CAP: usize = 64;
    raise_nofile(4 * FLOOD as u64);
    with_daemon(limited(CAP, PATIENCE), |h| async move {
        let mut flood = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            flood.push(connect_raw(&h.path).await);
        }
        // The first CAP hold their places (they say nothing); every other one is
        // told the daemon is full.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut readers = tokio::task::JoinSet::new();
        for conn in flood {
            let tx = tx.clone();
            readers.spawn(async move {
                let (r, _w) = conn.into_split();
                let mut c = BufReader::new(r);
                let mut s = String::new();
                let _ = c.read_line(&mut s).await;
                let _ = tx.send(serde_json::from_str::<Value>(&s).is_ok_and(|v| is_over_cap(&v)));
            });
        }
        let mut refused = 0;
        while refused < FLOOD - CAP {
            let over = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("refusals in time").expect("a reader");
            assert!(over, "a flooding client got something other than the over-cap line");
            refused += 1;
        }
        // The flood goes away; twenty ordinary clients are served in full.
        readers.abort_all();
        while readers.join_next().await.is_some() {}
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let path = h.path.clone();
            clients.spawn(async move {
                // Places free up as the daemon sees the flood's ends.
                loop {
                    let mut c = Client::connect(&path).await;
                    let v = c.ask(json!({"verb": "version"})).await;
                    if is_over_cap(&v) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    assert_eq!(v["ok"], true, "{v}");
                    let s = c.ask(json!({"verb": "stats"})).await;
                    assert_eq!(s["stats"]["processes"], 2, "{s}");
                    return;
                }
            });
        }
        let served = tokio::time::timeout(PATIENCE, clients.join_all()).await;
        assert!(served.is_ok(), "twenty clients were not served within {PATIENCE:?} of the flood");
    })
    .await;
}

/// The next line of `r`, parsed; `None` at the end of the stream.
async fn line_of(r: &mut BufReader<OwnedReadHalf>) -> Option<Value> {
    let mut s = String::new();
    let n = tokio::time::timeout(PATIENCE, r.read_line(&mut s)).await.expect("a line in time").expect("read");
    (n > 0).then(|| serde_json::from_str(&s).expect("each line is JSON"))
}

#[tokio::test]
async fn a_trickling_client_is_dropped_after_the_request_timeout() {
    let timeout = Duration::from_millis(300);
    with_daemon(limited(8, timeout), |h| async move {
        let (r, mut w) = UnixStream::connect(&h.path).await.expect("connect").into_split();
        let mut r = BufReader::new(r);
        // One byte every 50 ms, never a whole line, until the daemon hangs up.
        let trickle = tokio::spawn(async move {
            for b in br#"{"verb":"version"                                    }"#.iter().cycle() {
                if w.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        // Meanwhile the others are served.
        let mut other = Client::connect(&h.path).await;
        assert_eq!(other.ask(json!({"verb": "version"})).await["ok"], true);
        let v = line_of(&mut r).await.expect("an error line");
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.starts_with("request not complete within 0.3 s")), "{v}");
        assert_eq!(line_of(&mut r).await, None, "dropped after the error line");
        tokio::time::timeout(PATIENCE, trickle).await.expect("the trickle ends with the connection").expect("task");
        assert_eq!(other.ask(json!({"verb": "stats"})).await["ok"], true);
    })
    .await;
}

#[tokio::test]
async fn a_one_gib_request_is_cut_and_the_daemon_stays_healthy() {
    const GIB: u64 = 1 << 30;
    with_daemon(limited(8, PATIENCE), |h| async move {
        let (r, mut w) = UnixStream::connect(&h.path).await.expect("connect").into_split();
        let mut r = BufReader::new(r);
        // Streamed from one 64 KiB buffer: nothing like a GiB is ever allocated.
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0u64;
            while sent < GIB {
                match w.write_all(&chunk).await {
                    Ok(()) => sent += chunk.len() as u64,
                    Err(_) => break,
                }
            }
            sent
        });
        let v = line_of(&mut r).await.expect("an error line");
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.starts_with("request longer than")), "{v}");
        // Closed with the rest of the request unread: the end comes as a reset.
        let mut rest = String::new();
        let end = tokio::time::timeout(PATIENCE, r.read_line(&mut rest)).await.expect("the end in time");
        assert!(matches!(end, Ok(0)) || end.is_err(), "closed after the error line, not {end:?} {rest:?}");
        let sent = tokio::time::timeout(PATIENCE, writer).await.expect("the writer stops").expect("task");
        assert!(sent < 64 << 20, "the daemon took {sent} bytes of a request line");
        let mut c = Client::connect(&h.path).await;
        assert_eq!(c.ask(json!({"verb": "version"})).await["ok"], true);
    })
    .await;
}
