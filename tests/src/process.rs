//! The real `hub` binary as a child process (built with the test-only failpoints as
//! `hub-under-test`), and raw MQTT connections that say exactly the bytes a test wants,
//! including what no well-behaved client library would send.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4 as wire;
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running hub binary with the demo district, its database in `dir`.
pub struct HubProcess {
    pub child: Child,
    /// Its stderr, line by line.
    pub log: UnboundedReceiver<String>,
    pub mqtt_port: u16,
    /// `http://127.0.0.1:<port>`
    pub http: String,
}

impl HubProcess {
    /// Start the binary; returns once it logged "hub started". `env` adds or overrides
    /// settings (`HUB_...`); with `failpoint`, it reports on stderr when it is reached.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        mqtt_port: u16,
        failpoint: Option<&str>,
        env: &[(&str, &str)],
    ) -> HubProcess {
        let http_port = free_port();
        let mut cmd = Command::new(binary);
        cmd.arg("--demo")
            .env(
                "HUB_DATABASE_URL",
                format!("sqlite://{}", dir.join("anxin.db").display()),
            )
            .env("HUB_MQTT__LISTEN", format!("127.0.0.1:{mqtt_port}"))
            .env("HUB_HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        match failpoint {
            Some(f) => cmd.env("ANXIN_FAILPOINT", f),
            None => cmd.env_remove("ANXIN_FAILPOINT"),
        };
        let mut child = cmd.spawn().expect("hub binary starts");
        let rx = stderr_lines(&mut child);
        let mut hub = HubProcess {
            child,
            log: rx,
            mqtt_port,
            http: format!("http://127.0.0.1:{http_port}"),
        };
        hub.wait_line("hub started", Duration::from_secs(30)).await;
        hub
    }

    /// Wait for a log line containing `needle`; panics after `within`.
    pub async fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        wait_line(&mut self.log, needle, within).await
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// `GET /healthz`: status and body.
    pub async fn healthz(&self) -> (u16, String) {
        let r = reqwest::get(format!("{}/healthz", self.http))
            .await
            .expect("healthz answers");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }
}

/// The child's stderr (piped), line by line.
pub fn stderr_lines(child: &mut Child) -> UnboundedReceiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    rx
}

/// `hub --demo` started the way a new user starts it: in `dir` (where the default
/// `anxin.db` goes), with no `HUB_*` setting from the test's own environment, only
/// those in `env`. Unlike [`HubProcess::start`] it sets no ports and does not wait.
pub fn spawn_as_new_user(
    binary: &Path,
    dir: &Path,
    env: &[(&str, &str)],
) -> (Child, UnboundedReceiver<String>) {
    let mut cmd = Command::new(binary);
    cmd.arg("--demo")
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("ANXIN_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().to_ascii_uppercase().starts_with("HUB_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("hub binary starts");
    let rx = stderr_lines(&mut child);
    (child, rx)
}

pub async fn wait_line(
    rx: &mut UnboundedReceiver<String>,
    needle: &str,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line.contains(needle) => return line,
            Ok(Some(_)) => continue,
            other => panic!("hub never printed {needle:?} ({other:?})"),
        }
    }
}

/// One `SELECT COUNT(*)`-style query on the hub's SQLite database.
pub async fn count(dir: &Path, sql: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("anxin.db").display()))
        .await
        .expect("db");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("query");
    pool.close().await;
    n
}

/// MQTT 3.1.1 packets as bytes.
pub mod packet {
    use super::*;

    /// CONNECT with client id = user name = `id`.
    pub fn connect(id: &str, password: &str) -> BytesMut {
        let mut c = wire::Connect::new(id);
        c.keep_alive = 30;
        c.set_login(id, password);
        let mut buf = BytesMut::new();
        c.write(&mut buf).expect("encode connect");
        buf
    }

    /// PUBLISH; `pkid` 0 means QoS 0.
    pub fn publish(topic: &str, payload: &[u8], pkid: u16) -> BytesMut {
        let qos = if pkid == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut p = wire::Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        let mut buf = BytesMut::new();
        p.write(&mut buf).expect("encode publish");
        buf
    }
}

/// A raw MQTT connection: bytes out, and whether the broker closed it.
pub struct RawMqtt {
    pub stream: TcpStream,
}

impl RawMqtt {
    /// TCP connect and send CONNECT; returns the connection and the CONNACK return code
    /// (`None` when the broker closed the connection without one).
    pub async fn connect(port: u16, connect: &[u8]) -> (RawMqtt, Option<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.write_all(connect).await.expect("send connect");
        let mut ack = [0u8; 4];
        let code = match tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut ack))
            .await
        {
            Ok(Ok(_)) if ack[0] == 0x20 => Some(ack[3]),
            _ => None,
        };
        (RawMqtt { stream }, code)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// True when the broker closes the connection within `within` (whatever it sent
    /// before that is read and ignored).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}
