//! `function`: a serverless function at one URL. `Http` invocation forwards the request
//! as `http` does; `Event` sends the event JSON of the spec, within size limits of its own.

use switchyard_api::{FunctionBackend, Invocation};

use super::http::url_endpoints;
use super::{BackendEntry, KindCompiler, KindContext, Resolved, tls_trust_if_needed};
use crate::compile::Rejection;
use crate::reason;
use crate::snapshot::{BackendKind, FunctionInvocation};
use crate::units::parse_size;

/// Default request and response limit of an event function (what function platforms
/// take for a synchronous invocation).
pub(crate) const DEFAULT_EVENT_LIMIT: u64 = 6 << 20;
/// The largest limit allowed: the gateway holds a whole event and response in memory.
const MAX_EVENT_LIMIT: u64 = 64 << 20;

impl KindCompiler for FunctionBackend {
    fn compile(&self, _: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let invocation = match self.invocation {
            Invocation::Http => {
                if self.max_request_size.is_some() || self.max_response_size.is_some() {
                    return Err(Rejection::new(
                        reason::INVALID_SPEC,
                        "function: maxRequestSize and maxResponseSize apply to invocation: Event only (an Http function streams; limit its requests with the route's requestBodyLimit)",
                    ));
                }
                FunctionInvocation::Http
            }
            Invocation::Event => FunctionInvocation::Event {
                max_request_bytes: limit("function.maxRequestSize", self.max_request_size.as_deref())?,
                max_response_bytes: limit("function.maxResponseSize", self.max_response_size.as_deref())?,
            },
        };
        let endpoints = url_endpoints(std::slice::from_ref(&self.url), self.tls.as_ref())?;
        let resolved = Resolved::Ready(BackendKind::Function { endpoints, invocation }, 1);
        entry.tls = tls_trust_if_needed(&resolved, self.tls.as_ref(), "function.tls")?;
        Ok(resolved)
    }
}

fn limit(field: &str, value: Option<&str>) -> Result<u64, Rejection> {
    let Some(text) = value else { return Ok(DEFAULT_EVENT_LIMIT) };
    let bytes = parse_size(text).map_err(|e| Rejection::new(reason::INVALID_SPEC, format!("{field}: {e}")))?;
    if bytes == 0 || bytes > MAX_EVENT_LIMIT {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("{field}: {text} is not between 1 byte and 64Mi")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use switchyard_api::condition_type::{ACCEPTED, READY};

    use crate::snapshot::{BackendKind, FunctionInvocation};
    use crate::{Compiled, Resources, reason};

    fn compile(spec: &str) -> Compiled {
        let mut resources = Resources::default();
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: fn, namespace: shop}}\nspec: {{function: {spec}}}\n"
        );
        crate::manifest::add_yaml(&mut resources, "t", &yaml);
        crate::compile(&resources)
    }

    fn condition<'a>(compiled: &'a Compiled, type_: &str) -> (bool, &'a str) {
        let c = compiled.statuses[0].condition(type_).unwrap_or_else(|| panic!("no {type_}: {:?}", compiled.statuses));
        (c.status, c.reason.as_str())
    }

    #[test]
    fn an_event_function_is_one_endpoint_with_six_mebibyte_limits_by_default() {
        let compiled = compile("{url: \"http://fn.local:9000/invoke\", invocation: Event}");
        assert_eq!(condition(&compiled, READY), (true, reason::READY));
        let BackendKind::Function { endpoints, invocation } = &compiled.snapshot.backends[0].kind else { panic!() };
        assert_eq!((endpoints[0].authority.as_str(), endpoints[0].base_path.as_str()), ("fn.local:9000", "/invoke"));
        assert_eq!(*invocation, FunctionInvocation::Event { max_request_bytes: 6 << 20, max_response_bytes: 6 << 20 });
        assert_eq!(compiled.statuses[0].backend_kind.as_deref(), Some("function"));
    }

    #[test]
    fn limits_parse_and_are_bounded() {
        let compiled = compile("{url: \"http://fn\", invocation: Event, maxRequestSize: 64Ki, maxResponseSize: 1Mi}");
        let BackendKind::Function { invocation, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
        assert_eq!(*invocation, FunctionInvocation::Event { max_request_bytes: 64 << 10, max_response_bytes: 1 << 20 });
        for bad in ["maxResponseSize: 65Mi", "maxRequestSize: \"0\"", "maxResponseSize: 6MB"] {
            let compiled = compile(&format!("{{url: \"http://fn\", invocation: Event, {bad}}}"));
            assert_eq!(condition(&compiled, ACCEPTED), (false, reason::INVALID_SPEC), "{bad}");
        }
    }

    #[test]
    fn an_http_function_takes_no_event_limits_and_an_https_one_gets_tls() {
        let compiled = compile("{url: \"https://fn.example.com/run\"}");
        let BackendKind::Function { invocation, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
        assert_eq!(*invocation, FunctionInvocation::Http, "Http is the default invocation");
        assert!(compiled.snapshot.backends[0].tls.is_some());
        let compiled = compile("{url: \"http://fn\", maxResponseSize: 1Mi}");
        assert_eq!(condition(&compiled, ACCEPTED), (false, reason::INVALID_SPEC));
        let compiled = compile("{url: \"ftp://fn\"}");
        assert_eq!(condition(&compiled, ACCEPTED), (false, reason::INVALID_URL));
    }
}
