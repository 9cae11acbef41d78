//! The chat client library: command line, validated settings, the user's home directory,
//! exit codes and the commands. The `chat` binary is a thin wrapper around [`main_with`].

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod account;
pub mod cli;
pub mod cmd;
pub mod console;
pub mod contacts;
pub mod error;
mod group;
pub mod home;
mod output;
pub mod peer;
mod relay;
pub mod seq;
pub mod settings;

use std::io::Write;

pub use cli::Cli;
pub use error::ChatError;
pub use settings::Settings;

/// Checks the command line and runs the command, writing normal output to `out`.
pub async fn main_with(cli: Cli, out: &mut dyn Write) -> Result<(), ChatError> {
    let settings = Settings::from_cli(cli)?;
    cmd::run(settings, out).await
}

/// Turns a clap error into what `chat` prints and its exit code: help and version go to
/// stdout with code 0; a usage error becomes one `error: ...` line with code 2.
pub fn clap_outcome(err: &clap::Error) -> (Option<String>, String, u8) {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            (Some(err.render().to_string()), String::new(), 0)
        }
        _ => {
            // clap's message runs until the first blank line (then usage and a tip follow).
            let rendered = err.render().to_string();
            let message = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            (
                None,
                format!("{message}{}", did_you_mean(err)),
                error::EXIT_USAGE,
            )
        }
    }
}

/// clap's suggestion for a mistyped subcommand or option, as ` (did you mean 'lookup'?)`;
/// empty when it has none.
fn did_you_mean(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let suggested = [ContextKind::SuggestedSubcommand, ContextKind::SuggestedArg]
        .into_iter()
        .find_map(|kind| match err.get(kind) {
            Some(ContextValue::String(one)) => Some(vec![one.clone()]),
            Some(ContextValue::Strings(many)) if !many.is_empty() => Some(many.clone()),
            _ => None,
        });
    match suggested {
        Some(names) => {
            let names: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
            format!(" (did you mean {}?)", names.join(" or "))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn usage_errors_are_one_line_with_code_2() {
        let err = Cli::try_parse_from(["chat", "lookup"]).unwrap_err();
        let (stdout, message, code) = clap_outcome(&err);
        assert_eq!((stdout, code), (None, 2));
        assert_eq!(
            message,
            "the following required arguments were not provided: <ADDRESS>"
        );
        let typo = Cli::try_parse_from(["chat", "lokup", "a@b.test"]).unwrap_err();
        assert_eq!(
            clap_outcome(&typo).1,
            "unrecognized subcommand 'lokup' (did you mean 'lookup'?)"
        );
        let help = Cli::try_parse_from(["chat", "--help"]).unwrap_err();
        let (stdout, _, code) = clap_outcome(&help);
        assert_eq!(code, 0);
        assert!(stdout.unwrap().contains("lookup"));
    }
}
