//! The user's home: the identity key (`identity.key`, mode 0600), the configuration
//! (`config.toml`: address, home server, CA file), the cached lookup session
//! (`session.json`, mode 0600), the keys remembered for peers (`known_peers`) and the last
//! verified lookup answers of contacts (`contacts`, with its lock file `contacts.lock`).
//!
//! With `--home DIR` everything lives in DIR; by default the configuration goes to the XDG
//! config directory and the key and session to the XDG data directory. Keys are written with
//! `create_new` and fsync; files that replace others are written to a temporary file, synced
//! and renamed, so a crash leaves either the old or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use pd_proto::{Address, SecretKey};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::ChatError;

/// File name of the identity key.
pub const KEY_FILE: &str = "identity.key";
/// File name of the new key while a rotation is in flight.
pub const NEW_KEY_FILE: &str = "identity.key.new";
/// File name of the previous key, kept until a rotation is confirmed.
pub const OLD_KEY_FILE: &str = "identity.key.old";
/// File name of the configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the keys remembered for peers.
pub const KNOWN_PEERS_FILE: &str = "known_peers";
/// File name of the stored lookup answers of contacts.
pub const CONTACTS_FILE: &str = "contacts";
/// File name of the lock taken while the contacts file is updated.
pub const CONTACTS_LOCK_FILE: &str = "contacts.lock";
/// File name of the cached session.
pub const SESSION_FILE: &str = "session.json";

/// Seconds before its expiry at which a cached token is no longer used.
const SESSION_MARGIN_SECS: u64 = 30;

/// Where one user's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    config_dir: PathBuf,
    data_dir: PathBuf,
}

/// The account a home holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeConfig {
    /// The user's address.
    pub address: Address,
    /// The home server's base URL.
    pub server: Url,
    /// Extra CA certificates to trust for the home server.
    pub ca_file: Option<PathBuf>,
}

/// A cached lookup session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The account the token belongs to.
    pub address: Address,
    /// The server that issued it.
    pub server: Url,
    /// The bearer token.
    pub token: String,
    /// Unix time (seconds) at which the token expires.
    pub expires_at: u64,
}

impl Session {
    /// Whether the token may still be used by `config`'s account at `now_secs`.
    pub fn is_usable(&self, config: &HomeConfig, now_secs: u64) -> bool {
        self.address == config.address
            && self.server == config.server
            && self.expires_at > now_secs.saturating_add(SESSION_MARGIN_SECS)
    }
}

/// The on-disk form of `config.toml` (a local file, not a wire message).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    address: String,
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

/// The on-disk form of `session.json` (a local file, not a wire message).
#[derive(Serialize, Deserialize)]
struct SessionFile {
    address: String,
    server: String,
    token: String,
    expires_at: u64,
}

impl Home {
    /// A home where everything lives in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            config_dir: dir.clone(),
            data_dir: dir,
        }
    }

    /// The default home: the platform's config and data directories for `chat`.
    pub fn default_dirs() -> Result<Self, ChatError> {
        let dirs = directories::ProjectDirs::from("", "", "chat").ok_or_else(|| {
            ChatError::Home(
                "cannot find the home directory; pass --home DIR or set CHAT_HOME".to_owned(),
            )
        })?;
        Ok(Self {
            config_dir: dirs.config_dir().to_owned(),
            data_dir: dirs.data_dir().to_owned(),
        })
    }

    /// The directory named in messages (the config directory).
    pub fn display_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Path of the identity key.
    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join(KEY_FILE)
    }

    /// Path of the configuration.
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.join(CONFIG_FILE)
    }

    /// Path of the cached session.
    pub fn session_path(&self) -> PathBuf {
        self.data_dir.join(SESSION_FILE)
    }

    /// Path of the keys remembered for peers (`known_peers`).
    pub fn known_peers_path(&self) -> PathBuf {
        self.data_dir.join(KNOWN_PEERS_FILE)
    }

    /// Path of the stored lookup answers of contacts (`contacts`).
    pub fn contacts_path(&self) -> PathBuf {
        self.data_dir.join(CONTACTS_FILE)
    }

    /// Path of the lock file of the contacts.
    pub fn contacts_lock_path(&self) -> PathBuf {
        self.data_dir.join(CONTACTS_LOCK_FILE)
    }

    /// Path of the new key during a rotation.
    pub fn new_key_path(&self) -> PathBuf {
        self.data_dir.join(NEW_KEY_FILE)
    }

    /// Path of the previous key during a rotation.
    pub fn old_key_path(&self) -> PathBuf {
        self.data_dir.join(OLD_KEY_FILE)
    }

    /// Reads the identity key, if there is one.
    pub fn load_key(&self) -> Result<Option<SecretKey>, ChatError> {
        read_key(&self.key_path())
    }

    /// The identity key; an error if there is none.
    pub fn key(&self) -> Result<SecretKey, ChatError> {
        self.load_key()?.ok_or_else(|| {
            ChatError::Home(format!(
                "no identity key at {}; run `chat register` to create one",
                self.key_path().display()
            ))
        })
    }

    /// Reads the identity key, creating one (mode 0600) if there is none.
    pub fn load_or_create_key(&self) -> Result<SecretKey, ChatError> {
        if let Some(key) = self.load_key()? {
            return Ok(key);
        }
        let key = SecretKey::generate();
        create_dir(&self.data_dir)?;
        write_new_private(&self.key_path(), key.to_text().as_bytes())?;
        sync_dir(&self.data_dir)?;
        Ok(key)
    }

    /// Reads the configuration, if the home holds an account.
    pub fn load_config(&self) -> Result<Option<HomeConfig>, ChatError> {
        let path = self.config_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let malformed =
            |why: String| ChatError::Home(format!("{} is malformed: {why}", path.display()));
        let file: ConfigFile =
            toml::from_str(&text).map_err(|e| malformed(e.message().to_owned()))?;
        Ok(Some(HomeConfig {
            address: Address::parse(&file.address)
                .map_err(|e| malformed(format!("address: {e}")))?,
            server: Url::parse(&file.server).map_err(|e| malformed(format!("server: {e}")))?,
            ca_file: file.ca_file,
        }))
    }

    /// The configuration; an error if the home holds no account.
    pub fn config(&self) -> Result<HomeConfig, ChatError> {
        self.load_config()?
            .ok_or_else(|| ChatError::NotRegistered(self.config_dir.clone()))
    }

    /// Writes the configuration (atomically).
    pub fn save_config(&self, config: &HomeConfig) -> Result<(), ChatError> {
        let file = ConfigFile {
            address: config.address.to_string(),
            server: config.server.to_string(),
            ca_file: config.ca_file.clone(),
        };
        let text = toml::to_string(&file)
            .map_err(|e| ChatError::Home(format!("failed to encode the configuration: {e}")))?;
        create_dir(&self.config_dir)?;
        write_atomic(&self.config_path(), text.as_bytes())
    }

    /// Removes the configuration (after the account was deleted).
    pub fn remove_config(&self) -> Result<(), ChatError> {
        remove_optional(&self.config_path())
    }

    /// Reads the cached session; a missing or unreadable file is no session.
    pub fn load_session(&self) -> Option<Session> {
        let text = fs::read_to_string(self.session_path()).ok()?;
        let file: SessionFile = serde_json::from_str(&text).ok()?;
        Some(Session {
            address: Address::parse(&file.address).ok()?,
            server: Url::parse(&file.server).ok()?,
            token: file.token,
            expires_at: file.expires_at,
        })
    }

    /// Caches a session (mode 0600, atomically).
    pub fn save_session(&self, session: &Session) -> Result<(), ChatError> {
        let file = SessionFile {
            address: session.address.to_string(),
            server: session.server.to_string(),
            token: session.token.clone(),
            expires_at: session.expires_at,
        };
        let text = serde_json::to_vec_pretty(&file)
            .map_err(|e| ChatError::Home(format!("failed to encode the session: {e}")))?;
        create_dir(&self.data_dir)?;
        write_atomic(&self.session_path(), &text)
    }

    /// Forgets the cached session.
    pub fn clear_session(&self) -> Result<(), ChatError> {
        remove_optional(&self.session_path())
    }

    /// Reads the new key left by an interrupted rotation, if any.
    pub fn load_pending_key(&self) -> Result<Option<SecretKey>, ChatError> {
        read_key(&self.new_key_path())
    }

    /// First step of a rotation: writes the new key to `identity.key.new` and a copy of the
    /// current key to `identity.key.old`, both synced, before the server is asked.
    pub fn stage_rotation(&self, old: &SecretKey, new: &SecretKey) -> Result<(), ChatError> {
        self.abandon_rotation()?;
        write_new_private(&self.new_key_path(), new.to_text().as_bytes())?;
        write_new_private(&self.old_key_path(), old.to_text().as_bytes())?;
        sync_dir(&self.data_dir)
    }

    /// Last step of a confirmed rotation: the new key atomically replaces `identity.key`,
    /// then the old copy and the session (whose token the rotation invalidated) go.
    pub fn commit_rotation(&self) -> Result<(), ChatError> {
        let new = self.new_key_path();
        let key = self.key_path();
        fs::rename(&new, &key).map_err(|e| {
            ChatError::io(
                format!("failed to move {} to {}", new.display(), key.display()),
                e,
            )
        })?;
        sync_dir(&self.data_dir)?;
        remove_optional(&self.old_key_path())?;
        self.clear_session()
    }

    /// Undoes a staged rotation the server refused.
    pub fn abandon_rotation(&self) -> Result<(), ChatError> {
        remove_optional(&self.new_key_path())?;
        remove_optional(&self.old_key_path())
    }
}

fn read_key(path: &Path) -> Result<Option<SecretKey>, ChatError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    warn_if_readable_by_others(path);
    SecretKey::from_text(&text)
        .map(Some)
        .map_err(|e| ChatError::Home(format!("{} is not a key file: {e}", path.display())))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} is accessible by other users; run `chmod 600` on it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn read_optional(path: &Path) -> Result<Option<String>, ChatError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ChatError::io(
            format!("failed to read {}", path.display()),
            e,
        )),
    }
}

fn remove_optional(path: &Path) -> Result<(), ChatError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ChatError::io(
            format!("failed to remove {}", path.display()),
            e,
        )),
    }
}

fn create_dir(dir: &Path) -> Result<(), ChatError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| ChatError::io(format!("failed to create {}", dir.display()), e))
}

/// Creates `path` (which must not exist) with mode 0600, writes `bytes` and syncs it.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), ChatError> {
    let context = || format!("failed to write {}", path.display());
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| ChatError::io(context(), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ChatError::io(context(), e))
}

/// Replaces `path` with `bytes` (mode 0600): temporary file, fsync, rename, fsync of the
/// directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ChatError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    remove_optional(&tmp)?;
    write_new_private(&tmp, bytes)?;
    fs::rename(&tmp, path)
        .map_err(|e| ChatError::io(format!("failed to replace {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ChatError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ChatError::io(format!("failed to sync {}", dir.display()), e))
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, File::open);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HomeConfig {
        HomeConfig {
            address: Address::parse("alice@pd.test").unwrap(),
            server: Url::parse("https://pd.test").unwrap(),
            ca_file: Some(PathBuf::from("ca.pem")),
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("nested"));
        assert!(home.load_key().unwrap().is_none());
        let key = home.load_or_create_key().unwrap();
        let again = home.load_or_create_key().unwrap();
        assert_eq!(key.public(), again.public());
        #[cfg(unix)]
        assert_eq!(mode(&home.key_path()), 0o600);
    }

    #[test]
    fn config_round_trips_and_is_absent_before_registration() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert!(home.load_config().unwrap().is_none());
        assert!(matches!(home.config(), Err(ChatError::NotRegistered(_))));
        home.save_config(&config()).unwrap();
        assert_eq!(home.config().unwrap(), config());
        home.remove_config().unwrap();
        assert!(home.load_config().unwrap().is_none());
    }

    #[test]
    fn a_malformed_config_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        fs::write(
            home.config_path(),
            "address = \"not an address\"\nserver = \"https://x\"\n",
        )
        .unwrap();
        let err = home.load_config().unwrap_err().to_string();
        assert!(err.contains("config.toml is malformed: address"), "{err}");
    }

    #[test]
    fn sessions_are_private_and_only_usable_by_their_account_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert!(home.load_session().is_none());
        let session = Session {
            address: config().address,
            server: config().server,
            token: "tok".to_owned(),
            expires_at: 1_000,
        };
        home.save_session(&session).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&home.session_path()), 0o600);
        let loaded = home.load_session().unwrap();
        assert_eq!(loaded, session);
        assert!(loaded.is_usable(&config(), 900));
        assert!(!loaded.is_usable(&config(), 980));
        let mut other = config();
        other.server = Url::parse("https://elsewhere.test").unwrap();
        assert!(!loaded.is_usable(&other, 0));
        home.clear_session().unwrap();
        assert!(home.load_session().is_none());
    }

    #[test]
    fn a_rotation_is_staged_then_committed_or_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let old = home.load_or_create_key().unwrap();
        let new = SecretKey::generate();

        home.stage_rotation(&old, &new).unwrap();
        assert_eq!(
            home.load_pending_key().unwrap().unwrap().public(),
            new.public()
        );
        home.abandon_rotation().unwrap();
        assert!(home.load_pending_key().unwrap().is_none());
        assert_eq!(home.key().unwrap().public(), old.public());

        home.stage_rotation(&old, &new).unwrap();
        assert!(home.old_key_path().exists());
        home.commit_rotation().unwrap();
        assert_eq!(home.key().unwrap().public(), new.public());
        assert!(!home.old_key_path().exists());
        assert!(!home.new_key_path().exists());
        #[cfg(unix)]
        assert_eq!(mode(&home.key_path()), 0o600);
    }
}
