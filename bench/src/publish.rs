//! Durable publishes: signed presence records sent through the node's HTTP API, counted when
//! the node has answered (it answers only after the store's commit), sequentially and from
//! many concurrent clients; and the disk's own fsync rate in the same data directory as the
//! baseline that bounds any store which commits one write at a time.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use pd_client::{ClientOptions, PdClient};
use pd_proto::{Address, Endpoint, Presence, SecretKey, Signed, now_micros};
use pd_server::Server;
use pd_server::config::Config;
use pd_server::store::StoreSpec;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use url::Url;

use crate::report::Percentiles;
use crate::setup;

/// Lifetime of each published record.
const PRESENCE_TTL_SECS: u64 = 3600;

/// The store a publish run writes to.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// The embedded SQLite database in the node's temporary data directory.
    Sqlite,
    /// A PostgreSQL server (`postgres://…`).
    Postgres(String),
}

impl Store {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// The figures of one publish run.
#[derive(Debug, Clone)]
pub(crate) struct PublishResult {
    pub(crate) store: &'static str,
    pub(crate) clients: usize,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Percentiles,
}

impl PublishResult {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Writes 4 KiB at the start of a file in `dir` and `fdatasync`s it, over and over for
/// `duration`; returns the syncs per second. This is what one durable commit at a time can
/// reach on this disk at best.
pub(crate) fn fsync_rate(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let block = [0x5a_u8; 4096];
    file.write_all(&block)
        .context("failed to write the probe file")?;
    file.sync_all().context("failed to sync the probe file")?;
    let start = Instant::now();
    let mut syncs = 0_u64;
    while start.elapsed() < duration {
        std::os::unix::fs::FileExt::write_all_at(&file, &block, 0)
            .context("failed to write the probe file")?;
        file.sync_data()
            .context("failed to fdatasync the probe file")?;
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).context("failed to remove the probe file")?;
    Ok(rate)
}

/// One publisher: its own account and key, and the next sequence number to use.
struct Publisher {
    address: Address,
    key: SecretKey,
    seq: u64,
}

impl Publisher {
    /// The next signed presence record (signed here, on the client's side of the machine).
    fn next(&mut self) -> anyhow::Result<Signed<Presence>> {
        // Sequence numbers must be above the last one and close to the current time.
        self.seq = (self.seq + 1).max(now_micros());
        let presence = Presence {
            address: self.address.clone(),
            endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000")?],
            seq: self.seq,
            expires_at: now_micros() / 1_000_000 + PRESENCE_TTL_SECS,
        };
        Ok(Signed::sign(&self.key, &presence))
    }
}

/// A node set up for publish runs, with its data directory.
pub(crate) struct PublishNode {
    server: Server,
    data: tempfile::TempDir,
    client: PdClient,
    /// Distinguishes this node's accounts from those of earlier runs in a shared PostgreSQL.
    run_tag: String,
}

impl PublishNode {
    /// Starts a node on `store` with the per-client write limits raised out of the way (every
    /// client of the benchmark comes from 127.0.0.1).
    pub(crate) async fn start(store: &Store) -> anyhow::Result<Self> {
        let data = tempfile::tempdir_in(bench_tmp_dir()).context("failed to create a data dir")?;
        let mut config = Config::for_tests(data.path());
        config.rate_limit.writes_per_second = 1_000_000;
        config.rate_limit.burst = 1_000_000;
        config.limits.max_connections_per_ip = config.limits.max_connections;
        if let Store::Postgres(url) = store {
            config.store = Some(StoreSpec::Postgres(url.clone()));
        }
        let server = Server::bind(config).await?;
        let base = Url::parse(&server.base_url()).context("the node's base URL is invalid")?;
        let client = PdClient::new(base, &ClientOptions::default())?;
        let run_tag = format!("{:08x}", rand::random::<u32>());
        Ok(Self {
            server,
            data,
            client,
            run_tag,
        })
    }

    pub(crate) fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Registers `count` fresh accounts, one per publisher.
    async fn publishers(&self, label: &str, count: usize) -> anyhow::Result<Vec<Publisher>> {
        let mut publishers = Vec::with_capacity(count);
        for i in 0..count {
            let key = SecretKey::generate();
            let address = Address::parse(&format!("p{}{label}{i}@localhost", self.run_tag))?;
            let seq = now_micros();
            setup::register(&self.client, &key, &address, seq).await?;
            publishers.push(Publisher { address, key, seq });
        }
        Ok(publishers)
    }

    /// `clients` concurrent publishers, each with its own account, publishing one record after
    /// the other for `duration` (after `warmup` unmeasured).
    pub(crate) async fn run(
        &self,
        store: &'static str,
        label: &str,
        clients: usize,
        warmup: Duration,
        duration: Duration,
    ) -> anyhow::Result<PublishResult> {
        ensure!(clients > 0, "a publish run needs at least one client");
        let publishers = self.publishers(label, clients).await?;
        let start_at = Instant::now() + warmup;
        let deadline = start_at + duration;
        let mut tasks = JoinSet::new();
        let client = Arc::new(self.client.clone());
        for publisher in publishers {
            let client = Arc::clone(&client);
            tasks.spawn(publisher_loop(client, publisher, start_at, deadline));
        }
        let mut ok = 0;
        let mut errors = 0;
        let mut latencies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let tally = joined.context("a publisher task failed")??;
            ok += tally.ok;
            errors += tally.errors;
            latencies.extend(tally.latencies_us);
        }
        Ok(PublishResult {
            store,
            clients,
            ok,
            errors,
            elapsed: duration,
            latency: Percentiles::of(latencies),
        })
    }

    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

async fn publisher_loop(
    client: Arc<PdClient>,
    mut publisher: Publisher,
    start_at: Instant,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    loop {
        let record = publisher.next()?;
        let sent = Instant::now();
        if sent >= deadline {
            return Ok(tally);
        }
        let answer = client.publish_presence(&publisher.address, &record).await;
        let done = Instant::now();
        // Only publishes both sent and answered inside the measured window count.
        if sent < start_at || done > deadline {
            continue;
        }
        match answer {
            Ok(_) => {
                tally.ok += 1;
                let us = done.duration_since(sent).as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(_) => tally.errors += 1,
        }
    }
}

/// Where temporary data directories go: `PD_BENCH_TMPDIR` if set (to measure a particular
/// disk), else the system's temporary directory.
pub(crate) fn bench_tmp_dir() -> std::path::PathBuf {
    std::env::var_os("PD_BENCH_TMPDIR").map_or_else(std::env::temp_dir, Into::into)
}

/// Runs the publish section on `runtime`: for each store, the disk's fsync rate in the node's
/// data directory, then sequential and concurrent publishes.
pub(crate) fn section(
    runtime: &Runtime,
    stores: &[Store],
    concurrent: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<PublishResult>)> {
    let mut results = Vec::new();
    let mut fsync = f64::NAN;
    for store in stores {
        let node = runtime.block_on(PublishNode::start(store))?;
        if matches!(store, Store::Sqlite) {
            println!("fsync probe: write 4 KiB + fdatasync in the node's data directory");
            fsync = fsync_rate(node.data_dir(), duration)?;
            println!("  {fsync:.0} fdatasync/s");
        }
        let measured = runtime.block_on(async {
            let mut out = Vec::new();
            for (label, clients) in [("s", 1), ("c", concurrent)] {
                let r = node
                    .run(store.name(), label, clients, warmup, duration)
                    .await?;
                println!(
                    "  {:<8} {:>3} client(s): {:>8.0} publishes/s  p50 {:>6} us  p99 {:>6} us  errors {}",
                    r.store,
                    r.clients,
                    r.per_second(),
                    r.latency.p50,
                    r.latency.p99,
                    r.errors
                );
                out.push(r);
            }
            anyhow::Ok(out)
        });
        let stopped = runtime.block_on(node.shutdown());
        results.extend(measured?);
        stopped?;
    }
    Ok((fsync, results))
}
