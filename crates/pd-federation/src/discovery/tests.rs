//! Tests of discovery: the lookup order, delegation validation, caching of successes and
//! failures, flushing, and server key fetching.

use std::time::Duration;

use pd_proto::SecretKey;
use pd_proto::node_auth::server_key_id;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::trust::test_trust;

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

/// Discovery whose "direct" route for every domain is the mock server.
fn discovery_via(server: &MockServer) -> Discovery {
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        request_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        test_trust(""),
        server.uri().parse().unwrap(),
    )
}

async fn well_known_answers(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(pd_proto::paths::WELL_KNOWN))
        .respond_with(response)
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn static_peer_wins_without_any_request() {
    let config = FederationConfig {
        peers: vec!["blackmesa.us=http://127.0.0.1:9/".parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&config).unwrap());
    let discovery = Discovery::new(client, &config, test_trust(""));
    let route = discovery.locate(&host("BlackMesa.us")).await.unwrap();
    assert_eq!(route.via, Via::Static);
    assert_eq!(route.base_url.as_str(), "http://127.0.0.1:9/");
}

#[tokio::test]
async fn ip_literal_domains_have_no_node_unless_static() {
    let config = FederationConfig::default();
    let discovery = Discovery::new(
        Arc::new(GuardedClient::new(&config).unwrap()),
        &config,
        test_trust(""),
    );
    for h in ["127.0.0.1", "[::1]:8443", "8.8.8.8"] {
        let err = discovery.locate(&host(h)).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::NoNode { .. }), "{h}: {err:?}");
        assert_eq!(err.problem_type(), pd_proto::ProblemType::NoPdNode);
    }
}

#[tokio::test]
async fn not_found_means_direct_and_is_cached() {
    let server = MockServer::start().await;
    well_known_answers(&server, ResponseTemplate::new(404)).await;
    let discovery = discovery_via(&server);
    for _ in 0..3 {
        let route = discovery.locate(&host("b.example")).await.unwrap();
        assert_eq!(route.via, Via::Direct);
        assert_eq!(route.base_url.as_str(), format!("{}/", server.uri()));
    }
    assert_eq!(requests(&server).await, 1);
    discovery.flush(&host("b.example")).await;
    discovery.locate(&host("b.example")).await.unwrap();
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn document_without_base_url_means_direct() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"domain": "b.example", "server_keys": []})),
    )
    .await;
    let route = discovery_via(&server)
        .locate(&host("b.example"))
        .await
        .unwrap();
    assert_eq!(route.via, Via::Direct);
}

#[tokio::test]
async fn delegation_is_followed_once_and_normalised() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"base_url": "https://pd.b.example:8443/api"})),
    )
    .await;
    let route = discovery_via(&server)
        .locate(&host("b.example"))
        .await
        .unwrap();
    assert_eq!(route.via, Via::Delegated);
    assert_eq!(route.base_url.as_str(), "https://pd.b.example:8443/api/");
    assert_eq!(
        route
            .endpoint("/v1/federation/lookup/a%40b.example")
            .unwrap()
            .as_str(),
        "https://pd.b.example:8443/api/v1/federation/lookup/a%40b.example"
    );
}

#[tokio::test]
async fn invalid_delegations_are_refused() {
    for base in [
        json!("http://pd.b.example"),
        json!("https://127.0.0.1"),
        json!("https://[::1]:8443"),
        json!("https://user:pw@pd.b.example"),
        json!("https://pd.b.example/?x=1"),
        json!("https://pd.b.example/#frag"),
        json!("https://pd_b.example"),
        json!("not a url"),
        json!(42),
    ] {
        let server = MockServer::start().await;
        well_known_answers(
            &server,
            ResponseTemplate::new(200).set_body_json(json!({ "base_url": base })),
        )
        .await;
        let err = discovery_via(&server)
            .locate(&host("b.example"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::Invalid { .. }),
            "{base}: {err:?}"
        );
    }
}

#[tokio::test]
async fn garbage_and_oversized_documents_are_invalid() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_string("<html>"),
    )
    .await;
    let err = discovery_via(&server)
        .locate(&host("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Invalid { .. }), "{err:?}");

    let server = MockServer::start().await;
    let padding = "x".repeat(8 * 1024);
    well_known_answers(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"base_url": "https://pd.b.example", "pad": padding})),
    )
    .await;
    let err = discovery_via(&server)
        .locate(&host("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn redirects_on_well_known_are_not_followed() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(301).insert_header("location", "http://10.0.0.1/.well-known/pd"),
    )
    .await;
    let err = discovery_via(&server)
        .locate(&host("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Invalid { .. }), "{err:?}");
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn server_errors_are_unreachable_and_cached_as_failures() {
    let server = MockServer::start().await;
    well_known_answers(&server, ResponseTemplate::new(502)).await;
    let discovery = discovery_via(&server);
    for _ in 0..3 {
        let err = discovery.locate(&host("b.example")).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.problem_type(), pd_proto::ProblemType::RemoteUnreachable);
    }
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn connection_refused_means_no_node() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={uri}").parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    let discovery = Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        test_trust(""),
        uri.parse().unwrap(),
    );
    let err = discovery.locate(&host("b.example")).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::NoNode { .. }), "{err:?}");
}

#[tokio::test]
async fn concurrent_discoveries_share_one_request() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(404).set_delay(Duration::from_millis(200)),
    )
    .await;
    let discovery = discovery_via(&server);
    let domain = host("b.example");
    let results = futures::future::join_all((0..20).map(|_| discovery.locate(&domain))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(requests(&server).await, 1);
}

fn well_known_with_keys(domain: &str, keys: &[(&SecretKey, u64)]) -> serde_json::Value {
    json!({
        "domain": domain,
        "api_version": "v1",
        "server_keys": keys.iter().map(|(k, valid_until)| json!({
            "key_id": server_key_id(&k.public()),
            "public_key": k.public().to_string(),
            "valid_until": valid_until,
        })).collect::<Vec<_>>(),
        "lookup_access": "users",
        "registration": "open",
    })
}

#[tokio::test]
async fn server_keys_are_fetched_checked_and_cached() {
    let current = SecretKey::from_seed(&[1; 32]);
    let old = SecretKey::from_seed(&[2; 32]);
    let expired = SecretKey::from_seed(&[3; 32]);
    let now = now_secs();
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(well_known_with_keys(
            "b.example",
            &[
                (&current, now + 86_400),
                (&old, now + 600),
                (&expired, now - 1),
            ],
        )),
    )
    .await;
    let discovery = discovery_via(&server);
    let domain = host("b.example");
    let keys = discovery.fetch_server_keys(&domain).await.unwrap();
    assert_eq!(keys.len(), 2);
    let old_id = server_key_id(&old.public());
    assert_eq!(
        discovery.server_key(&domain, &old_id, now).await.unwrap(),
        Some(old.public())
    );
    let expired_id = server_key_id(&expired.public());
    assert_eq!(
        discovery
            .server_key(&domain, &expired_id, now)
            .await
            .unwrap(),
        None
    );
    // One discovery request plus one key fetch; everything else came from the caches.
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn server_keys_for_another_domain_are_refused() {
    let key = SecretKey::from_seed(&[1; 32]);
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(well_known_with_keys(
            "evil.example",
            &[(&key, now_secs() + 3600)],
        )),
    )
    .await;
    let err = discovery_via(&server)
        .fetch_server_keys(&host("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn routes_are_refreshed_ahead_and_kept_when_the_refresh_fails() {
    let server = MockServer::start().await;
    well_known_answers(&server, ResponseTemplate::new(404)).await;
    let config = FederationConfig {
        discovery_ttl: Duration::from_millis(2000),
        discovery_ttl_jitter_percent: 0,
        discovery_refresh_percent: 50,
        ..FederationConfig::default()
    };
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    let discovery = Discovery::with_direct_base(
        client,
        &config,
        test_trust(""),
        server.uri().parse().unwrap(),
    );
    let domain = host("b.example");

    discovery.locate(&domain).await.unwrap();
    assert_eq!(requests(&server).await, 1);
    // Past half the lifetime: the route is refreshed on use.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(discovery.locate(&domain).await.unwrap().via, Via::Direct);
    assert_eq!(requests(&server).await, 2);

    // The domain now fails; a refresh that fails keeps the previous route.
    server.reset().await;
    well_known_answers(&server, ResponseTemplate::new(500)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(discovery.locate(&domain).await.unwrap().via, Via::Direct);
    assert_eq!(requests(&server).await, 1);

    // Once the route has expired, the failure is reported.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = discovery.locate(&domain).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Unreachable { .. }), "{err:?}");
}

/// Discovery within `trust` whose "direct" route for every domain is the mock server.
fn discovery_within(server: &MockServer, trust: Trust) -> Discovery {
    let client_config = FederationConfig {
        peers: vec![format!("mock.test={}", server.uri()).parse().unwrap()],
        request_timeout: Duration::from_secs(2),
        ..FederationConfig::default()
    };
    let client = Arc::new(GuardedClient::new(&client_config).unwrap());
    Discovery::with_direct_base(
        client,
        &FederationConfig::default(),
        trust,
        server.uri().parse().unwrap(),
    )
}

const ONLY_GOOD: &str = "[trust]\nmode = \"allowlist\"\nallow = [\"good.test\"]";

#[tokio::test]
async fn a_refused_domain_is_never_contacted() {
    let server = MockServer::start().await;
    well_known_answers(&server, ResponseTemplate::new(404)).await;
    let discovery = discovery_within(&server, test_trust(ONLY_GOOD));
    let outsider = host("outsider.test");
    let refused = DiscoveryError::Refused {
        domain: "outsider.test".into(),
        host: "outsider.test".into(),
    };
    assert_eq!(discovery.locate(&outsider).await.unwrap_err(), refused);
    assert_eq!(
        discovery.fetch_server_keys(&outsider).await.unwrap_err(),
        refused
    );
    assert_eq!(
        discovery
            .server_key(&outsider, "ed25519:x", now_secs())
            .await,
        Err(refused)
    );
    assert_eq!(requests(&server).await, 0);
}

/// Regression (issue 12): a node in allowlist mode with `allow = ["good.test"]`, where
/// `https://good.test/.well-known/pd` delegates to `https://denied.test/`. Every path that
/// locates good.test's node (a lookup's route, the key fetch that authenticates a request
/// claiming origin good.test, doctor) is refused before denied.test is contacted.
#[tokio::test]
async fn a_delegation_to_a_refused_host_is_refused_on_every_path() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"base_url": "https://denied.test/"})),
    )
    .await;
    let discovery = discovery_within(&server, test_trust(ONLY_GOOD));
    let good = host("good.test");
    let refused = DiscoveryError::Refused {
        domain: "good.test".into(),
        host: "denied.test".into(),
    };
    assert_eq!(discovery.locate(&good).await.unwrap_err(), refused);
    assert_eq!(
        refused.problem_type(),
        pd_proto::ProblemType::RefusedByPolicy
    );
    assert!(refused.to_string().contains("denied.test"), "{refused}");
    assert_eq!(
        discovery.fetch_server_keys(&good).await.unwrap_err(),
        refused
    );
    assert_eq!(
        discovery.server_key(&good, "ed25519:abc", now_secs()).await,
        Err(refused.clone())
    );
    // Only good.test's delegation document was fetched (once: the route is cached, and the
    // check is made again at every use).
    assert_eq!(requests(&server).await, 1);

    // The same node allowing denied.test too follows the delegation.
    let allowing = discovery_within(
        &server,
        test_trust("[trust]\nmode = \"allowlist\"\nallow = [\"good.test\", \"denied.test\"]"),
    );
    let route = allowing.locate(&good).await.unwrap();
    assert_eq!(route.via, Via::Delegated);
    assert_eq!(route.base_url.as_str(), "https://denied.test/");
}

#[tokio::test]
async fn a_cached_delegation_is_checked_again_at_every_use() {
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"base_url": "https://pd.other.test/"})),
    )
    .await;
    let trust = test_trust("");
    let discovery = discovery_within(&server, trust.clone());
    let domain = host("b.example");
    assert_eq!(discovery.locate(&domain).await.unwrap().via, Via::Delegated);
    // The delegation target becomes refused: the cached route is refused from then on.
    trust.replace(
        test_trust("[trust]\ndeny = [\"other.test\"]")
            .current()
            .as_ref()
            .clone(),
    );
    let err = discovery.locate(&domain).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Refused { host, .. } if host == "pd.other.test"),
        "{err:?}"
    );
    assert_eq!(requests(&server).await, 1);
}

/// Regression (issue 12): a key id that is not in the cached set is fetched again at once
/// (after a one-second floor per domain), not only after 30 seconds; the same unknown id
/// is not fetched again for 30 seconds.
#[tokio::test]
async fn an_unknown_key_id_is_fetched_again_at_once_within_the_rate_limit() {
    let old = SecretKey::from_seed(&[4; 32]);
    let new = SecretKey::from_seed(&[5; 32]);
    let now = now_secs();
    let server = MockServer::start().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(well_known_with_keys("b.example", &[(&old, now + 3600)])),
    )
    .await;
    let discovery = discovery_via(&server);
    let domain = host("b.example");
    let (old_id, new_id) = (server_key_id(&old.public()), server_key_id(&new.public()));
    assert_eq!(
        discovery.server_key(&domain, &old_id, now).await.unwrap(),
        Some(old.public())
    );
    assert_eq!(requests(&server).await, 2, "route and keys");
    // The node rotates: it now publishes the new key besides the old.
    server.reset().await;
    well_known_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(well_known_with_keys(
            "b.example",
            &[(&new, now + 3600), (&old, now + 300)],
        )),
    )
    .await;
    tokio::time::sleep(MIN_KEY_REFETCH_INTERVAL).await;
    assert_eq!(
        discovery.server_key(&domain, &new_id, now).await.unwrap(),
        Some(new.public()),
        "fetched again at the first request signed with the new key"
    );
    assert_eq!(requests(&server).await, 1);
    // A key id nobody publishes: one more fetch, then none for 30 seconds for that id.
    tokio::time::sleep(MIN_KEY_REFETCH_INTERVAL).await;
    let bogus = "ed25519:bogus";
    assert_eq!(
        discovery.server_key(&domain, bogus, now).await.unwrap(),
        None
    );
    tokio::time::sleep(MIN_KEY_REFETCH_INTERVAL).await;
    assert_eq!(
        discovery.server_key(&domain, bogus, now).await.unwrap(),
        None
    );
    assert_eq!(requests(&server).await, 2);
}
