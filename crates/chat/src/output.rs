//! The commands' output helpers: writing to the given output, times and accounts as the
//! commands print them.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use pd_proto::wire::AccountInfo;

use crate::error::ChatError;

pub(crate) fn write(out: &mut dyn Write, args: std::fmt::Arguments<'_>) -> Result<(), ChatError> {
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| ChatError::io("failed to write the output", e))
}

pub(crate) fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

pub(crate) fn print_account(
    info: &AccountInfo,
    verb: &str,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    write(
        out,
        format_args!(
            "{verb} {}\nfingerprint: {}\n",
            info.address, info.fingerprint
        ),
    )
}
