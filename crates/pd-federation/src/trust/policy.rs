//! The compiled trust policy: which hosts this node federates with, and why.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use pd_proto::address::{Host, HostKind};
use url::Url;

use super::TrustError;
use super::config::{DomainPattern, Entry, EntryKind, Mode, TrustConfig};

/// The entries of one subscribed list, as last fetched and parsed successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedList {
    /// The list's entries; their kind comes from the subscription's `kind`.
    pub entries: Vec<Entry>,
    /// When this copy was fetched.
    pub fetched_at: SystemTime,
}

/// Which list an entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListSource {
    /// The node's own configuration.
    Local,
    /// A subscribed list, by URL.
    Subscription(Url),
}

impl fmt::Display for ListSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local list"),
            Self::Subscription(url) => write!(f, "subscribed list {url}"),
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Allowlist => "allowlist",
        })
    }
}

/// Why a host was allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The host is this node's own domain, which is always allowed.
    OwnDomain,
    /// An allow entry decided.
    Allowlisted,
    /// A deny entry decided.
    Denied,
    /// Allowlist mode, and no allow entry matches.
    NotInAllowlist,
    /// Open mode, and no entry matches.
    OpenMode,
}

impl Reason {
    /// A short stable label, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnDomain => "own_domain",
            Self::Allowlisted => "allowlisted",
            Self::Denied => "denied",
            Self::NotInAllowlist => "not_in_allowlist",
            Self::OpenMode => "open_mode",
        }
    }
}

/// The entry that decided a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidingEntry {
    /// The entry as written in normal form (`xen.example`, `*.aperture.example`).
    pub entry: String,
    /// The list it comes from.
    pub list: ListSource,
    /// Allow or deny.
    pub kind: EntryKind,
    /// The entry's private reason, if any. Never send it to the refused party.
    pub reason: Option<String>,
}

/// The outcome of [`TrustPolicy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether this node federates with the host.
    pub allowed: bool,
    /// The entry that decided, when one did.
    pub deciding: Option<DecidingEntry>,
    /// Why.
    pub why: Reason,
}

impl Verdict {
    /// One human-readable line, e.g.
    /// `refused: xen.example (deny entry "xen.example" in local list: spam wave)`.
    /// Includes the private reason: for operators only.
    pub fn explain(&self, host: &Host) -> String {
        let verb = if self.allowed { "allowed" } else { "refused" };
        let name = host.hostname();
        let why = match (&self.deciding, self.why) {
            (_, Reason::OwnDomain) => "this node's own domain".to_owned(),
            (Some(d), _) => {
                let mut s = format!("{} entry \"{}\" in {}", d.kind, d.entry, d.list);
                if let Some(reason) = &d.reason {
                    s.push_str(": ");
                    s.push_str(reason);
                }
                s
            }
            (None, Reason::NotInAllowlist) => "allowlist mode, no allow entry matches".to_owned(),
            (None, _) => "open mode, no deny entry matches".to_owned(),
        };
        format!("{verb}: {name} ({why})")
    }
}

/// An entry of the policy with the list it comes from, as [`TrustPolicy::entries`] lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInForce {
    /// Allow or deny.
    pub kind: EntryKind,
    /// The list it comes from.
    pub source: ListSource,
    /// The entry with its metadata (reason, expiry, who added it and when).
    pub entry: Entry,
    /// Whether a local entry with the same pattern overrides this subscribed one.
    pub overridden: bool,
}

/// Something an operator should hear about, reported by `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustWarning {
    /// Allowlist mode with no allow entry and no allow subscription: the node federates
    /// with no one.
    EmptyAllowlist,
    /// Allowlist mode with no allow entry yet: until the allow subscriptions are fetched,
    /// the node federates with no one.
    AllowlistAwaitsSubscriptions,
    /// An entry names the node's own domain, which is always allowed.
    OwnDomainListed {
        /// The entry as written.
        entry: String,
        /// Its kind.
        kind: EntryKind,
    },
    /// A local entry has already expired and is ignored.
    Expired {
        /// The entry as written.
        entry: String,
        /// Its kind.
        kind: EntryKind,
    },
}

impl fmt::Display for TrustWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyAllowlist => f.write_str(
                "trust mode is allowlist but the allowlist is empty: this node federates with no one",
            ),
            Self::AllowlistAwaitsSubscriptions => f.write_str(
                "trust mode is allowlist with no local allow entry: until the subscribed allow lists are fetched, this node federates with no one",
            ),
            Self::OwnDomainListed { entry, kind } => write!(
                f,
                "{kind} entry \"{entry}\" covers this node's own domain, which is always allowed"
            ),
            Self::Expired { entry, kind } => {
                write!(f, "{kind} entry \"{entry}\" has expired and is ignored")
            }
        }
    }
}

/// One entry with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) kind: EntryKind,
    pub(crate) source: ListSource,
    pub(crate) entry: Entry,
}

/// A compiled, immutable trust policy. Build it with [`TrustPolicy::new`], derive changed
/// copies with [`TrustPolicy::with_local`] and [`TrustPolicy::with_list`], share it through
/// [`super::Trust`].
///
/// Decisions are made on the host name; the port is ignored. Rules:
/// 1. the node's own domain is always allowed;
/// 2. otherwise the most specific matching, unexpired entry decides: a deeper domain beats
///    a shallower one, `*.x` counts one label deeper than `x`, and at the same depth an
///    exact domain beats a glob;
/// 3. among equally specific entries, local entries override subscribed ones, then deny
///    beats allow;
/// 4. when no entry matches, `open` mode allows and `allowlist` mode refuses.
///
/// IP literal hosts are matched only by IP entries.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    own: Host,
    local: TrustConfig,
    subscribed: BTreeMap<Url, SubscribedList>,
    rules: Vec<Rule>,
    /// Rule indices by the domain of a `Domain` or `Glob` pattern.
    by_domain: HashMap<String, Vec<usize>>,
    /// Rule indices by IP.
    by_ip: HashMap<IpAddr, Vec<usize>>,
}

impl TrustPolicy {
    /// Builds the policy of the node whose domain is `own` from its resolved configuration
    /// (see [`TrustConfig::resolve`]), with no subscribed list fetched yet.
    pub fn new(own: Host, local: TrustConfig) -> Result<Self, TrustError> {
        Self::build(own, local, BTreeMap::new())
    }

    /// Builds a policy from configuration and already fetched lists. Lists of URLs that
    /// are not subscribed in `local` are dropped.
    pub fn build(
        own: Host,
        local: TrustConfig,
        mut subscribed: BTreeMap<Url, SubscribedList>,
    ) -> Result<Self, TrustError> {
        if let Some(file) = &local.file {
            return Err(TrustError::Unresolved(file.clone()));
        }
        local.validate()?;
        subscribed.retain(|url, _| local.subscriptions.iter().any(|s| &s.url == url));
        let mut rules = Vec::new();
        for (kind, entries) in [
            (EntryKind::Allow, &local.allow),
            (EntryKind::Deny, &local.deny),
        ] {
            rules.extend(entries.iter().map(|entry| Rule {
                kind,
                source: ListSource::Local,
                entry: entry.clone(),
            }));
        }
        for sub in &local.subscriptions {
            if let Some(list) = subscribed.get(&sub.url) {
                rules.extend(list.entries.iter().map(|entry| Rule {
                    kind: sub.kind,
                    source: ListSource::Subscription(sub.url.clone()),
                    entry: entry.clone(),
                }));
            }
        }
        let mut by_domain: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_ip: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.entry.pattern {
                DomainPattern::Domain(d) | DomainPattern::Glob(d) => {
                    by_domain.entry(d.clone()).or_default().push(i);
                }
                DomainPattern::Ip(ip) => by_ip.entry(*ip).or_default().push(i),
            }
        }
        Ok(Self {
            own,
            local,
            subscribed,
            rules,
            by_domain,
            by_ip,
        })
    }

    /// The same policy with a new local configuration; fetched lists of subscriptions that
    /// are still configured are kept.
    pub fn with_local(&self, local: TrustConfig) -> Result<Self, TrustError> {
        Self::build(self.own.clone(), local, self.subscribed.clone())
    }

    /// The same policy with a freshly fetched copy of the subscribed list at `url`.
    pub fn with_list(&self, url: &Url, list: SubscribedList) -> Result<Self, TrustError> {
        if !self.local.subscriptions.iter().any(|s| &s.url == url) {
            return Err(TrustError::NotSubscribed(url.clone()));
        }
        let mut subscribed = self.subscribed.clone();
        subscribed.insert(url.clone(), list);
        Self::build(self.own.clone(), self.local.clone(), subscribed)
    }

    /// The node's own domain.
    pub fn own_domain(&self) -> &Host {
        &self.own
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.local.mode()
    }

    /// The local configuration this policy was built from.
    pub fn local(&self) -> &TrustConfig {
        &self.local
    }

    /// The fetched copies of subscribed lists, by URL.
    pub fn subscribed(&self) -> &BTreeMap<Url, SubscribedList> {
        &self.subscribed
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides whether this node federates with `host` at `now`.
    pub fn decide(&self, host: &Host, now: SystemTime) -> Verdict {
        if host.kind() == self.own.kind() {
            return Verdict {
                allowed: true,
                deciding: None,
                why: Reason::OwnDomain,
            };
        }
        // Equally specific matches share one pattern, so ranking by (specificity, local,
        // deny) applies the rules in order: the most specific entry, then local over
        // subscribed, then deny over allow. On a full tie the first listed entry decides.
        let rank = |r: &Rule| {
            (
                r.entry.pattern.specificity(),
                r.source == ListSource::Local,
                r.kind == EntryKind::Deny,
            )
        };
        let winner = self
            .candidates(host)
            .filter(|r| r.entry.pattern.matches(host) && !r.entry.is_expired(now))
            .fold(None::<&Rule>, |best, r| match best {
                Some(b) if rank(b) >= rank(r) => Some(b),
                _ => Some(r),
            });
        let Some(rule) = winner else {
            return match self.mode() {
                Mode::Open => Verdict {
                    allowed: true,
                    deciding: None,
                    why: Reason::OpenMode,
                },
                Mode::Allowlist => Verdict {
                    allowed: false,
                    deciding: None,
                    why: Reason::NotInAllowlist,
                },
            };
        };
        Verdict {
            allowed: rule.kind == EntryKind::Allow,
            deciding: Some(DecidingEntry {
                entry: rule.entry.pattern.to_string(),
                list: rule.source.clone(),
                kind: rule.kind,
                reason: rule.entry.reason.clone(),
            }),
            why: match rule.kind {
                EntryKind::Allow => Reason::Allowlisted,
                EntryKind::Deny => Reason::Denied,
            },
        }
    }

    /// Whether this node federates with `host` at `now`.
    pub fn allows(&self, host: &Host, now: SystemTime) -> bool {
        self.decide(host, now).allowed
    }

    /// The verdict for `host` as one human-readable line (see [`Verdict::explain`]).
    pub fn explain(&self, host: &Host, now: SystemTime) -> String {
        self.decide(host, now).explain(host)
    }

    /// Rules that may match `host`: those indexed under one of its suffixes or its IP.
    fn candidates<'a>(&'a self, host: &Host) -> Box<dyn Iterator<Item = &'a Rule> + 'a> {
        let indices: Vec<usize> = match host.kind() {
            HostKind::Domain(d) => {
                let mut out = Vec::new();
                let mut rest = d.as_str();
                loop {
                    if let Some(ix) = self.by_domain.get(rest) {
                        out.extend_from_slice(ix);
                    }
                    match rest.split_once('.') {
                        Some((_, parent)) => rest = parent,
                        None => break,
                    }
                }
                out
            }
            HostKind::Ipv4(ip) => self
                .by_ip
                .get(&IpAddr::V4(*ip))
                .cloned()
                .unwrap_or_default(),
            HostKind::Ipv6(ip) => self
                .by_ip
                .get(&IpAddr::V6(*ip))
                .cloned()
                .unwrap_or_default(),
        };
        Box::new(indices.into_iter().filter_map(|i| self.rules.get(i)))
    }

    /// The entries of `kind` in force at `now`: unexpired, without subscribed entries that
    /// a local entry of the same pattern overrides, one entry per pattern. This is what
    /// export and publication use.
    pub fn effective(&self, kind: EntryKind, now: SystemTime) -> Vec<Entry> {
        let live = |r: &&Rule| !r.entry.is_expired(now);
        let local_patterns: std::collections::HashSet<&DomainPattern> = self
            .rules
            .iter()
            .filter(live)
            .filter(|r| r.source == ListSource::Local)
            .map(|r| &r.entry.pattern)
            .collect();
        let mut seen = std::collections::HashSet::new();
        self.rules
            .iter()
            .filter(live)
            .filter(|r| r.kind == kind)
            .filter(|r| r.source == ListSource::Local || !local_patterns.contains(&r.entry.pattern))
            .filter(|r| seen.insert(r.entry.pattern.clone()))
            .map(|r| r.entry.clone())
            .collect()
    }

    /// Every unexpired entry at `now`, local entries first, each with the list it comes
    /// from and whether a local entry of the same pattern overrides it. Unlike
    /// [`TrustPolicy::effective`], overridden and duplicate entries are listed too, so an
    /// operator sees every list's contribution.
    pub fn entries(&self, now: SystemTime) -> Vec<EntryInForce> {
        let local_patterns: std::collections::HashSet<&DomainPattern> = self
            .rules
            .iter()
            .filter(|r| r.source == ListSource::Local && !r.entry.is_expired(now))
            .map(|r| &r.entry.pattern)
            .collect();
        self.rules
            .iter()
            .filter(|r| !r.entry.is_expired(now))
            .map(|r| EntryInForce {
                kind: r.kind,
                source: r.source.clone(),
                entry: r.entry.clone(),
                overridden: r.source != ListSource::Local
                    && local_patterns.contains(&r.entry.pattern),
            })
            .collect()
    }

    /// Warnings for `check-config`, as of now.
    pub fn warnings(&self) -> Vec<TrustWarning> {
        self.warnings_at(SystemTime::now())
    }

    /// Warnings for `check-config`, as of `now`.
    pub fn warnings_at(&self, now: SystemTime) -> Vec<TrustWarning> {
        let mut out = Vec::new();
        if self.mode() == Mode::Allowlist && self.effective(EntryKind::Allow, now).is_empty() {
            let awaiting = self
                .local
                .subscriptions
                .iter()
                .any(|s| s.kind == EntryKind::Allow && !self.subscribed.contains_key(&s.url));
            out.push(if awaiting {
                TrustWarning::AllowlistAwaitsSubscriptions
            } else {
                TrustWarning::EmptyAllowlist
            });
        }
        for rule in self.rules.iter().filter(|r| r.source == ListSource::Local) {
            if rule.entry.pattern.matches(&self.own) {
                out.push(TrustWarning::OwnDomainListed {
                    entry: rule.entry.pattern.to_string(),
                    kind: rule.kind,
                });
            }
            if rule.entry.is_expired(now) {
                out.push(TrustWarning::Expired {
                    entry: rule.entry.pattern.to_string(),
                    kind: rule.kind,
                });
            }
        }
        out
    }
}
