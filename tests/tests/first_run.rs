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

/// Like [`wait_line`], but a failure shows what the process printed.
async fn wait_line_or_show(
    log: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = String::new();
    loop {
        match tokio::time::timeout_at(deadline, log.recv()).await {
            Ok(Some(line)) if line.contains(needle) => return line,
            Ok(Some(line)) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            other => panic!("never printed {needle:?} ({other:?}); printed:\n{seen}"),
        }
    }
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
    let line = wait_line_or_show(
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

fn device_sim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_device-sim-under-test"))
}

/// A `device-sim` command running: its stdout and stderr, line by line.
struct DeviceSim {
    child: tokio::process::Child,
    out: tokio::sync::mpsc::UnboundedReceiver<String>,
    err: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl DeviceSim {
    fn start(args: &[&str]) -> DeviceSim {
        let mut child = tokio::process::Command::new(device_sim_binary())
            .args(args)
            .env_remove("ANXIN_MQTT_HOST")
            .env_remove("ANXIN_MQTT_PORT")
            .env_remove("ANXIN_DEVICE_SECRET")
            .env_remove("ANXIN_HTTP")
            .env_remove("ANXIN_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("device-sim starts");
        let out = lines(child.stdout.take().expect("stdout"));
        let err = anxin_tests::process::stderr_lines(&mut child);
        DeviceSim { child, out, err }
    }

    /// Its exit status within `within`, and the rest of its stdout and stderr.
    async fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String, String) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("device-sim did not exit within {within:?}"))
            .expect("wait");
        (status, rest(&mut self.out).await, rest(&mut self.err).await)
    }
}

fn lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::AsyncBufReadExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    rx
}

async fn rest(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    let mut s = String::new();
    while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, rx.recv()).await {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// The next stdout line of a `watch` as JSON, skipping lines until `pred` holds.
async fn next_json(
    out: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let line = match tokio::time::timeout_at(deadline, out.recv()).await {
            Ok(Some(line)) => line,
            other => panic!("watch never printed {what} ({other:?})"),
        };
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("watch printed a line that is not JSON: {line:?}: {e}"));
        if pred(&v) {
            return v;
        }
    }
}

/// Issue 15, item 8: `device-sim send` used to give up after 10 s without a connection
/// ("not connected within 10s"), whatever --give-up-secs said. Started while the hub is
/// down, an SOS must be acknowledged once the hub is up, 12 s later.
#[tokio::test]
async fn send_keeps_an_sos_through_an_outage_longer_than_ten_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port(); // nobody listens there yet: the hub is down
    let port_arg = port.to_string();
    let began = tokio::time::Instant::now();
    let mut send = DeviceSim::start(&[
        "send",
        "--port",
        &port_arg,
        "--device",
        "demo-pendant-1",
        "--secret",
        SECRET,
        "--give-up-secs",
        "60",
        "sos",
    ]);
    wait_line(
        &mut send.err,
        &format!("cannot reach the hub at 127.0.0.1:{port}"),
        PATIENCE,
    )
    .await;
    // The outage itself: 12 s, longer than the old 10 s limit.
    tokio::time::sleep_until(began + Duration::from_secs(12)).await;
    assert!(
        send.child.try_wait().expect("try_wait").is_none(),
        "device-sim send gave up during the outage: {}",
        rest(&mut send.err).await
    );
    let _hub =
        anxin_tests::process::HubProcess::start(&hub_binary(), dir.path(), port, None, &[]).await;
    let (status, out, err) = send.finish(Duration::from_secs(40)).await;
    assert!(status.success(), "{out}\n{err}");
    let ack = out
        .lines()
        .find_map(|l| l.strip_prefix("acknowledged by hub: "))
        .unwrap_or_else(|| panic!("no ack in {out}"));
    let ack: serde_json::Value = serde_json::from_str(ack).expect("ack is JSON");
    assert_eq!(ack["result"], "stored", "{ack}");
    assert!(
        err.contains(&format!("connected to the hub at 127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(
        anxin_tests::process::count(dir.path(), "SELECT COUNT(*) FROM alarms").await,
        1
    );
}

/// When `send` gives up it says why: here nothing ever listened on the port.
#[tokio::test]
async fn send_that_never_connected_says_so_and_how_to_fix_it() {
    let port = free_port().to_string();
    let send = DeviceSim::start(&[
        "send",
        "--port",
        &port,
        "--device",
        "demo-pendant-1",
        "--secret",
        SECRET,
        "--give-up-secs",
        "2",
        "sos",
    ]);
    let (status, out, err) = send.finish(PATIENCE).await;
    assert!(!status.success(), "{out}");
    assert!(
        err.contains(&format!(
            "gave up after 2 s: never connected to the hub at 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains("is the hub running"), "{err}");
}

/// Issue 15, item 9: the README's walkthrough step 1, `device-sim watch`, prints the
/// village board's live feed as JSON lines: hello, then the SOS's steps; another
/// village's feed stays quiet; after a hub restart it reconnects and carries on.
#[tokio::test]
async fn watch_prints_the_live_feed_of_the_walkthrough() {
    let hub = anxin_tests::TestHub::spawn().await;
    // As the README writes it, on this hub's port.
    let http = format!("http://localhost:{}", hub.app.http_addr.port());
    let mut village1 = DeviceSim::start(&["watch", "--http", &http, "--token", "demo-village-1"]);
    let mut village2 = DeviceSim::start(&[
        "watch",
        "--http",
        &http,
        "--token",
        "demo-village-2",
        "--exit-after",
        "5",
    ]);
    let hello = next_json(&mut village1.out, "hello", |v| v["type"] == "hello").await;
    assert_eq!(hello["contact"], "c-village-1", "{hello}");
    next_json(&mut village2.out, "hello", |v| v["type"] == "hello").await;

    let alarm = hub.raise("demo-pendant-1", "sos").await;
    for step in ["raised", "notified"] {
        let m = next_json(&mut village1.out, step, |v| v["type"] == "alarm").await;
        assert_eq!(m["step"], step, "{m}");
        assert_eq!(m["alarm"]["id"], alarm.as_str(), "{m}");
    }
    let (status, out, _) = village2.finish(PATIENCE).await;
    assert!(status.success(), "--exit-after ends with success");
    assert_eq!(out, "", "village v-2 saw v-1's alarm");

    // A hub restart: the watch reconnects by itself, and what happened meanwhile is
    // printed too (it asks for every step after the last one it printed).
    let hub = hub
        .restart_in_place(async {
            wait_line(&mut village1.err, "reconnecting", PATIENCE).await;
        })
        .await;
    let api = hub.api();
    let (status, body) = api
        .post(
            "demo-village-1",
            &format!("/api/alarms/{alarm}/acknowledge"),
            json!({"note": "calling her now"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_line(&mut village1.err, "reconnected to the hub", PATIENCE).await;
    let m = next_json(&mut village1.out, "acknowledged", |v| {
        v["step"] == "acknowledged"
    })
    .await;
    assert_eq!(m["alarm"]["id"], alarm.as_str(), "{m}");
    village1.child.start_kill().expect("kill");
}

/// `--count N` ends the watch after N alarm or delivery messages (for scripts).
#[tokio::test]
async fn watch_count_exits_after_that_many_messages() {
    let hub = anxin_tests::TestHub::spawn().await;
    let mut watch = DeviceSim::start(&[
        "watch",
        "--http",
        &hub.http,
        "--token",
        "demo-village-1",
        "--count",
        "1",
    ]);
    next_json(&mut watch.out, "hello", |v| v["type"] == "hello").await;
    hub.raise("demo-pendant-1", "sos").await;
    let (status, out, err) = watch.finish(PATIENCE).await;
    assert!(status.success(), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["step"], "raised", "{out}");
}

/// A wrong token is refused at once, with the reason, not retried forever.
#[tokio::test]
async fn watch_with_a_wrong_token_fails_at_once() {
    let hub = anxin_tests::TestHub::spawn().await;
    let watch = DeviceSim::start(&["watch", "--http", &hub.http, "--token", "not-a-token"]);
    let (status, _, err) = watch.finish(PATIENCE).await;
    assert!(!status.success());
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("is the token right"), "{err}");
}
