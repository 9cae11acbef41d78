//! The private certificate authority of a test run: a CA made with rcgen and one server
//! certificate per node, written as PEM files readable by the containers' user.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Writes `ca.crt`, and `<host>.crt` and `<host>.key` for each host, into `dir`.
pub(crate) fn write(dir: &Path, hosts: &[&str]) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "PD compose test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    write_public(&dir.join("ca.crt"), &ca.pem());
    for host in hosts {
        let mut params =
            CertificateParams::new(vec![(*host).to_owned()]).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, *host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        write_public(&dir.join(format!("{host}.crt")), &cert.pem());
        // Test keys only: the containers run as another user and must read them.
        write_public(&dir.join(format!("{host}.key")), &key.serialize_pem());
    }
}

fn write_public(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write PEM file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod PEM file");
    }
}
