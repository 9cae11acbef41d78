//! SSRF through the real resolver: the `pd-server` binary runs in a private network
//! namespace whose `/etc/hosts` (bind-mounted by `ip netns exec` from
//! `/etc/netns/NAME/hosts`) maps names to loopback, RFC 1918, link-local (cloud metadata),
//! IPv4-mapped IPv6, NAT64 and 6to4 addresses, and one name whose answer changes between
//! discovery and connect (DNS rebinding). The node must refuse every one at connect time,
//! and must ignore `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` in its environment.
//!
//! The namespace is joined to this test's namespace by a veth pair on a /30 of
//! 192.31.196.0/24 (an address block the node's filter allows, so the "good" answer of the
//! rebinding name is reachable). The namespace has no other route: nothing it does can
//! leave the machine. Needs root and iproute2; with `CI=true` a missing prerequisite is a
//! failure, otherwise the test is skipped with a line on stderr.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pd_federation::config::StaticPeer;
use pd_proto::ProblemType;
use pd_server::config::{Config, LookupAccess, TlsConfig};

use crate::util::{TestNode, User};

/// A network namespace with a veth pair to this namespace and its own hosts file; removed
/// on drop.
struct Namespace {
    name: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    hosts: PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Namespace {
    fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let name = format!("pdh{}", pid % 10_000_000);
        let subnet = u8::try_from(pid % 64).unwrap_or(0) * 4;
        let host_ip = Ipv4Addr::new(192, 31, 196, subnet + 1);
        let ns_ip = Ipv4Addr::new(192, 31, 196, subnet + 2);
        let dir = PathBuf::from("/etc/netns").join(&name);
        let namespace = Self {
            hosts: dir.join("hosts"),
            name: name.clone(),
            host_ip,
            ns_ip,
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Any name not in the hosts file is asked of a resolver that does not exist.
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .map_err(|e| format!("cannot write resolv.conf: {e}"))?;
        let (outside, inside) = (format!("{name}h"), format!("{name}n"));
        ip(&["netns", "add", &name])?;
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &name])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outside])?;
        ip(&["link", "set", &outside, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &inside,
        ])?;
        ip(&["-n", &name, "link", "set", &inside, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// Writes the hosts file in place: `ip netns exec` bind-mounted this very file, so a
    /// replacement by rename would not be seen.
    fn set_hosts(&self, entries: &[(&str, String)]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, ip) in entries {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(&self.hosts, text).unwrap();
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &format!("{}h", self.name)]);
        let _ = ip(&["netns", "del", &self.name]);
        if let Some(dir) = self.hosts.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The `pd-server` binary in the namespace, killed on drop.
struct NsNode {
    child: Child,
    log: PathBuf,
}

impl NsNode {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts connections to a listener that answers nothing (the proxy the environment names).
async fn counting_listener(
    addr: SocketAddr,
) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, hits, task)
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("it needs root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("it needs iproute2 (ip)".into());
    }
    None
}

fn write_cert(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test]
async fn the_node_refuses_internal_addresses_from_the_real_resolver_and_ignores_proxies() {
    if let Some(reason) = missing_prerequisite() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the network namespace SSRF test cannot run on CI: {reason}"
        );
        eprintln!("skipped the network namespace SSRF test: {reason}");
        return;
    }
    let ns = Namespace::create().unwrap_or_else(|e| panic!("cannot set up the namespace: {e}"));
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(work.path(), &["rebind.test"]);
    let node_port = 8080;
    let node_addr = SocketAddr::from((ns.ns_ip, node_port));

    // The "good" node for rebind.test, in this namespace on the veth address, over HTTPS.
    // It reaches the namespaced node (home.test) through a static route for key fetches.
    let good_dir = tempfile::tempdir().unwrap();
    let mut good_config = Config::for_tests(good_dir.path());
    good_config.domain = pd_proto::Host::parse("rebind.test").unwrap();
    good_config.listen = SocketAddr::from((ns.host_ip, 443));
    good_config.lookup_access = LookupAccess::Public;
    good_config.tls = Some(TlsConfig {
        cert: cert.clone(),
        key: key.clone(),
    });
    let peer: StaticPeer = format!("home.test=http://{node_addr}").parse().unwrap();
    good_config.federation.peers.push(peer);
    let good = TestNode::bind(good_config, good_dir).await;
    let good_client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .resolve("rebind.test", SocketAddr::from((ns.host_ip, 443)))
        .build()
        .unwrap();
    let alice = User::at("alice", "rebind.test");
    let resp = good_client
        .post("https://rebind.test/v1/accounts")
        .json(&alice.registration())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    // The proxy every proxy variable names: it must never see a connection.
    let (proxy, proxy_hits, proxy_task) =
        counting_listener(SocketAddr::from((ns.host_ip, 0))).await;

    let hostile: Vec<(&str, &str)> = vec![
        ("loopback.test", "127.0.0.1"),
        ("loopback6.test", "::1"),
        ("private.test", "10.1.2.3"),
        ("private172.test", "172.16.5.4"),
        ("private192.test", "192.168.1.1"),
        ("metadata.test", "169.254.169.254"),
        ("mapped.test", "::ffff:127.0.0.1"),
        ("mapped-metadata.test", "::ffff:169.254.169.254"),
        ("nat64.test", "64:ff9b::a9fe:a9fe"),
        ("sixtofour.test", "2002:7f00:1::1"),
        ("unspecified.test", "0.0.0.0"),
        ("ula.test", "fd00::1"),
    ];
    let mut entries: Vec<(&str, String)> =
        hostile.iter().map(|(n, a)| (*n, (*a).to_owned())).collect();
    entries.push(("rebind.test", ns.host_ip.to_string()));
    entries.push(("home.test", ns.ns_ip.to_string()));
    ns.set_hosts(&entries);

    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = work.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "lookup_access = \"public\"\n[federation]\nca_file = {:?}\n",
            cert.display().to_string()
        ),
    )
    .unwrap();
    let log = work.path().join("node.log");
    let proxy_url = format!("http://{proxy}");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(env!("CARGO_BIN_EXE_pd-server"))
        .arg("--config")
        .arg(&config)
        .args([
            "--domain",
            "home.test",
            "--listen",
            &node_addr.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("https_proxy", &proxy_url)
        .env("all_proxy", &proxy_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let node = NsNode { child, log };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://{node_addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the node did not start: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every internal address is refused at connect time, with the address named in the log.
    for (name, address) in &hostile {
        let resp = client
            .get(format!("{base}/v1/lookup/alice@{name}"))
            .send()
            .await
            .unwrap();
        crate::util::assert_problem(resp, 502, ProblemType::NoPdNode).await;
        let log = node.log();
        let canonical: std::net::IpAddr = address.parse().unwrap();
        assert!(
            log.lines().any(
                |l| l.contains("refused to connect: forbidden addresses only")
                    && l.contains(name)
                    && l.contains(&canonical.to_string())
            ),
            "no refusal of {name} ({address}) in the log:\n{log}"
        );
    }

    // DNS rebinding: rebind.test first answers with the good node, which the lookup reaches
    // (without the proxy); then it answers with loopback, and a new connection is refused.
    let resp = client
        .get(format!("{base}/v1/lookup/alice@rebind.test"))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["source"], "remote", "{text}\n{}", node.log());
    assert_eq!(answer["public_key"], alice.key.public().to_string());
    good.server.shutdown().await.unwrap();
    entries.retain(|(name, _)| *name != "rebind.test");
    entries.push(("rebind.test", "127.0.0.1".to_owned()));
    ns.set_hosts(&entries);
    let resp = client
        .get(format!("{base}/v1/lookup/alice@rebind.test?mode=refresh"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status > 500, "after rebinding: {status} {text}");
    let log = node.log();
    assert!(
        log.lines().any(
            |l| l.contains("refused to connect: forbidden addresses only")
                && l.contains("rebind.test")
                && l.contains("127.0.0.1")
        ),
        "the rebound name was not refused at connect time:\n{log}"
    );

    assert_eq!(
        proxy_hits.load(Ordering::SeqCst),
        0,
        "the node used the proxy from its environment"
    );
    proxy_task.abort();
    drop(node);
}
