//! TLS on every port, and who is on the other end.
//!
//! rustls with the ring provider (no OpenSSL, no aws-lc). Certificates and keys come from
//! PEM files named in the configuration (`[tls]`), so a Kubernetes secret mounted as files
//! supplies them; `banktransfer-pki init` makes a development set.
//!
//! - Server side: [`crate::acceptor`] (TLS 1.3 only; client certificates optional at the
//!   TLS layer so the public gateway port accepts mobile clients without one, but verified
//!   against the CA when presented; each method then decides who may call it,
//!   [`crate::authz`]; files reloaded when they change).
//! - Client side ([`TlsSection::client_config`]): trust only the CA, present this service's
//!   certificate. The peer URL must use `https://`. The server decides the version: 1.3.
//! - Identity: the caller's SPIFFE id, the URI SAN `spiffe://...` of its verified leaf
//!   certificate ([`peer_identity`]).
//!
//! tonic's `Identity` and `ClientTlsConfig` derive `Debug` with the private key in it:
//! never log them. This module's own types hold paths only.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use crate::identity;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A TLS handshake that takes longer than this is dropped (slow-handshake exhaustion).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest URI SAN accepted as an identity; SPIFFE ids are at most 2048 bytes.
const SPIFFE_ID_LEN_MAX: usize = 2048;
const SPIFFE_SCHEME: &str = "spiffe://";

/// The `[tls]` table of a service's configuration.
///
/// Every service requires all three (`server::ServerSection::server_settings`); setting only
/// some is an error naming the missing one. Only code can serve plaintext (the
/// simulation's network).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TlsSection {
    /// PEM certificate chain of this service (leaf first): served to clients, and
    /// presented as the client certificate when this service calls another.
    pub cert_path: String,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of that certificate.
    pub key_path: String,
    /// PEM CA certificate(s): what peers' certificates must chain to, both ways.
    pub ca_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS configuration is incomplete: tls.{missing} is empty (set cert_path, key_path and ca_path)"
    )]
    Incomplete { missing: &'static str },
    #[error(
        "[tls] is required: set tls.cert_path, tls.key_path and tls.ca_path (every BankTransfer port speaks TLS; `make pki` creates a development set in data/pki)"
    )]
    Required,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}")]
    Invalid { path: String, what: &'static str },
}

/// The files of a complete section, read and checked.
struct TlsMaterial {
    identity: Identity,
    ca: Certificate,
}

impl TlsSection {
    /// `<dir>/<name>.pem`, `<dir>/<name>-key.pem` and `<dir>/ca.pem`: the layout of
    /// `banktransfer-pki init` (`data/pki/` for the local demo; a mounted secret in
    /// Kubernetes).
    pub fn in_dir(dir: &str, name: &str) -> TlsSection {
        TlsSection {
            cert_path: format!("{dir}/{name}.pem"),
            key_path: format!("{dir}/{name}-key.pem"),
            ca_path: format!("{dir}/ca.pem"),
        }
    }

    /// All three paths set ([`TlsError::Required`] when none is, [`TlsError::Incomplete`]
    /// naming the first missing one otherwise). The files are read at start-up.
    pub fn validate(&self) -> Result<(), TlsError> {
        if !self.is_enabled() {
            return Err(TlsError::Required);
        }
        for (value, name) in [
            (&self.cert_path, "cert_path"),
            (&self.key_path, "key_path"),
            (&self.ca_path, "ca_path"),
        ] {
            if value.is_empty() {
                return Err(TlsError::Incomplete { missing: name });
            }
        }
        Ok(())
    }

    /// The client side, required: as [`TlsSection::client_config`], with
    /// [`TlsError::Required`] when the section is empty.
    pub fn required_client_config(&self) -> Result<ClientTlsConfig, TlsError> {
        self.client_config()?.ok_or(TlsError::Required)
    }

    /// True when any path is set (then all must be).
    pub fn is_enabled(&self) -> bool {
        !(self.cert_path.is_empty() && self.key_path.is_empty() && self.ca_path.is_empty())
    }

    /// The client side: trust only the CA and present this service's certificate. The
    /// server name checked is the URL's host unless set with `.domain_name(..)`. `None`
    /// when TLS is off.
    pub fn client_config(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        Ok(self.load()?.map(|material| {
            ClientTlsConfig::new()
                .ca_certificate(material.ca)
                .identity(material.identity)
                .timeout(HANDSHAKE_TIMEOUT)
        }))
    }

    /// Reads and checks the three files. Checking here (not at the first handshake) makes a
    /// wrong path or a swapped file fail the start, naming the file.
    fn load(&self) -> Result<Option<TlsMaterial>, TlsError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        self.validate()?;
        let cert = read_certificates(Path::new(&self.cert_path), "PEM certificate")?;
        let key = read_private_key(Path::new(&self.key_path))?;
        let ca = read_certificates(Path::new(&self.ca_path), "PEM CA certificate")?;
        Ok(Some(TlsMaterial {
            identity: Identity::from_pem(cert, key),
            ca: Certificate::from_pem(ca),
        }))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let pem = read_file(path)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        _ => Err(TlsError::Invalid {
            path: path.display().to_string(),
            what,
        }),
    }
}

/// The parse error is dropped on purpose: whatever it says must not echo key bytes.
fn read_private_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read_file(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(_) => Err(TlsError::Invalid {
            path: path.display().to_string(),
            what: "PEM private key",
        }),
    }
}

/// A SPIFFE id (`spiffe://<trust domain>/<path>`), as found in a certificate's URI SAN.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId(Cow<'static, str>);

impl SpiffeId {
    pub const GATEWAY_COORDINATOR: SpiffeId =
        SpiffeId(Cow::Borrowed(identity::GATEWAY_COORDINATOR));
    pub const MOCK_EXTERNAL_INSTITUTION: SpiffeId =
        SpiffeId(Cow::Borrowed(identity::MOCK_EXTERNAL_INSTITUTION));
    pub const INTERNAL_BALANCE_STORE: SpiffeId =
        SpiffeId(Cow::Borrowed(identity::INTERNAL_BALANCE_STORE));
    pub const RECONCILER: SpiffeId = SpiffeId(Cow::Borrowed(identity::RECONCILER));
    pub const OPERATOR: SpiffeId = SpiffeId(Cow::Borrowed(identity::OPERATOR));

    /// `Some` for a `spiffe://` URI of sane length without whitespace or control
    /// characters (it ends up in logs).
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let rest = uri.strip_prefix(SPIFFE_SCHEME)?;
        let sane = !rest.is_empty()
            && uri.len() <= SPIFFE_ID_LEN_MAX
            && !uri.chars().any(|c| c.is_whitespace() || c.is_control());
        sane.then(|| SpiffeId(Cow::Owned(uri.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The coordinator's identities: the only callers of the participants' Reserve, Confirm,
/// Cancel and GetReservation.
pub const COORDINATOR_IDENTITIES: &[SpiffeId] =
    &[SpiffeId::GATEWAY_COORDINATOR, SpiffeId::RECONCILER];
/// The callers of the operator APIs: opening accounts, fault injection, RunPass, Audit.
pub const OPERATOR_IDENTITIES: &[SpiffeId] = &[SpiffeId::OPERATOR];
/// Who may read a participant's accounts: operators, and the reconciler's audit.
pub const ACCOUNT_READER_IDENTITIES: &[SpiffeId] = &[SpiffeId::OPERATOR, SpiffeId::RECONCILER];

/// Who is calling, as far as TLS can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// No client certificate (or no TLS at all).
    Anonymous,
    /// A verified certificate that names no usable identity.
    Unrecognised(NoSpiffeId),
    Spiffe(SpiffeId),
}

/// Why a certificate yields no SPIFFE id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSpiffeId {
    Unparsable,
    Missing,
    /// More than one `spiffe://` URI SAN: the X.509-SVID rules allow exactly one, and
    /// picking one would let a certificate claim two identities.
    Ambiguous,
}

/// The SPIFFE id in a DER certificate's URI SAN.
pub fn spiffe_id_from_der(der: &[u8]) -> Result<SpiffeId, NoSpiffeId> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|_| NoSpiffeId::Unparsable)?;
    let names = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => &extension.value.general_names,
        Ok(None) => return Err(NoSpiffeId::Missing),
        Err(_) => return Err(NoSpiffeId::Unparsable),
    };
    let mut found = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with(SPIFFE_SCHEME) => Some(*uri),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(uri), None) => SpiffeId::parse(uri).ok_or(NoSpiffeId::Unparsable),
        (Some(_), Some(_)) => Err(NoSpiffeId::Ambiguous),
        (None, _) => Err(NoSpiffeId::Missing),
    }
}

/// The identity of a peer from its certificate chain as TLS delivered it (leaf first).
/// Only meaningful for chains the TLS layer verified against the CA: tonic hands over
/// `peer_certs` only after rustls accepted them.
pub fn identity_from_chain(chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
    match chain.and_then(|chain| chain.first()) {
        None => PeerIdentity::Anonymous,
        Some(leaf) => match spiffe_id_from_der(leaf) {
            Ok(id) => PeerIdentity::Spiffe(id),
            Err(why) => PeerIdentity::Unrecognised(why),
        },
    }
}

/// The caller of `request`: from its verified client certificate, or, on a transport
/// without TLS, the identity the server shell put in the request's extensions (only
/// server-side code sets extensions; see `server::Transport::Plaintext`).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> PeerIdentity {
    if let Some(identity) = request.extensions().get::<PeerIdentity>() {
        return identity.clone();
    }
    let chain = request.peer_certs();
    identity_from_chain(chain.as_deref().map(Vec::as_slice))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn leaf_der(sans: Vec<SanType>) -> Vec<u8> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    fn uri(value: &str) -> SanType {
        SanType::URI(value.try_into().unwrap())
    }

    #[test]
    fn spiffe_uri_san_is_the_identity() {
        let der = leaf_der(vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            uri("https://example.org/not-an-identity"),
            uri(identity::RECONCILER),
        ]);
        assert_eq!(spiffe_id_from_der(&der), Ok(SpiffeId::RECONCILER));
    }

    #[test]
    fn certificate_without_spiffe_uri_has_no_identity() {
        let dns_only = leaf_der(vec![SanType::DnsName("localhost".try_into().unwrap())]);
        assert_eq!(spiffe_id_from_der(&dns_only), Err(NoSpiffeId::Missing));
        let no_san = leaf_der(vec![]);
        assert_eq!(spiffe_id_from_der(&no_san), Err(NoSpiffeId::Missing));
        let other_uri = leaf_der(vec![uri("https://banktransfer/gateway-coordinator")]);
        assert_eq!(spiffe_id_from_der(&other_uri), Err(NoSpiffeId::Missing));
    }

    #[test]
    fn two_spiffe_ids_are_ambiguous() {
        let der = leaf_der(vec![
            uri(identity::OPERATOR),
            uri(identity::GATEWAY_COORDINATOR),
        ]);
        assert_eq!(spiffe_id_from_der(&der), Err(NoSpiffeId::Ambiguous));
    }

    #[test]
    fn garbage_is_unparsable() {
        assert_eq!(
            spiffe_id_from_der(b"not a certificate"),
            Err(NoSpiffeId::Unparsable)
        );
    }

    #[test]
    fn chain_identity_reads_the_leaf_only() {
        let leaf = CertificateDer::from(leaf_der(vec![uri(identity::GATEWAY_COORDINATOR)]));
        let other = CertificateDer::from(leaf_der(vec![uri(identity::OPERATOR)]));
        let chain = [leaf, other];
        assert_eq!(
            identity_from_chain(Some(&chain)),
            PeerIdentity::Spiffe(SpiffeId::GATEWAY_COORDINATOR)
        );
        assert_eq!(identity_from_chain(Some(&[])), PeerIdentity::Anonymous);
        assert_eq!(identity_from_chain(None), PeerIdentity::Anonymous);
    }

    #[test]
    fn request_without_tls_is_anonymous() {
        assert_eq!(
            peer_identity(&tonic::Request::new(())),
            PeerIdentity::Anonymous
        );
    }

    #[test]
    fn spiffe_id_parse_rejects_odd_input() {
        assert_eq!(
            SpiffeId::parse(identity::OPERATOR),
            Some(SpiffeId::OPERATOR)
        );
        assert_eq!(SpiffeId::parse("spiffe://"), None);
        assert_eq!(SpiffeId::parse("https://banktransfer/operator"), None);
        assert_eq!(SpiffeId::parse("spiffe://banktransfer/a\nb"), None);
        let long = format!("spiffe://banktransfer/{}", "a".repeat(SPIFFE_ID_LEN_MAX));
        assert_eq!(SpiffeId::parse(&long), None);
    }

    #[test]
    fn section_all_empty_is_off_and_partial_is_an_error() {
        let off = TlsSection::default();
        assert!(!off.is_enabled());
        assert!(off.client_config().unwrap().is_none());
        let partial = TlsSection {
            cert_path: "/x/cert.pem".into(),
            ..TlsSection::default()
        };
        let error = partial.client_config().unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Incomplete {
                    missing: "key_path"
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_file_but_not_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        // A key file that holds a certificate, not a key: the classic swapped mount.
        std::fs::write(
            &key_path,
            key.serialize_pem().replace("PRIVATE KEY", "SECRET"),
        )
        .unwrap();
        let section = TlsSection {
            cert_path: cert_path.display().to_string(),
            key_path: key_path.display().to_string(),
            ca_path: cert_path.display().to_string(),
        };
        let message = section.client_config().unwrap_err().to_string();
        assert!(message.contains("key.pem"), "{message}");
        let key_body: String = key.serialize_pem().lines().nth(1).unwrap().to_owned();
        assert!(!message.contains(&key_body), "{message}");

        let missing = TlsSection {
            ca_path: dir.path().join("absent.pem").display().to_string(),
            ..section.clone()
        };
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let message = missing.client_config().unwrap_err().to_string();
        assert!(message.contains("absent.pem"), "{message}");
        assert!(section.client_config().unwrap().is_some());
    }
}
