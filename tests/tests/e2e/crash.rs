//! A short run of the kill -9 harness (`pd_e2e::crash`, the full run is `pd-crash`):
//! four clients writing, three SIGKILLs at random moments, every acknowledged write read
//! back after each restart.

use pd_e2e::crash::{Backend, CrashOptions};

#[test]
fn acknowledged_writes_survive_sigkill_under_concurrent_load() {
    let work = tempfile::tempdir().expect("failed to create a work directory");
    let options = CrashOptions {
        backend: Backend::Sqlite,
        kills: 3,
        clients: 4,
        accounts_per_client: 4,
        max_load: std::time::Duration::from_millis(600),
        seed: pd_proto::now_micros(),
    };
    let report = pd_e2e::crash::run(&options, work.path()).expect("the crash run failed");
    assert_eq!(report.trials, 3);
    assert!(
        report.acknowledged > 0,
        "no write was acknowledged: {report:?}"
    );
    assert_eq!(report.refused, 0, "{report:?}");
    assert!(
        report.losses.is_empty(),
        "seed {}: {:?}",
        options.seed,
        report.losses
    );
}
