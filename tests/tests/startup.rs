//! The hub refuses to start on bad configuration, and says exactly what is wrong.

use std::sync::Arc;

use hub::clock::ManualClock;
use hub::App;

#[tokio::test]
async fn an_invalid_rules_file_stops_start_up_with_its_line_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "timezone_offset = \"+08:00\"\n\n[[rule]]\nid = \"day\"\nkind = \"inactivity\"\nactivity = [\"motion\"]\nhours = 4.0\nwindow = \"07:00-25:00\"\nseverity = \"warning\"\ntitle = \"t\"\n",
    )
    .expect("write");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.rules.file = Some(rules);
    let err = match App::build(settings, Arc::new(ManualClock::new(0))).await {
        Ok(_) => panic!("hub started with an invalid rules file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("rules.toml"), "{err}");
    assert!(err.contains("line 8"), "{err}");
}

#[tokio::test]
async fn a_taken_mqtt_port_is_an_error_not_a_silent_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.mqtt.listen = taken.local_addr().expect("addr");
    let err = match App::build(settings, Arc::new(ManualClock::new(0))).await {
        Ok(_) => panic!("hub started on a taken port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("not available"), "{err}");
}

/// `device-sim run` drives a hub on simulated time: the clock moves only through the
/// API, and only after the observations the simulator names have been handled.
#[tokio::test]
async fn a_simulated_clock_moves_only_through_the_api_after_the_barrier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = anxin_tests::settings_for(dir.path());
    let store = hub::store::Store::connect(&settings.database_url)
        .await
        .expect("db");
    hub::demo::seed(&store, 1_000).await.expect("seed");
    let app = App::build_simulated(settings, ManualClock::new(1_000))
        .await
        .expect("hub");
    let base = format!("http://{}", app.http_addr);
    let http = reqwest::Client::new();
    let status: serde_json::Value = http
        .get(format!("{base}/api/sim"))
        .bearer_auth("demo-district")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(status["now"], 1_000);
    // Village staff cannot move time.
    let r = http
        .post(format!("{base}/api/sim/clock"))
        .bearer_auth("demo-village-1")
        .json(&serde_json::json!({"to": 5_000}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
    let r: serde_json::Value = http
        .post(format!("{base}/api/sim/clock"))
        .bearer_auth("demo-district")
        .json(&serde_json::json!({"to": 61_000, "after_observations": 0}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r["now"], 61_000);
    // A normal hub has no such endpoint.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let normal = App::build(
        anxin_tests::settings_for(dir2.path()),
        Arc::new(ManualClock::new(0)),
    )
    .await
    .expect("hub");
    let r = http
        .get(format!("http://{}/api/sim", normal.http_addr))
        .bearer_auth("demo-district")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
}

/// Regression: migration 0002 rebuilds the alarms table; on a database with alarms and
/// their timeline (foreign keys on) the first version failed at COMMIT with "FOREIGN KEY
/// constraint failed", so an upgraded hub would not start.
#[tokio::test]
async fn an_existing_database_with_alarms_upgrades_to_the_current_schema() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let opts = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("pool");
    // The schema as the first release left it: migration 1 only.
    let mut first = sqlx::migrate!("../migrations");
    first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
    first.run(&pool).await.expect("migration 1");
    for q in [
        "INSERT INTO towns VALUES ('t', 'T')",
        "INSERT INTO villages VALUES ('v', 't', 'V')",
        "INSERT INTO households VALUES ('h', 'v', 'a')",
        "INSERT INTO alarms (id, household_id, village_id, town_id, rule_id, condition_key, severity, title, detail, state, raised_at) VALUES ('a1', 'h', 'v', 't', 'sos', 'sos', 'critical', 'SOS', 'd', 'raised', 1)",
        "INSERT INTO alarm_timeline (alarm_id, at, step, detail) VALUES ('a1', 1, 'raised', '{}')",
    ] {
        sqlx::query(q).execute(&pool).await.expect(q);
    }
    // Contacts with the spine's per-contact tokens (SHA-256 in contacts.token_hash).
    for (id, role, kind, scope, token) in [
        ("c-v", "village", "village", "v", "old-village-token"),
        ("c-f", "family", "household", "h", "old-family-token"),
    ] {
        sqlx::query("INSERT INTO contacts (id, name, role, scope_kind, scope_id, token_hash, created_at) VALUES ($1, 'n', $2, $3, $4, $5, 1)")
            .bind(id)
            .bind(role)
            .bind(kind)
            .bind(scope)
            .bind(hub::store::token_hash(token))
            .execute(&pool)
            .await
            .expect("contact");
    }
    pool.close().await;

    let store = hub::store::Store::connect(&url)
        .await
        .expect("upgrade migrates");
    let a = store.alarm("a1").await.expect("alarm kept");
    assert_eq!(a.household_id.as_deref(), Some("h"));
    assert_eq!(a.max_level, None);
    assert_eq!(store.timeline("a1").await.expect("timeline").len(), 1);
    // Every token that worked before works after, as the same person with the same scope,
    // now as an API token of an account.
    let now = hub::clock::Clock::now(&hub::clock::SystemClock);
    for (token, id, scope) in [
        (
            "old-village-token",
            "c-v",
            hub::store::Scope::Village("v".into()),
        ),
        (
            "old-family-token",
            "c-f",
            hub::store::Scope::Household("h".into()),
        ),
    ] {
        let (who, t) = store
            .api_token_principal(token, now)
            .await
            .expect("query")
            .unwrap_or_else(|| panic!("{token} still works"));
        assert_eq!((who.id.as_str(), &who.scope), (id, &scope));
        assert_eq!(t.account_id, id);
    }
    assert!(store
        .api_token_principal("not-a-token", now)
        .await
        .expect("query")
        .is_none());
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(store.pool())
        .await
        .expect("fk check");
    assert!(broken.is_empty(), "{broken:?}");
}

/// The demo district is the CSV files in `demo/district/`; `hub admin import` creates it
/// in a fresh database (the README's onboarding example), tokens and secrets included.
#[tokio::test]
async fn the_demo_district_is_created_by_importing_the_csv_files_in_the_repo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("onboard.db").display());
    let csv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/district");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .args(["admin", "import", "--dir"])
        .arg(&csv)
        .env("HUB_DATABASE_URL", &url)
        .output()
        .expect("run hub admin import");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "imported 2 towns, 3 villages, 3 households, 3 elders, 9 devices, 9 contacts"
        ),
        "{stderr}"
    );
    let store = hub::store::Store::connect(&url).await.expect("db");
    let (c, _) = store
        .api_token_principal(
            "demo-village-1",
            hub::clock::Clock::now(&hub::clock::SystemClock),
        )
        .await
        .expect("query")
        .expect("the imported token works");
    assert_eq!(c.id, "c-village-1");
    assert_eq!(c.scope, hub::store::Scope::Village("v-1".into()));
    let auth = store.device_auth("demo-pendant-1").await.expect("query");
    let auth = auth.expect("device imported");
    assert_eq!(auth.household_id, "h-1");
    assert!(hub::secrets::verify_secret(
        "demo-secret",
        &auth.secret_hash
    ));
}

/// Export writes the same six files; re-importing them changes nothing and, since
/// secrets and tokens are never exported, keeps every existing secret and token.
#[tokio::test]
async fn an_exported_district_reimports_without_touching_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("round.db").display());
    let csv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/district");
    let out = dir.path().join("export");
    let hub = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
            .args(args)
            .env("HUB_DATABASE_URL", &url)
            .output()
            .expect("run hub");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    hub(&[
        "admin".as_ref(),
        "import".as_ref(),
        "--dir".as_ref(),
        csv.as_os_str(),
    ]);
    hub(&[
        "admin".as_ref(),
        "export".as_ref(),
        "--dir".as_ref(),
        out.as_os_str(),
    ]);
    let contacts = std::fs::read_to_string(out.join("contacts.csv")).expect("contacts.csv");
    assert!(
        contacts.starts_with("id,name,phone,role,scope,priority,account,channels,language,token\n"),
        "{contacts}"
    );
    assert!(
        contacts.contains("c-village-1,Demo contact 2,,village,village:v-1,0,,,,\n"),
        "{contacts}"
    );
    // A family member's second home names the shared account.
    assert!(
        contacts.contains("c-family-2b,Demo contact 8,,family,household:h-3,0,family-2,,,\n"),
        "{contacts}"
    );
    assert!(
        !contacts.contains("demo-village-1"),
        "tokens are never exported"
    );
    let devices = std::fs::read_to_string(out.join("devices.csv")).expect("devices.csv");
    assert!(
        devices.contains("demo-pendant-1,h-1,sos,demo,\n"),
        "{devices}"
    );
    for f in ["towns.csv", "villages.csv", "households.csv", "elders.csv"] {
        assert_eq!(
            std::fs::read_to_string(out.join(f)).expect(f),
            std::fs::read_to_string(csv.join(f)).expect(f),
            "{f} round-trips"
        );
    }
    // Re-import the export: credentials untouched, nothing printed as "generated".
    let o = hub(&[
        "admin".as_ref(),
        "import".as_ref(),
        "--dir".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "no new secrets or tokens"
    );
    let store = hub::store::Store::connect(&url).await.expect("db");
    assert!(store
        .api_token_principal(
            "demo-village-1",
            hub::clock::Clock::now(&hub::clock::SystemClock)
        )
        .await
        .expect("q")
        .is_some());
    let auth = store
        .device_auth("demo-pendant-1")
        .await
        .expect("q")
        .expect("device");
    assert!(hub::secrets::verify_secret(
        "demo-secret",
        &auth.secret_hash
    ));
}
