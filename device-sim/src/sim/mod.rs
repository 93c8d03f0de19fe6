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
//! seed gives a byte-identical scenario): wake 06:00–08:00 (later at weekends), bed
//! sensor, night bathroom visits, three meals in the kitchen (motion, cooking on the
//! power meter, water use), living-room motion every 20–60 minutes while at home and
//! awake, daytime bathroom visits, naps, showers, outings of 1–3.5 hours (door open /
//! closed, no indoor signs of life meanwhile), visitors and a carer about three times a
//! week. Devices also report on their own: a `heartbeat` every
//! [`SimConfig::heartbeat_minutes`] (jittered: 0–10 % late), temperature hourly from the
//! living-room motion sensor, battery levels daily, cumulative water / power meter
//! readings every 30–60 minutes (the power meter also on every appliance switch), heart
//! rate from the wearable every 20–30 minutes.
//!
//! On a day without an incident the default rules raise nothing: the daytime silence
//! stays under 4 hours and water is used every day. (Device health assumes the
//! `device-offline` rule's `heartbeat_minutes` equals [`SimConfig::heartbeat_minutes`];
//! with the default file's 10 minutes every device would look offline.)
//!
//! Models worth knowing:
//! * The power meter is a kitchen smart plug (rice cooker, kettle, hob): its standby draw
//!   is 1.5–5 W, so only cooking counts as `power_use` activity.
//! * The wearable is a cellular watch: it keeps reporting while the elder is out or away
//!   and is not silenced by a home gateway outage or a power cut.
//! * "A device goes silent / comes back" is the absence of its events; after an outage
//!   each device sends a heartbeat within 90 s of coming back.
//!
//! # Incidents
//!
//! Incidents are planned per run (deterministic, spread over days and households, never
//! two in one household within a day of each other): see [`IncidentKind`]. Each lists
//! [`Expectation`]s: alarms that must be raised (`must = true`), and alarms that are
//! acceptable consequences such as the classic "elder away, no activity" false alarm
//! (`must = false`). Inactivity alarms that the generated events would raise during an
//! incident are always listed, so an evaluation can treat every other alarm as a false
//! alarm.

mod clock;
mod district;
mod export;
mod home;
mod plan;
mod rng;

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

/// Event kinds of device contract v1.
pub const EVENT_KINDS: [&str; 14] = [
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
];

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
    /// 200-household district under 3 million events).
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
    /// ~6 L/min for 8 h (no default rule detects it yet).
    TapLeftRunning,
    /// 2–4 days at the family's without telling the hub.
    AwayNotSet,
    /// The same with away mode set (away mode arrives with issue 4).
    AwaySet,
    /// One device's battery runs down (20 → 10 → 5 %) and it goes silent.
    BatteryDies,
    /// The home's gateway is down: every home device silent for 4 h.
    HomeOffline,
    /// Every home of one village silent for 3 h (one incident per household).
    VillagePowerCut,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 12] = [
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
        }
    }
}

/// An alarm the hub should (or may) raise for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    /// Rule id, as in `default.toml` (`sos`, `fall`, `no-activity-daytime`, ...), or a
    /// rule that does not exist yet (`tap-left-running`).
    pub rule_id: String,
    /// The device the alarm is about, for per-device rules and instant alarms.
    pub device: Option<String>,
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
}
