//! The two protobuf messages of the Nacos 2 gRPC protocol, derived by hand (the upstream
//! `nacos_grpc_service.proto` is small and frozen, so no build script or protoc).
//!
//! Every request and response is a [`Payload`]: `metadata.type` names the Java class of
//! the message (`SubscribeServiceRequest`) and `body.value` is that message as JSON.

use std::collections::HashMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(string, tag = "3")]
    pub r#type: String,
    #[prost(string, tag = "8")]
    pub client_ip: String,
    #[prost(map = "string, string", tag = "7")]
    pub headers: HashMap<String, String>,
}

/// `google.protobuf.Any`, written out to avoid a prost-types dependency for one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "3")]
    pub body: Option<Any>,
}

impl Payload {
    /// A payload carrying `body` (JSON) as a message of class `kind`.
    pub fn new(kind: &str, body: Vec<u8>, headers: HashMap<String, String>) -> Self {
        Self {
            metadata: Some(Metadata { r#type: kind.to_owned(), client_ip: String::new(), headers }),
            body: Some(Any { type_url: String::new(), value: body }),
        }
    }

    /// The message class, or "" when the server sent none.
    pub fn kind(&self) -> &str {
        self.metadata.as_ref().map_or("", |m| m.r#type.as_str())
    }

    /// The JSON body, or an empty slice.
    pub fn body(&self) -> &[u8] {
        self.body.as_ref().map_or(&[], |b| b.value.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn payload_round_trips_through_protobuf() {
        let headers = HashMap::from([("accessToken".to_owned(), "t".to_owned())]);
        let payload = Payload::new("HealthCheckRequest", b"{}".to_vec(), headers);
        let decoded = Payload::decode(payload.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, payload);
        assert_eq!(decoded.kind(), "HealthCheckRequest");
        assert_eq!(decoded.body(), b"{}");
    }
}
