//! `pd-bench`: lookups per second of the real node against the bare HTTP stack, both
//! measured in the same run, reported as a ratio.
//!
//! For each scenario (lookups with a session token, public lookups) it starts a node with
//! one published user and a bare axum server answering the same bytes, then runs closed-loop
//! load against each in alternating rounds, so that noise from the rest of the machine falls
//! on both. The servers run on one runtime (a thread per core), the load generator on
//! another.

mod load;
mod setup;

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use pd_server::config::{LogFormat, LookupAccess};
use tokio::runtime::{Builder, Runtime};

use crate::load::{RoundResult, Target};
use crate::setup::{Baseline, Node};

/// The share of the bare stack's requests per second that node lookups should reach.
const TARGET_RATIO: f64 = 0.85;

/// Measures the node's lookups per second against the bare HTTP stack in the same run.
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
    let cli = Cli::parse();
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
    let mut summaries = Vec::new();
    for scenario in SCENARIOS {
        summaries.push(run_scenario(&cli, scenario, &servers, &clients)?);
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
    let errors: u64 = summaries.iter().map(|s| s.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed or were not answered 200; the figures are not valid");
    }
    Ok(())
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
