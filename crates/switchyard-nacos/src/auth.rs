//! Nacos username/password login: `POST /nacos/v1/auth/login` on the HTTP port answers an
//! access token, which every gRPC request then carries in its metadata headers.

use std::time::Duration;

use http::Method;
use serde::Deserialize;
use switchyard_compile::Credentials;
use tokio::time::Instant;

use crate::http::{HttpClient, send};

/// Nacos servers default to 18000 s; a server that says nothing useful gets this.
const FALLBACK_TTL: Duration = Duration::from_secs(60);
/// Tokens are refreshed this long after login at the latest, whatever their TTL.
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The metadata header Nacos servers read the token from.
pub const TOKEN_HEADER: &str = "accessToken";

pub struct Token {
    pub value: String,
    /// When to log in again: at 80% of the token's life, so a slow login still lands
    /// before the old token expires.
    pub refresh_at: Instant,
    pub expires_at: Instant,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    access_token: Option<String>,
    token_ttl: Option<f64>,
}

/// Logs in at `http_addr`. Errors say why without the password or a token.
pub async fn login(client: &HttpClient, http_addr: &str, credentials: &Credentials) -> Result<Token, String> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", &credentials.username)
        .append_pair("password", &credentials.password)
        .finish();
    let failed = |why: String| format!("login failed as {}: {why}", credentials.username);
    let answer = send(client, Method::POST, http_addr, "/nacos/v1/auth/login", form).await.map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(format!("HTTP {}", answer.status.as_u16())));
    }
    let parsed: LoginAnswer = serde_json::from_slice(&answer.body).map_err(|_| failed("the answer is not a login result".to_owned()))?;
    let value = parsed.access_token.filter(|t| !t.is_empty()).ok_or_else(|| failed("the answer has no accessToken".to_owned()))?;
    Ok(token_with_ttl(value, parsed.token_ttl))
}

fn token_with_ttl(value: String, ttl_seconds: Option<f64>) -> Token {
    let ttl = ttl_seconds
        .filter(|t| t.is_finite() && *t >= 1.0)
        .map_or(FALLBACK_TTL, |t| Duration::from_secs_f64(t.min(MAX_REFRESH.as_secs_f64())));
    let now = Instant::now();
    Token { value, refresh_at: now + ttl.mul_f64(0.8), expires_at: now + ttl }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_at_four_fifths_of_their_ttl() {
        let token = token_with_ttl("t".to_owned(), Some(100.0));
        let life = token.expires_at - token.refresh_at;
        assert!(life > Duration::from_secs(19) && life <= Duration::from_secs(20), "{life:?}");
    }

    #[test]
    fn nonsense_ttls_fall_back_to_a_minute() {
        for ttl in [None, Some(0.0), Some(-5.0), Some(f64::NAN)] {
            let token = token_with_ttl("t".to_owned(), ttl);
            assert!(token.expires_at - token.refresh_at <= Duration::from_secs(12));
        }
    }
}
