//! Kernel struct layouts and tracepoint shapes, read from the kernel's BTF.
//!
//! The eBPF programs are built once and read kernel structs at byte offsets
//! handed to them at load time ([`Offsets`]), so one binary runs on any
//! BTF-enabled kernel. [`KernelBtf::offsets`] resolves every one of them
//! through `TABLE`, the single list of the kernel fields the programs read.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, BtfType, Member, Struct, Type};
use tracer_abi::{OFFSET_MISSING, Offsets};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Longest chain of typedefs/modifiers, or nesting of anonymous members,
/// followed: malformed BTF cannot make the resolver loop or overflow the stack.
const MAX_DEPTH: usize = 32;

/// Errors from reading kernel BTF or resolving what the programs need from it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {}: tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        .0.display()
    )]
    NotFound(PathBuf),
    #[error("cannot read kernel BTF at {}: {} (check that the file is readable)", .0.display(), .1)]
    Read(PathBuf, #[source] btf_rs::Error),
    #[error("{origin}: malformed BTF: {reason}")]
    Malformed { origin: String, reason: String },
    #[error(
        "{origin}: {reason} (needed for offset {field}); tracer does not support this kernel \
         version yet, please report it together with `uname -r`"
    )]
    Unsupported { origin: String, field: &'static str, reason: String },
    #[error("internal error: Offsets field {0} has no entry in the table of tracer/src/bpf/btf.rs")]
    Unmapped(&'static str),
}

/// How one [`Offsets`] field is found in its struct.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Byte offset of the first of these member paths the struct has.
    Member(&'static [&'static str]),
    /// As `Member`, and the member must be an array of the named struct.
    ArrayOf(&'static [&'static str], &'static str),
    /// `sizeof` the struct itself.
    SizeOf,
    /// Bit offset (from the struct's start) of a one-bit bitfield member.
    Bit(&'static str),
}

/// One row of [`TABLE`]: an [`Offsets`] field, the kernel struct it is in, how
/// to find it there, and whether it is required (missing is then an error, not
/// [`OFFSET_MISSING`]).
type Entry = (&'static str, &'static str, Source, bool);

const REQ: bool = true;
const OPT: bool = false;
use Source::{ArrayOf, Bit, Member as M, SizeOf};

/// Every kernel field the programs read. A path is dot-separated through named
/// nested struct members; anonymous struct/union members are crossed
/// transparently. Further paths are names the field has in other kernel versions.
#[rustfmt::skip]
const TABLE: &[Entry] = &[
    ("task_struct_pid", "task_struct", M(&["pid"]), REQ),
    ("task_struct_tgid", "task_struct", M(&["tgid"]), REQ),
    ("task_struct_real_parent", "task_struct", M(&["real_parent"]), REQ),
    ("task_struct_group_leader", "task_struct", M(&["group_leader"]), REQ),
    ("task_struct_comm", "task_struct", M(&["comm"]), REQ),
    ("task_struct_flags", "task_struct", M(&["flags"]), REQ),
    // Called real_start_time before 5.5.
    ("task_struct_start_boottime", "task_struct", M(&["start_boottime", "real_start_time"]), REQ),
    ("task_struct_real_cred", "task_struct", M(&["real_cred"]), REQ),
    ("task_struct_cgroups", "task_struct", M(&["cgroups"]), REQ),
    ("task_struct_thread_pid", "task_struct", M(&["thread_pid"]), REQ),
    ("task_struct_nsproxy", "task_struct", M(&["nsproxy"]), REQ),
    ("task_struct_signal", "task_struct", M(&["signal"]), REQ),
    ("task_struct_exit_code", "task_struct", M(&["exit_code"]), REQ),
    ("task_struct_exit_state", "task_struct", M(&["exit_state"]), REQ),
    ("task_struct_mm", "task_struct", M(&["mm"]), REQ),
    ("task_struct_utime", "task_struct", M(&["utime"]), REQ),
    ("task_struct_children", "task_struct", M(&["children"]), REQ),
    ("task_struct_thread_node", "task_struct", M(&["thread_node"]), OPT),
    ("task_struct_stime", "task_struct", M(&["stime"]), REQ),
    // kuid_t/kgid_t wrap a single `val`: the member's own offset is the id's.
    ("cred_uid", "cred", M(&["uid"]), REQ),
    ("cred_gid", "cred", M(&["gid"]), REQ),
    ("css_set_dfl_cgrp", "css_set", M(&["dfl_cgrp"]), REQ),
    ("cgroup_kn", "cgroup", M(&["kn"]), REQ),
    // A u64 since 5.5; before, a `union kernfs_node_id` starting with that u64.
    ("kernfs_node_id", "kernfs_node", M(&["id"]), REQ),
    ("kernfs_node_name", "kernfs_node", M(&["name"]), REQ),
    // Renamed __parent in 6.15.
    ("kernfs_node_parent", "kernfs_node", M(&["__parent", "parent"]), REQ),
    ("pid_level", "pid", M(&["level"]), REQ),
    ("pid_numbers", "pid", M(&["numbers"]), REQ),
    ("upid_size", "upid", SizeOf, REQ),
    ("upid_nr", "upid", M(&["nr"]), REQ),
    ("upid_ns", "upid", M(&["ns"]), REQ),
    ("pid_namespace_ns_inum", "pid_namespace", M(&["ns.inum"]), REQ),
    ("pid_namespace_child_reaper", "pid_namespace", M(&["child_reaper"]), REQ),
    ("signal_struct_thread_head", "signal_struct", M(&["thread_head"]), OPT),
    ("nsproxy_mnt_ns", "nsproxy", M(&["mnt_ns"]), REQ),
    ("mnt_namespace_ns_inum", "mnt_namespace", M(&["ns.inum"]), REQ),
    ("signal_struct_live", "signal_struct", M(&["live"]), REQ),
    ("signal_struct_flags", "signal_struct", M(&["flags"]), REQ),
    ("signal_struct_group_exit_code", "signal_struct", M(&["group_exit_code"]), REQ),
    ("signal_struct_is_child_subreaper_bit", "signal_struct", Bit("is_child_subreaper"), OPT),
    ("signal_struct_has_child_subreaper_bit", "signal_struct", Bit("has_child_subreaper"), OPT),
    // Inside mm_struct's anonymous struct on current kernels.
    ("mm_struct_arg_start", "mm_struct", M(&["arg_start"]), REQ),
    ("mm_struct_arg_end", "mm_struct", M(&["arg_end"]), REQ),
    ("mm_struct_exe_file", "mm_struct", M(&["exe_file"]), REQ),
    // `struct percpu_counter rss_stat[NR_MM_COUNTERS]` since 6.2; before, a
    // `struct mm_rss_stat` of atomics the programs do not read (no RSS then).
    ("mm_struct_rss_stat", "mm_struct", ArrayOf(&["rss_stat"], "percpu_counter"), OPT),
    ("percpu_counter_count", "percpu_counter", M(&["count"]), OPT),
    ("percpu_counter_size", "percpu_counter", SizeOf, OPT),
    // Recent kernels put them in anonymous unions with `__f_path` and `__d_name`.
    ("file_f_path_dentry", "file", M(&["f_path.dentry"]), REQ),
    ("dentry_d_name_name", "dentry", M(&["d_name.name"]), REQ),
    ("linux_binprm_filename", "linux_binprm", M(&["filename"]), REQ),
];

/// A lookup's outcome on a well-formed BTF: a byte offset or size, or why this
/// kernel does not have what was asked for.
type Lookup = Result<u32, String>;

/// The kernel's parsed BTF.
pub struct KernelBtf {
    btf: Btf,
    /// The running kernel's release, when the BTF is the running kernel's.
    release: Option<String>,
    /// What the BTF describes, for messages: "kernel 6.8.0-45-generic" or a path.
    origin: String,
    /// Structs looked up so far: a lookup by name scans the mapped BTF.
    structs: std::cell::RefCell<std::collections::HashMap<String, Option<Struct>>>,
}

impl KernelBtf {
    /// Reads the running kernel's BTF from [`VMLINUX_BTF`].
    pub fn load() -> Result<Self, BtfError> {
        let mut btf = Self::from_path(VMLINUX_BTF)?;
        if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            btf.origin = format!("kernel {}", release.trim());
            btf.release = Some(release.trim().to_string());
        }
        Ok(btf)
    }

    /// Reads BTF from a file (a raw BTF blob, as in /sys/kernel/btf).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, BtfError> {
        let path = path.as_ref();
        // Mapping the file is much faster than parsing every type up front, where
        // the kernel allows it (sysfs BTF is mappable on recent kernels).
        let btf = Btf::from_file_with_backend(path, btf_rs::Backend::Mmap).or_else(|_| Btf::from_file(path));
        let btf = btf.map_err(|source| match source {
            btf_rs::Error::IO(e) if e.kind() == std::io::ErrorKind::NotFound => BtfError::NotFound(path.to_path_buf()),
            source => BtfError::Read(path.to_path_buf(), source),
        })?;
        let origin = format!("BTF {}", path.display());
        Ok(KernelBtf { btf, release: None, origin, structs: Default::default() })
    }

    /// The running kernel's release (`uname -r`), when known.
    pub fn release(&self) -> Option<String> {
        self.release.clone()
    }

    /// Whether enum `name` of the BTF has a member `value` (e.g. whether
    /// `bpf_func_id` lists a helper: the kernel knows it).
    pub fn has_enum_value(&self, name: &str, value: &str) -> bool {
        let Ok(types) = self.btf.resolve_types_by_name(name) else { return false };
        types.iter().any(|t| match t {
            Type::Enum(e) => e.members.iter().any(|m| self.btf.resolve_name(m).is_ok_and(|n| n == value)),
            _ => false,
        })
    }

    /// Whether the BTF has any type (struct, typedef, function, ...) of this name.
    pub fn has_type(&self, name: &str) -> bool {
        let ids = self.btf.resolve_ids_by_name(name);
        ids.is_ok_and(|ids| !ids.is_empty())
    }

    /// Resolves every field of [`Offsets`]. Fields missing on this kernel are an
    /// error when required, [`OFFSET_MISSING`] (logged) otherwise.
    pub fn offsets(&self) -> Result<Offsets, BtfError> {
        let mut offsets = Offsets::MISSING;
        let mut atomic_rss = false;
        for (field, slot) in offsets.fields_mut() {
            let entry = TABLE.iter().find(|e| e.0 == field);
            let &(_, strukt, source, required) = entry.ok_or(BtfError::Unmapped(field))?;
            let found = match source {
                Source::Member(paths) => self.member(strukt, paths, None)?,
                Source::ArrayOf(paths, elem) => self.member(strukt, paths, Some(elem))?,
                Source::Bit(name) => self.bit(strukt, name)?,
                Source::SizeOf => match self.find_struct(strukt)? {
                    Some(s) => u32::try_from(s.size()).map_err(|_| format!("{strukt} too big")),
                    None => Err(format!("BTF has no struct {strukt}")),
                },
            };
            let found = match found {
                Err(_) if field == "mm_struct_rss_stat" => {
                    atomic_rss = true;
                    self.atomic_rss()?
                }
                found => found,
            };
            *slot = match found {
                Ok(value) => value,
                Err(reason) if required => {
                    let origin = self.origin.clone();
                    return Err(BtfError::Unsupported { origin, field, reason });
                }
                Err(reason) => {
                    log::info!("{}: {reason}; {field} left unset", self.origin);
                    OFFSET_MISSING
                }
            };
        }
        if atomic_rss && offsets.mm_struct_rss_stat != OFFSET_MISSING {
            // Before 6.2 the counters are `atomic_long_t`s (see `atomic_rss`): 8 bytes
            // apart, each its own count.
            offsets.percpu_counter_size = 8;
            offsets.percpu_counter_count = 0;
        }
        Ok(offsets)
    }

    /// Before Linux 6.2, `mm_struct.rss_stat` is a `struct mm_rss_stat` holding
    /// `atomic_long_t count[NR_MM_COUNTERS]`: the offset of that array, when the
    /// per-CPU counters are not there.
    fn atomic_rss(&self) -> Result<Lookup, BtfError> {
        self.member("mm_struct", &["rss_stat.count"], None)
    }

    /// Byte offset in struct `strukt` of the first of `paths` it has (see
    /// `TABLE` for the path syntax); `None` if none is there or it is a bitfield.
    pub fn member_offset(&self, strukt: &str, paths: &[&str]) -> Result<Option<u32>, BtfError> {
        Ok(self.member(strukt, paths, None)?.ok())
    }

    /// Number of arguments of BTF tracepoint `tp` (from the typedef
    /// `btf_trace_<tp>`, without its leading context pointer); `None` if unknown.
    pub fn tracepoint_arg_count(&self, tp: &str) -> Option<usize> {
        let types = self.btf.resolve_types_by_name(&format!("btf_trace_{tp}"));
        let target = types.ok()?.iter().find_map(|t| match t {
            Type::Typedef(td) => td.get_type_id(),
            _ => None,
        })?;
        if let Ok(Type::Ptr(ptr)) = self.strip(target)
            && let Ok(Type::FuncProto(proto)) = self.strip(ptr.get_type_id()?)
        {
            return proto.parameters.iter().filter(|p| !p.is_variadic()).count().checked_sub(1);
        }
        None
    }

    /// Whether `sched_process_exit` passes `group_dead` (Linux 6.16+). When
    /// unknown, false: the programs then read `signal->live`, which always works.
    pub fn exit_has_group_dead(&self) -> bool {
        let args = self.tracepoint_arg_count("sched_process_exit");
        args.is_some_and(|n| n >= 2)
    }

    /// Byte offset of the first of `paths` in `strukt`, checked to be a whole
    /// field and, with `elem`, an array of struct `elem`. (Old-style bitfields,
    /// in structs without BTF's kind_flag, are only caught when not byte-aligned;
    /// pahole emits kind_flag for every kernel struct that has bitfields.)
    fn member(&self, strukt: &str, paths: &[&str], elem: Option<&str>) -> Result<Lookup, BtfError> {
        let Some(st) = self.find_struct(strukt)? else {
            return Ok(Err(format!("BTF has no struct {strukt}")));
        };
        for path in paths {
            let names: Vec<&str> = path.split('.').collect();
            let Some((bits, member)) = self.find(&st, &names, 0)? else {
                continue;
            };
            let whole = member.bitfield_size().unwrap_or(0) == 0 && bits % 8 == 0;
            let problem = match elem {
                _ if !whole => "is a bitfield, the programs read whole fields".to_string(),
                Some(elem) if !self.is_array_of(&member, elem)? => {
                    format!("is not an array of struct {elem}")
                }
                _ => return Ok(Ok(bits / 8)),
            };
            return Ok(Err(format!("{strukt}.{path} {problem}")));
        }
        let paths = paths.join(" or ");
        Ok(Err(format!("struct {strukt} has no member {paths}")))
    }

    /// Bit offset of the one-bit bitfield `name` of `strukt`.
    fn bit(&self, strukt: &str, name: &str) -> Result<Lookup, BtfError> {
        let Some(st) = self.find_struct(strukt)? else {
            return Ok(Err(format!("BTF has no struct {strukt}")));
        };
        match self.find(&st, &[name], 0)? {
            Some((bits, m)) if m.bitfield_size().unwrap_or(0) == 1 => Ok(Ok(bits)),
            Some(_) => Ok(Err(format!("{strukt}.{name} is not a one-bit bitfield"))),
            None => Ok(Err(format!("struct {strukt} has no member {name}"))),
        }
    }

    /// Whether the member is an array of struct `elem`.
    fn is_array_of(&self, m: &Member, elem: &str) -> Result<bool, BtfError> {
        if let Type::Array(a) = self.strip(self.type_id(m)?)?
            && let Type::Struct(s) = self.strip(self.type_id(&a)?)?
        {
            return Ok(self.name(&s)? == elem);
        }
        Ok(false)
    }

    /// The struct (not union, typedef or forward declaration) of this name.
    fn find_struct(&self, name: &str) -> Result<Option<Struct>, BtfError> {
        if let Some(found) = self.structs.borrow().get(name) {
            return Ok(found.clone());
        }
        let types = self.btf.resolve_types_by_name(name);
        let types = types.map_err(|e| self.malformed(e))?;
        let found = types.into_iter().find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        });
        self.structs.borrow_mut().insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// Bit offset and BTF member of the path `names` in `st`, looking through
    /// anonymous struct/union members.
    fn find(&self, st: &Struct, names: &[&str], depth: usize) -> Result<Option<(u32, Member)>, BtfError> {
        let Some((&name, rest)) = names.split_first().filter(|_| depth <= MAX_DEPTH) else {
            return Err(self.malformed("struct members nested too deep"));
        };
        for m in &st.members {
            let anonymous = m.get_name_offset().unwrap_or(0) == 0;
            let next = match anonymous {
                true => names,
                false if self.name(m)? == name => rest,
                false => continue,
            };
            if next.is_empty() {
                return Ok(Some((m.bit_offset(), m.clone())));
            }
            let (Type::Struct(inner) | Type::Union(inner)) = self.strip(self.type_id(m)?)? else {
                continue;
            };
            if let Some((bits, found)) = self.find(&inner, next, depth + 1)? {
                let bits = bits.checked_add(m.bit_offset());
                let bits = bits.ok_or_else(|| self.malformed("offset overflow"))?;
                return Ok(Some((bits, found)));
            }
        }
        Ok(None)
    }

    /// The type `id` refers to, through typedefs and const/volatile/restrict/type tags.
    fn strip(&self, mut id: u32) -> Result<Type, BtfError> {
        for _ in 0..MAX_DEPTH {
            let ty = self.btf.resolve_type_by_id(id);
            let ty = ty.map_err(|e| self.malformed(e))?;
            match ty {
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) => {}
                Type::Restrict(_) | Type::TypeTag(_) => {}
                ty => return Ok(ty),
            }
            let next = ty.as_btf_type().and_then(|t| t.get_type_id());
            id = next.ok_or_else(|| self.malformed("dangling typedef"))?;
        }
        Err(self.malformed("typedef chain too long"))
    }

    fn name(&self, t: &dyn BtfType) -> Result<String, BtfError> {
        self.btf.resolve_name(t).map_err(|e| self.malformed(e))
    }

    fn type_id(&self, t: &dyn BtfType) -> Result<u32, BtfError> {
        let id = t.get_type_id();
        id.ok_or_else(|| self.malformed("reference without a type"))
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> BtfError {
        let origin = self.origin.clone();
        BtfError::Malformed { origin, reason: reason.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_offset_exactly_once() {
        let fields = Offsets::MISSING.fields();
        for (name, _) in fields {
            let n = TABLE.iter().filter(|e| e.0 == name).count();
            assert_eq!(n, 1, "{name} must have exactly one table entry");
        }
        for (field, ..) in TABLE {
            assert!(fields.iter().any(|(n, _)| n == field), "stale {field}");
        }
    }

    #[test]
    fn bad_files_are_errors() {
        let err = KernelBtf::from_path("/nonexistent/btf/vmlinux").err();
        assert!(err.is_some_and(|e| e.to_string().contains("CONFIG_DEBUG_INFO_BTF=y")));
        let path = std::env::temp_dir().join(format!("tracer-btf-test-{}", std::process::id()));
        std::fs::write(&path, b"this is not BTF at all").expect("write temp file");
        let res = KernelBtf::from_path(&path);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(res, Err(BtfError::Read(..))));
    }

    /// The running kernel's BTF, or `None` (test skipped) on a kernel without it.
    fn kernel() -> Option<KernelBtf> {
        let present = Path::new(VMLINUX_BTF).exists();
        present.then(|| KernelBtf::load().expect("load kernel BTF"))
    }

    #[test]
    fn running_kernel_offsets() {
        let Some(k) = kernel() else { return };
        let o = k.offsets().expect("resolve offsets");
        for (name, value) in o.fields() {
            println!("{name:32} {value}");
            let required = TABLE.iter().any(|e| e.0 == name && e.3);
            assert!(!required || value != OFFSET_MISSING, "{name} unresolved");
        }
        assert!(o.task_struct_pid < o.task_struct_tgid && o.task_struct_tgid < 4096 * 4);
        assert_eq!(o.task_struct_tgid, o.task_struct_pid + 4);
        assert_eq!(o.cred_gid, o.cred_uid + 4);
        assert_eq!(o.mm_struct_arg_end, o.mm_struct_arg_start + 8);
        #[cfg(target_pointer_width = "64")]
        assert_eq!((o.upid_size, o.upid_nr, o.upid_ns), (16, 0, 8));
        // comm is char[COMM_LEN].
        let st = k.find_struct("task_struct").ok().flatten();
        let comm = st.and_then(|st| k.find(&st, &["comm"], 0).ok().flatten());
        let ty = comm.and_then(|(_, m)| k.strip(m.get_type_id()?).ok());
        assert!(matches!(ty, Some(Type::Array(a)) if a.len() == tracer_abi::COMM_LEN));
        // Recent kernels renamed kernfs_node.parent to __parent: either resolves.
        let parent = k.member_offset("kernfs_node", &["__parent", "parent"]);
        assert!(parent.is_ok_and(|p| p.is_some()));
        let none = k.member_offset("kernfs_node", &["no_such_member"]);
        assert!(none.is_ok_and(|p| p.is_none()));
        // Bitfields and members of the wrong type are refused.
        let bitfield = k.member("linux_binprm", &["secureexec"], None);
        assert!(bitfield.is_ok_and(|r| r.is_err_and(|e| e.contains("bitfield"))));
        let wrong = k.member("mm_struct", &["rss_stat"], Some("upid"));
        assert!(wrong.is_ok_and(|r| r.is_err_and(|e| e.contains("array of struct upid"))));
        if o.mm_struct_rss_stat != OFFSET_MISSING {
            assert!(o.percpu_counter_size > o.percpu_counter_count);
        }
    }

    /// `sched_process_exit` gained `group_dead` in 6.16 (this test machine runs 6.18).
    #[test]
    fn running_kernel_tracepoints() {
        let Some(k) = kernel() else { return };
        assert_eq!(k.tracepoint_arg_count("sched_process_fork"), Some(2));
        assert_eq!(k.tracepoint_arg_count("no_such_tracepoint"), None);
        assert!(k.has_type("task_struct") && !k.has_type("no_such_type_at_all"));
        let exit = k.tracepoint_arg_count("sched_process_exit");
        println!("sched_process_exit args: {exit:?}");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut nums = release.split(['.', '-']).map(|n| n.parse::<u32>().ok());
        if let (Some(Some(major)), Some(Some(minor))) = (nums.next(), nums.next()) {
            let new_kernel = (major, minor) >= (6, 16);
            assert_eq!(k.exit_has_group_dead(), new_kernel, "kernel {release}");
            assert_eq!(exit, Some(if new_kernel { 2 } else { 1 }));
        }
    }
}
