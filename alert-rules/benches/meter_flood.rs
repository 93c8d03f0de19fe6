//! One water meter floods its household with readings: how much does each
//! reading cost the rules stage, and does the cost grow with the number of
//! readings already in the meter's window? (Issue 14, finding 4: the old
//! rescanning code took 3.3-5.2 s to answer an SOS in another home after
//! 1,000 such readings, and never caught up after 3,000.)
//!
//! `cargo bench -p alert-rules --bench meter_flood [-- READINGS [RUNS]]`
//! (default 10,000 readings, best of 5 runs). No criterion (CI compile
//! time): `std::time::Instant`, the time per reading for every block of
//! 1,000 readings, so a cost that grows with the history shows as a rising
//! column. Each figure is the best of the runs, each run on a fresh engine:
//! the least disturbed by whatever else the machine is doing.
//!
//! The flood uses the shipped rules (`no-water-use`: less than 10 litres in
//! 24 h; `water-high-use`: more than 1 m³ in 24 h, clearing at 0.5 m³;
//! `water-continuous-flow`) and 100 other watched households, like a village
//! on one hub: 2.5 readings per millisecond (1,000 in 0.4 s, as in the
//! finding), each one litre more than the last, `next_deadline` asked after
//! every message as the hub's rules stage does. Then the clock runs on for
//! 48 hours in one-minute ticks, with every home's heartbeat every 5
//! minutes, so the alarms the flood caused fire and clear.

use std::time::{Duration, Instant};

use alert_rules::{Decision, Engine, Millis, Observation, RuleSet, Signal};

const BASE: Millis = 1_704_067_200_000; // 2024-01-01 00:00 UTC
const MINUTE: Millis = 60_000;
const BLOCK: usize = 1_000;
const OTHER_HOMES: usize = 100;
const TICKS: i64 = 48 * 60;

/// One run: the time of each block of readings, of the flood, of the ticks,
/// and the flooded home's decisions (with the reading or minute they came at).
struct Run {
    blocks: Vec<Duration>,
    flood: Duration,
    ticks: Duration,
    decisions: Vec<String>,
}

fn observation(household: &str, device: &str, at: Millis, signal: Signal) -> Observation {
    Observation {
        household: household.into(),
        device: device.into(),
        at,
        signal,
    }
}

fn run(readings: usize) -> Run {
    let mut engine = Engine::new(RuleSet::default_rules());
    for h in 0..OTHER_HOMES {
        let home = format!("h{h:03}");
        engine.watch_device(&home, "m1", BASE);
        engine.set_area(&home, Some("v1"));
    }
    engine.watch_device("flood", "w1", BASE);
    engine.set_area("flood", Some("v1"));

    let mut decisions = Vec::new();
    let mut blocks = Vec::new();
    let started = Instant::now();
    let mut block_started = Instant::now();
    let mut now = BASE;
    for i in 0..readings {
        now = BASE + (i as Millis) * 2 / 5;
        let signal = Signal::WaterMeter {
            total_m3: 100.0 + i as f64 * 0.001,
        };
        for d in engine.observe(&observation("flood", "w1", now, signal), now) {
            decisions.push(format!(
                "{} {} at reading {}",
                d.action.as_str(),
                d.condition_key,
                i + 1
            ));
        }
        std::hint::black_box(engine.next_deadline());
        if (i + 1) % BLOCK == 0 || i + 1 == readings {
            blocks.push(block_started.elapsed());
            block_started = Instant::now();
        }
    }
    let flood = started.elapsed();

    let end = now;
    let mut keep = |ds: Vec<Decision>| {
        for d in ds {
            if d.household.as_deref() == Some("flood") {
                decisions.push(format!(
                    "{} {} at +{:.2} min",
                    d.action.as_str(),
                    d.condition_key,
                    (d.at - end) as f64 / MINUTE as f64
                ));
            }
        }
    };
    let started = Instant::now();
    for k in 1..=TICKS {
        let t = end + k * MINUTE;
        if k % 5 == 0 {
            for h in 0..OTHER_HOMES {
                let home = format!("h{h:03}");
                keep(engine.observe(&observation(&home, "m1", t, Signal::Heartbeat), t));
            }
            keep(engine.observe(&observation("flood", "w1", t, Signal::Heartbeat), t));
        }
        keep(engine.tick(t));
        std::hint::black_box(engine.next_deadline());
    }
    Run {
        blocks,
        flood,
        ticks: started.elapsed(),
        decisions,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the numbers on the line are the counts.
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let readings = numbers.next().unwrap_or(10_000).max(1);
    let runs = numbers.next().unwrap_or(5).max(1);
    println!(
        "meter_flood: {readings} readings from one water meter (shipped rules, 2.5 readings/ms), \
         {OTHER_HOMES} other households; best of {runs} run(s)"
    );
    let all: Vec<Run> = (0..runs).map(|_| run(readings)).collect();
    let best = |f: &dyn Fn(&Run) -> Duration| all.iter().map(f).min().unwrap_or_default();

    let mut per_block = Vec::new();
    for b in 0..all[0].blocks.len() {
        let first = b * BLOCK + 1;
        let last = ((b + 1) * BLOCK).min(readings);
        let n = (last + 1 - first) as f64;
        let us = best(&|r| r.blocks[b]).as_secs_f64() * 1e6 / n;
        println!("readings {first:>6}-{last:<6} {us:>10.2} µs/reading");
        per_block.push(us);
    }
    let flood = best(&|r| r.flood).as_secs_f64();
    println!(
        "total: {readings} readings in {flood:.3} s = {:.0} readings/s",
        readings as f64 / flood
    );
    if let (Some(first), Some(last)) = (per_block.first(), per_block.last()) {
        println!(
            "first 1,000: {first:.2} µs/reading; last 1,000: {last:.2} µs/reading (last/first = {:.2})",
            last / first
        );
    }
    let ticks = best(&|r| r.ticks).as_secs_f64();
    println!(
        "after the flood: {TICKS} ticks (one a minute for 48 h, heartbeats every 5 min) in {ticks:.3} s = {:.2} µs/tick",
        ticks * 1e6 / TICKS as f64
    );
    println!("the flooded home's decisions:");
    for d in &all[0].decisions {
        println!("  {d}");
    }
}
