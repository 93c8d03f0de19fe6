//! # alert-rules — Anxin's pure alarm rule engine
//!
//! Anxin watches over elders who live alone. Sensors in the home (SOS
//! buttons, fall detectors, motion / door / bed sensors, smoke, gas and leak
//! detectors, water and power meters, thermometers, wearables) report to the
//! hub, which turns their messages into [`Observation`]s and feeds them to an
//! [`Engine`]. The engine applies the supervisor-editable rules of a
//! [`RuleSet`] and answers with [`Decision`]s: *raise* an alarm or *clear* one.
//!
//! What Anxin detects, by rule kind (see `rules/default.toml`):
//!
//! | kind             | detects                                                         | alarm per |
//! |------------------|-----------------------------------------------------------------|-----------|
//! | `instant`        | SOS press, fall, smoke, gas, water leak                         | household |
//! | `threshold`      | room too hot / too cold, abnormal heart rate, ... held for a while | device |
//! | `inactivity`     | no sign of life (motion, door, bed, water, power, button) for hours, optionally only counting a daytime window | household |
//! | `device_offline` | a device that stopped reporting (missed heartbeats, or Last Will) | device  |
//! | `low_battery`    | a battery that needs replacing                                   | device    |
//!
//! ## Key design decision: edge-triggered decisions
//!
//! The engine does **not** re-announce a condition on every message or every
//! tick. It emits a [`Action::Raise`] when a condition *becomes* true and a
//! [`Action::Clear`] when it *stops* being true, and remembers in
//! [`EngineState`] which conditions are open. Every decision carries a
//! [`Decision::condition_key`] (`rule_id` for household-wide rules,
//! `"{rule_id}:{device}"` for per-device rules); the hub's store keeps at most
//! one open alarm per `(household, condition_key)` and attaches repeats to it.
//! That is why instant rules may simply raise on every SOS press or every
//! "smoke: true" reading — the store folds them into the open alarm — while
//! the timer-based kinds (`threshold`, `inactivity`, `device_offline`,
//! `low_battery`) raise exactly once and then wait for their clear condition,
//! so a reading that wobbles around a limit gives one alarm, not fifty.
//!
//! ## Purity and time
//!
//! The crate does no I/O, spawns nothing and never reads the clock. Time is
//! passed in as [`Millis`] (Unix epoch milliseconds, UTC): `now` on every call,
//! and [`Observation::at`] for when the reading happened. Given the same rules,
//! state and inputs, the output is always the same.
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
//! * Before an observation is applied, the household's timers are brought up
//!   to the observation's time, so the sequence of decisions per condition
//!   does not depend on how often `tick` is called (a property test checks
//!   this). If the hub ticks rarely, an observation may therefore yield a
//!   Raise immediately followed by its Clear — e.g. a device that was offline
//!   for an hour and just came back. Such timer decisions come first in the
//!   returned list (it is sorted by `at`); the Raise an SOS press caused is
//!   the Raise with `device == Some(obs.device)` and
//!   `condition_key == rule_id`.
//!
//! ## Driving the engine
//!
//! ```
//! use alert_rules::{Engine, Observation, RuleSet, Signal, Action};
//!
//! let mut engine = Engine::new(RuleSet::default_rules());
//! let t0: i64 = 1_714_521_600_000; // 2024-05-01 08:00 +08:00
//! engine.watch_household("h-1", t0);
//!
//! let sos = Observation { household: "h-1".into(), device: "btn-1".into(), at: t0, signal: Signal::Sos };
//! let decisions = engine.observe(&sos, t0);
//! assert_eq!(decisions[0].action, Action::Raise);
//! assert_eq!(decisions[0].condition_key, "sos");
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
//!   says anything is still noticed.
//! * Persist [`Engine::state`] (it round-trips through `serde_json` exactly) and
//!   rebuild with [`Engine::with_state`] after a restart; then call
//!   [`Engine::reset_device_baselines`] so the hub's own downtime is not
//!   mistaken for every device going offline.
//!
//! ## Semantics per rule kind
//!
//! * **instant** — event signals (`sos`, `fall`, also `heartbeat`, `online`,
//!   `offline`) raise on every observation and never clear by themselves (a
//!   caregiver resolves them). On/off signals (`smoke`, `gas`, `water_leak`,
//!   `motion`, `door`, `bed`) raise on every `true` reading; the rule is
//!   household-wide, so it clears once, when the *last* device of the household
//!   that reported `true` reports `false` again.
//! * **threshold** — per device. Raises once when the value has been beyond
//!   `above`/`below` continuously for `for_minutes` (the last reading is assumed
//!   to hold until the next one); then not again until cleared. Clears after the
//!   value has been back in range by at least `clear_margin` for
//!   `clear_minutes`. A reading between the limit and the margin neither raises
//!   nor clears, it just resets the clear timer.
//! * **inactivity** — household-wide. Counts silence since the latest activity
//!   of the listed classes (or since the household became known). With a
//!   `window`, only time inside the local-time window counts: silence from 21:00
//!   to 08:00 with window `07:00-22:00` counts 1 h + 1 h = 2 h. Raises once when
//!   the counted silence reaches `hours`; the next activity of a listed class
//!   clears it and restarts the count.
//! * **device_offline** — per device. Raises once when nothing at all was heard
//!   from the device for `heartbeat_minutes × missed_heartbeats`, or
//!   `offline_grace_minutes` after an `Offline` signal (MQTT Last Will) with
//!   nothing heard since. Any later message from the device other than
//!   `Offline` (an `Online`, a heartbeat, a reading) clears it.
//! * **low_battery** — per device. Raises once below `below_percent`, clears
//!   above `clear_above_percent`.
//!
//! Activity classes: `motion` = `Motion { occupancy: true }`; `door` = any
//! `Door`; `bed` = any `Bed`; `water_use` = the water meter total rose by at
//! least 0.0005 m³ since its previous reading (a decrease is a counter reset:
//! new baseline, not use); `power_use` = `power_w` above 30 W (standby) or the
//! energy total rose by at least 0.01 kWh since its previous reading;
//! `button` = `Sos`.
//!
//! Non-finite numbers (NaN, ±inf) in readings are ignored: they never raise,
//! clear or move a baseline, but the message still counts as "heard from the
//! device".
//!
//! ## Rule file reference
//!
//! `rules/default.toml` ([`RuleSet::DEFAULT_TOML`]) is the commented example.
//! Top level: `timezone_offset = "+08:00"` (fixed offset, no daylight saving;
//! default `"+00:00"`), then `[[rule]]` and `[[override]]` tables.
//!
//! | kind             | keys (default)                                                                 |
//! |------------------|--------------------------------------------------------------------------------|
//! | every rule       | `id`, `kind`, `severity`, `title` (required), `enabled` (true)                  |
//! | `instant`        | `signal`: `sos fall smoke gas water_leak motion door bed heartbeat online offline` |
//! | `threshold`      | `signal`: `temperature heart_rate battery power_w`; `above` and/or `below`; `for_minutes` (0), `clear_minutes` (0), `clear_margin` (0) |
//! | `inactivity`     | `activity` (list of classes), `hours` (> 0), `window` (none)                    |
//! | `device_offline` | `heartbeat_minutes` (> 0), `missed_heartbeats` (3), `offline_grace_minutes` (2) |
//! | `low_battery`    | `below_percent`, `clear_above_percent` (`below_percent` + 10, at most 100)      |
//! | `[[override]]`   | `household`, `rule`, then any key of that rule's kind except `id`/`kind`, e.g. `enabled = false` |
//!
//! Mistakes are reported as [`RulesError`] with the line and column of the
//! offending key or value: TOML syntax, unknown keys (typos), unknown signal,
//! kind or activity class, bad window or offset, non-positive durations,
//! duplicate ids, `below` not under `above`, overrides naming unknown rules.
//! Several overrides for the same household and rule merge in order; more
//! override text can be layered with [`RuleSet::with_overrides_toml`].
//!
//! Per-household `[[override]]` tables change any parameter of a rule for one
//! household, or disable it there with `enabled = false`. If a rule is
//! disabled (or removed) while its condition is open, the engine emits no Clear
//! for it; the hub should resolve such alarms itself.

#![forbid(unsafe_code)]

mod engine;
mod error;
mod rules;
mod timefmt;
mod window;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use engine::{Engine, EngineState};
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
    /// Household concerned.
    pub household: String,
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
}
