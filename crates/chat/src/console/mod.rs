//! The console of a conversation: where typed lines come from, where received messages and
//! status lines go, what a typed line means (`/list`, `/to`, `/quit`, text), and the signals
//! that end a session (Ctrl+C, SIGTERM, a closed terminal).
//!
//! Three kinds of input ([`InputMode`]): at a terminal (stdin, stdout and stderr all
//! terminals), a line editor (`editor`) with a prompt naming the conversation, history and
//! completion, which prints messages and status lines *above* the line being typed; with
//! stdin a pipe or a file, plain lines (`stdin`); with no usable stdin (`/dev/null`, closed,
//! or `chat listen --no-console`), none at all. Both readers run on an OS thread the
//! [`Console`] owns and stops: nothing ever blocks the async runtime on stdin, so leaving
//! never waits for the user to press Enter, and the terminal's mode is restored before the
//! process exits.
//!
//! Without the line editor, received messages go to stdout as `ADDRESS: TEXT`, one per line,
//! and nothing else does, so a pipe gets only what peers said; status lines go to stderr,
//! prefixed with `* `.

mod editor;
mod stdin;

use std::io::{IsTerminal as _, Write};
use std::os::fd::AsFd as _;
use std::sync::OnceLock;
use std::time::Duration;

use pd_proto::Address;
use tokio::sync::mpsc;

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
    /// Invite this address into the current conversation (making it a group).
    Invite(Address),
    /// List the members of the current group.
    Members,
    /// Leave the current group (the others continue).
    Leave,
    /// Join the group of the last invitation.
    Join,
    /// Decline the last invitation.
    Decline,
    /// Show the commands.
    Help,
    /// A command with a problem, explained.
    Invalid(String),
}

/// The help text of the line commands.
pub const HELP: &str = "commands: /list (conversations), /to ADDRESS (switch the current \
    conversation), /quit (leave); in a group: /members, /leave, and /join or /decline an \
    invitation; start a line with // to send a line beginning with /";

/// The help text of `chat connect` with several addresses (a group).
pub const GROUP_HELP: &str = "commands: /invite ADDRESS (add someone), /members (who is in \
    the conversation, with fingerprints), /leave or /quit (leave; the others continue); \
    start a line with // to send a line beginning with /";

/// The commands `chat listen` completes.
pub const LISTEN_COMMANDS: &[&str] = &[
    "/decline", "/help", "/join", "/leave", "/list", "/members", "/quit", "/to",
];
/// The commands `chat connect` completes.
pub const CONNECT_COMMANDS: &[&str] = &["/help", "/invite", "/members", "/quit"];
/// The commands `chat connect` with several addresses completes.
pub const GROUP_COMMANDS: &[&str] = &["/help", "/invite", "/leave", "/members", "/quit"];

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
        (Some("invite"), Some(address), None) => match Address::parse(address) {
            Ok(address) => Line::Invite(address),
            Err(e) => Line::Invalid(format!("/invite: {e}")),
        },
        (Some("invite"), _, _) => Line::Invalid("usage: /invite ADDRESS".into()),
        (Some("members" | "who"), None, _) => Line::Members,
        (Some("leave"), None, _) => Line::Leave,
        (Some("join"), None, _) => Line::Join,
        (Some("decline"), None, _) => Line::Decline,
        _ => Line::Invalid(format!(
            "unknown command {:?} (type /help)",
            line.split_whitespace().next().unwrap_or(line)
        )),
    }
}

/// What the user did at the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line was typed (without its line end).
    Line(String),
    /// A line was typed that cannot be used, and why (not UTF-8, far too long).
    Unusable(String),
    /// The input ended (Ctrl+D, a closed pipe, the end of a file).
    End,
    /// Ctrl+C at the line editor (which reads keys, so the terminal sends no SIGINT).
    Interrupt,
    /// The input could not be read.
    Failed(String),
}

/// Where typed lines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// The line editor, at a terminal.
    Editor,
    /// Plain lines from a pipe, a file, or a terminal whose output is redirected.
    Plain,
    /// No input: stdin is `/dev/null`, closed or write-only, or the user asked for none.
    None,
}

/// What stdin was when the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// A terminal.
    Terminal,
    /// Something to read lines from (a pipe, a file, a socket).
    Readable,
    /// `/dev/null`.
    Null,
    /// Closed, or open for writing only.
    Unreadable,
}

static STDIN: OnceLock<Stdin> = OnceLock::new();

/// Finds out what stdin is, once per process. The `chat` binary calls this first thing,
/// before anything opens a file: were stdin closed, the next descriptor opened would take
/// its number and look like stdin.
pub fn detect_stdin() -> Stdin {
    *STDIN.get_or_init(|| {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let Ok(flags) = rustix::fs::fcntl_getfl(fd) else {
            return Stdin::Unreadable;
        };
        if flags & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::WRONLY {
            return Stdin::Unreadable;
        }
        if stdin.is_terminal() {
            return Stdin::Terminal;
        }
        let is_null = match (rustix::fs::fstat(fd), rustix::fs::stat("/dev/null")) {
            (Ok(ours), Ok(null)) => ours.st_dev == null.st_dev && ours.st_ino == null.st_ino,
            _ => false,
        };
        if is_null {
            Stdin::Null
        } else {
            Stdin::Readable
        }
    })
}

impl InputMode {
    /// The input mode for this process: none when `no_console`, when stdin cannot be read,
    /// and (with `none_for_null`) when it is `/dev/null`; the line editor when stdin, stdout
    /// and stderr are terminals (and the terminal is not `dumb`); plain lines otherwise.
    pub fn detect(no_console: bool, none_for_null: bool) -> Self {
        let stdin = detect_stdin();
        if no_console || stdin == Stdin::Unreadable || (none_for_null && stdin == Stdin::Null) {
            return Self::None;
        }
        let smart_terminal = std::env::var("TERM").is_ok_and(|term| term != "dumb");
        if stdin == Stdin::Terminal
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
            && smart_terminal
        {
            Self::Editor
        } else {
            Self::Plain
        }
    }
}

/// Something to print.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    /// A message from a peer, `ADDRESS: TEXT`.
    Message(String),
    /// A status line, without its `* `.
    Status(String),
}

impl Out {
    fn text(&self) -> String {
        match self {
            Self::Message(line) => line.clone(),
            Self::Status(text) => format!("* {text}"),
        }
    }
}

/// Where typed lines come from, while they do.
#[derive(Debug)]
enum Source {
    Editor(editor::Editor),
    Plain(stdin::Reader),
    Silent,
}

/// The console of one `chat listen` or `chat connect`: typed lines in, messages and status
/// lines out. Dropping it stops the input thread and restores the terminal.
pub struct Console<'a> {
    out: &'a mut dyn Write,
    inputs: Option<mpsc::Receiver<Input>>,
    source: Source,
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What the line editor shows and completes.
#[derive(Debug, Clone)]
pub struct View {
    /// The prompt: who typed lines go to.
    pub prompt: String,
    /// The `/` commands to complete.
    pub commands: &'static [&'static str],
}

impl<'a> Console<'a> {
    /// A console that reads no input yet (status lines and messages are printed directly).
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            inputs: None,
            source: Source::Silent,
        }
    }

    /// Starts reading typed lines in `mode`; the editor shows `view`.
    pub fn start_input(&mut self, mode: InputMode, view: View) -> Result<(), ChatError> {
        self.stop_input();
        let (tx, rx) = mpsc::channel(64);
        self.source = match mode {
            InputMode::None => Source::Silent,
            InputMode::Plain => Source::Plain(
                stdin::Reader::spawn(tx)
                    .map_err(|e| ChatError::io("failed to start reading the input", e))?,
            ),
            InputMode::Editor => Source::Editor(
                editor::Editor::spawn(view, tx)
                    .map_err(|e| ChatError::io("failed to start the line editor", e))?,
            ),
        };
        if mode != InputMode::None {
            self.inputs = Some(rx);
        }
        Ok(())
    }

    /// Whether typed lines are being read.
    pub fn reads_input(&self) -> bool {
        self.inputs.is_some()
    }

    /// The next thing the user did; never resolves when there is no input (any more).
    pub async fn next_input(&mut self) -> Input {
        if let Some(inputs) = self.inputs.as_mut() {
            if let Some(input) = inputs.recv().await {
                return input;
            }
            self.inputs = None;
        }
        std::future::pending().await
    }

    /// Stops reading input: the line editor ends (restoring the terminal's mode) or the
    /// reader thread stops, and whatever was waiting to be printed above the input line is
    /// printed directly. Idempotent.
    pub fn stop_input(&mut self) {
        // Closing the channel first frees a reader thread blocked on handing over a line.
        self.inputs = None;
        let leftovers = match std::mem::replace(&mut self.source, Source::Silent) {
            Source::Editor(editor) => editor.stop(),
            Source::Plain(reader) => {
                reader.stop();
                Vec::new()
            }
            Source::Silent => Vec::new(),
        };
        for item in leftovers {
            let _ = self.print_directly(item);
        }
    }

    /// Changes the prompt (the current conversation).
    pub fn set_prompt(&self, prompt: impl Into<String>) {
        if let Source::Editor(editor) = &self.source {
            editor.set_prompt(prompt.into());
        }
    }

    /// Sets the addresses `/to` completes (the open conversations).
    pub fn set_peers(&self, peers: Vec<String>) {
        if let Source::Editor(editor) = &self.source {
            editor.set_peers(peers);
        }
    }

    /// Prints a message a peer sent (the frame protocol guarantees it holds no control
    /// characters but tabs). With the line editor running, it appears above the input line;
    /// when the editor falls behind, this waits for it rather than dropping lines.
    pub async fn message(&mut self, peer: &Address, text: &str) -> Result<(), ChatError> {
        if let Source::Editor(editor) = &self.source {
            while editor.is_backed_up() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.emit(Out::Message(format!("{peer}: {text}")))
    }

    /// Prints a line of a group: `ADDRESS: TEXT` like a two-person message, or with the
    /// group's `label` in front (`#abc123 ADDRESS: TEXT`) when the process holds more than
    /// one conversation.
    pub async fn group_message(
        &mut self,
        label: Option<&str>,
        author: &Address,
        text: &str,
    ) -> Result<(), ChatError> {
        match label {
            None => self.message(author, text).await,
            Some(label) => {
                if let Source::Editor(editor) = &self.source {
                    while editor.is_backed_up() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                self.emit(Out::Message(format!("{label} {author}: {text}")))
            }
        }
    }

    /// Prints a status line (on stderr, or above the input line).
    pub fn status(&mut self, text: impl std::fmt::Display) {
        let _ = self.emit(Out::Status(text.to_string()));
    }

    fn emit(&mut self, item: Out) -> Result<(), ChatError> {
        let direct = match &self.source {
            Source::Editor(editor) => editor.offer(item),
            _ => vec![item],
        };
        for item in direct {
            self.print_directly(item)?;
        }
        Ok(())
    }

    fn print_directly(&mut self, item: Out) -> Result<(), ChatError> {
        match item {
            Out::Message(line) => writeln!(self.out, "{line}")
                .and_then(|()| self.out.flush())
                .map_err(|e| ChatError::io("failed to write the output", e)),
            Out::Status(text) => {
                // A status line that cannot be written (the terminal is gone) is not worth
                // failing for: the process is on its way out.
                let _ = writeln!(std::io::stderr(), "* {text}");
                Ok(())
            }
        }
    }
}

impl Drop for Console<'_> {
    fn drop(&mut self) {
        self.stop_input();
    }
}

/// A signal that ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl+C at a terminal without the line editor).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal closed).
    Hangup,
}

impl Signal {
    /// What happened, for a status line.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Interrupt => "interrupted",
            Self::Terminate => "terminated",
            Self::Hangup => "the terminal closed",
        }
    }

    /// The exit code of a process ended by this signal before it could finish: 128 plus
    /// the signal's number, as shells report it.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
            Self::Hangup => 129,
        }
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

    /// Waits for one of the signals.
    pub async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Signal::Interrupt,
                _ = self.term.recv() => Signal::Terminate,
                _ = self.hangup.recv() => Signal::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
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

    #[tokio::test]
    async fn without_an_editor_messages_go_to_the_output_and_nothing_else_does() {
        let mut out = Vec::new();
        {
            let mut console = Console::new(&mut out);
            console.status("a status line");
            console
                .message(&Address::parse("bob@b.example").unwrap(), "hi\tthere")
                .await
                .unwrap();
            assert!(!console.reads_input());
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "bob@b.example: hi\tthere\n"
        );
    }

    #[test]
    fn signals_map_to_the_shell_exit_codes() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Hangup.exit_code(), 129);
    }
}
