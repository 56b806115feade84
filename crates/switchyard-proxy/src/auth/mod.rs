//! The authentication phase: AppCode here, Signature in [`signature`] (the scheme,
//! pure) and [`nonce`] (replay protection, shared by the workers). A route whose apps do
//! not resolve answers 503: it stays in the snapshot, so no broader route serves its
//! paths meanwhile.
//!
//! A Signature route reads the body before the backend is called only when the
//! signature covers it (`Content-MD5` sent, or a form body), bounded by the route's body
//! limit and timeout; the backend then gets the buffered bytes unchanged.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use hyper::body::Incoming;
use switchyard_compile::snapshot::{Auth, Snapshot};

use switchyard_http::constant_time_eq;

use crate::error::GatewayError;
use crate::request_body::RequestBody;

pub mod nonce;
pub mod signature;

use nonce::NonceStore;
use signature::{RequestParts, SigningApp, Verifier};

/// The query parameter carrying an AppCode (compared as written, not decoded, so the
/// parameter that authenticates is exactly the one removed before the backend).
const APP_CODE_PARAM: &str = "AppCode";

/// Per-route authentication, with the allowed credentials resolved from the snapshot.
pub enum Authenticator {
    Anonymous,
    AppCode { codes: Vec<String> },
    Signature(Verifier),
    Unresolved { route: String, why: String },
}

impl Authenticator {
    pub fn build(auth: &Auth, route_id: &str, snapshot: &Snapshot) -> Self {
        let route_namespace = route_id.split('/').next().unwrap_or_default();
        let allowed = |apps: &[String]| -> Vec<String> {
            snapshot
                .apps
                .iter()
                .filter(|a| a.namespace == route_namespace && apps.contains(&a.name) && !a.app_code.trim().is_empty())
                .map(|a| a.app_code.clone())
                .collect()
        };
        match auth {
            Auth::Anonymous => Self::Anonymous,
            Auth::AppCode { apps } => Self::AppCode { codes: allowed(apps) },
            Auth::Signature { apps } => {
                // Every app of the namespace that can sign: the ones not named get 403.
                let signing = snapshot
                    .apps
                    .iter()
                    .filter(|a| a.namespace == route_namespace && !a.app_key.trim().is_empty() && !a.app_secret.trim().is_empty())
                    .map(|a| SigningApp::new(&a.app_key, &a.app_secret, apps.contains(&a.name)))
                    .collect();
                Self::Signature(Verifier::new(route_id, signing))
            }
            Auth::Unresolved { why } => Self::Unresolved { route: route_id.to_owned(), why: why.clone() },
        }
    }

    /// Authenticates a request and hands on its body: streamed, or buffered when a
    /// signature covered it. `deadline` bounds the body read (it counts against the
    /// route's timeout).
    pub async fn authenticate(
        &self,
        parts: &Parts,
        body: Incoming,
        limits: BodyLimits,
        nonces: &NonceStore,
    ) -> Result<RequestBody, GatewayError> {
        let Self::Signature(verifier) = self else {
            self.check(&parts.headers, parts.uri.query())?;
            return Ok(RequestBody::streaming(body, limits.size));
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let request =
            RequestParts { method: parts.method.as_str(), path: parts.uri.path(), query: parts.uri.query(), headers: &parts.headers };
        // `Presented` (several hundred bytes) lives only inside these blocks, never across an
        // `.await`: it stays out of the request's future.
        let verified = {
            let presented = verifier.presented(&parts.headers, now_ms)?;
            if presented.needs_body() {
                None
            } else {
                verifier.verify(&presented, &request, None)?;
                Some((presented.app.key.as_str(), presented.nonce, presented.nonce_ttl_ms(now_ms)))
            }
        };
        let (body, (app_key, nonce, ttl_ms)) = match verified {
            Some(verified) => (RequestBody::streaming(body, limits.size), verified),
            None => {
                let bytes = read_bounded(body, &parts.headers, limits.size, limits.deadline, limits.budget).await?;
                // The same checks as above (same headers, same clock), so the same answer.
                let presented = verifier.presented(&parts.headers, now_ms)?;
                verifier.verify(&presented, &request, Some(&bytes))?;
                let verified = (presented.app.key.as_str(), presented.nonce, presented.nonce_ttl_ms(now_ms));
                (RequestBody::full(bytes), verified)
            }
        };
        // Last, once the request is known to be the app's: a forged one cannot burn nonces.
        nonces.remember(app_key, nonce, ttl_ms).await?;
        Ok(body)
    }

    /// The checks that need neither the body nor a store (every kind but Signature).
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), GatewayError> {
        match self {
            Self::Anonymous => Ok(()),
            Self::AppCode { codes } => {
                let presented = app_code(headers, query)
                    .ok_or_else(|| GatewayError::AuthFailed("send Authorization: APPCODE <code> or the AppCode query parameter".into()))?;
                // An empty code never authenticates, whatever an app holds.
                if !presented.is_empty() && codes.iter().any(|c| constant_time_eq(c.as_bytes(), presented.as_bytes())) {
                    Ok(())
                } else {
                    Err(GatewayError::AuthFailed("the AppCode is not allowed on this API".into()))
                }
            }
            // Reached only by a caller that skipped `authenticate`: never open.
            Self::Signature(_) => Err(GatewayError::AuthFailed("a Signature route needs the signature checks".into())),
            Self::Unresolved { route, why } => Err(GatewayError::AuthUnavailable { route: route.clone(), why: why.clone() }),
        }
    }
}

/// How much of a body the phase may read, and until when.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub size: u64,
    pub deadline: Instant,
    /// The route's timeout, which `deadline` ends (for the 408's message).
    pub budget: std::time::Duration,
}

/// The code of the first `Authorization: APPCODE <code>` (another scheme's header, such
/// as a token for the backend, may come before it), else of the `AppCode` parameter.
fn app_code(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers.get_all(AUTHORIZATION).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (scheme, code) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("APPCODE").then(|| code.trim().to_owned())
    });
    from_header.or_else(|| {
        let value = query?.split('&').find_map(|pair| pair.strip_prefix(APP_CODE_PARAM)?.strip_prefix('='))?;
        let decoded = form_urlencoded::parse(format!("v={value}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
        Some(decoded.trim().to_owned())
    })
}

/// Removes AppCode credentials (an `Authorization: APPCODE ...` header, the `AppCode`
/// query parameter) so they never reach a backend. Returns the query to forward when it
/// changed. Cheap when there are none: one header lookup and one substring search.
pub fn strip_app_code(headers: &mut HeaderMap, query: Option<&str>) -> Option<String> {
    if headers.get(AUTHORIZATION).is_some() {
        let is_app_code = |v: &HeaderValue| v.as_bytes().get(..8).is_some_and(|s| s.eq_ignore_ascii_case(b"APPCODE "));
        if headers.get_all(AUTHORIZATION).iter().any(is_app_code) {
            let kept: Vec<HeaderValue> = headers.get_all(AUTHORIZATION).iter().filter(|v| !is_app_code(v)).cloned().collect();
            headers.remove(AUTHORIZATION);
            for value in kept {
                headers.append(AUTHORIZATION, value);
            }
        }
    }
    let query = query?;
    if !query.contains(APP_CODE_PARAM) {
        return None;
    }
    crate::query::without_pairs(query, |pair| {
        pair.strip_prefix(APP_CODE_PARAM).is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

/// The whole client body, for a phase that must see it before the backend does (a
/// signature covering it): at most `limit` bytes (a larger declared length is refused
/// before a byte is read), by `deadline` (the route's timeout, `budget`). Client faults
/// are the client's: 413, 408, or 400 for a malformed body.
async fn read_bounded(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: u64,
    deadline: std::time::Instant,
    budget: std::time::Duration,
) -> Result<bytes::Bytes, crate::error::GatewayError> {
    use crate::error::GatewayError;
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let body = RequestBody::streaming(body, limit);
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    match tokio::time::timeout_at(deadline.into(), body.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout { timeout_ms: budget.as_millis() as u64 }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if crate::request_body::is_body_too_large(&*e) => Err(GatewayError::BodyTooLarge { limit }),
        Ok(Err(e)) => {
            let mut detail = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                detail = format!("{detail}: {cause}");
                source = cause.source();
            }
            Err(GatewayError::MalformedBody { detail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn appcode(codes: &[&str]) -> Authenticator {
        Authenticator::AppCode { codes: codes.iter().map(|c| (*c).to_owned()).collect() }
    }

    #[test]
    fn app_code_is_accepted_from_the_header_or_the_query() {
        let auth = appcode(&["c0de"]);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("APPCODE c0de"));
        assert!(auth.check(&headers, None).is_ok());
        assert!(auth.check(&HeaderMap::new(), Some("a=1&AppCode=c0de")).is_ok());
    }

    #[test]
    fn a_wrong_or_missing_app_code_is_refused() {
        let auth = appcode(&["c0de"]);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("APPCODE nope"));
        assert!(matches!(auth.check(&headers, None), Err(GatewayError::AuthFailed(_))));
        assert!(matches!(auth.check(&HeaderMap::new(), None), Err(GatewayError::AuthFailed(_))));
    }

    #[test]
    fn an_empty_app_code_never_authenticates() {
        let auth = appcode(&[""]);
        assert!(auth.check(&HeaderMap::new(), Some("AppCode=")).is_err());
        assert!(auth.check(&HeaderMap::new(), Some("AppCode")).is_err());
        assert!(auth.check(&HeaderMap::new(), Some("AppCode=+")).is_err(), "blank is empty");
        assert!(auth.check(&HeaderMap::new(), Some("AppCode=%0A")).is_err());
    }

    #[test]
    fn the_query_app_code_is_the_exact_parameter_name_and_its_value_is_decoded() {
        let auth = appcode(&["c 0/de"]);
        assert!(auth.check(&HeaderMap::new(), Some("x=1&AppCode=c+0%2Fde")).is_ok());
        assert!(auth.check(&HeaderMap::new(), Some("App%43ode=c+0%2Fde")).is_err(), "an encoded name is not the parameter");
        assert!(auth.check(&HeaderMap::new(), Some("XAppCode=c+0%2Fde")).is_err());
    }

    #[test]
    fn app_code_credentials_are_stripped_and_other_authorization_kept() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("APPCODE c0de"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer upstream-token"));
        let query = strip_app_code(&mut headers, Some("a=1&AppCode=c0de&AppCodeX=2&b"));
        assert_eq!(query.as_deref(), Some("a=1&AppCodeX=2&b"));
        assert_eq!(headers.get_all(AUTHORIZATION).iter().collect::<Vec<_>>(), ["Bearer upstream-token"]);
        let mut plain = HeaderMap::new();
        assert_eq!(strip_app_code(&mut plain, Some("a=1&AppCodeX=2")), None, "nothing to strip: the query is forwarded as it is");
    }

    #[test]
    fn a_route_with_unresolved_apps_answers_503() {
        let auth = Authenticator::Unresolved { route: "shop/orders".into(), why: "AppNotFound: app shop/partner does not exist".into() };
        let err = auth.check(&HeaderMap::new(), None).unwrap_err();
        assert_eq!(err.code(), "A503AU");
    }

    #[test]
    fn the_app_code_header_is_found_among_other_authorization_headers() {
        let auth = appcode(&["c0de"]);
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer upstream-token"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("appcode c0de"));
        assert!(auth.check(&headers, None).is_ok());
    }

    #[test]
    fn a_signature_route_never_passes_the_checks_without_a_signature() {
        let verifier = Verifier::new("shop/orders", vec![SigningApp::new("k", "s", true)]);
        assert!(Authenticator::Signature(verifier).check(&HeaderMap::new(), None).is_err());
    }

    #[test]
    fn a_signature_route_knows_every_signing_app_of_its_namespace_and_allows_the_named_ones() {
        use switchyard_compile::snapshot::App;
        let app = |ns: &str, name: &str, key: &str, secret: &str| App {
            namespace: ns.into(),
            name: name.into(),
            app_key: key.into(),
            app_secret: secret.into(),
            app_code: String::new(),
        };
        let snapshot = Snapshot {
            apps: vec![
                app("shop", "partner", "1", "s"),
                app("shop", "other", "2", "s"),
                app("web", "partner", "3", "s"),
                app("shop", "nosecret", "4", ""),
            ],
            ..Snapshot::default()
        };
        let Authenticator::Signature(verifier) =
            Authenticator::build(&Auth::Signature { apps: vec!["partner".into()] }, "shop/orders", &snapshot)
        else {
            panic!("a Signature authenticator")
        };
        let shown = format!("{verifier:?}");
        let dumped = format!("{snapshot:?}");
        assert!(!dumped.contains("\"s\"") && dumped.contains("<redacted>"), "Debug never shows a secret: {dumped}");
        assert!(shown.contains(r#"key: "1", allowed: true"#) && shown.contains(r#"key: "2", allowed: false"#), "{shown}");
        assert!(!shown.contains(r#"key: "3""#) && !shown.contains(r#"key: "4""#), "other namespaces and apps that cannot sign: {shown}");
    }
}
