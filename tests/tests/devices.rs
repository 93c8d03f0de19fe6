//! Device credentials on a running hub: rotating a secret and revoking a device end the
//! device's connection, refuse the old credentials, and are audited (issue 5). A revoked
//! device comes back only when someone reinstates it explicitly.

use std::time::Duration;

use anxin_tests::{TestHub, SECRET};
use device_sim::{payload, Device, DeviceConfig, FromHub};
use serde_json::{json, Value};

fn config(hub: &TestHub, id: &str, secret: &str) -> DeviceConfig {
    let mut c = DeviceConfig::new("127.0.0.1", hub.app.mqtt_addr.port(), id, secret);
    c.retry_every = Duration::from_millis(300);
    c
}

#[tokio::test]
async fn a_rotated_secret_ends_the_old_connection_and_only_the_new_secret_connects() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let old = hub.device("demo-pendant-2").await;

    assert_eq!(
        api.post(
            "demo-village-2",
            "/api/devices/demo-pendant-2/rotate",
            json!({})
        )
        .await
        .0,
        403
    );
    let (s, body) = api
        .post(
            "demo-district",
            "/api/devices/demo-pendant-2/rotate",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let secret = body["secret"]
        .as_str()
        .expect("new secret, shown once")
        .to_owned();
    assert!(secret.len() >= 32);

    // The old connection is closed at its next packet and cannot come back. (Few
    // attempts with the old secret: ten failures a minute lock the device id out.)
    let mut events = old.subscribe();
    let _ = old.send(&payload::event("heartbeat", json!({}))).await;
    let closed = tokio::time::timeout(anxin_tests::PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(FromHub::Disconnected(_)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the old connection must be closed");
    drop(old);
    assert!(Device::connect(
        config(&hub, "demo-pendant-2", SECRET),
        Duration::from_millis(700)
    )
    .await
    .is_err());

    // The new secret works.
    let new = Device::connect(
        config(&hub, "demo-pendant-2", &secret),
        anxin_tests::PATIENCE,
    )
    .await
    .expect("new secret connects");
    let ack = new
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("served");
    assert_eq!(ack["result"], "stored");
    assert_eq!(
        api.post(
            "demo-district",
            "/api/devices/no-such-device/rotate",
            json!({})
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_revoked_device_is_disconnected_refused_and_no_longer_watched() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let dev = hub.device("demo-pendant-3").await;
    let (s, body) = api
        .post(
            "demo-district",
            "/api/devices/demo-pendant-3/revoke",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        api.post(
            "demo-district",
            "/api/devices/demo-pendant-3/revoke",
            json!({})
        )
        .await
        .0,
        404
    );

    let _ = dev.send(&payload::event("heartbeat", json!({}))).await;
    let lost = dev
        .send_critical(&payload::event("sos", json!({})), Duration::from_secs(3))
        .await;
    assert!(
        lost.is_err(),
        "a revoked device must not be served: {lost:?}"
    );
    assert!(Device::connect(
        config(&hub, "demo-pendant-3", SECRET),
        Duration::from_secs(2)
    )
    .await
    .is_err());

    // Not watched any more: hours of silence raise no offline alarm for it.
    hub.advance(3 * 3600);
    hub.app.alarms.run_due().await.expect("pass");
    let (_, alarms) = api.get("demo-district", "/api/alarms").await;
    let about_it: Vec<&Value> = alarms["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter(|a| a["device_id"] == "demo-pendant-3")
        .collect();
    assert!(about_it.is_empty(), "{about_it:#?}");

    let (_, audit) = api.get("demo-district", "/api/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["target"] == "device:demo-pendant-3")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, vec!["device.revoke"]);
}

#[tokio::test]
async fn the_cli_rotates_and_revokes_in_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let store = hub::store::Store::connect(&url).await.expect("db");
    hub::demo::seed(&store, 0).await.expect("seed");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
            .args(args)
            .env("HUB_DATABASE_URL", &url)
            .output()
            .expect("run hub")
    };
    let o = run(&["admin", "rotate-device", "--id", "demo-pendant-1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let secret = out.rsplit(": ").next().expect("secret").trim().to_owned();
    let auth = store
        .device_auth("demo-pendant-1")
        .await
        .expect("q")
        .expect("device");
    assert!(hub::secrets::verify_secret(&secret, &auth.secret_hash));
    assert!(!hub::secrets::verify_secret(SECRET, &auth.secret_hash));

    let o = run(&["admin", "revoke-device", "--id", "demo-pendant-2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        store
            .device_auth("demo-pendant-2")
            .await
            .expect("q")
            .expect("row")
            .revoked
    );
    let again = run(&["admin", "revoke-device", "--id", "demo-pendant-2"]);
    assert!(!again.status.success(), "revoking twice is an error");

    // Neither `add-device` nor `import` brings it back.
    let o = run(&[
        "admin",
        "add-device",
        "--id",
        "demo-pendant-2",
        "--household",
        "h-2",
        "--kind",
        "sos",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "add-device over a revoked id: {err}");
    assert!(err.contains("demo-pendant-2 was revoked on"), "{err}");
    let sheet = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        sheet.path().join("devices.csv"),
        "id,household_id,kind\ndemo-pendant-2,h-2,sos\n",
    )
    .expect("write");
    let o = run(&[
        "admin",
        "import",
        "--dir",
        sheet.path().to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "import of a revoked device: {err}");
    assert!(
        err.contains("devices.csv:2: device \"demo-pendant-2\" was revoked on"),
        "{err}"
    );
    assert!(
        store
            .device_auth("demo-pendant-2")
            .await
            .expect("q")
            .expect("row")
            .revoked
    );
}

/// The allowed actions on `target`, oldest first.
async fn audit_actions(api: &anxin_tests::Api, target: &str) -> Vec<String> {
    let (_, audit) = api.get("demo-district", "/api/audit").await;
    audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["target"] == target && e["outcome"] == "allowed")
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn provisioning_a_revoked_id_is_refused_unless_it_says_reinstate_and_then_the_device_is_served(
) {
    use hub::clock::Clock;
    let hub = TestHub::spawn().await;
    let api = hub.api();
    // Seen by ingest and the rules before it is revoked, so both must let it back in.
    let dev = hub.device("demo-pendant-3").await;
    let revoked_at = hub.clock.now();
    let (s, body) = api
        .post(
            "demo-district",
            "/api/devices/demo-pendant-3/revoke",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    drop(dev);

    // Provisioning the id again is refused, saying when it was revoked and what to do.
    let again = json!({"id": "demo-pendant-3", "household_id": "h-3", "kind": "sos"});
    let (s, body) = api
        .post("demo-district", "/api/devices", again.clone())
        .await;
    assert_eq!(s, 409, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    let when = hub::store::utc_time(revoked_at);
    for needle in [
        format!("device demo-pendant-3 was revoked on {when}"),
        "\"reinstate\": true".to_owned(),
    ] {
        assert!(msg.contains(&needle), "{needle:?} in {msg}");
    }
    let record = hub
        .app
        .store
        .device("demo-pendant-3")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(record.revoked_at, Some(revoked_at), "still revoked");

    // "reinstate" is for revoked devices only.
    for (body, status) in [
        (
            json!({"id": "demo-pendant-1", "household_id": "h-1", "kind": "sos", "reinstate": true}),
            409,
        ),
        (
            json!({"id": "no-such-device", "household_id": "h-1", "kind": "sos", "reinstate": true}),
            404,
        ),
    ] {
        let (s, answer) = api
            .post("demo-district", "/api/devices", body.clone())
            .await;
        assert_eq!(s, status, "{body} → {answer}");
    }
    let mut reinstate = again.clone();
    reinstate["reinstate"] = json!(true);
    assert_eq!(
        api.post("demo-village-3", "/api/devices", reinstate.clone())
            .await
            .0,
        403
    );

    // Reinstated: a new secret, shown once; audited; the old secret stays refused.
    let (s, body) = api.post("demo-district", "/api/devices", reinstate).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["reinstated"], true, "{body}");
    let secret = body["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(secret, SECRET);
    assert!(Device::connect(
        config(&hub, "demo-pendant-3", SECRET),
        Duration::from_millis(700)
    )
    .await
    .is_err());
    assert_eq!(
        audit_actions(&api, "device:demo-pendant-3").await,
        ["device.revoke", "device.reinstate"]
    );

    // Served again end to end: connected, its SOS stored and acknowledged, and watched
    // (its silence raises "offline" again).
    let dev = Device::connect(
        config(&hub, "demo-pendant-3", &secret),
        anxin_tests::PATIENCE,
    )
    .await
    .expect("the new secret connects");
    let ack = dev
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("a reinstated pendant's SOS is served");
    assert_eq!(ack["result"], "stored", "{ack}");
    drop(dev);
    // Past the missed heartbeats, then past the hold of device alarms.
    hub.advance(3600);
    hub.app.alarms.run_due().await.expect("pass");
    hub.advance(15 * 60);
    hub.eventually("device-offline for the reinstated pendant", || async {
        let (_, alarms) = api.get("demo-district", "/api/alarms").await;
        let rules: Vec<String> = alarms["alarms"]
            .as_array()?
            .iter()
            .filter(|a| a["device_id"] == "demo-pendant-3")
            .filter_map(|a| a["rule_id"].as_str().map(str::to_owned))
            .collect();
        (rules.iter().any(|r| r == "sos") && rules.iter().any(|r| r == "device-offline"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_import_or_a_restart_does_not_bring_a_revoked_device_back() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let (s, body) = api
        .post(
            "demo-district",
            "/api/devices/demo-pendant-2/revoke",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    // An old sheet that still lists it: the import is refused, naming file, line, date
    // and the way out; nothing is written.
    let sheet = json!({"files": {"devices.csv":
        "id,household_id,kind,vendor,secret\ndemo-door-1,h-1,door,changed,\ndemo-pendant-2,h-2,sos,demo,\n"}});
    let (s, body) = api.post("demo-district", "/api/admin/import", sheet).await;
    assert_eq!(s, 400, "{body}");
    let err = body["error"].as_str().unwrap_or_default();
    for needle in [
        "devices.csv:3: device \"demo-pendant-2\" was revoked on ",
        "\"reinstate\": true",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    assert!(!err.contains("devices.csv:2:"), "{err}");
    let (_, export) = api.get("demo-district", "/api/admin/export").await;
    assert!(
        !export["files"]["devices.csv"]
            .as_str()
            .unwrap_or_default()
            .contains("changed"),
        "nothing half-imported"
    );

    // The store keeps it revoked whoever asks: a re-key is refused, and an import that
    // bypasses the validation (the demo seed at every start) leaves it as it is.
    let store = &hub.app.store;
    let hash = hub::secrets::hash_secret("another-secret").expect("hash");
    let e = store
        .upsert_device("demo-pendant-2", "h-2", "sos", "demo", &hash, 0)
        .await
        .expect_err("a revoked device is not re-keyed");
    assert!(e.to_string().contains("was revoked on"), "{e}");
    assert!(store
        .device("demo-pendant-2")
        .await
        .expect("q")
        .expect("row")
        .revoked_at
        .is_some());

    let hub = hub.restart().await;
    assert!(
        hub.app
            .store
            .device("demo-pendant-2")
            .await
            .expect("q")
            .expect("row")
            .revoked_at
            .is_some(),
        "the demo seed must not un-revoke"
    );
    assert!(Device::connect(
        config(&hub, "demo-pendant-2", SECRET),
        Duration::from_secs(2)
    )
    .await
    .is_err());
}
