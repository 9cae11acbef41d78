//! The crash-durability harness: several concurrent clients register accounts, publish and
//! withdraw presence records and rotate keys against a real `pd-server` process, which is
//! killed with SIGKILL at a random moment of every trial and started again on the same
//! store. After each restart every account is read back and compared with what the node
//! acknowledged: an acknowledged write that is missing (or a state that no sequence of the
//! sent operations explains) is a loss.
//!
//! A write whose answer never arrived (it was in flight at the kill) may or may not have
//! been committed; both outcomes are accepted, and the clients continue from whichever the
//! node reports. The node must also come back healthy on the same store every time.
//!
//! Run by `pd-crash` (`tests/src/bin/pd-crash.rs`) and, with a few kills, by the
//! end-to-end test suite.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use pd_client::{ClientError, ClientOptions, PdClient};
use pd_proto::records::{Endpoint, Presence, Registration, Rotation, Withdrawal};
use pd_proto::wire::{RegisterRequest, RotateRequest};
use pd_proto::{Address, ProblemType, SecretKey, Signed};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::{Node, NodeOptions};

/// Where the node under test keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded SQLite database in the node's data directory.
    Sqlite,
    /// A PostgreSQL database, given by its `postgres://` URL (it must be empty).
    Postgres(String),
}

/// How a crash run is driven.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// The store.
    pub backend: Backend,
    /// How many times the node is killed (one trial per kill).
    pub kills: usize,
    /// Concurrent clients, each with its own accounts.
    pub clients: usize,
    /// Accounts per client.
    pub accounts_per_client: usize,
    /// The longest load phase of a trial before the kill; each trial picks a moment
    /// uniformly between a tenth of it and all of it.
    pub max_load: Duration,
    /// Seed of the random choices (operations, kill moments).
    pub seed: u64,
}

/// What a crash run found.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    /// Trials run (each ends with a SIGKILL and a restart).
    pub trials: usize,
    /// Writes the node acknowledged, over all trials.
    pub acknowledged: u64,
    /// Writes the node refused (the harness sends only valid ones, so this should be 0).
    pub refused: u64,
    /// Writes in flight at a kill (no answer), later found committed.
    pub in_flight_committed: u64,
    /// Writes in flight at a kill (or sent after it), later found not committed.
    pub in_flight_lost: u64,
    /// Acknowledged writes missing after a restart, or states no sent operation explains.
    pub losses: Vec<String>,
    /// Slowest restart (process start until `/healthz` answers ok).
    pub slowest_restart: Duration,
    /// Total time of the run.
    pub elapsed: Duration,
}

/// A write sent without an answer (in flight when the node died).
#[derive(Debug, Clone)]
enum Pending {
    Register,
    Publish(u64),
    Withdraw,
    Rotate(Box<SecretKey>),
}

/// One account as its client knows it: what the node acknowledged, and the write that was
/// in flight at the last kill, if any.
#[derive(Debug)]
struct Account {
    address: Address,
    key: SecretKey,
    registered: bool,
    /// `seq` of the acknowledged presence record, `None` after a withdrawal or rotation.
    presence: Option<u64>,
    pending: Option<Pending>,
}

/// Sequence numbers: microsecond timestamps, strictly increasing in this process.
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

const DOMAIN: &str = "crash.test";

/// Runs the harness: starts a node on a fresh store in `work_dir`, runs `options.kills`
/// trials and returns the report (losses included; the caller decides what fails).
pub fn run(options: &CrashOptions, work_dir: &Path) -> anyhow::Result<CrashReport> {
    let started = Instant::now();
    let config = work_dir.join("config.toml");
    let store = match &options.backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres(url) => format!("store = {url:?}\n"),
    };
    std::fs::write(
        &config,
        format!(
            "{store}lookup_access = \"public\"\n\n[rate_limit]\nwrites_per_second = 100000\nburst = 100000\n"
        ),
    )
    .context("failed to write the node's configuration")?;
    let data_dir = work_dir.join("data");
    std::fs::create_dir_all(&data_dir).context("failed to create the data directory")?;
    let node_options = NodeOptions {
        config: Some(config),
        ..NodeOptions::default()
    };
    let mut node = Node::start_with(&data_dir, DOMAIN, node_options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the client runtime")?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut clients: Vec<Vec<Account>> = (0..options.clients)
        .map(|c| {
            (0..options.accounts_per_client)
                .map(|a| Account {
                    address: Address::parse(&format!("c{c}a{a}@{DOMAIN}"))
                        .expect("a valid address"),
                    key: SecretKey::generate(),
                    registered: false,
                    presence: None,
                    pending: None,
                })
                .collect()
        })
        .collect();
    let mut report = CrashReport::default();
    for trial in 0..options.kills {
        let client = PdClient::new(
            node.url().parse()?,
            &ClientOptions::default().with_timeouts(Duration::from_secs(2), Duration::from_secs(5)),
        )?;
        let low = options.max_load / 10;
        let load = low
            + options
                .max_load
                .saturating_sub(low)
                .mul_f64(rng.r#gen::<f64>());
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = std::mem::take(&mut clients)
            .into_iter()
            .map(|accounts| {
                let client = client.clone();
                let stop = Arc::clone(&stop);
                let acknowledged = Arc::clone(&acknowledged);
                let refused = Arc::clone(&refused);
                let seed = rng.r#gen::<u64>();
                runtime.spawn(drive(client, accounts, stop, acknowledged, refused, seed))
            })
            .collect();
        std::thread::sleep(load);
        node.kill();
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            clients.push(runtime.block_on(task).context("a client task panicked")?);
        }
        report.acknowledged += acknowledged.load(Ordering::SeqCst);
        report.refused += refused.load(Ordering::SeqCst);

        let restart = Instant::now();
        node.restart()
            .with_context(|| format!("trial {trial}: the node did not come back"))?;
        report.slowest_restart = report.slowest_restart.max(restart.elapsed());
        let client = PdClient::new(node.url().parse()?, &ClientOptions::default())?;
        let health = runtime.block_on(client.health())?;
        if health.status != "ok" || health.store != "ok" {
            bail!("trial {trial}: the node restarted unhealthy: {health:?}");
        }
        for accounts in &mut clients {
            for account in accounts.iter_mut() {
                let outcome = runtime.block_on(check(&client, account))?;
                match outcome {
                    Check::Consistent => {}
                    Check::InFlightCommitted => report.in_flight_committed += 1,
                    Check::InFlightLost => report.in_flight_lost += 1,
                    Check::Loss(what) => report.losses.push(format!("trial {trial}: {what}")),
                }
            }
        }
        report.trials += 1;
    }
    node.kill();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One client: writes to its own accounts, one at a time, until `stop` is set and a write
/// fails (the node is gone).
async fn drive(
    client: PdClient,
    mut accounts: Vec<Account>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    seed: u64,
) -> Vec<Account> {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let index = rng.gen_range(0..accounts.len());
        let account = &mut accounts[index];
        let roll = rng.gen_range(0..100);
        let (pending, result) = write(&client, account, roll).await;
        match result {
            Ok(()) => {
                acknowledged.fetch_add(1, Ordering::SeqCst);
                apply(account, pending);
            }
            Err(WriteError::Refused(e)) => {
                // A refusal changes nothing. The harness only sends valid writes, so it
                // is counted and reported: it would mean the model of the harness is wrong.
                eprintln!("pd-crash: a write for {} was refused: {e}", account.address);
                refused.fetch_add(1, Ordering::SeqCst);
            }
            Err(WriteError::NoAnswer) => {
                account.pending = Some(pending);
                return accounts;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return accounts;
        }
    }
}

enum WriteError {
    /// The node answered with an error: nothing changed.
    Refused(ClientError),
    /// No answer: the write may or may not have been committed.
    NoAnswer,
}

/// Sends one write for `account`, chosen by `roll` (0-99) among those its state allows.
async fn write(
    client: &PdClient,
    account: &Account,
    roll: u32,
) -> (Pending, Result<(), WriteError>) {
    let address = &account.address;
    if !account.registered {
        let request = RegisterRequest {
            registration: Signed::sign(
                &account.key,
                &Registration {
                    address: address.clone(),
                    public_key: account.key.public(),
                    seq: seq(),
                },
            ),
            invite: None,
        };
        return (
            Pending::Register,
            classify(client.register(&request).await.map(drop)),
        );
    }
    match roll {
        0..=59 => {
            let seq = seq();
            let presence = Signed::sign(
                &account.key,
                &Presence {
                    address: address.clone(),
                    endpoints: vec![
                        Endpoint::parse(&format!("tcp://203.0.113.7:{}", 1000 + seq % 60_000))
                            .expect("a valid endpoint"),
                    ],
                    seq,
                    expires_at: seq / 1_000_000 + 3600,
                },
            );
            let result = client.publish_presence(address, &presence).await.map(drop);
            (Pending::Publish(seq), classify(result))
        }
        60..=79 => {
            let withdrawal = Signed::sign(
                &account.key,
                &Withdrawal {
                    address: address.clone(),
                    seq: seq(),
                },
            );
            (
                Pending::Withdraw,
                classify(client.withdraw(address, &withdrawal).await),
            )
        }
        _ => {
            let new_key = SecretKey::generate();
            let rotation = Signed::sign(
                &account.key,
                &Rotation {
                    address: address.clone(),
                    new_key: new_key.public(),
                    seq: seq(),
                },
            );
            let new_key_signature = rotation.countersign(&new_key, address);
            let request = RotateRequest {
                rotation,
                new_key_signature,
            };
            let result = client.rotate(address, &request).await.map(drop);
            (Pending::Rotate(Box::new(new_key)), classify(result))
        }
    }
}

fn classify(result: Result<(), ClientError>) -> Result<(), WriteError> {
    match result {
        Ok(()) => Ok(()),
        Err(e @ ClientError::Problem(_)) => Err(WriteError::Refused(e)),
        Err(_) => Err(WriteError::NoAnswer),
    }
}

/// The state after `write` was committed.
fn apply(account: &mut Account, write: Pending) {
    match write {
        Pending::Register => account.registered = true,
        Pending::Publish(seq) => account.presence = Some(seq),
        Pending::Withdraw => account.presence = None,
        Pending::Rotate(new_key) => {
            account.key = *new_key;
            account.presence = None;
        }
    }
}

enum Check {
    Consistent,
    InFlightCommitted,
    InFlightLost,
    Loss(String),
}

/// Reads `account` back and compares it with the acknowledged state, resolving the write
/// that was in flight (the account then continues from what the node holds).
async fn check(client: &PdClient, account: &mut Account) -> anyhow::Result<Check> {
    let observed = observe(client, &account.address).await?;
    let acknowledged = State::of(account);
    let pending = account.pending.take();
    if observed == acknowledged {
        return Ok(if pending.is_some() {
            Check::InFlightLost
        } else {
            Check::Consistent
        });
    }
    if let Some(write) = pending {
        let mut after = Account {
            address: account.address.clone(),
            key: account.key.clone(),
            registered: account.registered,
            presence: account.presence,
            pending: None,
        };
        apply(&mut after, write);
        if observed == State::of(&after) {
            *account = after;
            return Ok(Check::InFlightCommitted);
        }
    }
    Ok(Check::Loss(format!(
        "{}: acknowledged {acknowledged:?}, the node holds {observed:?}",
        account.address
    )))
}

/// What a lookup shows of an account.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Unknown,
    Registered { key: String, presence: Option<u64> },
}

impl State {
    fn of(account: &Account) -> Self {
        if account.registered {
            Self::Registered {
                key: account.key.public().to_string(),
                presence: account.presence,
            }
        } else {
            Self::Unknown
        }
    }
}

async fn observe(client: &PdClient, address: &Address) -> anyhow::Result<State> {
    match client.lookup(address, None, None).await {
        Ok(lookup) => Ok(State::Registered {
            key: lookup.public_key().to_string(),
            presence: lookup.presence().map(|p| p.seq),
        }),
        Err(ClientError::Problem(problem))
            if problem.problem_type() == Some(ProblemType::UnknownUser) =>
        {
            Ok(State::Unknown)
        }
        Err(e) => Err(e).with_context(|| format!("lookup of {address} after a restart failed")),
    }
}
