//! Contacts: for every address this account looked up or talked with, the last lookup answer
//! that verified (key, rotation proofs, signed presence record) and when it was fetched, kept
//! in the home (`contacts`, mode 0600, replaced atomically, next to `known_peers`). They let
//! `connect`, `listen` and `lookup` go on while the home node cannot be reached.
//!
//! The file is one JSON object (`version` 1, `contacts` keyed by address); each entry holds
//! the answer exactly as the home node sent it (`answer`, signed envelopes included), so it
//! is verified again every time it is read, and the Unix times `fetched_at`,
//! `last_seen_online` and `last_talked`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use pd_client::{VerifiedLookup, verify_lookup_answer};
use pd_proto::wire::LookupResponse;
use pd_proto::{Address, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::home::{Home, write_atomic};

/// The version of the file format this client writes and reads.
const VERSION: u32 = 1;

/// One stored contact, its answer verified.
#[derive(Debug, Clone)]
pub struct Contact {
    /// The verified answer, as stored.
    pub lookup: VerifiedLookup,
    /// Unix time (seconds) at which the answer was fetched.
    pub fetched_at: u64,
    /// Unix time at which the user was last seen online (a live record, or a conversation).
    pub last_seen_online: Option<u64>,
    /// Unix time at which the last conversation with the user opened.
    pub last_talked: Option<u64>,
}

/// One line of `chat contacts`.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The address.
    pub address: String,
    /// The stored key, when the entry verified.
    pub key: Option<PublicKey>,
    /// Why the entry did not verify.
    pub damaged: Option<String>,
    /// When the answer was fetched.
    pub fetched_at: u64,
    /// When the user was last seen online.
    pub last_seen_online: Option<u64>,
    /// When the last conversation opened.
    pub last_talked: Option<u64>,
}

/// The contacts file of a home.
#[derive(Debug)]
pub struct Contacts {
    home: Home,
}

/// The on-disk form of `contacts` (a local file, not a wire message).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ContactsFile {
    version: u32,
    #[serde(default)]
    contacts: BTreeMap<String, Entry>,
}

/// One entry of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    answer: LookupResponse,
    fetched_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seen_online: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_talked: Option<u64>,
}

impl Contacts {
    /// The contacts of `home`.
    pub fn new(home: Home) -> Self {
        Self { home }
    }

    /// Stores `found`, a verified answer fetched at `now`, as the contact's answer. An answer
    /// whose presence record is older than the stored one (same key) does not replace it.
    pub fn record_lookup(&self, found: &VerifiedLookup, now: u64) -> Result<(), ChatError> {
        let address = found.response().address.to_string();
        self.update(|file| {
            let online = found.is_online(now).then_some(now);
            let entry = file.contacts.get(&address);
            let previous_talk = entry.and_then(|e| e.last_talked);
            let previous_online = entry.and_then(|e| e.last_seen_online);
            let keeps_newer_record = entry.is_some_and(|e| {
                e.answer.public_key == *found.public_key()
                    && stored_seq(e)
                        .zip(found.presence().map(|p| p.seq))
                        .is_some_and(|(stored, new)| stored > new)
            });
            if keeps_newer_record {
                if let (Some(entry), Some(online)) = (file.contacts.get_mut(&address), online) {
                    entry.last_seen_online = Some(online);
                    return true;
                }
                return false;
            }
            file.contacts.insert(
                address.clone(),
                Entry {
                    answer: found.response().clone(),
                    fetched_at: now,
                    last_seen_online: online.or(previous_online),
                    last_talked: previous_talk,
                },
            );
            true
        })
    }

    /// Notes that a conversation with `address` opened at `now` (it was online then).
    pub fn record_talk(&self, address: &Address, now: u64) -> Result<(), ChatError> {
        self.update(|file| match file.contacts.get_mut(&address.to_string()) {
            Some(entry) => {
                entry.last_talked = Some(now);
                entry.last_seen_online = Some(now);
                true
            }
            None => false,
        })
    }

    /// The stored contact for `address`, verified again; an entry that no longer verifies is
    /// an error naming the way out.
    pub fn get(&self, address: &Address) -> Result<Option<Contact>, ChatError> {
        let file = self.load()?;
        let Some(entry) = file.contacts.get(&address.to_string()) else {
            return Ok(None);
        };
        let lookup = verify_lookup_answer(address, entry.answer.clone()).map_err(|e| {
            ChatError::Home(format!(
                "the answer stored for {address} in {} does not verify ({e}); remove it with \
                 `chat contacts remove {address}`",
                self.path_display()
            ))
        })?;
        Ok(Some(Contact {
            lookup,
            fetched_at: entry.fetched_at,
            last_seen_online: entry.last_seen_online,
            last_talked: entry.last_talked,
        }))
    }

    /// Every contact, by address.
    pub fn list(&self) -> Result<Vec<Summary>, ChatError> {
        let file = self.load()?;
        Ok(file
            .contacts
            .iter()
            .map(|(address, entry)| {
                let verified =
                    Address::parse(address)
                        .map_err(|e| e.to_string())
                        .and_then(|parsed| {
                            verify_lookup_answer(&parsed, entry.answer.clone())
                                .map_err(|e| e.to_string())
                        });
                Summary {
                    address: address.to_owned(),
                    key: verified.is_ok().then_some(entry.answer.public_key),
                    damaged: verified.err(),
                    fetched_at: entry.fetched_at,
                    last_seen_online: entry.last_seen_online,
                    last_talked: entry.last_talked,
                }
            })
            .collect())
    }

    /// Forgets `address`; returns whether it was stored.
    pub fn remove(&self, address: &Address) -> Result<bool, ChatError> {
        let mut removed = false;
        self.update(|file| {
            removed = file.contacts.remove(&address.to_string()).is_some();
            removed
        })?;
        Ok(removed)
    }

    /// Reads the file, applies `change` and writes the file back if `change` says it changed
    /// something, holding the lock file so that concurrent `chat` processes of one home (a
    /// `listen` and a `connect`) do not lose each other's updates.
    fn update(&self, change: impl FnOnce(&mut ContactsFile) -> bool) -> Result<(), ChatError> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        if change(&mut file) {
            file.version = VERSION;
            let text = serde_json::to_vec_pretty(&file)
                .map_err(|e| ChatError::Home(format!("failed to encode the contacts: {e}")))?;
            write_atomic(&self.home.contacts_path(), &text)?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<File, ChatError> {
        let path = self.home.contacts_lock_path();
        let context = || format!("failed to lock {}", path.display());
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| ChatError::io(context(), e))?;
        file.lock().map_err(|e| ChatError::io(context(), e))?;
        Ok(file)
    }

    fn load(&self) -> Result<ContactsFile, ChatError> {
        let path = self.home.contacts_path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ContactsFile {
                    version: VERSION,
                    contacts: BTreeMap::new(),
                });
            }
            Err(e) => {
                return Err(ChatError::io(
                    format!("failed to read {}", path.display()),
                    e,
                ));
            }
        };
        let file: ContactsFile = serde_json::from_slice(&text).map_err(|e| malformed(&path, &e))?;
        if file.version != VERSION {
            return Err(ChatError::Home(format!(
                "{} has version {} of the format; this chat reads version {VERSION}",
                path.display(),
                file.version
            )));
        }
        Ok(file)
    }

    fn path_display(&self) -> String {
        self.home.contacts_path().display().to_string()
    }
}

fn stored_seq(entry: &Entry) -> Option<u64> {
    // The seq of a stored record that still verifies; an undecodable one counts as absent.
    entry
        .answer
        .presence
        .as_ref()
        .and_then(|signed| {
            signed
                .verify(&entry.answer.public_key, &entry.answer.address)
                .ok()
        })
        .map(|presence| presence.seq)
}

fn malformed(path: &Path, e: &serde_json::Error) -> ChatError {
    ChatError::Home(format!(
        "{} is malformed ({e}); fix it or delete the file (it only holds answers kept for when \
         the home node is unreachable)",
        path.display()
    ))
}

/// How long ago `then` was, at `now`, in the largest whole unit: `40 s`, `5 min`, `2 h`,
/// `3 days`.
pub fn age(then: u64, now: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..86_400 => format!("{} h", secs / 3_600),
        86_400..172_800 => "1 day".to_owned(),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use pd_proto::wire::Source;
    use pd_proto::{Endpoint, Presence, SecretKey, Signed};

    use super::*;

    fn answer(key: &SecretKey, seq: Option<u64>, expires_at: u64) -> VerifiedLookup {
        let address = Address::parse("bob@b.example").unwrap();
        let presence = seq.map(|seq| Presence {
            address: address.clone(),
            endpoints: vec![Endpoint::parse("tcp://192.0.2.1:7000").unwrap()],
            seq,
            expires_at,
        });
        let response = LookupResponse {
            address: address.clone(),
            public_key: key.public(),
            presence: presence.as_ref().map(|p| Signed::sign(key, p)),
            rotations: Vec::new(),
            source: Source::Remote,
            ttl: 60,
        };
        verify_lookup_answer(&address, response).unwrap()
    }

    #[test]
    fn answers_are_stored_verified_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let contacts = Contacts::new(Home::at(dir.path()));
        let bob = Address::parse("bob@b.example").unwrap();
        let key = SecretKey::generate();
        assert!(contacts.get(&bob).unwrap().is_none());

        contacts
            .record_lookup(&answer(&key, Some(5), 2_000), 1_000)
            .unwrap();
        let stored = contacts.get(&bob).unwrap().unwrap();
        assert_eq!(stored.fetched_at, 1_000);
        assert_eq!(stored.last_seen_online, Some(1_000));
        assert_eq!(stored.last_talked, None);
        assert_eq!(stored.lookup.presence().unwrap().seq, 5);

        contacts.record_talk(&bob, 1_100).unwrap();
        // An answer with an older record does not replace the stored one.
        contacts
            .record_lookup(&answer(&key, Some(4), 2_000), 1_200)
            .unwrap();
        let stored = contacts.get(&bob).unwrap().unwrap();
        assert_eq!(
            (stored.fetched_at, stored.last_talked),
            (1_000, Some(1_100))
        );
        assert_eq!(stored.last_seen_online, Some(1_200));
        // An answer without a record (the user went offline) does, keeping the times.
        contacts
            .record_lookup(&answer(&key, None, 0), 3_000)
            .unwrap();
        let stored = contacts.get(&bob).unwrap().unwrap();
        assert!(stored.lookup.presence().is_none());
        assert_eq!(stored.fetched_at, 3_000);
        assert_eq!(stored.last_seen_online, Some(1_200));
        assert_eq!(stored.last_talked, Some(1_100));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("contacts"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let listed = contacts.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, Some(key.public()));
        assert!(contacts.remove(&bob).unwrap());
        assert!(!contacts.remove(&bob).unwrap());
        assert!(contacts.get(&bob).unwrap().is_none());
    }

    #[test]
    fn a_tampered_entry_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let contacts = Contacts::new(home.clone());
        let key = SecretKey::generate();
        contacts
            .record_lookup(&answer(&key, Some(5), 2_000), 1_000)
            .unwrap();
        // Another key in the stored answer: its presence signature no longer verifies.
        let text = std::fs::read_to_string(home.contacts_path()).unwrap();
        let other = SecretKey::generate().public().to_string();
        let tampered = text.replace(&key.public().to_string(), &other);
        std::fs::write(home.contacts_path(), tampered).unwrap();
        let bob = Address::parse("bob@b.example").unwrap();
        let err = contacts.get(&bob).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
        assert!(err.contains("chat contacts remove bob@b.example"), "{err}");
        assert!(contacts.list().unwrap()[0].damaged.is_some());

        std::fs::write(home.contacts_path(), "{not json").unwrap();
        let err = contacts.get(&bob).unwrap_err().to_string();
        assert!(err.contains("is malformed"), "{err}");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(age(100, 140), "40 s");
        assert_eq!(age(0, 300), "5 min");
        assert_eq!(age(0, 7_300), "2 h");
        assert_eq!(age(0, 90_000), "1 day");
        assert_eq!(age(0, 3 * 86_400), "3 days");
        assert_eq!(age(500, 100), "0 s");
    }
}
