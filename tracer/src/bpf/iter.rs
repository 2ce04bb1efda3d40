//! Running the task iterator: creating a link (optionally filtered to one
//! process) and an iterator instance, and reading its output.
//!
//! aya 0.14 attaches iterators without link parameters, so the two bpf(2) calls
//! that take a pid filter are made here directly.

use std::{
    fs::File,
    io::{self, Read},
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_iter_link_info`, task member: tid, pid, pid_fd (padded to the union's 16 bytes).
#[repr(C)]
struct TaskLinkInfo {
    tid: u32,
    pid: u32,
    pid_fd: u32,
    _pad: u32,
}

/// The `link_create` member of `union bpf_attr`, as far as iterators use it.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    _rest: [u32; 25],
}

#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
    _rest: [u32; 30],
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) with a zero-padded attr struct of the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>() as u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success bpf(2) returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Runs one walk of the iterator program `prog` over all tasks, or over the
/// threads of process `pid` only, and returns everything it wrote.
pub fn walk(prog: BorrowedFd<'_>, pid: Option<u32>) -> io::Result<Vec<u8>> {
    let info = TaskLinkInfo { tid: 0, pid: pid.unwrap_or(0), pid_fd: 0, _pad: 0 };
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: if pid.is_some() { &info as *const TaskLinkInfo as u64 } else { 0 },
        iter_info_len: if pid.is_some() { size_of::<TaskLinkInfo>() as u32 } else { 0 },
        _rest: [0; 25],
    };
    let link = sys_bpf(BPF_LINK_CREATE, &attr)?;
    let attr = IterCreateAttr { link_fd: link.as_raw_fd() as u32, flags: 0, _rest: [0; 30] };
    let iter = sys_bpf(BPF_ITER_CREATE, &attr)?;
    let mut data = Vec::with_capacity(if pid.is_some() { 1 << 14 } else { 1 << 20 });
    File::from(iter).read_to_end(&mut data)?;
    Ok(data)
}
