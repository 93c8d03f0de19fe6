//! Issue 4 through the whole hub: a village-wide outage becomes one grouped incident
//! (and an SOS during it is still raised at once); away modes and carer visits set over
//! REST suppress absence alarms, are recorded, and survive a restart.

use std::sync::Arc;

use anxin_tests::{TestHub, SECRET};
use device_sim::payload;
use hub::clock::ManualClock;
use reqwest::Method;
use serde_json::{json, Value};

/// 2026-11-30 09:00 in the district (+08:00): a Monday, inside the daytime window.
const MONDAY_0900: i64 = 1_796_000_400_000;
const MIN: u64 = 60;

async fn alarms(hub: &TestHub, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = hub.api().get(token, &format!("/api/alarms{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["alarms"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn fifty_dark_homes_in_one_village_are_one_grouped_incident_and_sos_is_not_delayed() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let settings = anxin_tests::settings_for(dir.path());
    let store = hub::store::Store::connect(&settings.database_url)
        .await
        .expect("db");
    hub::demo::seed(&store, MONDAY_0900).await.expect("seed");
    let hash = hub::secrets::hash_secret(SECRET).expect("hash");
    store
        .upsert_village("v-out", "t-1", "Outage Village")
        .await
        .expect("village");
    for i in 0..50 {
        let h = format!("h-out-{i:02}");
        store
            .upsert_household(&h, "v-out", "Outage Lane")
            .await
            .expect("household");
        for kind in ["motion", "door"] {
            store
                .upsert_device(&format!("{h}-{kind}"), &h, kind, "test", &hash, MONDAY_0900)
                .await
                .expect("device");
        }
    }
    store
        .upsert_device(
            "h-out-00-sos",
            "h-out-00",
            "sos",
            "test",
            &hash,
            MONDAY_0900,
        )
        .await
        .expect("pendant");
    drop(store);
    let hub = TestHub::start(dir, ManualClock::new(MONDAY_0900), None, None).await;
    let pendant = hub.device("h-out-00-sos").await;

    // No home device of the village is heard from: after 3 missed 10-minute
    // heartbeats every one is offline, every home unreachable, all at once.
    hub.advance(31 * MIN);
    let grouped = hub
        .eventually("grouped incident", || async {
            let a = alarms(&hub, "demo-town-1", "?scope=village:v-out").await;
            a.iter()
                .any(|a| a["rule_id"] == "village-outage")
                .then_some(a)
        })
        .await;
    // Past every hold: nothing per home or per device for the village appears.
    hub.advance(30 * MIN);
    hub.app.alarms.run_due().await.expect("escalation pass");
    let seen = hub.processed();
    pendant
        .send(&payload::event("heartbeat", json!({})))
        .await
        .expect("heartbeat");
    hub.wait_processed(seen + 1).await;
    let all = alarms(&hub, "demo-town-1", "?scope=village:v-out").await;
    let outage: Vec<&Value> = all
        .iter()
        .filter(|a| a["rule_id"] == "village-outage")
        .collect();
    assert_eq!(outage.len(), 1, "{grouped:#?}");
    assert_eq!(outage[0]["household_id"], Value::Null);
    assert_eq!(outage[0]["village_id"], "v-out");
    assert_eq!(outage[0]["town_id"], "t-1");
    let per_home: Vec<&Value> = all
        .iter()
        .filter(|a| a["rule_id"] == "home-unreachable" || a["rule_id"] == "device-offline")
        .collect();
    assert!(per_home.is_empty(), "grouped away: {per_home:#?}");
    // Village staff of another village, and families, do not see it.
    assert!(alarms(&hub, "demo-family-1", "")
        .await
        .iter()
        .all(|a| a["rule_id"] != "village-outage"));

    // An SOS from inside the dark village is raised and acknowledged at once.
    let ack = pendant
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("sos acknowledged by the hub");
    assert!(ack["alarm_id"].is_string(), "{ack}");
    let all = alarms(&hub, "demo-town-1", "?scope=village:v-out").await;
    let sos: Vec<&Value> = all.iter().filter(|a| a["rule_id"] == "sos").collect();
    assert_eq!(sos.len(), 1);
    assert_eq!(sos[0]["household_id"], "h-out-00");
    assert_eq!(sos[0]["severity"], "critical");
}

#[tokio::test]
async fn away_mode_and_visits_set_over_rest_suppress_absence_and_survive_a_restart() {
    // The demo devices stay silent here: keep silent homes watched (no inhibition), so
    // that only the mode explains a missing alarm.
    let mut rules = alert_rules::RuleSet::DEFAULT_TOML.to_owned();
    for h in ["h-1", "h-2"] {
        rules.push_str(&format!(
            "\n[[override]]\nhousehold = \"{h}\"\nrule = \"home-unreachable\"\nenabled = false\n"
        ));
    }
    let hub = TestHub::spawn_with_rules(MONDAY_0900, &rules).await;
    let api = hub.api();
    let until = "2026-12-03T09:00:00+08:00";
    // The family sets hospital mode for their own household, not anyone else's.
    let (s, body) = api
        .call(
            Method::PUT,
            "demo-family-1",
            "/api/households/h-1/mode",
            Some(json!({"kind": "hospital", "until": until})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["mode"]["kind"], "hospital");
    let (s, _) = api
        .call(
            Method::PUT,
            "demo-family-1",
            "/api/households/h-2/mode",
            Some(json!({"kind": "away", "until": until})),
        )
        .await;
    assert_eq!(s, 404, "outside the family's scope");
    for bad in [
        json!({"kind": "party", "until": until}),
        json!({"kind": "away", "until": "tomorrow"}),
        json!({"kind": "away", "until": "2020-01-01T00:00:00+08:00"}),
    ] {
        let (s, body) = api
            .call(
                Method::PUT,
                "demo-village-1",
                "/api/households/h-1/mode",
                Some(bad),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // Five silent hours: h-2 (no mode) gets its inactivity alarm, h-1 does not.
    hub.advance(5 * 60 * MIN);
    hub.eventually("h-2 silent", || async {
        alarms(&hub, "demo-district", "")
            .await
            .iter()
            .any(|a| a["household_id"] == "h-2" && a["rule_id"] == "no-activity-daytime")
            .then_some(())
    })
    .await;
    let h1 = |a: &Vec<Value>| {
        a.iter()
            .filter(|a| {
                a["household_id"] == "h-1"
                    && a["rule_id"] != "device-offline"
                    && a["rule_id"] != "home-unreachable"
            })
            .map(|a| a["rule_id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        h1(&alarms(&hub, "demo-district", "").await),
        Vec::<String>::new()
    );

    // A carer visit checked in and out on the board is recorded.
    let (s, body) = api
        .call(
            Method::POST,
            "demo-village-1",
            "/api/households/h-1/visits",
            Some(json!({"action": "start", "carer": "tag-7"})),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, _) = api
        .call(
            Method::POST,
            "demo-family-1",
            "/api/households/h-1/visits",
            Some(json!({"action": "start"})),
        )
        .await;
    assert_eq!(s, 403, "families do not check in visits");
    hub.advance(30 * MIN);
    let (s, _) = api
        .call(
            Method::POST,
            "demo-village-1",
            "/api/households/h-1/visits",
            Some(json!({"action": "end"})),
        )
        .await;
    assert_eq!(s, 204);

    // The mode and the engine's memory survive a restart.
    let hub = hub.restart().await;
    let api = hub.api();
    hub.advance(5 * 60 * MIN);
    let (s, body) = api.get("demo-village-1", "/api/households/h-1/mode").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["mode"]["kind"], "hospital");
    let (_, after) = api.get("demo-district", "/api/alarms").await;
    assert_eq!(
        h1(&after["alarms"].as_array().cloned().unwrap_or_default()),
        Vec::<String>::new(),
        "still suppressed after the restart"
    );
    let (s, body) = api
        .get("demo-village-1", "/api/households/h-1/visits")
        .await;
    assert_eq!(s, 200);
    let visits = body["visits"].as_array().cloned().unwrap_or_default();
    assert_eq!(visits.len(), 1, "{body}");
    assert_eq!(visits[0]["carer"], "tag-7");
    assert_eq!(
        visits[0]["ended_at"].as_i64(),
        Some(MONDAY_0900 + 5 * 3_600_000 + 30 * 60_000)
    );

    // Weekly compliance: per village, for staff only.
    let (s, body) = api
        .get("demo-town-1", "/api/visits/compliance?week=2026-11-30")
        .await;
    assert_eq!(s, 200, "{body}");
    let villages = body["villages"].as_array().cloned().unwrap_or_default();
    let v1 = villages
        .iter()
        .find(|v| v["village_id"] == "v-1")
        .expect("v-1");
    assert_eq!(
        (
            v1["households"].as_i64(),
            v1["visits"].as_i64(),
            v1["meeting_target"].as_i64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(v1["below_target"][0]["household_id"], "h-1");
    assert!(
        villages.iter().all(|v| v["town_id"] == "t-1"),
        "town scope only: {villages:?}"
    );
    assert_eq!(
        api.get("demo-family-1", "/api/visits/compliance?week=2026-11-30")
            .await
            .0,
        403
    );
    assert_eq!(
        api.get("demo-town-1", "/api/visits/compliance?week=2026-12-01")
            .await
            .0,
        400
    );

    // Ending the mode: h-1 is watched again from now on (silence counts from 19:30).
    let (s, _) = api
        .call(
            Method::DELETE,
            "demo-family-1",
            "/api/households/h-1/mode",
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (_, body) = api.get("demo-village-1", "/api/households/h-1/mode").await;
    assert_eq!(body["mode"], Value::Null);
    hub.advance(14 * 60 * MIN); // to Tuesday 09:30: 2.5 h before 22:00 + 2.5 h after 07:00
    hub.eventually("h-1 watched again", || async {
        h1(&alarms(&hub, "demo-district", "").await)
            .contains(&"no-activity-daytime".to_owned())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn rules_reload_over_rest_keeps_the_old_rules_when_the_file_is_broken() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, alert_rules::RuleSet::DEFAULT_TOML).expect("write");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.rules.file = Some(file.clone());
    let store = hub::store::Store::connect(&settings.database_url)
        .await
        .expect("db");
    hub::demo::seed(&store, MONDAY_0900).await.expect("seed");
    let app = hub::App::build(settings, Arc::new(ManualClock::new(MONDAY_0900)))
        .await
        .expect("hub");
    let api = anxin_tests::Api {
        base: format!("http://{}", app.http_addr),
        http: reqwest::Client::new(),
    };
    let (s, body) = api
        .post("demo-district", "/api/admin/rules/reload", json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["rules"],
        alert_rules::RuleSet::default_rules().rule_ids().len()
    );
    assert_eq!(
        api.post("demo-village-1", "/api/admin/rules/reload", json!({}))
            .await
            .0,
        403
    );

    std::fs::write(&file, "[[rule]]\nid = \"x\"\nkind = \"instant\"\nsignal = \"smok\"\nseverity = \"critical\"\ntitle = \"X\"\n").expect("write");
    let (s, body) = api
        .post("demo-district", "/api/admin/rules/reload", json!({}))
        .await;
    assert_eq!(s, 400, "{body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains("line 4") && e.contains("smok"), "{e}");
    app.shutdown().await;
}

#[tokio::test]
async fn escalate_to_village_keeps_an_alarm_with_the_family_and_village() {
    let rules = format!(
        "{}\n[[override]]\nhousehold = \"h-1\"\nrule = \"sos\"\nescalate_to = \"village\"\n",
        alert_rules::RuleSet::DEFAULT_TOML
    );
    let hub = TestHub::spawn_with_rules(MONDAY_0900, &rules).await;
    let pendant = hub.device("demo-pendant-1").await;
    let ack = pendant
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("sos acknowledged");
    let id = ack["alarm_id"].as_str().expect("alarm id").to_owned();
    // Far past every acknowledgement deadline and the overdue limit.
    for _ in 0..6 {
        hub.advance(6 * 60 * MIN);
        hub.app.alarms.run_due().await.expect("escalation pass");
    }
    let body = hub.api().alarm("demo-village-1", &id).await;
    assert_eq!(body["alarm"]["level"], 0, "{body:#}");
    assert_eq!(body["alarm"]["max_level"], 0);
    let steps: Vec<&str> = body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["step"].as_str())
        .collect();
    assert!(!steps.contains(&"escalated"), "{steps:?}");
    assert!(
        steps.contains(&"overdue"),
        "overdue still reported: {steps:?}"
    );
    // The same SOS elsewhere (no cap) climbs.
    let other = hub.device("demo-pendant-2").await;
    let ack = other
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("sos acknowledged");
    let id2 = ack["alarm_id"].as_str().expect("alarm id").to_owned();
    for _ in 0..3 {
        hub.advance(30 * MIN);
        hub.app.alarms.run_due().await.expect("escalation pass");
    }
    let body = hub.api().alarm("demo-district", &id2).await;
    assert!(
        body["alarm"]["level"].as_i64().unwrap_or(0) >= 1,
        "{body:#}"
    );
}
