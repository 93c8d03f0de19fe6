//! Table-driven scenario tests: every case is a rule file, a list of steps in
//! a tiny text language, and the expected decisions, all run through `check`.
//!
//! Step language (times are UTC: `dN HH:MM` = N days after 2024-01-01):
//!   `d0 08:00 h1/d1 smoke 1`      observation (now = at)
//!   `d0 08:00 tick`               tick
//!   `watch h1 d0 08:00`           watch_household
//!   `watchdev h1/d1 d0 08:00`     watch_device
//!   `roundtrip`                   rebuild the engine from the JSON of its state
//! Signals: sos fall hb online offline | motion/door/bed/smoke/gas/leak 0|1 |
//!   water M3 | power KWH [W] | temp C | hr BPM | battery PCT
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
        _ => {
            let now = parse_time(w[0], w[1]);
            if w[2] == "tick" {
                (engine.tick(now), Some(now))
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
    let who = if d.household == "h1" {
        String::new()
    } else {
        format!("{} ", d.household)
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
    assert!(
        !engine.clone().tick(due.max(clock)).is_empty(),
        "tick at next_deadline must yield a decision"
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
            "raise device-offline:m1 @d0 13:30",
            "raise no-activity-daytime @d1 02:00",
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
            "no-water-use",
            "device-offline",
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
