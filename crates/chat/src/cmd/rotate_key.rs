//! `chat rotate-key`: replaces the identity key, with a rotation signed by both keys.

use std::io::Write;
use std::path::PathBuf;

use crate::account::{Account, RotateOutcome};
use crate::error::ChatError;
use crate::home::Home;
use crate::output::{print_account, write};

/// `chat rotate-key`: rotates the key, or finishes an interrupted rotation.
pub(crate) async fn run(
    home: Home,
    ca_file: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let pending = home.load_pending_key()?;
    let account = Account::open_with(home, ca_file, false)?;
    match account.rotate_key(pending).await? {
        RotateOutcome::Recovered(public) => write(
            out,
            format_args!(
                "finished an interrupted key rotation of {}\nfingerprint: {}\n",
                account.address(),
                public.fingerprint()
            ),
        ),
        RotateOutcome::Rotated(info) => print_account(&info, "rotated the key of", out),
    }
}
