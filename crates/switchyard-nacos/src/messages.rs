//! The JSON bodies of the Nacos requests this client sends and of the responses and
//! server pushes it reads. Field names follow the Nacos Java classes (camelCase).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::select::Hosts;

/// Class names (`Payload.metadata.type`).
pub mod kind {
    pub const SERVER_CHECK: &str = "ServerCheckRequest";
    pub const CONNECTION_SETUP: &str = "ConnectionSetupRequest";
    pub const HEALTH_CHECK: &str = "HealthCheckRequest";
    pub const SUBSCRIBE_SERVICE: &str = "SubscribeServiceRequest";
    pub const SERVICE_QUERY: &str = "ServiceQueryRequest";
    pub const ERROR_RESPONSE: &str = "ErrorResponse";
    pub const NOTIFY_SUBSCRIBER: &str = "NotifySubscriberRequest";
    pub const NOTIFY_SUBSCRIBER_RESPONSE: &str = "NotifySubscriberResponse";
    pub const CLIENT_DETECTION: &str = "ClientDetectionRequest";
    pub const CLIENT_DETECTION_RESPONSE: &str = "ClientDetectionResponse";
    pub const CONNECT_RESET: &str = "ConnectResetRequest";
    pub const CONNECT_RESET_RESPONSE: &str = "ConnectResetResponse";
}

/// What a Nacos server answers with on success.
pub const SUCCESS_CODE: i64 = 200;

/// The service a watch reads, as naming requests name it.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub group: &'a str,
    pub service: &'a str,
}

/// An internal request with no fields of its own (`ServerCheckRequest`, `HealthCheckRequest`).
pub fn internal_request(request_id: &str) -> Value {
    json!({ "requestId": request_id, "headers": {}, "module": "internal" })
}

/// The first message on the bidirectional stream: it binds the HTTP/2 connection to a
/// Nacos client connection, which server pushes and naming subscriptions hang off.
pub fn connection_setup(request_id: &str, namespace: &str) -> Value {
    json!({
        "requestId": request_id,
        "headers": {},
        "module": "internal",
        "clientVersion": concat!("Switchyard:v", env!("CARGO_PKG_VERSION")),
        "tenant": namespace,
        "labels": { "source": "sdk", "module": "naming" },
        "abilities": {
            "remoteAbility": { "supportRemoteConnection": true },
            "configAbility": { "supportRemoteMetrics": false },
            "namingAbility": { "supportDeltaPush": false, "supportRemoteMetric": false },
        },
    })
}

/// Subscribes this connection to pushes for every cluster of the service (clusters are
/// filtered here, so one subscription serves any `clusters` list).
pub fn subscribe(request_id: &str, target: &Target<'_>) -> Value {
    let mut body = naming_request(request_id, target);
    body["subscribe"] = json!(true);
    body["clusters"] = json!("");
    body
}

/// A full read of the service: every instance, healthy or not (filtered here).
pub fn service_query(request_id: &str, target: &Target<'_>) -> Value {
    let mut body = naming_request(request_id, target);
    body["cluster"] = json!("");
    body["healthyOnly"] = json!(false);
    body["udpPort"] = json!(0);
    body
}

fn naming_request(request_id: &str, target: &Target<'_>) -> Value {
    json!({
        "requestId": request_id,
        "headers": {},
        "module": "naming",
        "namespace": target.namespace,
        "groupName": target.group,
        "serviceName": target.service,
    })
}

/// The answer to a server push (`NotifySubscriberRequest`, `ClientDetectionRequest`).
pub fn push_ack(request_id: &str) -> Value {
    json!({ "requestId": request_id, "resultCode": SUCCESS_CODE, "errorCode": 0, "message": "" })
}

/// The fields every response has.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponseHead {
    pub result_code: Option<i64>,
    pub error_code: Option<i64>,
    pub message: Option<String>,
}

/// A naming response or push that carries the service's instances
/// (`SubscribeServiceResponse`, `QueryServiceResponse`, `NotifySubscriberRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WithServiceInfo {
    pub service_info: Option<ServiceInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceInfo {
    /// The service name; some servers send it grouped (`group@@service`).
    pub name: Option<String>,
    pub group_name: Option<String>,
    pub hosts: Option<Hosts>,
}

impl ServiceInfo {
    /// Whether this is the watched service (pushes name the service they are about).
    pub fn is_for(&self, target: &Target<'_>) -> bool {
        let grouped = format!("{}@@{}", target.group, target.service);
        let name_matches = self.name.as_deref().is_none_or(|n| n == target.service || n == grouped);
        let group_matches = self.group_name.as_deref().is_none_or(|g| g.is_empty() || g == target.group);
        name_matches && group_matches
    }
}

/// A request the server sends on the stream: only its id matters (for the answer).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerRequest {
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Target<'static> = Target { namespace: "public", group: "G", service: "orders" };

    fn info(name: Option<&str>, group: Option<&str>) -> ServiceInfo {
        ServiceInfo { name: name.map(str::to_owned), group_name: group.map(str::to_owned), hosts: None }
    }

    #[test]
    fn pushes_name_the_service_plainly_or_grouped() {
        assert!(info(Some("orders"), Some("G")).is_for(&TARGET));
        assert!(info(Some("G@@orders"), None).is_for(&TARGET));
        assert!(info(None, None).is_for(&TARGET));
        assert!(!info(Some("payments"), Some("G")).is_for(&TARGET));
        assert!(!info(Some("orders"), Some("OTHER")).is_for(&TARGET));
    }

    #[test]
    fn naming_requests_read_every_cluster_and_every_instance() {
        let query = service_query("7", &TARGET);
        assert_eq!(
            query,
            json!({
                "requestId": "7", "headers": {}, "module": "naming", "namespace": "public",
                "groupName": "G", "serviceName": "orders", "cluster": "", "healthyOnly": false, "udpPort": 0,
            })
        );
        assert_eq!(subscribe("8", &TARGET)["clusters"], "");
    }
}
