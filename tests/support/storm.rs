//! A fork, exec and thread storm that runs until told to stop
//! (`tests/workloads/fault_storm.c`), with its counts.

use std::{process::Command, time::Duration};

use super::workload::{CProgram, Workload, compile_c};

const STORM_C: &str = include_str!("../workloads/fault_storm.c");
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a storm made so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub forks: u64,
    pub execs: u64,
    pub threads: u64,
}

impl Counts {
    /// `forks=F execs=E threads=T`.
    pub fn parse(line: &str) -> Option<Counts> {
        let get = |key: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
        };
        Some(Counts { forks: get("forks")?, execs: get("execs")?, threads: get("threads")? })
    }

    /// Processes and threads made.
    pub fn tasks(&self) -> u64 {
        self.forks + self.execs + self.threads
    }
}

/// A running storm: loops of forks (children `_exit` at once), of fork + exec
/// of /bin/true, and of thread create + join, each in a process of its own.
/// Dropping it kills the storm's process group.
pub struct Storm {
    w: Workload,
    _prog: CProgram,
}

impl Storm {
    /// Starts `forkers`, `execers` and `threaders` loops; returns once each has
    /// gone round once. Callers check `require_tool("cc")` first.
    pub fn start(forkers: u32, execers: u32, threaders: u32) -> Storm {
        let prog = compile_c("fault_storm", STORM_C);
        let mut cmd = Command::new(&prog.path);
        cmd.args([forkers, execers, threaders].map(|n| n.to_string()));
        let mut w = Workload::spawn_group("fault_storm", &mut cmd);
        assert_eq!(w.line(LINE_TIMEOUT), "ready", "fault_storm should say ready");
        Storm { w, _prog: prog }
    }

    pub fn pid(&self) -> u32 {
        self.w.pid()
    }

    /// Whether it still runs (it runs until [`Storm::stop`]).
    pub fn running(&mut self) -> bool {
        self.w.running()
    }

    /// The counts so far.
    pub fn counts(&mut self) -> Counts {
        self.w.say("count");
        let line = self.w.line(LINE_TIMEOUT);
        Counts::parse(&line).unwrap_or_else(|| panic!("fault_storm printed {line:?}"))
    }

    /// Stops the loops, waits for them, asserts they all ended well; the totals.
    pub fn stop(mut self) -> Counts {
        self.w.close_stdin();
        self.w.wait_ok(Duration::from_secs(60));
        let line = self.w.line(LINE_TIMEOUT);
        Counts::parse(&line).unwrap_or_else(|| panic!("fault_storm printed {line:?} at the end"))
    }
}

#[test]
fn counts_parse() {
    let c = Counts::parse("forks=3 execs=2 threads=10").expect("parses");
    assert_eq!((c.forks, c.execs, c.threads, c.tasks()), (3, 2, 10, 15));
    assert!(Counts::parse("ready").is_none());
}
