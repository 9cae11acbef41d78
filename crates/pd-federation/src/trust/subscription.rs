//! Subscribed lists: periodic fetch, parse and merge into the policy in force.
//!
//! Fetching goes through a [`ListFetcher`], which the node implements with its guarded
//! outbound client; this module never opens a connection itself. A fetch or parse failure
//! keeps the last good copy of the list (and is logged by [`SubscriptionRefresher::run`]);
//! a successful fetch replaces the list's entries as a whole, so entries that disappear
//! from the source are removed again.
//!
//! With a [`ListArchive`], each good copy is also kept on disk and put back in force by
//! [`SubscriptionRefresher::restore`] when the node starts, so a list server that is down
//! at start does not leave the node with an emptier policy than it had before.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::time::Instant;
use url::Url;

use super::TrustError;
use super::handle::{PolicyDiff, Trust};
use super::lists::{self, ListError};
use super::policy::SubscribedList;

/// After a failed refresh, the list is tried again after this long (or its refresh
/// interval, when shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10 * 60);

/// Fetches the body of a subscribed list. The node implements it with the guarded
/// outbound client (no redirects to other hosts, size and time limits, IP filter).
pub trait ListFetcher: Send + Sync {
    /// Fetches `url` and returns the response body of a successful response, or a
    /// readable reason.
    fn fetch(&self, url: &Url) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

impl<T: ListFetcher> ListFetcher for std::sync::Arc<T> {
    fn fetch(&self, url: &Url) -> impl Future<Output = Result<Vec<u8>, String>> + Send {
        (**self).fetch(url)
    }
}

/// The last good copy of a subscribed list, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedList {
    /// The list's body, exactly as fetched (it parsed when it was fetched).
    pub body: Vec<u8>,
    /// When it was fetched.
    pub fetched_at: SystemTime,
}

/// Durable storage of the last good copy of each subscribed list. The node implements it
/// with its database; errors are readable reasons, logged by the refresher.
pub trait ListArchive: Send + Sync {
    /// The copy kept for `url`, if any.
    fn load<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<Option<ArchivedList>, String>>;
    /// Keeps `list` as the copy for `url`, replacing the previous one.
    fn save<'a>(&'a self, url: &'a Url, list: ArchivedList) -> BoxFuture<'a, Result<(), String>>;
}

/// Why a refresh failed. The last good copy of the list stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The URL is not (or no longer) subscribed.
    #[error("{0} is not a subscribed list")]
    NotSubscribed(Url),
    /// The list could not be fetched.
    #[error("fetching {url} failed: {message}")]
    Fetch {
        /// The list.
        url: Url,
        /// Why.
        message: String,
    },
    /// The list was fetched but does not parse.
    #[error("list {url} is malformed: {source}")]
    Parse {
        /// The list.
        url: Url,
        /// Why.
        source: ListError,
    },
    /// The policy could not be rebuilt.
    #[error(transparent)]
    Policy(#[from] TrustError),
}

/// What the refresher knows about one subscription, for the admin surface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStatus {
    /// When the list was last tried.
    pub last_attempt: Option<SystemTime>,
    /// When it was last fetched and parsed successfully.
    pub last_success: Option<SystemTime>,
    /// The error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Entries in the copy in force.
    pub entries: usize,
}

/// Keeps the subscribed lists of a [`Trust`] handle fresh.
///
/// Drive it with [`SubscriptionRefresher::run`], a future the server spawns in its task
/// set together with its shutdown signal; [`SubscriptionRefresher::refresh`] refreshes one
/// list now (for an admin "refresh" action).
#[derive(Debug)]
pub struct SubscriptionRefresher<F> {
    trust: Trust,
    fetcher: F,
    archive: Option<Arc<dyn ListArchive>>,
    status: Mutex<HashMap<Url, SubscriptionStatus>>,
}

impl fmt::Debug for dyn ListArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListArchive")
    }
}

impl<F: ListFetcher> SubscriptionRefresher<F> {
    /// A refresher for the subscriptions of `trust`, fetching with `fetcher`.
    pub fn new(trust: Trust, fetcher: F) -> Self {
        Self {
            trust,
            fetcher,
            archive: None,
            status: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps every good copy in `archive` as well; see [`SubscriptionRefresher::restore`].
    #[must_use]
    pub fn with_archive(mut self, archive: Arc<dyn ListArchive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Puts the archived copy of each subscribed list that has none in force yet back in
    /// force (see [`restore_archived`]); returns how many were restored.
    pub async fn restore(&self) -> usize {
        let Some(archive) = &self.archive else {
            return 0;
        };
        let restored = restore_archived(&self.trust, archive.as_ref()).await;
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in &restored {
            let s = status.entry(r.url.clone()).or_default();
            s.last_success = Some(r.fetched_at);
            s.entries = r.entries;
        }
        restored.len()
    }

    /// Fetches and parses the list at `url` and puts its entries in force. On error the
    /// last good copy stays in force.
    pub async fn refresh(&self, url: &Url) -> Result<PolicyDiff, RefreshError> {
        let result = self.try_refresh(url).await;
        let now = SystemTime::now();
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = status.entry(url.clone()).or_default();
        s.last_attempt = Some(now);
        match &result {
            Ok(diff) => {
                s.last_success = Some(now);
                s.last_error = None;
                s.entries = diff
                    .after()
                    .subscribed()
                    .get(url)
                    .map_or(0, |l| l.entries.len());
            }
            Err(e) => s.last_error = Some(e.to_string()),
        }
        result
    }

    async fn try_refresh(&self, url: &Url) -> Result<PolicyDiff, RefreshError> {
        let subscribed = |trust: &Trust| {
            trust
                .current()
                .local()
                .subscriptions
                .iter()
                .any(|s| &s.url == url)
        };
        if !subscribed(&self.trust) || url.scheme() != "https" {
            return Err(RefreshError::NotSubscribed(url.clone()));
        }
        let body = self
            .fetcher
            .fetch(url)
            .await
            .map_err(|message| RefreshError::Fetch {
                url: url.clone(),
                message,
            })?;
        let parsed = lists::parse(&body).map_err(|source| RefreshError::Parse {
            url: url.clone(),
            source,
        })?;
        for w in &parsed.warnings {
            tracing::warn!(subscription.url = %url, line = w.line, "{}", w.message);
        }
        let fetched_at = SystemTime::now();
        let list = SubscribedList {
            entries: parsed.entries,
            fetched_at,
        };
        let diff = self
            .trust
            .update(&format!("subscription {url}"), |p| p.with_list(url, list))
            .map_err(|e| match e {
                // The subscription was removed by a reload while the fetch ran.
                TrustError::NotSubscribed(url) => RefreshError::NotSubscribed(url),
                other => RefreshError::Policy(other),
            })?;
        if let Some(archive) = &self.archive {
            // The copy in force is already updated; a failure to keep it on disk only
            // costs the next start a fetch.
            if let Err(e) = archive.save(url, ArchivedList { body, fetched_at }).await {
                tracing::warn!(subscription.url = %url, error = %e, "subscribed list not archived");
            }
        }
        Ok(diff)
    }

    /// The status of each subscription tried so far.
    pub fn status(&self) -> HashMap<Url, SubscriptionStatus> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refreshes every subscribed list at start and then every `refresh` interval (failed
    /// ones after [`RETRY_AFTER_FAILURE`]), following reloads that add or remove
    /// subscriptions, until `shutdown` completes. Failures are logged here.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut changes = self.trust.subscribe_changes();
        let mut next_due: HashMap<Url, Instant> = HashMap::new();
        loop {
            changes.borrow_and_update();
            let subscriptions = self.trust.current().local().subscriptions.clone();
            next_due.retain(|url, _| subscriptions.iter().any(|s| &s.url == url));
            for sub in &subscriptions {
                let due = *next_due.entry(sub.url.clone()).or_insert_with(Instant::now);
                if due > Instant::now() {
                    continue;
                }
                let result = tokio::select! {
                    r = self.refresh(&sub.url) => r,
                    () = &mut shutdown => return,
                };
                let delay = match result {
                    Ok(_) => {
                        tracing::debug!(subscription.url = %sub.url, "subscribed list refreshed");
                        sub.refresh
                    }
                    Err(RefreshError::NotSubscribed(_)) => continue,
                    Err(e) => {
                        tracing::warn!(
                            subscription.url = %sub.url,
                            error = %e,
                            "subscribed list not refreshed; keeping the last good copy"
                        );
                        sub.refresh.min(RETRY_AFTER_FAILURE)
                    }
                };
                next_due.insert(sub.url.clone(), Instant::now() + delay);
            }
            let wake = next_due.values().min().copied();
            tokio::select! {
                () = &mut shutdown => return,
                () = sleep_until(wake) => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The handle is gone; nothing left to refresh.
                        return;
                    }
                }
            }
        }
    }
}

/// A subscribed list put back in force from its archived copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredList {
    /// The list.
    pub url: Url,
    /// Entries in the copy.
    pub entries: usize,
    /// When the copy was fetched.
    pub fetched_at: SystemTime,
}

/// Puts the archived copy of each list `trust` subscribes to and has no copy of in force
/// yet into force. A copy that cannot be read or no longer parses is skipped (and logged):
/// the next refresh fetches the list anyway.
pub async fn restore_archived(trust: &Trust, archive: &dyn ListArchive) -> Vec<RestoredList> {
    let current = trust.current();
    let missing: Vec<Url> = current
        .local()
        .subscriptions
        .iter()
        .filter(|s| !current.subscribed().contains_key(&s.url))
        .map(|s| s.url.clone())
        .collect();
    drop(current);
    let mut restored = Vec::new();
    for url in missing {
        let copy = match archive.load(&url).await {
            Ok(Some(copy)) => copy,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(subscription.url = %url, error = %e, "archived copy of a subscribed list not read");
                continue;
            }
        };
        let parsed = match lists::parse(&copy.body) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(subscription.url = %url, error = %e, "archived copy of a subscribed list does not parse; ignored");
                continue;
            }
        };
        let entries = parsed.entries.len();
        let list = SubscribedList {
            entries: parsed.entries,
            fetched_at: copy.fetched_at,
        };
        match trust.update(&format!("subscription {url} (archived copy)"), |p| {
            p.with_list(&url, list)
        }) {
            Ok(_) => restored.push(RestoredList {
                url,
                entries,
                fetched_at: copy.fetched_at,
            }),
            Err(e) => {
                tracing::warn!(subscription.url = %url, error = %e, "archived copy of a subscribed list not put in force");
            }
        }
    }
    restored
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
