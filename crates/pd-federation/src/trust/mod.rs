//! Trust lists: the policy deciding which nodes this node federates with.
//!
//! - [`TrustConfig`] is the `[trust]` section of the node configuration.
//! - [`TrustPolicy`] is the compiled policy; [`TrustPolicy::decide`] gives a [`Verdict`]
//!   naming the deciding entry, and [`Verdict::explain`] one human line.
//! - [`Trust`] is the shared handle every path (outbound lookups, delegation targets,
//!   inbound node requests, cached answers) asks at the moment of use; reloads swap the
//!   policy and return a [`PolicyDiff`] that the lookup cache uses to drop answers of newly
//!   refused domains.
//! - [`lists`] reads and writes plain-text and Mastodon CSV lists;
//!   [`SubscriptionRefresher`] keeps subscribed lists fresh through a [`ListFetcher`].
//!
//! Hosts are compared only in the normalised form of [`pd_proto::address::Host`], so case,
//! a trailing dot or a Unicode spelling cannot slip past an entry.

mod config;
mod handle;
pub mod lists;
mod policy;
mod subscription;

#[cfg(test)]
mod tests;

/// A trust handle for the node `a.example` with the `[trust]` section `toml_text` (empty:
/// the open policy), for the tests of the modules that take a [`Trust`].
#[cfg(test)]
pub(crate) fn test_trust(toml_text: &str) -> Trust {
    #[derive(serde::Deserialize)]
    struct Section {
        #[serde(default)]
        trust: TrustConfig,
    }
    let section: Section = toml::from_str(toml_text).unwrap();
    let own = pd_proto::Host::parse("a.example").unwrap();
    Trust::new(TrustPolicy::new(own, section.trust).unwrap())
}

use std::path::PathBuf;

pub use config::{
    DEFAULT_REFRESH, DomainPattern, Entry, EntryKind, MIN_REFRESH, Mode, PatternError,
    SubscriptionConfig, TrustConfig,
};
pub use handle::{AUDIT_LOG_CAPACITY, AuditRecord, DiffEntry, PolicyDiff, Trust};
pub use policy::{
    DecidingEntry, EntryInForce, ListSource, Reason, SubscribedList, TrustPolicy, TrustWarning,
    Verdict,
};
pub use subscription::{
    ArchivedList, ListArchive, ListFetcher, RETRY_AFTER_FAILURE, RefreshError, RestoredList,
    SubscriptionRefresher, SubscriptionStatus, restore_archived,
};
use url::Url;

/// Why a trust configuration cannot be put in force. The policy in force stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A subscription URL is not `https`.
    #[error("trust subscription {0} is not an https URL")]
    SubscriptionNotHttps(Url),
    /// A subscription URL is listed twice.
    #[error("trust subscription {0} is listed twice")]
    DuplicateSubscription(Url),
    /// A subscription refreshes more often than [`MIN_REFRESH`].
    #[error("trust subscription {0} refreshes more often than once a minute")]
    RefreshTooShort(Url),
    /// A list was offered for a URL that is not subscribed.
    #[error("{0} is not a subscribed list")]
    NotSubscribed(Url),
    /// `file` is set together with inline policy keys.
    #[error(
        "[trust] names the file {0:?} and also sets mode, allow, deny or subscriptions inline; keep the policy in one place"
    )]
    InlineAndFile(PathBuf),
    /// The trust file names another file.
    #[error("trust file {0:?} sets `file`; it must hold the policy itself")]
    NestedFile(PathBuf),
    /// A policy was built from a configuration whose `file` was not resolved.
    #[error("trust file {0:?} has not been read; call TrustConfig::resolve first")]
    Unresolved(PathBuf),
    /// The trust file cannot be read.
    #[error("failed to read trust file {path:?}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The trust file does not parse.
    #[error("trust file {path:?} is invalid: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
}
