//! Stop signals, the same for every command: SIGINT (Ctrl-C) and SIGTERM end a
//! command cleanly (the daemon removes its socket, `events` prints its summary,
//! `watch` restores the terminal) instead of killing it.

use anyhow::Result;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals a command listens for. Made before the work starts: from
/// then on a signal no longer kills the process, it ends [`Shutdown::wait`].
pub struct Shutdown {
    int: Signal,
    term: Signal,
    /// SIGHUP as well, for commands tied to a terminal (`watch`).
    hup: Option<Signal>,
}

impl Shutdown {
    /// SIGINT and SIGTERM.
    pub fn new() -> Result<Shutdown> {
        Ok(Shutdown { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())?, hup: None })
    }

    /// SIGINT, SIGTERM and SIGHUP (the terminal went away).
    pub fn with_hangup() -> Result<Shutdown> {
        Ok(Shutdown { hup: Some(signal(SignalKind::hangup())?), ..Shutdown::new()? })
    }

    /// Waits for one of the signals. Cancel-safe: a signal that arrives while
    /// nobody waits is kept for the next call.
    pub async fn wait(&mut self) {
        let hup = async {
            match &mut self.hup {
                Some(h) => {
                    h.recv().await;
                }
                // Without SIGHUP this arm never ends.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            () = hup => {}
        }
    }
}
