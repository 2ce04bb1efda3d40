//! What this kernel lets tracer do: learnt by trying (each program is loaded,
//! and the variant the kernel accepts is kept), never from version numbers.
//!
//! [`Features`] records what loading found; [`Features::report`] turns it into
//! the list of user-visible features, each full, degraded (and why) or missing,
//! that `tracer check`, the daemon's stats and `tracer --version` show.

use serde::Serialize;

/// Which task iterator program the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Iterator {
    /// Sleepable, with `bpf_copy_from_user_task`: argv of every process found.
    Sleepable,
    /// Not sleepable: the processes found have their argv flagged unreadable.
    NoArgv,
    /// Neither loaded: no start-up walk, and no repair after lost events.
    None,
}

/// What loading the programs found out about this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Features {
    /// `uname -r`.
    pub kernel: String,
    pub iterator: Iterator,
    /// The kernel filters a task iterator walk to one process (Linux 6.1+); else
    /// such walks visit every task and the program filters.
    pub iter_pid_filter: bool,
    /// The `task_rename` program loaded.
    pub rename: bool,
    /// The `cgroup_attach_task` program loaded.
    pub cgroup_moves: bool,
    /// `sched_process_exit` passes `group_dead` (Linux 6.16+); else the program
    /// reads `signal->live`, to the same effect.
    pub exit_group_dead_arg: bool,
    /// The mm's RSS counters were found in BTF (per-CPU counters since 6.2, atomics before).
    pub rss: bool,
    /// The signal_struct subreaper bits were found in BTF.
    pub subreapers: bool,
    /// Why each program that did not load was refused (program, one-line reason).
    pub refused: Vec<(String, String)>,
}

/// One user-visible feature and how well this kernel serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// "full", "degraded" or "missing".
    pub status: &'static str,
    /// Why it is not full; `None` when it is.
    pub why: Option<String>,
}

impl Feature {
    fn full(name: &'static str) -> Feature {
        Feature { name, status: "full", why: None }
    }

    fn degraded(name: &'static str, why: impl Into<String>) -> Feature {
        Feature { name, status: "degraded", why: Some(why.into()) }
    }

    fn missing(name: &'static str, why: impl Into<String>) -> Feature {
        Feature { name, status: "missing", why: Some(why.into()) }
    }
}

impl Features {
    /// Every user-visible feature, in a fixed order.
    pub fn report(&self) -> Vec<Feature> {
        let refused =
            |prog: &str| self.refused.iter().find(|(p, _)| p == prog).map(|(_, why)| why.clone()).unwrap_or_default();
        let mut out =
            vec![Feature::full("process and thread events (fork, clone, exec, exit)"), Feature::full("exec argv")];
        out.push(match self.rename {
            true => Feature::full("renames"),
            false => Feature::missing("renames", format!("task_rename program refused: {}", refused("task_rename"))),
        });
        out.push(match self.cgroup_moves {
            true => Feature::full("cgroup moves"),
            false => Feature::degraded(
                "cgroup moves",
                format!(
                    "cgroup_attach_task program refused ({}): a process moved into a container is attributed at its next exec or fork",
                    refused("cgroup_attach_task")
                ),
            ),
        });
        let walk_why = || {
            format!(
                "no task iterator loaded ({}; {})",
                refused(tracer_abi::prog::ITER_TASK),
                refused(tracer_abi::prog::ITER_TASK_NO_ARGV)
            )
        };
        out.push(match self.iterator {
            Iterator::None => Feature::missing(
                "start-up walk and repair after loss",
                format!("{}: processes that existed before tracer started are not seen", walk_why()),
            ),
            _ => Feature::full("start-up walk and repair after loss"),
        });
        out.push(match self.iterator {
            Iterator::Sleepable => Feature::full("start-up argv"),
            Iterator::NoArgv => Feature::degraded(
                "start-up argv",
                "no sleepable task iterator with bpf_copy_from_user_task (Linux 5.18+): argv of processes \
                 that existed before tracer started is flagged unreadable; later execs have full argv",
            ),
            Iterator::None => Feature::missing("start-up argv", walk_why()),
        });
        out.push(match self.rss {
            true => Feature::full("resident memory (RSS)"),
            false => Feature::missing("resident memory (RSS)", "this kernel's BTF has no mm_struct RSS counters"),
        });
        out.push(match self.subreapers {
            true => Feature::full("reparenting to subreapers"),
            false => Feature::degraded(
                "reparenting to subreapers",
                "this kernel's BTF has no subreaper bits in signal_struct: orphans are given to init",
            ),
        });
        out
    }

    /// "full", or "degraded (feature, feature)" naming what is not full.
    pub fn mode(&self) -> String {
        let lacking: Vec<&str> = self.report().iter().filter(|f| f.status != "full").map(|f| f.name).collect();
        if lacking.is_empty() { "full".to_string() } else { format!("degraded ({})", lacking.join(", ")) }
    }

    /// The report as JSON: kernel, mode, features and what was probed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kernel": self.kernel,
            "mode": self.mode(),
            "features": self.report(),
            "probes": {
                "task_iterator": self.iterator,
                "iter_pid_filter": self.iter_pid_filter,
                "exit_group_dead_arg": self.exit_group_dead_arg,
                "rss_counters": self.rss,
                "subreaper_bits": self.subreapers,
            },
            "refused": self.refused.iter().map(|(p, why)| serde_json::json!({"program": p, "why": why})).collect::<Vec<_>>(),
        })
    }
}

/// What the mode would be, told from the kernel's BTF alone (no privileges, no
/// loading): the helpers the kernel's `enum bpf_func_id` lists. `tracer check`
/// probes for real.
pub fn predict(btf: &super::btf::KernelBtf) -> String {
    let knows = |helper: &str| btf.has_enum_value("bpf_func_id", helper);
    if !knows("BPF_FUNC_ringbuf_output") {
        "unsupported (no BPF ring buffer: Linux 5.8+ is needed)".to_string()
    } else if knows("BPF_FUNC_copy_from_user_task") {
        "full".to_string()
    } else {
        "degraded (start-up argv)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Features {
        Features {
            kernel: "6.18.0".into(),
            iterator: Iterator::Sleepable,
            iter_pid_filter: true,
            rename: true,
            cgroup_moves: true,
            exit_group_dead_arg: true,
            rss: true,
            subreapers: true,
            refused: Vec::new(),
        }
    }

    #[test]
    fn full_kernel_is_full() {
        let f = all();
        assert_eq!(f.mode(), "full");
        assert!(f.report().iter().all(|x| x.status == "full" && x.why.is_none()));
    }

    #[test]
    fn old_kernel_is_degraded_with_reasons() {
        let f = Features {
            iterator: Iterator::NoArgv,
            iter_pid_filter: false,
            refused: vec![("iter_task".into(), "invalid func unknown#191".into())],
            ..all()
        };
        assert_eq!(f.mode(), "degraded (start-up argv)");
        let argv = f.report().into_iter().find(|x| x.name == "start-up argv").expect("listed");
        assert_eq!(argv.status, "degraded");
        assert!(argv.why.is_some_and(|w| w.contains("5.18")));
        let v = f.json();
        assert_eq!(v["probes"]["task_iterator"], "no_argv");
        assert_eq!(v["refused"][0]["program"], "iter_task");
    }

    #[test]
    fn no_iterator_is_missing() {
        let f = Features { iterator: Iterator::None, ..all() };
        let r = f.report();
        assert!(r.iter().any(|x| x.name.starts_with("start-up walk") && x.status == "missing"));
        assert!(f.mode().starts_with("degraded ("));
    }
}
