//! `pd-server healthcheck`: the binary asks a running node's `/healthz` on loopback, over
//! HTTPS when the configuration serves TLS, with settings from flags or the environment.

use std::process::Command;

use pd_server::config::TlsConfig;

use crate::util::TestNode;

fn healthcheck() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pd-server"));
    command.arg("healthcheck");
    for var in [
        "PD_CONFIG",
        "PD_DOMAIN",
        "PD_LISTEN",
        "PD_DATA_DIR",
        "PD_TLS_CERT",
        "PD_TLS_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

// The node serves on the runtime's worker threads while the test waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_is_healthy_over_http_and_https() {
    let node = TestNode::start().await;
    let out = healthcheck()
        .env(
            "PD_LISTEN",
            format!("0.0.0.0:{}", node.server.http_addr().port()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\":\"ok\""));

    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["pd.example".to_owned()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let tls = TestNode::start_with(|c| {
        c.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
    })
    .await;
    let out = healthcheck()
        .arg("--listen")
        .arg(tls.server.http_addr().to_string())
        .env("PD_TLS_CERT", &cert)
        .env("PD_TLS_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the TLS settings the check speaks plain HTTP to the HTTPS port and fails.
    let out = healthcheck()
        .arg("--listen")
        .arg(tls.server.http_addr().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn nothing_listening_is_unhealthy() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = healthcheck()
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/healthz"),
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: GET http://127.0.0.1:"),
        "{stderr}"
    );
}
