//! `pd-relay-bench`: the relay of a real `pd-server` process (spec section 13) against a
//! direct TCP connection on the same machine, in the same run: throughput of one
//! conversation (MB/s), added latency per message (round trips of 64 bytes), memory of the
//! node per relayed conversation and per idle slot (its resident set before and after).
//! The bytes are raw: the peers' TLS costs the same on both paths, so it is left out.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use pd_client::{ClientOptions, PdClient};
use pd_e2e::{Node, NodeOptions};
use pd_proto::relay::{ControlFrame, UPGRADE_PROTOCOL};
use pd_proto::wire::RegisterRequest;
use pd_proto::{Address, Login, Registration, SecretKey, Signed, now_micros, paths};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const USER: &str = "bench@localhost";

/// Measures the relay against a direct connection.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Bytes sent one way through each path for the throughput.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    bytes: usize,
    /// Round trips of 64 bytes for the latency.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Relayed conversations held open for the memory figure.
    #[arg(long, default_value_t = 200)]
    conversations: usize,
    /// Idle slots held for the memory figure.
    #[arg(long, default_value_t = 1000)]
    slots: usize,
}

/// Limits high enough not to be what is measured.
const CONFIG: &str = "\
[limits]
max_connections = 8192
max_connections_per_ip = 8192
[relay]
bytes_per_second = 1099511627776
bytes_per_user_per_hour = 1125899906842624
max_slots_per_user = 100000
max_slots = 100000
max_conversations_per_user = 100000
max_conversations = 100000
connects_per_second = 100000
connect_burst = 100000
";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Bench {
    client: PdClient,
    base: Url,
    token: String,
}

impl Bench {
    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    async fn slot(&self) -> anyhow::Result<reqwest::Upgraded> {
        let url = self.url(&paths::fill(paths::RELAY_SLOT, USER));
        Ok(self
            .client
            .upgrade(&url, Some(&self.token), UPGRADE_PROTOCOL)
            .await?)
    }

    /// One relayed conversation through `slot`: (connecting side, listening side).
    async fn conversation(
        &self,
        slot: &mut reqwest::Upgraded,
    ) -> anyhow::Result<(reqwest::Upgraded, reqwest::Upgraded)> {
        let connect_url = self.url(&paths::fill(paths::RELAY_CONNECT, USER));
        let connect = self.client.upgrade(&connect_url, None, UPGRADE_PROTOCOL);
        let accept = async {
            let id = loop {
                let len = slot.read_u32().await? as usize;
                let mut body = vec![0u8; len];
                slot.read_exact(&mut body).await?;
                if let ControlFrame::Incoming { id } = ControlFrame::decode(&body)? {
                    break id;
                }
            };
            let path = paths::fill(paths::RELAY_ACCEPT, USER).replace("{id}", &id);
            anyhow::Ok(
                self.client
                    .upgrade(&self.url(&path), Some(&self.token), UPGRADE_PROTOCOL)
                    .await?,
            )
        };
        let (connector, listener) = tokio::join!(connect, accept);
        Ok((connector?, listener?))
    }
}

async fn direct_pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    Ok((a?, b?.0))
}

/// MB/s of `bytes` written on `a` and read on `b`.
async fn throughput(mut a: impl Io, mut b: impl Io, bytes: usize) -> anyhow::Result<f64> {
    let chunk = vec![0x5au8; 64 * 1024];
    let started = Instant::now();
    let send = async {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            a.write_all(&chunk[..n]).await?;
            left -= n;
        }
        a.flush().await?;
        anyhow::Ok(())
    };
    let receive = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < bytes {
            let n = b.read(&mut buf).await?;
            if n == 0 {
                bail!("the stream ended after {got} bytes");
            }
            got += n;
        }
        anyhow::Ok(())
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    received?;
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// Mean round trip of 64 bytes from `a` to `b` and back.
async fn round_trip(mut a: impl Io, mut b: impl Io, n: usize) -> anyhow::Result<Duration> {
    let echo = async {
        let mut buf = [0u8; 64];
        for _ in 0..n {
            b.read_exact(&mut buf).await?;
            b.write_all(&buf).await?;
        }
        anyhow::Ok(())
    };
    let ping = async {
        let mut buf = [7u8; 64];
        let started = Instant::now();
        for _ in 0..n {
            a.write_all(&buf).await?;
            a.read_exact(&mut buf).await?;
        }
        anyhow::Ok(started.elapsed() / u32::try_from(n).unwrap_or(u32::MAX))
    };
    let (echoed, mean) = tokio::join!(echo, ping);
    echoed?;
    mean
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

async fn run(cli: Cli, node: &Node) -> anyhow::Result<()> {
    let pid = node.pid().context("the node has no process")?;
    let base = Url::parse(&node.url())?;
    let client = PdClient::new(base.clone(), &ClientOptions::default())?;
    let key = SecretKey::generate();
    let address = Address::parse(USER)?;
    let seq = now_micros();
    client
        .register(&RegisterRequest {
            registration: Signed::sign(
                &key,
                &Registration {
                    address: address.clone(),
                    public_key: key.public(),
                    seq,
                },
            ),
            invite: None,
        })
        .await?;
    let token = client
        .login(&Signed::sign(
            &key,
            &Login {
                address,
                seq: seq + 1,
            },
        ))
        .await?
        .token;
    let bench = Bench {
        client,
        base,
        token,
    };
    let mut slot = bench.slot().await?;

    let (a, b) = direct_pair().await?;
    let direct_mbs = throughput(a, b, cli.bytes).await?;
    let (a, b) = bench.conversation(&mut slot).await?;
    let relayed_mbs = throughput(a, b, cli.bytes).await?;
    let (a, b) = direct_pair().await?;
    let direct_rtt = round_trip(a, b, cli.round_trips).await?;
    let (a, b) = bench.conversation(&mut slot).await?;
    let relayed_rtt = round_trip(a, b, cli.round_trips).await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(cli.conversations);
    for _ in 0..cli.conversations {
        let (mut a, mut b) = bench.conversation(&mut slot).await?;
        let mut buf = [0u8; 64];
        a.write_all(&buf).await?;
        b.read_exact(&mut buf).await?;
        b.write_all(&buf).await?;
        a.read_exact(&mut buf).await?;
        open.push((a, b));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_conversations = rss_kib(pid)?;
    drop(open);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_slots = rss_kib(pid)?;
    let mut slots = Vec::with_capacity(cli.slots);
    for _ in 0..cli.slots {
        slots.push(bench.slot().await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_slots = rss_kib(pid)?;

    let per_conversation =
        (with_conversations.saturating_sub(before)) as f64 / cli.conversations as f64;
    let per_slot = (with_slots.saturating_sub(before_slots)) as f64 / cli.slots as f64;
    println!(
        "throughput, one conversation, {} MiB one way:",
        cli.bytes >> 20
    );
    println!("  direct TCP  {direct_mbs:8.1} MB/s");
    println!(
        "  relayed     {relayed_mbs:8.1} MB/s   relayed/direct {:.2}",
        relayed_mbs / direct_mbs
    );
    println!("round trip of 64 bytes, mean of {}:", cli.round_trips);
    println!("  direct TCP  {:8.1} µs", direct_rtt.as_secs_f64() * 1e6);
    println!(
        "  relayed     {:8.1} µs   added per message (one way) {:.1} µs",
        relayed_rtt.as_secs_f64() * 1e6,
        (relayed_rtt.saturating_sub(direct_rtt)).as_secs_f64() * 1e6 / 2.0
    );
    println!(
        "node memory: {per_conversation:.1} KiB per relayed conversation ({} open), {per_slot:.1} KiB per idle slot ({} held) = {:.0} idle slots per 100 MB",
        cli.conversations,
        cli.slots,
        100_000.0 / per_slot.max(0.001)
    );
    drop(slots);
    drop(slot);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("node.toml");
    std::fs::write(&config, CONFIG)?;
    // Started (and waited for) before the runtime: the helper blocks.
    let node = Node::start_with(
        &dir.path().join("data"),
        "localhost",
        NodeOptions {
            config: Some(config),
            ..NodeOptions::default()
        },
    )?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(cli, &node))
}
