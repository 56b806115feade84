//! `function` with `invocation: Event` (placeholder until the runtime lands).

use switchyard_compile::snapshot::{Backend as BackendSpec, Endpoint};

use super::http::HttpBackend;
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct EventFunction {
    id: String,
    http: HttpBackend,
}

impl EventFunction {
    pub fn build(
        spec: &BackendSpec,
        endpoints: &[Endpoint],
        _max_request: u64,
        _max_response: u64,
        ctx: &BuildContext,
    ) -> Result<Self, String> {
        Ok(Self { id: spec.id.clone(), http: HttpBackend::build(spec, endpoints, ctx)? })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.http.health_report()
    }
}

impl Backend for EventFunction {
    async fn serve(&self, _: ShapedRequest, _: &CallContext<'_>) -> Result<http::Response<ResponseBody>, GatewayError> {
        Err(GatewayError::NotImplemented { kind: "function (Event)".into(), backend: self.id.clone() })
    }
}
