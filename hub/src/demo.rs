//! `--demo`: a small fictional district so a new user sees alarms within a minute.
//! Credentials are fixed and public (printed at start): never use demo mode in production.

use alert_rules::Millis;

use crate::import::Batch;
use crate::secrets;
use crate::store::Store;

/// Every demo device uses this secret.
pub const DEMO_DEVICE_SECRET: &str = "demo-secret";

/// Every demo account logs in to the web pages with this password (username: the
/// account id, e.g. `c-village-1`; the second family's account is `family-2`).
pub const DEMO_PASSWORD: &str = "demo";

/// The demo district as CSV files (`demo/district/` in the repository), built into the
/// binary so `hub --demo` needs nothing on disk. The same files can be imported into any
/// database with `hub admin import --dir demo/district`.
const FILES: [(&str, &str); 6] = [
    ("towns.csv", include_str!("../../demo/district/towns.csv")),
    (
        "villages.csv",
        include_str!("../../demo/district/villages.csv"),
    ),
    (
        "households.csv",
        include_str!("../../demo/district/households.csv"),
    ),
    ("elders.csv", include_str!("../../demo/district/elders.csv")),
    (
        "devices.csv",
        include_str!("../../demo/district/devices.csv"),
    ),
    (
        "contacts.csv",
        include_str!("../../demo/district/contacts.csv"),
    ),
];

/// The demo district, validated by the same code as any import.
pub fn batch() -> anyhow::Result<Batch> {
    let files = |name: &str| {
        FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| Ok(text.as_bytes().to_vec()))
    };
    Ok(crate::import::load_from(&files, &|_, _| false)?)
}

/// Insert (or refresh) the demo district. Idempotent.
pub async fn seed(store: &Store, now: Millis) -> anyhow::Result<()> {
    let batch = batch()?;
    // Every demo device has the same secret: hash it once (argon2 is slow on purpose).
    let hash = tokio::task::spawn_blocking(|| secrets::hash_secret(DEMO_DEVICE_SECRET)).await??;
    anyhow::ensure!(
        batch
            .devices
            .iter()
            .all(|d| d.secret.as_deref() == Some(DEMO_DEVICE_SECRET)),
        "every demo device must use the demo secret"
    );
    let hashes = vec![Some(hash); batch.devices.len()];
    let tokens: Vec<Option<String>> = batch
        .contacts
        .iter()
        .map(|c| c.token.clone().filter(|t| !t.is_empty()))
        .collect();
    // Every demo account needs a token (a second row of the same account may omit it).
    anyhow::ensure!(
        batch.contacts.iter().zip(&tokens).all(|(c, t)| t.is_some()
            || c.account
                .as_deref()
                .is_some_and(|a| batch
                    .contacts
                    .iter()
                    .any(|o| o.account.as_deref() == Some(a) && o.token.is_some()))),
        "every demo account needs a token"
    );
    store.import(&batch, &hashes, &tokens, now).await?;
    // Passwords for the web pages, unless an account already has its own.
    let pw = tokio::task::spawn_blocking(|| secrets::hash_secret(DEMO_PASSWORD)).await??;
    for account in accounts(&batch) {
        store.set_first_password(&account, &pw, now).await?;
    }
    Ok(())
}

/// The demo accounts (the `account` column, else the contact id), in file order.
fn accounts(batch: &Batch) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &batch.contacts {
        let id = c
            .account
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| c.id.clone());
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

pub fn banner(http: std::net::SocketAddr, mqtt: std::net::SocketAddr) -> String {
    let batch = batch().unwrap_or_default();
    let mut s = String::new();
    s.push_str(
        "\n=== Anxin DEMO district (public demo credentials: never use in production) ===\n",
    );
    s.push_str(&format!(
        "MQTT {mqtt}: devices {} — secret `{DEMO_DEVICE_SECRET}`\n",
        batch
            .devices
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(&format!(
        "Web pages: http://{http}/ (if listening on 0.0.0.0, open http://localhost:{}/) — log in as one of {} with password `{DEMO_PASSWORD}`\n",
        http.port(),
        accounts(&batch).join(", ")
    ));
    s.push_str(&format!("HTTP {http}: API tokens\n"));
    for c in &batch.contacts {
        s.push_str(&format!(
            "  {:<16} {:<12} {}\n",
            c.token.as_deref().unwrap_or_default(),
            c.id,
            c.scope
        ));
    }
    s.push_str(&format!(
        "Try: cargo run -p device-sim -- send --port {} --device demo-pendant-1 --secret {DEMO_DEVICE_SECRET} sos\n",
        mqtt.port()
    ));
    s
}
