//! User bearer tokens for the simulated clients: the gateway authenticates every call, here
//! as in production. One development PKI (`banktransfer-pki init`) in a temporary directory
//! per process supplies the token key pair; the gateway's `[auth]` points at its public half.
//!
//! Tokens are valid from the epoch to 2106, so that simulated time (whatever its epoch) is
//! always inside them: the simulation is about the protocol, not about token lifetimes,
//! which service-kit's validator tests cover against a manual clock.

use std::path::PathBuf;
use std::sync::OnceLock;

use banktransfer_pki::files::PkiFiles;
use banktransfer_pki::token::{Claims, sign_claims};
use service_kit::identity::{TOKEN_AUDIENCE_DEFAULT, TOKEN_ISSUER_DEFAULT};

struct Keys {
    /// Kept alive for the process: the gateway reads the verify key from it.
    _dir: tempfile::TempDir,
    verify_key_path: PathBuf,
    signing_key_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory for the simulation's PKI");
        banktransfer_pki::init::init(dir.path(), time::OffsetDateTime::now_utc())
            .expect("creating the simulation's PKI");
        let files = PkiFiles::new(dir.path());
        let signing_key_pem = std::fs::read_to_string(files.token_signing_key())
            .expect("reading the token signing key");
        Keys {
            verify_key_path: files.token_verify_key(),
            signing_key_pem,
            _dir: dir,
        }
    })
}

/// The public key the simulated gateway verifies tokens with.
pub fn verify_key_path() -> String {
    keys().verify_key_path.display().to_string()
}

/// `Bearer <token>` for `user_id`.
pub fn bearer(user_id: &str) -> String {
    let claims = Claims {
        sub: user_id.to_owned(),
        iss: TOKEN_ISSUER_DEFAULT.to_owned(),
        aud: TOKEN_AUDIENCE_DEFAULT.to_owned(),
        iat: 0,
        nbf: 0,
        exp: u64::from(u32::MAX),
    };
    let token = sign_claims(keys().signing_key_pem.as_bytes(), &claims).expect("signing a token");
    format!("Bearer {token}")
}
