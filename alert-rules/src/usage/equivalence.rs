//! The bounded meter history decides exactly like the code before issue 14,
//! engine-wide: two engines get the same random messages, commands, ticks,
//! rule swaps and restarts, one with [`Usage`](super::Usage) and one with the
//! old rescanning code ([`super::reference`]); every call must return the
//! same decisions (times and texts included), `next_deadline` must agree
//! after every step, and the saved states must be the same JSON.
//!
//! The inputs are the ones on which the two can be compared bit for bit:
//! readings in time order (as the hub stamps them), any number in one
//! millisecond, with amounts on a 1/1024 grid, where f64 sums are exact in
//! any order. Both meter forms, counter resets and rollbacks, non-finite and
//! negative values, two meters of one kind in one home, meters going
//! offline (which rests `utility_low`), modes and visits (which rest absence
//! rules) are all in.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::reference;
use crate::{Decision, Engine, EngineState, Millis, ModeKind, Observation, RuleSet, Signal};

const BASE: Millis = 1_704_067_200_000;
const GRID: f64 = 1.0 / 1024.0;

/// Windows of seconds, so that millisecond steps cross them all the time:
/// low and high use on both meters, windows of different lengths on one
/// meter (the longest decides what is kept), a per-home override.
const SHORT: &str = r#"
[[rule]]
id = "low-water"
kind = "utility_low"
meter = "water"
below = 0.5
hours = 0.002
severity = "warning"
title = "Low water"

[[rule]]
id = "low-water-long"
kind = "utility_low"
meter = "water"
below = 2
hours = 0.01
severity = "warning"
title = "Low water (long)"

[[rule]]
id = "high-water"
kind = "utility_high"
meter = "water"
above = 3
clear_below = 1
hours = 0.005
severity = "warning"
title = "High water"

[[rule]]
id = "low-power"
kind = "utility_low"
meter = "power"
below = 0.25
hours = 0.003
severity = "warning"
title = "Low power"

[[rule]]
id = "high-power"
kind = "utility_high"
meter = "power"
above = 1
hours = 0.004
severity = "warning"
title = "High power"

[[rule]]
id = "flow"
kind = "continuous_flow"
meter = "water"
hours = 0.004
min_per_hour = 0.5
max_gap_minutes = 0.2
severity = "warning"
title = "Flow"

[[rule]]
id = "offline"
kind = "device_offline"
heartbeat_minutes = 0.1
missed_heartbeats = 3
offline_grace_minutes = 0
severity = "warning"
title = "Offline"

[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion", "water_use", "power_use"]
hours = 0.01
severity = "warning"
title = "Quiet"

[[override]]
household = "h1"
rule = "low-water"
hours = 0.004
"#;

/// The same kinds with other windows (swapped in mid-run: what is kept
/// changes), and the shipped rules' 24-hour windows.
const OTHER: &str = r#"
[[rule]]
id = "low-water"
kind = "utility_low"
meter = "water"
below = 0.25
hours = 0.001
severity = "warning"
title = "Low water"

[[rule]]
id = "high-water"
kind = "utility_high"
meter = "water"
above = 2
hours = 0.02
severity = "warning"
title = "High water"

[[rule]]
id = "high-power"
kind = "utility_high"
meter = "power"
above = 0.5
clear_below = 0.125
hours = 0.001
severity = "warning"
title = "High power"
"#;

fn rule_sets() -> Vec<RuleSet> {
    vec![
        RuleSet::from_toml_str(SHORT).expect("SHORT parses"),
        RuleSet::from_toml_str(OTHER).expect("OTHER parses"),
        RuleSet::default_rules(),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// A meter reading: `form` 0 water total, 1 water interval, 2 power
    /// total, 3 energy interval; the total moves by `step`/1024 (negative:
    /// a rollback), `reset` sets it to 0 first, `bad` sends NaN/inf instead.
    Reading {
        household: usize,
        device: usize,
        form: u8,
        step: i32,
        reset: bool,
        bad: Option<f64>,
    },
    /// Any other message: heartbeat (keeps a meter online), motion.
    Other {
        household: usize,
        device: usize,
        motion: bool,
    },
    Tick,
    /// 0: away for `ms`, 1: end mode, 2: visit starts, 3: visit ends.
    Command {
        household: usize,
        kind: u8,
        ms: i64,
    },
    SwapRules(usize),
    /// Both engines restart from the JSON of their state.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let bad = prop_oneof![
        12 => Just(None),
        1 => Just(Some(f64::NAN)),
        1 => Just(Some(f64::INFINITY)),
        1 => Just(Some(f64::NEG_INFINITY)),
    ];
    let step = prop_oneof![6 => 0i32..64, 2 => Just(0i32), 1 => -64i32..0, 1 => 0i32..4096];
    prop_oneof![
        12 => (0usize..2, 0usize..2, 0u8..4, step, prop::bool::weighted(0.03), bad).prop_map(
            |(household, device, form, step, reset, bad)| Op::Reading { household, device, form, step, reset, bad }
        ),
        3 => (0usize..2, 0usize..3, any::<bool>())
            .prop_map(|(household, device, motion)| Op::Other { household, device, motion }),
        3 => Just(Op::Tick),
        1 => (0usize..2, 0u8..4, 0i64..60_000)
            .prop_map(|(household, kind, ms)| Op::Command { household, kind, ms }),
        1 => (0usize..3).prop_map(Op::SwapRules),
        1 => Just(Op::Restart),
    ]
}

/// Milliseconds before the next step: often none (many readings in one
/// millisecond), mostly within the windows, sometimes long enough for every
/// window to empty.
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        3 => 1i64..50,
        4 => 50i64..5_000,
        2 => 5_000i64..60_000,
        1 => 60_000i64..(26 * 3_600_000),
    ]
}

/// The driver's meter registers, so that totals move like real ones.
#[derive(Default)]
struct Registers(BTreeMap<(usize, usize, u8), i64>);

impl Registers {
    fn signal(&mut self, op: &Op) -> Option<Signal> {
        let Op::Reading {
            household,
            device,
            form,
            step,
            reset,
            bad,
        } = op
        else {
            return None;
        };
        let r = self.0.entry((*household, *device, *form)).or_insert(1024);
        if *reset {
            *r = 0;
        }
        *r = (*r + i64::from(*step)).max(0);
        let total = bad.unwrap_or(*r as f64 * GRID);
        let interval = bad.unwrap_or(f64::from(*step) * GRID);
        Some(match form {
            0 => Signal::WaterMeter { total_m3: total },
            1 => Signal::WaterVolume { m3: interval },
            2 => Signal::PowerMeter {
                total_kwh: total,
                power_w: None,
            },
            _ => Signal::EnergyVolume {
                kwh: interval,
                power_w: None,
            },
        })
    }
}

/// One step on one engine; `signal` is a reading's, from the driver's registers.
fn run(
    engine: &mut Engine,
    rules: &[RuleSet],
    op: &Op,
    signal: Option<&Signal>,
    now: Millis,
) -> Vec<Decision> {
    match op {
        Op::Reading {
            household, device, ..
        } => {
            let Some(signal) = signal else {
                return Vec::new();
            };
            let obs = Observation {
                household: format!("h{household}"),
                device: format!("m{device}"),
                at: now,
                signal: signal.clone(),
            };
            engine.observe(&obs, now)
        }
        Op::Other {
            household,
            device,
            motion,
        } => {
            let obs = Observation {
                household: format!("h{household}"),
                device: if *device == 2 {
                    "s".to_string()
                } else {
                    format!("m{device}")
                },
                at: now,
                signal: if *motion {
                    Signal::Motion { occupancy: true }
                } else {
                    Signal::Heartbeat
                },
            };
            engine.observe(&obs, now)
        }
        Op::Tick => engine.tick(now),
        Op::Command {
            household,
            kind,
            ms,
        } => {
            let h = format!("h{household}");
            match kind {
                0 => engine.set_mode(&h, ModeKind::Away, now + ms, now),
                1 => engine.end_mode(&h, now),
                k => engine.visit(&h, *k == 2, None, now),
            }
        }
        Op::SwapRules(i) => engine.set_rules(rules[*i].clone()),
        Op::Restart => {
            let json = engine.state().to_json().expect("state serialises");
            let state = EngineState::from_json(&json).expect("state loads");
            *engine = Engine::with_state(engine.rules().clone(), state);
            Vec::new()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_bounded_history_decides_like_the_rescan(
        first in 0usize..3,
        steps in prop::collection::vec((gap(), op()), 1..250),
    ) {
        let rules = rule_sets();
        let mut new = Engine::new(rules[first].clone());
        let mut old = reference::with(|| Engine::new(rules[first].clone()));
        let mut registers = Registers::default();
        let mut now = BASE;
        for (i, (dt, op)) in steps.iter().enumerate() {
            now += dt;
            let signal = registers.signal(op);
            let got = run(&mut new, &rules, op, signal.as_ref(), now);
            let want = reference::with(|| run(&mut old, &rules, op, signal.as_ref(), now));
            prop_assert_eq!(&got, &want, "step {}: {:?} at +{} ms", i, op, now - BASE);
            prop_assert_eq!(new.next_deadline(), old.next_deadline(), "next_deadline after step {}", i);
        }
        prop_assert_eq!(new.state().open_conditions(), old.state().open_conditions());
        // What is saved is what the old code saved.
        prop_assert_eq!(new.state().to_json().expect("json"), old.state().to_json().expect("json"));
    }
}
