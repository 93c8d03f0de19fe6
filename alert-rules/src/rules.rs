//! Rule files: parsing, validation (with line/column errors) and overrides.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use crate::error::RulesError;
use crate::window::{Window, MINUTE_MS};
use crate::{Severity, Signal};

/// Every signal name accepted in rule files (same as [`Signal::name`]).
pub const SIGNAL_NAMES: [&str; 22] = [
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
    "water_volume",
    "energy_volume",
    "steps",
    "checkin",
    "visit",
    "away",
    "heartbeat",
    "online",
    "offline",
];

/// Every rule `kind` accepted in rule files.
pub const RULE_KINDS: [&str; 14] = [
    "instant",
    "threshold",
    "inactivity",
    "night_bed_exit",
    "daily_deadline",
    "utility_low",
    "utility_high",
    "continuous_flow",
    "device_offline",
    "home_unreachable",
    "area_outage",
    "low_battery",
    "away_expired",
    "visit_target",
];

const EVENT_SIGNALS: [&str; 7] = [
    "sos",
    "fall",
    "checkin",
    "visit",
    "heartbeat",
    "online",
    "offline",
];
const FLAG_SIGNALS: [&str; 6] = ["motion", "door", "bed", "smoke", "gas", "water_leak"];
const NUMERIC_SIGNALS: [&str; 4] = ["temperature", "heart_rate", "battery", "power_w"];

const COMMON_KEYS: [&str; 6] = ["id", "kind", "severity", "title", "enabled", "escalate_to"];
/// One year, the longest duration a rule may use.
const MAX_MINUTES: f64 = 366.0 * 24.0 * 60.0;

/// A sign of life that inactivity rules can count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityClass {
    /// `Motion { occupancy: true }`.
    Motion,
    /// Any `Door` signal.
    Door,
    /// Any `Bed` signal.
    Bed,
    /// Water meter total rose by at least 0.0005 m³ since its previous reading.
    WaterUse,
    /// `power_w` above 30 W, or energy total rose by at least 0.01 kWh.
    PowerUse,
    /// `Sos` button press, or the "leaving home" / "back home" button.
    Button,
    /// A wearable reported steps (count > 0).
    Steps,
    /// The daily "I'm OK" button.
    Checkin,
    /// A carer's visit started or ended.
    Visit,
}

impl ActivityClass {
    /// All classes, in rule-file order.
    pub const ALL: [ActivityClass; 9] = [
        ActivityClass::Motion,
        ActivityClass::Door,
        ActivityClass::Bed,
        ActivityClass::WaterUse,
        ActivityClass::PowerUse,
        ActivityClass::Button,
        ActivityClass::Steps,
        ActivityClass::Checkin,
        ActivityClass::Visit,
    ];

    /// The name used in rule files: `motion door bed water_use power_use button
    /// steps checkin visit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActivityClass::Motion => "motion",
            ActivityClass::Door => "door",
            ActivityClass::Bed => "bed",
            ActivityClass::WaterUse => "water_use",
            ActivityClass::PowerUse => "power_use",
            ActivityClass::Button => "button",
            ActivityClass::Steps => "steps",
            ActivityClass::Checkin => "checkin",
            ActivityClass::Visit => "visit",
        }
    }

    fn parse(s: &str) -> Option<ActivityClass> {
        ActivityClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A numeric quantity a threshold rule can watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    Temperature,
    HeartRate,
    Battery,
    PowerW,
}

impl Numeric {
    fn parse(s: &str) -> Option<Numeric> {
        match s {
            "temperature" => Some(Numeric::Temperature),
            "heart_rate" => Some(Numeric::HeartRate),
            "battery" => Some(Numeric::Battery),
            "power_w" | "power_meter" => Some(Numeric::PowerW),
            _ => None,
        }
    }

    /// The value this quantity has in `signal`, if any (may be non-finite).
    pub(crate) fn value_in(&self, signal: &Signal) -> Option<f64> {
        match (self, signal) {
            (Numeric::Temperature, Signal::Temperature { celsius }) => Some(*celsius),
            (Numeric::HeartRate, Signal::HeartRate { bpm }) => Some(*bpm),
            (Numeric::Battery, Signal::Battery { percent }) => Some(*percent),
            (Numeric::PowerW, Signal::PowerMeter { power_w, .. }) => *power_w,
            _ => None,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Numeric::Temperature => "temperature",
            Numeric::HeartRate => "heart rate",
            Numeric::Battery => "battery",
            Numeric::PowerW => "power",
        }
    }

    pub(crate) fn unit(&self) -> &'static str {
        match self {
            Numeric::Temperature => " °C",
            Numeric::HeartRate => " bpm",
            Numeric::Battery => "%",
            Numeric::PowerW => " W",
        }
    }
}

/// One validated rule (after household overrides, when looked up per household).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) severity: Severity,
    pub(crate) title: String,
    pub(crate) enabled: bool,
    /// Highest escalation level (0 family + village, 1 town); `None`: up to the district.
    pub(crate) max_level: Option<u8>,
    pub(crate) kind: RuleKind,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RuleKind {
    /// `flag`: on/off signal (raise on true, clear on false) vs event.
    Instant {
        signal: &'static str,
        flag: bool,
    },
    Threshold(Threshold),
    Inactivity(Inactivity),
    NightBedExit(NightBedExit),
    DailyDeadline(DailyDeadline),
    UtilityLow(UtilityLow),
    UtilityHigh(UtilityHigh),
    ContinuousFlow(ContinuousFlow),
    DeviceOffline(DeviceOffline),
    HomeUnreachable(HomeUnreachable),
    AreaOutage(AreaOutage),
    LowBattery(LowBattery),
    AwayExpired(AwayExpired),
    VisitTarget(VisitTarget),
}

impl RuleKind {
    /// The `kind` name used in rule files.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            RuleKind::Instant { .. } => "instant",
            RuleKind::Threshold(_) => "threshold",
            RuleKind::Inactivity(_) => "inactivity",
            RuleKind::NightBedExit(_) => "night_bed_exit",
            RuleKind::DailyDeadline(_) => "daily_deadline",
            RuleKind::UtilityLow(_) => "utility_low",
            RuleKind::UtilityHigh(_) => "utility_high",
            RuleKind::ContinuousFlow(_) => "continuous_flow",
            RuleKind::DeviceOffline(_) => "device_offline",
            RuleKind::HomeUnreachable(_) => "home_unreachable",
            RuleKind::AreaOutage(_) => "area_outage",
            RuleKind::LowBattery(_) => "low_battery",
            RuleKind::AwayExpired(_) => "away_expired",
            RuleKind::VisitTarget(_) => "visit_target",
        }
    }

    /// Absence rules notice that nothing happens. They are suspended while the
    /// household is in an away / hospital / holiday mode, while a carer is
    /// visiting, and while the home is unreachable (its devices are offline).
    pub(crate) fn is_absence(&self) -> bool {
        matches!(
            self,
            RuleKind::Inactivity(_)
                | RuleKind::NightBedExit(_)
                | RuleKind::DailyDeadline(_)
                | RuleKind::UtilityLow(_)
        )
    }
}

/// Which utility meter a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Meter {
    /// Water, in m³.
    Water,
    /// Electricity, in kWh.
    Power,
}

impl Meter {
    fn parse(s: &str) -> Option<Meter> {
        match s {
            "water" => Some(Meter::Water),
            "power" => Some(Meter::Power),
            _ => None,
        }
    }

    pub(crate) fn unit(&self) -> &'static str {
        match self {
            Meter::Water => "m³",
            Meter::Power => "kWh",
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Meter::Water => "water",
            Meter::Power => "electricity",
        }
    }
}

/// `night_bed_exit`: out of bed inside the night window, then no sign of life
/// (of `classes`) and not back in bed for `quiet_ms`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NightBedExit {
    pub(crate) window: Window,
    pub(crate) quiet_ms: i64,
    pub(crate) classes: Vec<ActivityClass>,
}

/// `daily_deadline`: no activity of `classes` between local `from` and `by`
/// (minutes after local midnight, `from < by`) raises at `by`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DailyDeadline {
    pub(crate) classes: Vec<ActivityClass>,
    pub(crate) from_min: u32,
    pub(crate) by_min: u32,
}

/// `utility_low`: less than `below` used over the last `window_ms`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UtilityLow {
    pub(crate) meter: Meter,
    pub(crate) below: f64,
    pub(crate) window_ms: i64,
}

/// `utility_high`: more than `above` used within the last `window_ms`;
/// clears once the use in the window is down to `clear_below`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UtilityHigh {
    pub(crate) meter: Meter,
    pub(crate) above: f64,
    pub(crate) clear_below: f64,
    pub(crate) window_ms: i64,
}

/// `continuous_flow`: every meter reading for `for_ms` shows use of at least
/// `min_per_hour` per hour of its interval; readings further apart than
/// `max_gap_ms` break the run (we cannot tell what happened in between).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContinuousFlow {
    pub(crate) meter: Meter,
    pub(crate) for_ms: i64,
    pub(crate) min_per_hour: f64,
    pub(crate) max_gap_ms: i64,
}

/// `home_unreachable`: at least `min_devices` devices and at least
/// `min_share` of the household's devices are offline. Device-offline alarms
/// are held for `hold_ms` so that a home going dark gives one alarm.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HomeUnreachable {
    pub(crate) min_devices: u32,
    pub(crate) min_share: f64,
    pub(crate) hold_ms: i64,
}

/// `area_outage`: at least `min_households` households of one village became
/// unreachable within `within_ms` of each other. Home-unreachable alarms are
/// held for `hold_ms` so that an outage gives one grouped incident.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AreaOutage {
    pub(crate) min_households: u32,
    pub(crate) within_ms: i64,
    pub(crate) hold_ms: i64,
}

/// `away_expired`: a mode expired and no sign of life followed within `grace_ms`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AwayExpired {
    pub(crate) grace_ms: i64,
}

/// `visit_target`: fewer than `per_week` carer visits in a local calendar
/// week (Monday 00:00 to Monday 00:00).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VisitTarget {
    pub(crate) per_week: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Threshold {
    pub(crate) signal: Numeric,
    pub(crate) above: Option<f64>,
    pub(crate) below: Option<f64>,
    pub(crate) for_ms: i64,
    pub(crate) clear_ms: i64,
    pub(crate) margin: f64,
    /// Readings beyond the limit needed in a row before the alarm (1 = any).
    pub(crate) consecutive: u32,
}

impl Threshold {
    /// Out of range (strictly beyond a limit). `v` must be finite.
    pub(crate) fn beyond(&self, v: f64) -> bool {
        self.above.is_some_and(|a| v > a) || self.below.is_some_and(|b| v < b)
    }

    /// Back in range by at least the margin. `v` must be finite.
    pub(crate) fn back_in_range(&self, v: f64) -> bool {
        !matches!(self.above, Some(a) if v > a - self.margin)
            && !matches!(self.below, Some(b) if v < b + self.margin)
    }

    /// "above 35 °C" / "below 10 °C" for the side `v` is on.
    pub(crate) fn describe_limit(&self, v: f64) -> String {
        let unit = self.signal.unit();
        match (self.above, self.below) {
            (Some(_), Some(b)) if v < b => format!("below {}{unit}", crate::timefmt::number(b)),
            (Some(a), _) => format!("above {}{unit}", crate::timefmt::number(a)),
            (None, Some(b)) => format!("below {}{unit}", crate::timefmt::number(b)),
            (None, None) => "out of range".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Inactivity {
    pub(crate) classes: Vec<ActivityClass>,
    pub(crate) silence_ms: i64,
    pub(crate) window: Option<Window>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeviceOffline {
    pub(crate) heartbeat_ms: i64,
    pub(crate) missed: u32,
    pub(crate) silence_ms: i64,
    pub(crate) grace_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LowBattery {
    pub(crate) below: f64,
    pub(crate) clear_above: f64,
}

type RawFields = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq)]
struct Override {
    /// The rule's fields with every override for this household applied.
    fields: RawFields,
    rule: Rule,
}

/// A validated set of rules plus per-household overrides.
///
/// Build with [`RuleSet::from_toml_str`] or [`RuleSet::default_rules`]; add
/// override text with [`RuleSet::with_overrides_toml`].
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    offset_minutes: i32,
    rules: Vec<Rule>,
    /// Raw fields of each rule, by id, for re-validating overrides.
    raw: BTreeMap<String, RawFields>,
    /// household -> rule id -> effective rule.
    overrides: BTreeMap<String, BTreeMap<String, Override>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    timezone_offset: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawTable>>,
    #[serde(default, rename = "override")]
    overrides: Vec<Spanned<RawTable>>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<Value>>;

impl RuleSet {
    /// The built-in rule file (`rules/default.toml`), with comments for supervisors.
    pub const DEFAULT_TOML: &'static str = include_str!("../rules/default.toml");

    /// Parses and validates a rule file. Errors carry the line and column of
    /// the offending key or value.
    pub fn from_toml_str(src: &str) -> Result<RuleSet, RulesError> {
        let file: RawFile = toml::from_str(src).map_err(|e| RulesError::toml(src, &e))?;
        let offset_minutes = match &file.timezone_offset {
            None => 0,
            Some(tz) => {
                parse_offset(tz.get_ref()).map_err(|m| RulesError::invalid(src, &tz.span(), m))?
            }
        };
        let mut set = RuleSet {
            offset_minutes,
            rules: Vec::new(),
            raw: BTreeMap::new(),
            overrides: BTreeMap::new(),
        };
        let mut first_seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for table in &file.rule {
            let mut fields = Fields::new(src, table, "this [[rule]] table");
            let raw = fields.raw();
            let (rule, id_span) = build_rule(&mut fields)?;
            if let Some(first) = first_seen.get(&rule.id) {
                let line = crate::error::Location::of(src, first.start).line;
                return Err(RulesError::invalid(
                    src,
                    &id_span,
                    format!(
                        "duplicate rule id {:?} (first defined at line {line}); rule ids must be unique",
                        rule.id
                    ),
                ));
            }
            if let Some(kind @ ("home_unreachable" | "area_outage")) = Some(rule.kind.name()) {
                if let Some(other) = set.rules.iter().find(|r| r.kind.name() == kind) {
                    return Err(RulesError::invalid(
                        src,
                        &id_span,
                        format!(
                            "only one {kind} rule is allowed; {:?} is one already",
                            other.id
                        ),
                    ));
                }
            }
            first_seen.insert(rule.id.clone(), id_span);
            set.raw.insert(rule.id.clone(), raw);
            set.rules.push(rule);
        }
        for table in &file.overrides {
            set.apply_override(src, table)?;
        }
        Ok(set)
    }

    /// The built-in rules (`rules/default.toml`, also [`RuleSet::DEFAULT_TOML`]).
    ///
    /// # Panics
    /// Never in practice: the embedded file is fixed at compile time and a
    /// unit test checks that it parses.
    pub fn default_rules() -> RuleSet {
        match RuleSet::from_toml_str(Self::DEFAULT_TOML) {
            Ok(set) => set,
            Err(e) => panic!("built-in rules/default.toml is invalid: {e}"),
        }
    }

    /// Returns a copy of this rule set with the `[[override]]` tables of `src`
    /// applied on top of the existing ones (later settings win). `src` may
    /// contain only `[[override]]` tables; errors point into `src`.
    pub fn with_overrides_toml(&self, src: &str) -> Result<RuleSet, RulesError> {
        let file: RawFile = toml::from_str(src).map_err(|e| RulesError::toml(src, &e))?;
        if let Some(tz) = &file.timezone_offset {
            return Err(RulesError::invalid(
                src,
                &tz.span(),
                "`timezone_offset` can only be set in the main rule file, not in override text",
            ));
        }
        if let Some(table) = file.rule.first() {
            return Err(RulesError::invalid(
                src,
                &table.span(),
                "rules cannot be defined in override text; only [[override]] tables are allowed",
            ));
        }
        let mut set = self.clone();
        for table in &file.overrides {
            set.apply_override(src, table)?;
        }
        Ok(set)
    }

    /// Ids of all rules in file order (including rules disabled by default).
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// Ids of the rules in force for `household` (overrides applied, disabled
    /// rules left out), in file order.
    pub fn rule_ids_for(&self, household: &str) -> Vec<&str> {
        self.rules_for(household).map(|r| r.id.as_str()).collect()
    }

    /// The `kind` of rule `rule_id` (one of [`RULE_KINDS`]), if it exists.
    pub fn rule_kind(&self, rule_id: &str) -> Option<&'static str> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .map(|r| r.kind.name())
    }

    /// The district's UTC offset in minutes (`"+08:00"` → 480), used for
    /// time-of-day windows. 0 when the file does not set `timezone_offset`.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.offset_minutes
    }

    /// The enabled rules for `household`, overrides applied, in file order.
    pub(crate) fn rules_for<'a>(&'a self, household: &str) -> impl Iterator<Item = &'a Rule> + 'a {
        let own = self.overrides.get(household);
        self.rules
            .iter()
            .map(move |r| own.and_then(|m| m.get(&r.id)).map_or(r, |o| &o.rule))
            .filter(|r| r.enabled)
    }

    /// The district-wide `area_outage` rule, if one is enabled (at most one exists).
    pub(crate) fn area_rule(&self) -> Option<(&Rule, &AreaOutage)> {
        self.rules
            .iter()
            .filter(|r| r.enabled)
            .find_map(|r| match &r.kind {
                RuleKind::AreaOutage(a) => Some((r, a)),
                _ => None,
            })
    }

    /// The `home_unreachable` rule in force for `household`, if enabled.
    pub(crate) fn home_rule<'a>(
        &'a self,
        household: &str,
    ) -> Option<(&'a Rule, &'a HomeUnreachable)> {
        self.rules_for(household).find_map(|r| match &r.kind {
            RuleKind::HomeUnreachable(h) => Some((r, h)),
            _ => None,
        })
    }

    fn apply_override(&mut self, src: &str, table: &Spanned<RawTable>) -> Result<(), RulesError> {
        let mut f = Fields::new(src, table, "this [[override]] table");
        let (household, household_span) = f.req_str("household")?;
        if household.trim().is_empty() {
            return Err(f.err(&household_span, "`household` must not be empty"));
        }
        let (rule_id, rule_span) = f.req_str("rule")?;
        let Some(base) = self.raw.get(&rule_id) else {
            let known = self.rule_ids().join(", ");
            return Err(f.err(
                &rule_span,
                format!("override names unknown rule {rule_id:?} (rules defined: {known})"),
            ));
        };
        if self
            .rules
            .iter()
            .any(|r| r.id == rule_id && matches!(r.kind, RuleKind::AreaOutage(_)))
        {
            return Err(f.err(
                &rule_span,
                format!("rule {rule_id:?} groups whole villages (area_outage); it cannot be overridden for one household"),
            ));
        }
        for fixed in ["id", "kind"] {
            if let Some(e) = f.entries.get(fixed) {
                return Err(f.err(
                    &e.key_span,
                    format!("an override cannot change `{fixed}`; define a separate rule instead"),
                ));
            }
        }
        let start = self
            .overrides
            .get(&household)
            .and_then(|m| m.get(&rule_id))
            .map_or_else(|| base.clone(), |o| o.fields.clone());
        let span = table.span();
        let mut merged = Fields {
            src,
            table: span.clone(),
            what: "this [[override]] table".to_string(),
            entries: start
                .into_iter()
                .map(|(k, value)| {
                    let e = Entry {
                        value,
                        key_span: span.clone(),
                        value_span: span.clone(),
                    };
                    (k, e)
                })
                .collect(),
        };
        merged.entries.extend(f.entries);
        let fields = merged.raw();
        let (rule, _) = build_rule(&mut merged)?;
        self.overrides
            .entry(household)
            .or_default()
            .insert(rule_id, Override { fields, rule });
        Ok(())
    }
}

fn parse_offset(s: &str) -> Result<i32, String> {
    let usage = format!(
        "invalid timezone_offset {s:?}: expected \"+HH:MM\" or \"-HH:MM\" between -14:00 and +14:00, e.g. \"+08:00\""
    );
    let t = s.trim();
    if t == "Z" || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(usage),
    };
    let Some((h, m)) = rest.split_once(':') else {
        return Err(usage);
    };
    let ok = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return Err(usage);
    }
    let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
        return Err(usage);
    };
    if m > 59 || h * 60 + m > 14 * 60 {
        return Err(usage);
    }
    Ok(sign * (h * 60 + m))
}

/// A value and the span of its text.
type WithSpan<T> = (T, Range<usize>);

struct Entry {
    value: Value,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

/// The keys of one table, consumed one by one while validating; whatever is
/// left at the end is an unknown key.
struct Fields<'a> {
    src: &'a str,
    table: Range<usize>,
    what: String,
    entries: BTreeMap<String, Entry>,
}

fn a_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Fields<'a> {
    fn new(src: &'a str, table: &Spanned<RawTable>, what: &str) -> Fields<'a> {
        let entries = table
            .get_ref()
            .iter()
            .map(|(k, v)| {
                let e = Entry {
                    value: v.get_ref().clone(),
                    key_span: k.span(),
                    value_span: v.span(),
                };
                (k.get_ref().clone(), e)
            })
            .collect();
        Fields {
            src,
            table: table.span(),
            what: what.to_string(),
            entries,
        }
    }

    fn raw(&self) -> RawFields {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> RulesError {
        RulesError::invalid(self.src, span, message)
    }

    fn missing(&self, key: &str) -> RulesError {
        self.err(
            &self.table,
            format!("{} is missing the required key `{key}`", self.what),
        )
    }

    fn opt_str(&mut self, key: &str) -> Result<Option<(String, Range<usize>)>, RulesError> {
        match self.entries.remove(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::String(s),
                value_span,
                ..
            }) => Ok(Some((s, value_span))),
            Some(e) => Err(self.err(
                &e.value_span,
                format!("`{key}` must be a string, not {}", a_type(&e.value)),
            )),
        }
    }

    fn req_str(&mut self, key: &str) -> Result<(String, Range<usize>), RulesError> {
        match self.opt_str(key)? {
            Some(v) => Ok(v),
            None => Err(self.missing(key)),
        }
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, RulesError> {
        match self.entries.remove(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Boolean(b),
                ..
            }) => Ok(Some(b)),
            Some(e) => Err(self.err(
                &e.value_span,
                format!("`{key}` must be true or false, not {}", a_type(&e.value)),
            )),
        }
    }

    fn opt_num(&mut self, key: &str) -> Result<Option<(f64, Range<usize>)>, RulesError> {
        match self.entries.remove(key) {
            None => Ok(None),
            Some(e) => {
                let v = match e.value {
                    Value::Integer(i) => i as f64,
                    Value::Float(f) => f,
                    ref other => {
                        return Err(self.err(
                            &e.value_span,
                            format!("`{key}` must be a number, not {}", a_type(other)),
                        ))
                    }
                };
                if !v.is_finite() {
                    return Err(self.err(&e.value_span, format!("`{key}` must be a finite number")));
                }
                Ok(Some((v, e.value_span)))
            }
        }
    }

    fn req_num(&mut self, key: &str) -> Result<(f64, Range<usize>), RulesError> {
        match self.opt_num(key)? {
            Some(v) => Ok(v),
            None => Err(self.missing(key)),
        }
    }

    /// A duration in minutes, converted to ms.
    fn minutes(
        &mut self,
        key: &str,
        default: Option<f64>,
        allow_zero: bool,
    ) -> Result<i64, RulesError> {
        let (v, span) = match (self.opt_num(key)?, default) {
            (Some(x), _) => x,
            (None, Some(d)) => (d, self.table.clone()),
            (None, None) => return Err(self.missing(key)),
        };
        to_ms(
            self,
            key,
            v,
            &span,
            MINUTE_MS as f64,
            MAX_MINUTES,
            allow_zero,
            "minutes",
        )
    }

    fn opt_str_list(&mut self, key: &str) -> Result<Option<WithSpan<Vec<String>>>, RulesError> {
        match self.entries.remove(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Array(items),
                value_span,
                ..
            }) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            return Err(self.err(
                                &value_span,
                                format!(
                                    "`{key}` must be a list of strings, but it contains {}",
                                    a_type(&other)
                                ),
                            ))
                        }
                    }
                }
                Ok(Some((out, value_span)))
            }
            Some(e) => Err(self.err(
                &e.value_span,
                format!(
                    "`{key}` must be a list of strings, not {}",
                    a_type(&e.value)
                ),
            )),
        }
    }

    /// Rejects any key (left) that a rule of this kind does not take,
    /// pointing at the first one in the text.
    fn check_keys(&self, kind: &str, allowed: &[&str]) -> Result<(), RulesError> {
        let first = self
            .entries
            .iter()
            .filter(|(k, _)| !COMMON_KEYS.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
            .min_by_key(|(_, e)| e.key_span.start);
        match first {
            None => Ok(()),
            Some((k, e)) => {
                let mut keys: Vec<&str> = COMMON_KEYS.to_vec();
                keys.extend_from_slice(allowed);
                Err(self.err(
                    &e.key_span,
                    format!(
                        "unknown key `{k}` for rule kind `{kind}` (allowed keys: {})",
                        keys.join(", ")
                    ),
                ))
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn to_ms(
    f: &Fields<'_>,
    key: &str,
    v: f64,
    span: &Range<usize>,
    unit_ms: f64,
    max: f64,
    allow_zero: bool,
    unit: &str,
) -> Result<i64, RulesError> {
    if v < 0.0 || (!allow_zero && v == 0.0) {
        let bound = if allow_zero {
            "0 or more"
        } else {
            "more than 0"
        };
        return Err(f.err(
            span,
            format!(
                "`{key}` must be {bound} {unit}, got {}",
                crate::timefmt::number(v)
            ),
        ));
    }
    if v > max {
        return Err(f.err(
            span,
            format!("`{key}` is too large: at most {max} {unit} (one year)"),
        ));
    }
    Ok((v * unit_ms).round() as i64)
}

fn check_id(f: &Fields<'_>, id: &str, span: &Range<usize>) -> Result<(), RulesError> {
    if id.is_empty() {
        return Err(f.err(span, "rule `id` must not be empty"));
    }
    if id.len() > 64 {
        return Err(f.err(span, "rule `id` is too long (at most 64 characters)"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(f.err(
            span,
            format!("rule id {id:?} may only contain ASCII letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// Validates one rule table; returns the rule and the span of its `id` value.
fn build_rule(f: &mut Fields<'_>) -> Result<(Rule, Range<usize>), RulesError> {
    let (id, id_span) = f.req_str("id")?;
    check_id(f, &id, &id_span)?;
    let (kind_name, kind_span) = f.req_str("kind")?;
    let Some(kind_name) = RULE_KINDS.into_iter().find(|k| *k == kind_name) else {
        return Err(f.err(
            &kind_span,
            format!(
                "unknown rule kind {kind_name:?} (expected one of: {})",
                RULE_KINDS.join(", ")
            ),
        ));
    };
    let (severity, severity_span) = f.req_str("severity")?;
    let severity: Severity = severity
        .parse()
        .map_err(|e: crate::UnknownSeverity| f.err(&severity_span, e.to_string()))?;
    let (title, title_span) = f.req_str("title")?;
    if title.trim().is_empty() {
        return Err(f.err(&title_span, "`title` must not be empty"));
    }
    let enabled = f.opt_bool("enabled")?.unwrap_or(true);
    let max_level = match f.opt_str("escalate_to")? {
        None => None,
        Some((level, span)) => match level.as_str() {
            "village" => Some(0),
            "town" => Some(1),
            "district" => None,
            other => {
                return Err(f.err(
                    &span,
                    format!(
                    "`escalate_to` must be \"village\", \"town\" or \"district\", got {other:?}"
                ),
                ))
            }
        },
    };
    // Unknown keys first: a misspelt key is the likeliest cause of any later error.
    let allowed: &[&str] = match kind_name {
        "instant" => &["signal"],
        "threshold" => &[
            "signal",
            "above",
            "below",
            "for_minutes",
            "clear_minutes",
            "clear_margin",
            "consecutive",
        ],
        "inactivity" => &["activity", "hours", "window"],
        "night_bed_exit" => &["window", "minutes", "activity"],
        "daily_deadline" => &["activity", "from", "by"],
        "utility_low" => &["meter", "below", "hours"],
        "utility_high" => &["meter", "above", "clear_below", "hours"],
        "continuous_flow" => &["meter", "hours", "min_per_hour", "max_gap_minutes"],
        "device_offline" => &[
            "heartbeat_minutes",
            "missed_heartbeats",
            "offline_grace_minutes",
        ],
        "home_unreachable" => &["min_devices", "min_share", "hold_minutes"],
        "area_outage" => &["min_households", "within_minutes", "hold_minutes"],
        "away_expired" => &["grace_hours"],
        "visit_target" => &["per_week"],
        _ => &["below_percent", "clear_above_percent"],
    };
    f.check_keys(kind_name, allowed)?;
    let kind = match kind_name {
        "instant" => instant(f)?,
        "threshold" => threshold(f)?,
        "inactivity" => inactivity(f)?,
        "night_bed_exit" => night_bed_exit(f)?,
        "daily_deadline" => daily_deadline(f)?,
        "utility_low" => utility_low(f)?,
        "utility_high" => utility_high(f)?,
        "continuous_flow" => continuous_flow(f)?,
        "device_offline" => device_offline(f)?,
        "home_unreachable" => home_unreachable(f)?,
        "area_outage" => area_outage(f)?,
        "away_expired" => away_expired(f)?,
        "visit_target" => visit_target(f)?,
        _ => low_battery(f)?,
    };
    let rule = Rule {
        id,
        severity,
        title,
        enabled,
        max_level,
        kind,
    };
    Ok((rule, id_span))
}

fn instant(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let (signal, span) = f.req_str("signal")?;
    if let Some(s) = EVENT_SIGNALS.into_iter().find(|s| *s == signal) {
        return Ok(RuleKind::Instant {
            signal: s,
            flag: false,
        });
    }
    if let Some(s) = FLAG_SIGNALS.into_iter().find(|s| *s == signal) {
        return Ok(RuleKind::Instant {
            signal: s,
            flag: true,
        });
    }
    let message = if NUMERIC_SIGNALS.contains(&signal.as_str()) || signal == "power_meter" {
        format!("signal {signal:?} carries a number; use kind = \"threshold\" (or \"low_battery\") for it")
    } else if matches!(signal.as_str(), "steps" | "away") {
        format!("signal {signal:?} is a sign of life, not an alarm; rules that watch for life count it (activity classes \"steps\" and \"button\")")
    } else if matches!(
        signal.as_str(),
        "water_meter" | "water_volume" | "energy_volume"
    ) {
        format!("signal {signal:?} is a meter reading; use kind = \"utility_low\", \"utility_high\" or \"continuous_flow\" with meter = \"water\" or \"power\" (or an inactivity rule with activity = [\"water_use\"])")
    } else {
        format!(
            "unknown signal {signal:?} (expected one of: {})",
            SIGNAL_NAMES.join(", ")
        )
    };
    Err(f.err(&span, message))
}

fn threshold(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let (signal_name, signal_span) = f.req_str("signal")?;
    let Some(signal) = Numeric::parse(&signal_name) else {
        let message = if SIGNAL_NAMES.contains(&signal_name.as_str()) {
            format!(
                "signal {signal_name:?} has no numeric value; threshold rules take one of: {}",
                NUMERIC_SIGNALS.join(", ")
            )
        } else {
            format!(
                "unknown signal {signal_name:?} for a threshold rule (expected one of: {})",
                NUMERIC_SIGNALS.join(", ")
            )
        };
        return Err(f.err(&signal_span, message));
    };
    let above = f.opt_num("above")?;
    let below = f.opt_num("below")?;
    let for_ms = f.minutes("for_minutes", Some(0.0), true)?;
    let clear_ms = f.minutes("clear_minutes", Some(0.0), true)?;
    let (margin, margin_span) = f.opt_num("clear_margin")?.unwrap_or((0.0, f.table.clone()));
    if margin < 0.0 {
        return Err(f.err(
            &margin_span,
            format!(
                "`clear_margin` must be 0 or more, got {}",
                crate::timefmt::number(margin)
            ),
        ));
    }
    match (&above, &below) {
        (None, None) => {
            return Err(f.err(&f.table, format!("{} needs `above` and/or `below`", f.what)))
        }
        (Some((a, _)), Some((b, b_span))) => {
            if b >= a {
                return Err(f.err(
                    b_span,
                    format!(
                        "`below` ({}) must be lower than `above` ({})",
                        crate::timefmt::number(*b),
                        crate::timefmt::number(*a)
                    ),
                ));
            }
            if b + margin > a - margin {
                return Err(f.err(
                    &margin_span,
                    format!(
                        "`clear_margin` ({}) is too large: the value could never be back in range between {} and {}",
                        crate::timefmt::number(margin),
                        crate::timefmt::number(*b),
                        crate::timefmt::number(*a)
                    ),
                ));
            }
        }
        _ => {}
    }
    let consecutive = whole(f, "consecutive", 1, 1, 1000)?;
    Ok(RuleKind::Threshold(Threshold {
        signal,
        above: above.map(|x| x.0),
        below: below.map(|x| x.0),
        for_ms,
        clear_ms,
        margin,
        consecutive,
    }))
}

/// Every sign of life: the default `activity` of rules that watch for life.
const ALL_LIFE: [ActivityClass; 9] = ActivityClass::ALL;

/// The `activity` list: required when `default` is `None`.
fn activity(
    f: &mut Fields<'_>,
    default: Option<&[ActivityClass]>,
) -> Result<Vec<ActivityClass>, RulesError> {
    let (names, span) = match (f.opt_str_list("activity")?, default) {
        (Some(x), _) => x,
        (None, Some(d)) => return Ok(d.to_vec()),
        (None, None) => return Err(f.missing("activity")),
    };
    if names.is_empty() {
        return Err(f.err(&span, "`activity` must list at least one activity class"));
    }
    let mut classes = Vec::new();
    for name in &names {
        let Some(c) = ActivityClass::parse(name) else {
            let all: Vec<&str> = ActivityClass::ALL.iter().map(|c| c.as_str()).collect();
            return Err(f.err(
                &span,
                format!(
                    "unknown activity class {name:?} in `activity` (expected: {})",
                    all.join(", ")
                ),
            ));
        };
        if !classes.contains(&c) {
            classes.push(c);
        }
    }
    Ok(classes)
}

/// A whole number in `min..=max`, `default` when absent.
fn whole(
    f: &mut Fields<'_>,
    key: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, RulesError> {
    match f.opt_num(key)? {
        None => Ok(default),
        Some((v, span)) => {
            if v.fract() != 0.0 || v < f64::from(min) || v > f64::from(max) {
                return Err(f.err(
                    &span,
                    format!(
                        "`{key}` must be a whole number from {min} to {max}, got {}",
                        crate::timefmt::number(v)
                    ),
                ));
            }
            Ok(v as u32)
        }
    }
}

/// A duration in hours (> 0, at most a year), converted to ms.
fn hours(f: &mut Fields<'_>, key: &str, default: Option<f64>) -> Result<i64, RulesError> {
    hours_at_most(f, key, default, MAX_MINUTES / 60.0)
}

/// Meter windows: the engine keeps 8 days of readings.
const MAX_METER_WINDOW_HOURS: f64 = 192.0;

fn hours_at_most(
    f: &mut Fields<'_>,
    key: &str,
    default: Option<f64>,
    max: f64,
) -> Result<i64, RulesError> {
    let (v, span) = match (f.opt_num(key)?, default) {
        (Some(x), _) => x,
        (None, Some(d)) => (d, f.table.clone()),
        (None, None) => return Err(f.missing(key)),
    };
    if max < MAX_MINUTES / 60.0 && v > max {
        return Err(f.err(
            &span,
            format!(
                "`{key}` is too large: at most {max} hours (8 days of meter readings are kept)"
            ),
        ));
    }
    to_ms(
        f,
        key,
        v,
        &span,
        60.0 * MINUTE_MS as f64,
        MAX_MINUTES / 60.0,
        false,
        "hours",
    )
}

/// A positive amount (m³ or kWh).
fn amount(f: &mut Fields<'_>, key: &str, default: Option<f64>) -> Result<f64, RulesError> {
    let (v, span) = match (f.opt_num(key)?, default) {
        (Some(x), _) => x,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(f.missing(key)),
    };
    if v <= 0.0 || v > 1e6 {
        return Err(f.err(
            &span,
            format!(
                "`{key}` must be more than 0 and at most 1000000, got {}",
                crate::timefmt::number(v)
            ),
        ));
    }
    Ok(v)
}

fn meter(f: &mut Fields<'_>) -> Result<Meter, RulesError> {
    let (name, span) = f.req_str("meter")?;
    Meter::parse(&name).ok_or_else(|| {
        f.err(
            &span,
            format!("unknown meter {name:?} (expected \"water\" or \"power\")"),
        )
    })
}

fn time_of_day(
    f: &mut Fields<'_>,
    key: &str,
    default: Option<u32>,
) -> Result<(u32, Range<usize>), RulesError> {
    match (f.opt_str(key)?, default) {
        (Some((text, span)), _) => {
            let m = crate::window::parse_hhmm(text.trim(), false)
                .map_err(|e| f.err(&span, format!("invalid `{key}`: {e}")))?;
            Ok((m, span))
        }
        (None, Some(d)) => Ok((d, f.table.clone())),
        (None, None) => Err(f.missing(key)),
    }
}

fn night_bed_exit(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let Some((text, span)) = f.opt_str("window")? else {
        return Err(f.missing("window"));
    };
    let window = Window::parse(&text).map_err(|m| f.err(&span, m))?;
    let quiet_ms = f.minutes("minutes", None, false)?;
    let classes = activity(
        f,
        Some(&[
            ActivityClass::Motion,
            ActivityClass::Door,
            ActivityClass::WaterUse,
            ActivityClass::PowerUse,
            ActivityClass::Button,
            ActivityClass::Checkin,
            ActivityClass::Visit,
        ]),
    )?;
    if classes.contains(&ActivityClass::Bed) {
        return Err(f.err(
            &f.table,
            "`activity` of a night_bed_exit rule cannot include \"bed\": getting back into bed already ends the watch",
        ));
    }
    Ok(RuleKind::NightBedExit(NightBedExit {
        window,
        quiet_ms,
        classes,
    }))
}

fn daily_deadline(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let classes = activity(f, Some(&ALL_LIFE))?;
    let (from_min, _) = time_of_day(f, "from", Some(0))?;
    let (by_min, by_span) = time_of_day(f, "by", None)?;
    if by_min <= from_min {
        return Err(f.err(
            &by_span,
            "`by` must be later in the day than `from` (the check cannot span midnight)",
        ));
    }
    Ok(RuleKind::DailyDeadline(DailyDeadline {
        classes,
        from_min,
        by_min,
    }))
}

fn utility_low(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let meter = meter(f)?;
    let below = amount(f, "below", None)?;
    let window_ms = hours_at_most(f, "hours", None, MAX_METER_WINDOW_HOURS)?;
    Ok(RuleKind::UtilityLow(UtilityLow {
        meter,
        below,
        window_ms,
    }))
}

fn utility_high(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let meter = meter(f)?;
    let above = amount(f, "above", None)?;
    let clear_span = f.entries.get("clear_below").map(|e| e.value_span.clone());
    let clear_below = amount(f, "clear_below", Some(above / 2.0))?;
    if clear_below >= above {
        let span = clear_span.unwrap_or_else(|| f.table.clone());
        return Err(f.err(&span, "`clear_below` must be lower than `above`"));
    }
    let window_ms = hours_at_most(f, "hours", None, MAX_METER_WINDOW_HOURS)?;
    Ok(RuleKind::UtilityHigh(UtilityHigh {
        meter,
        above,
        clear_below,
        window_ms,
    }))
}

fn continuous_flow(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let meter = meter(f)?;
    let for_ms = hours(f, "hours", None)?;
    let default_rate = match meter {
        Meter::Water => 0.001,
        Meter::Power => 0.05,
    };
    let min_per_hour = amount(f, "min_per_hour", Some(default_rate))?;
    let max_gap_ms = f.minutes("max_gap_minutes", Some(120.0), false)?;
    Ok(RuleKind::ContinuousFlow(ContinuousFlow {
        meter,
        for_ms,
        min_per_hour,
        max_gap_ms,
    }))
}

fn home_unreachable(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let min_devices = whole(f, "min_devices", 2, 1, 10_000)?;
    let min_share = match f.opt_num("min_share")? {
        None => 0.5,
        Some((v, span)) => {
            if !(v > 0.0 && v <= 1.0) {
                return Err(f.err(
                    &span,
                    format!(
                        "`min_share` must be more than 0 and at most 1, got {}",
                        crate::timefmt::number(v)
                    ),
                ));
            }
            v
        }
    };
    let hold_ms = f.minutes("hold_minutes", Some(10.0), true)?;
    Ok(RuleKind::HomeUnreachable(HomeUnreachable {
        min_devices,
        min_share,
        hold_ms,
    }))
}

fn area_outage(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let min_households = whole(f, "min_households", 5, 2, 100_000)?;
    let within_ms = f.minutes("within_minutes", Some(15.0), false)?;
    let hold_ms = f.minutes("hold_minutes", Some(10.0), true)?;
    Ok(RuleKind::AreaOutage(AreaOutage {
        min_households,
        within_ms,
        hold_ms,
    }))
}

fn away_expired(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let grace_ms = hours(f, "grace_hours", Some(2.0))?;
    Ok(RuleKind::AwayExpired(AwayExpired { grace_ms }))
}

fn visit_target(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let per_week = whole(f, "per_week", 3, 1, 100)?;
    Ok(RuleKind::VisitTarget(VisitTarget { per_week }))
}

fn inactivity(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let classes = activity(f, None)?;
    let (hours, hours_span) = f.req_num("hours")?;
    let silence_ms = to_ms(
        f,
        "hours",
        hours,
        &hours_span,
        60.0 * MINUTE_MS as f64,
        MAX_MINUTES / 60.0,
        false,
        "hours",
    )?;
    let window = match f.opt_str("window")? {
        None => None,
        Some((text, span)) => Some(Window::parse(&text).map_err(|m| f.err(&span, m))?),
    };
    Ok(RuleKind::Inactivity(Inactivity {
        classes,
        silence_ms,
        window,
    }))
}

fn device_offline(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let heartbeat_ms = f.minutes("heartbeat_minutes", None, false)?;
    let missed = match f.opt_num("missed_heartbeats")? {
        None => 3,
        Some((v, span)) => {
            if v.fract() != 0.0 || !(1.0..=10_000.0).contains(&v) {
                return Err(f.err(
                    &span,
                    format!(
                        "`missed_heartbeats` must be a whole number from 1 to 10000, got {}",
                        crate::timefmt::number(v)
                    ),
                ));
            }
            v as u32
        }
    };
    let grace_ms = f.minutes("offline_grace_minutes", Some(2.0), true)?;
    let silence_ms = heartbeat_ms.saturating_mul(i64::from(missed));
    Ok(RuleKind::DeviceOffline(DeviceOffline {
        heartbeat_ms,
        missed,
        silence_ms,
        grace_ms,
    }))
}

fn low_battery(f: &mut Fields<'_>) -> Result<RuleKind, RulesError> {
    let (below, below_span) = f.req_num("below_percent")?;
    if !(below > 0.0 && below <= 100.0) {
        return Err(f.err(
            &below_span,
            format!(
                "`below_percent` must be more than 0 and at most 100, got {}",
                crate::timefmt::number(below)
            ),
        ));
    }
    let clear_above = match f.opt_num("clear_above_percent")? {
        None => (below + 10.0).min(100.0),
        Some((v, span)) => {
            if v < below || v > 100.0 {
                return Err(f.err(
                    &span,
                    format!(
                        "`clear_above_percent` must be between `below_percent` ({}) and 100, got {}",
                        crate::timefmt::number(below),
                        crate::timefmt::number(v)
                    ),
                ));
            }
            v
        }
    };
    Ok(RuleKind::LowBattery(LowBattery { below, clear_above }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_parse() {
        let set = RuleSet::from_toml_str(RuleSet::DEFAULT_TOML).unwrap();
        assert_eq!(set, RuleSet::default_rules());
        assert_eq!(set.utc_offset_minutes(), 480);
        assert!(set.rule_ids().contains(&"sos"));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+08:00"), Ok(480));
        assert_eq!(parse_offset("-05:30"), Ok(-330));
        assert_eq!(parse_offset("Z"), Ok(0));
        assert_eq!(parse_offset("+14:00"), Ok(840));
        for bad in ["8", "+8:00", "+15:00", "+08:60", "08:00", "+08", ""] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }
}
