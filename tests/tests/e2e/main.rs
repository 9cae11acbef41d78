//! End-to-end tests of the real binaries: a `pd-server` process on a temporary data
//! directory and `chat` processes in temporary homes, one node per test.

mod account_lost;
mod bad_input;
mod chat_flow;
mod console;
mod contacts;
mod crash;
mod durability;
mod group;
mod invite;
mod messages;
mod p2p;
mod readme;
mod relay;
mod tls;

use pd_e2e::{ChatHome, ChatProcess, Node, federated_pair};

/// A node for `localhost` with its data directory (kept for restarts).
fn start_node() -> (Node, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("failed to create a data directory");
    let node = Node::start(data.path(), "localhost").expect("failed to start pd-server");
    (node, data)
}

/// Logs written to a pipe (a journal, a file) are plain text, without colour codes.
#[test]
fn the_node_logs_plain_lines_when_not_on_a_terminal() {
    let (node, _data) = start_node();
    let log = node.log();
    assert!(log.contains("node started"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in {log:?}");
}

fn home() -> ChatHome {
    ChatHome::new().expect("failed to create a chat home")
}

/// The endpoints listed in `chat lookup --json` output.
fn endpoints(lookup: &serde_json::Value) -> Vec<String> {
    lookup["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Two federated nodes and their data directories.
pub(crate) struct Pair {
    pub(crate) a: Node,
    pub(crate) b: Node,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Two federated nodes, `a.test` and `b.test`.
pub(crate) fn pair() -> Pair {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = federated_pair((da.path(), "a.test"), (db.path(), "b.test"))
        .expect("failed to start two federated nodes");
    Pair {
        a,
        b,
        _dirs: (da, db),
    }
}

/// A chat home with `address` registered at `node`.
pub(crate) fn user(address: &str, node: &Node) -> ChatHome {
    let home = home();
    home.register(address, node);
    home
}

/// `chat listen` on a loopback port with `extra` arguments, once it has published.
pub(crate) fn listen(home: &ChatHome, extra: &[&str]) -> ChatProcess {
    let mut args = vec!["listen", "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let process = ChatProcess::start(home, &args).expect("failed to start chat listen");
    process.wait_stderr("; published");
    process
}

/// The identity key of a chat home.
pub(crate) fn key_of(home: &ChatHome) -> pd_proto::SecretKey {
    let text = std::fs::read_to_string(home.path().join("identity.key")).unwrap();
    pd_proto::SecretKey::from_text(&text).unwrap()
}

/// An address known to be valid.
pub(crate) fn addr(s: &str) -> pd_proto::Address {
    pd_proto::Address::parse(s).unwrap()
}

/// The `tcp://` endpoint of a loopback port.
pub(crate) fn endpoint(port: u16) -> pd_proto::Endpoint {
    pd_proto::Endpoint::parse(&format!("tcp://127.0.0.1:{port}")).unwrap()
}
