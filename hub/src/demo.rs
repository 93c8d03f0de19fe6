//! `--demo`: a small fictional district so a new user sees alarms within a minute.
//! Credentials are fixed and public (printed at start): never use demo mode in production.

use alert_rules::Millis;

use crate::secrets;
use crate::store::{Scope, Store};

/// Every demo device uses this secret.
pub const DEMO_DEVICE_SECRET: &str = "demo-secret";

pub struct DemoDevice {
    pub id: &'static str,
    pub household: &'static str,
    pub kind: &'static str,
}

pub const DEVICES: &[DemoDevice] = &[
    DemoDevice {
        id: "demo-pendant-1",
        household: "h-1",
        kind: "sos",
    },
    DemoDevice {
        id: "demo-fall-1",
        household: "h-1",
        kind: "fall",
    },
    DemoDevice {
        id: "demo-pir-1",
        household: "h-1",
        kind: "motion",
    },
    DemoDevice {
        id: "demo-door-1",
        household: "h-1",
        kind: "door",
    },
    DemoDevice {
        id: "demo-smoke-1",
        household: "h-1",
        kind: "smoke",
    },
    DemoDevice {
        id: "demo-water-1",
        household: "h-1",
        kind: "water_meter",
    },
    DemoDevice {
        id: "demo-pendant-2",
        household: "h-2",
        kind: "sos",
    },
    DemoDevice {
        id: "demo-pir-2",
        household: "h-2",
        kind: "motion",
    },
    DemoDevice {
        id: "demo-pendant-3",
        household: "h-3",
        kind: "sos",
    },
];

/// (contact id, role, scope, token)
pub const CONTACTS: &[(&str, &str, &str, &str)] = &[
    ("c-family-1", "family", "household:h-1", "demo-family-1"),
    ("c-village-1", "village", "village:v-1", "demo-village-1"),
    ("c-village-2", "village", "village:v-2", "demo-village-2"),
    ("c-village-3", "village", "village:v-3", "demo-village-3"),
    ("c-town-1", "town", "town:t-1", "demo-town-1"),
    ("c-town-2", "town", "town:t-2", "demo-town-2"),
    ("c-district", "district", "district", "demo-district"),
];

/// Insert (or refresh) the demo district. Idempotent.
pub async fn seed(store: &Store, now: Millis) -> anyhow::Result<()> {
    store.upsert_town("t-1", "Demo Town East").await?;
    store.upsert_town("t-2", "Demo Town West").await?;
    store.upsert_village("v-1", "t-1", "Demo Village 1").await?;
    store.upsert_village("v-2", "t-1", "Demo Village 2").await?;
    store.upsert_village("v-3", "t-2", "Demo Village 3").await?;
    store.upsert_household("h-1", "v-1", "1 Demo Lane").await?;
    store.upsert_household("h-2", "v-2", "2 Demo Lane").await?;
    store.upsert_household("h-3", "v-3", "3 Demo Lane").await?;
    store
        .upsert_elder("e-1", "h-1", "Demo Elder 1", None)
        .await?;
    store
        .upsert_elder("e-2", "h-2", "Demo Elder 2", None)
        .await?;
    store
        .upsert_elder("e-3", "h-3", "Demo Elder 3", None)
        .await?;
    let hash = tokio::task::spawn_blocking(|| secrets::hash_secret(DEMO_DEVICE_SECRET)).await??;
    for d in DEVICES {
        store
            .upsert_device(d.id, d.household, d.kind, "demo", &hash, now)
            .await?;
    }
    for (i, (id, role, scope, token)) in CONTACTS.iter().enumerate() {
        let scope = Scope::parse(scope).map_err(anyhow::Error::msg)?;
        store
            .upsert_contact(
                id,
                &format!("Demo contact {}", i + 1),
                None,
                role,
                &scope,
                0,
                token,
                now,
            )
            .await?;
    }
    Ok(())
}

pub fn banner(http: std::net::SocketAddr, mqtt: std::net::SocketAddr) -> String {
    let mut s = String::new();
    s.push_str(
        "\n=== Anxin DEMO district (public demo credentials: never use in production) ===\n",
    );
    s.push_str(&format!(
        "MQTT {mqtt}: devices {} — secret `{DEMO_DEVICE_SECRET}`\n",
        DEVICES.iter().map(|d| d.id).collect::<Vec<_>>().join(", ")
    ));
    s.push_str(&format!("HTTP {http}: API tokens\n"));
    for (id, _, scope, token) in CONTACTS {
        s.push_str(&format!("  {token:<16} {id:<12} {scope}\n"));
    }
    s.push_str(&format!(
        "Try: cargo run -p device-sim -- send --port {} --device demo-pendant-1 --secret {DEMO_DEVICE_SECRET} sos\n",
        mqtt.port()
    ));
    s
}
