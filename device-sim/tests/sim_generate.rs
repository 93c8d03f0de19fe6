//! The simulated district generator (`device_sim::sim`): determinism, contract validity,
//! realism of normal days, incident coverage, CSV export.
//!
//! `cargo test -p device-sim --test sim_generate -- --nocapture` prints the size and
//! generation time of the default run.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use device_sim::sim::{
    generate, time_of_day, truth, weekday, Expectation, Incident, IncidentKind, Millis, Scenario,
    SimConfig, SimEvent, DAY_MS, DEVICE_KINDS, EVENT_KINDS, HOUR_MS, MINUTE_MS, ROOMS,
    UTC_OFFSET_MS,
};
use serde_json::Value;

const DAYTIME: (Millis, Millis) = (7 * HOUR_MS, 22 * HOUR_MS);

fn default_run() -> &'static (Scenario, Duration) {
    static RUN: OnceLock<(Scenario, Duration)> = OnceLock::new();
    RUN.get_or_init(|| {
        let t = Instant::now();
        let s = generate(&SimConfig::default());
        (s, t.elapsed())
    })
}

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        towns: 3,
        villages: 12,
        households: 30,
        days: 12,
        ..SimConfig::default()
    }
}

#[test]
fn default_run_size_and_time() {
    let (s, took) = default_run();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &s.events {
        *by_kind.entry(e.kind).or_default() += 1;
    }
    let devices: usize = s.district.households.iter().map(|h| h.devices.len()).sum();
    let mut incidents: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &s.incidents {
        *incidents.entry(i.kind.as_str()).or_default() += 1;
    }
    println!(
        "default run: {} events, {} households, {} devices, {} incidents, generated in {:.2?} \
         ({} build)",
        s.events.len(),
        s.district.households.len(),
        devices,
        s.incidents.len(),
        took,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("events by kind: {by_kind:?}");
    println!("incidents by kind: {incidents:?}");
    assert!(s.events.len() <= 3_200_000, "{} events", s.events.len());
    assert!(s.events.len() >= 1_000_000, "{} events", s.events.len());
}

#[test]
fn same_seed_same_scenario_different_seed_different() {
    let a = generate(&small(7));
    let b = generate(&small(7));
    let json = |s: &Scenario| {
        (
            serde_json::to_string(&s.events).unwrap(),
            serde_json::to_string(&s.incidents).unwrap(),
            serde_json::to_string(&s.district).unwrap(),
        )
    };
    assert_eq!(json(&a), json(&b));
    let c = generate(&small(8));
    assert_ne!(json(&a).0, json(&c).0);
    assert_ne!(json(&a).1, json(&c).1);

    // The default run too (structurally: its JSON is ~300 MB).
    let (d, _) = default_run();
    let again = generate(&SimConfig::default());
    assert!(d.events == again.events);
    assert_eq!(d.incidents, again.incidents);
    assert_eq!(d.district, again.district);
}

#[test]
fn households_keep_their_routine_when_households_are_added() {
    // Every incident kind is planned at least twice: enough households that some stay
    // without incidents.
    let a = generate(&SimConfig {
        households: 60,
        ..small(3)
    });
    let b = generate(&SimConfig {
        households: 90,
        ..small(3)
    });
    for (ha, hb) in a.district.households.iter().zip(&b.district.households) {
        assert_eq!(ha, hb);
    }
    // A household without incidents in either run sends exactly the same events.
    let quiet =
        a.district.households.iter().find(|h| {
            a.incidents_of(&h.id).next().is_none() && b.incidents_of(&h.id).next().is_none()
        });
    let h = quiet.expect("some household without incidents").id.clone();
    let of = |s: &Scenario| {
        s.events
            .iter()
            .filter(|e| e.device.starts_with(&format!("{h}-")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&a), of(&b));
}

#[test]
fn events_sorted_and_in_range() {
    let (s, _) = default_run();
    assert!(s.events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(s.events.first().unwrap().at >= s.config.start);
    assert!(s.events.last().unwrap().at < s.config.end());
    let from = s.config.start + 5 * DAY_MS + 7 * HOUR_MS;
    let to = from + 2 * HOUR_MS;
    let slice = s.events_in(from, to);
    let expected = s
        .events
        .iter()
        .filter(|e| e.at >= from && e.at < to)
        .count();
    assert_eq!(slice.len(), expected);
    assert!(slice.iter().all(|e| e.at >= from && e.at < to));
    assert!(s.events_in(to, from).is_empty());
}

// ----- a tiny contract validator ----------------------------------------------------

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn field_error(e: &SimEvent) -> Option<String> {
    let f = e.fields.as_object()?;
    let b = |k: &str| match f.get(k) {
        Some(Value::Bool(_)) => None,
        other => Some(format!("{k}: expected boolean, got {other:?}")),
    };
    let n = |k: &str, lo: f64, hi: f64, optional: bool| match f.get(k) {
        None if optional => None,
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= lo && x <= hi => None,
            _ => Some(format!("{k}: {v} not a number in {lo}..{hi}")),
        },
        None => Some(format!("{k}: missing")),
    };
    match e.kind {
        "sos" | "heartbeat" => None,
        "fall" => n("confidence", 0.0, 1.0, true),
        "motion" => b("occupancy").or_else(|| match f.get("room") {
            None => None,
            Some(Value::String(r)) if r.len() <= 32 && ROOMS.contains(&r.as_str()) => None,
            Some(r) => Some(format!("room: {r}")),
        }),
        "door" => b("open"),
        "bed" => b("occupied"),
        "smoke" | "gas" => b("alarm"),
        "water_leak" => b("leak"),
        // Exactly one of the cumulative and the interval reading.
        "water_meter" => match (f.contains_key("total_m3"), f.contains_key("interval_m3")) {
            (true, false) => n("total_m3", 0.0, f64::MAX, false),
            (false, true) => n("interval_m3", 0.0, 1000.0, false),
            _ => Some("exactly one of total_m3 and interval_m3".into()),
        },
        "power_meter" => match (f.contains_key("total_kwh"), f.contains_key("interval_kwh")) {
            (true, false) => n("total_kwh", 0.0, f64::MAX, false),
            (false, true) => n("interval_kwh", 0.0, 100_000.0, false),
            _ => Some("exactly one of total_kwh and interval_kwh".into()),
        }
        .or_else(|| n("power_w", 0.0, f64::MAX, true)),
        "steps" => match f.get("steps") {
            Some(v) if v.as_u64().is_some_and(|x| x <= 100_000) => None,
            other => Some(format!("steps: {other:?} is not an integer 0..=100000")),
        },
        "checkin" => (!f.is_empty()).then(|| format!("checkin has fields: {f:?}")),
        "visit" => match (f.get("action").and_then(Value::as_str), f.get("carer")) {
            (Some("start" | "end"), None) => None,
            (Some("start" | "end"), Some(Value::String(c)))
                if (1..=64).contains(&c.len())
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
            {
                None
            }
            _ => Some(format!("visit: {f:?}")),
        },
        "away" => match (f.get("away"), f.get("hours")) {
            (Some(Value::Bool(true)), None) | (Some(Value::Bool(false)), None) => None,
            (Some(Value::Bool(true)), Some(_)) => n("hours", 1e-9, 2160.0, false),
            _ => Some(format!("away: {f:?}")),
        },
        // The contract allows 20..250 and -40..85; the simulation promises calm values.
        "heart_rate" => n("bpm", 60.0, 90.0, false),
        "temperature" => n("celsius", 16.0, 26.0, false),
        "battery" => n("percent", 0.0, 100.0, false),
        other => Some(format!("unknown kind {other}")),
    }
}

/// Which event kinds a device of each kind may send.
fn may_send(device_kind: &str, event: &str) -> bool {
    match event {
        "heartbeat" => true,
        "battery" => !matches!(device_kind, "fall" | "gas" | "power_meter"),
        "temperature" => device_kind == "motion",
        "heart_rate" => device_kind == "wearable",
        "fall" => matches!(device_kind, "fall" | "wearable"),
        "steps" => device_kind == "wearable",
        // The pendant has the "I'm OK" and "leaving home / back home" buttons; the door
        // reader reads the carer's tag.
        "checkin" | "away" => device_kind == "sos",
        "visit" => device_kind == "door",
        other => other == device_kind,
    }
}

#[test]
fn every_event_is_valid_under_the_contract() {
    let (s, _) = default_run();
    let mut devices: BTreeMap<&str, &str> = BTreeMap::new();
    for h in &s.district.households {
        assert!(valid_id(&h.id) && valid_id(&h.elder.id), "{}", h.id);
        for d in &h.devices {
            assert!(valid_id(&d.id), "device id {}", d.id);
            assert!(d.id.starts_with(&format!("{}-", h.id)), "{}", d.id);
            assert!(DEVICE_KINDS.contains(&d.kind), "{}", d.kind);
            if let Some(room) = &d.room {
                assert!(ROOMS.contains(&room.as_str()), "{room}");
            }
            assert!(
                devices.insert(&d.id, d.kind).is_none(),
                "duplicate {}",
                d.id
            );
        }
    }
    let mut checked = 0usize;
    for e in &s.events {
        let dk = devices
            .get(e.device.as_str())
            .unwrap_or_else(|| panic!("unknown device {}", e.device));
        assert!(EVENT_KINDS.contains(&e.kind), "kind {}", e.kind);
        assert!(may_send(dk, e.kind), "{} ({dk}) sent {}", e.device, e.kind);
        if let Some(err) = field_error(e) {
            panic!("{} {} at {}: {err}: {}", e.device, e.kind, e.at, e.fields);
        }
        checked += 1;
    }
    // The full envelope of a sample fits the contract too.
    for (n, e) in s.events.iter().step_by(9973).enumerate() {
        let p = e.to_payload(&format!("sim-{n}"));
        let bytes = p.to_string();
        assert!(bytes.len() <= 4096);
        let ts = p["ts"].as_str().unwrap();
        assert!(ts.ends_with("+08:00"), "{ts}");
        assert_eq!(p["kind"], e.kind);
    }
    assert_eq!(checked, s.events.len());
}

// ----- incidents ------------------------------------------------------------------

#[test]
fn default_config_has_at_least_two_of_every_incident_kind() {
    let (s, _) = default_run();
    for kind in IncidentKind::ALL {
        let n = s.incidents.iter().filter(|i| i.kind == kind).count();
        assert!(n >= 2, "{kind:?}: {n}");
    }
    let cuts: BTreeSet<Millis> = s
        .incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::VillagePowerCut)
        .map(|i| i.start)
        .collect();
    assert!(cuts.len() >= 2, "power cuts: {cuts:?}");
    // ids, order, serialization
    for (n, i) in s.incidents.iter().enumerate() {
        assert_eq!(i.id, format!("i-{:04}", n + 1));
        assert!(i.start <= i.end);
        // Away mode set by the button: nothing is expected (it suppresses every absence
        // rule), except a weekly visit count the days away cut short.
        assert!(
            !i.expected.is_empty() || i.kind == IncidentKind::AwaySet,
            "{} {:?} expects nothing",
            i.id,
            i.kind
        );
    }
    assert!(s.incidents.windows(2).all(|w| w[0].start <= w[1].start));
    let j = s.incidents_json();
    assert_eq!(j["incidents"].as_array().unwrap().len(), s.incidents.len());
    assert_eq!(
        j["incidents"][0]["kind"].as_str().unwrap(),
        s.incidents[0].kind.as_str()
    );
}

fn rules(i: &Incident, must: bool) -> BTreeSet<&str> {
    i.expected
        .iter()
        .filter(|e| e.must == must)
        .map(|e| e.rule_id.as_str())
        .collect::<BTreeSet<_>>()
}

fn must(i: &Incident, rule: &str) -> Expectation {
    i.expected
        .iter()
        .find(|e| e.must && e.rule_id == rule)
        .unwrap_or_else(|| panic!("{} {:?} must raise {rule}: {:?}", i.id, i.kind, i.expected))
        .clone()
}

/// Absence rules (suppressed by away mode), as in the spec.
const ABSENCE: [&str; 7] = [
    "no-activity-daytime",
    "no-activity-long",
    "night-out-of-bed",
    "not-up-by-10",
    "daily-checkin",
    "no-water-use",
    "no-power-use",
];

#[test]
fn incident_expectations_match_the_brief() {
    let (s, _) = default_run();
    let mut village_outages: BTreeMap<Millis, usize> = BTreeMap::new();
    for i in &s.incidents {
        let musts = rules(i, true);
        let may = rules(i, false);
        let h = s.district.household(&i.household).unwrap();
        // No rule id from before issue 4, and grouped expectations only for the outage.
        for e in &i.expected {
            assert_ne!(e.rule_id, "tap-left-running");
            assert_eq!(e.village.is_some(), e.rule_id == "village-outage", "{i:?}");
            if !e.must {
                assert!(
                    !musts.contains(e.rule_id.as_str()) || e.within_ms > 0,
                    "{i:?}"
                );
            }
        }
        match i.kind {
            IncidentKind::FallWithPendant => {
                assert!(musts.contains("sos") && musts.contains("fall"), "{i:?}");
                // sos a few seconds after the fall, both within 60 s
                let evs = s.events_in(i.start, i.start + 60_000);
                assert!(evs.iter().any(|e| e.kind == "fall"));
                assert!(evs.iter().any(|e| e.kind == "sos"));
            }
            IncidentKind::FallNoButton => {
                let e = must(i, "no-activity-daytime");
                assert!(e.within_ms <= 4 * HOUR_MS + 15 * MINUTE_MS, "{i:?}");
            }
            IncidentKind::CollapseInBed => {
                let e = must(i, "not-up-by-10");
                // by 10:00 local the next morning
                let by = i.start + e.within_ms;
                assert_eq!(local_midnight(by) + 10 * HOUR_MS, by, "{i:?}");
                assert_eq!(
                    local_midnight(by),
                    local_midnight(i.start) + DAY_MS,
                    "{i:?}"
                );
                assert!(may.contains("no-activity-daytime"), "{i:?}");
            }
            IncidentKind::NightFall => {
                let e = must(i, "night-out-of-bed");
                let tod = time_of_day(i.start);
                assert!(!(4 * HOUR_MS..23 * HOUR_MS).contains(&tod), "{i:?}");
                // 45 min after the last sign of life, which is the walk to the bathroom
                assert!(e.within_ms >= 45 * MINUTE_MS, "{i:?}");
                assert!(e.within_ms <= 75 * MINUTE_MS, "{i:?}");
            }
            IncidentKind::Smoke => assert!(musts.contains("smoke")),
            IncidentKind::Gas => assert!(musts.contains("gas")),
            IncidentKind::WaterLeak => assert!(musts.contains("water-leak")),
            IncidentKind::TapLeftRunning => {
                let e = must(i, "water-high-use");
                // 1 m³ at ~6 L/min is ~2.8 h, less the day's use so far, plus a meter
                // report interval (≤ 60 min) and 15 min.
                assert!(e.within_ms >= 2 * HOUR_MS, "{i:?}");
                assert!(e.within_ms <= 4 * HOUR_MS + 15 * MINUTE_MS, "{i:?}");
            }
            IncidentKind::AwayNotSet => {
                assert!(musts.is_empty(), "{i:?}");
                assert!(may.contains("no-water-use"), "{i:?}");
                for r in &may {
                    assert!(ABSENCE.contains(r) || *r == "visits-below-target", "{i:?}");
                }
            }
            IncidentKind::AwaySet => {
                // Away mode suppresses every absence rule: nothing expected at all.
                assert!(musts.is_empty(), "{i:?}");
                for r in &may {
                    assert_eq!(*r, "visits-below-target", "{i:?}");
                }
            }
            IncidentKind::BatteryDies => {
                assert!(musts.contains("low-battery") && musts.contains("device-offline"));
                let dev = i.expected[0].device.clone().unwrap();
                let reports = s
                    .events
                    .iter()
                    .filter(|e| e.device == dev && e.kind == "battery" && e.at >= i.start)
                    .map(|e| e.fields["percent"].as_i64().unwrap())
                    .take(4)
                    .collect::<Vec<_>>();
                assert_eq!(reports, vec![20, 10, 5, 100], "{dev}");
            }
            IncidentKind::HomeOffline | IncidentKind::VillagePowerCut => {
                // No per-device offline alarms any more: one per home, or per village.
                assert!(!musts.contains("device-offline") && !may.contains("device-offline"));
                if i.kind == IncidentKind::HomeOffline {
                    let e = must(i, "home-unreachable");
                    assert!(e.device.is_none());
                } else {
                    assert!(may.contains("home-unreachable"), "{i:?}");
                    if musts.contains("village-outage") {
                        let e = must(i, "village-outage");
                        assert_eq!(e.village.as_deref(), Some(h.village_id.as_str()));
                        *village_outages.entry(i.start).or_default() += 1;
                    }
                }
                // really silent
                let prefix = format!("{}-", h.id);
                let heard = s
                    .events_in(i.start, i.end)
                    .iter()
                    .filter(|e| e.device.starts_with(&prefix) && !e.device.ends_with("-wearable"))
                    .count();
                assert_eq!(heard, 0, "{i:?}");
            }
            IncidentKind::MissedCheckin => {
                assert!(h.checkin);
                let e = must(i, "daily-checkin");
                let by = i.start + e.within_ms;
                assert_eq!(by, local_midnight(i.start) + 9 * HOUR_MS, "{i:?}");
            }
            IncidentKind::FewVisits => {
                let e = must(i, "visits-below-target");
                assert_eq!(weekday(i.start), 0, "starts on a Monday");
                assert_eq!(local_midnight(i.start), i.start);
                assert_eq!(i.end - i.start, 7 * DAY_MS);
                assert_eq!(e.within_ms, 7 * DAY_MS + HOUR_MS);
                assert!(
                    i.end + HOUR_MS < s.config.end(),
                    "the hub sees the week end"
                );
            }
        }
    }
    // Exactly one grouped alarm per power cut (each cut is in a village of 5+ homes).
    let cuts: BTreeSet<Millis> = s
        .incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::VillagePowerCut)
        .map(|i| i.start)
        .collect();
    assert_eq!(village_outages.len(), cuts.len(), "{village_outages:?}");
    assert!(village_outages.values().all(|&n| n == 1));
}

#[test]
fn incidents_never_overlap_in_a_household() {
    let (s, _) = default_run();
    let mut by_home: BTreeMap<&str, Vec<(Millis, Millis)>> = BTreeMap::new();
    for i in &s.incidents {
        by_home
            .entry(&i.household)
            .or_default()
            .push((i.start, i.end));
    }
    for (h, mut spans) in by_home {
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].1 < w[1].0, "{h}: {:?} overlaps {:?}", w[0], w[1]);
        }
    }
}

// ----- normal days ----------------------------------------------------------------

fn local_midnight(t: Millis) -> Millis {
    (t + UTC_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - UTC_OFFSET_MS
}

/// Silence between `a` and `b` counted inside the daily 07:00–22:00 window.
fn daytime_silence(a: Millis, b: Millis) -> Millis {
    let mut counted = 0;
    let mut mid = local_midnight(a);
    while mid < b {
        let (ws, we) = (mid + DAYTIME.0, mid + DAYTIME.1);
        counted += (b.min(we) - a.max(ws)).max(0);
        mid += DAY_MS;
    }
    counted
}

/// Water (litres) or energy (kWh) of one meter reading: the interval value, or the rise
/// of the cumulative one since the previous reading (a reset to 0 counts nothing).
fn used(e: &SimEvent, last: &mut BTreeMap<String, f64>, total: &str, interval: &str) -> f64 {
    if let Some(v) = e.fields.get(interval).and_then(Value::as_f64) {
        return v;
    }
    let v = e.fields[total].as_f64().unwrap();
    match last.insert(e.device.clone(), v) {
        Some(p) if v >= p => v - p,
        _ => 0.0,
    }
}

fn household_of(device: &str) -> String {
    device.splitn(3, '-').take(2).collect::<Vec<_>>().join("-")
}

/// Activity per household as the spec counts it: (all signs of life, water use).
fn activity(s: &Scenario) -> BTreeMap<String, (Vec<Millis>, Vec<Millis>)> {
    let mut out: BTreeMap<String, (Vec<Millis>, Vec<Millis>)> = BTreeMap::new();
    let mut meters: BTreeMap<String, f64> = BTreeMap::new();
    for e in &s.events {
        let f = &e.fields;
        let (active, water) = match e.kind {
            "motion" => (f["occupancy"] == Value::Bool(true), false),
            "door" | "bed" | "sos" | "away" | "checkin" | "visit" => (true, false),
            "steps" => (f["steps"].as_u64().unwrap() > 0, false),
            "water_meter" => {
                let rose = used(e, &mut meters, "total_m3", "interval_m3") >= 0.0005 - 1e-9;
                (rose, rose)
            }
            "power_meter" => {
                let rose = used(e, &mut meters, "total_kwh", "interval_kwh") >= 0.01 - 1e-9;
                let w = f["power_w"].as_f64().unwrap_or(0.0);
                (rose || w > 30.0, false)
            }
            _ => (false, false),
        };
        let entry = out.entry(household_of(&e.device)).or_default();
        if active {
            entry.0.push(e.at);
        }
        if water {
            entry.1.push(e.at);
        }
    }
    out
}

/// Local days (by midnight) touched by an incident of each household.
fn incident_days(s: &Scenario) -> BTreeMap<&str, BTreeSet<Millis>> {
    let mut out: BTreeMap<&str, BTreeSet<Millis>> = BTreeMap::new();
    for i in &s.incidents {
        let days = out.entry(i.household.as_str()).or_default();
        let mut mid = local_midnight(i.start);
        while mid <= i.end {
            days.insert(mid);
            mid += DAY_MS;
        }
    }
    out
}

#[test]
fn normal_days_have_no_long_daytime_silence_and_use_water() {
    let (s, _) = default_run();
    let acts = activity(s);
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    let mut normal_days = 0;
    for h in &s.district.households {
        let (all, water) = &acts[&h.id];
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        for d in 0..s.config.days {
            let mid = s.config.start + i64::from(d) * DAY_MS;
            if busy.contains(&mid) {
                continue;
            }
            normal_days += 1;
            let (ws, we) = (mid + DAYTIME.0, mid + DAYTIME.1);
            // From the last sign of life before the window (or the run start) to the
            // window's end, through every sign of life inside it.
            let k = all.partition_point(|&t| t < ws);
            let mut prev = if k == 0 { s.config.start } else { all[k - 1] };
            let mut worst = 0;
            for &t in all[k..].iter().take_while(|&&t| t < we).chain([&we]) {
                worst = worst.max(daytime_silence(prev, t));
                prev = t;
            }
            assert!(
                worst < 4 * HOUR_MS,
                "{} day {d}: {} min of daytime silence",
                h.id,
                worst / MINUTE_MS
            );
            let used = water.iter().any(|&t| t >= mid && t < mid + DAY_MS);
            assert!(used, "{} day {d}: no water used", h.id);
        }
    }
    assert!(normal_days > 5000, "{normal_days}");
}

#[test]
fn normal_days_keep_devices_online_and_batteries_up() {
    let (s, _) = default_run();
    let hb = i64::from(s.config.heartbeat_minutes) * MINUTE_MS;
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    let mut last: BTreeMap<&str, Millis> = BTreeMap::new();
    for e in &s.events {
        let household = e
            .device
            .splitn(3, '-')
            .take(2)
            .collect::<Vec<_>>()
            .join("-");
        let busy = incident_days.get(household.as_str()).unwrap_or(&none);
        if let Some(prev) = last.insert(&e.device, e.at) {
            let gap = e.at - prev;
            if gap >= 3 * hb {
                assert!(
                    busy.contains(&local_midnight(prev)) || busy.contains(&local_midnight(e.at)),
                    "{} silent for {} min from {prev}",
                    e.device,
                    gap / MINUTE_MS
                );
            }
        }
        if e.kind == "battery" && !busy.contains(&local_midnight(e.at)) {
            assert!(e.fields["percent"].as_f64().unwrap() >= 25.0, "{e:?}");
        }
    }
}

#[test]
fn water_and_daily_rhythm_are_plausible() {
    let (s, _) = default_run();
    // Daily water per household on normal days: ~80–150 L on average.
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    let mut last = BTreeMap::new();
    let mut readings: BTreeMap<String, Vec<(Millis, f64)>> = BTreeMap::new();
    for e in s.events.iter().filter(|e| e.kind == "water_meter") {
        let litres = used(e, &mut last, "total_m3", "interval_m3") * 1000.0;
        readings
            .entry(e.device.clone())
            .or_default()
            .push((e.at, litres));
    }
    let mut litres = Vec::new();
    for h in &s.district.households {
        let meter = format!("{}-water-meter", h.id);
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        let readings = &readings[meter.as_str()];
        for d in 1..s.config.days - 1 {
            let mid = s.config.start + i64::from(d) * DAY_MS;
            if busy.contains(&mid) || busy.contains(&(mid + DAY_MS)) {
                continue;
            }
            let day: f64 = readings
                .iter()
                .filter(|r| r.0 >= mid && r.0 < mid + DAY_MS)
                .map(|r| r.1)
                .sum();
            litres.push(day);
        }
    }
    let mean = litres.iter().sum::<f64>() / litres.len() as f64;
    let min = litres.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "water per normal day: mean {mean:.0} L, min {min:.0} L over {} days",
        litres.len()
    );
    assert!((80.0..=150.0).contains(&mean), "{mean}");
    // `no-water-use` (10 L in 24 h) never fires on a normal day.
    assert!(min > 20.0, "{min}");
}

// ----- CSV ------------------------------------------------------------------------

#[test]
fn csv_files_have_headers_and_rows() {
    let s = generate(&small(5));
    let dir = std::env::temp_dir().join(format!("anxin-sim-csv-{}", std::process::id()));
    s.write_csv(&dir).unwrap();
    let devices: usize = s.district.households.iter().map(|h| h.devices.len()).sum();
    for (file, header, rows) in [
        ("towns.csv", "id,name", s.district.towns.len()),
        ("villages.csv", "id,town_id,name", s.district.villages.len()),
        (
            "households.csv",
            "id,village_id,address",
            s.district.households.len(),
        ),
        (
            "elders.csv",
            "id,household_id,name",
            s.district.households.len(),
        ),
        ("devices.csv", "id,household_id,kind,vendor,room", devices),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(header), "{file}");
        assert_eq!(lines.count(), rows, "{file}");
    }
    let households = std::fs::read_to_string(dir.join("households.csv")).unwrap();
    let first = households.lines().nth(1).unwrap();
    assert!(first.starts_with("h-0001,v-"), "{first}");
    assert!(first.contains("\"No. "), "address is quoted: {first}");
    assert_eq!(s.district.towns.len(), 3);
    assert_eq!(s.district.villages.len(), 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiny_configs_do_not_panic() {
    for (households, villages, towns, days) in
        [(0, 0, 0, 0), (1, 0, 0, 1), (3, 1, 1, 2), (2, 5, 2, 4)]
    {
        let s = generate(&SimConfig {
            households,
            villages,
            towns,
            days,
            ..SimConfig::default()
        });
        assert_eq!(s.district.households.len(), households);
        assert!(s.events.windows(2).all(|w| w[0].at <= w[1].at));
    }
}

// ----- issue 4: new signals, new rules ----------------------------------------------

/// Runs of consecutive local days without any incident of the household: `(first, last)`
/// day midnights, inclusive.
fn normal_runs(s: &Scenario, busy: &BTreeSet<Millis>) -> Vec<(Millis, Millis)> {
    let mut runs = Vec::new();
    let mut open: Option<Millis> = None;
    for d in 0..s.config.days {
        let mid = s.config.start + i64::from(d) * DAY_MS;
        match (busy.contains(&mid), open) {
            (false, None) => open = Some(mid),
            (true, Some(a)) => {
                runs.push((a, mid - DAY_MS));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(a) = open {
        runs.push((a, s.config.end() - DAY_MS));
    }
    runs
}

#[test]
fn normal_days_raise_nothing_under_the_new_rules() {
    let (s, _) = default_run();
    // The reference model of the rules predicts no alarm that no incident explains:
    // no 4 h daytime silence, everyone up and about before 10:00 (weekends too), night
    // bathroom trips back in bed within 45 min, more than 10 L of water and more than
    // the assumed no-power-use threshold in every 24 h, less than 1 m³ of water, three
    // carer visits a week, a check-in every morning where it is enabled.
    let unexplained = s.unexplained_reference_raises();
    assert!(
        unexplained.is_empty(),
        "{} unexplained, e.g. {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(10)]
    );

    // The least water and energy any normal 24 h used (the window's both days normal).
    let by_household = s.events_by_household();
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    let (mut water, mut energy) = (
        (f64::INFINITY, String::new()),
        (f64::INFINITY, String::new()),
    );
    let mut max_water: f64 = 0.0;
    for h in &s.district.households {
        let o = truth::observe(by_household[h.id.as_str()].iter().copied());
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        for (first, last) in normal_runs(s, busy) {
            let (from, to) = (first + DAY_MS, last + DAY_MS);
            if from >= to {
                continue;
            }
            let (w, e) = truth::min_24h_use(&o, from, to);
            if let Some(w) = w.filter(|&w| w < water.0) {
                water = (w, h.id.clone());
            }
            if let Some(e) = e.filter(|&e| e < energy.0) {
                energy = (e, h.id.clone());
            }
            // most water in any 24 h window ending at a reading
            for &(t, _) in o.water.iter().filter(|r| r.0 >= from && r.0 < to) {
                let sum: f64 = o
                    .water
                    .iter()
                    .filter(|r| r.0 > t - DAY_MS && r.0 <= t)
                    .map(|r| r.1)
                    .sum();
                max_water = max_water.max(sum);
            }
        }
    }
    println!(
        "normal 24 h windows: least water {:.1} L ({}), most water {:.0} L, least energy {:.3} kWh ({}); \
         model's no-power-use threshold {} kWh",
        water.0 * 1000.0,
        water.1,
        max_water * 1000.0,
        energy.0,
        energy.1,
        truth::NO_POWER_KWH
    );
    assert!(water.0 > 2.0 * truth::NO_WATER_M3, "{water:?}");
    assert!(energy.0 > 2.0 * truth::NO_POWER_KWH, "{energy:?}");
    assert!(max_water < 0.5 * truth::HIGH_WATER_M3, "{max_water}");
}

#[test]
fn the_reference_model_raises_every_required_alarm_in_time() {
    // The deadlines are honest: the rules as specified can meet them on these events.
    let (s, _) = default_run();
    let by_household = s.events_by_household();
    let modelled = [
        "no-activity-daytime",
        "not-up-by-10",
        "night-out-of-bed",
        "daily-checkin",
        "water-high-use",
        "visits-below-target",
    ];
    let mut checked = BTreeMap::<&str, usize>::new();
    for h in &s.district.households {
        let o = truth::observe(by_household[h.id.as_str()].iter().copied());
        let raises = truth::raises(&o, &s.config, h.checkin);
        for i in s.incidents_of(&h.id) {
            for e in i.expected.iter().filter(|e| e.must) {
                let Some(rule) = modelled.iter().find(|r| **r == e.rule_id) else {
                    continue;
                };
                assert!(
                    raises.iter().any(|r| r.rule == *rule
                        && r.at >= i.start
                        && r.at <= i.start + e.within_ms),
                    "{} {:?}: the model does not raise {rule} by the deadline",
                    i.id,
                    i.kind
                );
                *checked.entry(rule).or_default() += 1;
            }
        }
    }
    println!("required alarms the model confirms: {checked:?}");
    assert_eq!(checked.len(), modelled.len(), "{checked:?}");
}

#[test]
fn features_are_shared_out_as_specified() {
    let (s, _) = default_run();
    let homes = &s.district.households;
    let n = homes.len() as f64;
    let share = |f: &dyn Fn(&&device_sim::sim::Household) -> bool| {
        homes.iter().filter(f).count() as f64 / n
    };
    let water = share(&|h| h.interval_water);
    let power = share(&|h| h.interval_power);
    let checkin = share(&|h| h.checkin);
    println!("interval water {water:.3}, interval power {power:.3}, check-in {checkin:.3}");
    assert!((0.18..=0.22).contains(&water), "{water}");
    // 20 % of households, less those without a power meter (20 %)
    assert!((0.12..=0.22).contains(&power), "{power}");
    assert!((0.09..=0.11).contains(&checkin), "{checkin}");
    for h in homes {
        assert!(!h.interval_power || h.devices.iter().any(|d| d.kind == "power_meter"));
        assert_eq!(h.carer_tag, format!("carer-{}", h.village_id));
    }
}

#[test]
fn meters_send_interval_or_cumulative_readings_and_some_cumulative_ones_reset() {
    let (s, _) = default_run();
    let homes: BTreeMap<&str, &device_sim::sim::Household> = s
        .district
        .households
        .iter()
        .map(|h| (h.id.as_str(), h))
        .collect();
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    let mut resets: BTreeMap<&str, Vec<(Millis, f64, f64)>> = BTreeMap::new();
    for e in s
        .events
        .iter()
        .filter(|e| e.kind == "water_meter" || e.kind == "power_meter")
    {
        let h = homes[household_of(&e.device).as_str()];
        let (interval, total_key, interval_key) = if e.kind == "water_meter" {
            (h.interval_water, "total_m3", "interval_m3")
        } else {
            (h.interval_power, "total_kwh", "interval_kwh")
        };
        assert_eq!(e.fields.get(interval_key).is_some(), interval, "{e:?}");
        assert_eq!(e.fields.get(total_key).is_some(), !interval, "{e:?}");
        if let Some(v) = e.fields.get(total_key).and_then(Value::as_f64) {
            if let Some(prev) = last.insert(&e.device, v) {
                if v < prev {
                    resets.entry(&e.device).or_default().push((e.at, prev, v));
                }
            }
        }
    }
    println!("meter resets: {resets:?}");
    assert!(
        resets.len() >= 3,
        "a few cumulative meters reset: {resets:?}"
    );
    for (device, r) in &resets {
        assert_eq!(r.len(), 1, "{device} resets once");
        let (at, _, v) = r[0];
        assert_eq!(v, 0.0, "{device} resets to 0");
        let tod = time_of_day(at);
        assert!(
            (2 * HOUR_MS..=4 * HOUR_MS + 30 * MINUTE_MS).contains(&tod),
            "{device}"
        );
    }
}

#[test]
fn steps_only_while_up_and_moving() {
    let (s, _) = default_run();
    let by_household = s.events_by_household();
    let mut per_day = Vec::new();
    for h in &s.district.households {
        let events = &by_household[h.id.as_str()];
        let steps: Vec<&SimEvent> = events
            .iter()
            .copied()
            .filter(|e| e.kind == "steps")
            .collect();
        let Some(watch) = h.devices.iter().find(|d| d.kind == "wearable") else {
            assert!(steps.is_empty());
            continue;
        };
        let bed: Vec<(Millis, bool)> = events
            .iter()
            .filter(|e| e.kind == "bed")
            .map(|e| (e.at, e.fields["occupied"].as_bool().unwrap()))
            .collect();
        let dead_bed = s.incidents_of(&h.id).any(|i| {
            i.kind == IncidentKind::BatteryDies
                && i.expected[0]
                    .device
                    .as_deref()
                    .is_some_and(|d| d.ends_with("-bed"))
        });
        for e in &steps {
            assert_eq!(e.device, watch.id);
            assert!(e.fields["steps"].as_u64().unwrap() > 0);
            let k = bed.partition_point(|b| b.0 <= e.at);
            if !dead_bed {
                assert!(
                    k == 0 || !bed[k - 1].1,
                    "{} steps while in bed at {}",
                    h.id,
                    e.at
                );
            }
        }
        // Lying still after a collapse or a night-time fall: no steps until found.
        for i in s.incidents_of(&h.id) {
            let quiet = match i.kind {
                IncidentKind::CollapseInBed => Some((
                    i.start + 30 * MINUTE_MS,
                    local_midnight(i.start) + DAY_MS + 12 * HOUR_MS,
                )),
                IncidentKind::NightFall => Some((
                    i.start + 30 * MINUTE_MS,
                    local_midnight(i.start + 6 * HOUR_MS) + 7 * HOUR_MS + 30 * MINUTE_MS,
                )),
                _ => None,
            };
            if let Some((a, b)) = quiet {
                assert!(
                    !steps.iter().any(|e| e.at >= a && e.at < b),
                    "{} {:?}",
                    i.id,
                    i.kind
                );
            }
        }
        let total: u64 = steps
            .iter()
            .map(|e| e.fields["steps"].as_u64().unwrap())
            .sum();
        per_day.push(total as f64 / f64::from(s.config.days));
    }
    let mean = per_day.iter().sum::<f64>() / per_day.len() as f64;
    println!(
        "steps per wearer per day: mean {mean:.0} over {} wearers",
        per_day.len()
    );
    assert!((1000.0..=10_000.0).contains(&mean), "{mean}");
}

#[test]
fn carer_visits_three_times_a_week_except_in_a_week_of_few_visits() {
    let (s, _) = default_run();
    let by_household = s.events_by_household();
    let start = s.config.start;
    assert_eq!(weekday(start), 0, "the default run starts on a Monday");
    let mut short_weeks = 0;
    for h in &s.district.households {
        let visits: Vec<&SimEvent> = by_household[h.id.as_str()]
            .iter()
            .copied()
            .filter(|e| e.kind == "visit")
            .collect();
        // start / end in pairs, from the door reader, with the carer's tag
        for pair in visits.chunks(2) {
            assert_eq!(pair.len(), 2, "{}", h.id);
            assert_eq!(pair[0].fields["action"], "start");
            assert_eq!(pair[1].fields["action"], "end");
            assert!(pair[1].at - pair[0].at < 2 * HOUR_MS);
            for e in pair {
                assert_eq!(e.device, format!("{}-door", h.id));
                assert_eq!(e.fields["carer"], h.carer_tag.as_str());
            }
        }
        let mut week = start;
        while week + 7 * DAY_MS <= s.config.end() {
            let n = visits
                .iter()
                .filter(|e| {
                    e.fields["action"] == "start" && e.at >= week && e.at < week + 7 * DAY_MS
                })
                .count();
            let few = s
                .incidents_of(&h.id)
                .any(|i| i.kind == IncidentKind::FewVisits && i.start == week);
            let excused = s.incidents_of(&h.id).any(|i| {
                i.expected.iter().any(|e| {
                    e.rule_id == "visits-below-target"
                        && !e.must
                        && i.start + e.within_ms >= week + 7 * DAY_MS
                })
            });
            if few {
                assert_eq!(n, 2, "{} week of {week}", h.id);
            } else if excused {
                short_weeks += 1;
                assert!(
                    n < 3,
                    "{} week of {week}: {n} visits, excused for nothing",
                    h.id
                );
            } else {
                assert!(n >= 3, "{} week of {week}: {n} visits", h.id);
            }
            week += 7 * DAY_MS;
        }
    }
    println!("weeks cut short by an incident (acceptable visits-below-target): {short_weeks}");
    assert!(short_weeks <= 10, "{short_weeks}");
}

#[test]
fn the_away_button_is_pressed_on_leaving_and_on_return() {
    let (s, _) = default_run();
    let mut away_events: BTreeMap<String, Vec<&SimEvent>> = BTreeMap::new();
    for e in s.events.iter().filter(|e| e.kind == "away") {
        away_events
            .entry(household_of(&e.device))
            .or_default()
            .push(e);
    }
    let mut seen = 0;
    for i in &s.incidents {
        let evs = away_events.remove(&i.household).unwrap_or_default();
        if i.kind != IncidentKind::AwaySet {
            // only away_set households press it, and only on that trip
            away_events.insert(i.household.clone(), evs);
            continue;
        }
        let mine: Vec<&&SimEvent> = evs
            .iter()
            .filter(|e| e.at >= i.start - 5 * MINUTE_MS && e.at <= i.end + 5 * MINUTE_MS)
            .collect();
        assert_eq!(mine.len(), 2, "{i:?}");
        assert!(mine[0].device.ends_with("-sos"));
        assert_eq!(mine[0].fields["away"], true);
        let hours = mine[0].fields["hours"].as_f64().unwrap();
        assert!(
            hours * HOUR_MS as f64 >= (i.end - mine[0].at + HOUR_MS) as f64,
            "{i:?}"
        );
        assert!(mine[0].at < i.start);
        assert_eq!(mine[1].fields["away"], false);
        assert!(mine[1].fields.get("hours").is_none());
        assert!(mine[1].at > i.end && mine[1].at < i.end + 5 * MINUTE_MS);
        seen += 1;
        let rest: Vec<&SimEvent> = evs.iter().copied().filter(|e| !mine.contains(&e)).collect();
        away_events.insert(i.household.clone(), rest);
    }
    assert!(seen >= 2);
    let stray: Vec<_> = away_events.values().flatten().collect();
    assert!(
        stray.is_empty(),
        "away pressed without an away_set incident: {stray:?}"
    );
}

#[test]
fn a_night_fall_leaves_the_bed_and_nobody_returns_until_morning() {
    let (s, _) = default_run();
    let by_household = s.events_by_household();
    let mut nights = 0;
    for i in s
        .incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::NightFall)
    {
        let events = &by_household[i.household.as_str()];
        let exit = events
            .iter()
            .find(|e| e.at == i.start && e.kind == "bed")
            .unwrap_or_else(|| panic!("{i:?}: no bed exit at the start"));
        assert_eq!(exit.fields["occupied"], false);
        let morning = local_midnight(i.start + 6 * HOUR_MS) + 7 * HOUR_MS + 30 * MINUTE_MS;
        let after: Vec<&&SimEvent> = events
            .iter()
            .filter(|e| e.at > i.start && e.at < morning)
            .collect();
        assert!(
            !after.iter().any(|e| e.kind == "bed" || e.kind == "door"),
            "{i:?}"
        );
        // two motions (bedroom, bathroom) within 3 minutes, then nothing moves
        let moving: Vec<Millis> = after
            .iter()
            .filter(|e| e.kind == "motion" && e.fields["occupancy"] == true)
            .map(|e| e.at)
            .collect();
        assert!(
            !moving.is_empty() && moving.iter().all(|&t| t <= i.start + 3 * MINUTE_MS),
            "{i:?}"
        );
        nights += 1;
    }
    assert!(nights >= 2);
    // Everyone else's night-time bathroom trips end back in bed within 45 minutes.
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    let mut trips = 0;
    for h in &s.district.households {
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        let bed: Vec<(Millis, bool)> = by_household[h.id.as_str()]
            .iter()
            .filter(|e| e.kind == "bed")
            .map(|e| (e.at, e.fields["occupied"].as_bool().unwrap()))
            .collect();
        for (k, &(t, occupied)) in bed.iter().enumerate() {
            let tod = time_of_day(t);
            let night = !(6 * HOUR_MS..22 * HOUR_MS).contains(&tod);
            if occupied || !night || busy.contains(&local_midnight(t)) {
                continue;
            }
            let back = bed[k + 1..].iter().find(|b| b.1).map(|b| b.0);
            assert!(
                back.is_some_and(|b| b - t < 45 * MINUTE_MS),
                "{} at {t}",
                h.id
            );
            trips += 1;
        }
    }
    assert!(trips > 1000, "{trips}");
}

#[test]
fn check_in_households_check_in_every_morning() {
    let (s, _) = default_run();
    let by_household = s.events_by_household();
    let incident_days = incident_days(s);
    let none = BTreeSet::new();
    for h in &s.district.households {
        let checkins: Vec<&SimEvent> = by_household[h.id.as_str()]
            .iter()
            .copied()
            .filter(|e| e.kind == "checkin")
            .collect();
        if !h.checkin {
            assert!(checkins.is_empty(), "{}", h.id);
            continue;
        }
        assert!(checkins.iter().all(|e| e.device == format!("{}-sos", h.id)));
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        for d in 0..s.config.days {
            let mid = s.config.start + i64::from(d) * DAY_MS;
            let early = checkins
                .iter()
                .filter(|e| e.at >= mid + 6 * HOUR_MS && e.at < mid + 9 * HOUR_MS)
                .count();
            let missed = s
                .incidents_of(&h.id)
                .any(|i| i.kind == IncidentKind::MissedCheckin && local_midnight(i.start) == mid);
            if missed {
                assert_eq!(early, 0, "{} day {d}", h.id);
                assert!(checkins
                    .iter()
                    .any(|e| e.at >= mid + 9 * HOUR_MS && e.at < mid + 11 * HOUR_MS));
            } else if !busy.contains(&mid) {
                assert_eq!(early, 1, "{} day {d}", h.id);
            }
        }
    }
}
