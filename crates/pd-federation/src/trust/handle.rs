//! The shared, reloadable trust policy handle and the audit record of each change.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use pd_proto::address::Host;
use tokio::sync::watch;

use super::TrustError;
use super::config::{EntryKind, Mode, TrustConfig};
use super::policy::{ListSource, TrustPolicy, Verdict};

/// A cheap-to-clone handle to the policy in force. Readers take a snapshot with
/// [`Trust::current`] (lock-free); writers swap in a new policy with [`Trust::replace`] or
/// [`Trust::update`], which log one audit line per change and return the [`PolicyDiff`].
#[derive(Clone)]
pub struct Trust {
    inner: Arc<Inner>,
}

struct Inner {
    policy: ArcSwap<TrustPolicy>,
    /// Serialises writers so that read-modify-write updates never lose a change.
    write: Mutex<()>,
    /// Bumped on every replacement, so background tasks notice reloads.
    changed: watch::Sender<u64>,
    /// The latest changes, oldest first, at most [`AUDIT_LOG_CAPACITY`].
    audit: Mutex<VecDeque<AuditRecord>>,
}

/// How many policy changes [`Trust::audit_log`] keeps; older ones are only in the log.
pub const AUDIT_LOG_CAPACITY: usize = 200;

/// One change of the policy in force, as [`Trust::audit_log`] keeps it: when, why, and
/// what changed (the same facts as the `trust.policy_changed` audit log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the change was put in force.
    pub at: SystemTime,
    /// What caused it: `reload`, `subscription <url>`, ...
    pub cause: String,
    /// Mode before the change.
    pub mode_before: Mode,
    /// Mode after the change.
    pub mode_after: Mode,
    /// Entries present only after the change.
    pub added: Vec<DiffEntry>,
    /// Entries present only before the change.
    pub removed: Vec<DiffEntry>,
    /// Entries whose reason, expiry or provenance changed.
    pub changed: Vec<DiffEntry>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("mode", &self.current().mode())
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// A handle holding `policy`.
    pub fn new(policy: TrustPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy: ArcSwap::from_pointee(policy),
                write: Mutex::new(()),
                changed: watch::channel(0).0,
                audit: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// The policy in force now. Hold the snapshot for one decision, not longer.
    pub fn current(&self) -> Arc<TrustPolicy> {
        self.inner.policy.load_full()
    }

    /// Replaces the policy, logs the audit line and returns what changed.
    pub fn replace(&self, new: TrustPolicy) -> PolicyDiff {
        match self.update::<Infallible>("replace", |_| Ok(new)) {
            Ok(diff) => diff,
            Err(never) => match never {},
        }
    }

    /// Derives a new policy from the current one under the writer lock and puts it in
    /// force. On error the current policy stays. `cause` names the change in the audit
    /// line (`reload`, `subscription <url>`, ...).
    pub fn update<E>(
        &self,
        cause: &str,
        f: impl FnOnce(&TrustPolicy) -> Result<TrustPolicy, E>,
    ) -> Result<PolicyDiff, E> {
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = self.inner.policy.load_full();
        let after = Arc::new(f(&before)?);
        self.inner.policy.store(after.clone());
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
        let diff = PolicyDiff::between(before, after);
        if !diff.is_empty() {
            diff.log(cause);
            let mut audit = self
                .inner
                .audit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if audit.len() == AUDIT_LOG_CAPACITY {
                audit.pop_front();
            }
            audit.push_back(AuditRecord {
                at: SystemTime::now(),
                cause: cause.to_owned(),
                mode_before: diff.mode_before,
                mode_after: diff.mode_after,
                added: diff.added.clone(),
                removed: diff.removed.clone(),
                changed: diff.changed.clone(),
            });
        }
        Ok(diff)
    }

    /// The latest changes of the policy in force since this handle was made, newest
    /// first (at most [`AUDIT_LOG_CAPACITY`]).
    pub fn audit_log(&self) -> Vec<AuditRecord> {
        let audit = self
            .inner
            .audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        audit.iter().rev().cloned().collect()
    }

    /// Puts a new local configuration (already [resolved](super::TrustConfig::resolve)) in
    /// force, keeping the fetched lists of subscriptions that are still configured. On
    /// error (e.g. a bad file on SIGHUP) the current policy stays.
    pub fn reload(&self, local: TrustConfig) -> Result<PolicyDiff, TrustError> {
        self.update("reload", |p| p.with_local(local))
    }

    /// Decides about `host` now with the policy in force (see [`TrustPolicy::decide`]).
    pub fn decide(&self, host: &Host) -> Verdict {
        self.current().decide(host, SystemTime::now())
    }

    /// Whether this node federates with `host` now.
    pub fn allows(&self, host: &Host) -> bool {
        self.decide(host).allowed
    }

    /// A receiver that sees every replacement of the policy.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

/// An entry as the audit record names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiffEntry {
    /// Allow or deny.
    pub kind: EntryKind,
    /// The entry in normal form.
    pub entry: String,
    /// Which list it belongs to.
    pub list: ListSource,
}

impl fmt::Display for DiffEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.list {
            ListSource::Local => write!(f, "{} {}", self.kind, self.entry),
            ListSource::Subscription(url) => write!(f, "{} {} (from {url})", self.kind, self.entry),
        }
    }
}

/// What a policy replacement changed: mode, added and removed entries, entries whose
/// reason or expiry changed. Also keeps both policies, so the lookup cache can drop the
/// answers of hosts the new policy refuses ([`PolicyDiff::newly_refused`]).
///
/// Dropping cache entries is an optimisation: an entry can also expire without any
/// replacement, so cached answers must still be checked against [`Trust::current`] at
/// the moment of use.
#[derive(Debug, Clone)]
pub struct PolicyDiff {
    /// Mode before the change.
    pub mode_before: Mode,
    /// Mode after the change.
    pub mode_after: Mode,
    /// Entries present only after the change.
    pub added: Vec<DiffEntry>,
    /// Entries present only before the change.
    pub removed: Vec<DiffEntry>,
    /// Entries present before and after whose reason, expiry or provenance changed.
    pub changed: Vec<DiffEntry>,
    before: Arc<TrustPolicy>,
    after: Arc<TrustPolicy>,
}

type EntryMeta = (
    Option<String>,
    Option<SystemTime>,
    Option<String>,
    Option<SystemTime>,
);

fn entry_map(policy: &TrustPolicy) -> BTreeMap<DiffEntry, EntryMeta> {
    policy
        .rules()
        .iter()
        .map(|r| {
            (
                DiffEntry {
                    kind: r.kind,
                    entry: r.entry.pattern.to_string(),
                    list: r.source.clone(),
                },
                (
                    r.entry.reason.clone(),
                    r.entry.expires,
                    r.entry.added_by.clone(),
                    r.entry.added_at,
                ),
            )
        })
        .collect()
}

impl PolicyDiff {
    /// Compares two policies.
    pub fn between(before: Arc<TrustPolicy>, after: Arc<TrustPolicy>) -> Self {
        let old = entry_map(&before);
        let new = entry_map(&after);
        let added = new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .cloned()
            .collect();
        let removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        let changed = new
            .iter()
            .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k.clone())
            .collect();
        Self {
            mode_before: before.mode(),
            mode_after: after.mode(),
            added,
            removed,
            changed,
            before,
            after,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.mode_before == self.mode_after
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }

    /// Whether the change can refuse a host that was allowed before: the mode became
    /// `allowlist`, or deny entries were added, or allow entries removed, or entries
    /// changed. When false, the cache need not be scanned.
    pub fn may_refuse_more(&self) -> bool {
        (self.mode_before == Mode::Open && self.mode_after == Mode::Allowlist)
            || self.added.iter().any(|e| e.kind == EntryKind::Deny)
            || self.removed.iter().any(|e| e.kind == EntryKind::Allow)
            || !self.changed.is_empty()
    }

    /// Whether `host` was allowed before the change and is refused after it, at `now`.
    /// The lookup cache uses this to drop answers of newly refused domains.
    pub fn newly_refused(&self, host: &Host, now: SystemTime) -> bool {
        self.before.allows(host, now) && !self.after.allows(host, now)
    }

    /// The policy now in force.
    pub fn after(&self) -> &Arc<TrustPolicy> {
        &self.after
    }

    /// What changed, in one line for an operator: `mode open -> allowlist; added deny
    /// gamma.test; removed allow beta.test; changed deny spam.example`, or `no change`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no change".to_owned();
        }
        let mut parts = Vec::new();
        if self.mode_before != self.mode_after {
            parts.push(format!("mode {} -> {}", self.mode_before, self.mode_after));
        }
        for (verb, entries) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !entries.is_empty() {
                let list: Vec<String> = entries.iter().map(ToString::to_string).collect();
                parts.push(format!("{verb} {}", list.join(", ")));
            }
        }
        parts.join("; ")
    }

    fn log(&self, cause: &str) {
        let join = |v: &[DiffEntry]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        tracing::info!(
            target: "audit",
            event = "trust.policy_changed",
            cause,
            mode.before = %self.mode_before,
            mode.after = %self.mode_after,
            entries.before = self.before.rules().len(),
            entries.after = self.after.rules().len(),
            added = %join(&self.added),
            removed = %join(&self.removed),
            changed = %join(&self.changed),
            "trust policy changed"
        );
    }
}
