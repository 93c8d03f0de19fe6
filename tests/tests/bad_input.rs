//! Whatever a device sends, the hub answers with a precise error on the device's error
//! topic, counts it, and keeps serving everyone else. Devices that cannot prove who
//! they are never get in.

use std::time::Duration;

use anxin_tests::{TestHub, PATIENCE};
use device_sim::{payload, Device, DeviceConfig, FromHub};
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

#[tokio::test]
async fn every_bad_payload_gets_its_reason_and_the_hub_keeps_serving() {
    let hub = TestHub::spawn().await;
    let dev = hub.device("demo-pendant-1").await;
    let mut rx = dev.subscribe();
    let events = payload::events_topic("demo-pendant-1");
    let head = r#""v":1,"event_id":"e-1","ts":"2026-11-29T08:30:00+08:00""#;
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("invalid_json", events.clone(), b"{\"v\":1,".to_vec()),
        ("invalid_utf8", events.clone(), vec![b'{', 0xff, 0xfe, b'}']),
        ("not_an_object", events.clone(), b"42".to_vec()),
        (
            "unknown_kind",
            events.clone(),
            format!("{{{head},\"kind\":\"teleport\"}}").into_bytes(),
        ),
        (
            "missing_field",
            events.clone(),
            br#"{"v":1,"event_id":"e-2","kind":"sos"}"#.to_vec(),
        ),
        (
            "wrong_type",
            events.clone(),
            format!("{{{head},\"kind\":\"door\",\"open\":\"yes\"}}").into_bytes(),
        ),
        (
            "invalid_value",
            events.clone(),
            format!("{{{head},\"kind\":\"battery\",\"percent\":-5}}").into_bytes(),
        ),
        // The kinds of issue 4: interval meters, steps, carer visits, away button.
        (
            "missing_field",
            events.clone(),
            format!("{{{head},\"kind\":\"water_meter\"}}").into_bytes(),
        ),
        (
            "invalid_value",
            events.clone(),
            format!("{{{head},\"kind\":\"water_meter\",\"total_m3\":1,\"interval_m3\":0.1}}")
                .into_bytes(),
        ),
        (
            "wrong_type",
            events.clone(),
            format!("{{{head},\"kind\":\"steps\",\"steps\":\"12\"}}").into_bytes(),
        ),
        (
            "invalid_value",
            events.clone(),
            format!("{{{head},\"kind\":\"visit\",\"action\":\"begin\"}}").into_bytes(),
        ),
        (
            "invalid_value",
            events.clone(),
            format!("{{{head},\"kind\":\"away\",\"away\":true,\"hours\":0}}").into_bytes(),
        ),
        (
            "unsupported_version",
            events.clone(),
            br#"{"v":9,"event_id":"e-3","ts":"2026-11-29T08:30:00Z","kind":"sos"}"#.to_vec(),
        ),
        (
            "too_large",
            events.clone(),
            format!(
                "{{{head},\"kind\":\"sos\",\"pad\":\"{}\"}}",
                "x".repeat(5000)
            )
            .into_bytes(),
        ),
        (
            "unknown_topic",
            "anxin/v1/devices/demo-pendant-1/telemetry".into(),
            b"{}".to_vec(),
        ),
        // Speaking for another device: not delivered, reported to the speaker.
        (
            "topic_mismatch",
            payload::events_topic("demo-pendant-2"),
            payload::event("sos", json!({})).to_string().into_bytes(),
        ),
        (
            "topic_mismatch",
            payload::status_topic("demo-pendant-3"),
            br#"{"state":"offline"}"#.to_vec(),
        ),
    ];
    for (code, topic, body) in cases {
        dev.publish_raw(&topic, body).await.expect("publish");
        let err = next_error(&mut rx, code).await;
        assert_eq!(err["code"], code, "{err}");
        assert!(
            err["reason"].as_str().is_some_and(|r| r.len() > 10),
            "a reason a vendor can act on: {err}"
        );
        assert_eq!(err["topic"], Value::from(topic.clone()), "{err}");
    }
    // Defects found after the event id carry it, so the vendor can match their log.
    dev.publish_raw(
        &events,
        format!("{{{head},\"kind\":\"door\"}}").into_bytes(),
    )
    .await
    .expect("publish");
    let err = next_error(&mut rx, "after id").await;
    assert_eq!(
        (err["code"].as_str(), err["event_id"].as_str()),
        (Some("missing_field"), Some("e-1"))
    );
    assert!(
        err["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("`open`"),
        "{err}"
    );

    // The spoofed SOS raised nothing for the other household.
    let api = hub.api();
    let (_, v2) = api.get("demo-village-2", "/api/alarms").await;
    assert_eq!(
        v2["alarms"],
        json!([]),
        "a spoofed SOS must not raise an alarm: {v2}"
    );

    // The same connection and every other device are still served.
    let ack = dev
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("still served");
    assert_eq!(ack["result"], "stored");
    let other = hub.device("demo-pendant-3").await;
    let ack = other
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("other device served");
    assert_eq!(ack["result"], "stored");

    // Valid events of the new kinds are accepted and counted under their wire kind, each
    // from a kind of device that may send it (`hub::ingest::kinds`).
    let door = hub.device("demo-door-1").await;
    let meter = hub.device("demo-water-1").await;
    for (sender, kind, fields) in [
        (&dev, "checkin", json!({})),
        (
            &door,
            "visit",
            json!({"action": "start", "carer": "tag-123"}),
        ),
        (&door, "visit", json!({"action": "end"})),
        (&meter, "water_meter", json!({"interval_m3": 0.004})),
    ] {
        sender
            .send(&payload::event(kind, fields))
            .await
            .expect("publish");
    }
    hub.eventually("new kinds counted", || async {
        let metrics = reqwest::get(format!("{}/metrics", hub.http))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        ["checkin", "visit", "water_meter"]
            .iter()
            .all(|k| metrics.contains(&format!("anxin_device_events_total{{kind=\"{k}\"}}")))
            .then_some(())
    })
    .await;

    // Rejections are counted by code.
    let metrics = reqwest::get(format!("{}/metrics", hub.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("anxin_payload_rejected_total{code=\"topic_mismatch\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_devices_and_wrong_secrets_are_refused_at_connect() {
    let hub = TestHub::spawn().await;
    let port = hub.app.mqtt_addr.port();
    let short = Duration::from_secs(2);
    let wrong = DeviceConfig::new("127.0.0.1", port, "demo-pendant-1", "not-the-secret");
    assert!(
        Device::connect(wrong, short).await.is_err(),
        "wrong secret accepted"
    );
    let unknown = DeviceConfig::new("127.0.0.1", port, "ghost-1", anxin_tests::SECRET);
    assert!(
        Device::connect(unknown, short).await.is_err(),
        "unknown device accepted"
    );
    // Username must be the client id: one device cannot log in with another's secret.
    let mut opts = rumqttc::MqttOptions::new("demo-pendant-2", "127.0.0.1", port);
    opts.set_credentials("demo-pendant-1", anxin_tests::SECRET);
    let (_c, mut el) = rumqttc::AsyncClient::new(opts, 8);
    let first = tokio::time::timeout(short, el.poll()).await;
    assert!(
        !matches!(
            first,
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))))
        ),
        "identity mismatch accepted: {first:?}"
    );
    // The right secret works.
    hub.device("demo-pendant-1").await;
}
