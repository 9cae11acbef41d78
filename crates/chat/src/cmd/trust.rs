//! `chat trust ADDRESS`: accepts a user's current key after the fingerprints were compared
//! another way.

use std::io::Write;

use pd_proto::Address;

use crate::account::Account;
use crate::error::ChatError;
use crate::output::write;
use crate::peer::PeerError;
use crate::peer::known::KnownPeers;

/// `chat trust`: remembers the key the home node now vouches for, after the user compared
/// fingerprints by another way.
pub(crate) async fn run(
    account: Account,
    address: &Address,
    fingerprint: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let found = account.lookup(address, None).await?;
    let key = *found.public_key();
    if let Some(expected) = fingerprint
        && !same_fingerprint(&expected, &key.fingerprint())
    {
        return Err(PeerError::FingerprintDiffers {
            address: address.clone(),
            given: expected,
            current: key.fingerprint(),
        }
        .into());
    }
    let known = KnownPeers::new(account.home().clone());
    match known.trust(address, &key)? {
        Some(previous) if previous == key => write(
            out,
            format_args!("{address} already trusted with key {}\n", key.fingerprint()),
        ),
        Some(previous) => write(
            out,
            format_args!(
                "{address}: now trusting key {} (instead of {})\n",
                key.fingerprint(),
                previous.fingerprint()
            ),
        ),
        None => write(
            out,
            format_args!("{address}: now trusting key {}\n", key.fingerprint()),
        ),
    }
}

/// Fingerprints compare without case and separators, so a fingerprint read aloud or typed
/// without dashes still matches.
fn same_fingerprint(a: &str, b: &str) -> bool {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    clean(a) == clean(b)
}
