//! `dataService`: a read-only SQL API. The request's parameters are read from where the
//! resource says (query, path, header, a JSON or form body), typed and checked (a 400
//! naming the parameter otherwise), and bound to the SELECT compile checked; the answer
//! is one page `{"data": [...], "pageNumber", "pageSize", "totalCount"}`. The database
//! work (pool, read-only transaction, statement timeout, row decoding) is
//! `switchyard_sql`'s.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use switchyard_compile::snapshot::{
    Backend as BackendSpec, DataConnection, DataDriver, DataParam, DataParamLocation, DataParamType, DataService,
};
use switchyard_sql::{Database, Driver, SqlError, Statements, Target, Value};

use super::http::collect;
use super::{Backend, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;

pub struct DataServiceBackend {
    id: String,
    spec: DataService,
    statements: Statements,
    database: Database,
    /// Whether any parameter is read from the body (else the body is not read).
    reads_body: bool,
}

/// The largest body read for body parameters.
const MAX_BODY: usize = 1024 * 1024;
/// Bytes reserved per row of the page for its JSON (a guess: the buffer grows past it).
const PAGE_BYTES_GUESS: usize = 128;
/// The most reserved up front for one page's JSON.
const MAX_BODY_RESERVE: usize = 256 * 1024;

impl DataServiceBackend {
    pub fn build(spec: &BackendSpec, service: &DataService) -> Result<Self, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("a data service's pool needs the proxy's runtime".into());
        }
        let driver = match service.driver {
            DataDriver::Postgres => Driver::Postgres,
            DataDriver::Mysql => Driver::Mysql,
            DataDriver::Sqlite => Driver::Sqlite,
        };
        let target = match &service.connection {
            DataConnection::Url { url_secret } => Target::Url(url_secret.0.clone()),
            DataConnection::SqliteFile { path } => Target::SqliteFile(path.into()),
        };
        let database = Database::connect_lazy(driver, &target, service.max_connections).map_err(|e| e.to_string())?;
        Ok(Self {
            id: spec.id.clone(),
            statements: Statements { page: service.page_sql.clone(), count: service.count_sql.clone(), page_counts: service.page_counts },
            reads_body: service.parameters.iter().any(|p| p.location == DataParamLocation::Body),
            spec: service.clone(),
            database,
        })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "backend": self.id,
            "driver": format!("{:?}", self.spec.driver).to_ascii_lowercase(),
            "connections": self.database.connections(),
            "maxConnections": self.spec.max_connections,
        }))
    }
}

impl Backend for DataServiceBackend {
    async fn serve(&self, request: ShapedRequest, ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        let content_type = request.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let ShapedRequest { headers, body, path_and_query, event, .. } = request;
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = form_urlencoded::parse(query.as_bytes()).collect();
        let from_query = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_string());
        let page_number = page_value("pageNumber", from_query("pageNumber"), 1)?;
        let page_size = page_value("pageSize", from_query("pageSize"), u64::from(self.spec.default_page_size))?;
        if page_size > u64::from(self.spec.max_page_size) {
            return Err(GatewayError::DataPageTooLarge { size: page_size, max: self.spec.max_page_size });
        }
        let body = if self.reads_body { Some(read_fields(content_type.as_deref(), body, ctx).await?) } else { None };
        let mut values = Vec::with_capacity(self.spec.parameters.len());
        for param in &self.spec.parameters {
            let raw = match param.location {
                DataParamLocation::Query => from_query(&param.name),
                DataParamLocation::Path => path_value(event.as_deref(), &param.name)?,
                DataParamLocation::Header => match headers.get(param.name.as_str()) {
                    None => None,
                    Some(v) => Some(v.to_str().map_err(|_| self.invalid(param, "not visible ASCII"))?.to_owned()),
                },
                DataParamLocation::Body => {
                    body.as_ref().and_then(|fields| fields.iter().find(|(k, _)| *k == param.name)).map(|(_, v)| v.clone())
                }
            };
            values.push(self.value(param, raw)?);
        }
        let binds: Vec<Value> = self.spec.binds.iter().map(|&i| values[i].clone()).collect();
        let offset = (page_number - 1)
            .checked_mul(page_size)
            .filter(|o| *o <= i64::MAX as u64)
            .ok_or(GatewayError::DataPageInvalid { parameter: "pageNumber", why: "too large".into() })?;
        // The page's JSON is written straight into the body: the rows as the database
        // crate renders them, then the page's own fields.
        let mut body = Vec::with_capacity(PAGE_BYTES_GUESS.saturating_mul(page_size as usize).min(MAX_BODY_RESERVE));
        body.extend_from_slice(b"{\"data\":");
        let page = self
            .database
            .page_into(&self.statements, &binds, page_size as i64, offset as i64, ctx.deadline, &mut body)
            .await
            .map_err(|e| self.sql_error(e))?;
        let mut numbers = itoa::Buffer::new();
        for (field, n) in [(&b",\"pageNumber\":"[..], page_number), (b",\"pageSize\":", page_size)] {
            body.extend_from_slice(field);
            body.extend_from_slice(numbers.format(n).as_bytes());
        }
        body.extend_from_slice(b",\"totalCount\":");
        body.extend_from_slice(numbers.format(page.total).as_bytes());
        body.push(b'}');
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }
}

impl DataServiceBackend {
    fn invalid(&self, param: &DataParam, why: impl Into<String>) -> GatewayError {
        GatewayError::DataParameterInvalid { backend: self.id.clone(), parameter: param.name.clone(), why: why.into() }
    }

    /// The typed value of one parameter: the request's, else the default, else null (or a
    /// 400 when it is required).
    fn value(&self, param: &DataParam, raw: Option<String>) -> Result<Value, GatewayError> {
        let Some(text) = raw.or_else(|| param.default.clone()) else {
            if param.required {
                return Err(GatewayError::DataParameterMissing { backend: self.id.clone(), parameter: param.name.clone() });
            }
            return Ok(Value::Null);
        };
        if !param.allowed.is_empty() && !param.allowed.contains(&text) {
            return Err(self.invalid(param, format!("must be one of {}", param.allowed.join(", "))));
        }
        let in_bounds = |n: f64| -> Result<(), GatewayError> {
            if param.min.is_some_and(|min| n < min) || param.max.is_some_and(|max| n > max) {
                let bound = |b: Option<f64>| b.map_or("-".to_owned(), |b| b.to_string());
                return Err(self.invalid(param, format!("must be within [{}, {}]", bound(param.min), bound(param.max))));
            }
            Ok(())
        };
        match param.kind {
            DataParamType::String => {
                if text.chars().count() > param.max_length as usize {
                    return Err(self.invalid(param, format!("longer than {} characters", param.max_length)));
                }
                Ok(Value::Text(text))
            }
            DataParamType::Integer => {
                let n: i64 = text.parse().map_err(|_| self.invalid(param, "not an integer"))?;
                in_bounds(n as f64)?;
                Ok(Value::Integer(n))
            }
            DataParamType::Number => {
                let n: f64 = text.parse().ok().filter(|n: &f64| n.is_finite()).ok_or_else(|| self.invalid(param, "not a number"))?;
                in_bounds(n)?;
                Ok(Value::Number(n))
            }
            DataParamType::Boolean => match text.as_str() {
                "true" => Ok(Value::Boolean(true)),
                "false" => Ok(Value::Boolean(false)),
                _ => Err(self.invalid(param, "not true or false")),
            },
            DataParamType::Timestamp => {
                let format = switchyard_sql::time::format_description::well_known::Rfc3339;
                switchyard_sql::time::OffsetDateTime::parse(&text, &format)
                    .map(Value::Timestamp)
                    .map_err(|_| self.invalid(param, "not an RFC 3339 timestamp (2024-05-01T12:00:00Z)"))
            }
        }
    }

    fn sql_error(&self, e: SqlError) -> GatewayError {
        let backend = self.id.clone();
        match e {
            SqlError::PoolExhausted => GatewayError::DataPoolExhausted { backend },
            SqlError::Timeout { timeout_ms } => GatewayError::DataTimeout { backend, timeout_ms },
            SqlError::Unavailable { detail } => GatewayError::DataUnavailable { backend, detail },
            SqlError::BadUrl(detail) => GatewayError::DataUnavailable { backend, detail },
            SqlError::BadData { message } => GatewayError::DataValueRefused { backend, detail: message },
            SqlError::Failed { message } => GatewayError::DataQueryFailed { backend, detail: message },
        }
    }
}

/// `pageNumber` / `pageSize`: an integer from 1.
fn page_value(parameter: &'static str, raw: Option<String>, default: u64) -> Result<u64, GatewayError> {
    match raw {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(GatewayError::DataPageInvalid { parameter, why: "must be an integer from 1".into() }),
        },
    }
}

/// A path parameter from the route's template, percent-decoded (it must be UTF-8).
fn path_value(source: Option<&super::EventSource>, name: &str) -> Result<Option<String>, GatewayError> {
    let Some(source) = source else { return Ok(None) };
    let Some((_, raw)) = source.path_parameters.iter().find(|(n, _)| &**n == name) else { return Ok(None) };
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| Some(s.into_owned()))
        .map_err(|_| GatewayError::DataBodyInvalid { why: format!("path parameter {name} is not UTF-8") })
}

/// The fields of a JSON object body or a form body (strings, numbers and booleans as
/// their text; null as absent).
async fn read_fields(
    content_type: Option<&str>,
    body: crate::request_body::RequestBody,
    ctx: &CallContext<'_>,
) -> Result<Vec<(String, String)>, GatewayError> {
    let bytes = collect(body, ctx).await?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() > MAX_BODY {
        return Err(GatewayError::BodyTooLarge { limit: MAX_BODY as u64 });
    }
    let essence = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => {
            let mut fields: Vec<(String, String)> = Vec::new();
            for (k, v) in form_urlencoded::parse(&bytes) {
                if !fields.iter().any(|(n, _)| *n == k) {
                    fields.push((k.into_owned(), v.into_owned()));
                }
            }
            Ok(fields)
        }
        "application/json" | "" => {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| GatewayError::DataBodyInvalid { why: format!("not JSON: {e}") })?;
            let serde_json::Value::Object(object) = value else {
                return Err(GatewayError::DataBodyInvalid { why: "the JSON body must be an object".into() });
            };
            let mut fields = Vec::new();
            for (k, v) in object {
                let text = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return Err(GatewayError::DataBodyInvalid { why: format!("field {k} must be a string, number or boolean") }),
                };
                fields.push((k, text));
            }
            Ok(fields)
        }
        other => Err(GatewayError::DataBodyInvalid { why: format!("content-type {other} is neither JSON nor a form") }),
    }
}
