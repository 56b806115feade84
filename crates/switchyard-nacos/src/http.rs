//! The few HTTP/1.1 calls Nacos needs besides gRPC (the login; registrations in tests).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An answer larger than this is refused (a login answer is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends `form` (already URL-encoded) to `http://{authority}{path_and_query}`.
///
/// Errors name neither the path nor the form, which may carry a password or a token.
pub async fn send(client: &HttpClient, method: Method, authority: &str, path_and_query: &str, form: String) -> Result<Answer, String> {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path_and_query}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| format!("{authority} is not a valid address"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| describe(&e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Answer { status, body: body.to_bytes() })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))?
}

/// The innermost cause is the informative one (`Connection refused (os error 111)`).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
