//! The TLS side of the peer channel: rustls configurations (TLS 1.3 only, mutual
//! authentication with identity certificates, ALPN `pd-chat/1`) and the two certificate
//! verifiers.
//!
//! Neither verifier trusts a certificate authority. The connecting side pins the listener's
//! key to the key of the looked-up record; the listening side accepts any well-formed
//! identity certificate during the handshake and checks the claimed address against the
//! network before any application data moves. Both verify the handshake signature with
//! rustls' own `verify_tls13_signature`, so a peer that merely copies someone's certificate
//! cannot complete a handshake.

use std::sync::{Arc, Mutex};

use pd_proto::PublicKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, OtherError,
    ServerConfig, SignatureScheme,
};

use crate::peer::cert::{self, IdentityCert};

/// The ALPN protocol name of the chat channel.
pub const ALPN: &[u8] = b"pd-chat/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn cert_error(err: cert::CertError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// Refuses chains: an identity certificate stands alone.
fn single(intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
    if intermediates.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidCertificate(CertificateError::BadEncoding))
    }
}

/// The connecting side's view of the listener's certificate: it must hold `expected`.
#[derive(Debug)]
pub struct ListenerVerifier {
    expected: PublicKey,
    presented: Mutex<Option<PublicKey>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ListenerVerifier {
    /// A verifier that accepts only a listener holding `expected`.
    pub fn new(expected: PublicKey) -> Arc<Self> {
        Arc::new(Self {
            expected,
            presented: Mutex::new(None),
            algorithms: algorithms(),
        })
    }

    /// The key the listener presented, once its certificate was seen.
    pub fn presented(&self) -> Option<PublicKey> {
        self.presented.lock().ok().and_then(|slot| *slot)
    }
}

impl ServerCertVerifier for ListenerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        single(intermediates)?;
        let key = cert::peer_key(end_entity).map_err(cert_error)?;
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(key);
        }
        if key != self.expected {
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General(
            "TLS 1.2 is not used by the chat channel".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The listening side's view of a connecting peer's certificate: any well-formed identity
/// certificate passes the handshake; its address is checked afterwards.
#[derive(Debug)]
pub struct ConnectorVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ConnectorVerifier {
    /// The verifier.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            algorithms: algorithms(),
        })
    }
}

impl ClientCertVerifier for ConnectorVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        single(intermediates)?;
        cert::read_peer_cert(end_entity).map_err(cert_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General(
            "TLS 1.2 is not used by the chat channel".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the chat channel: {0}")]
pub struct TlsSetupError(#[from] Error);

/// The configuration of the listening side, presenting `identity`.
pub fn server_config(identity: &IdentityCert) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(ConnectorVerifier::new())
        .with_single_cert(vec![identity.cert.clone()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The configuration of the connecting side, presenting `identity` and accepting only a
/// listener that `verifier` accepts.
pub fn client_config(
    identity: &IdentityCert,
    verifier: Arc<ListenerVerifier>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use pd_proto::{Address, SecretKey};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    fn identity(key: &SecretKey, address: &str) -> IdentityCert {
        IdentityCert::new(key, &Address::parse(address).unwrap()).unwrap()
    }

    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (Result<(), String>, Result<(), String>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("peer.invalid").unwrap();
        let (client, server) = tokio::join!(
            TlsConnector::from(client).connect(name, a),
            TlsAcceptor::from(server).accept(b)
        );
        (
            client.map(drop).map_err(|e| e.to_string()),
            server.map(drop).map_err(|e| e.to_string()),
        )
    }

    #[tokio::test]
    async fn the_listener_must_hold_the_expected_key() {
        let bob = SecretKey::generate();
        let alice = identity(&SecretKey::generate(), "alice@a.example");
        let server = server_config(&identity(&bob, "bob@b.example")).unwrap();

        let verifier = ListenerVerifier::new(bob.public());
        let client = client_config(&alice, verifier.clone()).unwrap();
        let (client_side, server_side) = handshake(server.clone(), client).await;
        assert_eq!((client_side, server_side), (Ok(()), Ok(())));

        let someone_else = SecretKey::generate().public();
        let verifier = ListenerVerifier::new(someone_else);
        let client = client_config(&alice, verifier.clone()).unwrap();
        let (client_side, _) = handshake(server, client).await;
        assert!(client_side.is_err());
        assert_eq!(verifier.presented(), Some(bob.public()));
    }

    /// A listener that copies Bob's certificate but does not hold Bob's key cannot complete
    /// the handshake: the key comparison passes, the handshake signature does not.
    #[tokio::test]
    async fn a_copied_certificate_without_its_key_fails_the_handshake_signature() {
        #[derive(Debug)]
        struct Fixed(Arc<CertifiedKey>);
        impl ResolvesServerCert for Fixed {
            fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(Arc::clone(&self.0))
            }
        }

        let bob = SecretKey::generate();
        let copied = identity(&bob, "bob@b.example");
        let attacker = identity(&SecretKey::generate(), "bob@b.example");
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&attacker.private_key()).unwrap();
        let forged = Arc::new(CertifiedKey::new(vec![copied.cert.clone()], signer));
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(ConnectorVerifier::new())
            .with_cert_resolver(Arc::new(Fixed(forged)));
        server.alpn_protocols = vec![ALPN.to_vec()];

        let verifier = ListenerVerifier::new(bob.public());
        let alice = identity(&SecretKey::generate(), "alice@a.example");
        let client = client_config(&alice, verifier.clone()).unwrap();
        let (client_side, server_side) = handshake(Arc::new(server), client).await;
        let err = client_side.unwrap_err();
        assert!(err.contains("BadSignature"), "{err}");
        assert!(server_side.is_err());
        assert_eq!(verifier.presented(), Some(bob.public()));
    }

    #[tokio::test]
    async fn the_listener_requires_a_client_certificate_and_tls_1_3() {
        let bob = SecretKey::generate();
        let server = server_config(&identity(&bob, "bob@b.example")).unwrap();
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(ListenerVerifier::new(bob.public()))
            .with_no_client_auth();
        let (_, server_side) = handshake(server.clone(), Arc::new(anonymous)).await;
        assert!(
            server_side.is_err(),
            "a client without a certificate got in"
        );

        let alice = identity(&SecretKey::generate(), "alice@a.example");
        let old = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(ListenerVerifier::new(bob.public()))
            .with_client_auth_cert(vec![alice.cert.clone()], alice.private_key())
            .unwrap();
        let (client_side, server_side) = handshake(server, Arc::new(old)).await;
        assert!(client_side.is_err() && server_side.is_err());
    }
}
