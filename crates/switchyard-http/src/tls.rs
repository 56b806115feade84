//! TLS towards upstreams, for the proxy (requests, health probes) and the controller
//! (connectivity tests): one rustls client configuration per distinct trust setting,
//! built when configuration is loaded (never on the request path) and kept for the life
//! of the process, so TLS session resumption survives configuration changes and pooled
//! connections can be told apart by the configuration that verified them. rustls runs on
//! ring, which kube's client already builds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// A client TLS connection, for crates that do not link rustls themselves.
pub use tokio_rustls::client::TlsStream;

/// How one `https` endpoint is reached: the configuration that verifies it and the name
/// it is verified against (also sent as SNI when it is a DNS name).
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// What verifies a server's certificate: the system roots, only the PEM CAs given, or
/// nothing (`insecure_skip_verify`, for tests and reachability checks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Trust {
    pub ca_certificates: Option<String>,
    pub insecure_skip_verify: bool,
}

impl UpstreamTls {
    pub fn new(trust: &Trust, server_name: &str) -> Result<Self, String> {
        Self::with_alpn(trust, server_name, Alpn::Http1)
    }

    /// The same, offering `alpn` in the handshake.
    pub fn with_alpn(trust: &Trust, server_name: &str, alpn: Alpn) -> Result<Self, String> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|e| format!("TLS server name {server_name:?}: {e}"))?;
        Ok(Self { config: client_config_for(trust, alpn)?, server_name })
    }

    /// The TLS handshake on `stream`.
    pub async fn connect<S>(&self, stream: S) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        tokio_rustls::TlsConnector::from(self.config.clone()).connect(self.server_name.clone(), stream).await
    }
}

/// Two targets share pooled connections only with the same name and the very same
/// configuration (so an unverified connection is never lent to a verifying backend).
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for UpstreamTls {}

impl std::hash::Hash for UpstreamTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.config) as usize).hash(state);
        self.server_name.hash(state);
    }
}

/// The application protocol offered in the handshake (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `http/1.1` only, so an h2-first server does not pick h2.
    Http1,
    /// `h2` only: an HTTP/2 (`H2`) upstream that cannot speak it fails the handshake
    /// instead of being spoken to in a protocol it did not agree to.
    H2,
}

/// The process-wide HTTP/1 configuration for `trust`, built once.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    client_config_for(trust, Alpn::Http1)
}

/// Client configurations by what they trust and offer.
type Configs = Mutex<HashMap<(Trust, Alpn), Arc<ClientConfig>>>;

/// The process-wide configuration for `trust` offering `alpn`, built once.
pub fn client_config_for(trust: &Trust, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    let mut configs = CONFIGS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    let key = (trust.clone(), alpn);
    if let Some(config) = configs.get(&key) {
        return Ok(config.clone());
    }
    let config = Arc::new(build(trust, alpn)?);
    configs.insert(key, config.clone());
    Ok(config)
}

fn build(trust: &Trust, alpn: Alpn) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let mut config = if trust.insecure_skip_verify {
        let verifier = NoVerification { algorithms: provider.signature_verification_algorithms };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
    } else {
        let roots = match &trust.ca_certificates {
            Some(pem) => private_roots(pem)?,
            None => system_roots().clone(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
    };
    Ok(config)
}

fn private_roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let certificate = certificate.map_err(|e| format!("caCertificate: {e:?}"))?;
        roots.add(certificate).map_err(|e| format!("caCertificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("caCertificate holds no certificate".into());
    }
    Ok(roots)
}

/// The operating system's trusted roots, read once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(errors = ?found.errors, "no system CA certificates found: https upstreams need tls.caCertificate");
        }
        roots
    })
}

/// `insecureSkipVerify`: any certificate is accepted; the handshake signature is still
/// checked, so the connection is at least encrypted to whoever holds the key.
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_trust_setting() {
        let insecure = Trust { ca_certificates: None, insecure_skip_verify: true };
        let a = client_config(&insecure).unwrap();
        let b = client_config(&insecure.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the same setting reuses the configuration (and its session cache)");
        assert_eq!(a.alpn_protocols, [b"http/1.1".to_vec()]);
        let verifying = client_config(&Trust::default()).unwrap();
        assert!(!Arc::ptr_eq(&a, &verifying));
    }

    #[test]
    fn pooled_connections_are_keyed_by_name_and_configuration() {
        let insecure = Trust { ca_certificates: None, insecure_skip_verify: true };
        let a = UpstreamTls::new(&insecure, "orders.internal").unwrap();
        assert_eq!(a, UpstreamTls::new(&insecure, "orders.internal").unwrap());
        assert_ne!(a, UpstreamTls::new(&insecure, "billing.internal").unwrap());
        assert_ne!(a, UpstreamTls::new(&Trust::default(), "orders.internal").unwrap());
        assert!(UpstreamTls::new(&insecure, "10.0.0.5").is_ok(), "an address is verified against IP SANs");
    }

    #[test]
    fn a_bundle_without_certificates_is_an_error() {
        let trust = Trust { ca_certificates: Some("nothing here".into()), insecure_skip_verify: false };
        assert!(client_config(&trust).unwrap_err().contains("no certificate"));
    }
}
