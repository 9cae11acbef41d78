//! The closed-loop load generator: keep-alive HTTP/1.1 connections, each sending one request
//! and reading the whole answer before sending the next.
//!
//! The client is a minimal HTTP/1.1 exchange over a `TcpStream` rather than a full client
//! library: on a small machine the client shares the CPU with the server under test, and
//! every microsecond it spends per request is added to both sides of the ratio, pulling it
//! towards 1. It understands exactly what the two servers under test send: a status line,
//! headers, and a body framed by `Content-Length`; anything else is counted as an error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// Largest header block accepted from a server.
const MAX_HEAD: usize = 16 * 1024;

/// One GET request, serialised once and sent as is on every exchange.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    request: Bytes,
}

impl Target {
    /// `GET path` on `addr`, with `Authorization: Bearer token` when a token is given.
    pub(crate) fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Self {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        Self {
            addr,
            request: Bytes::from(request),
        }
    }
}

/// An answer: the status, the `Content-Type` and the body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// A keep-alive connection to one server.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        stream
            .set_nodelay(true)
            .context("failed to set TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        })
    }

    /// Sends `target`'s request and reads the whole answer; returns its status, and the body
    /// and content type when `keep` is set.
    pub(crate) async fn exchange(&mut self, target: &Target, keep: bool) -> anyhow::Result<Answer> {
        self.stream
            .write_all(&target.request)
            .await
            .context("failed to send the request")?;
        let (head_len, head) = loop {
            if let Some(end) = find_head_end(&self.buf) {
                break (end, parse_head(&self.buf[..end])?);
            }
            if self.buf.len() > MAX_HEAD {
                bail!("the answer's header block is too large");
            }
            self.fill().await?;
        };
        let total = head_len + head.content_length;
        while self.buf.len() < total {
            self.fill().await?;
        }
        let mut message = self.buf.split_to(total);
        let body = if keep {
            message.advance(head_len);
            message.freeze()
        } else {
            Bytes::new()
        };
        Ok(Answer {
            status: head.status,
            content_type: head.content_type.filter(|_| keep),
            body,
        })
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(4096);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("failed to read the answer")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Sends one request on a fresh connection and returns the whole answer.
pub(crate) async fn fetch(target: &Target) -> anyhow::Result<Answer> {
    let mut conn = Conn::connect(target.addr).await?;
    conn.exchange(target, true).await
}

/// What one round of load produced.
#[derive(Debug)]
pub(crate) struct RoundResult {
    /// Answers with status 200 completed inside the measured window.
    pub(crate) ok: u64,
    /// Answers with another status, and failed exchanges.
    pub(crate) errors: u64,
    /// Length of the measured window.
    pub(crate) elapsed: Duration,
    /// Latencies of the 200 answers, in microseconds, sorted.
    pub(crate) latencies_us: Vec<u32>,
}

impl RoundResult {
    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub(crate) fn latency_us(&self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let last = self.latencies_us.len() - 1;
        let i = ((last as f64) * q).round() as usize;
        self.latencies_us[i.min(last)]
    }
}

/// Runs `connections` closed-loop workers against `target` for `duration` and counts the
/// 200 answers. All connections are opened before the clock starts.
pub(crate) async fn round(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<RoundResult> {
    let start_line = Arc::new(Barrier::new(connections + 1));
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let conn = Conn::connect(target.addr).await?;
        let target = target.clone();
        let start_line = Arc::clone(&start_line);
        workers.spawn(async move {
            start_line.wait().await;
            let deadline = Instant::now() + duration;
            worker(conn, target, deadline).await
        });
    }
    start_line.wait().await;
    let started = Instant::now();
    let mut result = RoundResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    while let Some(joined) = workers.join_next().await {
        let tally = joined.map_err(|e| anyhow!("a load worker panicked: {e}"))?;
        result.ok += tally.ok;
        result.errors += tally.errors;
        result.latencies_us.extend(tally.latencies_us);
    }
    // Workers stop at the first answer after the deadline, so the window is the time until
    // the last one finished.
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

struct Tally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

async fn worker(mut conn: Conn, target: Target, deadline: Instant) -> Tally {
    let mut tally = Tally {
        ok: 0,
        errors: 0,
        latencies_us: Vec::with_capacity(64 * 1024),
    };
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return tally;
        }
        match conn.exchange(&target, false).await {
            Ok(answer) if answer.status == 200 => {
                tally.ok += 1;
                let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(us);
            }
            Ok(_) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                // The connection is in an unknown state: start a new one, or give up on
                // this worker when the server no longer accepts connections.
                match Conn::connect(target.addr).await {
                    Ok(fresh) => conn = fresh,
                    Err(_) => return tally,
                }
            }
        }
    }
}

/// The end of the header block (the index after `\r\n\r\n`), once it has arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

struct Head {
    status: u16,
    content_length: usize,
    content_type: Option<String>,
}

fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let text = std::str::from_utf8(head).context("the answer's header block is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line {status_line:?}"))?;
    let mut content_length = None;
    let mut content_type = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().context("malformed Content-Length")?);
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("the answer uses Transfer-Encoding {value}, which this client does not read");
        }
    }
    Ok(Head {
        status,
        content_length: content_length
            .ok_or_else(|| anyhow!("the answer has no Content-Length"))?,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_with_length_and_type() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let end = find_head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"{}");
        let head = parse_head(&raw[..end]).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, 2);
        assert_eq!(head.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn refuses_chunked_answers() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(raw).is_err());
    }
}
