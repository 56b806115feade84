//! Which certificate a TLS handshake gets: the live snapshot's certificates, indexed by
//! the names they cover, read lock-free on every handshake (an `ArcSwap`), so a rotation
//! reaches the next handshake as soon as its snapshot is swapped in, and connections
//! already open keep the certificate they were made with.
//!
//! Selection by SNI: an exact name first, then a wildcard covering exactly one leftmost
//! label (`*.shop.example.com` covers `a.shop.example.com`, not `shop.example.com` nor
//! `a.b.shop.example.com`), then the `--default-certificate`; with none, the handshake
//! fails and says why in the log. Ties (two certificates naming one host) go to the
//! first by namespace and name, the order compile sorts them in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use switchyard_compile::snapshot::ServerCertificate;

/// The live certificates and the flag naming the default one.
pub struct ServerCertificates {
    live: ArcSwap<CertificateSet>,
    /// `--default-certificate NS/NAME`.
    default_id: Option<String>,
    /// The second (since the epoch) a refused handshake was last logged: at most one line
    /// a second, so a client sending unknown names cannot flood the log.
    last_refusal_logged: AtomicU64,
}

/// Certificates by the names they cover.
#[derive(Default)]
struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl ServerCertificates {
    pub fn new(default_id: Option<String>) -> Self {
        Self { live: ArcSwap::default(), default_id, last_refusal_logged: AtomicU64::new(0) }
    }

    /// Replaces the set with the snapshot's certificates (off the handshake path). A
    /// certificate that does not load (compile checked it, so this is a bug or a
    /// hand-made snapshot) is logged by name and skipped.
    pub fn update(&self, certificates: &[ServerCertificate]) {
        let mut set = CertificateSet::default();
        for certificate in certificates {
            let key = match certified_key(certificate) {
                Ok(key) => Arc::new(key),
                Err(why) => {
                    tracing::error!(certificate = %certificate.id, why, "server certificate not loaded");
                    continue;
                }
            };
            for name in &certificate.names {
                let (index, name) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut set.wildcard, suffix),
                    None => (&mut set.exact, name.as_str()),
                };
                index.entry(name.to_owned()).or_insert_with(|| key.clone());
            }
            if self.default_id.as_deref() == Some(certificate.id.as_str()) {
                set.default = Some(key);
            }
        }
        if let (Some(id), None) = (&self.default_id, &set.default) {
            tracing::warn!(certificate = %id, "--default-certificate is not an accepted certificate: handshakes for names no certificate covers fail");
        }
        self.live.store(Arc::new(set));
    }

    /// The certificate for a handshake naming `server_name` (None: no SNI).
    fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let set = self.live.load();
        if let Some(name) = server_name {
            let lowered;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = name.to_ascii_lowercase();
                lowered.as_str()
            } else {
                name
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            if let Some(key) = set.exact.get(name) {
                return Some(key.clone());
            }
            if let Some(key) = name.split_once('.').and_then(|(_, suffix)| set.wildcard.get(suffix)) {
                return Some(key.clone());
            }
        }
        let picked = set.default.clone();
        if picked.is_none() {
            self.log_refusal(server_name);
        }
        picked
    }

    fn log_refusal(&self, server_name: Option<&str>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.last_refusal_logged.swap(now, Ordering::Relaxed) == now {
            return;
        }
        // Debug-quoted: the name is the client's, and must not forge log lines.
        let sni = server_name.map(|n| format!("{n:?}")).unwrap_or_else(|| "none".into());
        tracing::warn!(
            sni,
            "TLS handshake refused: no certificate covers the name and no --default-certificate is set (at most one such line a second)"
        );
    }
}

impl std::fmt::Debug for ServerCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.live.load();
        f.debug_struct("ServerCertificates")
            .field("exact", &set.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &set.wildcard.keys().collect::<Vec<_>>())
            .field("default", &self.default_id)
            .finish()
    }
}

impl ResolvesServerCert for ServerCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// A certificate and its key, loaded as rustls serves them.
fn certified_key(certificate: &ServerCertificate) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate.certificate_chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| "the chain is not valid PEM".to_owned())?;
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key.0.as_bytes()).map_err(|_| "the key is not valid PEM".to_owned())?;
    let key = any_supported_type(&key).map_err(|_| "the key is not a usable private key".to_owned())?;
    Ok(CertifiedKey::new(chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::SecretText;

    const EC: &str = include_str!("../../switchyard-compile/tests/fixtures/certs/ec.pem");
    const EC_KEY: &str = include_str!("../../switchyard-compile/tests/fixtures/certs/ec-sec1.key");
    const RSA: &str = include_str!("../../switchyard-compile/tests/fixtures/certs/rsa.pem");
    const RSA_KEY: &str = include_str!("../../switchyard-compile/tests/fixtures/certs/rsa-pkcs1.key");

    fn certificate(id: &str, names: &[&str], chain: &str, key: &str) -> ServerCertificate {
        ServerCertificate {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            certificate_chain: chain.into(),
            private_key: SecretText(key.into()),
            not_after: 0,
        }
    }

    fn which(set: &ServerCertificates, name: Option<&str>, ec: &CertifiedKey) -> Option<&'static str> {
        set.pick(name).map(|k| if k.cert == ec.cert { "ec" } else { "rsa" })
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label_only() {
        let certificates = ServerCertificates::new(None);
        certificates.update(&[
            certificate("shop/wild", &["*.shop.example.com"], EC, EC_KEY),
            certificate("shop/exact", &["api.shop.example.com"], RSA, RSA_KEY),
        ]);
        let ec = certified_key(&certificate("x", &[], EC, EC_KEY)).unwrap();
        assert_eq!(which(&certificates, Some("api.shop.example.com"), &ec), Some("rsa"));
        assert_eq!(which(&certificates, Some("API.Shop.Example.COM."), &ec), Some("rsa"), "case and a root dot do not matter");
        assert_eq!(which(&certificates, Some("web.shop.example.com"), &ec), Some("ec"));
        assert_eq!(which(&certificates, Some("a.b.shop.example.com"), &ec), None, "a wildcard covers one label");
        assert_eq!(which(&certificates, Some("shop.example.com"), &ec), None);
        assert_eq!(which(&certificates, None, &ec), None);
    }

    #[test]
    fn the_default_certificate_answers_names_nothing_covers_and_no_sni() {
        let certificates = ServerCertificates::new(Some("shop/exact".into()));
        certificates.update(&[certificate("shop/exact", &["api.shop.example.com"], RSA, RSA_KEY)]);
        let ec = certified_key(&certificate("x", &[], EC, EC_KEY)).unwrap();
        assert_eq!(which(&certificates, Some("other.example.org"), &ec), Some("rsa"));
        assert_eq!(which(&certificates, None, &ec), Some("rsa"));
    }

    #[test]
    fn the_first_certificate_by_name_keeps_a_contested_host_and_debug_shows_no_key() {
        let certificates = ServerCertificates::new(None);
        certificates.update(&[
            certificate("a/first", &["api.example.com"], EC, EC_KEY),
            certificate("b/second", &["api.example.com"], RSA, RSA_KEY),
        ]);
        let ec = certified_key(&certificate("x", &[], EC, EC_KEY)).unwrap();
        assert_eq!(which(&certificates, Some("api.example.com"), &ec), Some("ec"));
        let shown = format!("{certificates:?}");
        assert!(shown.contains("api.example.com") && !shown.contains("PRIVATE"), "{shown}");
    }
}
