//! device-sim: simulated Anxin devices speaking device contract v1.
//!
//! Minimal for now (issue 2): connect as a registered device, publish any event kind,
//! and handle acknowledgements the way the contract asks real devices to — a critical
//! event is re-published with the same event id until the hub acknowledges it, across
//! reconnects. The district model and benchmarks grow here later (issue 3).
//!
//! [`payload`] is the one module that knows the wire encoding, so other vendor formats
//! can be added beside it.

pub mod bench;
pub mod cli;
pub mod drive;
pub mod evaluate;
pub mod payload;
pub mod send;
pub mod sim;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("mqtt: {0}")]
    Mqtt(#[from] rumqttc::ClientError),
    #[error("no acknowledgement for event {event_id} within {waited:?}")]
    NoAck { event_id: String, waited: Duration },
    #[error("the hub rejected event {event_id}: {code}: {reason}")]
    Rejected {
        event_id: String,
        code: String,
        reason: String,
    },
    #[error("connection refused or lost: {0}")]
    Connection(String),
}

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub host: String,
    pub port: u16,
    pub device_id: String,
    pub secret: String,
    /// How long to wait for an ack before re-publishing a critical event.
    pub retry_every: Duration,
    /// Waits between failed connection attempts.
    pub reconnect: Backoff,
}

/// Waits between reconnection attempts: `first`, doubling up to `max`, each varied by
/// ±25 % when `jitter` is set (device contract, section 10.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub jitter: bool,
}

impl Backoff {
    /// Tests and benchmarks: 100 ms doubling to 2 s, no jitter.
    pub const FAST: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(2),
        jitter: false,
    };
    /// A person waiting at the command line (`device-sim send`, `device-sim watch`):
    /// 1 s doubling to 5 s with jitter, so the end of an outage is noticed within about
    /// 5 s without hammering a hub that is down.
    pub const PATIENT: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(5),
        jitter: true,
    };

    /// The wait after a failure when the previous wait was `prev` (`None`: the first
    /// failure), before jitter.
    pub fn next(&self, prev: Option<Duration>) -> Duration {
        match prev {
            None => self.first,
            Some(d) => (d * 2).min(self.max),
        }
    }

    /// `d` with this backoff's jitter applied.
    pub fn jittered(&self, d: Duration) -> Duration {
        if self.jitter {
            use rand::Rng;
            d.mul_f64(rand::thread_rng().gen_range(0.75..1.25))
        } else {
            d
        }
    }
}

impl DeviceConfig {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        device_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            device_id: device_id.into(),
            secret: secret.into(),
            retry_every: Duration::from_secs(2),
            reconnect: Backoff::FAST,
        }
    }
}

/// Something the hub sent the device.
#[derive(Debug, Clone)]
pub enum FromHub {
    Ack(Value),
    Error(Value),
    /// The broker accepted the connection (sent after every (re)connect).
    Connected,
    /// The connection failed or dropped (text of the error).
    Disconnected(String),
}

/// A connected simulated device. Reconnects by itself with backoff.
pub struct Device {
    pub config: DeviceConfig,
    client: AsyncClient,
    from_hub: broadcast::Sender<FromHub>,
    /// True between SUBACK and the next connection error: critical retries are only
    /// published while connected, so a long outage does not pile up copies that all
    /// reach the hub at once on reconnect.
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    /// Start the connection (returns at once; use [`Device::wait_connected`]).
    pub fn start(config: DeviceConfig) -> Device {
        let id = config.device_id.clone();
        let mut opts = MqttOptions::new(&id, &config.host, config.port);
        opts.set_credentials(&id, &config.secret);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(
            payload::status_topic(&id),
            payload::status("offline"),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (from_hub, _) = broadcast::channel(256);
        let tx = from_hub.clone();
        let c2 = client.clone();
        let connected = Arc::new(AtomicBool::new(false));
        let up = connected.clone();
        let reconnect = config.reconnect;
        let task = tokio::spawn(async move {
            let mut backoff = None;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = None;
                        // Clean session: subscribe again after every connect.
                        // One SUBSCRIBE, so one SUBACK marks "connected".
                        let _ = c2.try_subscribe_many([
                            rumqttc::SubscribeFilter::new(
                                payload::ack_topic(&id),
                                QoS::AtLeastOnce,
                            ),
                            rumqttc::SubscribeFilter::new(
                                payload::errors_topic(&id),
                                QoS::AtLeastOnce,
                            ),
                        ]);
                        let _ = c2.try_publish(
                            payload::status_topic(&id),
                            QoS::AtLeastOnce,
                            true,
                            payload::status("online"),
                        );
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        up.store(true, Ordering::SeqCst);
                        let _ = tx.send(FromHub::Connected);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                            continue;
                        };
                        let msg = if p.topic.ends_with("/ack") {
                            FromHub::Ack(v)
                        } else {
                            FromHub::Error(v)
                        };
                        let _ = tx.send(msg);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        up.store(false, Ordering::SeqCst);
                        let _ = tx.send(FromHub::Disconnected(e.to_string()));
                        let wait = reconnect.next(backoff);
                        backoff = Some(wait);
                        tokio::time::sleep(reconnect.jittered(wait)).await;
                    }
                }
            }
        });
        Device {
            config,
            client,
            from_hub,
            connected,
            task,
        }
    }

    /// Start and wait until connected and subscribed.
    pub async fn connect(config: DeviceConfig, within: Duration) -> Result<Device, SimError> {
        let dev = Device::start(config);
        let mut rx = dev.subscribe();
        let waited = tokio::time::timeout(within, async {
            let mut last_err = String::from("timed out");
            loop {
                match rx.recv().await {
                    Ok(FromHub::Connected) => return Ok(()),
                    Ok(FromHub::Disconnected(e)) => last_err = e,
                    Ok(_) => {}
                    Err(_) => return Err(last_err),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(dev),
            Ok(Err(e)) => Err(SimError::Connection(e)),
            Err(_) => Err(SimError::Connection(format!(
                "not connected within {within:?}"
            ))),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FromHub> {
        self.from_hub.subscribe()
    }

    pub fn id(&self) -> &str {
        &self.config.device_id
    }

    /// Connected and subscribed now (between SUBACK and the next connection error).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Publish an event once (QoS 1). For non-critical events.
    pub async fn send(&self, event: &Value) -> Result<(), SimError> {
        self.publish_raw(
            &payload::events_topic(self.id()),
            event.to_string().into_bytes(),
        )
        .await
    }

    /// Publish arbitrary bytes on any topic (for testing how the hub treats bad input).
    pub async fn publish_raw(&self, topic: &str, body: Vec<u8>) -> Result<(), SimError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await?;
        Ok(())
    }

    /// Publish a critical event and re-publish it with the same event id until the hub
    /// acknowledges it (the contract's reliability rule). Returns the ack.
    pub async fn send_critical(
        &self,
        event: &Value,
        give_up_after: Duration,
    ) -> Result<Value, SimError> {
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + give_up_after;
        loop {
            // Only while connected; a reconnect triggers the next copy at once. A failed
            // publish (client channel closed) is retried like a lost one.
            if self.connected.load(Ordering::SeqCst) {
                let _ = self.send(event).await;
            }
            let round_end = (tokio::time::Instant::now() + self.config.retry_every).min(deadline);
            loop {
                let msg = match tokio::time::timeout_at(round_end, rx.recv()).await {
                    Err(_) => break, // retry
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(SimError::Connection("device task ended".into()))
                    }
                    Ok(Ok(m)) => m,
                };
                match msg {
                    FromHub::Ack(v)
                        if v.get("event_id").and_then(Value::as_str) == Some(&event_id) =>
                    {
                        return Ok(v)
                    }
                    FromHub::Error(v)
                        if v.get("event_id").and_then(Value::as_str) == Some(&event_id) =>
                    {
                        return Err(SimError::Rejected {
                            event_id,
                            code: v
                                .get("code")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            reason: v
                                .get("reason")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        })
                    }
                    // Reconnected: publish again at once instead of waiting out the round.
                    FromHub::Connected => break,
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::NoAck {
                    event_id,
                    waited: give_up_after,
                });
            }
        }
    }

    /// Disconnect cleanly (no Last Will).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}
