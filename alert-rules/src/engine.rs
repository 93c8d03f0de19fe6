//! The engine: observations and time in, edge-triggered decisions out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rules::{
    ActivityClass, DeviceOffline, Inactivity, LowBattery, Rule, RuleKind, RuleSet, Threshold,
};
use crate::timefmt::{duration, local_time, number};
use crate::window::{self, MINUTE_MS};
use crate::{Action, Decision, Millis, Observation, Signal};

/// Minimum rise of a water meter total between two readings that counts as use (m³, = 0.5 l).
const WATER_USE_M3: f64 = 0.0005;
/// Minimum rise of an energy meter total between two readings that counts as use (kWh).
const ENERGY_USE_KWH: f64 = 0.01;
/// Power draw above this is an appliance in use, not standby (W).
const STANDBY_W: f64 = 30.0;
/// Tolerance for float subtraction of meter totals (1.0005 - 1.0 < 0.0005 in f64).
const METER_EPSILON: f64 = 1e-9;

/// Everything the engine remembers between calls: per household the baseline
/// and last activity per class, open conditions, and per device its last-seen
/// time, Last Will hint, meter baselines and threshold timers; plus the
/// high-water mark of `now`.
///
/// Serialize it (e.g. with `serde_json`) to survive restarts; it round-trips
/// exactly, and [`Engine::with_state`] continues where the engine stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Latest `now` seen (`now` never goes backwards for the engine).
    #[serde(default)]
    clock: Option<Millis>,
    #[serde(default)]
    households: BTreeMap<String, HouseholdState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct HouseholdState {
    /// When the household became known: the "last activity" before any activity.
    since: Millis,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    last_activity: BTreeMap<ActivityClass, Millis>,
    /// Inactivity rules currently raised.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    inactivity_open: BTreeSet<String>,
    /// Instant on/off rules currently raised -> devices reporting `true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    instant_active: BTreeMap<String, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    devices: BTreeMap<String, DeviceState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct DeviceState {
    last_seen: Millis,
    /// Time of an `Offline` signal with nothing heard since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offline_hint: Option<Millis>,
    /// device_offline rules currently raised for this device.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    offline_open: BTreeSet<String>,
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

    /// Ids of the households the engine knows, sorted.
    pub fn household_ids(&self) -> Vec<&str> {
        self.households.keys().map(String::as_str).collect()
    }

    /// Every condition the engine considers raised, as sorted
    /// `(household, condition_key)` pairs — what the store's open alarms
    /// should be for timer/flag rules (instant event rules such as SOS are
    /// never "open" in the engine).
    pub fn open_conditions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (h, hs) in &self.households {
            for id in &hs.inactivity_open {
                out.push((h.clone(), id.clone()));
            }
            for id in hs.instant_active.keys() {
                out.push((h.clone(), id.clone()));
            }
            for (d, ds) in &hs.devices {
                let keys = ds.offline_open.iter().chain(ds.battery_open.iter()).chain(
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
}

fn last_for(
    since: Millis,
    last_activity: &BTreeMap<ActivityClass, Millis>,
    classes: &[ActivityClass],
) -> Millis {
    classes
        .iter()
        .filter_map(|c| last_activity.get(c))
        .fold(since, |acc, t| acc.max(*t))
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
        } else {
            self.beyond_since.map(|t| t.saturating_add(th.for_ms))
        }
    }

    /// Fire the running timer if it expired by `t`.
    fn advance(&mut self, th: &Threshold, t: Millis) -> Option<(Action, Millis)> {
        let due = self.pending(th)?;
        if due > t {
            return None;
        }
        if self.raised {
            self.raised = false;
            self.beyond_since = None;
            self.in_range_since = None;
            Some((Action::Clear, due))
        } else {
            self.raised = true;
            self.beyond_since = None;
            self.in_range_since = None;
            Some((Action::Raise, due))
        }
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
        } else {
            self.beyond_since = None;
        }
        self.advance(th, t)
    }
}

/// Rises of a cumulative meter: true when `total` is at least `step` above
/// the previous reading. Any finite reading becomes the new baseline (so a
/// decrease — a counter reset — is not use). Non-finite readings are ignored.
fn meter_rose(baseline: &mut Option<f64>, total: f64, step: f64) -> bool {
    if !total.is_finite() {
        return false;
    }
    let rose = baseline.is_some_and(|prev| total - prev >= step - METER_EPSILON);
    *baseline = Some(total);
    rose
}

/// The activity classes an observation counts as (updating meter baselines).
fn activity_of(signal: &Signal, ds: &mut DeviceState) -> Vec<ActivityClass> {
    match *signal {
        Signal::Motion { occupancy: true } => vec![ActivityClass::Motion],
        Signal::Door { .. } => vec![ActivityClass::Door],
        Signal::Bed { .. } => vec![ActivityClass::Bed],
        Signal::Sos => vec![ActivityClass::Button],
        Signal::WaterMeter { total_m3 } => {
            if meter_rose(&mut ds.water_m3, total_m3, WATER_USE_M3) {
                vec![ActivityClass::WaterUse]
            } else {
                Vec::new()
            }
        }
        Signal::PowerMeter { total_kwh, power_w } => {
            let rose = meter_rose(&mut ds.energy_kwh, total_kwh, ENERGY_USE_KWH);
            let drawing = power_w.is_some_and(|w| w.is_finite() && w > STANDBY_W);
            if rose || drawing {
                vec![ActivityClass::PowerUse]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
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

/// Builds decisions for one household.
struct Ctx<'a> {
    household: &'a str,
    offset_minutes: i32,
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
            household: self.household.to_string(),
            device: device.map(str::to_string),
            rule_id: rule.id.clone(),
            condition_key,
            severity: rule.severity,
            title: rule.title.clone(),
            detail,
            at,
        }
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
        self.decision(rule, Action::Raise, None, false, at, detail)
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
                format!(
                    "{label} {value} {}{held} (device {device})",
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

/// The rule engine. See the crate docs for the semantics.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: RuleSet,
    state: EngineState,
    /// Each household's earliest timer, and the same ordered by time, so that
    /// [`Engine::next_deadline`] is O(log n): the hub asks after every message,
    /// and a full scan over every household and device (the old way) capped a
    /// 20,000-device district at under a thousand messages a second.
    deadlines: BTreeSet<(Millis, String)>,
    deadline_of: BTreeMap<String, Millis>,
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
        };
        e.refresh_all();
        e
    }

    /// Recompute one household's entry in the deadline index.
    fn refresh(&mut self, household: &str) {
        let due = self
            .state
            .households
            .get(household)
            .and_then(|hs| household_deadline(&self.rules, household, hs));
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
        for (h, hs) in &self.state.households {
            if let Some(d) = household_deadline(&self.rules, h, hs) {
                self.deadline_of.insert(h.clone(), d);
                self.deadlines.insert((d, h.clone()));
            }
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
    /// all state. Conditions of removed or disabled rules get no Clear.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
        self.refresh_all();
    }

    /// Start watching a household for inactivity rules even before any event
    /// arrives; `since` is the baseline "last activity". No-op if already known.
    pub fn watch_household(&mut self, household: &str, since: Millis) {
        if !self.state.households.contains_key(household) {
            self.state.households.insert(
                household.to_string(),
                HouseholdState {
                    since,
                    ..HouseholdState::default()
                },
            );
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

    /// Feed one observation. `now` is the current time; `obs.at` is clamped
    /// to it. The household's timers are first brought up to `obs.at`, so
    /// decisions that fell due before the observation come first. Returned
    /// decisions are sorted by `at`.
    pub fn observe(&mut self, obs: &Observation, now: Millis) -> Vec<Decision> {
        let clock = self.advance_clock(now);
        let t = obs.at.min(clock);
        let rules = &self.rules;
        let hs = self
            .state
            .households
            .entry(obs.household.clone())
            .or_insert_with(|| HouseholdState {
                since: t,
                ..HouseholdState::default()
            });
        let ctx = Ctx {
            household: &obs.household,
            offset_minutes: rules.utc_offset_minutes(),
        };
        let mut out = Vec::new();
        advance(rules, &ctx, hs, t, &mut out);
        apply(rules, &ctx, hs, obs, t, &mut out);
        // zero-length timers (e.g. offline_grace_minutes = 0) fire right away
        advance(rules, &ctx, hs, t, &mut out);
        out.sort_by_key(|d| d.at);
        self.refresh(&obs.household);
        out
    }

    /// Fire every timer that expired by `now` (silence reached, threshold
    /// held long enough, device silent too long, ...). Idempotent; a `now`
    /// earlier than one seen before acts like that later time (so it yields
    /// nothing new). Returned decisions are sorted by `at`, which is when each
    /// condition became true.
    pub fn tick(&mut self, now: Millis) -> Vec<Decision> {
        let clock = self.advance_clock(now);
        let rules = &self.rules;
        let mut out = Vec::new();
        for (h, hs) in self.state.households.iter_mut() {
            let ctx = Ctx {
                household: h,
                offset_minutes: rules.utc_offset_minutes(),
            };
            advance(rules, &ctx, hs, clock, &mut out);
        }
        out.sort_by_key(|d| d.at);
        self.refresh_all();
        out
    }

    /// Earliest time at which [`Engine::tick`] could produce a decision, or
    /// `None` if no timer is running. It may be at or before the current
    /// time, meaning a tick is due now. Observations can change it, so
    /// re-read it after each `observe`.
    pub fn next_deadline(&self) -> Option<Millis> {
        let indexed = self.deadlines.first().map(|(d, _)| *d);
        debug_assert_eq!(
            indexed,
            self.state
                .households
                .iter()
                .filter_map(|(h, hs)| household_deadline(&self.rules, h, hs))
                .min(),
            "deadline index out of date"
        );
        indexed
    }
}

/// Earliest time at which a tick could produce a decision for this household.
fn household_deadline(rules: &RuleSet, h: &str, hs: &HouseholdState) -> Option<Millis> {
    let offset_ms = i64::from(rules.utc_offset_minutes()) * MINUTE_MS;
    let mut best: Option<Millis> = None;
    let mut consider = |d: Millis| best = Some(best.map_or(d, |b: Millis| b.min(d)));
    for rule in rules.rules_for(h) {
        match &rule.kind {
            RuleKind::Inactivity(ia) => {
                if !hs.inactivity_open.contains(&rule.id) {
                    let last = last_for(hs.since, &hs.last_activity, &ia.classes);
                    consider(window::deadline(
                        ia.window.as_ref(),
                        offset_ms,
                        last,
                        ia.silence_ms,
                    ));
                }
            }
            RuleKind::Threshold(th) => {
                for ds in hs.devices.values() {
                    if let Some(due) = ds.thresholds.get(&rule.id).and_then(|s| s.pending(th)) {
                        consider(due);
                    }
                }
            }
            RuleKind::DeviceOffline(r) => {
                for ds in hs.devices.values() {
                    if !ds.offline_open.contains(&rule.id) {
                        consider(ds.offline_due(r));
                    }
                }
            }
            RuleKind::Instant { .. } | RuleKind::LowBattery(_) => {}
        }
    }
    best
}

/// Fire the household's timers that expired by `t`.
fn advance(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    t: Millis,
    out: &mut Vec<Decision>,
) {
    for rule in rules.rules_for(ctx.household) {
        match &rule.kind {
            RuleKind::Inactivity(ia) => {
                if hs.inactivity_open.contains(&rule.id) {
                    continue;
                }
                let last = last_for(hs.since, &hs.last_activity, &ia.classes);
                let due =
                    window::deadline(ia.window.as_ref(), ctx.offset_ms(), last, ia.silence_ms);
                if due <= t {
                    out.push(ctx.inactivity_raise(rule, ia, hs, last, due));
                    hs.inactivity_open.insert(rule.id.clone());
                }
            }
            RuleKind::Threshold(th) => {
                for (device, ds) in hs.devices.iter_mut() {
                    if let Some(st) = ds.thresholds.get_mut(&rule.id) {
                        if let Some((action, at)) = st.advance(th, t) {
                            out.push(ctx.threshold_decision(rule, th, device, st, action, at));
                        }
                    }
                }
            }
            RuleKind::DeviceOffline(r) => {
                for (device, ds) in hs.devices.iter_mut() {
                    if ds.offline_open.contains(&rule.id) {
                        continue;
                    }
                    let due = ds.offline_due(r);
                    if due <= t {
                        out.push(ctx.offline_raise(rule, r, device, ds, due));
                        ds.offline_open.insert(rule.id.clone());
                    }
                }
            }
            RuleKind::Instant { .. } | RuleKind::LowBattery(_) => {}
        }
    }
}

/// Apply one observation at (clamped) time `t`.
fn apply(
    rules: &RuleSet,
    ctx: &Ctx<'_>,
    hs: &mut HouseholdState,
    obs: &Observation,
    t: Millis,
    out: &mut Vec<Decision>,
) {
    let device = obs.device.as_str();
    let ds = hs
        .devices
        .entry(obs.device.clone())
        .or_insert_with(|| DeviceState::new(t));

    // Device health: anything but a Last Will is a sign the device is alive.
    if obs.signal == Signal::Offline {
        if ds.offline_hint.is_none() {
            ds.offline_hint = Some(t);
        }
    } else {
        let before = ds.last_seen;
        ds.last_seen = ds.last_seen.max(t);
        ds.offline_hint = None;
        for rule in rules.rules_for(ctx.household) {
            if matches!(rule.kind, RuleKind::DeviceOffline(_)) && ds.offline_open.remove(&rule.id) {
                let detail = format!(
                    "device {device} heard from again ({}); previous message at {}",
                    obs.signal.name(),
                    ctx.local(before)
                );
                out.push(ctx.decision(rule, Action::Clear, Some(device), true, t, detail));
            }
        }
    }

    // Signs of life.
    let classes = activity_of(&obs.signal, ds);
    if !classes.is_empty() {
        for rule in rules.rules_for(ctx.household) {
            let RuleKind::Inactivity(ia) = &rule.kind else {
                continue;
            };
            if ia.classes.iter().any(|c| classes.contains(c))
                && hs.inactivity_open.contains(&rule.id)
            {
                let last = last_for(hs.since, &hs.last_activity, &ia.classes);
                let detail = format!(
                    "activity ({}) from device {device} after {} without activity",
                    class_list(&classes),
                    duration(t.saturating_sub(last))
                );
                hs.inactivity_open.remove(&rule.id);
                out.push(ctx.decision(rule, Action::Clear, None, false, t, detail));
            }
        }
        for c in classes {
            let e = hs.last_activity.entry(c).or_insert(t);
            *e = (*e).max(t);
        }
    }

    for rule in rules.rules_for(ctx.household) {
        match &rule.kind {
            RuleKind::Instant { signal, flag } if *signal == obs.signal.name() => {
                let (on, off) = phrases(obs.signal.name());
                if !*flag {
                    let detail = format!("{on} (device {device})");
                    out.push(ctx.decision(rule, Action::Raise, Some(device), false, t, detail));
                    continue;
                }
                match obs.signal.flag() {
                    Some(true) => {
                        hs.instant_active
                            .entry(rule.id.clone())
                            .or_default()
                            .insert(obs.device.clone());
                        let detail = format!("{on} (device {device})");
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
                                "{off} (device {device}); no device in the household still reports {on}"
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
                let Some(v) = th.signal.value_in(&obs.signal) else {
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
                let Signal::Battery { percent } = obs.signal else {
                    continue;
                };
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
}
