//! The programs and the records they write.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_copy_from_user_task, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str,
        bpf_probe_read_user, bpf_ringbuf_output, bpf_seq_write,
    },
    macros::{btf_tracepoint, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use tracer_abi::{
    ARGV_CAPACITY, ARGV_TRUNCATED, ARGV_UNREADABLE, CGROUP_DEPTH, CGROUP_NAME_MAX, CGROUP_TRUNCATED, CgroupAttachEvent,
    CgroupEvent, ExecEvent, ExitEvent, FILENAME_MAX, FILENAME_TRUNCATED, ForkEvent, Header, ITER_ARGV_MAX,
    ITER_CURSOR_DONE, ITER_FILENAME_MAX, ITER_MODE_PARENT_GROUP, ITER_SCRATCH_SIZE, ITER_SLOT_CURSOR, ITER_SLOT_GEN,
    ITER_SLOT_MODE, ITER_SLOT_PID, ITER_SLOTS, Kind, RenameEvent, SCRATCH_SIZE, SnapshotEvent, TASK_LEADER,
};

use crate::kernel::{
    Direct, Mem, Probe, bounded, config_argv_max, config_exit_has_group_dead, config_wakeup_bytes, current_tid,
    fill_task, off, read, read_comm_str, read_ptr, task_cgroup, task_dfl_cgroup,
};

/// Every record goes through this ring buffer. Its size is set by userspace at load.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per CPU: `[LOST_SLOT_COUNT]` records that could not be written (ring buffer
/// full), `[LOST_SLOT_FILL]` bytes waiting in the ring buffer at this CPU's last record.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Variable-length records are built here, one slot per CPU (userspace sets
/// max_entries to the number of possible CPUs). A plain array indexed by CPU, not a
/// per-CPU array, because per-CPU values are limited to 32 KiB.
#[map]
static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// The task iterator's record buffer: one reader at a time.
#[map]
static ITER_SCRATCH: Array<IterScratch> = Array::with_max_entries(1, 0);

#[repr(C, align(8))]
pub struct Scratch {
    buf: [u8; SCRATCH_SIZE],
}

#[repr(C, align(8))]
pub struct IterScratch {
    buf: [u8; ITER_SCRATCH_SIZE],
}

/// Cgroup ids whose path was sent: value 0 for the live programs, the walk
/// generation for the iterator (which sends each path once per walk).
#[map]
static CGROUP_SEEN: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// `SIGNAL_GROUP_EXIT` in `signal_struct::flags`.
const SIGNAL_GROUP_EXIT: u32 = 0x0000_0004;

#[inline(always)]
fn count_lost() {
    if let Some(p) = LOST.get_ptr_mut(tracer_abi::LOST_SLOT_COUNT) {
        // SAFETY: a per-CPU slot of our own map; programs of one CPU do not nest here.
        unsafe { *p += 1 };
    }
}

/// `bpf_ringbuf_query` flag: bytes not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Submit flags: wake the reader only when enough data is waiting.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    if let Some(p) = LOST.get_ptr_mut(tracer_abi::LOST_SLOT_FILL) {
        // SAFETY: a per-CPU slot of our own map.
        unsafe { *p = waiting };
    }
    if waiting >= config_wakeup_bytes() { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
}

/// A record's header, stamped now.
#[inline(always)]
fn header(kind: Kind, size: usize) -> Header {
    // SAFETY: a helper without arguments.
    header_at(kind, size, unsafe { bpf_ktime_get_boot_ns() })
}

/// A record's header, stamped `ts_ns` (boot clock): reading the clock costs about
/// a third of a small record, and a new task's start time is its fork's time.
#[inline(always)]
fn header_at(kind: Kind, size: usize, ts_ns: u64) -> Header {
    Header {
        kind: kind as u32,
        size: size as u32,
        ts_ns,
        // SAFETY: a helper without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        _pad: 0,
    }
}

/// Fills `ev` with the path of the cgroup whose kernfs node is `kn`, leaf first.
#[inline(always)]
fn fill_cgroup<M: Mem>(ev: &mut CgroupEvent, id: u64, mut kn: usize) {
    ev.cgroup_id = id;
    ev.flags = 0;
    let mut depth = 0u32;
    let mut i = 0;
    while i < CGROUP_DEPTH {
        let parent = M::read::<u64>(kn, off!(kernfs_node_parent)) as usize;
        if kn == 0 || parent == 0 {
            // The root's own name is not part of the path.
            break;
        }
        let name = M::read::<u64>(kn, off!(kernfs_node_name)) as usize;
        let slot = &mut ev.names[i];
        slot[0] = 0;
        // SAFETY: the destination is one 128-byte slot of the record.
        let n = unsafe {
            bpf_probe_read_kernel_str(slot.as_mut_ptr().cast(), CGROUP_NAME_MAX as u32, name as *const c_void)
        };
        if n >= CGROUP_NAME_MAX as i64 {
            ev.flags |= CGROUP_TRUNCATED;
        }
        depth += 1;
        kn = parent;
        i += 1;
    }
    if i == CGROUP_DEPTH && M::read::<u64>(kn, off!(kernfs_node_parent)) != 0 {
        ev.flags |= CGROUP_TRUNCATED;
    }
    ev.depth = depth;
}

/// Sends the path of `task`'s cgroup the first time its id shows up.
#[inline(always)]
fn send_cgroup_once(task: usize) {
    let (id, kn) = task_cgroup::<Direct>(task);
    if kn == 0 || CGROUP_SEEN.get_ptr(id).is_some() {
        return;
    }
    let _ = CGROUP_SEEN.insert(id, 0, 0);
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        count_lost();
        // Let a later event try again.
        let _ = CGROUP_SEEN.remove(id);
        return;
    };
    // SAFETY: the entry is as large as a CgroupEvent; every field is written.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_cgroup::<Direct>(ev, id, kn);
    ev.header = header(Kind::Cgroup, size_of::<CgroupEvent>());
    entry.submit(wakeup_flags());
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let child: usize = ctx.arg(1);
    // A new thread is in its creator's cgroup, whose path was sent already (the
    // creator was walked, forked or moved): only a new process may bring a new one.
    let pid = Direct::read::<u32>(child, off!(task_struct_pid));
    if pid == Direct::read::<u32>(child, off!(task_struct_tgid)) {
        send_cgroup_once(child);
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_lost();
        return 0;
    };
    // SAFETY: the entry is as large as a ForkEvent and 8-byte aligned; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_task::<Direct>(child, &mut ev.task);
    let kind = if ev.task.flags & TASK_LEADER != 0 { Kind::Fork } else { Kind::Clone };
    ev.creator_tid = current_tid();
    ev._pad = 0;
    ev.header = header_at(kind, size_of::<ForkEvent>(), ev.task.start_ns);
    entry.submit(wakeup_flags());
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let task: usize = ctx.arg(0);
    let signal = Direct::read::<u64>(task, off!(task_struct_signal)) as usize;
    let group_dead = if config_exit_has_group_dead() {
        ctx.arg::<u64>(1) & 0xff != 0
    } else {
        Direct::read::<i32>(signal, off!(signal_struct_live)) == 0
    };
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_lost();
        return 0;
    };
    // SAFETY: as in sched_process_fork.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_task::<Direct>(task, &mut ev.task);
    let code = Direct::read::<u32>(task, off!(task_struct_exit_code));
    ev.exit_code = code;
    ev.status = code;
    let kind = if group_dead {
        // What the parent's wait() will see: the group exit code after exit_group()
        // or a fatal signal, else the leader's own exit code.
        let sflags = Direct::read::<u32>(signal, off!(signal_struct_flags));
        ev.status = if sflags & SIGNAL_GROUP_EXIT != 0 {
            Direct::read::<u32>(signal, off!(signal_struct_group_exit_code))
        } else {
            let leader = Direct::read::<u64>(task, off!(task_struct_group_leader)) as usize;
            Direct::read::<u32>(leader, off!(task_struct_exit_code))
        };
        // The reaper may come from a helper read: read it with the helper too.
        let reaper = find_reaper(task);
        ev.reaper_tgid = read::<u32>(reaper, off!(task_struct_tgid));
        let leader = read_ptr(reaper, off!(task_struct_group_leader));
        ev.reaper_start_ns = read::<u64>(leader, off!(task_struct_start_boottime));
        Kind::ProcessExit
    } else {
        ev.reaper_tgid = 0;
        ev.reaper_start_ns = 0;
        Kind::ThreadExit
    };
    ev._pad = 0;
    ev.header = header(kind, size_of::<ExitEvent>());
    entry.submit(wakeup_flags());
    0
}

/// Deepest ancestor chain walked to find a child subreaper.
const MAX_ANCESTORS: u32 = 64;

/// Reads a one-bit bitfield at bit offset `bit` of the struct at `base`.
#[inline(always)]
fn read_bit(base: usize, bit: u32) -> bool {
    if bit == tracer_abi::OFFSET_MISSING {
        return false;
    }
    (read::<u8>(base, bit / 8) >> (bit % 8)) & 1 != 0
}

/// Reads go through the helper here: the walk up the ancestors is a loop the
/// verifier follows to its bound, and direct loads of pointers would make it
/// look each one up in the kernel's BTF at every step (over a second of load
/// time); it only runs for a process that leaves children behind.
///
/// The task the children of the exiting process `task` are reparented to, found as
/// the kernel's find_new_reaper() does: the nearest ancestor in the same pid
/// namespace that is a child subreaper with a live thread, else the namespace's
/// init. 0 when the process has no children or is that init itself.
#[inline(always)]
fn find_reaper(task: usize) -> usize {
    let head = task + off!(task_struct_children) as usize;
    let first = read_ptr(task, off!(task_struct_children));
    if first == 0 || first == head {
        return 0;
    }
    let pid = read_ptr(task, off!(task_struct_thread_pid));
    let level = read::<u32>(pid, off!(pid_level));
    let upid_off = off!(pid_numbers).wrapping_add(level.min(32).wrapping_mul(off!(upid_size)));
    let ns = read_ptr(pid, upid_off.wrapping_add(off!(upid_ns)));
    let child_reaper = read_ptr(ns, off!(pid_namespace_child_reaper));
    let tgid = read::<u32>(task, off!(task_struct_tgid));
    if read::<u32>(child_reaper, off!(task_struct_tgid)) == tgid {
        return 0;
    }
    let signal = read_ptr(task, off!(task_struct_signal));
    if read_bit(signal, off!(signal_struct_has_child_subreaper_bit)) {
        let mut r = read_ptr(task, off!(task_struct_real_parent));
        let mut i = 0;
        while i < MAX_ANCESTORS {
            let rpid = read_ptr(r, off!(task_struct_thread_pid));
            if r == 0 || read::<u32>(rpid, off!(pid_level)) != level || read::<u32>(r, off!(task_struct_tgid)) == 0 {
                break;
            }
            let rs = read_ptr(r, off!(task_struct_signal));
            if read_bit(rs, off!(signal_struct_is_child_subreaper_bit)) && read::<i32>(rs, off!(signal_struct_live)) > 0
            {
                return r;
            }
            r = read_ptr(r, off!(task_struct_real_parent));
            i += 1;
        }
    }
    child_reaper
}

/// A task moved to another cgroup. The tracepoint fires once per hierarchy the
/// move touched (runc writes the pid into every v1 controller and the unified
/// hierarchy): only a move on the default hierarchy is news here, and then the
/// destination is the task's default cgroup itself (the same pointer; kernfs ids
/// of different hierarchies may be equal, pointers may not).
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    let dst: usize = ctx.arg(0);
    let task: usize = ctx.arg(2);
    let threadgroup = ctx.arg::<u64>(3) & 0xff != 0;
    if dst == 0 || dst != task_dfl_cgroup::<Direct>(task) {
        return 0;
    }
    send_cgroup_once(task);
    let Some(mut entry) = EVENTS.reserve::<CgroupAttachEvent>(0) else {
        count_lost();
        return 0;
    };
    // SAFETY: as in sched_process_fork.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_task::<Direct>(task, &mut ev.task);
    ev.threadgroup = threadgroup as u32;
    ev._pad = 0;
    ev.header = header(Kind::CgroupAttach, size_of::<CgroupAttachEvent>());
    entry.submit(wakeup_flags());
    0
}

#[btf_tracepoint(function = "task_rename")]
pub fn task_rename(ctx: BtfTracePointContext) -> i32 {
    let task: usize = ctx.arg(0);
    let comm: usize = ctx.arg(1);
    let Some(mut entry) = EVENTS.reserve::<RenameEvent>(0) else {
        count_lost();
        return 0;
    };
    // SAFETY: as in sched_process_fork.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_task::<Direct>(task, &mut ev.task);
    read_comm_str(comm, &mut ev.new_comm);
    ev.header = header(Kind::Rename, size_of::<RenameEvent>());
    entry.submit(wakeup_flags());
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let task: usize = ctx.arg(0);
    let old_pid: u32 = ctx.arg(1);
    let bprm: usize = ctx.arg(2);
    send_cgroup_once(task);
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        aya_log_ebpf::error!(&ctx, "no scratch slot for cpu {}: exec record lost", cpu);
        count_lost();
        return 0;
    };
    let buf = scratch.cast::<u8>();
    // SAFETY: the scratch slot is SCRATCH_SIZE bytes, 8-byte aligned, and ours while
    // this program runs (one program at a time per CPU).
    let ev = unsafe { &mut *buf.cast::<ExecEvent>() };
    fill_task::<Direct>(task, &mut ev.task);
    ev.old_tid = old_pid;
    ev._pad = 0;
    let mut flags = 0;

    // File name, as passed to exec.
    let fixed = size_of::<ExecEvent>();
    let filename = Direct::read::<u64>(bprm, off!(linux_binprm_filename)) as usize;
    // SAFETY: the destination lies inside the scratch slot (fixed + FILENAME_MAX <= SCRATCH_SIZE).
    let n = unsafe { bpf_probe_read_kernel_str(buf.add(fixed).cast(), FILENAME_MAX as u32, filename as *const c_void) };
    let mut flen: usize = if n > 0 { n as usize - 1 } else { 0 };
    if flen >= FILENAME_MAX - 1 {
        flags |= FILENAME_TRUNCATED;
    }
    flen &= FILENAME_MAX - 1;

    // argv, from the new program's memory.
    let mm = Direct::read::<u64>(task, off!(task_struct_mm)) as usize;
    let start = Direct::read::<u64>(mm, off!(mm_struct_arg_start));
    let end = Direct::read::<u64>(mm, off!(mm_struct_arg_end));
    let real = end.saturating_sub(start).min(u32::MAX as u64) as usize;
    let limit = (config_argv_max() as usize).min(ARGV_CAPACITY);
    let mut alen = bounded(real.min(limit), ARGV_CAPACITY);
    if alen < real {
        flags |= ARGV_TRUNCATED;
    }
    // SAFETY: fixed + flen + alen <= SCRATCH_SIZE by the bounds above.
    let r = unsafe { bpf_probe_read_user(buf.add(fixed + flen).cast(), alen as u32, start as *const c_void) };
    if r < 0 {
        aya_log_ebpf::warn!(&ctx, "exec of pid {}: argv of {} bytes unreadable (error {})", ev.task.tgid, alen, r);
        alen = 0;
        flags |= ARGV_UNREADABLE;
    }
    ev.filename_len = flen as u32;
    ev.argv_len = alen as u32;
    ev.argv_real_len = real as u32;
    ev.flags = flags;
    let mut total = fixed + flen + alen;
    if total > SCRATCH_SIZE {
        total = SCRATCH_SIZE;
    }
    ev.header = header(Kind::Exec, total);
    // SAFETY: `buf` holds `total` initialised bytes of our scratch slot.
    // The same wake-up rule as every other record: flags 0 would let the kernel
    // wake the reader for each record written after a drain.
    let r =
        unsafe { bpf_ringbuf_output((&raw const EVENTS).cast_mut().cast(), buf.cast(), total as u64, wakeup_flags()) };
    if r < 0 {
        count_lost();
    }
    0
}

/// What the task iterator does on its next walk, set by userspace:
/// `[ITER_SLOT_MODE]` the mode, `[ITER_SLOT_CURSOR]` the parent-group cursor.
#[map]
static ITER_MODE: Array<u64> = Array::with_max_entries(ITER_SLOTS, 0);

/// The start-up walk: one [`SnapshotEvent`] per task, written to the iterator's
/// seq file. Sleepable, so that it may read other processes' argv (Linux 5.18+;
/// [`iter_task_no_argv`] is the same walk for older kernels).
///
/// In [`ITER_MODE_PARENT_GROUP`] mode (a walk about one process) it writes one
/// thread of that process's real parent instead, reached through kernel
/// pointers, and leaves in the cursor slot where the next walk goes on: some
/// kernels leave tasks out of iterator walks (this VM's PID 1 is one), and this is
/// how userspace makes the walk whole without /proc. One thread per walk keeps the
/// program free of loops the verifier would have to unroll.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter.s/task")]
pub fn iter_task(ctx: *mut c_void) -> i32 {
    walk_task::<true>(ctx)
}

/// [`iter_task`] without sleeping and so without argv (flagged unreadable), for
/// kernels before 5.18, which have neither sleepable iterators nor
/// `bpf_copy_from_user_task`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn iter_task_no_argv(ctx: *mut c_void) -> i32 {
    walk_task::<false>(ctx)
}

/// One visit of the task iterator; `ARGV`: argv may be copied (sleepable program).
#[inline(always)]
fn walk_task<const ARGV: bool>(ctx: *mut c_void) -> i32 {
    // struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }
    // SAFETY: the context layout above; the verifier checks these loads.
    let (meta, task) = unsafe {
        let c = ctx.cast::<usize>();
        (*c, *c.add(1))
    };
    if task == 0 || meta == 0 {
        return 0;
    }
    // SAFETY: bpf_iter_meta starts with `struct seq_file *seq`.
    let seq = unsafe { *(meta as *const usize) };
    let mode = ITER_MODE.get(ITER_SLOT_MODE).copied().unwrap_or(0) as u32;
    if mode != ITER_MODE_PARENT_GROUP {
        iter_cgroup(seq, task);
        snapshot_task::<ARGV>(seq, task, true);
        return 0;
    }
    // Parent-group mode: act on the leader of the process the walk is about only
    // (kernels before 6.1 cannot filter the walk: then the pid slot names it).
    let tgid = read::<u32>(task, off!(task_struct_tgid));
    let about = ITER_MODE.get(ITER_SLOT_PID).copied().unwrap_or(0) as u32;
    if read::<u32>(task, off!(task_struct_pid)) != tgid || (about != 0 && about != tgid) {
        return 0;
    }
    let Some(cursor) = ITER_MODE.get_ptr_mut(ITER_SLOT_CURSOR) else {
        return 0;
    };
    let parent = read_ptr(task, off!(task_struct_real_parent));
    let leader = read_ptr(parent, off!(task_struct_group_leader));
    let signal = read_ptr(leader, off!(task_struct_signal));
    let head_off = off!(signal_struct_thread_head);
    let node_off = off!(task_struct_thread_node);
    if signal == 0 || head_off == tracer_abi::OFFSET_MISSING || node_off == tracer_abi::OFFSET_MISSING {
        // No thread list on this kernel: the leader alone.
        snapshot_task::<ARGV>(seq, leader, false);
        // SAFETY: our own map slot.
        unsafe { *cursor = ITER_CURSOR_DONE };
        return 0;
    }
    let head = signal + head_off as usize;
    // SAFETY: our own map slot.
    let at = unsafe { *cursor } as usize;
    let node = if at == 0 { read_ptr(signal, head_off) } else { at };
    if node == 0 || node == head {
        // SAFETY: our own map slot.
        unsafe { *cursor = ITER_CURSOR_DONE };
        return 0;
    }
    snapshot_task::<ARGV>(seq, node - node_off as usize, false);
    // SAFETY: our own map slot.
    unsafe { *cursor = read_ptr(node, 0) as u64 };
    0
}

/// Writes the path of `task`'s cgroup to the seq file, once per walk generation.
#[inline(always)]
fn iter_cgroup(seq: usize, task: usize) {
    let generation = ITER_MODE.get(ITER_SLOT_GEN).copied().unwrap_or(0);
    let (id, kn) = task_cgroup::<Probe>(task);
    if kn == 0 || CGROUP_SEEN.get_ptr(id).is_some_and(|g| unsafe { *g } == generation) {
        return;
    }
    let _ = CGROUP_SEEN.insert(id, generation, 0);
    let Some(scratch) = ITER_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the slot is far larger than a CgroupEvent and 8-byte aligned.
    let ev = unsafe { &mut *scratch.cast::<CgroupEvent>() };
    fill_cgroup::<Probe>(ev, id, kn);
    ev.header = header(Kind::Cgroup, size_of::<CgroupEvent>());
    // SAFETY: the record is fully written.
    unsafe { bpf_seq_write(seq as *mut _, (ev as *const CgroupEvent).cast(), size_of::<CgroupEvent>() as u32) };
}

/// Writes one [`SnapshotEvent`] for `task` to the iterator's seq file. `trusted`:
/// `task` is the iterator's own task pointer, through which argv may be copied
/// (when the program may: `ARGV`).
#[inline(always)]
fn snapshot_task<const ARGV: bool>(seq: usize, task: usize, trusted: bool) {
    let Some(scratch) = ITER_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let buf = scratch.cast::<u8>();
    // SAFETY: the slot is ITER_SCRATCH_SIZE bytes and 8-byte aligned; the iterator is read
    // by one reader at a time.
    let ev = unsafe { &mut *buf.cast::<SnapshotEvent>() };
    fill_task::<Probe>(task, &mut ev.task);
    ev.utime_ns = read::<u64>(task, off!(task_struct_utime));
    ev.stime_ns = read::<u64>(task, off!(task_struct_stime));
    ev.exit_state = read::<u32>(task, off!(task_struct_exit_state));
    ev._pad = 0;
    let mut flags = 0;
    let fixed = size_of::<SnapshotEvent>();
    let mm = read_ptr(task, off!(task_struct_mm));

    // Resident set: file + anon + shmem counters of the mm (approximate, as `ps` shows).
    let mut rss: i64 = 0;
    let rss_off = off!(mm_struct_rss_stat);
    let size = off!(percpu_counter_size);
    let count = off!(percpu_counter_count);
    let mut i = 0;
    while i < 4 {
        // MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS (skipped), MM_SHMEMPAGES
        if i != 2 {
            let v = read::<i64>(mm, rss_off.wrapping_add(size.wrapping_mul(i)).wrapping_add(count));
            if v > 0 {
                rss += v;
            }
        }
        i += 1;
    }
    ev.rss_pages = rss as u64;

    // Base name of the executable.
    let exe = read_ptr(mm, off!(mm_struct_exe_file));
    let dentry = read_ptr(exe, off!(file_f_path_dentry));
    let name = read_ptr(dentry, off!(dentry_d_name_name));
    let mut flen = 0usize;
    if name != 0 {
        // SAFETY: destination inside the slot (fixed + ITER_FILENAME_MAX <= ITER_SCRATCH_SIZE).
        let n = unsafe {
            bpf_probe_read_kernel_str(buf.add(fixed).cast(), ITER_FILENAME_MAX as u32, name as *const c_void)
        };
        flen = if n > 0 { n as usize - 1 } else { 0 };
        if flen >= ITER_FILENAME_MAX - 1 {
            flags |= FILENAME_TRUNCATED;
        }
        flen &= ITER_FILENAME_MAX - 1;
    }

    // argv, from the task's own memory (sleepable copy).
    let start = read::<u64>(mm, off!(mm_struct_arg_start));
    let end = read::<u64>(mm, off!(mm_struct_arg_end));
    let real = end.saturating_sub(start).min(u32::MAX as u64) as usize;
    let mut alen = bounded(real.min(ITER_ARGV_MAX), ITER_ARGV_MAX);
    if alen < real {
        flags |= ARGV_TRUNCATED;
    }
    if alen > 0 && !(ARGV && trusted) {
        alen = 0;
        flags |= ARGV_UNREADABLE;
    }
    if ARGV && alen > 0 {
        // SAFETY: destination inside the slot; `task` is the iterator's trusted task pointer.
        let r = unsafe {
            bpf_copy_from_user_task(
                buf.add(fixed + flen).cast(),
                alen as u32,
                start as *const c_void,
                task as *mut _,
                0,
            )
        };
        if r < 0 {
            alen = 0;
            flags |= ARGV_UNREADABLE;
        }
    }
    ev.filename_len = flen as u32;
    ev.argv_len = alen as u32;
    ev.argv_real_len = real as u32;
    ev.flags = flags;
    let mut total = fixed + flen + alen;
    if total > ITER_SCRATCH_SIZE {
        total = ITER_SCRATCH_SIZE;
    }
    ev.header = header(Kind::Snapshot, total);
    // SAFETY: `buf` holds `total` initialised bytes.
    unsafe { bpf_seq_write(seq as *mut _, buf.cast(), total as u32) };
}
