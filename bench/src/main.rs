//! `pd-bench`: the node's figures, each next to a baseline measured in the same run, printed
//! as tables and written to a JSON file.
//!
//! Sections (all by default, `--sections` picks some; `--quick` is a short smoke run):
//! - `lookups`: lookups per second of the real node against the bare HTTP stack, in-process;
//! - `publishes`: durable signed presence publishes per second through the node's HTTP API,
//!   sequential and concurrent, on SQLite and PostgreSQL, next to the disk's fsync rate;
//! - `external`: `wrk` pinned to one core against `pd-server` processes and the bare floor
//!   `pd-floor` pinned to the other, with the server's CPU time per request; cold remote
//!   lookups;
//! - `connect`: `chat connect` from process start to the first message delivered at the
//!   listener, cold and warm, two federated nodes;
//! - `scale`: a node on a store filled with 10,000 and 1,000,000 users: start-up time,
//!   lookups of random users, resident memory.
//!
//! For each in-process lookup scenario (with a session token, public) it starts a node with
//! one published user and a bare axum server answering the same bytes, then runs closed-loop
//! load against each in alternating rounds, so that noise from the rest of the machine falls
//! on both. The servers run on one runtime (a thread per core), the load generator on
//! another.

mod connect;
mod external;
mod load;
mod publish;
mod report;
mod scale;
mod setup;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, ValueEnum};
use pd_server::config::{LogFormat, LookupAccess};
use serde_json::json;
use tokio::runtime::{Builder, Runtime};

use crate::load::{RoundResult, Target};
use crate::setup::{Baseline, Node};

/// The share of the bare stack's requests per second that node lookups should reach.
const TARGET_RATIO: f64 = 0.85;

/// Measures the node's figures, each against a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Length of each measured round.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured rounds per server and scenario; baseline and node rounds alternate.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Unmeasured load on each server before its first round.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Worker threads of the load generator (the servers get one per core).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Set up the node's own logging (text, `info` unless `RUST_LOG` says otherwise, on
    /// stderr), as the `pd-server` binary does. Off by default: no subscriber at all.
    #[arg(long)]
    node_logging: bool,
    /// A short smoke run: rounds of 1 s, one round, 200 ms warm-up, whatever else is given.
    #[arg(long)]
    quick: bool,
    /// The sections to run (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', default_values_t = [Section::Publishes, Section::External, Section::Scale, Section::Connect, Section::Lookups])]
    sections: Vec<Section>,
    /// Connections of `wrk` in the external section.
    #[arg(long, default_value_t = 64)]
    wrk_connections: usize,
    /// Length of each round of the external section.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    wrk_duration: Duration,
    /// Cold remote lookups timed in the external section, a fresh address each.
    #[arg(long, default_value_t = 200)]
    cold_samples: usize,
    /// Concurrent lookups of one cold address in the external section.
    #[arg(long, default_value_t = 1000)]
    herd: usize,
    /// Numbers of users of the scale section.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 1_000_000])]
    scale_users: Vec<usize>,
    /// Cold `chat connect` samples (new nodes and chat homes each).
    #[arg(long, default_value_t = 5)]
    connect_cold: usize,
    /// Warm `chat connect` samples after each cold one.
    #[arg(long, default_value_t = 4)]
    connect_warm: usize,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "pd-bench.json")]
    json: PathBuf,
    /// Concurrent clients of the concurrent publish run, each with its own account.
    #[arg(long, default_value_t = 64)]
    publish_clients: usize,
    /// A PostgreSQL server for the publish runs on PostgreSQL (`.ci/postgres.sh start` gives
    /// one); without it those runs are skipped and the report says so.
    #[arg(long, env = "PD_TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Local lookups, in-process load against the node and the bare stack.
    Lookups,
    /// Durable publishes on SQLite and PostgreSQL, and the disk's fsync rate.
    Publishes,
    /// `wrk` and the server processes pinned to a core each; CPU time per request.
    External,
    /// A node on a store filled with many users.
    Scale,
    /// `chat connect` to the first delivered message.
    Connect,
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Section::Lookups => "lookups",
            Section::Publishes => "publishes",
            Section::External => "external",
            Section::Scale => "scale",
            Section::Connect => "connect",
        };
        f.write_str(name)
    }
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    access: LookupAccess,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "users: Authorization: Bearer <token>",
        access: LookupAccess::Users,
    },
    Scenario {
        name: "public: no token",
        access: LookupAccess::Public,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Baseline,
    Node,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Node => "node",
        }
    }
}

/// The figures of one scenario.
#[derive(Debug)]
struct Summary {
    scenario: Scenario,
    baseline_rps: f64,
    node_rps: f64,
    pair_ratios: Vec<f64>,
    errors: u64,
}

impl Summary {
    /// The median of the per-round ratios. Each round's node run sits next to a baseline
    /// run, so the pair shares the machine's state of the moment; a ratio of the two
    /// medians would mix rounds taken under different load.
    fn ratio(&self) -> f64 {
        median(self.pair_ratios.clone())
    }
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.duration = Duration::from_secs(1);
        cli.rounds = 1;
        cli.warmup = Duration::from_millis(200);
        cli.wrk_duration = Duration::from_secs(1);
        cli.cold_samples = cli.cold_samples.min(20);
        cli.scale_users = vec![1_000, 10_000];
        cli.connect_cold = 1;
        cli.connect_warm = 2;
    }
    ensure!(cli.connections > 0, "--connections must be at least 1");
    ensure!(cli.rounds > 0, "--rounds must be at least 1");
    ensure!(
        cli.client_threads > 0,
        "--client-threads must be at least 1"
    );
    if cli.node_logging {
        pd_server::cli::init_tracing(LogFormat::Text);
    }
    let servers = Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()
        .context("failed to start the servers' runtime")?;
    let clients = Builder::new_multi_thread()
        .worker_threads(cli.client_threads)
        .enable_all()
        .thread_name("load")
        .build()
        .context("failed to start the load generator's runtime")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "pd-bench: {} rounds of {} per server and scenario, {} connections, {} warm-up, \
         {} load thread(s), {cores} core(s), node logging {}",
        cli.rounds,
        humantime::format_duration(cli.duration),
        cli.connections,
        humantime::format_duration(cli.warmup),
        cli.client_threads,
        if cli.node_logging { "on" } else { "off" },
    );
    let mut figures = serde_json::Map::new();
    figures.insert(
        "settings".into(),
        json!({
            "duration_s": cli.duration.as_secs_f64(),
            "rounds": cli.rounds,
            "warmup_s": cli.warmup.as_secs_f64(),
            "connections": cli.connections,
            "cores": cores,
            "quick": cli.quick,
        }),
    );
    let mut errors = 0;
    if cli.sections.contains(&Section::Publishes) {
        errors += publishes(&cli, &servers, &mut figures)?;
    }
    if cli.sections.contains(&Section::External) {
        errors += external(&cli, &clients, &mut figures)?;
    }
    if cli.sections.contains(&Section::Scale) {
        errors += scale(&cli, &clients, &mut figures)?;
    }
    if cli.sections.contains(&Section::Connect) {
        println!();
        println!(
            "chat connect: process start to the first message printed by the listener \
             (two federated nodes, loopback)"
        );
        let c = connect::section(cli.connect_cold, cli.connect_warm)?;
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        println!();
        println!(
            "{:<6} {:>8} {:>10} {:>10}",
            "chat", "samples", "median ms", "max ms"
        );
        for (name, v) in [("cold", &c.cold_ms), ("warm", &c.warm_ms)] {
            println!(
                "{name:<6} {:>8} {:>10.1} {:>10.1}",
                v.len(),
                median(v.clone()),
                max(v)
            );
        }
        println!("targets: cold under 50 ms, warm under 20 ms");
        figures.insert(
            "chat_connect".into(),
            json!({
                "cold_ms": c.cold_ms,
                "warm_ms": c.warm_ms,
                "cold_median_ms": median(c.cold_ms.clone()),
                "warm_median_ms": median(c.warm_ms.clone()),
            }),
        );
    }
    if cli.sections.contains(&Section::Lookups) {
        errors += lookups(&cli, &servers, &clients, &mut figures)?;
    }
    report::write_json(&cli.json, &serde_json::Value::Object(figures))?;
    println!();
    println!("figures written to {}", cli.json.display());
    if errors > 0 {
        bail!("{errors} requests failed or were not answered 200; the figures are not valid");
    }
    Ok(())
}

/// The publish section: prints its table, adds its figures, returns the failed publishes.
fn publishes(
    cli: &Cli,
    servers: &Runtime,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<u64> {
    println!();
    println!(
        "publishes: signed presence records, PUT through the node's HTTP API, counted when \
         answered (after commit); 1 and {} clients, {} each",
        cli.publish_clients,
        humantime::format_duration(cli.duration),
    );
    let mut stores = vec![publish::Store::Sqlite];
    match &cli.postgres_url {
        Some(url) => stores.push(publish::Store::Postgres(url.clone())),
        None => println!("  postgres: skipped (no --postgres-url / PD_TEST_POSTGRES_URL)"),
    }
    let (fsync, results) = publish::section(
        servers,
        &stores,
        cli.publish_clients,
        cli.warmup,
        cli.duration,
    )?;
    println!();
    println!(
        "{:<10} {:>8} {:>13} {:>8} {:>8} {:>10} {:>7}",
        "store", "clients", "publishes/s", "p50 us", "p99 us", "÷ fsync/s", "errors"
    );
    let mut runs = Vec::new();
    for r in &results {
        println!(
            "{:<10} {:>8} {:>13.0} {:>8} {:>8} {:>10.2} {:>7}",
            r.store,
            r.clients,
            r.per_second(),
            r.latency.p50,
            r.latency.p99,
            r.per_second() / fsync,
            r.errors
        );
        runs.push(json!({
            "store": r.store,
            "clients": r.clients,
            "publishes_per_s": r.per_second(),
            "p50_us": r.latency.p50,
            "p99_us": r.latency.p99,
            "ratio_to_fsync_rate": r.per_second() / fsync,
            "errors": r.errors,
        }));
    }
    println!("fsync baseline: {fsync:.0} write+fdatasync/s in the same data directory");
    figures.insert(
        "publishes".into(),
        json!({
            "fsync_per_s": fsync,
            "postgres": if cli.postgres_url.is_some() { "measured" } else { "skipped" },
            "runs": runs,
        }),
    );
    Ok(results.iter().map(|r| r.errors).sum())
}

/// The external load generator section: prints its table, adds its figures, returns the
/// failed requests.
fn external(
    cli: &Cli,
    runtime: &Runtime,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<u64> {
    println!();
    println!(
        "external: wrk (1 thread, {} connections) on core 0, the server on core 1, rounds of {}; \
         cpu us/req = server utime+stime / requests",
        cli.wrk_connections,
        humantime::format_duration(cli.wrk_duration),
    );
    ensure!(
        cli.cold_samples > 0 && cli.herd > 0,
        "--cold-samples and --herd must be at least 1"
    );
    let (results, cold) = external::section(
        runtime,
        external::Load {
            connections: cli.wrk_connections,
            duration: cli.wrk_duration,
            warmup: cli.warmup.max(Duration::from_secs(1)),
            rounds: cli.rounds,
        },
        cli.cold_samples,
        cli.herd,
    )?;
    println!();
    println!(
        "cold remote lookup ({} addresses)     p50 us   p99 us",
        cold.samples
    );
    for (name, p) in [
        ("direct at the home node (1 round trip)", cold.direct),
        ("first lookup through the front node", cold.cold),
        ("added over the round trip", cold.added),
    ] {
        println!("  {name:<40} {:>7} {:>8}", p.p50, p.p99);
    }
    println!(
        "  {} concurrent lookups of one cold address: {} answered 200 in {:.1} ms; \
         the front node sent {} upstream request(s), the home node served {} lookup(s) \
         (target: 1)",
        cold.herd,
        cold.herd_ok,
        cold.herd_elapsed.as_secs_f64() * 1e3,
        cold.herd_upstream_requests,
        cold.herd_upstream_lookups
    );
    figures.insert(
        "cold_remote".into(),
        json!({
            "samples": cold.samples,
            "direct_us": cold.direct,
            "cold_us": cold.cold,
            "added_us": cold.added,
            "herd": cold.herd,
            "herd_ok": cold.herd_ok,
            "herd_ms": cold.herd_elapsed.as_secs_f64() * 1e3,
            "herd_upstream_lookups": cold.herd_upstream_lookups,
            "herd_upstream_requests": cold.herd_upstream_requests,
        }),
    );
    println!();
    println!(
        "{:<36} {:>11} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "target (medians)",
        "floor req/s",
        "node req/s",
        "÷ floor",
        "node cpu us",
        "floor cpu us",
        "p99 ÷ floor"
    );
    let mut out = Vec::new();
    let mut errors = 0;
    for t in &results {
        let med = |rounds: &[external::WrkRound], f: fn(&external::WrkRound) -> f64| {
            median(rounds.iter().map(f).collect())
        };
        let pairs: Vec<f64> = t
            .floor
            .iter()
            .zip(&t.node)
            .map(|(f, n)| n.rps / f.rps)
            .collect();
        let ratio = median(pairs.clone());
        let p99_ratio = med(&t.node, |r| r.p99_us) / med(&t.floor, |r| r.p99_us);
        let node_cpu = med(&t.node, |r| r.cpu_us_per_request);
        let floor_cpu = med(&t.floor, |r| r.cpu_us_per_request);
        println!(
            "{:<36} {:>11.0} {:>10.0} {:>8.3} {:>12.2} {:>12.2} {:>10.2}",
            t.name,
            med(&t.floor, |r| r.rps),
            med(&t.node, |r| r.rps),
            ratio,
            node_cpu,
            floor_cpu,
            p99_ratio,
        );
        let rounds = |rounds: &[external::WrkRound]| -> Vec<serde_json::Value> {
            rounds
                .iter()
                .map(|r| {
                    json!({
                        "rps": r.rps, "requests": r.requests, "p50_us": r.p50_us,
                        "p99_us": r.p99_us, "cpu_us_per_request": r.cpu_us_per_request,
                        "errors": r.errors,
                    })
                })
                .collect()
        };
        errors += t.floor.iter().chain(&t.node).map(|r| r.errors).sum::<u64>();
        out.push(json!({
            "target": t.name,
            "body_bytes": t.body_bytes,
            "ratio": ratio,
            "pair_ratios": pairs,
            "cpu_ratio": node_cpu / floor_cpu,
            "node_cpu_us_per_request": node_cpu,
            "floor_cpu_us_per_request": floor_cpu,
            "upstream_cpu_us_per_request": t.upstream_cpu_us_per_request,
            "p99_ratio": p99_ratio,
            "floor": rounds(&t.floor),
            "node": rounds(&t.node),
        }));
    }
    println!(
        "÷ floor: median of the per-round ratios; targets: >= 0.85 (bearer >= 0.8), p99 within 1.5x"
    );
    figures.insert("external".into(), json!(out));
    Ok(errors + (cold.herd - cold.herd_ok) as u64)
}

/// The scale section: prints its table, adds its figures, returns the failed requests.
fn scale(
    cli: &Cli,
    runtime: &Runtime,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<u64> {
    ensure!(
        cli.scale_users.iter().all(|&n| n > 0),
        "--scale-users must all be at least 1"
    );
    println!();
    println!(
        "scale: users written through the store, then a pd-server process on it; wrk looks up \
         a random user each request (core 0, {} connections), the node on core 1",
        cli.wrk_connections
    );
    let results = scale::section(
        runtime,
        &cli.scale_users,
        external::Load {
            connections: cli.wrk_connections,
            duration: cli.wrk_duration,
            warmup: cli.warmup.max(Duration::from_secs(1)),
            rounds: cli.rounds,
        },
    )?;
    println!();
    println!(
        "{:>10} {:>10} {:>12} {:>10} {:>9} {:>12} {:>8} {:>10}",
        "users", "req/s", "÷ smallest", "cpu us", "p99 us", "start-up ms", "RSS MB", "fill s"
    );
    let rps = |r: &scale::ScaleResult| median(r.rounds.iter().map(|w| w.rps).collect());
    let base = results.first().map(rps).unwrap_or(f64::NAN);
    let mut out = Vec::new();
    let mut errors = 0;
    for r in &results {
        let cpu = median(r.rounds.iter().map(|w| w.cpu_us_per_request).collect());
        let p99 = median(r.rounds.iter().map(|w| w.p99_us).collect());
        println!(
            "{:>10} {:>10.0} {:>12.3} {:>10.2} {:>9.0} {:>12.0} {:>8.1} {:>10.1}",
            r.users,
            rps(r),
            rps(r) / base,
            cpu,
            p99,
            r.startup.as_secs_f64() * 1e3,
            r.rss_kib as f64 / 1024.0,
            r.fill.as_secs_f64(),
        );
        errors += r.rounds.iter().map(|w| w.errors).sum::<u64>();
        out.push(json!({
            "users": r.users,
            "rps": rps(r),
            "ratio_to_smallest": rps(r) / base,
            "cpu_us_per_request": cpu,
            "p99_us": p99,
            "startup_ms": r.startup.as_secs_f64() * 1e3,
            "rss_kib": r.rss_kib,
            "fill_s": r.fill.as_secs_f64(),
        }));
    }
    println!(
        "targets: the largest at most 10% slower than the smallest, under 300 MB, start-up under 2 s"
    );
    figures.insert("scale".into(), json!(out));
    Ok(errors)
}

/// The in-process lookup section: prints its table, adds its figures, returns the errors.
fn lookups(
    cli: &Cli,
    servers: &Runtime,
    clients: &Runtime,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<u64> {
    let mut summaries = Vec::new();
    for scenario in SCENARIOS {
        summaries.push(run_scenario(cli, scenario, servers, clients)?);
    }
    println!();
    println!(
        "{:<38} {:>14} {:>11} {:>14} {:>13}",
        "scenario (medians)", "baseline req/s", "node req/s", "node/baseline", "pair range"
    );
    for s in &summaries {
        let (low, high) = spread(&s.pair_ratios);
        println!(
            "{:<38} {:>14.0} {:>11.0} {:>14.3} {:>13}",
            s.scenario.name,
            s.baseline_rps,
            s.node_rps,
            s.ratio(),
            format!("{low:.2}-{high:.2}"),
        );
    }
    println!(
        "node/baseline: median of the per-round ratios (each round runs both servers back to back)"
    );
    if let [users, public] = summaries.as_slice() {
        // Each scenario is normalised by its own baseline, so the comparison holds even
        // when the machine was busier during one scenario than the other.
        println!(
            "authentication: users/public node/baseline = {:.3}; target for users: >= {TARGET_RATIO}",
            users.ratio() / public.ratio()
        );
    }
    let scenarios: Vec<_> = summaries
        .iter()
        .map(|s| {
            json!({
                "scenario": s.scenario.name,
                "baseline_rps": s.baseline_rps,
                "node_rps": s.node_rps,
                "ratio": s.ratio(),
                "pair_ratios": s.pair_ratios,
                "errors": s.errors,
            })
        })
        .collect();
    figures.insert("lookups_in_process".into(), json!(scenarios));
    Ok(summaries.iter().map(|s| s.errors).sum())
}

fn run_scenario(
    cli: &Cli,
    scenario: Scenario,
    servers: &Runtime,
    clients: &Runtime,
) -> anyhow::Result<Summary> {
    let (node, baseline) = servers.block_on(async {
        let node = Node::start(scenario.access).await?;
        let baseline =
            Baseline::start(node.body.clone(), &node.content_type, node.token.as_deref()).await?;
        anyhow::Ok((node, baseline))
    })?;
    let measured = clients.block_on(async {
        let same = load::fetch(&baseline.target).await?;
        ensure!(
            same.status == 200
                && same.body == node.body
                && same.content_type.as_deref() == Some(node.content_type.as_str()),
            "the baseline does not answer what the node answers"
        );
        println!();
        println!(
            "{} ({} bytes of {})",
            scenario.name,
            node.body.len(),
            node.content_type
        );
        println!(
            "{:>5} {:<8} {:>10} {:>8} {:>8} {:>7}",
            "round", "server", "req/s", "p50 us", "p99 us", "errors"
        );
        load::round(&baseline.target, cli.connections, cli.warmup).await?;
        load::round(&node.target, cli.connections, cli.warmup).await?;
        let mut results = Vec::new();
        for round in 1..=cli.rounds {
            // Alternate which server goes first, so a slow stretch of the machine does not
            // always land on the same one.
            let order = if round % 2 == 1 {
                [Side::Baseline, Side::Node]
            } else {
                [Side::Node, Side::Baseline]
            };
            for side in order {
                let target: &Target = match side {
                    Side::Baseline => &baseline.target,
                    Side::Node => &node.target,
                };
                let result = load::round(target, cli.connections, cli.duration).await?;
                println!(
                    "{round:>5} {:<8} {:>10.0} {:>8} {:>8} {:>7}",
                    side.name(),
                    result.rps(),
                    result.latency_us(0.50),
                    result.latency_us(0.99),
                    result.errors,
                );
                results.push((round, side, result));
            }
        }
        anyhow::Ok(results)
    });
    let stopped = servers.block_on(async {
        let node = node.shutdown().await;
        let baseline = baseline.shutdown().await;
        node.and(baseline)
    });
    let results = measured?;
    stopped?;
    Ok(summarise(scenario, &results))
}

fn summarise(scenario: Scenario, results: &[(usize, Side, RoundResult)]) -> Summary {
    let rps = |side: Side| -> Vec<f64> {
        results
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(_, _, r)| r.rps())
            .collect()
    };
    let baseline = rps(Side::Baseline);
    let node = rps(Side::Node);
    let pair_ratios = baseline.iter().zip(&node).map(|(b, n)| n / b).collect();
    Summary {
        scenario,
        baseline_rps: median(baseline),
        node_rps: median(node),
        pair_ratios,
        errors: results.iter().map(|(_, _, r)| r.errors).sum(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
