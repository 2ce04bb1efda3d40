//! Stories as people read them: the one-line headline (the watch's news), the
//! text of `tracer events` and of the daemon's story lines, and the JSON `kind`.
//! The JSON body itself is the stories' serde form (see the types in `mod.rs`).

use std::fmt::Write as _;

use super::{Stage, StartStory, StopStory, Story, Subject};
use crate::escape;

impl Stage {
    /// The stage's name in the text (as in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Shim => "shim",
            Stage::Create => "create",
            Stage::Init => "init",
            Stage::Namespaces => "namespaces",
            Stage::Cgroup => "cgroup",
            Stage::Start => "start",
            Stage::Entrypoint => "entrypoint",
            Stage::FirstChild => "first_child",
            Stage::FirstThread => "first_thread",
        }
    }
}

impl Story {
    /// `container_start` or `container_stop`, as the JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Story::ContainerStart(_) => "container_start",
            Story::ContainerStop(_) => "container_stop",
        }
    }

    /// One short line: what happened to which container, and the gist (escaped, as
    /// all the text is: see [`escape`]).
    pub fn headline(&self) -> String {
        let who = |c: &Subject| {
            let name = c.name.as_deref().unwrap_or(&c.short_id);
            format!("{} {}", c.runtime.name(), escape::text(name))
        };
        match self {
            Story::ContainerStart(s) => {
                let mut h = format!("container started: {}", who(&s.container));
                if let Some(t) = s.to_entrypoint_ns {
                    h.push_str(&format!(", entrypoint after {}", ms(t)));
                }
                if let Some(p) = s.init_pid {
                    h.push_str(&format!(", init pid {p}"));
                }
                h
            }
            Story::ContainerStop(s) => {
                format!("container stopped: {}, init pid {} {}", who(&s.container), s.init_pid, s.status)
            }
        }
    }

    /// The story as text: a headline, then one line per stage.
    pub fn text(&self, boot_epoch_ns: i128) -> String {
        match self {
            Story::ContainerStart(s) => start_text(s, boot_epoch_ns),
            Story::ContainerStop(s) => stop_text(s, boot_epoch_ns),
        }
    }
}

/// The container as the text names it: runtime and short id, then its name and
/// image when known, escaped.
fn full_name(c: &Subject) -> String {
    let mut s = format!("{} {}", c.runtime.name(), escape::text(&c.short_id));
    if let Some(n) = &c.name {
        s.push(' ');
        escape::push(&mut s, n);
    }
    if let Some(i) = &c.image {
        s.push_str(" (");
        escape::push(&mut s, i);
        s.push(')');
    }
    s
}

/// A start: its headline line, then one line per stage, timed from the first.
fn start_text(s: &StartStory, boot_epoch_ns: i128) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{} container start  {}",
        crate::clock::format_time_ms(boot_epoch_ns, s.ts_ns),
        full_name(&s.container)
    );
    if let Some(t) = s.to_entrypoint_ns {
        let _ = write!(out, ": entrypoint after {}", ms(t));
    }
    if let (Some(p), Some(n)) = (s.init_pid, s.init_ns_pid) {
        let _ = write!(out, ", init pid {p} ({n} inside)");
    }
    let _ = write!(out, ", {} forks and {} threads in its first second", s.forks, s.threads);
    for st in &s.steps {
        // The detail is tracer's words around the traced world's (a command line,
        // a cgroup path): escaped whole, so that each story line stays one line.
        let _ = write!(
            out,
            "\n  {:>10}  {:<12} pid {:<7} {:<16} ",
            format!("+{}", ms(st.since_ns)),
            st.stage.name(),
            st.pid,
            escape::text(&st.comm),
        );
        escape::push(&mut out, &st.detail);
    }
    out
}

/// A stop: the init's exit and lifetime, then when the others and the shim ended.
fn stop_text(s: &StopStory, boot_epoch_ns: i128) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{} container stop   {}: init pid {} {} after {}",
        crate::clock::format_time_ms(boot_epoch_ns, s.ts_ns),
        full_name(&s.container),
        s.init_pid,
        s.status,
        secs(s.lifetime_ns)
    );
    if let Some(t) = s.last_exit_ns {
        let _ = write!(out, "; {} other processes ended, the last +{}", s.others_exited, ms(t));
    }
    if let Some(t) = s.shim_exit_ns {
        let _ = write!(out, "; shim exited +{}", ms(t));
    }
    out
}

/// A duration in ms, to a tenth.
fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// A lifetime: seconds to a hundredth, then minutes and seconds, then hours and minutes.
fn secs(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{container, events::ExitStatus};

    /// What the daemon sends is what a client reads back (the watch's news).
    #[test]
    fn stories_round_trip_through_json() {
        let subject = Subject {
            runtime: container::Runtime::Docker,
            id: "1a2b".into(),
            short_id: "1a2b".into(),
            name: Some("web-a".into()),
            image: None,
            pod: None,
            cgroup: Some("/docker/1a2b".into()),
        };
        let stop = Story::ContainerStop(StopStory {
            container: subject.clone(),
            ts_ns: 5,
            init_pid: 950,
            status: ExitStatus { raw: 9 },
            lifetime_ns: 2_000_000_000,
            others_exited: 1,
            last_exit_ns: Some(100),
            shim_exit_ns: None,
        });
        let mut v = serde_json::to_value(&stop).expect("serialize");
        v["time"] = "2026-11-27T02:00:00Z".into();
        let back: Story = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back.headline(), "container stopped: docker web-a, init pid 950 killed by SIGKILL");
        assert_eq!(back.headline(), stop.headline());
        let start = Story::ContainerStart(StartStory {
            container: Subject { name: None, ..subject },
            ts_ns: 1,
            steps: vec![],
            to_entrypoint_ns: Some(133_500_000),
            init_pid: Some(950),
            init_ns_pid: Some(1),
            forks: 0,
            threads: 0,
        });
        let back: Story = serde_json::from_value(serde_json::to_value(&start).expect("ser")).expect("de");
        assert_eq!(back.headline(), "container started: docker 1a2b, entrypoint after 133.5 ms, init pid 950");
    }

    /// A container's name and image, a step's comm and command line: the story's
    /// text and headline show them escaped, each stage on one line.
    #[test]
    fn the_traced_worlds_strings_are_escaped() {
        use super::super::Step;
        let subject = Subject {
            runtime: container::Runtime::Docker,
            id: "1a2b".into(),
            short_id: "1a\\2b".into(),
            name: Some("web\u{1b}]0;t\u{7}".into()),
            image: Some("img\n:1".into()),
            pod: None,
            cgroup: None,
        };
        let step = Step {
            stage: Stage::Entrypoint,
            ts_ns: 1,
            since_ns: 0,
            pid: 950,
            comm: "c\u{1b}[2J".into(),
            detail: "/bin/sh: sh \u{1b}]52;c;aGk=\u{7}\n  fake stage".into(),
        };
        let start = Story::ContainerStart(StartStory {
            container: subject,
            ts_ns: 1,
            steps: vec![step],
            to_entrypoint_ns: None,
            init_pid: None,
            init_ns_pid: None,
            forks: 0,
            threads: 0,
        });
        let text = start.text(0);
        assert!(text.chars().all(|c| c == '\n' || !c.is_control()), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("docker 1a\\\\2b web\\x1b]0;t\\x07 (img\\n:1)"), "{text}");
        assert!(text.contains("c\\x1b[2J"), "{text}");
        assert!(text.contains("/bin/sh: sh \\x1b]52;c;aGk=\\x07\\n  fake stage"), "{text}");
        assert_eq!(start.headline(), "container started: docker web\\x1b]0;t\\x07");
    }
}
