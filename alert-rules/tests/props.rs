//! Property tests over arbitrary observation / tick sequences.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use alert_rules::{Action, Decision, Engine, EngineState, Millis, Observation, RuleSet, Signal};
use proptest::prelude::*;

const BASE: Millis = 1_704_067_200_000; // 2024-01-01 00:00 UTC
const MIN: Millis = 60_000;

/// Short timers so that arbitrary sequences actually cross them.
const FAST_RULES: &str = r#"
timezone_offset = "-03:30"

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
id = "hot"
kind = "threshold"
signal = "temperature"
above = 30
for_minutes = 5
clear_minutes = 10
clear_margin = 2
severity = "warning"
title = "Hot"

[[rule]]
id = "hot-now"
kind = "threshold"
signal = "temperature"
above = 30
severity = "warning"
title = "Hot now"

[[rule]]
id = "heart"
kind = "threshold"
signal = "heart_rate"
above = 120
below = 45
for_minutes = 1
severity = "critical"
title = "Heart"

[[rule]]
id = "power"
kind = "threshold"
signal = "power_w"
below = 5
clear_minutes = 3
severity = "info"
title = "Power"

[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion", "door", "bed", "water_use", "power_use", "button"]
hours = 1.5
window = "20:00-06:00"
severity = "warning"
title = "Quiet"

[[rule]]
id = "dry"
kind = "inactivity"
activity = ["water_use"]
hours = 0.75
severity = "warning"
title = "Dry"

[[rule]]
id = "offline"
kind = "device_offline"
heartbeat_minutes = 5
missed_heartbeats = 3
offline_grace_minutes = 0
severity = "warning"
title = "Offline"

[[rule]]
id = "battery"
kind = "low_battery"
below_percent = 20
clear_above_percent = 30
severity = "info"
title = "Battery"

[[rule]]
id = "fall"
kind = "instant"
signal = "fall"
severity = "critical"
title = "Fall"

[[rule]]
id = "gas"
kind = "instant"
signal = "gas"
severity = "critical"
title = "Gas"

[[rule]]
id = "night"
kind = "night_bed_exit"
window = "22:00-06:00"
minutes = 20
severity = "critical"
title = "Night"

[[rule]]
id = "morning"
kind = "daily_deadline"
from = "01:00"
by = "03:00"
severity = "warning"
title = "Morning"

[[rule]]
id = "low-water"
kind = "utility_low"
meter = "water"
below = 0.5
hours = 2
severity = "warning"
title = "Low water"

[[rule]]
id = "high-water"
kind = "utility_high"
meter = "water"
above = 2
hours = 3
severity = "warning"
title = "High water"

[[rule]]
id = "flow"
kind = "continuous_flow"
meter = "water"
hours = 1
min_per_hour = 0.1
severity = "warning"
title = "Flow"

[[rule]]
id = "home"
kind = "home_unreachable"
min_devices = 2
hold_minutes = 7
severity = "warning"
title = "Home"

[[rule]]
id = "outage"
kind = "area_outage"
min_households = 2
within_minutes = 20
hold_minutes = 5
severity = "warning"
title = "Outage"

[[rule]]
id = "back"
kind = "away_expired"
grace_hours = 0.5
severity = "warning"
title = "Back"

[[rule]]
id = "visits"
kind = "visit_target"
per_week = 1
severity = "info"
title = "Visits"

[[override]]
household = "h1"
rule = "quiet"
hours = 0.5
window = "06:00-07:00"

[[override]]
household = "h2"
rule = "hot"
enabled = false
"#;

fn rule_sets() -> Vec<RuleSet> {
    vec![
        RuleSet::from_toml_str(FAST_RULES).unwrap(),
        RuleSet::default_rules(),
    ]
}

fn edge_rules(id: &str) -> bool {
    // instant rules and the weekly visit target may repeat Raise by design
    // (repeats go into the open alarm); everything else is edge-triggered
    !matches!(
        id,
        "sos" | "smoke" | "fall" | "gas" | "water-leak" | "visits" | "visits-below-target"
    )
}

#[derive(Clone, Debug)]
enum Op {
    Obs {
        household: usize,
        device: usize,
        skew_min: i64,
        signal: Signal,
    },
    Tick,
    /// 0: set_mode for `minutes` (may be in the past), 1: end_mode,
    /// 2: visit check-in, 3: visit check-out (from the board).
    Command {
        household: usize,
        kind: u8,
        minutes: i64,
    },
}

#[derive(Clone, Debug)]
struct Step {
    /// minutes added to the clock before the op (may be negative)
    dt_min: i64,
    op: Op,
}

fn num() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -20.0..160.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => any::<f64>(),
    ]
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        Just(Signal::Sos),
        Just(Signal::Fall),
        any::<bool>().prop_map(|occupancy| Signal::Motion { occupancy }),
        any::<bool>().prop_map(|open| Signal::Door { open }),
        any::<bool>().prop_map(|occupied| Signal::Bed { occupied }),
        any::<bool>().prop_map(|alarm| Signal::Smoke { alarm }),
        any::<bool>().prop_map(|alarm| Signal::Gas { alarm }),
        any::<bool>().prop_map(|leak| Signal::WaterLeak { leak }),
        prop_oneof![0.0..3.0f64, num()].prop_map(|total_m3| Signal::WaterMeter { total_m3 }),
        (prop_oneof![0.0..3.0f64, num()], proptest::option::of(num()))
            .prop_map(|(total_kwh, power_w)| Signal::PowerMeter { total_kwh, power_w }),
        num().prop_map(|bpm| Signal::HeartRate { bpm }),
        num().prop_map(|celsius| Signal::Temperature { celsius }),
        num().prop_map(|percent| Signal::Battery { percent }),
        Just(Signal::Heartbeat),
        Just(Signal::Online),
        Just(Signal::Offline),
        prop_oneof![0.0..1.0f64, num()].prop_map(|m3| Signal::WaterVolume { m3 }),
        (prop_oneof![0.0..1.0f64, num()], proptest::option::of(num()))
            .prop_map(|(kwh, power_w)| Signal::EnergyVolume { kwh, power_w }),
        num().prop_map(|count| Signal::Steps { count }),
        Just(Signal::CheckIn),
        any::<bool>().prop_map(|start| Signal::Visit { start, carer: None }),
        (any::<bool>(), proptest::option::of(num()))
            .prop_map(|(away, hours)| Signal::Away { away, hours }),
    ]
}

fn step(monotone: bool) -> impl Strategy<Value = Step> {
    let dt = if monotone {
        (0i64..90).boxed()
    } else {
        (-60i64..240).boxed()
    };
    let skew = if monotone {
        Just(0i64).boxed()
    } else {
        (-30i64..10).boxed()
    };
    let op = prop_oneof![
        4 => (0usize..2, 0usize..3, skew, signal()).prop_map(|(household, device, skew_min, signal)| Op::Obs {
            household,
            device,
            skew_min,
            signal,
        }),
        1 => Just(Op::Tick),
        1 => (0usize..2, 0u8..4, -60i64..600).prop_map(|(household, kind, minutes)| Op::Command {
            household,
            kind,
            minutes,
        }),
    ];
    (dt, op).prop_map(|(dt_min, op)| Step { dt_min, op })
}

/// Applies one step at `now`; returns its decisions.
fn run_step(engine: &mut Engine, now: Millis, s: &Step) -> Vec<Decision> {
    match &s.op {
        Op::Tick => engine.tick(now),
        Op::Command {
            household,
            kind,
            minutes,
        } => {
            let h = format!("h{household}");
            match kind {
                0 => engine.set_mode(&h, alert_rules::ModeKind::Away, now + minutes * MIN, now),
                1 => engine.end_mode(&h, now),
                k => engine.visit(&h, *k == 2, None, now),
            }
        }
        Op::Obs {
            household,
            device,
            skew_min,
            signal,
        } => {
            let obs = Observation {
                household: format!("h{household}"),
                device: format!("d{device}"),
                at: now + skew_min * MIN,
                signal: signal.clone(),
            };
            engine.observe(&obs, now)
        }
    }
}

fn times(steps: &[Step]) -> Vec<Millis> {
    let mut now = BASE;
    steps
        .iter()
        .map(|s| {
            now += s.dt_min * MIN;
            now
        })
        .collect()
}

/// The household, or `village:<id>` for grouped incidents.
fn subject(d: &Decision) -> String {
    match (&d.household, &d.village) {
        (Some(h), None) => h.clone(),
        (None, Some(v)) => format!("village:{v}"),
        other => panic!("a decision names exactly one subject: {other:?}"),
    }
}

fn new_engine(rules: &RuleSet, watch: bool) -> Engine {
    let mut e = Engine::new(rules.clone());
    if watch {
        e.watch_household("h0", BASE);
        e.watch_device("h1", "d2", BASE - 30 * MIN);
        e.set_area("h0", Some("v"));
        e.set_area("h1", Some("v"));
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Timer/flag rules alternate Raise, Clear, Raise... per condition key,
    /// never raise twice in a row and never clear what is not raised; the
    /// engine's open set agrees; no decision is later than `now`.
    #[test]
    fn edge_triggered_and_never_panics(
        rules in 0usize..2,
        watch in any::<bool>(),
        steps in prop::collection::vec(step(false), 1..80),
    ) {
        let rules = &rule_sets()[rules];
        let mut engine = new_engine(rules, watch);
        let mut open: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut high = i64::MIN;
        for (s, now) in steps.iter().zip(times(&steps)) {
            high = high.max(now);
            let got = run_step(&mut engine, now, s);
            for d in &got {
                prop_assert!(d.at <= high, "decision after now: {d:?}");
                prop_assert!(!d.detail.is_empty());
                if !edge_rules(&d.rule_id) {
                    continue;
                }
                let key = (subject(d), d.condition_key.clone());
                let was = open.get(&key).copied().unwrap_or(false);
                match d.action {
                    Action::Raise => prop_assert!(!was, "second Raise without Clear: {d:?}"),
                    Action::Clear => prop_assert!(was, "Clear without Raise: {d:?}"),
                }
                open.insert(key, d.action == Action::Raise);
            }
            // idempotent, and an earlier now raises nothing
            let was_tick = matches!(s.op, Op::Tick);
            prop_assert!(!was_tick || engine.clone().tick(now).is_empty());
            let mut probe = engine.clone();
            probe.tick(high);
            prop_assert!(probe.tick(high).is_empty());
            prop_assert!(probe.tick(now - 600 * MIN).is_empty());
            prop_assert!(probe.tick(i64::MIN).is_empty());
        }
        let mut engine_open: Vec<(String, String)> = engine
            .state()
            .open_conditions()
            .into_iter()
            .filter(|(_, k)| edge_rules(k.split(':').next().unwrap_or("")))
            .collect();
        for (v, _) in engine.state().open_outages() {
            engine_open.push((format!("village:{v}"), "outage".to_string()));
        }
        engine_open.sort();
        let ours: Vec<(String, String)> = open.into_iter().filter(|(_, o)| *o).map(|(k, _)| k).collect();
        prop_assert_eq!(engine_open, ours);
    }

    /// An engine rebuilt from the JSON of its state at any point decides
    /// exactly like the original from then on.
    #[test]
    fn state_round_trip_is_equivalent(
        rules in 0usize..2,
        watch in any::<bool>(),
        steps in prop::collection::vec(step(false), 1..60),
        split in any::<prop::sample::Index>(),
    ) {
        let rules = &rule_sets()[rules];
        let ts = times(&steps);
        let k = split.index(steps.len());
        let mut a = new_engine(rules, watch);
        let mut b = new_engine(rules, watch);
        for i in 0..k {
            let x = run_step(&mut a, ts[i], &steps[i]);
            let y = run_step(&mut b, ts[i], &steps[i]);
            prop_assert_eq!(x, y);
        }
        let json = serde_json::to_string(b.state()).unwrap();
        let state: EngineState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&state, b.state());
        let mut b = Engine::with_state(rules.clone(), state);
        for i in k..steps.len() {
            let x = run_step(&mut a, ts[i], &steps[i]);
            let y = run_step(&mut b, ts[i], &steps[i]);
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(a.state(), b.state());
        prop_assert_eq!(a.next_deadline(), b.next_deadline());
    }

    /// With time moving forward and `at == now`, how often `tick` is called
    /// does not change any condition's decisions (only when they are
    /// reported), and `next_deadline` is exact.
    #[test]
    fn decisions_do_not_depend_on_tick_frequency(
        rules in 0usize..2,
        watch in any::<bool>(),
        steps in prop::collection::vec(step(true), 1..60),
    ) {
        let rules = &rule_sets()[rules];
        let ts = times(&steps);
        let mut eager = new_engine(rules, watch);
        let mut lazy = new_engine(rules, watch);
        let mut eager_out = Vec::new();
        let mut lazy_out = Vec::new();
        for (s, &now) in steps.iter().zip(&ts) {
            eager_out.extend(run_step(&mut eager, now, s));
            eager_out.extend(eager.tick(now));
            if !matches!(s.op, Op::Tick) {
                lazy_out.extend(run_step(&mut lazy, now, s));
            }
            // next_deadline: nothing fires before it, something fires at it
            if let Some(due) = eager.next_deadline() {
                prop_assert!(due > now, "eager engine ticked at {now} but {due} is due");
                prop_assert!(eager.clone().tick(due - 1).is_empty());
                let mut probe = eager.clone();
                let fired = probe.tick(due);
                prop_assert!(!fired.is_empty() || probe.next_deadline().is_none_or(|d| d > due));
            }
        }
        let end = ts.last().copied().unwrap_or(BASE);
        eager_out.extend(eager.tick(end));
        lazy_out.extend(lazy.tick(end));
        let per_key = |ds: &[Decision]| {
            let mut m: BTreeMap<(String, String), Vec<Decision>> = BTreeMap::new();
            for d in ds {
                m.entry((subject(d), d.condition_key.clone())).or_default().push(d.clone());
            }
            m
        };
        prop_assert_eq!(per_key(&eager_out), per_key(&lazy_out));
        prop_assert_eq!(eager.state(), lazy.state());
    }

    /// Numeric readings that are NaN or infinite never raise or clear
    /// anything: only device health (they still count as "heard from") and
    /// silence (they are no sign of life) can fire.
    #[test]
    fn non_finite_values_never_raise(
        rules in 0usize..2,
        values in prop::collection::vec(
            (prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-f64::NAN)], 0usize..5, 0i64..20),
            1..60,
        ),
    ) {
        let rules = &rule_sets()[rules];
        let mut engine = Engine::new(rules.clone());
        let mut now = BASE;
        for (v, kind, dt) in values {
            now += dt * MIN;
            let signal = match kind {
                0 => Signal::Temperature { celsius: v },
                1 => Signal::HeartRate { bpm: v },
                2 => Signal::Battery { percent: v },
                3 => Signal::PowerMeter { total_kwh: v, power_w: Some(v) },
                _ => Signal::WaterMeter { total_m3: v },
            };
            let obs = Observation { household: "h".into(), device: "d".into(), at: now, signal };
            let mut got = engine.observe(&obs, now);
            got.extend(engine.tick(now));
            for d in got {
                let health = d.rule_id.contains("offline");
                let silence = d.action == Action::Raise
                    && matches!(
                        engine.rules().rule_kind(&d.rule_id),
                        Some("inactivity" | "daily_deadline" | "utility_low")
                    );
                prop_assert!(health || silence, "{d:?}");
            }
        }
        prop_assert!(engine.state().last_activity("h").is_none());
    }

    /// Arbitrary (even absurd) timestamps never panic.
    #[test]
    fn extreme_times_never_panic(
        steps in prop::collection::vec((any::<i64>(), any::<i64>(), signal()), 1..30),
    ) {
        let mut engine = Engine::new(RuleSet::from_toml_str(FAST_RULES).unwrap());
        engine.watch_household("h", i64::MIN);
        engine.watch_device("h", "x", i64::MAX);
        for (now, at, signal) in steps {
            let obs = Observation { household: "h".into(), device: "d".into(), at, signal };
            let _ = engine.observe(&obs, now);
            let _ = engine.tick(now);
            let _ = engine.next_deadline();
        }
        let json = serde_json::to_string(engine.state()).unwrap();
        prop_assert_eq!(&serde_json::from_str::<EngineState>(&json).unwrap(), engine.state());
    }
}

fn critical_signal() -> impl Strategy<Value = (Signal, &'static str)> {
    prop_oneof![
        Just((Signal::Sos, "sos")),
        Just((Signal::Fall, "fall")),
        Just((Signal::Smoke { alarm: true }, "smoke")),
        Just((Signal::Gas { alarm: true }, "gas")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever happened before — away and hospital modes, visits, devices
    /// and whole homes offline, village outages, open alarms, time going
    /// backwards — an SOS, fall, smoke or gas report yields exactly one
    /// critical Raise for that device in the same call, at the report's time.
    #[test]
    fn a_critical_event_always_yields_exactly_one_critical_alarm_at_once(
        rules in 0usize..2,
        watch in any::<bool>(),
        steps in prop::collection::vec(step(false), 0..80),
        (signal, rule) in critical_signal(),
        household in 0usize..2,
        device in 0usize..3,
        dt in 0i64..600,
    ) {
        let rules = &rule_sets()[rules];
        let mut engine = new_engine(rules, watch);
        let ts = times(&steps);
        for (s, &now) in steps.iter().zip(&ts) {
            run_step(&mut engine, now, s);
        }
        let now = ts.last().copied().unwrap_or(BASE) + dt * MIN;
        let obs = Observation {
            household: format!("h{household}"),
            device: format!("d{device}"),
            at: now,
            signal,
        };
        let got = engine.observe(&obs, now);
        let critical: Vec<&Decision> = got
            .iter()
            .filter(|d| d.action == Action::Raise && d.device.as_deref() == Some(obs.device.as_str()) && d.rule_id == rule)
            .collect();
        prop_assert_eq!(critical.len(), 1, "{:?}", got);
        let d = critical[0];
        prop_assert_eq!(d.severity, alert_rules::Severity::Critical);
        prop_assert_eq!(d.household.as_deref(), Some(obs.household.as_str()));
        let high = engine.state().clock().unwrap_or(now);
        prop_assert_eq!(d.at, now.min(high));
    }
}
