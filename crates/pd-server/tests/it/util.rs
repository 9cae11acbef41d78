//! Shared helpers: a test node, users with keys, signed requests and problem checks.

use std::sync::atomic::{AtomicU64, Ordering};

use pd_proto::problem::PROBLEM_CONTENT_TYPE;
use pd_proto::records::{Deletion, Endpoint, Login, Presence, Registration, Withdrawal};
use pd_proto::wire::{AccountInfo, LoginResponse, RegisterRequest, RotateRequest};
use pd_proto::{Address, Problem, ProblemType, Rotation, SecretKey, Signed, now_micros};
use pd_server::Server;
use pd_server::config::Config;
use reqwest::{Response, StatusCode};
use serde::Serialize;
use tempfile::TempDir;

/// A running node with its data directory and an HTTP client.
pub(crate) struct TestNode {
    pub(crate) server: Server,
    pub(crate) dir: TempDir,
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
}

impl TestNode {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        adjust(&mut config);
        Self::bind(config, dir).await
    }

    pub(crate) async fn bind(config: Config, dir: TempDir) -> Self {
        let server = Server::bind(config).await.unwrap();
        let url = server.base_url();
        Self {
            server,
            dir,
            client: reqwest::Client::new(),
            url,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post(&self, path: &str, body: &impl Serialize) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn put(&self, path: &str, body: &impl Serialize) -> Response {
        self.client
            .put(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn lookup(&self, address: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(format!("{}/v1/lookup/{address}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    /// Looks up with a fresh session of `viewer`, expecting 200, and returns the JSON.
    pub(crate) async fn lookup_json(&self, viewer: &User, address: &str) -> serde_json::Value {
        let token = viewer.login(self).await;
        let resp = self.lookup(address, Some(&token)).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        resp.json().await.unwrap()
    }

    /// Expects a lookup of `address` to say "unknown user".
    pub(crate) async fn assert_unknown(&self, viewer: &User, address: &str) {
        let token = viewer.login(self).await;
        let resp = self.lookup(address, Some(&token)).await;
        assert_problem(resp, 404, ProblemType::UnknownUser).await;
    }
}

/// A strictly increasing sequence number (microsecond timestamp).
pub(crate) fn seq() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_micros();
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

pub(crate) use pd_proto::now_secs;

/// The `pd-server` binary of this build, as a command.
pub(crate) fn pd_server() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pd-server"))
}

pub(crate) fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// A user with a key.
pub(crate) struct User {
    pub(crate) key: SecretKey,
    pub(crate) address: Address,
}

impl User {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            key: SecretKey::generate(),
            address: addr(&format!("{name}@localhost")),
        }
    }

    /// A user of another domain.
    pub(crate) fn at(name: &str, domain: &str) -> Self {
        Self {
            key: SecretKey::generate(),
            address: addr(&format!("{name}@{domain}")),
        }
    }

    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/v1/accounts/{}{rest}", self.address)
    }

    pub(crate) fn registration(&self) -> RegisterRequest {
        RegisterRequest {
            registration: Signed::sign(
                &self.key,
                &Registration {
                    address: self.address.clone(),
                    public_key: self.key.public(),
                    seq: seq(),
                },
            ),
            invite: None,
        }
    }

    pub(crate) async fn register(&self, node: &TestNode) -> AccountInfo {
        let resp = node.post("/v1/accounts", &self.registration()).await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap()
        );
        resp.json().await.unwrap()
    }

    pub(crate) fn presence(&self, expires_in: u64) -> Presence {
        Presence {
            address: self.address.clone(),
            endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
            seq: seq(),
            expires_at: now_secs() + expires_in,
        }
    }

    pub(crate) fn signed_presence(&self, expires_in: u64) -> Signed<Presence> {
        Signed::sign(&self.key, &self.presence(expires_in))
    }

    pub(crate) async fn publish(&self, node: &TestNode, expires_in: u64) -> Signed<Presence> {
        let signed = self.signed_presence(expires_in);
        let resp = node.put(&self.path("/presence"), &signed).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        signed
    }

    pub(crate) fn login_request(&self) -> Signed<Login> {
        Signed::sign(
            &self.key,
            &Login {
                address: self.address.clone(),
                seq: seq(),
            },
        )
    }

    pub(crate) async fn login(&self, node: &TestNode) -> String {
        let resp = node.post("/v1/sessions", &self.login_request()).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        let login: LoginResponse = resp.json().await.unwrap();
        login.token
    }

    pub(crate) fn withdrawal(&self) -> Signed<Withdrawal> {
        Signed::sign(
            &self.key,
            &Withdrawal {
                address: self.address.clone(),
                seq: seq(),
            },
        )
    }

    pub(crate) fn deletion(&self) -> Signed<Deletion> {
        Signed::sign(
            &self.key,
            &Deletion {
                address: self.address.clone(),
                seq: seq(),
            },
        )
    }

    pub(crate) fn rotation(&self, new_key: &SecretKey) -> RotateRequest {
        let rotation = Signed::sign(
            &self.key,
            &Rotation {
                address: self.address.clone(),
                new_key: new_key.public(),
                seq: seq(),
            },
        );
        let new_key_signature = rotation.countersign(new_key, &self.address);
        RotateRequest {
            rotation,
            new_key_signature,
        }
    }
}

/// Checks status, content type and problem type of an error response.
pub(crate) async fn assert_problem(resp: Response, status: u16, kind: ProblemType) -> Problem {
    let actual = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    assert_eq!(content_type, PROBLEM_CONTENT_TYPE, "body: {text}");
    let problem: Problem = serde_json::from_str(&text).unwrap();
    assert_eq!(problem.problem_type(), Some(kind), "body: {text}");
    assert_eq!(problem.status, status);
    assert!(!problem.title.is_empty());
    problem
}
