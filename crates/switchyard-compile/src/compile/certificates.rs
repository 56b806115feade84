//! Server certificates for the HTTPS listener: Secrets labelled
//! `switchyard.dev/certificate: "true"` checked here, as the proxy will load them, so a
//! certificate that would fail is an `Accepted=False` on its Secret (with the reason) and
//! is never served, while every other certificate keeps serving.
//!
//! Checked: the Secret type, the PEM of `tls.crt` (webpki parses the leaf) and `tls.key`
//! (PKCS#1, SEC1 or PKCS#8, loaded by rustls' ring provider), that the key is the leaf's,
//! the validity period against the input's clock, and the subjectAltName DNS names (the
//! names it is picked by; wildcards cover exactly one leftmost label). With per-namespace
//! host ownership a name owned by another namespace is not served from this one.

mod x509;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use switchyard_api::condition_type::ACCEPTED;

use super::Rejection;
use crate::snapshot::{HostOwner, SecretText, ServerCertificate};
use crate::{CertificateSecret, ConditionSpec, ObjectRef, ResourceKind, ResourceStatus, Resources, reason, validate};

/// The `type` a certificate Secret must have.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Every labelled Secret, checked; the accepted ones sorted by namespace and name (the
/// order the proxy breaks ties between certificates naming the same host in).
pub(super) fn compile_all(resources: &Resources, host_owners: &[HostOwner], statuses: &mut Vec<ResourceStatus>) -> Vec<ServerCertificate> {
    let now = resources.clock.map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64));
    let mut secrets: Vec<&CertificateSecret> = resources.certificates.iter().collect();
    secrets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut accepted = Vec::new();
    for secret in secrets {
        let object = ObjectRef::new(ResourceKind::Secret, Some(&secret.namespace), &secret.name);
        let mut status = ResourceStatus::new(object, None);
        match check(secret, now).and_then(|certificate| owned_names(certificate, &secret.namespace, host_owners)) {
            Ok((certificate, message)) => {
                status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, message));
                accepted.push(certificate);
            }
            Err(why) => super::reject(&mut status, why),
        }
        statuses.push(status);
    }
    accepted
}

/// One Secret as a served certificate, or why not. No message ever holds key material.
fn check(secret: &CertificateSecret, now: Option<i64>) -> Result<ServerCertificate, Rejection> {
    let invalid = |message: String| Rejection::new(reason::INVALID_CERTIFICATE, message);
    if let Some(kind) = secret.secret_type.as_deref().filter(|t| *t != TLS_SECRET_TYPE) {
        return Err(invalid(format!("the Secret's type is {kind:?}; a certificate Secret must be {TLS_SECRET_TYPE}")));
    }
    let missing = |key: &str| Rejection::new(reason::SECRET_KEY_NOT_FOUND, format!("the Secret has no {key} (or it is not text)"));
    let chain_pem = secret.certificate_chain.as_deref().ok_or_else(|| missing("tls.crt"))?;
    let key_pem = secret.private_key.as_deref().ok_or_else(|| missing("tls.key"))?;
    let chain = certificate_chain(chain_pem).map_err(invalid)?;
    // pem errors may quote a line of the key: never passed on.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| invalid("tls.key holds no PEM private key (PKCS#1 RSA, SEC1 EC or PKCS#8)".into()))?;
    let signing_key = any_supported_type(&key).map_err(|_| invalid("tls.key is not a usable RSA, ECDSA or Ed25519 private key".into()))?;
    let leaf = x509::leaf(&chain[0]).map_err(|e| invalid(format!("tls.crt: the first certificate: {e}")))?;
    CertifiedKey::new(chain, signing_key).keys_match().map_err(|_| {
        Rejection::new(reason::CERTIFICATE_KEY_MISMATCH, "tls.key is not the private key of the first certificate in tls.crt")
    })?;
    if let Some(now) = now {
        if now > leaf.not_after {
            return Err(Rejection::new(reason::CERTIFICATE_EXPIRED, format!("the certificate expired at {}", utc(leaf.not_after))));
        }
        if now < leaf.not_before {
            let message = format!("the certificate is valid from {} only", utc(leaf.not_before));
            return Err(Rejection::new(reason::CERTIFICATE_NOT_YET_VALID, message));
        }
    }
    let names = served_names(&leaf.dns_names);
    if names.is_empty() {
        return Err(invalid("the certificate's subjectAltName holds no usable DNS name (exact or *.suffix)".into()));
    }
    Ok(ServerCertificate {
        id: format!("{}/{}", secret.namespace, secret.name),
        names,
        certificate_chain: chain_pem.to_owned(),
        private_key: SecretText(key_pem.to_owned()),
        not_after: leaf.not_after,
    })
}

/// Every CERTIFICATE block of `tls.crt`, the first (the leaf) parsed by webpki.
fn certificate_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| format!("tls.crt is not valid PEM: {e:?}"))?;
    let leaf = chain.first().ok_or("tls.crt holds no PEM CERTIFICATE block")?;
    webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("tls.crt: the first certificate does not parse: {e}"))?;
    Ok(chain)
}

/// The SAN names a certificate is picked by, lowercase, deduplicated: valid DNS names,
/// and `*.suffix` with one whole wildcard label over a suffix of two labels or more.
/// Anything else (`*`, `a*.b.c`, `*.*.b.c`, `*.com`) can never match and is left out.
fn served_names(dns_names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = dns_names
        .iter()
        .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
        .filter(|name| match name.strip_prefix("*.") {
            Some(suffix) => suffix.contains('.') && validate::dns_name(suffix).is_ok(),
            None => validate::dns_name(name).is_ok(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Drops the names another namespace owns (per-namespace host ownership): a tenant
/// cannot answer handshakes for another tenant's host. None left is a rejection.
fn owned_names(
    mut certificate: ServerCertificate,
    namespace: &str,
    host_owners: &[HostOwner],
) -> Result<(ServerCertificate, String), Rejection> {
    let foreign = |name: &String| host_owners.iter().any(|o| o.host == *name && o.namespace != namespace);
    let (dropped, kept): (Vec<String>, Vec<String>) = certificate.names.drain(..).partition(foreign);
    certificate.names = kept;
    if certificate.names.is_empty() {
        let message = format!("every name of the certificate belongs to another namespace: {}", dropped.join(", "));
        return Err(Rejection::new(reason::HOST_OWNED_BY_ANOTHER_NAMESPACE, message));
    }
    let mut message = format!("serving for {}", certificate.names.join(", "));
    if !dropped.is_empty() {
        message.push_str(&format!("; not for {} (owned by another namespace)", dropped.join(", ")));
    }
    Ok((certificate, message))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = crate::calendar::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests;
