//! Scale: a bulk filler that writes accounts with presence records straight into the store
//! (`Store::import`, the path `pd-server migrate` uses, not the HTTP API), then a real
//! `pd-server` process on that data directory: its start-up time, local lookups of random
//! users under `wrk` (pinned as in the external section), and its resident memory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pd_e2e::{Node, NodeOptions};
use pd_proto::{Address, Endpoint, Presence, SecretKey, Signed, now_micros};
use pd_server::store::{AccountDump, Dump, PresenceRow, Store};
use tokio::runtime::Runtime;

use crate::external::{self, WrkRound};

/// The domain of the filled node.
const DOMAIN: &str = "scale.test";

/// Lifetime of the filled presence records: longer than any run.
const PRESENCE_TTL_SECS: u64 = 6 * 3600;

/// The figures at one number of users.
#[derive(Debug, Clone)]
pub(crate) struct ScaleResult {
    pub(crate) users: usize,
    pub(crate) fill: Duration,
    /// From spawning `pd-server` to its health check answering.
    pub(crate) startup: Duration,
    pub(crate) rounds: Vec<WrkRound>,
    /// `VmRSS` after the rounds, in KiB.
    pub(crate) rss_kib: u64,
}

/// `u{i}@scale.test` for `i` in `0..users`, each with a signed presence record. One key
/// signs every account's records: lookups check each record against its account's key, so
/// sharing one changes nothing they do, and it spares a key generation per account.
fn dump(users: usize) -> anyhow::Result<Dump> {
    let key = SecretKey::generate();
    let public = key.public().to_bytes();
    let endpoint = Endpoint::parse("tcp://203.0.113.5:7000")?;
    let now = now_micros();
    let expires_at = now / 1_000_000 + PRESENCE_TTL_SECS;
    let mut accounts = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("u{i}");
        let presence = Presence {
            address: Address::parse(&format!("{name}@{DOMAIN}"))?,
            endpoints: vec![endpoint.clone()],
            seq: now + 1,
            expires_at,
        };
        let envelope = serde_json::to_string(&Signed::sign(&key, &presence))
            .context("failed to encode a presence record")?;
        accounts.push(AccountDump {
            name,
            public_key: public,
            last_seq: now + 1,
            created_at: now / 1_000_000,
            presence: Some(PresenceRow {
                seq: now + 1,
                expires_at,
                envelope,
            }),
            rotations: Vec::new(),
        });
    }
    Ok(Dump {
        accounts,
        ..Dump::default()
    })
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("/proc/PID/status has no VmRSS")
}

/// A `wrk` script asking for a uniformly random one of `users` users on each request.
fn script(dir: &Path, users: usize) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("random-user.lua");
    std::fs::write(
        &path,
        format!(
            "math.randomseed(1)\n\
             request = function()\n  \
               return wrk.format(\"GET\", \"/v1/lookup/u\" .. math.random(0, {}) .. \"@{DOMAIN}\")\n\
             end\n",
            users - 1
        ),
    )
    .context("failed to write the wrk script")?;
    Ok(path)
}

/// Fills a store with `users` accounts, starts a node on it and measures it.
fn one(
    runtime: &Runtime,
    users: usize,
    load: external::Load,
    tck: f64,
) -> anyhow::Result<ScaleResult> {
    let dir = tempfile::tempdir_in(crate::publish::bench_tmp_dir())
        .context("failed to create a directory")?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).context("failed to create the data directory")?;
    let started = Instant::now();
    let filled = dump(users)?;
    let store = Store::open(&data.join("pd.sqlite3")).context("failed to open the store")?;
    runtime.block_on(async {
        store.import(filled).await?;
        store.close().await
    })?;
    let fill = started.elapsed();
    println!("  {users} users filled in {:.1} s", fill.as_secs_f64());
    let config = external::write_config(dir.path(), "node.toml", "public")?;
    let started = Instant::now();
    let node = Node::start_with(
        &data,
        DOMAIN,
        NodeOptions {
            config: Some(config),
            cpus: Some(external::SERVER_CORE.to_owned()),
            ..NodeOptions::default()
        },
    )?;
    let startup = started.elapsed();
    let pid = node.pid().context("the node has no process")?;
    let script = script(dir.path(), users)?;
    let url = format!("http://{}/", node.addr());
    external::round(
        pid,
        &url,
        None,
        Some(&script),
        load.connections,
        load.warmup,
        tck,
    )?;
    let mut rounds = Vec::new();
    for r in 1..=load.rounds {
        let w = external::round(
            pid,
            &url,
            None,
            Some(&script),
            load.connections,
            load.duration,
            tck,
        )?;
        println!(
            "  {r:>3} {users:>9} {:>10.0} {:>9.0} {:>9.0} {:>13.2} {:>7}",
            w.rps, w.p50_us, w.p99_us, w.cpu_us_per_request, w.errors
        );
        rounds.push(w);
    }
    let rss_kib = rss_kib(pid)?;
    drop(node);
    Ok(ScaleResult {
        users,
        fill,
        startup,
        rounds,
        rss_kib,
    })
}

/// Runs the scale section at each of `sizes`.
pub(crate) fn section(
    runtime: &Runtime,
    sizes: &[usize],
    load: external::Load,
) -> anyhow::Result<Vec<ScaleResult>> {
    let tck = external::clock_ticks()?;
    println!(
        "  {:>3} {:>9} {:>10} {:>9} {:>9} {:>13} {:>7}",
        "rnd", "users", "req/s", "p50 us", "p99 us", "cpu us/req", "errors"
    );
    sizes
        .iter()
        .map(|&users| one(runtime, users, load, tck))
        .collect()
}
