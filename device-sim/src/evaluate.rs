//! `device-sim evaluate`: compare the alarms a hub raised with a scenario's ground truth.
//!
//! Detections are read from the hub's alarm timeline (`GET /api/updates`): every
//! `raised` step, and every `repeated` step (the same condition raised again while its
//! alarm was still open). A detection matches an incident's expectation when household,
//! rule (and device, if named) agree and it happened between the incident's start and its
//! deadline; a grouped alarm (`village-outage`, `"household_id": null`) matches by
//! village instead. Detections that match nothing are false alarms, counted per 100
//! elder-days for the elder-facing rules and separately for device health
//! ([`DEVICE_HEALTH_RULES`]).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::sim::truth::WEEK_MS;
use crate::sim::{local_midnight, weekday, Expectation, Incident, Scenario, DAY_MS, HOUR_MS};

/// One alarm (or repeat) as the hub reported it.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub at: i64,
    /// `None` for a grouped alarm (`village-outage`: `"household_id": null`).
    pub household: Option<String>,
    pub village: Option<String>,
    pub rule: String,
    pub device: Option<String>,
    pub severity: String,
}

/// Rules about the equipment rather than the elder; every other rule is elder-facing.
pub const DEVICE_HEALTH_RULES: [&str; 4] = [
    "device-offline",
    "home-unreachable",
    "village-outage",
    "low-battery",
];

fn is_health(rule: &str) -> bool {
    DEVICE_HEALTH_RULES.contains(&rule)
}

/// The raise/repeat steps of one `GET /api/updates` page, and the highest `seq` seen.
/// Tolerates a null or missing `household_id` (grouped alarms) and `village_id`.
pub fn parse_updates(page: &Value, since: i64) -> (Vec<Detection>, i64, usize) {
    let updates = page["updates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut seq = since;
    let mut out = Vec::new();
    for u in updates {
        seq = seq.max(u["seq"].as_i64().unwrap_or(seq));
        let step = u["step"].as_str().unwrap_or_default();
        if step != "raised" && step != "repeated" {
            continue;
        }
        let a = &u["alarm"];
        let text = |k: &str| a[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        out.push(Detection {
            at: u["at"].as_i64().unwrap_or_default(),
            household: text("household_id"),
            village: text("village_id"),
            rule: text("rule_id").unwrap_or_default(),
            device: text("device_id"),
            severity: text("severity").unwrap_or_default(),
        });
    }
    (out, seq, updates.len())
}

/// Every raise/repeat in scope of `token`, oldest first.
pub async fn fetch_detections(http: &str, token: &str) -> anyhow::Result<Vec<Detection>> {
    let client = reqwest::Client::new();
    let mut since = 0i64;
    let mut out = Vec::new();
    loop {
        let v: Value = client
            .get(format!(
                "{}/api/updates?since_seq={since}&limit=5000",
                http.trim_end_matches('/')
            ))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()
            .context("GET /api/updates")?
            .json()
            .await?;
        let (page, seq, n) = parse_updates(&v, since);
        if n == 0 || seq <= since {
            break;
        }
        out.extend(page);
        since = seq;
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindStats {
    pub incidents: usize,
    /// Expectations that must be detected, and how many were.
    pub required: usize,
    pub detected: usize,
    pub missed: usize,
    pub delay_median_s: Option<f64>,
    pub delay_worst_s: Option<f64>,
    /// Alarms that were expected consequences but not the goal (e.g. away without away mode).
    pub expected_false_alarms: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missed {
    pub incident: String,
    pub kind: String,
    pub household: String,
    /// For a grouped alarm: its village.
    pub village: Option<String>,
    pub rule: String,
    pub note: String,
}

/// What became of the alarms of one rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleStats {
    /// Raised or repeated, in all.
    pub alarms: usize,
    /// Matched a required expectation (a detection).
    pub detections: usize,
    /// Matched an acceptable consequence.
    pub expected: usize,
    /// Matched nothing: false alarms.
    pub unexplained: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub households: usize,
    pub days: u32,
    pub elder_days: f64,
    pub detections: usize,
    pub per_incident_kind: BTreeMap<String, KindStats>,
    pub missed: Vec<Missed>,
    /// Unexplained elder-facing alarms (every rule but [`DEVICE_HEALTH_RULES`]), by rule.
    pub false_alarms_by_rule: BTreeMap<String, usize>,
    /// The same per 100 elder-days.
    pub false_alarms_per_100_elder_days: f64,
    /// Device-health alarms (offline, unreachable, village outage, battery) in all,
    /// explained or not.
    pub device_health_alarms: usize,
    /// Unexplained device-health alarms, by rule.
    pub device_health_unexplained_by_rule: BTreeMap<String, usize>,
    /// Grouped alarms (no household, e.g. `village-outage`) in all, and unexplained.
    pub grouped_alarms: usize,
    pub grouped_unexplained: usize,
    /// `visits-below-target` flags for a week that began before the run (the hub saw part
    /// of it only): neither detections nor false alarms.
    pub partial_week_flags: usize,
    pub by_rule: BTreeMap<String, RuleStats>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Unexplained,
    Required,
    Acceptable,
}

fn matches(inc: &Incident, exp: &Expectation, d: &Detection, slack_ms: i64) -> bool {
    let whose = match &exp.village {
        Some(v) => d.household.is_none() && d.village.as_deref() == Some(v.as_str()),
        None => d.household.as_deref() == Some(inc.household.as_str()),
    };
    whose
        && d.rule == exp.rule_id
        && exp
            .device
            .as_ref()
            .is_none_or(|dev| d.device.as_ref() == Some(dev))
        && d.at >= inc.start
        && d.at <= inc.start + exp.within_ms + slack_ms
}

/// `slack_ms`: how late the hub may observe an event because of the simulation's time
/// step (`device-sim run --step-secs`); added to every expectation's deadline.
///
/// Required expectations are matched first; an alarm that satisfies one is a detection,
/// and only the alarms left over are matched against the acceptable consequences.
pub fn evaluate(scenario: &Scenario, detections: &[Detection], slack_ms: i64) -> Report {
    let households: HashSet<&str> = scenario
        .district
        .households
        .iter()
        .map(|h| h.id.as_str())
        .collect();
    let villages: HashSet<&str> = scenario
        .district
        .villages
        .iter()
        .map(|v| v.id.as_str())
        .collect();
    let ours: Vec<&Detection> = detections
        .iter()
        .filter(|d| match &d.household {
            Some(h) => households.contains(h.as_str()),
            None => d.village.as_deref().is_some_and(|v| villages.contains(v)),
        })
        .collect();
    let mut used = vec![Use::Unexplained; ours.len()];
    let mut kinds: BTreeMap<String, KindStats> = BTreeMap::new();
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut missed = Vec::new();
    for inc in &scenario.incidents {
        let kind = inc.kind.as_str().to_owned();
        let stats = kinds.entry(kind.clone()).or_default();
        stats.incidents += 1;
        for exp in inc.expected.iter().filter(|e| e.must) {
            stats.required += 1;
            let found: Vec<usize> = (0..ours.len())
                .filter(|&i| matches(inc, exp, ours[i], slack_ms))
                .collect();
            for &i in &found {
                used[i] = Use::Required;
            }
            match found.first() {
                Some(&i) => {
                    stats.detected += 1;
                    delays
                        .entry(kind.clone())
                        .or_default()
                        .push((ours[i].at - inc.start) as f64 / 1000.0);
                }
                None => {
                    stats.missed += 1;
                    missed.push(Missed {
                        incident: inc.id.clone(),
                        kind: kind.clone(),
                        household: inc.household.clone(),
                        village: exp.village.clone(),
                        rule: exp.rule_id.clone(),
                        note: exp.note.clone(),
                    });
                }
            }
        }
    }
    for inc in &scenario.incidents {
        let stats = kinds.entry(inc.kind.as_str().to_owned()).or_default();
        for exp in inc.expected.iter().filter(|e| !e.must) {
            for (i, d) in ours.iter().enumerate() {
                if used[i] == Use::Unexplained && matches(inc, exp, d, slack_ms) {
                    used[i] = Use::Acceptable;
                    stats.expected_false_alarms += 1;
                }
            }
        }
    }
    for (kind, mut d) in delays {
        d.sort_by(f64::total_cmp);
        if let Some(s) = kinds.get_mut(&kind) {
            s.delay_median_s = d.get(d.len() / 2).copied();
            s.delay_worst_s = d.last().copied();
        }
    }

    // A week the hub did not see whole: the one the run started in, unless it started
    // on a Monday at midnight.
    let start = scenario.config.start;
    let monday = local_midnight(start) - i64::from(weekday(start)) * DAY_MS;
    let partial_week_end = (monday < start).then_some(monday + WEEK_MS);

    let mut by_rule: BTreeMap<String, RuleStats> = BTreeMap::new();
    let mut false_alarms_by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut device_health_unexplained_by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let (mut partial_week_flags, mut grouped_alarms, mut grouped_unexplained) = (0, 0, 0);
    for (d, u) in ours.iter().zip(&used) {
        let r = by_rule.entry(d.rule.clone()).or_default();
        r.alarms += 1;
        if d.household.is_none() {
            grouped_alarms += 1;
        }
        match u {
            Use::Required => r.detections += 1,
            Use::Acceptable => r.expected += 1,
            Use::Unexplained => {
                if d.rule == "visits-below-target"
                    && partial_week_end
                        .is_some_and(|end| d.at >= end && d.at <= end + HOUR_MS + slack_ms)
                {
                    partial_week_flags += 1;
                    continue;
                }
                r.unexplained += 1;
                if d.household.is_none() {
                    grouped_unexplained += 1;
                }
                let table = if is_health(&d.rule) {
                    &mut device_health_unexplained_by_rule
                } else {
                    &mut false_alarms_by_rule
                };
                *table.entry(d.rule.clone()).or_default() += 1;
            }
        }
    }
    let elder_days = households.len() as f64 * f64::from(scenario.config.days);
    let false_total: usize = false_alarms_by_rule.values().sum();
    Report {
        households: households.len(),
        days: scenario.config.days,
        elder_days,
        detections: ours.len(),
        per_incident_kind: kinds,
        missed,
        false_alarms_per_100_elder_days: if elder_days > 0.0 {
            false_total as f64 * 100.0 / elder_days
        } else {
            0.0
        },
        false_alarms_by_rule,
        device_health_alarms: ours.iter().filter(|d| is_health(&d.rule)).count(),
        device_health_unexplained_by_rule,
        grouped_alarms,
        grouped_unexplained,
        partial_week_flags,
        by_rule,
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "# Detection report\n\n{} households × {} days = {:.0} elder-days; {} alarms raised or repeated.\n\n",
            self.households, self.days, self.elder_days, self.detections
        ));
        s.push_str("| incident | n | must detect | detected | missed | median delay | worst delay | expected false alarms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        let secs = |v: Option<f64>| v.map_or("–".to_owned(), human);
        for (k, v) in &self.per_incident_kind {
            s.push_str(&format!(
                "| {k} | {} | {} | {} | {} | {} | {} | {} |\n",
                v.incidents,
                v.required,
                v.detected,
                v.missed,
                secs(v.delay_median_s),
                secs(v.delay_worst_s),
                v.expected_false_alarms
            ));
        }
        s.push_str(&format!(
            "\n**Unexplained elder-facing alarms**: {:.2} per 100 elder-days (every rule except the \
             device-health ones: {}).\n\n| rule | unexplained alarms |\n|---|---:|\n",
            self.false_alarms_per_100_elder_days,
            DEVICE_HEALTH_RULES.join(", ")
        ));
        for (r, n) in &self.false_alarms_by_rule {
            s.push_str(&format!("| {r} | {n} |\n"));
        }
        s.push_str(&format!(
            "\n**Device-health alarms**: {} in all; unexplained:\n\n| rule | unexplained alarms |\n|---|---:|\n",
            self.device_health_alarms
        ));
        for (r, n) in &self.device_health_unexplained_by_rule {
            s.push_str(&format!("| {r} | {n} |\n"));
        }
        s.push_str(&format!(
            "\n**Grouped alarms** (no household, e.g. `village-outage`): {}, of which unexplained: {}.\n",
            self.grouped_alarms, self.grouped_unexplained
        ));
        if self.partial_week_flags > 0 {
            s.push_str(&format!(
                "\n`visits-below-target` for the week the run started in (seen in part only, not counted): {}.\n",
                self.partial_week_flags
            ));
        }
        s.push_str("\n## Alarms by rule\n\n| rule | alarms | detections | expected | unexplained |\n|---|---:|---:|---:|---:|\n");
        for (r, v) in &self.by_rule {
            s.push_str(&format!(
                "| {r} | {} | {} | {} | {} |\n",
                v.alarms, v.detections, v.expected, v.unexplained
            ));
        }
        if !self.missed.is_empty() {
            s.push_str("\n## Missed\n\n| incident | kind | household | rule | note |\n|---|---|---|---|---|\n");
            for m in &self.missed {
                let whose = match &m.village {
                    Some(v) => format!("{} (village {v})", m.household),
                    None => m.household.clone(),
                };
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    m.incident, m.kind, whose, m.rule, m.note
                ));
            }
        }
        s
    }
}

fn human(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::sim::{District, IncidentKind, SimConfig};

    #[test]
    fn updates_with_a_null_household_parse() {
        let page = json!({ "updates": [
            { "seq": 7, "step": "raised", "at": 10, "alarm": {
                "household_id": "h-0001", "village_id": "v-001", "town_id": "t-01",
                "rule_id": "sos", "device_id": "h-0001-sos", "severity": "critical" } },
            { "seq": 8, "step": "raised", "at": 20, "alarm": {
                "household_id": null, "village_id": "v-002", "town_id": "t-01",
                "rule_id": "village-outage", "device_id": null, "severity": "warning" } },
            { "seq": 9, "step": "acknowledged", "at": 30, "alarm": {} },
            { "seq": 10, "step": "repeated", "at": 40, "alarm": { "rule_id": "no-water-use" } },
        ] });
        let (d, seq, n) = parse_updates(&page, 6);
        assert_eq!((seq, n, d.len()), (10, 4, 3));
        assert_eq!(d[0].household.as_deref(), Some("h-0001"));
        assert_eq!(d[0].device.as_deref(), Some("h-0001-sos"));
        assert_eq!(d[1].household, None);
        assert_eq!(d[1].village.as_deref(), Some("v-002"));
        assert_eq!(d[1].rule, "village-outage");
        assert_eq!((d[2].household.as_deref(), d[2].at), (None, 40));
        let (none, seq, n) = parse_updates(&json!({ "updates": [] }), 10);
        assert_eq!((none.len(), seq, n), (0, 10, 0));
    }

    fn expectation(rule: &str, village: Option<&str>, must: bool, within_ms: i64) -> Expectation {
        Expectation {
            rule_id: rule.into(),
            device: None,
            village: village.map(Into::into),
            must,
            within_ms,
            note: String::new(),
        }
    }

    fn detection(at: i64, household: Option<&str>, village: &str, rule: &str) -> Detection {
        Detection {
            at,
            household: household.map(Into::into),
            village: Some(village.into()),
            rule: rule.into(),
            device: None,
            severity: "warning".into(),
        }
    }

    fn scenario(config: SimConfig, incidents: Vec<Incident>) -> Scenario {
        Scenario {
            district: District::build(&config),
            config,
            events: Vec::new(),
            incidents,
        }
    }

    #[test]
    fn grouped_alarms_match_by_village_and_false_alarms_are_split() {
        let config = SimConfig {
            households: 4,
            villages: 2,
            towns: 1,
            days: 10,
            ..SimConfig::default()
        };
        let t0 = config.start + DAY_MS;
        let district = District::build(&config);
        let (h1, v1) = (
            &district.households[0].id,
            &district.households[0].village_id,
        );
        let h2 = &district.households[1].id;
        let incidents = vec![
            Incident {
                id: "i-0001".into(),
                kind: IncidentKind::VillagePowerCut,
                household: h1.clone(),
                start: t0,
                end: t0 + 6 * HOUR_MS,
                expected: vec![
                    expectation("village-outage", Some(v1), true, 5 * HOUR_MS),
                    expectation("home-unreachable", None, false, 7 * HOUR_MS),
                ],
            },
            Incident {
                id: "i-0002".into(),
                kind: IncidentKind::NightFall,
                household: h2.clone(),
                start: t0,
                end: t0 + 8 * HOUR_MS,
                expected: vec![
                    expectation("night-out-of-bed", None, true, HOUR_MS),
                    expectation("night-out-of-bed", None, false, 9 * HOUR_MS),
                ],
            },
        ];
        let s = scenario(config, incidents);
        let detections = vec![
            // the grouped alarm: no household, the village
            detection(t0 + 4 * HOUR_MS, None, v1, "village-outage"),
            detection(t0 + 4 * HOUR_MS, Some(h1), v1, "home-unreachable"),
            // a second grouped alarm much later: unexplained, device health
            detection(t0 + 3 * DAY_MS, None, v1, "village-outage"),
            // the same household's grouped alarm does not count for the household
            detection(t0 + 30 * 60_000, Some(h2), v1, "night-out-of-bed"),
            detection(t0 + 2 * HOUR_MS, Some(h2), v1, "night-out-of-bed"),
            // false alarms: elder-facing and device health
            detection(t0 + 2 * DAY_MS, Some(h2), v1, "no-activity-daytime"),
            detection(t0 + 2 * DAY_MS, Some(h2), v1, "device-offline"),
            // not ours
            detection(t0, Some("h-9999"), "v-999", "sos"),
            detection(t0, None, "v-999", "village-outage"),
        ];
        let r = evaluate(&s, &detections, 60_000);
        assert_eq!(r.detections, 7);
        let cut = &r.per_incident_kind["village_power_cut"];
        assert_eq!(
            (cut.required, cut.detected, cut.expected_false_alarms),
            (1, 1, 1)
        );
        let night = &r.per_incident_kind["night_fall"];
        assert_eq!(
            (night.required, night.detected, night.expected_false_alarms),
            (1, 1, 1)
        );
        assert_eq!(night.delay_median_s, Some(1800.0));
        assert!(r.missed.is_empty(), "{:?}", r.missed);
        assert_eq!(r.false_alarms_by_rule.len(), 1);
        assert_eq!(r.false_alarms_by_rule["no-activity-daytime"], 1);
        assert!((r.false_alarms_per_100_elder_days - 100.0 / 40.0).abs() < 1e-9);
        assert_eq!(r.device_health_unexplained_by_rule["village-outage"], 1);
        assert_eq!(r.device_health_unexplained_by_rule["device-offline"], 1);
        assert_eq!(r.device_health_alarms, 4);
        assert_eq!((r.grouped_alarms, r.grouped_unexplained), (2, 1));
        assert_eq!(r.by_rule["night-out-of-bed"].detections, 1);
        assert_eq!(r.by_rule["night-out-of-bed"].expected, 1);
        let md = r.markdown();
        assert!(md.contains("**Grouped alarms**"), "{md}");

        // Nothing raised: the grouped expectation is reported missed, with its village.
        let r = evaluate(&s, &[], 60_000);
        let m = r
            .missed
            .iter()
            .find(|m| m.rule == "village-outage")
            .unwrap();
        assert_eq!(m.village.as_deref(), Some(v1.as_str()));
        assert!(r.markdown().contains(&format!("(village {v1})")));
    }

    #[test]
    fn a_flag_for_the_week_the_run_started_in_is_not_a_false_alarm() {
        // Start on a Wednesday: the first week end (Monday) was seen in part only.
        let config = SimConfig {
            households: 2,
            villages: 1,
            towns: 1,
            start: SimConfig::default().start + 2 * DAY_MS,
            days: 14,
            ..SimConfig::default()
        };
        let s = scenario(config, Vec::new());
        let h = s.district.households[0].id.clone();
        let v = s.district.households[0].village_id.clone();
        let first_monday = SimConfig::default().start + WEEK_MS;
        let detections = vec![
            detection(first_monday + 60_000, Some(&h), &v, "visits-below-target"),
            detection(first_monday + WEEK_MS, Some(&h), &v, "visits-below-target"),
        ];
        let r = evaluate(&s, &detections, 60_000);
        assert_eq!(r.partial_week_flags, 1);
        assert_eq!(r.false_alarms_by_rule["visits-below-target"], 1);
    }
}
