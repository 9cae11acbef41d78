//! `chat whoami`: the account this home holds.

use std::io::Write;

use crate::error::ChatError;
use crate::home::Home;
use crate::output::write;

pub(crate) fn run(home: &Home, json: bool, out: &mut dyn Write) -> Result<(), ChatError> {
    let config = home.config()?;
    let key = home.key()?.public();
    if json {
        let value = serde_json::json!({
            "address": config.address.to_string(),
            "server": config.server.to_string(),
            "public_key": key.to_string(),
            "fingerprint": key.fingerprint(),
        });
        return write(out, format_args!("{value:#}\n"));
    }
    write(
        out,
        format_args!(
            "address:     {}\nserver:      {}\nfingerprint: {}\n",
            config.address,
            config.server,
            key.fingerprint()
        ),
    )
}
