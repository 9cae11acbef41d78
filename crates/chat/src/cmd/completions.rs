//! `chat completions SHELL`: the shell completion script.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::ChatError;

/// Writes the completion script for `shell` to `out`.
pub(crate) fn run(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<(), ChatError> {
    clap_complete::generate(shell, &mut Cli::command(), "chat", out);
    Ok(())
}
