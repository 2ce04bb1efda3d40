//! A terminal for full-screen views: a tmux server of the test's own, its screen captured.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A tmux server of its own (`-L`) with one detached session; killed on drop.
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Starts `cmd` (a shell command line) in a detached `w`x`h` session.
    pub fn start(name: &str, w: u16, h: u16, cmd: &str) -> Tmux {
        let t = Tmux { socket: format!("tracer-it-{name}-{}", std::process::id()), session: name.to_string() };
        let (w, h) = (w.to_string(), h.to_string());
        let out = t.run(&["new-session", "-d", "-x", &w, "-y", &h, "-s", name, cmd]);
        assert!(out.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.socket).args(args);
        if std::env::var_os("TERM").is_none_or(|t| t.is_empty() || t == "dumb") {
            cmd.env("TERM", "xterm-256color");
        }
        super::run(&mut cmd, Duration::from_secs(10))
    }

    /// The visible screen, one string per line.
    pub fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        assert!(out.status.success(), "tmux capture-pane failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format of the pane, e.g. `#{alternate_on}`.
    pub fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sends keys by tmux name (`Enter`, `Escape`, `/`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Types `text`, one key a character (so that no tmux command line holds the
    /// text whole, for the filter to find).
    pub fn type_text(&self, text: &str) {
        let keys: Vec<String> = text.chars().map(String::from).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.keys(&keys);
    }

    /// Waits until the screen satisfies `cond`; returns the last screen and whether it did.
    pub fn wait_screen(&self, timeout: Duration, mut cond: impl FnMut(&str) -> bool) -> (String, bool) {
        let until = Instant::now() + timeout;
        loop {
            let s = self.capture();
            if cond(&s) {
                return (s, true);
            }
            if Instant::now() >= until {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
