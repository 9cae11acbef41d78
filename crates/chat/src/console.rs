//! The console side of a conversation: what a typed line means (`/list`, `/to`, `/quit`,
//! text), how received messages and status lines are printed, and the signals that end a
//! session (Ctrl+C, SIGTERM, a closed terminal).
//!
//! Received messages go to stdout as `ADDRESS: TEXT`, one per line, and nothing else does,
//! so a pipe gets only what peers said; status lines go to stderr, prefixed with `* `.

use std::io::Write;

use pd_proto::Address;

use crate::error::ChatError;

/// What a line typed by the user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Nothing (an empty line).
    Empty,
    /// Text for the current conversation.
    Text(String),
    /// List the conversations.
    List,
    /// Make the conversation with this address the current one.
    To(Address),
    /// Leave.
    Quit,
    /// Show the commands.
    Help,
    /// A command with a problem, explained.
    Invalid(String),
}

/// The help text of the line commands.
pub const HELP: &str = "commands: /list (conversations), /to ADDRESS (switch the current \
    conversation), /quit (leave); start a line with // to send a line beginning with /";

/// Reads one typed line.
pub fn parse_line(line: &str) -> Line {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Line::Empty;
    }
    if let Some(text) = line.strip_prefix("//") {
        return Line::Text(format!("/{text}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Line::Text(line.to_owned());
    };
    let mut words = command.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("quit" | "exit" | "q"), None, _) => Line::Quit,
        (Some("list" | "ls"), None, _) => Line::List,
        (Some("help" | "?"), None, _) => Line::Help,
        (Some("to"), Some(address), None) => match Address::parse(address) {
            Ok(address) => Line::To(address),
            Err(e) => Line::Invalid(format!("/to: {e}")),
        },
        (Some("to"), _, _) => Line::Invalid("usage: /to ADDRESS".into()),
        _ => Line::Invalid(format!(
            "unknown command {:?} (type /help)",
            line.split_whitespace().next().unwrap_or(line)
        )),
    }
}

/// Where a conversation's output goes.
pub struct Console<'a> {
    out: &'a mut dyn Write,
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl<'a> Console<'a> {
    /// A console writing messages to `out` and status lines to stderr.
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self { out }
    }

    /// Prints a message a peer sent (the frame protocol guarantees it holds no control
    /// characters but tabs).
    pub fn message(&mut self, peer: &Address, text: &str) -> Result<(), ChatError> {
        writeln!(self.out, "{peer}: {text}")
            .and_then(|()| self.out.flush())
            .map_err(|e| ChatError::io("failed to write the output", e))
    }

    /// Prints a status line on stderr.
    pub fn status(&mut self, text: impl std::fmt::Display) {
        eprintln!("* {text}");
    }
}

/// The signals that end a session: Ctrl+C (SIGINT), SIGTERM and SIGHUP.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening for the signals.
    pub fn new() -> Result<Self, ChatError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind| {
                signal(kind).map_err(|e| ChatError::io("failed to install a signal handler", e))
            };
            // Each signal has one stream for the whole session, so a signal that arrives
            // while the owner is busy is kept, not lost.
            Ok(Self {
                interrupt: install(SignalKind::interrupt())?,
                term: install(SignalKind::terminate())?,
                hangup: install(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for one of the signals and names it.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "interrupted",
                _ = self.term.recv() => "terminated",
                _ = self.hangup.recv() => "the terminal closed",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_commands() {
        assert_eq!(parse_line(""), Line::Empty);
        assert_eq!(parse_line("  \r"), Line::Empty);
        assert_eq!(parse_line("hello\r"), Line::Text("hello".into()));
        assert_eq!(parse_line("//etc/passwd"), Line::Text("/etc/passwd".into()));
        assert_eq!(parse_line("/quit"), Line::Quit);
        assert_eq!(parse_line("/list"), Line::List);
        assert_eq!(parse_line("/help"), Line::Help);
        assert_eq!(
            parse_line("/to Bob@B.example"),
            Line::To(Address::parse("bob@b.example").unwrap())
        );
        assert!(matches!(parse_line("/to"), Line::Invalid(m) if m == "usage: /to ADDRESS"));
        assert!(matches!(parse_line("/to a b"), Line::Invalid(_)));
        assert!(matches!(parse_line("/to nope"), Line::Invalid(m) if m.starts_with("/to: ")));
        assert!(matches!(parse_line("/dance now"), Line::Invalid(m) if m.contains("/dance")));
    }
}
