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

    /// The next line from the daemon: an event line as its bytes (the event's own
    /// JSON object and its kind, not parsed: a subscriber passes thousands a
    /// second on as they are), any other line parsed; None at end of stream.
    pub async fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).await.context("reading from the tracer daemon")?;
        if n == 0 {
            return Ok(None);
        }
        if let Some((kind, json)) = event_line(&self.line) {
            return Ok(Some(Line::Event { kind, json }));
        }
        let v = serde_json::from_slice(&self.line).context("the tracer daemon sent a line that is not JSON")?;
        Ok(Some(Line::Other(v)))
    }

    /// Whether another line is already buffered (reading it will not wait).
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
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

/// A line of a subscription.
pub enum Line<'a> {
    /// `{"event":{...}}`: the kind and the event's JSON object, as sent.
    Event {
        kind: &'a str,
        json: &'a [u8],
    },
    Other(Value),
}

/// The kind and object of an event line, `{"event":{"kind":"K",...}}` as the daemon
/// writes it (kind first); `None` for any other line, which is then parsed.
fn event_line(line: &[u8]) -> Option<(&str, &[u8])> {
    const HEAD: &[u8] = b"{\"event\":";
    const KIND: &[u8] = b"{\"kind\":\"";
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let json = line.strip_prefix(HEAD)?.strip_suffix(b"}")?;
    if !json.ends_with(b"}") {
        return None;
    }
    let rest = json.strip_prefix(KIND)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let kind = std::str::from_utf8(&rest[..end]).ok()?;
    kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_').then_some((kind, json))
}

/// Turns an `{"ok":false,"error":..}` answer into an error.
pub fn check(v: Value) -> Result<Value> {
    if v.get("ok").and_then(Value::as_bool) == Some(false) {
        let msg = v.get("error").and_then(Value::as_str).unwrap_or("unknown error");
        bail!("the tracer daemon says: {msg}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::event_line;

    #[test]
    fn event_lines_pass_unparsed() {
        let line = b"{\"event\":{\"kind\":\"fork\",\"pid\":7}}\n";
        assert_eq!(event_line(line), Some(("fork", &b"{\"kind\":\"fork\",\"pid\":7}"[..])));
        assert_eq!(event_line(b"{\"missed\":3,\"snapshot\":{}}\n"), None);
        assert_eq!(event_line(b"{\"event\":{\"pid\":7}}\n"), None);
        assert_eq!(event_line(b"{\"event\":{\"kind\":\"x\\u0022\"}}"), None);
        assert_eq!(event_line(b"{\"event\":{\"kind\":\"exit\"}"), None);
    }
}
