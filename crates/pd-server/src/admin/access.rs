//! Who may use the admin listener, and how its answers are protected in a browser.
//!
//! - **Without `admin.token`** only loopback clients are answered, and only requests
//!   addressed to a loopback name (`Host: localhost`, `127.0.0.1`, `[::1]`, any port).
//!   The second check defeats DNS rebinding: a web page whose domain resolves to
//!   127.0.0.1 would reach the listener from the operator's browser, but with its own
//!   name in `Host`.
//! - **With `admin.token`** every request must carry it, from any address:
//!   `Authorization: Bearer <token>` (scripts), or HTTP Basic authentication with the token
//!   as the password (browsers prompt for it; the user name is ignored). The comparison
//!   takes constant time.
//! - **Cross-site request forgery**: a request with an unsafe method (POST, ...) is
//!   refused when the browser says it comes from another site: `Sec-Fetch-Site` other than
//!   `same-origin` or `none`, or, from browsers that do not send it, an `Origin` whose
//!   host differs from `Host`. Clients that send neither header (curl, scripts) are not
//!   browsers and cannot be forged into sending a request. The status pages' forms also
//!   carry a per-process token, checked by their handlers, for browsers that send neither
//!   header.
//! - Every answer forbids caching and framing, and the pages' content security policy
//!   allows only the listener's own stylesheet and script.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use pd_proto::ProblemType;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

use crate::config::{Config, Secret};
use crate::http::ApiError;

/// The realm browsers show when they prompt for the token.
const REALM: &str = "pd-server admin";

/// The content security policy of every admin answer: nothing but the listener's own
/// stylesheet and script, forms that post only to the listener, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The access rules of the admin listener.
#[derive(Debug)]
pub(crate) struct Access {
    token: Option<Secret>,
}

impl Access {
    /// The rules `config` sets.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            token: config.admin.token.clone(),
        }
    }
}

/// The middleware: authentication (or the loopback rules), the cross-site check, then the
/// protective headers on the answer.
pub(crate) async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if let Some(refusal) = refusal(&access, &req) {
        return protect(refusal);
    }
    protect(next.run(req).await)
}

/// The answer refusing `req`, or `None` when it may go on.
fn refusal(access: &Access, req: &Request) -> Option<Response> {
    match &access.token {
        Some(token) => {
            if !carries_token(req.headers(), token) {
                return Some(unauthorized());
            }
        }
        None => {
            let loopback = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|c| c.0.ip().is_loopback());
            if !loopback {
                return Some(
                    ApiError::new(
                        ProblemType::NotFound,
                        "the admin surface only answers loopback clients",
                    )
                    .into_response(),
                );
            }
            if !request_host(req).is_some_and(is_loopback_name) {
                return Some(ApiError::new(
                    ProblemType::InvalidRequest,
                    "the admin surface answers only requests addressed to localhost, 127.0.0.1 or [::1]; \
                     set admin.token to reach it under another name",
                )
                .into_response());
            }
        }
    }
    if !is_safe(req.method())
        && let Some(why) = cross_site(req)
    {
        return Some(
            ApiError::new(
                ProblemType::InvalidRequest,
                format!("cross-site request refused ({why}); use the admin pages themselves"),
            )
            .into_response(),
        );
    }
    None
}

/// Whether `headers` carry `token`, as a bearer token or as the password of HTTP Basic
/// authentication.
fn carries_token(headers: &HeaderMap, token: &Secret) -> bool {
    let expected = token.expose().as_bytes();
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
            let rest = rest.trim();
            let offered: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
                rest.as_bytes().to_vec()
            } else if scheme.eq_ignore_ascii_case("basic") {
                let Ok(decoded) = BASE64.decode(rest.as_bytes()) else {
                    return false;
                };
                match decoded.iter().position(|b| *b == b':') {
                    Some(colon) => decoded[colon + 1..].to_vec(),
                    None => return false,
                }
            } else {
                return false;
            };
            bool::from(offered.ct_eq(expected))
        })
}

/// 401 with both challenges: browsers prompt for Basic credentials, scripts see Bearer.
fn unauthorized() -> Response {
    let mut response = ApiError::new(
        ProblemType::Unauthenticated,
        "the admin surface needs the admin token: `Authorization: Bearer <token>`, \
         or the token as the password when the browser asks",
    )
    .into_response();
    let headers = response.headers_mut();
    headers.remove(header::WWW_AUTHENTICATE);
    for challenge in [
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
        format!("Bearer realm=\"{REALM}\""),
    ] {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why an unsafe request looks like it was forged by another site, if it does. The rules
/// of Go's `net/http.CrossOriginProtection`.
fn cross_site(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            other => Some(format!(
                "Sec-Fetch-Site: {}",
                String::from_utf8_lossy(other)
                    .chars()
                    .take(40)
                    .collect::<String>()
            )),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (authority, request_host(req)) {
        (Some(a), Some(host)) if a.eq_ignore_ascii_case(host) => None,
        _ => Some(format!(
            "Origin: {}",
            origin.chars().take(100).collect::<String>()
        )),
    }
}

/// The host (with port) the request is addressed to: `Host`, or the URI's authority
/// (HTTP/2).
fn request_host(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Whether a `Host` value (with or without port) names this machine's loopback.
fn is_loopback_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Adds the headers every admin answer carries (keeping any the handler set).
fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for host in [
            "localhost",
            "localhost:9091",
            "LOCALHOST.:80",
            "127.0.0.1",
            "127.0.0.1:9091",
            "127.3.2.1:1",
            "[::1]",
            "[::1]:9091",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9091",
            "localhost.evil.example",
            "10.0.0.1:9091",
            "[::2]:9091",
            "[::1",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_is_accepted_as_bearer_or_basic_password() {
        let token = Secret::new("0123456789abcdef0123456789abcdef");
        let basic = |user_pass: &str| format!("Basic {}", BASE64.encode(user_pass.as_bytes()));
        for ok in [
            "Bearer 0123456789abcdef0123456789abcdef".to_owned(),
            "bearer   0123456789abcdef0123456789abcdef ".to_owned(),
            basic("admin:0123456789abcdef0123456789abcdef"),
            basic(":0123456789abcdef0123456789abcdef"),
        ] {
            assert!(
                carries_token(&headers(&[("authorization", &ok)]), &token),
                "{ok}"
            );
        }
        for bad in [
            "Bearer 0123456789abcdef0123456789abcde".to_owned(),
            "Bearer".to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned(),
            basic("0123456789abcdef0123456789abcdef"),
            basic("0123456789abcdef0123456789abcdef:x"),
            "Basic !!!".to_owned(),
            "PD-Node 0123456789abcdef0123456789abcdef".to_owned(),
        ] {
            assert!(
                !carries_token(&headers(&[("authorization", &bad)]), &token),
                "{bad}"
            );
        }
        assert!(!carries_token(&HeaderMap::new(), &token));
    }

    fn post(pairs: &[(&str, &str)]) -> Request {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/peers/retry")
            .body(axum::body::Body::empty())
            .unwrap();
        *req.headers_mut() = headers(pairs);
        req
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let host = ("host", "127.0.0.1:9091");
        for same in [
            vec![host],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
            vec![host, ("origin", "http://127.0.0.1:9091")],
            vec![
                ("host", "admin.example.org"),
                ("origin", "https://Admin.Example.org"),
            ],
            // Sec-Fetch-Site decides when present.
            vec![
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://other.example"),
            ],
        ] {
            assert_eq!(cross_site(&post(&same)), None, "{same:?}");
        }
        for forged in [
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:9092")],
            vec![("origin", "http://127.0.0.1:9091")],
        ] {
            assert!(cross_site(&post(&forged)).is_some(), "{forged:?}");
        }
    }
}
