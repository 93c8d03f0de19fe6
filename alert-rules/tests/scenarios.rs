//! Table-driven scenario tests: every case is a rule file, a list of steps in
//! a tiny text language, and the expected decisions, all run through `check`.
//!
//! Step language (times are UTC: `dN HH:MM` = N days after 2024-01-01):
//!   `d0 08:00 h1/d1 smoke 1`      observation (now = at)
//!   `d0 08:00 tick`               tick
//!   `watch h1 d0 08:00`           watch_household
//!   `watchdev h1/d1 d0 08:00`     watch_device
//!   `roundtrip`                   rebuild the engine from the JSON of its state
//! Signals: sos fall hb online offline checkin | motion/door/bed/smoke/gas/leak/visit 0|1 |
//!   water M3 | waterv M3 (interval) | power KWH [W] | powerv KWH | temp C | hr BPM |
//!   battery PCT | steps N | away 0|1 [HOURS]
//! Commands: `d0 08:00 mode h1 away d3 08:00` (set_mode until), `d0 08:00 endmode h1`,
//!   `d0 08:00 carer h1 1|0` (visit from the board), `area h1 v1` (set_area)
//!
//! Expected decisions: `raise sos`, `clear high-temperature:t1`, with the
//! household prefixed when it is not `h1` (`h2 raise sos`), and optionally the
//! time (`raise sos @d0 08:00`).
//!
//! Besides the expected list, `check` asserts on every scenario: an engine
//! rebuilt from `serde_json` of its state before every step decides
//! identically; a second `tick` at the same `now` yields nothing; a `tick`
//! with an earlier `now` yields nothing; `next_deadline` is exact (ticking one
//! millisecond before it yields nothing, ticking at it yields something).
#![allow(clippy::unwrap_used)]

use alert_rules::{Action, Decision, Engine, EngineState, Millis, Observation, RuleSet, Signal};

const BASE: Millis = 1_704_067_200_000; // 2024-01-01 00:00 UTC
const MIN: Millis = 60_000;
const HOUR: Millis = 60 * MIN;
const DAY: Millis = 24 * HOUR;

fn parse_time(day: &str, hhmm: &str) -> Millis {
    let d: i64 = day.strip_prefix('d').unwrap().parse().unwrap();
    let (h, m) = hhmm.split_once(':').unwrap();
    BASE + d * DAY + h.parse::<i64>().unwrap() * HOUR + m.parse::<i64>().unwrap() * MIN
}

fn fmt_time(t: Millis) -> String {
    let rel = t - BASE;
    let d = rel.div_euclid(DAY);
    let r = rel.rem_euclid(DAY);
    format!("d{d} {:02}:{:02}", r / HOUR, (r % HOUR) / MIN)
}

fn parse_signal(words: &[&str]) -> Signal {
    let num = |i: usize| words[i].parse::<f64>().unwrap();
    let flag = || match words[1] {
        "1" => true,
        "0" => false,
        other => panic!("flag must be 0 or 1, got {other}"),
    };
    match words[0] {
        "sos" => Signal::Sos,
        "fall" => Signal::Fall,
        "hb" => Signal::Heartbeat,
        "online" => Signal::Online,
        "offline" => Signal::Offline,
        "motion" => Signal::Motion { occupancy: flag() },
        "door" => Signal::Door { open: flag() },
        "bed" => Signal::Bed { occupied: flag() },
        "smoke" => Signal::Smoke { alarm: flag() },
        "gas" => Signal::Gas { alarm: flag() },
        "leak" => Signal::WaterLeak { leak: flag() },
        "water" => Signal::WaterMeter { total_m3: num(1) },
        "power" => Signal::PowerMeter {
            total_kwh: num(1),
            power_w: words.get(2).map(|w| w.parse().unwrap()),
        },
        "temp" => Signal::Temperature { celsius: num(1) },
        "hr" => Signal::HeartRate { bpm: num(1) },
        "battery" => Signal::Battery { percent: num(1) },
        "waterv" => Signal::WaterVolume { m3: num(1) },
        "powerv" => Signal::EnergyVolume {
            kwh: num(1),
            power_w: None,
        },
        "steps" => Signal::Steps { count: num(1) },
        "checkin" => Signal::CheckIn,
        "visit" => Signal::Visit {
            start: flag(),
            carer: Some("tag-1".into()),
        },
        "away" => Signal::Away {
            away: flag(),
            hours: words.get(2).map(|w| w.parse().unwrap()),
        },
        other => panic!("unknown signal {other}"),
    }
}

fn split_hd(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap()
}

/// Runs one step; returns the decisions and the `now` used.
fn step(engine: &mut Engine, line: &str) -> (Vec<Decision>, Option<Millis>) {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w[0] {
        "roundtrip" => {
            let json = serde_json::to_string(engine.state()).unwrap();
            let state: EngineState = serde_json::from_str(&json).unwrap();
            assert_eq!(&state, engine.state(), "state must round-trip exactly");
            *engine = Engine::with_state(engine.rules().clone(), state);
            (vec![], None)
        }
        "watch" => {
            engine.watch_household(w[1], parse_time(w[2], w[3]));
            (vec![], None)
        }
        "watchdev" => {
            let (h, d) = split_hd(w[1]);
            engine.watch_device(h, d, parse_time(w[2], w[3]));
            (vec![], None)
        }
        "area" => {
            engine.set_area(w[1], Some(w[2]));
            (vec![], None)
        }
        _ => {
            let now = parse_time(w[0], w[1]);
            if w[2] == "tick" {
                (engine.tick(now), Some(now))
            } else if w[2] == "mode" {
                // `d0 08:00 mode h1 away d3 08:00`
                let kind = alert_rules::ModeKind::parse(w[4]).unwrap();
                let until = parse_time(w[5], w[6]);
                (engine.set_mode(w[3], kind, until, now), Some(now))
            } else if w[2] == "endmode" {
                (engine.end_mode(w[3], now), Some(now))
            } else if w[2] == "carer" {
                // `d0 08:00 carer h1 1` — a visit checked in (1) / out (0) on the board
                (engine.visit(w[3], w[4] == "1", Some("c1"), now), Some(now))
            } else {
                let (h, d) = split_hd(w[2]);
                let obs = Observation {
                    household: h.to_string(),
                    device: d.to_string(),
                    at: now,
                    signal: parse_signal(&w[3..]),
                };
                (engine.observe(&obs, now), Some(now))
            }
        }
    }
}

fn summary(d: &Decision) -> String {
    let who = match (d.household.as_deref(), d.village.as_deref()) {
        (Some("h1"), None) => String::new(),
        (Some(h), None) => format!("{h} "),
        (None, Some(v)) => format!("village {v} "),
        other => panic!("a decision names exactly one of household and village: {other:?}"),
    };
    let action = match d.action {
        Action::Raise => "raise",
        Action::Clear => "clear",
    };
    format!("{who}{action} {} @{}", d.condition_key, fmt_time(d.at))
}

fn assert_deadline_exact(engine: &Engine) {
    let Some(due) = engine.next_deadline() else {
        return;
    };
    let clock = engine.state().clock().unwrap_or(i64::MIN);
    if due > clock {
        assert!(
            engine.clone().tick(due - 1).is_empty(),
            "tick just before next_deadline must yield nothing"
        );
    }
    // Some timers only change state (a device held back before "home
    // unreachable" is judged, a mode expiring): ticking at the deadline must
    // at least move it on.
    let mut after = engine.clone();
    let at = due.max(clock);
    let got = after.tick(at);
    assert!(
        !got.is_empty() || after.next_deadline().is_none_or(|d| d > at),
        "tick at next_deadline must fire its timer"
    );
}

/// Runs a scenario and compares the decisions with `expected`.
fn check(name: &str, rules: &str, steps: &[&str], expected: &[&str]) -> Vec<Decision> {
    let rules = RuleSet::from_toml_str(rules).unwrap_or_else(|e| panic!("{name}: rules: {e}"));
    let mut engine = Engine::new(rules.clone());
    let mut shadow = Engine::new(rules);
    let mut all = Vec::new();
    for line in steps {
        let (got, now) = step(&mut engine, line);
        // the shadow engine is rebuilt from JSON before every step
        step(&mut shadow, "roundtrip");
        let (shadow_got, _) = step(&mut shadow, line);
        assert_eq!(
            got, shadow_got,
            "{name}: round-tripped engine differs at `{line}`"
        );
        if let Some(now) = now {
            if line.ends_with("tick") {
                assert!(
                    engine.clone().tick(now).is_empty(),
                    "{name}: second tick at `{line}` not idempotent"
                );
                assert!(
                    engine.clone().tick(now - HOUR).is_empty(),
                    "{name}: tick with an earlier now raised something after `{line}`"
                );
            }
            for d in &got {
                assert!(d.at <= now, "{name}: decision later than now: {d:?}");
            }
        }
        for d in &got {
            assert!(!d.title.is_empty() && !d.detail.is_empty(), "{name}: {d:?}");
            let per_device = d.condition_key.contains(':');
            if per_device {
                assert_eq!(
                    d.condition_key,
                    format!("{}:{}", d.rule_id, d.device.as_deref().unwrap())
                );
            } else {
                assert_eq!(d.condition_key, d.rule_id);
            }
        }
        assert_deadline_exact(&engine);
        all.extend(got);
    }
    let got: Vec<String> = all
        .iter()
        .zip(expected.iter().chain(std::iter::repeat(&"")))
        .map(|(d, e)| {
            let full = summary(d);
            if e.contains('@') {
                full
            } else {
                full.split(" @").next().unwrap().to_string()
            }
        })
        .collect();
    assert_eq!(
        got, expected,
        "{name}: decisions differ; details: {:#?}",
        all
    );
    all
}

// ---------------------------------------------------------------------------
// Rule files used by the cases (UTC unless stated, to keep times readable).

const INSTANT: &str = r#"
[[rule]]
id = "sos"
kind = "instant"
signal = "sos"
severity = "critical"
title = "SOS button pressed"

[[rule]]
id = "fall"
kind = "instant"
signal = "fall"
severity = "critical"
title = "Fall detected"

[[rule]]
id = "smoke"
kind = "instant"
signal = "smoke"
severity = "critical"
title = "Smoke detected"

[[rule]]
id = "gas"
kind = "instant"
signal = "gas"
severity = "critical"
title = "Gas"

[[rule]]
id = "water-leak"
kind = "instant"
signal = "water_leak"
severity = "critical"
title = "Leak"

[[override]]
household = "h2"
rule = "sos"
enabled = false
"#;

const THRESHOLD: &str = r#"
[[rule]]
id = "high-temperature"
kind = "threshold"
signal = "temperature"
above = 35.0
for_minutes = 10
clear_minutes = 5
clear_margin = 1.0
severity = "warning"
title = "Room too hot"

[[rule]]
id = "heart-rate"
kind = "threshold"
signal = "heart_rate"
above = 130
below = 40
for_minutes = 5
severity = "critical"
title = "Abnormal heart rate"

[[rule]]
id = "flap"
kind = "threshold"
signal = "power_w"
above = 2000
clear_minutes = 5
clear_margin = 100
severity = "info"
title = "Heavy load"
"#;

const INACTIVITY: &str = r#"
[[rule]]
id = "day"
kind = "inactivity"
activity = ["motion", "door", "bed", "water_use", "power_use", "button"]
hours = 4.0
window = "07:00-22:00"
severity = "warning"
title = "No sign of life"

[[rule]]
id = "night"
kind = "inactivity"
activity = ["bed"]
hours = 3
window = "22:00-07:00"
severity = "info"
title = "Not in bed"
enabled = false

[[override]]
household = "h2"
rule = "night"
enabled = true

[[override]]
household = "h2"
rule = "day"
enabled = false
"#;

const WATER: &str = r#"
[[rule]]
id = "no-water-use"
kind = "inactivity"
activity = ["water_use"]
hours = 24.0
severity = "warning"
title = "No water used for 24 hours"
"#;

const POWER: &str = r#"
[[rule]]
id = "no-power-use"
kind = "inactivity"
activity = ["power_use"]
hours = 1
severity = "info"
title = "No power used"
"#;

const HEALTH: &str = r#"
[[rule]]
id = "device-offline"
kind = "device_offline"
heartbeat_minutes = 10
missed_heartbeats = 3
offline_grace_minutes = 2
severity = "warning"
title = "Device offline"

[[rule]]
id = "low-battery"
kind = "low_battery"
below_percent = 15
clear_above_percent = 25
severity = "info"
title = "Low battery"
"#;

#[test]
fn instant_rules() {
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "sos raises on every press",
            &["d0 08:00 h1/b1 sos", "d0 08:01 h1/b1 sos"],
            &["raise sos @d0 08:00", "raise sos @d0 08:01"],
        ),
        ("fall raises", &["d0 08:00 h1/r1 fall"], &["raise fall"]),
        (
            "smoke raises on every true, clears once on false",
            &[
                "d0 08:00 h1/s1 smoke 1",
                "d0 08:01 h1/s1 smoke 1",
                "d0 08:05 h1/s1 smoke 0",
                "d0 08:06 h1/s1 smoke 0",
            ],
            &["raise smoke", "raise smoke", "clear smoke @d0 08:05"],
        ),
        (
            "false without a raise does nothing",
            &["d0 08:00 h1/s1 smoke 0", "d0 08:00 h1/g1 gas 0"],
            &[],
        ),
        (
            "household-wide: clears when the last detector is back to normal",
            &[
                "d0 08:00 h1/s1 smoke 1",
                "d0 08:01 h1/s2 smoke 1",
                "d0 08:02 h1/s1 smoke 0",
                "d0 08:03 h1/s3 smoke 0",
                "d0 08:04 h1/s2 smoke 0",
            ],
            &["raise smoke", "raise smoke", "clear smoke @d0 08:04"],
        ),
        (
            "gas and water leak, households independent",
            &[
                "d0 08:00 h1/g1 gas 1",
                "d0 08:00 h2/w1 leak 1",
                "d0 08:10 h2/w1 leak 0",
                "d0 08:20 h1/g1 gas 0",
            ],
            &[
                "raise gas",
                "h2 raise water-leak",
                "h2 clear water-leak",
                "clear gas",
            ],
        ),
        (
            "override disables sos for h2 only",
            &["d0 08:00 h2/b1 sos", "d0 08:00 h1/b1 sos"],
            &["raise sos"],
        ),
        (
            "flag survives a round-trip",
            &[
                "d0 08:00 h1/s1 smoke 1",
                "roundtrip",
                "d0 08:05 h1/s1 smoke 0",
            ],
            &["raise smoke", "clear smoke"],
        ),
    ];
    for (name, steps, expected) in cases {
        check(name, INSTANT, steps, expected);
    }
    // the decision carries the rule's title, severity and the device
    let d = check("fields", INSTANT, &["d0 08:00 h1/b7 sos"], &["raise sos"]);
    assert_eq!(d[0].title, "SOS button pressed");
    assert_eq!(d[0].severity, alert_rules::Severity::Critical);
    assert_eq!(d[0].device.as_deref(), Some("b7"));
    assert_eq!(d[0].at, BASE + 8 * HOUR);
    assert!(d[0].detail.contains("b7"), "{}", d[0].detail);
}

#[test]
fn threshold_rules() {
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "raises once after for_minutes, clears after clear_minutes in range",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:09 tick",
                "d0 08:10 tick",
                "d0 08:12 h1/t1 temp 37",
                "d0 08:20 tick",
                "d0 08:30 h1/t1 temp 33.5",
                "d0 08:34 tick",
                "d0 08:35 tick",
            ],
            &[
                "raise high-temperature:t1 @d0 08:10",
                "clear high-temperature:t1 @d0 08:35",
            ],
        ),
        (
            "interrupted before for_minutes: nothing",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:05 h1/t1 temp 34",
                "d0 08:06 h1/t1 temp 36",
                "d0 08:15 tick",
            ],
            &[],
        ),
        (
            "timer restarts after an interruption",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:05 h1/t1 temp 34",
                "d0 08:06 h1/t1 temp 36",
                "d0 08:16 tick",
            ],
            &["raise high-temperature:t1 @d0 08:16"],
        ),
        (
            "checked in observe too: no tick needed",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:30 h1/t1 temp 30",
                "d0 08:40 h1/t1 temp 30",
            ],
            &[
                "raise high-temperature:t1 @d0 08:10",
                "clear high-temperature:t1 @d0 08:35",
            ],
        ),
        (
            "hysteresis: inside the margin never clears",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:10 tick",
                "d0 08:20 h1/t1 temp 34.5",
                "d2 08:00 tick",
            ],
            &["raise high-temperature:t1"],
        ),
        (
            "clear timer resets when the value leaves the margin",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:10 tick",
                "d0 08:20 h1/t1 temp 33",
                "d0 08:23 h1/t1 temp 34.5",
                "d0 08:26 h1/t1 temp 33",
                "d0 08:30 tick",
                "d0 08:31 tick",
            ],
            &[
                "raise high-temperature:t1",
                "clear high-temperature:t1 @d0 08:31",
            ],
        ),
        (
            "per device: two rooms, two alarms",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:00 h1/t2 temp 40",
                "d0 08:10 tick",
            ],
            &["raise high-temperature:t1", "raise high-temperature:t2"],
        ),
        (
            "below limit of a two-sided rule",
            &[
                "d0 08:00 h1/w1 hr 35",
                "d0 08:05 tick",
                "d0 08:06 h1/w1 hr 145",
                "d0 08:07 h1/w1 hr 70",
            ],
            &[
                "raise heart-rate:w1 @d0 08:05",
                "clear heart-rate:w1 @d0 08:07",
            ],
        ),
        (
            "NaN and infinities are ignored",
            &[
                "d0 08:00 h1/t1 temp NaN",
                "d0 08:00 h1/t1 temp inf",
                "d0 08:00 h1/w1 hr -inf",
                "d1 08:00 tick",
            ],
            &[],
        ),
        (
            "NaN does not interrupt a running timer",
            &[
                "d0 08:00 h1/t1 temp 36",
                "d0 08:05 h1/t1 temp NaN",
                "d0 08:10 tick",
            ],
            &["raise high-temperature:t1"],
        ),
        (
            "power_w threshold with for_minutes = 0 raises at once",
            &[
                "d0 08:00 h1/p1 power 1.0 2500",
                "d0 08:01 h1/p1 power 1.0",
                "d0 08:02 h1/p1 power 1.0 100",
            ],
            &["raise flap:p1 @d0 08:00"],
        ),
        (
            "timer survives a round-trip",
            &["d0 08:00 h1/t1 temp 36", "roundtrip", "d0 08:10 tick"],
            &["raise high-temperature:t1 @d0 08:10"],
        ),
    ];
    for (name, steps, expected) in cases {
        check(name, THRESHOLD, steps, expected);
    }
}

#[test]
fn flapping_reading_raises_once() {
    // 2000 W limit, raise at once, clear needs 5 min at <= 1900 W
    let mut steps = Vec::new();
    for i in 0..120 {
        let w = if i % 2 == 0 { 2001.0 } else { 1999.0 };
        steps.push(format!(
            "d0 {:02}:{:02} h1/p1 power 1.0 {w}",
            8 + i / 60,
            i % 60
        ));
    }
    steps.push("d0 10:30 tick".to_string());
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    check("flapping", THRESHOLD, &steps, &["raise flap:p1 @d0 08:00"]);
}

#[test]
fn inactivity_rules() {
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "night outside the window does not count (21:00 -> 08:00 = 2 h)",
            &[
                "d0 21:00 h1/m1 motion 1",
                "d1 08:00 tick",
                "d1 09:59 tick",
                "d1 10:00 tick",
            ],
            &["raise day @d1 10:00"],
        ),
        (
            "activity clears and restarts the timer",
            &[
                "d0 08:00 h1/m1 motion 1",
                "d0 12:00 tick",
                "d0 12:30 h1/d1 door 0",
                "d0 16:29 tick",
                "d0 16:30 tick",
            ],
            &[
                "raise day @d0 12:00",
                "clear day @d0 12:30",
                "raise day @d0 16:30",
            ],
        ),
        (
            "motion without occupancy is not activity",
            &[
                "d0 08:00 h1/m1 motion 1",
                "d0 11:00 h1/m1 motion 0",
                "d0 12:00 tick",
            ],
            &["raise day @d0 12:00"],
        ),
        (
            "raises once however often ticked",
            &[
                "d0 08:00 h1/m1 motion 1",
                "d0 12:00 tick",
                "d0 13:00 tick",
                "d0 18:00 tick",
            ],
            &["raise day"],
        ),
        (
            "watch_household starts the clock without any event",
            &[
                "watch h1 d0 07:00",
                "d0 11:00 tick",
                "watch h1 d0 10:00",
                "d0 11:00 tick",
            ],
            &["raise day @d0 11:00"],
        ),
        (
            "catch-up in observe: late activity yields raise then clear",
            &["d0 08:00 h1/m1 motion 1", "d0 13:00 h1/m1 motion 1"],
            &["raise day @d0 12:00", "clear day @d0 13:00"],
        ),
        (
            "window wrapping midnight (override enables it for h2)",
            &[
                "d0 21:00 h2/b1 bed 0",
                "d1 00:59 tick",
                "d1 01:00 tick",
                "d1 01:30 h2/b1 bed 1",
                "d1 04:29 tick",
                "d1 06:00 tick",
            ],
            &[
                "h2 raise night @d1 01:00",
                "h2 clear night @d1 01:30",
                "h2 raise night @d1 04:30",
            ],
        ),
        (
            "wrapping window spans two evenings",
            &["d0 06:00 h2/b1 bed 1", "d0 23:59 tick", "d1 00:00 tick"],
            &["h2 raise night @d1 00:00"],
        ),
        (
            "button press is activity",
            &[
                "d0 08:00 h1/m1 motion 1",
                "d0 11:00 h1/b1 sos",
                "d0 14:59 tick",
                "d0 15:00 tick",
            ],
            &["raise day @d0 15:00"],
        ),
        (
            "silence from before a round-trip still counts",
            &["d0 08:00 h1/m1 motion 1", "roundtrip", "d0 12:00 tick"],
            &["raise day @d0 12:00"],
        ),
    ];
    for (name, steps, expected) in cases {
        check(name, INACTIVITY, steps, expected);
    }
}

#[test]
fn meters_as_activity() {
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "24 h without water use",
            &[
                "d0 08:00 h1/wm water 1.000",
                "d0 09:00 h1/wm water 1.001",
                "d1 08:59 tick",
                "d1 09:00 tick",
            ],
            &["raise no-water-use @d1 09:00"],
        ),
        (
            "counter reset is a new baseline, not use",
            &[
                "watch h1 d0 00:00",
                "d0 01:00 h1/wm water 5.0",
                "d0 02:00 h1/wm water 0.0",
                "d0 03:00 h1/wm water 0.0003",
                "d1 00:00 tick",
                "d1 01:00 h1/wm water 0.001",
            ],
            &[
                "raise no-water-use @d1 00:00",
                "clear no-water-use @d1 01:00",
            ],
        ),
        (
            "exactly 0.5 litre counts despite float rounding",
            &[
                "watch h1 d0 00:00",
                "d0 01:00 h1/wm water 1.0",
                "d0 02:00 h1/wm water 1.0005",
                "d1 01:00 tick",
            ],
            &[],
        ),
        (
            "NaN reading is ignored and keeps the baseline",
            &[
                "watch h1 d0 00:00",
                "d0 01:00 h1/wm water 1.0",
                "d0 02:00 h1/wm water NaN",
                "d0 03:00 h1/wm water 1.0006",
                "d1 02:59 tick",
                "d1 03:00 tick",
            ],
            &["raise no-water-use @d1 03:00"],
        ),
    ];
    for (name, steps, expected) in cases {
        check(name, WATER, steps, expected);
    }
    let cases: &[Case] = &[(
        "power draw above standby and energy rise count",
        &[
            "watch h1 d0 00:00",
            "d0 00:30 h1/pm power 10.0 20",
            "d0 01:00 tick",
            "d0 01:10 h1/pm power 10.005 25",
            "d0 01:20 h1/pm power 10.015 5",
            "d0 02:19 tick",
            "d0 02:20 tick",
            "d0 02:30 h1/pm power 10.015 45",
        ],
        &[
            "raise no-power-use @d0 01:00",
            "clear no-power-use @d0 01:20",
            "raise no-power-use @d0 02:20",
            "clear no-power-use @d0 02:30",
        ],
    )];
    for (name, steps, expected) in cases {
        check(name, POWER, steps, expected);
    }
}

#[test]
fn device_health_rules() {
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "missed heartbeats",
            &[
                "watchdev h1/d1 d0 00:00",
                "d0 00:29 tick",
                "d0 00:30 tick",
                "d0 01:00 tick",
                "d0 01:05 h1/d1 hb",
                "d0 01:34 tick",
                "d0 01:35 tick",
            ],
            &[
                "raise device-offline:d1 @d0 00:30",
                "clear device-offline:d1 @d0 01:05",
                "raise device-offline:d1 @d0 01:35",
            ],
        ),
        (
            "last will then grace",
            &[
                "d0 08:00 h1/d1 hb",
                "d0 08:05 h1/d1 offline",
                "d0 08:06 tick",
                "d0 08:07 tick",
                "d0 08:10 h1/d1 online",
            ],
            &[
                "raise device-offline:d1 @d0 08:07",
                "clear device-offline:d1 @d0 08:10",
            ],
        ),
        (
            "heard from within the grace: no alarm, heartbeat timer restarts",
            &[
                "d0 08:00 h1/d1 hb",
                "d0 08:05 h1/d1 offline",
                "d0 08:06 h1/d1 online",
                "d0 08:10 tick",
                "d0 08:35 tick",
                "d0 08:36 tick",
            ],
            &["raise device-offline:d1 @d0 08:36"],
        ),
        (
            "any reading clears; offline does not",
            &[
                "d0 08:00 h1/t1 temp 20",
                "d0 08:30 tick",
                "d0 08:40 h1/t1 offline",
                "d0 08:50 h1/t1 temp 21",
            ],
            &[
                "raise device-offline:t1",
                "clear device-offline:t1 @d0 08:50",
            ],
        ),
        (
            "devices are independent",
            &[
                "d0 08:00 h1/a hb",
                "d0 08:20 h1/b hb",
                "d0 08:30 tick",
                "d0 08:50 tick",
            ],
            &[
                "raise device-offline:a @d0 08:30",
                "raise device-offline:b @d0 08:50",
            ],
        ),
        (
            "low battery with hysteresis",
            &[
                "d0 08:00 h1/s1 battery 20",
                "d0 08:01 h1/s1 battery 14",
                "d0 08:02 h1/s1 battery 10",
                "d0 08:03 h1/s1 battery 20",
                "d0 08:04 h1/s1 battery 26",
                "d0 08:05 h1/s1 battery 14",
                "d0 08:06 h1/s1 battery NaN",
            ],
            &[
                "raise low-battery:s1 @d0 08:01",
                "clear low-battery:s1 @d0 08:04",
                "raise low-battery:s1 @d0 08:05",
            ],
        ),
        (
            "offline state survives a round-trip",
            &[
                "d0 08:00 h1/d1 hb",
                "d0 08:05 h1/d1 offline",
                "roundtrip",
                "d0 08:07 tick",
            ],
            &["raise device-offline:d1 @d0 08:07"],
        ),
    ];
    for (name, steps, expected) in cases {
        check(name, HEALTH, steps, expected);
    }
}

#[test]
fn default_rules_with_local_time_and_overrides() {
    // +08:00: the 07:00-22:00 window is 23:00-14:00 UTC.
    let default = RuleSet::DEFAULT_TOML;
    check(
        "4 h by default, 6 h for h-demo-1",
        default,
        &[
            "watch h1 d0 00:00",
            "watch h-demo-1 d0 00:00",
            "d0 03:59 tick",
            "d0 04:00 tick",
            "d0 06:00 tick",
        ],
        &[
            "raise no-activity-daytime @d0 04:00",
            "h-demo-1 raise no-activity-daytime @d0 06:00",
        ],
    );
    check(
        "silence across the local night",
        default,
        // 13:00 UTC = 21:00 local; next counted time starts 23:00 UTC (07:00 local)
        &["d0 13:00 h1/m1 motion 1", "d1 01:59 tick", "d1 02:00 tick"],
        &[
            // no hold: a one-device home can never count as unreachable
            "raise device-offline:m1 @d0 13:30",
            "raise no-activity-daytime @d1 02:00",
            "raise not-up-by-10 @d1 02:00",
        ],
    );
    let extra = RuleSet::default_rules()
        .with_overrides_toml(
            "[[override]]\nhousehold = \"h1\"\nrule = \"sos\"\nseverity = \"warning\"\n",
        )
        .unwrap();
    let mut engine = Engine::new(extra);
    let obs = Observation {
        household: "h1".into(),
        device: "b".into(),
        at: BASE,
        signal: Signal::Sos,
    };
    assert_eq!(
        engine.observe(&obs, BASE)[0].severity,
        alert_rules::Severity::Warning
    );
}

#[test]
fn overrides_change_parameters() {
    let rules = format!(
        "{HEALTH}\n[[override]]\nhousehold = \"h2\"\nrule = \"device-offline\"\nheartbeat_minutes = 60\n\n[[override]]\nhousehold = \"h2\"\nrule = \"device-offline\"\nmissed_heartbeats = 2\n"
    );
    check(
        "h2 uses 2 x 60 min, h1 3 x 10 min",
        &rules,
        &[
            "watchdev h1/a d0 00:00",
            "watchdev h2/a d0 00:00",
            "d0 01:00 tick",
            "d0 02:00 tick",
        ],
        &[
            "raise device-offline:a @d0 00:30",
            "h2 raise device-offline:a @d0 02:00",
        ],
    );
}

#[test]
fn time_going_backwards_is_safe() {
    check(
        "earlier now after a later one",
        INACTIVITY,
        &[
            "d0 08:00 h1/m1 motion 1",
            "d0 11:00 tick",
            "d0 09:00 tick",
            "d0 10:00 h1/m1 door 1",
            "d0 12:00 tick",
            "d0 13:59 tick",
            "d0 14:00 tick",
        ],
        &["raise day @d0 14:00"],
    );
    // an observation stamped in the future is clamped to now
    let mut e = Engine::new(RuleSet::from_toml_str(INACTIVITY).unwrap());
    let obs = Observation {
        household: "h1".into(),
        device: "m1".into(),
        at: BASE + 8 * HOUR + 10 * DAY,
        signal: Signal::Motion { occupancy: true },
    };
    assert!(e.observe(&obs, BASE + 8 * HOUR).is_empty());
    assert_eq!(e.state().last_activity("h1"), Some(BASE + 8 * HOUR));
    assert_eq!(e.next_deadline(), Some(BASE + 12 * HOUR));
    assert!(e.tick(i64::MIN).is_empty());
    assert_eq!(e.tick(BASE + 12 * HOUR).len(), 1);
}

#[test]
fn open_conditions_and_state_json() {
    let mut e = Engine::new(RuleSet::from_toml_str(HEALTH).unwrap());
    e.watch_device("h1", "d1", BASE);
    let obs = Observation {
        household: "h1".into(),
        device: "s1".into(),
        at: BASE,
        signal: Signal::Battery { percent: 3.0 },
    };
    e.observe(&obs, BASE);
    e.tick(BASE + DAY);
    assert_eq!(
        e.state().open_conditions(),
        vec![
            ("h1".to_string(), "device-offline:d1".to_string()),
            ("h1".to_string(), "device-offline:s1".to_string()),
            ("h1".to_string(), "low-battery:s1".to_string()),
        ]
    );
    let json = e.state().to_json().unwrap();
    assert_eq!(&EngineState::from_json(&json).unwrap(), e.state());
    assert_eq!(e.state().last_seen("h1", "s1"), Some(BASE));
    assert_eq!(e.state().household_ids(), vec!["h1"]);
    assert_eq!(e.next_deadline(), None);
}

// ---------------------------------------------------------------------------
// Rule file errors: the line number is asserted for every case.

#[test]
fn rule_file_errors_point_at_the_line() {
    const RULE: &str = "[[rule]]\nid = \"r\"\nseverity = \"warning\"\ntitle = \"T\"\n";
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("toml syntax", "[[rule]]\nid = \"sos\nkind = 1\n".into(), 2, "string"),
        ("unknown signal", format!("{RULE}kind = \"instant\"\nsignal = \"smok\"\n"), 6, "unknown signal \"smok\""),
        (
            "bad window",
            format!("{RULE}kind = \"inactivity\"\nactivity = [\"motion\"]\nhours = 4\nwindow = \"7:00-25:00\"\n"),
            8,
            "hour 25",
        ),
        (
            "negative hours",
            format!("{RULE}kind = \"inactivity\"\nactivity = [\"motion\"]\nhours = -4\n"),
            7,
            "`hours` must be more than 0",
        ),
        (
            "duplicate id",
            format!("{RULE}kind = \"instant\"\nsignal = \"sos\"\n\n{RULE}kind = \"instant\"\nsignal = \"fall\"\n"),
            9,
            "duplicate rule id \"r\" (first defined at line 2)",
        ),
        ("unknown kind", format!("{RULE}kind = \"instantly\"\n"), 5, "unknown rule kind \"instantly\""),
        (
            "override of an unknown rule",
            format!("{RULE}kind = \"instant\"\nsignal = \"sos\"\n\n[[override]]\nhousehold = \"h\"\nrule = \"nope\"\n"),
            10,
            "override names unknown rule \"nope\"",
        ),
        (
            "typo in a key",
            format!("{RULE}kind = \"threshold\"\nsignal = \"temperature\"\nabve = 35\n"),
            7,
            "unknown key `abve`",
        ),
        ("missing key points at the table", "\n[[rule]]\nid = \"x\"\nkind = \"instant\"\n".into(), 2, "`severity`"),
        (
            "wrong type",
            format!("{RULE}kind = \"inactivity\"\nactivity = [\"motion\"]\nhours = \"4\"\n"),
            7,
            "must be a number, not a string",
        ),
        ("bad timezone", "# c\ntimezone_offset = \"+8\"\n".into(), 2, "invalid timezone_offset"),
        (
            "unknown activity class",
            format!("{RULE}kind = \"inactivity\"\nactivity = [\"motion\", \"tv\"]\nhours = 4\n"),
            6,
            "unknown activity class \"tv\"",
        ),
        (
            "override cannot change kind",
            format!("{RULE}kind = \"instant\"\nsignal = \"sos\"\n[[override]]\nhousehold = \"h\"\nrule = \"r\"\nkind = \"threshold\"\n"),
            10,
            "cannot change `kind`",
        ),
        (
            "override key not valid for the kind",
            format!("{RULE}kind = \"instant\"\nsignal = \"sos\"\n[[override]]\nhousehold = \"h\"\nrule = \"r\"\nhours = 3\n"),
            10,
            "unknown key `hours` for rule kind `instant`",
        ),
        (
            "override with a bad value",
            format!("{RULE}kind = \"inactivity\"\nactivity = [\"motion\"]\nhours = 4\n[[override]]\nhousehold = \"h\"\nrule = \"r\"\n\nhours = -1\n"),
            12,
            "`hours` must be more than 0",
        ),
        ("instant on a number", format!("{RULE}kind = \"instant\"\nsignal = \"temperature\"\n"), 6, "use kind = \"threshold\""),
        (
            "below not under above",
            format!("{RULE}kind = \"threshold\"\nsignal = \"heart_rate\"\nabove = 40\nbelow = 130\n"),
            8,
            "`below` (130) must be lower than `above` (40)",
        ),
        (
            "threshold without limits",
            format!("\n\n{RULE}kind = \"threshold\"\nsignal = \"temperature\"\n"),
            3,
            "needs `above` and/or `below`",
        ),
        (
            "clear above below",
            format!("{RULE}kind = \"low_battery\"\nbelow_percent = 20\nclear_above_percent = 10\n"),
            7,
            "`clear_above_percent` must be between",
        ),
        ("unknown top-level key", "timezone = \"+08:00\"\n".into(), 1, "unknown field `timezone`"),
        ("severity", "[[rule]]\nid = \"r\"\nkind = \"instant\"\nseverity = \"urgent\"\n".into(), 4, "unknown severity \"urgent\""),
        ("id with a colon", "[[rule]]\nid = \"a:b\"\n".into(), 2, "may only contain"),
        (
            "missed heartbeats not whole",
            format!("{RULE}kind = \"device_offline\"\nheartbeat_minutes = 10\nmissed_heartbeats = 2.5\n"),
            7,
            "whole number",
        ),
        ("nan is not a number here", format!("{RULE}kind = \"low_battery\"\nbelow_percent = nan\n"), 6, "finite"),
    ];
    for (name, src, line, needle) in cases {
        let err = RuleSet::from_toml_str(&src).expect_err(name);
        let shown = err.to_string();
        assert_eq!(err.line(), Some(line), "{name}: {shown}");
        assert!(
            shown.starts_with(&format!("line {line}, column ")),
            "{name}: {shown}"
        );
        assert!(shown.contains(needle), "{name}: `{shown}` lacks `{needle}`");
    }
}

#[test]
fn error_columns_and_override_text_errors() {
    let err = RuleSet::from_toml_str("[[rule]]\nid = \"r\"\nkind =   \"x\"\n").unwrap_err();
    assert_eq!(err.to_string().split(':').next(), Some("line 3, column 10"));
    assert_eq!(err.column(), Some(10));

    let base = RuleSet::default_rules();
    let err = base
        .with_overrides_toml(
            "# extra\n\n[[override]]\nhousehold = \"h9\"\nrule = \"no-such-rule\"\n",
        )
        .unwrap_err();
    assert_eq!(err.line(), Some(5), "{err}");
    let err = base
        .with_overrides_toml("[[rule]]\nid = \"x\"\n")
        .unwrap_err();
    assert_eq!(err.line(), Some(1), "{err}");
    assert!(err.to_string().contains("only [[override]] tables"));
    let ok = base
        .with_overrides_toml(
            "[[override]]\nhousehold = \"h9\"\nrule = \"no-water-use\"\nenabled = false\n",
        )
        .unwrap();
    assert!(!ok.rule_ids_for("h9").contains(&"no-water-use"));
    assert!(ok.rule_ids_for("h1").contains(&"no-water-use"));
    assert_eq!(ok.rule_ids(), base.rule_ids());
}

#[test]
fn default_rule_file_is_valid_and_documented() {
    let set = RuleSet::default_rules();
    assert_eq!(
        set.rule_ids(),
        vec![
            "sos",
            "fall",
            "smoke",
            "gas",
            "water-leak",
            "high-temperature",
            "low-temperature",
            "heart-rate",
            "no-activity-daytime",
            "no-activity-long",
            "night-out-of-bed",
            "not-up-by-10",
            "daily-checkin",
            "no-water-use",
            "no-power-use",
            "water-high-use",
            "water-continuous-flow",
            "away-expired",
            "visits-below-target",
            "device-offline",
            "home-unreachable",
            "village-outage",
            "low-battery",
        ]
    );
    assert_eq!(set.utc_offset_minutes(), 480);
    assert!(RuleSet::DEFAULT_TOML.contains("# "));
}

#[test]
fn severity_and_signal_names() {
    use alert_rules::Severity;
    for s in [Severity::Info, Severity::Warning, Severity::Critical] {
        assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert_eq!(
        " CRITICAL ".parse::<Severity>().unwrap(),
        Severity::Critical
    );
    assert!("urgent".parse::<Severity>().is_err());
    assert!(Severity::Info < Severity::Critical);
    let names: Vec<&str> = [
        Signal::Sos,
        Signal::Fall,
        Signal::Motion { occupancy: true },
        Signal::Door { open: true },
        Signal::Bed { occupied: true },
        Signal::Smoke { alarm: true },
        Signal::Gas { alarm: true },
        Signal::WaterLeak { leak: true },
        Signal::WaterMeter { total_m3: 1.0 },
        Signal::PowerMeter {
            total_kwh: 1.0,
            power_w: None,
        },
        Signal::HeartRate { bpm: 1.0 },
        Signal::Temperature { celsius: 1.0 },
        Signal::Battery { percent: 1.0 },
        Signal::WaterVolume { m3: 1.0 },
        Signal::EnergyVolume {
            kwh: 1.0,
            power_w: None,
        },
        Signal::Steps { count: 1.0 },
        Signal::CheckIn,
        Signal::Visit {
            start: true,
            carer: None,
        },
        Signal::Away {
            away: true,
            hours: None,
        },
        Signal::Heartbeat,
        Signal::Online,
        Signal::Offline,
    ]
    .iter()
    .map(Signal::name)
    .collect();
    assert_eq!(names, alert_rules::SIGNAL_NAMES);
    let a = serde_json::to_string(&alert_rules::Action::Clear).unwrap();
    assert_eq!(a, "\"clear\"");
}

#[test]
fn restart_does_not_blame_devices_for_hub_downtime() {
    let mut e = Engine::new(RuleSet::from_toml_str(HEALTH).unwrap());
    e.watch_device("h1", "d1", BASE);
    let saved = e.state().to_json().unwrap();
    // the hub was down for 5 hours
    let restart = BASE + 5 * HOUR;
    let mut e = Engine::with_state(e.rules().clone(), EngineState::from_json(&saved).unwrap());
    e.reset_device_baselines(restart);
    assert!(e.tick(restart).is_empty());
    assert_eq!(e.next_deadline(), Some(restart + 30 * MIN));
    assert_eq!(
        e.rules().rule_kind("device-offline"),
        Some("device_offline")
    );
    assert_eq!(e.rules().rule_kind("nope"), None);
}

// ---------------------------------------------------------------------------
// Issue 4: life-sign fusion, night and morning checks, utility use, modes,
// visits, inhibition and grouping. BASE (2024-01-01) is a Monday; times UTC.

type Case = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

fn run_cases(rules: &str, cases: &[Case]) {
    for (name, steps, expected) in cases {
        check(name, rules, steps, expected);
    }
}

const LIFE: &str = r#"
[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion", "door", "bed", "water_use", "power_use", "button", "steps", "checkin", "visit"]
hours = 4
severity = "warning"
title = "No sign of life"

[[rule]]
id = "quiet-long"
kind = "inactivity"
activity = ["motion", "door", "bed", "water_use", "power_use", "button", "steps", "checkin", "visit"]
hours = 8
severity = "critical"
title = "No sign of life for long"

[[rule]]
id = "sos"
kind = "instant"
signal = "sos"
severity = "critical"
title = "SOS"
"#;

#[test]
fn every_sign_of_life_counts_and_tiers_escalate() {
    run_cases(
        LIFE,
        &[
            (
                "4 h is a warning, 8 h is critical",
                &["d0 08:00 h1/m1 motion 1", "d0 12:00 tick", "d0 16:00 tick"],
                &["raise quiet @d0 12:00", "raise quiet-long @d0 16:00"],
            ),
            (
                "wearable steps are a sign of life; zero steps are not",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 11:00 h1/w1 steps 0",
                    "d0 11:30 h1/w1 steps 120",
                    "d0 15:29 tick",
                    "d0 15:30 tick",
                ],
                &["raise quiet @d0 15:30"],
            ),
            (
                "the I'm-OK button and a carer visit clear the alarm",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 12:00 tick",
                    "d0 12:10 h1/b1 checkin",
                    "d0 16:10 tick",
                    "d0 16:20 h1/door1 visit 1",
                ],
                &[
                    "raise quiet @d0 12:00",
                    "clear quiet @d0 12:10",
                    "raise quiet @d0 16:10",
                    "clear quiet @d0 16:20",
                ],
            ),
            (
                "interval water volume is water use",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 11:00 h1/w1 waterv 0.0001",
                    "d0 11:30 h1/w1 waterv 0.002",
                    "d0 15:30 tick",
                ],
                &["raise quiet @d0 15:30"],
            ),
        ],
    );
}

const NIGHT: &str = r#"
[[rule]]
id = "night"
kind = "night_bed_exit"
window = "22:00-06:00"
minutes = 45
severity = "critical"
title = "Out of bed at night"
"#;

#[test]
fn night_out_of_bed() {
    run_cases(
        NIGHT,
        &[
            (
                "a bathroom trip back within 45 min is nothing",
                &["d0 02:00 h1/b1 bed 0", "d0 02:05 h1/m1 motion 1", "d0 02:12 h1/b1 bed 1", "d0 05:00 tick"],
                &[],
            ),
            (
                "out of bed and silent: raised 45 min after the last sign of life; back in bed clears",
                &[
                    "d0 02:00 h1/b1 bed 0",
                    "d0 02:05 h1/m1 motion 1",
                    "d0 02:49 tick",
                    "d0 02:50 tick",
                    "d0 03:30 h1/b1 bed 1",
                ],
                &["raise night @d0 02:50", "clear night @d0 03:30"],
            ),
            (
                "crossing midnight",
                &["d0 23:40 h1/b1 bed 0", "d1 00:25 tick"],
                &["raise night @d1 00:25"],
            ),
            (
                "getting up for the day near the window's end is not watched",
                &["d0 05:30 h1/b1 bed 0", "d0 08:00 tick"],
                &[],
            ),
            (
                "out of bed in the evening (outside the window) is not watched",
                &["d0 21:00 h1/b1 bed 0", "d0 23:00 tick"],
                &[],
            ),
            (
                "a sign of life after the alarm clears it; the exit is not watched again",
                &["d0 01:00 h1/b1 bed 0", "d0 01:45 tick", "d0 02:00 h1/m1 motion 1", "d0 04:00 tick"],
                &["raise night @d0 01:45", "clear night @d0 02:00"],
            ),
        ],
    );
}

const MORNING: &str = r#"
[[rule]]
id = "not-up"
kind = "daily_deadline"
from = "04:00"
by = "10:00"
severity = "warning"
title = "Not up by 10:00"

[[rule]]
id = "checkin"
kind = "daily_deadline"
activity = ["checkin"]
by = "09:00"
severity = "warning"
title = "Daily check-in missed"
enabled = false

[[override]]
household = "h2"
rule = "checkin"
enabled = true
"#;

#[test]
fn morning_and_daily_check_in() {
    run_cases(
        MORNING,
        &[
            (
                "no sign of life between 04:00 and 10:00 raises at 10:00; the next one clears",
                &["d0 08:00 h1/m1 motion 1", "d0 21:00 h1/b1 bed 1", "d1 09:59 tick", "d1 10:00 tick", "d1 10:30 h1/m1 motion 1", "d2 10:00 tick"],
                &["raise not-up @d1 10:00", "clear not-up @d1 10:30", "raise not-up @d2 10:00"],
            ),
            (
                "up at 07:00 every day: nothing",
                &["d0 07:00 h1/b1 bed 0", "d1 07:00 h1/b1 bed 0", "d2 06:30 h1/m1 motion 1", "d2 12:00 tick"],
                &[],
            ),
            (
                "activity at 03:00 is before the window",
                &["d0 08:00 h1/m1 motion 1", "d1 03:00 h1/m1 motion 1", "d1 10:00 tick"],
                &["raise not-up @d1 10:00"],
            ),
            (
                "watched from 09:00: that morning is not judged",
                &["watch h1 d0 09:00", "d0 12:00 tick", "d1 10:00 tick"],
                &["raise not-up @d1 10:00"],
            ),
            (
                "daily check-in only where enabled; pressing it counts as life for the other rule too",
                &["watch h2 d0 00:00", "d0 08:30 h2/b2 checkin", "d1 08:30 h2/b2 checkin", "d2 09:00 tick", "d2 09:40 h2/b2 checkin"],
                &["h2 raise checkin @d2 09:00", "h2 clear checkin @d2 09:40"],
            ),
        ],
    );
}

const UTILITY: &str = r#"
[[rule]]
id = "no-water"
kind = "utility_low"
meter = "water"
below = 0.01
hours = 24
severity = "warning"
title = "Almost no water used"

[[rule]]
id = "high-water"
kind = "utility_high"
meter = "water"
above = 1.0
hours = 24
severity = "warning"
title = "Very high water use"

[[rule]]
id = "flow"
kind = "continuous_flow"
meter = "water"
hours = 3
min_per_hour = 0.001
severity = "warning"
title = "Water flowing without pause"
"#;

#[test]
fn water_use_low_high_and_continuous() {
    run_cases(
        UTILITY,
        &[
            (
                "below 10 l over 24 h raises when the last use leaves the window; use clears",
                &[
                    "d0 00:00 h1/w1 water 1.000",
                    "d0 08:00 h1/w1 water 1.050",
                    "d0 12:00 h1/w1 water 1.050",
                    "d1 07:59 tick",
                    "d1 08:00 tick",
                    "d1 09:00 h1/w1 water 1.070",
                ],
                &["raise no-water @d1 08:00", "clear no-water @d1 09:00"],
            ),
            (
                "a counter reset is a new baseline, not use and not a negative",
                &[
                    "d0 00:00 h1/w1 water 5.000",
                    "d0 08:00 h1/w1 water 5.050",
                    "d0 09:00 h1/w1 water 0.000",
                    "d0 10:00 h1/w1 water 0.030",
                    "d1 08:00 tick",
                    "d1 10:00 tick",
                ],
                &["raise no-water @d1 10:00"],
            ),
            (
                "a reading gap loses nothing: the counter carries the use",
                &[
                    "d0 00:00 h1/w1 water 1.000",
                    "d0 06:00 h1/w1 water 1.000",
                    "d0 23:00 h1/w1 water 1.200",
                    "d1 12:00 tick",
                ],
                &[],
            ),
            (
                "interval meters: 6 l/min for hours passes 1 m3 and raises; clears when the window empties to half",
                &[
                    "d0 08:00 h1/w1 waterv 0",
                    "d0 08:30 h1/w1 waterv 0.18",
                    "d0 09:00 h1/w1 waterv 0.18",
                    "d0 09:30 h1/w1 waterv 0.18",
                    "d0 10:00 h1/w1 waterv 0.18",
                    "d0 10:30 h1/w1 waterv 0.18",
                    "d0 11:00 h1/w1 waterv 0.18",
                    "d0 11:30 h1/w1 waterv 0",
                    "d1 09:59 tick",
                    "d1 10:00 tick",
                ],
                &["raise high-water @d0 11:00", "raise flow @d0 11:00", "clear flow @d0 11:30", "clear high-water @d1 10:00"],
            ),
            (
                "flow in every reading for 3 h raises; a dry reading clears",
                &[
                    "d0 00:00 h1/w1 water 1.000",
                    "d0 00:30 h1/w1 water 1.002",
                    "d0 01:00 h1/w1 water 1.004",
                    "d0 01:30 h1/w1 water 1.006",
                    "d0 02:00 h1/w1 water 1.008",
                    "d0 02:30 h1/w1 water 1.010",
                    "d0 03:00 h1/w1 water 1.012",
                    "d0 03:30 h1/w1 water 1.012",
                ],
                &["raise flow @d0 03:00", "clear flow @d0 03:30"],
            ),
            (
                "a long gap breaks the run",
                &[
                    "d0 00:00 h1/w1 water 1.000",
                    "d0 00:30 h1/w1 water 1.002",
                    "d0 01:00 h1/w1 water 1.004",
                    "d0 04:00 h1/w1 water 1.020",
                    "d0 04:30 h1/w1 water 1.022",
                ],
                &[],
            ),
        ],
    );
}

/// Issue 14, finding 4: one meter flooding its household. The rules stage
/// rescanned the meter's whole history on every message (3.3-5.2 s for an
/// SOS in another home after 1,000 readings; the benchmark `meter_flood`
/// measures the cost). Now at most 16,384 readings are kept per meter, merged
/// into slots of time beyond that, and the use still adds up exactly.
#[test]
fn a_flooding_meter_keeps_a_bounded_history_and_its_use_adds_up() {
    const FLOOD: &str = r#"
[[rule]]
id = "high-water"
kind = "utility_high"
meter = "water"
above = 30
hours = 192
severity = "warning"
title = "Very high water use"
"#;
    let mut engine = Engine::new(RuleSet::from_toml_str(FLOOD).unwrap());
    // One interval reading a millisecond of 1/1024 m³ (exact in binary): the
    // use passes 30 m³ at reading 30,721.
    let n: i64 = 30_721;
    let mut got = Vec::new();
    for k in 0..n {
        let obs = Observation {
            household: "h1".into(),
            device: "w1".into(),
            at: BASE + k,
            signal: Signal::WaterVolume { m3: 1.0 / 1024.0 },
        };
        got.extend(engine.observe(&obs, BASE + k));
    }
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        (got[0].action, got[0].condition_key.as_str(), got[0].at),
        (Action::Raise, "high-water", BASE + n - 1)
    );
    assert!(got[0].detail.contains("30.001 m³"), "{}", got[0].detail);
    // The saved history is bounded (it held every reading: 30,721).
    let state: serde_json::Value =
        serde_json::from_str(&engine.state().to_json().unwrap()).unwrap();
    let kept = state["households"]["h1"]["utility"]["water"]["usage"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!((1..=16_384).contains(&kept), "{kept} readings kept");
    // It clears when the use in the window is down to half (15 m³): exactly
    // when reading 15,361 leaves the window, and merged readings count late
    // by less than 1/2048 of the 192-hour window, never early.
    let exact = BASE + 15_360 + 192 * HOUR;
    let due = engine.next_deadline().unwrap();
    assert!(
        (exact..exact + 192 * HOUR / 2048).contains(&due),
        "clears at +{} ms from the exact time",
        due - exact
    );
    let cleared = engine.tick(due);
    assert_eq!(cleared.len(), 1, "{cleared:#?}");
    assert_eq!(cleared[0].action, Action::Clear);
}

#[test]
fn meter_histories_saved_by_the_previous_version_load() {
    // Saved by the engine before issue 14 (readings 1.000, 1.050, 1.060, 1.060
    // at 00:00, 08:00, 10:00, 12:00), and the same with its history out of
    // time order (as a replay with late readings could leave it then).
    let saved = r#"{"clock":1704110400000,"households":{"h1":{"since":1704067200000,"last_activity":{"water_use":1704103200000},"devices":{"w1":{"last_seen":1704110400000,"water_m3":1.06}},"utility":{"water":{"first_at":1704067200000,"last_at":1704110400000,"device":"w1","usage":[[1704096000000,0.050000000000000044],[1704103200000,0.010000000000000009]]}}}}}"#;
    let shuffled = saved.replace(
        "[[1704096000000,0.050000000000000044],[1704103200000,0.010000000000000009]]",
        "[[1704103200000,0.010000000000000009],[1704096000000,0.050000000000000044]]",
    );
    for json in [saved.to_string(), shuffled] {
        let state = EngineState::from_json(&json).unwrap();
        let mut engine = Engine::with_state(RuleSet::from_toml_str(UTILITY).unwrap(), state);
        let due = engine.next_deadline().unwrap();
        // Monday 08:00's 50 litres leave the window Tuesday 08:00, 10:00's
        // 10 litres at 10:00: then less than 10 litres are left.
        assert_eq!(fmt_time(due), "d1 10:00");
        assert!(engine.tick(due - 1).is_empty());
        let got: Vec<String> = engine.tick(due).iter().map(summary).collect();
        assert_eq!(got, ["raise no-water @d1 10:00"]);
        // Saved again in the same form, in time order.
        assert!(engine.state().to_json().unwrap().contains(
            r#""usage":[[1704096000000,0.050000000000000044],[1704103200000,0.010000000000000009]]"#
        ));
    }
}

#[test]
fn an_infinite_rise_is_saved_and_loads_again() {
    // A total from -1e308 to 1e308 (only through the engine's API: the hub
    // accepts 0..1e9) is a rise of infinity, which JSON cannot hold: the old
    // code saved `null` and the state could not be loaded again. `check`
    // rebuilds its shadow engine from JSON before every step.
    run_cases(
        UTILITY,
        &[(
            "an infinite rise counts as 2^30 m³: above every limit",
            &[
                "d0 00:00 h1/w1 water -1e308",
                "d0 01:00 h1/w1 water 1e308",
                "roundtrip",
                "d1 01:00 tick",
            ],
            &[
                "raise high-water @d0 01:00",
                "raise no-water @d1 01:00",
                "clear high-water @d1 01:00",
            ],
        )],
    );
}

const MODES: &str = r#"
[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion", "door", "button", "visit"]
hours = 4
severity = "warning"
title = "No sign of life"

[[rule]]
id = "sos"
kind = "instant"
signal = "sos"
severity = "critical"
title = "SOS"

[[rule]]
id = "smoke"
kind = "instant"
signal = "smoke"
severity = "critical"
title = "Smoke"

[[rule]]
id = "back"
kind = "away_expired"
grace_hours = 2
severity = "warning"
title = "Away mode ended without a sign of return"
"#;

#[test]
fn away_modes() {
    run_cases(
        MODES,
        &[
            (
                "away mode suppresses silence; on expiry the clock restarts and a gentle check follows",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 09:00 mode h1 away d2 08:00",
                    "d1 20:00 tick",
                    "d2 10:00 tick",
                    "d2 12:00 tick",
                    "d2 12:30 h1/m1 motion 1",
                ],
                &["raise back @d2 10:00", "raise quiet @d2 12:00", "clear quiet @d2 12:30", "clear back @d2 12:30"],
            ),
            (
                "SOS and smoke are never suppressed",
                &["d0 08:00 mode h1 hospital d5 08:00", "d1 03:00 h1/s1 sos", "d1 03:01 h1/sm1 smoke 1"],
                &["raise sos @d1 03:00", "raise smoke @d1 03:01"],
            ),
            (
                "setting a mode clears an open absence alarm",
                &["d0 08:00 h1/m1 motion 1", "d0 12:00 tick", "d0 12:05 mode h1 holiday d3 00:00"],
                &["raise quiet @d0 12:00", "clear quiet @d0 12:05"],
            ),
            (
                "the leaving-home button sets away mode; back home ends it with no check",
                &["d0 08:00 h1/s1 away 1 48", "d1 08:00 tick", "d1 18:00 h1/s1 away 0", "d1 21:00 tick", "d1 22:00 tick"],
                &["raise quiet @d1 22:00"],
            ),
            (
                "the button's default is 72 h",
                &["d0 08:00 h1/s1 away 1", "d2 23:00 tick", "d3 08:00 tick", "d3 10:00 tick"],
                &["raise back @d3 10:00"],
            ),
            (
                "staff end the mode: watched again at once, no check",
                &["d0 08:00 mode h1 away d3 08:00", "d1 08:00 endmode h1", "d1 12:00 tick", "d3 12:00 tick"],
                &["raise quiet @d1 12:00"],
            ),
            (
                "a sign of life before the grace ends means back home",
                &["d0 08:00 mode h1 away d1 08:00", "d1 09:00 h1/door1 door 1", "d1 12:00 tick"],
                &[],
            ),
        ],
    );
}

const VISITS: &str = r#"
[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion", "visit"]
hours = 4
severity = "warning"
title = "No sign of life"

[[rule]]
id = "visits"
kind = "visit_target"
per_week = 3
severity = "info"
title = "Fewer than 3 visits this week"
"#;

#[test]
fn care_visits() {
    run_cases(
        VISITS,
        &[
            (
                "a visit suppresses inactivity while it lasts; silence counts from check-out",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 09:00 h1/door1 visit 1",
                    "d0 11:00 h1/door1 visit 0",
                    "d0 14:59 tick",
                    "d0 15:00 tick",
                ],
                &["raise quiet @d0 15:00"],
            ),
            (
                "a visit checked in on the board with no check-out ends after 4 h",
                &[
                    "d0 08:00 h1/m1 motion 1",
                    "d0 09:00 carer h1 1",
                    "d0 16:59 tick",
                    "d0 17:00 tick",
                ],
                &["raise quiet @d0 17:00"],
            ),
        ],
    );
}

const TARGET: &str = r#"
[[rule]]
id = "visits"
kind = "visit_target"
per_week = 3
severity = "info"
title = "Fewer than 3 visits this week"
"#;

#[test]
fn weekly_visit_target() {
    run_cases(
        TARGET,
        &[
            (
                "three visits a week: nothing; two: flagged at the week's end; three again: cleared",
                &[
                    "watch h1 d0 00:00",
                    "d0 10:00 carer h1 1", "d0 11:00 carer h1 0",
                    "d2 10:00 carer h1 1", "d2 11:00 carer h1 0",
                    "d4 10:00 carer h1 1", "d4 11:00 carer h1 0",
                    "d7 00:00 tick",
                    "d8 10:00 carer h1 1", "d8 11:00 carer h1 0",
                    "d10 10:00 carer h1 1", "d10 11:00 carer h1 0",
                    "d14 00:00 tick",
                    "d15 10:00 h1/door1 visit 1", "d15 11:00 h1/door1 visit 0",
                    "d16 10:00 h1/door1 visit 1", "d16 11:00 h1/door1 visit 0",
                    "d17 10:00 h1/door1 visit 1", "d17 11:00 h1/door1 visit 0",
                    "d21 00:00 tick",
                ],
                &["raise visits @d14 00:00", "clear visits @d21 00:00"],
            ),
            (
                "watched from a Wednesday: the partial week is not judged",
                &["watch h1 d2 00:00", "d7 00:00 tick", "d14 00:00 tick"],
                &["raise visits @d14 00:00"],
            ),
        ],
    );
}

#[test]
fn a_week_in_hospital_excuses_the_visit_target() {
    run_cases(
        TARGET,
        &[(
            "hospital during the week",
            &[
                "watch h1 d0 00:00",
                "d2 08:00 mode h1 hospital d4 08:00",
                "d7 00:00 tick",
                "d14 00:00 tick",
            ],
            &["raise visits @d14 00:00"],
        )],
    );
}

const DARK: &str = r#"
[[rule]]
id = "offline"
kind = "device_offline"
heartbeat_minutes = 10
missed_heartbeats = 3
offline_grace_minutes = 2
severity = "warning"
title = "Device offline"

[[rule]]
id = "home"
kind = "home_unreachable"
min_devices = 2
min_share = 0.5
hold_minutes = 10
severity = "warning"
title = "Home unreachable"

[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion"]
hours = 1
severity = "warning"
title = "No sign of life"

[[rule]]
id = "sos"
kind = "instant"
signal = "sos"
severity = "critical"
title = "SOS"
"#;

#[test]
fn a_dark_home_gives_one_alarm_and_suspends_absence_rules() {
    run_cases(
        DARK,
        &[
            (
                "one device silent: its own alarm, after the hold",
                &[
                    "watchdev h1/d1 d0 00:00", "watchdev h1/d2 d0 00:00", "watchdev h1/d3 d0 00:00",
                    "d0 00:10 h1/d2 hb", "d0 00:10 h1/d3 motion 1",
                    "d0 00:20 h1/d2 hb", "d0 00:20 h1/d3 motion 1",
                    "d0 00:30 h1/d2 hb", "d0 00:30 h1/d3 motion 1",
                    "d0 00:39 tick", "d0 00:40 tick",
                ],
                &["raise offline:d1 @d0 00:40"],
            ),
            (
                "gateway down: one home-unreachable, no device alarms, silence not counted; back: cleared, clock restarts",
                &[
                    "watchdev h1/d1 d0 00:00", "watchdev h1/d2 d0 00:00", "watchdev h1/d3 d0 00:00", "watchdev h1/w d0 00:00",
                    "d0 00:05 h1/d1 motion 1", "d0 00:08 h1/d2 hb", "d0 00:09 h1/d3 hb",
                    "d0 00:30 h1/w hb", "d0 01:00 h1/w hb", "d0 01:30 h1/w hb", "d0 02:00 h1/w hb",
                    "d0 02:00 h1/d1 hb", "d0 02:01 h1/d2 hb", "d0 02:02 h1/d3 hb",
                    "d0 02:25 h1/d1 hb", "d0 02:25 h1/d2 hb", "d0 02:25 h1/d3 hb", "d0 02:25 h1/w hb",
                    "d0 02:50 h1/d1 hb", "d0 02:50 h1/d2 hb", "d0 02:50 h1/d3 hb", "d0 02:50 h1/w hb",
                    "d0 03:00 tick", "d0 03:01 tick",
                ],
                &["raise home @d0 00:38", "clear home @d0 02:01", "raise quiet @d0 03:01"],
            ),
            (
                "a device still silent after the home came back gets its own alarm after a fresh hold",
                &[
                    "watchdev h1/d1 d0 00:00", "watchdev h1/d2 d0 00:00", "watchdev h1/d3 d0 00:00",
                    "d0 01:00 tick",
                    "d0 01:30 h1/d1 hb", "d0 01:30 h1/d2 hb",
                    "d0 01:40 tick",
                ],
                &["raise home @d0 00:30", "clear home @d0 01:30", "raise offline:d3 @d0 01:40"],
            ),
            (
                "an SOS from a dark home is raised at once",
                &["watchdev h1/d1 d0 00:00", "watchdev h1/d2 d0 00:00", "d0 00:45 tick", "d0 00:46 h1/s1 sos"],
                &["raise home @d0 00:30", "raise sos @d0 00:46"],
            ),
        ],
    );
}

const OUTAGE: &str = r#"
[[rule]]
id = "offline"
kind = "device_offline"
heartbeat_minutes = 10
missed_heartbeats = 3
severity = "warning"
title = "Device offline"

[[rule]]
id = "home"
kind = "home_unreachable"
hold_minutes = 10
severity = "warning"
title = "Home unreachable"

[[rule]]
id = "outage"
kind = "area_outage"
min_households = 3
within_minutes = 15
hold_minutes = 10
severity = "warning"
title = "Village outage"
"#;

#[test]
fn many_dark_homes_in_a_village_give_one_grouped_incident() {
    let homes: &[&str] = &[
        "watchdev h1/a d0 00:00",
        "watchdev h1/b d0 00:00",
        "area h1 v1",
        "watchdev h2/a d0 00:00",
        "watchdev h2/b d0 00:00",
        "area h2 v1",
        "watchdev h3/a d0 00:00",
        "watchdev h3/b d0 00:00",
        "area h3 v1",
        "watchdev h4/a d0 00:00",
        "watchdev h4/b d0 00:00",
        "area h4 v1",
        "watchdev h5/a d0 00:00",
        "watchdev h5/b d0 00:00",
        "area h5 v2",
    ];
    let steps = |rest: &[&'static str]| -> Vec<&'static str> {
        let mut v: Vec<&str> = homes.to_vec();
        v.extend_from_slice(rest);
        v
    };
    let outage = steps(&[
        "d0 00:02 h2/a hb",
        "d0 00:02 h2/b hb",
        "d0 00:04 h3/a hb",
        "d0 00:04 h3/b hb",
        "d0 00:20 h4/a hb",
        "d0 00:20 h4/b hb",
        "d0 00:20 h5/a hb",
        "d0 00:20 h5/b hb",
        "d0 01:00 tick",
        "d0 01:00 h1/a hb",
        "d0 01:00 h1/b hb",
        "d0 01:01 h2/a hb",
        "d0 01:11 tick",
    ]);
    check(
        "three homes dark within 15 min: one village incident; homes of other villages apart; when most are back the rest are watched one by one",
        OUTAGE,
        &outage,
        &[
            "village v1 raise outage @d0 00:34",
            "h5 raise home @d0 01:00",
            "village v1 clear outage @d0 01:01",
            "h2 raise offline:b @d0 01:11",
            "h3 raise home @d0 01:11",
            "h4 raise home @d0 01:11",
        ],
    );
    let few = steps(&[
        "d0 00:25 h2/a hb",
        "d0 00:25 h2/b hb",
        "d0 00:25 h3/a hb",
        "d0 00:25 h3/b hb",
        "d0 00:25 h5/a hb",
        "d0 00:25 h5/b hb",
        "d0 00:45 tick",
    ]);
    check(
        "two dark homes are two homes",
        OUTAGE,
        &few,
        &["raise home @d0 00:40", "h4 raise home @d0 00:40"],
    );
}

#[test]
fn consecutive_readings_threshold() {
    run_cases(
        r#"
[[rule]]
id = "hr"
kind = "threshold"
signal = "heart_rate"
above = 130
consecutive = 3
clear_margin = 5
severity = "critical"
title = "Abnormal heart rate"
"#,
        &[(
            "three in a row; an interruption restarts the count",
            &[
                "d0 08:00 h1/w hr 140",
                "d0 08:10 h1/w hr 120",
                "d0 08:20 h1/w hr 140",
                "d0 08:30 h1/w hr 141",
                "d0 08:40 h1/w hr 142",
                "d0 08:50 h1/w hr 100",
            ],
            &["raise hr:w @d0 08:40", "clear hr:w @d0 08:50"],
        )],
    );
}

#[test]
fn new_rule_kinds_report_mistakes_on_their_line() {
    const R: &str = "[[rule]]\nid = \"r\"\nseverity = \"warning\"\ntitle = \"T\"\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("{R}kind = \"daily_deadline\"\nfrom = \"10:00\"\nby = \"09:00\"\n"), 7, "`by` must be later"),
        (format!("{R}kind = \"utility_low\"\nmeter = \"gas\"\nbelow = 1\nhours = 24\n"), 6, "unknown meter \"gas\""),
        (format!("{R}kind = \"utility_high\"\nmeter = \"water\"\nabove = 1\nclear_below = 2\nhours = 24\n"), 8, "`clear_below` must be lower"),
        (format!("{R}kind = \"night_bed_exit\"\nwindow = \"22:00-06:00\"\nminutes = 0\n"), 7, "`minutes` must be more than 0"),
        (format!("{R}kind = \"home_unreachable\"\nmin_share = 1.5\n"), 6, "`min_share`"),
        (format!("{R}kind = \"area_outage\"\n\n[[override]]\nhousehold = \"h\"\nrule = \"r\"\nmin_households = 2\n"), 9, "cannot be overridden"),
        (format!("{R}kind = \"visit_target\"\nper_week = 2.5\n"), 6, "whole number"),
        (format!("{R}kind = \"home_unreachable\"\n\n[[rule]]\nid = \"r2\"\nseverity = \"warning\"\ntitle = \"T\"\nkind = \"home_unreachable\"\n"), 8, "only one home_unreachable rule"),
        (format!("{R}kind = \"continuous_flow\"\nmeter = \"water\"\n"), 1, "missing the required key `hours`"),
        (format!("{R}kind = \"instant\"\nsignal = \"sos\"\nescalate_to = \"province\"\n"), 7, "`escalate_to` must be"),
        (format!("{R}kind = \"utility_low\"\nmeter = \"water\"\nbelow = 1\nhours = 200\n"), 8, "at most 192 hours"),
    ];
    for (src, line, needle) in cases {
        let e = RuleSet::from_toml_str(&src).expect_err(&src);
        let msg = e.to_string();
        assert!(msg.contains(needle), "{src}\n=> {msg}");
        assert!(
            msg.contains(&format!("line {line}")),
            "{src}\n=> {msg} (want line {line})"
        );
    }
}

#[test]
fn escalate_to_caps_the_alarm() {
    let decisions = check(
        "escalate_to reaches the decision",
        "[[rule]]\nid = \"c\"\nkind = \"daily_deadline\"\nactivity = [\"checkin\"]\nby = \"09:00\"\nseverity = \"warning\"\ntitle = \"T\"\nescalate_to = \"village\"\n",
        &["watch h1 d0 00:00", "d1 09:00 tick"],
        &["raise c @d1 09:00"],
    );
    assert_eq!(decisions[0].max_level, Some(0));
    let sos = check(
        "default: no cap",
        INSTANT,
        &["d0 08:00 h1/b sos"],
        &["raise sos"],
    );
    assert_eq!(sos[0].max_level, None);
}

#[test]
fn a_carer_visit_covers_the_check_in_deadline_but_an_early_one_does_not() {
    run_cases(
        MORNING,
        &[
            (
                "carer in the home at 09:00: held back, nothing after",
                &[
                    "watch h2 d0 00:00",
                    "d0 08:00 h2/b2 checkin",
                    "d1 08:50 carer h2 1",
                    "d1 09:30 carer h2 0",
                    "d1 12:00 tick",
                    "d2 08:00 h2/b2 checkin",
                    "d2 12:00 tick",
                ],
                &[],
            ),
            (
                "carer gone by 07:30: the 09:00 check-in is still due",
                &[
                    "watch h2 d0 00:00",
                    "d0 08:00 h2/b2 checkin",
                    "d1 07:00 carer h2 1",
                    "d1 07:30 carer h2 0",
                    "d1 09:00 tick",
                ],
                &["h2 raise checkin @d1 09:00"],
            ),
        ],
    );
}

#[test]
fn a_last_will_of_a_device_not_watched_is_ignored() {
    run_cases(
        HEALTH,
        &[(
            "a forgotten (revoked) device's Last Will does not bring it back",
            &["d0 00:00 h1/d9 offline", "d0 05:00 tick"],
            &[],
        )],
    );
    let mut e = Engine::new(RuleSet::from_toml_str(HEALTH).unwrap());
    e.watch_device("h1", "d1", BASE);
    e.watch_device("h1", "d2", BASE);
    assert!(e.forget_device("h1", "d1").is_empty());
    let obs = Observation {
        household: "h1".into(),
        device: "d1".into(),
        at: BASE + MIN,
        signal: Signal::Offline,
    };
    assert!(e.observe(&obs, BASE + MIN).is_empty());
    assert_eq!(e.state().last_seen("h1", "d1"), None);
}
