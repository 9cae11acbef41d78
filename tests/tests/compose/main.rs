//! Multi-node federation in docker compose: three real nodes and three client containers,
//! built from this workspace as static binaries on `FROM scratch` images
//! (deploy/Dockerfile), on private networks, with HTTPS everywhere under a CA made at test
//! time (its files: tests/fixtures/compose).
//!
//! A custom harness (`harness = false`): the binaries and images are built once, one
//! cluster serves every scenario in turn, each scenario is reported like a test
//! (`test NAME ... ok`), the cluster is healed between scenarios, container logs are printed
//! when one fails, and the project is torn down (`down -v`, images removed) at the end
//! whatever happened. Arguments that do not start with `-` filter scenarios by name
//! (`--exact` for whole names), `--list` lists them. Without Docker the scenarios are skipped
//! locally but fail when `CI=true`. `PD_COMPOSE_KEEP=1` leaves the project running.

mod cluster;
mod pki;
mod scenarios;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use cluster::Cluster;

type Scenario = (&'static str, fn(&mut Cluster));

const SCENARIOS: [Scenario; 7] = [
    (
        "users_on_different_nodes_register_and_find_each_other",
        scenarios::cross_node_lookups,
    ),
    (
        "trust_community_federates_and_the_outsider_is_refused_both_ways",
        scenarios::trust,
    ),
    (
        "node_loss_serves_stale_fails_cold_lookups_fast_and_recovers",
        scenarios::node_loss,
    ),
    (
        "partition_serves_stale_fails_cold_lookups_fast_and_recovers",
        scenarios::partition,
    ),
    (
        "sigkill_right_after_writes_loses_nothing_acknowledged",
        scenarios::durability,
    ),
    (
        "rolling_restart_fails_no_lookup_a_stale_answer_covers",
        scenarios::rolling_restart,
    ),
    (
        "a_client_behind_nat_is_reached_through_its_home_relay",
        scenarios::relay_behind_nat,
    ),
];

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected: Vec<Scenario> = SCENARIOS
        .into_iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let plural = if selected.len() == 1 { "" } else { "s" };
    println!("\nrunning {} test{plural}", selected.len());
    if selected.is_empty() {
        println!("\ntest result: ok. 0 passed; 0 failed\n");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let cluster = catch_unwind(Cluster::start);
    let mut cluster = match cluster {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            println!("docker or compose not available: the compose scenarios are skipped");
            println!(
                "\ntest result: ok. 0 passed; 0 failed; {} skipped\n",
                selected.len()
            );
            return ExitCode::SUCCESS;
        }
        Err(_) => {
            println!("\ntest result: FAILED. the compose cluster did not start\n");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = Vec::new();
    for (i, (name, scenario)) in selected.iter().enumerate() {
        if i > 0 && catch_unwind(AssertUnwindSafe(|| cluster.heal())).is_err() {
            println!("test {name} ... FAILED (the cluster could not be healed)");
            failed.push(*name);
            continue;
        }
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(&mut cluster)));
        let secs = began.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({secs:.1}s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.1}s)");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        cluster.print_logs();
    }
    drop(cluster);
    let passed = selected.len() - failed.len();
    let total = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed; finished in {total:.0}s\n");
        ExitCode::SUCCESS
    } else {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
        println!(
            "\ntest result: FAILED. {passed} passed; {} failed; finished in {total:.0}s\n",
            failed.len()
        );
        ExitCode::FAILURE
    }
}
