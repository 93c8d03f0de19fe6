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
//! - **Limits per source address** ([`SourceLimiter`]): a source (IPv4 address or IPv6
//!   /64) that fails CONNECT too often is blocked for a while, and each source may open
//!   new connections only at a (generous) rate. Through two hooks added to the vendored
//!   rumqttd (`ANXIN PATCH`, vendor/README.md): a filter in its accept loop, and an auth
//!   handler that is given the peer address.
//! - **Bind errors surface** (the listener runs under our runtime via `Server`, not
//!   `Broker::start`, which only logs them).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error as ProtocolError, Packet, Protocol};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{MqttSettings, SourceLimitSettings};
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
    let sources =
        Arc::new(SourceLimiter::new(&settings.source_limits).context("[mqtt.source_limits]")?);
    let auth = DeviceAuthenticator {
        store,
        hub: hub.clone(),
        sources: sources.clone(),
        cache: Arc::new(Mutex::new(HashSet::new())),
        verify_gate: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        verifications: Default::default(),
        failures: Default::default(),
        delayed: Default::default(),
    };
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Above the contract's 4 KiB so that oversized payloads reach the hub and are
        // reported on the device's error topic instead of silently cutting the connection.
        max_payload_size: 64 * 1024,
        max_inflight_count: 100,
        auth: None,
        // Set per connection by `set_peer_auth_handler` below.
        external_auth: None,
        dynamic_filters: true,
    };
    let server_settings = ServerSettings {
        name: "devices".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let protocol = AclV4::new(hub.client_id.clone(), kicks, settings.device_limits.clone());
    let mut server = Server::new(server_settings, router_tx, protocol);
    // Both hooks are ANXIN PATCHes to rumqttd: the peer address at accept and at CONNECT.
    server.set_accept_filter(move |peer: SocketAddr| sources.admit(peer.ip()));
    server.set_peer_auth_handler(
        move |peer: SocketAddr, client_id: String, user: String, pass: String| {
            let auth = auth.clone();
            async move { auth.check(peer, client_id, user, pass).await }
        },
    );
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
    /// Failed CONNECTs per source address, and the sources blocked for them.
    sources: Arc<SourceLimiter>,
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
    /// pendant's id keep it offline with ten bad CONNECTs a minute). Keyed by identity;
    /// guessing across many ids from one address is stopped by `sources`.
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
    /// `peer`: the connection's source address (for the per-source limits).
    async fn check(&self, peer: SocketAddr, client_id: String, user: String, pass: String) -> bool {
        // The hub's own ingest first: it is never limited, whatever address it comes from.
        if client_id == self.hub.client_id
            && user == self.hub.client_id
            && secrets::constant_time_eq(pass.as_bytes(), self.hub.password.as_bytes())
        {
            return true;
        }
        // A blocked source runs no argon2 at all: only a device whose exact secret has
        // verified since the hub started (a cheap fingerprint lookup) gets through, so
        // known pendants behind an address shared with a guesser (a village NAT, a
        // carrier's NAT) still reconnect; everything else is refused.
        let blocked = self.sources.is_blocked(peer.ip());
        let refuse_blocked = || {
            metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "source_limited")
                .increment(1);
            false
        };
        if blocked && (client_id != user || contract::DeviceId::parse(&client_id).is_err()) {
            return refuse_blocked();
        }
        if client_id != user
            || client_id == self.hub.client_id
            || contract::DeviceId::parse(&client_id).is_err()
        {
            metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "bad_identity")
                .increment(1);
            self.sources.failed(peer.ip());
            return false;
        }
        let record = match self.store.device_auth(&client_id).await {
            Ok(Some(r)) if !r.revoked => r,
            Ok(_) if blocked => return refuse_blocked(),
            Ok(_) => {
                metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "unknown_device")
                    .increment(1);
                tracing::info!(device = %client_id, "mqtt connect refused: unknown or revoked device");
                self.sources.failed(peer.ip());
                return false;
            }
            Err(e) => {
                // Not the source's fault: not counted against it.
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
            if blocked {
                metrics::counter!("anxin_mqtt_connect_known_while_blocked_total").increment(1);
            }
            return true;
        }
        if blocked {
            return refuse_blocked();
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
            self.sources.failed(peer.ip());
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

/// Whom a per-source limit applies to: an IPv4 address, or an IPv6 /64 (what one
/// subscriber is usually given; keyed by the full address, one host could use 2^64 fresh
/// budgets). IPv4-mapped IPv6 addresses (a dual-stack listener) count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl SourceKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(v4),
            IpAddr::V6(v6) => SourceKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::V4(v4) => write!(f, "{v4}"),
            SourceKey::V6(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

/// A GCRA budget per source (governor), over a hash map with a random hasher (the keys
/// are chosen by whoever connects).
type Budgets<C> =
    RateLimiter<SourceKey, HashMapStateStore<SourceKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Sources tracked per table, at most. Past this, stale entries are dropped at once, and if
/// most are still live (an attacker with very many addresses) the table starts afresh:
/// memory stays bounded (~5 MB a table) at the price of forgetting budgets under such an
/// attack. The same bound as the secret cache and the per-id failure counts.
const MAX_SOURCES: usize = 100_000;
/// How often entries that no longer limit anything are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// At most one log line per this interval about connections refused for their rate (the
/// metric counts each).
const RATE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Limits per source address on the MQTT listener ([`SourceLimitSettings`],
/// docs/security.md T3 and T10):
/// - **failed CONNECTs** (wrong secret, unknown or malformed id, for any ids) draw from a
///   budget of `max_failures` that refills over `failure_window_secs`; a source that
///   overdraws it is **blocked** for `block_secs`: its CONNECTs are refused before any
///   database lookup or argon2 run, even with the right secret (the hub cannot tell the
///   attacker from the device behind the same address, and letting right secrets through
///   would mean verifying every guess). Connections it already has are not touched. A
///   successful CONNECT does not refill the budget, so a stolen secret cannot launder
///   guesses; successes never count against it, so a village behind one NAT reconnecting
///   after a power cut is not blocked.
/// - **new connections** draw from a budget of `connect_burst` refilling at
///   `connects_per_sec`; past it a socket is closed at accept, before TLS or CONNECT (a
///   flood of idle sockets would otherwise hold descriptors for the 10 s CONNECT timeout).
///
/// Loopback (unless `limit_loopback`) and the `exempt` networks are never limited. All
/// time comes from `C` (governor's clock), so tests drive it by hand.
pub struct SourceLimiter<C: Clock = MonotonicClock> {
    clock: C,
    /// `None` when failures are not limited (`max_failures = 0`).
    failure_quota: Option<Quota>,
    /// `None` when the connection rate is not limited (`connects_per_sec = 0`).
    attempt_quota: Option<Quota>,
    block_for: Nanos,
    limit_loopback: bool,
    exempt: Vec<ipnet::IpNet>,
    /// Table bound ([`MAX_SOURCES`]; smaller in tests).
    max_sources: usize,
    state: Mutex<SourceTables<C>>,
}

struct SourceTables<C: Clock> {
    failures: Option<Budgets<C>>,
    attempts: Option<Budgets<C>>,
    /// Blocked sources and when their block ends.
    blocked: HashMap<SourceKey, C::Instant>,
    /// When stale entries were last dropped.
    swept_at: C::Instant,
    /// When a rate refusal was last logged, and refusals since then.
    rate_logged_at: Option<C::Instant>,
    rate_refused_since_log: u64,
}

impl SourceLimiter<MonotonicClock> {
    pub fn new(settings: &SourceLimitSettings) -> anyhow::Result<Self> {
        Self::with_clock(settings, MonotonicClock, MAX_SOURCES)
    }
}

impl<C: Clock + Clone> SourceLimiter<C> {
    fn with_clock(
        settings: &SourceLimitSettings,
        clock: C,
        max_sources: usize,
    ) -> anyhow::Result<Self> {
        let failure_quota = match NonZeroU32::new(settings.max_failures) {
            None => None,
            Some(burst) => {
                anyhow::ensure!(
                    settings.failure_window_secs > 0,
                    "failure_window_secs must be at least 1"
                );
                anyhow::ensure!(settings.block_secs > 0, "block_secs must be at least 1");
                let period = Duration::from_secs(settings.failure_window_secs) / burst.get();
                let quota = Quota::with_period(period)
                    .context("failure_window_secs is too short for max_failures")?;
                Some(quota.allow_burst(burst))
            }
        };
        let attempt_quota = NonZeroU32::new(settings.connects_per_sec).map(|rate| {
            let burst = NonZeroU32::new(settings.connect_burst).unwrap_or(rate);
            Quota::per_second(rate).allow_burst(burst)
        });
        let now = clock.now();
        let state = SourceTables {
            failures: failure_quota.map(|q| RateLimiter::hashmap_with_clock(q, clock.clone())),
            attempts: attempt_quota.map(|q| RateLimiter::hashmap_with_clock(q, clock.clone())),
            blocked: HashMap::new(),
            swept_at: now,
            rate_logged_at: None,
            rate_refused_since_log: 0,
        };
        Ok(Self {
            clock,
            failure_quota,
            attempt_quota,
            block_for: Nanos::from(Duration::from_secs(settings.block_secs)),
            limit_loopback: settings.limit_loopback,
            exempt: settings.exempt.clone(),
            max_sources,
            state: Mutex::new(state),
        })
    }

    /// The source to account `ip` to, or `None` when it is exempt.
    fn source(&self, ip: IpAddr) -> Option<SourceKey> {
        let ip = ip.to_canonical();
        let exempt = (ip.is_loopback() && !self.limit_loopback)
            || self.exempt.iter().any(|net| net.contains(&ip));
        (!exempt).then(|| SourceKey::of(ip))
    }

    /// At accept: may `ip` open a new connection now? Draws on its connection budget.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let Some(key) = self.source(ip) else {
            return true;
        };
        let Ok(mut t) = self.state.lock() else {
            return true;
        };
        let now = self.clock.now();
        self.keep_bounded(&mut t, now);
        let Some(attempts) = &t.attempts else {
            return true;
        };
        if attempts.check_key(&key).is_ok() {
            return true;
        }
        metrics::counter!("anxin_mqtt_connect_refused_total", "reason" => "source_rate")
            .increment(1);
        t.rate_refused_since_log += 1;
        let quiet = t
            .rate_logged_at
            .is_some_and(|at| Duration::from(now.duration_since(at)) < RATE_LOG_EVERY);
        if !quiet {
            tracing::warn!(
                source = %key,
                refused = t.rate_refused_since_log,
                "mqtt connections refused: source opens connections too fast"
            );
            t.rate_logged_at = Some(now);
            t.rate_refused_since_log = 0;
        }
        false
    }

    /// At CONNECT: is `ip` blocked? (The caller counts the refusal.)
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let Some(key) = self.source(ip) else {
            return false;
        };
        let Ok(t) = self.state.lock() else {
            return false;
        };
        t.blocked
            .get(&key)
            .is_some_and(|until| *until > self.clock.now())
    }

    /// A CONNECT from `ip` failed authentication. Returns true when this failure blocked
    /// the source.
    pub fn failed(&self, ip: IpAddr) -> bool {
        let Some(key) = self.source(ip) else {
            return false;
        };
        let Ok(mut t) = self.state.lock() else {
            return false;
        };
        let now = self.clock.now();
        self.keep_bounded(&mut t, now);
        let Some(failures) = &t.failures else {
            return false;
        };
        if failures.check_key(&key).is_ok() {
            return false;
        }
        if t.blocked.get(&key).is_some_and(|until| *until > now) {
            return false; // a CONNECT that was already in flight when the block began
        }
        t.blocked.insert(key, now + self.block_for);
        metrics::counter!("anxin_mqtt_sources_blocked_total").increment(1);
        tracing::warn!(
            source = %key,
            block_secs = Duration::from(self.block_for).as_secs(),
            "mqtt source blocked: too many failed connects"
        );
        true
    }

    /// Drop what no longer limits anything, every [`SWEEP_EVERY`] or when a table is full;
    /// start a table afresh if it is still mostly full after that.
    fn keep_bounded(&self, t: &mut SourceTables<C>, now: C::Instant) {
        let full = |b: &Option<Budgets<C>>| b.as_ref().is_some_and(|b| b.len() >= self.max_sources);
        let due = Duration::from(now.duration_since(t.swept_at)) >= SWEEP_EVERY;
        if !(due || full(&t.failures) || full(&t.attempts) || t.blocked.len() >= self.max_sources) {
            return;
        }
        t.swept_at = now;
        t.blocked.retain(|_, until| *until > now);
        let crowded = self.max_sources / 4 * 3;
        for (table, quota) in [
            (&mut t.failures, self.failure_quota),
            (&mut t.attempts, self.attempt_quota),
        ] {
            let (Some(budgets), Some(quota)) = (table.as_mut(), quota) else {
                continue;
            };
            budgets.retain_recent();
            budgets.shrink_to_fit();
            if budgets.len() >= crowded {
                *budgets = RateLimiter::hashmap_with_clock(quota, self.clock.clone());
                metrics::counter!("anxin_mqtt_source_tables_reset_total").increment(1);
                tracing::warn!(
                    max = self.max_sources,
                    "mqtt per-source table full of live sources (many attacking addresses?): starting afresh"
                );
            }
        }
        if t.blocked.len() >= crowded {
            t.blocked.clear();
            metrics::counter!("anxin_mqtt_source_tables_reset_total").increment(1);
            tracing::warn!(
                max = self.max_sources,
                "mqtt blocked-source table full: starting afresh"
            );
        }
    }

    /// Entries in the failure, connection and block tables (for tests).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize, usize) {
        let t = self.state.lock().expect("lock");
        let len = |b: &Option<Budgets<C>>| b.as_ref().map_or(0, |b| b.len());
        (len(&t.failures), len(&t.attempts), t.blocked.len())
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

/// rumqttd's v4 codec with a per-connection topic ACL and publish budget (see the module
/// docs). One value per connection: rumqttd clones the template given to `Server::new`.
#[derive(Debug, Clone)]
pub struct AclV4 {
    inner: V4,
    /// The hub's own client id: unrestricted.
    hub_client_id: Arc<str>,
    /// Set at the connection's one CONNECT (the one rumqttd authenticates) and never
    /// changed: every later packet is checked against it, and a second CONNECT closes the
    /// connection. (Overwriting it on a second CONNECT let a door contact in one home
    /// speak as another home's pendant without its secret: issue 14, finding 1.)
    client_id: Option<String>,
    /// When this connection sent CONNECT (kicks older than that do not apply).
    connected_at: Option<std::time::Instant>,
    kicks: Kicks,
    /// Every device's publish budget (none when limits are off), shared by all
    /// connections, and the refusals after which a connection is closed.
    budgets: Option<Arc<DeviceBudgets>>,
    disconnect_after: u32,
    /// This connection's side of its device's budget, made at CONNECT (none for the
    /// hub's own client or when limits are off).
    budget: Option<PublishBudget>,
}

use crate::config::DeviceLimitSettings;

/// What becomes of a publish over its device's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverBudget {
    /// Delivered to the hub as a `rate_limited` violation (at most one a second), so the
    /// device is told.
    Report,
    /// Acknowledged to the device's MQTT client (QoS 1) but delivered nowhere.
    Drop,
    /// The device keeps flooding: close the connection.
    Disconnect,
}

/// The publish budgets of all devices (GCRA, governor), keyed by device id and shared by
/// every connection: a device that reconnects does not start with a fresh burst.
/// (Measured with per-connection budgets: a flooder that reconnected 191 times in 4 s
/// pushed ~57,000 heartbeats through, and another home's SOS waited 3.3 s.)
pub(crate) struct DeviceBudgets<C: Clock = MonotonicClock> {
    clock: C,
    limiter: RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    /// When budgets that are full again (devices within their rate) were last dropped.
    swept_at: Mutex<C::Instant>,
}

impl<C: Clock> std::fmt::Debug for DeviceBudgets<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBudgets")
            .field("tracked", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl DeviceBudgets<MonotonicClock> {
    /// `None` when publishes are not limited (`publishes_per_sec = 0`).
    fn new(limits: &DeviceLimitSettings) -> Option<Self> {
        let rate = NonZeroU32::new(limits.publishes_per_sec)?;
        let burst = NonZeroU32::new(limits.publish_burst).unwrap_or(rate);
        Some(Self::with_clock(
            Quota::per_second(rate).allow_burst(burst),
            MonotonicClock,
        ))
    }
}

impl<C: Clock + Clone> DeviceBudgets<C> {
    fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            swept_at: Mutex::new(clock.now()),
            clock,
        }
    }

    /// Draw one publish from `device`'s budget.
    fn check(&self, device: &str) -> bool {
        let now = self.clock.now();
        if let Ok(mut at) = self.swept_at.lock() {
            if Duration::from(now.duration_since(*at)) >= SWEEP_EVERY {
                *at = now;
                self.limiter.retain_recent();
                self.limiter.shrink_to_fit();
            }
        }
        self.limiter.check_key(&device.to_owned()).is_ok()
    }
}

/// One connection's side of its device's budget: reports and disconnects.
#[derive(Debug, Clone)]
struct PublishBudget<C: Clock = MonotonicClock> {
    budgets: Arc<DeviceBudgets<C>>,
    device: String,
    /// Refusals after which the connection is closed (0 = never), within `REFUSAL_WINDOW`.
    disconnect_after: u32,
    /// Start of the current refusal window and refusals in it.
    window: Option<(C::Instant, u32)>,
    /// When the last `rate_limited` report was let through.
    reported_at: Option<C::Instant>,
}

/// The window over which refusals are counted towards a disconnect.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// At most one `rate_limited` report per connection per this interval (a flood of
/// refusals must not become a flood of error reports).
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl<C: Clock + Clone> PublishBudget<C> {
    fn new(budgets: Arc<DeviceBudgets<C>>, device: &str, disconnect_after: u32) -> Self {
        Self {
            budgets,
            device: device.to_owned(),
            disconnect_after,
            window: None,
            reported_at: None,
        }
    }

    /// `None` when the publish is within budget.
    fn check(&mut self) -> Option<OverBudget> {
        if self.budgets.check(&self.device) {
            return None;
        }
        let now = self.budgets.clock.now();
        let since = |at: C::Instant| Duration::from(now.duration_since(at));
        let refused = match self.window {
            Some((start, n)) if since(start) < REFUSAL_WINDOW => n + 1,
            _ => {
                self.window = Some((now, 0));
                1
            }
        };
        if let Some(w) = self.window.as_mut() {
            w.1 = refused;
        }
        if self.disconnect_after > 0 && refused > self.disconnect_after {
            return Some(OverBudget::Disconnect);
        }
        if self.reported_at.is_none_or(|at| since(at) >= REPORT_EVERY) {
            self.reported_at = Some(now);
            return Some(OverBudget::Report);
        }
        Some(OverBudget::Drop)
    }
}

/// The subscriptions a device may make under its own prefix: the two topics the hub
/// writes to and the two wildcards the contract allows for debugging. Anything else is
/// pointed at one denied topic per device, so a device cannot make the broker keep an
/// unbounded number of filters (each has its own log).
const ALLOWED_SUBSCRIPTIONS: [&str; 4] = ["ack", "errors", "#", "+"];

impl AclV4 {
    pub fn new(hub_client_id: String, kicks: Kicks, limits: DeviceLimitSettings) -> Self {
        Self {
            inner: V4,
            hub_client_id: hub_client_id.into(),
            client_id: None,
            connected_at: None,
            kicks,
            budgets: DeviceBudgets::new(&limits).map(Arc::new),
            disconnect_after: limits.disconnect_after_refused,
            budget: None,
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

    /// The connection is closed: log (ids only) and count why.
    fn close(&self, reason: &'static str, why: &str) -> ProtocolError {
        metrics::counter!("anxin_mqtt_connections_closed_total", "reason" => reason).increment(1);
        tracing::warn!(
            device = self.client_id.as_deref().unwrap_or("-"),
            reason,
            "mqtt connection closed: {why}"
        );
        ProtocolError::InvalidProtocol
    }

    /// Re-route a device's publish to the hub's violation topic for this device, with
    /// `code` and the original topic (and event id, if the payload names one).
    fn to_violation(
        &self,
        publish: &mut rumqttd::protocol::Publish,
        code: contract::ViolationCode,
    ) {
        let id = self.client_id.as_deref().unwrap_or_default();
        let report = contract::Violation {
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            code,
            event_id: contract::event_id_of(&publish.payload),
        };
        publish.payload = Bytes::from(serde_json::to_vec(&report).unwrap_or_default());
        publish.topic = Bytes::from(format!("{VIOLATIONS_PREFIX}{id}"));
        publish.retain = false;
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
                if self.client_id.is_some() {
                    // MQTT-3.1.0-2: a second CONNECT is a protocol violation. rumqttd
                    // would ignore it; the identity stays the one authenticated.
                    return Err(self.close(
                        "second_connect",
                        "a second CONNECT on one connection (MQTT-3.1.0-2)",
                    ));
                }
                self.client_id = Some(connect.client_id.clone());
                self.connected_at = Some(std::time::Instant::now());
                if !self.is_hub() {
                    self.budget = self
                        .budgets
                        .clone()
                        .map(|b| PublishBudget::new(b, &connect.client_id, self.disconnect_after));
                }
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
                if let Some(over) = self.budget.as_mut().and_then(PublishBudget::check) {
                    metrics::counter!("anxin_mqtt_publishes_refused_total", "reason" => "rate")
                        .increment(1);
                    match over {
                        OverBudget::Disconnect => {
                            return Err(
                                self.close("flood", "the device kept publishing over its budget")
                            )
                        }
                        OverBudget::Report => {
                            tracing::warn!(
                                    device = self.client_id.as_deref().unwrap_or("-"),
                                    "device publishes over its budget; refusing (reported at most once a second)"
                                );
                            self.to_violation(publish, contract::ViolationCode::RateLimited);
                        }
                        OverBudget::Drop => {
                            // The router acknowledges a publish with an empty topic as
                            // usual (QoS 1: the device's client is not left waiting for
                            // a PUBACK) and stores it nowhere (ANXIN PATCH in rumqttd's
                            // router).
                            publish.topic = Bytes::new();
                            publish.payload = Bytes::new();
                            publish.retain = false;
                        }
                    }
                    return Ok(packet);
                }
                let prefix = self.own_prefix().unwrap_or_default();
                let topic = &publish.topic[..];
                let own = !prefix.is_empty() && topic.starts_with(prefix.as_bytes());
                let rest = if own {
                    &topic[prefix.len()..]
                } else {
                    &b""[..]
                };
                match rest {
                    // The contract: events are never retained (a retained event would be
                    // delivered again to the hub's ingest after every reconnect).
                    b"events" => publish.retain = false,
                    b"status" => {}
                    _ => {
                        let code = if own {
                            contract::ViolationCode::UnknownTopic
                        } else {
                            contract::ViolationCode::TopicMismatch
                        };
                        self.to_violation(publish, code);
                    }
                }
            }
            Packet::Subscribe(subscribe, _) if !self.is_hub() => {
                let prefix = self.own_prefix().unwrap_or_default();
                for filter in &mut subscribe.filters {
                    let allowed = !prefix.is_empty()
                        && filter
                            .path
                            .strip_prefix(&prefix)
                            .is_some_and(|rest| ALLOWED_SUBSCRIPTIONS.contains(&rest));
                    if !allowed {
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

    /// A device on the hub's own host: loopback, exempt from the per-source limits by default.
    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);

    /// An authenticator over `store` with two argon2 slots and default source limits.
    fn authenticator(store: Store) -> DeviceAuthenticator {
        authenticator_with(store, &SourceLimitSettings::default())
    }

    fn authenticator_with(store: Store, limits: &SourceLimitSettings) -> DeviceAuthenticator {
        DeviceAuthenticator {
            store,
            hub: HubCredentials {
                client_id: "hub".into(),
                password: "x".into(),
            },
            sources: Arc::new(SourceLimiter::new(limits).expect("limits")),
            cache: Default::default(),
            verify_gate: Arc::new(tokio::sync::Semaphore::new(2)),
            verifications: Default::default(),
            failures: Default::default(),
            delayed: Default::default(),
        }
    }

    // ----- the codec: identity, retain, subscriptions, publish budget -----

    use rumqttc::mqttbytes::v4 as wire;
    use rumqttc::mqttbytes::QoS as WireQoS;

    const HUB_ID: &str = "anxin-hub-test";

    fn codec(limits: DeviceLimitSettings) -> AclV4 {
        AclV4::new(HUB_ID.into(), Kicks::default(), limits)
    }

    fn no_limits() -> DeviceLimitSettings {
        DeviceLimitSettings {
            publishes_per_sec: 0,
            ..DeviceLimitSettings::default()
        }
    }

    fn connect_bytes(id: &str, password: &str) -> BytesMut {
        let mut c = wire::Connect::new(id);
        c.set_login(id, password);
        let mut buf = BytesMut::new();
        c.write(&mut buf).expect("encode connect");
        buf
    }

    fn publish_bytes(topic: &str, payload: &str, pkid: u16, retain: bool) -> BytesMut {
        let mut p = wire::Publish::new(topic, WireQoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.retain = retain;
        let mut buf = BytesMut::new();
        p.write(&mut buf).expect("encode publish");
        buf
    }

    fn read(codec: &mut AclV4, mut bytes: BytesMut) -> Result<Packet, ProtocolError> {
        codec.read_mut(&mut bytes, 64 * 1024)
    }

    fn published(packet: Result<Packet, ProtocolError>) -> rumqttd::protocol::Publish {
        match packet {
            Ok(Packet::Publish(p, _)) => p,
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn a_second_connect_closes_the_connection_and_the_identity_never_changes() {
        // Regression (issue 14, finding 1): the second CONNECT used to re-bind the socket
        // to whatever id it named, without any authentication.
        let mut c = codec(no_limits());
        assert!(read(&mut c, connect_bytes("demo-door-1", "own-secret")).is_ok());
        let second = read(&mut c, connect_bytes("demo-pendant-3", "wrong"));
        assert!(second.is_err(), "{second:?}");
        assert_eq!(c.client_id.as_deref(), Some("demo-door-1"));
        // Even if the link went on reading, the pendant's topic stays foreign to it.
        let p = published(read(
            &mut c,
            publish_bytes("anxin/v1/devices/demo-pendant-3/events", "{}", 1, false),
        ));
        assert_eq!(&p.topic[..], b"anxin/v1/hub/violations/demo-door-1");
    }

    #[test]
    fn a_connect_with_the_reserved_flag_set_is_refused() {
        // MQTT-3.1.2-3. The flags byte of this CONNECT is at offset 9 (fixed header 2,
        // protocol name 6, level 1).
        let mut bytes = connect_bytes("demo-door-1", "x");
        assert_eq!(bytes[9] & 1, 0);
        bytes[9] |= 1;
        assert!(read(&mut codec(no_limits()), bytes).is_err());
    }

    #[test]
    fn events_are_never_retained_but_status_is() {
        let mut c = codec(no_limits());
        read(&mut c, connect_bytes("demo-door-1", "x")).expect("connect");
        let p = published(read(
            &mut c,
            publish_bytes("anxin/v1/devices/demo-door-1/events", "{}", 1, true),
        ));
        assert!(!p.retain, "the retain flag on an event is cleared");
        assert_eq!(&p.topic[..], b"anxin/v1/devices/demo-door-1/events");
        let p = published(read(
            &mut c,
            publish_bytes(
                "anxin/v1/devices/demo-door-1/status",
                r#"{"state":"online"}"#,
                2,
                true,
            ),
        ));
        assert!(p.retain, "status stays retained (the contract asks for it)");
    }

    #[test]
    fn devices_subscribe_only_to_their_own_four_filters() {
        let mut c = codec(no_limits());
        read(&mut c, connect_bytes("d-1", "x")).expect("connect");
        let paths = [
            "anxin/v1/devices/d-1/ack",
            "anxin/v1/devices/d-1/errors",
            "anxin/v1/devices/d-1/#",
            "anxin/v1/devices/d-1/+",
            "anxin/v1/devices/d-1/x-17",
            "anxin/v1/devices/d-2/ack",
            "#",
        ];
        let sub = wire::Subscribe::new_many(
            paths
                .iter()
                .map(|p| wire::SubscribeFilter::new(p.to_string(), WireQoS::AtLeastOnce)),
        );
        let mut buf = BytesMut::new();
        let mut sub = sub;
        sub.pkid = 3;
        sub.write(&mut buf).expect("encode subscribe");
        let Ok(Packet::Subscribe(s, _)) = read(&mut c, buf) else {
            panic!("subscribe");
        };
        let got: Vec<&str> = s.filters.iter().map(|f| f.path.as_str()).collect();
        let denied = "anxin/v1/denied/d-1";
        assert_eq!(
            got,
            [&paths[..4], &[denied, denied, denied][..]].concat(),
            "anything else points at one denied topic per device"
        );
    }

    #[test]
    fn a_device_over_its_publish_budget_is_refused_reported_once_and_then_disconnected() {
        let limits = DeviceLimitSettings {
            publishes_per_sec: 1,
            publish_burst: 3,
            disconnect_after_refused: 5,
        };
        let mut c = codec(limits);
        read(&mut c, connect_bytes("d-1", "x")).expect("connect");
        // On governor's fake clock (nothing refills unless the test says so).
        let clock = governor::clock::FakeRelativeClock::default();
        let quota = |burst: u32| {
            Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::new(burst).expect("burst"))
        };
        let budgets = Arc::new(DeviceBudgets::with_clock(quota(3), clock.clone()));
        let mut budget = PublishBudget::new(budgets.clone(), "d-1", 5);
        let mut verdicts = Vec::new();
        for _ in 0..9 {
            verdicts.push(budget.check());
        }
        use OverBudget::*;
        assert_eq!(
            verdicts,
            [
                None,
                None,
                None,
                Some(Report),
                Some(Drop),
                Some(Drop),
                Some(Drop),
                Some(Drop),
                Some(Disconnect)
            ]
        );
        // Reconnecting does not refill the budget (it is the device's, not the
        // connection's); another device has its own.
        let mut again = PublishBudget::new(budgets.clone(), "d-1", 5);
        assert_eq!(again.check(), Some(Report));
        let mut other = PublishBudget::new(budgets, "d-2", 5);
        assert_eq!(other.check(), None);
        // A second later one more is allowed, and a refusal is reported again.
        let budgets = Arc::new(DeviceBudgets::with_clock(quota(1), clock.clone()));
        let mut budget = PublishBudget::new(budgets, "d-1", 0);
        assert_eq!(budget.check(), None);
        assert_eq!(budget.check(), Some(Report));
        assert_eq!(budget.check(), Some(Drop));
        clock.advance(Duration::from_secs(1));
        assert_eq!(budget.check(), None);
        assert_eq!(budget.check(), Some(Report));
        for _ in 0..100 {
            assert_ne!(budget.check(), Some(Disconnect), "0 = never disconnect");
        }

        // Through the codec (real clock, burst 3): the 4th publish at once becomes a
        // `rate_limited` violation naming its event id, the 5th is dropped (empty topic:
        // acknowledged, delivered nowhere).
        let events = "anxin/v1/devices/d-1/events";
        for i in 1..=3 {
            let p = published(read(&mut c, publish_bytes(events, "{}", i, false)));
            assert_eq!(&p.topic[..], events.as_bytes());
        }
        let p = published(read(
            &mut c,
            publish_bytes(events, r#"{"event_id":"e-4"}"#, 4, false),
        ));
        assert_eq!(&p.topic[..], b"anxin/v1/hub/violations/d-1");
        let v: contract::Violation = serde_json::from_slice(&p.payload).expect("violation");
        assert_eq!(v.code, contract::ViolationCode::RateLimited);
        assert_eq!(v.event_id.as_deref(), Some("e-4"));
        assert_eq!(v.topic, events);
        let p = published(read(&mut c, publish_bytes(events, "{}", 5, false)));
        assert!(p.topic.is_empty() && p.payload.is_empty());
    }

    #[test]
    fn the_hubs_own_client_has_no_budget_and_no_acl() {
        let limits = DeviceLimitSettings {
            publishes_per_sec: 1,
            publish_burst: 1,
            disconnect_after_refused: 1,
        };
        let mut c = codec(limits);
        read(&mut c, connect_bytes(HUB_ID, "x")).expect("connect");
        for i in 1..=50 {
            let p = published(read(
                &mut c,
                publish_bytes("anxin/v1/devices/d-1/ack", "{}", i, false),
            ));
            assert_eq!(&p.topic[..], b"anxin/v1/devices/d-1/ack");
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
                LOCAL,
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
                .check(LOCAL, ids[0].into(), ids[0].into(), "wrong".into())
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
            assert!(
                !auth
                    .check(LOCAL, id.into(), id.into(), format!("guess-{i}"))
                    .await
            );
        }
        assert_eq!(
            delayed(),
            0,
            "the first {MAX_FAILURES} refusals are immediate"
        );
        // Past the allowance a wrong guess is refused only after the delay...
        let t = std::time::Instant::now();
        assert!(
            !auth
                .check(LOCAL, id.into(), id.into(), "guess-x".into())
                .await
        );
        assert!(t.elapsed() >= FAILURE_DELAY);
        assert_eq!(delayed(), 1);
        // ...but the right secret is never refused (no lock-out to abuse), and not delayed.
        let t = std::time::Instant::now();
        assert!(
            auth.check(
                LOCAL,
                id.into(),
                id.into(),
                crate::demo::DEMO_DEVICE_SECRET.into()
            )
            .await
        );
        assert!(t.elapsed() < FAILURE_DELAY);
        // A success starts the count again.
        assert!(
            !auth
                .check(LOCAL, id.into(), id.into(), "after-success".into())
                .await
        );
        assert_eq!(delayed(), 1);
    }

    // ----- per-source limits, on governor's fake clock -----

    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn limits(max_failures: u32, window: u64, block: u64) -> SourceLimitSettings {
        SourceLimitSettings {
            max_failures,
            failure_window_secs: window,
            block_secs: block,
            connects_per_sec: 0,
            ..SourceLimitSettings::default()
        }
    }

    fn limiter(
        settings: &SourceLimitSettings,
    ) -> (SourceLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l = SourceLimiter::with_clock(settings, clock.clone(), 100).expect("limits");
        (l, clock)
    }

    #[test]
    fn a_source_that_fails_too_often_is_blocked_until_its_block_ends() {
        let (l, clock) = limiter(&limits(3, 60, 30));
        let (a, b) = (ip("198.51.100.7"), ip("198.51.100.8"));
        for i in 0..3 {
            assert!(!l.failed(a), "failure {i} is within the allowance");
            assert!(!l.is_blocked(a));
        }
        assert!(l.failed(a), "the 4th failure at once blocks the source");
        assert!(l.is_blocked(a));
        assert!(!l.is_blocked(b), "another address is not affected");
        assert!(!l.failed(b));
        clock.advance(Duration::from_secs(29));
        assert!(l.is_blocked(a), "still blocked before block_secs");
        clock.advance(Duration::from_secs(2));
        assert!(!l.is_blocked(a), "free again after block_secs");
    }

    #[test]
    fn failures_at_the_allowed_rate_never_block() {
        let (l, clock) = limiter(&limits(3, 60, 30));
        let a = ip("198.51.100.7");
        for _ in 0..3 {
            assert!(!l.failed(a));
        }
        // The window passes: the whole allowance is back.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(!l.failed(a));
        }
        // Then one failure per 20 s (3 a minute) for an hour stays within it...
        for _ in 0..180 {
            clock.advance(Duration::from_secs(20));
            assert!(!l.failed(a));
        }
        assert!(!l.is_blocked(a));
        // ...but that rate leaves nothing over: one more at once is too many.
        assert!(l.failed(a));
        assert!(l.is_blocked(a));
    }

    #[test]
    fn new_connections_are_rate_limited_per_source() {
        let settings = SourceLimitSettings {
            connects_per_sec: 2,
            connect_burst: 4,
            ..SourceLimitSettings::default()
        };
        let (l, clock) = limiter(&settings);
        let (a, b) = (ip("198.51.100.7"), ip("198.51.100.8"));
        for i in 0..4 {
            assert!(l.admit(a), "connection {i} is within the burst");
        }
        assert!(!l.admit(a), "the 5th at once is refused");
        assert!(l.admit(b), "another address is not affected");
        clock.advance(Duration::from_millis(500));
        assert!(l.admit(a), "one more after 1/rate");
        assert!(!l.admit(a));
        // Connection refusals never block CONNECTs.
        assert!(!l.is_blocked(a));
    }

    #[test]
    fn loopback_and_exempt_networks_are_not_limited_unless_configured() {
        let mut settings = SourceLimitSettings {
            connects_per_sec: 1,
            connect_burst: 1,
            exempt: vec!["203.0.113.0/24".parse().expect("cidr")],
            ..limits(1, 60, 30)
        };
        let (l, _) = limiter(&settings);
        for who in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "::ffff:127.0.0.1",
            "203.0.113.9",
        ] {
            for _ in 0..5 {
                assert!(l.admit(ip(who)), "{who} is exempt");
                l.failed(ip(who));
            }
            assert!(!l.is_blocked(ip(who)), "{who} is exempt");
        }
        assert_eq!(l.tracked(), (0, 0, 0), "exempt sources take no memory");
        settings.limit_loopback = true;
        let (l, _) = limiter(&settings);
        assert!(l.admit(ip("127.0.0.1")));
        assert!(!l.admit(ip("127.0.0.1")), "loopback is limited when asked");
        assert!(!l.failed(ip("::1")));
        assert!(l.failed(ip("::1")));
        assert!(l.is_blocked(ip("::1")));
        assert!(l.admit(ip("203.0.113.9")) && l.admit(ip("203.0.113.9")));
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_ipv4_counts_as_ipv4() {
        let (l, _) = limiter(&limits(1, 60, 30));
        assert!(!l.failed(ip("2001:db8:1:2::1")));
        assert!(l.failed(ip("2001:db8:1:2:ffff::9")), "same /64: one budget");
        assert!(l.is_blocked(ip("2001:db8:1:2::77")));
        assert!(!l.is_blocked(ip("2001:db8:1:3::1")), "another /64");
        assert!(!l.failed(ip("198.51.100.7")));
        assert!(l.failed(ip("::ffff:198.51.100.7")));
        assert!(l.is_blocked(ip("198.51.100.7")));
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn stale_sources_are_forgotten_and_the_tables_stay_bounded() {
        let settings = SourceLimitSettings {
            connects_per_sec: 10,
            connect_burst: 10,
            ..limits(2, 60, 30)
        };
        let (l, clock) = limiter(&settings); // at most 100 sources a table
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0xC633_0000 + i)); // 198.51.x.y
        for i in 0..50 {
            assert!(l.admit(addr(i)));
            l.failed(addr(i));
            l.failed(addr(i));
            l.failed(addr(i)); // blocks it
        }
        assert_eq!(l.tracked(), (50, 50, 50));
        // Once budgets are full again (the failure budget after 60 s; governor keeps a
        // key one refill period longer) and blocks are over, the next sweep drops them.
        clock.advance(Duration::from_secs(60 + 30 + 1));
        assert!(l.admit(addr(1000)));
        assert_eq!(l.tracked(), (0, 1, 0));
        // Many addresses at once (no time passes, so nothing is stale): never more than
        // the bound, and fresh sources are still served.
        for i in 0..1_000 {
            assert!(l.admit(addr(2000 + i)));
            l.failed(addr(2000 + i));
            l.failed(addr(2000 + i));
            l.failed(addr(2000 + i));
            let (f, a, b) = l.tracked();
            assert!(f <= 100 && a <= 100 && b <= 100, "{:?}", (f, a, b));
        }
    }

    #[test]
    fn invalid_source_limit_settings_are_refused() {
        assert!(SourceLimiter::new(&limits(30, 0, 60)).is_err());
        assert!(SourceLimiter::new(&limits(30, 60, 0)).is_err());
        // Failure limiting off: the other fields do not matter.
        assert!(SourceLimiter::new(&limits(0, 0, 0)).is_ok());
    }

    #[tokio::test]
    async fn a_blocked_source_runs_no_argon2_and_lets_only_known_devices_and_the_hub_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = Store::connect(&url).await.expect("db");
        crate::demo::seed(&store, 0).await.expect("seed");
        let auth = authenticator_with(store, &limits(3, 60, 60));
        let attacker: SocketAddr = "198.51.100.7:50000".parse().expect("addr");
        let neighbour: SocketAddr = "198.51.100.8:50000".parse().expect("addr");
        let secret = || crate::demo::DEMO_DEVICE_SECRET.to_string();
        // Four failures across different ids and kinds: a wrong secret, an unknown id,
        // a malformed identity, and the hub's id with a wrong password.
        assert!(
            !auth
                .check(
                    attacker,
                    "demo-pendant-1".into(),
                    "demo-pendant-1".into(),
                    "guess".into()
                )
                .await
        );
        assert!(
            !auth
                .check(
                    attacker,
                    "no-such-device".into(),
                    "no-such-device".into(),
                    secret()
                )
                .await
        );
        assert!(
            !auth
                .check(
                    attacker,
                    "demo-pendant-2".into(),
                    "someone".into(),
                    secret()
                )
                .await
        );
        assert!(
            !auth
                .check(attacker, "hub".into(), "hub".into(), "guess".into())
                .await
        );
        assert!(auth.sources.is_blocked(attacker.ip()));
        // Now even the right secret is refused from there, without an argon2 run...
        let runs = || {
            auth.verifications
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let before = runs();
        assert!(
            !auth
                .check(
                    attacker,
                    "demo-pendant-3".into(),
                    "demo-pendant-3".into(),
                    secret()
                )
                .await
        );
        assert_eq!(runs(), before, "a blocked source costs no argon2 run");
        // ...while another address connects with it, and the hub's own client is never limited.
        assert!(
            auth.check(
                neighbour,
                "demo-pendant-3".into(),
                "demo-pendant-3".into(),
                secret()
            )
            .await
        );
        assert!(
            auth.check(attacker, "hub".into(), "hub".into(), "x".into())
                .await
        );
        // demo-pendant-3's secret has verified now: from the blocked address, that exact
        // secret gets through on the fingerprint (a pendant behind a NAT it shares with a
        // guesser reconnects), still without argon2; a wrong one is refused.
        let before = runs();
        assert!(
            auth.check(
                attacker,
                "demo-pendant-3".into(),
                "demo-pendant-3".into(),
                secret()
            )
            .await
        );
        assert!(
            !auth
                .check(
                    attacker,
                    "demo-pendant-3".into(),
                    "demo-pendant-3".into(),
                    "guess".into()
                )
                .await
        );
        assert_eq!(runs(), before, "still no argon2 run for the blocked source");
    }
}
