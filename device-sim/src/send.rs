//! `device-sim send`: act as one device and publish one event, the way the device
//! contract asks a real device to. A critical event (SOS, fall, smoke, …) is kept until
//! the hub acknowledges it: the device keeps connecting (with backoff) through an
//! outage of any length and re-publishes with the same event id, until the ack arrives
//! or `give_up` has passed since the command started. Giving up says why: never
//! connected (and the last connection error), or connected but not acknowledged.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::{payload, Backoff, Device, DeviceConfig, FromHub, SimError};

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub host: String,
    pub port: u16,
    /// Device id (also the MQTT client id and user name).
    pub device: String,
    pub secret: String,
    /// Event kind (`sos`, `door`, …).
    pub kind: String,
    /// Kind-specific fields: a JSON object.
    pub fields: Value,
    /// How long, from the start, to keep trying.
    pub give_up: Duration,
    /// Waits between connection attempts.
    pub reconnect: Backoff,
}

/// What happened to the event.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A critical event, with the hub's ack.
    Acknowledged(Value),
    /// A non-critical event, published once (the hub does not acknowledge those).
    Published,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("fields must be a JSON object, e.g. '{{\"open\":true}}'")]
    BadFields,
    #[error(
        "gave up after {} s: never connected to the hub at {addr} (last error: {last_error}). {hint}",
        waited.as_secs()
    )]
    NeverConnected {
        addr: String,
        waited: Duration,
        last_error: String,
        hint: &'static str,
    },
    #[error(
        "gave up after {} s: connected to the hub at {addr}, but event {event_id} was not acknowledged{}. Is this the Anxin hub's MQTT port? (Another broker accepts the connection but never acknowledges.)",
        waited.as_secs(),
        match last_error { Some(e) => format!(" (the connection then failed: {e})"), None => String::new() }
    )]
    NoAck {
        addr: String,
        event_id: String,
        waited: Duration,
        /// The connection's last error, when it was down at the end.
        last_error: Option<String>,
    },
    #[error("the hub rejected event {event_id}: {code}: {reason}")]
    Rejected {
        event_id: String,
        code: String,
        reason: String,
    },
    #[error(transparent)]
    Device(SimError),
}

/// The connection as seen by the command, for progress lines and for saying why it gave up.
#[derive(Default)]
struct Seen {
    connected_once: bool,
    up: bool,
    last_error: Option<String>,
}

impl Seen {
    /// Note one message from the device task; a line for the person waiting, if any.
    fn note(&mut self, msg: &FromHub, addr: &str, give_up: Duration) -> Option<String> {
        match msg {
            FromHub::Connected => {
                self.up = true;
                let again = self.connected_once;
                self.connected_once = true;
                Some(format!(
                    "{} the hub at {addr}",
                    if again {
                        "reconnected to"
                    } else {
                        "connected to"
                    }
                ))
            }
            FromHub::Disconnected(e) => {
                let line = if self.up {
                    Some(format!("connection to the hub lost ({e}); reconnecting"))
                } else if self.last_error.as_deref() != Some(e) {
                    Some(format!(
                        "cannot reach the hub at {addr} ({e}); retrying until {} s have passed",
                        give_up.as_secs()
                    ))
                } else {
                    None
                };
                self.up = false;
                self.last_error = Some(e.clone());
                line
            }
            _ => None,
        }
    }

    fn gave_up(&self, addr: &str, event_id: &str, waited: Duration) -> SendError {
        if self.connected_once {
            return SendError::NoAck {
                addr: addr.to_owned(),
                event_id: event_id.to_owned(),
                waited,
                last_error: (!self.up).then(|| self.last_error.clone()).flatten(),
            };
        }
        let last_error = self
            .last_error
            .clone()
            .unwrap_or_else(|| "no answer".to_owned());
        let hint = if last_error.to_ascii_lowercase().contains("refused") {
            "Nothing listens there: is the hub running, and is --port the MQTT port it printed at start?"
        } else {
            "If the hub is running there, check --device and --secret: the hub closes the connection of a device it does not know without saying why."
        };
        SendError::NeverConnected {
            addr: addr.to_owned(),
            waited,
            last_error,
            hint,
        }
    }
}

/// Publish one event as `opts.device` (see the module documentation). `event` is the
/// message to publish (from [`payload::event`]); `progress` receives a line whenever
/// the connection changes, for a person watching.
pub async fn send(
    opts: &SendOptions,
    event: &Value,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Sent, SendError> {
    if !opts.fields.is_object() {
        return Err(SendError::BadFields);
    }
    let addr = format!("{}:{}", opts.host, opts.port);
    let mut config = DeviceConfig::new(&opts.host, opts.port, &opts.device, &opts.secret);
    config.reconnect = opts.reconnect;
    let started = tokio::time::Instant::now();
    let deadline = started + opts.give_up;
    let dev = Device::start(config);
    let mut rx = dev.subscribe();
    let mut seen = Seen::default();
    if dev.is_connected() {
        // (Connected before we listened; practically never.)
        if let Some(line) = seen.note(&FromHub::Connected, &addr, opts.give_up) {
            progress(&line);
        }
    }
    let event_id = event
        .get("event_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let result = if payload::is_critical(&opts.kind, &opts.fields) {
        // `send_critical` re-publishes on every reconnect; watch the connection beside it.
        let sending = dev.send_critical(event, opts.give_up);
        tokio::pin!(sending);
        loop {
            tokio::select! {
                r = &mut sending => break match r {
                    Ok(ack) => Ok(Sent::Acknowledged(ack)),
                    Err(SimError::NoAck { .. }) => {
                        // Messages still queued say what the connection did last.
                        drain(&mut rx, &mut seen, &addr, opts.give_up, progress);
                        Err(seen.gave_up(&addr, &event_id, started.elapsed()))
                    }
                    Err(SimError::Rejected { event_id, code, reason }) => {
                        Err(SendError::Rejected { event_id, code, reason })
                    }
                    Err(e) => Err(SendError::Device(e)),
                },
                msg = rx.recv() => match msg {
                    Ok(m) => {
                        if let Some(line) = seen.note(&m, &addr, opts.give_up) {
                            progress(&line);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        break Err(SendError::Device(SimError::Connection("device task ended".into())))
                    }
                },
            }
        }
    } else {
        // Not acknowledged by the hub: wait for a connection, publish once, and report
        // an error the hub sends back within a moment.
        loop {
            if dev.is_connected() {
                break publish_once(&dev, &mut rx, event).await;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => break Err(seen.gave_up(&addr, &event_id, started.elapsed())),
                Ok(Ok(m)) => {
                    if let Some(line) = seen.note(&m, &addr, opts.give_up) {
                        progress(&line);
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    break Err(SendError::Device(SimError::Connection(
                        "device task ended".into(),
                    )))
                }
            }
        }
    };
    dev.disconnect().await;
    result
}

fn drain(
    rx: &mut broadcast::Receiver<FromHub>,
    seen: &mut Seen,
    addr: &str,
    give_up: Duration,
    progress: &mut (dyn FnMut(&str) + Send),
) {
    while let Ok(m) = rx.try_recv() {
        if let Some(line) = seen.note(&m, addr, give_up) {
            progress(&line);
        }
    }
}

async fn publish_once(
    dev: &Device,
    rx: &mut broadcast::Receiver<FromHub>,
    event: &Value,
) -> Result<Sent, SendError> {
    dev.send(event).await.map_err(SendError::Device)?;
    let wait = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(m)) = tokio::time::timeout_at(wait, rx.recv()).await {
        if let FromHub::Error(e) = m {
            let field = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
            return Err(SendError::Rejected {
                event_id: field("event_id")
                    .or_else(|| {
                        event
                            .get("event_id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default(),
                code: field("code").unwrap_or_default(),
                reason: field("reason").unwrap_or_else(|| e.to_string()),
            });
        }
    }
    Ok(Sent::Published)
}
