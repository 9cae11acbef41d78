//! The operator's status pages, rendered on the server from compile-time-checked askama
//! templates (`templates/`), with one stylesheet and no script but a few lines that reload
//! the overview and the peers page while nobody types.
//!
//! - `GET /`: the overview (identity, store, users, lookups and cache hit ratio of the
//!   last hour as inline SVG, problem answers by type, peers at a glance, server keys).
//! - `GET /peers`: every remote node contacted, with retry and cache-flush buttons
//!   (`POST /peers/retry`, `POST /peers/flush`).
//! - `GET /trust`: mode, entries in force and where each came from, subscriptions, the
//!   explain form (`GET /trust?domain=…`) and the audit log of policy changes; the reload
//!   button (`POST /trust/reload`).
//!
//! The relay section (active slots, relayed conversations, bytes and age, never content)
//! joins [`NAV`] once the node has a relay.
//!
//! Every value is escaped by the templates (askama escapes HTML by default and nothing
//! here opts out), which matters for what came from the network: domain names, error
//! texts of remote nodes, trust list entries and reasons. Forms follow post/redirect/get:
//! a POST does the operation of the JSON surface ([`super::ops`]), keeps the outcome as a
//! one-time notice and redirects to the page, which shows it once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use pd_federation::trust::{EntryKind, ListSource, Reason, lists};
use pd_proto::ProblemType;
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;

use super::AdminState;
use super::chart::{self, HEIGHT, LookupChart, RATIO_HEIGHT, RatioChart, WIDTH};
use super::ops::{self, PeerState};
use crate::http::ApiError;
use crate::metrics::traffic::LookupClass;
use crate::state::AppState;
use crate::store::UserCounts;

/// How long a one-time notice waits to be shown.
const NOTICE_TTL: Duration = Duration::from_secs(600);
/// How long the user counts are reused (counting scans the accounts table).
const COUNTS_TTL: Duration = Duration::from_secs(15);
/// How long the store may take to answer the overview's ping and count.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The sections in the navigation: path and name.
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/peers", "Peers"),
    ("/trust", "Trust"),
    ("/relay", "Relay"),
];

/// State of the pages: the form token, pending notices and the cached user counts.
pub(crate) struct Pages {
    csrf: String,
    notices: moka::future::Cache<String, Notice>,
    counts: Mutex<Option<(Instant, Result<UserCounts, String>)>>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

impl Pages {
    /// Fresh state with a new random form token.
    pub(crate) fn new() -> Self {
        Self {
            csrf: random_hex(),
            notices: moka::future::Cache::builder()
                .max_capacity(256)
                .time_to_live(NOTICE_TTL)
                .build(),
            counts: Mutex::new(None),
        }
    }

    async fn keep(&self, notice: Notice) -> String {
        let id = random_hex();
        self.notices.insert(id.clone(), notice).await;
        id
    }

    async fn take(&self, query: &Query) -> Option<Notice> {
        let id = query.get("notice")?;
        self.notices.remove(id).await
    }

    async fn user_counts(&self, app: &AppState) -> Result<UserCounts, String> {
        let mut cached = self.counts.lock().await;
        if let Some((at, counts)) = cached.as_ref()
            && at.elapsed() < COUNTS_TTL
        {
            return counts.clone();
        }
        let now = pd_proto::now_micros() / 1_000_000;
        let counts = match tokio::time::timeout(
            STORE_TIMEOUT,
            app.registry.store().user_counts(now),
        )
        .await
        {
            Ok(Ok(counts)) => Ok(counts),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the store did not answer in time".to_owned()),
        };
        *cached = Some((Instant::now(), counts.clone()));
        counts
    }
}

fn random_hex() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>())
}

/// The routes of the pages.
pub(super) fn router() -> Router<AdminState> {
    Router::new()
        .route("/", get(overview))
        .route("/peers", get(peers))
        .route("/peers/retry", post(retry))
        .route("/peers/flush", post(flush))
        .route("/trust", get(trust))
        .route("/trust/reload", post(reload))
        .route("/relay", get(relay))
        .route("/style.css", get(stylesheet))
        .route("/refresh.js", get(script))
}

/// A one-time message shown at the top of a page.
#[derive(Debug, Clone)]
pub(super) struct Notice {
    /// `ok` or `error`, for the stylesheet.
    class: &'static str,
    text: String,
}

impl Notice {
    fn ok(text: impl Into<String>) -> Self {
        Self {
            class: "ok",
            text: text.into(),
        }
    }

    fn error(text: impl Into<String>) -> Self {
        Self {
            class: "error",
            text: text.into(),
        }
    }
}

/// A link of the navigation.
#[derive(Debug)]
struct NavItem {
    href: &'static str,
    label: &'static str,
    current: bool,
}

/// What every page shares: the header, the notice, the form token.
#[derive(Debug)]
struct Layout {
    title: &'static str,
    domain: String,
    version: &'static str,
    nav: Vec<NavItem>,
    notice: Option<Notice>,
    csrf: String,
    /// Whether the page reloads itself every half minute.
    refresh: bool,
}

impl Layout {
    fn new(app: &AppState, pages: &Pages, path: &str, notice: Option<Notice>) -> Self {
        let title = NAV
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("Not found", |(_, t)| *t);
        Self {
            title,
            domain: app.config.domain.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            nav: NAV
                .iter()
                .map(|(href, label)| NavItem {
                    href,
                    label,
                    current: *href == path,
                })
                .collect(),
            notice,
            csrf: pages.csrf.clone(),
            refresh: path == "/" || path == "/peers" || path == "/relay",
        }
    }
}

/// A moment, shown relative to now with the exact time in a tooltip.
#[derive(Debug, Clone)]
struct Moment {
    iso: String,
    relative: String,
}

impl Moment {
    fn of(t: SystemTime) -> Self {
        Self::at(t, SystemTime::now())
    }

    fn at(t: SystemTime, now: SystemTime) -> Self {
        let relative = match now.duration_since(t) {
            Ok(ago) => format!("{} ago", span(ago)),
            Err(e) => format!("in {}", span(e.duration())),
        };
        Self {
            iso: humantime::format_rfc3339_seconds(t).to_string(),
            relative,
        }
    }
}

/// A duration in its largest unit: `42 s`, `3 min`, `5 h`, `2 d`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 && !d.is_zero() {
        return format!("{} ms", d.as_millis().max(1));
    }
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// An uptime: `3 d 4 h`, `5 h 12 min`, `42 s`.
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A text that may be long (an error of a remote node, a list's reason): its start, and
/// the whole of it when the start is not all of it.
#[derive(Debug, Clone)]
struct LongText {
    head: String,
    full: Option<String>,
}

impl LongText {
    /// Characters shown before the rest is folded away.
    const HEAD: usize = 240;

    fn new(text: String) -> Self {
        match text.char_indices().nth(Self::HEAD) {
            Some((cut, _)) => Self {
                head: text[..cut].to_owned(),
                full: Some(text),
            },
            None => Self {
                head: text,
                full: None,
            },
        }
    }
}

/// The query string's parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(req: &Request) -> Self {
        let query = req.uri().query().unwrap_or_default();
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::internal(format!("failed to render a page: {e}")).into_response(),
    }
}

// The overview.

#[derive(Debug)]
struct RateRow {
    class: &'static str,
    label: &'static str,
    per_second: String,
    hour: u64,
    total: u64,
}

#[derive(Debug)]
struct ProblemRow {
    slug: &'static str,
    title: &'static str,
    status: u16,
    hour: u64,
    total: u64,
}

#[derive(Debug)]
struct KeyRow {
    id: String,
    fingerprint: String,
    role: &'static str,
    valid_until: Moment,
}

#[derive(Debug)]
struct StateCount {
    class: &'static str,
    label: &'static str,
    count: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    started: Moment,
    uptime: String,
    store_kind: &'static str,
    store_name: String,
    store_error: Option<String>,
    users: Result<UserCounts, String>,
    registration: &'static str,
    lookup_access: &'static str,
    trust_mode: String,
    rates: Vec<RateRow>,
    hit_ratio: String,
    chart: LookupChart,
    ratio: RatioChart,
    width: u32,
    height: u32,
    ratio_height: u32,
    problems: Vec<ProblemRow>,
    peer_states: Vec<StateCount>,
    peer_count: usize,
    keys: Vec<KeyRow>,
}

async fn overview(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    req: Request,
) -> Response {
    let notice = pages.take(&Query::of(&req)).await;
    let store = app.registry.store();
    let store_error = match tokio::time::timeout(STORE_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the store did not answer in time".to_owned()),
    };
    let users = pages.user_counts(&app).await;
    let traffic = &app.metrics.traffic;
    let snap = traffic.snapshot();
    let rates = LookupClass::ALL
        .into_iter()
        .map(|class| {
            let hour = snap.hour_lookups(class);
            RateRow {
                class: class.as_str(),
                label: match class {
                    LookupClass::Local => "local users",
                    LookupClass::Remote => "asked other nodes",
                    LookupClass::Cached => "answered from the cache",
                    LookupClass::Refused => "refused by trust",
                },
                per_second: chart::rate(hour as f64 / 3600.0),
                hour,
                total: snap.total_lookups[class as usize],
            }
        })
        .collect();
    let hit_ratio = chart::hit_ratio(
        snap.hour_lookups(LookupClass::Cached),
        snap.hour_lookups(LookupClass::Remote),
    )
    .map_or_else(
        || "no lookups of other domains' users".to_owned(),
        |r| format!("{:.0} %", r * 100.0),
    );
    let problems = snap
        .problems()
        .into_iter()
        .map(|(kind, hour, total)| ProblemRow {
            slug: kind.slug(),
            title: kind.title(),
            status: kind.status(),
            hour,
            total,
        })
        .collect();
    let peers = ops::peers(&app);
    let peer_states = [
        PeerState::Healthy,
        PeerState::Failing,
        PeerState::BackingOff,
        PeerState::RefusesUs,
        PeerState::RefusedByTrust,
    ]
    .into_iter()
    .map(|state| StateCount {
        class: state_class(state),
        label: state.label(),
        count: peers.iter().filter(|p| p.state() == state).count(),
    })
    .filter(|s| s.count > 0)
    .collect();
    let now_secs = pd_proto::now_micros() / 1_000_000;
    let keys = app
        .server_keys
        .published(now_secs)
        .into_iter()
        .enumerate()
        .map(|(i, key)| KeyRow {
            id: key.key_id,
            fingerprint: key.public_key.fingerprint().to_string(),
            role: if i == 0 { "current" } else { "retired" },
            valid_until: Moment::of(SystemTime::UNIX_EPOCH + Duration::from_secs(key.valid_until)),
        })
        .collect();
    let page = OverviewPage {
        layout: Layout::new(&app, &pages, "/", notice),
        started: Moment::of(traffic.started_at()),
        uptime: uptime(traffic.uptime()),
        store_kind: if store.is_shared() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        store_name: app.config.store_spec().to_string(),
        store_error,
        users,
        registration: app.config.registration.as_str(),
        lookup_access: app.config.lookup_access.as_str(),
        trust_mode: app.federation.trust.current().mode().to_string(),
        rates,
        hit_ratio,
        chart: chart::lookups(&snap),
        ratio: chart::ratio(&snap),
        width: WIDTH,
        height: HEIGHT,
        ratio_height: RATIO_HEIGHT,
        problems,
        peer_count: peers.len(),
        peer_states,
        keys,
    };
    render(StatusCode::OK, &page)
}

fn state_class(state: PeerState) -> &'static str {
    match state {
        PeerState::Healthy => "ok",
        PeerState::Failing | PeerState::RefusesUs => "warn",
        PeerState::BackingOff => "bad",
        PeerState::RefusedByTrust => "muted",
    }
}

// The peers page.

#[derive(Debug)]
struct PeerRow {
    domain: String,
    state: &'static str,
    state_label: &'static str,
    state_class: &'static str,
    failures: u32,
    last_success: Option<Moment>,
    last_failure: Option<Moment>,
    last_error: Option<LongText>,
    next_retry: Option<String>,
    latency: Option<String>,
    trust: String,
    allowed: bool,
}

#[derive(Debug)]
struct RouteRow {
    domain: String,
    url: String,
}

#[derive(Template)]
#[template(path = "peers.html")]
struct PeersPage {
    layout: Layout,
    peers: Vec<PeerRow>,
    routes: Vec<RouteRow>,
    backoff: String,
}

async fn peers(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    req: Request,
) -> Response {
    let notice = pages.take(&Query::of(&req)).await;
    let peers = ops::peers(&app)
        .into_iter()
        .map(|p| {
            let state = p.state();
            let s = p.status;
            PeerRow {
                domain: s.host.to_string(),
                state: state.as_str(),
                state_label: state.label(),
                state_class: state_class(state),
                failures: s.failures,
                last_success: s.last_success_at.map(Moment::of),
                last_failure: s.last_failure_at.map(Moment::of),
                last_error: s.last_error.map(LongText::new),
                next_retry: s
                    .retry_in
                    .map(|d| format!("in {}", span(d.max(Duration::from_secs(1))))),
                latency: s.latency.map(|mean| match s.last_latency {
                    Some(last) if last != mean => {
                        format!("{} (last {})", millis(mean), millis(last))
                    }
                    _ => millis(mean),
                }),
                trust: p.explanation,
                allowed: p.verdict.allowed,
            }
        })
        .collect();
    let routes = ops::static_routes(&app)
        .into_iter()
        .map(|(domain, url)| RouteRow {
            domain: domain.to_string(),
            url: url.to_string(),
        })
        .collect();
    let b = &app.config.federation.backoff;
    let backoff = format!(
        "A failing node is retried after {}, then twice as long after each further failure, at most every {}.",
        span(b.initial),
        span(b.max)
    );
    let page = PeersPage {
        layout: Layout::new(&app, &pages, "/peers", notice),
        peers,
        routes,
        backoff,
    };
    render(StatusCode::OK, &page)
}

// The relay page.

#[derive(Debug)]
struct SlotRow {
    address: String,
    from: String,
    since: Moment,
    offered: u64,
}

#[derive(Debug)]
struct ConversationRow {
    address: String,
    from: String,
    since: Moment,
    bytes: u64,
}

#[derive(Template)]
#[template(path = "relay.html")]
struct RelayPage {
    layout: Layout,
    summary: String,
    slots: Vec<SlotRow>,
    conversations: Vec<ConversationRow>,
}

fn at_unix(secs: u64) -> Moment {
    Moment::of(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

async fn relay(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    req: Request,
) -> Response {
    let notice = pages.take(&Query::of(&req)).await;
    let config = &app.config.relay;
    let summary = if config.enabled {
        format!(
            "This node relays conversations to its users behind NAT: at most {} slot(s) and {} conversation(s) per user, {} KiB/s per conversation and direction, {} MiB per user and hour.",
            config.max_slots_per_user,
            config.max_conversations_per_user,
            config.bytes_per_second / 1024,
            config.bytes_per_user_per_hour / (1024 * 1024)
        )
    } else {
        "The relay is off ([relay] enabled = false): users publish no relay endpoint.".to_owned()
    };
    let slots = app
        .relay
        .slots()
        .into_iter()
        .map(|s| SlotRow {
            address: s.address,
            from: s.from,
            since: at_unix(s.since),
            offered: s.offered,
        })
        .collect();
    let conversations = app
        .relay
        .conversations()
        .into_iter()
        .map(|c| ConversationRow {
            address: c.address,
            from: c.from,
            since: at_unix(c.since),
            bytes: c.bytes,
        })
        .collect();
    let page = RelayPage {
        layout: Layout::new(&app, &pages, "/relay", notice),
        summary,
        slots,
        conversations,
    };
    render(StatusCode::OK, &page)
}

// The trust page.

#[derive(Debug)]
struct EntryRow {
    kind: &'static str,
    pattern: String,
    source: &'static str,
    source_detail: Option<String>,
    reason: Option<LongText>,
    expires: Option<Moment>,
    added: Option<String>,
    overridden: bool,
}

#[derive(Debug)]
struct SubscriptionRow {
    url: String,
    kind: &'static str,
    refresh: String,
    entries: usize,
    last_attempt: Option<Moment>,
    last_success: Option<Moment>,
    last_error: Option<LongText>,
}

#[derive(Debug)]
struct Explained {
    domain: String,
    allowed: bool,
    line: String,
    deciding: Option<String>,
    deciding_reason: Option<String>,
}

#[derive(Debug)]
struct AuditRow {
    at: Moment,
    cause: String,
    mode: Option<String>,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

#[derive(Template)]
#[template(path = "trust.html")]
struct TrustPage {
    layout: Layout,
    mode: String,
    mode_help: &'static str,
    warnings: Vec<String>,
    entries: Vec<EntryRow>,
    subscriptions: Vec<SubscriptionRow>,
    query: String,
    explained: Option<Explained>,
    explain_error: Option<String>,
    audit: Vec<AuditRow>,
}

fn kind_str(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Allow => "allow",
        EntryKind::Deny => "deny",
    }
}

async fn trust(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    req: Request,
) -> Response {
    let query = Query::of(&req);
    let notice = pages.take(&query).await;
    let now = SystemTime::now();
    let policy = app.federation.trust.current();
    let entries = policy
        .entries(now)
        .into_iter()
        .map(|e| {
            let imported = lists::imported_from(&e.entry).map(str::to_owned);
            let (source, source_detail) = match (&e.source, imported) {
                (ListSource::Subscription(url), _) => ("subscription", Some(url.to_string())),
                (ListSource::Local, Some(file)) => ("import", Some(file)),
                (ListSource::Local, None) => ("config", None),
            };
            let added_by = e.entry.added_by.clone().filter(|_| source != "import");
            let added_at = e
                .entry
                .added_at
                .map(|t| humantime::format_rfc3339_seconds(t).to_string());
            let added = match (added_by, added_at) {
                (Some(by), Some(at)) => Some(format!("{by}, {at}")),
                (Some(by), None) => Some(by),
                (None, Some(at)) => Some(at),
                (None, None) => None,
            };
            EntryRow {
                kind: kind_str(e.kind),
                pattern: e.entry.pattern.to_string(),
                source,
                source_detail,
                reason: e.entry.reason.clone().map(LongText::new),
                expires: e.entry.expires.map(|t| Moment::at(t, now)),
                added,
                overridden: e.overridden,
            }
        })
        .collect();
    let subscriptions = ops::subscriptions(&app)
        .into_iter()
        .map(|sub| SubscriptionRow {
            url: sub.config.url.to_string(),
            kind: kind_str(sub.config.kind),
            refresh: span(sub.config.refresh),
            entries: sub.status.entries,
            last_attempt: sub.status.last_attempt.map(Moment::of),
            last_success: sub.status.last_success.map(Moment::of),
            last_error: sub.status.last_error.map(LongText::new),
        })
        .collect();
    let asked = query
        .get("domain")
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let (explained, explain_error) = if asked.is_empty() {
        (None, None)
    } else {
        match ops::parse_domain(&asked) {
            Ok(host) => {
                let e = ops::explain(&policy, &host, now);
                let deciding = e.verdict.deciding.as_ref().map(|d| {
                    format!(
                        "{} entry \u{201c}{}\u{201d} in the {}",
                        d.kind, d.entry, d.list
                    )
                });
                let deciding = deciding.or_else(|| match e.verdict.why {
                    Reason::OwnDomain => {
                        Some("this node's own domain is always allowed".to_owned())
                    }
                    Reason::NotInAllowlist => {
                        Some("allowlist mode, and no allow entry matches".to_owned())
                    }
                    _ => Some("open mode, and no deny entry matches".to_owned()),
                });
                (
                    Some(Explained {
                        domain: host.to_string(),
                        allowed: e.verdict.allowed,
                        deciding_reason: e.verdict.deciding.and_then(|d| d.reason),
                        line: e.line,
                        deciding,
                    }),
                    None,
                )
            }
            Err(e) => (None, Some(e.to_string())),
        }
    };
    let audit = app
        .federation
        .trust
        .audit_log()
        .into_iter()
        .map(|r| {
            let names = |v: &[pd_federation::trust::DiffEntry]| {
                v.iter().map(ToString::to_string).collect::<Vec<_>>()
            };
            AuditRow {
                at: Moment::at(r.at, now),
                mode: (r.mode_before != r.mode_after)
                    .then(|| format!("mode {} \u{2192} {}", r.mode_before, r.mode_after)),
                added: names(&r.added),
                removed: names(&r.removed),
                changed: names(&r.changed),
                cause: r.cause,
            }
        })
        .collect();
    let mode = policy.mode();
    let page = TrustPage {
        layout: Layout::new(&app, &pages, "/trust", notice),
        mode: mode.to_string(),
        mode_help: match mode {
            pd_federation::trust::Mode::Open => "every node except denied ones",
            pd_federation::trust::Mode::Allowlist => "only allowed nodes",
        },
        warnings: policy
            .warnings_at(now)
            .iter()
            .map(ToString::to_string)
            .collect(),
        entries,
        subscriptions,
        query: asked,
        explained,
        explain_error: explain_error.clone(),
        audit,
    };
    let status = if explain_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(status, &page)
}

// The forms.

/// A submitted form's fields.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a form, if it carries the pages' token.
fn checked_form(pages: &Pages, body: &Bytes) -> Option<Form> {
    let form = Form(
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    let offered = form.get("csrf").unwrap_or_default();
    bool::from(offered.as_bytes().ct_eq(pages.csrf.as_bytes())).then_some(form)
}

/// The answer to a form without the pages' token.
fn form_refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not come from the current admin pages (the node may have restarted since the page was loaded). Go back, reload the page and try again.",
    )
}

async fn redirect_with(pages: &Pages, to: &str, notice: Notice) -> Response {
    let id = pages.keep(notice).await;
    Redirect::to(&format!("{to}?notice={id}")).into_response()
}

async fn retry(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    body: Bytes,
) -> Response {
    let Some(form) = checked_form(&pages, &body) else {
        return form_refused();
    };
    let outcome = ops::parse_domain(form.get("domain").unwrap_or_default())
        .and_then(|host| ops::retry(&app, &host).map(|()| host));
    let notice = match outcome {
        Ok(host) => Notice::ok(format!(
            "The backoff of {host} is cleared: the next lookup contacts it at once."
        )),
        Err(e) => Notice::error(e.to_string()),
    };
    redirect_with(&pages, "/peers", notice).await
}

async fn flush(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    body: Bytes,
) -> Response {
    let Some(form) = checked_form(&pages, &body) else {
        return form_refused();
    };
    let notice = match ops::parse_domain(form.get("domain").unwrap_or_default()) {
        Ok(host) => {
            let flushed = ops::flush(&app, &host).await;
            Notice::ok(format!(
                "Flushed {flushed} cached lookup{} of {host}, and its route and server keys.",
                if flushed == 1 { "" } else { "s" }
            ))
        }
        Err(e) => Notice::error(e.to_string()),
    };
    redirect_with(&pages, "/peers", notice).await
}

async fn reload(
    State(app): State<AppState>,
    State(pages): State<Arc<Pages>>,
    body: Bytes,
) -> Response {
    if checked_form(&pages, &body).is_none() {
        return form_refused();
    }
    let notice = match ops::reload(&app).await {
        Ok(diff) if diff.is_empty() => {
            Notice::ok("The trust policy was read again; nothing changed.")
        }
        Ok(diff) => Notice::ok(format!(
            "The trust policy was read again and is in force: {} added, {} removed, {} changed (mode {}).",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            diff.mode_after
        )),
        Err(e) => Notice::error(e.to_string()),
    };
    redirect_with(&pages, "/trust", notice).await
}

// Static files and errors.

async fn stylesheet() -> Response {
    asset(include_str!("style.css"), "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(include_str!("refresh.js"), "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: &'static str,
    text: &'static str,
}

fn message_page(status: StatusCode, title: &'static str, text: &'static str) -> Response {
    render(status, &MessagePage { title, text })
}

/// The fallback: a page for browsers, a problem document for everyone else.
pub(super) async fn not_found(req: Request) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no admin page here. The pages are the overview, peers and trust.",
        )
    } else {
        ApiError::new(
            ProblemType::NotFound,
            format!("no resource at {}", req.uri().path()),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_fold_after_their_start() {
        let short = LongText::new("connection refused".to_owned());
        assert_eq!(short.head, "connection refused");
        assert!(short.full.is_none());
        let long = "é".repeat(300);
        let folded = LongText::new(long.clone());
        assert_eq!(folded.head.chars().count(), LongText::HEAD);
        assert_eq!(folded.full.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn spans_and_uptimes_read_naturally() {
        assert_eq!(span(Duration::from_secs(42)), "42 s");
        assert_eq!(span(Duration::from_millis(60)), "60 ms");
        assert_eq!(span(Duration::ZERO), "0 s");
        assert_eq!(span(Duration::from_secs(600)), "10 min");
        assert_eq!(span(Duration::from_secs(7200)), "2 h");
        assert_eq!(span(Duration::from_secs(3 * 86_400)), "3 d");
        assert_eq!(uptime(Duration::from_secs(5)), "5 s");
        assert_eq!(uptime(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(
            uptime(Duration::from_secs(2 * 86_400 + 5 * 3600)),
            "2 d 5 h"
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = Moment::at(now - Duration::from_secs(90), now);
        assert_eq!(m.relative, "1 min ago");
        assert_eq!(m.iso, "1970-01-12T13:45:10Z");
        assert_eq!(
            Moment::at(now + Duration::from_secs(7200), now).relative,
            "in 2 h"
        );
        assert_eq!(millis(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(millis(Duration::from_millis(120)), "120 ms");
    }
}
