//! The seed inputs of each target, taken from the unit and integration tests: the address
//! spellings of `pd_proto::address`'s tests, the headers of `pd_proto::node_auth`'s, the
//! frames of `chat::peer::frame`'s, the shipped configuration files, and signed records and
//! lookup answers built the way the server tests build them (with the fixed key of
//! [`crate::targets::KEY`], dated now).
//!
//! `cargo run -p pd-fuzz --example make_seeds` writes them into `fuzz/corpus/TARGET/` to
//! start a fuzzing run; the corpus test also feeds them to the targets directly.

use pd_proto::node_auth::{NodeAuthorization, request_signing_bytes, server_key_id};
use pd_proto::rotation::RotationProof;
use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Endpoint, Host, Presence, Rotation, SecretKey, Signed, Withdrawal};

use crate::targets::{ADDRESS, KEY};

/// The seeds of `target`, each a name (for its file) and the bytes.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let texts: Vec<Vec<u8>> = match target {
        "address" => ADDRESSES.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "node_auth" => node_auth_headers(),
        "frame" => FRAMES.iter().map(|body| framed(body)).collect(),
        "config" => CONFIGS.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "signed" => signed_envelopes(),
        "lookup_answer" => lookup_answers(),
        _ => Vec::new(),
    };
    texts
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| (format!("seed-{i:02}"), bytes))
        .collect()
}

const ADDRESSES: &[&str] = &[
    "gordon.freeman@blackmesa.us",
    "Gordon.Freeman@BlackMesa.US",
    "gordon.freeman@blackmesa.us.",
    "alice@bücher.example",
    "alice@BÜCHER.example",
    "alice@xn--bcher-kva.example",
    "alice@mastоdon.social",
    "bob@127.0.0.1",
    "bob@[::1]:8448",
    "bob@[2001:DB8::1]",
    "bob@localhost:8080",
    "a@127.1",
    "a@0x7f.0.0.1",
    "a@2130706433",
    "a@1.2.3.999",
    "a@b@c",
    "alice@h%41st",
    "alice@host\r\n",
    "alice@a..b",
    "alice@a-.b",
    "alice@[::1",
    "bob@host:65536",
    "bob@host:80:80",
    "alicé@host",
    "alice-@host",
];

fn node_auth_headers() -> Vec<Vec<u8>> {
    let key = SecretKey::from_seed(&[3; 32]);
    let origin = Host::parse("a.example").expect("a valid host");
    let destination = Host::parse("b.example:8443").expect("a valid host");
    let timestamp = 1_790_000_000;
    let path = "/v1/federation/lookup/alice%40b.example";
    let signature = key.sign(&request_signing_bytes(
        "GET",
        path,
        &origin,
        &destination,
        timestamp,
        b"",
    ));
    let auth = NodeAuthorization {
        origin,
        destination,
        key_id: server_key_id(&key.public()),
        timestamp,
        signature,
    };
    let good = auth.to_string();
    let loose = format!(
        "pd-node  Origin = a.example , destination=\"b.example:8443\", extra=\"x\\\"y\", key=\"{}\",ts=1790000000, sig=\"{}\"",
        auth.key_id, auth.signature
    );
    [
        good.clone(),
        loose,
        good.replacen("PD-Node", "Bearer", 1),
        format!("{good},ORIGIN=\"a.example\""),
        good.replace(",ts=\"1790000000\"", ""),
        good.replace("ts=\"1790000000\"", "ts=\"99999999999999999999\""),
        good.replace("origin=\"a.example\"", "origin=\"a b\""),
        "PD-Node origin=\"a\\".to_owned(),
        "PD-Node origin=\"a\" destination=\"b\"".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

const FRAMES: &[&[u8]] = &[
    br#"{"type":"hello","version":1,"agent":"chat/0.1.0"}"#,
    br#"{"type":"refuse","reason":"key-mismatch","detail":"d"}"#,
    b"{\"type\":\"msg\",\"text\":\"hi\\tthere\"}",
    br#"{"type":"ping"}"#,
    br#"{"type":"bye"}"#,
    br#"{"type":"bye","reason":"user left"}"#,
    br#"{"type":"msg","text":"hi","lang":"en"}"#,
    br#"{"type":"refuse","reason":"busy"}"#,
    b"{\"type\":\"msg\",\"text\":\"\\u001b[2J\"}",
    br#"{"type":"shout","text":"x"}"#,
];

/// A frame body behind its 4-byte length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

const CONFIGS: &[&str] = &[
    include_str!("../../deploy/config.dev.toml"),
    include_str!("../../deploy/config.example.toml"),
    include_str!("../../deploy/compose/node.toml"),
    "domain = \"Chat.Example\"\nlisten = \"0.0.0.0:443\"\ndata_dir = \"/var/lib/pd\"\nregistration = \"invite\"\nlookup_access = \"public\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\nsession_ttl = \"30m\"\nlog_format = \"json\"\nstore = \"postgres://pd@db.internal/pd\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[limits]\nmax_body_bytes = 4096\nrequest_timeout = \"2s\"\n[rate_limit]\nwrites_per_second = 1\nburst = 3\n[cache]\nmax_accounts = 10\nshared_ttl = \"500ms\"\n",
    "domain = \"home.example\"\n[trust]\nmode = \"allowlist\"\nallow = [\"blackmesa.us\", \"*.aperture.example\"]\ndeny = [\"xen.example\", { domain = \"spam.example\", reason = \"spam wave\", expires = \"2999-01-01T00:00:00Z\" }]\n",
    "domain = \"home.example\"\n[trust]\nmode = \"allowlist\"\nsubscriptions = [{ url = \"https://lists.example/allow.txt\", kind = \"allow\" }]\n",
    "[rate_limit]\nburst = 0",
    "trusted_proxies = [\"10.0.0.1/99\"]",
    "store = \"postgres://db:port/pd\"",
];

/// A presence record of [`ADDRESS`] valid for an hour from now.
fn presence() -> Presence {
    let now = pd_proto::now_micros();
    Presence {
        address: ADDRESS.clone(),
        endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").expect("a valid endpoint")],
        seq: now,
        expires_at: now / 1_000_000 + 3600,
    }
}

fn signed_envelopes() -> Vec<Vec<u8>> {
    let online = Signed::sign(&KEY, &presence());
    let withdrawal = Signed::sign(
        &KEY,
        &Withdrawal {
            address: ADDRESS.clone(),
            seq: pd_proto::now_micros(),
        },
    );
    let mut other = presence();
    other.address = pd_proto::Address::parse("bob@example.com").expect("a valid address");
    let other = Signed::sign(&KEY, &other);
    [
        serde_json::to_vec(&online),
        serde_json::to_vec(&withdrawal),
        serde_json::to_vec(&other),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}

fn lookup_answers() -> Vec<Vec<u8>> {
    let old = SecretKey::from_seed(&[8; 32]);
    let rotation = Signed::sign(
        &old,
        &Rotation {
            address: ADDRESS.clone(),
            new_key: KEY.public(),
            seq: pd_proto::now_micros() - 1_000_000,
        },
    );
    let proof = RotationProof::new(
        old.public(),
        rotation.clone(),
        rotation.countersign(&KEY, &ADDRESS),
    );
    let answer = |online: bool, rotations: Vec<RotationProof>| LookupResponse {
        address: ADDRESS.clone(),
        public_key: KEY.public(),
        presence: online.then(|| Signed::sign(&KEY, &presence())),
        rotations,
        source: Source::Local,
        ttl: 3600,
    };
    let mut about_bob = answer(true, Vec::new());
    about_bob.address = pd_proto::Address::parse("bob@example.com").expect("a valid address");
    [
        answer(true, Vec::new()),
        answer(false, Vec::new()),
        answer(true, vec![proof.clone()]),
        answer(false, vec![proof]),
        about_bob,
    ]
    .iter()
    .filter_map(|answer| serde_json::to_vec(answer).ok())
    .collect()
}
