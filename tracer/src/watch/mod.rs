//! `tracer watch`: the live process tree, full screen.
//!
//! The tree comes from an engine fed by the kernel's events in this process (the
//! main path: needs root), or, when a daemon answers at `--socket`, from the
//! daemon's snapshots (one every 500 ms; see [`daemon`]). It never reads /proc.
//!
//! Every update is applied (and its thread spawns counted) as it comes; the rows
//! are rebuilt from the model and the screen drawn at most every 100 ms when
//! something changed, at least every second (ages, highlights), and at once
//! after a key press or a resize. Only the visible rows are formatted.
//!
//! The terminal is restored on `q`, Ctrl-C, SIGTERM/SIGINT/SIGHUP, errors and
//! panics (the panic hook leaves the alternate screen and raw mode first). While
//! the screen is up, stderr (and so log output) goes to /dev/null; with
//! `TRACER_WATCH_LOG` set, to that file from the start.

pub mod daemon;
pub mod filter;
pub mod keys;
pub mod ui;
pub mod view;

#[cfg(test)]
mod tests;

use std::{
    io::{BufWriter, IsTerminal, Stdout, Write},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        Arc, Once,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor, event, execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use crate::{
    cli::WatchArgs,
    clock,
    daemon::client::Client,
    render::{Containers, NameCache},
    shutdown::Shutdown,
    story::Stories,
    tracker::{self, Outcome, Tracker},
};
use view::{Action, Config, Counters, View};

/// Shortest time between two frames drawn for model changes.
const FRAME: Duration = Duration::from_millis(100);
/// Longest time between two rebuilds (ages, highlights and rates move on).
const REFRESH: Duration = Duration::from_secs(1);
/// The environment variable naming a file for stderr (and log output) while the screen is up.
pub const LOG_ENV: &str = "TRACER_WATCH_LOG";
/// What is printed (to stderr) when stdout is not a terminal; the exit status is 2.
pub const NOT_A_TERMINAL: &str = "tracer watch needs a terminal; use `tracer ps` or `tracer events`";

pub async fn run(args: WatchArgs) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        eprintln!("{NOT_A_TERMINAL}");
        return Ok(ExitCode::from(2));
    }
    // With a log file, everything from the start (the start-up's log lines too)
    // goes there; without, log lines are hidden only while the screen is up.
    if std::env::var_os(LOG_ENV).is_some_and(|v| !v.is_empty()) {
        redirect_stderr();
    }
    let result = watch(args).await;
    // Errors are printed by the caller, on the real stderr.
    restore_stderr();
    result
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let filter = initial_filter(&args);
    if !args.client.standalone
        && let Some(client) = Client::connect(&args.client.socket).await?
    {
        let note = format!("via the daemon at {} (snapshot every 500 ms)", args.client.socket.display());
        let view = View::new(Config { no_color, source_note: Some(note) }, &filter);
        let news = daemon::subscribe_news(&args.client.socket).await;
        return via_daemon(client, news, view).await;
    }
    let view = View::new(Config { no_color, source_note: None }, &filter);
    in_process(&args, view).await
}

/// The filter the view starts with, from --filter, --pid and --container.
pub fn initial_filter(args: &WatchArgs) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &args.filter {
        parts.push(f.trim().to_string());
    }
    if let Some(p) = args.pid {
        parts.push(format!("pid:{p}"));
    }
    if let Some(c) = &args.container {
        parts.push(format!("container:{c}"));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// The main path: an engine in this process.
async fn in_process(args: &WatchArgs, mut view: View) -> Result<ExitCode> {
    let mut updates = Vec::with_capacity(4096);
    let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
    let mut names = NameCache::new(args.state.enricher());
    // Container starts and stops, shown in the status line as they are told.
    let mut stories = Stories::new(args.state.enricher());
    let mut told = Vec::new();
    // The start-up walk is the state shown, not news.
    updates.clear();
    tracker.engine.tick(clock::boot_now_ns(), &mut updates);
    updates.clear();
    rebuild_local(&mut view, &tracker, &mut names);
    // From here on Ctrl-C and SIGTERM end the loop (before, they end the process:
    // the terminal is still as it was).
    let signals = Signals::new()?;
    let mut ui = Ui::start(signals)?;
    ui.draw(&mut view)?;
    let mut pace = Pace::new();
    loop {
        // Not cancelled: a step may be in the middle of a repair walk. It returns
        // at least every 50 ms (the tracker's tick), so keys wait at most that.
        let step = tracker.step(&mut updates).await?;
        if !updates.is_empty() {
            for u in &updates {
                view.observe(u);
                stories.update(&tracker.engine, &tracker.cgroups, u);
            }
            updates.clear();
            pace.changed = true;
        }
        let now = clock::boot_now_ns();
        stories.tick(now, &mut told);
        for s in told.drain(..) {
            view.note(s.headline(), now);
            pace.changed = true;
        }
        let act = ui.drain(&mut view);
        if act == Action::Quit {
            break;
        }
        if step == Outcome::Ended {
            drop(ui);
            return Err(anyhow!("the kernel event stream ended"));
        }
        let (rebuild, draw) = pace.decide(act, view.paused());
        if rebuild {
            rebuild_local(&mut view, &tracker, &mut names);
        }
        if draw {
            ui.draw(&mut view)?;
        }
    }
    ui.finish()
}

/// Rebuilds the view from the engine in this process, its containers named from
/// `names` (read at most every few seconds per container, not every frame).
fn rebuild_local(view: &mut View, tracker: &Tracker, names: &mut NameCache) {
    let cx = Containers::build_cached(&tracker.engine, &tracker.cgroups, names);
    view.rebuild(&tracker.engine, &cx, Counters::of(&tracker.engine), clock::boot_now_ns());
}

/// Through a running daemon: its snapshots, every 500 ms.
async fn via_daemon(client: Client, mut news: Option<mpsc::Receiver<String>>, mut view: View) -> Result<ExitCode> {
    let mut src = daemon::DaemonSource::new(client);
    src.refresh(&mut view).await?;
    view.rebuild(&src.engine, &src.containers, src.counters, clock::boot_now_ns());
    let signals = Signals::new()?;
    let mut ui = Ui::start(signals)?;
    ui.draw(&mut view)?;
    let mut pace = Pace::new();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        let act = tokio::select! {
            _ = tick.tick() => {
                if last.elapsed() >= daemon::SNAPSHOT_EVERY {
                    last = Instant::now();
                    src.refresh(&mut view).await?;
                    pace.changed = true;
                }
                ui.drain(&mut view)
            }
            input = ui.rx.recv() => {
                let a = match input {
                    Some(i) => ui.handle(i, &mut view),
                    None => Action::Quit,
                };
                a.max(ui.drain(&mut view))
            }
            line = daemon::next_news(&mut news) => {
                match line {
                    Some(text) => {
                        view.note(text, clock::boot_now_ns());
                        pace.changed = true;
                    }
                    // The daemon closed it: no news from here on (the snapshots say the rest).
                    None => news = None,
                }
                ui.drain(&mut view)
            }
        };
        if act == Action::Quit {
            break;
        }
        let (rebuild, draw) = pace.decide(act, view.paused());
        if rebuild {
            view.rebuild(&src.engine, &src.containers, src.counters, clock::boot_now_ns());
        }
        if draw {
            ui.draw(&mut view)?;
        }
    }
    ui.finish()
}

impl Action {
    /// The one of two to act on: quitting over rebuilding over drawing.
    fn max(self, other: Action) -> Action {
        let rank = |a: Action| match a {
            Action::None => 0,
            Action::Redraw => 1,
            Action::Rebuild => 2,
            Action::Quit => 3,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

/// When to rebuild and draw: coalesced model changes, at most one frame per
/// [`FRAME`], a refresh every [`REFRESH`], and at once for inputs.
struct Pace {
    changed: bool,
    last_frame: Instant,
    last_rebuild: Instant,
}

impl Pace {
    fn new() -> Pace {
        let now = Instant::now();
        Pace { changed: false, last_frame: now, last_rebuild: now }
    }

    fn decide(&mut self, act: Action, paused: bool) -> (bool, bool) {
        let now = Instant::now();
        let mut rebuild = act == Action::Rebuild;
        let mut draw = rebuild || act == Action::Redraw;
        if !paused && now >= self.last_frame + FRAME && (self.changed || now >= self.last_rebuild + REFRESH) {
            rebuild = true;
            draw = true;
        }
        if rebuild {
            self.changed = false;
            self.last_rebuild = now;
        }
        if draw {
            self.last_frame = now;
        }
        (rebuild, draw)
    }
}

/// What reaches the loop besides the model's updates.
enum Input {
    Key(event::KeyEvent),
    /// SIGTERM, SIGINT or SIGHUP.
    Quit,
    /// SIGWINCH.
    Resized,
    /// Reading the terminal failed.
    Failed(String),
}

/// The signals that end the screen, registered before it is set up (from then on
/// they no longer kill the process: the loop ends and the terminal is restored).
struct Signals {
    /// SIGTERM, SIGINT and SIGHUP.
    quit: Shutdown,
    /// SIGWINCH: the input thread waits on the terminal only, so resizes come here.
    winch: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals { quit: Shutdown::with_hangup()?, winch: signal(SignalKind::window_change())? })
    }
}

/// The full-screen terminal, its input thread and signal task. Dropping it
/// restores the terminal.
struct Ui {
    terminal: Terminal<CrosstermBackend<BufWriter<Stdout>>>,
    rx: mpsc::UnboundedReceiver<Input>,
    stop: Arc<AtomicBool>,
    input: Option<std::thread::JoinHandle<()>>,
    failed: Option<String>,
}

impl Ui {
    fn start(mut signals: Signals) -> Result<Ui> {
        install_panic_hook();
        let terminal = match enter() {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let input = spawn_input(tx.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let input = tokio::select! {
                    () = signals.quit.wait() => Input::Quit,
                    _ = signals.winch.recv() => Input::Resized,
                };
                let quit = matches!(input, Input::Quit);
                if tx.send(input).is_err() || quit {
                    return;
                }
            }
        });
        Ok(Ui { terminal, rx, stop, input: Some(input), failed: None })
    }

    fn handle(&mut self, input: Input, view: &mut View) -> Action {
        match input {
            Input::Key(k) => view.key(k),
            Input::Quit => Action::Quit,
            Input::Resized => Action::Redraw,
            Input::Failed(e) => {
                self.failed = Some(e);
                Action::Quit
            }
        }
    }

    /// Handles the inputs waiting.
    fn drain(&mut self, view: &mut View) -> Action {
        let mut act = Action::None;
        while act != Action::Quit
            && let Ok(i) = self.rx.try_recv()
        {
            act = act.max(self.handle(i, view));
        }
        act
    }

    fn draw(&mut self, view: &mut View) -> Result<()> {
        self.terminal.draw(|f| view.draw(f)).context("drawing on the terminal")?;
        Ok(())
    }

    /// Restores the terminal; an error if reading it failed.
    fn finish(mut self) -> Result<ExitCode> {
        let failed = self.failed.take();
        drop(self);
        match failed {
            Some(e) => Err(anyhow!("reading the terminal: {e}")),
            None => Ok(ExitCode::SUCCESS),
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Out with what the writer holds, before the screen is left.
        let _ = ratatui::backend::Backend::flush(self.terminal.backend_mut());
        restore();
        // The input thread sees `stop` within 50 ms (it never blocks in a read):
        // waited for, so that it reads nothing meant for the shell after us.
        if let Some(h) = self.input.take() {
            let _ = h.join();
        }
    }
}

/// Reads the terminal on a thread of its own: poll(2) for input (every 50 ms it
/// looks at `stop`), read(2), then [`keys::KeyParser`]. A terminal that hung up
/// (its tmux or ssh gone) ends the screen.
fn spawn_input(tx: mpsc::UnboundedSender<Input>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let fail = |msg: String| {
            let _ = tx.send(Input::Failed(msg));
        };
        // The terminal: stdin when it is one, else /dev/tty (as raw mode was set).
        let tty = if std::io::stdin().is_terminal() {
            None
        } else {
            match std::fs::File::open("/dev/tty") {
                Ok(f) => Some(f),
                Err(e) => return fail(format!("opening /dev/tty: {e}")),
            }
        };
        let fd = tty.as_ref().map_or(0, |f| f.as_raw_fd());
        let mut parser = keys::KeyParser::default();
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, for the duration of the call.
            let n = unsafe { libc::poll(&mut p, 1, 50) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return fail(format!("waiting for input: {e}"));
            }
            if n == 0 {
                continue;
            }
            if p.revents & libc::POLLIN == 0 {
                return fail("the terminal hung up".to_string());
            }
            // SAFETY: reads at most buf.len() bytes into buf.
            let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) {
                    continue;
                }
                return fail(format!("reading the terminal: {e}"));
            }
            if got == 0 {
                return fail("the terminal hung up".to_string());
            }
            for k in parser.feed(&buf[..got as usize]) {
                if tx.send(Input::Key(k)).is_err() {
                    return;
                }
            }
        }
    })
}

/// Whether the screen is set up (raw mode, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr while it is redirected (-1: it is not).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Raw mode, the alternate screen, no cursor; then stderr away from the screen.
fn enter() -> Result<Terminal<CrosstermBackend<BufWriter<Stdout>>>> {
    ACTIVE.store(true, Ordering::SeqCst);
    terminal::enable_raw_mode().context("setting the terminal to raw mode")?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout());
    // (Not Terminal::clear: it asks the terminal where the cursor is.)
    execute!(out, EnterAlternateScreen, cursor::Hide, terminal::Clear(terminal::ClearType::All))
        .context("entering the alternate screen")?;
    let t = Terminal::new(CrosstermBackend::new(out)).context("setting up the terminal")?;
    redirect_stderr();
    Ok(t)
}

/// Undoes [`enter`]; safe to call more than once, and from the panic hook.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = std::io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
    restore_stderr();
}

/// Points fd 2 at `$TRACER_WATCH_LOG` (appended to) or /dev/null, so that log
/// lines and stray messages do not scribble over the screen.
fn redirect_stderr() {
    if SAVED_STDERR.load(Ordering::SeqCst) >= 0 {
        return;
    }
    let file = std::env::var_os(LOG_ENV)
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok())
        .or_else(|| std::fs::OpenOptions::new().write(true).open("/dev/null").ok());
    let Some(file) = file else { return };
    // SAFETY: dup and dup2 on fd 2 and an fd we own; the saved copy is closed by
    // restore_stderr only.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return;
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            libc::close(saved);
            return;
        }
        SAVED_STDERR.store(saved, Ordering::SeqCst);
    }
}

fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the duplicate of the real stderr made by redirect_stderr.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
    }
}

/// A panic restores the terminal (and stderr) before its message is printed.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}
