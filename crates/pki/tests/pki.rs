//! The development PKI: what `init` creates, that it is idempotent and careful with
//! private keys, and that minted tokens verify with the published key.

use std::os::unix::fs::PermissionsExt;

use banktransfer_pki::PkiError;
use banktransfer_pki::files::PkiFiles;
use banktransfer_pki::init::init;
use banktransfer_pki::token::{Claims, TokenSpec, mint_in_dir};
use service_kit::identity::{self, OPERATOR_NAME, SERVICE_NAMES};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const NOW_S: i64 = 1_796_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW_S).unwrap()
}

fn uri_sans(pem_path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read(pem_path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for name in &sans.value.general_names {
        match name {
            GeneralName::URI(uri) => uris.push((*uri).to_owned()),
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    (uris, dns)
}

#[test]
fn init_creates_every_file_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let report = init(dir.path(), now()).unwrap();
    assert_eq!(report.created.len(), 2 + 2 * SERVICE_NAMES.len() + 2 + 2);
    assert!(report.kept.is_empty());
    let files = PkiFiles::new(dir.path());
    let mut keys = vec![
        files.ca_key(),
        files.token_signing_key(),
        files.key(OPERATOR_NAME),
    ];
    keys.extend(SERVICE_NAMES.iter().map(|name| files.key(name)));
    for key in keys {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let public = std::fs::read_to_string(files.token_verify_key()).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn certificates_carry_the_spiffe_ids_and_dns_names() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let files = PkiFiles::new(dir.path());
    for name in SERVICE_NAMES {
        let (uris, dns) = uri_sans(&files.cert(name));
        assert_eq!(uris, vec![identity::spiffe_id_for(name)]);
        assert_eq!(dns, vec!["localhost".to_owned(), name.to_owned()]);
    }
    let (uris, dns) = uri_sans(&files.cert(OPERATOR_NAME));
    assert_eq!(uris, vec![identity::OPERATOR.to_owned()]);
    assert!(dns.is_empty());
}

#[test]
fn second_init_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let files = PkiFiles::new(dir.path());
    let before = std::fs::read(files.cert("reconciler")).unwrap();
    let report = init(dir.path(), now()).unwrap();
    assert!(report.created.is_empty(), "{:?}", report.created);
    assert_eq!(std::fs::read(files.cert("reconciler")).unwrap(), before);
}

#[test]
fn a_missing_leaf_is_reissued_by_the_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let files = PkiFiles::new(dir.path());
    let ca_before = std::fs::read(files.ca_cert()).unwrap();
    std::fs::remove_file(files.cert("reconciler")).unwrap();
    std::fs::remove_file(files.key("reconciler")).unwrap();
    let report = init(dir.path(), now()).unwrap();
    assert_eq!(
        report.created,
        vec![files.cert("reconciler"), files.key("reconciler")]
    );
    assert_eq!(std::fs::read(files.ca_cert()).unwrap(), ca_before);
}

#[test]
fn a_new_ca_reissues_every_leaf() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let files = PkiFiles::new(dir.path());
    let leaf_before = std::fs::read(files.cert("gateway-coordinator")).unwrap();
    std::fs::remove_file(files.ca_cert()).unwrap();
    std::fs::remove_file(files.ca_key()).unwrap();
    let report = init(dir.path(), now()).unwrap();
    assert!(report.created.contains(&files.cert("gateway-coordinator")));
    assert_ne!(
        std::fs::read(files.cert("gateway-coordinator")).unwrap(),
        leaf_before
    );
    // The token key is not part of the X.509 chain: kept.
    assert!(report.kept.contains(&files.token_signing_key()));
}

#[test]
fn half_a_key_pair_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let files = PkiFiles::new(dir.path());
    std::fs::remove_file(files.ca_key()).unwrap();
    let error = init(dir.path(), now()).unwrap_err();
    assert!(matches!(error, PkiError::HalfPair { .. }), "{error}");
    assert!(error.to_string().contains("ca-key.pem"));
}

#[test]
fn minted_token_verifies_with_the_published_key() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), now()).unwrap();
    let token = mint_in_dir(dir.path(), &TokenSpec::new("alice", NOW_S as u64)).unwrap();
    let files = PkiFiles::new(dir.path());
    let key =
        jsonwebtoken::DecodingKey::from_ed_pem(&std::fs::read(files.token_verify_key()).unwrap())
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[identity::TOKEN_AUDIENCE_DEFAULT]);
    validation.validate_exp = false; // NOW_S is a fixed test time
    let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims, TokenSpec::new("alice", NOW_S as u64).claims());
    assert_eq!(data.claims.exp - data.claims.nbf, 3600);
    assert_eq!(data.claims.iss, identity::TOKEN_ISSUER_DEFAULT);
}

#[test]
fn token_without_a_pki_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let error = mint_in_dir(dir.path(), &TokenSpec::new("alice", 0)).unwrap_err();
    assert!(
        error.to_string().contains("token-signing-key.pem"),
        "{error}"
    );
}
