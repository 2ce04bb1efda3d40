//! A subscriber's outbox: the lines the daemon's loop wrote for one client that
//! its writer has not sent yet.
//!
//! The loop appends each line's bytes to the outbox (one copy, no allocation per
//! line) and wakes the writer once per batch of events; the writer takes
//! everything waiting by swapping buffers and sends it with one write. A queue of
//! line handles cost more per event than the rest of the daemon's work on it.
//! The outbox holds at most `capacity` lines: past that the loop counts missed
//! lines instead (see `server.rs`).

use std::sync::{Mutex, MutexGuard};

use tokio::{io::AsyncWriteExt, sync::Notify};

use super::latency;

/// Bytes of spare buffer a writer keeps between writes; a larger one (after a
/// burst) is given back.
const KEEP: usize = 1 << 20;

pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    lines: usize,
    /// Kernel times of the events the waiting lines tell, for the socket latency.
    ts: Vec<u64>,
    /// The writer is gone (the client left or a write failed).
    closed: bool,
    /// The loop gave up on this client: the writer sends a notice and ends.
    cut: bool,
    /// The loop dropped this subscriber (the daemon is stopping): the writer
    /// sends what waits and ends.
    done: bool,
}

/// What [`Outbox::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Full,
    Closed,
}

/// How a writer ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The loop cut this client loose.
    Cut,
    /// The loop is done with this client.
    Done,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox { state: Mutex::new(State::default()), ready: Notify::new(), capacity }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds whole lines.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line (with its newline) unless the outbox is full or closed.
    /// `ts_ns` is the kernel time of the event it tells, 0 for none. The writer
    /// is not woken: call [`Outbox::wake`] once the batch is written.
    pub fn push(&self, line: &[u8], ts_ns: u64) -> Pushed {
        let mut st = self.state();
        if st.closed || st.cut || st.done {
            return Pushed::Closed;
        }
        if st.lines >= self.capacity {
            return Pushed::Full;
        }
        st.buf.extend_from_slice(line);
        st.lines += 1;
        if ts_ns != 0 {
            st.ts.push(ts_ns);
        }
        Pushed::Queued
    }

    /// Appends a line even when the outbox is full (a notice the client must get).
    pub fn push_anyway(&self, line: &[u8]) -> bool {
        let mut st = self.state();
        if st.closed || st.cut || st.done {
            return false;
        }
        st.buf.extend_from_slice(line);
        st.lines += 1;
        true
    }

    /// Wakes the writer if lines wait.
    pub fn wake(&self) {
        if self.state().lines > 0 {
            self.ready.notify_one();
        }
    }

    /// Lines waiting to be sent.
    pub fn pending(&self) -> usize {
        self.state().lines
    }

    pub fn is_closed(&self) -> bool {
        let st = self.state();
        st.closed || st.cut
    }

    /// Gives up on the client: its writer sends what it has, a notice, and ends.
    pub fn cut(&self) {
        self.state().cut = true;
        self.ready.notify_one();
    }

    /// No more lines will come: the writer sends what waits and ends.
    pub fn finish(&self) {
        self.state().done = true;
        self.ready.notify_one();
    }

    /// Sends lines as they come, until the loop cuts the client loose or a write
    /// fails. The outbox is closed when this returns, however it returns.
    pub async fn send<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        latency: &latency::Shared,
    ) -> std::io::Result<Ended> {
        struct CloseOnDrop<'a>(&'a Outbox);
        impl Drop for CloseOnDrop<'_> {
            fn drop(&mut self) {
                self.0.state().closed = true;
            }
        }
        let _close = CloseOnDrop(self);
        let mut out = Vec::new();
        let mut ts = Vec::new();
        loop {
            let (cut, done) = {
                let mut st = self.state();
                std::mem::swap(&mut st.buf, &mut out);
                std::mem::swap(&mut st.ts, &mut ts);
                st.lines = 0;
                (st.cut, st.done)
            };
            if out.is_empty() {
                if cut {
                    return Ok(Ended::Cut);
                }
                if done {
                    return Ok(Ended::Done);
                }
                self.ready.notified().await;
                continue;
            }
            w.write_all(&out).await?;
            let now = crate::clock::boot_now_ns();
            if let Ok(mut l) = latency.lock() {
                ts.iter().for_each(|&t| l.record(t, now));
            }
            out.clear();
            ts.clear();
            if out.capacity() > KEEP {
                out.shrink_to(KEEP);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    #[test]
    fn full_at_capacity_and_notices_still_go() {
        let o = Outbox::new(2);
        assert_eq!(o.push(b"a\n", 1), Pushed::Queued);
        assert_eq!(o.push(b"b\n", 0), Pushed::Queued);
        assert_eq!(o.push(b"c\n", 0), Pushed::Full);
        assert!(o.push_anyway(b"notice\n"));
        assert_eq!(o.pending(), 3);
        o.cut();
        assert_eq!(o.push(b"d\n", 0), Pushed::Closed);
        assert!(o.is_closed());
    }

    #[tokio::test]
    async fn sends_in_order_then_ends_when_cut() {
        let o = Arc::new(Outbox::new(100));
        let lat: latency::Shared = Default::default();
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let writer = {
            let (o, lat) = (o.clone(), lat.clone());
            tokio::spawn(async move { o.send(&mut a, &lat).await })
        };
        for i in 0..50u64 {
            assert_eq!(o.push(format!("{i}\n").as_bytes(), i + 1), Pushed::Queued);
            if i % 7 == 0 {
                o.wake();
                tokio::task::yield_now().await;
            }
        }
        o.wake();
        o.cut();
        assert_eq!(writer.await.unwrap().unwrap(), Ended::Cut);
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        let want: String = (0..50).map(|i| format!("{i}\n")).collect();
        assert_eq!(got, want);
        assert!(o.is_closed());
    }

    #[tokio::test]
    async fn a_failed_write_closes_it() {
        let o = Arc::new(Outbox::new(100));
        let lat: latency::Shared = Default::default();
        let (mut a, b) = tokio::io::duplex(16);
        drop(b);
        o.push(b"line\n", 0);
        o.wake();
        assert!(o.send(&mut a, &lat).await.is_err());
        assert!(o.is_closed());
        assert_eq!(o.push(b"x\n", 0), Pushed::Closed);
    }
}
