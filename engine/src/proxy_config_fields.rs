//! The fields of Istio's `ProxyConfig` message, as istiod's protobuf decoder knows them, so
//! `proxy.istio.io/config` reaches `PROXY_CONFIG` as istiod writes it.
//!
//! istiod decodes the annotation into the `ProxyConfig` protobuf, retrying without its
//! unknown-field check when the strict pass fails, and writes the message back as JSON. A
//! field the message does not have, at any depth, is therefore dropped; a field written
//! under its protobuf name (`discovery_address`) is read, and comes out under its JSON name
//! (`discoveryAddress`), the JSON name winning when both are given; a `null` field is unset.
//! [`known_fields`] does the same to the annotation's JSON, leaving every value it keeps as
//! written. The tables list protobuf names (istio.io/api `mesh/v1alpha1/proxy.proto` and the
//! networking messages it uses); the JSON name is derived as protoc derives it.

use serde_json::{Map, Value};

/// What a field holds, as far as unknown fields are concerned.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A scalar, a well-known type (duration, wrapper), an enum, or a list of those.
    Plain,
    /// A message.
    Message(&'static [Field]),
    /// A list of messages.
    Messages(&'static [Field]),
    /// A map whose values are messages.
    MessageMap(&'static [Field]),
}

/// One field: its protobuf name and what it holds.
type Field = (&'static str, Shape);

use Shape::*;

const REMOTE_SERVICE: &[Field] = &[
    ("address", Plain),
    ("tls_settings", Message(CLIENT_TLS_SETTINGS)),
    ("tcp_keepalive", Message(TCP_KEEPALIVE)),
];

const CLIENT_TLS_SETTINGS: &[Field] = &[
    ("mode", Plain),
    ("client_certificate", Plain),
    ("private_key", Plain),
    ("ca_certificates", Plain),
    ("credential_name", Plain),
    ("subject_alt_names", Plain),
    ("sni", Plain),
    ("insecure_skip_verify", Plain),
    ("ca_crl", Plain),
];

const TCP_KEEPALIVE: &[Field] = &[("probes", Plain), ("time", Plain), ("interval", Plain)];

const TRACING: &[Field] = &[
    ("zipkin", Message(&[("address", Plain)])),
    ("lightstep", Message(&[("address", Plain), ("access_token", Plain)])),
    ("datadog", Message(&[("address", Plain)])),
    (
        "stackdriver",
        Message(&[
            ("debug", Plain),
            ("max_number_of_attributes", Plain),
            ("max_number_of_annotations", Plain),
            ("max_number_of_message_events", Plain),
        ]),
    ),
    ("open_census_agent", Message(&[("address", Plain), ("context", Plain)])),
    ("custom_tags", MessageMap(CUSTOM_TAG)),
    ("max_path_tag_length", Plain),
    ("sampling", Plain),
    ("tls_settings", Message(CLIENT_TLS_SETTINGS)),
    ("enable_istio_tags", Plain),
];

const CUSTOM_TAG: &[Field] = &[
    ("literal", Message(&[("value", Plain)])),
    ("environment", Message(&[("name", Plain), ("default_value", Plain)])),
    ("header", Message(&[("name", Plain), ("default_value", Plain)])),
];

const TOPOLOGY: &[Field] = &[
    ("num_trusted_proxies", Plain),
    ("forward_client_cert_details", Plain),
    ("proxy_protocol", Message(&[])),
];

const READINESS_PROBE: &[Field] = &[
    ("initial_delay_seconds", Plain),
    ("timeout_seconds", Plain),
    ("period_seconds", Plain),
    ("success_threshold", Plain),
    ("failure_threshold", Plain),
    (
        "http_get",
        Message(&[
            ("path", Plain),
            ("port", Plain),
            ("host", Plain),
            ("scheme", Plain),
            ("http_headers", Messages(&[("name", Plain), ("value", Plain)])),
        ]),
    ),
    ("tcp_socket", Message(&[("host", Plain), ("port", Plain)])),
    ("exec", Message(&[("command", Plain)])),
    ("grpc", Message(&[("port", Plain), ("service", Plain)])),
];

const PRIVATE_KEY_PROVIDER_MODE: &[Field] = &[("poll_delay", Plain), ("fallback", Plain)];

const PROXY_HEADERS: &[Field] = &[
    ("forwarded_client_cert", Plain),
    (
        "set_current_client_cert_details",
        Message(&[
            ("subject", Plain),
            ("cert", Plain),
            ("chain", Plain),
            ("dns", Plain),
            ("uri", Plain),
        ]),
    ),
    ("request_id", Message(&[("disabled", Plain)])),
    ("server", Message(&[("disabled", Plain), ("value", Plain)])),
    ("attempt_count", Message(&[("disabled", Plain)])),
    ("envoy_debug_headers", Message(&[("disabled", Plain)])),
    ("metadata_exchange_headers", Message(&[("mode", Plain)])),
    ("preserve_http1_header_case", Plain),
    ("x_forwarded_host", Message(&[("enabled", Plain)])),
    ("x_forwarded_port", Message(&[("enabled", Plain)])),
];

const CONNECTION_SETTINGS: &[Field] = &[
    ("profile", Plain),
    ("listener_per_connection_buffer_limit_bytes", Plain),
    ("cluster_per_connection_buffer_limit_bytes", Plain),
    ("http_idle_timeout", Plain),
    ("http_max_connection_duration", Plain),
    ("http_drain_timeout", Plain),
    ("http_request_timeout", Plain),
    ("http_request_headers_timeout", Plain),
    ("http_stream_idle_timeout", Plain),
    ("http_max_stream_duration", Plain),
    ("http_max_concurrent_streams", Plain),
    ("http2_initial_stream_window_size", Plain),
    ("http2_initial_connection_window_size", Plain),
    ("http_headers_with_underscores_action", Plain),
    ("http_merge_slashes", Plain),
    ("http_path_with_escaped_slashes_action", Plain),
    ("listener_connection_limit", Plain),
    ("global_downstream_connection_limit", Plain),
];

/// `ProxyConfig` itself.
const PROXY_CONFIG: &[Field] = &[
    ("config_path", Plain),
    ("binary_path", Plain),
    ("service_cluster", Plain),
    ("tracing_service_name", Plain),
    ("drain_duration", Plain),
    ("discovery_address", Plain),
    ("discovery_refresh_delay", Plain),
    ("zipkin_address", Plain),
    ("statsd_udp_address", Plain),
    ("envoy_metrics_service_address", Plain),
    ("proxy_admin_port", Plain),
    ("availability_zone", Plain),
    ("control_plane_auth_policy", Plain),
    ("custom_config_file", Plain),
    ("stat_name_length", Plain),
    ("concurrency", Plain),
    ("proxy_bootstrap_template_path", Plain),
    ("interception_mode", Plain),
    ("tracing", Message(TRACING)),
    ("sds", Message(&[("enabled", Plain), ("k8s_sa_jwt_path", Plain)])),
    ("envoy_access_log_service", Message(REMOTE_SERVICE)),
    ("envoy_metrics_service", Message(REMOTE_SERVICE)),
    ("proxy_metadata", Plain),
    ("runtime_values", Plain),
    ("status_port", Plain),
    ("extra_stat_tags", Plain),
    ("gateway_topology", Message(TOPOLOGY)),
    ("termination_drain_duration", Plain),
    ("mesh_id", Plain),
    ("readiness_probe", Message(READINESS_PROBE)),
    (
        "proxy_stats_matcher",
        Message(&[
            ("inclusion_prefixes", Plain),
            ("inclusion_suffixes", Plain),
            ("inclusion_regexps", Plain),
        ]),
    ),
    ("hold_application_until_proxy_starts", Plain),
    ("ca_certificates_pem", Plain),
    ("image", Message(&[("image_type", Plain)])),
    (
        "private_key_provider",
        Message(&[
            ("cryptomb", Message(PRIVATE_KEY_PROVIDER_MODE)),
            ("qat", Message(PRIVATE_KEY_PROVIDER_MODE)),
        ]),
    ),
    ("proxy_headers", Message(PROXY_HEADERS)),
    ("file_flush_interval", Plain),
    ("file_flush_min_size_kb", Plain),
    ("stats_compression", Plain),
    ("connection_settings", Message(CONNECTION_SETTINGS)),
];

/// The annotation's `ProxyConfig` as istiod keeps it: fields the message does not have
/// dropped at every depth, `null` fields dropped, protobuf names turned into JSON names.
/// Values of a shape istiod would refuse (a string where a message goes) are kept as they
/// are; the checks in [`crate::proxy_config`] judge the ones we act on.
pub(crate) fn known_fields(config: &Map<String, Value>) -> Map<String, Value> {
    message(config, PROXY_CONFIG)
}

fn message(object: &Map<String, Value>, fields: &[Field]) -> Map<String, Value> {
    let mut kept = Map::new();
    for (proto_name, shape) in fields {
        let json_name = json_name(proto_name);
        let Some(value) = object.get(&json_name).or_else(|| object.get(*proto_name)) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        kept.insert(json_name, shaped(value, *shape));
    }
    kept
}

fn shaped(value: &Value, shape: Shape) -> Value {
    match (shape, value) {
        (Message(fields), Value::Object(object)) => Value::Object(message(object, fields)),
        (Messages(fields), Value::Array(items)) => {
            Value::Array(items.iter().map(|item| shaped(item, Message(fields))).collect())
        }
        (MessageMap(fields), Value::Object(entries)) => Value::Object(
            entries
                .iter()
                .map(|(key, item)| (key.clone(), shaped(item, Message(fields))))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// protoc's JSON name for a field: each `_` removed and the letter after it capitalised.
fn json_name(proto_name: &str) -> String {
    let mut name = String::with_capacity(proto_name.len());
    let mut upper = false;
    for c in proto_name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            name.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            name.push(c);
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kept(value: Value) -> Value {
        Value::Object(known_fields(value.as_object().unwrap()))
    }

    #[test]
    fn json_names_are_protocs() {
        assert_eq!(json_name("discovery_address"), "discoveryAddress");
        assert_eq!(json_name("k8s_sa_jwt_path"), "k8sSaJwtPath");
        assert_eq!(
            json_name("http2_initial_stream_window_size"),
            "http2InitialStreamWindowSize"
        );
        assert_eq!(json_name("concurrency"), "concurrency");
    }

    #[test]
    fn fields_proxy_config_does_not_have_are_dropped_at_every_depth() {
        let config = json!({
            "a": 1,
            "concurrency": 2,
            "notAField": {"x": 1},
            "proxyMetadata": {"ANY_KEY": "kept"},
            "proxyStatsMatcher": {"inclusionRegexps": [".*"], "exclusionRegexps": [".*"]},
            "tracing": {"zipkin": {"address": "z:9411", "port": 1}, "sampling": 10, "custom_tags": {
                "t": {"literal": {"value": "v", "extra": true}, "bogus": 1}
            }},
            "readinessProbe": {"httpGet": {"path": "/", "httpHeaders": [{"name": "a", "value": "b", "c": 1}]}},
            "image": {"imageType": "distroless", "hub": "x"},
        });
        assert_eq!(
            kept(config),
            json!({
                "concurrency": 2,
                "proxyMetadata": {"ANY_KEY": "kept"},
                "proxyStatsMatcher": {"inclusionRegexps": [".*"]},
                "tracing": {"zipkin": {"address": "z:9411"}, "sampling": 10, "customTags": {
                    "t": {"literal": {"value": "v"}}
                }},
                "readinessProbe": {"httpGet": {"path": "/", "httpHeaders": [{"name": "a", "value": "b"}]}},
                "image": {"imageType": "distroless"},
            })
        );
        assert_eq!(kept(json!({"a": 1})), json!({}));
    }

    #[test]
    fn protobuf_names_are_read_and_the_json_name_wins() {
        assert_eq!(
            kept(json!({"discovery_address": "a:15012", "hold_application_until_proxy_starts": true})),
            json!({"discoveryAddress": "a:15012", "holdApplicationUntilProxyStarts": true})
        );
        assert_eq!(
            kept(json!({"discovery_address": "old:1", "discoveryAddress": "new:2"})),
            json!({"discoveryAddress": "new:2"})
        );
        assert_eq!(
            kept(json!({"concurrency": null, "sds": {"enabled": null}})),
            json!({"sds": {}})
        );
    }
}
