//! Regressions of issue 12 about connections: idle and slowly dripping connections are
//! closed, one address cannot hold more than its share, and other clients are served
//! meanwhile, over HTTP and HTTPS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pd_proto::ProblemType;
use pd_server::config::{Config, TlsConfig};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{TestNode, assert_problem};

/// An address on the loopback network other than the attacker's 127.0.0.1.
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `addr` from `from`.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Waits until the server closes `stream` (end of file or an error), reading and dropping
/// what it sends; returns what it sent, or `None` if it was still open at `deadline`.
async fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A `pd-server run` process with at most 256 open files and the default limits, killed on
/// drop.
struct SmallNode {
    child: std::process::Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl SmallNode {
    fn start() -> Self {
        use std::io::BufRead as _;
        let data = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_pd-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("run")
            .env_remove("PD_CONFIG")
            .env_remove("PD_STORE")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to the end, so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listen.addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("pd-server reported its address")
            .unwrap();
        Self {
            child,
            addr,
            _data: data,
        }
    }
}

impl Drop for SmallNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attack of issue 12, against a node started with 256 open files and the default
/// limits: 300 connections from one address that send nothing and 40 that drip a request
/// head, a byte at a time. Another client is served at once all along; the connections
/// beyond the address's share are answered 429 and closed at once; every attacking
/// connection is closed within the header read timeout (10 s by default).
#[tokio::test]
async fn idle_and_dripping_connections_do_not_starve_other_clients() {
    let node = SmallNode::start();
    let attacker = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(attacker, node.addr).await);
    }
    let mut drippers = Vec::new();
    for _ in 0..40 {
        let mut stream = connect_from(attacker, node.addr).await;
        // A write may fail once the node has refused the connection.
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await;
        drippers.push(stream);
    }
    let dripping = tokio::spawn(async move {
        let mut open = drippers;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for stream in &mut open {
                let _ = stream.write_all(b"X").await;
            }
        }
        open
    });

    // Another client is served at once, again and again, while the attack lasts.
    let client = reqwest::Client::builder()
        .local_address(OTHER_CLIENT)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://{}/healthz", node.addr);
    for _ in 0..5 {
        let asked = Instant::now();
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A further connection from the attacker's address gets a problem document at once.
    let resp = reqwest::Client::new().get(&url).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 429, ProblemType::RateLimited).await;

    // The connections beyond the address's share of 64 were refused and closed at once.
    let soon = Instant::now() + Duration::from_secs(1);
    let mut refused = 0;
    let mut held = Vec::new();
    for mut stream in idle {
        match closed_by_server(&mut stream, soon).await {
            Some(_) => refused += 1,
            None => held.push(stream),
        }
    }
    assert!(
        refused >= 300 - 64,
        "only {refused} of 300 were refused at once"
    );
    // Every other attacking connection is closed within the header read timeout (and a
    // margin for a loaded machine).
    let deadline = started + Duration::from_secs(16);
    for stream in &mut held {
        assert!(
            closed_by_server(stream, deadline).await.is_some(),
            "an idle connection is still open after the header read timeout"
        );
    }
    let mut drippers = dripping.await.unwrap();
    for stream in &mut drippers {
        assert!(
            closed_by_server(stream, deadline).await.is_some(),
            "a dripping connection is still open after the header read timeout"
        );
    }
    // Once the attack is over, its address is served again.
    let resp = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A self-signed certificate for `localhost`, written into `dir`: (cert path, key path,
/// PEM of the certificate).
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// The same over HTTPS, with short timeouts: a connection that never starts its handshake,
/// and one that drips a request head after the handshake, are both closed; the address's
/// share is enforced; another client is served meanwhile.
#[tokio::test]
async fn https_closes_stalled_handshakes_and_dripping_heads() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(dir.path());
    let node = TestNode::start_with(|c: &mut Config| {
        c.tls = Some(TlsConfig { cert, key });
        c.limits.header_read_timeout = Duration::from_secs(1);
        c.limits.max_connections_per_ip = 4;
    })
    .await;
    let addr = node.server.http_addr();
    let attacker = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let started = Instant::now();

    // No handshake at all.
    let mut silent = connect_from(attacker, addr).await;
    // A handshake, then a request head dripping a byte every 200 ms.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = connect_from(attacker, addr).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut dripping = connector.connect(name, tcp).await.unwrap();
    dripping
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        let mut buf = [0u8; 256];
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if dripping.write_all(b"X").await.is_err() {
                return Some(started.elapsed());
            }
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), dripping.read(&mut buf)).await
            {
                return Some(started.elapsed());
            }
        }
        None
    });
    // Two more idle connections fill the address's share of 4; a fifth is closed at once,
    // without an answer (answering would cost a handshake).
    let mut fillers = vec![
        connect_from(attacker, addr).await,
        connect_from(attacker, addr).await,
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = connect_from(attacker, addr).await;
    let got = closed_by_server(&mut fifth, Instant::now() + Duration::from_millis(500)).await;
    assert_eq!(
        got,
        Some(Vec::new()),
        "the fifth connection is closed at once"
    );

    // Another client is served meanwhile.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .local_address(OTHER_CLIENT)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let deadline = started + Duration::from_secs(5);
    assert!(
        closed_by_server(&mut silent, deadline).await.is_some(),
        "a connection without a handshake is still open"
    );
    for filler in &mut fillers {
        assert!(closed_by_server(filler, deadline).await.is_some());
    }
    let closed_after = drip
        .await
        .unwrap()
        .expect("the dripping connection was never closed");
    assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");
}

/// An HTTP/1.1 connection left idle after an answer is closed after the header read
/// timeout, which counts from the end of the answer.
#[tokio::test]
async fn kept_alive_connections_are_closed_when_idle() {
    let node = TestNode::start_with(|c| {
        c.limits.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = node.server.http_addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_since = Instant::now();
    let got = closed_by_server(&mut stream, idle_since + Duration::from_secs(3)).await;
    assert_eq!(got, Some(Vec::new()));
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(400), "{idle:?}");
}
