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

/// The demo household h-1's devices.
const H1: [&str; 6] = [
    "demo-pendant-1",
    "demo-fall-1",
    "demo-pir-1",
    "demo-door-1",
    "demo-smoke-1",
    "demo-water-1",
];

/// The default rules, with h-1's absence rules not suspended when its devices are silent
/// (these tests connect only the devices they need).
fn rules_without_inhibition() -> String {
    format!(
        "{}
[[override]]
household = \"h-1\"
rule = \"home-unreachable\"
enabled = false
",
        alert_rules::RuleSet::DEFAULT_TOML
    )
}

#[tokio::test]
async fn a_silent_device_goes_offline_after_the_hold_and_comes_back() {
    let hub = TestHub::spawn_at(MONDAY_0900).await;
    let mut devices = Vec::new();
    for id in H1 {
        devices.push(hub.device(id).await);
    }
    let beat = |skip: Option<&'static str>| {
        let devices = &devices;
        let hub = &hub;
        async move {
            let seen = hub.processed();
            let mut n = 0;
            for d in devices.iter().filter(|d| Some(d.id()) != skip) {
                d.send(&payload::event("heartbeat", json!({})))
                    .await
                    .expect("heartbeat");
                n += 1;
            }
            hub.wait_processed(seen + n).await;
        }
    };
    beat(None).await;
    // The pir falls silent; the rest of the home keeps reporting.
    hub.advance(20 * 60);
    beat(Some("demo-pir-1")).await;

    // Offline after 3 missed 10-minute heartbeats, then held 10 minutes in case the
    // whole home is going dark (then it would be one "home unreachable" alarm).
    hub.advance(11 * 60);
    hub.app.alarms.run_due().await.expect("pass");
    assert!(!has_rule(
        &open_alarms(&hub, "demo-village-1").await,
        "device-offline",
        Some("demo-pir-1")
    ));
    hub.advance(10 * 60);
    let pir = &devices[2];
    let alarms = hub
        .eventually("device-offline raised", || async {
            let a = open_alarms(&hub, "demo-village-1").await;
            has_rule(&a, "device-offline", Some("demo-pir-1")).then_some(a)
        })
        .await;
    assert!(!has_rule(&alarms, "home-unreachable", None), "{alarms:#?}");
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
    let hub = TestHub::spawn_with_rules(MONDAY_0900, &rules_without_inhibition()).await;
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

#[tokio::test]
async fn a_home_gone_dark_is_one_alarm_and_clears_when_heard_again() {
    let hub = TestHub::spawn_at(MONDAY_0900).await;
    // None of h-1's six devices is heard from: unreachable after 30 min, announced after
    // the 10-minute hold that lets a village-wide outage group its homes.
    hub.advance(41 * 60);
    let alarms = hub
        .eventually("home unreachable", || async {
            let a = open_alarms(&hub, "demo-village-1").await;
            has_rule(&a, "home-unreachable", None).then_some(a)
        })
        .await;
    hub.advance(30 * 60);
    hub.app.alarms.run_due().await.expect("pass");
    let alarms_later = open_alarms(&hub, "demo-village-1").await;
    let h1: Vec<&Value> = alarms_later
        .iter()
        .filter(|a| a["household_id"] == "h-1")
        .collect();
    assert_eq!(
        h1.len(),
        1,
        "one alarm for the dark home: {h1:#?} (first: {alarms:#?})"
    );
    assert_eq!(h1[0]["rule_id"], "home-unreachable");
    let id = h1[0]["id"].as_str().expect("id").to_owned();

    // Four of six devices report again: reachable, the condition clears.
    for d in &H1[..4] {
        let dev = hub.device(d).await;
        let seen = hub.processed();
        dev.send(&payload::event("heartbeat", json!({})))
            .await
            .expect("heartbeat");
        hub.wait_processed(seen + 1).await;
    }
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
