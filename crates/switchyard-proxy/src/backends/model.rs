//! `model` (placeholder until the runtime lands).

use switchyard_compile::snapshot::{Backend as BackendSpec, Endpoint, ModelProtocol, SecretText};

use super::http::HttpBackend;
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct ModelBackend {
    id: String,
    http: HttpBackend,
}

impl ModelBackend {
    pub fn build(
        spec: &BackendSpec,
        endpoints: &[Endpoint],
        _protocol: ModelProtocol,
        _token: Option<&SecretText>,
        _idle_timeout_ms: u64,
        ctx: &BuildContext,
    ) -> Result<Self, String> {
        Ok(Self { id: spec.id.clone(), http: HttpBackend::build(spec, endpoints, ctx)? })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.http.health_report()
    }
}

impl Backend for ModelBackend {
    async fn serve(&self, _: ShapedRequest, _: &CallContext<'_>) -> Result<http::Response<ResponseBody>, GatewayError> {
        Err(GatewayError::NotImplemented { kind: "model".into(), backend: self.id.clone() })
    }
}
