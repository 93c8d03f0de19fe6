//! Time-based rules through the whole hub: the engine's timers run on the hub's clock,
//! their alarms land in the store and on the board, and their memory survives a restart.

use anxin_tests::TestHub;
use device_sim::payload;
use serde_json::{json, Value};

/// 2026-11-30 09:00 in the district (+08:00), inside the default daytime window 07:00-22:00.
const MONDAY_0900: i64 = 1_796_000_400_000;

async fn open_alarms(hub: &TestHub, token: &str) -> Vec<Value> {
    let (status, body) = hub.api().get(token, "/api/alarms").await;
    assert_eq!(status, 200, "{body}");
    body["alarms"].as_array().cloned().unwrap_or_default()
}

fn has_rule(alarms: &[Value], rule: &str, device: Option<&str>) -> bool {
    alarms
        .iter()
        .any(|a| a["rule_id"] == rule && device.is_none_or(|d| a["device_id"] == d))
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back() {
    let hub = TestHub::spawn_at(MONDAY_0900).await;
    let pir = hub.device("demo-pir-1").await;
    let seen = hub.processed();
    pir.send(&payload::event("heartbeat", json!({})))
        .await
        .expect("heartbeat");
    hub.wait_processed(seen + 1).await;

    // Default: offline after 3 missed 10-minute heartbeats.
    hub.advance(29 * 60);
    hub.app.alarms.run_due().await.expect("pass");
    assert!(!has_rule(
        &open_alarms(&hub, "demo-village-1").await,
        "device-offline",
        Some("demo-pir-1")
    ));
    hub.advance(2 * 60);
    let alarms = hub
        .eventually("device-offline raised", || async {
            let a = open_alarms(&hub, "demo-village-1").await;
            has_rule(&a, "device-offline", Some("demo-pir-1")).then_some(a)
        })
        .await;
    let alarm = alarms
        .iter()
        .find(|a| a["rule_id"] == "device-offline" && a["device_id"] == "demo-pir-1")
        .expect("alarm");
    assert_eq!(alarm["severity"], "warning");
    let id = alarm["id"].as_str().expect("id").to_owned();

    // It speaks again: the condition clears (the alarm stays open for a person to close).
    pir.send(&payload::event("heartbeat", json!({})))
        .await
        .expect("heartbeat");
    hub.eventually("cleared step", || async {
        let body = hub.api().alarm("demo-village-1", &id).await;
        body["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .any(|e| e["step"] == "cleared")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn daytime_silence_raises_inactivity_and_the_timer_survives_a_restart() {
    let hub = TestHub::spawn_at(MONDAY_0900).await;
    let pir = hub.device("demo-pir-1").await;
    let seen = hub.processed();
    pir.send(&payload::event(
        "motion",
        json!({"occupancy": true, "room": "kitchen"}),
    ))
    .await
    .expect("motion");
    // The motion is observed at 09:00 before the clock moves.
    hub.wait_processed(seen + 1).await;
    drop(pir);

    // 2 h of silence, then the hub restarts; its rule memory is saved on the way down.
    hub.advance(2 * 3600);
    let hub = hub.restart().await;
    hub.advance(3600 + 59 * 60); // 3 h 59 min of silence in all
    hub.app.alarms.run_due().await.expect("pass");
    assert!(
        !has_rule(
            &open_alarms(&hub, "demo-village-1").await,
            "no-activity-daytime",
            None
        ),
        "raised too early"
    );

    hub.advance(2 * 60); // past 4 h since the last motion, counted across the restart
    let alarms = hub
        .eventually("inactivity raised", || async {
            let a = open_alarms(&hub, "demo-village-1").await;
            has_rule(&a, "no-activity-daytime", None).then_some(a)
        })
        .await;
    let a = alarms
        .iter()
        .find(|a| a["rule_id"] == "no-activity-daytime")
        .expect("alarm");
    assert_eq!(a["household_id"], "h-1");
    assert_eq!(a["severity"], "warning");
    // One alarm per condition, however many ticks pass.
    hub.advance(3600);
    hub.app.alarms.run_due().await.expect("pass");
    let n = open_alarms(&hub, "demo-village-1")
        .await
        .iter()
        .filter(|a| a["rule_id"] == "no-activity-daytime")
        .count();
    assert_eq!(n, 1);
}
