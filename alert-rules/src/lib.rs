//! # alert-rules — Anxin's pure alarm rule engine
//!
//! Anxin watches over elders who live alone. Sensors in the home (SOS
//! buttons, fall detectors, motion / door / bed sensors, smoke, gas and leak
//! detectors, water and power meters, thermometers, wearables, "I'm OK",
//! "leaving home" and carer-visit buttons) report to the hub, which turns
//! their messages into [`Observation`]s and feeds them to an [`Engine`]. Staff
//! and family add what no sensor knows: away / hospital / holiday modes and
//! carer visits. The engine applies the supervisor-editable rules of a
//! [`RuleSet`] and answers with [`Decision`]s: *raise* an alarm or *clear* one.
//!
//! The supervisors' guide to the rule file is `docs/rules.md`; the shipped,
//! commented file is `rules/default.toml` ([`RuleSet::DEFAULT_TOML`]).
//!
//! What Anxin detects, by rule kind:
//!
//! | kind               | detects                                                                                     | alarm per |
//! |--------------------|---------------------------------------------------------------------------------------------|-----------|
//! | `instant`          | SOS press, fall, smoke, gas, water leak, as soon as reported                                 | household |
//! | `threshold`        | room too hot / too cold, abnormal heart rate, ...: beyond a limit for a while or for N readings in a row | device |
//! | `inactivity`       | no sign of life for hours, optionally counting only a daytime window                        | household |
//! | `night_bed_exit`   | out of bed at night, then neither back in bed nor any other sign of life for N minutes      | household |
//! | `daily_deadline`   | no sign of life (or no "I'm OK" check-in) between two times of day, judged at the second     | household |
//! | `utility_low`      | almost no water / electricity used over a sliding window                                    | household |
//! | `utility_high`     | far more water / electricity than usual within a sliding window (tap left running)          | household |
//! | `continuous_flow`  | use in every meter reading for hours without a pause (a leak)                               | household |
//! | `device_offline`   | a device that stopped reporting (missed heartbeats, or Last Will)                           | device    |
//! | `home_unreachable` | enough of a home's devices offline at once: one alarm for the home instead of one per device | household |
//! | `area_outage`      | many homes of one village unreachable within minutes: one grouped incident for the village   | village   |
//! | `low_battery`      | a battery that needs replacing                                                              | device    |
//! | `away_expired`     | an away / hospital / holiday mode ran out and no sign of life followed                      | household |
//! | `visit_target`     | fewer carer visits in a local calendar week than the target                                 | household |
//!
//! ## Key design decision: edge-triggered decisions
//!
//! The engine does **not** re-announce a condition on every message or every
//! tick. It emits a [`Action::Raise`] when a condition *becomes* true and a
//! [`Action::Clear`] when it *stops* being true, and remembers in
//! [`EngineState`] which conditions are open. Every decision carries a
//! [`Decision::condition_key`] (`rule_id` for household-wide and village
//! rules, `"{rule_id}:{device}"` for per-device rules); the hub's store keeps
//! at most one open alarm per `(household or village, condition_key)` and
//! attaches repeats to it. That is why instant rules may simply raise on every
//! SOS press or every "smoke: true" reading — the store folds them into the
//! open alarm — while every other kind raises exactly once and then waits for
//! its clear condition, so a reading that wobbles around a limit gives one
//! alarm, not fifty.
//!
//! ## Purity and time
//!
//! The crate does no I/O, spawns nothing and never reads the clock. Time is
//! passed in as [`Millis`] (Unix epoch milliseconds, UTC): `now` on every call,
//! and [`Observation::at`] for when the reading happened. Given the same rules,
//! state and inputs, the output is always the same. Local time of day (windows,
//! deadlines, week boundaries) is the rule file's fixed `timezone_offset`; there
//! is no daylight saving.
//!
//! * `Observation::at` should be the hub's receive time (or the device's time
//!   when it is trusted). It is clamped to `now`, so a device clock running
//!   ahead cannot schedule alarms in the future.
//! * The engine keeps a high-water mark of every `now` it was given; a `now`
//!   earlier than that is treated as the high-water mark, so a clock that
//!   steps backwards never panics and never raises anything new.
//! * Timer-driven decisions ([`Engine::tick`]) carry the instant the
//!   condition became true (e.g. the moment 4 hours of silence were reached)
//!   as [`Decision::at`], not the instant `tick` happened to run; they are
//!   never later than `now`.
//! * Timers fire in global time order across households: the engine indexes
//!   each household's earliest timer and always fires the earliest one of the
//!   whole district first. This matters for grouping: whether a village outage
//!   opened before a home's own "unreachable" alarm fell due decides whether
//!   that alarm is folded into the outage.
//! * Before an observation (or a mode / visit command) is applied, every timer
//!   in every household that fell due by its time fires first, so the sequence
//!   of decisions per condition does not depend on how often `tick` is called
//!   (a property test checks this). If the hub ticks rarely, an observation may
//!   therefore yield a Raise immediately followed by its Clear — e.g. a device
//!   that was offline for an hour and just came back. Such timer decisions come
//!   first in the returned list (it is sorted by `at`); the Raise an SOS press
//!   caused is the Raise with `device == Some(obs.device)` and
//!   `condition_key == rule_id`.
//!
//! ## Driving the engine
//!
//! ```
//! use alert_rules::{Action, Engine, ModeKind, Observation, RuleSet, Signal};
//!
//! let mut engine = Engine::new(RuleSet::default_rules());
//! let t0: i64 = 1_714_521_600_000; // 2024-05-01 08:00 +08:00
//! engine.watch_household("h-1", t0);
//! engine.set_area("h-1", Some("v-1")); // its village, for grouped outages
//!
//! let sos = Observation { household: "h-1".into(), device: "btn-1".into(), at: t0, signal: Signal::Sos };
//! let decisions = engine.observe(&sos, t0);
//! assert_eq!(decisions[0].action, Action::Raise);
//! assert_eq!(decisions[0].condition_key, "sos");
//! assert_eq!(decisions[0].household.as_deref(), Some("h-1"));
//! assert_eq!(decisions[0].village, None);
//!
//! // Family says she stays with her daughter for three days: absence rules rest.
//! let until = t0 + 3 * 24 * 3_600_000;
//! let _ = engine.set_mode("h-1", ModeKind::Away, until, t0 + 60_000);
//! assert_eq!(engine.state().mode("h-1").map(|m| m.until), Some(until));
//!
//! // The hub sleeps until the next deadline (or the next message), then ticks.
//! if let Some(deadline) = engine.next_deadline() {
//!     let _later = engine.tick(deadline);
//! }
//! ```
//!
//! * Call [`Engine::observe`] for every message.
//! * Call [`Engine::tick`] when [`Engine::next_deadline`] is reached (it may be
//!   at or before `now`, meaning "tick now"), and in any case periodically
//!   (e.g. every 30–60 s) as a safety net; tick is cheap and idempotent.
//! * Call [`Engine::watch_household`] / [`Engine::watch_device`] at start-up for
//!   every enrolled household and device, so that a home or device that never
//!   says anything is still noticed, and [`Engine::set_area`] with each
//!   household's village (without it the household is never part of a grouped
//!   outage). Call [`Engine::forget_device`] when a device is removed or
//!   revoked: it no longer counts towards "home unreachable" (its open alarms
//!   get no Clear from the engine).
//! * Staff and family input: [`Engine::set_mode`] (away / hospital / holiday
//!   until an instant; replaces any mode in force; an `until` not after `now`
//!   ends it), [`Engine::end_mode`] (ended on purpose: no return check), and
//!   [`Engine::visit`] (a carer checked in or out from the board or an app).
//!   The device events `away`, `visit` and `checkin` arrive as
//!   [`Signal::Away`], [`Signal::Visit`] and [`Signal::CheckIn`] through
//!   `observe`; the "leaving home" button without `hours` sets away mode for
//!   [`DEFAULT_AWAY_MS`] (72 h).
//! * Grouped incidents (`area_outage`) are decisions with
//!   [`Decision::household`] `None` and [`Decision::village`] set; every other
//!   decision has `household` set and `village` `None`.
//! * Persist [`Engine::state`] (it round-trips through `serde_json` exactly) and
//!   rebuild with [`Engine::with_state`] after a restart; then call
//!   [`Engine::reset_device_baselines`] so the hub's own downtime is not
//!   mistaken for every device going offline. [`Engine::set_rules`] swaps in a
//!   reloaded rule file and keeps all state.
//!
//! ## Signs of life (activity classes)
//!
//! Rules that watch for life count the latest observation of their listed
//! [`ActivityClass`]es, fused into one "last sign of life" per household:
//!
//! * `motion` — `Motion { occupancy: true }`;
//! * `door` — any `Door`; `bed` — any `Bed`;
//! * `water_use` — the water meter total rose by at least 0.0005 m³ (0.5 l)
//!   since that device's previous reading, or an interval volume of at least
//!   0.0005 m³ (a decrease of a total is a counter reset: new baseline, not
//!   use);
//! * `power_use` — `power_w` above 30 W (standby), or the energy total rose
//!   (or an interval reported) at least 0.01 kWh;
//! * `button` — `Sos`, and the "leaving home" / "back home" button (`Away`);
//! * `steps` — `Steps` with a count above 0;
//! * `checkin` — `CheckIn`; `visit` — `Visit`, start or end.
//!
//! Never a sign of life: falls, smoke, gas, leaks, temperature, heart rate,
//! battery, heartbeats, online / offline.
//!
//! ## When absence rules rest
//!
//! The *absence* kinds (`inactivity`, `night_bed_exit`, `daily_deadline`,
//! `utility_low`) are not judged while the household is in an away / hospital /
//! holiday mode, while a carer visit is in progress (until its end, at most
//! [`MAX_VISIT_MS`] = 4 h after its start), or while the home is unreachable;
//! `utility_low` also rests while its meter is offline. When that ends, silence
//! is counted again from that instant. Setting a mode clears the open alarms of
//! absence rules and of `away_expired`. Instant, threshold, `utility_high`,
//! `continuous_flow`, device-health rules are never suspended.
//!
//! ## Semantics per rule kind
//!
//! * **instant** — event signals (`sos`, `fall`, also `checkin`, `visit`,
//!   `heartbeat`, `online`, `offline`) raise on every observation and never
//!   clear by themselves (a caregiver resolves them). On/off signals (`smoke`,
//!   `gas`, `water_leak`, `motion`, `door`, `bed`) raise on every `true`
//!   reading; the rule is household-wide, so it clears once, when the *last*
//!   device of the household that reported `true` reports `false` again.
//! * **threshold** — per device. Raises once when the value has been strictly
//!   beyond `above`/`below` continuously for `for_minutes` (the last reading is
//!   assumed to hold until the next one) *and* for `consecutive` readings in a
//!   row, at the later of the two; then not again until cleared. Clears after
//!   the value has been back in range by at least `clear_margin` for
//!   `clear_minutes`. A reading between the limit and the margin neither raises
//!   nor clears, it just resets the clear timer.
//! * **inactivity** — household-wide. Counts silence since the latest activity
//!   of the listed classes (or since the household became known, or since a
//!   suspension ended). With a `window`, only time inside the local-time window
//!   counts: silence from 21:00 to 08:00 with window `07:00-22:00` counts
//!   1 h + 1 h = 2 h. Raises once when the counted silence reaches `hours`; the
//!   next activity of a listed class clears it and restarts the count.
//! * **night_bed_exit** — a `Bed { occupied: false }` inside the (possibly
//!   midnight-crossing) `window` arms a watch. Raises `minutes` after the later
//!   of the exit and the latest sign of life of the listed classes, unless
//!   that instant is at or after the window's end (getting up for the day).
//!   Back in bed, or any listed sign of life, clears it.
//! * **daily_deadline** — raises at local `by` if no activity of the listed
//!   classes happened between local `from` and `by` that day; a day whose
//!   `from` had passed when watching began (or resumed) is not judged. The next
//!   listed activity clears it.
//! * **utility_low** — the use within the sliding window `(t - hours, t]` is
//!   below `below`. Judged only once the meter has reported for a whole window
//!   (and a whole window after a suspension); raised at the first instant the
//!   window's use is below `below` (often when the last use leaves the window,
//!   with no reading then). Clears on a reading that brings the window's use to
//!   `below` or more. Meter history is kept for at most 8 days.
//! * **utility_high** — raised on a reading that makes the window's use exceed
//!   `above`; clears (by timer) when old use leaving the window brings it down
//!   to `clear_below`.
//! * **continuous_flow** — a reading "flows" when it shows at least
//!   `min_per_hour` per hour of its interval since the previous reading. Raises
//!   when readings have flowed without a break for `hours`; a reading more than
//!   `max_gap_minutes` after the previous one restarts the run; a reading that
//!   does not flow clears it.
//! * **device_offline** — per device. Offline when nothing at all was heard
//!   from the device for `heartbeat_minutes × missed_heartbeats`, or
//!   `offline_grace_minutes` after an `Offline` signal (MQTT Last Will) with
//!   nothing heard since. The alarm is held for the household's
//!   `home_unreachable` `hold_minutes` (none without such a rule) and dropped
//!   if the home turns out to be unreachable. Any later message from the
//!   device other than `Offline` clears it.
//! * **home_unreachable** — at least `min_devices` and at least `min_share`
//!   of the household's known devices offline. Device alarms already raised
//!   are cleared ("folded"), absence rules rest. Raised at once, or — when the
//!   household has a village and an `area_outage` rule exists — after that
//!   rule's `hold_minutes`, and not at all while the village's outage is open.
//!   Clears when the home no longer qualifies; devices still silent then get
//!   their own alarm after a fresh hold.
//! * **area_outage** — district-wide (at most one rule, no overrides). When at
//!   least `min_households` households of one village became unreachable within
//!   `within_minutes`, one grouped incident for the village (no household);
//!   home-unreachable alarms already raised there are cleared into it. Clears
//!   when fewer than `min_households` are still unreachable; each of those is
//!   then watched on its own again (its alarm after the hold).
//! * **low_battery** — per device. Raises once below `below_percent`, clears
//!   above `clear_above_percent`.
//! * **away_expired** — a mode ran out by itself (not ended on purpose) and no
//!   sign of life of any class followed within `grace_hours`. Any sign of life
//!   clears it.
//! * **visit_target** — judged at each local Monday 00:00 for the week before:
//!   fewer than `per_week` visit starts raises; a later week meeting the target
//!   clears. The partial first week, and weeks during which a mode was in
//!   force, are not judged.
//!
//! Non-finite numbers (NaN, ±inf) in readings are ignored: they never raise,
//! clear or move a baseline, but the message still counts as "heard from the
//! device".
//!
//! ## Rule file reference
//!
//! Top level: `timezone_offset = "+08:00"` (fixed offset, no daylight saving;
//! default `"+00:00"`), then `[[rule]]` and `[[override]]` tables. Durations
//! are at most one year; `(–)` marks a required key.
//!
//! | kind               | keys (default)                                                                                   |
//! |--------------------|--------------------------------------------------------------------------------------------------|
//! | every rule         | `id`, `kind`, `severity`, `title` (–), `enabled` (true)                                           |
//! | `instant`          | `signal` (–): `sos fall smoke gas water_leak motion door bed checkin visit heartbeat online offline` |
//! | `threshold`        | `signal` (–): `temperature heart_rate battery power_w`; `above` and/or `below`; `for_minutes` (0), `clear_minutes` (0), `clear_margin` (0), `consecutive` (1, 1–1000) |
//! | `inactivity`       | `activity` (–, list of classes), `hours` (–, > 0), `window` (none: whole day)                     |
//! | `night_bed_exit`   | `window` (–), `minutes` (–, > 0), `activity` (every class but `bed` and `steps`; `bed` refused)   |
//! | `daily_deadline`   | `by` (–, `HH:MM`), `from` (`"00:00"`, before `by`), `activity` (every class)                      |
//! | `utility_low`      | `meter` (–, `water` m³ / `power` kWh), `below` (–), `hours` (–)                                   |
//! | `utility_high`     | `meter` (–), `above` (–), `clear_below` (`above` / 2), `hours` (–)                                |
//! | `continuous_flow`  | `meter` (–), `hours` (–), `min_per_hour` (water 0.001, power 0.05), `max_gap_minutes` (120)        |
//! | `device_offline`   | `heartbeat_minutes` (–, > 0), `missed_heartbeats` (3), `offline_grace_minutes` (2)                |
//! | `home_unreachable` | `min_devices` (2), `min_share` (0.5, in (0, 1]), `hold_minutes` (10); at most one rule            |
//! | `area_outage`      | `min_households` (5, ≥ 2), `within_minutes` (15), `hold_minutes` (10); at most one rule, no overrides |
//! | `low_battery`      | `below_percent` (–), `clear_above_percent` (`below_percent` + 10, at most 100)                     |
//! | `away_expired`     | `grace_hours` (2)                                                                                |
//! | `visit_target`     | `per_week` (3, 1–100)                                                                            |
//! | `[[override]]`     | `household`, `rule`, then any key of that rule's kind except `id`/`kind`, e.g. `enabled = false` |
//!
//! Mistakes are reported as [`RulesError`] with the line and column of the
//! offending key or value: TOML syntax, unknown keys (typos), unknown signal,
//! kind, meter or activity class, bad window, time or offset, non-positive
//! durations, duplicate ids, a second `home_unreachable` / `area_outage` rule,
//! `below` not under `above`, overrides naming unknown rules or an
//! `area_outage` rule. Several overrides for the same household and rule merge
//! in order; more override text can be layered with
//! [`RuleSet::with_overrides_toml`].
//!
//! If a rule is disabled (or removed) while its condition is open, the engine
//! emits no Clear for it; the hub should resolve such alarms itself.

#![forbid(unsafe_code)]

mod engine;
mod error;
mod rules;
mod timefmt;
mod usage;
mod window;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use engine::{
    DeviceHealth, Engine, EngineState, Mode, ModeKind, DEFAULT_AWAY_MS, MAX_VISIT_MS,
};
pub use error::{Location, RulesError};
pub use rules::{ActivityClass, RuleSet, RULE_KINDS, SIGNAL_NAMES};

/// Unix epoch milliseconds, UTC.
pub type Millis = i64;

/// How urgent an alarm is. Ordered: `Info < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Needs attention eventually (e.g. low battery).
    Info,
    /// Needs attention soon (e.g. no sign of life, device offline).
    Warning,
    /// Needs attention now (e.g. SOS, fall, smoke).
    Critical,
}

impl Severity {
    /// `"info"`, `"warning"` or `"critical"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by [`Severity::from_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?} (expected info, warning or critical)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Parses `info`, `warning` or `critical` (ASCII case-insensitive,
    /// surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("info") {
            Ok(Severity::Info)
        } else if t.eq_ignore_ascii_case("warning") {
            Ok(Severity::Warning)
        } else if t.eq_ignore_ascii_case("critical") {
            Ok(Severity::Critical)
        } else {
            Err(UnknownSeverity(s.to_string()))
        }
    }
}

/// What a device reported, already decoded by the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Signal {
    /// SOS / help button pressed.
    Sos,
    /// Fall detected.
    Fall,
    /// Motion sensor: someone present (`true`) or not.
    Motion { occupancy: bool },
    /// Door contact opened or closed.
    Door { open: bool },
    /// Bed sensor: occupied or not.
    Bed { occupied: bool },
    /// Smoke detector state.
    Smoke { alarm: bool },
    /// Gas detector state.
    Gas { alarm: bool },
    /// Water leak detector state.
    WaterLeak { leak: bool },
    /// Cumulative water meter reading. May reset / decrease: that is treated
    /// as a new baseline.
    WaterMeter { total_m3: f64 },
    /// Cumulative energy meter reading plus optional instantaneous power.
    PowerMeter {
        total_kwh: f64,
        power_w: Option<f64>,
    },
    /// Heart rate in beats per minute.
    HeartRate { bpm: f64 },
    /// Temperature in degrees Celsius.
    Temperature { celsius: f64 },
    /// Battery charge in percent.
    Battery { percent: f64 },
    /// Interval water volume: m³ used since the device's previous report (meters
    /// that report consumption per period instead of a running total).
    WaterVolume { m3: f64 },
    /// Interval energy: kWh used since the device's previous report, plus optional
    /// instantaneous power.
    EnergyVolume { kwh: f64, power_w: Option<f64> },
    /// Wearable step count since its previous report.
    Steps { count: f64 },
    /// Daily "I'm OK" button press.
    CheckIn,
    /// A carer's visit starts (`start: true`: check-in, e.g. an NFC tag read at the
    /// door) or ends (check-out). `carer` is the carer's tag or staff id, if known.
    Visit { start: bool, carer: Option<String> },
    /// "Leaving home" (`away: true`, optionally for `hours`) or "back home"
    /// (`away: false`) button.
    Away { away: bool, hours: Option<f64> },
    /// Periodic keep-alive.
    Heartbeat,
    /// Device (re)connected / status online.
    Online,
    /// Last Will / status offline — only a hint, see the `device_offline` rule.
    Offline,
}

impl Signal {
    /// The signal's name as used in rule files: `sos fall motion door bed
    /// smoke gas water_leak water_meter power_meter water_volume energy_volume
    /// heart_rate temperature battery steps checkin visit away heartbeat online
    /// offline`.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Sos => "sos",
            Signal::Fall => "fall",
            Signal::Motion { .. } => "motion",
            Signal::Door { .. } => "door",
            Signal::Bed { .. } => "bed",
            Signal::Smoke { .. } => "smoke",
            Signal::Gas { .. } => "gas",
            Signal::WaterLeak { .. } => "water_leak",
            Signal::WaterMeter { .. } => "water_meter",
            Signal::PowerMeter { .. } => "power_meter",
            Signal::HeartRate { .. } => "heart_rate",
            Signal::Temperature { .. } => "temperature",
            Signal::Battery { .. } => "battery",
            Signal::WaterVolume { .. } => "water_volume",
            Signal::EnergyVolume { .. } => "energy_volume",
            Signal::Steps { .. } => "steps",
            Signal::CheckIn => "checkin",
            Signal::Visit { .. } => "visit",
            Signal::Away { .. } => "away",
            Signal::Heartbeat => "heartbeat",
            Signal::Online => "online",
            Signal::Offline => "offline",
        }
    }

    /// The on/off flag of a boolean signal (`motion`, `door`, `bed`, `smoke`,
    /// `gas`, `water_leak`); `None` for every other signal.
    pub fn flag(&self) -> Option<bool> {
        match *self {
            Signal::Motion { occupancy } => Some(occupancy),
            Signal::Door { open } => Some(open),
            Signal::Bed { occupied } => Some(occupied),
            Signal::Smoke { alarm } | Signal::Gas { alarm } => Some(alarm),
            Signal::WaterLeak { leak } => Some(leak),
            _ => None,
        }
    }
}

/// One decoded message from one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Household id (no personal data).
    pub household: String,
    /// Device id (no personal data).
    pub device: String,
    /// When the reading happened (clamped to `now` by the engine).
    pub at: Millis,
    /// What was reported.
    pub signal: Signal,
}

/// Open or close an alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The condition became true (or, for instant rules, happened again).
    Raise,
    /// The condition is over.
    Clear,
}

impl Action {
    /// `"raise"` or `"clear"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Raise => "raise",
            Action::Clear => "clear",
        }
    }
}

/// What the engine wants the hub to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Raise or clear.
    pub action: Action,
    /// Household concerned; `None` only for a grouped incident about a whole
    /// village (then `village` is set).
    pub household: Option<String>,
    /// The village, for grouped incidents (`area_outage` rules); `None` otherwise.
    pub village: Option<String>,
    /// The device concerned: for per-device rules the device, for instant
    /// rules the device that reported; `None` for inactivity rules. So a
    /// decision with `device.is_some()` and `condition_key == rule_id` is
    /// always from an instant rule (see also [`RuleSet::rule_kind`]).
    pub device: Option<String>,
    /// Id of the rule that decided.
    pub rule_id: String,
    /// `rule_id` for household-wide rules; `"{rule_id}:{device}"` for
    /// per-device rules. The store keeps one open alarm per
    /// `(household, condition_key)`.
    pub condition_key: String,
    /// Severity from the rule (after household overrides).
    pub severity: Severity,
    /// Short English title from the rule file, e.g. "SOS button pressed".
    pub title: String,
    /// Human-readable reason with numbers; contains ids only, no personal data.
    pub detail: String,
    /// When the condition became true / ended (never later than `now`).
    pub at: Millis,
    /// The highest escalation level the alarm may reach (rule key `escalate_to`):
    /// 0 = family and village, 1 = town; `None` = up to the district.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_level: Option<u8>,
}
