//! Mints user tokens: EdDSA (Ed25519) JWTs with `sub`, `iss`, `aud`, `iat`, `nbf`, `exp`,
//! the shape the gateway's validator (service-kit `jwt`) requires.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::PkiError;
use crate::files::PkiFiles;
use crate::init::read_text;
use service_kit::identity::{TOKEN_AUDIENCE_DEFAULT, TOKEN_ISSUER_DEFAULT};

/// The registered claims of a BankTransfer user token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// What to put in a token.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub user_id: String,
    pub issuer: String,
    pub audience: String,
    pub ttl_s: u64,
    /// Seconds since the Unix epoch: `iat` and `nbf`; `exp` is `now_s + ttl_s`.
    pub now_s: u64,
}

impl TokenSpec {
    /// A one-hour token for `user_id` with the default issuer and audience.
    pub fn new(user_id: impl Into<String>, now_s: u64) -> TokenSpec {
        TokenSpec {
            user_id: user_id.into(),
            issuer: TOKEN_ISSUER_DEFAULT.to_owned(),
            audience: TOKEN_AUDIENCE_DEFAULT.to_owned(),
            ttl_s: 3600,
            now_s,
        }
    }

    pub fn claims(&self) -> Claims {
        Claims {
            sub: self.user_id.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: self.now_s,
            nbf: self.now_s,
            exp: self.now_s.saturating_add(self.ttl_s),
        }
    }
}

/// Signs `spec`'s claims with an Ed25519 PKCS#8 PEM private key.
pub fn mint(signing_key_pem: &[u8], spec: &TokenSpec) -> Result<String, PkiError> {
    sign_claims(signing_key_pem, &spec.claims())
}

/// Signs arbitrary claims (tests use it to build malformed or expired tokens).
pub fn sign_claims(signing_key_pem: &[u8], claims: &impl Serialize) -> Result<String, PkiError> {
    let key = EncodingKey::from_ed_pem(signing_key_pem)?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &key,
    )?)
}

/// [`mint`] with the signing key of the PKI directory `dir`.
pub fn mint_in_dir(dir: &Path, spec: &TokenSpec) -> Result<String, PkiError> {
    let path = PkiFiles::new(dir).token_signing_key();
    let pem = read_text(&path)?;
    mint(pem.as_bytes(), spec).map_err(|e| match e {
        PkiError::Sign(_) => PkiError::Invalid {
            path: path.display().to_string(),
            what: "Ed25519 PKCS#8 signing key",
        },
        other => other,
    })
}
