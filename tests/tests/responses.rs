//! Issue 6, response states: acknowledged (seen) → on my way (ETA) → on site → resolved.
//! An acknowledged critical alarm with nobody on site within 30 minutes re-escalates to
//! the next level; reporting "on site" stops that. Time is the hub's manual clock.

use anxin_tests::{TestHub, PATIENCE};
use device_sim::payload;
use serde_json::{json, Value};

async fn sos(hub: &TestHub, pendant: &str) -> String {
    let d = hub.device(pendant).await;
    let ack = d
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("sos acknowledged");
    ack["alarm_id"].as_str().expect("alarm id").to_owned()
}

async fn alarm(hub: &TestHub, id: &str) -> (Value, Vec<Value>) {
    let (s, body) = hub
        .api()
        .get("demo-district", &format!("/api/alarms/{id}"))
        .await;
    assert_eq!(s, 200, "{body}");
    let steps = body["timeline"].as_array().cloned().unwrap_or_default();
    (body["alarm"].clone(), steps)
}

#[tokio::test]
async fn on_my_way_then_nobody_on_site_re_escalates_and_on_site_stops_it() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let id = sos(&hub, "demo-pendant-1").await;
    let mut town = hub.ws("demo-town-1", None).await;

    // "On my way, 15 minutes" acknowledges and records the ETA.
    let now = hub::clock::Clock::now(&hub.clock);
    let (s, u) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{id}/en-route"),
            json!({"eta_minutes": 15}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["step"], "en_route");
    assert_eq!(u["alarm"]["state"], "acknowledged");
    assert_eq!(u["alarm"]["acked_by"], "c-village-1");
    assert_eq!(u["alarm"]["response"], "en_route");
    assert_eq!(u["alarm"]["eta_at"], json!(now + 15 * 60_000));
    assert_eq!(
        u["alarm"]["on_site_deadline_at"],
        json!(now + 30 * 60_000),
        "critical: someone on site within 30 min"
    );
    // Everyone watching sees who took it.
    let seen = town
        .wait_for("the en_route step", |m| m["step"] == "en_route")
        .await;
    assert_eq!(seen["actor"], "c-village-1");

    // Bad input: an ETA out of range.
    let (s, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{id}/en-route"),
            json!({"eta_minutes": 0}),
        )
        .await;
    assert_eq!(s, 400);

    // 30 minutes pass with nobody on site: the town is called in.
    hub.advance(29 * 60);
    let (a, _) = alarm(&hub, &id).await;
    assert_eq!(a["level"], 0, "not before the deadline");
    hub.advance(61);
    let (a, steps) = hub
        .eventually("re-escalated to the town and the town notified", || async {
            let (a, steps) = alarm(&hub, &id).await;
            let told = steps
                .iter()
                .any(|s| s["step"] == "notified" && s["detail"]["level"] == 1);
            (a["level"] == 1 && told).then_some((a, steps))
        })
        .await;
    assert_eq!(a["state"], "acknowledged", "still taken, but escalated");
    let esc = steps
        .iter()
        .find(|s| s["step"] == "escalated")
        .expect("an escalated step");
    assert_eq!(
        esc["detail"]["reason"],
        "acknowledged but nobody on site in time"
    );
    let notified = steps
        .iter()
        .rev()
        .find(|s| s["step"] == "notified")
        .expect("notified");
    assert_eq!(notified["detail"]["level"], 1);
    assert!(
        notified["detail"]["recipients"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("c-town-1"))),
        "{notified}"
    );

    // On site: no further re-escalation.
    let (s, u) = api
        .post(
            "demo-town-1",
            &format!("/api/alarms/{id}/on-site"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["alarm"]["response"], "on_site");
    assert_eq!(u["alarm"]["on_site_deadline_at"], Value::Null);
    hub.advance(3 * 3600);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (a, _) = alarm(&hub, &id).await;
    assert_eq!(a["level"], 1, "no escalation once someone is on site");

    // Resolved: responses are conflicts now.
    let (s, _) = api
        .post(
            "demo-town-1",
            &format!("/api/alarms/{id}/resolve"),
            json!({"disposition": "visited_ok"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{id}/on-site"),
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn a_family_says_it_is_handling_it_and_sees_it_without_the_machinery() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let mine = sos(&hub, "demo-pendant-1").await;
    let other = sos(&hub, "demo-pendant-3").await;
    let (s, u) = api
        .post(
            "demo-family-1",
            &format!("/api/alarms/{mine}/en-route"),
            json!({"eta_minutes": 40, "note": "driving over"}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["alarm"]["response"], "en_route");
    assert!(u["alarm"].get("on_site_deadline_at").is_none(), "{u}");
    assert!(u["alarm"].get("level").is_none(), "{u}");
    // Another household's alarm: refused (403), like acknowledging it.
    let (s, _) = api
        .post(
            "demo-family-1",
            &format!("/api/alarms/{other}/on-site"),
            json!({}),
        )
        .await;
    assert_eq!(s, 403);
    let (_, a) = alarm(&hub, &other).await;
    assert!(a.iter().all(|s| s["step"] != "on_site"));
}

/// "Call again every N minutes until someone answers" is bounded: a critical alarm repeats
/// every 60 s at a level, at most 5 times (`max_repeats`), then climbs at the level's
/// deadline; at the top level the repeats stop after 5.
#[tokio::test]
async fn repeats_until_answered_are_bounded_per_level() {
    let hub = TestHub::spawn().await;
    let id = sos(&hub, "demo-pendant-1").await;
    for _ in 0..40 {
        hub.advance(60);
        hub.app.alarms.run_due().await.expect("escalation pass");
    }
    let (a, steps) = alarm(&hub, &id).await;
    assert_eq!(a["level"], 2);
    let repeats_at = |level: i64| {
        steps
            .iter()
            .filter(|s| {
                s["step"] == "notified"
                    && s["detail"]["reason"] == "repeat until acknowledged"
                    && s["detail"]["level"] == level
            })
            .count()
    };
    // Level 0: 180 s deadline → repeats at 60 and 120 s; level 1: 300 s → 4 repeats;
    // level 2 (no deadline): 5 repeats in 40 minutes, not 35.
    assert_eq!(
        (repeats_at(0), repeats_at(1), repeats_at(2)),
        (2, 4, 5),
        "{steps:?}"
    );
    assert_eq!(a["renotify_at"], Value::Null, "no further repeat planned");
}
