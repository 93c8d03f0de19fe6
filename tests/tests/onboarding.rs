//! Onboarding over REST (issue 5): the district imports and exports its spreadsheet and
//! provisions devices through the API, with the same validation as `hub admin import`.

use anxin_tests::TestHub;
use device_sim::{payload, Device, DeviceConfig};
use serde_json::{json, Value};

#[tokio::test]
async fn the_district_imports_exports_and_provisions_over_rest() {
    let hub = TestHub::spawn().await;
    let api = hub.api();

    // Export is the demo district as CSV text, without credentials.
    let (s, body) = api.get("demo-district", "/api/admin/export").await;
    assert_eq!(s, 200, "{body}");
    let households = body["files"]["households.csv"]
        .as_str()
        .expect("households.csv");
    assert!(
        households.starts_with("id,village_id,address\n")
            && households.contains("h-1,v-1,1 Demo Lane")
    );
    assert!(
        !body.to_string().contains("demo-secret") && !body.to_string().contains("demo-village-1")
    );
    assert_eq!(api.get("demo-town-1", "/api/admin/export").await.0, 403);

    // A bad file is refused whole, with every problem's file and line.
    let bad = json!({"files": {
        "villages.csv": "id,town_id,name\nv-9,t-1,Nine\nv-10,t-404,Ten\n",
        "households.csv": "id,village_id,address\nh-9,v-9,9 Lane\n",
    }});
    let (s, body) = api.post("demo-district", "/api/admin/import", bad).await;
    assert_eq!(s, 400, "{body}");
    let err = body["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("villages.csv:3: unknown town \"t-404\""),
        "{err}"
    );
    let (_, after) = api.get("demo-district", "/api/admin/export").await;
    assert!(
        !after["files"]["villages.csv"]
            .as_str()
            .unwrap_or_default()
            .contains("v-9"),
        "nothing half-imported"
    );
    let (s, _) = api
        .post(
            "demo-district",
            "/api/admin/import",
            json!({"files": {"people.csv": "id\n"}}),
        )
        .await;
    assert_eq!(s, 400);

    // A good file: new rows, and generated credentials returned once.
    let good = json!({"files": {
        "villages.csv": "id,town_id,name\nv-9,t-1,Nine\n",
        "households.csv": "id,village_id,address\nh-9,v-9,9 Lane\n",
        "contacts.csv": "id,name,phone,role,scope,priority,token\nc-v9,Village Nine,,village,village:v-9,0,\n",
    }});
    let (s, body) = api.post("demo-district", "/api/admin/import", good).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["imported"]["households"], 1);
    let token = body["imported"]["contact_tokens"][0][1]
        .as_str()
        .expect("generated token")
        .to_owned();
    let (s, me) = api.get(&token, "/api/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["scope"], json!({"kind": "village", "id": "v-9"}));
    assert_eq!(
        api.post("demo-village-1", "/api/admin/import", json!({"files": {}}))
            .await
            .0,
        403
    );

    // Provision a device for the new household: its secret once; it connects and is heard.
    let (s, body) = api
        .post(
            "demo-district",
            "/api/devices",
            json!({"id": "h-9-sos", "household_id": "h-9", "kind": "sos", "vendor": "acme"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        api.post(
            "demo-district",
            "/api/devices",
            json!({"id": "h-9-sos", "household_id": "h-9", "kind": "sos"})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        api.post(
            "demo-district",
            "/api/devices",
            json!({"id": "h-9-x", "household_id": "h-404", "kind": "sos"})
        )
        .await
        .0,
        400
    );
    let dev = Device::connect(
        DeviceConfig::new("127.0.0.1", hub.app.mqtt_addr.port(), "h-9-sos", &secret),
        anxin_tests::PATIENCE,
    )
    .await
    .expect("provisioned device connects");
    let ack = dev
        .send_critical(&payload::event("sos", json!({})), anxin_tests::PATIENCE)
        .await
        .expect("served");
    assert_eq!(ack["result"], "stored");
    let (_, alarms) = api.get(&token, "/api/alarms").await;
    let ours: Vec<&Value> = alarms["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "the new village's staff see its SOS: {alarms}"
    );
    assert_eq!(ours[0]["household_id"], "h-9");
}
