//! The embedded MQTT broker (rumqttd), run on the hub's own tokio runtime.
//!
//! Three things are added around rumqttd here, each because of a sharp edge recorded
//! in `shared/notes/rumqttd.md`:
//! - **Authentication at CONNECT** against the device table (client id = username =
//!   device id, password = device secret, argon2-verified off the async threads, with a
//!   small cache so reconnect storms do not re-hash).
//! - **A topic ACL** ([`AclV4`]): rumqttd has none, so the MQTT codec is wrapped. A
//!   device may publish only on its own `events` and `status` topics and subscribe only
//!   under `anxin/v1/devices/<its id>/`. Any other publish is re-routed to
//!   `anxin/v1/hub/violations/<its id>` (the hub reports it to the device and counts it;
//!   another device named in the topic never sees it); a subscription elsewhere
//!   is pointed at a topic nothing publishes to; a Last Will outside its status topic
//!   refuses the connection.
//! - **Bind errors surface** (the listener runs under our runtime via `Server`, not
//!   `Broker::start`, which only logs them).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error as ProtocolError, Packet, Protocol};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::MqttSettings;
use crate::ingest::contract::{self, DEVICES_PREFIX, VIOLATIONS_PREFIX};
use crate::secrets;
use crate::store::Store;

/// The hub's own identity on the embedded broker: random per start, never stored.
#[derive(Clone)]
pub struct HubCredentials {
    pub client_id: String,
    pub password: String,
}

impl std::fmt::Debug for HubCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCredentials")
            .field("client_id", &self.client_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub struct EmbeddedBroker {
    /// The address devices connect to (the real port when the settings asked for 0).
    pub addr: SocketAddr,
    pub hub: HubCredentials,
}

// (Kicks are created by the caller and passed to `start`, so that the REST endpoints
// that rotate and revoke can hold them before the broker exists.)

/// Start the router and the device listener. Returns once the listener is bound.
pub async fn start(
    settings: &MqttSettings,
    store: Store,
    kicks: Kicks,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> anyhow::Result<EmbeddedBroker> {
    let router_cfg = RouterConfig {
        max_connections: settings.max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: settings.segment_bytes,
        max_segment_count: settings.segment_count,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let router_tx = Router::new(0, router_cfg).spawn();

    // rumqttd's `Server` binds by address and does not report the port it got, so port 0
    // is resolved here first. (The tiny race with another process is acceptable in tests.)
    let mut listen = settings.listen;
    if listen.port() == 0 {
        let probe = std::net::TcpListener::bind(listen).context("probing a free MQTT port")?;
        listen = probe.local_addr()?;
    }
    // Fail loudly on a taken port (rumqttd would only log it inside its accept task).
    drop(
        std::net::TcpListener::bind(listen)
            .with_context(|| format!("MQTT listen address {listen} is not available"))?,
    );

    let hub = HubCredentials {
        client_id: format!("anxin-hub-{}", uuid::Uuid::new_v4().simple()),
        password: secrets::random_token(),
    };
    let auth = DeviceAuthenticator {
        store,
        hub: hub.clone(),
        cache: Arc::new(Mutex::new(HashSet::new())),
        verify_gate: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        verifications: Default::default(),
        failures: Default::default(),
        delayed: Default::default(),
    };
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Above the contract's 4 KiB so that oversized payloads reach the hub and are
        // reported on the device's error topic instead of silently cutting the connection.
        max_payload_size: 64 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let auth = auth.clone();
        async move { auth.check(client_id, user, pass).await }
    });
    let server_settings = ServerSettings {
        name: "devices".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let protocol = AclV4::new(hub.client_id.clone(), kicks);
    let mut server = Server::new(server_settings, router_tx, protocol);
    // Tracked, so a shutdown returns only once the listening socket is closed (a hub
    // restarted on the same port must not race its predecessor).
    let listener = tracker.spawn(async move {
        tokio::select! {
            res = server.start(LinkType::Remote) => res.map_err(|e| e.to_string()),
            _ = shutdown.cancelled() => Ok(()),
        }
    });
    // `Server` binds inside that task and reports nothing until it fails: wait until it
    // accepts, or surface its error. (The probe connection is closed at once; rumqttd
    // logs that at ERROR, which is why its logs are off by default.)
    let probe_addr = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if listener.is_finished() {
            let why = match listener.await {
                Ok(Err(e)) => e,
                _ => "stopped".into(),
            };
            anyhow::bail!("embedded MQTT broker could not listen on {listen}: {why}");
        }
        if tokio::net::TcpStream::connect(probe_addr).await.is_ok() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "embedded MQTT broker did not start listening on {listen}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tracing::info!(%listen, "embedded mqtt broker listening");
    Ok(EmbeddedBroker { addr: listen, hub })
}

/// Checks CONNECT credentials. Bound to the client id: a device must connect with
/// client id = username = its device id.
#[derive(Clone)]
struct DeviceAuthenticator {
    store: Store,
    hub: HubCredentials,
    /// SHA-256 over (stored hash, presented secret) pairs that verified, so reconnects
    /// (and devices provisioned with the same secret) skip argon2. Bounded.
    cache: Arc<Mutex<HashSet<[u8; 32]>>>,
    /// Argon2 verifications in flight at once (one per core). Each takes ~19 MiB and a
    /// core for tens of milliseconds: unbounded, a connect storm of N devices allocated
    /// N × 19 MiB at once (measured: 40 devices → +760 MB RSS that was never returned).
    verify_gate: Arc<tokio::sync::Semaphore>,
    /// Argon2 verifications run so far.
    verifications: Arc<std::sync::atomic::AtomicU64>,
    /// Failed CONNECTs per device id in the current window. Past `MAX_FAILURES`, every
    /// further refusal is answered only after `FAILURE_DELAY`: guessing slows down, while
    /// the right secret is never refused (a hard lock-out would let anyone who knows a
    /// pendant's id keep it offline with ten bad CONNECTs a minute). Keyed by identity:
    /// rumqttd's auth hook does not see the peer address (per-source limits belong in the
    /// firewall in front of the hub; docs/security.md).
    failures: Arc<Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>>,
    /// Refusals that were delayed (for tests and the metric).
    delayed: Arc<std::sync::atomic::AtomicU64>,
}

/// Failed CONNECTs per device id per window before refusals are delayed.
const MAX_FAILURES: u32 = 10;
/// The window.
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a refusal waits once a device id has failed too often.
const FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

impl DeviceAuthenticator {
    async fn check(&self, client_id: String, user: String, pass: String) -> bool {
        if client_id == self.hub.client_id {
            return user == self.hub.client_id
                && secrets::constant_time_eq(pass.as_bytes(), self.hub.password.as_bytes());
        }
        if client_id != user || contract::DeviceId::parse(&client_id).is_err() {
            metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "bad_identity")
                .increment(1);
            return false;
        }
        let record = match self.store.device_auth(&client_id).await {
            Ok(Some(r)) if !r.revoked => r,
            Ok(_) => {
                metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "unknown_device")
                    .increment(1);
                tracing::info!(device = %client_id, "mqtt connect refused: unknown or revoked device");
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "device lookup failed during mqtt connect");
                return false;
            }
        };
        let fingerprint: [u8; 32] =
            Sha256::digest(format!("{}\0{}", record.secret_hash, pass).as_bytes()).into();
        let cached = || {
            self.cache
                .lock()
                .map(|c| c.contains(&fingerprint))
                .unwrap_or(false)
        };
        if cached() {
            return true;
        }
        let Ok(_permit) = self.verify_gate.acquire().await else {
            return false;
        };
        // Another connect may have verified the same (hash, secret) while this one waited.
        if cached() {
            return true;
        }
        let hash = record.secret_hash.clone();
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("anxin_mqtt_secret_verifications_total").increment(1);
        let ok = tokio::task::spawn_blocking(move || secrets::verify_secret(&pass, &hash))
            .await
            .unwrap_or(false);
        if ok {
            if let Ok(mut c) = self.cache.lock() {
                if c.len() >= 100_000 {
                    c.clear();
                }
                c.insert(fingerprint);
            }
            if let Ok(mut f) = self.failures.lock() {
                f.remove(&client_id);
            }
        } else {
            metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "bad_secret")
                .increment(1);
            tracing::info!(device = %client_id, "mqtt connect refused: wrong secret");
            if self.failed(&client_id) {
                metrics::counter!("anxin_mqtt_connect_refusals_delayed_total").increment(1);
                self.delayed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(FAILURE_DELAY).await;
            }
        }
        ok
    }

    /// Count a failure; true when this device id is past its allowance in the window.
    fn failed(&self, id: &str) -> bool {
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        if f.len() >= 100_000 {
            f.clear();
        }
        let now = std::time::Instant::now();
        let e = f.entry(id.to_owned()).or_insert((0, now));
        if e.1.elapsed() >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        e.0 > MAX_FAILURES
    }
}

/// Devices whose connections must end: their secret was rotated or they were revoked.
/// A connection established before the kick is closed at its next packet (every device
/// sends at least a keep-alive ping within its keep-alive interval); a connection made
/// after it (with the new secret) is unaffected. Cheap to clone; shared by every
/// connection's codec and by the REST endpoints that rotate and revoke.
#[derive(Debug, Clone, Default)]
pub struct Kicks(Arc<std::sync::RwLock<std::collections::HashMap<String, std::time::Instant>>>);

impl Kicks {
    /// End every connection of `device` made before now.
    pub fn kick(&self, device: &str) {
        if let Ok(mut m) = self.0.write() {
            m.insert(device.to_owned(), std::time::Instant::now());
        }
    }

    fn kicked_since(&self, device: &str, connected_at: std::time::Instant) -> bool {
        self.0
            .read()
            .map(|m| m.get(device).is_some_and(|t| *t >= connected_at))
            .unwrap_or(false)
    }
}

/// rumqttd's v4 codec with a per-connection topic ACL (see the module docs).
#[derive(Debug, Clone)]
pub struct AclV4 {
    inner: V4,
    /// The hub's own client id: unrestricted.
    hub_client_id: Arc<str>,
    /// Set at CONNECT; every later packet on this connection is checked against it.
    client_id: Option<String>,
    /// When this connection sent CONNECT (kicks older than that do not apply).
    connected_at: Option<std::time::Instant>,
    kicks: Kicks,
}

impl AclV4 {
    pub fn new(hub_client_id: String, kicks: Kicks) -> Self {
        Self {
            inner: V4,
            hub_client_id: hub_client_id.into(),
            client_id: None,
            connected_at: None,
            kicks,
        }
    }

    fn own_prefix(&self) -> Option<String> {
        self.client_id
            .as_ref()
            .map(|id| format!("{DEVICES_PREFIX}{id}/"))
    }

    fn is_hub(&self) -> bool {
        self.client_id.as_deref() == Some(&*self.hub_client_id)
    }
}

impl Protocol for AclV4 {
    fn read_mut(
        &mut self,
        stream: &mut BytesMut,
        max_size: usize,
    ) -> Result<Packet, ProtocolError> {
        let mut packet = self.inner.read_mut(stream, max_size)?;
        if let (Some(id), Some(at)) = (&self.client_id, self.connected_at) {
            if self.kicks.kicked_since(id, at) {
                metrics::counter!("anxin_mqtt_connections_kicked_total").increment(1);
                tracing::info!(device = %id, "connection closed: device secret rotated or device revoked");
                return Err(ProtocolError::InvalidProtocol);
            }
        }
        match &mut packet {
            Packet::Connect(connect, _, will, _, _) => {
                self.client_id = Some(connect.client_id.clone());
                self.connected_at = Some(std::time::Instant::now());
                if let Some(will) = will {
                    if !self.is_hub()
                        && will.topic != contract::status_topic(&connect.client_id).as_bytes()
                    {
                        metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "will_topic").increment(1);
                        return Err(ProtocolError::InvalidProtocol);
                    }
                }
            }
            Packet::Publish(publish, _) if !self.is_hub() => {
                let prefix = self.own_prefix().unwrap_or_default();
                let topic = &publish.topic[..];
                let own = !prefix.is_empty() && topic.starts_with(prefix.as_bytes());
                let rest = if own {
                    &topic[prefix.len()..]
                } else {
                    &b""[..]
                };
                if !(own && (rest == b"events" || rest == b"status")) {
                    let id = self.client_id.clone().unwrap_or_default();
                    let original = String::from_utf8_lossy(topic).into_owned();
                    let code = if own {
                        "unknown_topic"
                    } else {
                        "topic_mismatch"
                    };
                    publish.payload = Bytes::from(
                        serde_json::json!({ "topic": original, "code": code }).to_string(),
                    );
                    publish.topic = Bytes::from(format!("{VIOLATIONS_PREFIX}{id}"));
                    publish.retain = false;
                }
            }
            Packet::Subscribe(subscribe, _) if !self.is_hub() => {
                let prefix = self.own_prefix().unwrap_or_default();
                for filter in &mut subscribe.filters {
                    if prefix.is_empty() || !filter.path.starts_with(&prefix) {
                        filter.path = format!(
                            "anxin/v1/denied/{}",
                            self.client_id.as_deref().unwrap_or("unknown")
                        );
                    }
                }
            }
            _ => {}
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, ProtocolError> {
        self.inner.write(packet, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An authenticator over `store` with two argon2 slots.
    fn authenticator(store: Store) -> DeviceAuthenticator {
        DeviceAuthenticator {
            store,
            hub: HubCredentials {
                client_id: "hub".into(),
                password: "x".into(),
            },
            cache: Default::default(),
            verify_gate: Arc::new(tokio::sync::Semaphore::new(2)),
            verifications: Default::default(),
            failures: Default::default(),
            delayed: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_connect_storm_with_one_secret_runs_argon2_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = Store::connect(&url).await.expect("db");
        crate::demo::seed(&store, 0).await.expect("seed");
        let auth = authenticator(store);
        // Every demo device shares the demo secret (one stored hash): 9 concurrent
        // connects must not run 9 argon2 verifications (9 × 19 MiB at once).
        let demo = crate::demo::batch().expect("demo district");
        let ids: Vec<&str> = demo.devices.iter().map(|d| d.id.as_str()).collect();
        let checks = ids.iter().map(|id| {
            auth.check(
                id.to_string(),
                id.to_string(),
                crate::demo::DEMO_DEVICE_SECRET.into(),
            )
        });
        let results = futures::future::join_all(checks).await;
        assert!(results.iter().all(|ok| *ok), "{results:?}");
        let runs = auth
            .verifications
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            runs <= 2,
            "{runs} argon2 runs for {} connects with one secret",
            ids.len()
        );
        // A wrong secret is still refused (the cache is keyed by hash and secret).
        assert!(
            !auth
                .check(ids[0].into(), ids[0].into(), "wrong".into())
                .await
        );
    }

    #[tokio::test]
    async fn guessing_a_device_secret_is_slowed_but_never_locks_the_device_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = Store::connect(&url).await.expect("db");
        crate::demo::seed(&store, 0).await.expect("seed");
        let auth = authenticator(store);
        let id = "demo-pendant-1";
        let delayed = || auth.delayed.load(std::sync::atomic::Ordering::Relaxed);
        for i in 0..MAX_FAILURES {
            assert!(!auth.check(id.into(), id.into(), format!("guess-{i}")).await);
        }
        assert_eq!(
            delayed(),
            0,
            "the first {MAX_FAILURES} refusals are immediate"
        );
        // Past the allowance a wrong guess is refused only after the delay...
        let t = std::time::Instant::now();
        assert!(!auth.check(id.into(), id.into(), "guess-x".into()).await);
        assert!(t.elapsed() >= FAILURE_DELAY);
        assert_eq!(delayed(), 1);
        // ...but the right secret is never refused (no lock-out to abuse), and not delayed.
        let t = std::time::Instant::now();
        assert!(
            auth.check(id.into(), id.into(), crate::demo::DEMO_DEVICE_SECRET.into())
                .await
        );
        assert!(t.elapsed() < FAILURE_DELAY);
        // A success starts the count again.
        assert!(
            !auth
                .check(id.into(), id.into(), "after-success".into())
                .await
        );
        assert_eq!(delayed(), 1);
    }
}
