//! Device contract v1: topic layout and event payloads (see `docs/device-protocol.md`).
//!
//! This is the only module that knows wire shapes. Parsing is strict: every field the
//! contract defines is checked for presence, type and range, and a failure names the
//! field and the reason so a vendor can fix their firmware from the error topic alone.
//! Unknown *extra* fields are ignored so that v1 can grow without breaking devices.

use alert_rules::Signal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest event payload the hub accepts, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Root of every device topic.
pub const DEVICES_PREFIX: &str = "anxin/v1/devices/";
/// Where the broker's ACL layer re-routes a publish a device made outside its own topic space.
pub const VIOLATIONS_PREFIX: &str = "anxin/v1/hub/violations/";

pub fn events_topic(device: &str) -> String {
    format!("{DEVICES_PREFIX}{device}/events")
}
pub fn status_topic(device: &str) -> String {
    format!("{DEVICES_PREFIX}{device}/status")
}
pub fn ack_topic(device: &str) -> String {
    format!("{DEVICES_PREFIX}{device}/ack")
}
pub fn errors_topic(device: &str) -> String {
    format!("{DEVICES_PREFIX}{device}/errors")
}

/// A validated device id: 1–64 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!(
                "device id must be 1-64 characters, got {}",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "device id may only contain a-z 0-9 - _, found {c:?}"
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a topic the hub receives on means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Events(DeviceId),
    Status(DeviceId),
    /// A device published outside its own space; the broker re-routed it here.
    Violation(DeviceId),
    /// Something under a device's space that the contract does not define.
    Unknown(Option<DeviceId>),
}

pub fn classify_topic(topic: &str) -> Inbound {
    if let Some(rest) = topic.strip_prefix(VIOLATIONS_PREFIX) {
        return match DeviceId::parse(rest) {
            Ok(id) => Inbound::Violation(id),
            Err(_) => Inbound::Unknown(None),
        };
    }
    let Some(rest) = topic.strip_prefix(DEVICES_PREFIX) else {
        return Inbound::Unknown(None);
    };
    let mut parts = rest.splitn(2, '/');
    let id = parts.next().and_then(|s| DeviceId::parse(s).ok());
    match (id, parts.next()) {
        (Some(id), Some("events")) => Inbound::Events(id),
        (Some(id), Some("status")) => Inbound::Status(id),
        (id, _) => Inbound::Unknown(id),
    }
}

/// Why a message was refused. `code` is the stable, documented identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidUtf8,
    InvalidJson,
    NotAnObject,
    UnsupportedVersion,
    MissingField,
    WrongType,
    UnknownKind,
    InvalidValue,
    TooLarge,
    UnknownTopic,
    TopicMismatch,
    UnknownDevice,
    /// A valid event of a kind this device's kind may not send (see `kinds::TABLE`).
    KindNotAllowed,
    /// The device published over its budget (`[mqtt.device_limits]`); the message was
    /// not delivered.
    RateLimited,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::UnknownKind => "unknown_kind",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownTopic => "unknown_topic",
            ErrorCode::TopicMismatch => "topic_mismatch",
            ErrorCode::UnknownDevice => "unknown_device",
            ErrorCode::KindNotAllowed => "kind_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// Why the broker's ACL layer (`crate::broker::AclV4`) re-routed a device's publish to
/// the violations topic instead of delivering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationCode {
    /// Under the device's own prefix, but not `events` or `status`.
    UnknownTopic,
    /// Under another device's prefix, or outside the device space.
    TopicMismatch,
    /// Over the device's publish budget.
    RateLimited,
}

impl ViolationCode {
    pub fn error_code(self) -> ErrorCode {
        match self {
            ViolationCode::UnknownTopic => ErrorCode::UnknownTopic,
            ViolationCode::TopicMismatch => ErrorCode::TopicMismatch,
            ViolationCode::RateLimited => ErrorCode::RateLimited,
        }
    }
}

/// The payload of a re-routed publish on `anxin/v1/hub/violations/<device>`: written by
/// the broker's ACL layer, read by ingest. Never seen by devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The topic the device published on.
    pub topic: String,
    pub code: ViolationCode,
    /// The refused message's event id, when its payload names a valid one: the device
    /// can tell which event to send again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// The valid `event_id` of a payload, if it has one (for error reports on messages that
/// are refused before they are parsed as events). Larger payloads are not parsed.
pub fn event_id_of(payload: &[u8]) -> Option<String> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        event_id: Option<std::borrow::Cow<'a, str>>,
    }
    let head: Head = serde_json::from_slice(payload).ok()?;
    head.event_id
        .filter(|id| is_token(id))
        .map(|id| id.into_owned())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub reason: String,
    /// Present when the payload got far enough to name its event id.
    pub event_id: Option<String>,
}

impl Rejection {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            event_id: None,
        }
    }
}

/// The payload the hub publishes on a device's `errors` topic.
#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    pub v: u8,
    pub event_id: Option<&'a str>,
    pub code: ErrorCode,
    pub reason: &'a str,
    pub topic: &'a str,
}

/// The payload the hub publishes on a device's `ack` topic.
#[derive(Debug, Serialize)]
pub struct Ack<'a> {
    pub v: u8,
    pub event_id: &'a str,
    pub result: AckResult,
    pub alarm_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    Stored,
    Duplicate,
}

/// A valid v1 event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    pub event_id: String,
    /// The device's own timestamp, RFC 3339, as sent (recorded, not trusted for rules).
    pub ts: String,
    pub kind: &'static str,
    pub signal: Signal,
}

impl DeviceEvent {
    /// Critical events are acknowledged to the device only after their alarm is committed.
    pub fn is_critical(&self) -> bool {
        match self.signal {
            Signal::Sos | Signal::Fall => true,
            Signal::Smoke { alarm } | Signal::Gas { alarm } => alarm,
            Signal::WaterLeak { leak } => leak,
            _ => false,
        }
    }
}

/// Status topic payload: `{"state":"online"}` or `{"state":"offline"}`.
pub fn parse_status(payload: &[u8]) -> Result<Signal, Rejection> {
    let obj = parse_object(payload)?;
    match get_str(&obj, "state")? {
        "online" => Ok(Signal::Online),
        "offline" => Ok(Signal::Offline),
        other => Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("field `state` must be \"online\" or \"offline\", got {other:?}"),
        )),
    }
}

/// Parse one event payload.
pub fn parse_event(payload: &[u8]) -> Result<DeviceEvent, Rejection> {
    let obj = parse_object(payload)?;
    let event_id = match get_str(&obj, "event_id") {
        Ok(id) => id.to_owned(),
        Err(e) => return Err(e),
    };
    let with_id = |mut r: Rejection| {
        r.event_id = Some(event_id.clone());
        r
    };
    if !is_token(&event_id) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            "field `event_id` must be 1-64 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    let v = get_num(&obj, "v").map_err(with_id)?;
    if v != 1.0 {
        return Err(with_id(Rejection::new(
            ErrorCode::UnsupportedVersion,
            format!("field `v` must be 1 for this topic, got {v}"),
        )));
    }
    let ts = get_str(&obj, "ts").map_err(with_id)?.to_owned();
    if !is_rfc3339(&ts) {
        return Err(with_id(Rejection::new(
            ErrorCode::InvalidValue,
            format!("field `ts` must be an RFC 3339 timestamp with offset, e.g. 2026-11-29T08:30:00+08:00, got {ts:?}"),
        )));
    }
    let kind = get_str(&obj, "kind").map_err(with_id)?;
    let (kind, signal) = parse_kind(kind, &obj).map_err(with_id)?;
    Ok(DeviceEvent {
        event_id,
        ts,
        kind,
        signal,
    })
}

/// Every event kind of contract v1, as sent in `kind` and stored as the event's kind.
pub const EVENT_KINDS: [&str; 18] = [
    "sos",
    "fall",
    "motion",
    "door",
    "bed",
    "smoke",
    "gas",
    "water_leak",
    "water_meter",
    "power_meter",
    "heart_rate",
    "temperature",
    "battery",
    "steps",
    "checkin",
    "visit",
    "away",
    "heartbeat",
];

/// Largest `steps` count one report may carry.
const MAX_STEPS: f64 = 100_000.0;
/// Longest announced absence (`away.hours`): 90 days.
const MAX_AWAY_HOURS: f64 = 2160.0;

fn parse_kind(kind: &str, obj: &Map<String, Value>) -> Result<(&'static str, Signal), Rejection> {
    let signal = match kind {
        "sos" => Signal::Sos,
        "fall" => {
            if obj.contains_key("confidence") {
                in_range(obj, "confidence", 0.0, 1.0)?;
            }
            Signal::Fall
        }
        "motion" => {
            if let Some(room) = obj.get("room") {
                match room.as_str() {
                    Some(r) if r.chars().count() <= 32 => {}
                    Some(_) => {
                        return Err(Rejection::new(
                            ErrorCode::InvalidValue,
                            "field `room` must be at most 32 characters",
                        ))
                    }
                    None => return Err(wrong_type("room", "a string", room)),
                }
            }
            Signal::Motion {
                occupancy: get_bool(obj, "occupancy")?,
            }
        }
        "door" => Signal::Door {
            open: get_bool(obj, "open")?,
        },
        "bed" => Signal::Bed {
            occupied: get_bool(obj, "occupied")?,
        },
        "smoke" => Signal::Smoke {
            alarm: get_bool(obj, "alarm")?,
        },
        "gas" => Signal::Gas {
            alarm: get_bool(obj, "alarm")?,
        },
        "water_leak" => Signal::WaterLeak {
            leak: get_bool(obj, "leak")?,
        },
        "water_meter" => {
            if exactly_one(obj, "total_m3", "interval_m3")? {
                Signal::WaterMeter {
                    total_m3: in_range(obj, "total_m3", 0.0, 1e9)?,
                }
            } else {
                Signal::WaterVolume {
                    m3: in_range(obj, "interval_m3", 0.0, 1000.0)?,
                }
            }
        }
        "power_meter" => {
            let cumulative = exactly_one(obj, "total_kwh", "interval_kwh")?;
            let power_w = if obj.contains_key("power_w") {
                Some(in_range(obj, "power_w", 0.0, 1e6)?)
            } else {
                None
            };
            if cumulative {
                Signal::PowerMeter {
                    total_kwh: in_range(obj, "total_kwh", 0.0, 1e9)?,
                    power_w,
                }
            } else {
                Signal::EnergyVolume {
                    kwh: in_range(obj, "interval_kwh", 0.0, 100_000.0)?,
                    power_w,
                }
            }
        }
        "heart_rate" => Signal::HeartRate {
            bpm: in_range(obj, "bpm", 20.0, 250.0)?,
        },
        "temperature" => Signal::Temperature {
            celsius: in_range(obj, "celsius", -40.0, 85.0)?,
        },
        "battery" => Signal::Battery {
            percent: in_range(obj, "percent", 0.0, 100.0)?,
        },
        "steps" => {
            let n = get_num(obj, "steps")?;
            if !(0.0..=MAX_STEPS).contains(&n) || n.fract() != 0.0 {
                return Err(Rejection::new(
                    ErrorCode::InvalidValue,
                    format!(
                        "field `steps` must be a whole number between 0 and {MAX_STEPS}, got {n}"
                    ),
                ));
            }
            Signal::Steps { count: n }
        }
        "checkin" => Signal::CheckIn,
        "visit" => {
            let start = match get_str(obj, "action")? {
                "start" => true,
                "end" => false,
                other => {
                    return Err(Rejection::new(
                        ErrorCode::InvalidValue,
                        format!(
                            "field `action` must be \"start\" or \"end\", got {:?}",
                            shorten(other)
                        ),
                    ))
                }
            };
            let carer = match obj.get("carer") {
                None => None,
                Some(Value::String(c)) if is_token(c) => Some(c.clone()),
                // The value is not echoed: a carer id may identify a person.
                Some(Value::String(_)) => {
                    return Err(Rejection::new(
                        ErrorCode::InvalidValue,
                        "field `carer` must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                    ))
                }
                Some(other) => return Err(wrong_type("carer", "a string", other)),
            };
            Signal::Visit { start, carer }
        }
        "away" => {
            let away = get_bool(obj, "away")?;
            let hours = if obj.contains_key("hours") {
                let h = get_num(obj, "hours")?;
                if !(h > 0.0 && h <= MAX_AWAY_HOURS) {
                    return Err(Rejection::new(
                        ErrorCode::InvalidValue,
                        format!("field `hours` must be greater than 0 and at most {MAX_AWAY_HOURS}, got {h}"),
                    ));
                }
                // A duration means nothing for "back home": checked, then dropped.
                away.then_some(h)
            } else {
                None
            };
            Signal::Away { away, hours }
        }
        "heartbeat" => Signal::Heartbeat,
        other => {
            return Err(Rejection::new(
                ErrorCode::UnknownKind,
                format!(
                    "unknown event kind {:?}; v1 kinds are {}",
                    shorten(other),
                    EVENT_KINDS.join(", ")
                ),
            ));
        }
    };
    Ok((wire_kind(&signal), signal))
}

/// The `kind` an event arrived as. Interval meter readings share the wire kind of their
/// cumulative sibling; every other signal is named like its kind.
fn wire_kind(signal: &Signal) -> &'static str {
    match signal {
        Signal::WaterVolume { .. } => "water_meter",
        Signal::EnergyVolume { .. } => "power_meter",
        other => other.name(),
    }
}

/// Two fields of which a payload carries exactly one. `Ok(true)` if it is `first`.
fn exactly_one(obj: &Map<String, Value>, first: &str, second: &str) -> Result<bool, Rejection> {
    match (obj.contains_key(first), obj.contains_key(second)) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(Rejection::new(
            ErrorCode::MissingField,
            format!("missing field `{first}` or `{second}`: send exactly one of them"),
        )),
        (true, true) => Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("fields `{first}` and `{second}` exclude each other: send exactly one of them"),
        )),
    }
}

/// 1-64 characters of `A-Z a-z 0-9 . _ : -` (event ids, carer ids).
/// RFC 3339 with an offset. The `time` crate's parser accepts any single byte where the
/// date and time meet (`2026-11-29X08:30:00Z`); RFC 3339 allows only `T` (or `t`).
fn is_rfc3339(ts: &str) -> bool {
    matches!(ts.as_bytes().get(10), Some(b'T' | b't'))
        && time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// A device-supplied string cut to 32 characters for an error reason.
fn shorten(s: &str) -> String {
    s.chars().take(32).collect()
}

fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!(
                "payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            ErrorCode::InvalidUtf8,
            format!(
                "payload is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            ErrorCode::InvalidJson,
            format!("payload is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Rejection::new(
            ErrorCode::NotAnObject,
            format!("payload must be a JSON object, got {}", type_name(&other)),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn missing(field: &str) -> Rejection {
    Rejection::new(ErrorCode::MissingField, format!("missing field `{field}`"))
}

fn wrong_type(field: &str, want: &str, got: &Value) -> Rejection {
    Rejection::new(
        ErrorCode::WrongType,
        format!("field `{field}` must be {want}, got {}", type_name(got)),
    )
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Rejection> {
    let v = obj.get(field).ok_or_else(|| missing(field))?;
    v.as_str().ok_or_else(|| wrong_type(field, "a string", v))
}

fn get_bool(obj: &Map<String, Value>, field: &str) -> Result<bool, Rejection> {
    let v = obj.get(field).ok_or_else(|| missing(field))?;
    v.as_bool()
        .ok_or_else(|| wrong_type(field, "true or false", v))
}

fn get_num(obj: &Map<String, Value>, field: &str) -> Result<f64, Rejection> {
    let v = obj.get(field).ok_or_else(|| missing(field))?;
    v.as_f64().ok_or_else(|| wrong_type(field, "a number", v))
}

fn in_range(obj: &Map<String, Value>, field: &str, lo: f64, hi: f64) -> Result<f64, Rejection> {
    let n = get_num(obj, field)?;
    if !(lo..=hi).contains(&n) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("field `{field}` must be between {lo} and {hi}, got {n}"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, expect: Result<Signal, ErrorCode>) {
        let got = parse_event(payload.as_bytes());
        match (&got, &expect) {
            (Ok(ev), Ok(sig)) => assert_eq!(&ev.signal, sig, "{payload}"),
            (Err(rej), Err(code)) => {
                assert_eq!(rej.code, *code, "{payload}: {}", rej.reason);
                assert!(!rej.reason.is_empty());
            }
            _ => panic!("{payload}: expected {expect:?}, got {got:?}"),
        }
    }

    const HEAD: &str = r#""v":1,"event_id":"e-1","ts":"2026-11-29T08:30:00+08:00""#;

    #[test]
    fn every_kind_parses_and_every_defect_is_named() {
        let ok = |body: &str, sig: Signal| check(&format!("{{{HEAD},{body}}}"), Ok(sig));
        ok(r#""kind":"sos""#, Signal::Sos);
        ok(r#""kind":"fall","confidence":0.9"#, Signal::Fall);
        ok(
            r#""kind":"motion","occupancy":true,"room":"kitchen""#,
            Signal::Motion { occupancy: true },
        );
        ok(
            r#""kind":"door","open":false"#,
            Signal::Door { open: false },
        );
        ok(
            r#""kind":"bed","occupied":true"#,
            Signal::Bed { occupied: true },
        );
        ok(
            r#""kind":"smoke","alarm":true"#,
            Signal::Smoke { alarm: true },
        );
        ok(
            r#""kind":"gas","alarm":false"#,
            Signal::Gas { alarm: false },
        );
        ok(
            r#""kind":"water_leak","leak":true"#,
            Signal::WaterLeak { leak: true },
        );
        ok(
            r#""kind":"water_meter","total_m3":12.5"#,
            Signal::WaterMeter { total_m3: 12.5 },
        );
        ok(
            r#""kind":"power_meter","total_kwh":3,"power_w":40"#,
            Signal::PowerMeter {
                total_kwh: 3.0,
                power_w: Some(40.0),
            },
        );
        ok(
            r#""kind":"heart_rate","bpm":72"#,
            Signal::HeartRate { bpm: 72.0 },
        );
        ok(
            r#""kind":"temperature","celsius":21.5"#,
            Signal::Temperature { celsius: 21.5 },
        );
        ok(
            r#""kind":"battery","percent":80"#,
            Signal::Battery { percent: 80.0 },
        );
        ok(r#""kind":"heartbeat","extra":"ignored""#, Signal::Heartbeat);

        check(
            r#"{"v":1,"event_id":"z","ts":"2026-11-29T00:30:00Z","kind":"sos"}"#,
            Ok(Signal::Sos),
        );

        let bad = |payload: &str, code: ErrorCode| check(payload, Err(code));
        bad("{not json", ErrorCode::InvalidJson);
        bad("[1,2]", ErrorCode::NotAnObject);
        bad(&format!("{{{HEAD}}}"), ErrorCode::MissingField);
        bad(
            &format!("{{{HEAD},\"kind\":\"teleport\"}}"),
            ErrorCode::UnknownKind,
        );
        bad(
            &format!("{{{HEAD},\"kind\":\"door\"}}"),
            ErrorCode::MissingField,
        );
        bad(
            &format!("{{{HEAD},\"kind\":\"door\",\"open\":\"yes\"}}"),
            ErrorCode::WrongType,
        );
        bad(
            &format!("{{{HEAD},\"kind\":\"battery\",\"percent\":140}}"),
            ErrorCode::InvalidValue,
        );
        bad(
            r#"{"v":2,"event_id":"e","ts":"2026-11-29T08:30:00Z","kind":"sos"}"#,
            ErrorCode::UnsupportedVersion,
        );
        bad(
            r#"{"v":1,"event_id":"e","ts":"yesterday","kind":"sos"}"#,
            ErrorCode::InvalidValue,
        );
        // Only `T` (or `t`) joins date and time (the time crate took any byte).
        for joint in ["X", " ", "_", "0"] {
            bad(
                &format!(
                    r#"{{"v":1,"event_id":"e","ts":"2026-11-29{joint}08:30:00Z","kind":"sos"}}"#
                ),
                ErrorCode::InvalidValue,
            );
        }
        assert!(parse_event(
            r#"{"v":1,"event_id":"e","ts":"2026-11-29t08:30:00z","kind":"sos"}"#.as_bytes()
        )
        .is_ok());
        bad(
            r#"{"v":1,"event_id":"bad id!","ts":"2026-11-29T08:30:00Z","kind":"sos"}"#,
            ErrorCode::InvalidValue,
        );
        bad(
            r#"{"v":1,"event_id":7,"ts":"2026-11-29T08:30:00Z","kind":"sos"}"#,
            ErrorCode::WrongType,
        );
        let big = format!(
            "{{{HEAD},\"kind\":\"sos\",\"pad\":\"{}\"}}",
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        bad(&big, ErrorCode::TooLarge);
        assert_eq!(
            parse_event(&[0x7b, 0xff, 0xfe]).map_err(|r| r.code),
            Err(ErrorCode::InvalidUtf8)
        );
    }

    fn event(body: &str) -> String {
        format!("{{{HEAD},{body}}}")
    }

    #[test]
    fn new_kinds_parse_to_their_signal_and_keep_the_wire_kind() {
        let carer = |c: &str| Some(c.to_owned());
        let max_carer = format!(
            r#""kind":"visit","action":"end","carer":"{}""#,
            "c".repeat(64)
        );
        let cases: Vec<(&str, Signal, &str)> = vec![
            (r#""kind":"checkin""#, Signal::CheckIn, "checkin"),
            (
                r#""kind":"steps","steps":0"#,
                Signal::Steps { count: 0.0 },
                "steps",
            ),
            (
                r#""kind":"steps","steps":1234"#,
                Signal::Steps { count: 1234.0 },
                "steps",
            ),
            (
                r#""kind":"steps","steps":100000"#,
                Signal::Steps { count: 100000.0 },
                "steps",
            ),
            (
                r#""kind":"steps","steps":250.0"#,
                Signal::Steps { count: 250.0 },
                "steps",
            ),
            (
                r#""kind":"visit","action":"start","carer":"tag-123""#,
                Signal::Visit {
                    start: true,
                    carer: carer("tag-123"),
                },
                "visit",
            ),
            (
                r#""kind":"visit","action":"end","carer":"Staff.07:nfc_A-1""#,
                Signal::Visit {
                    start: false,
                    carer: carer("Staff.07:nfc_A-1"),
                },
                "visit",
            ),
            (
                r#""kind":"visit","action":"start""#,
                Signal::Visit {
                    start: true,
                    carer: None,
                },
                "visit",
            ),
            (
                &max_carer,
                Signal::Visit {
                    start: false,
                    carer: carer(&"c".repeat(64)),
                },
                "visit",
            ),
            (
                r#""kind":"away","away":true,"hours":72"#,
                Signal::Away {
                    away: true,
                    hours: Some(72.0),
                },
                "away",
            ),
            (
                r#""kind":"away","away":true,"hours":2160"#,
                Signal::Away {
                    away: true,
                    hours: Some(2160.0),
                },
                "away",
            ),
            (
                r#""kind":"away","away":true,"hours":0.5"#,
                Signal::Away {
                    away: true,
                    hours: Some(0.5),
                },
                "away",
            ),
            (
                r#""kind":"away","away":true"#,
                Signal::Away {
                    away: true,
                    hours: None,
                },
                "away",
            ),
            (
                r#""kind":"away","away":false"#,
                Signal::Away {
                    away: false,
                    hours: None,
                },
                "away",
            ),
            // "Back home" with a duration: checked, and the duration dropped.
            (
                r#""kind":"away","away":false,"hours":72"#,
                Signal::Away {
                    away: false,
                    hours: None,
                },
                "away",
            ),
            (
                r#""kind":"water_meter","total_m3":12.5"#,
                Signal::WaterMeter { total_m3: 12.5 },
                "water_meter",
            ),
            (
                r#""kind":"water_meter","interval_m3":0.012"#,
                Signal::WaterVolume { m3: 0.012 },
                "water_meter",
            ),
            (
                r#""kind":"water_meter","interval_m3":0"#,
                Signal::WaterVolume { m3: 0.0 },
                "water_meter",
            ),
            (
                r#""kind":"water_meter","interval_m3":1000"#,
                Signal::WaterVolume { m3: 1000.0 },
                "water_meter",
            ),
            (
                r#""kind":"power_meter","total_kwh":3"#,
                Signal::PowerMeter {
                    total_kwh: 3.0,
                    power_w: None,
                },
                "power_meter",
            ),
            (
                r#""kind":"power_meter","interval_kwh":0.25,"power_w":40"#,
                Signal::EnergyVolume {
                    kwh: 0.25,
                    power_w: Some(40.0),
                },
                "power_meter",
            ),
            (
                r#""kind":"power_meter","interval_kwh":0"#,
                Signal::EnergyVolume {
                    kwh: 0.0,
                    power_w: None,
                },
                "power_meter",
            ),
            (
                r#""kind":"power_meter","interval_kwh":100000"#,
                Signal::EnergyVolume {
                    kwh: 100000.0,
                    power_w: None,
                },
                "power_meter",
            ),
        ];
        for (body, signal, kind) in cases {
            let payload = event(body);
            let ev = parse_event(payload.as_bytes())
                .unwrap_or_else(|r| panic!("{payload}: {:?} {}", r.code, r.reason));
            assert_eq!(ev.signal, signal, "{payload}");
            assert_eq!(ev.kind, kind, "{payload}");
            assert!(!ev.is_critical(), "{payload}");
        }
    }

    #[test]
    fn new_kinds_reject_each_defect_and_name_the_field() {
        use ErrorCode::{InvalidValue, MissingField, WrongType};
        // (body, code, fields the reason must name)
        let long_carer = format!(
            r#""kind":"visit","action":"start","carer":"{}""#,
            "c".repeat(65)
        );
        let cases: Vec<(&str, ErrorCode, &[&str])> = vec![
            (r#""kind":"steps""#, MissingField, &["steps"]),
            (r#""kind":"steps","steps":"12""#, WrongType, &["steps"]),
            (r#""kind":"steps","steps":null"#, WrongType, &["steps"]),
            (r#""kind":"steps","steps":-1"#, InvalidValue, &["steps"]),
            (r#""kind":"steps","steps":100001"#, InvalidValue, &["steps"]),
            (r#""kind":"steps","steps":12.5"#, InvalidValue, &["steps"]),
            (r#""kind":"visit""#, MissingField, &["action"]),
            (
                r#""kind":"visit","carer":"tag-1""#,
                MissingField,
                &["action"],
            ),
            (r#""kind":"visit","action":true"#, WrongType, &["action"]),
            (
                r#""kind":"visit","action":"begin""#,
                InvalidValue,
                &["action"],
            ),
            (
                r#""kind":"visit","action":"START""#,
                InvalidValue,
                &["action"],
            ),
            (
                r#""kind":"visit","action":"start","carer":123"#,
                WrongType,
                &["carer"],
            ),
            (
                r#""kind":"visit","action":"start","carer":null"#,
                WrongType,
                &["carer"],
            ),
            (
                r#""kind":"visit","action":"start","carer":"""#,
                InvalidValue,
                &["carer"],
            ),
            (
                r#""kind":"visit","action":"end","carer":"Li Wei""#,
                InvalidValue,
                &["carer"],
            ),
            (
                r#""kind":"visit","action":"end","carer":"tag/1""#,
                InvalidValue,
                &["carer"],
            ),
            (&long_carer, InvalidValue, &["carer"]),
            (r#""kind":"away""#, MissingField, &["away"]),
            (r#""kind":"away","hours":72"#, MissingField, &["away"]),
            (r#""kind":"away","away":"true""#, WrongType, &["away"]),
            (r#""kind":"away","away":1"#, WrongType, &["away"]),
            (
                r#""kind":"away","away":true,"hours":"72""#,
                WrongType,
                &["hours"],
            ),
            (
                r#""kind":"away","away":true,"hours":0"#,
                InvalidValue,
                &["hours"],
            ),
            (
                r#""kind":"away","away":true,"hours":-3"#,
                InvalidValue,
                &["hours"],
            ),
            (
                r#""kind":"away","away":true,"hours":2160.5"#,
                InvalidValue,
                &["hours"],
            ),
            (
                r#""kind":"away","away":false,"hours":0"#,
                InvalidValue,
                &["hours"],
            ),
            (
                r#""kind":"water_meter""#,
                MissingField,
                &["total_m3", "interval_m3"],
            ),
            (
                r#""kind":"water_meter","total_m3":1,"interval_m3":0.1"#,
                InvalidValue,
                &["total_m3", "interval_m3"],
            ),
            (
                r#""kind":"water_meter","interval_m3":"0.1""#,
                WrongType,
                &["interval_m3"],
            ),
            (
                r#""kind":"water_meter","interval_m3":-0.1"#,
                InvalidValue,
                &["interval_m3"],
            ),
            (
                r#""kind":"water_meter","interval_m3":1000.5"#,
                InvalidValue,
                &["interval_m3"],
            ),
            (
                r#""kind":"water_meter","total_m3":-1"#,
                InvalidValue,
                &["total_m3"],
            ),
            (
                r#""kind":"power_meter""#,
                MissingField,
                &["total_kwh", "interval_kwh"],
            ),
            (
                r#""kind":"power_meter","power_w":40"#,
                MissingField,
                &["total_kwh", "interval_kwh"],
            ),
            (
                r#""kind":"power_meter","total_kwh":1,"interval_kwh":0.1"#,
                InvalidValue,
                &["total_kwh", "interval_kwh"],
            ),
            (
                r#""kind":"power_meter","interval_kwh":false"#,
                WrongType,
                &["interval_kwh"],
            ),
            (
                r#""kind":"power_meter","interval_kwh":-1"#,
                InvalidValue,
                &["interval_kwh"],
            ),
            (
                r#""kind":"power_meter","interval_kwh":100001"#,
                InvalidValue,
                &["interval_kwh"],
            ),
            (
                r#""kind":"power_meter","interval_kwh":1,"power_w":-5"#,
                InvalidValue,
                &["power_w"],
            ),
            (
                r#""kind":"power_meter","interval_kwh":1,"power_w":"5""#,
                WrongType,
                &["power_w"],
            ),
        ];
        for (body, code, fields) in cases {
            let payload = event(body);
            let rej = parse_event(payload.as_bytes()).expect_err(&payload);
            assert_eq!(rej.code, code, "{payload}: {}", rej.reason);
            assert_eq!(rej.event_id.as_deref(), Some("e-1"), "{payload}");
            for field in fields {
                assert!(
                    rej.reason.contains(&format!("`{field}`")),
                    "{payload}: the reason must name `{field}`: {}",
                    rej.reason
                );
            }
        }
    }

    #[test]
    fn a_rejected_carer_id_is_not_echoed() {
        let rej =
            parse_event(event(r#""kind":"visit","action":"start","carer":"Li Wei""#).as_bytes())
                .expect_err("bad carer");
        assert!(!rej.reason.contains("Li Wei"), "{}", rej.reason);
    }

    #[test]
    fn every_listed_kind_is_known_and_the_unknown_kind_reason_lists_them() {
        for kind in EVENT_KINDS {
            let payload = event(&format!(r#""kind":"{kind}""#));
            if let Err(rej) = parse_event(payload.as_bytes()) {
                assert_ne!(rej.code, ErrorCode::UnknownKind, "{kind}: {}", rej.reason);
            }
        }
        let rej = parse_event(event(r#""kind":"teleport""#).as_bytes()).expect_err("unknown");
        assert_eq!(rej.code, ErrorCode::UnknownKind);
        for kind in EVENT_KINDS {
            assert!(rej.reason.contains(kind), "{kind} missing: {}", rej.reason);
        }
    }

    #[test]
    fn rejections_after_the_id_carry_the_event_id() {
        let rej = parse_event(format!("{{{HEAD},\"kind\":\"door\"}}").as_bytes())
            .expect_err("missing open");
        assert_eq!(rej.event_id.as_deref(), Some("e-1"));
        assert!(rej.reason.contains("`open`"), "{}", rej.reason);
    }

    #[test]
    fn topics_are_classified() {
        assert_eq!(
            classify_topic("anxin/v1/devices/p-1/events"),
            Inbound::Events(DeviceId("p-1".into()))
        );
        assert_eq!(
            classify_topic("anxin/v1/devices/p-1/status"),
            Inbound::Status(DeviceId("p-1".into()))
        );
        assert_eq!(
            classify_topic("anxin/v1/devices/p-1/other"),
            Inbound::Unknown(Some(DeviceId("p-1".into())))
        );
        assert_eq!(
            classify_topic("anxin/v1/hub/violations/p-1"),
            Inbound::Violation(DeviceId("p-1".into()))
        );
        assert_eq!(classify_topic("elsewhere"), Inbound::Unknown(None));
        assert!(DeviceId::parse("Bad").is_err());
    }

    #[test]
    fn critical_means_a_person_may_be_in_danger() {
        let ev = |signal| DeviceEvent {
            event_id: "e".into(),
            ts: String::new(),
            kind: "x",
            signal,
        };
        assert!(ev(Signal::Sos).is_critical());
        assert!(ev(Signal::Smoke { alarm: true }).is_critical());
        assert!(!ev(Signal::Smoke { alarm: false }).is_critical());
        assert!(!ev(Signal::Heartbeat).is_critical());
    }
}
