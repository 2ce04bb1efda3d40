//! The daemon's socket: binding it safely, and accepting clients within a cap.
//!
//! [`bind`] removes only a stale *socket* at the path (nothing else: not a file,
//! a directory or a symbolic link, which it refuses with a line saying what to
//! do), refuses to run over a live daemon, and creates a missing directory mode
//! 0750 for the daemon's group. [`accept`] serves at most `max` clients at once
//! (a [`Semaphore`] of permits, one per client): the next one gets one error
//! line and is closed. It never ends on an error: out of file descriptors
//! (EMFILE, ENFILE) it backs off and goes on.

use std::{
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::protocol;

/// How long accepting pauses when the process is out of file descriptors.
const BACKOFF: Duration = Duration::from_millis(100);

/// Binds the socket at `path`: mode 0660, group `gid` (when given). A stale
/// socket there (no daemon answers) is replaced; anything else is refused.
pub async fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener> {
    make_dir(path, gid)?;
    clear_stale(path).await?;
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    Ok(listener)
}

/// Creates the socket's directory if it is missing: mode 0750, group `gid`.
/// A directory that exists is left as it is (its owner chose its mode).
fn make_dir(path: &Path, gid: Option<u32>) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("creating {} (the socket's directory)", dir.display()))?;
    // The mode asked for is cut by the umask: set it outright.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(dir, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", dir.display()))?;
    }
    Ok(())
}

/// Makes way for the socket: nothing at `path`, or a stale socket (removed).
/// Refuses a live daemon's socket and anything that is not a socket.
async fn clear_stale(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot look at {shown} ({e}): pick another --socket"),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        bail!("{shown} is a symbolic link, not a socket: remove it yourself if it is stale, or pick another --socket");
    }
    if kind.is_dir() {
        bail!("{shown} is a directory: --socket names the socket file itself (e.g. {shown}/tracer.sock)");
    }
    if kind.is_file() {
        bail!(
            "{shown} is a regular file, not a socket: tracer removes only stale sockets; move it away or pick another --socket"
        );
    }
    if !kind.is_socket() {
        bail!("{shown} is a FIFO or device, not a socket: move it away or pick another --socket");
    }
    match UnixStream::connect(path).await {
        Ok(_) => bail!("another tracer daemon is already running on {shown} (stop it, or pick another --socket)"),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            log::info!("removing stale socket {shown}");
            std::fs::remove_file(path).with_context(|| format!("removing stale socket {shown}"))
        }
        Err(e) => bail!("cannot tell whether a daemon serves {shown} ({e}): remove it if it is stale"),
    }
}

/// Sends `line` to a client that is not served, and closes it. A fresh socket's
/// buffer is empty: the line fits without waiting. (Written on the plain socket:
/// tokio's `try_write` would not try before the runtime has seen it writable.)
fn refuse(conn: UnixStream, line: &[u8]) {
    use std::io::Write;
    if let Ok(mut s) = conn.into_std() {
        let _ = s.write(line);
    }
}

/// Accepts clients for ever, each handed to `serve` with its permit (to keep
/// until the client is done). Past `max` clients at once, a new one gets one
/// error line and is closed.
pub async fn accept(listener: UnixListener, max: usize, mut serve: impl FnMut(UnixStream, OwnedSemaphorePermit)) {
    let permits = Arc::new(Semaphore::new(max));
    let full = protocol::error_line(&format!(
        "too many clients: {max} are connected, as many as the daemon's --max-clients allows; try again later"
    ));
    let mut out_of_fds = false;
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                out_of_fds = false;
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => serve(conn, permit),
                    Err(_) => refuse(conn, &full),
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                if !out_of_fds {
                    log::warn!("accepting a client: {e}; pausing new connections until descriptors are free");
                }
                out_of_fds = true;
                tokio::time::sleep(BACKOFF).await;
            }
            Err(e) => {
                log::debug!("accepting a client: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
