//! `chat register` (and `--again`): creates the account at the home server and writes the
//! home.

use std::io::Write;

use pd_proto::wire::RegisterRequest;
use pd_proto::{Address, ProblemType, Registration, Signed};
use url::Url;

use crate::account::{Account, client_for, is_problem};
use crate::error::ChatError;
use crate::home::{Home, HomeConfig};
use crate::output::{print_account, write};
use crate::seq::next_seq;

pub(crate) async fn run(
    home: &Home,
    ca_file: Option<std::path::PathBuf>,
    address: Address,
    server: Url,
    invite: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    if let Some(existing) = home.load_config()? {
        return Err(ChatError::AlreadyRegistered {
            home: home.display_dir().to_owned(),
            address: existing.address.to_string(),
        });
    }
    if pd_client::insecure_warning_needed(&server) {
        eprintln!(
            "warning: {server} is plain http:// on a host that is not loopback; your key \
             operations and lookups travel unencrypted"
        );
    }
    let client = client_for(&server, ca_file.clone())?;
    let key = home.load_or_create_key()?;
    let registration = Registration {
        address: address.clone(),
        public_key: key.public(),
        seq: next_seq(),
    };
    let request = RegisterRequest {
        registration: Signed::sign(&key, &registration),
        invite,
    };
    let info = client.register(&request).await?;
    home.save_config(&HomeConfig {
        address,
        server,
        ca_file,
    })?;
    home.clear_session()?;
    print_account(&info, "registered", out)
}

/// `chat register --again`: registers the account the home holds once more, with the same
/// key, at the same home server, for when the server lost it. When the server still holds
/// the name, a login tells whether it is this account (nothing to do) or someone else's.
pub(crate) async fn again(
    home: Home,
    ca_file: Option<std::path::PathBuf>,
    invite: Option<String>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let account = Account::open(home, ca_file)?;
    let key = account.key();
    let registration = Registration {
        address: account.address().clone(),
        public_key: key.public(),
        seq: next_seq(),
    };
    let request = RegisterRequest {
        registration: Signed::sign(key, &registration),
        invite,
    };
    match account.register(&request).await {
        Ok(info) => {
            account.home().clear_session()?;
            print_account(&info, "registered again, with the same key,", out)
        }
        Err(err) if is_problem(&err, ProblemType::NameTaken) => {
            if account.can_log_in().await? {
                write(
                    out,
                    format_args!(
                        "{} is still registered at {} with your key; nothing to do\nfingerprint: {}\n",
                        account.address(),
                        account.server(),
                        key.public().fingerprint()
                    ),
                )
            } else {
                Err(ChatError::AccountTaken {
                    address: account.address().to_string(),
                    server: account.server().to_string(),
                })
            }
        }
        Err(err) => Err(err.into()),
    }
}
