//! The node's server keys in its data dir: the current signing key (`server.key`) and the
//! retired keys kept after a rotation so that requests signed just before it still verify
//! (`server-keys/retired-<id>.key`).
//!
//! A rotation ([`rotate`]) writes the retired key's public half and its retirement time
//! (Unix seconds) to `server-keys/retired-<id>.key`, then replaces `server.key` with a new
//! key. A retired key never signs again, so its secret half is not kept. Every file is
//! written to a temporary file, synced, renamed into place (mode 0600) and the directory
//! synced, so a crash leaves either the old or the new state.
//!
//! A node loads the keys at start ([`ServerKeys::load`]): it signs with the current key and
//! publishes, besides it, each retired key until its retirement time plus the maximum
//! request age. Retired keys past that are deleted.
//!
//! With the shared (PostgreSQL) store the keys live in the database instead, so every
//! replica of the domain signs with the same key and publishes the same keys
//! ([`load_shared`], [`rotate_shared`]). The first replica to start stores the data
//! directory's `server.key` if it has one (a node moving from the embedded store keeps its
//! key), or a new key; later replicas use the stored one.
//!
//! A running node reads its keys again every `server_key_reload` ([`read_again`]) and puts
//! them in force through its [`KeyRing`]: a rotation is published at once, and the node
//! signs with the new key only [`KeyRing::switch_delay`] after the rotation, by when every
//! running replica publishes it too (each reads the keys within one interval), so that a
//! peer fetching the keys from any replica finds the key a request is signed with. Until
//! then the node keeps signing with the retired key, which is published (and accepted) for
//! the maximum request age after the rotation.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use arc_swap::ArcSwap;
use pd_proto::node_auth::server_key_id;
use pd_proto::wire::ServerKey;
use pd_proto::{PublicKey, SecretKey};

use crate::store::{SharedServerKeys, Store};

/// How long after a request for `/.well-known/pd` the current key is declared valid.
pub const CURRENT_KEY_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Name of the current key's file in the data dir.
pub const CURRENT_KEY_FILE: &str = "server.key";

/// Name of the directory (in the data dir) holding the retired keys.
pub const RETIRED_DIR: &str = "server-keys";

const RETIRED_PREFIX: &str = "retired-";
const KEY_SUFFIX: &str = ".key";
const TMP_SUFFIX: &str = ".tmp";

/// A key that signed for this node before a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    /// The retired public key.
    pub public_key: PublicKey,
    /// When it stopped being the current key (Unix seconds).
    pub retired_at: u64,
}

impl RetiredKey {
    /// The id it is published under.
    pub fn key_id(&self) -> String {
        server_key_id(&self.public_key)
    }

    fn to_text(&self) -> String {
        format!(
            "public_key = {}\nretired_at = {}\n",
            self.public_key, self.retired_at
        )
    }

    fn from_text(text: &str) -> anyhow::Result<Self> {
        let mut public_key = None;
        let mut retired_at = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| anyhow!("line {line:?} is not `name = value`"))?;
            match name.trim() {
                "public_key" => {
                    public_key = Some(
                        value
                            .trim()
                            .parse::<PublicKey>()
                            .map_err(|e| anyhow!("invalid public_key: {e}"))?,
                    );
                }
                "retired_at" => {
                    retired_at = Some(
                        value
                            .trim()
                            .parse::<u64>()
                            .map_err(|e| anyhow!("invalid retired_at: {e}"))?,
                    );
                }
                other => return Err(anyhow!("unknown field {other:?}")),
            }
        }
        Ok(Self {
            public_key: public_key.ok_or_else(|| anyhow!("public_key is missing"))?,
            retired_at: retired_at.ok_or_else(|| anyhow!("retired_at is missing"))?,
        })
    }
}

/// The keys a node signs with and publishes.
#[derive(Debug)]
pub struct ServerKeys {
    current: SecretKey,
    retired: Vec<RetiredKey>,
    max_request_age: Duration,
}

impl ServerKeys {
    /// Loads the current key from `data_dir` (creating it on first start) and every retired
    /// key still valid at `now` (Unix seconds), deleting the others. A retired key is valid
    /// until its retirement time plus `max_request_age`.
    pub fn load(data_dir: &Path, max_request_age: Duration, now: u64) -> anyhow::Result<Self> {
        Self::load_with(data_dir, max_request_age, now, true)
    }

    /// Like [`Self::load`] but changes nothing on disk: fails without a current key and
    /// leaves expired retired keys in place (they are skipped).
    pub fn inspect(data_dir: &Path, max_request_age: Duration, now: u64) -> anyhow::Result<Self> {
        Self::load_with(data_dir, max_request_age, now, false)
    }

    fn load_with(
        data_dir: &Path,
        max_request_age: Duration,
        now: u64,
        write: bool,
    ) -> anyhow::Result<Self> {
        let current = if write {
            load_or_create_current(data_dir)?
        } else {
            read_current(data_dir)?.ok_or_else(|| {
                anyhow!(
                    "no server key in {} yet (it is created on first start)",
                    data_dir.display()
                )
            })?
        };
        let current_id = server_key_id(&current.public());
        let mut retired = Vec::new();
        for (path, key) in read_retired(data_dir, write)? {
            let valid_until = key.retired_at.saturating_add(max_request_age.as_secs());
            if key.public_key == current.public() || key.key_id() == current_id {
                // A rotation interrupted between its two writes: the key is still current.
                continue;
            }
            if valid_until <= now && !write {
                continue;
            }
            if valid_until <= now {
                fs::remove_file(&path).with_context(|| {
                    format!("failed to delete expired retired key {}", path.display())
                })?;
                tracing::info!(key_id = %key.key_id(), "deleted an expired retired server key");
                continue;
            }
            retired.push(key);
        }
        retired.sort_by_key(|k| std::cmp::Reverse(k.retired_at));
        Ok(Self {
            current,
            retired,
            max_request_age,
        })
    }

    /// The key this node signs node-to-node requests with.
    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    /// The public half of the current key.
    pub fn current_public(&self) -> PublicKey {
        self.current.public()
    }

    /// The id the current key is published under.
    pub fn current_id(&self) -> String {
        server_key_id(&self.current.public())
    }

    /// The retired keys loaded at start, most recently retired first.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// Until when (Unix seconds) a retired key is published and accepted.
    pub fn retired_valid_until(&self, key: &RetiredKey) -> u64 {
        key.retired_at
            .saturating_add(self.max_request_age.as_secs())
    }

    /// The keys published in `/.well-known/pd` at `now` (Unix seconds): the current key,
    /// valid for [`CURRENT_KEY_VALIDITY`], then each retired key not yet expired.
    pub fn published(&self, now: u64) -> Vec<ServerKey> {
        let mut keys = vec![ServerKey {
            key_id: self.current_id(),
            public_key: self.current_public(),
            valid_until: now.saturating_add(CURRENT_KEY_VALIDITY.as_secs()),
        }];
        keys.extend(
            self.retired
                .iter()
                .map(|k| ServerKey {
                    key_id: k.key_id(),
                    public_key: k.public_key,
                    valid_until: self.retired_valid_until(k),
                })
                .filter(|k| k.valid_until > now),
        );
        keys
    }
}

impl ServerKeys {
    /// The keys as the shared store keeps them, with the retired keys still valid at `now`.
    pub fn from_shared(
        shared: &SharedServerKeys,
        max_request_age: Duration,
        now: u64,
    ) -> anyhow::Result<Self> {
        let current = SecretKey::from_text(shared.current.trim())
            .context("failed to parse the server key stored in the database")?;
        let mut retired = Vec::new();
        for (public_key, retired_at) in &shared.retired {
            let public_key = public_key
                .parse::<PublicKey>()
                .map_err(|e| anyhow!("invalid retired server key in the database: {e}"))?;
            let key = RetiredKey {
                public_key,
                retired_at: *retired_at,
            };
            if key.public_key == current.public()
                || key.retired_at.saturating_add(max_request_age.as_secs()) <= now
            {
                continue;
            }
            retired.push(key);
        }
        retired.sort_by_key(|k| std::cmp::Reverse(k.retired_at));
        Ok(Self {
            current,
            retired,
            max_request_age,
        })
    }
}

/// The server keys of a running node: the keys it publishes, and the key it signs with,
/// both replaced when a reload finds a rotation.
#[derive(Debug)]
pub struct KeyRing {
    keys: ArcSwap<ServerKeys>,
    signing: Arc<ArcSwap<SecretKey>>,
    switch_delay: Duration,
}

impl KeyRing {
    /// The keys loaded at start; the node signs with the current one. After a rotation it
    /// switches to the new key `switch_delay` after the rotation time.
    pub fn new(keys: ServerKeys, switch_delay: Duration) -> Self {
        let signing = Arc::new(ArcSwap::from_pointee(keys.current().clone()));
        Self {
            keys: ArcSwap::from_pointee(keys),
            signing,
            switch_delay,
        }
    }

    /// How long after a rotation the node starts signing with the new key: two reload
    /// intervals and a second, by when every replica has read the keys again.
    pub fn switch_delay_for(reload_interval: Duration) -> Duration {
        reload_interval.saturating_mul(2) + Duration::from_secs(1)
    }

    /// The delay this ring waits after a rotation before signing with the new key.
    pub fn switch_delay(&self) -> Duration {
        self.switch_delay
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<ServerKeys> {
        self.keys.load_full()
    }

    /// The key signing node-to-node requests now, shared with the node's signer.
    pub fn signing(&self) -> Arc<ArcSwap<SecretKey>> {
        Arc::clone(&self.signing)
    }

    /// The id of the key signing now.
    pub fn signing_id(&self) -> String {
        server_key_id(&self.signing.load().public())
    }

    /// The id of the current key (the newest, published first).
    pub fn current_id(&self) -> String {
        self.keys.load().current_id()
    }

    /// The public half of the current key.
    pub fn current_public(&self) -> PublicKey {
        self.keys.load().current_public()
    }

    /// The keys published at `now` (Unix seconds), as [`ServerKeys::published`].
    pub fn published(&self, now: u64) -> Vec<ServerKey> {
        self.keys.load().published(now)
    }

    /// Puts freshly read keys in force at `now` (Unix seconds): they are published at once;
    /// the signing key moves to the new current key once the key it signs with now has been
    /// retired for [`Self::switch_delay`] (at once when that key is not among the retired
    /// ones). Returns whether the published keys or the signing key changed.
    pub fn update(&self, fresh: ServerKeys, now: u64) -> bool {
        let before = self.keys.load();
        let published_changed = before.current_public() != fresh.current_public()
            || before.retired() != fresh.retired();
        let signing = self.signing.load_full();
        let next_signing = if signing.public() == fresh.current_public() {
            None
        } else {
            let retired_at = fresh
                .retired()
                .iter()
                .find(|k| k.public_key == signing.public())
                .map(|k| k.retired_at);
            // Retirement times are whole seconds, rounded down: one more second keeps the
            // delay from falling short.
            let delay =
                self.switch_delay.as_secs() + u64::from(self.switch_delay.subsec_nanos() > 0);
            match retired_at {
                Some(at) if now < at.saturating_add(delay + 1) => None,
                _ => Some(fresh.current().clone()),
            }
        };
        if published_changed {
            tracing::info!(
                key_id = %fresh.current_id(),
                retired = fresh.retired().len(),
                "server keys changed; publishing them"
            );
            self.keys.store(Arc::new(fresh));
        }
        let signing_changed = next_signing.is_some();
        if let Some(key) = next_signing {
            tracing::info!(key_id = %server_key_id(&key.public()), "signing with the new server key");
            self.signing.store(Arc::new(key));
        }
        published_changed || signing_changed
    }
}

/// Reads the server keys again without changing anything: from the shared store, or from
/// `data_dir` (expired retired keys are skipped, not deleted).
pub async fn read_again(
    store: &Store,
    data_dir: &Path,
    max_request_age: Duration,
    now: u64,
) -> anyhow::Result<ServerKeys> {
    if store.is_shared() {
        return inspect_shared(store, max_request_age, now).await;
    }
    let dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || ServerKeys::inspect(&dir, max_request_age, now))
        .await
        .context("the server key reader failed")?
}

/// Loads the node's server keys for its store: from the shared store (PostgreSQL, see
/// [`load_shared`]) or from the data directory (the embedded store).
pub async fn load_for_store(
    store: &Store,
    data_dir: &Path,
    max_request_age: Duration,
    now: u64,
) -> anyhow::Result<ServerKeys> {
    if store.is_shared() {
        load_shared(store, data_dir, max_request_age, now).await
    } else {
        ServerKeys::load(data_dir, max_request_age, now)
            .with_context(|| format!("failed to load the server keys in {}", data_dir.display()))
    }
}

/// Loads the server keys from the shared store, storing the data directory's current key
/// (or a new one) first if the store has none yet. All replicas get the same keys.
pub async fn load_shared(
    store: &Store,
    data_dir: &Path,
    max_request_age: Duration,
    now: u64,
) -> anyhow::Result<ServerKeys> {
    let candidate = match read_current(data_dir)? {
        Some(key) => key,
        None => SecretKey::generate(),
    };
    let shared = store
        .shared_server_keys(candidate.to_text())
        .await
        .context("failed to load the server key from the database")?;
    ServerKeys::from_shared(&shared, max_request_age, now)
}

/// Reads the server keys from the shared store without creating any.
pub async fn inspect_shared(
    store: &Store,
    max_request_age: Duration,
    now: u64,
) -> anyhow::Result<ServerKeys> {
    let shared = store
        .read_server_keys()
        .await
        .context("failed to read the server key from the database")?
        .ok_or_else(|| {
            anyhow!("no server key in the database yet (it is stored on first start)")
        })?;
    ServerKeys::from_shared(&shared, max_request_age, now)
}

/// Replaces the shared current key with a new one, keeping the old one as retired at `now`
/// and forgetting retired keys older than `max_request_age`. Running replicas read it
/// within `server_key_reload` (see [`KeyRing`]).
pub async fn rotate_shared(
    store: &Store,
    max_request_age: Duration,
    now: u64,
) -> anyhow::Result<Rotated> {
    let new = SecretKey::generate();
    let old = store
        .rotate_server_key(
            new.to_text(),
            now,
            now.saturating_sub(max_request_age.as_secs()),
        )
        .await
        .context("failed to rotate the server key in the database")?;
    let retired = match old {
        Some(text) => Some(RetiredKey {
            public_key: SecretKey::from_text(text.trim())
                .context("failed to parse the server key stored in the database")?
                .public(),
            retired_at: now,
        }),
        None => None,
    };
    Ok(Rotated {
        new_key_id: server_key_id(&new.public()),
        retired,
    })
}

/// The outcome of a [`rotate`].
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The id of the new current key.
    pub new_key_id: String,
    /// The key that was retired (none when there was no key yet).
    pub retired: Option<RetiredKey>,
}

/// Replaces the current key in `data_dir` with a new one, keeping the old one as retired
/// at `now` (Unix seconds). Without a current key, just creates one. A running node reads
/// it within `server_key_reload` (see [`KeyRing`]).
pub fn rotate(data_dir: &Path, now: u64) -> anyhow::Result<Rotated> {
    fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let retired = match read_current(data_dir)? {
        Some(old) => {
            let retired = RetiredKey {
                public_key: old.public(),
                retired_at: now,
            };
            let dir = data_dir.join(RETIRED_DIR);
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            sync_dir(data_dir)?;
            write_durably(
                &retired_path(data_dir, &retired),
                retired.to_text().as_bytes(),
            )?;
            Some(retired)
        }
        None => None,
    };
    let new = SecretKey::generate();
    write_durably(&data_dir.join(CURRENT_KEY_FILE), new.to_text().as_bytes())?;
    Ok(Rotated {
        new_key_id: server_key_id(&new.public()),
        retired,
    })
}

/// Reads the current key in `data_dir`, if there is one.
pub fn read_current(data_dir: &Path) -> anyhow::Result<Option<SecretKey>> {
    let path = data_dir.join(CURRENT_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => SecretKey::from_text(text.trim())
            .map(Some)
            .with_context(|| format!("failed to parse server key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read server key {}", path.display())),
    }
}

/// Writes `key` as the current key of `data_dir` (creating the directory), which must not
/// hold one yet; used by `pd-server migrate` to carry a domain's key into a new data
/// directory.
pub fn install_current(data_dir: &Path, key: &SecretKey) -> anyhow::Result<()> {
    if read_current(data_dir)?.is_some() {
        return Err(anyhow!(
            "{} already holds a server key",
            data_dir.join(CURRENT_KEY_FILE).display()
        ));
    }
    fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    write_durably(&data_dir.join(CURRENT_KEY_FILE), key.to_text().as_bytes())
}

fn load_or_create_current(data_dir: &Path) -> anyhow::Result<SecretKey> {
    if let Some(key) = read_current(data_dir)? {
        return Ok(key);
    }
    let key = SecretKey::generate();
    write_durably(&data_dir.join(CURRENT_KEY_FILE), key.to_text().as_bytes())?;
    Ok(key)
}

fn retired_path(data_dir: &Path, key: &RetiredKey) -> PathBuf {
    let id: String = key
        .key_id()
        .chars()
        .skip(pd_proto::node_auth::KEY_ID_PREFIX.len())
        .filter(char::is_ascii_alphanumeric)
        .collect();
    data_dir
        .join(RETIRED_DIR)
        .join(format!("{RETIRED_PREFIX}{id}{KEY_SUFFIX}"))
}

/// Every retired key file in `data_dir` with its parsed content. With `write`, leftover
/// temporary files of an interrupted write are removed.
fn read_retired(data_dir: &Path, write: bool) -> anyhow::Result<Vec<(PathBuf, RetiredKey)>> {
    let dir = data_dir.join(RETIRED_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", dir.display())),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) && write {
            fs::remove_file(&path)
                .with_context(|| format!("failed to delete {}", path.display()))?;
            continue;
        }
        if !(name.starts_with(RETIRED_PREFIX) && name.ends_with(KEY_SUFFIX)) {
            continue;
        }
        let text = fs::read_to_string(&path)
            .with_context(|| format!("failed to read retired key {}", path.display()))?;
        let key = RetiredKey::from_text(&text)
            .with_context(|| format!("failed to parse retired key {}", path.display()))?;
        keys.push((path, key));
    }
    Ok(keys)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file next to it (mode
/// 0600), synced, renamed over `path`, then the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("failed to create {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("failed to set the mode of {}", tmp.display()))?;
    }
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path)
        .with_context(|| format!("failed to move {} into place", path.display()))?;
    sync_dir(dir)
}

/// Syncs a directory so that renames and new entries in it survive a crash.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(300);

    #[test]
    fn rotation_keeps_the_old_key_until_retirement_plus_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKeys::load(dir.path(), AGE, 1_000).unwrap();
        let old = first.current_public();
        let rotated = rotate(dir.path(), 2_000).unwrap();
        assert_eq!(rotated.retired.as_ref().unwrap().public_key, old);

        let keys = ServerKeys::load(dir.path(), AGE, 2_100).unwrap();
        assert_eq!(keys.current_id(), rotated.new_key_id);
        let published = keys.published(2_100);
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].key_id, rotated.new_key_id);
        assert_eq!(
            published[0].valid_until,
            2_100 + CURRENT_KEY_VALIDITY.as_secs()
        );
        assert_eq!(published[1].public_key, old);
        assert_eq!(published[1].valid_until, 2_300);
        // Past its validity it is no longer published by a running node...
        assert_eq!(keys.published(2_300).len(), 1);
        // ...and deleted at the next start.
        let keys = ServerKeys::load(dir.path(), AGE, 2_300).unwrap();
        assert!(keys.retired().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join(RETIRED_DIR)).unwrap().count(),
            0
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        rotate(dir.path(), 10).unwrap();
        let rotated = rotate(dir.path(), 20).unwrap();
        let retired = retired_path(dir.path(), rotated.retired.as_ref().unwrap());
        for path in [dir.path().join(CURRENT_KEY_FILE), retired] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    #[test]
    fn an_interrupted_rotation_leaves_the_current_key_unpublished_as_retired() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServerKeys::load(dir.path(), AGE, 10).unwrap();
        let stale = RetiredKey {
            public_key: keys.current_public(),
            retired_at: 10,
        };
        fs::create_dir_all(dir.path().join(RETIRED_DIR)).unwrap();
        write_durably(
            &retired_path(dir.path(), &stale),
            stale.to_text().as_bytes(),
        )
        .unwrap();
        fs::write(dir.path().join(RETIRED_DIR).join(".x.tmp"), b"junk").unwrap();
        let keys = ServerKeys::load(dir.path(), AGE, 20).unwrap();
        assert!(keys.retired().is_empty());
        assert_eq!(keys.published(20).len(), 1);
        assert!(!dir.path().join(RETIRED_DIR).join(".x.tmp").exists());
    }

    #[test]
    fn a_rotation_is_published_at_once_and_signed_with_after_the_switch_delay() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKeys::load(dir.path(), AGE, 1_000).unwrap();
        let old = first.current().clone();
        let ring = KeyRing::new(first, Duration::from_secs(21));
        assert_eq!(ring.signing_id(), server_key_id(&old.public()));
        // Nothing changed: nothing to do.
        assert!(!ring.update(ServerKeys::inspect(dir.path(), AGE, 1_005).unwrap(), 1_005));
        let rotated = rotate(dir.path(), 1_010).unwrap();
        // Published at once, besides the old key, which still signs.
        assert!(ring.update(ServerKeys::inspect(dir.path(), AGE, 1_012).unwrap(), 1_012));
        assert_eq!(ring.current_id(), rotated.new_key_id);
        assert_eq!(ring.published(1_012).len(), 2);
        assert_eq!(ring.signing_id(), server_key_id(&old.public()));
        assert!(!ring.update(ServerKeys::inspect(dir.path(), AGE, 1_031).unwrap(), 1_031));
        // 21 s after the rotation (and a second for the rounding of its time) the node
        // signs with the new key.
        assert!(ring.update(ServerKeys::inspect(dir.path(), AGE, 1_032).unwrap(), 1_032));
        assert_eq!(ring.signing_id(), rotated.new_key_id);
        // A node that never signed with the retired key (started after the rotation, or
        // the key unknown) switches at once.
        let other = KeyRing::new(
            ServerKeys::inspect(dir.path(), AGE, 1_031).unwrap(),
            Duration::from_secs(21),
        );
        assert_eq!(other.signing_id(), rotated.new_key_id);
    }

    #[test]
    fn a_corrupt_retired_key_refuses_to_load() {
        let dir = tempfile::tempdir().unwrap();
        rotate(dir.path(), 10).unwrap();
        fs::create_dir_all(dir.path().join(RETIRED_DIR)).unwrap();
        fs::write(
            dir.path().join(RETIRED_DIR).join("retired-abc.key"),
            b"public_key = nope\nretired_at = 5\n",
        )
        .unwrap();
        assert!(ServerKeys::load(dir.path(), AGE, 20).is_err());
    }
}
