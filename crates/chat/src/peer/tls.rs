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
