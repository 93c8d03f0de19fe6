//! Test harness for the end-to-end tests in `tests/tests/`.
//!
//! [`TestHub::spawn`] starts a complete hub in-process: embedded broker and HTTP on
//! ephemeral ports, a fresh SQLite file in a temporary directory, the demo district,
//! and a [`ManualClock`] so escalation deadlines pass when the test says so.
//! [`WsClient`] is a websocket board client; devices come from `device-sim`.

pub mod browser;
pub mod fake_twilio;
pub mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use device_sim::{Device, DeviceConfig};
use futures::{SinkExt, StreamExt};
use hub::clock::{Clock, ManualClock, SystemClock};
use hub::{App, Settings};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = hub::demo::DEMO_DEVICE_SECRET;

/// The hub's `/metrics` text (`http`: `http://host:port`).
async fn metrics_text(http: &str) -> String {
    reqwest::get(format!("{http}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one series on `/metrics`, e.g. `anxin_x_total{code="y"}` (0 while it does
/// not exist yet; the recorder is shared by every in-process hub of a test binary).
pub async fn metric(http: &str, series: &str) -> f64 {
    metrics_text(http)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A metric summed over all its labels (0 when absent).
pub async fn metric_total(http: &str, name: &str) -> f64 {
    metrics_text(http)
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Changes to the test settings, kept across restarts (e.g. a webhook URL).
pub type Tweak = Arc<dyn Fn(&mut Settings) + Send + Sync>;

pub struct TestHub {
    pub app: App,
    pub clock: ManualClock,
    pub dir: Arc<tempfile::TempDir>,
    pub http: String,
    pub tweak: Option<Tweak>,
}

pub fn settings_for(dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        database_url: format!("sqlite://{}", dir.join("anxin.db").display()),
        ..Default::default()
    };
    s.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    s.mqtt.segment_bytes = 1024 * 1024;
    s.http.listen = "127.0.0.1:0".parse().expect("addr");
    s
}

impl TestHub {
    pub async fn spawn() -> TestHub {
        Self::spawn_at(SystemClock.now()).await
    }

    /// A hub whose clock starts at `start` (unix ms): for rules with time-of-day windows.
    pub async fn spawn_at(start: i64) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start(dir, ManualClock::new(start), None, None).await
    }

    /// A hub whose settings `tweak` changes (kept across [`TestHub::restart`]).
    pub async fn spawn_tweaked(start: i64, tweak: Tweak) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start(dir, ManualClock::new(start), None, Some(tweak)).await
    }

    /// A hub running `rules` (TOML) instead of the built-in rules; restarts keep them.
    pub async fn spawn_with_rules(start: i64, rules: &str) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        std::fs::write(dir.path().join("rules.toml"), rules).expect("write rules");
        Self::start(dir, ManualClock::new(start), None, None).await
    }

    /// A hub on a simulated clock (`hub run --simulated-clock`), for `device-sim run`.
    pub async fn spawn_simulated(start: i64, rules_file: Option<PathBuf>) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let clock = ManualClock::new(start);
        let mut settings = settings_for(dir.path());
        settings.rules.file = rules_file;
        let store = hub::store::Store::connect(&settings.database_url)
            .await
            .expect("db");
        hub::demo::seed(&store, start).await.expect("seed");
        let app = App::build_simulated(settings, clock.clone())
            .await
            .expect("hub starts");
        let http = format!("http://{}", app.http_addr);
        TestHub {
            app,
            clock,
            dir,
            http,
            tweak: None,
        }
    }

    /// Start a hub on `dir`'s database; `mqtt_port` reuses a port (restart tests).
    pub async fn start(
        dir: Arc<tempfile::TempDir>,
        clock: ManualClock,
        mqtt_port: Option<u16>,
        tweak: Option<Tweak>,
    ) -> TestHub {
        Self::start_on(dir, clock, mqtt_port, None, tweak).await
    }

    /// [`TestHub::start`], also reusing an HTTP port (pages that reconnect to the same
    /// address).
    pub async fn start_on(
        dir: Arc<tempfile::TempDir>,
        clock: ManualClock,
        mqtt_port: Option<u16>,
        http_port: Option<u16>,
        tweak: Option<Tweak>,
    ) -> TestHub {
        if std::env::var_os("ANXIN_TEST_LOG").is_some() {
            hub::telemetry::init_logging(); // e.g. ANXIN_TEST_LOG=1 RUST_LOG=hub=debug
        }
        let mut settings = settings_for(dir.path());
        if let Some(p) = mqtt_port {
            settings.mqtt.listen.set_port(p);
        }
        if let Some(p) = http_port {
            settings.http.listen.set_port(p);
        }
        let rules = dir.path().join("rules.toml");
        if rules.exists() {
            settings.rules.file = Some(rules);
        }
        if let Some(t) = &tweak {
            t(&mut settings);
        }
        let store = hub::store::Store::connect(&settings.database_url)
            .await
            .expect("db");
        hub::demo::seed(&store, clock.now()).await.expect("seed");
        let app = App::build(settings, Arc::new(clock.clone()))
            .await
            .expect("hub starts");
        let http = format!("http://{}", app.http_addr);
        TestHub {
            app,
            clock,
            dir,
            http,
            tweak,
        }
    }

    /// Graceful stop, then start again on the same database, clock and MQTT port.
    pub async fn restart(self) -> TestHub {
        let (dir, clock, port, tweak) = (
            self.dir.clone(),
            self.clock.clone(),
            self.app.mqtt_addr.port(),
            self.tweak.clone(),
        );
        self.app.shutdown().await;
        Self::start(dir, clock, Some(port), tweak).await
    }

    /// Stop, then start again on the same database, clock, MQTT *and* HTTP ports (a
    /// browser page reconnects to the address it came from). `between` runs while the
    /// hub is down.
    pub async fn restart_in_place<F: std::future::Future<Output = ()>>(
        self,
        between: F,
    ) -> TestHub {
        let (dir, clock, mqtt, http, tweak) = (
            self.dir.clone(),
            self.clock.clone(),
            self.app.mqtt_addr.port(),
            self.app.http_addr.port(),
            self.tweak.clone(),
        );
        self.app.shutdown().await;
        between.await;
        Self::start_on(dir, clock, Some(mqtt), Some(http), tweak).await
    }

    pub fn device_config(&self, id: &str) -> DeviceConfig {
        let mut c = DeviceConfig::new("127.0.0.1", self.app.mqtt_addr.port(), id, SECRET);
        c.retry_every = Duration::from_millis(500);
        c
    }

    pub async fn device(&self, id: &str) -> Device {
        Device::connect(self.device_config(id), PATIENCE)
            .await
            .expect("device connects")
    }

    pub async fn ws(&self, token: &str, scope: Option<&str>) -> WsClient {
        WsClient::connect(&self.http, token, scope)
            .await
            .expect("websocket connects")
    }

    /// A demo device reports a critical event (`sos`, `fall`, ...) and disconnects; the id
    /// of the alarm, once the hub has committed it and acknowledged the device.
    pub async fn raise(&self, device: &str, kind: &str) -> String {
        let d = self.device(device).await;
        let ack = d
            .send_critical(
                &device_sim::payload::event(kind, serde_json::json!({})),
                PATIENCE,
            )
            .await
            .expect("critical event acknowledged");
        d.disconnect().await;
        ack["alarm_id"].as_str().expect("alarm id").to_owned()
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.http.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Observations the rules stage has handled so far.
    pub fn processed(&self) -> u64 {
        self.app
            .processed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wait until the rules stage has handled `n` observations in all.
    pub async fn wait_processed(&self, n: u64) {
        self.eventually(&format!("{n} observations processed"), || async {
            (self.processed() >= n).then_some(())
        })
        .await
    }

    /// Poll `check` until it returns Some, or fail after [`PATIENCE`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(what, &mut check).await
    }
}

pub async fn eventually<T, F, Fut>(what: &str, check: &mut F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// REST client with a contact token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any method, optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn alarm(&self, token: &str, id: &str) -> Value {
        let (status, body) = self.get(token, &format!("/api/alarms/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A websocket board client.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub hello: Value,
}

impl WsClient {
    pub async fn connect(http: &str, token: &str, scope: Option<&str>) -> anyhow::Result<WsClient> {
        let mut url = format!(
            "{}/api/ws?token={token}",
            http.replacen("http://", "ws://", 1)
        );
        if let Some(s) = scope {
            url.push_str(&format!("&scope={s}"));
        }
        let (mut stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("ws connect")?;
        let hello = match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(&t)?,
            other => anyhow::bail!("no hello: {other:?}"),
        };
        Ok(WsClient { stream, hello })
    }

    /// Next alarm message, or None if nothing arrives within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Read until the server closes the socket: the close code (None if the stream ended
    /// without a close frame, or nothing came within `within`).
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Wait for the first message matching `pred`, skipping others.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!("websocket: timed out waiting for {what}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.send(Message::Close(None)).await;
    }
}
