//! A throw-away development PKI for tests that run real servers: every BankTransfer port
//! speaks TLS and checks who is calling, in tests as in production.
//!
//! [`TestPki::new`] runs `banktransfer-pki init` into a temporary directory (a CA, one
//! certificate per service with its SPIFFE id, the operator's client certificate, the
//! token key pair). Tests then configure a service with [`TestPki::tls_section`], dial it
//! as any identity with [`TestPki::channel`], and authenticate as any user with
//! [`TestPki::bearer`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use banktransfer_pki::files::PkiFiles;
use banktransfer_pki::token::{TokenSpec, mint_in_dir};
use service_kit::clock::{Clock, SystemClock};
use service_kit::jwt::TokenSection;
use service_kit::tls::TlsSection;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The identities a test can call as: each service's own and the operator's.
pub use service_kit::identity::{OPERATOR_NAME, SERVICE_NAMES};

/// Guards against a hung test, not a timing assertion.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("a temporary directory for the test PKI");
        banktransfer_pki::init::init(dir.path(), time::OffsetDateTime::now_utc())
            .expect("creating the test PKI");
        TestPki { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn files(&self) -> PkiFiles {
        PkiFiles::new(self.dir.path())
    }

    /// `[tls]` of the service `name` (one of [`SERVICE_NAMES`]).
    pub fn tls_section(&self, name: &str) -> TlsSection {
        TlsSection::in_dir(&self.dir.path().display().to_string(), name)
    }

    /// The gateway's `[auth]`: the token verify key of this PKI, default issuer/audience.
    pub fn token_section(&self) -> TokenSection {
        TokenSection {
            verify_key_path: self.files().token_verify_key().display().to_string(),
            ..TokenSection::default()
        }
    }

    /// Trust this PKI's CA and present `name`'s certificate (a service or
    /// [`OPERATOR_NAME`]).
    pub fn client_tls(&self, name: &str) -> ClientTlsConfig {
        let files = self.files();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&files.ca_cert())))
            .identity(Identity::from_pem(
                read(&files.cert(name)),
                read(&files.key(name)),
            ))
            .domain_name("localhost")
    }

    /// Trust this PKI's CA, present no certificate (a mobile client).
    pub fn anonymous_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.files().ca_cert())))
            .domain_name("localhost")
    }

    /// A connected TLS channel to `addr` (`HOST:PORT`) as `name`, or without a client
    /// certificate when `name` is `None`.
    pub async fn channel(&self, addr: impl std::fmt::Display, name: Option<&str>) -> Channel {
        let tls = match name {
            Some(name) => self.client_tls(name),
            None => self.anonymous_tls(),
        };
        Channel::from_shared(format!("https://{addr}"))
            .expect("a valid URL")
            .tls_config(tls)
            .expect("a valid TLS configuration")
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr} over TLS: {e:?}"))
    }

    /// `Bearer <token>` for `user_id`, valid for an hour from now.
    pub fn bearer(&self, user_id: &str) -> MetadataValue<tonic::metadata::Ascii> {
        let now_s = SystemClock.now_ms() / 1000;
        let token = mint_in_dir(self.dir.path(), &TokenSpec::new(user_id, now_s))
            .expect("minting a test token");
        format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value")
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
