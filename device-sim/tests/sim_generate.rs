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
    generate, IncidentKind, Millis, Scenario, SimConfig, SimEvent, DAY_MS, DEVICE_KINDS,
    EVENT_KINDS, HOUR_MS, MINUTE_MS, ROOMS, UTC_OFFSET_MS,
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
    assert!(s.events.len() <= 3_000_000, "{} events", s.events.len());
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
    let a = generate(&small(3));
    let b = generate(&SimConfig {
        households: 45,
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
        "water_meter" => n("total_m3", 0.0, f64::MAX, false),
        "power_meter" => {
            n("total_kwh", 0.0, f64::MAX, false).or_else(|| n("power_w", 0.0, f64::MAX, true))
        }
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
        assert!(
            !i.expected.is_empty(),
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

#[test]
fn incident_expectations_match_the_brief() {
    let (s, _) = default_run();
    fn rules(i: &device_sim::sim::Incident, must: bool) -> BTreeSet<&str> {
        i.expected
            .iter()
            .filter(|e| e.must == must)
            .map(|e| e.rule_id.as_str())
            .collect::<BTreeSet<_>>()
    }
    for i in &s.incidents {
        let must = rules(i, true);
        let may = rules(i, false);
        match i.kind {
            IncidentKind::FallWithPendant => {
                assert!(must.contains("sos") && must.contains("fall"), "{i:?}");
                // sos a few seconds after the fall, both within 60 s
                let evs = s.events_in(i.start, i.start + 60_000);
                assert!(evs.iter().any(|e| e.kind == "fall"));
                assert!(evs.iter().any(|e| e.kind == "sos"));
            }
            IncidentKind::FallNoButton | IncidentKind::CollapseInBed => {
                assert!(must.contains("no-activity-daytime"), "{i:?}")
            }
            IncidentKind::Smoke => assert!(must.contains("smoke")),
            IncidentKind::Gas => assert!(must.contains("gas")),
            IncidentKind::WaterLeak => assert!(must.contains("water-leak")),
            IncidentKind::TapLeftRunning => assert!(must.contains("tap-left-running")),
            IncidentKind::AwayNotSet | IncidentKind::AwaySet => {
                assert!(must.is_empty(), "{i:?}");
                assert!(
                    may.contains("no-activity-daytime") && may.contains("no-water-use"),
                    "{i:?}"
                );
            }
            IncidentKind::BatteryDies => {
                assert!(must.contains("low-battery") && must.contains("device-offline"));
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
                let h = s.district.household(&i.household).unwrap();
                let offline = i
                    .expected
                    .iter()
                    .filter(|e| e.rule_id == "device-offline" && e.must)
                    .count();
                let home = h.devices.iter().filter(|d| d.kind != "wearable").count();
                assert_eq!(offline, home, "{i:?}");
                // really silent
                let prefix = format!("{}-", h.id);
                let heard = s
                    .events_in(i.start, i.end)
                    .iter()
                    .filter(|e| e.device.starts_with(&prefix) && !e.device.ends_with("-wearable"))
                    .count();
                assert_eq!(heard, 0, "{i:?}");
            }
        }
    }
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

/// Activity per household as the default rules count it: (all signs of life, water use).
fn activity(s: &Scenario) -> BTreeMap<String, (Vec<Millis>, Vec<Millis>)> {
    let mut out: BTreeMap<String, (Vec<Millis>, Vec<Millis>)> = BTreeMap::new();
    let mut meters: BTreeMap<&str, f64> = BTreeMap::new();
    for e in &s.events {
        let household = e
            .device
            .splitn(3, '-')
            .take(2)
            .collect::<Vec<_>>()
            .join("-");
        let f = &e.fields;
        let (active, water) = match e.kind {
            "motion" => (f["occupancy"] == Value::Bool(true), false),
            "door" | "bed" | "sos" => (true, false),
            "water_meter" => {
                let v = f["total_m3"].as_f64().unwrap();
                let rose = meters
                    .insert(&e.device, v)
                    .is_some_and(|p| v - p >= 0.0005 - 1e-9);
                (rose, rose)
            }
            "power_meter" => {
                let v = f["total_kwh"].as_f64().unwrap();
                let rose = meters
                    .insert(&e.device, v)
                    .is_some_and(|p| v - p >= 0.01 - 1e-9);
                let w = f["power_w"].as_f64().unwrap_or(0.0);
                (rose || w > 30.0, false)
            }
            _ => (false, false),
        };
        let entry = out.entry(household).or_default();
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
    let mut meters: BTreeMap<&str, Vec<(Millis, f64)>> = BTreeMap::new();
    for e in s.events.iter().filter(|e| e.kind == "water_meter") {
        let v = e.fields["total_m3"].as_f64().unwrap();
        meters.entry(&e.device).or_default().push((e.at, v));
    }
    let mut litres = Vec::new();
    for h in &s.district.households {
        let meter = format!("{}-water-meter", h.id);
        let busy = incident_days.get(h.id.as_str()).unwrap_or(&none);
        let readings = &meters[meter.as_str()];
        assert!(
            readings.windows(2).all(|w| w[0].1 <= w[1].1),
            "{meter} decreased"
        );
        for d in 1..s.config.days - 1 {
            let mid = s.config.start + i64::from(d) * DAY_MS;
            if busy.contains(&mid) || busy.contains(&(mid + DAY_MS)) {
                continue;
            }
            let at = |t: Millis| readings.iter().take_while(|r| r.0 < t).last().map(|r| r.1);
            if let (Some(a), Some(b)) = (at(mid), at(mid + DAY_MS)) {
                litres.push((b - a) * 1000.0);
            }
        }
    }
    let mean = litres.iter().sum::<f64>() / litres.len() as f64;
    println!(
        "water per normal day: mean {mean:.0} L over {} days",
        litres.len()
    );
    assert!((80.0..=150.0).contains(&mean), "{mean}");
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
