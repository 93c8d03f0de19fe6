//! The read endpoints behind the web pages (issue 7), over HTTP: a home's alarm history
//! is newest first and its open alarms are all there; the alarm list carries the
//! sequence number a page needs to merge websocket steps; the supervisor summary counts
//! overdue alarms as escalation does and times acknowledgements.

use std::time::Duration;

use anxin_tests::TestHub;
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_home_lists_its_history_newest_first_and_every_open_alarm() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let sos = hub.raise("demo-pendant-1", "sos").await;
    hub.advance(60);
    let fall = hub.raise("demo-fall-1", "fall").await;
    let (status, body) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{sos}/resolve"),
            json!({ "disposition": "false_alarm" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, home) = api.get("demo-village-1", "/api/households/h-1").await;
    assert_eq!(status, 200, "{home}");
    assert_eq!(ids(&home["alarms"]), [fall.as_str(), sos.as_str()]);
    assert_eq!(ids(&home["open_alarms"]), [fall.as_str()]);
    assert_eq!(home["household"]["address"], "1 Demo Lane");
    assert_eq!(home["elders"][0]["name"], "Demo Elder 1");
    let devices: Vec<&str> = home["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(devices.contains(&"demo-pendant-1"), "{devices:?}");
    // The family sees the same history without the escalation machinery.
    let (status, fam) = api.get("demo-family-1", "/api/households/h-1").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&fam["alarms"]), [fall.as_str(), sos.as_str()]);
    assert!(
        fam["alarms"][0].get("level").is_none(),
        "{}",
        fam["alarms"][0]
    );
    hub.app.shutdown().await;
}

#[tokio::test]
async fn the_alarm_list_carries_the_last_step_it_reflects() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    hub.raise("demo-pendant-1", "sos").await;
    let (_, updates) = api.get("demo-district", "/api/updates?since_seq=0").await;
    let last = updates["updates"]
        .as_array()
        .and_then(|u| u.last())
        .and_then(|u| u["seq"].as_i64())
        .expect("a step");
    let (status, list) = api.get("demo-village-1", "/api/alarms").await;
    assert_eq!(status, 200);
    assert_eq!(list["seq"], json!(last));
    hub.app.shutdown().await;
}

#[tokio::test]
async fn the_summary_counts_overdue_alarms_and_times_acknowledgements() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let a = hub.raise("demo-pendant-1", "sos").await;
    let b = hub.raise("demo-pendant-3", "sos").await;
    hub.clock.advance(Duration::from_secs(30));
    let (status, _) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{a}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, s) = api.get("demo-district", "/api/summary").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["ack_today"]["acknowledged"], 1, "{s}");
    assert_eq!(s["ack_today"]["median_ms"], 30_000, "{s}");
    assert_eq!(s["ack_today"]["worst_ms"], 30_000, "{s}");
    assert_eq!(s["overdue"], json!([]), "nothing overdue yet");
    let v1 = s["villages"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["village_id"] == "v-1"))
        .expect("v-1");
    assert_eq!(
        (v1["open"].as_i64(), v1["unacknowledged"].as_i64()),
        (Some(1), Some(0))
    );

    // A day later both are still open: overdue (critical: 24 h by default).
    hub.clock.advance(Duration::from_secs(24 * 3600));
    let (_, s) = api.get("demo-district", "/api/summary").await;
    let mut overdue = ids(&s["overdue"]);
    overdue.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(overdue, want, "{s}");
    // A town sees only its own.
    let (_, s) = api.get("demo-town-2", "/api/summary").await;
    assert_eq!(ids(&s["overdue"]), [b.as_str()]);
    // Families get no summary.
    let (status, _) = api.get("demo-family-1", "/api/summary").await;
    assert_eq!(status, 403);
    hub.app.shutdown().await;
}

/// "A delivery changed" reaches staff boards in scope only: the village worker's board
/// hears of the SMS and call outcomes of its alarm; another village's board and the
/// family's page (which are not shown deliveries) hear nothing.
#[tokio::test]
async fn delivery_changes_reach_staff_boards_in_scope_only() {
    use anxin_tests::fake_twilio::FakeTwilio;
    let fake = FakeTwilio::start("AC00000000000000000000000000000001", "fake-auth-token").await;
    let tweak = fake.hub_tweak(|_| {});
    let hub = TestHub::spawn_tweaked(hub::clock::Clock::now(&hub::clock::SystemClock), tweak).await;
    let now = hub::clock::Clock::now(&hub.clock);
    let scope = hub::store::Scope::parse("village:v-1").expect("scope");
    hub.app
        .store
        .upsert_contact(
            "c-village-1",
            "Wang Wei",
            Some("+8613800000001"),
            "village",
            &scope,
            0,
            None,
            "demo-village-1",
            now,
        )
        .await
        .expect("a phone for the village worker");
    sqlx::query("UPDATE contacts SET channels = 'critical=sms' WHERE id = 'c-village-1'")
        .execute(hub.app.store.pool())
        .await
        .expect("channels");
    let mut mine = hub.ws("demo-village-1", None).await;
    let mut other = hub.ws("demo-village-3", None).await;
    let mut family = hub.ws("demo-family-1", None).await;

    let id = hub.raise("demo-pendant-1", "sos").await;
    let sms = fake.wait_for_messages(1, Duration::from_secs(10)).await;
    let delivery = mine
        .wait_for("a delivery message", |m| m["type"] == "delivery")
        .await;
    assert_eq!(delivery["alarm_id"], json!(id));
    assert_eq!(
        fake.status_callback(sms[0].sid(), "delivered").await.status,
        200
    );
    mine.wait_for("the delivered status", |m| m["type"] == "delivery")
        .await;
    let (_, d) = hub
        .api()
        .get("demo-village-1", &format!("/api/alarms/{id}/deliveries"))
        .await;
    assert_eq!(d["deliveries"][0]["status"], "delivered", "{d}");
    // Neither another village's board nor the family's page hears of it.
    for (who, ws) in [("village-3", &mut other), ("family-1", &mut family)] {
        while let Some(m) = ws.next_within(Duration::from_millis(500)).await {
            assert_ne!(m["type"], "delivery", "{who} got {m}");
        }
    }
    hub.app.shutdown().await;
}

/// A person told: contact id, name, role.
type Told = (String, String, String);

/// Who each notification told, by level, with names and roles (what the board shows as
/// 「已通知：…」 and 「已上报至镇/街道：…」), also without SMS or calls.
#[tokio::test]
async fn the_deliveries_say_who_each_notification_told_by_level() {
    let hub = TestHub::spawn().await;
    let id = hub.raise("demo-pendant-1", "sos").await;
    // Not acknowledged within 180 s: the town is told.
    hub.advance(200);
    hub.app.alarms.run_due().await.expect("escalation pass");
    let (status, d) = hub
        .api()
        .get("demo-village-1", &format!("/api/alarms/{id}/deliveries"))
        .await;
    assert_eq!(status, 200, "{d}");
    let told: Vec<(i64, Vec<Told>)> = d["notified"]
        .as_array()
        .expect("notified")
        .iter()
        .map(|n| {
            let people = n["recipients"]
                .as_array()
                .expect("recipients")
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    (s("contact_id"), s("name"), s("role"))
                })
                .collect();
            (n["level"].as_i64().unwrap_or(-1), people)
        })
        .collect();
    let p = |id: &str, name: &str, role: &str| (id.to_owned(), name.to_owned(), role.to_owned());
    assert_eq!(
        told,
        vec![
            (
                0,
                vec![
                    p("c-family-1", "Demo contact 1", "family"),
                    p("c-village-1", "Demo contact 2", "village")
                ]
            ),
            (1, vec![p("c-town-1", "Demo contact 5", "town")]),
        ],
        "{d}"
    );
}
