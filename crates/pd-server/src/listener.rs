//! How the node's listeners take connections, for HTTP and HTTPS alike: caps on the
//! connections open at once (in total, and per client address), an idle timeout on every
//! connection, and the HTTP library's own timeouts and head limits.
//!
//! - [`ConnectionLimits`] is the acceptor: it counts each accepted connection, per client
//!   address (IPv6: per /64 network; connections from trusted proxies only in the total),
//!   and refuses one beyond a cap at once. On plain HTTP the refusal is a complete answer,
//!   429 `rate-limited` (too many from this address) or 503 `unavailable` (too many in
//!   all), both with `Retry-After`, written once the request came (waiting a quarter of a
//!   second at most, and for a few refusals at a time; others are closed unanswered)
//!   before the connection is closed; on HTTPS, where answering would first cost a
//!   handshake, the connection is closed. The count ends when the connection does.
//! - [`Guarded`] wraps each connection: when nothing has been read or written for
//!   `limits.idle_timeout` while the HTTP library waits on it, the connection fails with a
//!   timeout and is closed (HTTP/2 connections, and clients that stop reading answers).
//! - [`FirstByte`] wraps the acceptor (after the TLS handshake, for HTTPS): a connection
//!   must send its first byte within `limits.header_read_timeout`, or it is closed.
//! - [`configure`] sets the HTTP library: `limits.header_read_timeout` for HTTP/1.1 (from the
//!   moment it waits for a request head, until the head is complete: dripping connections,
//!   and kept-alive connections left idle after an answer, are closed), and head limits
//!   above the node's own (`http::limits`), so that the node answers first. The TLS
//!   handshake has the same deadline.
//!
//! The total cap is lowered at start to fit the open-file limit of the process.
//!
//! An HTTP/1.1 connection upgraded to the relay (`crate::relay`) stays counted, but leaves
//! the idle timeout through [`IdleSwitch`]: the relay applies its own idle timeouts.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use futures::future::{BoxFuture, Either};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use ipnet::IpNet;
use pd_proto::ProblemType;
use pd_proto::problem::PROBLEM_CONTENT_TYPE;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use crate::config::Limits;
use crate::http::limits::rate_key;

/// Files kept free for the store, federation, logs and the listeners themselves, at least.
const MIN_RESERVED_FILES: u64 = 64;

/// The HTTP library's buffer for a request head: above the node's own limits (URI and
/// header fields), so that the node answers those itself.
const HEAD_BUFFER_BYTES: usize = 64 * 1024;

/// `Retry-After` of a refused connection, in seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// Sets up the HTTP library of a listener: header read timeout (HTTP/1.1), the head buffer
/// and the number of header fields it parses (above the node's own limits), and HTTP/2's
/// header list size.
pub(crate) fn configure(builder: &mut Builder<TokioExecutor>, limits: &Limits) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HEAD_BUFFER_BYTES.max(limits.max_uri_bytes + limits.max_header_bytes + 4096))
        .max_headers(limits.max_headers + 64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(HEAD_BUFFER_BYTES.max(limits.max_header_bytes * 2)).unwrap_or(u32::MAX),
        );
}

/// The total cap on connections that fits the process's open-file limit: `configured`, or
/// the soft limit minus a quarter of it (at least [`MIN_RESERVED_FILES`]) when that is lower.
pub(crate) fn fitting_total(configured: usize) -> usize {
    let Ok(limit) = open_file_limit() else {
        return configured;
    };
    let reserve = (limit / 4).max(MIN_RESERVED_FILES);
    let fits = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    let total = configured.min(fits.max(1));
    if total < configured {
        tracing::info!(
            limits.max_connections = total,
            open_files = limit,
            "lowered the connection cap to fit the open-file limit"
        );
    }
    total
}

fn open_file_limit() -> io::Result<u64> {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit
            .current
            .ok_or_else(|| io::Error::other("no open-file limit"))
    }
    #[cfg(not(unix))]
    {
        Err(io::Error::other("unknown open-file limit"))
    }
}

/// The acceptor counting connections and refusing those beyond the caps.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    shared: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    total_cap: usize,
    per_ip_cap: usize,
    idle: Duration,
    trusted: Vec<IpNet>,
    /// Whether a refusal is answered in plain HTTP before closing.
    answer_refusals: bool,
    /// Slots for refusals being answered.
    answering: Arc<Semaphore>,
    open: Mutex<Open>,
    switch: IdleSwitch,
}

/// The idle timeouts of the open connections, by client socket address (what handlers see
/// as `ConnectInfo`): a handler that upgrades its connection takes it out of the HTTP idle
/// timeout with [`IdleSwitch::exempt`].
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleSwitch(Arc<Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>>);

impl IdleSwitch {
    /// Takes the connection from `peer` out of the idle timeout; false when no connection
    /// from `peer` is known (a listener without this switch).
    pub(crate) fn exempt(&self, peer: SocketAddr) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&peer)
            .map(|flag| flag.store(true, Ordering::Relaxed))
            .is_some()
    }

    fn register(&self, peer: SocketAddr) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, Arc::clone(&flag));
        flag
    }

    fn forget(&self, peer: SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer);
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Total,
}

impl ConnectionLimits {
    /// The caps and idle timeout of `limits` (the total lowered by [`fitting_total`]),
    /// with `trusted` proxies exempt from the per-address cap; `plain_http` answers
    /// refusals before closing.
    pub(crate) fn new(limits: &Limits, trusted: &[IpNet], plain_http: bool) -> Self {
        Self {
            shared: Arc::new(Counts {
                total_cap: fitting_total(limits.max_connections),
                per_ip_cap: limits.max_connections_per_ip,
                idle: limits.idle_timeout,
                trusted: trusted.to_vec(),
                answer_refusals: plain_http,
                answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
                open: Mutex::new(Open::default()),
                switch: IdleSwitch::default(),
            }),
        }
    }

    /// Registers every accepted connection with `switch`, so that the relay can take
    /// upgraded connections out of the idle timeout.
    pub(crate) fn with_idle_switch(mut self, switch: IdleSwitch) -> Self {
        if let Some(counts) = Arc::get_mut(&mut self.shared) {
            counts.switch = switch;
        }
        self
    }

    /// Caps only the total and applies the idle timeout (the loopback admin listener).
    pub(crate) fn total_only(limits: &Limits) -> Self {
        let mut this = Self::new(limits, &[], true);
        if let Some(counts) = Arc::get_mut(&mut this.shared) {
            counts.per_ip_cap = counts.total_cap;
        }
        this
    }

    /// Counts a connection from `peer`, or refuses it.
    #[cfg(test)]
    fn admit(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        self.admit_from(SocketAddr::new(peer, 0))
    }

    /// Counts a connection from `from`, or refuses it.
    fn admit_from(&self, from: SocketAddr) -> Result<Permit, Refusal> {
        let peer = from.ip();
        let counts = &self.shared;
        let key = (!counts.trusted.iter().any(|net| net.contains(&peer))).then(|| rate_key(peer));
        let mut open = counts.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= counts.total_cap {
            return Err(Refusal::Total);
        }
        if let Some(key) = key {
            let from_peer = open.per_ip.entry(key).or_insert(0);
            if *from_peer >= counts.per_ip_cap {
                return Err(Refusal::PerAddress);
            }
            *from_peer += 1;
        }
        open.total += 1;
        drop(open);
        let exempt = counts.switch.register(from);
        Ok(Permit {
            counts: Arc::clone(&self.shared),
            key,
            from,
            exempt,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ConnectionLimits {
    type Stream = Guarded<TcpStream>;
    type Service = S;
    type Future = Either<
        Ready<io::Result<(Self::Stream, S)>>,
        BoxFuture<'static, io::Result<(Self::Stream, S)>>,
    >;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(addr) => addr,
            Err(e) => return Either::Left(ready(Err(e))),
        };
        match self.admit_from(peer) {
            Ok(permit) => Either::Left(ready(Ok((
                Guarded::new(stream, self.shared.idle, permit),
                service,
            )))),
            Err(refusal) => {
                tracing::debug!(peer.addr = %peer, ?refusal, "connection refused: too many open");
                // Answering waits a moment for the request; only a few refusals wait at
                // once, the others are closed at once, so refusals cannot pile up.
                let answering = self
                    .shared
                    .answer_refusals
                    .then(|| Arc::clone(&self.shared.answering).try_acquire_owned().ok())
                    .flatten();
                Either::Right(Box::pin(async move {
                    if let Some(_slot) = answering {
                        answer_refusal(stream, refusal, peer).await;
                    }
                    Err(io::Error::other(
                        "connection refused by the connection caps",
                    ))
                }))
            }
        }
    }
}

/// How long a refused connection may take to send its request before it is answered and
/// closed.
const REFUSAL_WAIT: Duration = Duration::from_millis(250);

/// Refusals answered at once, at most; beyond, a refused connection is closed unanswered.
const MAX_ANSWERING: usize = 32;

/// Answers a refused connection: waits briefly for its request and reads what came (a
/// client that has not sent its request would take an early answer for a broken one, and
/// closing with unread data would reset the connection), writes the problem answer and
/// closes.
async fn answer_refusal(mut stream: TcpStream, refusal: Refusal, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt as _;
    let mut sink = [0u8; 4096];
    let request = async {
        loop {
            stream.readable().await?;
            match stream.try_read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // Whatever else of the request is already here.
        for _ in 0..4 {
            match stream.try_read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        Ok::<(), io::Error>(())
    };
    if !matches!(
        tokio::time::timeout(REFUSAL_WAIT, request).await,
        Ok(Ok(()))
    ) {
        // No request came, or the client went away: nobody waits for an answer.
        return;
    }
    let (kind, detail) = match refusal {
        Refusal::PerAddress => (
            ProblemType::RateLimited,
            format!("too many connections from {}; retry later", peer.ip()),
        ),
        Refusal::Total => (
            ProblemType::Unavailable,
            "the node has too many connections open; retry shortly".to_owned(),
        ),
    };
    let body = serde_json::to_string(&kind.with_detail(detail)).unwrap_or_default();
    let status = kind.status();
    let reason = if status == 429 {
        "Too Many Requests"
    } else {
        "Service Unavailable"
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\nretry-after: \
         {RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let sent = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WAIT, sent).await;
}

/// Wraps another acceptor: the connection it produces (after the TLS handshake, for HTTPS)
/// must send its first byte within the header read timeout, or it fails with a timeout.
/// The HTTP library only starts its own header timer once it knows the protocol, which it
/// learns from the first bytes, so a connection that sends nothing at all would otherwise
/// be held until the idle timeout.
#[derive(Debug, Clone)]
pub(crate) struct FirstByte<A> {
    inner: A,
    within: Duration,
}

impl<A> FirstByte<A> {
    /// The first byte of each connection `inner` accepts is due `within` this long.
    pub(crate) fn new(inner: A, within: Duration) -> Self {
        Self { inner, within }
    }
}

impl<A, I, S> Accept<I, S> for FirstByte<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = AwaitingFirstByte<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let within = self.within;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((AwaitingFirstByte::new(stream, within), service))
        })
    }
}

/// A connection that fails with a timeout when its first byte does not come in time.
#[derive(Debug)]
pub(crate) struct AwaitingFirstByte<T> {
    inner: T,
    /// Armed until the first byte was read; `None` from then on.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> AwaitingFirstByte<T> {
    fn new(inner: T, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AwaitingFirstByte<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection sent nothing in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AwaitingFirstByte<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A counted connection; dropping it ends the count.
#[derive(Debug)]
pub(crate) struct Permit {
    counts: Arc<Counts>,
    key: Option<IpAddr>,
    from: SocketAddr,
    /// Set by [`IdleSwitch::exempt`]: the connection left the idle timeout.
    exempt: Arc<AtomicBool>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counts.switch.forget(self.from);
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(key) = self.key
            && let Some(n) = open.per_ip.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&key);
            }
        }
    }
}

/// A connection that fails with a timeout when nothing was read or written for the idle
/// timeout while it was waited on.
#[derive(Debug)]
pub(crate) struct Guarded<T> {
    inner: T,
    idle: Duration,
    last_progress: Instant,
    /// Armed for `last_progress + idle`; moved forward lazily when it fires early.
    timer: Pin<Box<Sleep>>,
    _permit: Permit,
}

impl<T> Guarded<T> {
    fn new(inner: T, idle: Duration, permit: Permit) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            _permit: permit,
        }
    }

    /// Called when the inner stream is not ready: an error once the connection has been
    /// idle for the whole timeout, otherwise pending (with the timer armed to wake us).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self._permit.exempt.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_progress + self.idle;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Limits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_count_per_address_and_in_total_and_end_with_the_connection() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let caps = ConnectionLimits::new(&limits(4, 2), &trusted, true);
        let a1 = caps.admit(ip("192.0.2.1")).unwrap();
        let _a2 = caps.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerAddress
        );
        // One IPv6 /64 is one client.
        let _b = caps.admit(ip("2001:db8::1")).unwrap();
        let _b2 = caps.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(caps.admit(ip("2001:db8::3")).unwrap_err(), Refusal::Total);
        assert_eq!(caps.open(), 4);
        drop(a1);
        assert_eq!(caps.open(), 3);
        // A trusted proxy only counts towards the total.
        let _p = caps.admit(ip("10.1.2.3")).unwrap();
        assert_eq!(caps.admit(ip("10.1.2.3")).unwrap_err(), Refusal::Total);
    }

    #[test]
    fn the_total_cap_fits_the_open_file_limit() {
        let limit = open_file_limit().unwrap();
        let total = fitting_total(usize::MAX);
        assert!(u64::try_from(total).unwrap() <= limit.saturating_sub(MIN_RESERVED_FILES).max(1));
        assert_eq!(fitting_total(10), 10.min(total));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_must_send_its_first_byte_in_time() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (_silent_client, server) = tokio::io::duplex(64);
        let mut silent = AwaitingFirstByte::new(server, Duration::from_secs(10));
        let started = Instant::now();
        let err = silent.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = AwaitingFirstByte::new(server, Duration::from_secs(10));
        client.write_all(b"G").await.unwrap();
        assert_eq!(talking.read(&mut [0u8; 8]).await.unwrap(), 1);
        // After the first byte, only the idle timeout (elsewhere) applies.
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"E").await.unwrap();
        assert_eq!(talking.read(&mut [0u8; 8]).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_leaves_the_idle_timeout_but_stays_counted() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let switch = IdleSwitch::default();
        let caps = ConnectionLimits::new(&limits(4, 4), &[], true).with_idle_switch(switch.clone());
        let peer: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        let (mut client, server) = tokio::io::duplex(64);
        let permit = caps.admit_from(peer).unwrap();
        let mut guarded = Guarded::new(server, Duration::from_secs(10), permit);
        assert!(switch.exempt(peer));
        assert!(!switch.exempt("192.0.2.9:5556".parse().unwrap()));
        let mut buf = [0u8; 8];
        let silent = tokio::time::timeout(Duration::from_secs(60), guarded.read(&mut buf)).await;
        assert!(silent.is_err(), "no idle timeout after the upgrade");
        client.write_all(b"x").await.unwrap();
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);
        assert_eq!(caps.open(), 1);
        drop(guarded);
        assert_eq!(caps.open(), 0);
        assert!(!switch.exempt(peer), "forgotten with the connection");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_progress_keeps_it_open() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let caps = ConnectionLimits::new(&limits(4, 4), &[], true);
        let (client, server) = tokio::io::duplex(64);
        let permit = caps.admit(ip("192.0.2.9")).unwrap();
        let mut guarded = Guarded::new(server, Duration::from_secs(10), permit);
        let mut client = client;
        let mut buf = [0u8; 8];
        tokio::time::sleep(Duration::from_secs(6)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);
        // 6 s later the connection is still alive: progress moved the deadline.
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(guarded);
        assert_eq!(caps.open(), 0);
    }
}
