//! The engine: observations, commands and time in, edge-triggered decisions out.
//!
//! Every household is a small state machine with timers. The engine keeps an
//! index of each household's earliest timer and always fires the globally
//! earliest one first, so decisions come out in time order across households
//! (which matters for grouping: whether a village outage opened before a
//! home's own "unreachable" alarm fell due decides whether that alarm is
//! folded into it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rules::{
    ActivityClass, AreaOutage, ContinuousFlow, DailyDeadline, DeviceOffline, Inactivity,
    LowBattery, Meter, NightBedExit, Rule, RuleKind, RuleSet, Threshold, UtilityHigh, UtilityLow,
    VisitTarget,
};
use crate::timefmt::{duration, local_time, number};
use crate::usage::Usage;
use crate::window::{self, DAY_MS, MINUTE_MS};
use crate::{Action, Decision, Millis, Observation, Signal};

/// Minimum rise of a water meter total between two readings that counts as use (m³, = 0.5 l).
const WATER_USE_M3: f64 = 0.0005;
/// Minimum rise of an energy meter total between two readings that counts as use (kWh).
const ENERGY_USE_KWH: f64 = 0.01;
/// Power draw above this is an appliance in use, not standby (W).
const STANDBY_W: f64 = 30.0;
/// Tolerance for float subtraction of meter totals (1.0005 - 1.0 < 0.0005 in f64).
const METER_EPSILON: f64 = 1e-9;
/// A carer visit with no check-out is considered over after this long.
pub const MAX_VISIT_MS: i64 = 4 * 60 * MINUTE_MS;
/// How long the "leaving home" button sets away mode for when it does not say.
pub const DEFAULT_AWAY_MS: i64 = 72 * 60 * MINUTE_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Meter history kept at most this long, whatever the rules say (bounds memory,
/// with the cap of 16,384 readings per meter in `usage.rs`).
const MAX_USAGE_HISTORY_MS: i64 = 8 * DAY_MS;

/// Why a household is not watched for absence: set by staff or family (or the
/// "leaving home" button) with an expiry time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeKind {
    /// Away from home (e.g. at the family's).
    Away,
    /// In hospital.
    Hospital,
    /// On holiday.
    Holiday,
}

impl ModeKind {
    /// `"away"`, `"hospital"` or `"holiday"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModeKind::Away => "away",
            ModeKind::Hospital => "hospital",
            ModeKind::Holiday => "holiday",
        }
    }

    /// Parses `away`, `hospital` or `holiday`.
    pub fn parse(s: &str) -> Option<ModeKind> {
        match s {
            "away" => Some(ModeKind::Away),
            "hospital" => Some(ModeKind::Hospital),
            "holiday" => Some(ModeKind::Holiday),
            _ => None,
        }
    }
}

/// An away / hospital / holiday mode in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mode {
    pub kind: ModeKind,
    pub since: Millis,
    /// The mode ends by itself at this instant.
    pub until: Millis,
}

/// Everything the engine remembers between calls: per household the last
/// sign of life per activity class, open conditions, mode, visit, meter
/// history, reachability, and per device its last-seen time, Last Will hint,
/// meter baselines and threshold timers; per village an open outage; plus the
/// high-water mark of `now`.
///
/// Serialize it (e.g. with `serde_json`) to survive restarts; it round-trips
/// exactly, and [`Engine::with_state`] continues where the engine stopped.
/// States saved by older versions load (missing fields take defaults).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Latest `now` seen (`now` never goes backwards for the engine).
    #[serde(default)]
    clock: Option<Millis>,
    #[serde(default)]
    households: BTreeMap<String, HouseholdState>,
    /// Villages with an open grouped outage incident -> when it opened.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    areas: BTreeMap<String, Millis>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct HouseholdState {
    /// When the household became known: the "last activity" before any activity.
    since: Millis,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    last_activity: BTreeMap<ActivityClass, Millis>,
    /// Household-wide timer rules currently raised (inactivity, night exit,
    /// daily deadline, utility, home unreachable, away expired, visit target).
    #[serde(
        default,
        alias = "inactivity_open",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    open: BTreeSet<String>,
    /// Instant on/off rules currently raised -> devices reporting `true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    instant_active: BTreeMap<String, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    devices: BTreeMap<String, DeviceState>,
    /// The village the household belongs to, for grouped outages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<Mode>,
    /// When the last mode ended (any way), to excuse that week's visit target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode_ended: Option<Millis>,
    /// A mode expired at this instant and no sign of life has been seen since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    return_watch: Option<Millis>,
    /// A carer visit in progress: when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    visit: Option<Millis>,
    /// Start times of recent carer visits (the last week or so).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    visits: Vec<Millis>,
    /// The last week boundary (local Monday 00:00) the visit target was judged at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    week_judged: Option<Millis>,
    /// When the latest suspension of absence rules ended (mode, visit, home
    /// unreachable): silence is counted from here, not from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resumed: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unreachable: Option<Unreachable>,
    /// When the home was last reachable again: held device-offline alarms of
    /// devices still silent restart their hold from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reachable_since: Option<Millis>,
    /// Out of bed inside a night window at this instant, and not back yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    night_exit: Option<Millis>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    utility: BTreeMap<Meter, UtilityState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Unreachable {
    /// When enough devices were offline for the home to count as unreachable.
    since: Millis,
    /// The home-unreachable alarm was raised (not held, not folded into a village outage).
    announced: bool,
    /// The alarm's hold runs from here (moved when a village outage closes).
    hold_from: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct UtilityState {
    /// First reading: low-use rules judge only once a whole window is covered.
    first_at: Millis,
    /// Latest reading.
    last_at: Millis,
    /// The device that sent the latest reading (its being offline suspends low-use rules).
    device: String,
    /// Use per reading, oldest first, kept as long as the longest window of
    /// the meter's rules needs it, with running totals: the use in a window
    /// and when it falls to a limit are a binary search, not a rescan, and at
    /// most 16,384 readings are kept (issue 14; see [`Usage`]). The rescan
    /// cost O(n²) per message from the home: 1,000 readings in 0.4 s from one
    /// meter held up SOS acknowledgements in other homes for 3.3-5.2 s. With
    /// the shipped rules (`cargo bench -p alert-rules`, 10,000 readings from
    /// one meter) each of the last 1,000 readings took 124 ms, 470 times the
    /// first 1,000 (21 readings/s); now 1.6 µs, flat (640,000 readings/s,
    /// still 1.6 µs at 100,000). Saved as the same `[[time, amount], ...]`
    /// list as before.
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    usage: Usage,
    /// continuous_flow rule id -> start of the current run of flowing readings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    flow_since: BTreeMap<String, Millis>,
}

/// A device's health as the engine sees it (see [`EngineState::device_health`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceHealth {
    pub device: String,
    /// When a message (other than `Offline`) was last heard, or the watch baseline.
    pub last_seen: Millis,
    /// Offline since then; `None`: online.
    pub offline_since: Option<Millis>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct DeviceState {
    last_seen: Millis,
    /// Time of an `Offline` signal with nothing heard since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offline_hint: Option<Millis>,
    /// device_offline rules that consider this device offline.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    offline_open: BTreeSet<String>,
    /// When the device was first considered offline (nothing heard since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offline_at: Option<Millis>,
    /// device_offline rules whose alarm was actually raised (not held back,
    /// not folded into "home unreachable").
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    announced: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    water_m3: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    energy_kwh: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    thresholds: BTreeMap<String, ThresholdState>,
    /// low_battery rules currently raised for this device.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    battery_open: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ThresholdState {
    /// Start of the current uninterrupted out-of-range stretch (not raised yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beyond_since: Option<Millis>,
    /// Readings in a row beyond the limit (not raised yet).
    #[serde(default)]
    beyond_count: u32,
    /// When the count reached the rule's `consecutive` (not raised yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count_reached: Option<Millis>,
    /// Start of the current back-in-range stretch (raised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_range_since: Option<Millis>,
    #[serde(default)]
    raised: bool,
    /// Latest finite reading and its time.
    last_value: f64,
    last_at: Millis,
}

impl EngineState {
    /// The state as compact JSON (what `serde_json::to_string` gives).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Reads a state written by [`EngineState::to_json`] (or any `serde_json`
    /// serialization of it).
    pub fn from_json(json: &str) -> Result<EngineState, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The latest `now` the engine was given, if any.
    pub fn clock(&self) -> Option<Millis> {
        self.clock
    }

    /// Whether the engine knows the household (watched or heard from).
    pub fn knows_household(&self, household: &str) -> bool {
        self.households.contains_key(household)
    }

    /// Ids of the households the engine knows, sorted.
    pub fn household_ids(&self) -> Vec<&str> {
        self.households.keys().map(String::as_str).collect()
    }

    /// Every condition the engine considers raised, as sorted
    /// `(household, condition_key)` pairs — what the store's open alarms
    /// should be for timer/flag rules (instant event rules such as SOS are
    /// never "open" in the engine; held or folded device alarms are not
    /// raised). Village outages are in [`EngineState::open_outages`].
    pub fn open_conditions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (h, hs) in &self.households {
            for id in hs.open.iter().chain(hs.instant_active.keys()) {
                out.push((h.clone(), id.clone()));
            }
            for (d, ds) in &hs.devices {
                let keys = ds.announced.iter().chain(ds.battery_open.iter()).chain(
                    ds.thresholds
                        .iter()
                        .filter(|(_, s)| s.raised)
                        .map(|(id, _)| id),
                );
                for id in keys {
                    out.push((h.clone(), format!("{id}:{d}")));
                }
            }
        }
        out.sort();
        out
    }

    /// Villages with an open grouped outage incident, and when it opened.
    pub fn open_outages(&self) -> Vec<(String, Millis)> {
        self.areas.iter().map(|(a, t)| (a.clone(), *t)).collect()
    }

    /// Latest sign of life (any activity class) in the household, if any.
    pub fn last_activity(&self, household: &str) -> Option<Millis> {
        self.households
            .get(household)
            .and_then(|hs| hs.last_activity.values().max().copied())
    }

    /// When a message (other than `Offline`) was last heard from the device,
    /// or its watch baseline.
    pub fn last_seen(&self, household: &str, device: &str) -> Option<Millis> {
        self.households
            .get(household)
            .and_then(|hs| hs.devices.get(device))
            .map(|d| d.last_seen)
    }

    /// The devices the engine watches in the household, by id: when each was last
    /// heard, and since when it counts as offline (its Last Will arrived, or a
    /// `device_offline` rule's silence limit passed, with nothing heard since).
    pub fn device_health(&self, household: &str) -> Vec<DeviceHealth> {
        self.households
            .get(household)
            .map(|hs| {
                hs.devices
                    .iter()
                    .map(|(id, d)| DeviceHealth {
                        device: id.clone(),
                        last_seen: d.last_seen,
                        offline_since: match (d.offline_hint, d.offline_at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The away / hospital / holiday mode in force for the household, if any.
    pub fn mode(&self, household: &str) -> Option<&Mode> {
        self.households
            .get(household)
            .and_then(|hs| hs.mode.as_ref())
    }

    /// When the carer visit in progress started, if one is.
    pub fn visit_since(&self, household: &str) -> Option<Millis> {
        self.households.get(household).and_then(|hs| hs.visit)
    }

    /// Since when the household counts as unreachable (enough of its devices
    /// offline), if it does.
    pub fn unreachable_since(&self, household: &str) -> Option<Millis> {
        self.households
            .get(household)
            .and_then(|hs| hs.unreachable.as_ref().map(|u| u.since))
    }
}

fn last_for(
    base: Millis,
    last_activity: &BTreeMap<ActivityClass, Millis>,
    classes: &[ActivityClass],
) -> Millis {
    classes
        .iter()
        .filter_map(|c| last_activity.get(c))
        .fold(base, |acc, t| acc.max(*t))
}

impl HouseholdState {
    fn new(since: Millis) -> HouseholdState {
        HouseholdState {
            since,
            ..HouseholdState::default()
        }
    }

    /// Absence rules are not judged while a mode is in force, a carer is
    /// visiting, or the home cannot be heard.
    fn absence_suspended(&self) -> bool {
        self.mode.is_some() || self.visit.is_some() || self.unreachable.is_some()
    }

    /// Silence is counted from here at the earliest.
    fn baseline(&self) -> Millis {
        self.resumed.map_or(self.since, |r| r.max(self.since))
    }

    fn last_for(&self, classes: &[ActivityClass]) -> Millis {
        last_for(self.baseline(), &self.last_activity, classes)
    }

    /// The daily checks' baseline: when watching began, the last mode ended, or the
    /// home was heard again. Not the end of a visit: a carer leaving at 07:30 says
    /// nothing about a 09:00 check-in (a visit *covering* the deadline holds it back).
    fn daily_baseline(&self) -> Millis {
        [self.mode_ended, self.reachable_since]
            .into_iter()
            .flatten()
            .fold(self.since, Millis::max)
    }

    fn resume(&mut self, t: Millis) {
        self.resumed = Some(self.resumed.map_or(t, |r| r.max(t)));
    }

    fn offline_count(&self) -> usize {
        self.devices
            .values()
            .filter(|d| !d.offline_open.is_empty())
            .count()
    }
}

impl DeviceState {
    fn new(since: Millis) -> DeviceState {
        DeviceState {
            last_seen: since,
            ..DeviceState::default()
        }
    }

    fn offline_due(&self, r: &DeviceOffline) -> Millis {
        let silent = self.last_seen.saturating_add(r.silence_ms);
        match self.offline_hint {
            Some(hint) => silent.min(hint.saturating_add(r.grace_ms)),
            None => silent,
        }
    }
}

impl ThresholdState {
    /// The time at which the running timer (raise or clear) expires.
    fn pending(&self, th: &Threshold) -> Option<Millis> {
        if self.raised {
            self.in_range_since.map(|t| t.saturating_add(th.clear_ms))
        } else if self.beyond_count >= th.consecutive {
            let reached = self.count_reached.unwrap_or(Millis::MIN);
            self.beyond_since
                .map(|t| t.saturating_add(th.for_ms).max(reached))
        } else {
            None
        }
    }

    /// Fire the running timer if it expired by `t`.
    fn advance(&mut self, th: &Threshold, t: Millis) -> Option<(Action, Millis)> {
        let due = self.pending(th)?;
        if due > t {
            return None;
        }
        let action = if self.raised {
            Action::Clear
        } else {
            Action::Raise
        };
        self.raised = !self.raised;
        self.beyond_since = None;
        self.beyond_count = 0;
        self.count_reached = None;
        self.in_range_since = None;
        Some((action, due))
    }

    /// Take a finite reading `v` at `t`.
    fn observe(&mut self, th: &Threshold, v: f64, t: Millis) -> Option<(Action, Millis)> {
        let t = t.max(self.last_at);
        self.last_at = t;
        self.last_value = v;
        if self.raised {
            if th.back_in_range(v) {
                self.in_range_since.get_or_insert(t);
            } else {
                self.in_range_since = None;
            }
        } else if th.beyond(v) {
            self.beyond_since.get_or_insert(t);
            self.beyond_count = self.beyond_count.saturating_add(1);
            if self.beyond_count == th.consecutive {
                self.count_reached = Some(t);
            }
        } else {
            self.beyond_since = None;
            self.beyond_count = 0;
            self.count_reached = None;
        }
        self.advance(th, t)
    }
}

/// A meter reading as the rules see it.
struct Reading {
    meter: Meter,
    /// Use since the device's previous reading, when known (not for the first
    /// reading of a counter, nor after a counter reset).
    used: Option<f64>,
}

/// Rises of a cumulative meter: the use since the previous reading. Any
/// finite reading becomes the new baseline (so a decrease — a counter reset —
/// is not use). Non-finite readings are ignored (`None`).
fn meter_step(baseline: &mut Option<f64>, total: f64) -> Option<Option<f64>> {
    if !total.is_finite() {
        return None;
    }
    let used = baseline.and_then(|prev| {
        let d = total - prev;
        (d >= -METER_EPSILON).then_some(d.max(0.0))
    });
    *baseline = Some(total);
    Some(used)
}

fn interval(v: f64) -> Option<Option<f64>> {
    (v.is_finite() && v >= 0.0).then_some(Some(v))
}

/// The activity classes an observation counts as, and its meter reading
/// (updating meter baselines when there is a device).
fn activity_of(
    signal: &Signal,
    ds: Option<&mut DeviceState>,
) -> (Vec<ActivityClass>, Option<Reading>) {
    let mut classes = Vec::new();
    let mut reading = None;
    let drawing = |w: &Option<f64>| w.is_some_and(|w| w.is_finite() && w > STANDBY_W);
    match signal {
        Signal::Motion { occupancy: true } => classes.push(ActivityClass::Motion),
        Signal::Door { .. } => classes.push(ActivityClass::Door),
        Signal::Bed { .. } => classes.push(ActivityClass::Bed),
        Signal::Sos | Signal::Away { .. } => classes.push(ActivityClass::Button),
        Signal::CheckIn => classes.push(ActivityClass::Checkin),
        Signal::Visit { .. } => classes.push(ActivityClass::Visit),
        Signal::Steps { count } if count.is_finite() && *count > 0.0 => {
            classes.push(ActivityClass::Steps)
        }
        Signal::WaterMeter { total_m3 } => {
            if let Some(ds) = ds {
                if let Some(used) = meter_step(&mut ds.water_m3, *total_m3) {
                    reading = Some(Reading {
                        meter: Meter::Water,
                        used,
                    });
                }
            }
        }
        Signal::WaterVolume { m3 } => {
            if let Some(used) = interval(*m3) {
                reading = Some(Reading {
                    meter: Meter::Water,
                    used,
                });
            }
        }
        Signal::PowerMeter { total_kwh, power_w } => {
            if let Some(ds) = ds {
                if let Some(used) = meter_step(&mut ds.energy_kwh, *total_kwh) {
                    reading = Some(Reading {
                        meter: Meter::Power,
                        used,
                    });
                }
            }
            if drawing(power_w) {
                classes.push(ActivityClass::PowerUse);
            }
        }
        Signal::EnergyVolume { kwh, power_w } => {
            if let Some(used) = interval(*kwh) {
                reading = Some(Reading {
                    meter: Meter::Power,
                    used,
                });
            }
            if drawing(power_w) {
                classes.push(ActivityClass::PowerUse);
            }
        }
        _ => {}
    }
    if let Some(r) = &reading {
        let (class, step) = match r.meter {
            Meter::Water => (ActivityClass::WaterUse, WATER_USE_M3),
            Meter::Power => (ActivityClass::PowerUse, ENERGY_USE_KWH),
        };
        if r.used.is_some_and(|u| u >= step - METER_EPSILON) && !classes.contains(&class) {
            classes.push(class);
        }
    }
    (classes, reading)
}

/// What an instant signal means when on / off, for decision details.
fn phrases(signal: &str) -> (&'static str, &'static str) {
    match signal {
        "sos" => ("SOS button pressed", ""),
        "fall" => ("fall detected", ""),
        "smoke" => ("smoke detected", "no smoke"),
        "gas" => ("gas detected", "no gas"),
        "water_leak" => ("water leak detected", "no water leak"),
        "motion" => ("motion detected", "no motion"),
        "door" => ("door open", "door closed"),
        "bed" => ("bed occupied", "bed empty"),
        "checkin" => ("daily check-in pressed", ""),
        "visit" => ("carer visit", ""),
        "heartbeat" => ("heartbeat received", ""),
        "online" => ("device online", ""),
        "offline" => ("device offline (last will)", ""),
        _ => ("signal reported", "signal back to normal"),
    }
}

fn class_list(classes: &[ActivityClass]) -> String {
    classes
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn amount(v: f64, meter: Meter) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{} {}", if r == 0.0 { 0.0 } else { r }, meter.unit())
}

fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Builds decisions for one household.
struct Ctx<'a> {
    household: &'a str,
    offset_minutes: i32,
    /// The household's village has an open outage incident.
    area_open: bool,
    /// Hold of home-unreachable alarms (0 without an area rule or village).
    area_hold_ms: i64,
}

impl Ctx<'_> {
    fn offset_ms(&self) -> i64 {
        i64::from(self.offset_minutes) * MINUTE_MS
    }

    fn local(&self, at: Millis) -> String {
        local_time(at, self.offset_minutes)
    }

    fn decision(
        &self,
        rule: &Rule,
        action: Action,
        device: Option<&str>,
        per_device: bool,
        at: Millis,
        detail: String,
    ) -> Decision {
        let condition_key = match (per_device, device) {
            (true, Some(d)) => format!("{}:{d}", rule.id),
            _ => rule.id.clone(),
        };
        Decision {
            action,
            household: Some(self.household.to_string()),
            village: None,
            device: device.map(str::to_string),
            rule_id: rule.id.clone(),
            condition_key,
            severity: rule.severity,
            title: rule.title.clone(),
            detail,
            at,
            max_level: rule.max_level,
        }
    }

    fn household_decision(
        &self,
        rule: &Rule,
        action: Action,
        at: Millis,
        detail: String,
    ) -> Decision {
        self.decision(rule, action, None, false, at, detail)
    }

    fn inactivity_raise(
        &self,
        rule: &Rule,
        ia: &Inactivity,
        hs: &HouseholdState,
        last: Millis,
        at: Millis,
    ) -> Decision {
        let any = ia.classes.iter().any(|c| hs.last_activity.contains_key(c));
        let from = if any {
            format!("since {}", self.local(last))
        } else {
            format!("since monitoring began at {}", self.local(last))
        };
        let counted = match &ia.window {
            Some(w) => format!(
                "{} of silence counted within {} local time",
                duration(ia.silence_ms),
                w.label()
            ),
            None => format!("silent for {}", duration(ia.silence_ms)),
        };
        let detail = format!(
            "no activity ({}) {from}; {counted}",
            class_list(&ia.classes)
        );
        self.household_decision(rule, Action::Raise, at, detail)
    }

    fn threshold_decision(
        &self,
        rule: &Rule,
        th: &Threshold,
        device: &str,
        st: &ThresholdState,
        action: Action,
        at: Millis,
    ) -> Decision {
        let label = th.signal.label();
        let value = format!("{}{}", number(st.last_value), th.signal.unit());
        let detail = match action {
            Action::Raise => {
                let held = if th.for_ms > 0 {
                    format!(" for {}", duration(th.for_ms))
                } else {
                    String::new()
                };
                let times = if th.consecutive > 1 {
                    format!(", {} readings in a row", th.consecutive)
                } else {
                    String::new()
                };
                format!(
                    "{label} {value} {}{held}{times} (device {device})",
                    th.describe_limit(st.last_value)
                )
            }
            Action::Clear => {
                let margin = if th.margin > 0.0 {
                    format!(" by at least {}{}", number(th.margin), th.signal.unit())
                } else {
                    String::new()
                };
                let held = if th.clear_ms > 0 {
                    format!(" for {}", duration(th.clear_ms))
                } else {
                    String::new()
                };
                format!("{label} back to {value}, within limits{margin}{held} (device {device})")
            }
        };
        self.decision(rule, action, Some(device), true, at, detail)
    }

    fn offline_raise(
        &self,
        rule: &Rule,
        r: &DeviceOffline,
        device: &str,
        ds: &DeviceState,
        at: Millis,
    ) -> Decision {
        let by_silence = ds.last_seen.saturating_add(r.silence_ms);
        let detail = match ds.offline_hint {
            Some(hint) if hint.saturating_add(r.grace_ms) < by_silence => format!(
                "device {device} dropped off (last will at {}) and was not heard from for {}",
                self.local(hint),
                duration(r.grace_ms)
            ),
            _ => format!(
                "no message from device {device} since {} ({} missed heartbeats of {})",
                self.local(ds.last_seen),
                r.missed,
                duration(r.heartbeat_ms)
            ),
        };
        self.decision(rule, Action::Raise, Some(device), true, at, detail)
    }
}

/// One timer of one household, found by [`next_timer`] and fired by [`fire`].
enum Timer<'r> {
    ModeEnd,
    VisitEnd,
    Offline(&'r Rule, String),
    Announce(&'r Rule, &'r DeviceOffline, String),
    HomeAnnounce(&'r Rule),
    Threshold(&'r Rule, &'r Threshold, String),
    Inactivity(&'r Rule, &'r Inactivity),
    NightExit(&'r Rule, &'r NightBedExit),
    Daily(&'r Rule, &'r DailyDeadline),
    UtilityLow(&'r Rule, &'r UtilityLow),
    UtilityHighClear(&'r Rule, &'r UtilityHigh),
    AwayExpired(&'r Rule),
    WeekEnd(&'r Rule, &'r VisitTarget),
}

/// When the daily check of `dd` next falls due, given the latest counted activity `last`.
fn daily_due(dd: &DailyDeadline, offset_ms: i64, last: Millis) -> Millis {
    let midnight = window::local_midnight(offset_ms, last);
    let from = i64::from(dd.from_min) * MINUTE_MS;
    let day = if last < midnight.saturating_add(from) {
        midnight
    } else {
        midnight.saturating_add(DAY_MS)
    };
    day.saturating_add(i64::from(dd.by_min) * MINUTE_MS)
}

/// The next visit-target week boundary to judge.
fn week_due(hs: &HouseholdState, offset_ms: i64) -> Millis {
    match hs.week_judged {
        Some(b) => b.saturating_add(WEEK_MS),
        // The first whole week the household was watched for.
        None => window::next_monday(offset_ms, hs.since).saturating_add(WEEK_MS),
    }
}

/// Hold of device-offline alarms for the household: 0 without a home rule, or when
/// the home has too few devices ever to count as unreachable.
fn device_hold(rules: &RuleSet, household: &str, hs: &HouseholdState) -> i64 {
    match rules.home_rule(household) {
        Some((_, h)) if hs.devices.len() >= h.min_devices as usize => h.hold_ms,
        _ => 0,
    }
}

/// The household's earliest timer, ties broken by the order below (state
/// transitions first, so rules see the state as of their due time).
fn next_timer<'r>(
    rules: &'r RuleSet,
    ctx: &Ctx<'_>,
    hs: &HouseholdState,
) -> Option<(Millis, Timer<'r>)> {
    let mut best: Option<(Millis, Timer<'r>)> = None;
    let mut consider = |d: Millis, t: Timer<'r>| {
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, t));
        }
    };
    if let Some(m) = &hs.mode {
        consider(m.until, Timer::ModeEnd);
    }
    if let Some(v) = hs.visit {
        consider(v.saturating_add(MAX_VISIT_MS), Timer::VisitEnd);
    }
    let off = ctx.offset_ms();
    let suspended = hs.absence_suspended();
    let hold = device_hold(rules, ctx.household, hs);
    for rule in rules.rules_for(ctx.household) {
        let open = hs.open.contains(&rule.id);
        if suspended && rule.kind.is_absence() {
            continue;
        }
        match &rule.kind {
            RuleKind::DeviceOffline(r) => {
                for (d, ds) in &hs.devices {
                    if !ds.offline_open.contains(&rule.id) {
                        consider(ds.offline_due(r), Timer::Offline(rule, d.clone()));
                    } else if !ds.announced.contains(&rule.id) && hs.unreachable.is_none() {
                        let from = ds
                            .offline_at
                            .unwrap_or(ds.last_seen)
                            .max(hs.reachable_since.unwrap_or(Millis::MIN));
                        consider(
                            from.saturating_add(hold),
                            Timer::Announce(rule, r, d.clone()),
                        );
                    }
                }
            }
            RuleKind::HomeUnreachable(_) => {
                if let Some(u) = &hs.unreachable {
                    if !u.announced && !ctx.area_open {
                        consider(
                            u.hold_from.saturating_add(ctx.area_hold_ms),
                            Timer::HomeAnnounce(rule),
                        );
                    }
                }
            }
            RuleKind::Threshold(th) => {
                for (d, ds) in &hs.devices {
                    if let Some(due) = ds.thresholds.get(&rule.id).and_then(|s| s.pending(th)) {
                        consider(due, Timer::Threshold(rule, th, d.clone()));
                    }
                }
            }
            RuleKind::Inactivity(ia) if !open => {
                let last = hs.last_for(&ia.classes);
                let due = window::deadline(ia.window.as_ref(), off, last, ia.silence_ms);
                consider(due, Timer::Inactivity(rule, ia));
            }
            RuleKind::NightBedExit(nb) if !open => {
                if let Some(exit) = hs.night_exit {
                    let last = hs.last_for(&nb.classes).max(exit);
                    let due = last.saturating_add(nb.quiet_ms);
                    if due < nb.window.next_end(off, exit) {
                        consider(due, Timer::NightExit(rule, nb));
                    }
                }
            }
            RuleKind::DailyDeadline(dd) if !open => {
                let last = last_for(hs.daily_baseline(), &hs.last_activity, &dd.classes);
                let mut due = daily_due(dd, off, last);
                // A deadline that passed while the check was held back (a carer in the
                // home) is skipped, not fired late.
                if let Some(r) = hs.resumed.filter(|r| *r >= due) {
                    due = due.saturating_add(
                        (r.saturating_sub(due) / DAY_MS + 1).saturating_mul(DAY_MS),
                    );
                }
                consider(due, Timer::Daily(rule, dd));
            }
            RuleKind::UtilityLow(ul) if !open => {
                if let Some(u) = hs.utility.get(&ul.meter) {
                    let meter_offline = hs
                        .devices
                        .get(&u.device)
                        .is_some_and(|d| !d.offline_open.is_empty());
                    if !meter_offline {
                        let start = u.first_at.max(hs.baseline()).saturating_add(ul.window_ms);
                        consider(
                            u.usage.falls_to(ul.below, true, ul.window_ms, start),
                            Timer::UtilityLow(rule, ul),
                        );
                    }
                }
            }
            RuleKind::UtilityHigh(uh) if open => {
                if let Some(u) = hs.utility.get(&uh.meter) {
                    let due = u
                        .usage
                        .falls_to(uh.clear_below, false, uh.window_ms, u.last_at);
                    consider(due, Timer::UtilityHighClear(rule, uh));
                }
            }
            RuleKind::AwayExpired(ae) if !open && !suspended => {
                if let Some(w) = hs.return_watch {
                    consider(w.saturating_add(ae.grace_ms), Timer::AwayExpired(rule));
                }
            }
            RuleKind::VisitTarget(vt) => {
                // At the end of time (saturated arithmetic) there is no next week.
                let due = week_due(hs, off);
                if due < Millis::MAX {
                    consider(due, Timer::WeekEnd(rule, vt));
                }
            }
            _ => {}
        }
    }
    best
}

/// What a fired timer changed beyond the household itself.
#[derive(Default)]
struct Effects {
    /// The household's reachability changed at this instant.
    reachability: Option<Millis>,
}

/// Whether the household should count as unreachable now.
fn should_be_unreachable(rules: &RuleSet, household: &str, hs: &HouseholdState) -> bool {
    let Some((_, h)) = rules.home_rule(household) else {
        return false;
    };
    let offline = hs.offline_count();
    let total = hs.devices.len();
    offline >= h.min_devices as usize && offline as f64 >= h.min_share * total as f64
}

/// Re-judge reachability at `t`; announce the transition. Returns whether it changed.
fn update_reachability(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    t: Millis,
    out: &mut Vec<Decision>,
) -> bool {
    let should = should_be_unreachable(rules, ctx.household, hs);
    match (hs.unreachable.clone(), should) {
        (None, true) => {
            hs.unreachable = Some(Unreachable {
                since: t,
                announced: false,
                hold_from: t,
            });
            // Device alarms already raised are now explained by the home being dark.
            for rule in rules.rules_for(ctx.household) {
                if !matches!(rule.kind, RuleKind::DeviceOffline(_)) {
                    continue;
                }
                for (d, ds) in hs.devices.iter_mut() {
                    if ds.announced.remove(&rule.id) {
                        let detail = format!(
                            "device {d} is still silent; folded into one \"home unreachable\" condition for the household"
                        );
                        out.push(ctx.decision(rule, Action::Clear, Some(d), true, t, detail));
                    }
                }
            }
            true
        }
        (Some(u), false) => {
            if u.announced {
                if let Some((rule, _)) = rules.home_rule(ctx.household) {
                    let detail = format!(
                        "home reachable again: {} of {} devices offline (was unreachable since {})",
                        hs.offline_count(),
                        hs.devices.len(),
                        ctx.local(u.since)
                    );
                    out.push(ctx.household_decision(rule, Action::Clear, t, detail));
                }
            }
            hs.open
                .retain(|id| rules.rule_kind(id) != Some("home_unreachable"));
            hs.unreachable = None;
            hs.reachable_since = Some(t);
            hs.resume(t);
            true
        }
        _ => false,
    }
}

/// Fire one timer of the household at its due time `t`; `upto` is how far
/// time is being advanced (at least `t`).
fn fire(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    timer: Timer<'_>,
    t: Millis,
    upto: Millis,
    out: &mut Vec<Decision>,
) -> Effects {
    let mut fx = Effects::default();
    let off = ctx.offset_ms();
    match timer {
        Timer::ModeEnd => {
            hs.mode = None;
            hs.mode_ended = Some(t);
            hs.return_watch = Some(t);
            hs.resume(t);
        }
        Timer::VisitEnd => {
            hs.visit = None;
            hs.resume(t);
        }
        Timer::Offline(rule, device) => {
            if let Some(ds) = hs.devices.get_mut(&device) {
                ds.offline_open.insert(rule.id.clone());
                ds.offline_at.get_or_insert(t);
            }
            if update_reachability(rules, ctx, hs, t, out) {
                fx.reachability = Some(t);
            }
        }
        Timer::Announce(rule, r, device) => {
            if let Some(ds) = hs.devices.get_mut(&device) {
                ds.announced.insert(rule.id.clone());
                out.push(ctx.offline_raise(rule, r, &device, ds, t));
            }
        }
        Timer::HomeAnnounce(rule) => {
            if let Some(u) = hs.unreachable.as_mut() {
                u.announced = true;
                let since = u.since;
                hs.open.insert(rule.id.clone());
                let silent: Vec<&str> = hs
                    .devices
                    .iter()
                    .filter(|(_, d)| !d.offline_open.is_empty())
                    .map(|(id, _)| id.as_str())
                    .collect();
                let detail = format!(
                    "{} of {} devices offline since {} ({}); the home's own alarms are suspended until it is heard again",
                    silent.len(),
                    hs.devices.len(),
                    ctx.local(since),
                    silent.join(", ")
                );
                out.push(ctx.household_decision(rule, Action::Raise, t, detail));
            }
        }
        Timer::Threshold(rule, th, device) => {
            if let Some(st) = hs
                .devices
                .get_mut(&device)
                .and_then(|ds| ds.thresholds.get_mut(&rule.id))
            {
                if let Some((action, at)) = st.advance(th, t) {
                    out.push(ctx.threshold_decision(rule, th, &device, st, action, at));
                }
            }
        }
        Timer::Inactivity(rule, ia) => {
            let last = hs.last_for(&ia.classes);
            out.push(ctx.inactivity_raise(rule, ia, hs, last, t));
            hs.open.insert(rule.id.clone());
        }
        Timer::NightExit(rule, nb) => {
            let exit = hs.night_exit.unwrap_or(t);
            let detail = format!(
                "out of bed at {} during the night ({} local) and no sign of life ({}) for {}",
                ctx.local(exit),
                nb.window.label(),
                class_list(&nb.classes),
                duration(nb.quiet_ms)
            );
            out.push(ctx.household_decision(rule, Action::Raise, t, detail));
            hs.open.insert(rule.id.clone());
        }
        Timer::Daily(rule, dd) => {
            let day = ctx.local(window::local_midnight(off, t.saturating_sub(1)));
            let date = day.split(' ').next().unwrap_or_default().to_string();
            let detail = format!(
                "no {} between {} and {} on {date}",
                if dd.classes == [ActivityClass::Checkin] {
                    "daily check-in".to_string()
                } else {
                    format!("sign of life ({})", class_list(&dd.classes))
                },
                hhmm(dd.from_min),
                hhmm(dd.by_min),
            );
            out.push(ctx.household_decision(rule, Action::Raise, t, detail));
            hs.open.insert(rule.id.clone());
        }
        Timer::UtilityLow(rule, ul) => {
            let (used, device) = hs.utility.get(&ul.meter).map_or((0.0, String::new()), |u| {
                (u.usage.used_within(t, ul.window_ms), u.device.clone())
            });
            let detail = format!(
                "{} use {} in the last {}, below {} (meter {device})",
                ul.meter.label(),
                amount(used, ul.meter),
                duration(ul.window_ms),
                amount(ul.below, ul.meter),
            );
            out.push(ctx.household_decision(rule, Action::Raise, t, detail));
            hs.open.insert(rule.id.clone());
        }
        Timer::UtilityHighClear(rule, uh) => {
            let used = hs
                .utility
                .get(&uh.meter)
                .map_or(0.0, |u| u.usage.used_within(t, uh.window_ms));
            let detail = format!(
                "{} use back to {} in the last {} (at most {})",
                uh.meter.label(),
                amount(used, uh.meter),
                duration(uh.window_ms),
                amount(uh.clear_below, uh.meter),
            );
            out.push(ctx.household_decision(rule, Action::Clear, t, detail));
            hs.open.remove(&rule.id);
        }
        Timer::AwayExpired(rule) => {
            let ended = hs.return_watch.unwrap_or(t);
            let detail = format!(
                "away mode ended at {} and there has been no sign of life since; please check the elder is back safely",
                ctx.local(ended)
            );
            out.push(ctx.household_decision(rule, Action::Raise, t, detail));
            hs.open.insert(rule.id.clone());
        }
        Timer::WeekEnd(rule, vt) => {
            // After a long pause (hub down, or a clock jump) judge only the
            // latest whole week: nothing at all was heard in the ones between.
            let behind = upto.saturating_sub(t) / WEEK_MS;
            let t = t.saturating_add(behind.saturating_mul(WEEK_MS));
            let start = t.saturating_sub(WEEK_MS);
            hs.week_judged = Some(t);
            hs.visits.retain(|v| *v >= start);
            let count = hs.visits.iter().filter(|v| **v < t).count();
            let excused = hs.mode.is_some() || hs.mode_ended.is_some_and(|e| e > start);
            let open = hs.open.contains(&rule.id);
            let week = ctx.local(start);
            let week = week.split(' ').next().unwrap_or_default();
            // Every week below target is reported (into the open alarm, if staff have
            // not resolved the last one): it is a weekly duty, not a state.
            if count < vt.per_week as usize && !excused {
                let detail = format!(
                    "{count} carer visit(s) in the week starting {week}; the target is at least {} a week",
                    vt.per_week
                );
                out.push(ctx.household_decision(rule, Action::Raise, t, detail));
                hs.open.insert(rule.id.clone());
            } else if count >= vt.per_week as usize && open {
                let detail =
                    format!("{count} carer visits in the week starting {week}; target met");
                out.push(ctx.household_decision(rule, Action::Clear, t, detail));
                hs.open.remove(&rule.id);
            }
        }
    }
    fx
}

/// Begin a mode at `t`: absence alarms that are open are explained and cleared.
fn start_mode(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    kind: ModeKind,
    until: Millis,
    t: Millis,
    out: &mut Vec<Decision>,
) {
    if until <= t {
        stop_mode(hs, t);
        return;
    }
    hs.mode = Some(Mode {
        kind,
        since: t,
        until,
    });
    hs.return_watch = None;
    hs.night_exit = None;
    for rule in rules.rules_for(ctx.household) {
        let absence = rule.kind.is_absence() || matches!(rule.kind, RuleKind::AwayExpired(_));
        if absence && hs.open.remove(&rule.id) {
            let detail = format!(
                "{} mode set until {}; absence alarms suspended",
                kind.as_str(),
                ctx.local(until)
            );
            out.push(ctx.household_decision(rule, Action::Clear, t, detail));
        }
    }
}

/// End the mode (if any) at `t` on purpose: nobody needs to check on the return.
fn stop_mode(hs: &mut HouseholdState, t: Millis) {
    if hs.mode.take().is_some() {
        hs.mode_ended = Some(t);
        hs.resume(t);
    }
    hs.return_watch = None;
}

/// Apply one signal at (clamped) time `t`; `device` is `None` for commands
/// from people (a visit checked in on the board). Returns whether the
/// household's reachability changed.
fn apply(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    device: Option<&str>,
    signal: &Signal,
    t: Millis,
    out: &mut Vec<Decision>,
) -> bool {
    let mut reach_changed = false;
    let off = ctx.offset_ms();

    // Device health: anything but a Last Will is a sign the device is alive. A Last
    // Will of a device the engine does not watch (never heard, or forgotten because it
    // was revoked) is ignored: it is only a hint about a known device.
    if *signal == Signal::Offline && device.is_some_and(|d| !hs.devices.contains_key(d)) {
        return false;
    }
    if let Some(device) = device {
        let ds = hs
            .devices
            .entry(device.to_string())
            .or_insert_with(|| DeviceState::new(t));
        if *signal == Signal::Offline {
            if ds.offline_hint.is_none() {
                ds.offline_hint = Some(t);
            }
        } else {
            let before = ds.last_seen;
            ds.last_seen = ds.last_seen.max(t);
            ds.offline_hint = None;
            if !ds.offline_open.is_empty() {
                ds.offline_open.clear();
                ds.offline_at = None;
                for rule in rules.rules_for(ctx.household) {
                    if matches!(rule.kind, RuleKind::DeviceOffline(_))
                        && ds.announced.remove(&rule.id)
                    {
                        let detail = format!(
                            "device {device} heard from again ({}); previous message at {}",
                            signal.name(),
                            ctx.local(before)
                        );
                        out.push(ctx.decision(rule, Action::Clear, Some(device), true, t, detail));
                    }
                }
                ds.announced.clear();
                reach_changed = update_reachability(rules, ctx, hs, t, out);
            }
        }
    }

    // Signs of life and meter readings.
    let ds = device.and_then(|d| hs.devices.get_mut(d));
    let (classes, reading) = activity_of(signal, ds);
    if !classes.is_empty() {
        for rule in rules.rules_for(ctx.household) {
            if !hs.open.contains(&rule.id) {
                continue;
            }
            let from = device.map_or_else(|| "a carer".to_string(), |d| format!("device {d}"));
            let detail = match &rule.kind {
                RuleKind::Inactivity(ia) if ia.classes.iter().any(|c| classes.contains(c)) => {
                    let last = hs.last_for(&ia.classes);
                    format!(
                        "activity ({}) from {from} after {} without activity",
                        class_list(&classes),
                        duration(t.saturating_sub(last))
                    )
                }
                RuleKind::NightBedExit(nb) if nb.classes.iter().any(|c| classes.contains(c)) => {
                    format!("sign of life ({}) from {from}", class_list(&classes))
                }
                RuleKind::DailyDeadline(dd) if dd.classes.iter().any(|c| classes.contains(c)) => {
                    format!("{} from {from}", class_list(&classes))
                }
                RuleKind::AwayExpired(_) => {
                    format!(
                        "sign of life ({}) from {from}: back home",
                        class_list(&classes)
                    )
                }
                _ => continue,
            };
            if matches!(rule.kind, RuleKind::NightBedExit(_)) {
                hs.night_exit = None;
            }
            hs.open.remove(&rule.id);
            out.push(ctx.household_decision(rule, Action::Clear, t, detail));
        }
        hs.return_watch = None;
        for c in &classes {
            let e = hs.last_activity.entry(*c).or_insert(t);
            *e = (*e).max(t);
        }
    }

    // Night: out of bed arms the night watch; back in bed ends it.
    if let Signal::Bed { occupied } = *signal {
        for rule in rules.rules_for(ctx.household) {
            let RuleKind::NightBedExit(nb) = &rule.kind else {
                continue;
            };
            if occupied {
                if hs.open.remove(&rule.id) {
                    out.push(ctx.household_decision(
                        rule,
                        Action::Clear,
                        t,
                        "back in bed".to_string(),
                    ));
                }
                hs.night_exit = None;
            } else if nb.window.contains(off, t) && !hs.open.contains(&rule.id) {
                hs.night_exit = Some(t);
            }
        }
    }

    if let Some(r) = reading {
        apply_reading(rules, ctx, hs, device.unwrap_or_default(), &r, t, out);
    }

    match signal {
        Signal::Visit { start: true, .. } => {
            if hs.visit.is_none() {
                hs.visits
                    .retain(|v| *v >= t.saturating_sub(WEEK_MS + DAY_MS));
                hs.visits.push(t);
            }
            hs.visit = Some(t);
        }
        Signal::Visit { start: false, .. } if hs.visit.take().is_some() => hs.resume(t),
        Signal::Away { away: true, hours } => {
            let ms = hours
                .filter(|h| h.is_finite() && *h > 0.0)
                .map_or(DEFAULT_AWAY_MS, |h| {
                    (h.min(24.0 * 366.0) * 3_600_000.0) as i64
                });
            start_mode(rules, ctx, hs, ModeKind::Away, t.saturating_add(ms), t, out);
        }
        Signal::Away { away: false, .. } => stop_mode(hs, t),
        _ => {}
    }

    for rule in rules.rules_for(ctx.household) {
        match &rule.kind {
            RuleKind::Instant { signal: s, flag } if *s == signal.name() => {
                let (on, off) = phrases(signal.name());
                let who = device
                    .map_or_else(|| "entered by staff".to_string(), |d| format!("device {d}"));
                if !*flag {
                    let detail = format!("{on} ({who})");
                    out.push(ctx.decision(rule, Action::Raise, device, false, t, detail));
                    continue;
                }
                let Some(device) = device else { continue };
                match signal.flag() {
                    Some(true) => {
                        hs.instant_active
                            .entry(rule.id.clone())
                            .or_default()
                            .insert(device.to_string());
                        let detail = format!("{on} ({who})");
                        out.push(ctx.decision(rule, Action::Raise, Some(device), false, t, detail));
                    }
                    Some(false) => {
                        let now_empty = match hs.instant_active.get_mut(&rule.id) {
                            Some(devices) => devices.remove(device) && devices.is_empty(),
                            None => false,
                        };
                        if now_empty {
                            hs.instant_active.remove(&rule.id);
                            let detail = format!(
                                "{off} ({who}); no device in the household still reports {on}"
                            );
                            out.push(ctx.decision(
                                rule,
                                Action::Clear,
                                Some(device),
                                false,
                                t,
                                detail,
                            ));
                        }
                    }
                    None => {}
                }
            }
            RuleKind::Threshold(th) => {
                let (Some(v), Some(device)) = (th.signal.value_in(signal), device) else {
                    continue;
                };
                if !v.is_finite() {
                    continue;
                }
                let Some(ds) = hs.devices.get_mut(device) else {
                    continue;
                };
                let st = ds
                    .thresholds
                    .entry(rule.id.clone())
                    .or_insert_with(|| ThresholdState {
                        last_value: v,
                        last_at: t,
                        ..ThresholdState::default()
                    });
                if let Some((action, at)) = st.observe(th, v, t) {
                    out.push(ctx.threshold_decision(rule, th, device, st, action, at));
                }
            }
            RuleKind::LowBattery(LowBattery { below, clear_above }) => {
                let (Signal::Battery { percent }, Some(device)) = (signal, device) else {
                    continue;
                };
                let percent = *percent;
                if !percent.is_finite() {
                    continue;
                }
                let Some(ds) = hs.devices.get_mut(device) else {
                    continue;
                };
                let open = ds.battery_open.contains(&rule.id);
                if !open && percent < *below {
                    ds.battery_open.insert(rule.id.clone());
                    let detail = format!(
                        "battery at {}%, below {}% (device {device})",
                        number(percent),
                        number(*below)
                    );
                    out.push(ctx.decision(rule, Action::Raise, Some(device), true, t, detail));
                } else if open && percent > *clear_above {
                    ds.battery_open.remove(&rule.id);
                    let detail = format!(
                        "battery at {}%, above {}% (device {device})",
                        number(percent),
                        number(*clear_above)
                    );
                    out.push(ctx.decision(rule, Action::Clear, Some(device), true, t, detail));
                }
            }
            _ => {}
        }
    }
    reach_changed
}

/// A meter reading: record the use, then judge the utility rules that react to readings.
fn apply_reading(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    device: &str,
    r: &Reading,
    t: Millis,
    out: &mut Vec<Decision>,
) {
    let keep = rules
        .rules_for(ctx.household)
        .filter_map(|rule| match &rule.kind {
            RuleKind::UtilityLow(u) if u.meter == r.meter => Some(u.window_ms),
            RuleKind::UtilityHigh(u) if u.meter == r.meter => Some(u.window_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .min(MAX_USAGE_HISTORY_MS);
    let u = hs.utility.entry(r.meter).or_insert_with(|| UtilityState {
        first_at: t,
        last_at: t,
        device: device.to_string(),
        ..UtilityState::default()
    });
    let previous = u.last_at;
    u.usage.record(t, r.used, keep);
    u.last_at = u.last_at.max(t);
    u.device = device.to_string();

    for rule in rules.rules_for(ctx.household) {
        let open = hs.open.contains(&rule.id);
        let Some(u) = hs.utility.get_mut(&r.meter) else {
            return;
        };
        match &rule.kind {
            RuleKind::UtilityLow(ul) if ul.meter == r.meter && open => {
                let used = u.usage.used_within(t, ul.window_ms);
                if used >= ul.below {
                    let detail = format!(
                        "{} use {} in the last {} (meter {device})",
                        ul.meter.label(),
                        amount(used, ul.meter),
                        duration(ul.window_ms)
                    );
                    hs.open.remove(&rule.id);
                    out.push(ctx.household_decision(rule, Action::Clear, t, detail));
                }
            }
            RuleKind::UtilityHigh(uh) if uh.meter == r.meter && !open => {
                let used = u.usage.used_within(t, uh.window_ms);
                if used > uh.above {
                    let detail = format!(
                        "{} use {} within {}, above {} (meter {device}): a tap left running or a burst pipe?",
                        uh.meter.label(),
                        amount(used, uh.meter),
                        duration(uh.window_ms),
                        amount(uh.above, uh.meter),
                    );
                    hs.open.insert(rule.id.clone());
                    out.push(ctx.household_decision(rule, Action::Raise, t, detail));
                }
            }
            RuleKind::ContinuousFlow(cf) if cf.meter == r.meter => {
                continuous_flow(
                    ctx,
                    rule,
                    cf,
                    u,
                    &mut hs.open,
                    r.used,
                    previous,
                    t,
                    device,
                    out,
                );
            }
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn continuous_flow(
    ctx: &Ctx<'_>,
    rule: &Rule,
    cf: &ContinuousFlow,
    u: &mut UtilityState,
    open: &mut BTreeSet<String>,
    used: Option<f64>,
    previous: Millis,
    t: Millis,
    device: &str,
    out: &mut Vec<Decision>,
) {
    let gap = t.saturating_sub(previous);
    let flowing = match used {
        Some(v) if gap > 0 => {
            v > 0.0 && v >= cf.min_per_hour * gap as f64 / 3_600_000.0 - METER_EPSILON
        }
        _ => false,
    };
    if !flowing {
        u.flow_since.remove(&rule.id);
        if open.remove(&rule.id) {
            let detail = format!(
                "no {} flowing between the last two readings (meter {device})",
                cf.meter.label()
            );
            out.push(ctx.household_decision(rule, Action::Clear, t, detail));
        }
        return;
    }
    // A reading after a long gap says nothing about what happened in between.
    let since = if gap > cf.max_gap_ms {
        *u.flow_since
            .entry(rule.id.clone())
            .and_modify(|s| *s = t)
            .or_insert(t)
    } else {
        *u.flow_since.entry(rule.id.clone()).or_insert(previous)
    };
    if !open.contains(&rule.id) && t.saturating_sub(since) >= cf.for_ms {
        let detail = format!(
            "{} flowing in every reading since {} ({} of use in a row; meter {device}): a leak or a tap left open?",
            cf.meter.label(),
            ctx.local(since),
            duration(t.saturating_sub(since))
        );
        open.insert(rule.id.clone());
        out.push(ctx.household_decision(rule, Action::Raise, t, detail));
    }
}

/// The rule engine. See the crate docs for the semantics.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: RuleSet,
    state: EngineState,
    /// Each household's earliest timer, and the same ordered by time, so that
    /// [`Engine::next_deadline`] is O(log n): the hub asks after every message,
    /// and a full scan over every household and device capped a 20,000-device
    /// district at under a thousand messages a second. It also lets `tick`
    /// fire timers in global time order.
    deadlines: BTreeSet<(Millis, String)>,
    deadline_of: BTreeMap<String, Millis>,
    /// Village -> its households (derived from the state).
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Engine {
    /// A fresh engine with no memory.
    pub fn new(rules: RuleSet) -> Engine {
        Engine::with_state(rules, EngineState::default())
    }

    /// An engine continuing from a saved state (e.g. after a restart).
    pub fn with_state(rules: RuleSet, state: EngineState) -> Engine {
        let mut e = Engine {
            rules,
            state,
            deadlines: BTreeSet::new(),
            deadline_of: BTreeMap::new(),
            members: BTreeMap::new(),
        };
        for hs in e.state.households.values_mut() {
            for ds in hs.devices.values_mut() {
                // State saved before alarms could be held: offline meant raised.
                if !ds.offline_open.is_empty() && ds.offline_at.is_none() {
                    ds.offline_at = Some(ds.last_seen);
                    ds.announced = ds.offline_open.clone();
                }
            }
        }
        for (h, hs) in &e.state.households {
            if let Some(a) = &hs.area {
                e.members.entry(a.clone()).or_default().insert(h.clone());
            }
        }
        e.refresh_all();
        e
    }

    fn ctx<'a>(
        rules: &RuleSet,
        areas: &BTreeMap<String, Millis>,
        household: &'a str,
        hs: &HouseholdState,
    ) -> Ctx<'a> {
        let area_rule = rules.area_rule();
        Ctx {
            household,
            offset_minutes: rules.utc_offset_minutes(),
            area_open: hs.area.as_ref().is_some_and(|a| areas.contains_key(a)),
            area_hold_ms: match (&hs.area, area_rule) {
                (Some(_), Some((_, a))) => a.hold_ms,
                _ => 0,
            },
        }
    }

    fn household_deadline(&self, household: &str) -> Option<Millis> {
        let hs = self.state.households.get(household)?;
        let ctx = Engine::ctx(&self.rules, &self.state.areas, household, hs);
        next_timer(&self.rules, &ctx, hs).map(|(d, _)| d)
    }

    /// Recompute one household's entry in the deadline index.
    fn refresh(&mut self, household: &str) {
        let due = self.household_deadline(household);
        if let Some(old) = self.deadline_of.remove(household) {
            self.deadlines.remove(&(old, household.to_owned()));
        }
        if let Some(d) = due {
            self.deadline_of.insert(household.to_owned(), d);
            self.deadlines.insert((d, household.to_owned()));
        }
    }

    fn refresh_all(&mut self) {
        self.deadlines.clear();
        self.deadline_of.clear();
        let ids: Vec<String> = self.state.households.keys().cloned().collect();
        for h in ids {
            self.refresh(&h);
        }
    }

    fn refresh_area(&mut self, area: &str) {
        let members: Vec<String> = self
            .members
            .get(area)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        for h in members {
            self.refresh(&h);
        }
    }

    /// Everything the engine remembers; persist it to survive restarts.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// Consumes the engine, returning its state.
    pub fn into_state(self) -> EngineState {
        self.state
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Swaps in new rules (e.g. after a supervisor edited the file), keeping
    /// all state. Conditions of removed or disabled rules get no Clear. Homes
    /// are judged reachable or not again under the new rules at the engine's
    /// clock; the decisions that follows from that are returned.
    pub fn set_rules(&mut self, rules: RuleSet) -> Vec<Decision> {
        self.rules = rules;
        self.refresh_all();
        let ids: Vec<String> = self.state.households.keys().cloned().collect();
        let mut out = Vec::new();
        for h in ids {
            out.extend(self.recheck(&h));
        }
        out
    }

    /// Re-judge a household's reachability at the engine's clock (after its
    /// devices or the rules changed).
    fn recheck(&mut self, household: &str) -> Vec<Decision> {
        let t = self.state.clock.unwrap_or(Millis::MIN);
        self.with_household(household, t, |rules, ctx, hs, out| {
            update_reachability(rules, ctx, hs, t, out)
        })
    }

    /// Start watching a household even before any event arrives; `since` is
    /// the baseline "last activity". No-op if already known.
    pub fn watch_household(&mut self, household: &str, since: Millis) {
        if !self.state.households.contains_key(household) {
            self.state
                .households
                .insert(household.to_string(), HouseholdState::new(since));
            self.refresh(household);
        }
    }

    /// Start watching a device for health rules (offline after missed
    /// heartbeats); `since` = baseline last-seen. No-op if already known.
    /// Also starts watching its household (with the same baseline) if that
    /// is not known yet.
    pub fn watch_device(&mut self, household: &str, device: &str, since: Millis) {
        self.watch_household(household, since);
        if let Some(hs) = self.state.households.get_mut(household) {
            hs.devices
                .entry(device.to_string())
                .or_insert_with(|| DeviceState::new(since));
        }
        self.refresh(household);
    }

    /// Stop watching a device (removed or revoked): it no longer counts
    /// towards "home unreachable" and its alarms get no Clear from the engine.
    /// Returns what follows for the home (e.g. reachable again).
    pub fn forget_device(&mut self, household: &str, device: &str) -> Vec<Decision> {
        match self.state.households.get_mut(household) {
            Some(hs) => {
                hs.devices.remove(device);
            }
            None => return Vec::new(),
        }
        self.recheck(household)
    }

    /// Tell the engine which village a household belongs to (for grouped
    /// outages). Call at start-up for every household; `None` removes it.
    pub fn set_area(&mut self, household: &str, village: Option<&str>) {
        let Some(hs) = self.state.households.get_mut(household) else {
            return;
        };
        let old = std::mem::replace(&mut hs.area, village.map(str::to_string));
        if let Some(o) = &old {
            if let Some(m) = self.members.get_mut(o) {
                m.remove(household);
            }
        }
        if let Some(v) = village {
            self.members
                .entry(v.to_string())
                .or_default()
                .insert(household.to_string());
        }
        self.refresh(household);
    }

    /// Call once when the hub starts again after being down (after
    /// [`Engine::with_state`]): nothing could be heard from any device while
    /// the hub (and its broker) was away, so every device's last-seen
    /// baseline moves up to `now` and pending Last Will hints are dropped.
    /// Without this, a hub outage longer than the offline timeout raises
    /// `device_offline` for every device at the first tick. Open conditions
    /// are kept; inactivity timers are untouched (the outage still counts as
    /// silence: better to ask than to miss).
    pub fn reset_device_baselines(&mut self, now: Millis) {
        for hs in self.state.households.values_mut() {
            for ds in hs.devices.values_mut() {
                ds.last_seen = ds.last_seen.max(now);
                ds.offline_hint = None;
            }
        }
        self.refresh_all();
    }

    fn advance_clock(&mut self, now: Millis) -> Millis {
        let clock = self.state.clock.map_or(now, |c| c.max(now));
        self.state.clock = Some(clock);
        clock
    }

    /// Fire every timer due by `t`, globally earliest first; none fires
    /// earlier than `floor` (a timer an observation at `floor` made due in
    /// the past fires at `floor`: decisions never precede their cause).
    fn run_timers(&mut self, t: Millis, floor: Millis, out: &mut Vec<Decision>) {
        // Every fired timer changes state so that it is not due again; the
        // bound only guards against a bug turning into a hang.
        let mut budget = 1_000_000usize;
        while let Some((due, h)) = self.deadlines.first().cloned() {
            if due > t || budget == 0 {
                break;
            }
            budget -= 1;
            self.fire_one(&h, t, floor, out);
        }
        debug_assert!(budget > 0, "timer loop did not converge");
    }

    /// Fire the household's earliest timer if it is due by `t`.
    fn fire_one(&mut self, household: &str, t: Millis, floor: Millis, out: &mut Vec<Decision>) {
        let rules = &self.rules;
        let Some(hs) = self.state.households.get_mut(household) else {
            self.refresh(household);
            return;
        };
        let ctx = Engine::ctx(rules, &self.state.areas, household, hs);
        let mut fx = Effects::default();
        if let Some((due, timer)) = next_timer(rules, &ctx, hs) {
            if due <= t {
                fx = fire(rules, &ctx, hs, timer, due.max(floor), t, out);
            }
        }
        let area = hs.area.clone();
        self.refresh(household);
        if let (Some(at), Some(area)) = (fx.reachability, area) {
            self.update_area(&area, at, out);
        }
    }

    /// Open or close the village's grouped outage after a household's
    /// reachability changed at `t`.
    fn update_area(&mut self, area: &str, t: Millis, out: &mut Vec<Decision>) {
        let Some((rule, ao)) = self.rules.area_rule() else {
            return;
        };
        let ao: AreaOutage = ao.clone();
        let rule: Rule = rule.clone();
        let members: Vec<String> = self
            .members
            .get(area)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        let offset = self.rules.utc_offset_minutes();
        let dark: Vec<(String, Millis)> = members
            .iter()
            .filter_map(|h| {
                let u = self.state.households.get(h)?.unreachable.as_ref()?;
                Some((h.clone(), u.since))
            })
            .collect();
        let open = self.state.areas.contains_key(area);
        let decision = |action, detail: String| Decision {
            action,
            household: None,
            village: Some(area.to_string()),
            device: None,
            rule_id: rule.id.clone(),
            condition_key: rule.id.clone(),
            severity: rule.severity,
            title: rule.title.clone(),
            detail,
            at: t,
            max_level: rule.max_level,
        };
        if !open {
            let recent: Vec<&(String, Millis)> = dark
                .iter()
                .filter(|(_, since)| *since >= t.saturating_sub(ao.within_ms))
                .collect();
            if recent.len() < ao.min_households as usize {
                return;
            }
            self.state.areas.insert(area.to_string(), t);
            let ids: Vec<&str> = recent.iter().map(|(h, _)| h.as_str()).collect();
            out.push(decision(
                Action::Raise,
                format!(
                    "{} households of village {area} became unreachable within {} ({}); a power or network outage? Their own alarms for it are grouped here",
                    recent.len(),
                    duration(ao.within_ms),
                    ids.join(", ")
                ),
            ));
            // Homes already announced one by one are now explained by the outage.
            for (h, _) in &dark {
                let Some(hs) = self.state.households.get_mut(h) else {
                    continue;
                };
                let Some(u) = hs.unreachable.as_mut() else {
                    continue;
                };
                if u.announced {
                    u.announced = false;
                    if let Some((home_rule, _)) = self.rules.home_rule(h) {
                        hs.open.remove(&home_rule.id);
                        let ctx = Ctx {
                            household: h,
                            offset_minutes: offset,
                            area_open: true,
                            area_hold_ms: 0,
                        };
                        out.push(ctx.household_decision(
                            home_rule,
                            Action::Clear,
                            t,
                            format!("folded into the outage of village {area}"),
                        ));
                    }
                }
            }
        } else if dark.len() < ao.min_households as usize {
            self.state.areas.remove(area);
            out.push(decision(
                Action::Clear,
                format!(
                    "village {area}: {} household(s) still unreachable; each is now watched on its own",
                    dark.len()
                ),
            ));
            for (h, _) in &dark {
                if let Some(u) = self
                    .state
                    .households
                    .get_mut(h)
                    .and_then(|hs| hs.unreachable.as_mut())
                {
                    u.hold_from = t;
                }
            }
        }
        self.refresh_area(area);
    }

    /// Run `f` on the household at `t` (creating it if new), after every
    /// timer due by `t`, then fire the zero-length timers it started.
    fn with_household<F>(&mut self, household: &str, t: Millis, f: F) -> Vec<Decision>
    where
        F: FnOnce(&RuleSet, &Ctx<'_>, &mut HouseholdState, &mut Vec<Decision>) -> bool,
    {
        let mut out = Vec::new();
        self.run_timers(t, Millis::MIN, &mut out);
        let hs = self
            .state
            .households
            .entry(household.to_string())
            .or_insert_with(|| HouseholdState::new(t));
        let ctx = Engine::ctx(&self.rules, &self.state.areas, household, hs);
        let changed = f(&self.rules, &ctx, hs, &mut out);
        let area = hs.area.clone();
        self.refresh(household);
        if let (true, Some(area)) = (changed, area) {
            self.update_area(&area, t, &mut out);
        }
        // zero-length timers (e.g. offline_grace_minutes = 0) fire right away
        self.run_timers(t, t, &mut out);
        out.sort_by_key(|d| d.at);
        out
    }

    /// Feed one observation. `now` is the current time; `obs.at` is clamped
    /// to it. Every timer that fell due before the observation (in any
    /// household) fires first. Returned decisions are sorted by `at`.
    pub fn observe(&mut self, obs: &Observation, now: Millis) -> Vec<Decision> {
        let clock = self.advance_clock(now);
        let t = obs.at.min(clock);
        self.with_household(&obs.household, t, |rules, ctx, hs, out| {
            apply(rules, ctx, hs, Some(&obs.device), &obs.signal, t, out)
        })
    }

    /// A carer's visit checked in (`start`) or out from the board or an app,
    /// not from a device: a sign of life, suspends absence rules while it
    /// lasts (at most 4 hours without a check-out) and counts towards the
    /// weekly visit target.
    pub fn visit(
        &mut self,
        household: &str,
        start: bool,
        carer: Option<&str>,
        now: Millis,
    ) -> Vec<Decision> {
        let t = self.advance_clock(now);
        let signal = Signal::Visit {
            start,
            carer: carer.map(str::to_string),
        };
        self.with_household(household, t, |rules, ctx, hs, out| {
            apply(rules, ctx, hs, None, &signal, t, out)
        })
    }

    /// Set an away / hospital / holiday mode until `until` (staff or
    /// family): absence rules are suspended and their open alarms cleared;
    /// SOS, fall, smoke, gas, leaks and thresholds are unaffected. When the
    /// mode expires the household is watched again, and an `away_expired`
    /// rule asks for a check if no sign of life follows. Replaces any mode in
    /// force; an `until` not after `now` ends the mode.
    pub fn set_mode(
        &mut self,
        household: &str,
        kind: ModeKind,
        until: Millis,
        now: Millis,
    ) -> Vec<Decision> {
        let t = self.advance_clock(now);
        self.with_household(household, t, |rules, ctx, hs, out| {
            start_mode(rules, ctx, hs, kind, until, t, out);
            false
        })
    }

    /// End the mode in force now (the elder is back, or staff cancel it).
    pub fn end_mode(&mut self, household: &str, now: Millis) -> Vec<Decision> {
        let t = self.advance_clock(now);
        self.with_household(household, t, |_, _, hs, _| {
            stop_mode(hs, t);
            false
        })
    }

    /// Fire every timer that expired by `now` (silence reached, threshold
    /// held long enough, device silent too long, ...), earliest first across
    /// all households. Idempotent; a `now` earlier than one seen before acts
    /// like that later time (so it yields nothing new). Returned decisions are
    /// sorted by `at`, which is when each condition became true.
    pub fn tick(&mut self, now: Millis) -> Vec<Decision> {
        let clock = self.advance_clock(now);
        let mut out = Vec::new();
        self.run_timers(clock, Millis::MIN, &mut out);
        out.sort_by_key(|d| d.at);
        out
    }

    /// Earliest time at which [`Engine::tick`] could produce a decision, or
    /// `None` if no timer is running. It may be at or before the current
    /// time, meaning a tick is due now. Observations can change it, so
    /// re-read it after each `observe`. (Some timers change state without a
    /// decision, e.g. a device held back before "home unreachable" is judged.)
    pub fn next_deadline(&self) -> Option<Millis> {
        let indexed = self.deadlines.first().map(|(d, _)| *d);
        debug_assert_eq!(
            indexed,
            self.state
                .households
                .keys()
                .filter_map(|h| self.household_deadline(h))
                .min(),
            "deadline index out of date"
        );
        indexed
    }
}
