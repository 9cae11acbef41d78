//! `chat export-cert`: the certificate this account presents in conversations, and its key.

use std::io::Write;
use std::path::Path;

use crate::error::ChatError;
use crate::home::{Home, write_new_private};
use crate::output::write;
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;

/// `chat export-cert`: the certificate this account presents in conversations, and its key.
pub(crate) fn run(
    home: &Home,
    cert_path: &Path,
    key_path: &Path,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let config = home.config()?;
    let key = home.key()?;
    let identity =
        IdentityCert::new(&key, &config.address).map_err(|e| PeerError::Setup(e.to_string()))?;
    write_new_private(key_path, identity.private_key_pem().as_bytes())?;
    std::fs::write(cert_path, identity.cert_pem.as_bytes())
        .map_err(|e| ChatError::io(format!("failed to write {}", cert_path.display()), e))?;
    write(
        out,
        format_args!(
            "wrote the certificate of {} to {} and its private key to {}\n",
            config.address,
            cert_path.display(),
            key_path.display()
        ),
    )
}
