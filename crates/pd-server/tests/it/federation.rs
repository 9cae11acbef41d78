//! Federation between real nodes on 127.0.0.1 with static peer routes to each other:
//! remote lookups, the cache, serve-stale, refresh, node-to-node refusals and the admin
//! surface (issue 3).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use pd_federation::config::StaticPeer;
use pd_proto::{Address, ProblemType, Signed};
use pd_server::config::{Config, LookupAccess};
use reqwest::StatusCode;
use serde_json::Value;

use crate::util::{TestNode, User, assert_problem};

/// Starts one node per domain, each with static routes to all the others. Ports are
/// picked first (bind to port 0, read, release) so that every route is known at bind.
pub(crate) async fn network(domains: &[&str], adjust: impl Fn(&str, &mut Config)) -> Vec<TestNode> {
    let ports: Vec<u16> = domains
        .iter()
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, domain) in domains.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.domain = pd_proto::Host::parse(domain).unwrap();
        config.listen = SocketAddr::from(([127, 0, 0, 1], ports[i]));
        config.lookup_access = LookupAccess::Public;
        config.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        for (j, other) in domains.iter().enumerate() {
            if i != j {
                let peer: StaticPeer = format!("{other}=http://127.0.0.1:{}", ports[j])
                    .parse()
                    .unwrap();
                config.federation.peers.push(peer);
            }
        }
        adjust(domain, &mut config);
        nodes.push(TestNode::bind(config, dir).await);
    }
    nodes
}

/// Registers `name@domain` at `node` and publishes a presence record.
pub(crate) async fn user_with_presence(
    node: &TestNode,
    name: &str,
    domain: &str,
) -> (User, Signed<pd_proto::Presence>) {
    let user = User::at(name, domain);
    user.register(node).await;
    let signed = user.publish(node, 600).await;
    (user, signed)
}

/// A public lookup at `node` expecting 200; returns the answer.
pub(crate) async fn found(node: &TestNode, address: &str, mode: Option<&str>) -> Value {
    let resp = lookup_mode(node, address, mode).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    resp.json().await.unwrap()
}

pub(crate) async fn lookup_mode(
    node: &TestNode,
    address: &str,
    mode: Option<&str>,
) -> reqwest::Response {
    let path = match mode {
        Some(mode) => format!("{address}?mode={mode}"),
        None => address.to_owned(),
    };
    node.lookup(&path, None).await
}

/// The admin surface's base URL.
pub(crate) fn admin_url(node: &TestNode) -> String {
    format!("http://{}", node.server.admin_addr().unwrap())
}

/// Requests to `route` counted by `node`'s metrics.
pub(crate) async fn requests_to(node: &TestNode, route: &str) -> u64 {
    let text = node.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("pd_http_requests_total") && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_user_at_another_node_is_found_then_served_from_cache() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (bob, signed) = user_with_presence(b, "bob", "b.test").await;

    let first = found(a, "bob@b.test", None).await;
    assert_eq!(first["source"], "remote");
    assert_eq!(first["address"], "bob@b.test");
    let ttl = first["ttl"].as_u64().unwrap();
    assert!(ttl > 500 && ttl <= 600, "{first}");
    assert_eq!(
        first["public_key"],
        serde_json::to_value(bob.key.public()).unwrap()
    );
    // The presence record is Bob's, signed by Bob, byte for byte.
    let presence: Signed<pd_proto::Presence> =
        serde_json::from_value(first["presence"].clone()).unwrap();
    assert_eq!(presence.payload(), signed.payload());
    let record = presence
        .verify(&bob.key.public(), &Address::parse("bob@b.test").unwrap())
        .unwrap();
    assert_eq!(record.address, bob.address);

    let second = found(a, "bob@b.test", None).await;
    assert_eq!(second["source"], "cache");
    assert!(second["ttl"].as_u64().unwrap() <= ttl);
    let cached = found(a, "bob@b.test", Some("cache-only")).await;
    assert_eq!(cached["source"], "cache");
    let fresh = found(a, "bob@b.test", Some("refresh")).await;
    assert_eq!(fresh["source"], "remote");
    // One node-to-node request per upstream fetch: the first lookup and the refresh.
    assert_eq!(requests_to(b, "/v1/federation/lookup/{address}").await, 2);
    // The asking node's own users are still answered locally.
    let (_, _) = user_with_presence(a, "alice", "a.test").await;
    assert_eq!(found(a, "alice@a.test", None).await["source"], "local");
}

#[tokio::test]
async fn unknown_users_and_uncached_addresses_are_404() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    let a = &nodes[0];
    let resp = a.lookup("nobody@b.test", None).await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;
    let resp = lookup_mode(a, "someone@b.test", Some("cache-only")).await;
    assert_problem(resp, 404, ProblemType::NotCached).await;
    // The node-to-node API never forwards: B does not answer for C's users.
    let resp = a.get("/v1/federation/lookup/bob%40b.test").await;
    assert_problem(resp, 401, ProblemType::InvalidNodeSignature).await;
}

#[tokio::test]
async fn a_dead_peer_is_answered_from_cache_then_stale_and_refresh_fails_fast() {
    let mut nodes = network(&["a.test", "b.test"], |domain, c| {
        if domain == "a.test" {
            c.federation.cache.min_ttl = Duration::from_secs(1);
            c.federation.cache.max_ttl = Duration::from_secs(1);
            c.federation.connect_timeout = Duration::from_secs(2);
        }
    })
    .await;
    let b = nodes.remove(1);
    let a = &nodes[0];
    user_with_presence(&b, "bob", "b.test").await;
    assert_eq!(found(a, "bob@b.test", None).await["source"], "remote");
    assert_eq!(found(a, "bob@b.test", None).await["source"], "cache");

    b.server.shutdown().await.unwrap();
    // Refresh bypasses the cache, and the peer is gone: 504.
    let resp = lookup_mode(a, "bob@b.test", Some("refresh")).await;
    assert_problem(resp, 504, ProblemType::RemoteUnreachable).await;
    // Once the answer expired, it is served stale within the stale window.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = found(a, "bob@b.test", None).await;
    assert_eq!(stale["source"], "stale");
    assert!(stale["ttl"].as_u64().unwrap() <= 30);

    // The admin surface lists the failing peer, retries it and flushes its cache.
    let client = reqwest::Client::new();
    let admin = admin_url(a);
    let peers: Value = client
        .get(format!("{admin}/admin/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let peer = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["domain"] == "b.test")
        .unwrap_or_else(|| panic!("{peers}"));
    assert_eq!(peer["state"], "backing_off", "{peers}");
    assert!(peer["failures"].as_u64().unwrap() >= 1);
    assert!(!peer["last_error"].is_null(), "{peers}");
    assert_eq!(peers["static_routes"].as_array().unwrap().len(), 1);
    let resp = client
        .post(format!("{admin}/admin/peers/b.test/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = client
        .post(format!("{admin}/admin/peers/never.test/retry"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, ProblemType::NotFound).await;
    let flushed: Value = client
        .post(format!("{admin}/admin/cache/flush/b.test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(flushed["flushed_entries"], 1, "{flushed}");
    // Nothing cached any more, and the peer is still down.
    let resp = lookup_mode(a, "bob@b.test", Some("cache-only")).await;
    assert_problem(resp, 404, ProblemType::NotCached).await;
    let resp = a.lookup("bob@b.test", None).await;
    assert_problem(resp, 504, ProblemType::RemoteUnreachable).await;
}

#[tokio::test]
async fn the_admin_surface_is_off_unless_configured_and_must_be_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.admin_listen = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
    let err = pd_server::Server::bind(config).await.unwrap_err();
    assert!(format!("{err:#}").contains("admin_listen"), "{err:#}");
    let node = TestNode::start().await;
    assert!(node.server.admin_addr().is_none());
    // Admin routes are not on the public listener.
    let resp = node.get("/admin/peers").await;
    assert_problem(resp, 404, ProblemType::NotFound).await;
}

#[tokio::test]
async fn resolver_metrics_are_exported() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    user_with_presence(&nodes[1], "bob", "b.test").await;
    found(&nodes[0], "bob@b.test", None).await;
    found(&nodes[0], "bob@b.test", None).await;
    let text = nodes[0].get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("lookups_total{source=\"remote\",result=\"found\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lookups_total{source=\"cache\",result=\"found\"} 1"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("cache_hits")), "{text}");
    assert!(
        text.contains("\npd_federation_lookup_cache_hits_total "),
        "{text}"
    );
}

/// Sends `target` to `to`, signed as `from` with `from`'s own server key.
async fn signed_get(from: &TestNode, to: &TestNode, target: &str) -> reqwest::Response {
    let key = pd_proto::SecretKey::from_text(
        std::fs::read_to_string(from.dir.path().join("server.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let authorization = pd_federation::node_auth::sign_request(
        &key,
        &from.server.state().config.domain,
        &to.server.state().config.domain,
        "GET",
        target,
        b"",
    );
    to.client
        .get(format!("{}{target}", to.url))
        .header("authorization", authorization.to_str().unwrap())
        .send()
        .await
        .unwrap()
}

// Issue 14: the node-to-node lookup takes no query parameters, and refuses them (an empty
// `?` included) even on a correctly signed request, before doing any work for it.
#[tokio::test]
async fn a_node_to_node_lookup_with_a_query_is_refused() {
    let nodes = network(&["a.test", "b.test"], |_, _| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    user_with_presence(b, "bob", "b.test").await;
    let target = "/v1/federation/lookup/bob%40b.test";
    let resp = signed_get(a, b, target).await;
    assert_eq!(resp.status(), StatusCode::OK);
    for query in ["?mode=refresh", "?", "?x"] {
        let resp = signed_get(a, b, &format!("{target}{query}")).await;
        let problem = assert_problem(resp, 400, ProblemType::InvalidRequest).await;
        assert!(problem.detail.contains("query"), "{}", problem.detail);
    }
    // Refused before the signature is looked at: no key fetch beyond the first request's.
    assert_eq!(requests_to(a, "/.well-known/pd").await, 1);
}
