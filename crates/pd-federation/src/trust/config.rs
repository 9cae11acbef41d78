//! The `[trust]` section of the node configuration: mode, allow and deny entries, list
//! subscriptions, and the domain patterns the entries are written in.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use pd_proto::address::{AddressError, Host, HostKind};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::TrustError;

/// Default refresh interval of a list subscription: six hours.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(6 * 60 * 60);
/// Shortest accepted refresh interval of a list subscription: one minute.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);

/// The `[trust]` section: who this node federates with.
///
/// ```toml
/// [trust]
/// mode = "allowlist"            # or "open" (the default)
/// allow = ["blackmesa.us", "*.aperture.example"]
/// deny = ["xen.example", { domain = "spam.example", reason = "spam wave", expires = "2027-01-01T00:00:00Z" }]
/// subscriptions = [{ url = "https://community.example/allow.txt", kind = "allow", refresh = "6h" }]
/// ```
///
/// Unknown keys are refused, so a misspelt `deny` cannot silently leave a node open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// `open` (everyone except denied domains) or `allowlist` (only allowed domains).
    /// Default: unset, which means `open`; read it with [`TrustConfig::mode`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Allow entries. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Entry>,
    /// Deny entries. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Entry>,
    /// Shared lists this node subscribes to. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// A separate TOML file holding `mode`, `allow`, `deny` and `subscriptions` at its top
    /// level, relative to the directory of the node configuration. When set, those keys must
    /// not also be set inline. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Federation mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Federate with everyone except denied domains (the default).
    #[default]
    Open,
    /// Federate only with allowed domains. An empty allowlist means no one.
    Allowlist,
}

/// Whether an entry allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// The entry allows the domains it matches.
    Allow,
    /// The entry denies the domains it matches.
    Deny,
}

/// One subscribed list: `{ url, kind, refresh }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Where the list is published; must be `https`.
    #[serde(with = "url_string")]
    pub url: Url,
    /// Whether the list's entries allow or deny.
    pub kind: EntryKind,
    /// How often the list is fetched again. Default: `6h`; at least `1m`.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

fn default_refresh() -> Duration {
    DEFAULT_REFRESH
}

/// One allow or deny entry: a plain string (`"xen.example"`) or a table
/// `{ domain, reason?, expires?, added_by?, added_at? }` with RFC 3339 UTC timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The domain, glob or IP literal the entry matches.
    pub pattern: DomainPattern,
    /// Why the entry exists. Private: never shown to the refused party.
    pub reason: Option<String>,
    /// After this instant the entry is ignored.
    pub expires: Option<SystemTime>,
    /// Who or what added the entry.
    pub added_by: Option<String>,
    /// When the entry was added.
    pub added_at: Option<SystemTime>,
}

impl Entry {
    /// An entry with a pattern and no metadata.
    pub fn new(pattern: DomainPattern) -> Self {
        Self {
            pattern,
            reason: None,
            expires: None,
            added_by: None,
            added_at: None,
        }
    }

    /// Whether the entry has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    fn is_plain(&self) -> bool {
        self.reason.is_none()
            && self.expires.is_none()
            && self.added_by.is_none()
            && self.added_at.is_none()
    }
}

/// What a trust entry matches, in normalised form.
///
/// - `example.org` matches `example.org` and every subdomain of it.
/// - `*.example.org` matches strict subdomains only, not `example.org` itself.
/// - `192.0.2.7`, `2001:db8::1` or `[2001:db8::1]` match that IP literal host and nothing
///   else. Domain entries never match IP literal hosts, whatever they resolve to.
///
/// Domains are normalised with [`Host::parse`] (lowercase, punycode, no trailing dot), so
/// Unicode spellings are compared in their ASCII form and a look-alike such as a Cyrillic
/// `а` stays a different domain. Ports are refused: an entry governs every port of a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainPattern {
    /// A domain and all its subdomains.
    Domain(String),
    /// Strict subdomains of the domain (written `*.domain`).
    Glob(String),
    /// Exactly this IP literal.
    Ip(IpAddr),
}

/// Why a string is not a valid trust entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The entry is empty.
    #[error("entry is empty")]
    Empty,
    /// The entry names a port.
    #[error("entry {0:?} has a port; entries apply to every port of a host, write it without one")]
    Port(String),
    /// A glob other than a leading `*.`.
    #[error("entry {0:?} has a '*' other than a leading '*.'")]
    BadGlob(String),
    /// A glob over an IP literal.
    #[error("entry {0:?} puts a glob on an IP address")]
    GlobOnIp(String),
    /// The host part does not parse.
    #[error("entry {input:?} is not a valid domain: {source}")]
    Host {
        /// The entry as written.
        input: String,
        /// Why the host was refused.
        source: AddressError,
    },
}

impl DomainPattern {
    /// Parses and normalises an entry.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let (glob, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if rest.contains('*') {
            return Err(PatternError::BadGlob(s.to_owned()));
        }
        let host = Host::parse(rest).map_err(|source| PatternError::Host {
            input: s.to_owned(),
            source,
        })?;
        if host.port().is_some() {
            return Err(PatternError::Port(s.to_owned()));
        }
        match (host.kind(), glob) {
            (HostKind::Domain(d), false) => Ok(Self::Domain(d.clone())),
            (HostKind::Domain(d), true) => Ok(Self::Glob(d.clone())),
            (_, true) => Err(PatternError::GlobOnIp(s.to_owned())),
            (HostKind::Ipv4(ip), false) => Ok(Self::Ip(IpAddr::V4(*ip))),
            (HostKind::Ipv6(ip), false) => Ok(Self::Ip(IpAddr::V6(*ip))),
        }
    }

    /// Whether the pattern matches `host` (its port is ignored).
    pub fn matches(&self, host: &Host) -> bool {
        match (self, host.kind()) {
            (Self::Domain(p), HostKind::Domain(d)) => is_suffix(d, p, true),
            (Self::Glob(p), HostKind::Domain(d)) => is_suffix(d, p, false),
            (Self::Ip(IpAddr::V4(p)), HostKind::Ipv4(ip)) => p == ip,
            (Self::Ip(IpAddr::V6(p)), HostKind::Ipv6(ip)) => p == ip,
            _ => false,
        }
    }

    /// How specific the pattern is: its depth in labels (a glob `*.x` counts the `*`),
    /// then 1 for a non-glob, so an exact domain beats a glob of the same depth.
    pub(crate) fn specificity(&self) -> (usize, u8) {
        match self {
            Self::Domain(d) => (d.split('.').count(), 1),
            Self::Glob(d) => (d.split('.').count() + 1, 0),
            Self::Ip(_) => (usize::MAX, 1),
        }
    }
}

/// Whether `domain` is `suffix` (when `or_equal`) or a subdomain of it.
fn is_suffix(domain: &str, suffix: &str, or_equal: bool) -> bool {
    if domain == suffix {
        return or_equal;
    }
    domain
        .strip_suffix(suffix)
        .is_some_and(|head| head.ends_with('.'))
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d),
            Self::Glob(d) => write!(f, "*.{d}"),
            Self::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for DomainPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DomainPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

/// The table form of an entry.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EntryTable {
    domain: DomainPattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, with = "rfc3339", skip_serializing_if = "Option::is_none")]
    expires: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added_by: Option<String>,
    #[serde(default, with = "rfc3339", skip_serializing_if = "Option::is_none")]
    added_at: Option<SystemTime>,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a domain string or a table { domain, reason, expires, added_by, added_at }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
                DomainPattern::parse(v).map(Entry::new).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                let t = EntryTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Entry {
                    pattern: t.domain,
                    reason: t.reason,
                    expires: t.expires,
                    added_by: t.added_by,
                    added_at: t.added_at,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_plain() {
            return self.pattern.serialize(serializer);
        }
        EntryTable {
            domain: self.pattern.clone(),
            reason: self.reason.clone(),
            expires: self.expires,
            added_by: self.added_by.clone(),
            added_at: self.added_at,
        }
        .serialize(serializer)
    }
}

/// URLs as strings.
mod url_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
        let s = String::deserialize(deserializer)?;
        Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))
    }

    pub(super) fn serialize<S: Serializer>(value: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }
}

/// Strict RFC 3339 timestamps in UTC (`2027-01-01T00:00:00Z`).
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let s = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not an RFC 3339 UTC timestamp like 2027-01-01T00:00:00Z: {e}"
            ))
        })
    }

    pub(super) fn serialize<S: Serializer>(
        value: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => serializer.collect_str(&humantime::format_rfc3339(*t)),
            None => serializer.serialize_none(),
        }
    }
}

impl TrustConfig {
    /// The federation mode (`open` when unset).
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_default()
    }

    /// Checks what serde cannot: subscriptions are `https`, listed once, and refreshed at
    /// most once a minute.
    pub fn validate(&self) -> Result<(), TrustError> {
        let mut seen = std::collections::HashSet::new();
        for sub in &self.subscriptions {
            if sub.url.scheme() != "https" {
                return Err(TrustError::SubscriptionNotHttps(sub.url.clone()));
            }
            if !seen.insert(sub.url.as_str()) {
                return Err(TrustError::DuplicateSubscription(sub.url.clone()));
            }
            if sub.refresh < MIN_REFRESH {
                return Err(TrustError::RefreshTooShort(sub.url.clone()));
            }
        }
        Ok(())
    }

    /// Returns the effective configuration: when `file` is set, the file's contents (read
    /// relative to `base_dir`, the directory of the node configuration), otherwise `self`.
    /// The result has no `file` and has been validated.
    pub fn resolve(&self, base_dir: &Path) -> Result<TrustConfig, TrustError> {
        let Some(file) = &self.file else {
            self.validate()?;
            return Ok(self.clone());
        };
        if self.mode.is_some()
            || !self.allow.is_empty()
            || !self.deny.is_empty()
            || !self.subscriptions.is_empty()
        {
            return Err(TrustError::InlineAndFile(file.clone()));
        }
        let path = base_dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| TrustError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let parsed: TrustConfig =
            toml::from_str(&text).map_err(|source| TrustError::ParseFile {
                path: path.clone(),
                message: source.to_string(),
            })?;
        if parsed.file.is_some() {
            return Err(TrustError::NestedFile(path));
        }
        parsed.validate()?;
        Ok(parsed)
    }
}
