//! An accepted backend whose references do not resolve: a 503 that names the cause (the
//! same words as the BackendService's `ResolvedRefs` condition), never a silent 404.

use http::Response;

use super::{Backend, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct Unavailable {
    backend: String,
    why: String,
}

impl Unavailable {
    pub fn new(backend: &str, reason: &str, message: &str) -> Self {
        Self { backend: backend.to_owned(), why: format!("{reason}: {message}") }
    }

    /// The refusal, at once.
    pub fn answer(&self) -> Result<Response<ResponseBody>, GatewayError> {
        Err(GatewayError::BackendUnavailable { backend: self.backend.clone(), why: self.why.clone() })
    }
}

impl Backend for Unavailable {
    async fn serve(&self, _request: ShapedRequest, _ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        self.answer()
    }
}
