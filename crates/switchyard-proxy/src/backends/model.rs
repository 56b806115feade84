//! `model`: an inference endpoint, served by the `http` runtime (endpoint, timeout,
//! retries, TLS, egress policy), with on each request:
//!
//! - the protocol's paths only ([`protocol`]): `KServeV2` and `OpenAI` answer 404
//!   (`A404MP`) for any other path, so a client cannot reach the rest of the model
//!   server; a KServe v2 `infer` body is read and checked before it is forwarded (400
//!   `A400IR` naming the field);
//! - the token, when there is one, as `Authorization` on every attempt, replacing the
//!   client's (PAI-EAS style: the bare token);
//! - the response streamed unbuffered under a [`StreamWatch`]: its first byte within the
//!   backend's `timeout`, each later chunk within `idleTimeout` of the one before, else
//!   the stream is cut; for `OpenAI`, its `usage` counted as it passes ([`usage`]).

mod protocol;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchyard_compile::snapshot::{Backend as BackendSpec, Endpoint, ModelProtocol, SecretText};

use self::protocol::Call;
use super::DEFAULT_TIMEOUT;
use super::http::{HttpBackend, Outbound, collect};
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::{ResponseBody, StreamWatch};
use crate::error::GatewayError;
use crate::headers::X_CA_REQUEST_ID;
use crate::metrics::TokenLabels;
use crate::request_body::RequestBody;

pub struct ModelBackend {
    id: Arc<str>,
    http: HttpBackend,
    protocol: ModelProtocol,
    /// The bare token, marked sensitive (never indexed by HPACK, hidden by Debug).
    token: Option<HeaderValue>,
    /// Time to the first byte of the response (the backend's `timeout`).
    first_byte: Duration,
    /// Longest wait between two chunks of the response.
    idle: Duration,
    /// `switchyard_model_tokens_total` (OpenAI only).
    tokens: Option<Family<TokenLabels, Counter>>,
}

impl ModelBackend {
    pub fn build(
        spec: &BackendSpec,
        endpoints: &[Endpoint],
        protocol: ModelProtocol,
        token: Option<&SecretText>,
        idle_timeout_ms: u64,
        ctx: &BuildContext,
    ) -> Result<Self, String> {
        let token = token
            .map(|t| {
                // Compile checked it; the message never shows it.
                let mut value = HeaderValue::from_str(&t.0).map_err(|_| "the model token is not a valid header value".to_owned())?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        Ok(Self {
            id: Arc::from(spec.id.as_str()),
            http: HttpBackend::build(spec, endpoints, ctx)?,
            protocol,
            token,
            first_byte: spec.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            idle: Duration::from_millis(idle_timeout_ms.max(1)),
            tokens: (protocol == ModelProtocol::OpenAI).then(|| ctx.metrics.model_tokens.clone()),
        })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.http.health_report()
    }

    pub fn endpoint_name(&self, i: usize) -> Option<&str> {
        self.http.endpoint_name(i)
    }

    /// The request as the protocol allows it: a path it serves, and for a KServe v2
    /// `infer` a body that is an inference request (read within the route's body limit
    /// and deadline, then forwarded from memory).
    async fn admit(&self, request: &mut ShapedRequest, ctx: &CallContext<'_>) -> Result<(), GatewayError> {
        let path = request.path_and_query.split('?').next().unwrap_or_default();
        let Some(call) = protocol::classify(self.protocol, &request.method, path) else {
            return Err(GatewayError::ModelPathNotServed {
                backend: self.id.to_string(),
                protocol: protocol::name(self.protocol),
                method: request.method.to_string(),
                path: path.to_owned(),
                serves: protocol::serves(self.protocol),
            });
        };
        if call == Call::KServeInfer {
            let body = std::mem::replace(&mut request.body, RequestBody::full(Bytes::new()));
            let bytes = collect(body, ctx).await?;
            protocol::check_infer_request(&bytes).map_err(|problem| GatewayError::InferenceRequestInvalid { problem })?;
            request.body = RequestBody::full(bytes);
        }
        Ok(())
    }
}

impl Backend for ModelBackend {
    async fn serve(&self, mut request: ShapedRequest, ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        let started = tokio::time::Instant::now();
        self.admit(&mut request, ctx).await?;
        let request_id = request.headers.get(X_CA_REQUEST_ID).cloned();
        let response = self.http.serve_with(request, ctx, &WithToken(self.token.as_ref())).await?;
        let (parts, body) = response.into_parts();
        // OpenAI usage is in successful answers only.
        let observer = match &self.tokens {
            Some(family) if parts.status.is_success() => {
                usage::meter_for(&parts.headers, usage::Tokens { family: family.clone(), route: ctx.route.clone() })
            }
            _ => None,
        };
        // The first byte may take the rest of the backend's timeout (a model that sends
        // its headers before it has generated anything), and never less than one idle time.
        let first_frame_by = (started + self.first_byte).max(tokio::time::Instant::now() + self.idle);
        let body = body.watched(StreamWatch::new(first_frame_by, self.idle, observer, request_id, self.id.clone()));
        Ok(Response::from_parts(parts, body))
    }
}

/// Each attempt carries the model's token as its `Authorization`, replacing the client's.
/// Without a token the client's `Authorization` passes as it came.
struct WithToken<'a>(Option<&'a HeaderValue>);

impl Outbound for WithToken<'_> {
    fn finish(&self, request: &mut Request<RequestBody>) -> Result<(), GatewayError> {
        if let Some(token) = self.0 {
            request.headers_mut().insert(http::header::AUTHORIZATION, token.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::{BackendKind, Snapshot};

    #[test]
    fn the_token_replaces_every_client_authorization() {
        let mut token = HeaderValue::from_static("eas-t0ken");
        token.set_sensitive(true);
        let mut request = Request::new(RequestBody::full(Bytes::new()));
        request.headers_mut().append(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer client-key"));
        request.headers_mut().append(http::header::AUTHORIZATION, HeaderValue::from_static("Basic second"));
        WithToken(Some(&token)).finish(&mut request).unwrap();
        let values: Vec<_> = request.headers().get_all(http::header::AUTHORIZATION).iter().collect();
        assert_eq!(values, [&token]);
        assert!(!format!("{:?}", request.headers()).contains("eas-t0ken"), "a sensitive value is hidden by Debug");
        let mut request = Request::new(RequestBody::full(Bytes::new()));
        request.headers_mut().insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer own"));
        WithToken(None).finish(&mut request).unwrap();
        assert_eq!(request.headers()[http::header::AUTHORIZATION], "Bearer own", "no token: the client's own passes");
    }

    #[test]
    fn the_config_dump_never_shows_the_model_token() {
        let kind = BackendKind::Model {
            endpoints: Vec::new(),
            protocol: ModelProtocol::OpenAI,
            token: Some(SecretText("sk-model-s3cr3t".into())),
            idle_timeout_ms: 60_000,
        };
        let mut snapshot = Snapshot::default();
        snapshot.backends.push(BackendSpec::with_defaults("shop/llm", kind));
        let dump = crate::admin::config_dump(Some(&snapshot), Vec::new(), Vec::new());
        let text = String::from_utf8_lossy(&dump);
        assert!(!text.contains("sk-model-s3cr3t"), "{text}");
        assert!(text.contains("shop/llm") && text.contains("OpenAI") && text.contains(crate::admin::REDACTED), "{text}");
    }
}
