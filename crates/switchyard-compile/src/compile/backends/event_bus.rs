//! `eventBus`: each request published as a CloudEvent to a NATS JetStream subject or a
//! CloudEvents HTTP sink. For NATS, `Ready` follows what the controller's bus monitor
//! says of the connection and the subject's stream (`Resources::buses`).

use std::net::IpAddr;

use switchyard_api::condition_type::READY;
use switchyard_api::{BackendService, CloudEventMode, EventBusBackend, NatsSink};

use super::http::{split_host_port, url_endpoints};
use super::{BackendEntry, KindCompiler, KindContext, Resolved, tls_trust_if_needed};
use crate::bus::{BusSource, BusState};
use crate::compile::{Rejection, namespace, secrets};
use crate::snapshot::{BackendKind, CloudEventsMode, EventSink, NatsCredentials, NatsTarget, SecretText};
use crate::{ConditionSpec, Resources, reason, validate};

const DEFAULT_NATS_PORT: u16 = 4222;
const MAX_SERVERS: usize = 16;

impl KindCompiler for EventBusBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        attributes(self)?;
        let kind = |sink| BackendKind::EventBus { sink, source: self.source.clone(), event_type: self.type_.clone() };
        match (&self.nats, &self.http) {
            (Some(_), Some(_)) => Err(Rejection::new(reason::INVALID_SPEC, "eventBus: set either nats or http, not both")),
            (None, None) => Err(Rejection::new(reason::INVALID_SPEC, "eventBus: set nats or http")),
            (None, Some(http)) => {
                let endpoints = url_endpoints(std::slice::from_ref(&http.url), http.tls.as_ref())?;
                let mode = match http.mode {
                    CloudEventMode::Structured => CloudEventsMode::Structured,
                    CloudEventMode::Binary => CloudEventsMode::Binary,
                };
                let resolved = Resolved::Ready(kind(EventSink::Http { endpoints, mode }), 1);
                entry.tls = tls_trust_if_needed(&resolved, http.tls.as_ref(), "eventBus.http.tls")?;
                Ok(resolved)
            }
            (Some(nats), None) => {
                let source = match nats_source(nats, cx.ns, cx.resources)? {
                    Ok(source) => source,
                    Err(unresolved) => return Ok(Resolved::Unresolved(unresolved)),
                };
                let state = cx.resources.buses.get(&(cx.ns.to_owned(), cx.name.to_owned())).cloned().unwrap_or_default();
                let ready = ready(&source, &state);
                let BusSource { target, subject } = source;
                Ok(Resolved::ReadyWith(kind(EventSink::Nats { target, subject }), 1, ready))
            }
        }
    }
}

/// The NATS source of an `eventBus` BackendService, for the controller's monitors; None
/// for other kinds and for specs compile refuses or cannot resolve.
pub(crate) fn bus_source(backend: &BackendService, resources: &Resources) -> Option<BusSource> {
    let nats = backend.spec.event_bus.as_ref()?.nats.as_ref()?;
    nats_source(nats, namespace(&backend.metadata), resources).ok()?.ok()
}

/// `source` is a URI reference and `type` a non-empty string (CloudEvents 1.0 requires
/// both); neither may break a `ce-` header.
fn attributes(bus: &EventBusBackend) -> Result<(), Rejection> {
    for (field, value) in [("eventBus.source", &bus.source), ("eventBus.type", &bus.type_)] {
        if value.is_empty() || value.len() > 1024 || !value.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
            return Err(Rejection::new(
                reason::INVALID_SPEC,
                format!("{field}: must be 1-1024 visible ASCII characters without spaces (a CloudEvents attribute sent as a ce- header)"),
            ));
        }
    }
    Ok(())
}

/// The validated servers, subject and credentials: an invalid spec is `Err`, a Secret that
/// does not resolve `Ok(Err)`.
fn nats_source(nats: &NatsSink, ns: &str, resources: &Resources) -> Result<Result<BusSource, Rejection>, Rejection> {
    subject(&nats.subject)?;
    let servers = servers(&nats.url, resources.options.allow_link_local_grants)?;
    let credentials = match &nats.credentials_secret_ref {
        None => None,
        Some(secret) => match credentials(resources, ns, &secret.name) {
            Ok(credentials) => Some(credentials),
            Err(unresolved) => return Ok(Err(unresolved)),
        },
    };
    Ok(Ok(BusSource { target: NatsTarget { servers, credentials }, subject: nats.subject.clone() }))
}

/// A subject to publish on: dot-separated tokens of visible ASCII, no wildcards.
fn subject(subject: &str) -> Result<(), Rejection> {
    let bad = |why: &str| Rejection::new(reason::INVALID_SPEC, format!("eventBus.nats.subject {subject:?}: {why}"));
    if subject.is_empty() || subject.len() > 255 {
        return Err(bad("must be 1-255 characters"));
    }
    if !subject.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(bad("only visible ASCII, no spaces"));
    }
    if subject.split('.').any(|token| token.is_empty() || token == "*" || token == ">") {
        return Err(bad("tokens between dots must be non-empty, and wildcards (* and >) cannot be published to"));
    }
    Ok(())
}

/// `nats://host[:port]` or `tls://host[:port]`, comma-separated. Credentials in the URL are
/// refused: they would show in statuses and the config dump.
fn servers(url: &str, allow_link_local: bool) -> Result<Vec<String>, Rejection> {
    let bad = |why: String| Rejection::new(reason::INVALID_URL, format!("eventBus.nats.url: {why}"));
    let mut out = Vec::new();
    for raw in url.split(',').map(str::trim) {
        let (scheme, authority) = raw.split_once("://").ok_or_else(|| bad(format!("{raw:?} is not nats://host[:port]")))?;
        if scheme != "nats" && scheme != "tls" {
            return Err(bad(format!("{raw:?}: the scheme must be nats or tls")));
        }
        if authority.contains('@') {
            return Err(bad("credentials are not allowed in the URL: put them in credentialsSecretRef".into()));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad(format!("{raw:?} is not nats://host[:port]")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) if validate::is_link_local(ip) && !allow_link_local => {
                return Err(Rejection::new(
                    reason::LINK_LOCAL_NOT_ALLOWED,
                    format!("eventBus.nats.url: {ip} is link-local; refused without --allow-link-local-grants"),
                ));
            }
            Ok(_) => {}
            Err(_) => validate::dns_name(host).map_err(|e| bad(format!("{raw:?}: {e}")))?,
        }
        out.push(format!("{scheme}://{}:{}", host.to_ascii_lowercase(), port.unwrap_or(DEFAULT_NATS_PORT)));
    }
    if out.is_empty() || out.len() > MAX_SERVERS {
        return Err(bad(format!("list 1 to {MAX_SERVERS} servers")));
    }
    Ok(out)
}

/// Key `token`, or keys `username` and `password`.
fn credentials(resources: &Resources, ns: &str, name: &str) -> Result<NatsCredentials, Rejection> {
    let field = "eventBus.nats.credentialsSecretRef";
    if let Ok(token) = secrets::lookup(resources, ns, name, &["token"], field) {
        return Ok(NatsCredentials::Token { token: SecretText(token[0].trim().to_owned()) });
    }
    match secrets::lookup(resources, ns, name, &["username", "password"], field) {
        Ok(pair) => Ok(NatsCredentials::UserPassword { username: pair[0].to_owned(), password: SecretText(pair[1].to_owned()) }),
        Err(why) if why.reason == reason::SECRET_KEY_NOT_FOUND => Err(Rejection::new(
            reason::SECRET_KEY_NOT_FOUND,
            format!("{field}: Secret {ns}/{name} has neither key \"token\" nor keys \"username\" and \"password\""),
        )),
        Err(why) => Err(why),
    }
}

/// `Ready` from the monitor's view of the connection and the subject's stream.
fn ready(source: &BusSource, state: &BusState) -> ConditionSpec {
    let subject = &source.subject;
    match state {
        BusState::Connecting => ConditionSpec::new(READY, false, reason::CONNECTING, "connecting to the NATS servers"),
        BusState::Ready { server, stream } => ConditionSpec::new(
            READY,
            true,
            reason::READY,
            format!("JetStream stream {stream} takes subject {subject} (connected to {server})"),
        ),
        BusState::NoStream { server } => ConditionSpec::new(
            READY,
            false,
            reason::NO_STREAM,
            format!("connected to {server}, but no JetStream stream takes subject {subject}: events are refused (503) until one does"),
        ),
        BusState::Unreachable { error } => ConditionSpec::new(
            READY,
            false,
            reason::BUS_UNREACHABLE,
            format!("the NATS servers do not answer: {error}; events are refused (503) until they do"),
        ),
    }
}

#[cfg(test)]
mod tests;
