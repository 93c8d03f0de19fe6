//! The incident plan: which household has which incident on which day.

use std::collections::BTreeMap;

use super::clock::{local_midnight, weekday, DAY_MS, HOUR_MS};
use super::district::battery_powered;
use super::rng::{int, mins, pick, rng_for, tag};
use super::{District, Household, IncidentKind, Millis, SimConfig, VILLAGE_OUTAGE_MIN_HOUSEHOLDS};

/// One incident as planned; the household simulation fills in the details.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub kind: IncidentKind,
    /// First local day (0-based) of the incident.
    pub day: u32,
    /// Further days it occupies (`day..=day + span`).
    pub span: u32,
    /// Power cut: when and for how long (shared by the village's households).
    pub cut: Option<(Millis, Millis)>,
    /// Power cut: the village and every household it affects.
    pub village: Option<String>,
    pub group: Vec<String>,
}

/// Per 1,000 elder-days (the power cut: per 1,000 village-days; the missed check-in: per
/// 1,000 elder-days of check-in households), placement order.
const RATES: [(IncidentKind, f64); 15] = [
    (IncidentKind::VillagePowerCut, 0.6),
    (IncidentKind::FewVisits, 1.5),
    (IncidentKind::AwayNotSet, 1.5),
    (IncidentKind::AwaySet, 1.0),
    (IncidentKind::BatteryDies, 1.0),
    (IncidentKind::CollapseInBed, 1.0),
    (IncidentKind::FallWithPendant, 1.0),
    (IncidentKind::FallNoButton, 1.0),
    (IncidentKind::HomeOffline, 0.5),
    (IncidentKind::Smoke, 0.4),
    (IncidentKind::Gas, 0.3),
    (IncidentKind::WaterLeak, 0.4),
    (IncidentKind::TapLeftRunning, 0.4),
    (IncidentKind::NightFall, 1.0),
    (IncidentKind::MissedCheckin, 8.0),
];

/// Every kind is planned at least this often (if the run has room for it).
const MIN_PER_KIND: usize = 2;
const ATTEMPTS: usize = 400;

fn has(h: &Household, kind: &str) -> bool {
    h.devices.iter().any(|d| d.kind == kind)
}

fn suitable(kind: IncidentKind, h: &Household) -> bool {
    match kind {
        IncidentKind::FallWithPendant => has(h, "sos") && (has(h, "fall") || has(h, "wearable")),
        IncidentKind::Smoke => has(h, "smoke"),
        IncidentKind::Gas => has(h, "gas"),
        IncidentKind::WaterLeak => has(h, "water_leak"),
        IncidentKind::TapLeftRunning => has(h, "water_meter"),
        IncidentKind::NightFall => has(h, "bed"),
        IncidentKind::MissedCheckin => h.checkin,
        IncidentKind::BatteryDies => h
            .devices
            .iter()
            .any(|d| d.kind != "wearable" && battery_powered(d.kind)),
        _ => true,
    }
}

/// How long a village's power cut lasts: 3 h, or long enough at the simulated heartbeat
/// for every device to miss 3 heartbeats, then the home's and the village's grouping
/// holds to pass, with an hour to spare.
pub(crate) fn power_cut_ms(cfg: &SimConfig) -> Millis {
    (3 * HOUR_MS).max(4 * cfg.heartbeat_ms() + 2 * cfg.grouping_hold_ms())
}

/// How long a home's gateway outage lasts: 4 h, or long enough for 3 missed heartbeats
/// plus the home's grouping hold, with an hour to spare.
pub(crate) fn gateway_outage_ms(cfg: &SimConfig) -> Millis {
    (4 * HOUR_MS).max(4 * cfg.heartbeat_ms() + cfg.grouping_hold_ms())
}

pub(crate) fn plan(cfg: &SimConfig, district: &District) -> Vec<Vec<Planned>> {
    let n = district.households.len();
    let mut out: Vec<Vec<Planned>> = vec![Vec::new(); n];
    if n == 0 {
        return out;
    }
    let mut by_village: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in district.households.iter().enumerate() {
        by_village.entry(h.village_id.as_str()).or_default().push(i);
    }
    let elder_days = n as f64 * f64::from(cfg.days);
    let village_days = by_village.len() as f64 * f64::from(cfg.days);
    let checkin_days =
        district.households.iter().filter(|h| h.checkin).count() as f64 * f64::from(cfg.days);
    // A power cut should be seen as a village outage: prefer villages big enough for it.
    let big_villages = by_village
        .values()
        .any(|homes| homes.len() >= VILLAGE_OUTAGE_MIN_HOUSEHOLDS);
    let mut remaining = RATES.map(|(kind, rate)| {
        let exposure = match kind {
            IncidentKind::VillagePowerCut => village_days,
            IncidentKind::MissedCheckin => checkin_days,
            _ => elder_days,
        };
        ((rate * exposure / 1000.0).round() as usize).max(MIN_PER_KIND)
    });
    let mut rng = rng_for(cfg.seed, tag::PLAN, 0, 0);
    let mut busy: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    let base = local_midnight(cfg.start);
    // First the minimum of every kind, then the rest, so scarce room goes round.
    for pass in 0..2 {
        for (k, (kind, _)) in RATES.iter().enumerate() {
            let want = if pass == 0 {
                remaining[k].min(MIN_PER_KIND)
            } else {
                remaining[k]
            };
            for _ in 0..want {
                remaining[k] -= 1;
                for _ in 0..ATTEMPTS {
                    let h = pick(&mut rng, n);
                    let household = &district.households[h];
                    if !suitable(*kind, household) {
                        continue;
                    }
                    let span = match kind {
                        IncidentKind::CollapseInBed | IncidentKind::NightFall => 1,
                        IncidentKind::FewVisits => 6,
                        IncidentKind::AwayNotSet | IncidentKind::AwaySet => {
                            int(&mut rng, 2, 4) as u32
                        }
                        IncidentKind::BatteryDies => 3,
                        _ => 0,
                    };
                    // Day 0 is warm-up; keep a quiet day after the incident.
                    let Some(last) = cfg.days.checked_sub(2 + span) else {
                        continue;
                    };
                    if last < 1 {
                        continue;
                    }
                    let day = if *kind == IncidentKind::FewVisits {
                        // A whole calendar week, Monday to Sunday.
                        let mondays = (1..=last)
                            .filter(|&d| weekday(base + i64::from(d) * DAY_MS) == 0)
                            .collect::<Vec<_>>();
                        match mondays.get(pick(&mut rng, mondays.len())) {
                            Some(&d) => d,
                            None => continue,
                        }
                    } else {
                        int(&mut rng, 1, i64::from(last)) as u32
                    };
                    if *kind == IncidentKind::VillagePowerCut
                        && big_villages
                        && by_village
                            .get(household.village_id.as_str())
                            .is_none_or(|homes| homes.len() < VILLAGE_OUTAGE_MIN_HOUSEHOLDS)
                    {
                        continue;
                    }
                    let homes = if *kind == IncidentKind::VillagePowerCut {
                        by_village
                            .get(household.village_id.as_str())
                            .cloned()
                            .unwrap_or_default()
                    } else {
                        vec![h]
                    };
                    let free = homes.iter().all(|&x| {
                        busy[x]
                            .iter()
                            .all(|&(a, b)| day > b + 1 || a > day + span + 1)
                    });
                    if !free {
                        continue;
                    }
                    let (cut, village) = if *kind == IncidentKind::VillagePowerCut {
                        let from = base
                            + i64::from(day) * DAY_MS
                            + mins(&mut rng, 8.0 * 60.0, 17.0 * 60.0);
                        let len = power_cut_ms(cfg);
                        (Some((from, from + len)), Some(household.village_id.clone()))
                    } else {
                        (None, None)
                    };
                    let group = homes
                        .iter()
                        .map(|&x| district.households[x].id.clone())
                        .collect::<Vec<_>>();
                    for &x in &homes {
                        busy[x].push((day, day + span));
                        out[x].push(Planned {
                            kind: *kind,
                            day,
                            span,
                            cut,
                            village: village.clone(),
                            group: group.clone(),
                        });
                    }
                    break;
                }
            }
        }
    }
    for p in &mut out {
        p.sort_by_key(|x| x.day);
    }
    out
}
