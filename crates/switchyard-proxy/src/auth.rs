//! The authentication phase. AppCode is checked here; Signature is refused (fail
//! closed) until its own issue lands, so a route asking for it is never left open.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use switchyard_compile::snapshot::{Auth, Snapshot};

use switchyard_http::constant_time_eq;

use crate::error::GatewayError;

/// Per-route authentication, with the allowed credentials resolved from the snapshot.
pub enum Authenticator {
    Anonymous,
    AppCode { codes: Vec<String> },
    Signature,
}

impl Authenticator {
    pub fn build(auth: &Auth, route_namespace: &str, snapshot: &Snapshot) -> Self {
        let allowed = |apps: &[String]| -> Vec<String> {
            snapshot.apps.iter().filter(|a| a.namespace == route_namespace && apps.contains(&a.name)).map(|a| a.app_code.clone()).collect()
        };
        match auth {
            Auth::Anonymous => Self::Anonymous,
            Auth::AppCode { apps } => Self::AppCode { codes: allowed(apps) },
            Auth::Signature { .. } => Self::Signature,
        }
    }

    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), GatewayError> {
        match self {
            Self::Anonymous => Ok(()),
            Self::AppCode { codes } => {
                let presented = app_code(headers, query)
                    .ok_or_else(|| GatewayError::AuthFailed("send Authorization: APPCODE <code> or the AppCode query parameter".into()))?;
                if codes.iter().any(|c| constant_time_eq(c.as_bytes(), presented.as_bytes())) {
                    Ok(())
                } else {
                    Err(GatewayError::AuthFailed("the AppCode is not allowed on this API".into()))
                }
            }
            Self::Signature => Err(GatewayError::AuthFailed("Signature authentication is not implemented in this build".into())),
        }
    }
}

fn app_code(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, code) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("APPCODE").then(|| code.trim().to_owned())
    });
    from_header.or_else(|| form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "AppCode").map(|(_, v)| v.into_owned()))
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
    fn signature_routes_fail_closed_until_signatures_are_implemented() {
        assert!(Authenticator::Signature.check(&HeaderMap::new(), None).is_err());
    }
}
