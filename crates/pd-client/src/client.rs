//! `PdClient`: one method per endpoint of the node API, each returning typed, verified answers.

use std::path::PathBuf;
use std::time::Duration;

use pd_proto::Presence;
use pd_proto::wire::{
    AccountInfo, Health, LoginResponse, LookupResponse, PublishResponse, RegisterRequest,
    RotateRequest, WellKnown, WhoamiResponse,
};
use pd_proto::{
    Address, Deletion, Login, LookupMode, Problem, PublicKey, Signed, VerifiedLookup, Withdrawal,
    paths, verify_lookup_answer,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ClientError, VerifyError};

/// Largest answer body the client reads, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Default time allowed to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time allowed for a whole request, answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How the client builds its own HTTP client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// A PEM file of extra CA certificates to trust besides the system and webpki roots.
    /// Default: none.
    pub ca_file: Option<PathBuf>,
    /// Time allowed to establish a connection. Default: 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request. Default: 15 s.
    pub timeout: Duration,
    /// The `User-Agent` header. Default: `pd-client/<version>`.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            user_agent: concat!("pd-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ClientOptions {
    /// Sets the extra CA file.
    pub fn with_ca_file(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Sets the connect and whole-request timeouts.
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.connect_timeout = connect;
        self.timeout = total;
        self
    }
}

/// A typed client of one PD node's HTTP API.
///
/// Plain `http://` base URLs are accepted because a caller may name a local node
/// explicitly; [`PdClient::is_plain_http`] and [`insecure_warning_needed`] let the caller
/// decide whether to warn. Redirects are never followed, so an `https://` node can not send
/// the client to plain HTTP.
#[derive(Debug, Clone)]
pub struct PdClient {
    http: reqwest::Client,
    base: Url,
}

impl PdClient {
    /// Builds a client for the node at `base` with its own HTTP client: rustls with the
    /// system roots, the webpki roots and the certificates of `options.ca_file`.
    pub fn new(base: Url, options: &ClientOptions) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(true)
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(pd_proto::CLIENT_IDLE_REUSE)
            .user_agent(options.user_agent.clone());
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Setup(format!("failed to read CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Setup(format!("CA file {} is not valid PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Setup(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(format!("failed to build the HTTP client: {e}")))?;
        Self::with_http_client(base, http)
    }

    /// Builds a client for the node at `base` over an existing HTTP client (for example one
    /// that guards which addresses it may connect to).
    pub fn with_http_client(base: Url, http: reqwest::Client) -> Result<Self, ClientError> {
        check_base_url(&base)?;
        Ok(Self { http, base })
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Whether the node is spoken to over plain, unencrypted HTTP.
    pub fn is_plain_http(&self) -> bool {
        self.base.scheme() == "http"
    }

    /// `POST /v1/accounts`: creates an account. The answer must name the registered address
    /// and key.
    pub async fn register(&self, request: &RegisterRequest) -> Result<AccountInfo, ClientError> {
        let registration = request.registration.decode_unverified().map_err(|e| {
            ClientError::Setup(format!("the registration to send is malformed: {e}"))
        })?;
        let url = self.url(paths::ACCOUNTS, None);
        let info: AccountInfo = self.send_json(Method::POST, url.clone(), request).await?;
        check_account(&url, &info, &registration.address, &registration.public_key)?;
        Ok(info)
    }

    /// `PUT /v1/accounts/{address}/presence`: publishes a presence record.
    pub async fn publish_presence(
        &self,
        address: &Address,
        presence: &Signed<Presence>,
    ) -> Result<PublishResponse, ClientError> {
        let sent = presence.decode_unverified().map_err(|e| {
            ClientError::Setup(format!("the presence record to send is malformed: {e}"))
        })?;
        let url = self.url(paths::PRESENCE, Some(address));
        let answer: PublishResponse = self.send_json(Method::PUT, url.clone(), presence).await?;
        if sent.seq != answer.seq {
            return Err(ClientError::Verification {
                url: url.to_string(),
                reason: VerifyError::SeqMismatch {
                    sent: sent.seq,
                    answered: answer.seq,
                },
            });
        }
        Ok(answer)
    }

    /// `POST /v1/accounts/{address}/presence/withdraw`: withdraws the presence record.
    pub async fn withdraw(
        &self,
        address: &Address,
        withdrawal: &Signed<Withdrawal>,
    ) -> Result<(), ClientError> {
        let url = self.url(paths::PRESENCE_WITHDRAW, Some(address));
        self.send_empty(Method::POST, url, withdrawal).await
    }

    /// `POST /v1/accounts/{address}/rotate`: replaces the account key. The answer must name
    /// the new key.
    pub async fn rotate(
        &self,
        address: &Address,
        request: &RotateRequest,
    ) -> Result<AccountInfo, ClientError> {
        let rotation = request
            .rotation
            .decode_unverified()
            .map_err(|e| ClientError::Setup(format!("the rotation to send is malformed: {e}")))?;
        let url = self.url(paths::ROTATE, Some(address));
        let info: AccountInfo = self.send_json(Method::POST, url.clone(), request).await?;
        check_account(&url, &info, address, &rotation.new_key)?;
        Ok(info)
    }

    /// `POST /v1/accounts/{address}/delete`: deletes the account.
    pub async fn delete(
        &self,
        address: &Address,
        deletion: &Signed<Deletion>,
    ) -> Result<(), ClientError> {
        let url = self.url(paths::DELETE, Some(address));
        self.send_empty(Method::POST, url, deletion).await
    }

    /// `POST /v1/sessions`: exchanges a signed login for a lookup session token.
    pub async fn login(&self, login: &Signed<Login>) -> Result<LoginResponse, ClientError> {
        let url = self.url(paths::SESSIONS, None);
        let answer: LoginResponse = self.send_json(Method::POST, url.clone(), login).await?;
        if answer.token.is_empty() {
            return Err(ClientError::Decode {
                url: url.to_string(),
                detail: "the session token is empty".to_owned(),
            });
        }
        Ok(answer)
    }

    /// `GET /v1/lookup/{address}`: a user's key and current presence record.
    ///
    /// The answer is refused unless it is about exactly `address` and its presence record
    /// (if any) verifies under the answer's key for `address`.
    pub async fn lookup(
        &self,
        address: &Address,
        token: Option<&str>,
        mode: Option<LookupMode>,
    ) -> Result<VerifiedLookup, ClientError> {
        let mut url = self.url(paths::LOOKUP, Some(address));
        if let Some(mode) = mode {
            url.query_pairs_mut()
                .append_pair(LookupMode::QUERY_PARAMETER, mode.as_str());
        }
        let mut request = self.http.get(url.clone());
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Setup("the session token is not a valid header value".to_owned())
            })?;
            request = request.header(AUTHORIZATION, value);
        }
        let response: LookupResponse = self.execute(request, &url).await?;
        verify_lookup_answer(address, response).map_err(|reason| ClientError::Verification {
            url: url.to_string(),
            reason: reason.into(),
        })
    }

    /// `GET /v1/whoami`: the address the node sees this client coming from (its IP, and
    /// its TCP source port unless the node sits behind a proxy), like a STUN reflexive
    /// address.
    pub async fn whoami(&self) -> Result<WhoamiResponse, ClientError> {
        let url = self.url(paths::WHOAMI, None);
        self.execute(self.http.get(url.clone()), &url).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let url = self.url(paths::HEALTHZ, None);
        self.execute(self.http.get(url.clone()), &url).await
    }

    /// `GET /.well-known/pd`.
    pub async fn well_known(&self) -> Result<WellKnown, ClientError> {
        let url = self.url(paths::WELL_KNOWN, None);
        self.execute(self.http.get(url.clone()), &url).await
    }

    /// `GET url` asking for an HTTP/1.1 upgrade to `protocol`, with the session `token` if
    /// given (the relay, section 13 of the specification): the upgraded connection, or the
    /// node's problem. `url` may lead to another node than this client's.
    pub async fn upgrade(
        &self,
        url: &Url,
        token: Option<&str>,
        protocol: &str,
    ) -> Result<reqwest::Upgraded, ClientError> {
        let mut request = self
            .http
            .get(url.clone())
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, protocol);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(url.as_str(), e))?;
        let status = response.status();
        if status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return response
                .upgrade()
                .await
                .map_err(|e| ClientError::transport(url.as_str(), e));
        }
        if status.is_success() {
            return Err(ClientError::Decode {
                url: url.to_string(),
                detail: format!("expected 101 Switching Protocols, got {status}"),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::transport(url.as_str(), e))?;
        let body = &body[..body.len().min(MAX_RESPONSE_BYTES)];
        Err(ClientError::Problem(problem_from_answer(
            url,
            status,
            &content_type,
            body,
        )))
    }

    /// The URL of `segments` below the base URL; each segment is percent-encoded.
    /// The URL of the API path `template` ([`pd_proto::paths`]) below the base URL, with
    /// `address` in place of `{address}`, each segment percent-encoded.
    fn url(&self, template: &str, address: Option<&Address>) -> Url {
        let address = address.map(Address::to_string).unwrap_or_default();
        let mut url = self.base.clone();
        // `check_base_url` refused cannot-be-a-base URLs, so this branch always runs.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(paths::segments(template, &address));
        }
        url
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<T, ClientError> {
        let request = self.request_with_body(method, url.clone(), body)?;
        self.execute(request, &url).await
    }

    async fn send_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<(), ClientError> {
        let request = self.request_with_body(method, url.clone(), body)?;
        self.answer(request, &url).await.map(drop)
    }

    fn request_with_body<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ClientError::Setup(format!("failed to encode the request: {e}")))?;
        Ok(self
            .http
            .request(method, url)
            .header(CONTENT_TYPE, "application/json")
            .body(body))
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<T, ClientError> {
        let body = self.answer(request, url).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    /// Sends the request and returns the body of a successful answer; an error answer
    /// becomes [`ClientError::Problem`].
    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Vec<u8>, ClientError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(url.as_str(), e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::transport(url.as_str(), e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Decode {
                    url: url.to_string(),
                    detail: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        Err(ClientError::Problem(problem_from_answer(
            url,
            status,
            &content_type,
            &body,
        )))
    }
}

/// Whether a user should be warned before talking to `url`: it is plain HTTP to a host that
/// is not on the loopback interface.
pub fn insecure_warning_needed(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => true,
    }
}

/// The URL a user most likely meant by `input`, a server address written without a scheme
/// (`127.0.0.1:8080`, `pd.example.com`): `http://` for a loopback host (a local node),
/// `https://` for any other.
pub fn suggest_url(input: &str) -> String {
    let input = input.trim().trim_start_matches('/');
    let host = input
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(input, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    let scheme = if loopback { "http" } else { "https" };
    format!("{scheme}://{input}")
}

fn check_base_url(base: &Url) -> Result<(), ClientError> {
    let refuse = |why: &str| Err(ClientError::Setup(format!("server URL {base} {why}")));
    if !matches!(base.scheme(), "https" | "http") {
        return refuse("must start with https:// (or http:// for a local node)");
    }
    if base.cannot_be_a_base() || base.host_str().is_none_or(str::is_empty) {
        return refuse("has no host");
    }
    if !base.username().is_empty() || base.password().is_some() {
        return refuse("must not contain user information");
    }
    if base.query().is_some() || base.fragment().is_some() {
        return refuse("must not have a query or fragment");
    }
    Ok(())
}

/// Turns an error answer into a problem: a `problem+json` (or JSON) body that parses as one
/// is kept; anything else becomes `about:blank` with the answer's status, and a detail that
/// says what it likely means: a gateway error (502 to 504) comes from a proxy in front of
/// the node, any other answer without a problem document from something that is not a PD
/// node at all (a wrong server URL).
fn problem_from_answer(url: &Url, status: StatusCode, content_type: &str, body: &[u8]) -> Problem {
    let is_json = content_type.starts_with("application/problem+json")
        || content_type.starts_with("application/json");
    if is_json && let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return problem;
    }
    Problem {
        kind: "about:blank".to_owned(),
        title: status
            .canonical_reason()
            .unwrap_or("Unexpected status")
            .to_owned(),
        status: status.as_u16(),
        detail: if matches!(status.as_u16(), 502..=504) {
            format!(
                "the server answered HTTP {} without a problem description",
                status.as_u16()
            )
        } else {
            format!(
                "{} answered HTTP {} without a problem description: it does not look like a PD \
                 node (is the server URL right?)",
                url.origin().ascii_serialization(),
                status.as_u16()
            )
        },
    }
}

fn check_account(
    url: &Url,
    info: &AccountInfo,
    address: &Address,
    key: &PublicKey,
) -> Result<(), ClientError> {
    let refuse = |reason| {
        Err(ClientError::Verification {
            url: url.to_string(),
            reason,
        })
    };
    if &info.address != address {
        return refuse(VerifyError::AddressMismatch {
            asked: address.to_string(),
            answered: info.address.to_string(),
        });
    }
    if &info.public_key != key {
        return refuse(VerifyError::KeyMismatch {
            expected: key.to_string(),
            answered: info.public_key.to_string(),
        });
    }
    if info.fingerprint != key.fingerprint() {
        return refuse(VerifyError::Fingerprint(info.fingerprint.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_scheme_gets_the_likely_one() {
        assert_eq!(suggest_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(suggest_url("localhost:8080"), "http://localhost:8080");
        assert_eq!(suggest_url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(suggest_url("a.localhost"), "http://a.localhost");
        assert_eq!(suggest_url("pd.example.com"), "https://pd.example.com");
        assert_eq!(suggest_url("203.0.113.5:443"), "https://203.0.113.5:443");
    }

    #[test]
    fn insecure_warning_only_for_plain_http_off_loopback() {
        for (url, warn) in [
            ("https://pd.example", false),
            ("http://127.0.0.1:8080", false),
            ("http://[::1]:8080", false),
            ("http://localhost:8080", false),
            ("http://node.localhost", false),
            ("http://pd.example", true),
            ("http://192.0.2.1", true),
        ] {
            assert_eq!(
                insecure_warning_needed(&Url::parse(url).unwrap()),
                warn,
                "{url}"
            );
        }
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "ftp://pd.example",
            "https://user:pw@pd.example",
            "https://pd.example/?q=1",
            "mailto:a@b",
        ] {
            assert!(
                PdClient::with_http_client(Url::parse(bad).unwrap(), reqwest::Client::new())
                    .is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn paths_are_built_below_the_base_and_encoded() {
        let client = PdClient::with_http_client(
            Url::parse("https://pd.example/prefix/").unwrap(),
            reqwest::Client::new(),
        )
        .unwrap();
        let address = Address::parse("alice@pd.example:8443").unwrap();
        assert_eq!(
            client.url(paths::PRESENCE, Some(&address)).as_str(),
            "https://pd.example/prefix/v1/accounts/alice@pd.example:8443/presence"
        );
        let root = PdClient::with_http_client(
            Url::parse("http://127.0.0.1:1").unwrap(),
            reqwest::Client::new(),
        )
        .unwrap();
        assert_eq!(
            root.url(paths::WELL_KNOWN, None).as_str(),
            "http://127.0.0.1:1/.well-known/pd"
        );
    }

    #[test]
    fn non_problem_error_bodies_become_synthetic_problems() {
        let url = Url::parse("http://127.0.0.1:9/v1/accounts").unwrap();
        let p = problem_from_answer(&url, StatusCode::BAD_GATEWAY, "text/html", b"<html>");
        assert_eq!(p.status, 502);
        assert_eq!(p.kind, "about:blank");
        assert_eq!(p.problem_type(), None);
        assert!(!p.detail.contains("PD node"), "{}", p.detail);
        let p = problem_from_answer(&url, StatusCode::NOT_IMPLEMENTED, "text/html", b"<html>");
        assert_eq!(
            p.detail,
            "http://127.0.0.1:9 answered HTTP 501 without a problem description: it does not \
             look like a PD node (is the server URL right?)"
        );
        let real = pd_proto::ProblemType::NameTaken.with_detail("taken");
        let body = serde_json::to_vec(&real).unwrap();
        assert_eq!(
            problem_from_answer(
                &url,
                StatusCode::CONFLICT,
                "application/problem+json",
                &body
            ),
            real
        );
    }
}
