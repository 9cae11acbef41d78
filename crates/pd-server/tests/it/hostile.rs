//! The hostile catalogue (`docs/reliability.md`): malformed and malicious requests, forged
//! signatures, node-to-node forgeries, trust-list bypasses, requests aimed at loopback, and
//! remote nodes that lie, redirect, stall or flood, each against a running node, with the
//! answer it must give. Every refused request must be a problem document with the listed
//! status and type, and must change nothing: the final checks read the victims' state back
//! and count the connections the traps received.
//!
//! The cases are tables (one row per case, named as in the catalogue) run against one node
//! per group, so the whole catalogue costs a few node start-ups.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use data_encoding::BASE64URL_NOPAD;
use pd_federation::config::StaticPeer;
use pd_federation::trust::{DomainPattern, Entry};
use pd_proto::node_auth::{NodeAuthorization, request_signing_bytes, server_key_id};
use pd_proto::records::{Endpoint, Presence, Rotation};
use pd_proto::rotation::RotationProof;
use pd_proto::signed::signing_bytes;
use pd_proto::wire::{LookupResponse, RotateRequest, Source};
use pd_proto::{Address, Host, ProblemType, Purpose, SecretKey, Signed};
use pd_server::config::LookupAccess;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{TestNode, User, addr, now_secs, seq};

/// A TCP listener that accepts and counts connections and answers nothing: a stand-in for
/// an internal service the node must never reach.
struct Trap {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn bind(ip: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { addr, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn deny(domain: &str) -> Entry {
    Entry::new(DomainPattern::parse(domain).unwrap())
}

/// Expects `resp` to be the problem document `status`/`kind`; names the case on failure.
async fn expect(case: &str, resp: reqwest::Response, status: u16, kind: ProblemType) {
    let actual = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await.unwrap();
    assert_eq!(
        (actual, content_type.as_str()),
        (status, pd_proto::problem::PROBLEM_CONTENT_TYPE),
        "case {case:?}: {body}"
    );
    let problem: pd_proto::Problem = serde_json::from_str(&body).unwrap();
    assert_eq!(problem.problem_type(), Some(kind), "case {case:?}: {body}");
}

// ---------------------------------------------------------------------------------------
// Addresses, trust-list bypasses and loopback targets in lookups.
// ---------------------------------------------------------------------------------------

/// Lookups whose address is malformed, or whose host is refused by the trust policy in
/// another spelling, or is loopback in some form: refused before any traffic. The refused
/// domain and the loopback targets are traps; none may receive a connection.
#[tokio::test]
async fn hostile_lookups_are_refused_before_any_traffic() {
    let trap = Trap::bind("127.0.0.1").await;
    let trap6 = Trap::bind("::1").await;
    let port = trap.addr.port();
    let port6 = trap6.addr.port();
    let node = TestNode::start_with(|config| {
        config.lookup_access = LookupAccess::Public;
        config.trust.deny = vec![deny("evil.test"), deny("bücher.test")];
        // The denied domain has a route to the trap: a bypass would reach it.
        for domain in ["evil.test", "sub.evil.test", "xn--bcher-kva.test"] {
            config
                .federation
                .peers
                .push(format!("{domain}=http://{}", trap.addr).parse().unwrap());
        }
    })
    .await;
    let long_name = "a".repeat(65);
    let cases: Vec<(&str, String, u16, ProblemType)> = vec![
        (
            "two @",
            "a@b@c.test".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "short IPv4 form",
            "alice@127.1".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "hex IPv4 form",
            "alice@0x7f.0.0.1".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "decimal IPv4 form",
            "alice@2130706433".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "double percent-encoding",
            "alice@h%2541st.test".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "CRLF in the name",
            "ali%0D%0Ace@x.test".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "path traversal in the name",
            "..%2F..%2Fhealthz@x.test".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "name over 64 characters",
            format!("{long_name}@x.test"),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "unclosed IPv6 bracket",
            "alice@%5B%3A%3A1".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "port 0",
            "alice@x.test:0".into(),
            400,
            ProblemType::InvalidAddress,
        ),
        (
            "denied domain, upper case and trailing dot",
            "alice@EVIL.test.".into(),
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "subdomain of a denied domain",
            "alice@sub.evil.test".into(),
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "denied IDN domain in punycode",
            "alice@xn--bcher-kva.test".into(),
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "denied domain, cache-only mode",
            "alice@evil.test?mode=cache-only".into(),
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "denied domain, refresh mode",
            "alice@evil.test?mode=refresh".into(),
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "IPv4 loopback literal",
            format!("alice@127.0.0.1:{port}"),
            502,
            ProblemType::NoPdNode,
        ),
        (
            "IPv6 loopback literal",
            format!("alice@%5B::1%5D:{port6}"),
            502,
            ProblemType::NoPdNode,
        ),
        (
            "IPv4-mapped loopback literal",
            format!("alice@%5B::ffff:127.0.0.1%5D:{port}"),
            502,
            ProblemType::NoPdNode,
        ),
        (
            "unspecified address literal",
            format!("alice@0.0.0.0:{port}"),
            502,
            ProblemType::NoPdNode,
        ),
        (
            "name resolving to loopback",
            format!("alice@localhost:{port}"),
            502,
            ProblemType::NoPdNode,
        ),
    ];
    for (case, address, status, kind) in &cases {
        let resp = node
            .client
            .get(format!("{}/v1/lookup/{address}", node.url))
            .send()
            .await
            .unwrap();
        expect(case, resp, *status, *kind).await;
    }
    assert_eq!(
        trap.hits() + trap6.hits(),
        0,
        "a refused lookup reached a trap"
    );
}

// ---------------------------------------------------------------------------------------
// Signed writes: forged, replayed, cross-purpose, oversize and malformed.
// ---------------------------------------------------------------------------------------

/// A registration request whose payload is `registration` as JSON, signed by `signer`.
fn registration_signed_by(signer: &SecretKey, registration: &Value) -> Value {
    let payload = serde_json::to_vec(registration).unwrap();
    let address = addr(registration["address"].as_str().unwrap());
    let signature = signer.sign(&signing_bytes(Purpose::Register, &address, &payload));
    json!({
        "registration": {
            "payload": BASE64URL_NOPAD.encode(&payload),
            "signature": signature.to_string(),
        }
    })
}

fn presence_of(user: &User, seq: u64, expires_at: u64, endpoints: usize) -> Presence {
    Presence {
        address: user.address.clone(),
        endpoints: (0..endpoints)
            .map(|i| Endpoint::parse(&format!("tcp://203.0.113.9:{}", 7000 + i)).unwrap())
            .collect(),
        seq,
        expires_at,
    }
}

/// Every forged or malformed write is refused with its problem type and changes nothing:
/// the victim keeps her key and presence record, the stranger gets no account.
#[tokio::test]
async fn forged_replayed_and_malformed_writes_change_nothing() {
    let node = TestNode::start_with(|config| config.lookup_access = LookupAccess::Public).await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let published = alice.publish(&node, 600).await;
    let stranger = SecretKey::generate();
    let now = pd_proto::now_micros();
    let presence_path = alice.path("/presence");

    // Registrations.
    let mallory = User::new("mallory");
    let claim = |address: &str, key: &SecretKey, seq: u64| json!({"address": address, "public_key": key.public().to_string(), "seq": seq});
    let weak = BASE64URL_NOPAD.encode(&{
        let mut identity = [0u8; 32];
        identity[0] = 1;
        identity
    });
    let registrations: Vec<(&str, Value, u16, ProblemType)> = vec![
        (
            "registration signed by another key",
            registration_signed_by(&stranger, &claim("mallory@localhost", &mallory.key, seq())),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "registration with a weak (small-order) key",
            registration_signed_by(
                &mallory.key,
                &json!({"address": "mallory@localhost", "public_key": weak, "seq": seq()}),
            ),
            400,
            ProblemType::InvalidKey,
        ),
        (
            "registration for another domain",
            registration_signed_by(
                &mallory.key,
                &claim("mallory@other.test", &mallory.key, seq()),
            ),
            400,
            ProblemType::WrongDomain,
        ),
        (
            "registration of a taken name with another key",
            registration_signed_by(&mallory.key, &claim("alice@localhost", &mallory.key, seq())),
            409,
            ProblemType::NameTaken,
        ),
        (
            "registration dated an hour ahead",
            registration_signed_by(
                &mallory.key,
                &claim("mallory@localhost", &mallory.key, now + 3_600_000_000),
            ),
            400,
            ProblemType::StaleRequest,
        ),
        (
            "registration dated an hour ago",
            registration_signed_by(
                &mallory.key,
                &claim("mallory@localhost", &mallory.key, now - 3_600_000_000),
            ),
            400,
            ProblemType::StaleRequest,
        ),
    ];
    for (case, body, status, kind) in &registrations {
        expect(case, node.post("/v1/accounts", body).await, *status, *kind).await;
    }

    // Presence records at alice's path.
    let sign_as = |key: &SecretKey, purpose: Purpose, record: &Presence| {
        let payload = serde_json::to_vec(record).unwrap();
        let signature = key.sign(&signing_bytes(purpose, &record.address, &payload));
        Signed::<Presence>::from_parts(payload, signature)
    };
    let bob = User::new("bob");
    bob.register(&node).await;
    let later = now_secs() + 600;
    let presences: Vec<(&str, Signed<Presence>, u16, ProblemType)> = vec![
        (
            "presence signed for another purpose",
            sign_as(
                &alice.key,
                Purpose::Withdraw,
                &presence_of(&alice, seq(), later, 1),
            ),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "presence signed by another key",
            sign_as(
                &stranger,
                Purpose::Presence,
                &presence_of(&alice, seq(), later, 1),
            ),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "another user's valid record at this user's path",
            Signed::sign(&bob.key, &presence_of(&bob, seq(), later, 1)),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "exact replay of the published record",
            published.clone(),
            409,
            ProblemType::Replayed,
        ),
        (
            "record older than the stored one",
            Signed::sign(
                &alice.key,
                &presence_of(
                    &alice,
                    published.decode_unverified().unwrap().seq - 1,
                    later,
                    1,
                ),
            ),
            409,
            ProblemType::Replayed,
        ),
        (
            "expiry beyond seven days",
            Signed::sign(
                &alice.key,
                &presence_of(&alice, seq(), now_secs() + 8 * 24 * 3600, 1),
            ),
            400,
            ProblemType::InvalidRecord,
        ),
        (
            "nine endpoints",
            Signed::sign(&alice.key, &presence_of(&alice, seq(), later, 9)),
            400,
            ProblemType::InvalidRecord,
        ),
        (
            "already expired",
            Signed::sign(&alice.key, &presence_of(&alice, seq(), now_secs() - 1, 1)),
            400,
            ProblemType::InvalidRecord,
        ),
        // Issue 14: a malformed endpoint is invalid-record, like too many endpoints.
        (
            "malformed endpoint (no port)",
            {
                let payload = serde_json::to_vec(&json!({
                    "address": alice.address.to_string(),
                    "endpoints": ["tcp://203.0.113.9"],
                    "seq": seq(),
                    "expires_at": later,
                }))
                .unwrap();
                let signature =
                    alice
                        .key
                        .sign(&signing_bytes(Purpose::Presence, &alice.address, &payload));
                Signed::<Presence>::from_parts(payload, signature)
            },
            400,
            ProblemType::InvalidRecord,
        ),
    ];
    for (case, body, status, kind) in &presences {
        expect(case, node.put(&presence_path, body).await, *status, *kind).await;
    }

    // Malformed bodies.
    let good = serde_json::to_value(alice.signed_presence(600)).unwrap();
    let mut extra_member = good.clone();
    extra_member["admin"] = json!(true);
    let mut bad_base64 = good.clone();
    bad_base64["payload"] = json!("not base64url!");
    let raw: Vec<(&str, &str, Vec<u8>, u16, ProblemType)> = vec![
        (
            "envelope with an unknown member",
            "application/json",
            serde_json::to_vec(&extra_member).unwrap(),
            400,
            ProblemType::InvalidRequest,
        ),
        (
            "payload that is not base64url",
            "application/json",
            serde_json::to_vec(&bad_base64).unwrap(),
            400,
            ProblemType::InvalidRequest,
        ),
        (
            "body that is not JSON",
            "application/json",
            b"{\"payload\": ".to_vec(),
            400,
            ProblemType::InvalidRequest,
        ),
        (
            "body that is not JSON at all",
            "application/json",
            vec![0xff, 0xfe, 0x00],
            400,
            ProblemType::InvalidRequest,
        ),
        (
            "wrong content type",
            "text/plain",
            serde_json::to_vec(&good).unwrap(),
            415,
            ProblemType::UnsupportedMediaType,
        ),
        (
            "body over the limit",
            "application/json",
            vec![b' '; 64 * 1024],
            413,
            ProblemType::PayloadTooLarge,
        ),
    ];
    for (case, content_type, body, status, kind) in raw {
        let resp = node
            .client
            .put(format!("{}{presence_path}", node.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        expect(case, resp, status, kind).await;
    }

    // Rotation, withdrawal, deletion and login forgeries.
    let next = SecretKey::generate();
    let mut countersigned_by_stranger: RotateRequest = alice.rotation(&next);
    countersigned_by_stranger.new_key_signature = countersigned_by_stranger
        .rotation
        .countersign(&stranger, &alice.address);
    let to_same_key = {
        let rotation = Signed::sign(
            &alice.key,
            &Rotation {
                address: alice.address.clone(),
                new_key: alice.key.public(),
                seq: seq(),
            },
        );
        let new_key_signature = rotation.countersign(&alice.key, &alice.address);
        RotateRequest {
            rotation,
            new_key_signature,
        }
    };
    let impostor = User {
        key: stranger.clone(),
        address: alice.address.clone(),
    };
    let ghost = User::new("ghost");
    let others: Vec<(&str, String, Value, u16, ProblemType)> = vec![
        (
            "rotation countersigned by another key",
            alice.path("/rotate"),
            serde_json::to_value(&countersigned_by_stranger).unwrap(),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "rotation to the same key",
            alice.path("/rotate"),
            serde_json::to_value(&to_same_key).unwrap(),
            400,
            ProblemType::InvalidRequest,
        ),
        (
            "rotation signed by a stranger",
            alice.path("/rotate"),
            serde_json::to_value(impostor.rotation(&next)).unwrap(),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "withdrawal signed by a stranger",
            alice.path("/presence/withdraw"),
            serde_json::to_value(impostor.withdrawal()).unwrap(),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "deletion signed by a stranger",
            alice.path("/delete"),
            serde_json::to_value(impostor.deletion()).unwrap(),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "login as the victim with a stranger's key",
            "/v1/sessions".into(),
            serde_json::to_value(impostor.login_request()).unwrap(),
            400,
            ProblemType::InvalidSignature,
        ),
        (
            "login as an unknown account",
            "/v1/sessions".into(),
            serde_json::to_value(ghost.login_request()).unwrap(),
            404,
            ProblemType::UnknownUser,
        ),
    ];
    for (case, path, body, status, kind) in &others {
        expect(case, node.post(path, body).await, *status, *kind).await;
    }

    // Nothing changed: alice keeps her key and record; no mallory, no ghost.
    let answer = node.lookup_json(&bob, "alice@localhost").await;
    assert_eq!(answer["public_key"], alice.key.public().to_string());
    assert_eq!(
        answer["presence"],
        serde_json::to_value(&published).unwrap(),
        "a refused write changed the record"
    );
    node.assert_unknown(&bob, "mallory@localhost").await;
    node.assert_unknown(&bob, "ghost@localhost").await;
}

// ---------------------------------------------------------------------------------------
// Node-to-node requests: missing, forged, misdirected and stale signatures.
// ---------------------------------------------------------------------------------------

/// A `PD-Node` header from `origin` for `destination`, signed by `key` at `timestamp`.
fn node_header(
    key: &SecretKey,
    origin: &str,
    destination: &str,
    timestamp: u64,
    path: &str,
) -> String {
    let origin = Host::parse(origin).unwrap();
    let destination = Host::parse(destination).unwrap();
    let signature = key.sign(&request_signing_bytes(
        "GET",
        path,
        &origin,
        &destination,
        timestamp,
        b"",
    ));
    NodeAuthorization {
        origin,
        destination,
        key_id: server_key_id(&key.public()),
        timestamp,
        signature,
    }
    .to_string()
}

/// The node-to-node endpoint refuses every request it cannot authenticate, before it
/// answers anything about its users; a denied origin costs no key fetch.
#[tokio::test]
async fn forged_node_requests_are_refused() {
    let remote = MockServer::start().await;
    let node = TestNode::start_with(|config| {
        config.trust.deny = vec![deny("evil.test")];
        for domain in ["evil.test", "peer.test"] {
            let peer: StaticPeer = format!("{domain}={}", remote.uri()).parse().unwrap();
            config.federation.peers.push(peer);
        }
    })
    .await;
    let alice = User::new("alice");
    alice.register(&node).await;
    let target = "/v1/federation/lookup/alice%40localhost";
    let key = SecretKey::generate();
    let now = now_secs();
    // peer.test publishes `key`, so its signatures are checked for real.
    let well_known = pd_proto::wire::WellKnown {
        domain: Host::parse("peer.test").unwrap(),
        api_version: "v1".into(),
        server_keys: vec![pd_proto::wire::ServerKey {
            key_id: server_key_id(&key.public()),
            public_key: key.public(),
            valid_until: now + 3600,
        }],
        lookup_access: "public".into(),
        registration: "open".into(),
        base_url: None,
        relay: false,
    };
    Mock::given(method("GET"))
        .and(path("/.well-known/pd"))
        .respond_with(json_response(&well_known))
        .mount(&remote)
        .await;
    let unpublished = SecretKey::generate();
    let own = "localhost";
    let headers: Vec<(&str, Vec<String>, u16, ProblemType)> = vec![
        (
            "no Authorization header",
            vec![],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "another scheme",
            vec!["Bearer abc".into()],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "header for another destination",
            vec![node_header(&key, "peer.test", "other.test", now, target)],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "header dated an hour ago",
            vec![node_header(&key, "peer.test", own, now - 3600, target)],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "header dated an hour ahead",
            vec![node_header(&key, "peer.test", own, now + 3600, target)],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "two Authorization headers",
            vec![
                node_header(&key, "peer.test", own, now, target),
                node_header(&key, "peer.test", own, now, target),
            ],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "header signed for another path",
            vec![node_header(
                &key,
                "peer.test",
                own,
                now,
                "/v1/federation/lookup/bob%40localhost",
            )],
            401,
            ProblemType::InvalidNodeSignature,
        ),
        (
            "origin denied by the trust policy",
            vec![node_header(&key, "evil.test", own, now, target)],
            403,
            ProblemType::RefusedByPolicy,
        ),
        (
            "key the origin does not publish",
            vec![node_header(&unpublished, "peer.test", own, now, target)],
            401,
            ProblemType::InvalidNodeSignature,
        ),
    ];
    for (case, values, status, kind) in &headers {
        let mut request = node.client.get(format!("{}{target}", node.url));
        for value in values {
            request = request.header("authorization", value);
        }
        expect(case, request.send().await.unwrap(), *status, *kind).await;
    }
    let fetched: Vec<String> = remote
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(
        fetched.iter().all(|r| !r.contains("evil.test")),
        "a denied origin caused a key fetch: {fetched:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Remote nodes that lie, redirect, stall or flood.
// ---------------------------------------------------------------------------------------

/// A lookup answer for `address` (a user of a hostile domain) with `key`.
fn answer(address: &Address, key: &SecretKey, ttl: u64) -> LookupResponse {
    let presence = Presence {
        address: address.clone(),
        endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
        seq: seq(),
        expires_at: now_secs() + 600,
    };
    LookupResponse {
        address: address.clone(),
        public_key: key.public(),
        presence: Some(Signed::sign(key, &presence)),
        rotations: Vec::new(),
        source: Source::Local,
        ttl,
    }
}

fn json_response(body: &impl serde::Serialize) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json")
        .set_body_bytes(serde_json::to_vec(body).unwrap())
}

/// Each hostile answer is dropped (never cached, never returned); the node answers with a
/// bounded delay and its own problem document. Every case has its own domain (all routed
/// to one hostile server), so one case's failures do not back off another's peer.
#[tokio::test]
async fn hostile_remote_answers_are_dropped_and_never_cached() {
    let remote = MockServer::start().await;
    let trap = Trap::bind("127.0.0.1").await;
    let key = SecretKey::generate();
    let other_key = SecretKey::generate();
    let domains = [
        "other-user.test",
        "other-domain.test",
        "bad-presence.test",
        "bad-rotation.test",
        "redirect.test",
        "flood.test",
        "html.test",
        "garbage.test",
        "slow.test",
        "broken.test",
        "ttl.test",
        "lying-length.test",
    ];
    let node = TestNode::start_with(|config| {
        config.lookup_access = LookupAccess::Public;
        config.federation.request_timeout = Duration::from_secs(2);
        config.federation.read_timeout = Duration::from_secs(1);
        config.federation.max_response_bytes = 64 * 1024;
        for domain in domains {
            let peer: StaticPeer = format!("{domain}={}", remote.uri()).parse().unwrap();
            config.federation.peers.push(peer);
        }
    })
    .await;
    let mount = |domain: &str, template: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path(format!("/v1/federation/lookup/alice%40{domain}")))
            .respond_with(template)
            .mount(&remote)
    };
    let at = |domain: &str| addr(&format!("alice@{domain}"));

    mount(
        "other-user.test",
        json_response(&answer(&addr("bob@other-user.test"), &key, 300)),
    )
    .await;
    mount(
        "other-domain.test",
        json_response(&answer(&addr("alice@elsewhere.test"), &key, 300)),
    )
    .await;
    let mut bad_presence = answer(&at("bad-presence.test"), &key, 300);
    bad_presence.presence = answer(&at("bad-presence.test"), &other_key, 300).presence;
    mount("bad-presence.test", json_response(&bad_presence)).await;
    let mut bad_rotation = answer(&at("bad-rotation.test"), &key, 300);
    let rotation = Signed::sign(
        &other_key,
        &Rotation {
            address: at("bad-rotation.test"),
            new_key: other_key.public(),
            seq: seq(),
        },
    );
    let signature = rotation.countersign(&other_key, &at("bad-rotation.test"));
    bad_rotation.rotations = vec![RotationProof::new(
        SecretKey::generate().public(),
        rotation,
        signature,
    )];
    mount("bad-rotation.test", json_response(&bad_rotation)).await;
    mount(
        "redirect.test",
        ResponseTemplate::new(302).insert_header(
            "location",
            format!(
                "http://{}/v1/federation/lookup/alice%40redirect.test",
                trap.addr
            ),
        ),
    )
    .await;
    mount(
        "flood.test",
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_bytes(vec![b' '; 1024 * 1024]),
    )
    .await;
    mount(
        "html.test",
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html")
            .set_body_bytes(serde_json::to_vec(&answer(&at("html.test"), &key, 300)).unwrap()),
    )
    .await;
    mount(
        "garbage.test",
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_bytes(b"{\"address\": \"alice@garbage.test\", \"public_key\": 7}".to_vec()),
    )
    .await;
    mount(
        "slow.test",
        json_response(&answer(&at("slow.test"), &key, 300)).set_delay(Duration::from_secs(10)),
    )
    .await;
    mount("broken.test", ResponseTemplate::new(500)).await;
    mount(
        "ttl.test",
        json_response(&answer(&at("ttl.test"), &key, u64::MAX / 2)),
    )
    .await;
    mount(
        "lying-length.test",
        json_response(&answer(&at("lying-length.test"), &key, 300))
            .insert_header("content-length", "999999999"),
    )
    .await;

    let cases: Vec<(&str, &str, u16, ProblemType)> = vec![
        (
            "answer about another user",
            "other-user.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "answer about another domain's user",
            "other-domain.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "presence record signed by another key",
            "bad-presence.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "rotation chain that does not end at the key",
            "bad-rotation.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "redirect to a loopback service",
            "redirect.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "answer over the size cap",
            "flood.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "answer with a text/html content type",
            "html.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "answer that is not a lookup answer",
            "garbage.test",
            502,
            ProblemType::BadRemoteAnswer,
        ),
        (
            "answer slower than the deadline",
            "slow.test",
            504,
            ProblemType::RemoteUnreachable,
        ),
        (
            "remote error 500",
            "broken.test",
            504,
            ProblemType::RemoteUnreachable,
        ),
        (
            "Content-Length longer than the body",
            "lying-length.test",
            504,
            ProblemType::RemoteUnreachable,
        ),
    ];
    for (case, domain, status, kind) in &cases {
        let started = Instant::now();
        let resp = node.lookup(&format!("alice@{domain}"), None).await;
        expect(case, resp, *status, *kind).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "case {case:?} took {:?}",
            started.elapsed()
        );
        // Nothing was cached: a cache-only lookup finds nothing.
        let cached = node
            .lookup(&format!("alice@{domain}?mode=cache-only"), None)
            .await;
        expect(case, cached, 404, ProblemType::NotCached).await;
    }
    assert_eq!(trap.hits(), 0, "the node followed a redirect");

    // A huge TTL is clamped to the record's remaining lifetime.
    let resp = node.lookup("alice@ttl.test", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let ttl = body["ttl"].as_u64().unwrap();
    assert!(
        ttl <= 600,
        "case \"huge TTL\": the node kept a TTL of {ttl}"
    );
    let cached = node.lookup("alice@ttl.test?mode=cache-only", None).await;
    let body: Value = cached.json().await.unwrap();
    assert!(body["ttl"].as_u64().unwrap() <= 600);
}
