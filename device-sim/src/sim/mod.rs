//! A deterministic simulated district: towns, villages, households, elders and their
//! devices, a month of realistic device events, and a list of incidents with the alarms
//! the hub's rules are expected to raise for them.
//!
//! ```no_run
//! use device_sim::sim::{generate, SimConfig};
//! let scenario = generate(&SimConfig::default());
//! scenario.write_csv(std::path::Path::new("/tmp/district")).expect("write csv");
//! let first_hour = scenario.events_in(scenario.config.start, scenario.config.start + 3_600_000);
//! println!("{} events in the first hour", first_hour.len());
//! ```
//!
//! # What is simulated
//!
//! Every elder follows a daily routine with variation (seeded ChaCha streams; the same
//! seed gives a byte-identical scenario): wake 06:05–08:30 (later at weekends), bed
//! sensor, night bathroom visits (back in bed within 20 minutes), three meals in the
//! kitchen (motion, cooking on the power meter, water use), living-room motion every
//! 20–60 minutes while at home and awake, daytime bathroom visits, naps, showers, outings
//! of 1–3.5 hours (door open / closed, no indoor signs of life meanwhile), visitors, and
//! a carer three times every calendar week who taps an NFC tag on the door reader
//! (`visit` start / end with the carer's tag). About 10 % of households have the daily
//! "I'm OK" check-in: the elder presses `checkin` on the pendant every morning before
//! 09:00. Devices also report on their own: a `heartbeat` every
//! [`SimConfig::heartbeat_minutes`] (jittered: 0–10 % late), temperature hourly from the
//! living-room motion sensor, battery levels daily, water / power meter readings every
//! 30–60 minutes (the power meter also on every appliance switch) — cumulative
//! (`total_m3`, `total_kwh`; a few reset to 0 once, at night) or, for about 20 % of
//! households each, interval readings (`interval_m3`, `interval_kwh`) — and from the
//! wearable a heart rate every 20–30 minutes, with `steps` since the previous report
//! when the elder is out of bed and has moved.
//!
//! On a day without an incident the default rules raise nothing: the daytime silence
//! stays under 4 hours, everyone is up by 08:30, night trips end back in bed, every 24 h
//! use more than 10 L of water (and far less than 1 m³) and more than 0.5 kWh on the
//! kitchen plug, and the carer comes three times a week. [`truth`] holds a reference
//! model of the rules that checks exactly this (see
//! [`Scenario::unexplained_reference_raises`]). (Device health assumes the
//! `device-offline` rule's `heartbeat_minutes` equals [`SimConfig::heartbeat_minutes`];
//! with the default file's value every device would look offline: `generate` writes a
//! matching `rules.toml`, see [`rules_file`].)
//!
//! Models worth knowing:
//! * The power meter is a kitchen smart plug (rice cooker, kettle, hob): its standby draw
//!   is 1.5–5 W, so only cooking counts as `power_use` activity.
//! * The wearable is a cellular watch: it keeps reporting while the elder is out or away
//!   and is not silenced by a home gateway outage or a power cut. Its steps count as a
//!   sign of life (also while the elder is away at the family's).
//! * "A device goes silent / comes back" is the absence of its events; after an outage
//!   each device sends a heartbeat within 90 s of coming back. An interval meter carries
//!   the volume of reports it could not send into its next one.
//! * The pendant carries the SOS, "I'm OK" and "leaving home / back home" buttons; the
//!   door contact doubles as the carer's NFC reader.
//!
//! # Incidents
//!
//! Incidents are planned per run (deterministic, spread over days and households, never
//! two in one household within a day of each other): see [`IncidentKind`]. Each lists
//! [`Expectation`]s: alarms that must be raised (`must = true`), and alarms that are
//! acceptable consequences such as the classic "elder away, no activity" false alarm
//! (`must = false`). Every alarm the reference model predicts during an incident is
//! listed (except those away mode suppresses), and so is a required alarm raised again
//! while its condition lasts, so an evaluation can treat every other alarm as a false
//! alarm.

mod clock;
mod district;
mod export;
mod home;
mod plan;
mod rng;
pub mod rules_file;
pub mod truth;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use clock::{
    daytime_deadline, local_midnight, rfc3339, time_of_day, weekday, DAY_MS, HOUR_MS, MINUTE_MS,
    SECOND_MS, UTC_OFFSET_MS,
};

/// Unix epoch milliseconds, UTC.
pub type Millis = i64;

/// Device kinds a household can have (the hub's device kinds, minus `thermometer`).
pub const DEVICE_KINDS: [&str; 11] = [
    "sos",
    "fall",
    "motion",
    "door",
    "bed",
    "smoke",
    "gas",
    "water_leak",
    "water_meter",
    "power_meter",
    "wearable",
];

/// Event kinds of device contract v1 (with the issue 4 additions: `steps`, `checkin`,
/// `visit`, `away`).
pub const EVENT_KINDS: [&str; 18] = [
    "sos",
    "fall",
    "motion",
    "door",
    "bed",
    "smoke",
    "gas",
    "water_leak",
    "water_meter",
    "power_meter",
    "heart_rate",
    "temperature",
    "battery",
    "heartbeat",
    "steps",
    "checkin",
    "visit",
    "away",
];

/// The `village-outage` rule groups a village's unreachable homes from this many on
/// (the spec's "at least 5 households"); power cuts are placed in villages this big.
pub const VILLAGE_OUTAGE_MIN_HOUSEHOLDS: usize = 5;

/// Room names used by motion events and devices.
pub const ROOMS: [&str; 4] = ["bedroom", "bathroom", "kitchen", "living_room"];

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    pub seed: u64,
    /// At least one town is created when there are villages.
    pub towns: usize,
    /// At least one village is created when there are households.
    pub villages: usize,
    pub households: usize,
    /// Start of the run. Should be a local midnight (UTC+08:00); if not, days still run
    /// midnight to midnight and events before `start` are left out.
    pub start: Millis,
    pub days: u32,
    /// Heartbeat interval of every device (the contract says 5; 60 keeps a month of a
    /// 200-household district at about 3 million events).
    pub heartbeat_minutes: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            towns: 8,
            villages: 111,
            households: 200,
            // 2026-11-02 00:00 +08:00, a Monday.
            start: 1_793_548_800_000,
            days: 30,
            heartbeat_minutes: 60,
        }
    }
}

impl SimConfig {
    /// End of the run (exclusive): `start + days`.
    pub fn end(&self) -> Millis {
        self.start + i64::from(self.days) * DAY_MS
    }

    /// The heartbeat interval in milliseconds (at least one minute).
    pub fn heartbeat_ms(&self) -> Millis {
        i64::from(self.heartbeat_minutes.max(1)) * MINUTE_MS
    }

    /// The grouping hold written into `rules.toml` for `home-unreachable` and
    /// `village-outage` (and the latter's window), in minutes: 1.2 heartbeats. A home's
    /// devices are declared offline one by one over about one heartbeat interval (their
    /// heartbeats are spread over the hour and jittered up to 10 %), so the hold must
    /// outlast that spread for the group to form.
    pub fn grouping_hold_minutes(&self) -> u32 {
        let hb = self.heartbeat_minutes.max(1);
        hb + hb.div_ceil(5)
    }

    /// [`SimConfig::grouping_hold_minutes`] in milliseconds.
    pub fn grouping_hold_ms(&self) -> Millis {
        i64::from(self.grouping_hold_minutes()) * MINUTE_MS
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Town {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Village {
    pub id: String,
    pub town_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Elder {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// `<household>-<kind>[-n]`, e.g. `h-0001-pir-2`, `h-0001-water-meter`.
    pub id: String,
    /// One of [`DEVICE_KINDS`].
    pub kind: &'static str,
    /// One of [`ROOMS`] for devices fixed in a room.
    pub room: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Household {
    pub id: String,
    pub village_id: String,
    pub address: String,
    pub elder: Elder,
    pub devices: Vec<Device>,
    /// The daily "I'm OK" check-in is enabled here (`rules.toml` has an `[[override]]`
    /// enabling `daily-checkin`); the elder presses `checkin` every morning before 09:00.
    pub checkin: bool,
    /// The water meter reports `interval_m3` (volume since its previous report) instead
    /// of the cumulative `total_m3`.
    pub interval_water: bool,
    /// The power meter, if any, reports `interval_kwh` instead of `total_kwh`.
    pub interval_power: bool,
    /// The NFC tag the carer shows the door reader (`visit` events).
    pub carer_tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct District {
    pub towns: Vec<Town>,
    pub villages: Vec<Village>,
    pub households: Vec<Household>,
}

impl District {
    /// The district alone (no days, no incidents): for the benchmark's fleets.
    pub fn build(config: &SimConfig) -> District {
        district::build(config)
    }

    /// The CSV files `hub admin import --dir` reads.
    pub fn write_csv(&self, dir: &Path) -> io::Result<()> {
        export::write_csv(self, dir)
    }
}

impl District {
    pub fn household(&self, id: &str) -> Option<&Household> {
        self.households.iter().find(|h| h.id == id)
    }
}

/// One device event: the contract's `kind` and kind-specific fields (no envelope).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimEvent {
    pub at: Millis,
    pub device: String,
    /// One of [`EVENT_KINDS`].
    pub kind: &'static str,
    /// Kind fields only, e.g. `{"occupancy":true,"room":"kitchen"}`; `{}` for none.
    pub fields: Value,
}

impl SimEvent {
    /// The full v1 payload: envelope (`v`, `event_id`, `ts` = `at` in local time) plus
    /// fields.
    pub fn to_payload(&self, event_id: &str) -> Value {
        let mut obj = Map::new();
        obj.insert("v".into(), json!(1));
        obj.insert("event_id".into(), json!(event_id));
        obj.insert("ts".into(), json!(rfc3339(self.at)));
        obj.insert("kind".into(), json!(self.kind));
        if let Value::Object(fields) = &self.fields {
            obj.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Value::Object(obj)
    }
}

/// What happened. Serialized in snake_case (`fall_with_pendant`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Fall detected, SOS pressed seconds later; a carer arrives 30–90 min later.
    FallWithPendant,
    /// Daytime fall, no button: no sign of life for 6 h until a visitor comes.
    FallNoButton,
    /// Goes to bed and does not get up; found at noon the next day.
    CollapseInBed,
    Smoke,
    Gas,
    WaterLeak,
    /// ~6 L/min for 8 h (`water-high-use` after ~2.8 h).
    TapLeftRunning,
    /// 2–4 days at the family's without telling the hub.
    AwayNotSet,
    /// The same, but the elder presses "leaving home" (`away`, with the planned hours)
    /// on the pendant when leaving and "back home" on return.
    AwaySet,
    /// One device's battery runs down (20 → 10 → 5 %) and it goes silent.
    BatteryDies,
    /// The home's gateway is down: every home device silent for 4–5 h (long enough,
    /// at the simulated heartbeat, for the home to be declared unreachable).
    HomeOffline,
    /// Every home of one village silent for ~6 h (one incident per household).
    VillagePowerCut,
    /// Out of bed at night (23:00–04:00), falls in the bathroom, no button; found in the
    /// morning by a visitor.
    NightFall,
    /// A check-in household's elder forgets the morning check-in (presses it late).
    MissedCheckin,
    /// The carer visits only twice in one calendar week (Mon–Sun).
    FewVisits,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 15] = [
        IncidentKind::FallWithPendant,
        IncidentKind::FallNoButton,
        IncidentKind::CollapseInBed,
        IncidentKind::Smoke,
        IncidentKind::Gas,
        IncidentKind::WaterLeak,
        IncidentKind::TapLeftRunning,
        IncidentKind::AwayNotSet,
        IncidentKind::AwaySet,
        IncidentKind::BatteryDies,
        IncidentKind::HomeOffline,
        IncidentKind::VillagePowerCut,
        IncidentKind::NightFall,
        IncidentKind::MissedCheckin,
        IncidentKind::FewVisits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::FallWithPendant => "fall_with_pendant",
            IncidentKind::FallNoButton => "fall_no_button",
            IncidentKind::CollapseInBed => "collapse_in_bed",
            IncidentKind::Smoke => "smoke",
            IncidentKind::Gas => "gas",
            IncidentKind::WaterLeak => "water_leak",
            IncidentKind::TapLeftRunning => "tap_left_running",
            IncidentKind::AwayNotSet => "away_not_set",
            IncidentKind::AwaySet => "away_set",
            IncidentKind::BatteryDies => "battery_dies",
            IncidentKind::HomeOffline => "home_offline",
            IncidentKind::VillagePowerCut => "village_power_cut",
            IncidentKind::NightFall => "night_fall",
            IncidentKind::MissedCheckin => "missed_checkin",
            IncidentKind::FewVisits => "few_visits",
        }
    }
}

/// An alarm the hub should (or may) raise for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    /// Rule id, as in `default.toml` (`sos`, `fall`, `no-activity-daytime`,
    /// `home-unreachable`, `village-outage`, ...).
    pub rule_id: String,
    /// The device the alarm is about, for per-device rules and instant alarms.
    pub device: Option<String>,
    /// For grouped alarms (`village-outage`): the village the alarm is about. Such an
    /// alarm has no household (`household_id: null`); it matches by village instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub village: Option<String>,
    /// `true`: the alarm should be raised (a detection). `false`: an acceptable, known
    /// consequence (a false alarm the evaluation should count as expected).
    pub must: bool,
    /// Deadline after the incident's `start` by which the alarm appears.
    pub within_ms: Millis,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `i-0001`, ... in order of `start`.
    pub id: String,
    pub kind: IncidentKind,
    pub household: String,
    pub start: Millis,
    pub end: Millis,
    pub expected: Vec<Expectation>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub config: SimConfig,
    pub district: District,
    /// Sorted by `at` (stable).
    pub events: Vec<SimEvent>,
    /// Sorted by `start`.
    pub incidents: Vec<Incident>,
}

/// Generate the scenario for `config`. Deterministic: the same config gives the same
/// scenario, byte for byte.
///
/// Each household's devices, routine and device readings come from streams keyed by the
/// seed and the household's index (and the day), so adding households does not change
/// the others' routines. The incident plan is drawn for the district as a whole, so it
/// does change with the number of households or days.
pub fn generate(config: &SimConfig) -> Scenario {
    let district = district::build(config);
    let plan = plan::plan(config, &district);
    let mut events = Vec::new();
    let mut incidents = Vec::new();
    for (index, (household, planned)) in district.households.iter().zip(&plan).enumerate() {
        let out = home::simulate(config, index, household, planned);
        events.extend(out.events);
        incidents.extend(out.incidents);
    }
    events.sort_by_key(|e| e.at);
    incidents.sort_by(|a, b| (a.start, &a.household, a.kind).cmp(&(b.start, &b.household, b.kind)));
    for (n, incident) in incidents.iter_mut().enumerate() {
        incident.id = format!("i-{:04}", n + 1);
    }
    Scenario {
        config: config.clone(),
        district,
        events,
        incidents,
    }
}

impl Scenario {
    /// Write `towns.csv`, `villages.csv`, `households.csv`, `elders.csv` and
    /// `devices.csv` (with headers, in the columns the hub's importer reads) into `dir`,
    /// creating it if needed.
    pub fn write_csv(&self, dir: &Path) -> io::Result<()> {
        export::write_csv(&self.district, dir)
    }

    /// `{"config": {...}, "incidents": [...]}`, incidents as serialized by serde.
    pub fn incidents_json(&self) -> Value {
        json!({
            "config": serde_json::to_value(&self.config).unwrap_or_default(),
            "incidents": serde_json::to_value(&self.incidents).unwrap_or_default(),
        })
    }

    /// The events with `from <= at < to` (binary search).
    pub fn events_in(&self, from: Millis, to: Millis) -> &[SimEvent] {
        let a = self.events.partition_point(|e| e.at < from);
        let b = self.events.partition_point(|e| e.at < to).max(a);
        &self.events[a..b]
    }

    /// Incidents of one household.
    pub fn incidents_of<'a>(&'a self, household: &'a str) -> impl Iterator<Item = &'a Incident> {
        self.incidents
            .iter()
            .filter(move |i| i.household == household)
    }

    /// Every household's events, in time order, by household id.
    pub fn events_by_household(&self) -> BTreeMap<&str, Vec<&SimEvent>> {
        let owner: HashMap<&str, &str> = self
            .district
            .households
            .iter()
            .flat_map(|h| h.devices.iter().map(|d| (d.id.as_str(), h.id.as_str())))
            .collect();
        let mut out: BTreeMap<&str, Vec<&SimEvent>> = self
            .district
            .households
            .iter()
            .map(|h| (h.id.as_str(), Vec::new()))
            .collect();
        for e in &self.events {
            if let Some(list) = owner.get(e.device.as_str()).and_then(|h| out.get_mut(h)) {
                list.push(e);
            }
        }
        out
    }

    /// Alarms the reference model of the rules ([`truth`]) predicts that no incident's
    /// expectations explain (nor away mode suppresses), by household. A correct scenario
    /// has none: a normal day raises nothing.
    pub fn unexplained_reference_raises(&self) -> Vec<(String, truth::Raise)> {
        let by_household = self.events_by_household();
        let mut out = Vec::new();
        for h in &self.district.households {
            let events = by_household.get(h.id.as_str()).cloned().unwrap_or_default();
            let observed = truth::observe(events);
            for raise in truth::raises(&observed, &self.config, h.checkin) {
                let explained = self.incidents_of(&h.id).any(|i| {
                    i.expected.iter().any(|e| {
                        e.rule_id == raise.rule
                            && e.village.is_none()
                            && i.start <= raise.at
                            && raise.at <= i.start + e.within_ms
                    }) || (i.kind == IncidentKind::AwaySet
                        && truth::ABSENCE_RULES.contains(&raise.rule)
                        && home::covers(i.kind, i.start, i.end, raise.rule, raise.at))
                });
                if !explained {
                    out.push((h.id.clone(), raise));
                }
            }
        }
        out
    }
}
