//! `pd-soak`: three real `pd-server` processes federated on loopback under a mixed load at
//! a fixed share of their measured capacity, for a long time. Not part of `cargo test`.
//!
//! ```text
//! cargo run --release -p pd-bench --bin pd-soak -- --duration 10m --share 0.7
//! ```
//!
//! 1. Starts nodes `a.test`, `b.test` and `c.test` (static routes to each other), registers
//!    `--users` accounts with a presence record on each.
//! 2. Measures capacity: closed-loop load of the mix with `--connections` workers for
//!    `--capacity-time`; the operations per second completed is the capacity.
//! 3. Soaks: open-loop arrivals at `--share` of that capacity for `--duration`, the same
//!    mix: local lookups, cached remote lookups, uncached remote lookups (`mode=refresh`,
//!    so every one is a signed federation request), presence publishes and registrations.
//! 4. Reports per minute: operations, errors, arrivals shed (not sent because a second's
//!    worth of requests was still in flight), p50 and p99 latency; and each node's resident
//!    memory and open file descriptors at the start and the end of the soak (the end once
//!    the generator's idle connections are closed).
//!
//! Exits 1 if any request failed or any arrival was shed.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use pd_e2e::{Node, NodeOptions};
use pd_proto::records::{Endpoint, Presence, Registration};
use pd_proto::wire::RegisterRequest;
use pd_proto::{Address, SecretKey, Signed};
use rand::Rng as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Soak test of three federated pd-server processes.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// How long to soak.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Share of the measured capacity to offer during the soak.
    #[arg(long, default_value_t = 0.7)]
    share: f64,
    /// Workers of the closed-loop capacity measurement.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Length of the capacity measurement.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    capacity_time: Duration,
    /// Accounts registered on each node before the load starts.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Requests in flight at most during the soak; an arrival beyond it is not sent and
    /// counts as shed (an error of the run). Default: one second of arrivals at the soak's
    /// rate (at least 256), so only a node that falls a second behind sheds.
    #[arg(long)]
    max_in_flight: Option<usize>,
}

const DOMAINS: [&str; 3] = ["a.test", "b.test", "c.test"];

/// Remote users looked up in the cached part of the mix, per node: few enough that the
/// cache holds them all, so these lookups are cache hits after the first.
const POPULAR: usize = 20;

/// The operations of the mix, with their weights (out of 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    LocalLookup,
    CachedLookup,
    RemoteLookup,
    Publish,
    Register,
}

const MIX: [(Op, u32); 5] = [
    (Op::LocalLookup, 40),
    (Op::CachedLookup, 30),
    (Op::RemoteLookup, 10),
    (Op::Publish, 15),
    (Op::Register, 5),
];

fn pick(roll: u32) -> Op {
    let mut left = roll;
    for (op, weight) in MIX {
        if left < weight {
            return op;
        }
        left -= weight;
    }
    Op::LocalLookup
}

struct User {
    key: SecretKey,
    address: Address,
    /// Held while a presence record is published, so that one user's publishes reach the
    /// node in the order of their sequence numbers (a reordered pair would be a replay).
    writing: tokio::sync::Mutex<()>,
}

struct Cluster {
    nodes: Vec<Node>,
    urls: Vec<String>,
    users: Vec<Vec<User>>,
    http: reqwest::Client,
    registered: AtomicU64,
}

fn seq() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = pd_proto::now_micros();
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

impl Cluster {
    fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let addrs: Vec<std::net::SocketAddr> = DOMAINS
            .iter()
            .map(|_| {
                let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
                socket.local_addr()
            })
            .collect::<Result<_, _>>()
            .context("failed to pick ports")?;
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            // The load comes from one address (loopback) and the nodes ask each other from
            // it too: the per-client and per-destination limits are raised out of the way,
            // so what is measured is the nodes' work, not their refusals.
            "lookup_access = \"public\"\n\
             [rate_limit]\nwrites_per_second = 1000000\nburst = 1000000\n\
             lookups_per_second = 1000000\nlookup_burst = 1000000\n\
             [limits]\nmax_connections_per_ip = 4096\n\
             [federation]\nupstream_lookups_per_second = 1000000\nupstream_lookup_burst = 1000000\n",
        )
        .context("failed to write the node configuration")?;
        let mut nodes = Vec::new();
        for (i, domain) in DOMAINS.iter().enumerate() {
            let data = dir.join(domain);
            std::fs::create_dir_all(&data).context("failed to create a data directory")?;
            let peers = DOMAINS
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| ((*other).to_owned(), format!("http://{}", addrs[j])))
                .collect();
            let options = NodeOptions {
                config: Some(config.clone()),
                peers,
                ..NodeOptions::default()
            };
            nodes.push(Node::start_with_at(&data, domain, addrs[i], options)?);
        }
        let urls = nodes.iter().map(Node::url).collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(pd_proto::CLIENT_IDLE_REUSE)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            nodes,
            urls,
            users: DOMAINS.iter().map(|_| Vec::new()).collect(),
            http,
            registered: AtomicU64::new(0),
        })
    }

    async fn register(&self, node: usize, name: &str) -> anyhow::Result<User> {
        let key = SecretKey::generate();
        let address = Address::parse(&format!("{name}@{}", DOMAINS[node]))?;
        let request = RegisterRequest {
            registration: Signed::sign(
                &key,
                &Registration {
                    address: address.clone(),
                    public_key: key.public(),
                    seq: seq(),
                },
            ),
            invite: None,
        };
        let resp = self
            .http
            .post(format!("{}/v1/accounts", self.urls[node]))
            .json(&request)
            .send()
            .await?;
        ensure!(
            resp.status() == 201,
            "registration answered {}",
            resp.status()
        );
        Ok(User {
            key,
            address,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    async fn publish(&self, node: usize, user: &User) -> anyhow::Result<()> {
        let _writing = user.writing.lock().await;
        let seq = seq();
        let presence = Signed::sign(
            &user.key,
            &Presence {
                address: user.address.clone(),
                endpoints: vec![Endpoint::parse(&format!(
                    "tcp://203.0.113.8:{}",
                    1024 + seq % 60_000
                ))?],
                seq,
                expires_at: seq / 1_000_000 + 3600,
            },
        );
        let resp = self
            .http
            .put(format!(
                "{}/v1/accounts/{}/presence",
                self.urls[node], user.address
            ))
            .json(&presence)
            .send()
            .await?;
        ensure!(resp.status() == 200, "publish answered {}", resp.status());
        Ok(())
    }

    async fn lookup(&self, node: usize, address: &Address, refresh: bool) -> anyhow::Result<()> {
        let mode = if refresh { "?mode=refresh" } else { "" };
        let resp = self
            .http
            .get(format!("{}/v1/lookup/{address}{mode}", self.urls[node]))
            .send()
            .await?;
        ensure!(
            resp.status() == 200,
            "lookup of {address} answered {}",
            resp.status()
        );
        resp.bytes().await?;
        Ok(())
    }

    /// One operation of the mix at a random node.
    async fn operate(&self, op: Op) -> anyhow::Result<()> {
        let (node, other, index, popular) = {
            let mut rng = rand::thread_rng();
            let node = rng.gen_range(0..DOMAINS.len());
            let other = (node + rng.gen_range(1..DOMAINS.len())) % DOMAINS.len();
            (
                node,
                other,
                rng.gen_range(0..self.users[0].len()),
                rng.gen_range(0..POPULAR),
            )
        };
        match op {
            Op::LocalLookup => {
                self.lookup(node, &self.users[node][index].address, false)
                    .await
            }
            Op::CachedLookup => {
                self.lookup(node, &self.users[other][popular].address, false)
                    .await
            }
            Op::RemoteLookup => {
                self.lookup(node, &self.users[other][index].address, true)
                    .await
            }
            Op::Publish => self.publish(node, &self.users[node][index]).await,
            Op::Register => {
                let n = self.registered.fetch_add(1, Ordering::SeqCst);
                self.register(node, &format!("soak{n}")).await.map(drop)
            }
        }
    }
}

/// Latencies and errors of one minute.
#[derive(Default)]
struct Minute {
    latencies_us: Vec<u32>,
    /// Operations sent that failed (not a 2xx answer, or no answer).
    errors: u64,
    /// Arrivals not sent because `--max-in-flight` requests were still in flight.
    shed: u64,
    first_error: Option<String>,
}

impl Minute {
    fn percentile(&mut self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us.sort_unstable();
        let rank = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_us[rank]
    }
}

/// Resident memory (KiB) and open file descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, fds)
}

fn footprints(cluster: &Cluster) -> Vec<(u64, usize)> {
    cluster
        .nodes
        .iter()
        .map(|n| n.pid().map_or((0, 0), footprint))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.share > 0.0 && cli.share <= 1.0,
        "--share must be in (0, 1]"
    );
    ensure!(cli.users >= POPULAR, "--users must be at least {POPULAR}");
    let dir = tempfile::tempdir().context("failed to create a work directory")?;
    let mut cluster = Cluster::start(dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "pd-soak: 3 nodes, {} users each, mix local 40% / cached 30% / remote 10% / publish 15% / register 5%",
        cli.users
    );
    runtime.block_on(async {
        for node in 0..DOMAINS.len() {
            for i in 0..cli.users {
                let user = cluster.register(node, &format!("u{i}")).await?;
                cluster.publish(node, &user).await?;
                cluster.users[node].push(user);
            }
        }
        anyhow::Ok(())
    })?;
    let cluster = Arc::new(cluster);

    // Capacity: closed loop.
    let capacity = runtime.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + cli.capacity_time;
        let mut workers = JoinSet::new();
        for _ in 0..cli.connections {
            let (cluster, done, failed) =
                (Arc::clone(&cluster), Arc::clone(&done), Arc::clone(&failed));
            workers.spawn(async move {
                while Instant::now() < end {
                    let op = pick(rand::thread_rng().gen_range(0..100));
                    match cluster.operate(op).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        while workers.join_next().await.is_some() {}
        let rate = done.load(Ordering::Relaxed) as f64 / cli.capacity_time.as_secs_f64();
        println!(
            "capacity: {rate:.0} operations/s closed-loop with {} workers over {} ({} failed)",
            cli.connections,
            humantime::format_duration(cli.capacity_time),
            failed.load(Ordering::Relaxed)
        );
        rate
    });
    let rate = capacity * cli.share;
    ensure!(rate >= 1.0, "the measured capacity is too low to soak at");
    let max_in_flight = cli
        .max_in_flight
        .unwrap_or_else(|| (rate.ceil() as usize).max(256));
    println!(
        "soak: {rate:.0} operations/s ({:.0}% of capacity) for {}, at most {max_in_flight} in flight",
        cli.share * 100.0,
        humantime::format_duration(cli.duration)
    );

    let start_footprint = footprints(&cluster);
    let minutes = (cli.duration.as_secs().div_ceil(60)).max(1) as usize;
    let stats: Arc<Vec<Mutex<Minute>>> = Arc::new(
        (0..minutes)
            .map(|_| Mutex::new(Minute::default()))
            .collect(),
    );
    runtime.block_on(async {
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = JoinSet::new();
        while started.elapsed() < cli.duration {
            ticker.tick().await;
            let minute = (started.elapsed().as_secs() / 60) as usize;
            let Some(_) = stats.get(minute) else { break };
            let op = pick(rand::thread_rng().gen_range(0..100));
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                let mut m = stats[minute].lock().unwrap_or_else(|e| e.into_inner());
                m.shed += 1;
                continue;
            };
            let (cluster, stats) = (Arc::clone(&cluster), Arc::clone(&stats));
            tasks.spawn(async move {
                let sent = Instant::now();
                let result = cluster.operate(op).await;
                let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                let mut m = stats[minute].lock().unwrap_or_else(|e| e.into_inner());
                m.latencies_us.push(took);
                if let Err(e) = result {
                    m.errors += 1;
                    m.first_error
                        .get_or_insert_with(|| format!("{op:?}: {e:#}"));
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
    // The generator's idle kept-alive connections are dropped after CLIENT_IDLE_REUSE:
    // measured after that, open descriptors show what the nodes themselves hold on to.
    std::thread::sleep(pd_proto::CLIENT_IDLE_REUSE + Duration::from_secs(1));
    let end_footprint = footprints(&cluster);

    println!();
    println!(
        "{:>6} {:>9} {:>7} {:>6} {:>8} {:>8}",
        "minute", "ops", "errors", "shed", "p50 ms", "p99 ms"
    );
    let mut total_errors = 0;
    let mut total_shed = 0;
    let mut total_ops = 0;
    for (i, minute) in stats.iter().enumerate() {
        let mut m = minute.lock().unwrap_or_else(|e| e.into_inner());
        total_errors += m.errors;
        total_shed += m.shed;
        total_ops += m.latencies_us.len();
        let (p50, p99) = (m.percentile(0.50), m.percentile(0.99));
        println!(
            "{:>6} {:>9} {:>7} {:>6} {:>8.1} {:>8.1}",
            i + 1,
            m.latencies_us.len(),
            m.errors,
            m.shed,
            f64::from(p50) / 1000.0,
            f64::from(p99) / 1000.0
        );
        if let Some(first) = &m.first_error {
            println!("       first error: {first}");
        }
    }
    println!();
    println!(
        "{:<8} {:>14} {:>12} {:>10} {:>8}",
        "node", "RSS start MiB", "RSS end MiB", "FDs start", "FDs end"
    );
    for (i, domain) in DOMAINS.iter().enumerate() {
        let (rss0, fd0) = start_footprint[i];
        let (rss1, fd1) = end_footprint[i];
        println!(
            "{domain:<8} {:>14.1} {:>12.1} {fd0:>10} {fd1:>8}",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0
        );
    }
    println!(
        "total: {total_ops} operations, {total_errors} errors, {total_shed} shed, {} registrations during the soak and capacity runs",
        cluster.registered.load(Ordering::SeqCst)
    );
    drop(cluster);
    ensure!(total_errors == 0, "{total_errors} operations failed");
    ensure!(
        total_shed == 0,
        "{total_shed} arrivals shed: more than {max_in_flight} requests were in flight"
    );
    Ok(())
}
