//! A hub process killed (SIGKILL, no graceful shutdown) in the middle of handling a
//! critical event loses nothing: the device's retry produces exactly one alarm and one
//! acknowledgement. The hub under test is the real binary, built with test-only
//! failpoints that stop it at the exact instant under test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anxin_tests::{PATIENCE, SECRET};
use device_sim::{payload, Device, DeviceConfig, FromHub};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn hub_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hub-under-test"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Start the hub binary; returns once it logged "hub started". With `failpoint`, it
/// reports on stderr when the failpoint is reached; the returned receiver gets those lines.
async fn start_hub(
    dir: &Path,
    mqtt_port: u16,
    failpoint: Option<&str>,
) -> (Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut cmd = Command::new(hub_binary());
    cmd.arg("--demo")
        .env(
            "HUB_DATABASE_URL",
            format!("sqlite://{}", dir.join("anxin.db").display()),
        )
        .env("HUB_MQTT__LISTEN", format!("127.0.0.1:{mqtt_port}"))
        .env("HUB_HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match failpoint {
        Some(f) => cmd.env("ANXIN_FAILPOINT", f),
        None => cmd.env_remove("ANXIN_FAILPOINT"),
    };
    let mut child = cmd.spawn().expect("hub binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    wait_line(&mut rx, "hub started", Duration::from_secs(30)).await;
    (child, rx)
}

async fn wait_line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
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

async fn count(dir: &Path, sql: &str) -> i64 {
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

/// Kill the hub at `failpoint` while it handles an SOS, restart it, and check that the
/// device's retry yields exactly one alarm and one acknowledgement.
async fn killed_at(failpoint: &str, expect_result: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (mut hub, mut log) = start_hub(dir.path(), port, Some(failpoint)).await;

    let mut cfg = DeviceConfig::new("127.0.0.1", port, "demo-pendant-1", SECRET);
    // Longer than a debug-build hub needs to commit and ack, so that a retry after the
    // restart is not overtaken by a second copy of itself.
    cfg.retry_every = Duration::from_secs(2);
    let dev = Device::connect(cfg, PATIENCE)
        .await
        .expect("device connects");
    let mut from_hub = dev.subscribe();
    let sos = payload::event("sos", json!({}));
    let event_id = sos["event_id"].as_str().expect("id").to_owned();
    let sending = tokio::spawn(async move {
        let ack = dev.send_critical(&sos, Duration::from_secs(60)).await;
        (dev, ack)
    });

    wait_line(
        &mut log,
        &format!("FAILPOINT {failpoint} {event_id}"),
        PATIENCE,
    )
    .await;
    hub.start_kill().expect("kill");
    let _ = hub.wait().await;

    let (mut hub, _log) = start_hub(dir.path(), port, None).await;
    let (dev, ack) = sending.await.expect("sender task");
    let ack = ack.expect("SOS acknowledged after the restart");
    assert_eq!(ack["result"], expect_result, "{ack}");
    let alarm_id = ack["alarm_id"].as_str().expect("alarm id").to_owned();

    // A second, new SOS: once its ack is in, every straggling ack of the first has arrived too.
    let second = payload::event("sos", json!({}));
    dev.send_critical(&second, PATIENCE)
        .await
        .expect("second SOS acknowledged");
    let mut acks_for_first = 0;
    while let Ok(msg) = from_hub.try_recv() {
        if let FromHub::Ack(v) = msg {
            if v["event_id"].as_str() == Some(event_id.as_str()) {
                acks_for_first += 1;
            }
        }
    }
    assert_eq!(acks_for_first, 1, "exactly one acknowledgement for the SOS");
    dev.disconnect().await;
    hub.start_kill().expect("kill");
    let _ = hub.wait().await;

    assert_eq!(
        count(dir.path(), "SELECT COUNT(*) FROM alarms").await,
        1,
        "one alarm: the second SOS attached to it"
    );
    assert_eq!(
        count(
            dir.path(),
            &format!("SELECT COUNT(*) FROM alarms WHERE id = '{alarm_id}' AND repeat_count = 1")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            dir.path(),
            &format!("SELECT COUNT(*) FROM device_events WHERE event_id = '{event_id}'")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn killed_after_broker_receipt_before_commit_loses_nothing() {
    // The broker had PUBACKed the SOS; the hub dies before the database commit.
    killed_at("hold_before_commit", "stored").await;
}

#[tokio::test]
async fn killed_after_commit_before_ack_does_not_duplicate() {
    // The alarm is committed; the hub dies before the device is acknowledged. The retry
    // is recognised by its event id.
    killed_at("exit_after_commit", "duplicate").await;
}
