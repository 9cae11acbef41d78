//! Regressions of issue 12 about lookups: a per-client limit on lookups (and WebFinger
//! queries), and a per-destination cap on the uncached lookups the node sends to another
//! domain, so that random names cannot make it a reflector; both answered 429
//! `rate-limited` with `Retry-After`.

use std::net::{IpAddr, Ipv4Addr};

use pd_proto::ProblemType;
use pd_server::config::LookupAccess;
use reqwest::StatusCode;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{TestNode, assert_problem};

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn lookups_are_limited_per_client() {
    let node = TestNode::start_with(|c| {
        c.lookup_access = LookupAccess::Public;
        c.rate_limit.lookups_per_second = 1;
        c.rate_limit.lookup_burst = 3;
    })
    .await;
    // Lookups and WebFinger queries share the client's bucket.
    for path in [
        "/v1/lookup/ghost@localhost",
        "/.well-known/webfinger?resource=acct:ghost@localhost",
        "/v1/lookup/ghost2@localhost",
    ] {
        assert_eq!(
            node.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let resp = node.get("/v1/lookup/ghost3@localhost").await;
    assert!((1..=2).contains(&retry_after(&resp)));
    let problem = assert_problem(resp, 429, ProblemType::RateLimited).await;
    assert!(problem.detail.contains("lookups"), "{}", problem.detail);
    let resp = node
        .get("/.well-known/webfinger?resource=acct:ghost@localhost")
        .await;
    assert_problem(resp, 429, ProblemType::RateLimited).await;
    // Another client has its own bucket; other routes are not limited.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/v1/lookup/ghost@localhost", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(node.get("/healthz").await.status(), StatusCode::OK);
}

/// The reflection of issue 12: lookups of random names at one domain each make the node
/// ask that domain's node. Beyond the per-destination cap the node answers 429 and sends
/// nothing; answers it has cached (negative ones too) still come from the cache.
#[tokio::test]
async fn uncached_lookups_of_one_domain_are_capped() {
    let remote = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/federation/lookup/"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(ProblemType::UnknownUser.with_detail("no such user")),
        )
        .mount(&remote)
        .await;
    let node = TestNode::start_with(|c| {
        c.lookup_access = LookupAccess::Public;
        c.federation.upstream_lookups_per_second = 1;
        c.federation.upstream_lookup_burst = 2;
        c.federation.peers = vec![format!("victim.test={}", remote.uri()).parse().unwrap()];
    })
    .await;
    for name in ["r1", "r2"] {
        let resp = node.get(&format!("/v1/lookup/{name}@victim.test")).await;
        assert_problem(resp, 404, ProblemType::UnknownUser).await;
    }
    let resp = node.get("/v1/lookup/r3@victim.test").await;
    assert!((1..=2).contains(&retry_after(&resp)));
    let problem = assert_problem(resp, 429, ProblemType::RateLimited).await;
    assert!(problem.detail.contains("victim.test"), "{}", problem.detail);
    for name in ["r4", "r5", "r6"] {
        let resp = node.get(&format!("/v1/lookup/{name}@victim.test")).await;
        assert_problem(resp, 429, ProblemType::RateLimited).await;
    }
    // Only two lookups reached the remote node.
    assert_eq!(remote.received_requests().await.unwrap().len(), 2);
    // A cached answer costs the remote nothing and is not limited.
    let resp = node.get("/v1/lookup/r1@victim.test").await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;
    assert_eq!(remote.received_requests().await.unwrap().len(), 2);
    // The bucket refills: one more lookup a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = node.get("/v1/lookup/r7@victim.test").await;
    assert_problem(resp, 404, ProblemType::UnknownUser).await;
    assert_eq!(remote.received_requests().await.unwrap().len(), 3);
}
