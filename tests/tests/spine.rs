//! The spine, end to end with real components: a device over MQTT → embedded broker →
//! rules → stored alarm → websocket → acknowledgement → escalation.

use std::time::Duration;

use anxin_tests::{TestHub, PATIENCE};
use device_sim::payload;
use serde_json::{json, Value};

fn is_step(v: &Value, step: &str) -> bool {
    v["type"] == "alarm" && v["step"] == step
}

async fn raise_sos(hub: &TestHub, device: &str) -> String {
    let dev = hub.device(device).await;
    let ack = dev
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("sos acknowledged");
    assert_eq!(ack["result"], "stored", "{ack}");
    ack["alarm_id"]
        .as_str()
        .expect("alarm id in ack")
        .to_owned()
}

async fn steps(hub: &TestHub, alarm: &str) -> Vec<String> {
    let body = hub.api().alarm("demo-district", alarm).await;
    body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sos_reaches_its_village_only_and_acknowledgement_stops_escalation() {
    let hub = TestHub::spawn().await;
    let mut village1 = hub.ws("demo-village-1", None).await;
    let mut village2 = hub.ws("demo-village-2", None).await;

    let alarm_id = raise_sos(&hub, "demo-pendant-1").await;

    let raised = village1.wait_for("raised", |v| is_step(v, "raised")).await;
    assert_eq!(raised["alarm"]["id"], alarm_id);
    assert_eq!(raised["alarm"]["household_id"], "h-1");
    assert_eq!(raised["alarm"]["severity"], "critical");
    let notified = village1
        .wait_for("notified", |v| is_step(v, "notified"))
        .await;
    let recipients = notified["detail"]["recipients"]
        .as_array()
        .expect("recipients")
        .clone();
    assert!(
        recipients.contains(&json!("c-village-1")) && recipients.contains(&json!("c-family-1")),
        "{notified}"
    );

    // Village 2 must not see village 1's alarm: the first thing it receives is its own.
    let own = raise_sos(&hub, "demo-pendant-2").await;
    let first = village2
        .wait_for("any alarm", |v| v["type"] == "alarm")
        .await;
    assert_eq!(
        first["alarm"]["id"], own,
        "village 2 received another village's alarm: {first}"
    );

    // Acknowledge as village 1 staff.
    let api = hub.api();
    let (status, body) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm_id}/acknowledge"),
            json!({"note": "calling her now"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alarm"]["state"], "acknowledged");
    assert_eq!(body["alarm"]["acked_by"], "c-village-1");
    village1
        .wait_for("acknowledged", |v| is_step(v, "acknowledged"))
        .await;
    // A second acknowledgement is a conflict, not a silent success.
    let (status, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // Someone is with her: long past every deadline, the alarm does not climb. (Without
    // "on site", an acknowledged critical alarm re-escalates after 30 min: responses.rs.)
    let (status, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm_id}/on-site"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    hub.advance(3600);
    hub.app.alarms.run_due().await.expect("escalation pass");
    let body = api.alarm("demo-village-1", &alarm_id).await;
    assert_eq!(body["alarm"]["level"], 0, "{body}");
    assert!(!steps(&hub, &alarm_id)
        .await
        .contains(&"escalated".to_owned()));
    // While the unacknowledged one in village 2 has climbed to the town.
    let other = hub
        .eventually("village 2 alarm escalated", || async {
            let b = api.alarm("demo-district", &own).await;
            (b["alarm"]["level"] == 1).then_some(b)
        })
        .await;
    assert_eq!(other["alarm"]["state"], "notified");

    // Resolve with a disposition; the timeline holds every step with who and when.
    let (status, body) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm_id}/resolve"),
            json!({"disposition": "visited_ok", "note": "fell asleep on the button"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        steps(&hub, &alarm_id).await,
        ["raised", "notified", "acknowledged", "on_site", "resolved"]
    );
    let (status, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm_id}/resolve"),
            json!({"disposition": "teleported"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unacknowledged_alarm_climbs_to_town_then_district() {
    let hub = TestHub::spawn().await;
    let mut town = hub.ws("demo-town-1", None).await;
    let mut district = hub.ws("demo-district", None).await;
    let alarm_id = raise_sos(&hub, "demo-pendant-1").await;
    let api = hub.api();

    // Critical: 3 minutes at level 0 (family + village), then the town is told.
    hub.advance(179);
    hub.app.alarms.run_due().await.expect("pass");
    assert_eq!(
        api.alarm("demo-town-1", &alarm_id).await["alarm"]["level"],
        0
    );
    hub.advance(2);
    let esc = town
        .wait_for("escalated to town", |v| is_step(v, "escalated"))
        .await;
    assert_eq!(esc["detail"]["to_level"], 1);
    let n = town
        .wait_for("town notified", |v| {
            is_step(v, "notified") && v["detail"]["level"] == 1
        })
        .await;
    assert_eq!(n["detail"]["recipients"], json!(["c-town-1"]));

    // 5 more minutes unacknowledged: the district.
    hub.advance(301);
    let esc = district
        .wait_for("escalated to district", |v| {
            is_step(v, "escalated") && v["detail"]["to_level"] == 2
        })
        .await;
    assert_eq!(esc["alarm"]["id"], alarm_id);
    let n = district
        .wait_for("district notified", |v| {
            is_step(v, "notified") && v["detail"]["level"] == 2
        })
        .await;
    assert_eq!(n["detail"]["recipients"], json!(["c-district"]));

    // The top level keeps being re-notified every minute until someone answers.
    hub.advance(61);
    let again = district
        .wait_for("repeat", |v| {
            is_step(v, "notified") && v["detail"]["reason"] == "repeat until acknowledged"
        })
        .await;
    assert_eq!(again["detail"]["level"], 2);
    let (status, _) = api
        .post(
            "demo-district",
            &format!("/api/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // The second clock: not resolved within 24 h => overdue, to the district.
    hub.advance(24 * 3600);
    district
        .wait_for("overdue", |v| is_step(v, "overdue"))
        .await;
    let s = steps(&hub, &alarm_id).await;
    assert_eq!(s.iter().filter(|x| *x == "escalated").count(), 2, "{s:?}");
    assert_eq!(s.iter().filter(|x| *x == "overdue").count(), 1, "{s:?}");
}

#[tokio::test]
async fn restarted_hub_resumes_escalation_exactly_once() {
    let hub = TestHub::spawn().await;
    let alarm_id = raise_sos(&hub, "demo-pendant-1").await;
    hub.advance(181);
    let api = hub.api();
    hub.eventually("level 1", || async {
        (api.alarm("demo-district", &alarm_id).await["alarm"]["level"] == 1).then_some(())
    })
    .await;

    // Stop mid-escalation; the level-1 deadline passes while the hub is down.
    let clock = hub.clock.clone();
    let dir = hub.dir.clone();
    let port = hub.app.mqtt_addr.port();
    hub.app.shutdown().await;
    clock.advance(Duration::from_secs(3600));
    let hub = TestHub::start(dir, clock, Some(port), None).await;
    let api = hub.api();
    hub.eventually("level 2 after restart", || async {
        (api.alarm("demo-district", &alarm_id).await["alarm"]["level"] == 2).then_some(())
    })
    .await;

    // However often the scheduler looks again, the step was taken once.
    for _ in 0..3 {
        hub.app.alarms.run_due().await.expect("pass");
    }
    let s = steps(&hub, &alarm_id).await;
    assert_eq!(s.iter().filter(|x| *x == "escalated").count(), 2, "{s:?}");
    let notified_l2: usize = {
        let body = api.alarm("demo-district", &alarm_id).await;
        body["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|e| e["step"] == "notified" && e["detail"]["level"] == 2)
            .count()
    };
    assert_eq!(
        notified_l2, 1,
        "district notified exactly once after the restart"
    );
}

#[tokio::test]
async fn scope_is_enforced_on_rest_and_websocket() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let in_v1 = raise_sos(&hub, "demo-pendant-1").await;
    let in_v3 = raise_sos(&hub, "demo-pendant-3").await;

    let ids = |body: &Value| -> Vec<String> {
        body["alarms"]
            .as_array()
            .expect("alarms")
            .iter()
            .map(|a| a["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (_, v1) = api.get("demo-village-1", "/api/alarms").await;
    assert_eq!(ids(&v1), vec![in_v1.as_str()]);
    let (_, t1) = api.get("demo-town-1", "/api/alarms").await;
    assert_eq!(ids(&t1), vec![in_v1.as_str()]);
    let (_, fam) = api.get("demo-family-1", "/api/alarms").await;
    assert_eq!(ids(&fam), vec![in_v1.as_str()]);
    let (_, d) = api.get("demo-district", "/api/alarms").await;
    assert_eq!(ids(&d).len(), 2);

    // Another village's alarm: invisible and untouchable.
    assert_eq!(
        api.get("demo-village-1", &format!("/api/alarms/{in_v3}"))
            .await
            .0,
        404
    );
    // Acting on it is refused (403) and audited.
    assert_eq!(
        api.post(
            "demo-village-1",
            &format!("/api/alarms/{in_v3}/acknowledge"),
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.post(
            "demo-family-1",
            &format!("/api/alarms/{in_v3}/resolve"),
            json!({"disposition": "other"})
        )
        .await
        .0,
        403
    );
    let (s, audit) = api.get("demo-district", "/api/audit").await;
    assert_eq!(s, 200, "{audit}");
    let denied: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["outcome"] == "denied" && e["target"] == format!("alarm:{in_v3}"))
        .collect();
    assert_eq!(denied.len(), 2, "{audit:#}");
    assert_eq!(denied[0]["actor"], "c-village-1");
    assert_eq!(denied[0]["source"], "127.0.0.1");
    assert_eq!(denied[1]["actor"], "c-family-1");
    assert_eq!(api.get("demo-town-1", "/api/audit").await.0, 403);
    // Scopes outside one's own are refused, inside are allowed.
    assert_eq!(
        api.get("demo-village-1", "/api/alarms?scope=village:v-3")
            .await
            .0,
        403
    );
    assert_eq!(
        api.get("demo-town-1", "/api/alarms?scope=village:v-3")
            .await
            .0,
        403
    );
    assert_eq!(
        api.get("demo-town-1", "/api/alarms?scope=village:v-1")
            .await
            .0,
        200
    );
    assert_eq!(
        api.get("demo-family-1", "/api/alarms?scope=district")
            .await
            .0,
        403
    );
    assert_eq!(api.get("nope", "/api/alarms").await.0, 401);
    assert!(
        anxin_tests::WsClient::connect(&hub.http, "demo-village-1", Some("town:t-2"))
            .await
            .is_err()
    );
    assert!(anxin_tests::WsClient::connect(&hub.http, "bad-token", None)
        .await
        .is_err());

    // A reconnecting client catches up with everything after the last seq it saw.
    let ws = anxin_tests::WsClient::connect(&hub.http, "demo-town-1", None)
        .await
        .expect("ws");
    let seq_now = ws.hello["seq"].as_i64().expect("seq");
    ws.close().await;
    let again = raise_sos(&hub, "demo-pendant-2").await; // v-2 is in town t-1
    let url = format!(
        "{}/api/ws?token=demo-town-1&since_seq={seq_now}",
        hub.http.replacen("http://", "ws://", 1)
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    use futures::StreamExt;
    let mut seen = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await
    {
        let v: Value = serde_json::from_str(msg.to_text().unwrap_or("null")).unwrap_or_default();
        if v["type"] == "alarm" {
            seen.push((
                v["step"].as_str().unwrap_or_default().to_owned(),
                v["alarm"]["id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            ("raised".to_owned(), again.clone()),
            ("notified".to_owned(), again)
        ]
    );
}

/// The README walkthrough: a third-party client (mosquitto_pub) publishing the
/// documented topic and payload raises an alarm on the right village's board.
/// (Latency is measured by `sos-latency`, not asserted here.)
#[tokio::test]
async fn documented_mosquitto_pub_sos_reaches_the_village_board() {
    let hub = TestHub::spawn().await;
    let mut board = hub.ws("demo-village-1", None).await;
    let payload = json!({"v": 1, "event_id": "walkthrough-1", "ts": "2026-11-29T08:30:00+08:00", "kind": "sos"}).to_string();
    let port = hub.app.mqtt_addr.port().to_string();
    let status = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311", "-q", "1"])
        .args([
            "-i",
            "demo-pendant-1",
            "-u",
            "demo-pendant-1",
            "-P",
            "demo-secret",
        ])
        .args([
            "-t",
            "anxin/v1/devices/demo-pendant-1/events",
            "-m",
            &payload,
        ])
        .status()
        .await
        .expect("mosquitto_pub is installed (apt-get install mosquitto-clients)");
    assert!(status.success());
    let raised = board.wait_for("raised", |v| is_step(v, "raised")).await;
    assert_eq!(raised["alarm"]["household_id"], "h-1");
    assert_eq!(raised["detail"]["event_id"], "walkthrough-1");
}
