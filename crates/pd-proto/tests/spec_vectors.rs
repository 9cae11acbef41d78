//! Checks the test vectors published in `federation-spec.md` against this crate.
//!
//! The spec holds a block of `vector.<name> = <value>` lines between the markers
//! `<!-- test-vectors:begin -->` and `<!-- test-vectors:end -->`. This test recomputes every
//! value from the fixed seed and records with `pd-proto` and requires byte equality, and it
//! verifies the published signatures with [`PublicKey::verify`], so the spec cannot drift
//! from the code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pd_proto::node_auth::{NodeAuthorization, request_signing_bytes, server_key_id};
use pd_proto::rotation::{link_known_key, verify_rotation_chain};
use pd_proto::signed::{Purpose, signing_bytes};
use pd_proto::{
    Address, Endpoint, Host, Presence, PublicKey, Record, Registration, Rotation, RotationProof,
    SecretKey, Signature, Signed,
};

const BEGIN: &str = "<!-- test-vectors:begin -->";
const END: &str = "<!-- test-vectors:end -->";

/// The `vector.*` lines of the spec, by name.
fn spec_vectors() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../federation-spec.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let start = text
        .find(BEGIN)
        .expect("spec has no test-vectors:begin marker");
    let end = text.find(END).expect("spec has no test-vectors:end marker");
    assert!(start < end, "test-vector markers are out of order");
    let mut vectors = BTreeMap::new();
    for line in text[start + BEGIN.len()..end].lines() {
        let Some(rest) = line.strip_prefix("vector.") else {
            continue;
        };
        let (name, value) = rest
            .split_once(" = ")
            .unwrap_or_else(|| panic!("malformed vector line {line:?}"));
        let previous = vectors.insert(name.trim().to_owned(), value.trim().to_owned());
        assert!(previous.is_none(), "vector {name} is defined twice");
    }
    vectors
}

fn get<'a>(vectors: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    vectors
        .get(name)
        .unwrap_or_else(|| panic!("spec has no vector.{name}"))
}

/// Values written as JSON strings in the spec (used where the value holds quotes or
/// newlines, which the spec shows escaped).
fn json_string(vectors: &BTreeMap<String, String>, name: &str) -> String {
    serde_json::from_str(get(vectors, name))
        .unwrap_or_else(|e| panic!("vector.{name} is not a JSON string: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i + 1).unwrap())
}

/// Checks one signed record's published vectors under the prefix `name`.
fn check_record<T: Record>(
    vectors: &BTreeMap<String, String>,
    name: &str,
    purpose: Purpose,
    record: &T,
) {
    let key = SecretKey::from_seed(&seed());
    let public = key.public();
    let address = Address::parse(get(vectors, &format!("{name}.address"))).unwrap();
    assert_eq!(record.address(), &address, "{name}: record address");

    let payload = serde_json::to_vec(record).unwrap();
    assert_eq!(
        String::from_utf8(payload.clone()).unwrap(),
        get(vectors, &format!("{name}.payload")),
        "{name}: payload bytes"
    );

    let bytes = signing_bytes(purpose, &address, &payload);
    assert_eq!(purpose, T::PURPOSE, "{name}: purpose");
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        json_string(vectors, &format!("{name}.signing_bytes")),
        "{name}: signing bytes"
    );

    let envelope = Signed::sign(&key, record);
    assert_eq!(
        envelope.payload(),
        payload.as_slice(),
        "{name}: envelope payload"
    );
    assert_eq!(
        envelope.signature().to_string(),
        get(vectors, &format!("{name}.signature")),
        "{name}: signature"
    );
    assert_eq!(
        serde_json::to_string(&envelope).unwrap(),
        get(vectors, &format!("{name}.envelope")),
        "{name}: envelope JSON"
    );

    // The published signature verifies on its own, and the published envelope parses and
    // verifies under the published key for the published address.
    let signature: Signature = get(vectors, &format!("{name}.signature")).parse().unwrap();
    let published_key: PublicKey = get(vectors, "public_key").parse().unwrap();
    assert_eq!(published_key, public, "{name}: signing key");
    published_key.verify(&bytes, &signature).unwrap();
    let parsed: Signed<T> =
        serde_json::from_str(get(vectors, &format!("{name}.envelope"))).unwrap();
    parsed.verify(&published_key, &address).unwrap();

    // A signature for this record is useless for another purpose.
    let other = if purpose == Purpose::Login {
        Purpose::Register
    } else {
        Purpose::Login
    };
    assert!(
        published_key
            .verify(&signing_bytes(other, &address, &payload), &signature)
            .is_err(),
        "{name}: signature must not verify under another purpose"
    );
}

#[test]
fn key_vectors_match_the_spec() {
    let vectors = spec_vectors();
    assert_eq!(get(&vectors, "seed"), hex(&seed()), "seed");
    let key = SecretKey::from_seed(&seed());
    assert_eq!(get(&vectors, "public_key"), key.public().to_string());
    assert_eq!(
        get(&vectors, "public_key_hex"),
        hex(&key.public().to_bytes())
    );
    assert_eq!(get(&vectors, "fingerprint"), key.public().fingerprint());
    assert_eq!(get(&vectors, "secret_key_text"), key.to_text().trim_end());
}

#[test]
fn presence_vectors_match_the_spec() {
    let vectors = spec_vectors();
    let record = Presence {
        address: Address::parse(get(&vectors, "presence.address")).unwrap(),
        endpoints: get(&vectors, "presence.endpoints")
            .split(' ')
            .map(|e| Endpoint::parse(e).unwrap())
            .collect(),
        seq: get(&vectors, "presence.seq").parse().unwrap(),
        expires_at: get(&vectors, "presence.expires_at").parse().unwrap(),
    };
    check_record(&vectors, "presence", Purpose::Presence, &record);
    // The record is valid at the moment it was made.
    record.validate(record.seq).unwrap();
}

#[test]
fn registration_vectors_match_the_spec() {
    let vectors = spec_vectors();
    let record = Registration {
        address: Address::parse(get(&vectors, "registration.address")).unwrap(),
        public_key: get(&vectors, "public_key").parse().unwrap(),
        seq: get(&vectors, "registration.seq").parse().unwrap(),
    };
    check_record(&vectors, "registration", Purpose::Register, &record);
}

#[test]
fn rotation_vectors_match_the_spec() {
    let vectors = spec_vectors();
    let new_seed = get(&vectors, "rotation.new_seed");
    assert_eq!(new_seed.len(), 64, "new_seed is 32 bytes of hex");
    let new_seed: [u8; 32] =
        std::array::from_fn(|i| u8::from_str_radix(&new_seed[2 * i..2 * i + 2], 16).unwrap());
    let new_key = SecretKey::from_seed(&new_seed);
    assert_eq!(
        get(&vectors, "rotation.new_key"),
        new_key.public().to_string()
    );
    let address = Address::parse(get(&vectors, "rotation.address")).unwrap();
    let record = Rotation {
        address: address.clone(),
        new_key: new_key.public(),
        seq: get(&vectors, "rotation.seq").parse().unwrap(),
    };
    check_record(&vectors, "rotation", Purpose::Rotate, &record);

    // The countersignature: the same payload, purpose rotate-accept, signed by the new key.
    let old_key = SecretKey::from_seed(&seed());
    let envelope = Signed::sign(&old_key, &record);
    let accept = signing_bytes(Purpose::RotateAccept, &address, envelope.payload());
    assert_eq!(
        String::from_utf8(accept).unwrap(),
        json_string(&vectors, "rotation.accept_signing_bytes"),
        "rotate-accept signing bytes"
    );
    let countersignature = envelope.countersign(&new_key, &address);
    assert_eq!(
        countersignature.to_string(),
        get(&vectors, "rotation.new_key_signature")
    );

    // The proof a node keeps and serves, and the chain of that one proof.
    let proof = RotationProof::new(old_key.public(), envelope, countersignature);
    assert_eq!(
        serde_json::to_string(&proof).unwrap(),
        get(&vectors, "rotation.proof"),
        "rotation proof JSON"
    );
    let published: RotationProof = serde_json::from_str(get(&vectors, "rotation.proof")).unwrap();
    assert_eq!(published.verify(&address).unwrap(), record);
    let chain = [published];
    verify_rotation_chain(&address, &chain, &new_key.public()).unwrap();
    assert_eq!(
        link_known_key(&address, &old_key.public(), &chain, &new_key.public()),
        Ok(1)
    );
    // The proof is about exactly this address.
    let other = Address::parse("alice@example.net").unwrap();
    assert!(verify_rotation_chain(&other, &chain, &new_key.public()).is_err());
}

#[test]
fn node_request_vectors_match_the_spec() {
    let vectors = spec_vectors();
    let key = SecretKey::from_seed(&seed());
    let origin = Host::parse(get(&vectors, "node.origin")).unwrap();
    let destination = Host::parse(get(&vectors, "node.destination")).unwrap();
    assert_eq!(
        origin.to_string(),
        get(&vectors, "node.origin"),
        "origin normal form"
    );
    assert_eq!(
        destination.to_string(),
        get(&vectors, "node.destination"),
        "destination normal form"
    );
    let method = get(&vectors, "node.method");
    let path = get(&vectors, "node.path_and_query");
    let ts: u64 = get(&vectors, "node.ts").parse().unwrap();
    assert_eq!(get(&vectors, "node.body"), "(empty)");

    assert_eq!(get(&vectors, "node.key_id"), server_key_id(&key.public()));
    let bytes = request_signing_bytes(method, path, &origin, &destination, ts, b"");
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        json_string(&vectors, "node.signing_bytes"),
        "node request signing bytes"
    );
    let signature = key.sign(&bytes);
    assert_eq!(signature.to_string(), get(&vectors, "node.signature"));

    let auth = NodeAuthorization {
        origin,
        destination,
        key_id: server_key_id(&key.public()),
        timestamp: ts,
        signature,
    };
    let header = get(&vectors, "node.authorization");
    assert_eq!(auth.to_string(), header, "Authorization header value");

    // The published header parses back, and its signature verifies under the published key
    // over the request it was made for, and for no other path.
    let parsed = NodeAuthorization::parse(header).unwrap();
    assert_eq!(parsed, auth);
    let published_key: PublicKey = get(&vectors, "public_key").parse().unwrap();
    published_key
        .verify(&parsed.signing_bytes(method, path, b""), &parsed.signature)
        .unwrap();
    assert!(
        published_key
            .verify(
                &parsed.signing_bytes(method, &format!("{path}?x"), b""),
                &parsed.signature
            )
            .is_err()
    );
}

#[test]
fn spec_vectors_are_all_checked() {
    let mut known: Vec<String> = [
        "seed",
        "public_key",
        "public_key_hex",
        "fingerprint",
        "secret_key_text",
        "presence.endpoints",
        "presence.expires_at",
    ]
    .map(str::to_owned)
    .to_vec();
    for field in [
        "new_seed",
        "new_key",
        "accept_signing_bytes",
        "new_key_signature",
        "proof",
    ] {
        known.push(format!("rotation.{field}"));
    }
    for record in ["presence", "registration", "rotation"] {
        for field in [
            "address",
            "seq",
            "payload",
            "signing_bytes",
            "signature",
            "envelope",
        ] {
            known.push(format!("{record}.{field}"));
        }
    }
    for field in [
        "origin",
        "destination",
        "method",
        "path_and_query",
        "ts",
        "body",
        "key_id",
        "signing_bytes",
        "signature",
        "authorization",
    ] {
        known.push(format!("node.{field}"));
    }
    for name in vectors_names() {
        assert!(
            known.contains(&name),
            "vector.{name} is published but not checked by this test"
        );
    }
}

fn vectors_names() -> Vec<String> {
    spec_vectors().into_keys().collect()
}
