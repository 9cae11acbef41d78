//! The store suite: every case runs against the embedded SQLite store and against
//! PostgreSQL (skipped, saying so, when no PostgreSQL is available outside CI).

use std::sync::Arc;

use pd_server::store::{
    Change, Dump, MAX_KEPT_ROTATIONS, PresenceRow, Store, StoreError, StoreSpec, UserCounts,
};

use crate::pg;

const K1: [u8; 32] = [1; 32];
const K2: [u8; 32] = [2; 32];

/// Runs `$case(store)` once on a fresh SQLite store and once on a fresh PostgreSQL
/// database, as the tests `$case::sqlite` and `$case::postgres`.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let store = pd_server::store::Store::open(&dir.path().join("pd.sqlite3")).unwrap();
                super::$case(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = crate::pg::database(concat!("store::", stringify!($case))).await
                else {
                    return;
                };
                super::$case(db.store().await).await;
            }
        }
    )*};
}

on_both!(
    accounts_are_created_once,
    sequence_numbers_only_grow,
    rotation_withdraw_and_delete,
    only_the_latest_rotations_are_kept_oldest_first,
    invites_are_single_use_and_expire,
    name_taken_does_not_consume_the_invite,
    purge_removes_only_expired_records,
    users_are_counted_registered_and_online,
    sessions_are_stored_and_end_with_the_key,
    trust_lists_are_kept,
    export_and_import_copy_everything,
    concurrent_writes_keep_the_highest_seq,
    concurrent_registrations_have_one_winner,
    many_concurrent_writes_fail_or_commit_each_alone,
    close_is_final,
);

fn presence(seq: u64, expires_at: u64) -> PresenceRow {
    PresenceRow {
        seq,
        expires_at,
        envelope: format!("{{\"seq\":{seq}}}"),
    }
}

fn rotate_proof(seq: u64) -> String {
    format!("{{\"rotation\":{seq}}}")
}

fn rotate(new_key: [u8; 32], seq: u64) -> Change {
    Change::Rotate {
        new_key,
        proof: rotate_proof(seq),
    }
}

async fn accounts_are_created_once(s: Store) {
    s.create_account("alice", K1, 10, None, 100).await.unwrap();
    let err = s.create_account("alice", K2, 20, None, 100).await;
    assert!(matches!(err, Err(StoreError::NameTaken)));
    let row = s.account("alice").await.unwrap().unwrap();
    assert_eq!(row.public_key, K1);
    assert_eq!(row.last_seq, 10);
    assert_eq!(row.presence, None);
    assert_eq!(s.account("bob").await.unwrap(), None);
    s.ping().await.unwrap();
}

async fn sequence_numbers_only_grow(s: Store) {
    s.create_account("alice", K1, 10, None, 100).await.unwrap();
    s.apply("alice", K1, 11, Change::Publish(presence(11, 500)))
        .await
        .unwrap();
    for seq in [11, 5] {
        let err = s
            .apply("alice", K1, seq, Change::Publish(presence(seq, 600)))
            .await;
        assert!(matches!(err, Err(StoreError::Conflict)));
    }
    let err = s.apply("alice", K2, 20, Change::Touch).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "wrong key");
    let err = s.apply("bob", K1, 20, Change::Touch).await;
    assert!(matches!(err, Err(StoreError::NoAccount)));
    let row = s.account("alice").await.unwrap().unwrap();
    assert_eq!(row.last_seq, 11);
    assert_eq!(row.presence, Some(presence(11, 500)));
}

async fn rotation_withdraw_and_delete(s: Store) {
    s.create_account("alice", K1, 10, None, 100).await.unwrap();
    s.apply("alice", K1, 11, Change::Publish(presence(11, 500)))
        .await
        .unwrap();
    s.apply("alice", K1, 12, rotate(K2, 12)).await.unwrap();
    let row = s.account("alice").await.unwrap().unwrap();
    assert_eq!((row.public_key, row.last_seq, row.presence), (K2, 12, None));
    assert_eq!(row.rotations, vec![rotate_proof(12)]);
    s.apply("alice", K2, 13, Change::Publish(presence(13, 500)))
        .await
        .unwrap();
    s.apply("alice", K2, 14, Change::Withdraw).await.unwrap();
    assert_eq!(s.account("alice").await.unwrap().unwrap().presence, None);
    s.apply("alice", K2, 15, Change::Publish(presence(15, 500)))
        .await
        .unwrap();
    s.apply("alice", K2, 16, Change::Delete).await.unwrap();
    assert_eq!(s.account("alice").await.unwrap(), None);
    // The presence and rotation rows went with the account.
    s.create_account("alice", K1, 20, None, 100).await.unwrap();
    let row = s.account("alice").await.unwrap().unwrap();
    assert_eq!((row.presence, row.rotations), (None, Vec::new()));
    let dump = s.export().await.unwrap();
    assert!(dump.accounts.iter().all(|a| a.rotations.is_empty()));
}

async fn only_the_latest_rotations_are_kept_oldest_first(s: Store) {
    s.create_account("alice", [0; 32], 10, None, 100)
        .await
        .unwrap();
    let total = MAX_KEPT_ROTATIONS as u64 + 3;
    for i in 0..total {
        let (old, new) = ([i as u8; 32], [i as u8 + 1; 32]);
        s.apply("alice", old, 11 + i, rotate(new, 11 + i))
            .await
            .unwrap();
    }
    // A rotation that loses its compare-and-set keeps nothing.
    let lost = s.apply("alice", [0; 32], 1000, rotate(K2, 1000)).await;
    assert!(matches!(lost, Err(StoreError::Conflict)));
    let row = s.account("alice").await.unwrap().unwrap();
    let expected: Vec<String> = (total - MAX_KEPT_ROTATIONS as u64..total)
        .map(|i| rotate_proof(11 + i))
        .collect();
    assert_eq!(row.rotations, expected);
    let dump = s.export().await.unwrap();
    assert_eq!(dump.accounts[0].rotations.len(), MAX_KEPT_ROTATIONS);
}

async fn invites_are_single_use_and_expire(s: Store) {
    s.create_invite([7; 32], 100, 200).await.unwrap();
    s.create_invite([8; 32], 100, 150).await.unwrap();
    let bad = s.create_account("a", K1, 1, Some([9; 32]), 120).await;
    assert!(matches!(bad, Err(StoreError::BadInvite)));
    let expired = s.create_account("a", K1, 1, Some([8; 32]), 160).await;
    assert!(matches!(expired, Err(StoreError::BadInvite)));
    s.create_account("a", K1, 1, Some([7; 32]), 120)
        .await
        .unwrap();
    let reused = s.create_account("b", K1, 1, Some([7; 32]), 120).await;
    assert!(matches!(reused, Err(StoreError::BadInvite)));
}

async fn name_taken_does_not_consume_the_invite(s: Store) {
    s.create_account("a", K1, 1, None, 100).await.unwrap();
    s.create_invite([7; 32], 100, 200).await.unwrap();
    let taken = s.create_account("a", K2, 1, Some([7; 32]), 120).await;
    assert!(matches!(taken, Err(StoreError::NameTaken)));
    s.create_account("b", K2, 1, Some([7; 32]), 120)
        .await
        .unwrap();
}

async fn purge_removes_only_expired_records(s: Store) {
    s.create_account("a", K1, 1, None, 100).await.unwrap();
    s.create_account("b", K1, 1, None, 100).await.unwrap();
    s.apply("a", K1, 2, Change::Publish(presence(2, 150)))
        .await
        .unwrap();
    s.apply("b", K1, 2, Change::Publish(presence(2, 250)))
        .await
        .unwrap();
    let login = |token_hash, expires_at| Change::Login {
        token_hash,
        expires_at,
    };
    s.apply("a", K1, 3, login([3; 32], 150)).await.unwrap();
    s.apply("b", K1, 3, login([4; 32], 250)).await.unwrap();
    assert_eq!(s.purge_expired(200).await.unwrap(), vec!["a".to_owned()]);
    assert_eq!(s.account("a").await.unwrap().unwrap().presence, None);
    assert!(s.account("b").await.unwrap().unwrap().presence.is_some());
    assert_eq!(s.session([3; 32]).await.unwrap(), None);
    assert_eq!(s.session([4; 32]).await.unwrap().unwrap().expires_at, 250);
}

async fn users_are_counted_registered_and_online(s: Store) {
    let counts = |registered, online| UserCounts { registered, online };
    assert_eq!(s.user_counts(100).await.unwrap(), counts(0, 0));
    for name in ["a", "b", "c"] {
        s.create_account(name, K1, 1, None, 100).await.unwrap();
    }
    s.apply("a", K1, 2, Change::Publish(presence(2, 150)))
        .await
        .unwrap();
    s.apply("b", K1, 2, Change::Publish(presence(2, 250)))
        .await
        .unwrap();
    assert_eq!(s.user_counts(100).await.unwrap(), counts(3, 2));
    // A record is online until the second it expires, even before it is purged.
    assert_eq!(s.user_counts(150).await.unwrap(), counts(3, 1));
    assert_eq!(s.user_counts(250).await.unwrap(), counts(3, 0));
}

async fn sessions_are_stored_and_end_with_the_key(s: Store) {
    s.create_account("a", K1, 1, None, 100).await.unwrap();
    let login = |token_hash| Change::Login {
        token_hash,
        expires_at: 500,
    };
    s.apply("a", K1, 2, login([5; 32])).await.unwrap();
    let row = s.session([5; 32]).await.unwrap().unwrap();
    assert_eq!((row.name.as_str(), row.public_key), ("a", K1));
    assert_eq!(s.account("a").await.unwrap().unwrap().last_seq, 2);
    // A login that loses its compare-and-set stores no session.
    let lost = s.apply("a", K1, 2, login([6; 32])).await;
    assert!(matches!(lost, Err(StoreError::Conflict)));
    assert_eq!(s.session([6; 32]).await.unwrap(), None);
    s.apply("a", K1, 3, rotate(K2, 3)).await.unwrap();
    assert_eq!(s.session([5; 32]).await.unwrap(), None);
    s.apply("a", K2, 4, login([7; 32])).await.unwrap();
    s.apply("a", K2, 5, Change::Delete).await.unwrap();
    assert_eq!(s.session([7; 32]).await.unwrap(), None);
}

async fn trust_lists_are_kept(s: Store) {
    let url = "https://lists.example/deny.txt";
    assert_eq!(s.trust_list(url).await.unwrap(), None);
    s.save_trust_list(url, b"a.example\n".to_vec(), 10)
        .await
        .unwrap();
    s.save_trust_list(url, b"b.example\n".to_vec(), 20)
        .await
        .unwrap();
    assert_eq!(
        s.trust_list(url).await.unwrap(),
        Some((b"b.example\n".to_vec(), 20))
    );
}

/// Fills a store with one of everything.
async fn fill(s: &Store) {
    s.create_account("alice", K1, 10, None, 100).await.unwrap();
    s.apply("alice", K1, 11, rotate(K2, 11)).await.unwrap();
    s.apply(
        "alice",
        K2,
        12,
        Change::Publish(presence(12, u64::from(u32::MAX))),
    )
    .await
    .unwrap();
    s.apply(
        "alice",
        K2,
        13,
        Change::Login {
            token_hash: [9; 32],
            expires_at: u64::from(u32::MAX),
        },
    )
    .await
    .unwrap();
    s.create_account("bob", K1, 20, None, 100).await.unwrap();
    s.create_invite([7; 32], 100, u64::from(u32::MAX))
        .await
        .unwrap();
    s.save_trust_list("https://lists.example/l.txt", vec![0, 1, 2, 255], 30)
        .await
        .unwrap();
}

async fn export_and_import_copy_everything(s: Store) {
    fill(&s).await;
    let dump = s.export().await.unwrap();
    assert_eq!(dump.accounts.len(), 2);
    assert_eq!(dump.sessions.len(), 1);
    assert_eq!(dump.invites.len(), 1);
    assert_eq!(dump.trust_lists.len(), 1);
    // Into the embedded store and back out: the same rows.
    let other = Store::open_in_memory().unwrap();
    other.import(dump.clone()).await.unwrap();
    assert_eq!(sorted(other.export().await.unwrap()), sorted(dump.clone()));
    // A store with accounts is refused and left as it was.
    let refused = s.import(dump.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::NotEmpty(2))),
        "{refused:?}"
    );
    assert_eq!(sorted(s.export().await.unwrap()), sorted(dump));
}

fn sorted(mut d: Dump) -> Dump {
    d.accounts.sort_by(|a, b| a.name.cmp(&b.name));
    d.sessions.sort_by_key(|s| s.token_hash);
    d.invites.sort_by_key(|i| i.token_hash);
    d
}

/// Many writers of one account at once: only increasing sequence numbers win, and the
/// highest one sent is the one stored.
async fn concurrent_writes_keep_the_highest_seq(s: Store) {
    s.create_account("alice", K1, 1, None, 100).await.unwrap();
    let s = Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    // Interleaved so that low and high numbers race each other.
    for i in 0..40u64 {
        let seq = 2 + (i * 17) % 40;
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            let r = s
                .apply("alice", K1, seq, Change::Publish(presence(seq, 900)))
                .await;
            (seq, r)
        });
    }
    let mut won = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (seq, r) = joined.unwrap();
        match r {
            Ok(()) => won.push(seq),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("seq {seq}: {e}"),
        }
    }
    assert!(won.contains(&41), "the highest sequence number always wins");
    let row = s.account("alice").await.unwrap().unwrap();
    assert_eq!(row.last_seq, 41);
    assert_eq!(row.presence, Some(presence(41, 900)));
}

async fn concurrent_registrations_have_one_winner(s: Store) {
    let s = Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let s = Arc::clone(&s);
        tasks.spawn(async move { (i, s.create_account("bob", [i + 1; 32], 5, None, 100).await) });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (i, Ok(())) => winners.push(i),
            (_, Err(StoreError::NameTaken)) => {}
            (i, Err(e)) => panic!("registration {i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let row = s.account("bob").await.unwrap().unwrap();
    assert_eq!(row.public_key, [winners[0] + 1; 32]);
}

/// Hundreds of writes at once (which the SQLite store commits in shared transactions):
/// each that fails is undone alone, each that succeeds is there.
async fn many_concurrent_writes_fail_or_commit_each_alone(s: Store) {
    const USERS: u32 = 200;
    let s = Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..USERS {
        for attempt in 1..=2u8 {
            let s = Arc::clone(&s);
            tasks.spawn(async move {
                let r = s
                    .create_account(&format!("user{i}"), [attempt; 32], 1, None, 100)
                    .await;
                (i, attempt, r)
            });
        }
    }
    let mut keys = std::collections::HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (i, attempt, Ok(())) => assert!(keys.insert(i, attempt).is_none(), "user{i} twice"),
            (_, _, Err(StoreError::NameTaken)) => {}
            (i, _, Err(e)) => panic!("registration of user{i}: {e}"),
        }
    }
    assert_eq!(keys.len(), USERS as usize);
    // A publish that wins and a stale one that loses, for every user, all at once.
    for i in 0..USERS {
        for seq in [3u64, 2] {
            let s = Arc::clone(&s);
            let key = [keys[&i]; 32];
            tasks.spawn(async move {
                let r = s
                    .apply(
                        &format!("user{i}"),
                        key,
                        seq,
                        Change::Publish(presence(seq, 900)),
                    )
                    .await;
                (i, u8::try_from(seq).unwrap(), r)
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (_, _, Ok(())) | (_, 2, Err(StoreError::Conflict)) => {}
            (i, seq, r) => panic!("publish {seq} of user{i}: {r:?}"),
        }
    }
    for i in 0..USERS {
        let row = s.account(&format!("user{i}")).await.unwrap().unwrap();
        assert_eq!(row.public_key, [keys[&i]; 32]);
        assert_eq!(row.last_seq, 3, "user{i}");
        assert_eq!(row.presence, Some(presence(3, 900)), "user{i}");
    }
    assert_eq!(
        s.user_counts(100).await.unwrap(),
        UserCounts {
            registered: u64::from(USERS),
            online: u64::from(USERS)
        }
    );
}

async fn close_is_final(s: Store) {
    s.close().await.unwrap();
    let err = s.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn sqlite_data_survives_reopening_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let s = Store::connect(&StoreSpec::Sqlite(path.clone()))
        .await
        .unwrap();
    assert!(!s.is_shared());
    s.create_account("a", K1, 1, None, 100).await.unwrap();
    s.close().await.unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.account("a").await.unwrap().unwrap().last_seq, 1);
    s.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn postgres_replicas_starting_together_migrate_once() {
    let Some(db) = pg::database("store::postgres_replicas_starting_together_migrate_once").await
    else {
        return;
    };
    let spec = db.spec();
    let opened = futures::future::join_all((0..6).map(|_| Store::connect(&spec))).await;
    let stores: Vec<Store> = opened.into_iter().map(Result::unwrap).collect();
    assert!(stores.iter().all(Store::is_shared));
    stores[0]
        .create_account("a", K1, 1, None, 100)
        .await
        .unwrap();
    assert_eq!(
        stores[5].account("a").await.unwrap().unwrap().public_key,
        K1
    );
    // Opening again finds the schema in place.
    let again = db.store().await;
    assert!(again.account("a").await.unwrap().is_some());
}

#[tokio::test]
async fn postgres_keeps_one_server_key_for_all_replicas() {
    let Some(db) = pg::database("store::postgres_keeps_one_server_key_for_all_replicas").await
    else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    assert_eq!(a.read_server_keys().await.unwrap(), None);
    let (first, second) = tokio::join!(
        a.shared_server_keys("key-a".into()),
        b.shared_server_keys("key-b".into())
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first, second,
        "both replicas get the key that was stored first"
    );
    assert!(first.retired.is_empty());
    // The embedded store keeps its key in a file instead.
    let embedded = Store::open_in_memory().unwrap();
    let refused = embedded.shared_server_keys("k".into()).await;
    assert!(matches!(refused, Err(StoreError::NotShared)));
}

/// `pd-server migrate` copies a whole domain: export and import are not bounded by the
/// per-operation deadline meant for requests (a large copy would exceed it).
#[tokio::test]
async fn migrate_copies_outlast_the_per_operation_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = std::time::Duration::from_millis(1);
    let spec = StoreSpec::Sqlite(dir.path().join("to.sqlite3"));
    let store = Store::connect_with_timeout(&spec, deadline).await.unwrap();
    let mut dump = Dump::default();
    for i in 0..5_000u64 {
        dump.accounts.push(pd_server::store::AccountDump {
            name: format!("user{i}"),
            public_key: K1,
            last_seq: i + 1,
            created_at: 100,
            presence: Some(presence(i + 1, 900)),
            rotations: Vec::new(),
        });
    }
    let started = std::time::Instant::now();
    store.import(dump).await.unwrap();
    let copied = store.export().await.unwrap();
    assert!(
        started.elapsed() > deadline,
        "too small to test the deadline"
    );
    assert_eq!(copied.accounts.len(), 5_000);
}
