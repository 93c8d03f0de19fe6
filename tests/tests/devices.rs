//! Device credentials on a running hub: rotating a secret and revoking a device end the
//! device's connection, refuse the old credentials, and are audited (issue 5).

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
}
