//! The upstream HTTP client. One per worker thread, living across snapshots, so pooled
//! keep-alive connections survive configuration changes.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::RequestBody;

pub type UpstreamClient = Client<HttpConnector, RequestBody>;

/// Dial timeout: a backend that does not accept within this is a connect failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector)
}
