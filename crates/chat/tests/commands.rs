//! The chat commands against a fake home server (wiremock): what they send, what they keep
//! in the home directory, and how they retry.

use clap::Parser;
use pd_proto::wire::{
    AccountInfo, LoginResponse, LookupResponse, RegisterRequest, RotateRequest, Source,
};
use pd_proto::{Address, Endpoint, Presence, ProblemType, SecretKey, Signed};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use chat::home::{Home, HomeConfig, Session};

const ALICE: &str = "alice@pd.test";
const BOB: &str = "bob@pd.test";

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

async fn chat(home: &Home, args: &[&str]) -> Result<String, chat::ChatError> {
    let mut argv = vec!["chat", "--home", home.display_dir().to_str().unwrap()];
    argv.extend_from_slice(args);
    let mut out = Vec::new();
    chat::main_with(chat::Cli::try_parse_from(argv).unwrap(), &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

/// A home registered as alice at `server`.
fn registered_home(dir: &tempfile::TempDir, server: &MockServer) -> (Home, SecretKey) {
    let home = Home::at(dir.path());
    let key = home.load_or_create_key().unwrap();
    home.save_config(&HomeConfig {
        address: addr(ALICE),
        server: server.uri().parse().unwrap(),
        ca_file: None,
    })
    .unwrap();
    (home, key)
}

fn problem(kind: ProblemType) -> ResponseTemplate {
    ResponseTemplate::new(kind.status())
        .insert_header("content-type", "application/problem+json")
        .set_body_json(kind.with_detail("from the fake node"))
}

fn bob_answer(key: &SecretKey) -> LookupResponse {
    let now = pd_proto::now_micros();
    let presence = Presence {
        address: addr(BOB),
        endpoints: vec![Endpoint::parse("tcp://192.0.2.9:7000").unwrap()],
        seq: now,
        expires_at: now / 1_000_000 + 600,
    };
    LookupResponse {
        address: addr(BOB),
        public_key: key.public(),
        presence: Some(Signed::sign(key, &presence)),
        rotations: Vec::new(),
        source: Source::Local,
        ttl: 600,
    }
}

async fn mount_login(server: &MockServer, token: &str, expected_calls: u64) {
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(LoginResponse {
            token: token.to_owned(),
            expires_in: 3600,
        }))
        .expect(expected_calls)
        .mount(server)
        .await;
}

async fn mount_lookup(server: &MockServer, token: &str, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/lookup/{BOB}")))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(answer)
        .mount(server)
        .await;
}

#[tokio::test]
async fn register_creates_the_key_saves_the_home_and_whoami_shows_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/accounts"))
        .respond_with(|req: &Request| {
            let request: RegisterRequest = serde_json::from_slice(&req.body).unwrap();
            let unverified = request.registration.decode_unverified().unwrap();
            let registration = request
                .registration
                .verify(&unverified.public_key, &unverified.address)
                .unwrap();
            assert_eq!(request.invite.as_deref(), Some("inv-1"));
            ResponseTemplate::new(201).set_body_json(AccountInfo {
                address: registration.address,
                public_key: registration.public_key,
                fingerprint: registration.public_key.fingerprint(),
            })
        })
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());

    let out = chat(
        &home,
        &[
            "register",
            "Alice@PD.test",
            "--server",
            &server.uri(),
            "--invite",
            "inv-1",
        ],
    )
    .await
    .unwrap();
    let key = home.key().unwrap();
    assert!(out.contains(&key.public().fingerprint()), "{out}");
    assert_eq!(home.config().unwrap().address, addr(ALICE));

    let whoami: serde_json::Value =
        serde_json::from_str(&chat(&home, &["whoami", "--json"]).await.unwrap()).unwrap();
    assert_eq!(whoami["address"], ALICE);
    assert_eq!(whoami["fingerprint"], key.public().fingerprint());

    // A second registration in the same home is refused before anything is sent.
    let err = chat(&home, &["register", BOB, "--server", &server.uri()])
        .await
        .unwrap_err();
    assert_eq!(err.report().1, 1);
}

#[tokio::test]
async fn a_refused_registration_saves_no_config_but_keeps_the_key_for_a_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(problem(ProblemType::NameTaken))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let err = chat(&home, &["register", ALICE, "--server", &server.uri()])
        .await
        .unwrap_err();
    assert_eq!(err.report().1, 5);
    assert!(home.load_config().unwrap().is_none());
    assert!(home.load_key().unwrap().is_some());
}

#[tokio::test]
async fn lookup_logs_in_once_and_reuses_the_cached_token() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    let bob = SecretKey::from_seed(&[5; 32]);
    mount_login(&server, "t1", 1).await;
    mount_lookup(
        &server,
        "t1",
        ResponseTemplate::new(200).set_body_json(bob_answer(&bob)),
    )
    .await;

    let out = chat(&home, &["lookup", BOB]).await.unwrap();
    assert!(out.contains(&bob.public().fingerprint()), "{out}");
    assert!(out.contains("online until"), "{out}");
    assert!(out.contains("tcp://192.0.2.9:7000"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&chat(&home, &["lookup", BOB, "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["fingerprint"], bob.public().fingerprint());
    assert_eq!(json["online"], true);
    assert_eq!(json["endpoints"][0], "tcp://192.0.2.9:7000");
    // The node's answer is included as it came, so a script can verify it again.
    let response: LookupResponse = serde_json::from_value(json).unwrap();
    pd_proto::verify_lookup_answer(&addr(BOB), response).unwrap();
    assert_eq!(home.load_session().unwrap().token, "t1");
}

#[tokio::test]
async fn lookup_logs_in_again_after_a_401_and_retries_once() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    home.save_session(&Session {
        address: addr(ALICE),
        server: server.uri().parse().unwrap(),
        token: "stale".to_owned(),
        expires_at: u64::MAX / 2,
    })
    .unwrap();
    let bob = SecretKey::from_seed(&[5; 32]);
    mount_login(&server, "fresh", 1).await;
    mount_lookup(&server, "stale", problem(ProblemType::Unauthenticated)).await;
    mount_lookup(
        &server,
        "fresh",
        ResponseTemplate::new(200).set_body_json(bob_answer(&bob)),
    )
    .await;
    chat(&home, &["lookup", BOB]).await.unwrap();
    assert_eq!(home.load_session().unwrap().token, "fresh");
}

#[tokio::test]
async fn login_is_retried_once_with_a_newer_seq_after_replayed() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(problem(ProblemType::Replayed))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_login(&server, "t2", 1).await;
    mount_lookup(
        &server,
        "t2",
        ResponseTemplate::new(200).set_body_json(bob_answer(&SecretKey::from_seed(&[5; 32]))),
    )
    .await;
    chat(&home, &["lookup", BOB]).await.unwrap();
    let seqs: Vec<u64> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/sessions")
        .map(|r| {
            let login: Signed<pd_proto::Login> = serde_json::from_slice(&r.body).unwrap();
            login.decode_unverified().unwrap().seq
        })
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[1] > seqs[0]);
}

#[tokio::test]
async fn lookup_errors_have_the_contract_exit_codes() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    mount_login(&server, "t", 1).await;
    mount_lookup(&server, "t", problem(ProblemType::UnknownUser)).await;
    let err = chat(&home, &["lookup", BOB]).await.unwrap_err();
    let (message, code) = err.report();
    assert_eq!(code, 3);
    assert!(message.starts_with("unknown user"), "{message}");

    // An answer signed by another key than the one it names is refused.
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    mount_login(&server, "t", 1).await;
    let mut forged = bob_answer(&SecretKey::from_seed(&[5; 32]));
    forged.public_key = SecretKey::from_seed(&[6; 32]).public();
    mount_lookup(
        &server,
        "t",
        ResponseTemplate::new(200).set_body_json(forged),
    )
    .await;
    assert_eq!(
        chat(&home, &["lookup", BOB]).await.unwrap_err().report().1,
        7
    );
}

#[tokio::test]
async fn a_cache_only_miss_says_so() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    mount_login(&server, "t", 1).await;
    mount_lookup(&server, "t", problem(ProblemType::NotCached)).await;
    let (message, code) = chat(&home, &["lookup", BOB]).await.unwrap_err().report();
    assert!(message.starts_with("no cached answer"), "{message}");
    assert_eq!(code, 5);
}

#[tokio::test]
async fn policy_refusals_name_the_side_that_refused() {
    for (kind, expected) in [
        (
            ProblemType::RefusedByPolicy,
            "your home server does not federate with pd.test",
        ),
        (
            ProblemType::RemoteRefused,
            "pd.test does not accept lookups from your server",
        ),
    ] {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = registered_home(&dir, &server);
        mount_login(&server, "t", 1).await;
        mount_lookup(&server, "t", problem(kind)).await;
        let (message, code) = chat(&home, &["lookup", BOB]).await.unwrap_err().report();
        assert_eq!((message.as_str(), code), (expected, 8));
    }
}

#[tokio::test]
async fn publish_sends_a_record_signed_for_the_account() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, key) = registered_home(&dir, &server);
    Mock::given(method("PUT"))
        .and(path(format!("/v1/accounts/{ALICE}/presence")))
        .respond_with(move |req: &Request| {
            let signed: Signed<Presence> = serde_json::from_slice(&req.body).unwrap();
            let presence = signed.verify(&key.public(), &addr(ALICE)).unwrap();
            presence.validate(pd_proto::now_micros()).unwrap();
            let ttl = presence.expires_at - presence.seq / 1_000_000;
            assert_eq!(ttl, 120);
            ResponseTemplate::new(200).set_body_json(pd_proto::wire::PublishResponse {
                seq: presence.seq,
                expires_at: presence.expires_at,
            })
        })
        .expect(1)
        .mount(&server)
        .await;
    let out = chat(
        &home,
        &[
            "publish",
            "--endpoint",
            "tcp://192.0.2.1:7000",
            "--ttl",
            "2m",
        ],
    )
    .await
    .unwrap();
    assert!(out.starts_with("published 1 endpoint(s)"), "{out}");
}

#[tokio::test]
async fn rotate_key_replaces_the_key_only_when_the_server_accepts() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, old) = registered_home(&dir, &server);

    Mock::given(method("POST"))
        .and(path(format!("/v1/accounts/{ALICE}/rotate")))
        .respond_with(problem(ProblemType::InvalidSignature))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let err = chat(&home, &["rotate-key"]).await.unwrap_err();
    assert_eq!(err.report().1, 5);
    assert_eq!(home.key().unwrap().public(), old.public());
    assert!(!home.new_key_path().exists() && !home.old_key_path().exists());

    let old_public = old.public();
    Mock::given(method("POST"))
        .and(path(format!("/v1/accounts/{ALICE}/rotate")))
        .respond_with(move |req: &Request| {
            let request: RotateRequest = serde_json::from_slice(&req.body).unwrap();
            let rotation = request.rotation.verify(&old_public, &addr(ALICE)).unwrap();
            request
                .rotation
                .verify_countersignature(
                    &rotation.new_key,
                    &addr(ALICE),
                    &request.new_key_signature,
                )
                .unwrap();
            ResponseTemplate::new(200).set_body_json(AccountInfo {
                address: addr(ALICE),
                public_key: rotation.new_key,
                fingerprint: rotation.new_key.fingerprint(),
            })
        })
        .mount(&server)
        .await;
    let out = chat(&home, &["rotate-key"]).await.unwrap();
    let new = home.key().unwrap().public();
    assert_ne!(new, old.public());
    assert!(out.contains(&new.fingerprint()), "{out}");
    assert!(!home.new_key_path().exists() && !home.old_key_path().exists());
}

#[tokio::test]
async fn an_interrupted_rotation_the_server_accepted_is_finished() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, old) = registered_home(&dir, &server);
    let pending = SecretKey::generate();
    home.stage_rotation(&old, &pending).unwrap();
    let pending_public = pending.public();
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(move |req: &Request| {
            let login: Signed<pd_proto::Login> = serde_json::from_slice(&req.body).unwrap();
            match login.verify(&pending_public, &addr(ALICE)) {
                Ok(_) => ResponseTemplate::new(200).set_body_json(LoginResponse {
                    token: "t".into(),
                    expires_in: 60,
                }),
                Err(_) => problem(ProblemType::InvalidSignature),
            }
        })
        .mount(&server)
        .await;
    let out = chat(&home, &["rotate-key"]).await.unwrap();
    assert!(
        out.starts_with("finished an interrupted key rotation"),
        "{out}"
    );
    assert_eq!(home.key().unwrap().public(), pending.public());
    assert!(!home.new_key_path().exists());
}

#[tokio::test]
async fn an_interrupted_rotation_the_server_refused_is_discarded_and_a_new_one_made() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, old) = registered_home(&dir, &server);
    let pending = SecretKey::generate();
    home.stage_rotation(&old, &pending).unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(problem(ProblemType::InvalidSignature))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/accounts/{ALICE}/rotate")))
        .respond_with(|req: &Request| {
            let request: RotateRequest = serde_json::from_slice(&req.body).unwrap();
            let rotation = request.rotation.decode_unverified().unwrap();
            ResponseTemplate::new(200).set_body_json(AccountInfo {
                address: addr(ALICE),
                public_key: rotation.new_key,
                fingerprint: rotation.new_key.fingerprint(),
            })
        })
        .expect(1)
        .mount(&server)
        .await;
    chat(&home, &["rotate-key"]).await.unwrap();
    let now = home.key().unwrap().public();
    assert_ne!(now, old.public());
    assert_ne!(now, pending.public());
}

#[tokio::test]
async fn an_unclear_recovery_keeps_both_keys() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, old) = registered_home(&dir, &server);
    let pending = SecretKey::generate();
    home.stage_rotation(&old, &pending).unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(problem(ProblemType::Unavailable))
        .mount(&server)
        .await;
    let err = chat(&home, &["rotate-key"]).await.unwrap_err();
    assert_eq!(err.report().1, 4);
    assert_eq!(home.key().unwrap().public(), old.public());
    assert_eq!(
        home.load_pending_key().unwrap().unwrap().public(),
        pending.public()
    );
}

#[tokio::test]
async fn delete_account_forgets_the_account() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    Mock::given(method("POST"))
        .and(path(format!("/v1/accounts/{ALICE}/delete")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    chat(&home, &["delete-account", "--yes"]).await.unwrap();
    assert!(home.load_config().unwrap().is_none());
    let err = chat(&home, &["whoami"]).await.unwrap_err();
    assert!(matches!(err, chat::ChatError::NotRegistered(_)), "{err:?}");
}

#[tokio::test]
async fn commands_without_an_account_say_how_to_register() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let (message, code) = chat(&home, &["lookup", BOB]).await.unwrap_err().report();
    assert_eq!(code, 1);
    assert!(message.contains("chat register"), "{message}");
}

#[tokio::test]
async fn completions_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = chat(&Home::at(dir.path()), &["completions", "bash"])
        .await
        .unwrap();
    assert!(out.contains("rotate-key"));
}

#[tokio::test]
async fn lookup_flags_pass_the_cache_mode_to_the_home_server() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    let bob = SecretKey::from_seed(&[5; 32]);
    mount_login(&server, "t1", 1).await;
    for mode in ["refresh", "cache-only"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/lookup/{BOB}")))
            .and(wiremock::matchers::query_param("mode", mode))
            .respond_with(ResponseTemplate::new(200).set_body_json(bob_answer(&bob)))
            .expect(1)
            .mount(&server)
            .await;
    }
    chat(&home, &["lookup", BOB, "--refresh"]).await.unwrap();
    chat(&home, &["lookup", BOB, "--cache-only"]).await.unwrap();
}

#[tokio::test]
async fn a_verified_answer_is_stored_and_shown_while_the_home_node_is_unavailable() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    let bob = SecretKey::from_seed(&[6; 32]);
    mount_login(&server, "t1", 1).await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/lookup/{BOB}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(bob_answer(&bob)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    chat(&home, &["lookup", BOB]).await.unwrap();
    let listed = chat(&home, &["contacts"]).await.unwrap();
    assert!(listed.contains(BOB), "{listed}");
    assert!(listed.contains(&bob.public().fingerprint()), "{listed}");

    // The node now answers 503: the stored answer stands in, marked as such.
    Mock::given(method("GET"))
        .and(path(format!("/v1/lookup/{BOB}")))
        .respond_with(problem(ProblemType::Unavailable))
        .mount(&server)
        .await;
    let out = chat(&home, &["lookup", BOB]).await.unwrap();
    assert!(out.contains("source:      stored"), "{out}");
    assert!(out.contains("tcp://192.0.2.9:7000"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&chat(&home, &["lookup", BOB, "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["source"], "stored");
    assert_eq!(json["online"], true);

    // Other failures are not masked, and a forgotten contact leaves the node's error.
    chat(&home, &["contacts", "remove", BOB]).await.unwrap();
    let err = chat(&home, &["lookup", BOB]).await.unwrap_err();
    assert_eq!(err.report().1, 4, "{err}");
}

#[tokio::test]
async fn an_answer_that_does_not_verify_is_not_stored() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    let bob = SecretKey::from_seed(&[7; 32]);
    let mut forged = bob_answer(&bob);
    forged.public_key = SecretKey::from_seed(&[8; 32]).public();
    mount_login(&server, "t1", 1).await;
    mount_lookup(
        &server,
        "t1",
        ResponseTemplate::new(200).set_body_json(forged),
    )
    .await;
    let err = chat(&home, &["lookup", BOB]).await.unwrap_err();
    assert_eq!(err.report().1, 7, "{err}");
    let listed = chat(&home, &["contacts"]).await.unwrap();
    assert!(listed.starts_with("no contacts yet"), "{listed}");
    assert!(!home.contacts_path().exists());
}

/// Regression (issue 12): the home server lost alice's account. A login answered
/// `unknown-user` is about alice's own account, and says so, with its own exit code.
#[tokio::test]
async fn a_lost_account_is_named_as_such() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = registered_home(&dir, &server);
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(problem(ProblemType::UnknownUser))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/v1/accounts/{ALICE}/presence")))
        .respond_with(problem(ProblemType::UnknownUser))
        .mount(&server)
        .await;
    for args in [
        &["lookup", BOB][..],
        &["publish", "--endpoint", "tcp://192.0.2.1:7000"][..],
    ] {
        let (message, code) = chat(&home, args).await.unwrap_err().report();
        assert_eq!(code, 16, "{args:?}: {message}");
        assert!(
            message.contains("no longer knows your account alice@pd.test"),
            "{message}"
        );
        assert!(message.contains("chat register --again"), "{message}");
    }
    // Bob being unknown is still "unknown user" (3), not a lost account.
    let dir = tempfile::tempdir().unwrap();
    let other = MockServer::start().await;
    let (home, _) = registered_home(&dir, &other);
    mount_login(&other, "t1", 1).await;
    mount_lookup(&other, "t1", problem(ProblemType::UnknownUser)).await;
    let (_, code) = chat(&home, &["lookup", BOB]).await.unwrap_err().report();
    assert_eq!(code, 3);
}

#[tokio::test]
async fn register_again_sends_the_same_key_and_tells_a_taken_name_apart() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (home, key) = registered_home(&dir, &server);
    let expected_key = key.public();
    Mock::given(method("POST"))
        .and(path("/v1/accounts"))
        .respond_with(move |req: &Request| {
            let body: RegisterRequest = serde_json::from_slice(&req.body).unwrap();
            let registration = body
                .registration
                .verify(&expected_key, &addr(ALICE))
                .unwrap();
            assert_eq!(registration.public_key, expected_key);
            ResponseTemplate::new(201).set_body_json(AccountInfo {
                address: addr(ALICE),
                public_key: expected_key,
                fingerprint: expected_key.fingerprint(),
            })
        })
        .expect(1)
        .mount(&server)
        .await;
    let out = chat(&home, &["register", "--again"]).await.unwrap();
    assert!(out.contains("registered again, with the same key"), "{out}");
    assert!(out.contains(&key.public().fingerprint()), "{out}");

    // The name is taken: by this very key (nothing to do), or by another (refused, 5).
    for (login, expected) in [
        (
            ResponseTemplate::new(200).set_body_json(LoginResponse {
                token: "t".into(),
                expires_in: 60,
            }),
            Ok(()),
        ),
        (problem(ProblemType::InvalidSignature), Err(5)),
    ] {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = registered_home(&dir, &server);
        Mock::given(method("POST"))
            .and(path("/v1/accounts"))
            .respond_with(problem(ProblemType::NameTaken))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/sessions"))
            .respond_with(login)
            .mount(&server)
            .await;
        match (chat(&home, &["register", "--again"]).await, expected) {
            (Ok(out), Ok(())) => assert!(out.contains("nothing to do"), "{out}"),
            (Err(err), Err(code)) => {
                let (message, actual) = err.report();
                assert_eq!(actual, code, "{message}");
                assert!(message.contains("with another key than yours"), "{message}");
            }
            (other, _) => panic!("unexpected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn register_again_needs_an_account_in_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let err = chat(&home, &["register", "--again"]).await.unwrap_err();
    assert!(matches!(err, chat::ChatError::NotRegistered(_)), "{err:?}");
}
