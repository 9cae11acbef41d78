//! `chat fingerprint [ADDRESS]`: this account's fingerprint, or the one the home node vouches
//! for a user and the one remembered here.

use std::io::Write;

use pd_proto::Address;

use crate::account::Account;
use crate::error::ChatError;
use crate::home::Home;
use crate::output::write;
use crate::peer::known::KnownPeers;

/// `chat fingerprint`: the fingerprint of this account's key.
pub(crate) fn own(home: &Home, out: &mut dyn Write) -> Result<(), ChatError> {
    let key = home.key()?.public();
    write(out, format_args!("{}\n", key.fingerprint()))
}

/// `chat fingerprint ADDRESS`: the key the user's home node vouches for, and the one
/// remembered here.
pub(crate) async fn run(
    account: Account,
    address: &Address,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let found = account.lookup(address, None).await?;
    let current = found.public_key();
    let remembered = KnownPeers::new(account.home().clone()).get(address)?;
    let remembered = match remembered {
        None => "none (you have not talked yet)".to_owned(),
        Some(key) if key == *current => format!("{} (the same)", key.fingerprint()),
        Some(key) if found.rotated_from(&key).is_ok() => format!(
            "{} (rotated since: the new key is signed by this one, so `chat connect` accepts \
             it and remembers it)",
            key.fingerprint()
        ),
        Some(key) => format!(
            "{} (DIFFERENT, and no rotation signed by this key leads to the new one: see `chat \
             trust`)",
            key.fingerprint()
        ),
    };
    write(
        out,
        format_args!(
            "{address}\n  fingerprint: {}\n  remembered:  {remembered}\n",
            current.fingerprint()
        ),
    )
}
