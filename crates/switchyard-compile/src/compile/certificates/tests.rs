use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

// Leaves signed by one test CA (tests/fixtures/certs), valid 2026-12-02 .. 2126-11-08,
// each naming shop.example.com, *.shop.example.com, and two names that can never match.
const RSA: &str = include_str!("../../../tests/fixtures/certs/rsa.pem");
const RSA_PKCS1: &str = include_str!("../../../tests/fixtures/certs/rsa-pkcs1.key");
const EC: &str = include_str!("../../../tests/fixtures/certs/ec.pem");
const EC_SEC1: &str = include_str!("../../../tests/fixtures/certs/ec-sec1.key");
const ED25519: &str = include_str!("../../../tests/fixtures/certs/ed25519.pem");
const ED25519_PKCS8: &str = include_str!("../../../tests/fixtures/certs/ed25519-pkcs8.key");
const CA: &str = include_str!("../../../tests/fixtures/certs/ca.pem");

fn secret(name: &str, chain: &str, key: &str) -> CertificateSecret {
    CertificateSecret {
        namespace: "shop".into(),
        name: name.into(),
        secret_type: Some(TLS_SECRET_TYPE.into()),
        certificate_chain: Some(chain.into()),
        private_key: Some(key.into()),
    }
}

fn year(year: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((year - 1970) * 365 * 86_400)
}

fn compiled(secrets: Vec<CertificateSecret>, clock: Option<SystemTime>) -> (Vec<ServerCertificate>, Vec<ResourceStatus>) {
    let resources = Resources { certificates: secrets, clock, ..Resources::default() };
    let mut statuses = Vec::new();
    let certificates = compile_all(&resources, &[], &mut statuses);
    (certificates, statuses)
}

fn accepted(status: &ResourceStatus) -> (bool, &str, &str) {
    let condition = status.conditions.iter().find(|c| c.type_ == ACCEPTED).expect("an Accepted condition");
    (condition.status, condition.reason.as_str(), condition.message.as_str())
}

#[test]
fn pkcs1_rsa_sec1_ec_and_pkcs8_ed25519_keys_are_all_accepted() {
    let chains = [("rsa", RSA, RSA_PKCS1), ("ec", EC, EC_SEC1), ("ed25519", ED25519, ED25519_PKCS8)];
    let (certificates, statuses) = compiled(chains.iter().map(|(n, c, k)| secret(n, c, k)).collect(), Some(year(2030)));
    assert_eq!(certificates.len(), 3, "{statuses:?}");
    for status in &statuses {
        assert!(accepted(status).0, "{status:?}");
    }
    let names = &certificates[0].names;
    assert_eq!(names, &["*.shop.example.com", "shop.example.com"], "`*` and `Bad*.example.com` can never match: left out");
    assert_eq!(certificates[0].id, "shop/ec");
    assert_eq!(certificates[0].not_after, 4_949_815_776, "2126-11-08T12:49:36Z");
}

#[test]
fn an_expired_or_not_yet_valid_certificate_is_refused_with_its_dates() {
    let (served, statuses) = compiled(vec![secret("late", EC, EC_SEC1)], Some(year(2200)));
    assert!(served.is_empty());
    let (ok, why, message) = accepted(&statuses[0]);
    assert_eq!((ok, why), (false, reason::CERTIFICATE_EXPIRED));
    assert_eq!(message, "the certificate expired at 2126-11-08T12:49:36Z");
    let (served, statuses) = compiled(vec![secret("early", EC, EC_SEC1)], Some(year(2000)));
    assert!(served.is_empty());
    assert_eq!(accepted(&statuses[0]).1, reason::CERTIFICATE_NOT_YET_VALID, "{statuses:?}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_a_mismatch_and_the_good_one_still_serves() {
    let (served, statuses) = compiled(vec![secret("good", EC, EC_SEC1), secret("mixed", RSA, EC_SEC1)], None);
    assert_eq!(served.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["shop/good"]);
    let mixed = statuses.iter().find(|s| s.object.name == "mixed").unwrap();
    assert_eq!(accepted(mixed).1, reason::CERTIFICATE_KEY_MISMATCH);
}

#[test]
fn broken_pem_missing_keys_and_wrong_types_have_their_own_reasons_and_never_show_the_key() {
    let mut no_key = secret("no-key", EC, EC_SEC1);
    no_key.private_key = None;
    let mut opaque = secret("opaque", EC, EC_SEC1);
    opaque.secret_type = Some("Opaque".into());
    let garbage_key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
    let cases = [
        (no_key, reason::SECRET_KEY_NOT_FOUND, "tls.key"),
        (opaque, reason::INVALID_CERTIFICATE, "kubernetes.io/tls"),
        (secret("ca-only-key", CA, "not pem"), reason::INVALID_CERTIFICATE, "tls.key holds no PEM private key"),
        (secret("garbage-key", EC, garbage_key), reason::INVALID_CERTIFICATE, "not a usable"),
        (secret("no-cert", "hello", EC_SEC1), reason::INVALID_CERTIFICATE, "no PEM CERTIFICATE"),
        (
            secret("bad-cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", EC_SEC1),
            reason::INVALID_CERTIFICATE,
            "does not parse",
        ),
    ];
    for (input, want, says) in cases {
        let (served, statuses) = compiled(vec![input], None);
        assert!(served.is_empty());
        let (ok, why, message) = accepted(&statuses[0]);
        assert_eq!((ok, why), (false, want), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("c2VjcmV0") && !message.contains("BEGIN"), "no key material in {message}");
    }
}

#[test]
fn names_another_namespace_owns_are_not_served_from_this_one() {
    let owners = [HostOwner { host: "shop.example.com".into(), namespace: "other".into() }];
    let resources = Resources { certificates: vec![secret("ec", EC, EC_SEC1)], ..Resources::default() };
    let mut statuses = Vec::new();
    let served = compile_all(&resources, &owners, &mut statuses);
    assert_eq!(served[0].names, ["*.shop.example.com"]);
    assert!(accepted(&statuses[0]).2.contains("not for shop.example.com"), "{statuses:?}");
    let all = [owners[0].clone(), HostOwner { host: "*.shop.example.com".into(), namespace: "other".into() }];
    let mut statuses = Vec::new();
    assert!(compile_all(&resources, &all, &mut statuses).is_empty());
    assert_eq!(accepted(&statuses[0]).1, reason::HOST_OWNED_BY_ANOTHER_NAMESPACE);
}

#[test]
fn debug_output_of_a_certificate_never_shows_the_private_key() {
    let (served, _) = compiled(vec![secret("ec", EC, EC_SEC1)], None);
    let shown = format!("{:?} {:?}", served[0], secret("ec", EC, EC_SEC1));
    assert!(!shown.contains("EC PRIVATE KEY") && shown.contains("<redacted>"), "{shown}");
}

#[test]
fn utc_times_are_written_as_rfc3339() {
    assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(utc(4_949_815_776), "2126-11-08T12:49:36Z");
}
