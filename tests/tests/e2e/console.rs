//! `chat listen` and `chat connect` as people use them (issue 11): at a terminal (the real
//! binary in a pseudo-terminal, its screen read through a terminal emulator), through pipes
//! that stay open, and in the background. Leaving is prompt in every case (Ctrl+C, a second
//! Ctrl+C, signals, a vanished peer), the terminal gets its mode back, and incoming lines
//! never break the line being typed.

use std::process::Stdio;
use std::time::Duration;

use chat::peer::cert::IdentityCert;
use chat::peer::session;
use pd_e2e::{ChatHome, ChatProcess, ChatTerminal};
use pd_proto::{Address, SecretKey};

use super::{start_node, user};

/// The bound on leaving the issue sets (5 s for the goodbyes and the withdrawal), with room
/// for a loaded machine.
const PROMPT_EXIT: Duration = Duration::from_secs(6);

fn listen_piped(home: &ChatHome) -> ChatProcess {
    let process = ChatProcess::start(home, &["listen", "--bind", "127.0.0.1:0"])
        .expect("failed to start chat listen");
    process.wait_stderr("; published");
    process
}

fn connect_piped(home: &ChatHome, address: &str) -> ChatProcess {
    let process =
        ChatProcess::start(home, &["connect", address]).expect("failed to start chat connect");
    process.wait_stderr(&format!("connected to {address}"));
    process
}

fn terminal(home: &ChatHome, args: &[&str]) -> ChatTerminal {
    ChatTerminal::start(home, args).expect("failed to start chat in a pseudo-terminal")
}

fn key_of(home: &ChatHome) -> SecretKey {
    let text = std::fs::read_to_string(home.path().join("identity.key")).unwrap();
    SecretKey::from_text(&text).unwrap()
}

/// Exits within [`PROMPT_EXIT`] with `code`, leaving the terminal in line mode.
fn assert_exits(term: &mut ChatTerminal, code: u32) {
    let (exit, took) = term.wait_exit(PROMPT_EXIT).unwrap();
    assert_eq!(exit, code, "after {took:?}; the screen:\n{}", term.screen());
    assert!(
        term.is_in_line_mode().unwrap(),
        "the terminal was left in raw mode; the screen:\n{}",
        term.screen()
    );
}

#[test]
fn ctrl_c_ends_listen_at_a_terminal_with_and_without_a_conversation() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);

    // Nobody connected: Ctrl+C at the prompt.
    let mut term = terminal(&bob, &["listen", "--bind", "127.0.0.1:0"]);
    term.wait_prompt("no conversation");
    term.ctrl_c().unwrap();
    assert_exits(&mut term, 0);
    term.wait_screen("withdrew the presence record of bob@localhost");

    // A conversation: the prompt names it, Tab completes its address for /to, and Ctrl+C
    // says goodbye to the peer, whose input stays open.
    let mut term = terminal(&bob, &["listen", "--bind", "127.0.0.1:0"]);
    term.wait_prompt("no conversation");
    let talker = connect_piped(&alice, "bob@localhost");
    term.wait_prompt("alice@localhost");
    term.type_text("/to al\t").unwrap();
    term.wait_until("the completed address", |_| {
        term.cursor_row().0 == "alice@localhost> /to alice@localhost"
    });
    term.type_text("\r").unwrap();
    term.wait_screen("* now talking to alice@localhost");
    term.ctrl_c().unwrap();
    assert_exits(&mut term, 0);
    let screen = term.screen();
    assert!(
        screen.contains("* interrupted: saying goodbye to 1 peer(s)"),
        "{screen}"
    );
    let (out, took) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(out.stderr.contains("bob@localhost left"), "{out:#?}");
}

#[test]
fn a_half_typed_line_survives_incoming_messages_and_is_sent_whole() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);
    let mut listener = listen_piped(&bob);
    let mut term = terminal(&alice, &["connect", "bob@localhost"]);
    term.wait_screen("connected to bob@localhost");
    term.wait_prompt("bob@localhost");

    term.type_text("half typed li").unwrap();
    term.wait_until("the half line", |_| {
        term.cursor_row().0 == "bob@localhost> half typed li"
    });
    listener.send_line("are you there?").unwrap();
    listener.send_line("hello?").unwrap();
    term.wait_screen("bob@localhost: hello?");
    // The line editor prints the peer's line and then redraws the prompt with the half
    // line: what counts is the screen once it has done both.
    term.wait_until("the half line redrawn below the peer's lines", |_| {
        term.cursor_row().0 == "bob@localhost> half typed li"
    });
    let screen = term.screen();
    let (row, col) = term.cursor_row();
    assert_eq!(usize::from(col), row.len(), "the cursor stays at the end");
    let lines: Vec<&str> = screen.lines().collect();
    let asked = lines
        .iter()
        .position(|l| *l == "bob@localhost: are you there?")
        .expect("the peer's line on a row of its own");
    let input = lines
        .iter()
        .rposition(|l| *l == row)
        .expect("the input line");
    assert!(
        asked < input,
        "the peer's line is above the input:\n{screen}"
    );
    assert!(
        !screen.contains("libob@localhost"),
        "a line printed into the input:\n{screen}"
    );

    term.type_text("ne\r").unwrap();
    listener.wait_stdout("alice@localhost: half typed line\n");
    // In-session history: the arrow brings the line back; Ctrl+U clears it again.
    term.type_text("\x1b[A").unwrap();
    term.wait_until("the recalled line", |_| {
        term.cursor_row().0 == "bob@localhost> half typed line"
    });
    term.type_text("\x15").unwrap();
    term.wait_until("a cleared line", |_| {
        term.cursor_row().0 == "bob@localhost>"
    });
    term.type_text("/q\t").unwrap();
    term.wait_until("the completed command", |_| {
        term.cursor_row().0 == "bob@localhost> /quit"
    });
    term.type_text("\r").unwrap();
    assert_exits(&mut term, 0);
    listener.wait_stderr("alice@localhost left");
    assert_eq!(
        listener.stdout(),
        "alice@localhost: half typed line\n",
        "only the finished line was sent"
    );
}

#[test]
fn ctrl_c_ends_connect_at_a_terminal_and_a_second_one_does_not_wait_for_the_goodbye() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);
    let listener = listen_piped(&bob);
    let mut term = terminal(&alice, &["connect", "bob@localhost"]);
    term.wait_prompt("bob@localhost");
    term.ctrl_c().unwrap();
    assert_exits(&mut term, 0);
    let screen = term.screen();
    assert!(
        screen.contains("* interrupted: saying goodbye to bob@localhost"),
        "{screen}"
    );
    listener.wait_stderr("alice@localhost left");
    drop(listener);

    // A listener holding Bob's key that never answers the goodbye: the first Ctrl+C starts
    // the goodbye, the second leaves at once.
    let rt = runtime();
    let silent = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = silent.local_addr().unwrap().port();
    bob.run(&["publish", "--endpoint", &format!("tcp://127.0.0.1:{port}")])
        .success();
    let identity = IdentityCert::new(&key_of(&bob), &addr("bob@localhost")).unwrap();
    let held = rt.spawn(async move {
        let (tcp, _) = silent.accept().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let acceptor = session::acceptor(&identity).unwrap();
        let (cert, channel) = session::handshake(tcp, acceptor, deadline).await.unwrap();
        let channel = session::answer(channel, &cert, Ok(()), deadline)
            .await
            .unwrap();
        // Hold the connection open, reading nothing, until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(channel);
    });
    let mut term = terminal(&alice, &["connect", "bob@localhost"]);
    term.wait_prompt("bob@localhost");
    term.ctrl_c().unwrap();
    term.wait_screen("saying goodbye to bob@localhost");
    term.ctrl_c().unwrap();
    let (exit, took) = term.wait_exit(PROMPT_EXIT).unwrap();
    assert_eq!(exit, 130, "after {took:?}; the screen:\n{}", term.screen());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(term.is_in_line_mode().unwrap());
    held.abort();
}

#[test]
fn ctrl_c_stops_connection_attempts_at_once_at_a_terminal_and_through_a_pipe() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);
    // An endpoint that accepts TCP connections and never answers the TLS handshake.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    bob.run(&["publish", "--endpoint", &format!("tcp://127.0.0.1:{port}")])
        .success();

    let mut term = terminal(&alice, &["connect", "bob@localhost"]);
    term.wait_screen("connecting to bob@localhost at");
    term.ctrl_c().unwrap();
    assert_exits(&mut term, 130);
    term.wait_screen("error: interrupted: stopped connecting to bob@localhost");

    let talker = ChatProcess::start(&alice, &["connect", "bob@localhost"]).unwrap();
    talker.wait_stderr("connecting to bob@localhost at");
    talker.signal("INT").unwrap();
    let (out, took) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 130, "after {took:?}: {out:#?}");
    drop(mute);
}

#[test]
fn signals_end_listen_and_connect_while_their_input_pipes_stay_open() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);

    // SIGINT to the listener: both sides end, neither input was closed.
    let listener = listen_piped(&bob);
    let talker = connect_piped(&alice, "bob@localhost");
    listener.wait_stderr("alice@localhost connected");
    listener.signal("INT").unwrap();
    let (out, took) = listener.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(
        out.stderr
            .contains("interrupted: saying goodbye to 1 peer(s)")
    );
    assert!(
        out.stderr
            .contains("withdrew the presence record of bob@localhost")
    );
    let (out, took) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(out.stderr.contains("bob@localhost left"), "{out:#?}");

    // SIGTERM to the connecting side, then SIGHUP to a listener with nobody connected.
    let listener = listen_piped(&bob);
    let talker = connect_piped(&alice, "bob@localhost");
    talker.signal("TERM").unwrap();
    let (out, took) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(
        out.stderr
            .contains("terminated: saying goodbye to bob@localhost")
    );
    listener.wait_stderr("alice@localhost left");
    listener.signal("HUP").unwrap();
    let (out, took) = listener.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(
        out.stderr.contains("withdrew the presence record"),
        "{out:#?}"
    );
}

#[test]
fn a_listener_killed_with_sigkill_is_reported_by_connect_without_typing() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);
    let listener = listen_piped(&bob);
    let mut term = terminal(&alice, &["connect", "bob@localhost"]);
    term.wait_prompt("bob@localhost");
    listener.signal("KILL").unwrap();
    assert_exits(&mut term, 15);
    term.wait_screen("error: bob@localhost disconnected");

    // The same through a pipe that stays open.
    let listener = listen_piped(&bob);
    let talker = connect_piped(&alice, "bob@localhost");
    listener.signal("KILL").unwrap();
    let (out, took) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 15, "after {took:?}: {out:#?}");
    assert!(
        out.stderr.contains("bob@localhost disconnected"),
        "{out:#?}"
    );
}

#[test]
fn listen_without_a_console_serves_until_a_signal() {
    let (node, _data) = start_node();
    let bob = user("bob@localhost", &node);
    let alice = user("alice@localhost", &node);

    // Stdin is /dev/null: no console, and the end of that input is not a reason to leave.
    let listener =
        ChatProcess::start_with_input(&bob, &["listen", "--bind", "127.0.0.1:0"], Stdio::null())
            .unwrap();
    listener.wait_stderr("no console");
    let out = alice.run_with_input(&["connect", "bob@localhost"], "from alice\n");
    assert_eq!(out.code, 0, "{out:#?}");
    listener.wait_stdout("alice@localhost: from alice\n");
    listener.signal("TERM").unwrap();
    let (out, took) = listener.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "after {took:?}: {out:#?}");
    assert!(
        out.stderr.contains("withdrew the presence record"),
        "{out:#?}"
    );

    // --no-console with an open pipe: what is written to it is not read.
    let mut listener =
        ChatProcess::start(&bob, &["listen", "--bind", "127.0.0.1:0", "--no-console"]).unwrap();
    listener.wait_stderr("no console");
    let talker = connect_piped(&alice, "bob@localhost");
    listener.send_line("not a console").unwrap();
    listener.send_line("/quit").unwrap();
    talker.signal("TERM").unwrap();
    let (out, _) = talker.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "", "the listener sent nothing");
    listener.signal("INT").unwrap();
    let (out, _) = listener.wait_with_input_open(PROMPT_EXIT);
    assert_eq!(out.code, 0, "{out:#?}");
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
