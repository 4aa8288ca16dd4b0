//! TLS end to end on loopback, with a PKI made by `banktransfer-pki`: a server holding a
//! participant's certificate (the standard health service behind the coordinator-only
//! authorization), and clients with the coordinator's certificate, the operator's, none,
//! a foreign one, or no TLS at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use banktransfer_pki::files::PkiFiles;
use service_kit::acceptor;
use service_kit::authz::authorize;
use service_kit::tls::{COORDINATOR_IDENTITIES, PeerIdentity, SpiffeId, TlsSection, peer_identity};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::service::InterceptorLayer;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    banktransfer_pki::init::init(dir.path(), time::OffsetDateTime::now_utc()).unwrap();
    dir
}

fn section(dir: &std::path::Path, name: &str) -> TlsSection {
    let files = PkiFiles::new(dir);
    TlsSection {
        cert_path: files.cert(name).display().to_string(),
        key_path: files.key(name).display().to_string(),
        ca_path: files.ca_cert().display().to_string(),
    }
}

/// Serves health as `internal-balance-store` would serve Reserve: coordinator only. Every
/// caller's identity, as the server saw it, lands in the returned log.
async fn serve(dir: &std::path::Path) -> (String, Arc<Mutex<Vec<PeerIdentity>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let gate = move |request: tonic::Request<()>| {
        log.lock().unwrap().push(peer_identity(&request));
        authorize(&request, COORDINATOR_IDENTITIES)?;
        Ok(request)
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = acceptor::incoming(listener, &section(dir, "internal-balance-store")).unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tonic::transport::Server::builder()
        .layer(InterceptorLayer::new(gate))
        .add_service(health)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    (format!("127.0.0.1:{port}"), seen)
}

async fn check(url: String, tls: Option<ClientTlsConfig>) -> Result<(), tonic::Status> {
    let mut endpoint = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}

fn client_tls(dir: &std::path::Path, name: &str) -> ClientTlsConfig {
    section(dir, name).client_config().unwrap().unwrap()
}

#[tokio::test]
async fn coordinator_certificate_is_seen_and_allowed() {
    let dir = pki();
    let (addr, seen) = serve(dir.path()).await;
    let url = format!("https://{addr}");
    check(
        url.clone(),
        Some(client_tls(dir.path(), "gateway-coordinator")),
    )
    .await
    .unwrap();
    check(url, Some(client_tls(dir.path(), "reconciler")))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            PeerIdentity::Spiffe(SpiffeId::GATEWAY_COORDINATOR),
            PeerIdentity::Spiffe(SpiffeId::RECONCILER)
        ]
    );
}

#[tokio::test]
async fn other_identities_and_anonymous_callers_are_refused_above_tls() {
    let dir = pki();
    let (addr, seen) = serve(dir.path()).await;
    let url = format!("https://{addr}");
    let status = check(url.clone(), Some(client_tls(dir.path(), "operator")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // No client certificate: TLS accepts it (mobile clients on the gateway's port), the
    // method does not.
    let ca_only = ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(
        std::fs::read(PkiFiles::new(dir.path()).ca_cert()).unwrap(),
    ));
    let status = check(url, Some(ca_only)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            PeerIdentity::Spiffe(SpiffeId::OPERATOR),
            PeerIdentity::Anonymous
        ]
    );
}

#[tokio::test]
async fn plaintext_client_is_refused() {
    let dir = pki();
    let (addr, seen) = serve(dir.path()).await;
    let error = check(format!("http://{addr}"), None).await.unwrap_err();
    // The server answers the HTTP/2 preface as a failed TLS handshake and hangs up: a
    // transport error, before any method runs.
    assert!(
        matches!(error.code(), Code::Unavailable | Code::Unknown),
        "{error:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn client_that_does_not_trust_the_ca_is_refused() {
    let (dir, foreign) = (pki(), pki());
    let (addr, seen) = serve(dir.path()).await;
    // Trusts another CA (and presents that CA's coordinator certificate).
    let error = check(
        format!("https://{addr}"),
        Some(client_tls(foreign.path(), "gateway-coordinator")),
    )
    .await
    .unwrap_err();
    assert_ne!(error.code(), Code::Ok);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_by_tls() {
    let (dir, foreign) = (pki(), pki());
    let (addr, seen) = serve(dir.path()).await;
    // Trusts the right CA, but its "gateway-coordinator" certificate is signed by another.
    let impostor = TlsSection {
        ca_path: PkiFiles::new(dir.path()).ca_cert().display().to_string(),
        ..section(foreign.path(), "gateway-coordinator")
    };
    let error = check(
        format!("https://{addr}"),
        Some(impostor.client_config().unwrap().unwrap()),
    )
    .await
    .unwrap_err();
    assert_ne!(error.code(), Code::Ok);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the handshake must fail, not the method"
    );
}

/// A raw rustls client offering `versions`, trusting the PKI's CA, without a client
/// certificate.
async fn raw_handshake(
    dir: &std::path::Path,
    addr: &str,
    versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    let ca = std::fs::read(PkiFiles::new(dir).ca_cert()).unwrap();
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&ca) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn a_rustls_client_negotiates_tls_1_3_and_h2() {
    use tokio_rustls::rustls;

    let dir = pki();
    let (addr, _) = serve(dir.path()).await;
    // Offers both 1.2 and 1.3, as a generic client would: the server must pick 1.3.
    let stream = raw_handshake(
        dir.path(),
        &addr,
        &[&rustls::version::TLS12, &rustls::version::TLS13],
    )
    .await
    .unwrap();
    let (_, session) = stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn a_tls_1_2_only_client_is_refused() {
    use tokio_rustls::rustls;

    let dir = pki();
    let (addr, seen) = serve(dir.path()).await;
    let refused = raw_handshake(dir.path(), &addr, &[&rustls::version::TLS12]).await;
    assert!(refused.is_err(), "a TLS 1.2 handshake must fail");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_certificate_file_fails_the_start_naming_the_file() {
    let dir = pki();
    let mut bad = section(dir.path(), "internal-balance-store");
    // The key of another service: it does not match the certificate.
    bad.key_path = PkiFiles::new(dir.path())
        .key("gateway-coordinator")
        .display()
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = acceptor::incoming(listener, &bad).unwrap_err().to_string();
    assert!(error.contains("gateway-coordinator-key.pem"), "{error}");
}

#[tokio::test]
async fn rotated_files_are_served_without_a_restart() {
    let (old, new) = (pki(), pki());
    // The server's files live in a directory of their own, rotated in place.
    let live = tempfile::tempdir().unwrap();
    let copy_from = |from: &std::path::Path| {
        let (source, target) = (PkiFiles::new(from), PkiFiles::new(live.path()));
        let name = "internal-balance-store";
        std::fs::copy(source.cert(name), target.cert(name)).unwrap();
        std::fs::copy(source.key(name), target.key(name)).unwrap();
        std::fs::copy(source.ca_cert(), target.ca_cert()).unwrap();
    };
    copy_from(old.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = acceptor::incoming_checking_every(
        listener,
        &section(live.path(), "internal-balance-store"),
        Duration::from_millis(50),
    )
    .unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let url = format!("https://{addr}");
    check(
        url.clone(),
        Some(client_tls(old.path(), "gateway-coordinator")),
    )
    .await
    .unwrap();

    // Modification times have a coarse grain on some file systems: make the change visible.
    tokio::time::sleep(Duration::from_millis(20)).await;
    copy_from(new.path());
    let mut rotated = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if check(
            url.clone(),
            Some(client_tls(new.path(), "gateway-coordinator")),
        )
        .await
        .is_ok()
        {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the new certificate and CA were never served");
    assert!(
        check(url, Some(client_tls(old.path(), "gateway-coordinator")))
            .await
            .is_err(),
        "the old CA's certificates must no longer be accepted"
    );
}
