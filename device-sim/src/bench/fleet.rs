//! A fleet of lean MQTT devices for load generation: one `rumqttc` event loop per
//! device on one shared runtime, small queues, counters instead of per-message state.
//!
//! Unlike [`crate::Device`] (one simulated device that behaves exactly as the contract
//! asks), a fleet member only counts what happens to it; the benchmark decides what to
//! publish and when.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::payload;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub host: String,
    pub port: u16,
    /// Password of every member (username and client id are the device id).
    pub secret: String,
    pub keep_alive: Duration,
    /// CONNECTs in flight at once while the fleet comes up.
    pub concurrency: usize,
}

/// What happened to the whole fleet so far.
#[derive(Debug, Default)]
pub struct Counters {
    /// Members connected (and subscribed) right now.
    pub connected: AtomicUsize,
    pub connacks: AtomicU64,
    /// Failed connection attempts and dropped connections.
    pub conn_errors: AtomicU64,
    /// Publishes handed to a member's client.
    pub published: AtomicU64,
    /// Publishes the client could not queue (its queue was full or it was down).
    pub not_queued: AtomicU64,
    /// QoS 1 PUBACKs received from the broker.
    pub pubacks: AtomicU64,
    /// Application acknowledgements (messages on a member's ack topic).
    pub app_acks: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Critical events sent and the application acknowledgements they got.
#[derive(Debug, Default)]
pub struct AckBook {
    inner: Mutex<AckInner>,
}

#[derive(Debug, Default)]
struct AckInner {
    sent: HashMap<String, Instant>,
    acked: HashSet<String>,
    latencies_ms: Vec<f64>,
}

impl AckBook {
    /// Record the first send of `event_id` (retries keep the first time).
    pub fn sent(&self, event_id: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.sent
                .entry(event_id.to_owned())
                .or_insert_with(Instant::now);
        }
    }

    fn on_ack(&self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let Some(id) = v.get("event_id").and_then(|v| v.as_str()) else {
            return;
        };
        if let Ok(mut g) = self.inner.lock() {
            if let Some(t) = g.sent.get(id).copied() {
                if g.acked.insert(id.to_owned()) {
                    g.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }

    pub fn is_acked(&self, event_id: &str) -> bool {
        self.inner
            .lock()
            .map(|g| g.acked.contains(event_id))
            .unwrap_or(false)
    }

    /// Latencies recorded since the last call.
    pub fn take_latencies(&self) -> Vec<f64> {
        self.inner
            .lock()
            .map(|mut g| std::mem::take(&mut g.latencies_ms))
            .unwrap_or_default()
    }
}

/// One device of the fleet.
pub struct Member {
    pub id: String,
    pub kind: &'static str,
    pub events_topic: String,
    client: AsyncClient,
    up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Member {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

pub struct Fleet {
    pub members: Vec<Member>,
    pub counters: Arc<Counters>,
    pub acks: Arc<AckBook>,
}

impl Fleet {
    /// Start every member, at most `concurrency` CONNECTs in flight at once. Returns
    /// when all have been started; see [`Fleet::wait_connected`].
    pub async fn start(devices: &[(String, &'static str)], opts: &FleetOptions) -> Fleet {
        let counters = Arc::new(Counters::default());
        let acks = Arc::new(AckBook::default());
        let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let mut members = Vec::with_capacity(devices.len());
        for (id, kind) in devices {
            let permit = gate.clone().acquire_owned().await.ok();
            members.push(spawn_member(id, kind, opts, &counters, &acks, permit));
        }
        Fleet {
            members,
            counters,
            acks,
        }
    }

    /// Wait until `n` members are connected; the time it took, or None on timeout.
    pub async fn wait_connected(&self, n: usize, within: Duration) -> Option<Duration> {
        let began = Instant::now();
        while began.elapsed() < within {
            if self.counters.connected.load(Ordering::SeqCst) >= n {
                return Some(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    pub fn connected(&self) -> usize {
        self.counters.connected.load(Ordering::SeqCst)
    }

    /// Queue one QoS 1 publish on member `i` without waiting. False if not queued.
    pub fn try_publish(&self, i: usize, topic: &str, body: Vec<u8>) -> bool {
        let Some(m) = self.members.get(i) else {
            return false;
        };
        let ok = m.is_up()
            && m.client
                .try_publish(topic, QoS::AtLeastOnce, false, body)
                .is_ok();
        let c = if ok {
            &self.counters.published
        } else {
            &self.counters.not_queued
        };
        c.fetch_add(1, Ordering::Relaxed);
        ok
    }

    /// Publish on member `i`, waiting while its queue is full (closed loop).
    pub async fn publish(&self, i: usize, topic: &str, body: Vec<u8>) -> bool {
        let Some(m) = self.members.get(i) else {
            return false;
        };
        let ok = m
            .client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .is_ok();
        if ok {
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Drop members' connections without DISCONNECT (as a power cut would): the broker
    /// sees the sockets close and publishes their Last Wills.
    pub fn cut(&self, which: impl IntoIterator<Item = usize>) {
        for i in which {
            if let Some(m) = self.members.get(i) {
                m.task.abort();
                if m.up.swap(false, Ordering::SeqCst) {
                    self.counters.connected.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &self.members {
            m.task.abort();
        }
    }
}

fn spawn_member(
    id: &str,
    kind: &'static str,
    opts: &FleetOptions,
    counters: &Arc<Counters>,
    acks: &Arc<AckBook>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Member {
    let mut mo = MqttOptions::new(id, &opts.host, opts.port);
    mo.set_credentials(id, &opts.secret);
    mo.set_keep_alive(opts.keep_alive);
    mo.set_clean_session(true);
    mo.set_inflight(10);
    mo.set_max_packet_size(16 * 1024, 16 * 1024);
    mo.set_last_will(LastWill::new(
        payload::status_topic(id),
        payload::status("offline"),
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(mo, 10);
    // A device gives a CONNECT 10 s before it retries (rumqttc's default is 5 s): a retry
    // while the broker still works on the first CONNECT makes the two sessions take each
    // other over.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(10);
    eventloop.set_network_options(net);
    let up = Arc::new(AtomicBool::new(false));
    let (c, counters, acks, up2, id2) = (
        client.clone(),
        counters.clone(),
        acks.clone(),
        up.clone(),
        id.to_owned(),
    );
    let task = tokio::spawn(async move {
        let mut permit = permit;
        let mut backoff = Duration::from_millis(100);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    counters.connacks.fetch_add(1, Ordering::Relaxed);
                    // As the contract asks: listen for acks and errors on every connect.
                    let _ = c.try_subscribe_many([
                        SubscribeFilter::new(payload::ack_topic(&id2), QoS::AtLeastOnce),
                        SubscribeFilter::new(payload::errors_topic(&id2), QoS::AtLeastOnce),
                    ]);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    backoff = Duration::from_millis(100);
                    permit.take();
                    if !up2.swap(true, Ordering::SeqCst) {
                        counters.connected.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counters.pubacks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic.ends_with("/ack") {
                        counters.app_acks.fetch_add(1, Ordering::Relaxed);
                        acks.on_ack(&p.payload);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    permit.take();
                    counters.conn_errors.fetch_add(1, Ordering::Relaxed);
                    if up2.swap(false, Ordering::SeqCst) {
                        counters.connected.fetch_sub(1, Ordering::SeqCst);
                    }
                    // Jittered exponential backoff, as real devices should.
                    let jitter = rand::thread_rng().gen_range(0.5..1.5);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    Member {
        id: id.to_owned(),
        kind,
        events_topic: payload::events_topic(id),
        client,
        up,
        task,
    }
}
