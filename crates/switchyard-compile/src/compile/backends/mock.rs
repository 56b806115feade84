//! `mock`: a fixed response the gateway serves itself.

use switchyard_api::MockBackend;

use super::{BackendEntry, KindCompiler, KindContext, Resolved};
use crate::compile::Rejection;
use crate::reason;
use crate::snapshot::BackendKind;
use crate::validate;

/// Mock bodies are served from memory on every request: keep them small.
const MAX_MOCK_BODY: usize = 50 * 1024;

impl KindCompiler for MockBackend {
    fn compile(&self, _: &KindContext<'_>, _: &mut BackendEntry) -> Result<Resolved, Rejection> {
        mock_kind(self).map(|kind| Resolved::Ready(kind, 1))
    }
}

fn mock_kind(mock: &MockBackend) -> Result<BackendKind, Rejection> {
    if !(100..=599).contains(&mock.status_code) {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("mock.statusCode {} is not in 100-599", mock.status_code)));
    }
    if mock.body.len() > MAX_MOCK_BODY {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("mock.body is {} bytes; the limit is 50 KiB", mock.body.len())));
    }
    let mut headers = Vec::with_capacity(mock.headers.len());
    for (i, h) in mock.headers.iter().enumerate() {
        validate::header_name(&h.name)
            .and_then(|()| validate::header_value(&h.value))
            .map_err(|e| Rejection::new(reason::INVALID_SPEC, format!("mock.headers[{i}]: {e}")))?;
        headers.push((h.name.to_ascii_lowercase(), h.value.clone()));
    }
    Ok(BackendKind::Mock { status: mock.status_code, headers, body: mock.body.clone() })
}
