//! Identity certificates: the self-signed X.509 certificate each side of a conversation
//! presents, made from its ed25519 identity key and naming the address it claims, and the
//! reading of such a certificate from the other side.
//!
//! The certificate is only a container: nothing trusts it for its issuer or dates. Its
//! public key is bound to the connection by the TLS 1.3 handshake signature, and to the
//! address by a lookup through the PD network (see `federation-spec.md`, "Peer-to-peer
//! chat").

use pd_proto::{Address, PublicKey, SecretKey};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

/// The URI scheme of the subject alternative name that carries the claimed address.
pub const ADDRESS_URI_SCHEME: &str = "pd:";

/// Why a certificate could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The identity key could not be turned into a certificate.
    #[error("cannot make a certificate from the identity key: {0}")]
    Create(String),
    /// The peer's certificate is not DER X.509.
    #[error("the peer's certificate is not a valid X.509 certificate")]
    Malformed,
    /// The peer's certificate holds another kind of key than ed25519.
    #[error("the peer's certificate does not hold an ed25519 key")]
    NotEd25519,
    /// The peer's key is not a usable ed25519 key (for instance a weak key).
    #[error("the peer's certificate holds an unusable key: {0}")]
    BadKey(String),
    /// The certificate names no address, or more than one.
    #[error("the peer's certificate must name exactly one address (a 'pd:' URI), found {0}")]
    AddressCount(usize),
    /// The named address is not a valid address.
    #[error("the peer's certificate names an invalid address: {0}")]
    BadAddress(String),
}

/// A certificate and its private key, ready for rustls.
#[derive(Debug)]
pub struct IdentityCert {
    /// The DER certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate in PEM form (for export).
    pub cert_pem: String,
    /// The private key as PKCS#8 DER.
    pkcs8: Vec<u8>,
    /// The private key as PKCS#8 PEM.
    key_pem: String,
}

impl IdentityCert {
    /// Makes the self-signed certificate of `address` for `key`.
    pub fn new(key: &SecretKey, address: &Address) -> Result<Self, CertError> {
        let create = |e: &dyn std::fmt::Display| CertError::Create(e.to_string());
        let pkcs8 = key.to_pkcs8_der().map_err(|e| create(&e))?;
        let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| create(&e))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, address.to_string());
        params.distinguished_name = name;
        let uri = format!("{ADDRESS_URI_SCHEME}{address}")
            .try_into()
            .map_err(|e| create(&e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        // Dates are not checked by peers (the key is the identity); a wide fixed range keeps
        // stock tools from calling the certificate expired.
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key_pair).map_err(|e| create(&e))?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key_pair.serialize_pem(),
            pkcs8,
        })
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }

    /// The private key as a PKCS#8 PEM document (secret: write it only to private files).
    pub fn private_key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// What a peer's certificate says: the key it holds and the address it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The certificate's public key (bound to the connection by the handshake signature).
    pub key: PublicKey,
    /// The address the peer claims (not yet checked against the network).
    pub address: Address,
}

/// Reads the ed25519 key of a peer's certificate.
pub fn peer_key(der: &[u8]) -> Result<PublicKey, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertError::Malformed)?;
    key_of(&cert)
}

/// Reads a peer's certificate: its ed25519 key and the one address it names.
pub fn read_peer_cert(der: &[u8]) -> Result<PeerCert, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertError::Malformed)?;
    let key = key_of(&cert)?;
    let names = cert
        .subject_alternative_name()
        .map_err(|_| CertError::Malformed)?
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let claimed: Vec<&str> = names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(ADDRESS_URI_SCHEME),
            _ => None,
        })
        .collect();
    let [claimed] = claimed.as_slice() else {
        return Err(CertError::AddressCount(claimed.len()));
    };
    let address = Address::parse(claimed).map_err(|e| CertError::BadAddress(e.to_string()))?;
    Ok(PeerCert { key, address })
}

fn key_of(cert: &X509Certificate<'_>) -> Result<PublicKey, CertError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(CertError::NotEd25519);
    }
    let bytes: &[u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertError::BadKey("not 32 bytes".into()))?;
    PublicKey::from_bytes(bytes).map_err(|e| CertError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_the_key_and_the_address() {
        let key = SecretKey::generate();
        let address = Address::parse("alice@a.example").unwrap();
        let made = IdentityCert::new(&key, &address).unwrap();
        let read = read_peer_cert(&made.cert).unwrap();
        assert_eq!(read.key, key.public());
        assert_eq!(read.address, address);
        assert_eq!(peer_key(&made.cert).unwrap(), key.public());
        assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            made.private_key_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
    }

    #[test]
    fn certificates_without_an_address_or_of_other_key_types_are_refused() {
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let bare = CertificateParams::default().self_signed(&ed).unwrap();
        assert_eq!(read_peer_cert(bare.der()), Err(CertError::AddressCount(0)));

        let mut two = CertificateParams::default();
        two.subject_alt_names = vec![
            SanType::URI("pd:a@x.example".try_into().unwrap()),
            SanType::URI("pd:b@x.example".try_into().unwrap()),
        ];
        let two = two.self_signed(&ed).unwrap();
        assert_eq!(read_peer_cert(two.der()), Err(CertError::AddressCount(2)));

        let mut bad = CertificateParams::default();
        bad.subject_alt_names = vec![SanType::URI("pd:not an address".try_into().unwrap())];
        let bad = bad.self_signed(&ed).unwrap();
        assert!(matches!(
            read_peer_cert(bad.der()),
            Err(CertError::BadAddress(_))
        ));

        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ecdsa = CertificateParams::default();
        ecdsa.subject_alt_names = vec![SanType::URI("pd:a@x.example".try_into().unwrap())];
        let ecdsa = ecdsa.self_signed(&p256).unwrap();
        assert_eq!(read_peer_cert(ecdsa.der()), Err(CertError::NotEd25519));

        assert_eq!(read_peer_cert(b"garbage"), Err(CertError::Malformed));
    }
}
