//! What the benchmark measures: the Anxin hub (a child process with its own database)
//! or a bare MQTT broker with one wildcard subscriber standing in for "the application".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde_json::Value;

use super::stats::Proc;
use crate::payload;

/// SOS events sent and when they became visible to the people who must act: on the
/// hub's websocket board, or at the bare broker's subscriber.
#[derive(Debug, Default)]
pub struct SosBook {
    inner: Mutex<SosInner>,
    /// Device-offline notices seen (hub: alarms raised; broker: Last Will messages).
    pub offline_seen: AtomicU64,
    /// The devices those notices were about.
    offline_devices: Mutex<std::collections::HashSet<String>>,
    /// `household:<id>` / `village:<id>` -> its devices: a "home unreachable" or
    /// "village outage" alarm makes every device it covers visible as offline.
    groups: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct SosInner {
    pending: HashMap<String, Instant>,
    latencies_ms: Vec<f64>,
}

impl SosBook {
    /// Mark an SOS from `device` as sent now; false if one is still outstanding.
    pub fn sent(&self, device: &str) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        if g.pending.contains_key(device) {
            return false;
        }
        g.pending.insert(device.to_owned(), Instant::now());
        true
    }

    pub fn is_pending(&self, device: &str) -> bool {
        self.inner
            .lock()
            .map(|g| g.pending.contains_key(device))
            .unwrap_or(false)
    }

    fn delivered(&self, device: &str) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(t) = g.pending.remove(device) {
                g.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }

    pub fn take_latencies(&self) -> Vec<f64> {
        self.inner
            .lock()
            .map(|mut g| std::mem::take(&mut g.latencies_ms))
            .unwrap_or_default()
    }

    /// A book that knows which devices each household and village has.
    pub fn with_groups(groups: HashMap<String, Vec<String>>) -> SosBook {
        SosBook {
            groups,
            ..SosBook::default()
        }
    }

    /// A grouped alarm (`household:<id>` or `village:<id>`) covers its devices.
    fn offline_group(&self, key: &str) {
        self.offline_seen.fetch_add(1, Ordering::Relaxed);
        if let (Some(devices), Ok(mut g)) = (self.groups.get(key), self.offline_devices.lock()) {
            g.extend(devices.iter().cloned());
        }
    }

    fn offline(&self, device: &str) {
        self.offline_seen.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.offline_devices.lock() {
            g.insert(device.to_owned());
        }
    }

    /// How many of `devices` have been seen offline.
    pub fn offline_among(&self, devices: &std::collections::HashSet<String>) -> usize {
        self.offline_devices
            .lock()
            .map(|g| devices.iter().filter(|d| g.contains(*d)).count())
            .unwrap_or(0)
    }

    /// Forget outstanding SOS events (their deliveries no longer count).
    pub fn clear_pending(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.pending.clear();
        }
    }
}

/// A task on its own thread and single-threaded runtime: the application side of the
/// benchmark (board, subscriber) must not be starved by the load generator's thousands
/// of tasks — in production it is a different process.
pub struct Dedicated {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Dedicated {
    pub fn spawn<F, Fut>(name: &str, make: F) -> anyhow::Result<Dedicated>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("runtime for the bench observer")?;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = make() => {}
                        _ = stopped => {}
                    }
                })
            })
            .context("thread for the bench observer")?;
        Ok(Dedicated { stop: Some(stop) })
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A free loopback port (bound and released; the hub binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The hub binary run as a child process on its own SQLite database.
pub struct HubProcess {
    bin: PathBuf,
    dir: PathBuf,
    pub mqtt_port: u16,
    pub http_port: u16,
    child: Option<tokio::process::Child>,
    starts: u32,
}

impl HubProcess {
    /// Create the database in `dir` and import the district in `district_dir`.
    pub async fn provision(
        bin: &Path,
        dir: &Path,
        district_dir: &Path,
        secret: &str,
        rules: &str,
    ) -> anyhow::Result<HubProcess> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("rules.toml"), rules)?;
        let hub = HubProcess {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            mqtt_port: free_port()?,
            http_port: free_port()?,
            child: None,
            starts: 0,
        };
        let out = hub
            .command()
            .args(["admin", "import", "--dir"])
            .arg(district_dir)
            .args(["--default-secret", secret])
            .output()
            .await
            .with_context(|| format!("running {}", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "hub admin import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(hub)
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.env(
            "HUB_DATABASE_URL",
            format!("sqlite://{}", self.dir.join("anxin.db").display()),
        )
        .env("HUB_MQTT__LISTEN", format!("127.0.0.1:{}", self.mqtt_port))
        .env("HUB_HTTP__LISTEN", format!("127.0.0.1:{}", self.http_port))
        .env("HUB_RULES__FILE", self.dir.join("rules.toml"))
        .env("HUB_RULES__TICK_SECS", "1")
        .env("RUST_LOG", "warn")
        // The load scenarios drive each simulated device far above a real sensor's rate
        // (1,000 devices at 16 msg/s each), which the per-device publish budget exists to
        // refuse: off for the benchmark, which measures the pipeline, not the budget.
        .env("HUB_MQTT__DEVICE_LIMITS__PUBLISHES_PER_SEC", "0")
        .kill_on_drop(true);
        c
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Start the hub (with the demo contacts, for the board token) and wait until its
    /// HTTP API answers.
    pub async fn start(&mut self) -> anyhow::Result<Duration> {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("hub-{}.log", self.starts)))?;
        let began = Instant::now();
        let child = self
            .command()
            .args(["run", "--demo"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.http());
        while began.elapsed() < Duration::from_secs(60) {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    anyhow::bail!("hub exited at start ({status}); see {}", self.log_path());
                }
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("hub did not answer within 60 s; see {}", self.log_path())
    }

    fn log_path(&self) -> String {
        self.dir
            .join(format!("hub-{}.log", self.starts))
            .display()
            .to_string()
    }

    /// SIGKILL, as a crash or power loss would.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM and wait for the graceful shutdown.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
                if tokio::time::timeout(Duration::from_secs(30), c.wait())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            let _ = c.kill().await;
        }
    }
}

/// The hub seen from outside: its metrics and a district board on the websocket.
pub struct HubSink {
    http: String,
    client: reqwest::Client,
    _ws: Dedicated,
}

impl HubSink {
    pub async fn connect(http: &str, token: &str, sos: Arc<SosBook>) -> anyhow::Result<HubSink> {
        let url = format!(
            "{}/api/ws?token={token}",
            http.replacen("http://", "ws://", 1)
        );
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let ws_task = Dedicated::spawn("bench-board", move || async move {
            let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((ws, _)) => {
                    let _ = ready_tx.send(Ok(()));
                    ws
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            while let Some(Ok(msg)) = ws.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let step = v.get("step").and_then(Value::as_str).unwrap_or_default();
                let alarm = v.get("alarm");
                let rule = alarm
                    .and_then(|a| a.get("rule_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let device = alarm
                    .and_then(|a| a.get("device_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let field = |k: &str| {
                    alarm
                        .and_then(|a| a.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                match (step, rule) {
                    ("raised" | "repeated", "sos") => sos.delivered(device),
                    ("raised", "device-offline") => sos.offline(device),
                    ("raised", "home-unreachable") => {
                        sos.offline_group(&format!("household:{}", field("household_id")))
                    }
                    ("raised", "village-outage") => {
                        sos.offline_group(&format!("village:{}", field("village_id")))
                    }
                    _ => {}
                }
            }
        })?;
        ready_rx
            .await
            .context("board websocket task ended")?
            .map_err(|e| anyhow::anyhow!("board websocket: {e}"))?;
        Ok(HubSink {
            http: http.to_owned(),
            client: reqwest::Client::new(),
            _ws: ws_task,
        })
    }

    /// Sum of a counter's series whose labels contain `labels` (e.g. `source="event"`).
    async fn metric(&self, name: &str, labels: &str) -> anyhow::Result<u64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.http))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                    && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// Device events the rules stage has processed, plus events rejected by the contract
    /// checks, so far (status messages — connects, Last Wills — are not counted).
    pub async fn processed(&self) -> anyhow::Result<u64> {
        let ok = self
            .metric("anxin_observations_processed_total", r#"source="event""#)
            .await?;
        let rejected = self.metric("anxin_payload_rejected_total", "").await?;
        Ok(ok + rejected)
    }
}

/// One wildcard subscriber on a bare broker: counts events, answers SOS events with an
/// ack on the device's ack topic (the least an application must do), watches Last Wills.
pub struct BrokerSink {
    pub events: Arc<AtomicU64>,
    _task: Dedicated,
}

impl BrokerSink {
    pub async fn connect(addr: SocketAddr, sos: Arc<SosBook>) -> anyhow::Result<BrokerSink> {
        let mut mo = MqttOptions::new(
            format!("anxin-bench-sink-{}", std::process::id()),
            addr.ip().to_string(),
            addr.port(),
        );
        mo.set_keep_alive(Duration::from_secs(30));
        mo.set_clean_session(true);
        mo.set_inflight(100);
        mo.set_max_packet_size(1 << 20, 1 << 20);
        let events = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let counted = events.clone();
        let task = Dedicated::spawn("bench-subscriber", move || async move {
            let (client, mut eventloop) = AsyncClient::new(mo, 10_000);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe_many([
                            SubscribeFilter::new(
                                "anxin/v1/devices/+/events".into(),
                                QoS::AtLeastOnce,
                            ),
                            SubscribeFilter::new(
                                "anxin/v1/devices/+/status".into(),
                                QoS::AtLeastOnce,
                            ),
                        ]);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut parts = p.topic.split('/');
                        let device = parts.nth(3).unwrap_or_default().to_owned();
                        if p.topic.ends_with("/events") {
                            counted.fetch_add(1, Ordering::Relaxed);
                            if memfind(&p.payload, br#""kind":"sos""#) {
                                sos.delivered(&device);
                                if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                                    let ack = serde_json::json!({ "event_id": v.get("event_id"), "result": "stored" });
                                    let _ = client.try_publish(
                                        payload::ack_topic(&device),
                                        QoS::AtLeastOnce,
                                        false,
                                        ack.to_string(),
                                    );
                                }
                            }
                        } else if !p.retain && memfind(&p.payload, b"offline") {
                            sos.offline(&device);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })?;
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no MQTT broker answering at {addr}; start one with `mosquitto -p {}` (or apt install mosquitto)",
                    addr.port()
                )
            })?
            .ok();
        Ok(BrokerSink {
            events,
            _task: task,
        })
    }

    pub fn processed(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Pid of the broker listening on `port`, found through /proc (for its CPU and RSS).
pub fn pid_listening_on(port: u16) -> Option<u32> {
    // Socket inode of the listener, from /proc/net/tcp (state 0A = LISTEN).
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let hex_port = format!(":{port:04X}");
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1)?.ends_with(&hex_port) && *f.get(3)? == "0A")
            .then(|| f.get(9).map(|s| s.to_string()))?
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return Some(pid);
            }
        }
    }
    None
}

/// A target's process, if we can see it.
pub fn proc_of(pid: Option<u32>) -> Option<Proc> {
    pid.map(|pid| Proc { pid })
}
