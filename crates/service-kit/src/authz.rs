//! Per-method authorization by the caller's certificate identity.
//!
//! A method names the SPIFFE ids it serves (e.g. [`crate::tls::COORDINATOR_IDENTITIES`]);
//! [`authorize`] returns the caller or the status to answer with. The answers say what is
//! needed and nothing about who is allowed or what the caller presented; the server log
//! gets the detail.

use tonic::Status;

use crate::tls::{PeerIdentity, SpiffeId, peer_identity};

/// Sent when no client certificate came with the call.
pub const CERTIFICATE_REQUIRED_MSG: &str = "this method requires a client certificate";
/// Sent when the certificate is valid but its identity may not call the method.
pub const IDENTITY_NOT_ALLOWED_MSG: &str =
    "this method is not available to the identity in the client certificate";

/// `Ok(caller)` when `request` comes with a verified client certificate whose SPIFFE id is
/// in `allowed`; `unauthenticated` without a certificate; `permission_denied` otherwise.
pub fn authorize<T>(request: &tonic::Request<T>, allowed: &[SpiffeId]) -> Result<SpiffeId, Status> {
    authorize_identity(peer_identity(request), allowed)
}

/// [`authorize`] on an identity already extracted.
pub fn authorize_identity(
    identity: PeerIdentity,
    allowed: &[SpiffeId],
) -> Result<SpiffeId, Status> {
    match identity {
        PeerIdentity::Anonymous => Err(Status::unauthenticated(CERTIFICATE_REQUIRED_MSG)),
        PeerIdentity::Spiffe(caller) if allowed.contains(&caller) => Ok(caller),
        PeerIdentity::Spiffe(caller) => {
            tracing::warn!(%caller, "call refused: identity not allowed for this method");
            Err(Status::permission_denied(IDENTITY_NOT_ALLOWED_MSG))
        }
        PeerIdentity::Unrecognised(why) => {
            tracing::warn!(?why, "call refused: client certificate names no SPIFFE id");
            Err(Status::permission_denied(IDENTITY_NOT_ALLOWED_MSG))
        }
    }
}

/// An interceptor for services whose every method has the same allowlist (the operator
/// API): refuses as [`authorize`] does, and leaves the caller's [`SpiffeId`] in the
/// request extensions for the handler.
pub fn require_identities(
    allowed: &'static [SpiffeId],
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone + Send + Sync + 'static
{
    move |mut request: tonic::Request<()>| {
        let caller = authorize(&request, allowed)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{COORDINATOR_IDENTITIES, NoSpiffeId, OPERATOR_IDENTITIES};
    use tonic::Code;

    #[test]
    fn coordinator_identities_are_allowed() {
        for caller in [SpiffeId::GATEWAY_COORDINATOR, SpiffeId::RECONCILER] {
            let result =
                authorize_identity(PeerIdentity::Spiffe(caller.clone()), COORDINATOR_IDENTITIES);
            assert_eq!(result.unwrap(), caller);
        }
    }

    #[test]
    fn other_identities_are_denied_without_saying_who_is_allowed() {
        for caller in [
            SpiffeId::OPERATOR,
            SpiffeId::INTERNAL_BALANCE_STORE,
            SpiffeId::parse("spiffe://elsewhere/gateway-coordinator").unwrap(),
        ] {
            let status = authorize_identity(PeerIdentity::Spiffe(caller), COORDINATOR_IDENTITIES)
                .unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied);
            assert_eq!(status.message(), IDENTITY_NOT_ALLOWED_MSG);
            assert!(!status.message().contains("spiffe"));
        }
        let status = authorize_identity(
            PeerIdentity::Spiffe(SpiffeId::GATEWAY_COORDINATOR),
            OPERATOR_IDENTITIES,
        )
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    #[test]
    fn certificate_without_identity_is_denied() {
        let status = authorize_identity(
            PeerIdentity::Unrecognised(NoSpiffeId::Missing),
            COORDINATOR_IDENTITIES,
        )
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    #[test]
    fn no_certificate_is_unauthenticated() {
        let status = authorize(&tonic::Request::new(()), COORDINATOR_IDENTITIES).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), CERTIFICATE_REQUIRED_MSG);
        let mut interceptor = require_identities(OPERATOR_IDENTITIES);
        let status = interceptor(tonic::Request::new(())).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}
