//! Device contract v1 encoding (see docs/device-protocol.md).

use serde_json::{json, Map, Value};

pub fn events_topic(device: &str) -> String {
    format!("anxin/v1/devices/{device}/events")
}
pub fn status_topic(device: &str) -> String {
    format!("anxin/v1/devices/{device}/status")
}
pub fn ack_topic(device: &str) -> String {
    format!("anxin/v1/devices/{device}/ack")
}
pub fn errors_topic(device: &str) -> String {
    format!("anxin/v1/devices/{device}/errors")
}

pub fn status(state: &str) -> Vec<u8> {
    json!({ "state": state }).to_string().into_bytes()
}

/// A fresh unique event id (32 hex characters).
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Now, RFC 3339 with offset.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A v1 event of `kind` with the given kind-specific fields, stamped now.
pub fn event(kind: &str, fields: Value) -> Value {
    event_with_ts(kind, fields, now_rfc3339())
}

/// A v1 event stamped with a simulated time (unix ms), in the district's +08:00.
pub fn event_at(kind: &str, fields: Value, at_ms: i64) -> Value {
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(at_ms as i128 * 1_000_000)
        .ok()
        .map(|t| t.to_offset(time::macros::offset!(+8)))
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(now_rfc3339);
    event_with_ts(kind, fields, ts)
}

fn event_with_ts(kind: &str, fields: Value, ts: String) -> Value {
    let mut obj = Map::new();
    obj.insert("v".into(), json!(1));
    obj.insert("event_id".into(), json!(new_event_id()));
    obj.insert("ts".into(), json!(ts));
    obj.insert("kind".into(), json!(kind));
    if let Value::Object(extra) = fields {
        obj.extend(extra);
    }
    Value::Object(obj)
}

/// Kinds the hub acknowledges after commit (when their flag is set).
pub fn is_critical(kind: &str, fields: &Value) -> bool {
    match kind {
        "sos" | "fall" => true,
        "smoke" | "gas" => fields
            .get("alarm")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        "water_leak" => fields.get("leak").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    }
}
