//! End-to-end tests of the real binaries: a `pd-server` process on a temporary data
//! directory and `chat` processes in temporary homes, one node per test.

mod account_lost;
mod bad_input;
mod chat_flow;
mod console;
mod contacts;
mod crash;
mod durability;
mod invite;
mod messages;
mod p2p;
mod readme;
mod relay;
mod tls;

use pd_e2e::{ChatHome, Node};

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
