//! User authentication: `authorization: Bearer <JWT>` on the gateway's public methods.
//!
//! Tokens are EdDSA (Ed25519) JWTs, checked against one PEM public key from the
//! configuration. The algorithm is pinned (a token claiming HS256, `none` or any other
//! algorithm is refused before its signature is looked at, which closes the
//! public-key-as-HMAC-secret confusion), and `iss`, `aud`, `sub`, `exp` and `nbf` are all
//! required. `exp`/`nbf` are checked against the injected [`crate::clock`] with a small
//! leeway for clock skew, not by the library against the wall clock.
//! `banktransfer-pki token` mints matching tokens for development.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::clock::SharedClock;

pub use crate::identity::{TOKEN_AUDIENCE_DEFAULT, TOKEN_ISSUER_DEFAULT};

/// The request header carrying the token.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Longer headers are refused unparsed: a token is a few hundred bytes.
pub const AUTHORIZATION_HEADER_LEN_MAX: usize = 8 * 1024;
pub const LEEWAY_DEFAULT: Duration = Duration::from_secs(30);
const USER_ID_LEN_MAX: usize = 256;

/// The `[auth]` table of the gateway's configuration. An empty `verify_key_path` means
/// user authentication is off (local demo, older tests); **production configurations
/// must set it**.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TokenSection {
    /// PEM SubjectPublicKeyInfo of the Ed25519 key that signs user tokens.
    pub verify_key_path: String,
    pub issuer: String,
    pub audience: String,
    pub leeway_s: u64,
}

impl Default for TokenSection {
    fn default() -> Self {
        TokenSection {
            verify_key_path: String::new(),
            issuer: TOKEN_ISSUER_DEFAULT.to_owned(),
            audience: TOKEN_AUDIENCE_DEFAULT.to_owned(),
            leeway_s: LEEWAY_DEFAULT.as_secs(),
        }
    }
}

impl TokenSection {
    /// The validator this section describes; `None` when authentication is off.
    pub fn validator(&self, clock: SharedClock) -> Result<Option<TokenValidator>, AuthSetupError> {
        if self.verify_key_path.is_empty() {
            return Ok(None);
        }
        let validator = TokenValidator::from_pem_file(
            Path::new(&self.verify_key_path),
            &self.issuer,
            &self.audience,
            Duration::from_secs(self.leeway_s),
            clock,
        )?;
        Ok(Some(validator))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no Ed25519 public key (PEM SubjectPublicKeyInfo)")]
    InvalidKey { path: String },
    #[error("token issuer and audience must not be empty")]
    Incomplete,
}

/// Who a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub user_id: String,
}

/// Why a request is not authenticated. The variants are for logs and tests; callers get
/// one of three stable messages ([`AuthError::message`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no authorization header")]
    Missing,
    #[error("authorization header longer than {AUTHORIZATION_HEADER_LEN_MAX} bytes")]
    TooLong,
    #[error("authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("token rejected (format, algorithm, signature, issuer, audience or claims)")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

pub const TOKEN_REQUIRED_MSG: &str = "a bearer token is required (authorization: Bearer <token>)";
pub const TOKEN_EXPIRED_MSG: &str = "the bearer token has expired";
pub const TOKEN_INVALID_MSG: &str = "the bearer token is not valid";

impl AuthError {
    /// What the caller is told: whether to send a token, refresh it, or get a proper one.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::NotBearer => TOKEN_REQUIRED_MSG,
            AuthError::Expired => TOKEN_EXPIRED_MSG,
            AuthError::TooLong | AuthError::Invalid | AuthError::NotYetValid => TOKEN_INVALID_MSG,
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Status {
        Status::unauthenticated(error.message())
    }
}

#[derive(Clone, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    nbf: u64,
}

/// Verified tokens remembered at most; the memory is emptied when full (a bound, and a
/// cheap one: a forgotten token is only verified again).
const VERIFIED_TOKENS_MAX: usize = 16_384;

/// Checks bearer tokens against one Ed25519 public key, issuer and audience.
pub struct TokenValidator {
    key: DecodingKey,
    validation: Validation,
    leeway_s: u64,
    clock: SharedClock,
    /// Tokens whose signature, issuer and audience were verified, by the SHA-256 of the
    /// token, with their claims. A client sends the same token with every call for the
    /// token's lifetime, and an Ed25519 verification (~50 µs) was the gateway's largest
    /// single cost per request, refusals included (docs/PERFORMANCE.md). The times are
    /// still checked on every call, and a token that fails verification is never kept.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

impl TokenValidator {
    pub fn from_pem_file(
        path: &Path,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        clock: SharedClock,
    ) -> Result<TokenValidator, AuthSetupError> {
        let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem, issuer, audience, leeway, clock).map_err(|e| match e {
            AuthSetupError::InvalidKey { .. } => AuthSetupError::InvalidKey {
                path: path.display().to_string(),
            },
            other => other,
        })
    }

    pub fn from_pem(
        public_key_pem: &[u8],
        issuer: &str,
        audience: &str,
        leeway: Duration,
        clock: SharedClock,
    ) -> Result<TokenValidator, AuthSetupError> {
        if issuer.is_empty() || audience.is_empty() {
            return Err(AuthSetupError::Incomplete);
        }
        let key =
            DecodingKey::from_ed_pem(public_key_pem).map_err(|_| AuthSetupError::InvalidKey {
                path: "(in memory)".to_owned(),
            })?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked in `check_times` against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(TokenValidator {
            key,
            validation,
            leeway_s: leeway.as_secs(),
            clock,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Validates the value of an `authorization` header.
    pub fn validate(&self, authorization: &str) -> Result<AuthenticatedUser, AuthError> {
        if authorization.len() > AUTHORIZATION_HEADER_LEN_MAX {
            return Err(AuthError::TooLong);
        }
        let token = bearer_token(authorization)?;
        let claims = self.verified_claims(token)?;
        self.check_times(&claims)?;
        let user_id = claims.sub;
        let sane = !user_id.is_empty()
            && user_id.len() <= USER_ID_LEN_MAX
            && !user_id.chars().any(char::is_control);
        if !sane {
            return Err(AuthError::Invalid);
        }
        Ok(AuthenticatedUser { user_id })
    }

    /// Validates the `authorization` metadata of a gRPC request.
    pub fn validate_request<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<AuthenticatedUser, AuthError> {
        let value = request
            .metadata()
            .get(AUTHORIZATION_HEADER)
            .ok_or(AuthError::Missing)?;
        if value.len() > AUTHORIZATION_HEADER_LEN_MAX {
            return Err(AuthError::TooLong);
        }
        self.validate(value.to_str().map_err(|_| AuthError::NotBearer)?)
    }

    /// The claims of a token whose signature, issuer and audience hold: remembered, or
    /// verified now.
    fn verified_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.remembered().get(&digest) {
            return Ok(claims.clone());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        let mut verified = self.remembered();
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        // The map holds no invariant a panic could break half-way.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_times(&self, claims: &Claims) -> Result<(), AuthError> {
        let now_s = self.clock.now_ms() / 1000;
        if now_s >= claims.exp.saturating_add(self.leeway_s) {
            return Err(AuthError::Expired);
        }
        if now_s.saturating_add(self.leeway_s) < claims.nbf {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(authorization: &str) -> Result<&str, AuthError> {
    let (scheme, token) = authorization.split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use banktransfer_pki::token::{Claims as MintedClaims, TokenSpec, mint, sign_claims};
    use jsonwebtoken::{EncodingKey, Header};
    use rcgen::KeyPair;

    use super::*;
    use crate::clock::ManualClock;

    const NOW_S: u64 = 1_800_000_000;

    struct Keys {
        signing_pem: String,
        verify_pem: String,
    }

    fn keys() -> Keys {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Keys {
            signing_pem: key.serialize_pem(),
            verify_pem: key.public_key_pem(),
        }
    }

    fn validator_at(keys: &Keys, now_s: u64) -> TokenValidator {
        let clock = Arc::new(ManualClock::new(now_s * 1000));
        TokenValidator::from_pem(
            keys.verify_pem.as_bytes(),
            TOKEN_ISSUER_DEFAULT,
            TOKEN_AUDIENCE_DEFAULT,
            LEEWAY_DEFAULT,
            clock,
        )
        .unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn minted(keys: &Keys, spec: &TokenSpec) -> String {
        mint(keys.signing_pem.as_bytes(), spec).unwrap()
    }

    #[test]
    fn valid_token_names_the_user() {
        let keys = keys();
        let token = minted(&keys, &TokenSpec::new("alice", NOW_S));
        let user = validator_at(&keys, NOW_S + 10)
            .validate(&bearer(&token))
            .unwrap();
        assert_eq!(user.user_id, "alice");
        // Scheme is case-insensitive.
        let user = validator_at(&keys, NOW_S)
            .validate(&format!("bearer {token}"))
            .unwrap();
        assert_eq!(user.user_id, "alice");
    }

    #[test]
    fn expired_token_is_refused_after_the_leeway() {
        let keys = keys();
        let token = minted(&keys, &TokenSpec::new("alice", NOW_S));
        let exp = NOW_S + 3600;
        let leeway_s = LEEWAY_DEFAULT.as_secs();
        assert!(
            validator_at(&keys, exp + leeway_s - 1)
                .validate(&bearer(&token))
                .is_ok()
        );
        let error = validator_at(&keys, exp + leeway_s)
            .validate(&bearer(&token))
            .unwrap_err();
        assert_eq!(error, AuthError::Expired);
        assert_eq!(Status::from(error).message(), TOKEN_EXPIRED_MSG);
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_forged_one_is_never_remembered() {
        let keys = keys();
        let token = minted(&keys, &TokenSpec::new("alice", NOW_S));
        let clock = Arc::new(ManualClock::new(NOW_S * 1000));
        let validator = TokenValidator::from_pem(
            keys.verify_pem.as_bytes(),
            TOKEN_ISSUER_DEFAULT,
            TOKEN_AUDIENCE_DEFAULT,
            LEEWAY_DEFAULT,
            clock.clone(),
        )
        .unwrap();
        assert_eq!(
            validator.validate(&bearer(&token)).unwrap().user_id,
            "alice"
        );
        assert_eq!(validator.remembered().len(), 1);
        // Remembered, and still checked against the clock on every call.
        clock.advance_ms((3600 + LEEWAY_DEFAULT.as_secs()) * 1000);
        assert_eq!(
            validator.validate(&bearer(&token)).unwrap_err(),
            AuthError::Expired
        );
        // Another key's token with the same claims: refused, and not remembered.
        let forged = minted(&super::tests::keys(), &TokenSpec::new("alice", NOW_S));
        assert_eq!(
            validator.validate(&bearer(&forged)).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(validator.remembered().len(), 1);
    }

    #[test]
    fn not_yet_valid_token_is_refused_beyond_the_leeway() {
        let keys = keys();
        let nbf = NOW_S + 600;
        let token = minted(&keys, &TokenSpec::new("alice", nbf));
        let leeway_s = LEEWAY_DEFAULT.as_secs();
        assert!(
            validator_at(&keys, nbf - leeway_s)
                .validate(&bearer(&token))
                .is_ok()
        );
        let error = validator_at(&keys, nbf - leeway_s - 1)
            .validate(&bearer(&token))
            .unwrap_err();
        assert_eq!(error, AuthError::NotYetValid);
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let keys = keys();
        let mut spec = TokenSpec::new("alice", NOW_S);
        spec.audience = "some-other-api".into();
        let token = minted(&keys, &spec);
        assert_eq!(
            validator_at(&keys, NOW_S).validate(&bearer(&token)),
            Err(AuthError::Invalid)
        );
        let mut spec = TokenSpec::new("alice", NOW_S);
        spec.issuer = "https://evil.example".into();
        let token = minted(&keys, &spec);
        assert_eq!(
            validator_at(&keys, NOW_S).validate(&bearer(&token)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn token_signed_by_another_key_is_refused() {
        let (keys, other) = (keys(), keys());
        let token = minted(&other, &TokenSpec::new("alice", NOW_S));
        let error = validator_at(&keys, NOW_S)
            .validate(&bearer(&token))
            .unwrap_err();
        assert_eq!(error, AuthError::Invalid);
        assert_eq!(Status::from(error).code(), tonic::Code::Unauthenticated);
        assert_eq!(Status::from(error).message(), TOKEN_INVALID_MSG);
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_refused() {
        let keys = keys();
        let claims = TokenSpec::new("alice", NOW_S).claims();
        let secret = EncodingKey::from_secret(keys.verify_pem.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret).unwrap();
        assert_eq!(
            validator_at(&keys, NOW_S).validate(&bearer(&token)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = keys();
        let valid = minted(&keys, &TokenSpec::new("alice", NOW_S));
        let mut parts = valid.split('.');
        let (_, payload, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        // {"alg":"none","typ":"JWT"}
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let validator = validator_at(&keys, NOW_S);
        for token in [
            format!("{none_header}.{payload}."),
            format!("{none_header}.{payload}.{signature}"),
        ] {
            assert_eq!(validator.validate(&bearer(&token)), Err(AuthError::Invalid));
        }
    }

    #[test]
    fn missing_claims_are_refused() {
        #[derive(serde::Serialize)]
        struct NoNbf {
            sub: String,
            iss: String,
            aud: String,
            exp: u64,
        }
        let keys = keys();
        let full: MintedClaims = TokenSpec::new("alice", NOW_S).claims();
        let token = sign_claims(
            keys.signing_pem.as_bytes(),
            &NoNbf {
                sub: full.sub.clone(),
                iss: full.iss.clone(),
                aud: full.aud.clone(),
                exp: full.exp,
            },
        )
        .unwrap();
        assert_eq!(
            validator_at(&keys, NOW_S).validate(&bearer(&token)),
            Err(AuthError::Invalid)
        );
        let empty_user = minted(&keys, &TokenSpec::new("", NOW_S));
        assert_eq!(
            validator_at(&keys, NOW_S).validate(&bearer(&empty_user)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn header_without_bearer_scheme_is_refused() {
        let keys = keys();
        let token = minted(&keys, &TokenSpec::new("alice", NOW_S));
        let validator = validator_at(&keys, NOW_S);
        for header in [
            token.clone(),
            format!("Basic {token}"),
            "Bearer ".to_owned(),
            String::new(),
        ] {
            let error = validator.validate(&header).unwrap_err();
            assert_eq!(error, AuthError::NotBearer, "{header:?}");
            assert_eq!(Status::from(error).message(), TOKEN_REQUIRED_MSG);
        }
    }

    #[test]
    fn over_long_header_is_refused_before_parsing() {
        let keys = keys();
        let validator = validator_at(&keys, NOW_S);
        let header = format!("Bearer {}", "a".repeat(AUTHORIZATION_HEADER_LEN_MAX));
        assert_eq!(validator.validate(&header), Err(AuthError::TooLong));
    }

    #[test]
    fn request_metadata_is_read() {
        let keys = keys();
        let validator = validator_at(&keys, NOW_S);
        assert_eq!(
            validator.validate_request(&tonic::Request::new(())),
            Err(AuthError::Missing)
        );
        let token = minted(&keys, &TokenSpec::new("bob", NOW_S));
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, bearer(&token).parse().unwrap());
        assert_eq!(validator.validate_request(&request).unwrap().user_id, "bob");
    }

    #[test]
    fn setup_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(0));
        let absent = TokenSection {
            verify_key_path: dir.path().join("absent.pem").display().to_string(),
            ..TokenSection::default()
        };
        let message = absent.validator(clock.clone()).err().unwrap().to_string();
        assert!(message.contains("absent.pem"), "{message}");
        let keys = keys();
        let wrong = dir.path().join("signing.pem");
        std::fs::write(&wrong, "not a key").unwrap();
        let section = TokenSection {
            verify_key_path: wrong.display().to_string(),
            ..TokenSection::default()
        };
        let message = section.validator(clock.clone()).err().unwrap().to_string();
        assert!(message.contains("signing.pem"), "{message}");
        assert!(
            TokenSection::default()
                .validator(clock.clone())
                .unwrap()
                .is_none()
        );
        let good = dir.path().join("verify.pem");
        std::fs::write(&good, &keys.verify_pem).unwrap();
        let section = TokenSection {
            verify_key_path: good.display().to_string(),
            ..TokenSection::default()
        };
        assert!(section.validator(clock).unwrap().is_some());
    }
}
