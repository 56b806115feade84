//! `gateway`: another gateway, remote by URL or in the cluster by Service, reached with
//! the `http` machinery (endpoints, TLS, egress) plus hop counting and, with `app`, the
//! Signature headers of that app on every forwarded request.

use switchyard_api::GatewayBackend;

use super::http::{service_kind, url_endpoints};
use super::{BackendEntry, KindCompiler, KindContext, Resolved, tls_trust_if_needed};
use crate::compile::Rejection;
use crate::snapshot::{BackendKind, GatewaySigning};
use crate::{Resources, reason, validate};

/// Hops allowed when `maxHops` is not set.
pub(crate) const DEFAULT_MAX_HOPS: u32 = 5;
/// The largest `maxHops` (the schema says the same).
const MAX_MAX_HOPS: u32 = 32;

impl KindCompiler for GatewayBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let max_hops = max_hops(self.max_hops)?;
        if let Some(app) = &self.app {
            validate::dns_name(app)
                .map_err(|e| Rejection::new(reason::INVALID_SPEC, format!("gateway.app: {app:?} is not an app (Secret) name: {e}")))?;
        }
        let resolved = endpoints(self, cx, max_hops)?;
        entry.tls = tls_trust_if_needed(&resolved, self.tls.as_ref(), "gateway.tls")?;
        let signing = match self.app.as_deref().map(|app| signing(app, cx.ns, cx.resources)) {
            None => None,
            Some(Ok(signing)) => Some(signing),
            // Never unsigned instead: the backend answers 503 until the app resolves.
            Some(Err(why)) => return Ok(Resolved::Unresolved(why)),
        };
        Ok(match resolved {
            Resolved::Ready(BackendKind::Gateway { endpoints, max_hops, .. }, count) => {
                Resolved::Ready(BackendKind::Gateway { endpoints, max_hops, signing }, count)
            }
            other => other,
        })
    }
}

fn max_hops(value: Option<u32>) -> Result<u32, Rejection> {
    match value.unwrap_or(DEFAULT_MAX_HOPS) {
        hops @ 1..=MAX_MAX_HOPS => Ok(hops),
        hops => Err(Rejection::new(reason::INVALID_SPEC, format!("gateway.maxHops: {hops} is not between 1 and {MAX_MAX_HOPS}"))),
    }
}

/// The gateway's endpoints (unsigned for now): its URL, or its Service's ready endpoints.
fn endpoints(gateway: &GatewayBackend, cx: &KindContext<'_>, max_hops: u32) -> Result<Resolved, Rejection> {
    let kind = |endpoints| BackendKind::Gateway { endpoints, max_hops, signing: None };
    match (&gateway.url, &gateway.service) {
        (Some(_), Some(_)) => Err(Rejection::new(reason::INVALID_SPEC, "gateway: set either url or service, not both")),
        (None, None) => Err(Rejection::new(reason::INVALID_SPEC, "gateway: set url or service")),
        (Some(url), None) => {
            let endpoints = url_endpoints(std::slice::from_ref(url), gateway.tls.as_ref())?;
            Ok(Resolved::Ready(kind(endpoints), 1))
        }
        (None, Some(service)) => service_kind(service, "gateway.service", gateway.tls.as_ref(), cx.ns, cx.resources, kind),
    }
}

/// The app `name` of namespace `ns`, usable for signing: it exists and has a key and a
/// secret that can travel in headers.
fn signing(name: &str, ns: &str, resources: &Resources) -> Result<GatewaySigning, Rejection> {
    let Some(app) = resources.apps.iter().find(|a| a.namespace == ns && a.name == name) else {
        return Err(Rejection::new(
            reason::APP_NOT_FOUND,
            format!("gateway.app: app {ns}/{name} does not exist (a Secret labelled switchyard.dev/app holding appKey and appSecret)"),
        ));
    };
    let unusable = |why: &str| Rejection::new(reason::APP_NOT_USABLE, format!("gateway.app: app {ns}/{name} {why}; it cannot sign"));
    if app.app_key.trim().is_empty() || app.app_secret.trim().is_empty() {
        let field = if app.app_key.trim().is_empty() { "appKey" } else { "appSecret" };
        return Err(unusable(&format!("has an empty or blank {field}")));
    }
    // The key is sent as `X-Ca-Key`; the secret never leaves the gateway.
    if validate::header_value(&app.app_key).is_err() {
        return Err(unusable("has an appKey that is not a valid header value"));
    }
    Ok(GatewaySigning { app: format!("{ns}/{name}"), app_key: app.app_key.clone(), app_secret: app.app_secret.clone() })
}

#[cfg(test)]
mod tests {
    use switchyard_api::condition_type::{ACCEPTED, READY, RESOLVED_REFS};

    use crate::snapshot::{BackendKind, GatewaySigning};
    use crate::{AppSecret, Compiled, Resources, reason};

    fn resources(spec: &str) -> Resources {
        let mut resources = Resources::default();
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: gw, namespace: shop}}\nspec: {{gateway: {spec}}}\n"
        );
        crate::manifest::add_yaml(&mut resources, "t", &yaml);
        resources
    }

    fn partner(key: &str, secret: &str) -> AppSecret {
        AppSecret {
            namespace: "shop".into(),
            name: "partner".into(),
            app_key: key.into(),
            app_secret: secret.into(),
            app_code: String::new(),
        }
    }

    fn condition<'a>(compiled: &'a Compiled, type_: &str) -> (bool, &'a str) {
        let c = compiled.statuses[0].condition(type_).unwrap_or_else(|| panic!("no {type_}: {:?}", compiled.statuses));
        (c.status, c.reason.as_str())
    }

    fn kind(compiled: &Compiled) -> &BackendKind {
        &compiled.snapshot.backends[0].kind
    }

    #[test]
    fn an_https_url_is_one_endpoint_verified_as_its_host_with_five_hops_by_default() {
        let compiled = crate::compile(&resources("{url: \"https://GW-East.example.com/edge\"}"));
        assert_eq!(condition(&compiled, READY), (true, reason::READY));
        let BackendKind::Gateway { endpoints, max_hops, signing } = kind(&compiled) else { panic!("{:?}", kind(&compiled)) };
        assert_eq!((endpoints[0].authority.as_str(), endpoints[0].base_path.as_str()), ("gw-east.example.com:443", "/edge"));
        assert_eq!(endpoints[0].tls_server_name.as_deref(), Some("gw-east.example.com"));
        assert_eq!((*max_hops, signing), (5, &None));
        assert!(compiled.snapshot.backends[0].tls.is_some(), "https endpoints get the TLS trust");
        assert_eq!(compiled.statuses[0].backend_kind.as_deref(), Some("gateway"));
    }

    #[test]
    fn tls_options_apply_to_the_url() {
        let compiled = crate::compile(&resources("{url: \"https://10.0.0.9:8443\", tls: {sni: gw.internal, insecureSkipVerify: true}}"));
        let endpoints = kind(&compiled).endpoints();
        assert_eq!(endpoints[0].tls_server_name.as_deref(), Some("gw.internal"));
        assert!(compiled.snapshot.backends[0].tls.as_ref().unwrap().insecure_skip_verify);
        let bad = crate::compile(&resources("{url: \"https://gw\", tls: {caCertificate: nonsense}}"));
        assert_eq!(condition(&bad, ACCEPTED), (false, reason::INVALID_TLS));
    }

    #[test]
    fn url_and_service_are_one_or_the_other_and_urls_are_checked() {
        for (spec, why) in [
            ("{url: \"http://a\", service: {name: gw, port: 80}}", reason::INVALID_SPEC),
            ("{maxHops: 3}", reason::INVALID_SPEC),
            ("{url: \"ftp://a\"}", reason::INVALID_URL),
            ("{url: \"http://a/x/..\"}", reason::INVALID_URL),
            ("{url: \"http://u@a\"}", reason::INVALID_URL),
        ] {
            let compiled = crate::compile(&resources(spec));
            assert_eq!(condition(&compiled, ACCEPTED), (false, why), "{spec}");
        }
    }

    #[test]
    fn max_hops_is_between_1_and_32() {
        for (hops, ok) in [(0, false), (1, true), (32, true), (33, false)] {
            let compiled = crate::compile(&resources(&format!("{{url: \"http://gw\", maxHops: {hops}}}")));
            assert_eq!(condition(&compiled, ACCEPTED).0, ok, "maxHops {hops}");
            if ok {
                assert!(matches!(kind(&compiled), BackendKind::Gateway { max_hops, .. } if *max_hops == hops));
            } else {
                let message = &compiled.statuses[0].condition(ACCEPTED).unwrap().message;
                assert!(message.contains("gateway.maxHops"), "{message}");
            }
        }
    }

    #[test]
    fn a_service_gateway_uses_its_ready_endpoints_and_waits_for_an_unknown_service() {
        let mut with = resources("{service: {name: edge, namespace: gw, port: 80}}");
        let target = crate::ServicePortTarget { port: 80, name: String::new(), target: 8080 };
        let endpoint = crate::ServiceEndpoint { address: "10.0.0.7".parse().unwrap(), ports: vec![target] };
        with.service_endpoints.insert(("gw".into(), "edge".into()), vec![endpoint]);
        let compiled = crate::compile(&with);
        assert_eq!(kind(&compiled).endpoints()[0].authority, "10.0.0.7:8080");
        assert_eq!(compiled.statuses[0].endpoints, Some(1));

        let without = crate::compile(&resources("{service: {name: edge, port: 80}}"));
        assert!(condition(&without, ACCEPTED).0);
        assert_eq!(condition(&without, RESOLVED_REFS), (false, reason::SERVICE_NOT_FOUND));
        assert!(matches!(kind(&without), BackendKind::Unavailable { .. }));
    }

    #[test]
    fn the_app_signs_with_its_key_and_secret() {
        let mut with = resources("{url: \"http://gw\", app: partner, maxHops: 2}");
        with.apps.push(partner("204000001", "s3cr3t"));
        let compiled = crate::compile(&with);
        let expected = GatewaySigning { app: "shop/partner".into(), app_key: "204000001".into(), app_secret: "s3cr3t".into() };
        assert!(matches!(kind(&compiled), BackendKind::Gateway { signing: Some(s), .. } if *s == expected));
        assert!(!format!("{:?}", kind(&compiled)).contains("s3cr3t"), "Debug never shows the secret");
    }

    #[test]
    fn a_missing_or_unusable_app_leaves_the_backend_unresolved_never_unsigned() {
        let cases = [
            (None, reason::APP_NOT_FOUND, "shop/partner does not exist"),
            (Some(partner("", "s3cr3t")), reason::APP_NOT_USABLE, "appKey"),
            (Some(partner("204000001", " ")), reason::APP_NOT_USABLE, "appSecret"),
            (Some(partner("20400\r\n0001", "s3cr3t")), reason::APP_NOT_USABLE, "header value"),
        ];
        for (app, why, says) in cases {
            let mut with = resources("{url: \"http://gw\", app: partner}");
            with.apps.extend(app);
            let compiled = crate::compile(&with);
            assert!(condition(&compiled, ACCEPTED).0);
            assert_eq!(condition(&compiled, RESOLVED_REFS), (false, why));
            let message = &compiled.statuses[0].condition(RESOLVED_REFS).unwrap().message;
            assert!(message.contains(says) && !message.contains("s3cr3t"), "{message}");
            assert!(matches!(kind(&compiled), BackendKind::Unavailable { reason, .. } if reason == why));
        }
        let mut elsewhere = resources("{url: \"http://gw\", app: partner}");
        elsewhere.apps.push(AppSecret { namespace: "other".into(), ..partner("k", "s") });
        assert_eq!(condition(&crate::compile(&elsewhere), RESOLVED_REFS).1, reason::APP_NOT_FOUND, "apps are per namespace");
        let bad_name = crate::compile(&resources("{url: \"http://gw\", app: \"Not An App\"}"));
        assert_eq!(condition(&bad_name, ACCEPTED), (false, reason::INVALID_SPEC));
    }
}
