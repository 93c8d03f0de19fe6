//! A hub process killed (SIGKILL, no graceful shutdown) in the middle of handling a
//! critical event loses nothing: the device's retry produces exactly one alarm and one
//! acknowledgement. The hub under test is the real binary, built with test-only
//! failpoints that stop it at the exact instant under test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anxin_tests::process::{count, free_port, HubProcess};
use anxin_tests::{PATIENCE, SECRET};
use device_sim::{payload, Device, DeviceConfig, FromHub};
use serde_json::json;

fn hub_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hub-under-test"))
}

async fn start_hub(dir: &Path, port: u16, failpoint: Option<&str>) -> HubProcess {
    HubProcess::start(&hub_binary(), dir, port, failpoint, &[]).await
}

/// Kill the hub at `failpoint` while it handles an SOS, restart it, and check that the
/// device's retry yields exactly one alarm and one acknowledgement.
async fn killed_at(failpoint: &str, expect_result: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut hub = start_hub(dir.path(), port, Some(failpoint)).await;

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

    hub.wait_line(&format!("FAILPOINT {failpoint} {event_id}"), PATIENCE)
        .await;
    hub.kill().await;

    let mut hub = start_hub(dir.path(), port, None).await;
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
    hub.kill().await;

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
