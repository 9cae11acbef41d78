//! `chat delete-account`: deletes the account at the home server (the key stays).

use std::io::Write;

use crate::account::Account;
use crate::error::ChatError;
use crate::output::write;

/// `chat delete-account`: signs and sends the deletion.
pub(crate) async fn run(account: Account, out: &mut dyn Write) -> Result<(), ChatError> {
    let verb = if account.delete().await? {
        "deleted the account"
    } else {
        "the home server no longer knew the account; forgot"
    };
    write(
        out,
        format_args!(
            "{verb} {} (the identity key stays in {})\n",
            account.address(),
            account.home().key_path().display()
        ),
    )
}
