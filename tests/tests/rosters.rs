//! Duty rosters (issue 6, item 6), black box: a village's day/night roster and a holiday
//! plan are imported with `hub admin import` (the same files a bureau keeps), then read
//! back over REST — who is on duty across a shift change and on the holiday, the
//! coverage report with its gaps — and over the CLI (`hub admin roster-coverage`). Sick
//! leave is set and deleted over REST by town staff; the permission checks follow
//! docs/api.md. The hub runs on a manual clock in +08:00 (the built-in rules).

use std::path::Path;

use anxin_tests::TestHub;
use hub::roster::Source;
use hub::store::Scope;
use serde_json::{json, Value};

/// Monday 2026-12-07 07:00 +08:00, as unix ms.
const MONDAY_0700: i64 = 1_796_598_000_000;
/// The district's offset in the built-in rules (+08:00), minutes.
const OFFSET: i32 = 480;

/// Two more staff for village v-1 (day and night), the roster and a holiday: on
/// Wednesday 2026-12-09 the demo village worker c-village-1 has 24 hours from 08:00.
/// Sunday nights have no shift and there is no fallback: a gap every week.
const FILES: [(&str, &str); 3] = [
    (
        "contacts.csv",
        "id,name,phone,role,scope,priority,account,token\n\
         c-v1-day,Day worker,,village,village:v-1,0,,roster-day-token\n\
         c-v1-night,Night worker,,village,village:v-1,0,,roster-night-token\n",
    ),
    (
        "rosters.csv",
        "area,days,start,end,contact\n\
         village:v-1,daily,08:00,20:00,c-v1-day\n\
         village:v-1,mon-sat,20:00,08:00,c-v1-night\n",
    ),
    (
        "roster_overrides.csv",
        "area,from,to,start,end,contact,replaces,note\n\
         village:v-1,2026-12-09,,08:00,08:00,c-village-1,,holiday\n",
    ),
];

fn write_files(dir: &Path) {
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text).expect("write csv");
    }
}

/// Run the hub binary on the test hub's database: (exit success, stdout, stderr).
fn hub_cli(hub: &TestHub, args: &[&str]) -> (bool, String, String) {
    let url = format!("sqlite://{}", hub.dir.path().join("anxin.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
        .args(args)
        .env("HUB_DATABASE_URL", &url)
        .output()
        .expect("run hub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A hub with the demo district and the roster of v-1 imported through the CLI.
async fn hub_with_roster() -> TestHub {
    let hub = TestHub::spawn_at(MONDAY_0700).await;
    let csv = hub.dir.path().join("roster-csv");
    std::fs::create_dir_all(&csv).expect("dir");
    write_files(&csv);
    let dir = csv.to_string_lossy().into_owned();
    let (ok, _, stderr) = hub_cli(&hub, &["admin", "import", "--dir", &dir]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("2 contacts, 1 rosters (2 shifts), 1 roster overrides"),
        "{stderr}"
    );
    hub
}

/// `on-duty` for `area` at a local time (`+08:00` is appended): (contacts, source, until).
async fn on_duty(hub: &TestHub, token: &str, area: &str, at: &str) -> (Vec<String>, String, Value) {
    let path = format!("/api/rosters/on-duty?scope={area}&at={at}%2B08:00");
    let (status, body) = hub.api().get(token, &path).await;
    assert_eq!(status, 200, "{path}: {body}");
    let contacts = body["on_duty"]
        .as_array()
        .unwrap_or_else(|| panic!("on_duty list: {body}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    (
        contacts,
        body["source"].as_str().unwrap_or_default().to_owned(),
        body["until"].clone(),
    )
}

#[tokio::test]
async fn on_duty_follows_the_shift_change_and_the_holiday() {
    let hub = hub_with_roster().await;
    let v1 = "village:v-1";
    let t = "demo-village-1";
    // The day shift until 20:00 (end exclusive), then the night shift.
    let (who, source, until) = on_duty(&hub, t, v1, "2026-12-07T19:59:59").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-v1-day".to_owned()], "shift")
    );
    assert_eq!(until, json!("2026-12-07T20:00:00+08:00"));
    let (who, source, _) = on_duty(&hub, t, v1, "2026-12-07T20:00:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-v1-night".to_owned()], "shift")
    );
    let (who, _, _) = on_duty(&hub, t, v1, "2026-12-08T03:00:00").await;
    assert_eq!(who, ["c-v1-night"], "the night shift runs past midnight");
    // The holiday: Tuesday's night shift ends at 08:00 as planned, then the holiday
    // duty replaces the pattern until Thursday 08:00.
    let (who, source, _) = on_duty(&hub, t, v1, "2026-12-09T07:59:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-v1-night".to_owned()], "shift")
    );
    let (who, source, until) = on_duty(&hub, t, v1, "2026-12-09T12:00:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-village-1".to_owned()], "override")
    );
    assert_eq!(until, json!("2026-12-10T08:00:00+08:00"));
    let (who, _, _) = on_duty(&hub, t, v1, "2026-12-09T21:00:00").await;
    assert_eq!(
        who,
        ["c-village-1"],
        "the pattern's Wednesday night is replaced too"
    );
    let (who, source, _) = on_duty(&hub, t, v1, "2026-12-10T08:00:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-v1-day".to_owned()], "shift")
    );
    // Now (Monday 07:00, after a Sunday without a night shift): nobody, until 08:00.
    let (status, body) = hub.api().get(t, "/api/rosters/on-duty").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["area"], json!({"kind": "village", "id": "v-1"}));
    assert_eq!(body["at"], "2026-12-07T07:00:00+08:00");
    assert_eq!(body["on_duty"], json!([]));
    assert_eq!(body["source"], "nobody");
    assert_eq!(body["until"], "2026-12-07T08:00:00+08:00");
    // A village without a roster: all of its staff, as before rosters.
    let (who, source, until) =
        on_duty(&hub, "demo-town-1", "village:v-2", "2026-12-07T03:00:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-village-2".to_owned()], "no_roster")
    );
    assert_eq!(until, Value::Null);

    // The function escalation calls gives the same answers.
    let store = &hub.app.store;
    let v1_scope = Scope::Village("v-1".into());
    let at = |text: &str| {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("time");
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    };
    let d = store
        .on_duty(&v1_scope, at("2026-12-09T12:00:00+08:00"), OFFSET)
        .await
        .expect("on duty");
    assert_eq!(
        (d.contacts, d.source),
        (vec!["c-village-1".to_owned()], Source::Override)
    );
    let d = store
        .on_duty(&Scope::District, at("2026-12-09T12:00:00+08:00"), OFFSET)
        .await
        .expect("on duty");
    assert_eq!(
        (d.contacts, d.source),
        (vec!["c-district".to_owned()], Source::NoRoster)
    );
    assert!(store
        .on_duty(&Scope::Household("h-1".into()), MONDAY_0700, OFFSET)
        .await
        .is_err());
}

#[tokio::test]
async fn coverage_flags_every_hour_with_nobody_on_duty() {
    let hub = hub_with_roster().await;
    let api = hub.api();
    let (status, body) = api
        .get(
            "demo-village-1",
            "/api/rosters/coverage?scope=village:v-1&days=7&from=2026-12-07",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2026-12-07T00:00:00+08:00");
    assert_eq!(body["to"], "2026-12-14T00:00:00+08:00");
    assert_eq!(body["covered"], false);
    let area = &body["areas"][0];
    assert_eq!(area["area"], json!({"kind": "village", "id": "v-1"}));
    assert_eq!(area["roster"], true);
    // Sunday nights have no shift: Monday 00:00-08:00 and Sunday 20:00 to the end.
    assert_eq!(
        area["gaps"],
        json!([
            {"from": "2026-12-07T00:00:00+08:00", "to": "2026-12-07T08:00:00+08:00"},
            {"from": "2026-12-13T20:00:00+08:00", "to": "2026-12-14T00:00:00+08:00"},
        ])
    );
    let flagged: Vec<&str> = body["gap_hours"]
        .as_array()
        .expect("gap_hours")
        .iter()
        .map(|g| g["hour"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(flagged.len(), 12, "{flagged:?}");
    assert_eq!(flagged[7], "2026-12-07T07:00:00+08:00");
    assert_eq!(flagged[8], "2026-12-13T20:00:00+08:00");
    assert_eq!(
        body["gap_hours"][0]["areas"],
        json!([{"kind": "village", "id": "v-1"}])
    );
    let hours = area["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 7 * 24);
    assert_eq!(hours[7]["nobody_minutes"], 60);
    assert_eq!(hours[12]["on_duty"], json!(["c-v1-day"]));
    assert_eq!(hours[12]["nobody_minutes"], 0);
    // Wednesday noon: the holiday duty.
    assert_eq!(hours[2 * 24 + 12]["on_duty"], json!(["c-village-1"]));
    assert_eq!(hours[2 * 24 + 12]["sources"], json!(["override"]));

    // The town sees its own level and its villages: only v-1 has gaps.
    let (status, body) = api
        .get(
            "demo-town-1",
            "/api/rosters/coverage?days=1&from=2026-12-07",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let areas: Vec<String> = body["areas"]
        .as_array()
        .expect("areas")
        .iter()
        .map(|a| format!("{}:{} {}", a["area"]["kind"], a["area"]["id"], a["covered"]))
        .collect();
    assert_eq!(
        areas,
        [
            "\"town\":\"t-1\" true",
            "\"village\":\"v-1\" false",
            "\"village\":\"v-2\" true"
        ]
    );
    assert_eq!(body["areas"][0]["hours"][3]["on_duty"], json!(["c-town-1"]));
    assert_eq!(
        body["areas"][0]["hours"][3]["sources"],
        json!(["no_roster"])
    );

    // The same report on the command line: a table, the gaps, and exit status 1.
    let (ok, stdout, stderr) = hub_cli(
        &hub,
        &[
            "admin",
            "roster-coverage",
            "--scope",
            "village:v-1",
            "--from",
            "2026-12-07",
            "--days",
            "7",
        ],
    );
    assert!(!ok, "a gap is exit status 1\n{stdout}");
    assert!(
        stderr.contains("1 of 1 areas have hours with nobody on duty"),
        "{stderr}"
    );
    for needle in [
        "Duty coverage of village:v-1, Mon 12-07 00:00 to Mon 12-14 00:00 (UTC+08:00)",
        "  Mon 12-07  !  !  !  !  !  !  !  !  S  S",
        "  Wed 12-09  S  S  S  S  S  S  S  S  O  O",
        "    Mon 12-07 08:00 - Mon 12-07 20:00  c-v1-day (shift)",
        "    Wed 12-09 08:00 - Thu 12-10 08:00  c-village-1 (override)",
        "    Sun 12-13 20:00 - Mon 12-14 00:00  !! NOBODY ON DUTY",
        "GAPS: nobody on duty at some level",
        "  village:v-1              Mon 12-07 00:00 - Mon 12-07 08:00",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let (ok, stdout, stderr) = hub_cli(
        &hub,
        &[
            "admin",
            "roster-coverage",
            "--scope",
            "town:t-2",
            "--offset",
            "+08:00",
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("No gaps"), "{stdout}");
    assert!(
        stdout.contains("village:v-3  (no roster: all staff)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn staff_read_their_own_areas_and_town_staff_set_sick_leave() {
    let hub = hub_with_roster().await;
    let api = hub.api();
    // Reading: staff inside their scope; another village, an unknown one or a wider
    // scope is 403 (naming a scope is not a secret); families are refused.
    for (token, path, status) in [
        (
            "demo-village-1",
            "/api/rosters/coverage?scope=village:v-1",
            200,
        ),
        ("demo-village-1", "/api/rosters/coverage", 200),
        (
            "demo-village-1",
            "/api/rosters/coverage?scope=village:v-2",
            403,
        ),
        (
            "demo-village-1",
            "/api/rosters/coverage?scope=village:v-404",
            403,
        ),
        (
            "demo-village-1",
            "/api/rosters/coverage?scope=town:t-1",
            403,
        ),
        (
            "demo-village-3",
            "/api/rosters/on-duty?scope=village:v-1",
            403,
        ),
        ("demo-village-3", "/api/rosters?scope=village:v-1", 403),
        (
            "demo-town-2",
            "/api/rosters/coverage?scope=village:v-1",
            403,
        ),
        ("demo-family-1", "/api/rosters/coverage", 403),
        ("demo-family-1", "/api/rosters/on-duty", 403),
        (
            "demo-town-1",
            "/api/rosters/coverage?scope=household:h-1",
            400,
        ),
        ("demo-town-1", "/api/rosters/coverage?days=15", 400),
        ("demo-town-1", "/api/rosters/coverage?from=2026-13-01", 400),
        (
            "demo-town-1",
            "/api/rosters/on-duty?scope=village:v-1&at=monday",
            400,
        ),
        (
            "demo-district",
            "/api/rosters/coverage?scope=village:v-3&days=14",
            200,
        ),
    ] {
        let (s, body) = api.get(token, path).await;
        assert_eq!(s, status, "{token} GET {path}: {body}");
    }
    let (_, body) = api
        .get("demo-village-1", "/api/rosters/coverage?scope=village:v-2")
        .await;
    assert_eq!(
        body["error"],
        "village:v-2 is outside your scope (village:v-1)"
    );
    let (s, body) = api.get("demo-village-1", "/api/rosters").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["rosters"][0]["shifts"],
        json!([
            {"days": "daily", "start": "08:00", "end": "20:00", "contact": "c-v1-day"},
            {"days": "mon-sat", "start": "20:00", "end": "08:00", "contact": "c-v1-night"},
        ])
    );
    assert_eq!(body["rosters"][0]["overrides"][0]["set_by"], "import");

    // Sick leave: the night worker is ill on Thursday; the village worker covers.
    let sick = json!({"area": "village:v-1", "from": "2026-12-10", "contact": "c-village-1",
                      "replaces": "c-v1-night", "note": "sick leave"});
    let (s, body) = api
        .post("demo-village-1", "/api/rosters/overrides", sick.clone())
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (
            403,
            Some("duty rosters are changed by town or district staff")
        )
    );
    let (s, _) = api
        .post("demo-town-2", "/api/rosters/overrides", sick.clone())
        .await;
    assert_eq!(s, 403, "another town's village");
    for (body, status) in [
        (
            json!({"area": "village:v-1", "from": "2026-12-10", "contact": "c-town-1", "replaces": "c-v1-night"}),
            400,
        ),
        (
            json!({"area": "village:v-1", "from": "2026-12-10", "contact": "c-village-1", "replaces": "c-v1-night", "start": "08:00", "end": "20:00"}),
            400,
        ),
        (
            json!({"area": "village:v-1", "from": "2026-12-01", "contact": "c-village-1", "replaces": "c-v1-night"}),
            400,
        ),
        (
            json!({"area": "village:v-2", "from": "2026-12-10", "contact": "c-village-2"}),
            409,
        ),
        (
            json!({"area": "household:h-1", "from": "2026-12-10", "contact": "c-village-1"}),
            400,
        ),
    ] {
        let (s, got) = api
            .post("demo-town-1", "/api/rosters/overrides", body.clone())
            .await;
        assert_eq!(s, status, "{body}: {got}");
    }
    let (s, body) = api
        .post("demo-town-1", "/api/rosters/overrides", sick)
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["override"]["id"].as_i64().expect("override id");
    assert_eq!(body["override"]["set_by"], "c-town-1");
    let (who, source, _) = on_duty(&hub, "demo-town-1", "village:v-1", "2026-12-10T22:00:00").await;
    assert_eq!(
        (who, source.as_str()),
        (vec!["c-village-1".to_owned()], "override")
    );
    // Friday night is the night worker's again.
    let (who, _, _) = on_duty(&hub, "demo-town-1", "village:v-1", "2026-12-11T22:00:00").await;
    assert_eq!(who, ["c-v1-night"]);

    // Importing the roster files again replaces the imported overrides, not this one.
    let csv = hub
        .dir
        .path()
        .join("roster-csv")
        .to_string_lossy()
        .into_owned();
    let (ok, _, stderr) = hub_cli(&hub, &["admin", "import", "--dir", &csv]);
    assert!(ok, "{stderr}");
    let (_, body) = api
        .get("demo-town-1", "/api/rosters?scope=village:v-1")
        .await;
    assert_eq!(
        body["rosters"][0]["overrides"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let (who, _, _) = on_duty(&hub, "demo-town-1", "village:v-1", "2026-12-10T22:00:00").await;
    assert_eq!(who, ["c-village-1"]);

    // Deleting: not by another town; by the town, audited.
    let path = format!("/api/rosters/overrides/{id}");
    let (s, _) = api
        .call(reqwest::Method::DELETE, "demo-town-2", &path, None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call(reqwest::Method::DELETE, "demo-town-1", &path, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(reqwest::Method::DELETE, "demo-town-1", &path, None)
        .await;
    assert_eq!(s, 404, "already gone");
    let (who, _, _) = on_duty(&hub, "demo-town-1", "village:v-1", "2026-12-10T22:00:00").await;
    assert_eq!(who, ["c-v1-night"]);
    let (_, audit) = api.get("demo-district", "/api/audit?limit=1000").await;
    let entries: Vec<String> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("roster:"))
                || e["action"] == "roster.manage"
        })
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"], e["action"], e["target"], e["outcome"]
            )
            .replace('"', "")
        })
        .collect();
    assert_eq!(
        entries,
        [
            "c-village-1 roster.manage scope denied",
            "c-town-2 roster.manage scope:village:v-1 denied",
            "c-town-1 roster.override.set roster:village:v-1 allowed",
            "c-town-2 roster.manage scope:village:v-1 denied",
            "c-town-1 roster.override.delete roster:village:v-1 allowed",
        ]
    );
}

/// The notified step at level 0 of a fresh SOS in h-1: its recipients.
async fn sos_recipients(hub: &TestHub) -> Vec<String> {
    let pendant = hub.device("demo-pendant-1").await;
    let ack = pendant
        .send_critical(
            &device_sim::payload::event("sos", json!({})),
            anxin_tests::PATIENCE,
        )
        .await
        .expect("sos acknowledged");
    let id = ack["alarm_id"].as_str().expect("alarm id").to_owned();
    let (s, body) = hub
        .api()
        .get("demo-district", &format!("/api/alarms/{id}"))
        .await;
    assert_eq!(s, 200);
    let notified = body["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|s| s["step"] == "notified"))
        .cloned()
        .expect("notified step");
    // Resolve it so the next SOS is a new alarm.
    let (s, _) = hub
        .api()
        .post(
            "demo-district",
            &format!("/api/alarms/{id}/resolve"),
            json!({"disposition": "other"}),
        )
        .await;
    assert_eq!(s, 200);
    notified["detail"]["recipients"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Escalation notifies whoever is on duty at that moment (and the family, who are not
/// rostered); a gap in the roster is never silence: the whole level is told.
#[tokio::test]
async fn an_alarm_goes_to_whoever_is_on_duty_and_a_gap_goes_to_everyone() {
    let hub = hub_with_roster().await;
    // Monday 07:00: the Sunday-night shift does not exist (mon-sat nights), no fallback.
    assert_eq!(
        sos_recipients(&hub).await,
        ["c-family-1", "c-v1-day", "c-v1-night", "c-village-1"],
        "a gap: every contact of the level"
    );
    // Monday 09:00: the day worker's shift.
    hub.advance(2 * 3600);
    assert_eq!(sos_recipients(&hub).await, ["c-family-1", "c-v1-day"]);
    // Monday 21:00: the night worker's.
    hub.advance(12 * 3600);
    assert_eq!(sos_recipients(&hub).await, ["c-family-1", "c-v1-night"]);
}
