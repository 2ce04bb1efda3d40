//! Reading kernel structs.
//!
//! Offsets come from the load-time global [`OFFSETS`], filled by userspace from the
//! running kernel's BTF (see `tracer_abi::Offsets`, the one list of every field read
//! here). Reads are direct loads where the verifier can check them against the
//! kernel's BTF, `bpf_probe_read_kernel` elsewhere (see [`Mem`]): either way a
//! wrong or missing offset yields zeros, never a fault.

use aya_ebpf::helpers::generated::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_kernel_str};
use tracer_abi::{COMM_LEN, Config, OFFSET_MISSING, Offsets, TASK_EXITING, TASK_KTHREAD, TASK_LEADER, Task};

/// Kernel struct field offsets of the running kernel, set by userspace at load time.
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: Offsets = Offsets::MISSING;

/// Program settings, set by userspace at load time.
#[unsafe(no_mangle)]
static CONFIG: Config =
    Config { argv_max: tracer_abi::ARGV_DEFAULT, exit_has_group_dead: 1, wakeup_bytes: 256 * 1024, _pad: 0 };

/// `PF_EXITING` in `task_struct::flags`.
const PF_EXITING: u32 = 0x0000_0004;
/// `PF_KTHREAD` in `task_struct::flags`.
const PF_KTHREAD: u32 = 0x0020_0000;
/// Deepest pid namespace nesting read (the kernel's MAX_PID_NS_LEVEL is 32).
const MAX_PID_NS_LEVEL: u32 = 32;

/// One offset from [`OFFSETS`], read so the compiler cannot fold the placeholder.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: reading a plain u32 of a static.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::OFFSETS.$field) }
    };
}
pub(crate) use off;

/// The load-time configuration.
#[inline(always)]
pub fn config_argv_max() -> u32 {
    // SAFETY: reading a plain u32 of a static.
    unsafe { core::ptr::read_volatile(&raw const CONFIG.argv_max) }
}

#[inline(always)]
pub fn config_wakeup_bytes() -> u64 {
    // SAFETY: reading a plain u32 of a static.
    u64::from(unsafe { core::ptr::read_volatile(&raw const CONFIG.wakeup_bytes) })
}

#[inline(always)]
pub fn config_exit_has_group_dead() -> bool {
    // SAFETY: reading a plain u32 of a static.
    unsafe { core::ptr::read_volatile(&raw const CONFIG.exit_has_group_dead) != 0 }
}

/// `v`, at most `max`, in a form every verifier can bound: the comparison is made
/// on the very register that is passed on. (Without the volatile load the
/// compiler may compare one register and pass another it knows to be equal;
/// the verifiers of Linux 6.1 and older cannot follow that and refuse the
/// program with "unbounded memory access".)
#[inline(always)]
pub fn bounded(v: usize, max: usize) -> usize {
    // SAFETY: reading a local.
    let v = unsafe { core::ptr::read_volatile(&v) };
    if v > max { max } else { v }
}

/// How kernel structs are read: by direct loads or through a helper.
///
/// tp_btf programs get their arguments as pointers the verifier types from the
/// kernel's BTF, and every pointer loaded through such a pointer is typed too.
/// Those can be read with plain loads ([`Direct`]): the verifier checks each
/// offset (a constant to it: [`OFFSETS`] lives in a frozen read-only map) against
/// the struct's BTF, and the JIT makes the load fault-safe (a bad address reads
/// as 0). That costs about a nanosecond, against tens for a helper call.
/// Addresses the verifier cannot type (pointers kept in maps, list nodes turned
/// into their task) and offsets it cannot know (an array index read at run time)
/// go through `bpf_probe_read_kernel` ([`Probe`]).
pub trait Mem {
    /// Reads a `T` at `base + off`; zero when it cannot be read or `off` is missing.
    fn read<T: Copy + Default>(base: usize, off: u32) -> T;
}

/// Direct loads through BTF-typed pointers (see [`Mem`]).
pub struct Direct;

/// `bpf_probe_read_kernel` (see [`Mem`]).
pub struct Probe;

impl Mem for Direct {
    #[inline(always)]
    fn read<T: Copy + Default>(base: usize, off: u32) -> T {
        if base == 0 || off == OFFSET_MISSING {
            return T::default();
        }
        // SAFETY: the verifier only takes this load through a BTF-typed pointer at an
        // offset inside the struct, and the JIT guards it against faults.
        unsafe { core::ptr::read_volatile((base + off as usize) as *const T) }
    }
}

impl Mem for Probe {
    #[inline(always)]
    fn read<T: Copy + Default>(base: usize, off: u32) -> T {
        read(base, off)
    }
}

/// Reads a `T` at `base + off` of kernel memory with `bpf_probe_read_kernel`;
/// zero when it cannot be read.
#[inline(always)]
pub fn read<T: Copy + Default>(base: usize, off: u32) -> T {
    if base == 0 || off == OFFSET_MISSING {
        return T::default();
    }
    let mut v = T::default();
    // SAFETY: the helper checks the source address; the destination is our own local.
    let r = unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            size_of::<T>() as u32,
            (base + off as usize) as *const core::ffi::c_void,
        )
    };
    if r < 0 { T::default() } else { v }
}

/// Reads a kernel pointer at `base + off`.
#[inline(always)]
pub fn read_ptr(base: usize, off: u32) -> usize {
    read::<u64>(base, off) as usize
}

/// Copies `comm` out of a task into `dst`, as two 8-byte reads.
#[inline(always)]
pub fn read_comm<M: Mem>(task: usize, dst: &mut [u8; COMM_LEN]) {
    let off = off!(task_struct_comm);
    let lo = M::read::<u64>(task, off);
    let hi = M::read::<u64>(task, off.wrapping_add(8));
    dst[..8].copy_from_slice(&lo.to_ne_bytes());
    dst[8..].copy_from_slice(&hi.to_ne_bytes());
}

/// Copies a NUL-terminated kernel string of at most 16 bytes into `dst`, zero padded.
#[inline(always)]
pub fn read_comm_str(src: usize, dst: &mut [u8; COMM_LEN]) {
    *dst = [0; COMM_LEN];
    // SAFETY: the helper checks the source; dst is 16 writable bytes.
    unsafe {
        bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), COMM_LEN as u32, src as *const core::ffi::c_void);
    }
}

/// The thread id of the current task.
#[inline(always)]
pub fn current_tid() -> u32 {
    // SAFETY: no arguments.
    (unsafe { bpf_get_current_pid_tgid() }) as u32
}

/// Fills `t` with everything a record says of `task`, reading with `M`. Writes
/// every field.
#[inline(always)]
pub fn fill_task<M: Mem>(task: usize, t: &mut Task) {
    let ptr = |base: usize, off: u32| M::read::<u64>(base, off) as usize;
    let tid = M::read::<u32>(task, off!(task_struct_pid));
    let tgid = M::read::<u32>(task, off!(task_struct_tgid));
    t.tid = tid;
    t.tgid = tgid;
    t.start_ns = M::read::<u64>(task, off!(task_struct_start_boottime));

    let leader = ptr(task, off!(task_struct_group_leader));
    t.leader_start_ns =
        if leader == task { t.start_ns } else { M::read::<u64>(leader, off!(task_struct_start_boottime)) };

    let parent = ptr(task, off!(task_struct_real_parent));
    t.ppid = M::read::<u32>(parent, off!(task_struct_tgid));
    let parent_leader = ptr(parent, off!(task_struct_group_leader));
    t.parent_start_ns = M::read::<u64>(parent_leader, off!(task_struct_start_boottime));

    let cred = ptr(task, off!(task_struct_real_cred));
    t.uid = M::read::<u32>(cred, off!(cred_uid));
    t.gid = M::read::<u32>(cred, off!(cred_gid));

    t.cgroup_id = task_cgroup::<M>(task).0;

    // The pid as seen in the task's own (deepest) pid namespace: pid->numbers[pid->level].
    // Tasks of the host's namespace (level 0) read numbers[0] at a constant offset;
    // deeper ones index at run time, through the helper.
    let pid = ptr(task, off!(task_struct_thread_pid));
    let level = M::read::<u32>(pid, off!(pid_level)).min(MAX_PID_NS_LEVEL);
    let numbers = off!(pid_numbers);
    if level == 0 {
        t.ns_tid = M::read::<u32>(pid, numbers.wrapping_add(off!(upid_nr)));
        let ns = ptr(pid, numbers.wrapping_add(off!(upid_ns)));
        t.pidns = M::read::<u32>(ns, off!(pid_namespace_ns_inum));
        t.ns_tgid = if leader == task {
            t.ns_tid
        } else {
            let lpid = ptr(leader, off!(task_struct_thread_pid));
            M::read::<u32>(lpid, numbers.wrapping_add(off!(upid_nr)))
        };
    } else {
        let upid_off = numbers.wrapping_add(level.wrapping_mul(off!(upid_size)));
        t.ns_tid = read::<u32>(pid, upid_off.wrapping_add(off!(upid_nr)));
        let ns = read_ptr(pid, upid_off.wrapping_add(off!(upid_ns)));
        t.pidns = read::<u32>(ns, off!(pid_namespace_ns_inum));
        t.ns_tgid = if leader == task {
            t.ns_tid
        } else {
            let lpid = ptr(leader, off!(task_struct_thread_pid));
            read::<u32>(lpid, upid_off.wrapping_add(off!(upid_nr)))
        };
    }

    let nsproxy = ptr(task, off!(task_struct_nsproxy));
    let mnt_ns = ptr(nsproxy, off!(nsproxy_mnt_ns));
    t.mntns = M::read::<u32>(mnt_ns, off!(mnt_namespace_ns_inum));

    let pf = M::read::<u32>(task, off!(task_struct_flags));
    let mut flags = 0;
    if pf & PF_KTHREAD != 0 {
        flags |= TASK_KTHREAD;
    }
    if pf & PF_EXITING != 0 {
        flags |= TASK_EXITING;
    }
    if tid == tgid {
        flags |= TASK_LEADER;
    }
    t.flags = flags;
    read_comm::<M>(task, &mut t.comm);
}

/// `task`'s cgroup on the default hierarchy (`task->cgroups->dfl_cgrp`).
#[inline(always)]
pub fn task_dfl_cgroup<M: Mem>(task: usize) -> usize {
    let css = M::read::<u64>(task, off!(task_struct_cgroups)) as usize;
    M::read::<u64>(css, off!(css_set_dfl_cgrp)) as usize
}

/// The id of `task`'s cgroup on the default hierarchy, and its kernfs node.
#[inline(always)]
pub fn task_cgroup<M: Mem>(task: usize) -> (u64, usize) {
    let kn = M::read::<u64>(task_dfl_cgroup::<M>(task), off!(cgroup_kn)) as usize;
    (M::read::<u64>(kn, off!(kernfs_node_id)), kn)
}
