//! The messages of a new user's usual mistakes (issue 13), each from the real binaries: one
//! clear line on stderr that says what to do, and the documented exit code.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pd_e2e::{Node, NodeOptions, binaries};

use super::{home, start_node};

fn pd_server(args: &[&str], dir: &Path) -> Output {
    Command::new(&binaries().pd_server)
        .args(args)
        .current_dir(dir)
        .env_remove("PD_CONFIG")
        .env_remove("PD_LISTEN")
        .env_remove("PD_DATA_DIR")
        .env_remove("PD_DOMAIN")
        .env_remove("PD_STORE")
        .output()
        .expect("failed to run pd-server")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_server_url_without_a_scheme_gets_the_url_to_write() {
    let out = home().run(&["register", "alice@localhost", "--server", "127.0.0.1:8080"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(
        out.stderr,
        "error: invalid server URL \"127.0.0.1:8080\": a URL needs a scheme; did you mean \
         http://127.0.0.1:8080?\n"
    );
    let out = home().run(&["register", "alice@pd.example", "--server", "pd.example"]);
    assert!(
        out.stderr.contains("did you mean https://pd.example?"),
        "{out:#?}"
    );
}

#[test]
fn pd_server_flags_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = pd_server(
        &["check-config", "--peer", "b.localhost=127.0.0.1:8081"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains(
            "the URL \"127.0.0.1:8081\" needs a scheme; did you mean http://127.0.0.1:8081?"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("relative URL without a base"));

    let out = pd_server(&["check-config", "--listen", "localhost:8090"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out)
            .contains("expected an IP address and a port, not a host name (e.g. 127.0.0.1:8090)"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("invalid socket address syntax"));
}

#[test]
fn a_missing_config_file_is_named_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = pd_server(&["check-config", "--config", "missing.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains("missing.toml"), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
}

#[test]
fn relative_paths_in_a_config_file_are_the_files() {
    // The node is started from another directory than the file's: its data directory is
    // still the one next to the file, as written (issue 13).
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(etc.join("node.toml"), "data_dir = \"../data\"\n").unwrap();
    let config = etc.join("node.toml");
    let out = pd_server(&["init", "--config", config.to_str().unwrap()], &elsewhere);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("data/server.key").exists());
    assert!(!elsewhere.join("data").exists());

    // A flag stays relative to the working directory.
    let out = pd_server(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            "flagged",
        ],
        &elsewhere,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(elsewhere.join("flagged/server.key").exists());
}

#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let out = home().run(&["lokup", "alice@localhost"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(
        out.stderr,
        "error: unrecognized subcommand 'lokup' (did you mean 'lookup'?)\n"
    );
}

#[test]
fn help_names_the_exit_codes_and_one_default_for_bind() {
    let help = home().run(&["--help"]);
    assert_eq!(help.code, 0, "{help:#?}");
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    assert!(
        help.stdout
            .contains("16   the home server no longer knows your account"),
        "{}",
        help.stdout
    );
    let short = home().run(&["-h"]);
    assert!(
        short.stdout.contains("Exit codes: 0 success"),
        "{}",
        short.stdout
    );
    let listen = home().run(&["listen", "--help"]);
    assert_eq!(listen.code, 0, "{listen:#?}");
    // The --bind entry, up to the next option.
    let mut lines = listen
        .stdout
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("--bind"));
    let bind: String = lines
        .next()
        .into_iter()
        .chain(lines.take_while(|line| !line.trim_start().starts_with('-')))
        .collect();
    assert!(bind.contains("[default: 0.0.0.0:0]"), "{}", listen.stdout);
    assert_eq!(bind.matches("default").count(), 1, "{bind}");
}

#[test]
fn the_first_conversation_is_remembered_only_once_it_happened() {
    let (node, _data) = start_node();
    let alice = home();
    alice.register("alice@localhost", &node);
    let bob = home();
    bob.register("bob@localhost", &node);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    bob.run(&["publish", "--endpoint", &format!("tcp://127.0.0.1:{port}")])
        .success();
    let out = alice.run_with_input(&["connect", "bob@localhost"], "hi\n");
    assert_eq!(out.code, 11, "{out:#?}");
    assert!(!out.stderr.contains("remembering"), "{out:#?}");
    let fingerprints = alice.run(&["fingerprint", "bob@localhost"]).success();
    assert!(
        fingerprints
            .stdout
            .contains("remembered:  none (you have not talked yet)"),
        "{fingerprints:#?}"
    );
}

#[test]
fn an_invite_on_a_node_with_open_registration_comes_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let out = pd_server(&["invite", "create", "--data-dir", "data"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty(), "the token is still printed");
    assert_eq!(
        stderr(&out),
        "warning: registration is \"open\" on this node, so invites are not needed (anyone may \
         register): set registration = \"invite\" in the configuration for the token to matter\n"
    );
    std::fs::write(
        dir.path().join("invite.toml"),
        "registration = \"invite\"\n",
    )
    .unwrap();
    let out = pd_server(
        &[
            "invite",
            "create",
            "--config",
            "invite.toml",
            "--data-dir",
            "data",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_server_that_is_not_a_pd_node_is_called_so() {
    // A web server that answers every request 501, as `python3 -m http.server` answers a
    // POST.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    // Left blocked in accept when the test ends (the process ends with the test binary).
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/html\r\n\
                  Content-Length: 13\r\nConnection: close\r\n\r\n<h1>501</h1>\n",
            );
        }
    });
    let out = home().run(&[
        "register",
        "alice@localhost",
        "--server",
        &format!("http://{addr}"),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: http://{addr} answered HTTP 501 without a problem description: it does not \
             look like a PD node (is the server URL right?)\n"
        )
    );
}

/// Waits until `node`'s log holds `needle` `times` times.
fn wait_log(node: &Node, needle: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = node.log();
        if log.matches(needle).count() >= times {
            return log;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hangup(node: &Node) {
    let status = Command::new("kill")
        .args(["-HUP", &node.pid().expect("running").to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_logs_what_changed_and_drops_cached_answers_once() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // b.test reads its trust policy from its configuration file; each node has a static
    // route to the other.
    let config = dc.path().join("node.toml");
    std::fs::write(&config, "[trust]\nmode = \"open\"\n").unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (a_addr, b_addr) = (free(), free());
    let route =
        |domain: &str, addr: std::net::SocketAddr| (domain.to_owned(), format!("http://{addr}"));
    let a_options = NodeOptions {
        peers: vec![route("b.test", b_addr)],
        ..NodeOptions::default()
    };
    let a = Node::start_with_at(da.path(), "a.test", a_addr, a_options).unwrap();
    let b_options = NodeOptions {
        config: Some(config.clone()),
        peers: vec![route("a.test", a_addr)],
        ..NodeOptions::default()
    };
    let b = Node::start_with_at(db.path(), "b.test", b_addr, b_options).unwrap();

    let alice = home();
    alice.register("alice@a.test", &a);
    alice
        .run(&["publish", "--endpoint", "tcp://127.0.0.1:7000"])
        .success();
    let bob = home();
    bob.register("bob@b.test", &b);
    let found = bob
        .run(&["lookup", "alice@a.test", "--json"])
        .success()
        .json();
    assert_eq!(found["source"], "remote");

    // Nothing changed: the reload says so.
    hangup(&b);
    wait_log(&b, "trust policy reloaded on SIGHUP: no change", 1);

    // The file is replaced, as an editor does: the reload says what changed, and the
    // cached answer of the newly refused domain is dropped, logged once.
    let edited = dc.path().join("node.toml.new");
    std::fs::write(&edited, "[trust]\nmode = \"open\"\ndeny = [\"a.test\"]\n").unwrap();
    std::fs::rename(&edited, &config).unwrap();
    hangup(&b);
    wait_log(&b, "trust policy reloaded on SIGHUP: added deny a.test", 1);
    hangup(&b);
    let log = wait_log(&b, "trust policy reloaded on SIGHUP: no change", 2);
    assert_eq!(
        log.matches("dropped cached answers of domains the new trust policy refuses")
            .count(),
        1,
        "{log}"
    );
    let refused = bob.run(&["lookup", "alice@a.test"]);
    assert_eq!(refused.code, 8, "{refused:#?}");
}
