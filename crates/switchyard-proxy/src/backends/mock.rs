//! `mock`: a fixed response served from memory.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::{Backend, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct MockBackend {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl MockBackend {
    pub fn build(status: u16, headers: &[(String, String)], body: &str) -> Result<Self, String> {
        let status = StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        let mut map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            map.append(name, HeaderValue::from_str(value).map_err(|e| e.to_string())?);
        }
        Ok(Self { status, headers: map, body: Bytes::copy_from_slice(body.as_bytes()) })
    }

    /// The configured response, at once.
    pub fn answer(&self) -> Result<Response<ResponseBody>, GatewayError> {
        // The body is a refcounted Bytes: cloning it copies nothing.
        let mut response = Response::new(ResponseBody::full(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        Ok(response)
    }
}

impl Backend for MockBackend {
    async fn serve(&self, _request: ShapedRequest, _ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        self.answer()
    }
}
