//! Backend kinds this build does not serve yet: a clear 501 with its own error code,
//! never a panic and never a silent 200.

use http::Response;

use super::{Backend, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct Unimplemented {
    kind: String,
    backend: String,
}

impl Unimplemented {
    pub fn new(kind: &str, backend: &str) -> Self {
        Self { kind: kind.to_owned(), backend: backend.to_owned() }
    }

    /// The refusal, at once.
    pub fn answer(&self) -> Result<Response<ResponseBody>, GatewayError> {
        Err(GatewayError::NotImplemented { kind: self.kind.clone(), backend: self.backend.clone() })
    }
}

impl Backend for Unimplemented {
    async fn serve(&self, _request: ShapedRequest, _ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        self.answer()
    }
}
