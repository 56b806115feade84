//! `http`: plain HTTP(S) upstreams, by URL or by Kubernetes Service.

use std::net::IpAddr;

use switchyard_api::{HttpBackend, ServiceRef, TlsOptions};

use super::{BackendEntry, KindCompiler, KindContext, Resolved, checked_host_header, tls_trust_if_needed, upstream_version};
use crate::compile::{Rejection, tls};
use crate::snapshot::{BackendKind, Endpoint};
use crate::{Resources, reason, validate};

impl KindCompiler for HttpBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        entry.host_header = checked_host_header(self.host_header.as_ref())?;
        let resolved = http_kind(self, cx.ns, cx.resources)?;
        entry.tls = tls_trust_if_needed(&resolved, self.tls.as_ref(), "http.tls")?;
        entry.upstream_version = upstream_version(self.protocol, &resolved, "http.protocol")?;
        Ok(resolved)
    }
}

fn http_kind(http: &HttpBackend, ns: &str, resources: &Resources) -> Result<Resolved, Rejection> {
    if let Some(urls) = &http.urls {
        if http.service.is_some() {
            return Err(Rejection::new(reason::INVALID_SPEC, "http: set either urls or service, not both"));
        }
        if urls.is_empty() {
            return Err(Rejection::new(reason::INVALID_URL, "http.urls: list at least one URL"));
        }
        let endpoints = url_endpoints(urls, http.tls.as_ref())?;
        let count = endpoints.len() as u32;
        return Ok(Resolved::Ready(BackendKind::Http { endpoints }, count));
    }
    let Some(service) = &http.service else {
        return Err(Rejection::new(reason::INVALID_SPEC, "http: set urls or service"));
    };
    service_kind(service, "http.service", http.tls.as_ref(), ns, resources, |endpoints| BackendKind::Http { endpoints })
}

/// One endpoint per URL; `https` ones verified as `tls.sni`, else their host.
pub(super) fn url_endpoints(urls: &[String], tls: Option<&TlsOptions>) -> Result<Vec<Endpoint>, Rejection> {
    let sni = tls.and_then(|t| t.sni.as_deref());
    urls.iter().map(|u| parse_url(u).and_then(|e| if e.scheme == "https" { tls::secure(e, sni) } else { Ok(e) })).collect()
}

/// The ready endpoints of a Kubernetes Service (`field` names it in messages), made into
/// the kind's endpoints by `kind`; an unknown Service is `ServiceNotFound`, unresolved.
pub(super) fn service_kind(
    service: &ServiceRef,
    field: &str,
    tls: Option<&TlsOptions>,
    ns: &str,
    resources: &Resources,
    kind: impl FnOnce(Vec<Endpoint>) -> BackendKind,
) -> Result<Resolved, Rejection> {
    let svc_ns = service.namespace.as_deref().unwrap_or(ns);
    let (port, port_name) = match (service.port, service.port_name.as_deref()) {
        (Some(_), Some(_)) => return Err(Rejection::new(reason::INVALID_SPEC, format!("{field}: set port or portName, not both"))),
        (None, None) => return Err(Rejection::new(reason::INVALID_SPEC, format!("{field}: set port (number) or portName"))),
        pair => pair,
    };
    let Some(ready) = resources.service_endpoints.get(&(svc_ns.to_owned(), service.name.clone())) else {
        return Ok(Resolved::Unresolved(Rejection::new(
            reason::SERVICE_NOT_FOUND,
            format!("Service {svc_ns}/{} is not known (standalone mode has no Kubernetes Services)", service.name),
        )));
    };
    let endpoints = ready.iter().filter_map(|ep| ep.target(port, port_name).map(|target| endpoint_for(ep.address, target)));
    // With `tls`, a Service is dialled over TLS, verified as its cluster DNS name.
    let endpoints: Vec<Endpoint> = match tls {
        Some(tls) => {
            let sni = tls.sni.clone().unwrap_or_else(|| format!("{}.{svc_ns}.svc", service.name));
            endpoints.map(|e| tls::secure(e, Some(&sni))).collect::<Result<_, _>>()?
        }
        None => endpoints.collect(),
    };
    let count = endpoints.len() as u32;
    Ok(Resolved::Ready(kind(endpoints), count))
}

/// A plain `http` endpoint at an address.
pub(super) fn endpoint_for(address: IpAddr, port: u16) -> Endpoint {
    let host = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Endpoint {
        scheme: "http".into(),
        authority: format!("{host}:{port}"),
        host: host_with_port(&host, port, "http"),
        base_path: String::new(),
        tls_server_name: None,
        weight: 1,
    }
}

pub(super) fn host_with_port(host: &str, port: u16, scheme: &str) -> String {
    let default = if scheme == "https" { 443 } else { 80 };
    if port == default { host.to_owned() } else { format!("{host}:{port}") }
}

/// Parses `http://host[:port][/base]`; no user info, query or fragment.
pub(crate) fn parse_url(url: &str) -> Result<Endpoint, Rejection> {
    let bad = |why: &str| Rejection::new(reason::INVALID_URL, format!("url {url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected scheme://host[:port][/path]"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("the scheme must be http or https")),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(bad("user info, query and fragment are not allowed"));
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("invalid host or port"))?;
    let port = port.unwrap_or(default_port);
    let valid_host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok() || validate::dns_name(host).is_ok()
    };
    if !valid_host {
        return Err(bad("invalid host"));
    }
    if !path.is_empty() {
        // A base path prefixes every forwarded path: it must reach the wire as written and
        // be normalized, or `/a/..` would climb out of it.
        validate::wire_path(path).map_err(|e| bad(&e))?;
        match crate::request_path::normalize(path) {
            Ok(normal) if normal == path => {}
            Ok(normal) => return Err(bad(&format!("the path is not in normalized form; write {normal:?}"))),
            Err(refusal) => return Err(bad(refusal.message())),
        }
    }
    let host = host.to_ascii_lowercase();
    Ok(Endpoint {
        scheme: scheme.to_owned(),
        authority: format!("{host}:{port}"),
        host: host_with_port(&host, port, scheme),
        base_path: path.trim_end_matches('/').to_owned(),
        // Unbracketed, as a certificate names it; `tls::secure` may override it.
        tls_server_name: (scheme == "https").then(|| host.trim_start_matches('[').trim_end_matches(']').to_owned()),
        weight: 1,
    })
}

pub(super) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let rest = &authority[end..];
        (&authority[..end], if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) })
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}
