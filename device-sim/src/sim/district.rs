//! Towns, villages, households, elders and devices. Fictional names only.

use super::rng::{chance, int, pick, rng_for, tag, uni};
use super::{Device, District, Elder, Household, SimConfig, Town, Village};

/// Motion sensors: id suffix and room.
const PIRS: [(&str, &str); 4] = [
    ("pir-1", "bedroom"),
    ("pir-2", "bathroom"),
    ("pir-3", "kitchen"),
    ("pir-4", "living_room"),
];

/// Share of households whose water meter reports interval volumes (`interval_m3`).
const INTERVAL_WATER_SHARE: f64 = 0.2;
/// Share of power meters that report interval energy (`interval_kwh`).
const INTERVAL_POWER_SHARE: f64 = 0.2;
/// Share of households with the daily "I'm OK" check-in enabled.
const CHECKIN_SHARE: f64 = 0.1;

/// Whether household `index` has feature `which`, for about `p` of the households: a
/// low-discrepancy sequence (golden ratio) with a per-seed offset, so the share is close
/// to `p` in a district of any size, and a household keeps its features when households
/// are added.
fn share(cfg: &SimConfig, index: usize, which: u64, p: f64) -> bool {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let offset = uni(&mut rng_for(cfg.seed, tag::FEATURES, which, 0), 0.0, 1.0);
    ((index as f64 + 1.0) * GOLDEN + offset).fract() < p
}

pub(crate) fn build(cfg: &SimConfig) -> District {
    let villages_n = if cfg.households > 0 {
        cfg.villages.max(1)
    } else {
        cfg.villages
    };
    let towns_n = if villages_n > 0 {
        cfg.towns.max(1)
    } else {
        cfg.towns
    };
    let towns = (1..=towns_n)
        .map(|i| Town {
            id: format!("t-{i:02}"),
            name: format!("Town {i}"),
        })
        .collect::<Vec<_>>();
    // Contiguous, even blocks of villages per town.
    let villages = (0..villages_n)
        .map(|j| {
            let town = j * towns_n / villages_n.max(1);
            Village {
                id: format!("v-{:03}", j + 1),
                town_id: format!("t-{:02}", town + 1),
                name: format!("Village {}", j + 1),
            }
        })
        .collect::<Vec<_>>();
    let households = (0..cfg.households)
        .map(|i| household(cfg, i, &villages))
        .collect();
    District {
        towns,
        villages,
        households,
    }
}

fn household(cfg: &SimConfig, index: usize, villages: &[Village]) -> Household {
    let mut rng = rng_for(cfg.seed, tag::HOUSEHOLD, index as u64, 0);
    let n = index + 1;
    let id = format!("h-{n:04}");
    let v = pick(&mut rng, villages.len());
    let village_id = villages.get(v).map(|v| v.id.clone()).unwrap_or_default();
    let address = format!(
        "No. {}, Lane {}, Village {}",
        int(&mut rng, 1, 80),
        int(&mut rng, 1, 9),
        v + 1
    );
    // Always: pendant, four motion sensors, door, bed, smoke, water meter.
    let has_fall = chance(&mut rng, 0.7);
    let has_gas = chance(&mut rng, 0.6);
    let has_leak = chance(&mut rng, 0.5);
    let has_power = chance(&mut rng, 0.8);
    let has_wearable = chance(&mut rng, 0.5);

    let dev = |suffix: &str, kind: &'static str, room: Option<&str>| Device {
        id: format!("{id}-{suffix}"),
        kind,
        room: room.map(str::to_owned),
    };
    let mut devices = vec![dev("sos", "sos", None)];
    if has_fall {
        devices.push(dev("fall", "fall", Some("bathroom")));
    }
    for (suffix, room) in PIRS {
        devices.push(dev(suffix, "motion", Some(room)));
    }
    devices.push(dev("door", "door", None));
    devices.push(dev("bed", "bed", Some("bedroom")));
    devices.push(dev("smoke", "smoke", Some("kitchen")));
    if has_gas {
        devices.push(dev("gas", "gas", Some("kitchen")));
    }
    if has_leak {
        devices.push(dev("water-leak", "water_leak", Some("bathroom")));
    }
    devices.push(dev("water-meter", "water_meter", None));
    if has_power {
        devices.push(dev("power-meter", "power_meter", Some("kitchen")));
    }
    if has_wearable {
        devices.push(dev("wearable", "wearable", None));
    }
    let interval_water = share(cfg, index, 0, INTERVAL_WATER_SHARE);
    let interval_power = share(cfg, index, 1, INTERVAL_POWER_SHARE) && has_power;
    let checkin = share(cfg, index, 2, CHECKIN_SHARE);
    // One carer per village.
    let carer_tag = format!("carer-{village_id}");
    Household {
        elder: Elder {
            id: format!("e-{n:04}"),
            name: format!("Elder {n}"),
        },
        id,
        village_id,
        address,
        devices,
        checkin,
        interval_water,
        interval_power,
        carer_tag,
    }
}

/// Whether a device of this kind runs on a battery that must be replaced (the wearable
/// is recharged daily; fall radar, gas detector and power meter are mains powered).
pub(crate) fn battery_powered(kind: &str) -> bool {
    matches!(
        kind,
        "sos" | "motion" | "door" | "bed" | "smoke" | "water_leak" | "water_meter" | "wearable"
    )
}
