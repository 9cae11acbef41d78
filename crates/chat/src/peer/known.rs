//! Known peers, trust on first use: the first key seen for each address is remembered in the
//! home (`known_peers`, one `ADDRESS KEY` line each, like ssh's `known_hosts`), and a later
//! different key is accepted only with a rotation signed by the remembered key, or when the
//! user runs `chat trust ADDRESS`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use pd_proto::{Address, PublicKey};

use crate::error::ChatError;
use crate::home::{Home, write_atomic};

/// What the known-peers file says about a key for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// No key was remembered for the address: this one is now.
    FirstContact,
    /// The key is the remembered one.
    Known,
    /// The key differs, and signed rotations link the remembered key to it; it replaced the
    /// remembered one.
    Rotated {
        /// The key remembered before.
        previous: PublicKey,
    },
    /// The key differs and nothing links it to the remembered one: refuse.
    Changed {
        /// The remembered key.
        known: PublicKey,
    },
}

/// The known-peers file of a home. Updates are serialised within the process and written
/// atomically.
#[derive(Debug)]
pub struct KnownPeers {
    home: Home,
    lock: Mutex<()>,
}

impl KnownPeers {
    /// The known peers of `home`.
    pub fn new(home: Home) -> Self {
        Self {
            home,
            lock: Mutex::new(()),
        }
    }

    /// The remembered key of `address`.
    pub fn get(&self, address: &Address) -> Result<Option<PublicKey>, ChatError> {
        Ok(self.load()?.get(&address.to_string()).copied())
    }

    /// Checks `current` against the remembered key of `address`, remembering it on first
    /// contact and after a signed rotation. `rotated_from(old)` says whether signed rotations
    /// link `old` to `current`.
    pub fn check(
        &self,
        address: &Address,
        current: &PublicKey,
        rotated_from: impl FnOnce(&PublicKey) -> bool,
    ) -> Result<KeyCheck, ChatError> {
        self.decide(address, current, rotated_from, true)
    }

    /// What [`KnownPeers::check`] would say, remembering nothing: for deciding before a
    /// handshake, whose success is what earns a new key its place.
    pub fn peek(
        &self,
        address: &Address,
        current: &PublicKey,
        rotated_from: impl FnOnce(&PublicKey) -> bool,
    ) -> Result<KeyCheck, ChatError> {
        self.decide(address, current, rotated_from, false)
    }

    fn decide(
        &self,
        address: &Address,
        current: &PublicKey,
        rotated_from: impl FnOnce(&PublicKey) -> bool,
        remember: bool,
    ) -> Result<KeyCheck, ChatError> {
        let _guard = self.lock.lock().map_err(|_| poisoned())?;
        let mut peers = self.load()?;
        let outcome = match peers.get(&address.to_string()) {
            None => KeyCheck::FirstContact,
            Some(known) if known == current => return Ok(KeyCheck::Known),
            Some(known) if rotated_from(known) => KeyCheck::Rotated { previous: *known },
            Some(known) => return Ok(KeyCheck::Changed { known: *known }),
        };
        if remember {
            peers.insert(address.to_string(), *current);
            self.save(&peers)?;
        }
        Ok(outcome)
    }

    /// Remembers `key` for `address` whatever was remembered before; returns the previous key.
    pub fn trust(
        &self,
        address: &Address,
        key: &PublicKey,
    ) -> Result<Option<PublicKey>, ChatError> {
        let _guard = self.lock.lock().map_err(|_| poisoned())?;
        let mut peers = self.load()?;
        let previous = peers.insert(address.to_string(), *key);
        self.save(&peers)?;
        Ok(previous)
    }

    fn load(&self) -> Result<BTreeMap<String, PublicKey>, ChatError> {
        let path = self.home.known_peers_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(ChatError::io(
                    format!("failed to read {}", path.display()),
                    e,
                ));
            }
        };
        let mut peers = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| {
                ChatError::Home(format!(
                    "{} line {}: {what}; fix or delete the line",
                    path.display(),
                    number + 1
                ))
            };
            let mut fields = line.split_whitespace();
            let (Some(address), Some(key), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected ADDRESS KEY"));
            };
            let address = Address::parse(address).map_err(|e| bad(&e.to_string()))?;
            let key: PublicKey = key.parse().map_err(|e| bad(&format!("bad key: {e}")))?;
            peers.insert(address.to_string(), key);
        }
        Ok(peers)
    }

    fn save(&self, peers: &BTreeMap<String, PublicKey>) -> Result<(), ChatError> {
        let mut text = String::from(
            "# Keys of the peers this account talked to (first seen, or accepted with\n\
             # `chat trust ADDRESS`): ADDRESS KEY\n",
        );
        for (address, key) in peers {
            text.push_str(&format!("{address} {key}\n"));
        }
        write_atomic(&self.home.known_peers_path(), text.as_bytes())
    }
}

fn poisoned() -> ChatError {
    ChatError::Home("the known peers lock was poisoned by an earlier failure".into())
}

#[cfg(test)]
mod tests {
    use pd_proto::SecretKey;

    use super::*;

    #[test]
    fn first_key_is_remembered_and_a_change_needs_a_rotation_or_trust() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownPeers::new(Home::at(dir.path()));
        let bob = Address::parse("bob@b.example").unwrap();
        let (k1, k2, k3) = (
            SecretKey::generate().public(),
            SecretKey::generate().public(),
            SecretKey::generate().public(),
        );
        assert_eq!(
            known.check(&bob, &k1, |_| false).unwrap(),
            KeyCheck::FirstContact
        );
        assert_eq!(known.check(&bob, &k1, |_| false).unwrap(), KeyCheck::Known);
        assert_eq!(
            known.check(&bob, &k2, |_| false).unwrap(),
            KeyCheck::Changed { known: k1 }
        );
        assert_eq!(known.get(&bob).unwrap(), Some(k1));
        assert_eq!(
            known.check(&bob, &k2, |old| *old == k1).unwrap(),
            KeyCheck::Rotated { previous: k1 }
        );
        assert_eq!(known.get(&bob).unwrap(), Some(k2));
        assert_eq!(known.trust(&bob, &k3).unwrap(), Some(k2));
        let reopened = KnownPeers::new(Home::at(dir.path()));
        assert_eq!(
            reopened.check(&bob, &k3, |_| false).unwrap(),
            KeyCheck::Known
        );
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::write(home.known_peers_path(), "# c\n\nbob@b.example not-a-key\n").unwrap();
        let err = KnownPeers::new(home)
            .get(&Address::parse("bob@b.example").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("line 3: bad key"), "{err}");
    }
}
