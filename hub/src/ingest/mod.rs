//! Ingest: MQTT messages → typed observations for the rules stage.
//!
//! The hub reads devices through an ordinary MQTT client (rumqttc) connected to the
//! broker — the embedded one over loopback by default — rather than rumqttd's in-process
//! link, so the very same code serves an external broker cluster later (see
//! ARCHITECTURE.md). Malformed input is data, not an error: it is counted, logged
//! without personal data, and reported to the device on its `errors` topic. So is a
//! valid event that the device's kind may not send (`kinds`).

pub mod contract;
pub mod kinds;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alert_rules::{Observation, Signal};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::health::Progress;
use crate::rules::{CriticalEvent, Input, Lanes, Outcome};
use crate::store::Store;
use contract::{
    Ack, AckResult, DeviceId, ErrorCode, ErrorReport, Inbound, Rejection, ViolationCode,
};
use kinds::{Policy, Verdict};

/// How to reach the broker.
#[derive(Clone)]
pub struct BrokerConnection {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Subscriptions of the hub. QoS 1 so that the broker redelivers within a session.
const FILTERS: [&str; 3] = [
    "anxin/v1/devices/+/events",
    "anxin/v1/devices/+/status",
    "anxin/v1/hub/violations/+",
];

/// Run until `cancel`: the MQTT event loop in this task, message handling in another, so
/// a slow rules stage applies backpressure to the broker instead of stalling keep-alives.
/// `ready` fires once the hub's subscriptions are in place: rumqttd drops messages that
/// match no subscriber, so devices should not be told the hub is up before that.
///
/// Nothing here waits on a queue that only this task drains: the handler never awaits
/// the MQTT client's request queue (which only `eventloop.poll()` empties) while the
/// event loop may be waiting for the handler. Error reports are sent with `try_publish`
/// and dropped (counted) when that queue is full; acknowledgements wait off the handler.
/// (Both awaiting each other's full queue deadlocked ingest for good after ~5,000 bad
/// messages in 20 ms: issue 14, finding 2.)
pub async fn run(
    conn: BrokerConnection,
    store: Store,
    clock: SharedClock,
    rules: Lanes,
    progress: Arc<Progress>,
    ready: oneshot::Sender<()>,
    cancel: CancellationToken,
) {
    let mut ready = Some(ready);
    let mut opts = MqttOptions::new(&conn.client_id, &conn.host, conn.port);
    opts.set_credentials(&conn.username, &conn.password);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(128 * 1024, 128 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    // Acks are small and latency-bound: no Nagle delay behind earlier unacked segments.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let (msg_tx, msg_rx) = mpsc::channel::<Publish>(1024);
    let handler = Handler {
        client: client.clone(),
        store,
        clock,
        rules,
        devices: HashMap::new(),
        devices_generation: 0,
        progress: progress.clone(),
    };
    let worker = tokio::spawn(handler.run(msg_rx));

    let mut backoff = Duration::from_millis(100);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                tracing::info!("ingest connected to broker");
                // One SUBSCRIBE for all filters, so its SUBACK means "fully subscribed".
                let filters =
                    FILTERS.map(|f| rumqttc::SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics::counter!("anxin_ingest_messages_total").increment(1);
                progress.accepted();
                if msg_tx.send(p).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "ingest lost the broker; reconnecting");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Stop reading; the handler drains what it has, then the rules stage sees its input close.
    drop(msg_tx);
    let _ = worker.await;
    let _ = client.try_disconnect();
}

struct Handler {
    client: AsyncClient,
    store: Store,
    clock: SharedClock,
    rules: Lanes,
    /// device id → what ingest needs to know about it, so that ~20k messages a second
    /// do not each cost a query. A miss goes to the store; the whole map is dropped when
    /// the store reports that any device changed (`devices_generation`).
    devices: HashMap<String, Known>,
    /// The store's `devices_generation` that `devices` was filled under.
    devices_generation: u64,
    /// Messages handled, for the watchdog behind `/healthz`.
    progress: Arc<Progress>,
}

/// An active device, as cached.
#[derive(Debug, Clone)]
struct Known {
    household: String,
    /// Which event kinds it may send, resolved from its kind once.
    policy: Policy,
    /// When it was read from the store.
    loaded: std::time::Instant,
}

/// A refused event re-reads its device from the store if the cached entry is older than
/// this: a kind corrected by another process (`hub admin import` on the same database,
/// which the store generation does not see) applies within this time, while a device
/// that floods refused events costs at most one query per interval.
const REREAD_REFUSED_AFTER: Duration = Duration::from_secs(30);

impl Handler {
    async fn run(mut self, mut rx: mpsc::Receiver<Publish>) {
        while let Some(p) = rx.recv().await {
            self.handle(p).await;
            self.progress.finished_own();
        }
    }

    async fn handle(&mut self, p: Publish) {
        let topic = p.topic.clone();
        match contract::classify_topic(&topic) {
            Inbound::Events(device) => match contract::parse_event(&p.payload) {
                Ok(ev) => self.event(device, ev, &topic).await,
                Err(rej) => self.reject(Some(&device), &topic, rej),
            },
            Inbound::Status(device) => {
                if p.payload.is_empty() {
                    return; // a cleared retained status
                }
                match contract::parse_status(&p.payload) {
                    Ok(signal) => {
                        // Every kind of device reports its connection state.
                        if let Some(known) = self.known(&device, &topic).await {
                            self.observe(known.household, device, signal, None).await;
                        }
                    }
                    Err(rej) => self.reject(Some(&device), &topic, rej),
                }
            }
            Inbound::Violation(device) => {
                // Written by the broker's ACL layer (`broker::AclV4`), never by a device.
                let Ok(v) = serde_json::from_slice::<contract::Violation>(&p.payload) else {
                    tracing::error!(device = %device, "unreadable violation report from the broker");
                    return;
                };
                let reason = match v.code {
                    ViolationCode::UnknownTopic => format!("devices publish only on anxin/v1/devices/{device}/events and .../status; the message was not delivered"),
                    ViolationCode::TopicMismatch => format!("device {device} may only publish under anxin/v1/devices/{device}/; the message was not delivered"),
                    ViolationCode::RateLimited => "the device publishes faster than its budget allows; this and further messages over the budget were not delivered (send critical events again until acknowledged)".into(),
                };
                let rej = Rejection {
                    code: v.code.error_code(),
                    reason,
                    event_id: v.event_id,
                };
                self.reject(Some(&device), &v.topic, rej);
            }
            Inbound::Unknown(device) => {
                let rej = Rejection {
                    code: ErrorCode::UnknownTopic,
                    reason: "topic is not part of the v1 contract (use .../events or .../status)"
                        .into(),
                    event_id: None,
                };
                self.reject(device.as_ref(), &topic, rej);
            }
        }
    }

    /// The device if it is registered and not revoked; otherwise it is told so.
    async fn known(&mut self, device: &DeviceId, topic: &str) -> Option<Known> {
        let generation = self.store.devices_generation();
        if generation != self.devices_generation {
            self.devices.clear();
            self.devices_generation = generation;
        }
        if let Some(k) = self.devices.get(device.as_str()) {
            return Some(k.clone());
        }
        match self.store.device(device.as_str()).await {
            Ok(Some(d)) if d.revoked_at.is_none() => {
                let policy = Policy::of(&d.kind);
                if policy == Policy::Unlisted {
                    // Once per device and cache generation: enough to find them.
                    tracing::warn!(device = %device, kind = %d.kind, "device kind is not in the kind table; its events are not checked (re-register it with a listed kind)");
                }
                let k = Known {
                    household: d.household_id,
                    policy,
                    loaded: std::time::Instant::now(),
                };
                self.devices.insert(device.as_str().to_owned(), k.clone());
                return Some(k);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "device lookup failed"),
        }
        let rej = Rejection {
            code: ErrorCode::UnknownDevice,
            reason: format!("device {device} is not registered or was revoked"),
            event_id: None,
        };
        self.reject(Some(device), topic, rej);
        None
    }

    async fn event(&mut self, device: DeviceId, ev: contract::DeviceEvent, topic: &str) {
        let Some(mut known) = self.known(&device, topic).await else {
            return;
        };
        if known.policy.check(ev.kind) == Verdict::Refused
            && known.loaded.elapsed() >= REREAD_REFUSED_AFTER
        {
            self.devices.remove(device.as_str());
            let Some(again) = self.known(&device, topic).await else {
                return;
            };
            known = again;
        }
        match known.policy.check(ev.kind) {
            Verdict::Allowed => {}
            Verdict::Unchecked => {
                metrics::counter!("anxin_device_events_unchecked_total", "kind" => ev.kind)
                    .increment(1);
            }
            Verdict::Refused => {
                let rej = known.policy.refusal(ev.kind, &ev.event_id);
                self.reject(Some(&device), topic, rej);
                return;
            }
        }
        metrics::counter!("anxin_device_events_total", "kind" => ev.kind).increment(1);
        let household = known.household;
        if !ev.is_critical() {
            self.observe(household, device, ev.signal, None).await;
            return;
        }
        let (reply, answer) = oneshot::channel();
        let critical = CriticalEvent {
            event_id: ev.event_id.clone(),
            device_ts: ev.ts.clone(),
            kind: ev.kind,
            reply,
        };
        if !self
            .observe(household, device.clone(), ev.signal, Some(critical))
            .await
        {
            return;
        }
        // Wait for the commit off this task, so other devices' messages keep flowing.
        let client = self.client.clone();
        tokio::spawn(async move {
            let (result, alarm_id) = match answer.await {
                Ok(Ok(Outcome::Stored { alarm_id })) => (AckResult::Stored, alarm_id),
                Ok(Ok(Outcome::Duplicate { alarm_id })) => (AckResult::Duplicate, alarm_id),
                Ok(Err(e)) => {
                    // Not committed: no ack, the device retries.
                    tracing::error!(error = %e, device = %device, "critical event not committed; device will retry");
                    return;
                }
                Err(_) => return, // hub shutting down
            };
            let ack = Ack {
                v: 1,
                event_id: &ev.event_id,
                result,
                alarm_id: alarm_id.as_deref(),
            };
            let body = serde_json::to_vec(&ack).unwrap_or_default();
            if let Err(e) = client
                .publish(
                    contract::ack_topic(device.as_str()),
                    QoS::AtLeastOnce,
                    false,
                    body,
                )
                .await
            {
                tracing::warn!(error = %e, device = %device, "ack publish failed; device will retry");
            }
        });
    }

    /// Hand an observation to the rules stage. Returns false if it was not accepted.
    async fn observe(
        &mut self,
        household: String,
        device: DeviceId,
        signal: Signal,
        critical: Option<CriticalEvent>,
    ) -> bool {
        let obs = Observation {
            household,
            device: device.as_str().to_owned(),
            at: self.clock.now(),
            signal,
        };
        self.rules.send(Input { obs, critical }).await.is_ok()
    }

    fn reject(&self, device: Option<&DeviceId>, topic: &str, rej: Rejection) {
        metrics::counter!("anxin_payload_rejected_total", "code" => rej.code.as_str()).increment(1);
        // Ids and the reason only: payloads may contain personal data and are never logged.
        tracing::warn!(device = device.map(|d| d.as_str()), code = rej.code.as_str(), reason = %rej.reason, "device message rejected");
        let Some(device) = device else { return };
        let report = ErrorReport {
            v: 1,
            event_id: rej.event_id.as_deref(),
            code: rej.code,
            reason: &rej.reason,
            topic,
        };
        let body = serde_json::to_vec(&report).unwrap_or_default();
        // Never awaited: the request queue is drained only by the event loop, which may be
        // waiting for this handler. A full queue means a burst of bad input; the reports
        // are the least important messages the hub sends, so they are dropped and counted.
        if let Err(e) = self.client.try_publish(
            contract::errors_topic(device.as_str()),
            QoS::AtLeastOnce,
            false,
            body,
        ) {
            metrics::counter!("anxin_error_reports_dropped_total").increment(1);
            tracing::debug!(error = %e, "error report dropped: the outgoing queue is full");
        }
    }
}
