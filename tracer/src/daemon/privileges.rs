//! Dropping the capabilities the daemon no longer needs once its programs are
//! loaded and attached, and setting no_new_privs.
//!
//! What it keeps: CAP_BPF (or, where the process has no CAP_BPF, CAP_SYS_ADMIN,
//! which stood for it before Linux 5.8). A repair walk creates a task iterator
//! link and instance (BPF_LINK_CREATE, BPF_ITER_CREATE), and before Linux 6.5
//! every bpf(2) command needs it while unprivileged BPF is disabled (the default).
//! Nothing else: the ring buffer is read through memory mapped at load time, the
//! socket is bound, and the container runtimes' state the daemon reads is root's
//! own (owner permissions, no CAP_DAC_* needed).
//!
//! Capabilities and no_new_privs belong to each thread, not to the process, and
//! the `caps` crate (like capset(2)) changes the calling thread's only. So every
//! thread of the process registers itself ([`register_thread`], from the async
//! runtime's thread hooks and from `main`); [`drop_all_but_needed`] applies the
//! new sets on its own thread and signals every other registered thread, whose
//! handler applies them with raw system calls (a signal handler must not
//! allocate, which the crate does); a thread started later applies them as it
//! registers. This is what libcap's psx does for C programs; no Rust crate does it.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use caps::{CapSet, Capability, CapsHashSet};

/// Threads of the process (their tids), as they registered.
static THREADS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Set once the capabilities are dropped: later threads drop theirs as they start.
static DROPPED: AtomicBool = AtomicBool::new(false);
/// The capabilities kept, as a bit mask (bit n: capability n).
static KEEP: AtomicU64 = AtomicU64::new(0);
/// Threads that applied the new sets in the signal handler, and their tids.
static ACKED: AtomicUsize = AtomicUsize::new(0);
static ACKED_TIDS: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];
/// Threads whose handler failed to apply them.
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// How long the other threads may take to apply the new sets.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<i32>> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the calling thread; drops its capabilities if the process's are dropped.
pub fn register_thread() {
    let mut threads = lock();
    threads.push(gettid());
    if DROPPED.load(Ordering::SeqCst) && !apply_here() {
        log::error!("a new thread could not drop its capabilities");
    }
}

/// Forgets the calling thread (it is ending).
pub fn unregister_thread() {
    let me = gettid();
    lock().retain(|&t| t != me);
}

/// The signal that tells a thread to apply the new sets.
fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// Applies [`KEEP`] to the calling thread: effective and permitted sets to it,
/// inheritable and ambient sets empty, no_new_privs set. Only system calls, so
/// that a signal handler may run it.
fn apply_here() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let keep = KEEP.load(Ordering::SeqCst);
    let (lo, hi) = (keep as u32, (keep >> 32) as u32);
    let header = Header { version: V3, pid: 0 };
    let data =
        [Data { effective: lo, permitted: lo, inheritable: 0 }, Data { effective: hi, permitted: hi, inheritable: 0 }];
    // SAFETY: capset with a v3 header and two data structs, as the ABI requires;
    // prctl with integer arguments only.
    unsafe {
        let set = libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) == 0;
        // Without ambient capabilities (before Linux 4.3) this fails harmlessly.
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        set && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: errno is this thread's; the handler restores what it may change.
    let errno = unsafe { *libc::__errno_location() };
    if apply_here() {
        let i = ACKED.fetch_add(1, Ordering::SeqCst);
        if let Some(slot) = ACKED_TIDS.get(i) {
            slot.store(gettid(), Ordering::SeqCst);
        }
    } else {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The capabilities to keep, of those the process has.
fn needed(permitted: &CapsHashSet) -> CapsHashSet {
    let bpf = [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN].into_iter().find(|c| permitted.contains(c));
    bpf.into_iter().collect()
}

/// Drops every capability but those still needed, in every thread, and sets
/// no_new_privs. Returns what was kept.
pub fn drop_all_but_needed() -> Result<CapsHashSet> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| anyhow::anyhow!("reading capabilities: {e}"))?;
    let keep = needed(&permitted);
    let threads = {
        let threads = lock();
        KEEP.store(keep.iter().fold(0, |m, c| m | c.bitmask()), Ordering::SeqCst);
        DROPPED.store(true, Ordering::SeqCst);
        threads.clone()
    };
    // SAFETY: a handler that makes system calls only, installed with SA_RESTART
    // so that the other threads' interrupted calls go on.
    let installed = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(signal(), &act, std::ptr::null_mut()) == 0
    };
    if !installed {
        bail!("installing the capability signal handler: {}", std::io::Error::last_os_error());
    }
    if !apply_here() {
        bail!("dropping capabilities: {}", std::io::Error::last_os_error());
    }
    let me = gettid();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut sent = Vec::new();
    for &tid in threads.iter().filter(|&&t| t != me) {
        // SAFETY: tgkill to a thread of this process, with a signal it handles.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) } == 0 {
            sent.push(tid);
        }
    }
    wait_for_acks(&sent)?;
    Ok(keep)
}

/// Waits until every thread signalled has applied the new sets (or has ended).
fn wait_for_acks(sent: &[i32]) -> Result<()> {
    let until = Instant::now() + ACK_TIMEOUT;
    while ACKED.load(Ordering::SeqCst) + FAILED.load(Ordering::SeqCst) < sent.len() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    if FAILED.load(Ordering::SeqCst) > 0 {
        bail!("a thread could not drop its capabilities");
    }
    let acked: Vec<i32> = ACKED_TIDS.iter().map(|t| t.load(Ordering::SeqCst)).collect();
    let live = lock();
    if let Some(t) = sent.iter().find(|t| !acked.contains(t) && live.contains(t)) {
        bail!("thread {t} did not drop its capabilities within {ACK_TIMEOUT:?}");
    }
    Ok(())
}

/// Names of capabilities, for the log.
pub fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}
