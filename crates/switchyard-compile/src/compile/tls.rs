//! TLS towards upstreams: which name each `https` endpoint is verified against (and
//! sends as SNI), and what trusts its certificate. Validated here so a bad CA bundle is
//! an `Accepted=False` on the BackendService, not a failed handshake on every request.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use switchyard_api::TlsOptions;

use super::Rejection;
use crate::snapshot::{Endpoint, TlsTrust};
use crate::{reason, validate};

/// The trust settings of `options` (system roots when absent), checked.
pub(super) fn trust(options: Option<&TlsOptions>, field: &str) -> Result<TlsTrust, Rejection> {
    let Some(options) = options else { return Ok(TlsTrust::default()) };
    let invalid = |why: String| Rejection::new(reason::INVALID_TLS, format!("{field}.{why}"));
    if let Some(sni) = &options.sni {
        server_name_ok(sni).map_err(|e| invalid(format!("sni: {e}")))?;
    }
    if let Some(pem) = &options.ca_certificate {
        if options.insecure_skip_verify {
            return Err(invalid("caCertificate: set caCertificate or insecureSkipVerify, not both".into()));
        }
        let count = ca_certificate_count(pem).map_err(|e| invalid(format!("caCertificate: {e}")))?;
        if count == 0 {
            return Err(invalid("caCertificate: no PEM CERTIFICATE block found".into()));
        }
    }
    Ok(TlsTrust { ca_certificates: options.ca_certificate.clone(), insecure_skip_verify: options.insecure_skip_verify })
}

/// Turns a plain endpoint into an `https` one verified against `server_name` (or, when
/// None, the endpoint's own host: a DNS name or an IP address). A `host:port` name (a
/// Host-header style `hostName`) is verified as its host.
pub(super) fn secure(mut endpoint: Endpoint, server_name: Option<&str>) -> Result<Endpoint, Rejection> {
    let port = endpoint.authority.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    let host = endpoint.authority.rsplit_once(':').map_or(endpoint.authority.as_str(), |(h, _)| h);
    let own = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let name = server_name.map_or(own, validate::server_name_of_host);
    server_name_ok(&name)
        .map_err(|e| Rejection::new(reason::INVALID_TLS, format!("TLS server name {name:?} for {}: {e}", endpoint.authority)))?;
    endpoint.tls_server_name = Some(name);
    if endpoint.scheme != "https" {
        // The Host header drops the port only when it is the scheme's default.
        endpoint.host = match port {
            Some(443) | None => host.to_owned(),
            Some(p) => format!("{host}:{p}"),
        };
        endpoint.scheme = "https".into();
    }
    Ok(endpoint)
}

/// A name a certificate can be verified against (a DNS name or an IP address), checked
/// as rustls will take it.
fn server_name_ok(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_err() {
        validate::dns_name(name)?;
    }
    rustls_pki_types::ServerName::try_from(name).map(|_| ()).map_err(|e| e.to_string())
}

/// Every CERTIFICATE block must be a certificate rustls can trust as a root (parsed by
/// webpki, as the proxy will): a bundle the proxy would refuse is refused here instead.
fn ca_certificate_count(pem: &str) -> Result<usize, String> {
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = certificate.map_err(|e| format!("not valid PEM: {e:?}"))?;
        count += 1;
        webpki::anchor_from_trusted_cert(&der).map_err(|e| format!("certificate {count} is not a usable CA certificate: {e}"))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sni: Option<&str>, ca: Option<&str>, insecure: bool) -> TlsOptions {
        TlsOptions { sni: sni.map(Into::into), ca_certificate: ca.map(Into::into), insecure_skip_verify: insecure }
    }

    // A real (self-signed, CA) certificate: compile parses it as the proxy will.
    const PEM: &str = include_str!("../../tests/fixtures/ca.pem");

    #[test]
    fn absent_options_trust_the_system_roots() {
        assert_eq!(trust(None, "http.tls").unwrap(), TlsTrust::default());
    }

    #[test]
    fn a_ca_bundle_is_kept_and_must_hold_a_certificate() {
        let trusted = trust(Some(&options(None, Some(PEM), false)), "http.tls").unwrap();
        assert_eq!(trusted.ca_certificates.as_deref(), Some(PEM));
        let not_a_certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for bad in ["", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", not_a_certificate] {
            let why = trust(Some(&options(None, Some(bad), false)), "http.tls").unwrap_err();
            assert_eq!(why.reason, reason::INVALID_TLS, "{bad:?}");
            assert!(why.message.starts_with("http.tls.caCertificate: "), "{}", why.message);
        }
    }

    #[test]
    fn contradictory_or_malformed_options_are_rejected() {
        let both = trust(Some(&options(None, Some(PEM), true)), "vpc.tls").unwrap_err();
        assert!(both.message.contains("not both"), "{}", both.message);
        let sni = trust(Some(&options(Some("bad name!"), None, false)), "vpc.tls").unwrap_err();
        assert!(sni.message.starts_with("vpc.tls.sni: "), "{}", sni.message);
        assert!(trust(Some(&options(Some("10.0.0.5"), None, false)), "vpc.tls").is_ok(), "an IP is a valid server name");
    }

    #[test]
    fn securing_an_endpoint_keeps_its_authority_and_names_the_server() {
        let plain = Endpoint {
            scheme: "http".into(),
            authority: "10.0.0.5:443".into(),
            host: "10.0.0.5:443".into(),
            base_path: String::new(),
            tls_server_name: None,
            weight: 1,
        };
        let secured = secure(plain.clone(), None).unwrap();
        assert_eq!((secured.scheme.as_str(), secured.host.as_str()), ("https", "10.0.0.5"));
        assert_eq!(secured.tls_server_name.as_deref(), Some("10.0.0.5"));
        let named = secure(Endpoint { authority: "[::1]:8443".into(), ..plain.clone() }, Some("orders.internal:8443")).unwrap();
        assert_eq!(named.host, "[::1]:8443");
        assert_eq!(named.tls_server_name.as_deref(), Some("orders.internal"), "a hostName's port is not part of the SNI");
        let v6 = secure(Endpoint { authority: "[::1]:8443".into(), ..plain.clone() }, None).unwrap();
        assert_eq!(v6.tls_server_name.as_deref(), Some("::1"));
        let bad = secure(plain, Some("bad name")).unwrap_err();
        assert_eq!(bad.reason, reason::INVALID_TLS);
    }
}
