//! PostgreSQL for the tests: a fresh database per test on the server named by
//! `PD_TEST_POSTGRES_URL` (`.ci/postgres.sh` starts one on loopback).
//!
//! Without that variable, or with a server that cannot be reached, the PostgreSQL tests
//! say on stderr that they were skipped and pass, except with `CI=true`, where they fail.

use std::io::Write as _;

use pd_server::store::{Store, StoreSpec};
use tokio_postgres::NoTls;

/// A database of its own, dropped with the handle.
pub(crate) struct TestDb {
    pub(crate) url: String,
    admin_url: String,
    name: String,
}

impl TestDb {
    /// The database as a store location.
    pub(crate) fn spec(&self) -> StoreSpec {
        StoreSpec::Postgres(self.url.clone())
    }

    /// A store over the database (migrated).
    pub(crate) async fn store(&self) -> Store {
        Store::connect(&self.spec()).await.unwrap()
    }

    /// Drops the database now, cutting the connections of anyone using it.
    pub(crate) async fn drop_now(&self) {
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&admin_url, &name));
            }
        })
        .join();
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(admin_url, NoTls).await {
        let task = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        drop(client);
        let _ = task.await;
    }
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Written straight to stderr, so that the test harness does not capture it.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh database for `test`, or `None` (after saying so) when PostgreSQL is not
/// available outside CI.
pub(crate) async fn database(test: &str) -> Option<TestDb> {
    let Ok(base) = std::env::var("PD_TEST_POSTGRES_URL") else {
        assert!(
            !on_ci(),
            "CI=true but PD_TEST_POSTGRES_URL is not set: the PostgreSQL tests must run on CI"
        );
        say(&format!(
            "SKIPPED {test} on PostgreSQL: PD_TEST_POSTGRES_URL is not set (see .ci/postgres.sh)"
        ));
        return None;
    };
    match create(&base).await {
        Ok(db) => Some(db),
        Err(e) => {
            assert!(
                !on_ci(),
                "CI=true but PostgreSQL at {base} is unusable: {e}"
            );
            say(&format!(
                "SKIPPED {test} on PostgreSQL: cannot create a database at {base}: {e}"
            ));
            None
        }
    }
}

async fn create(base: &str) -> Result<TestDb, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(base, NoTls).await?;
    let task = tokio::spawn(conn);
    let name = format!(
        "pd_test_{}",
        pd_server::registry::random_token().to_lowercase()
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    drop(client);
    let _ = task.await;
    let mut url = url::Url::parse(base).expect("PD_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    Ok(TestDb {
        url: url.to_string(),
        admin_url: base.to_owned(),
        name,
    })
}
