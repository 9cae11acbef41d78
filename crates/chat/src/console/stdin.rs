//! Plain lines from stdin (a pipe, a file, a terminal whose output is redirected), read on an
//! OS thread that can be stopped: it waits in `poll` on stdin *and* on a wake-up socket, so
//! stopping it never depends on the user typing or the other end closing the pipe.

use std::io;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use tokio::sync::mpsc;

use super::Input;

/// Longest line accepted, in bytes (a message holds at most 16 KiB; longer lines are
/// refused with a reason rather than buffered without end).
const MAX_LINE: usize = 64 * 1024;
/// How long stopping waits for the thread.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The reader thread and the socket that wakes it.
#[derive(Debug)]
pub(super) struct Reader {
    thread: Option<JoinHandle<()>>,
    wake: Option<UnixStream>,
}

impl Reader {
    /// Starts reading stdin, handing each line to `lines`.
    pub(super) fn spawn(lines: mpsc::Sender<Input>) -> io::Result<Self> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        let thread = std::thread::Builder::new()
            .name("chat-stdin".into())
            .spawn(move || read_lines(&wake_rx, &lines))?;
        Ok(Self {
            thread: Some(thread),
            wake: Some(wake_tx),
        })
    }

    /// Stops the thread and waits (briefly) for it to end. The caller closes the receiving
    /// side of the channel first, so a thread waiting to hand over a line ends too.
    pub(super) fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        // Closing our end makes the thread's end readable (end of file): `poll` returns.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + STOP_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn read_lines(wake: &UnixStream, lines: &mpsc::Sender<Input>) {
    let stdin = io::stdin();
    let mut pending: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let mut fds = [
            PollFd::new(&stdin, PollFlags::IN),
            PollFd::new(wake, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                let _ = lines.blocking_send(Input::Failed(e.to_string()));
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let n = match rustix::io::read(&stdin, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => {
                let _ = lines.blocking_send(Input::Failed(e.to_string()));
                return;
            }
        };
        if n == 0 {
            if !pending.is_empty() && !skipping {
                let _ = lines.blocking_send(line_input(std::mem::take(&mut pending)));
            }
            let _ = lines.blocking_send(Input::End);
            return;
        }
        let mut chunk = &buf[..n];
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            let (head, rest) = chunk.split_at(end);
            chunk = &rest[1..];
            if skipping {
                skipping = false;
                pending.clear();
                continue;
            }
            pending.extend_from_slice(head);
            if lines
                .blocking_send(line_input(std::mem::take(&mut pending)))
                .is_err()
            {
                return;
            }
        }
        if !skipping {
            pending.extend_from_slice(chunk);
            if pending.len() > MAX_LINE {
                pending.clear();
                skipping = true;
                let refused = Input::Unusable(format!("a line is longer than {MAX_LINE} bytes"));
                if lines.blocking_send(refused).is_err() {
                    return;
                }
            }
        }
    }
}

fn line_input(mut bytes: Vec<u8>) -> Input {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    match String::from_utf8(bytes) {
        Ok(line) => Input::Line(line),
        Err(_) => Input::Unusable("the line is not valid UTF-8".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_ends_and_must_be_utf8() {
        assert_eq!(line_input(b"hi\r".to_vec()), Input::Line("hi".into()));
        assert_eq!(line_input(b"hi".to_vec()), Input::Line("hi".into()));
        assert!(matches!(line_input(vec![0xff, b'a']), Input::Unusable(_)));
    }
}
