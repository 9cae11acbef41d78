//! The target functions. Each one returns normally for every input that the code under
//! test handles correctly (accepting or refusing it) and panics when a property fails.

use std::path::Path;
use std::sync::LazyLock;

use bytes::BytesMut;
use chat::peer::frame::{Frame, FrameCodec, FrameError, MAX_FRAME_LEN};
use pd_proto::address::MAX_ADDRESS_LEN;
use pd_proto::node_auth::NodeAuthorization;
use pd_proto::signed::signing_bytes;
use pd_proto::wire::LookupResponse;
use pd_proto::{
    Address, Deletion, Host, Login, Presence, Purpose, Registration, Rotation, SecretKey, Signed,
    SignedError, Withdrawal,
};
use tokio_util::codec::{Decoder as _, Encoder as _};

/// The key the signed targets verify with (the seeds are signed with it).
pub static KEY: LazyLock<SecretKey> = LazyLock::new(|| SecretKey::from_seed(&[7; 32]));

/// The address the signed targets expect, and the lookup target asks about.
pub static ADDRESS: LazyLock<Address> =
    LazyLock::new(|| Address::parse("alice@example.com").expect("a valid address"));

/// The address parser (`Address::parse`, `Host::parse`): whatever it accepts, its normal
/// form is ASCII, lowercase, at most 255 bytes, parses again to the same value (parsing is
/// idempotent), and survives the JSON round trip.
pub fn address(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = Address::parse(input) {
        let text = address.to_string();
        assert!(text.len() <= MAX_ADDRESS_LEN, "{text:?} is too long");
        assert!(text.is_ascii(), "{text:?} is not ASCII");
        assert_eq!(text, text.to_ascii_lowercase(), "{text:?} is not lowercase");
        let again = Address::parse(&text).expect("the normal form parses");
        assert_eq!(
            again, address,
            "{input:?} → {text:?} parses to another address"
        );
        assert_eq!(again.to_string(), text);
        let json = serde_json::to_string(&address).expect("an address serialises");
        let back: Address = serde_json::from_str(&json).expect("an address deserialises");
        assert_eq!(back, address);
        check_host(address.host());
    }
    if let Ok(host) = Host::parse(input) {
        check_host(&host);
    }
}

fn check_host(host: &Host) {
    let text = host.to_string();
    assert!(text.is_ascii(), "{text:?} is not ASCII");
    let again = Host::parse(&text).expect("the normal form of a host parses");
    assert_eq!(&again, host, "{text:?} parses to another host");
    let name = host.hostname();
    let without_port = Host::parse(&name).expect("the host name without its port parses");
    assert_eq!(without_port.kind(), host.kind());
    assert_eq!(without_port.port(), None);
}

/// The signed-envelope decoder and verifier (`Signed<T>`): an envelope that decodes
/// survives the JSON round trip byte for byte; it verifies under the fixed key only if its
/// payload decodes as a record about the expected address; and the same payload signed
/// afresh with the fixed key verifies exactly when the payload is a record about that
/// address, but not with a signature made for another purpose.
pub fn signed(data: &[u8]) {
    let Ok(envelope) = serde_json::from_slice::<Signed<Presence>>(data) else {
        return;
    };
    let json = serde_json::to_vec(&envelope).expect("an envelope serialises");
    let back: Signed<Presence> = serde_json::from_slice(&json).expect("the envelope parses again");
    assert_eq!(back, envelope);

    let public = KEY.public();
    let decoded = envelope.decode_unverified();
    if let Ok(record) = envelope.verify(&public, &ADDRESS) {
        assert_eq!(decoded.as_ref().ok(), Some(&record));
        assert_eq!(record.address, *ADDRESS);
        let _ = record.validate(pd_proto::now_micros());
    }

    let payload = envelope.payload().to_vec();
    let sign = |purpose: Purpose| KEY.sign(&signing_bytes(purpose, &ADDRESS, &payload));
    let resigned = Signed::<Presence>::from_parts(payload.clone(), sign(Purpose::Presence));
    match (decoded, resigned.verify(&public, &ADDRESS)) {
        (Ok(record), Ok(verified)) => {
            assert_eq!(record, verified);
            assert_eq!(record.address, *ADDRESS);
        }
        (Ok(record), Err(error)) => assert!(
            record.address != *ADDRESS && matches!(error, SignedError::AddressMismatch { .. }),
            "a record about the expected address with a good signature was refused: {error}"
        ),
        (Err(_), Ok(verified)) => panic!("an undecodable payload verified as {verified:?}"),
        (Err(_), Err(_)) => {}
    }
    let other_purpose = Signed::<Presence>::from_parts(payload.clone(), sign(Purpose::Withdraw));
    assert!(
        other_purpose.verify(&public, &ADDRESS).is_err(),
        "a signature made for another purpose verified"
    );

    // The same bytes read as every other kind of record must not panic either.
    let signature = *envelope.signature();
    let _ =
        Signed::<Registration>::from_parts(payload.clone(), signature).verify(&public, &ADDRESS);
    let _ = Signed::<Withdrawal>::from_parts(payload.clone(), signature).verify(&public, &ADDRESS);
    let _ = Signed::<Rotation>::from_parts(payload.clone(), signature).verify(&public, &ADDRESS);
    let _ = Signed::<Deletion>::from_parts(payload.clone(), signature).verify(&public, &ADDRESS);
    let _ = Signed::<Login>::from_parts(payload, signature).verify(&public, &ADDRESS);
}

/// Node-to-node `Authorization: PD-Node` parsing: a header that parses prints as a header
/// that parses to the same value, and its signing bytes can be formed.
pub fn node_auth(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(auth) = NodeAuthorization::parse(value) else {
        return;
    };
    let text = auth.to_string();
    let again = NodeAuthorization::parse(&text).expect("a printed header parses");
    assert_eq!(
        again, auth,
        "{value:?} printed as {text:?} parses to another header"
    );
    let bytes = auth.signing_bytes("GET", "/v1/federation/lookup/alice%40example.com", b"");
    let _ = KEY.public().verify(&bytes, &auth.signature);
}

/// The chat frame decoder (`FrameCodec`): reads frames from the input as from a stream
/// until it ends or errs; every frame it yields passes the frame checks, encodes within the
/// size limit and decodes back to itself, and nothing decoded consumed more bytes than the
/// input held.
pub fn frame(data: &[u8]) {
    let mut codec = FrameCodec;
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame was decoded from nothing");
                check_frame(&mut codec, frame);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "a partial frame was consumed");
                match codec.decode_eof(&mut buf) {
                    Ok(None) => assert!(buf.is_empty()),
                    Ok(Some(frame)) => panic!("a frame appeared at the end: {frame:?}"),
                    Err(error) => assert!(matches!(error, FrameError::Truncated), "{error}"),
                }
                return;
            }
            Err(error) => {
                assert!(
                    error.is_protocol(),
                    "a decoding error that is not the peer's: {error}"
                );
                return;
            }
        }
    }
}

fn check_frame(codec: &mut FrameCodec, frame: Frame) {
    frame.check().expect("a decoded frame passes the checks");
    let mut out = BytesMut::new();
    codec
        .encode(frame.clone(), &mut out)
        .expect("a decoded frame encodes");
    assert!(out.len() <= 4 + MAX_FRAME_LEN);
    let again = codec.decode(&mut out).expect("an encoded frame decodes");
    assert_eq!(again, Some(frame));
    assert!(out.is_empty());
}

/// The configuration parser (`pd-server`'s `Config` from TOML, then `validate`): never
/// panics, whatever the document; a configuration naming a separate trust file is not
/// validated (that would read the file system).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = pd_server::config::Config::from_toml(text, Path::new("fuzz.toml")) else {
        return;
    };
    if config.trust.file.is_none() {
        let _ = config.validate();
    }
}

/// The lookup-answer check, the client's (`pd_proto::verify_lookup_answer`) and the node's
/// stricter reading of it (`pd_federation::upstream::verify_answer`), on an answer to a
/// lookup of `alice@example.com`: an answer the node accepts is about exactly that address,
/// its lifetime was not lengthened, a presence record it keeps verifies, and the client
/// accepts it too.
pub fn lookup_answer(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<LookupResponse>(data) else {
        return;
    };
    let client = pd_proto::verify_lookup_answer(&ADDRESS, answer.clone());
    let Ok(accepted) = pd_federation::upstream::verify_answer(&ADDRESS, answer.clone()) else {
        return;
    };
    let accepted = accepted.into_response();
    assert_eq!(accepted.address, *ADDRESS);
    assert_eq!(accepted.public_key, answer.public_key);
    assert!(
        accepted.ttl <= answer.ttl,
        "the node lengthened the lifetime"
    );
    if let Some(presence) = &accepted.presence {
        presence
            .verify(&accepted.public_key, &ADDRESS)
            .expect("a kept presence record verifies");
    }
    if let Err(error) = client {
        panic!("the node accepted an answer the client refuses: {error}");
    }
}
