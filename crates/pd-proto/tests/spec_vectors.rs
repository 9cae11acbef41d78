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
    // The key text, and the key file: the text and one LF.
    let file = json_string(&vectors, "secret_key_file");
    assert_eq!(file, key.to_text(), "secret key file");
    assert_eq!(format!("{}\n", get(&vectors, "secret_key_text")), file);
    for text in [file.as_str(), get(&vectors, "secret_key_text")] {
        assert_eq!(SecretKey::from_text(text).unwrap().public(), key.public());
    }
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

    // The same request with the header spelled differently: hosts in another case and
    // with a leading zero in the port, `ts` with leading zeros. The signing bytes are built
    // from the normal forms and the value of `ts`, so the same signature verifies.
    let variant = NodeAuthorization::parse(get(&vectors, "node.authorization_variant")).unwrap();
    assert_eq!(variant, auth, "the variant header means the same");
    assert_eq!(
        variant.signing_bytes(method, path, b""),
        bytes,
        "variant signing bytes"
    );
    published_key
        .verify(
            &variant.signing_bytes(method, path, b""),
            &variant.signature,
        )
        .unwrap();
    let variant_text = get(&vectors, "node.authorization_variant");
    assert!(variant_text.contains("ts=\"0") && variant_text != header);
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
        "authorization_variant",
    ] {
        known.push(format!("node.{field}"));
    }
    for field in [
        "high_s_signature",
        "small_order_r_signature",
        "weak_keys",
        "weak_key_signature",
        "noncanonical_key",
    ] {
        known.push(format!("strict.{field}"));
    }
    known.push("secret_key_file".to_owned());
    for name in [
        "host.accept",
        "host.refuse",
        "endpoint.accept",
        "endpoint.refuse",
    ] {
        known.push(name.to_owned());
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

/// The group order L, little-endian (RFC 8032 section 5.1).
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    assert_eq!(text.len(), 2 * N, "{text:?} is not {N} bytes of hex");
    std::array::from_fn(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
}

fn signature_from(r: &[u8; 32], s: &[u8; 32]) -> Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(r);
    bytes[32..].copy_from_slice(s);
    Signature::from_bytes(&bytes)
}

/// The library's own, non-strict check: the cofactorless equation with a canonical `S`,
/// without the small-order refusals. Each refusal vector passes it (or fails only on the
/// rule it illustrates), so that the vector shows what the strict rules add.
fn verifies_loosely(key: &[u8; 32], message: &[u8], signature: &Signature) -> bool {
    use ed25519_dalek::Verifier as _;
    let key = ed25519_dalek::VerifyingKey::from_bytes(key).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&signature.to_bytes());
    key.verify(message, &signature).is_ok()
}

#[test]
fn strict_verification_vectors_match_the_spec() {
    use curve25519_dalek::Scalar;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use sha2::{Digest, Sha512};

    let vectors = spec_vectors();
    let key = SecretKey::from_seed(&seed());
    let public = key.public().to_bytes();
    let message = json_string(&vectors, "registration.signing_bytes").into_bytes();
    let good: Signature = get(&vectors, "registration.signature").parse().unwrap();
    key.public().verify(&message, &good).unwrap();
    let good = good.to_bytes();
    let r: [u8; 32] = good[..32].try_into().unwrap();
    let s: [u8; 32] = good[32..].try_into().unwrap();

    // L is the order: it is not a canonical scalar and reduces to zero.
    assert!(bool::from(
        Scalar::from_canonical_bytes(GROUP_ORDER).is_none()
    ));
    assert_eq!(Scalar::from_bytes_mod_order(GROUP_ORDER), Scalar::ZERO);

    // 1. S + L: the same signature with a non-canonical scalar. It reduces to the good S,
    //    so only the rule S < L refuses it.
    let mut high_s = [0u8; 32];
    let mut carry = 0u16;
    for ((out, a), b) in high_s.iter_mut().zip(s).zip(GROUP_ORDER) {
        let sum = u16::from(a) + u16::from(b) + carry;
        *out = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(
        Scalar::from_bytes_mod_order(high_s),
        Scalar::from_canonical_bytes(s).unwrap()
    );
    let high_s = signature_from(&r, &high_s);
    assert_eq!(high_s.to_string(), get(&vectors, "strict.high_s_signature"));
    assert!(key.public().verify(&message, &high_s).is_err());

    // 2. R of small order (the identity) with S = k·a: the cofactorless equation holds,
    //    only the small-order rule for R refuses it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(identity)
            .chain_update(public)
            .chain_update(&message),
    );
    let a = ed25519_dalek::SigningKey::from_bytes(&seed()).to_scalar();
    let small_r = signature_from(&identity, &(k * a).to_bytes());
    assert_eq!(
        small_r.to_string(),
        get(&vectors, "strict.small_order_r_signature")
    );
    assert!(verifies_loosely(&public, &message, &small_r));
    assert!(key.public().verify(&message, &small_r).is_err());

    // 3. The eight canonical encodings of the points of small order: each is refused as a
    //    key ("weak"), and they are exactly the library's eight-torsion points.
    let weak: Vec<[u8; 32]> = get(&vectors, "strict.weak_keys")
        .split(' ')
        .map(unhex::<32>)
        .collect();
    let mut torsion: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
    let mut listed = weak.clone();
    torsion.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        listed, torsion,
        "strict.weak_keys are the eight small-order points"
    );
    for bytes in &weak {
        let point = CompressedEdwardsY(*bytes).decompress().unwrap();
        assert!(point.is_small_order());
        assert_eq!(
            PublicKey::from_bytes(bytes),
            Err(pd_proto::KeyError::WeakKey)
        );
    }

    // 4. Under the identity as key, R = identity and S = 0 pass the cofactorless equation
    //    for every message; the weak key refuses it.
    let forged = signature_from(&identity, &[0; 32]);
    assert_eq!(
        forged.to_string(),
        get(&vectors, "strict.weak_key_signature")
    );
    assert!(verifies_loosely(&identity, &message, &forged));
    assert!(verifies_loosely(&identity, b"any other message", &forged));

    // 5. A non-canonical key encoding: y = p + c with y mod p = c on the curve and not of
    //    small order. ed25519-dalek decodes it; a PD key parser refuses it.
    let noncanonical: [u8; 32] = unhex(get(&vectors, "strict.noncanonical_key"));
    let mut p_plus = [0xffu8; 32];
    p_plus[31] = 0x7f;
    let c = noncanonical[0]
        .checked_sub(0xed)
        .expect("strict.noncanonical_key is p + c");
    p_plus[0] = 0xed + c;
    assert_eq!(noncanonical, p_plus, "strict.noncanonical_key is p + {c}");
    let point = CompressedEdwardsY(noncanonical).decompress().unwrap();
    assert!(!point.is_small_order());
    let mut canonical = [0u8; 32];
    canonical[0] = c;
    assert_eq!(point.compress().0, canonical);
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&noncanonical).is_ok());
    assert_eq!(
        PublicKey::from_bytes(&noncanonical),
        Err(pd_proto::KeyError::InvalidKey)
    );
    assert!(PublicKey::from_bytes(&canonical).is_ok());
    // It is the smallest such c, so the vector is not a choice.
    for smaller in 0..c {
        let mut bytes = p_plus;
        bytes[0] = 0xed + smaller;
        if let Some(point) = CompressedEdwardsY(bytes).decompress() {
            assert!(point.is_small_order(), "p + {smaller} is a better vector");
        }
    }
}

/// A vector holding a JSON value.
fn json_vector<T: serde::de::DeserializeOwned>(
    vectors: &BTreeMap<String, String>,
    name: &str,
) -> T {
    serde_json::from_str(get(vectors, name))
        .unwrap_or_else(|e| panic!("vector.{name} is not the expected JSON: {e}"))
}

#[test]
fn host_and_endpoint_vectors_match_the_spec() {
    let vectors = spec_vectors();
    let accept: Vec<(String, String)> = json_vector(&vectors, "host.accept");
    for (input, normal) in &accept {
        let host = Host::parse(input).unwrap_or_else(|e| panic!("host {input:?} refused: {e}"));
        assert_eq!(&host.to_string(), normal, "normal form of host {input:?}");
        // The same host in an address.
        let address = Address::parse(&format!("a@{input}")).unwrap();
        assert_eq!(address.to_string(), format!("a@{normal}"));
    }
    let refuse: Vec<String> = json_vector(&vectors, "host.refuse");
    for input in &refuse {
        assert!(Host::parse(input).is_err(), "host {input:?} accepted");
        assert!(
            Address::parse(&format!("a@{input}")).is_err(),
            "address a@{input} accepted"
        );
    }
    let accept: Vec<String> = json_vector(&vectors, "endpoint.accept");
    for input in &accept {
        let endpoint =
            Endpoint::parse(input).unwrap_or_else(|e| panic!("endpoint {input:?} refused: {e}"));
        // Endpoints are kept as written, never normalised.
        assert_eq!(endpoint.as_str(), input);
    }
    let refuse: Vec<String> = json_vector(&vectors, "endpoint.refuse");
    for input in &refuse {
        assert!(
            Endpoint::parse(input).is_err(),
            "endpoint {input:?} accepted"
        );
    }
}

/// The example of section 12.6: the group line's payload and signature as the spec prints
/// them are what `pd-proto` produces for the seed `01…01`, and the signature verifies over
/// the `group-line` signing bytes.
#[test]
fn group_line_example_matches_the_spec() {
    use pd_proto::group::{GroupId, GroupLine};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../federation-spec.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = &text[text.find("### 12.6").expect("spec has no section 12.6")..];
    // The example block: its lines are `payload   …`, `signing   …`, `signature …`.
    let section = &section[section.find("\npayload   ").expect("no example in 12.6") + 1..];
    let field = |name: &str| {
        section
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("section 12.6 has no {name:?} line"))
            .trim()
            .to_owned()
    };
    let (payload, signature) = (field("payload "), field("signature "));
    let key = SecretKey::from_seed(&[1; 32]);
    let author = Address::parse("bob@b.example").unwrap();
    let post = Signed::sign(
        &key,
        &GroupLine {
            group: GroupId::from_bytes(&[7; 16]),
            author: author.clone(),
            counter: 1,
            time: 1_790_000_000_000_000,
            text: "hi".into(),
        },
    );
    assert_eq!(std::str::from_utf8(post.payload()).unwrap(), payload);
    assert_eq!(post.signature().to_string(), signature);
    let bytes = signing_bytes(Purpose::GroupLine, &author, payload.as_bytes());
    let published: Signature = signature.parse().unwrap();
    key.public().verify(&bytes, &published).unwrap();
}
