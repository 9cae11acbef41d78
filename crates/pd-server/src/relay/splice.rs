//! Splicing a relayed conversation: copies bytes between the connecting peer's and the
//! listener's upgraded connections, both ways, at most `bytes_per_second` each way, charged
//! to the listener's hourly budget, until both sides closed, one failed, nothing moved for
//! the idle timeout, the budget ran out, or the node stops. The bytes are TLS records the
//! relay cannot read; it never looks at them.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

use super::Budget;
use crate::metrics::Metrics;

/// Bytes read at once.
const CHUNK: usize = 16 * 1024;
/// A direction may run this far ahead of its rate (a burst).
const BURST: Duration = Duration::from_secs(1);

/// Limits and counters of one conversation.
#[derive(Debug)]
pub(crate) struct Splice {
    pub(crate) bytes_per_second: u64,
    pub(crate) idle_timeout: Duration,
    pub(crate) budget: Arc<Budget>,
    pub(crate) bytes: Arc<AtomicU64>,
    pub(crate) metrics: Arc<Metrics>,
}

/// How a spliced conversation ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SpliceEnd {
    /// Both sides closed their sending direction.
    Closed,
    /// A side failed (reset, error).
    Failed(String),
    /// Nothing moved for the idle timeout.
    Idle,
    /// The user's hourly budget ran out.
    Budget,
    /// The node is stopping.
    Stopping,
}

impl Splice {
    /// Copies between `a` and `b` until the conversation ends.
    pub(crate) async fn run<A, B>(&self, a: A, b: B, mut stop: watch::Receiver<bool>) -> SpliceEnd
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let last = AtomicU64::new(0);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let both = async {
            tokio::try_join!(
                self.pump(ar, bw, started, &last),
                self.pump(br, aw, started, &last)
            )
        };
        let idle = async {
            loop {
                let moved = Duration::from_millis(last.load(Ordering::Relaxed));
                let deadline = started + moved + self.idle_timeout;
                if Instant::now() >= deadline {
                    return;
                }
                sleep_until(deadline).await;
            }
        };
        tokio::select! {
            outcome = both => match outcome {
                Ok(_) => SpliceEnd::Closed,
                Err(e) if e.kind() == io::ErrorKind::QuotaExceeded => SpliceEnd::Budget,
                Err(e) => SpliceEnd::Failed(e.to_string()),
            },
            () = idle => SpliceEnd::Idle,
            _ = stop.wait_for(|stopping| *stopping) => SpliceEnd::Stopping,
        }
    }

    /// One direction: reads, paces, charges, writes; at the end of the input, closes the
    /// output's sending side.
    async fn pump<R, W>(
        &self,
        mut from: R,
        mut to: W,
        started: Instant,
        last: &AtomicU64,
    ) -> io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; CHUNK];
        let mut total: u64 = 0;
        let began = Instant::now();
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                to.shutdown().await?;
                return Ok(());
            }
            let n64 = u64::try_from(n).unwrap_or(u64::MAX);
            if !self.budget.charge(n64) {
                return Err(io::Error::new(
                    io::ErrorKind::QuotaExceeded,
                    "the hourly byte budget is used up",
                ));
            }
            // Pacing: the bytes so far are due no earlier than total / rate after the
            // start; a direction ahead of that by more than a burst waits before writing.
            total = total.saturating_add(n64);
            let due =
                began + Duration::from_secs_f64(total as f64 / self.bytes_per_second.max(1) as f64);
            let now = Instant::now();
            if due > now + BURST {
                sleep(due - now - BURST).await;
            }
            to.write_all(&buf[..n]).await?;
            to.flush().await?;
            self.bytes.fetch_add(n64, Ordering::Relaxed);
            self.metrics.relay_bytes.inc_by(n64);
            last.store(
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(bytes_per_second: u64, budget: u64) -> Splice {
        Splice {
            bytes_per_second,
            idle_timeout: Duration::from_secs(60),
            budget: Arc::new(Budget::new(budget)),
            bytes: Arc::new(AtomicU64::new(0)),
            metrics: Arc::new(Metrics::new()),
        }
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_close_ends_the_splice() {
        let s = splice(1 << 30, 1 << 30);
        let (mut a, a_relay) = tokio::io::duplex(1024);
        let (mut b, b_relay) = tokio::io::duplex(1024);
        let (_stop, stopped) = watch::channel(false);
        let run = s.run(a_relay, b_relay, stopped);
        let talk = async {
            a.write_all(b"hello").await.unwrap();
            let mut got = [0u8; 5];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello");
            b.write_all(b"back").await.unwrap();
            let mut got = [0u8; 4];
            a.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"back");
            a.shutdown().await.unwrap();
            b.shutdown().await.unwrap();
        };
        let (end, ()) = tokio::join!(run, talk);
        assert_eq!(end, SpliceEnd::Closed);
        assert_eq!(s.bytes.load(Ordering::Relaxed), 9);
    }

    #[tokio::test]
    async fn the_budget_ends_the_splice() {
        let s = splice(1 << 30, 8);
        let (mut a, a_relay) = tokio::io::duplex(1024);
        let (_b, b_relay) = tokio::io::duplex(1024);
        let (_stop, stopped) = watch::channel(false);
        a.write_all(b"more than eight bytes").await.unwrap();
        assert_eq!(s.run(a_relay, b_relay, stopped).await, SpliceEnd::Budget);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_conversation_ends_after_the_idle_timeout_and_traffic_keeps_it() {
        let s = splice(1 << 30, 1 << 30);
        let (mut a, a_relay) = tokio::io::duplex(1024);
        let (mut b, b_relay) = tokio::io::duplex(1024);
        let (_stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let run = s.run(a_relay, b_relay, stopped);
        let talk = async {
            // A byte at 50 s moves the deadline to 110 s.
            sleep(Duration::from_secs(50)).await;
            a.write_all(b"x").await.unwrap();
            let mut got = [0u8; 1];
            b.read_exact(&mut got).await.unwrap();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            end = run => assert_eq!(end, SpliceEnd::Idle),
            () = talk => unreachable!(),
        }
        assert_eq!(started.elapsed().as_secs(), 110);
    }

    #[tokio::test(start_paused = true)]
    async fn the_node_stopping_ends_the_splice() {
        let s = splice(1 << 30, 1 << 30);
        let (_a, a_relay) = tokio::io::duplex(1024);
        let (_b, b_relay) = tokio::io::duplex(1024);
        let (stop, stopped) = watch::channel(false);
        let run = s.run(a_relay, b_relay, stopped);
        let stopping = async {
            sleep(Duration::from_secs(1)).await;
            stop.send(true).unwrap();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            end = run => assert_eq!(end, SpliceEnd::Stopping),
            () = stopping => unreachable!(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_sender_is_slowed_to_the_rate() {
        let s = splice(4096, 1 << 30);
        let (mut a, a_relay) = tokio::io::duplex(64 * 1024);
        let (mut b, b_relay) = tokio::io::duplex(64 * 1024);
        let (_stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let run = s.run(a_relay, b_relay, stopped);
        let talk = async {
            a.write_all(&[7u8; 16 * 1024]).await.unwrap();
            let mut got = vec![0u8; 16 * 1024];
            b.read_exact(&mut got).await.unwrap();
            started.elapsed()
        };
        tokio::select! {
            _ = run => panic!("the splice ended"),
            took = talk => assert!(took >= Duration::from_secs(2), "{took:?}"),
        }
    }
}
