//! `model`: an inference endpoint at one URL, with its token read from a Secret.

use switchyard_api::ModelBackend;

use super::http::url_endpoints;
use super::{BackendEntry, KindCompiler, KindContext, Resolved, tls_trust_if_needed};
use crate::compile::{Rejection, duration_ms, secrets};
use crate::reason;
use crate::snapshot::{BackendKind, ModelProtocol, SecretText};

/// A model's time to the first byte when `timeout` is not set: generation is slow.
pub(crate) const DEFAULT_MODEL_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// Longest wait between two chunks of a response when `idleTimeout` is not set.
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60 * 1000;

impl KindCompiler for ModelBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let idle_timeout_ms = duration_ms("model.idleTimeout", self.idle_timeout.as_ref())?.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS);
        if idle_timeout_ms == 0 {
            return Err(Rejection::new(reason::INVALID_DURATION, "model.idleTimeout: must be more than 0"));
        }
        let endpoints = url_endpoints(std::slice::from_ref(&self.url), self.tls.as_ref())?;
        let protocol = match self.protocol {
            switchyard_api::ModelProtocol::Raw => ModelProtocol::Raw,
            switchyard_api::ModelProtocol::KServeV2 => ModelProtocol::KServeV2,
            switchyard_api::ModelProtocol::OpenAI => ModelProtocol::OpenAI,
        };
        let kind = |token| BackendKind::Model { endpoints: endpoints.clone(), protocol, token, idle_timeout_ms };
        entry.tls = tls_trust_if_needed(&Resolved::Ready(kind(None), 1), self.tls.as_ref(), "model.tls")?;
        let token = match &self.token_secret_ref {
            None => None,
            Some(r) => match token(cx, &r.name, &r.key) {
                Ok(token) => Some(token),
                // Never unauthenticated instead: the backend answers 503 until the Secret resolves.
                Err(why) => return Ok(Resolved::Unresolved(why)),
            },
        };
        Ok(Resolved::Ready(kind(token), 1))
    }
}

/// The token in `name`/`key`, trimmed (a Secret made from a file often ends in a newline).
/// It must be usable as a header value; no message ever shows it.
fn token(cx: &KindContext<'_>, name: &str, key: &str) -> Result<SecretText, Rejection> {
    let field = "model.tokenSecretRef";
    let value = secrets::lookup(cx.resources, cx.ns, name, &[key], field)?[0].trim();
    let unusable = |why: &str| Rejection::new(reason::SECRET_NOT_USABLE, format!("{field}: key {key:?} of Secret {}/{name} {why}", cx.ns));
    if value.is_empty() {
        return Err(unusable("is empty"));
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) || value.len() > 8192 {
        return Err(unusable("is not a valid header value (control characters, non-ASCII, or over 8 KiB)"));
    }
    Ok(SecretText(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use switchyard_api::condition_type::{ACCEPTED, READY, RESOLVED_REFS};

    use crate::snapshot::{BackendKind, ModelProtocol, SecretText};
    use crate::{Compiled, Resources, SecretData, reason};

    fn compile_with(spec: &str, secret: Option<(&str, &str)>) -> Compiled {
        let mut resources = Resources::default();
        let yaml =
            format!("apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: llm, namespace: shop}}\nspec: {spec}\n");
        crate::manifest::add_yaml(&mut resources, "t", &yaml);
        if let Some((key, value)) = secret {
            resources.secrets.insert(("shop".into(), "eas".into()), SecretData([(key.to_owned(), value.to_owned())].into()));
        }
        crate::compile(&resources)
    }

    fn condition<'a>(compiled: &'a Compiled, type_: &str) -> (bool, &'a str, &'a str) {
        let c = compiled.statuses[0].condition(type_).unwrap_or_else(|| panic!("no {type_}: {:?}", compiled.statuses));
        (c.status, c.reason.as_str(), c.message.as_str())
    }

    const OPENAI: &str = "{model: {url: \"http://llm.local:8000\", protocol: OpenAI, tokenSecretRef: {name: eas, key: token}}}";

    #[test]
    fn the_token_comes_from_the_secret_trimmed_and_the_timeouts_default_to_five_minutes_and_a_minute() {
        let compiled = compile_with(OPENAI, Some(("token", "  sk-abc123\n")));
        assert!(condition(&compiled, READY).0);
        let backend = &compiled.snapshot.backends[0];
        let BackendKind::Model { endpoints, protocol, token, idle_timeout_ms } = &backend.kind else { panic!("{backend:?}") };
        assert_eq!((endpoints[0].authority.as_str(), *protocol), ("llm.local:8000", ModelProtocol::OpenAI));
        assert_eq!(token.as_ref(), Some(&SecretText("sk-abc123".into())));
        assert_eq!((*idle_timeout_ms, backend.timeout_ms), (60_000, Some(300_000)));
        assert!(!format!("{backend:?}").contains("sk-abc123"), "Debug never shows the token");
    }

    #[test]
    fn a_missing_or_unusable_token_is_unresolved_and_never_shown() {
        let missing = compile_with(OPENAI, None);
        assert!(condition(&missing, ACCEPTED).0);
        assert_eq!(condition(&missing, RESOLVED_REFS).1, reason::SECRET_NOT_FOUND);
        assert!(matches!(missing.snapshot.backends[0].kind, BackendKind::Unavailable { .. }), "503, never unauthenticated");
        let no_key = compile_with(OPENAI, Some(("other", "x")));
        assert_eq!(condition(&no_key, RESOLVED_REFS).1, reason::SECRET_KEY_NOT_FOUND);
        let bad = compile_with(OPENAI, Some(("token", "sk-line1\r\nX-Injected: 1")));
        let (status, why, message) = condition(&bad, RESOLVED_REFS);
        assert_eq!((status, why), (false, reason::SECRET_NOT_USABLE));
        assert!(!message.contains("sk-line1"), "{message}");
    }

    #[test]
    fn timeouts_and_protocol_parse() {
        let compiled = compile_with("{timeout: 10s, model: {url: \"https://eas.example.com/api/predict/m\", idleTimeout: 5s}}", None);
        let backend = &compiled.snapshot.backends[0];
        let BackendKind::Model { protocol, token, idle_timeout_ms, .. } = &backend.kind else { panic!("{backend:?}") };
        assert_eq!((*protocol, token, *idle_timeout_ms, backend.timeout_ms), (ModelProtocol::Raw, &None, 5_000, Some(10_000)));
        assert!(backend.tls.is_some());
        let bad = compile_with("{model: {url: \"http://m\", idleTimeout: 0s}}", None);
        assert_eq!(condition(&bad, ACCEPTED).1, reason::INVALID_DURATION);
    }
}
