//! `chat withdraw`: withdraws the presence record.

use std::io::Write;

use crate::account::Account;
use crate::error::ChatError;
use crate::output::write;

/// `chat withdraw`: signs and sends the withdrawal of the presence record.
pub(crate) async fn run(account: Account, out: &mut dyn Write) -> Result<(), ChatError> {
    account.withdraw().await?;
    write(
        out,
        format_args!("withdrew the presence record of {}\n", account.address()),
    )
}
