//! `device-sim evaluate`: compare the alarms a hub raised with a scenario's ground truth.
//!
//! Detections are read from the hub's alarm timeline (`GET /api/updates`): every
//! `raised` step, and every `repeated` step (the same condition raised again while its
//! alarm was still open — nobody resolves alarms during a simulation). A detection
//! matches an incident's expectation when household, rule (and device, if named) agree
//! and it happened between the incident's start and its deadline. Detections that match
//! nothing are false alarms.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::sim::{Incident, Scenario};

/// One alarm (or repeat) as the hub reported it.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub at: i64,
    pub household: String,
    pub rule: String,
    pub device: Option<String>,
    pub severity: String,
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
        let updates = v["updates"].as_array().cloned().unwrap_or_default();
        if updates.is_empty() {
            break;
        }
        for u in &updates {
            since = since.max(u["seq"].as_i64().unwrap_or(since));
            let step = u["step"].as_str().unwrap_or_default();
            if step != "raised" && step != "repeated" {
                continue;
            }
            out.push(Detection {
                at: u["at"].as_i64().unwrap_or_default(),
                household: u["alarm"]["household_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                rule: u["alarm"]["rule_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                device: u["alarm"]["device_id"].as_str().map(str::to_owned),
                severity: u["alarm"]["severity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
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
    pub rule: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub households: usize,
    pub days: u32,
    pub elder_days: f64,
    pub detections: usize,
    pub per_incident_kind: BTreeMap<String, KindStats>,
    pub missed: Vec<Missed>,
    /// Unexplained alarms by rule.
    pub false_alarms_by_rule: BTreeMap<String, usize>,
    pub false_alarms_per_100_elder_days: f64,
    /// Device-health alarms (offline, battery) in all, explained or not.
    pub device_health_alarms: usize,
}

const HEALTH_RULES: [&str; 2] = ["device-offline", "low-battery"];

/// `slack_ms`: how late the hub may observe an event because of the simulation's time
/// step (`device-sim run --step-secs`); added to every expectation's deadline.
pub fn evaluate(scenario: &Scenario, detections: &[Detection], slack_ms: i64) -> Report {
    let households: std::collections::HashSet<&str> = scenario
        .district
        .households
        .iter()
        .map(|h| h.id.as_str())
        .collect();
    let ours: Vec<&Detection> = detections
        .iter()
        .filter(|d| households.contains(d.household.as_str()))
        .collect();
    let mut used = vec![false; ours.len()];
    let mut kinds: BTreeMap<String, KindStats> = BTreeMap::new();
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut missed = Vec::new();
    for inc in &scenario.incidents {
        let kind = incident_kind(inc);
        let stats = kinds.entry(kind.clone()).or_default();
        stats.incidents += 1;
        for exp in &inc.expected {
            let found: Vec<usize> = ours
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    d.household == inc.household
                        && d.rule == exp.rule_id
                        && exp
                            .device
                            .as_ref()
                            .is_none_or(|dev| d.device.as_ref() == Some(dev))
                        && d.at >= inc.start
                        && d.at <= inc.start + exp.within_ms + slack_ms
                })
                .map(|(i, _)| i)
                .collect();
            for &i in &found {
                used[i] = true;
            }
            if exp.must {
                stats.required += 1;
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
                            rule: exp.rule_id.clone(),
                            note: exp.note.clone(),
                        });
                    }
                }
            } else {
                stats.expected_false_alarms += found.len();
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
    let mut false_alarms_by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in ours.iter().enumerate() {
        if !used[i] {
            *false_alarms_by_rule.entry(d.rule.clone()).or_default() += 1;
        }
    }
    let elder_days = households.len() as f64 * f64::from(scenario.config.days);
    let false_total: usize = false_alarms_by_rule
        .iter()
        .filter(|(r, _)| !HEALTH_RULES.contains(&r.as_str()))
        .map(|(_, n)| n)
        .sum();
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
        device_health_alarms: ours
            .iter()
            .filter(|d| HEALTH_RULES.contains(&d.rule.as_str()))
            .count(),
    }
}

fn incident_kind(inc: &Incident) -> String {
    inc.kind.as_str().to_owned()
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
            "\n**Unexplained alarms** (excluding device health): {:.2} per 100 elder-days.\n\n| rule | unexplained alarms |\n|---|---:|\n",
            self.false_alarms_per_100_elder_days
        ));
        for (r, n) in &self.false_alarms_by_rule {
            s.push_str(&format!("| {r} | {n} |\n"));
        }
        s.push_str(&format!(
            "\nDevice-health alarms in all (offline, battery): {}.\n",
            self.device_health_alarms
        ));
        if !self.missed.is_empty() {
            s.push_str("\n## Missed\n\n| incident | kind | household | rule | note |\n|---|---|---|---|---|\n");
            for m in &self.missed {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    m.incident, m.kind, m.household, m.rule, m.note
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
