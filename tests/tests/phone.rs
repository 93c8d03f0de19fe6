//! Issue 6 end to end with the local Twilio-compatible server: a critical alarm calls the
//! village worker and the family; the worker presses 1 on the phone → acknowledged, and
//! the family gets an SMS saying who took it. An SMS reply "2" marks "on my way". An
//! unanswered call falls back to an SMS. Twilio answering 500, then 429, then accepting
//! sends exactly one SMS. Forged callbacks are refused. Time is the hub's manual clock.

use std::time::Duration;

use anxin_tests::fake_twilio::{Endpoint, Failure, FakeTwilio, Signing};
use anxin_tests::{TestHub, PATIENCE};
use device_sim::payload;
use serde_json::json;

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "fake-twilio-auth-token";
const VILLAGE_PHONE: &str = "+8613800000001";
const FAMILY_PHONE: &str = "+8613800000002";

/// A hub whose SMS and calls go to `fake`.
async fn hub_with_phones(fake: &FakeTwilio, channels: Option<&str>) -> TestHub {
    let tweak = fake.hub_tweak(|_| {});
    let hub = TestHub::spawn_tweaked(hub::clock::Clock::now(&hub::clock::SystemClock), tweak).await;
    set_phones(&hub, channels).await;
    hub
}

/// Phones (and channel lists) for the demo's village worker and family of h-1. (The test
/// hub seeds the demo district at every start, which clears them: call again after a
/// restart.)
async fn set_phones(hub: &TestHub, channels: Option<&str>) {
    let store = &hub.app.store;
    let now = hub::clock::Clock::now(&hub.clock);
    for (id, role, scope, phone, token) in [
        (
            "c-village-1",
            "village",
            "village:v-1",
            VILLAGE_PHONE,
            "demo-village-1",
        ),
        (
            "c-family-1",
            "family",
            "household:h-1",
            FAMILY_PHONE,
            "demo-family-1",
        ),
    ] {
        let scope = hub::store::Scope::parse(scope).expect("scope");
        store
            .upsert_contact(id, "n", Some(phone), role, &scope, 0, None, token, now)
            .await
            .expect("contact phone");
        if let Some(c) = channels {
            sqlx::query("UPDATE contacts SET channels = $1 WHERE id = $2")
                .bind(c)
                .bind(id)
                .execute(store.pool())
                .await
                .expect("channels");
        }
    }
}

async fn sos(hub: &TestHub) -> String {
    let d = hub.device("demo-pendant-1").await;
    let ack = d
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("sos acknowledged");
    ack["alarm_id"].as_str().expect("alarm id").to_owned()
}

/// `GET /api/alarms/{id}` as the district: (status, body).
async fn alarm_of(hub: &TestHub, id: &str) -> (u16, serde_json::Value) {
    hub.api()
        .get("demo-district", &format!("/api/alarms/{id}"))
        .await
}

fn to(r: &anxin_tests::fake_twilio::Request) -> String {
    r.param("To").unwrap_or_default().to_owned()
}

#[tokio::test]
async fn pressing_1_acknowledges_and_the_family_is_told_who_took_it() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, None).await;
    let id = sos(&hub).await;

    // Critical: both are called first (voice, then SMS if a call fails).
    let calls = fake.wait_for_calls(2, PATIENCE).await;
    let mut called: Vec<String> = calls.iter().map(to).collect();
    called.sort();
    assert_eq!(called, [VILLAGE_PHONE, FAMILY_PHONE]);
    let village_call = calls
        .iter()
        .find(|c| to(c) == VILLAGE_PHONE)
        .and_then(|c| c.sid.clone())
        .expect("call sid");
    let twiml = fake.answer(&village_call).await;
    assert!(twiml.contains("<Gather"), "{twiml}");
    assert!(
        twiml.contains("SOS"),
        "the call says what happened: {twiml}"
    );

    // A forged key press changes nothing.
    let forged = fake
        .with_signing(Signing::Forged)
        .press(&village_call, "1")
        .await;
    assert_eq!(forged.status, 403);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["state"], "notified");

    // Any other key repeats the menu; 1 acknowledges.
    let again = fake.press(&village_call, "5").await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains("<Gather"), "{}", again.body);
    let done = fake.press(&village_call, "1").await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("已确认"), "{}", done.body);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["state"], "acknowledged");
    assert_eq!(a["alarm"]["acked_by"], "c-village-1");
    assert_eq!(a["alarm"]["ack_via"], "voice");

    // The family, who was called too, is told by SMS who took it.
    let sms = fake.wait_for_messages(1, PATIENCE).await;
    assert_eq!(to(&sms[0]), FAMILY_PHONE);
    let body = sms[0].param("Body").unwrap_or_default();
    assert!(body.contains("c-village-1"), "{body}");
    assert!(
        !fake.messages().iter().any(|m| to(m) == VILLAGE_PHONE),
        "the taker is not told about themselves"
    );
    // The acknowledgement is audited as the village worker's, from the phone.
    let (_, audit) = hub
        .api()
        .get("demo-district", "/api/audit?limit=1000")
        .await;
    assert!(
        audit["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|x| x["action"] == "alarm.acknowledge"
                && x["actor"] == "c-village-1"
                && x["source"] == "voice")),
        "{audit}"
    );
}

#[tokio::test]
async fn an_sms_reply_2_means_on_my_way() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, Some("critical=sms")).await;
    let id = sos(&hub).await;
    let sms = fake.wait_for_messages(2, PATIENCE).await;
    let to_village = sms
        .iter()
        .find(|m| to(m) == VILLAGE_PHONE)
        .expect("an SMS to the village worker");
    let body = to_village.param("Body").unwrap_or_default();
    assert!(body.contains("回复1确认"), "{body}");
    assert!(
        body.contains(&format!("/board/alarms/{id}")),
        "a link: {body}"
    );

    let webhook = format!("{}{}", hub.http, hub::phone::SMS_PATH);
    // Forged: refused, nothing changes.
    let forged = fake
        .with_signing(Signing::Forged)
        .incoming_sms(VILLAGE_PHONE, "+15005550006", "1", &webhook)
        .await;
    assert_eq!(forged.status, 403);
    let reply = fake
        .incoming_sms(VILLAGE_PHONE, "+15005550006", " 2 ", &webhook)
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<Message>"), "{}", reply.body);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["state"], "acknowledged");
    assert_eq!(a["alarm"]["acked_by"], "c-village-1");
    assert_eq!(a["alarm"]["ack_via"], "sms");
    assert_eq!(a["alarm"]["response"], "en_route");
    // A number nobody was sent anything: told so, nothing changes.
    let stranger = fake
        .incoming_sms("+8613999999999", "+15005550006", "9", &webhook)
        .await;
    assert!(stranger.body.contains("No open alarm"), "{}", stranger.body);
}

#[tokio::test]
async fn an_unanswered_call_falls_back_to_an_sms() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, None).await;
    let id = sos(&hub).await;
    let calls = fake.wait_for_calls(2, PATIENCE).await;
    let village_call = calls
        .iter()
        .find(|c| to(c) == VILLAGE_PHONE)
        .and_then(|c| c.sid.clone())
        .expect("call sid");
    let r = fake.status_callback(&village_call, "no-answer").await;
    assert_eq!(r.status, 200);
    let sms = fake.wait_for_messages(1, PATIENCE).await;
    assert_eq!(to(&sms[0]), VILLAGE_PHONE);
    let d = hub.app.store.deliveries(&id).await.expect("deliveries");
    let voice = d
        .iter()
        .find(|d| d.contact_id == "c-village-1" && d.channel == "voice")
        .expect("the call");
    assert_eq!(voice.state, "failed");
    assert_eq!(voice.status.as_deref(), Some("no-answer"));
}

#[tokio::test]
async fn twilio_500_then_429_then_ok_sends_exactly_one_sms() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, Some("critical=sms")).await;
    // The first two SMS requests fail (the family's and the village worker's go first).
    fake.script(
        Endpoint::Messages,
        [
            Failure::ServerError,
            Failure::RateLimited {
                retry_after_secs: Some(1),
            },
        ],
    );
    let id = sos(&hub).await;
    anxin_tests::eventually("two refused SMS requests", &mut || async {
        (fake.requests().len() >= 2).then_some(())
    })
    .await;
    // Retries wait on the hub's clock.
    hub.advance(6);
    let sent = fake.wait_for_messages(2, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.advance(600);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_alarm: Vec<_> = fake
        .messages()
        .into_iter()
        .filter(|m| m.param("Body").is_some_and(|b| b.contains(&id)))
        .collect();
    let mut phones: Vec<String> = to_alarm.iter().map(to).collect();
    phones.sort();
    // Later repeats of the alarm (every 60 s until acknowledged) are new notifications;
    // the first notification reached each phone exactly once.
    let first: Vec<String> = sent.iter().map(to).collect();
    assert_eq!(first.len(), 2);
    assert!(first.contains(&VILLAGE_PHONE.to_owned()) && first.contains(&FAMILY_PHONE.to_owned()));
    let d = hub.app.store.deliveries(&id).await.expect("deliveries");
    let step = d.iter().map(|d| d.step_seq).min().expect("a delivery");
    let firsts: Vec<_> = d.iter().filter(|d| d.step_seq == step).collect();
    assert_eq!(firsts.len(), 2);
    assert!(firsts.iter().all(|d| d.state == "sent"), "{firsts:?}");
    assert_eq!(
        firsts.iter().map(|d| d.attempts).sum::<i64>(),
        4,
        "two failures and two successes"
    );
    assert!(phones.len() >= 2, "{phones:?}");
}

const ELDER_PHONE: &str = "+8613800000009";

/// A fall reported by the pendant of h-1, whose elder now has a phone.
async fn fall_with_elder_phone(hub: &TestHub) -> String {
    hub.app
        .store
        .upsert_elder("e-1", "h-1", "Demo Elder 1", Some(ELDER_PHONE))
        .await
        .expect("elder phone");
    let d = hub.device("demo-pendant-1").await;
    let ack = d
        .send_critical(&payload::event("fall", json!({})), PATIENCE)
        .await
        .expect("fall acknowledged");
    ack["alarm_id"].as_str().expect("alarm id").to_owned()
}

async fn steps(hub: &TestHub, id: &str) -> Vec<String> {
    let (_, a) = alarm_of(hub, id).await;
    a["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|s| s["step"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_elder_presses_1_and_nobody_else_is_disturbed() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, None).await;
    let id = fall_with_elder_phone(&hub).await;
    let calls = fake.wait_for_calls(1, PATIENCE).await;
    assert_eq!(to(&calls[0]), ELDER_PHONE, "the elder is called first");
    let sid = calls[0].sid.clone().expect("sid");
    let twiml = fake.answer(&sid).await;
    assert!(twiml.contains("请按1"), "{twiml}");
    let r = fake.press(&sid, "1").await;
    assert_eq!(r.status, 200);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["state"], "resolved");
    assert_eq!(a["alarm"]["disposition"], "elder_confirmed_ok");
    assert_eq!(a["alarm"]["resolved_by"], "elder:e-1");
    assert_eq!(steps(&hub, &id).await, ["raised", "verifying", "resolved"]);
    // Nobody else is called or texted, now or later.
    hub.advance(600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls().len(), 1);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn the_elder_not_answering_or_pressing_another_key_tells_the_contacts_at_once() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, None).await;

    // Another key: the contacts are called now.
    let id = fall_with_elder_phone(&hub).await;
    let calls = fake.wait_for_calls(1, PATIENCE).await;
    let sid = calls[0].sid.clone().expect("sid");
    fake.answer(&sid).await;
    let r = fake.press(&sid, "3").await;
    assert_eq!(r.status, 200);
    let calls = fake.wait_for_calls(3, PATIENCE).await;
    let mut called: Vec<String> = calls[1..].iter().map(to).collect();
    called.sort();
    assert_eq!(called, [VILLAGE_PHONE, FAMILY_PHONE]);
    assert_eq!(steps(&hub, &id).await, ["raised", "verifying", "notified"]);
    let (s, _) = hub
        .api()
        .post(
            "demo-village-1",
            &format!("/api/alarms/{id}/resolve"),
            json!({"disposition": "visited_ok"}),
        )
        .await;
    assert_eq!(s, 200);

    // No answer at all: the contacts are told when the 3 minutes are up, not before.
    let id = fall_with_elder_phone(&hub).await;
    fake.wait_for_calls(4, PATIENCE).await;
    hub.advance(170);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.calls().len(),
        4,
        "still waiting for the elder: {:?} {}",
        fake.calls().iter().map(to).collect::<Vec<_>>(),
        alarm_of(&hub, &id).await.1["timeline"]
    );
    hub.advance(11);
    fake.wait_for_calls(6, PATIENCE).await;
    let s = steps(&hub, &id).await;
    assert_eq!(s, ["raised", "verifying", "notified"], "{s:?}");
}

/// Monday 2026-12-07 22:00 +08:00 (night), unix ms.
const MONDAY_2200: i64 = 1_796_652_000_000;
const NIGHT_PHONE: &str = "+8613800000011";
const DAY_PHONE: &str = "+8613800000012";
const TOWN_PHONE: &str = "+8613800000021";

/// The night scenario: a village with a day/night roster; at 22:00 an SOS calls
/// the family and the *night* worker only. The night worker does not answer (twice: the
/// first call, then the repeat a minute later; each unanswered call is followed by an
/// SMS); after 3 minutes the town worker gets a call and an SMS (`voice+sms`), presses 1,
/// and everyone already reached is told by SMS who took it.
#[tokio::test]
async fn at_night_the_on_duty_worker_is_called_and_no_answer_twice_brings_in_the_town() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = TestHub::spawn_tweaked(MONDAY_2200, fake.hub_tweak(|_| {})).await;
    let files = [
        (
            "contacts.csv",
            format!(
                "id,name,phone,role,scope,priority,account,channels,token\n\
                 c-family-1,F,{FAMILY_PHONE},family,household:h-1,0,,,demo-family-1\n\
                 c-v1-day,Day,{DAY_PHONE},village,village:v-1,0,,,roster-day-token\n\
                 c-v1-night,Night,{NIGHT_PHONE},village,village:v-1,0,,,roster-night-token\n\
                 c-town-1,T,{TOWN_PHONE},town,town:t-1,0,,critical=voice+sms,demo-town-1\n"
            ),
        ),
        (
            "rosters.csv",
            "area,days,start,end,contact\n\
             village:v-1,daily,08:00,20:00,c-v1-day\n\
             village:v-1,daily,20:00,08:00,c-v1-night\n"
                .to_owned(),
        ),
    ];
    let read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Ok(t.as_bytes().to_vec()))
    };
    hub::import::apply(&hub.app.store, &read, None, MONDAY_2200)
        .await
        .expect("contacts and roster imported");

    let id = sos(&hub).await;
    let calls = fake.wait_for_calls(2, PATIENCE).await;
    let mut called: Vec<String> = calls.iter().map(to).collect();
    called.sort();
    assert_eq!(
        called,
        [FAMILY_PHONE, NIGHT_PHONE],
        "the night worker, not the day worker"
    );
    let night_call = |calls: &[anxin_tests::fake_twilio::Request]| {
        calls
            .iter()
            .rev()
            .find(|c| to(c) == NIGHT_PHONE)
            .and_then(|c| c.sid.clone())
            .expect("a call to the night worker")
    };

    // No answer: an SMS follows.
    fake.status_callback(&night_call(&calls), "no-answer").await;
    let sms = fake.wait_for_messages(1, PATIENCE).await;
    assert_eq!(to(&sms[0]), NIGHT_PHONE);

    // A minute later the level is called again; no answer again.
    hub.advance(61);
    let calls = fake.wait_for_calls(4, PATIENCE).await;
    fake.status_callback(&night_call(&calls), "no-answer").await;
    fake.wait_for_messages(2, PATIENCE).await;
    assert!(
        !fake.calls().iter().any(|c| to(c) == TOWN_PHONE),
        "the town is not called before the level's deadline"
    );

    // 3 minutes after the alarm: the town.
    hub.advance(120);
    let town_call = anxin_tests::eventually("the town is called", &mut || async {
        fake.calls()
            .iter()
            .find(|c| to(c) == TOWN_PHONE)
            .and_then(|c| c.sid.clone())
    })
    .await;
    assert!(!fake.calls().iter().any(|c| to(c) == DAY_PHONE));
    // The town worker's list says `voice+sms`: an SMS comes with the call.
    anxin_tests::eventually("the town's SMS", &mut || async {
        fake.messages()
            .iter()
            .any(|m| to(m) == TOWN_PHONE)
            .then_some(())
    })
    .await;
    fake.answer(&town_call).await;
    let r = fake.press(&town_call, "1").await;
    assert!(r.body.contains("已确认"), "{}", r.body);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["acked_by"], "c-town-1");
    assert_eq!(a["alarm"]["ack_via"], "voice");
    assert_eq!(a["alarm"]["level"], 1);

    // Everyone already reached (family, night worker) is told who took it.
    let told = anxin_tests::eventually("the 'taken by' SMS", &mut || async {
        let taken: Vec<String> = fake
            .messages()
            .iter()
            .filter(|m| m.param("Body").is_some_and(|b| b.contains("c-town-1")))
            .map(to)
            .collect();
        (taken.len() >= 2).then_some(taken)
    })
    .await;
    let mut told = told;
    told.sort();
    assert_eq!(told, [FAMILY_PHONE, NIGHT_PHONE]);
}

/// A restart while an SMS waits for its retry sends it once.
#[tokio::test]
async fn a_restart_during_an_sms_retry_sends_it_once() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = hub_with_phones(&fake, Some("critical=sms")).await;
    fake.script(Endpoint::Messages, [Failure::ServerError]);
    let id = sos(&hub).await;
    // One of the two SMS failed (500), the other went through.
    fake.wait_for_messages(1, PATIENCE).await;
    let store = hub.app.store.clone();
    let waiting = hub
        .eventually("an SMS waits for its retry", || async {
            let d = store.deliveries(&id).await.expect("deliveries");
            d.into_iter()
                .find(|d| d.state == "pending" && d.attempts == 1)
        })
        .await;
    let hub = hub.restart().await;
    set_phones(&hub, Some("critical=sms")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.messages().len(), 1, "the restart itself sends nothing");
    hub.advance(5);
    fake.wait_for_messages(2, PATIENCE).await;
    hub.advance(30);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = hub.app.store.deliveries(&id).await.expect("deliveries");
    let retried = d.iter().find(|d| d.id == waiting.id).expect("the delivery");
    assert_eq!((retried.state.as_str(), retried.attempts), ("sent", 2));
    let to_contact: Vec<_> = fake
        .messages()
        .into_iter()
        .filter(|m| to(m) == waiting.phone.clone().unwrap_or_default())
        .collect();
    assert_eq!(to_contact.len(), 1, "exactly one SMS reached that contact");
}

/// Monday 2026-12-07 09:00 +08:00, unix ms.
const MONDAY_0900: i64 = 1_796_000_400_000;

/// An inactivity alarm (4 h without motion in the daytime): the elder answers the hub's
/// call and presses 1 → resolved as "elder confirmed OK", and nobody else is disturbed.
#[tokio::test]
async fn an_inactivity_alarm_is_settled_by_the_elder_pressing_1() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    // The built-in rules, without the dark-home rule (the test's other devices are silent).
    let rules_dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "{}\n[[override]]\nhousehold = \"h-1\"\nrule = \"home-unreachable\"\nenabled = false\n",
            alert_rules::RuleSet::DEFAULT_TOML
        ),
    )
    .expect("rules");
    let tweak = fake.hub_tweak(move |s| s.rules.file = Some(rules.clone()));
    let hub = TestHub::spawn_tweaked(MONDAY_0900, tweak).await;
    set_phones(&hub, None).await;
    hub.app
        .store
        .upsert_elder("e-1", "h-1", "Demo Elder 1", Some(ELDER_PHONE))
        .await
        .expect("elder phone");

    let pir = hub.device("demo-pir-1").await;
    let seen = hub.processed();
    pir.send(&payload::event(
        "motion",
        json!({"occupancy": true, "room": "kitchen"}),
    ))
    .await
    .expect("motion");
    hub.wait_processed(seen + 1).await;
    drop(pir);
    hub.advance(4 * 3600 + 60);
    let call = anxin_tests::eventually("the elder is called", &mut || async {
        fake.calls()
            .iter()
            .find(|c| to(c) == ELDER_PHONE)
            .and_then(|c| c.sid.clone())
    })
    .await;
    let (_, open) = hub.api().get("demo-district", "/api/alarms").await;
    let id = open["alarms"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["rule_id"] == "no-activity-daytime"))
        .and_then(|a| a["id"].as_str())
        .expect("the inactivity alarm")
        .to_owned();
    fake.answer(&call).await;
    let r = fake.press(&call, "1").await;
    assert_eq!(r.status, 200);
    let (_, a) = alarm_of(&hub, &id).await;
    assert_eq!(a["alarm"]["disposition"], "elder_confirmed_ok");
    hub.advance(3600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (The test's other devices fall silent too and raise device alarms of their own;
    // nothing about this alarm reaches anyone but the elder.)
    assert!(
        fake.calls().iter().all(|c| to(c) == ELDER_PHONE),
        "only the elder was called"
    );
    let about: Vec<String> = fake
        .messages()
        .iter()
        .filter_map(|m| m.param("Body").map(str::to_owned))
        .filter(|b| b.contains(&id))
        .collect();
    assert!(about.is_empty(), "nobody was texted about it: {about:?}");
    let d = hub.app.store.deliveries(&id).await.expect("deliveries");
    assert_eq!(d.len(), 1, "one delivery: the call to the elder");
}
