//! The line editor at a terminal (reedline), on an OS thread this module owns: a prompt that
//! names the current conversation, emacs-style editing with in-session history (arrows,
//! Ctrl+A/E/W/U, Ctrl+R), Tab completion of the `/` commands and of the open conversations'
//! addresses after `/to`, and lines printed *above* the one being typed.
//!
//! Printing goes through a queue the async side fills and the editor drains: once per turn
//! of its input loop (at most every [`POLL`]) the editor's idle callback moves queued lines
//! into reedline's external printer, which prints them above the input line and redraws
//! the line intact. Stopping goes through the same callback, which raises reedline's break
//! signal, so `read_line` returns (restoring the terminal's mode) within one turn. Whatever
//! the editor did not print by then is handed back to be printed directly: no line is lost
//! in either direction.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reedline::{
    ColumnarMenu, Completer, CompletionResult, Emacs, ExternalPrinter, FileBackedHistory, KeyCode,
    KeyModifiers, MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch, Reedline,
    ReedlineEvent, ReedlineMenu, Signal, SimpleMatchHighlighter, Span, Suggestion,
    default_emacs_keybindings,
};
use tokio::sync::mpsc;

use super::{Input, Out, View};

/// How often the editor looks at the print queue and the stop request while idle.
const POLL: Duration = Duration::from_millis(40);
/// Lines reedline's printer takes at once (more wait in the queue for the next turn).
const PRINTER_CAPACITY: usize = 64;
/// Queued lines above which a sender of messages waits for the editor to catch up.
const QUEUE_LIMIT: usize = 512;
/// Typed lines kept for the arrows and Ctrl+R (in memory only: never written to disk).
const HISTORY: usize = 1_000;
/// How long stopping waits for the editor to give the terminal back.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// The name of the completion menu.
const MENU: &str = "completion_menu";

/// State shared by the async side and the editor thread.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    prompt: Mutex<String>,
    peers: Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Lines waiting for the editor to print them.
    lines: VecDeque<Out>,
    /// Whether the editor still prints (false once it has returned for good).
    editing: bool,
    /// Whether the owner asked the editor to stop.
    stop: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a queue that is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running editor.
pub(super) struct Editor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Asks the editor to draw the prompt again.
    repaint: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Editor {
    /// Starts the editor showing `view`; typed lines go to `lines`.
    pub(super) fn spawn(view: View, lines: mpsc::Sender<Input>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                lines: VecDeque::new(),
                editing: true,
                stop: false,
            }),
            prompt: Mutex::new(view.prompt),
            peers: Mutex::new(Vec::new()),
        });
        let mut editor = build(&shared, view.commands)?;
        let signal = editor.repaint_signal();
        let repaint = Box::new(move || signal.request_repaint());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("chat-editor".into())
                .spawn(move || run(&mut editor, &shared, &lines))?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
            repaint,
        })
    }

    /// Queues `item` for the editor; when the editor no longer prints, returns it (after
    /// whatever was still queued) for the caller to print directly.
    pub(super) fn offer(&self, item: Out) -> Vec<Out> {
        let mut queue = self.shared.queue();
        if queue.editing {
            queue.lines.push_back(item);
            Vec::new()
        } else {
            let mut direct: Vec<Out> = queue.lines.drain(..).collect();
            direct.push(item);
            direct
        }
    }

    /// Whether so many lines wait that a sender should let the editor catch up.
    pub(super) fn is_backed_up(&self) -> bool {
        let queue = self.shared.queue();
        queue.editing && queue.lines.len() >= QUEUE_LIMIT
    }

    /// Shows another prompt.
    pub(super) fn set_prompt(&self, prompt: String) {
        *self.shared.prompt.lock().unwrap_or_else(|e| e.into_inner()) = prompt;
        (self.repaint)();
    }

    /// Sets the addresses `/to` completes.
    pub(super) fn set_peers(&self, peers: Vec<String>) {
        *self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// Stops the editor and waits (at most [`STOP_WAIT`]) for it to give the terminal back;
    /// returns the lines it did not print.
    pub(super) fn stop(mut self) -> Vec<Out> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Vec<Out> {
        self.shared.queue().stop = true;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + STOP_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                // The editor is stuck (a terminal that takes no output): give the terminal
                // its mode back without it; the thread ends with the process.
                let _ = reedline_raw_mode_off();
            }
        }
        let mut queue = self.shared.queue();
        queue.editing = false;
        queue.lines.drain(..).collect()
    }
}

impl Drop for Editor {
    fn drop(&mut self) {
        if self.thread.is_some() {
            for item in self.shut_down() {
                let _ = writeln!(io::stderr(), "{}", item.text());
            }
        }
    }
}

/// Restores the terminal mode saved when reedline entered raw mode.
fn reedline_raw_mode_off() -> io::Result<()> {
    crossterm::terminal::disable_raw_mode()
}

/// Builds the editor: emacs keys with Tab for completion, in-memory history, no colours in
/// the typed text, a break signal and the idle callback that prints and stops.
fn build(shared: &Arc<Shared>, commands: &'static [&'static str]) -> io::Result<Reedline> {
    let printer = ExternalPrinter::<String>::new(PRINTER_CAPACITY);
    let sender = printer.sender();
    let brk = Arc::new(AtomicBool::new(false));
    let idle = {
        let shared = Arc::clone(shared);
        let brk = Arc::clone(&brk);
        move || {
            let mut queue = shared.queue();
            if queue.stop {
                // Raised here, on the editor's own thread, right before reedline checks it:
                // no line moved to the printer in this turn can be dropped by the break.
                brk.store(true, Ordering::SeqCst);
                return;
            }
            while let Some(item) = queue.lines.front() {
                match sender.try_send(item.text()) {
                    Ok(()) => {
                        queue.lines.pop_front();
                    }
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => break,
                }
            }
        }
    };
    let mut keys = default_emacs_keybindings();
    keys.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu(MENU.to_owned()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let history = FileBackedHistory::new(HISTORY).map_err(io::Error::other)?;
    Ok(Reedline::create()
        .with_history(Box::new(history))
        .with_edit_mode(Box::new(Emacs::new(keys)))
        // Typed text is shown as typed (no query: nothing highlighted).
        .with_highlighter(Box::new(SimpleMatchHighlighter::default()))
        .with_completer(Box::new(Completion {
            shared: Arc::clone(shared),
            commands,
        }))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(
            ColumnarMenu::default().with_name(MENU),
        )))
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_external_printer(printer)
        .with_break_signal(brk)
        .with_poll_interval(POLL)
        .with_idle_callback(Box::new(idle)))
}

/// The editor thread: reads lines until the user leaves or the owner stops it.
fn run(editor: &mut Reedline, shared: &Arc<Shared>, lines: &mpsc::Sender<Input>) {
    let prompt = ChatPrompt {
        shared: Arc::clone(shared),
    };
    loop {
        let input = match editor.read_line(&prompt) {
            Ok(Signal::Success(line)) => Input::Line(line),
            Ok(Signal::CtrlC) => Input::Interrupt,
            Ok(Signal::CtrlD) => Input::End,
            Ok(Signal::ExternalBreak(_)) => {
                // Leave the half-typed line as it is and go on below it.
                let _ = writeln!(io::stderr());
                break;
            }
            Ok(_) => continue,
            Err(e) => Input::Failed(e.to_string()),
        };
        let last = !matches!(input, Input::Line(_));
        if lines.blocking_send(input).is_err() || last || shared.queue().stop {
            break;
        }
    }
    // From here on the owner prints directly; it takes what is still queued first.
    shared.queue().editing = false;
}

/// The prompt: the current conversation, then `> `.
struct ChatPrompt {
    shared: Arc<Shared>,
}

impl Prompt for ChatPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Owned(
            self.shared
                .prompt
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("::: ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!(" (history search: {}) ", search.term))
    }
}

/// Completes the `/` commands, and after `/to ` the open conversations' addresses.
struct Completion {
    shared: Arc<Shared>,
    commands: &'static [&'static str],
}

impl Completer for Completion {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let peers = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        CompletionResult::fresh(suggest(self.commands, &peers, line, pos))
    }
}

/// The completions of `line` up to `pos`.
fn suggest(commands: &[&str], peers: &[String], line: &str, pos: usize) -> Vec<Suggestion> {
    let Some(before) = line.get(..pos) else {
        return Vec::new();
    };
    let suggestion = |value: &str, start: usize, space: bool| Suggestion {
        value: value.to_owned(),
        span: Span::new(start, pos),
        append_whitespace: space,
        ..Suggestion::default()
    };
    if let Some(partial) = before.strip_prefix("/to ") {
        let partial = partial.trim_start();
        let start = pos - partial.len();
        if partial.contains(char::is_whitespace) || !commands.contains(&"/to") {
            return Vec::new();
        }
        return peers
            .iter()
            .filter(|peer| peer.starts_with(partial))
            .map(|peer| suggestion(peer, start, false))
            .collect();
    }
    if before.starts_with('/') && !before.starts_with("//") && !before.contains(' ') {
        return commands
            .iter()
            .filter(|command| command.starts_with(before))
            .map(|command| suggestion(command, 0, *command == "/to"))
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(suggestions: &[Suggestion]) -> Vec<(&str, usize, usize)> {
        suggestions
            .iter()
            .map(|s| (s.value.as_str(), s.span.start, s.span.end))
            .collect()
    }

    #[test]
    fn commands_and_addresses_complete() {
        let commands = super::super::LISTEN_COMMANDS;
        let peers = vec!["alice@a.test".to_owned(), "carol@a.test".to_owned()];
        assert_eq!(
            values(&suggest(commands, &peers, "/l", 2)),
            [("/leave", 0, 2), ("/list", 0, 2)]
        );
        assert_eq!(
            values(&suggest(commands, &peers, "/j", 2)),
            [("/join", 0, 2)]
        );
        assert_eq!(values(&suggest(commands, &peers, "/", 1)).len(), 8);
        assert_eq!(
            values(&suggest(commands, &peers, "/to c", 5)),
            [("carol@a.test", 4, 5)]
        );
        assert_eq!(values(&suggest(commands, &peers, "/to ", 4)).len(), 2);
        assert!(suggest(commands, &peers, "hello /l", 8).is_empty());
        assert!(suggest(commands, &peers, "//l", 3).is_empty());
        let connect = super::super::CONNECT_COMMANDS;
        assert!(suggest(connect, &peers, "/to a", 5).is_empty());
        assert_eq!(
            values(&suggest(connect, &peers, "/q", 2)),
            [("/quit", 0, 2)]
        );
    }
}
