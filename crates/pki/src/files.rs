//! The layout of the PKI directory (`data/pki/` in development; a mounted secret in
//! Kubernetes). Certificates are PEM; private keys are PKCS#8 PEM, mode 0600.

use std::path::{Path, PathBuf};

/// The files of one PKI directory.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    dir: PathBuf,
}

impl PkiFiles {
    pub fn new(dir: impl Into<PathBuf>) -> PkiFiles {
        PkiFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The development CA's certificate: the trust root every service and client loads.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    /// `<name>.pem`: a service's (or the operator's) certificate.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `<name>-key.pem`: its private key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    /// Ed25519 PKCS#8 private key that signs user tokens (only the token issuer needs it).
    pub fn token_signing_key(&self) -> PathBuf {
        self.dir.join("token-signing-key.pem")
    }

    /// Its SPKI public key: what the gateway verifies tokens with.
    pub fn token_verify_key(&self) -> PathBuf {
        self.dir.join("token-verify-key.pem")
    }
}
