//! Our own TLS acceptor in front of tonic: TLS 1.3 only, client certificates verified
//! against the CA when presented, handshakes bounded in time and in number, and the
//! certificate, key and CA reloaded from their files when they change.
//!
//! Why not tonic's `Server::tls_config`: it cannot restrict protocol versions (rustls'
//! defaults accept TLS 1.2) and builds its configuration once, so a rotated certificate
//! needs a restart. Here the accept loop takes each connection through the current
//! `rustls::ServerConfig`; tonic still sees `tokio_rustls::server::TlsStream<TcpStream>`,
//! so `Request::peer_certs` (and with it [`crate::tls::peer_identity`]) works unchanged.
//!
//! Bounds: [`HANDSHAKES_MAX`] handshakes in flight (more connections wait in the kernel's
//! accept backlog), each at most [`crate::tls::HANDSHAKE_TIMEOUT`]; [`READY_MAX`] finished
//! handshakes queued for the server.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::tls::{HANDSHAKE_TIMEOUT, TlsError, TlsSection};

/// Handshakes in progress at once.
pub const HANDSHAKES_MAX: usize = 256;
/// Connections whose handshake finished, waiting for the server to take them.
const READY_MAX: usize = 64;
/// How often the files are checked for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The rustls configuration `section` describes: TLS 1.3 only, ALPN h2, this service's
/// certificate, client certificates optional but verified against the CA when presented
/// (the public gateway port serves clients without one; methods decide who may call).
pub fn server_config(section: &TlsSection) -> Result<rustls::ServerConfig, TlsError> {
    section.validate()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&section.ca_path, "PEM CA certificate")? {
        roots
            .add(ca)
            .map_err(|_| invalid(&section.ca_path, "CA certificate"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|_| invalid(&section.ca_path, "CA certificate"))?;
    let chain = certificates(&section.cert_path, "PEM certificate")?;
    let key = private_key(&section.key_path)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|_| invalid(&section.cert_path, "certificate for TLS 1.3"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        // The key does not match the certificate, or is of an unsupported kind.
        .map_err(|_| invalid(&section.key_path, "private key for the certificate"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepted TLS connections on `listener`, through the configuration of `section` as it is
/// on disk at each handshake (checked every [`RELOAD_CHECK_INTERVAL`]; a change that does
/// not load is logged and the previous configuration kept). The files are loaded once
/// here first, so a bad file fails the start. The accept loop ends when the stream is
/// dropped.
pub fn incoming(
    listener: TcpListener,
    section: &TlsSection,
) -> Result<ReceiverStream<Result<TlsStream<TcpStream>, io::Error>>, TlsError> {
    incoming_checking_every(listener, section, RELOAD_CHECK_INTERVAL)
}

/// [`incoming`], checking the files every `interval` (tests rotate in milliseconds).
pub fn incoming_checking_every(
    listener: TcpListener,
    section: &TlsSection,
    interval: Duration,
) -> Result<ReceiverStream<Result<TlsStream<TcpStream>, io::Error>>, TlsError> {
    let current = Arc::new(RwLock::new(Arc::new(server_config(section)?)));
    let (ready, stream) = mpsc::channel(READY_MAX);
    tokio::spawn(reload_loop(
        section.clone(),
        interval,
        Arc::clone(&current),
        ready.clone(),
    ));
    tokio::spawn(accept_loop(listener, current, ready));
    Ok(ReceiverStream::new(stream))
}

type Ready = mpsc::Sender<Result<TlsStream<TcpStream>, io::Error>>;

async fn accept_loop(
    listener: TcpListener,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    ready: Ready,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&handshakes).acquire_owned() => permit.expect("never closed"),
            () = ready.closed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
        let config = Arc::clone(&current.read().expect("not poisoned"));
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send(Ok(stream)).await;
                }
                // A failed handshake concerns that peer only: log, and keep serving.
                Ok(Err(error)) => tracing::info!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
            drop(permit);
        });
    }
}

/// Reloads the configuration when any of the three files changes (modification time).
async fn reload_loop(
    section: TlsSection,
    interval: Duration,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    ready: Ready,
) {
    let mut seen = modified(&section);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ready.closed() => return,
        }
        let now = modified(&section);
        if now == seen {
            continue;
        }
        seen = now;
        match server_config(&section) {
            Ok(config) => {
                *current.write().expect("not poisoned") = Arc::new(config);
                tracing::info!(cert_path = %section.cert_path, "TLS certificate, key and CA reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS files changed but do not load; keeping the previous ones")
            }
        }
    }
}

fn modified(section: &TlsSection) -> [Option<SystemTime>; 3] {
    [&section.cert_path, &section.key_path, &section.ca_path]
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
}

fn certificates(path: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        _ => Err(invalid(path, what)),
    }
}

/// The parse error is dropped on purpose: whatever it says must not echo key bytes.
fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|_| invalid(path, "PEM private key"))
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &str, what: &'static str) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        what,
    }
}
