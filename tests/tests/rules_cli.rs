//! `hub rules check` and `hub rules test`, run as the real binary: what a supervisor
//! sees on the terminal, and the exit codes scripts rely on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hub_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hub-under-test"))
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn hub(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(hub_binary())
        .args(args)
        // settings must not matter to `hub rules`
        .env("HUB_CONFIG", "/nonexistent/hub.toml")
        .env_remove("ANXIN_FAILPOINT")
        .output()
        .expect("hub binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_shipped_rules_file() {
    let default = repo_file("alert-rules/rules/default.toml");
    let out = hub(&["rules".as_ref(), "check".as_ref(), default.as_os_str()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("default.toml: ok"), "{stdout}");
    assert!(stdout.contains("timezone offset: +08:00"), "{stdout}");
    assert!(stdout.contains(" sos, fall, smoke"), "{stdout}");
}

#[test]
fn check_points_at_the_line_and_column_of_a_mistake() {
    let src = std::fs::read_to_string(repo_file("alert-rules/rules/default.toml"))
        .expect("default rules");
    let line = 1 + src
        .lines()
        .position(|l| l.starts_with("signal = \"smoke\""))
        .expect("the smoke rule");
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        src.replacen("signal = \"smoke\"", "signal = \"smok\"", 1),
    )
    .expect("write");

    let out = hub(&["rules".as_ref(), "check".as_ref(), broken.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(text(&out.stdout), "");
    let want = format!("broken.toml:{line}:10: error: unknown signal \"smok\"");
    assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
    assert!(
        stderr.contains(&format!("\n{line} | signal = \"smok\"")),
        "{stderr}"
    );
    assert!(stderr.ends_with("|          ^\n"), "{stderr}");
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let out = hub(&[
        "rules".as_ref(),
        "check".as_ref(),
        "/nonexistent/rules.toml".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/rules.toml"));
}

/// The raise lines of `hub rules test`: (local time, severity, household, rule, device).
fn raises(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.contains("  RAISE  "))
        .map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            vec![
                cols[0].clone(),
                cols[2].clone(),
                cols[3].clone(),
                cols[4].clone(),
                cols[5].clone(),
            ]
        })
        .collect()
}

fn row(cols: [&str; 5]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

#[test]
fn test_replays_a_recording_on_virtual_time() {
    let rules = fixture("rules-replay.toml");
    let events = fixture("rules-replay.jsonl");
    let out = hub(&[
        "rules".as_ref(),
        "test".as_ref(),
        rules.as_os_str(),
        "--events".as_ref(),
        events.as_os_str(),
        "--until".as_ref(),
        "2026-11-02T18:00:00+08:00".as_ref(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(
        raises(&stdout),
        vec![
            row([
                "2026-11-02T09:15:00+08:00",
                "critical",
                "h-0001",
                "sos",
                "d-0001-sos"
            ]),
            // 36.5 °C from 11:00, for_minutes = 10
            row([
                "2026-11-02T11:10:00+08:00",
                "warning",
                "h-0002",
                "high-temperature",
                "d-0002-temp"
            ]),
            // h-0002's last motion 08:00 + 4 h
            row([
                "2026-11-02T12:00:00+08:00",
                "warning",
                "h-0002",
                "no-activity-daytime",
                "-"
            ]),
            // h-0001's last motion 10:00 + 4 h
            row([
                "2026-11-02T14:00:00+08:00",
                "warning",
                "h-0001",
                "no-activity-daytime",
                "-"
            ]),
            // Last Will at 16:00 + offline_grace_minutes = 2
            row([
                "2026-11-02T16:02:00+08:00",
                "warning",
                "h-0002",
                "device-offline",
                "d-0002-temp"
            ]),
            // h-0002's last motion 12:30 + 4 h, reached only because of --until
            row([
                "2026-11-02T16:30:00+08:00",
                "warning",
                "h-0002",
                "no-activity-daytime",
                "-"
            ]),
        ]
    );
    assert_eq!(stdout.matches("  CLEAR  ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("\nno-activity-daytime       3       2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\ntotal                     6       3\n"),
        "{stdout}"
    );
}

#[test]
fn test_with_a_bad_line_still_prints_the_alarms_and_exits_3() {
    let src = std::fs::read_to_string(fixture("rules-replay.jsonl")).expect("fixture");
    let bad_line = src.lines().count() + 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("recorded.jsonl");
    let sos = r#"{"at":"2026-11-02T17:00:00+08:00","household":"h-0002","device":"d-0002-sos","event":{"v":1,"event_id":"late","ts":"2026-11-02T17:00:00+08:00","kind":"sos"}}"#;
    std::fs::write(&events, format!("{src}{{\"at\": oops\n{sos}\n")).expect("write");
    let rules = fixture("rules-replay.toml");
    let out = hub(&[
        "rules".as_ref(),
        "test".as_ref(),
        rules.as_os_str(),
        "--events".as_ref(),
        events.as_os_str(),
        "--json".as_ref(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("recorded.jsonl:{bad_line}: not valid JSON")),
        "{stderr}"
    );
    assert!(stderr.contains("1 bad line skipped"), "{stderr}");
    let decisions: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("--json prints one JSON object per line"))
        .collect();
    // The SOS after the bad line was still replayed, at its own time.
    let late_sos = decisions
        .iter()
        .find(|d| d["rule_id"] == "sos" && d["household"] == "h-0002")
        .expect("the SOS after the bad line");
    assert_eq!(late_sos["action"], "raise");
    // 2026-11-02T17:00:00+08:00 in Unix milliseconds
    assert_eq!(late_sos["at"], 1_793_610_000_000_i64);
}

#[test]
fn test_of_a_missing_recording_exits_2() {
    let rules = fixture("rules-replay.toml");
    let out = hub(&[
        "rules".as_ref(),
        "test".as_ref(),
        rules.as_os_str(),
        "--events".as_ref(),
        "/nonexistent/recorded.jsonl".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/recorded.jsonl"));
}
