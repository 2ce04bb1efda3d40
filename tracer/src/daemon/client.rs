//! Talking to a running daemon.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use super::protocol::Request;

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Client {
    /// Connects to the daemon at `path`. `Ok(None)` when no daemon serves there
    /// (no socket, or a stale one); an error when one does but refuses us.
    pub async fn connect(path: &Path) -> Result<Option<Client>> {
        let stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "the tracer daemon at {} refused this user (permission denied): ask to be added to its group, or run as root",
                path.display()
            ),
            Err(_) => return Ok(None),
        };
        let (r, w) = stream.into_split();
        Ok(Some(Client { reader: BufReader::with_capacity(1 << 16, r), writer: w, line: Vec::new() }))
    }

    /// Sends a request and reads the one-line answer; an `"ok": false` answer is an error.
    pub async fn request(&mut self, req: &Request) -> Result<Value> {
        let mut l = serde_json::to_vec(req)?;
        l.push(b'\n');
        self.writer.write_all(&l).await.context("writing to the tracer daemon")?;
        let v = self.next().await?.ok_or_else(|| anyhow!("the tracer daemon closed the connection"))?;
        check(v)
    }

    /// The next line from the daemon, parsed; None at end of stream.
    pub async fn next(&mut self) -> Result<Option<Value>> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).await.context("reading from the tracer daemon")?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&self.line).context("the tracer daemon sent a line that is not JSON")?))
    }
}

/// Turns an `{"ok":false,"error":..}` answer into an error.
pub fn check(v: Value) -> Result<Value> {
    if v.get("ok").and_then(Value::as_bool) == Some(false) {
        let msg = v.get("error").and_then(Value::as_str).unwrap_or("unknown error");
        bail!("the tracer daemon says: {msg}");
    }
    Ok(v)
}
