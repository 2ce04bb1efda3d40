//! Command-line arguments.

use clap::{Args, Parser, Subcommand};

use crate::bpf;

#[derive(Parser, Debug)]
#[command(
    name = "tracer",
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true,
    about = "Live process, thread and container tree of this host, from eBPF lifecycle events",
    long_about = "tracer follows every fork, thread clone, exec, exit and rename on this host through \
eBPF programs and keeps the live tree of processes and threads from those events alone \
(it never polls /proc). Loading the programs needs root (or CAP_BPF and CAP_PERFMON)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print the version and the mode this kernel would run in.
    #[arg(short = 'V', long)]
    pub version: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print lifecycle events as they happen, one line each (or JSON lines).
    Events(EventsArgs),
    /// Print the process tree (like `ps afxuww`), or threads with -L.
    ///
    /// Columns: USER PID NSPID (the pid inside the process's own pid namespace, `-` in
    /// the host's) PPID NLWP START TIME RSS COMMAND. A process whose container is not
    /// its parent's starts that container's subtree, under a header row such as
    /// `[docker 1a2b3c4d5e6f web-a busybox:1]` (runtime, short id, name and image when
    /// Docker's state tells them, pod uid). -C lists containers' processes only,
    /// container by container.
    Ps(PsArgs),
    /// Keep the tree in one long-running engine and serve it to clients over a Unix socket.
    Daemon(DaemonArgs),
    /// Print the daemon's (or a fresh in-process engine's) counters.
    Stats(StatsArgs),
    /// List running containers as the kernel sees them (like `docker ps`).
    Containers(ContainersArgs),
    /// Print what this kernel supports and which features are full, degraded (and
    /// why) or missing. Loads the programs to find out (needs root).
    Check(CheckArgs),
    /// Full-screen live process tree, updated as events arrive (like a live `ps afxuww`).
    ///
    /// Shows every process as `ps afxuww` does (children indented under their parent
    /// with `\_ `): USER PID PPID THR (threads) SPAWN (threads created per second over the
    /// last 5 s) AGE CONTAINER (the container's name, else its short id; `-` for none)
    /// COMMAND. New processes and threads are highlighted (green,
    /// `+`) for 2 s; exited ones stay for the engine's linger (2 s), dimmed red (`x`) with
    /// their exit status or signal. Rows are sorted as a tree by (pid, start time) and the
    /// selection stays on its process as others come and go.
    ///
    /// Keys: arrows/PgUp/PgDn/Home/End move; Enter or Space shows a process's threads;
    /// `/` filters (text matched in comm or command line, `pid:N` for a subtree,
    /// `user:NAME`, `container:ID` with a container's short id, id prefix or name, or
    /// `-` for none); Esc clears the filter; `c` groups by container (headed by
    /// runtime, short id and name); `p` pauses the screen (events are still applied);
    /// `?` help; `q` or Ctrl-C quits.
    ///
    /// Header: tasks (all threads) = processes + threads (beyond each process's main
    /// thread), events/s, lost events, and `DEGRADED, repairing` after lost events.
    ///
    /// Status line: processes shown, the filter, and for 15 s each container start or
    /// stop (`container started: docker web-a, entrypoint after 133.5 ms, init pid 950`).
    ///
    /// The tree comes from an engine in this process (needs root). When a daemon
    /// answers at --socket (and --standalone is not given), the view is rebuilt from the
    /// daemon's snapshots instead, one every 500 ms (thread spawn rates then count the
    /// threads that appeared between snapshots). NO_COLOR turns colours off (markers
    /// stay). Log output and stderr go nowhere while the screen is up, or, with
    /// TRACER_WATCH_LOG=FILE, to FILE from the start. Needs a terminal: exits with
    /// status 2 otherwise.
    Watch(WatchArgs),
}

/// Where container names and images are read from (the runtimes' state on disk).
#[derive(Args, Debug, Clone, Default)]
pub struct StateArgs {
    /// Docker data root to read container names and images from (repeatable; default
    /// /var/lib/docker). A client served by a daemon gets the daemon's names.
    #[arg(long, value_name = "PATH")]
    pub docker_root: Vec<std::path::PathBuf>,
}

impl StateArgs {
    /// The reader of these roots (podman's and CRI-O's state at its default place).
    pub fn enricher(&self) -> crate::containers::Enricher {
        let mut e = crate::containers::Enricher::default();
        if !self.docker_root.is_empty() {
            e.docker_roots = self.docker_root.clone();
        }
        e
    }
}

/// How commands reach the daemon.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The daemon's socket. Commands use the daemon when one answers there.
    #[arg(long, value_name = "PATH", default_value = crate::daemon::protocol::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// Run the engine in this process even when a daemon is running (needs root).
    #[arg(long)]
    pub standalone: bool,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Socket to serve (created with mode 0660, group --group; its directory, if
    /// missing, mode 0750). Only a stale socket there is replaced, nothing else.
    #[arg(long, value_name = "PATH", default_value = crate::daemon::protocol::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// Group whose members may use the socket without root.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Most clients served at once; the next one gets an error line and is closed.
    #[arg(long, value_name = "N", default_value_t = crate::daemon::server::MAX_CLIENTS as u32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_clients: u32,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct ContainersArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show full container ids.
    #[arg(long)]
    pub no_trunc: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings of the kernel side.
#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// Ring buffer size in bytes (a power of two; K/M suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_size)]
    pub ringbuf_size: u32,
    /// argv bytes captured per exec (longer argv are cut and flagged).
    #[arg(long, value_name = "BYTES", default_value = "32K", value_parser = parse_size)]
    pub argv_max: u32,
}

impl EventsArgs {
    /// The stream filter these arguments ask for.
    pub fn stream_filter(&self) -> crate::daemon::protocol::Filter {
        crate::daemon::protocol::Filter {
            pid: self.filter.pid,
            comm: self.filter.comm.clone(),
            user: self.user.clone(),
            kinds: self.kind.clone(),
            container: self.container.clone(),
            no_threads: self.no_threads,
            no_kthreads: self.no_kthreads,
            containers: self.containers,
            pid_must_live: false,
        }
    }
}

impl KernelArgs {
    pub fn options(&self) -> bpf::Options {
        bpf::Options { ringbuf_bytes: self.ringbuf_size, argv_max: self.argv_max }
    }
}

/// Which processes to show.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this process and its descendants. A pid no running process has is an
    /// error (exit status 1). `events` follows the process that has the pid when it
    /// starts (pid and start time): a new process that reuses the pid later is not
    /// followed.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only processes (threads, for events) whose comm matches GLOB: `*`, `?`,
    /// `[...]`, `{a,b}` as in the shell; without those, the exact comm (quote it).
    #[arg(long, value_name = "GLOB", value_parser = comm_glob)]
    pub comm: Option<String>,
}

/// A `--comm` value that is a valid glob.
fn comm_glob(s: &str) -> Result<String, String> {
    crate::events::select::CommGlob::new(s).map(|_| s.to_string())
}

/// A `--kind` name from the registry.
fn kind_name(s: &str) -> Result<String, String> {
    crate::events::select::kind_index(s).map(|_| s.trim().to_string())
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only events of these kinds (comma-separated or repeated): fork, clone,
    /// exec, thread_exit, exit, rename, cgroup, reparent, repair. Lost-event
    /// notices are always shown.
    #[arg(long, value_name = "KIND,...", value_delimiter = ',', value_parser = kind_name)]
    pub kind: Vec<String>,
    /// Only events of this user's processes (name or uid).
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// Write JSON lines with every field instead of aligned text.
    #[arg(long)]
    pub json: bool,
    /// Leave out thread creations and thread exits.
    #[arg(long)]
    pub no_threads: bool,
    /// Leave out events of kernel threads.
    #[arg(long)]
    pub no_kthreads: bool,
    /// Tell each container start as one story instead of printing events: the
    /// runtime chain (shim, runtime create, runtime init, pid 1 in new namespaces,
    /// cgroup entered, runtime start, entrypoint exec, first child and thread) with
    /// the time of each stage; and each stop: pid 1's exit status, the last process
    /// and the shim gone. A story is printed 1 s after its entrypoint's exec (or its
    /// pid 1's exit).
    #[arg(long)]
    pub containers: bool,
    /// Only the events of this container's processes (its short id, an id prefix or
    /// its name; with --containers, only its stories).
    #[arg(long, value_name = "ID", value_parser = non_empty)]
    pub container: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// A value that is not empty (after trimming).
fn non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() { Err("must not be empty".to_string()) } else { Ok(t.to_string()) }
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only processes of this user (name or uid).
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// One line per thread, like `ps -eLf`.
    #[arg(short = 'L')]
    pub threads: bool,
    /// The whole tree as JSON, every field.
    #[arg(long)]
    pub json: bool,
    /// Only processes in containers, grouped by container: a header per container
    /// (runtime, id, name, image, pod), then its processes' tree.
    #[arg(long, short = 'C')]
    pub containers: bool,
    /// Only the processes of this container: short id, id prefix or name (implies -C).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Start with this filter: text matched in comm or command line, and `pid:N`,
    /// `user:NAME`, `container:ID` terms.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Start narrowed to this container: short id, id prefix or name (`-`: processes
    /// in no container).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Start narrowed to this process and its descendants.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Parses `4096`, `64K`, `8M`, `1G` into bytes.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&s[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&s[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("'{s}' is not a size in bytes (e.g. 4096, 64K, 8M)"))?;
    let v = n.checked_mul(mult).filter(|v| *v <= u64::from(u32::MAX));
    v.map(|v| v as u32).ok_or_else(|| format!("'{s}' is too large (at most 4G - 1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("8G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
