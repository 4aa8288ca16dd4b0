//! The cluster's PKI and who the harness calls as.
//!
//! Every cluster gets its own development PKI in `<cluster dir>/pki/` (made by
//! `banktransfer_pki::init`, as `make pki` makes `data/pki/`): a CA, one certificate per
//! service with its SPIFFE id, the operator's client certificate and the user-token key
//! pair. A kept cluster directory therefore holds everything needed to call its services by
//! hand (`grpcurl -cacert pki/ca.pem -cert pki/operator.pem -key pki/operator-key.pem ...`).
//!
//! The harness calls each service as the identity that may make the call ([`Caller`]):
//! the public TransferService without a client certificate and with a bearer token for the
//! request's user, the participants' reservation reads as the reconciler (the harness plays
//! the auditor), accounts, fault injection and the reconciler's API as the operator.

use std::path::{Path, PathBuf};

use banktransfer_pki::files::PkiFiles;
use banktransfer_pki::token::{TokenSpec, mint, sign_claims};
use serde::Serialize;
use service_kit::clock::{Clock, SystemClock};
use service_kit::identity::OPERATOR_NAME;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::service::Service;

/// Who a harness channel presents itself as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Caller {
    /// TLS without a client certificate: a mobile client of the public API.
    NoCertificate,
    /// The operator's client certificate (`spiffe://banktransfer/operator`).
    Operator,
    /// `service`'s own certificate, as that service presents it to its peers.
    Service(Service),
}

impl Caller {
    /// The name of the certificate files in the PKI directory; `None` without one.
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            Caller::NoCertificate => None,
            Caller::Operator => Some(OPERATOR_NAME),
            Caller::Service(service) => Some(service.binary_name()),
        }
    }
}

/// One PKI directory, read once: the CA that every service trusts and the key that signs
/// user tokens.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    files: PkiFiles,
    ca_pem: Vec<u8>,
    signing_key_pem: Vec<u8>,
}

impl ClusterPki {
    /// Creates a fresh PKI in `dir` (which must not hold one yet).
    pub fn create(dir: &Path) -> ClusterPki {
        banktransfer_pki::init::init(dir, time::OffsetDateTime::now_utc())
            .unwrap_or_else(|e| panic!("creating the PKI in {}: {e}", dir.display()));
        let files = PkiFiles::new(dir);
        ClusterPki {
            ca_pem: read(&files.ca_cert()),
            signing_key_pem: read(&files.token_signing_key()),
            files,
        }
    }

    /// The PKI already in `dir` (`banktransfer-pki init`'s layout), e.g. a deployment's:
    /// its CA and token signing key are read now, certificates when a channel needs one.
    pub fn open(dir: &Path) -> Result<ClusterPki, String> {
        let files = PkiFiles::new(dir);
        let read = |path: PathBuf| {
            std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        Ok(ClusterPki {
            ca_pem: read(files.ca_cert())?,
            signing_key_pem: read(files.token_signing_key())?,
            files,
        })
    }

    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    pub fn files(&self) -> &PkiFiles {
        &self.files
    }

    /// TLS that trusts only this PKI's CA and presents `caller`'s certificate (none for
    /// [`Caller::NoCertificate`]). The server name checked is the URL's host: the harness
    /// dials `127.0.0.1`, which every service certificate names.
    pub fn client_tls(&self, caller: Caller) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match caller.file_name() {
            None => tls,
            Some(name) => tls.identity(Identity::from_pem(
                read(&self.files.cert(name)),
                read(&self.files.key(name)),
            )),
        }
    }

    /// A one-hour token for `user_id`, valid now, signed with this PKI's token key.
    pub fn token(&self, user_id: &str) -> String {
        self.mint(&TokenSpec::new(user_id, now_s()))
    }

    /// A token as `spec` describes it (expired, another audience...), signed with this
    /// PKI's token key.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        mint(&self.signing_key_pem, spec).expect("minting a token with the cluster's key")
    }

    /// Any claims, signed with this PKI's token key.
    pub fn sign(&self, claims: &impl Serialize) -> String {
        sign_claims(&self.signing_key_pem, claims).expect("signing claims with the cluster's key")
    }
}

/// Seconds since the Unix epoch: what tokens are dated with.
pub fn now_s() -> u64 {
    SystemClock.now_ms() / 1000
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}")
        .parse()
        .expect("a token is a valid header value")
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_its_certificate_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::create(&dir.path().join("pki"));
        for service in Service::ALL {
            let name = Caller::Service(service).file_name().unwrap();
            assert!(pki.files().cert(name).is_file(), "{name}");
            assert!(pki.files().key(name).is_file(), "{name}");
        }
        assert!(pki.files().cert("operator").is_file());
        assert!(pki.files().token_verify_key().is_file());
        assert_eq!(Caller::NoCertificate.file_name(), None);
        assert_eq!(pki.token("alice").split('.').count(), 3);
    }
}
