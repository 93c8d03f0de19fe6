//! A device speaks only in the event kinds its kind of device produces (issue 5
//! hardening): a door contact whose secret leaked cannot press SOS or announce an
//! absence; a pendant still can. The table is `hub::ingest::kinds`.

use std::collections::BTreeSet;

use anxin_tests::{TestHub, PATIENCE, SECRET};
use device_sim::{payload, sim, FromHub, SimError};
use hub::ingest::kinds::{Policy, Verdict};
use serde_json::{json, Value};

async fn next_error(rx: &mut tokio::sync::broadcast::Receiver<FromHub>, case: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(FromHub::Error(v))) => return v,
            Ok(Ok(_)) => continue,
            other => panic!("{case}: no error report: {other:?}"),
        }
    }
}

async fn alarm_devices(hub: &TestHub) -> Vec<String> {
    let (s, body) = hub.api().get("demo-district", "/api/alarms").await;
    assert_eq!(s, 200, "{body}");
    body["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .map(|a| a["device_id"].as_str().unwrap_or("-").to_owned())
        .collect()
}

const REFUSED: &str = "anxin_payload_rejected_total{code=\"kind_not_allowed\"}";

#[tokio::test]
async fn a_door_contact_cannot_raise_an_sos_or_announce_an_absence_but_a_pendant_can() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let door = hub.device("demo-door-1").await;
    let pendant = hub.device("demo-pendant-1").await;
    let refused_before = anxin_tests::metric(&hub.http, REFUSED).await;

    // An SOS on the door contact's own topic: refused with the contract's error, with
    // its event id, so the device stops re-sending; never acknowledged.
    let sos = payload::event("sos", json!({}));
    match door.send_critical(&sos, PATIENCE).await {
        Err(SimError::Rejected {
            event_id,
            code,
            reason,
        }) => {
            assert_eq!(code, "kind_not_allowed");
            assert_eq!(Some(event_id.as_str()), sos["event_id"].as_str());
            for needle in ["`door`", "`sos`", "door, visit"] {
                assert!(reason.contains(needle), "{needle}: {reason}");
            }
        }
        other => panic!("a door contact's SOS must be refused: {other:?}"),
    }

    // "Leaving home for 90 days" from the door contact: refused, no mode is set.
    let mut rx = door.subscribe();
    door.send(&payload::event(
        "away",
        json!({"away": true, "hours": 2160}),
    ))
    .await
    .expect("publish");
    let err = next_error(&mut rx, "away from a door contact").await;
    assert_eq!(err["code"], "kind_not_allowed", "{err}");
    assert_eq!(err["topic"], payload::events_topic("demo-door-1"), "{err}");
    let (_, mode) = api.get("demo-district", "/api/households/h-1/mode").await;
    assert_eq!(mode["mode"], Value::Null, "{mode}");

    // Both refusals are counted.
    let refused_after = anxin_tests::metric(&hub.http, REFUSED).await;
    assert!(
        refused_after >= refused_before + 2.0,
        "{REFUSED}: {refused_before} → {refused_after}"
    );

    // The door contact's own kinds still pass: the first error it gets next is the one
    // for a marker sent after them (the hub handles a device's messages in order).
    door.send(&payload::event("door", json!({"open": true})))
        .await
        .expect("publish");
    door.send(&payload::event(
        "visit",
        json!({"action": "start", "carer": "tag-1"}),
    ))
    .await
    .expect("publish");
    let marker = payload::event("steps", json!({"steps": 10}));
    door.send(&marker).await.expect("publish");
    let err = next_error(&mut rx, "marker").await;
    assert_eq!(err["event_id"], marker["event_id"], "{err}");
    assert_eq!(err["code"], "kind_not_allowed", "{err}");

    // The pendant's SOS raises the household's one SOS alarm: the door's never did.
    let ack = pendant
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("the pendant's SOS is served");
    assert_eq!(ack["result"], "stored", "{ack}");
    assert_eq!(alarm_devices(&hub).await, ["demo-pendant-1"]);

    // The pendant's "leaving home" button sets the mode the door contact could not.
    pendant
        .send(&payload::event("away", json!({"away": true, "hours": 1})))
        .await
        .expect("publish");
    let mode = hub
        .eventually("the pendant's away mode", || async {
            let (_, m) = api.get("demo-district", "/api/households/h-1/mode").await;
            (!m["mode"].is_null()).then_some(m)
        })
        .await;
    assert_eq!(mode["mode"]["set_by"], "device:demo-pendant-1", "{mode}");
}

#[tokio::test]
async fn a_corrected_device_kind_applies_at_once_and_an_unlisted_kind_is_let_through_and_counted() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let door = hub.device("demo-door-1").await;
    let sos = payload::event("sos", json!({}));
    assert!(
        matches!(
            door.send_critical(&sos, PATIENCE).await,
            Err(SimError::Rejected { ref code, .. }) if code == "kind_not_allowed"
        ),
        "refused while registered as a door contact"
    );

    // The operator registered it wrongly and corrects the sheet (the secret is kept): the
    // running hub applies the new kind without a restart or a reconnect.
    let (s, body) = api
        .post(
            "demo-district",
            "/api/admin/import",
            json!({"files": {"devices.csv": "id,household_id,kind,vendor,secret\ndemo-door-1,h-1,sos,demo,\n"}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let ack = door
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("served once registered as an SOS button");
    assert_eq!(ack["result"], "stored", "{ack}");

    // A kind the table does not know (`hub admin add-device` takes any): not checked, so
    // a real pendant registered under an old name keeps its SOS; counted and logged.
    let hash = hub::secrets::hash_secret(SECRET).expect("hash");
    hub.app
        .store
        .upsert_device("legacy-pendant", "h-2", "pendant", "old", &hash, 0)
        .await
        .expect("legacy device");
    let unchecked = "anxin_device_events_unchecked_total{kind=\"sos\"}";
    let before = anxin_tests::metric(&hub.http, unchecked).await;
    let legacy = hub.device("legacy-pendant").await;
    let ack = legacy
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("an unlisted kind is not refused");
    assert_eq!(ack["result"], "stored", "{ack}");
    let after = anxin_tests::metric(&hub.http, unchecked).await;
    assert!(after > before, "{unchecked}: {before} → {after}");
    let mut devices = alarm_devices(&hub).await;
    devices.sort();
    assert_eq!(devices, ["demo-door-1", "legacy-pendant"]);
}

/// Everything the simulator's month sends must pass the table, or the simulation test
/// and the demo break (and the table would refuse what real homes send).
#[test]
fn every_pair_the_simulator_sends_is_allowed() {
    let scenario = sim::generate(&sim::SimConfig::default());
    let kind_of: std::collections::HashMap<&str, &str> = scenario
        .district
        .households
        .iter()
        .flat_map(|h| h.devices.iter().map(|d| (d.id.as_str(), d.kind)))
        .collect();
    let mut pairs = BTreeSet::new();
    for e in &scenario.events {
        let device_kind = kind_of.get(e.device.as_str()).expect("a known device");
        pairs.insert((*device_kind, e.kind));
    }
    let refused: Vec<_> = pairs
        .iter()
        .filter(|(d, e)| Policy::of(d).check(e) != Verdict::Allowed)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    // The cases the table exists for are really in the month (so this checks something).
    for pair in [
        ("door", "visit"),
        ("sos", "away"),
        ("sos", "checkin"),
        ("wearable", "steps"),
        ("motion", "temperature"),
        ("water_meter", "battery"),
    ] {
        assert!(pairs.contains(&pair), "{pair:?} not in {pairs:?}");
    }
    // Every device kind the simulator builds is one the hub lists.
    for kind in sim::DEVICE_KINDS {
        assert_ne!(Policy::of(kind), Policy::Unlisted, "{kind}");
    }
}
