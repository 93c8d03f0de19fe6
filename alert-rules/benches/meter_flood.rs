//! One water meter floods its household with readings: how much does each
//! reading cost the rules stage, and does the cost grow with the number of
//! readings already in the meter's window? (Issue 14, finding 4: the old
//! rescanning code took 3.3-5.2 s to answer an SOS in another home after
//! 1,000 such readings, and never caught up after 3,000.)
//!
//! `cargo bench -p alert-rules --bench meter_flood [-- READINGS]` (default
//! 10,000). No criterion (CI compile time): `std::time::Instant`, one run,
//! the time per reading for every block of 1,000 readings, so a cost that
//! grows with the history shows as a rising column.
//!
//! The flood uses the shipped rules (`no-water-use`: less than 10 litres in
//! 24 h; `water-high-use`: more than 1 m³ in 24 h, clearing at 0.5 m³;
//! `water-continuous-flow`) and 100 other watched households, like a village
//! on one hub: 2.5 readings per millisecond (1,000 in 0.4 s, as in the
//! finding), each one litre more than the last, `next_deadline` asked after
//! every message as the hub's rules stage does. Then the clock runs on for
//! 48 hours in one-minute ticks, so the alarms the flood caused fire and clear.

use std::time::{Duration, Instant};

use alert_rules::{Engine, Millis, Observation, RuleSet, Signal};

const BASE: Millis = 1_704_067_200_000; // 2024-01-01 00:00 UTC
const MINUTE: Millis = 60_000;
const BLOCK: usize = 1_000;
const OTHER_HOMES: usize = 100;

fn main() {
    // `cargo bench` passes `--bench`; the first number on the line is the count.
    let readings = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10_000);
    let mut engine = Engine::new(RuleSet::default_rules());
    for h in 0..OTHER_HOMES {
        let home = format!("h{h:03}");
        engine.watch_device(&home, "m1", BASE);
        engine.set_area(&home, Some("v1"));
    }
    engine.watch_device("flood", "w1", BASE);
    engine.set_area("flood", Some("v1"));

    println!(
        "meter_flood: {readings} readings from one water meter (shipped rules, 2.5 readings/ms), {OTHER_HOMES} other households"
    );
    let mut decisions = 0usize;
    let mut blocks: Vec<Duration> = Vec::new();
    let started = Instant::now();
    let mut block_started = Instant::now();
    let mut now = BASE;
    for i in 0..readings {
        now = BASE + (i as Millis) * 2 / 5;
        let obs = Observation {
            household: "flood".into(),
            device: "w1".into(),
            at: now,
            signal: Signal::WaterMeter {
                total_m3: 100.0 + i as f64 * 0.001,
            },
        };
        for d in engine.observe(&obs, now) {
            decisions += 1;
            println!(
                "  {} {} at reading {}",
                d.action.as_str(),
                d.condition_key,
                i + 1
            );
        }
        std::hint::black_box(engine.next_deadline());
        if (i + 1) % BLOCK == 0 || i + 1 == readings {
            let took = block_started.elapsed();
            let n = i % BLOCK + 1;
            println!(
                "readings {:>6}-{:<6} {:>10.2} µs/reading",
                i + 2 - n,
                i + 1,
                took.as_secs_f64() * 1e6 / n as f64
            );
            blocks.push(took / n as u32);
            block_started = Instant::now();
        }
    }
    let flood = started.elapsed();
    println!(
        "total: {readings} readings in {:.3} s = {:.0} readings/s ({decisions} decisions)",
        flood.as_secs_f64(),
        readings as f64 / flood.as_secs_f64()
    );
    if let (Some(first), Some(last)) = (blocks.first(), blocks.last()) {
        println!(
            "first 1,000: {:.2} µs/reading; last 1,000: {:.2} µs/reading (last/first = {:.2})",
            first.as_secs_f64() * 1e6,
            last.as_secs_f64() * 1e6,
            last.as_secs_f64() / first.as_secs_f64()
        );
    }

    // The meter stops; every home keeps sending heartbeats while the clock runs on.
    let ticks = 48 * 60;
    let mut fired = Vec::new();
    let mut keep = |ds: Vec<alert_rules::Decision>| {
        fired.extend(
            ds.into_iter()
                .filter(|d| d.household.as_deref() == Some("flood")),
        )
    };
    let started = Instant::now();
    for k in 1..=ticks {
        let t = now + k * MINUTE;
        if k % 5 == 0 {
            for h in 0..OTHER_HOMES {
                let obs = Observation {
                    household: format!("h{h:03}"),
                    device: "m1".into(),
                    at: t,
                    signal: Signal::Heartbeat,
                };
                keep(engine.observe(&obs, t));
            }
            let obs = Observation {
                household: "flood".into(),
                device: "w1".into(),
                at: t,
                signal: Signal::Heartbeat,
            };
            keep(engine.observe(&obs, t));
        }
        keep(engine.tick(t));
        std::hint::black_box(engine.next_deadline());
    }
    let took = started.elapsed();
    println!(
        "after the flood: {ticks} ticks (one a minute for 48 h, heartbeats every 5 min) in {:.3} s = {:.2} µs/tick",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / ticks as f64
    );
    for d in fired {
        println!(
            "  {} {} at +{:.2} min",
            d.action.as_str(),
            d.condition_key,
            (d.at - now) as f64 / MINUTE as f64
        );
    }
}
