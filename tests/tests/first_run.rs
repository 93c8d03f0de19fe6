//! What a new user meets (issue 15, items 7-9): the README's first command on a machine
//! where another broker already has 1883, and the walkthrough's `device-sim` commands.
//! The hub is the real binary, started as a user starts it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anxin_tests::process::{free_port, spawn_as_new_user, wait_line};
use anxin_tests::{PATIENCE, SECRET};
use device_sim::{payload, Device, DeviceConfig};
use serde_json::json;

fn hub_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hub-under-test"))
}

/// How long a debug hub may take from exec to "hub started" (demo seeding hashes
/// passwords; two cores shared with other builds).
const START: Duration = Duration::from_secs(60);

fn database_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("anxin.db"))
        .collect()
}

/// Wait for the process to exit; its status and everything it wrote on stderr.
async fn exit_within(
    child: &mut tokio::process::Child,
    log: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the hub did not exit within {within:?}"))
        .expect("wait");
    let mut out = String::new();
    // The pipe closes when the process is gone; take what it wrote.
    while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, log.recv()).await {
        out.push_str(&line);
        out.push('\n');
    }
    (status, out)
}

/// `cargo run -p hub -- --demo` with 1883 taken (Mosquitto on this machine; a listener
/// held here where there is none): the hub starts on the next free port and says where.
#[tokio::test]
async fn with_demo_a_taken_default_mqtt_port_moves_and_the_hub_says_where() {
    // Port 1883 is taken either by this test or by a broker already running.
    let _held = std::net::TcpListener::bind("0.0.0.0:1883");
    let err = std::net::TcpListener::bind("0.0.0.0:1883").expect_err("1883 is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let dir = tempfile::tempdir().expect("tempdir");
    // HTTP set (a free port), MQTT left at its default.
    let http = free_port();
    let http_listen = format!("127.0.0.1:{http}");
    let (mut child, mut log) = spawn_as_new_user(
        &hub_binary(),
        dir.path(),
        &[("HUB_HTTP__LISTEN", &http_listen)],
    );
    let line = wait_line(
        &mut log,
        "MQTT (devices) port 1883 was taken, so this hub listens on port",
        START,
    )
    .await;
    let port: u16 = line
        .split("listens on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_ne!(port, 1883);
    wait_line(
        &mut log,
        &format!("Board: http://localhost:{http}/    MQTT for devices: localhost:{port}"),
        PATIENCE,
    )
    .await;

    // It is this hub that listens there: a demo device's SOS is acknowledged.
    let dev = Device::connect(
        DeviceConfig::new("127.0.0.1", port, "demo-pendant-1", SECRET),
        PATIENCE,
    )
    .await
    .expect("the demo pendant connects to the port the hub printed");
    let ack = dev
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("SOS acknowledged");
    assert_eq!(ack["result"], "stored", "{ack}");
    dev.disconnect().await;
    child.start_kill().expect("kill");
    let _ = child.wait().await;
}

/// A port that was set is never moved: the start stops at once, names the variable to
/// change, and leaves no database behind.
#[tokio::test]
async fn a_taken_port_that_was_set_stops_the_start_at_once_naming_the_variable() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = held.local_addr().expect("addr").to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (var, other) in [
        ("HUB_MQTT__LISTEN", "HUB_HTTP__LISTEN"),
        ("HUB_HTTP__LISTEN", "HUB_MQTT__LISTEN"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let began = std::time::Instant::now();
        let (mut child, mut log) =
            spawn_as_new_user(&hub_binary(), dir.path(), &[(var, &taken), (other, &free)]);
        let (status, err) = exit_within(&mut child, &mut log, START).await;
        assert!(!status.success(), "{var}: the hub started on a taken port");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{var}: took {:?} to fail",
            began.elapsed()
        );
        assert!(
            err.contains(&format!("set {var} to a free address")),
            "{var}: {err}"
        );
        assert!(err.contains("already in use"), "{var}: {err}");
        assert_eq!(
            database_files(dir.path()),
            Vec::<String>::new(),
            "{var}: a failed start left a database"
        );
    }
}

/// A start that fails after it created the database (here: an invalid rules file)
/// removes it; a database that was there before is kept.
#[tokio::test]
async fn a_failed_start_removes_the_database_it_created_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "this is not a rules file").expect("write");
    let rules = rules.display().to_string();
    let mqtt = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let env = [
        ("HUB_RULES__FILE", rules.as_str()),
        ("HUB_MQTT__LISTEN", mqtt.as_str()),
        ("HUB_HTTP__LISTEN", http.as_str()),
    ];
    let (mut child, mut log) = spawn_as_new_user(&hub_binary(), dir.path(), &env);
    let (status, err) = exit_within(&mut child, &mut log, START).await;
    assert!(!status.success());
    assert!(err.contains("rules.toml"), "{err}");
    assert_eq!(database_files(dir.path()), Vec::<String>::new(), "{err}");

    // Someone's existing database.
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("anxin.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.expect("create db");
    sqlx::query("CREATE TABLE keep_me (x INTEGER)")
        .execute(&pool)
        .await
        .expect("create table");
    pool.close().await;
    let (mut child, mut log) = spawn_as_new_user(&hub_binary(), dir.path(), &env);
    let (status, err) = exit_within(&mut child, &mut log, START).await;
    assert!(!status.success());
    assert!(dir.path().join("anxin.db").exists(), "{err}");
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open db");
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keep_me")
        .fetch_one(&pool)
        .await
        .expect("the existing table is still there");
    assert_eq!(kept, 0);
    pool.close().await;
}
