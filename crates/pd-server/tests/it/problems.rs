//! Regression of issue 12: every error answer the node shapes is an
//! `application/problem+json` document, over HTTP and HTTPS, including long URIs and large
//! headers (414 and 431), which the node answers itself below the HTTP library's limits.
//! The few cases the HTTP library answers before the node can (a head beyond its own
//! limits, a request that is not HTTP) are checked here as documented in
//! `deploy/README.md`: a bare status line, no body, and the connection closed.

use std::time::Duration;

use pd_proto::problem::PROBLEM_CONTENT_TYPE;
use pd_proto::{Problem, ProblemType};
use pd_server::config::{Config, LookupAccess, TlsConfig};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::util::{TestNode, User};

/// One request of the sweep and the problem it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<(&'static str, Vec<u8>)>,
    status: u16,
    kind: ProblemType,
}

impl Case {
    fn get(what: &'static str, path: impl Into<String>, status: u16, kind: ProblemType) -> Self {
        Self {
            what,
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            status,
            kind,
        }
    }

    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }
}

/// Sends every case to `node` with `client` and checks each answer's status, media type
/// and problem type.
async fn sweep(node: &TestNode, client: &reqwest::Client) {
    let long_name = "a".repeat(9000);
    let many_headers = (0..70).fold(
        Case::get(
            "70 header fields",
            "/healthz",
            431,
            ProblemType::HeadersTooLarge,
        ),
        |case, i| case.header(format!("x-filler-{i}"), "1"),
    );
    let cases = vec![
        Case::get("an unknown path", "/nope", 404, ProblemType::NotFound),
        Case::get(
            "an unknown versioned path",
            "/v1/nope",
            404,
            ProblemType::NotFound,
        ),
        Case::get(
            "a wrong method",
            "/v1/accounts",
            405,
            ProblemType::MethodNotAllowed,
        )
        .method(Method::DELETE),
        Case::get(
            "a body over the limit",
            "/v1/accounts",
            413,
            ProblemType::PayloadTooLarge,
        )
        .method(Method::POST)
        .body("application/json", vec![b' '; 20_000]),
        Case::get(
            "a 9 KB address",
            format!("/v1/lookup/{long_name}@localhost"),
            414,
            ProblemType::UriTooLong,
        ),
        Case::get(
            "a 9 KB WebFinger resource",
            format!("/.well-known/webfinger?resource=acct:{long_name}@localhost"),
            414,
            ProblemType::UriTooLong,
        ),
        Case::get(
            "a 9 KB unknown path",
            format!("/{long_name}"),
            414,
            ProblemType::UriTooLong,
        ),
        Case::get(
            "a body without a JSON content type",
            "/v1/accounts",
            415,
            ProblemType::UnsupportedMediaType,
        )
        .method(Method::POST)
        .body("text/plain", "hello"),
        Case::get(
            "malformed JSON",
            "/v1/accounts",
            400,
            ProblemType::InvalidRequest,
        )
        .method(Method::POST)
        .body("application/json", "{not json"),
        Case::get(
            "well-formed JSON of the wrong shape",
            "/v1/accounts",
            400,
            ProblemType::InvalidRequest,
        )
        .method(Method::POST)
        .body("application/json", r#"{"registration": 5}"#),
        Case::get(
            "a malformed address in the path",
            "/v1/lookup/not-an-address",
            400,
            ProblemType::InvalidAddress,
        ),
        Case::get(
            "a path that is not UTF-8 once decoded",
            "/v1/lookup/%FF%FE@localhost",
            400,
            ProblemType::InvalidAddress,
        ),
        Case::get(
            "a malformed address in a write path",
            "/v1/accounts/a@b@c/presence",
            400,
            ProblemType::InvalidAddress,
        )
        .method(Method::PUT)
        .body("application/json", "{}"),
        Case::get(
            "a bad lookup mode",
            "/v1/lookup/alice@localhost?mode=sometimes",
            400,
            ProblemType::InvalidRequest,
        ),
        Case::get(
            "a lookup without a session",
            "/v1/lookup/alice@localhost",
            401,
            ProblemType::Unauthenticated,
        ),
        Case::get(
            "a bearer token that is not ASCII",
            "/v1/lookup/alice@localhost",
            401,
            ProblemType::Unauthenticated,
        )
        .header("authorization", "Bearer \u{e9}t\u{e9}"),
        Case::get(
            "an unknown session token",
            "/v1/lookup/alice@localhost",
            401,
            ProblemType::Unauthenticated,
        )
        .header("authorization", "Bearer nope"),
        Case::get(
            "a federation lookup without a signature",
            "/v1/federation/lookup/alice@localhost",
            401,
            ProblemType::InvalidNodeSignature,
        ),
        Case::get(
            "a garbled node signature",
            "/v1/federation/lookup/alice@localhost",
            401,
            ProblemType::InvalidNodeSignature,
        )
        .header("authorization", "PD-Node origin=\"x"),
        Case::get(
            "a WebFinger query without a resource",
            "/.well-known/webfinger",
            400,
            ProblemType::InvalidRequest,
        ),
        Case::get(
            "an unpublished allowlist",
            "/.well-known/pd-allowlist.txt",
            404,
            ProblemType::NotFound,
        ),
        many_headers,
        Case::get(
            "20 KB of header fields",
            "/healthz",
            431,
            ProblemType::HeadersTooLarge,
        )
        .header("x-big", "b".repeat(20_000)),
    ];
    for case in cases {
        let mut request = client.request(case.method.clone(), format!("{}{}", node.url, case.path));
        for (name, value) in &case.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some((content_type, body)) = &case.body {
            request = request
                .header("content-type", *content_type)
                .body(body.clone());
        }
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        check(resp, case.status, case.kind, case.what).await;
    }
}

async fn check(resp: reqwest::Response, status: u16, kind: ProblemType, what: &str) -> Problem {
    let actual = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(actual, status, "{what}: {text}");
    assert_eq!(content_type, PROBLEM_CONTENT_TYPE, "{what}: {text}");
    let problem: Problem =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(problem.problem_type(), Some(kind), "{what}: {text}");
    assert_eq!(problem.status, status, "{what}");
    problem
}

#[tokio::test]
async fn every_error_the_node_shapes_is_a_problem_document_over_http() {
    let node = TestNode::start().await;
    sweep(&node, &reqwest::Client::new()).await;
}

#[tokio::test]
async fn every_error_the_node_shapes_is_a_problem_document_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut node =
        TestNode::start_with(|c: &mut Config| c.tls = Some(TlsConfig { cert, key })).await;
    let addr = node.server.http_addr();
    node.url = format!("https://localhost:{}", addr.port());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    sweep(&node, &client).await;
}

/// Rate limits, refusals by policy, a lost database and request deadlines.
#[tokio::test]
async fn limits_policy_and_outages_are_problem_documents() {
    let node = TestNode::start_with(|c| {
        c.lookup_access = LookupAccess::Public;
        c.rate_limit.writes_per_second = 1;
        c.rate_limit.burst = 1;
        c.rate_limit.lookups_per_second = 1;
        c.rate_limit.lookup_burst = 2;
        c.trust = toml::from_str("deny = [\"refused.example\"]").unwrap();
    })
    .await;
    // 403: a domain the policy refuses.
    let resp = node.get("/v1/lookup/bob@refused.example").await;
    check(resp, 403, ProblemType::RefusedByPolicy, "a refused domain").await;
    // 429: the lookup burst of 2 is used up (the refused lookup was one).
    let resp = node.get("/v1/lookup/nobody@localhost").await;
    check(resp, 404, ProblemType::UnknownUser, "an unknown user").await;
    let resp = node.get("/v1/lookup/nobody@localhost").await;
    assert!(resp.headers().contains_key("retry-after"));
    check(resp, 429, ProblemType::RateLimited, "too many lookups").await;
    // 409 and 429 on writes.
    let alice = User::new("alice");
    alice.register(&node).await;
    let resp = node.post("/v1/accounts", &alice.registration()).await;
    assert!(resp.headers().contains_key("retry-after"));
    check(resp, 429, ProblemType::RateLimited, "too many writes").await;
    // 503: the store is gone.
    node.server.state().registry.store().close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = node
        .post("/v1/accounts", &User::new("bob").registration())
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    check(resp, 503, ProblemType::Unavailable, "a closed store").await;
    // `/healthz` answers its own Health body, by the spec, not a problem.
    let resp = node.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(health["status"], "unavailable");
}

/// Sends raw bytes and returns the raw answer, read until the node closes the connection.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The node may answer and close before it has read all of a huge request.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    let _ = read.await.expect("the node closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A bare answer of the HTTP library: the status, no body, and the connection closed.
fn assert_bare(answer: &str, status: &str, what: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{what}: {answer:?}"
    );
    assert!(
        answer.contains("content-length: 0\r\n"),
        "{what}: {answer:?}"
    );
    assert!(answer.ends_with("\r\n\r\n"), "{what}: {answer:?}");
}

/// The cases the HTTP library answers before the node can, as `deploy/README.md` lists
/// them: a head larger than its 64 KiB read buffer (431, a long request target included),
/// more header fields than it parses (431), and bytes that are not an HTTP request (400).
#[tokio::test]
async fn what_the_http_library_answers_itself_is_documented() {
    let node = TestNode::start().await;
    let addr = node.server.http_addr();
    let long_path = "a".repeat(70 * 1024);
    let answer = raw(
        addr,
        format!("GET /{long_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_bare(&answer, "431", "a 70 KiB request target");
    let big = "b".repeat(100 * 1024);
    let answer = raw(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_bare(&answer, "431", "a 100 KiB header field");
    let many: String = (0..200).map(|i| format!("X-H{i}: 1\r\n")).collect();
    let answer = raw(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_bare(&answer, "431", "200 header fields");
    let answer = raw(addr, b"HELLO THERE\r\n\r\n").await;
    assert_bare(&answer, "400", "a request that is not HTTP");
    // Below those limits the node answers itself, with a problem document.
    let resp = reqwest::Client::new()
        .get(format!("{}/{}", node.url, "a".repeat(30 * 1024)))
        .send()
        .await
        .unwrap();
    check(resp, 414, ProblemType::UriTooLong, "a 30 KiB path").await;
}
