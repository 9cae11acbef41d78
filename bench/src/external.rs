//! The external load generator mode: `wrk` as its own process pinned to one core, the server
//! under test (a real `pd-server` process, or the bare axum floor `pd-floor` answering the
//! same bytes) pinned to the other, and the server's CPU time per request read from
//! `/proc/PID/stat` around each round.
//!
//! Targets: local lookups with `lookup_access = "public"`, local lookups with a bearer token
//! (`lookup_access = "users"`), and cached remote lookups (a second node in front of the
//! user's home node, its cache warmed before measuring).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use pd_client::{ClientOptions, PdClient};
use pd_e2e::{Node, NodeOptions};
use pd_proto::{Address, SecretKey};
use tokio::runtime::Runtime;
use url::Url;

use crate::load::{self, Target};
use crate::report::Percentiles;
use crate::setup;

/// The core `wrk` runs on; the servers get [`SERVER_CORE`]. Both servers are started on
/// it (`taskset -c`), not moved there once running: a server sizes its runtime by the CPUs
/// it may use, and one moved later would run two runtime threads on one core.
const WRK_CORE: &str = "0";
pub(crate) const SERVER_CORE: &str = "1";

/// The home node's domain, the front node's, and the node with `lookup_access = "users"`.
const HOME: &str = "home.test";
const FRONT: &str = "front.test";
const USERS: &str = "users.test";

/// The load of one round: connections and length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) rounds: usize,
}

/// What `wrk` and `/proc` said about one round against one server.
#[derive(Debug, Clone)]
pub(crate) struct WrkRound {
    pub(crate) rps: f64,
    pub(crate) requests: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Answers other than 2xx/3xx, plus socket errors.
    pub(crate) errors: u64,
    /// Server CPU time (user + system) per answered request.
    pub(crate) cpu_us_per_request: f64,
}

/// One target's rounds against the node and against the floor.
#[derive(Debug, Clone)]
pub(crate) struct TargetResult {
    pub(crate) name: &'static str,
    pub(crate) body_bytes: usize,
    pub(crate) floor: Vec<WrkRound>,
    pub(crate) node: Vec<WrkRound>,
    /// For a remote target: the upstream node's CPU time during the node's rounds, per
    /// request answered by the node.
    pub(crate) upstream_cpu_us_per_request: Option<f64>,
}

/// A child process killed and reaped on drop.
struct Floor {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Floor {
    /// Starts `pd-floor` answering `body` with `content_type`, pinned to the server core.
    fn start(bin: &Path, body: &Path, content_type: &str) -> anyhow::Result<Self> {
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CORE])
            .arg(bin)
            .arg("--body")
            .arg(body)
            .arg("--content-type")
            .arg(content_type)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {} under taskset", bin.display()))?;
        let stdout = child.stdout.take().context("pd-floor has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("failed to read pd-floor's address")?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("pd-floor said {line:?}, not its address"))?;
        Ok(Self { child, addr })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `utime + stime` of `pid` in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("failed to read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/PID/stat has no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("/proc/PID/stat is too short")?
            .parse()
            .context("/proc/PID/stat has a field that is not a number")
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub(crate) fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("failed to run getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK did not print a number")
}

/// Runs `wrk` against `url` pinned to its core, one thread, `connections` connections, with
/// `script` (Lua) choosing each request when given.
fn wrk(
    url: &str,
    token: Option<&str>,
    script: Option<&Path>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<String> {
    let mut command = Command::new("taskset");
    command
        .args(["-c", WRK_CORE, "wrk", "-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)));
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    if let Some(token) = token {
        command
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"));
    }
    let out = command
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("failed to run wrk (Debian package `wrk`) under taskset")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// A latency as `wrk` prints it (`512.00us`, `1.23ms`, `2.00s`), in microseconds.
fn parse_latency(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The figures of `wrk --latency` output: req/s, requests, p50, p99 and errors.
fn parse_wrk(text: &str) -> anyhow::Result<(f64, u64, f64, f64, u64)> {
    let mut rps = None;
    let mut requests = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => rps = n.parse().ok(),
            ["50%", l] => p50 = parse_latency(l),
            ["99%", l] => p99 = parse_latency(l),
            [n, "requests", "in", ..] => requests = n.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(1),
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    match (rps, requests, p50, p99) {
        (Some(rps), Some(requests), Some(p50), Some(p99)) => Ok((rps, requests, p50, p99, errors)),
        _ => bail!("could not read wrk's output:\n{text}"),
    }
}

/// One `wrk` round against the server `pid`, with its CPU time per request.
pub(crate) fn round(
    pid: u32,
    url: &str,
    token: Option<&str>,
    script: Option<&Path>,
    connections: usize,
    duration: Duration,
    tck: f64,
) -> anyhow::Result<WrkRound> {
    let before = cpu_ticks(pid)?;
    let text = wrk(url, token, script, connections, duration)?;
    let after = cpu_ticks(pid)?;
    let (rps, requests, p50_us, p99_us, errors) = parse_wrk(&text)?;
    let cpu_s = (after - before) as f64 / tck;
    Ok(WrkRound {
        rps,
        requests,
        p50_us,
        p99_us,
        errors,
        cpu_us_per_request: cpu_s * 1e6 / requests.max(1) as f64,
    })
}

/// Registers `user@domain` on the node at `url`, publishes a presence record, and logs in;
/// returns the session token.
async fn prepare_user(url: &str, address: &str) -> anyhow::Result<String> {
    let client = PdClient::new(Url::parse(url)?, &ClientOptions::default())?;
    setup::prepare_user(&client, &SecretKey::generate(), &Address::parse(address)?).await
}

/// The node configuration: the load comes from one address (loopback), so the per-client
/// limits are raised out of the way, as in `pd-soak`.
pub(crate) fn write_config(dir: &Path, name: &str, access: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "lookup_access = \"{access}\"\n\
             [rate_limit]\nwrites_per_second = 1000000\nburst = 1000000\n\
             lookups_per_second = 1000000\nlookup_burst = 1000000\n\
             [limits]\nmax_connections = 8192\nmax_connections_per_ip = 8192\n\
             [federation]\nupstream_lookups_per_second = 1000000\nupstream_lookup_burst = 1000000\n"
        ),
    )
    .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Runs the external section: starts the nodes, prepares the user, then for each target
/// alternates `wrk` rounds against the floor and the node.
pub(crate) fn section(
    runtime: &Runtime,
    load: Load,
    cold_samples: usize,
    herd: usize,
) -> anyhow::Result<(Vec<TargetResult>, ColdResult)> {
    let tck = clock_ticks()?;
    let floor_bin = sibling_binary("pd-floor")?;
    let dir = tempfile::tempdir_in(crate::publish::bench_tmp_dir())
        .context("failed to create a directory")?;
    let public = write_config(dir.path(), "public.toml", "public")?;
    let users = write_config(dir.path(), "users.toml", "users")?;
    let free_port = || -> anyhow::Result<std::net::SocketAddr> {
        let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(socket.local_addr()?)
    };
    let (home_addr, front_addr) = (free_port()?, free_port()?);
    let start =
        |domain: &str, config: &Path, addr, peers: Vec<(String, String)>| -> anyhow::Result<Node> {
            let data = dir.path().join(domain);
            std::fs::create_dir_all(&data).context("failed to create a data directory")?;
            let node = Node::start_with_at(
                &data,
                domain,
                addr,
                NodeOptions {
                    config: Some(config.to_owned()),
                    peers,
                    cpus: Some(SERVER_CORE.to_owned()),
                    ..NodeOptions::default()
                },
            )?;
            Ok(node)
        };
    let home = start(
        HOME,
        &public,
        home_addr,
        vec![(FRONT.to_owned(), format!("http://{front_addr}"))],
    )?;
    let front = start(
        FRONT,
        &public,
        front_addr,
        vec![(HOME.to_owned(), format!("http://{home_addr}"))],
    )?;
    let users_node = start(USERS, &users, free_port()?, Vec::new())?;
    let user = format!("bench@{HOME}");
    let users_user = format!("bench@{USERS}");
    runtime.block_on(prepare_user(&home.url(), &user))?;
    let token = runtime.block_on(prepare_user(&users_node.url(), &users_user))?;

    let home_pid = home.pid().context("the home node has no process")?;
    // The last element: the upstream node whose CPU time is watched during the node's
    // rounds (a cached lookup should cost it nothing).
    let targets = [
        ("local lookup, public", &home, user.clone(), None, None),
        (
            "local lookup, bearer token",
            &users_node,
            users_user,
            Some(token.as_str()),
            None,
        ),
        (
            "cached remote lookup (front node)",
            &front,
            user,
            None,
            Some(home_pid),
        ),
    ];
    let mut results = Vec::new();
    for (name, node, address, token, upstream) in targets {
        let path = format!("/v1/lookup/{address}");
        let target = Target::get(node.addr(), &path, token);
        // The first lookup fills the front node's cache; the second is the answer measured.
        runtime.block_on(load::fetch(&target))?;
        let answer = runtime.block_on(load::fetch(&target))?;
        ensure!(
            answer.status == 200,
            "{name}: the lookup answered {}",
            answer.status
        );
        let content_type = answer
            .content_type
            .context("the lookup answer has no Content-Type")?;
        let body_file = dir.path().join("body");
        std::fs::write(&body_file, &answer.body).context("failed to write the answer's body")?;
        let floor = Floor::start(&floor_bin, &body_file, &content_type)?;
        let floor_answer = runtime.block_on(load::fetch(&Target::get(floor.addr, &path, token)))?;
        ensure!(
            floor_answer.body == answer.body
                && floor_answer.content_type.as_deref() == Some(content_type.as_str()),
            "{name}: the floor does not answer what the node answers"
        );
        let node_pid = node.pid().context("the node has no process")?;
        let node_url = format!("http://{}{path}", node.addr());
        let floor_url = format!("http://{}{path}", floor.addr);
        println!();
        println!("{name} ({} bytes of {content_type})", answer.body.len());
        println!(
            "{:>5} {:<6} {:>10} {:>9} {:>9} {:>13} {:>7}",
            "round", "server", "req/s", "p50 us", "p99 us", "cpu us/req", "errors"
        );
        round(
            floor.child.id(),
            &floor_url,
            token,
            None,
            load.connections,
            load.warmup,
            tck,
        )?;
        round(
            node_pid,
            &node_url,
            token,
            None,
            load.connections,
            load.warmup,
            tck,
        )?;
        let mut result = TargetResult {
            name,
            body_bytes: answer.body.len(),
            floor: Vec::new(),
            node: Vec::new(),
            upstream_cpu_us_per_request: None,
        };
        let mut upstream_ticks = 0;
        for r in 1..=load.rounds {
            let floor_first = r % 2 == 1;
            for is_floor in [floor_first, !floor_first] {
                let (pid, url, side) = if is_floor {
                    (floor.child.id(), &floor_url, "floor")
                } else {
                    (node_pid, &node_url, "node")
                };
                let upstream_before = upstream.map(cpu_ticks).transpose()?;
                let w = round(pid, url, token, None, load.connections, load.duration, tck)?;
                if let (Some(pid), Some(before), false) = (upstream, upstream_before, is_floor) {
                    upstream_ticks += cpu_ticks(pid)? - before;
                }
                println!(
                    "{r:>5} {side:<6} {:>10.0} {:>9.0} {:>9.0} {:>13.2} {:>7}",
                    w.rps, w.p50_us, w.p99_us, w.cpu_us_per_request, w.errors
                );
                if is_floor {
                    result.floor.push(w);
                } else {
                    result.node.push(w);
                }
            }
        }
        if upstream.is_some() {
            let requests: u64 = result.node.iter().map(|w| w.requests).sum();
            let us = upstream_ticks as f64 / tck * 1e6 / requests.max(1) as f64;
            println!(
                "      upstream (home node) CPU during the node's rounds: {us:.3} us per request"
            );
            result.upstream_cpu_us_per_request = Some(us);
        }
        results.push(result);
    }
    println!();
    println!(
        "cold remote lookups: {cold_samples} fresh addresses, then {herd} concurrent lookups of one"
    );
    let cold = runtime.block_on(cold(
        home.addr(),
        &home.url(),
        front.addr(),
        cold_samples,
        herd,
    ))?;
    drop((home, front, users_node));
    Ok((results, cold))
}

/// A binary of this package next to the running one (`cargo build -p pd-bench --bins`).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to find the running executable")?;
    let path = exe
        .parent()
        .context("the executable has no directory")?
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build -p pd-bench --bins` (and --release for figures)",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 8s test @ http://127.0.0.1:1/v1/lookup/a@b\n  1 threads and 64 connections\n\
            \x20 Latency Distribution\n     50%  512.00us\n     75%  700.00us\n     90%    1.00ms\n     99%    1.23ms\n\
            \x20 123456 requests in 8.00s, 50.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 5\nRequests/sec:  15432.10\nTransfer/sec:      6.25MB\n";
        let (rps, requests, p50, p99, errors) = parse_wrk(text).unwrap();
        assert_eq!(rps, 15432.10);
        assert_eq!(requests, 123_456);
        assert_eq!(p50, 512.0);
        assert_eq!(p99, 1230.0);
        assert_eq!(errors, 8);
        assert!(parse_wrk("nothing here").is_err());
    }
}

/// Cold remote lookups through the front node.
#[derive(Debug, Clone)]
pub(crate) struct ColdResult {
    /// Lookups of a different cold address each.
    pub(crate) samples: usize,
    /// Median and 99th percentile of one direct lookup at the home node (one upstream round
    /// trip's worth), and of the cold lookup through the front node, in microseconds.
    pub(crate) direct: Percentiles,
    pub(crate) cold: Percentiles,
    /// Median and 99th percentile of (cold - direct) per address.
    pub(crate) added: Percentiles,
    /// Concurrent lookups of one cold address, all answered 200.
    pub(crate) herd: usize,
    pub(crate) herd_ok: usize,
    pub(crate) herd_elapsed: Duration,
    /// Lookups the home node counted while the herd ran.
    pub(crate) herd_upstream_lookups: u64,
    /// Upstream requests the front node counted while the herd ran.
    pub(crate) herd_upstream_requests: u64,
}

/// The sum of the counters named `name` (all label sets) in a node's `/metrics`.
async fn counter(addr: std::net::SocketAddr, name: &str) -> anyhow::Result<u64> {
    let answer = load::fetch(&Target::get(addr, pd_proto::paths::METRICS, None)).await?;
    ensure!(answer.status == 200, "/metrics answered {}", answer.status);
    let text = String::from_utf8_lossy(&answer.body);
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += value;
        }
    }
    Ok(sum as u64)
}

/// Measures cold remote lookups: for `samples` fresh addresses of the home node, one lookup
/// at the home node over a kept-alive connection, then the first lookup of the address
/// through the front node; then `herd` concurrent first lookups of one more fresh address
/// through the front node, counting the lookups the home node served meanwhile.
async fn cold(
    home: std::net::SocketAddr,
    home_url: &str,
    front: std::net::SocketAddr,
    samples: usize,
    herd: usize,
) -> anyhow::Result<ColdResult> {
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut direct_conn = load::Conn::connect(home).await?;
    let mut front_conn = load::Conn::connect(front).await?;
    let (mut direct, mut cold, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        let address = format!("cold{tag}n{i}@{HOME}");
        prepare_user(home_url, &address).await?;
        let path = format!("/v1/lookup/{address}");
        let t = std::time::Instant::now();
        let a = direct_conn
            .exchange(&Target::get(home, &path, None), false)
            .await?;
        let d = t.elapsed();
        let t = std::time::Instant::now();
        let b = front_conn
            .exchange(&Target::get(front, &path, None), false)
            .await?;
        let c = t.elapsed();
        ensure!(
            a.status == 200 && b.status == 200,
            "cold lookup of {address}: home answered {}, front answered {}",
            a.status,
            b.status
        );
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        direct.push(us(d));
        cold.push(us(c));
        added.push(us(c.saturating_sub(d)));
    }
    let address = format!("herd{tag}@{HOME}");
    prepare_user(home_url, &address).await?;
    let target = Target::get(front, &format!("/v1/lookup/{address}"), None);
    let mut conns = Vec::with_capacity(herd);
    for _ in 0..herd {
        conns.push(load::Conn::connect(front).await?);
    }
    let before = counter(home, "pd_lookups_total").await?;
    let front_before = counter(front, "pd_federation_lookup_upstream_requests_total").await?;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(herd + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let target = target.clone();
        let barrier = std::sync::Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            conn.exchange(&target, false).await.map(|a| a.status)
        });
    }
    barrier.wait().await;
    let start = std::time::Instant::now();
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Ok(200)) = joined {
            ok += 1;
        }
    }
    let herd_elapsed = start.elapsed();
    // The counter request itself is not a lookup.
    let after = counter(home, "pd_lookups_total").await?;
    let front_after = counter(front, "pd_federation_lookup_upstream_requests_total").await?;
    Ok(ColdResult {
        samples,
        direct: Percentiles::of(direct),
        cold: Percentiles::of(cold),
        added: Percentiles::of(added),
        herd,
        herd_ok: ok,
        herd_elapsed,
        herd_upstream_lookups: after - before,
        herd_upstream_requests: front_after - front_before,
    })
}
