//! `chat publish`: publishes a presence record with the given endpoints.

use std::io::Write;
use std::time::Duration;

use pd_proto::Endpoint;

use crate::account::Account;
use crate::error::ChatError;
use crate::output::{rfc3339, write};

/// `chat publish`: signs and publishes a presence record.
pub(crate) async fn run(
    account: Account,
    endpoints: &[Endpoint],
    ttl: Duration,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let answer = account.publish(endpoints, ttl).await?;
    write(
        out,
        format_args!(
            "published {} endpoint(s) for {} until {}\n",
            endpoints.len(),
            account.address(),
            rfc3339(answer.expires_at)
        ),
    )
}
