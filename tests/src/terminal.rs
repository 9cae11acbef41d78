//! [`ChatTerminal`]: a `chat` process in a pseudo-terminal, its screen kept by a terminal
//! emulator (`vt100`) that also answers the cursor-position queries a line editor sends, the
//! way a real terminal does.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use crate::{CHAT_WAIT, ChatHome, binaries};

/// Rows of the emulated terminal.
pub(crate) const ROWS: u16 = 40;
/// Columns of the emulated terminal.
pub(crate) const COLS: u16 = 120;

/// The emulator's replies to queries, waiting to be written to the program.
#[derive(Debug, Default)]
struct Replies(Vec<Vec<u8>>);

impl vt100::Callbacks for Replies {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        match (i1, c, params) {
            // Device status report: where is the cursor? (1-based row and column.)
            (None, 'n', [[6]]) => {
                let (row, col) = screen.cursor_position();
                self.0
                    .push(format!("\x1b[{};{}R", row + 1, col + 1).into_bytes());
            }
            // Device status report: are you well?
            (None, 'n', [[5]]) => self.0.push(b"\x1b[0n".to_vec()),
            // Primary device attributes: a VT220-like terminal.
            (None, 'c', [] | [[0]]) => self.0.push(b"\x1b[?62;22c".to_vec()),
            _ => {}
        }
    }
}

type Screen = Arc<Mutex<vt100::Parser<Replies>>>;
type Writer = Arc<Mutex<Box<dyn Write + Send>>>;

/// A `chat` process running in a pseudo-terminal of 40 rows by 120 columns; killed on drop.
pub struct ChatTerminal {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Writer,
    screen: Screen,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ChatTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTerminal")
            .field("screen", &self.screen())
            .finish_non_exhaustive()
    }
}

impl ChatTerminal {
    /// Starts `chat --home HOME args...` in a new pseudo-terminal (`TERM=xterm-256color`).
    pub fn start(home: &ChatHome, args: &[&str]) -> anyhow::Result<Self> {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .context("failed to open a pseudo-terminal")?;
        let mut command = CommandBuilder::new(&binaries().chat);
        command.arg("--home");
        command.arg(home.path());
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.env_remove("CHAT_HOME");
        command.env_remove("CHAT_LOG");
        command.env_remove("NO_COLOR");
        let child = pty
            .slave
            .spawn_command(command)
            .context("failed to start chat in the pseudo-terminal")?;
        // Only the child holds the terminal's side now, so reading ends when it exits.
        drop(pty.slave);
        let mut output = pty
            .master
            .try_clone_reader()
            .context("failed to read the pseudo-terminal")?;
        let writer: Writer = Arc::new(Mutex::new(
            pty.master
                .take_writer()
                .context("failed to write to the pseudo-terminal")?,
        ));
        let size = |n| std::num::NonZeroU16::new(n).context("an empty terminal");
        let screen: Screen = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
            size(ROWS)?,
            size(COLS)?,
            0,
            Replies::default(),
        )));
        let reader = {
            let screen = Arc::clone(&screen);
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                let mut buf = [0_u8; 4096];
                loop {
                    let n = match output.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let replies = match screen.lock() {
                        Ok(mut parser) => {
                            parser.process(&buf[..n]);
                            std::mem::take(&mut parser.callbacks_mut().0)
                        }
                        Err(_) => return,
                    };
                    if let Ok(mut writer) = writer.lock() {
                        for reply in replies {
                            let _ = writer.write_all(&reply);
                        }
                        let _ = writer.flush();
                    }
                }
            })
        };
        Ok(Self {
            child,
            master: pty.master,
            writer,
            screen,
            reader: Some(reader),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.process_id().unwrap_or(0)
    }

    /// Types `text` (bytes as a terminal sends them: `\r` is Enter, `\x03` is Ctrl+C).
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| anyhow::anyhow!("the terminal writer is poisoned"))?;
        writer.write_all(text.as_bytes())?;
        writer.flush()?;
        Ok(())
    }

    /// Types `line` and Enter.
    pub fn type_line(&self, line: &str) -> anyhow::Result<()> {
        self.type_text(&format!("{line}\r"))
    }

    /// Presses Ctrl+C.
    pub fn ctrl_c(&self) -> anyhow::Result<()> {
        self.type_text("\x03")
    }

    /// The screen, one line per row, trailing blanks removed.
    pub fn screen(&self) -> String {
        self.screen
            .lock()
            .map(|parser| {
                parser
                    .screen()
                    .rows(0, COLS)
                    .map(|row| row.trim_end().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The row the cursor is on, and the cursor's column.
    pub fn cursor_row(&self) -> (String, u16) {
        self.screen
            .lock()
            .map(|parser| {
                let (row, col) = parser.screen().cursor_position();
                let text = parser
                    .screen()
                    .rows(0, COLS)
                    .nth(usize::from(row))
                    .unwrap_or_default();
                (text.trim_end().to_owned(), col)
            })
            .unwrap_or_default()
    }

    /// Waits until the screen shows `needle`; panics with the screen otherwise.
    pub fn wait_screen(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?} on the screen"), |screen| {
            screen.contains(needle)
        })
    }

    /// Waits until the cursor stands on an empty input line after the prompt `label> `.
    pub fn wait_prompt(&self, label: &str) {
        let prompt = format!("{label}>");
        self.wait_until(&format!("the prompt {prompt:?}"), |_| {
            let (row, col) = self.cursor_row();
            row == prompt && usize::from(col) == prompt.len() + 1
        });
    }

    /// Waits until `ready` holds for the screen; panics with the screen otherwise.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + CHAT_WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("waited {CHAT_WAIT:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit within `within` and returns its exit code and how long
    /// it took; kills it and fails otherwise.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<(u32, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let took = started.elapsed();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Ok((status.exit_code(), took));
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "chat did not exit within {within:?}; the screen:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the terminal is in its ordinary line mode (canonical input, echo and signal
    /// keys on), as a program must leave it.
    pub fn is_in_line_mode(&self) -> anyhow::Result<bool> {
        use rustix::termios::LocalModes;
        let path = self
            .master
            .tty_name()
            .context("the pseudo-terminal has no name")?;
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let modes = rustix::termios::tcgetattr(&tty)?.local_modes;
        Ok(modes.contains(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG))
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        crate::kill(self.pid(), name)
    }
}

impl Drop for ChatTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
