//! Creates the development PKI, only what is missing, so `make run` can call it on every
//! start. A fresh CA invalidates every leaf, so when the CA is (re)created all leaves are
//! (re)issued; otherwise existing files are kept untouched.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::PkiError;
use crate::files::PkiFiles;
use service_kit::identity::{OPERATOR_NAME, SERVICE_NAMES, spiffe_id_for};

/// The CA outlives its leaves so that rotating leaves does not mean redistributing the root.
const CA_VALIDITY_DAYS: i64 = 5 * 365;
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Certificates start a day early: clocks of freshly started containers drift.
const BACKDATE_DAYS: i64 = 1;

/// What [`init`] did, file by file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Creates in `dir` whatever is missing of: the CA, one certificate per service, the
/// operator client certificate and the token signing key pair. `now` dates the
/// certificates.
pub fn init(dir: &Path, now: OffsetDateTime) -> Result<InitReport, PkiError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| write_error(dir, source))?;
    let files = PkiFiles::new(dir);
    let mut report = InitReport::default();
    let (issuer, ca_is_new) = ensure_ca(&files, now, &mut report)?;
    for name in SERVICE_NAMES {
        ensure_leaf(&files, name, &issuer, ca_is_new, now, &mut report)?;
    }
    ensure_leaf(&files, OPERATOR_NAME, &issuer, ca_is_new, now, &mut report)?;
    ensure_token_keys(&files, &mut report)?;
    Ok(report)
}

/// The subject alternative names of `name`'s certificate: services are reachable as
/// localhost, 127.0.0.1 and their DNS name; every certificate carries its SPIFFE id.
pub fn subject_alt_names(name: &str) -> Result<Vec<SanType>, PkiError> {
    let mut names = Vec::new();
    if name != OPERATOR_NAME {
        names.push(SanType::DnsName("localhost".try_into()?));
        names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        names.push(SanType::DnsName(name.try_into()?));
    }
    names.push(SanType::URI(spiffe_id_for(name).as_str().try_into()?));
    Ok(names)
}

fn ensure_ca(
    files: &PkiFiles,
    now: OffsetDateTime,
    report: &mut InitReport,
) -> Result<(Issuer<'static, KeyPair>, bool), PkiError> {
    let (cert_path, key_path) = (files.ca_cert(), files.ca_key());
    if pair_exists(&cert_path, &key_path)? {
        let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(|_| PkiError::Invalid {
            path: key_path.display().to_string(),
            what: "CA private key",
        })?;
        let issuer = Issuer::from_ca_cert_pem(&read_text(&cert_path)?, key).map_err(|_| {
            PkiError::Invalid {
                path: cert_path.display().to_string(),
                what: "CA certificate",
            }
        })?;
        report.kept.extend([cert_path, key_path]);
        return Ok((issuer, false));
    }
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "BankTransfer development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, CA_VALIDITY_DAYS);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    write_secret(&key_path, &key.serialize_pem())?;
    write_public(&cert_path, &cert.pem())?;
    report.created.extend([cert_path, key_path]);
    Ok((Issuer::new(params, key), true))
}

fn ensure_leaf(
    files: &PkiFiles,
    name: &str,
    issuer: &Issuer<'static, KeyPair>,
    reissue: bool,
    now: OffsetDateTime,
    report: &mut InitReport,
) -> Result<(), PkiError> {
    let (cert_path, key_path) = (files.cert(name), files.key(name));
    if !reissue && pair_exists(&cert_path, &key_path)? {
        report.kept.extend([cert_path, key_path]);
        return Ok(());
    }
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = subject_alt_names(name)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Services both serve and call (gateway -> participants, reconciler -> participants);
    // the operator only calls.
    params.extended_key_usages = if name == OPERATOR_NAME {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, LEAF_VALIDITY_DAYS);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, issuer)?;
    remove_if_present(&cert_path)?;
    remove_if_present(&key_path)?;
    write_secret(&key_path, &key.serialize_pem())?;
    write_public(&cert_path, &cert.pem())?;
    report.created.extend([cert_path, key_path]);
    Ok(())
}

fn ensure_token_keys(files: &PkiFiles, report: &mut InitReport) -> Result<(), PkiError> {
    let (signing_path, verify_path) = (files.token_signing_key(), files.token_verify_key());
    if pair_exists(&signing_path, &verify_path)? {
        report.kept.extend([signing_path, verify_path]);
        return Ok(());
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    write_secret(&signing_path, &key.serialize_pem())?;
    write_public(&verify_path, &key.public_key_pem())?;
    report.created.extend([signing_path, verify_path]);
    Ok(())
}

fn set_validity(params: &mut CertificateParams, now: OffsetDateTime, days: i64) {
    params.not_before = now - Duration::days(BACKDATE_DAYS);
    params.not_after = now + Duration::days(days);
}

/// Both halves present: keep. Neither: create. One: refuse, since overwriting the other
/// half could destroy the only copy of a key someone still uses.
fn pair_exists(first: &Path, second: &Path) -> Result<bool, PkiError> {
    match (first.exists(), second.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(half_pair(first, second)),
        (false, true) => Err(half_pair(second, first)),
    }
}

fn half_pair(present: &Path, missing: &Path) -> PkiError {
    PkiError::HalfPair {
        present: present.display().to_string(),
        missing: missing.display().to_string(),
    }
}

fn remove_if_present(path: &Path) -> Result<(), PkiError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(write_error(path, source)),
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Private keys: created with mode 0600 from the start (never world-readable, not even
/// briefly), and never over an existing file.
fn write_secret(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_new(path, contents, 0o600)
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_new(path, contents, 0o644)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| write_error(path, source))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Write {
        path: path.display().to_string(),
        source,
    }
}
