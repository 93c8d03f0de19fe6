//! The `rules.toml` that `device-sim generate` writes: the shipped default rules with the
//! few settings the simulation must match, edited as text so every comment of the
//! default file survives.
//!
//! Edits (each only where the default file has the key; a missing optional key is
//! reported in [`SimRules::notes`], never invented):
//! * `device-offline`: `heartbeat_minutes` = the simulated heartbeat (required).
//! * `home-unreachable`: `hold_minutes` = [`SimConfig::grouping_hold_minutes`].
//! * `village-outage`: `within_minutes` and `hold_minutes` = the same.
//! * `daily-checkin`: one `[[override]]` with `enabled = true` per check-in household
//!   (only if the rule exists).

use anyhow::Context;

use super::{District, SimConfig};

/// The rules file text and what was (not) changed.
#[derive(Debug, Clone)]
pub struct SimRules {
    pub text: String,
    /// One line per edit made or skipped, for the user.
    pub notes: Vec<String>,
}

/// A top-level table of the file: its header line and the lines up to the next header.
#[derive(Debug)]
struct Table {
    /// Header text without brackets, e.g. `rule` for `[[rule]]`.
    name: String,
    /// Line index of the header; the table's keys are on the lines after it, up to `end`.
    header: usize,
    end: usize,
    id: Option<String>,
    kind: Option<String>,
}

/// The key of a `key = value` line, if it is one.
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (key, _) = t.split_once('=')?;
    let key = key.trim_end();
    (!key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
    .then_some(key)
}

/// The value of a `key = "string"` line, comment stripped (basic and literal strings).
fn string_value(line: &str) -> Option<String> {
    let (_, v) = line.split_once('=')?;
    let v = v.trim_start();
    let quote = v.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &v[1..];
    let close = rest.find(quote)?;
    Some(rest[..close].to_owned())
}

fn tables(lines: &[&str]) -> Vec<Table> {
    let mut out: Vec<Table> = Vec::new();
    let mut in_multiline: Option<&str> = None;
    for (n, line) in lines.iter().enumerate() {
        // Skip the inside of multi-line strings (a `[` there is no header).
        if let Some(delim) = in_multiline {
            if line.matches(delim).count() % 2 == 1 {
                in_multiline = None;
            }
            continue;
        }
        for delim in ["\"\"\"", "'''"] {
            if line.matches(delim).count() % 2 == 1 {
                in_multiline = Some(delim);
            }
        }
        let t = line.trim();
        if t.starts_with('[') {
            if let Some(last) = out.last_mut() {
                last.end = n;
            }
            let name = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            out.push(Table {
                name,
                header: n,
                end: lines.len(),
                id: None,
                kind: None,
            });
        } else if let Some(table) = out.last_mut() {
            match key_of(line) {
                Some("id") => table.id = string_value(line),
                Some("kind") => table.kind = string_value(line),
                _ => {}
            }
        }
    }
    out
}

/// The `[[rule]]` with this id, or else the first of this kind.
fn find_rule<'a>(tables: &'a [Table], id: &str, kind: &str) -> Option<&'a Table> {
    let rules = || tables.iter().filter(|t| t.name == "rule");
    rules()
        .find(|t| t.id.as_deref() == Some(id))
        .or_else(|| rules().find(|t| t.kind.as_deref() == Some(kind)))
}

/// Replace `key = ...` inside `table` (keeping its indentation). False if absent.
fn set_key(lines: &mut [String], table: &Table, key: &str, value: &str, why: &str) -> bool {
    for line in &mut lines[table.header + 1..table.end] {
        if key_of(line) == Some(key) {
            let indent = &line[..line.len() - line.trim_start().len()];
            *line = format!("{indent}{key} = {value}   # device-sim: {why}");
            return true;
        }
    }
    false
}

/// Apply the simulation's edits to the rules text `default` (see the module docs). Pure
/// text: the result is not validated here (see [`sim_rules`]).
pub fn patch_rules(
    default: &str,
    config: &SimConfig,
    district: &District,
) -> anyhow::Result<SimRules> {
    let src: Vec<&str> = default.lines().collect();
    let found = tables(&src);
    let mut lines: Vec<String> = src.iter().map(|l| (*l).to_owned()).collect();
    let mut notes = Vec::new();
    let hb = config.heartbeat_minutes.max(1);
    let hold = config.grouping_hold_minutes();

    let offline = find_rule(&found, "device-offline", "device_offline")
        .context("the default rules have no device-offline rule")?;
    anyhow::ensure!(
        set_key(
            &mut lines,
            offline,
            "heartbeat_minutes",
            &hb.to_string(),
            "matches the simulated heartbeat interval",
        ),
        "the default rules' device-offline rule has no heartbeat_minutes"
    );
    notes.push(format!("device-offline: heartbeat_minutes = {hb}"));

    // The grouping rules' keys (as in alert-rules/rules/default.toml):
    // `hold_minutes` on home_unreachable (how long a device's offline alarm is held back
    // to see whether the whole home is dark) and `within_minutes` / `hold_minutes` on
    // area_outage (the window in which the village's homes must become unreachable, and
    // the hold before their own alarms are raised). A key the default file does not have
    // is left alone and reported, so a renamed key shows up in `generate`'s output
    // instead of silently keeping a 5-minute-heartbeat value. The simulation also
    // assumes the village outage needs 5 households (VILLAGE_OUTAGE_MIN_HOUSEHOLDS).
    let grouping: [(&str, &str, &[&str]); 2] = [
        ("home-unreachable", "home_unreachable", &["hold_minutes"]),
        (
            "village-outage",
            "area_outage",
            &["within_minutes", "hold_minutes"],
        ),
    ];
    for (id, kind, keys) in grouping {
        let Some(table) = find_rule(&found, id, kind) else {
            notes.push(format!(
                "{id}: no such rule in the default file; nothing set"
            ));
            continue;
        };
        for key in keys {
            if set_key(
                &mut lines,
                table,
                key,
                &hold.to_string(),
                "1.2 simulated heartbeats, so a dark home's devices are grouped",
            ) {
                notes.push(format!("{id}: {key} = {hold}"));
            } else {
                notes.push(format!("{id}: no `{key}` key; left as in the default file"));
            }
        }
    }

    let checkin: Vec<&str> = district
        .households
        .iter()
        .filter(|h| h.checkin)
        .map(|h| h.id.as_str())
        .collect();
    let has_checkin_rule = found
        .iter()
        .any(|t| t.name == "rule" && t.id.as_deref() == Some("daily-checkin"));
    if checkin.is_empty() {
        notes.push("daily-checkin: no check-in households".to_owned());
    } else if has_checkin_rule {
        lines.push(String::new());
        lines.push(
            "# device-sim: the households whose elder presses the daily \"I'm OK\" button."
                .to_owned(),
        );
        for h in &checkin {
            lines.push(String::new());
            lines.push("[[override]]".to_owned());
            lines.push(format!("household = \"{h}\""));
            lines.push("rule = \"daily-checkin\"".to_owned());
            lines.push("enabled = true".to_owned());
        }
        notes.push(format!(
            "daily-checkin: enabled for {} households",
            checkin.len()
        ));
    } else {
        notes.push(format!(
            "daily-checkin: no such rule in the default file; the {} check-in households \
             get no override (their missed check-ins will be reported as missed)",
            checkin.len()
        ));
    }

    let mut text = lines.join("\n");
    if default.ends_with('\n') {
        text.push('\n');
    }
    Ok(SimRules { text, notes })
}

/// [`patch_rules`] on the shipped default rules, validated by the rule engine.
pub fn sim_rules(config: &SimConfig, district: &District) -> anyhow::Result<SimRules> {
    let rules = patch_rules(alert_rules::RuleSet::DEFAULT_TOML, config, district)?;
    alert_rules::RuleSet::from_toml_str(&rules.text).context("simulation rules")?;
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sim::{generate, SimConfig};

    const FUTURE: &str = r#"# a default file as issue 4 will ship it (shape only)
timezone_offset = "+08:00"

[[rule]]
id = "device-offline"
kind = "device_offline"
heartbeat_minutes = 5      # how often devices report
missed_heartbeats = 3

[[rule]]
id = "home-unreachable"
kind = "home_unreachable"
hold_minutes = 10
title = "Home unreachable [all devices]"

[[rule]]
id = "village-outage"
kind = "area_outage"
min_households = 5
within_minutes = 15   # window
hold_minutes = 15

[[rule]]
id = "daily-checkin"
kind = "daily_deadline"
enabled = false
description = """
[not a table]
heartbeat_minutes = 1
"""

[[override]]
household = "h-demo-1"
rule = "no-activity-daytime"
hours = 6.0
"#;

    fn small() -> crate::sim::Scenario {
        generate(&SimConfig {
            households: 40,
            villages: 8,
            towns: 2,
            days: 2,
            ..SimConfig::default()
        })
    }

    #[test]
    fn patches_only_the_keys_that_exist() {
        let s = small();
        let r = patch_rules(FUTURE, &s.config, &s.district).unwrap();
        let t = &r.text;
        assert!(t.contains("heartbeat_minutes = 60   # device-sim"), "{t}");
        assert!(t.contains("hold_minutes = 72   # device-sim"), "{t}");
        assert!(t.contains("within_minutes = 72   # device-sim"), "{t}");
        assert_eq!(t.matches("= 72   # device-sim").count(), 3, "{t}");
        // untouched: other keys, the multi-line string, the demo override
        assert!(t.contains("min_households = 5\n"));
        assert!(t.contains("[not a table]\nheartbeat_minutes = 1\n"));
        assert!(t.contains("missed_heartbeats = 3\n"));
        assert!(t.contains("hours = 6.0"));
        let checkin = s.district.households.iter().filter(|h| h.checkin).count();
        assert!(
            checkin > 0,
            "a 40-household district has check-in households"
        );
        assert_eq!(
            t.matches("rule = \"daily-checkin\"\nenabled = true")
                .count(),
            checkin
        );
        assert!(t.ends_with('\n'));
        let overrides = t.lines().filter(|l| l.trim() == "[[override]]").count();
        assert_eq!(overrides, checkin + 1);
    }

    #[test]
    fn missing_optional_keys_are_reported_not_invented() {
        let s = small();
        let old = "[[rule]]\nid = \"device-offline\"\nkind = \"device_offline\"\nheartbeat_minutes = 10\n";
        let r = patch_rules(old, &s.config, &s.district).unwrap();
        assert!(!r.text.contains("hold_minutes"));
        assert!(!r.text.contains("[[override]]"));
        assert!(r
            .notes
            .iter()
            .any(|n| n.starts_with("home-unreachable: no such rule")));
        assert!(r
            .notes
            .iter()
            .any(|n| n.starts_with("daily-checkin: no such rule")));
        let no_hb = "[[rule]]\nid = \"device-offline\"\nkind = \"device_offline\"\n";
        assert!(patch_rules(no_hb, &s.config, &s.district).is_err());
    }

    #[test]
    fn the_shipped_defaults_patch_and_validate() {
        let s = small();
        let r = sim_rules(&s.config, &s.district).unwrap();
        assert!(r.text.contains("heartbeat_minutes = 60"));
    }
}
