//! BankTransfer's development PKI: the names every service agrees on, and the files a
//! first `make run` (or `make pki`) creates under `data/pki/`.
//!
//! Map:
//! - The names every service agrees on (SPIFFE ids, service names, the user-token issuer
//!   and audience) are `service_kit::identity`'s: the services link them without linking
//!   this development tool (and its certificate generator).
//! - [`files`]: where each certificate and key lives in the PKI directory.
//! - [`init`]: creates what is missing (CA, one certificate per service, the operator client
//!   certificate, the token signing key pair); idempotent; private keys mode 0600.
//! - [`token`]: mints an EdDSA user token (what `make token USER=alice` prints).
//! - The binary `banktransfer-pki` (src/bin) wraps [`init`] and [`token`] for the Makefile.
//!
//! Development only: production certificates come from the platform (Kubernetes secrets)
//! and only have to follow the same naming in `service_kit::identity`.

pub mod files;
pub mod init;
pub mod token;

/// Why a PKI operation failed. Paths are named; key material never is.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a usable {what}")]
    Invalid { path: String, what: &'static str },
    #[error(
        "{present} exists but {missing} does not: refusing to overwrite half a key pair (move both away to regenerate)"
    )]
    HalfPair { present: String, missing: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("token signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}
