//! What the home view shows about devices beyond the rule engine's memory: each device's
//! last message and battery level, and each household's most recent events. Kept by the
//! rules stage (which sees every observation, in order), in memory only: after a restart
//! it fills again as devices report (heartbeats and battery reports come every few
//! minutes), while "last seen" and "last activity" come from the engine's saved state.

use std::collections::{HashMap, VecDeque};

use alert_rules::{Millis, Observation, Signal};
use serde::Serialize;

/// Events kept per household for the home view.
pub const RECENT_EVENTS: usize = 20;

/// One device's latest message.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeviceLive {
    /// Signal name of the latest message (`motion`, `heartbeat`, `offline`, …).
    pub last_signal: Option<&'static str>,
    pub last_at: Option<Millis>,
    /// Latest battery report, percent.
    pub battery: Option<f64>,
}

/// A recent event of a household: ids, the signal and its value, never payload text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentEvent {
    pub at: Millis,
    pub device: String,
    pub signal: &'static str,
    /// The on/off flag or the reading, when the signal has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
struct HouseholdLive {
    devices: HashMap<String, DeviceLive>,
    recent: VecDeque<RecentEvent>,
}

/// The live log of every household the hub has heard from since it started.
#[derive(Debug, Default)]
pub struct LiveLog {
    households: HashMap<String, HouseholdLive>,
}

/// A household's live state, as the home view reads it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HouseholdLiveView {
    pub devices: HashMap<String, DeviceLive>,
    /// Newest first.
    pub recent: Vec<RecentEvent>,
}

fn value_of(signal: &Signal) -> Option<serde_json::Value> {
    if let Some(flag) = signal.flag() {
        return Some(flag.into());
    }
    let n = match *signal {
        Signal::WaterMeter { total_m3 } => total_m3,
        Signal::PowerMeter { total_kwh, .. } => total_kwh,
        Signal::HeartRate { bpm } => bpm,
        Signal::Temperature { celsius } => celsius,
        Signal::Battery { percent } => percent,
        Signal::WaterVolume { m3 } => m3,
        Signal::EnergyVolume { kwh, .. } => kwh,
        Signal::Steps { count } => count,
        Signal::Away { away, .. } => return Some(away.into()),
        Signal::Visit { start, .. } => return Some(start.into()),
        _ => return None,
    };
    serde_json::Number::from_f64(n).map(serde_json::Value::Number)
}

impl LiveLog {
    /// Note an observation the rules stage handled.
    pub fn record(&mut self, obs: &Observation) {
        let h = self.households.entry(obs.household.clone()).or_default();
        let d = h.devices.entry(obs.device.clone()).or_default();
        let signal = obs.signal.name();
        d.last_signal = Some(signal);
        d.last_at = Some(obs.at);
        if let Signal::Battery { percent } = obs.signal {
            d.battery = Some(percent);
        }
        // Heartbeats and connection status say nothing about the household's life.
        if matches!(
            obs.signal,
            Signal::Heartbeat | Signal::Online | Signal::Offline
        ) {
            return;
        }
        if h.recent.len() == RECENT_EVENTS {
            h.recent.pop_front();
        }
        h.recent.push_back(RecentEvent {
            at: obs.at,
            device: obs.device.clone(),
            signal,
            value: value_of(&obs.signal),
        });
    }

    /// A household's live state (empty if nothing was heard since the hub started).
    pub fn view(&self, household: &str) -> HouseholdLiveView {
        match self.households.get(household) {
            Some(h) => HouseholdLiveView {
                devices: h.devices.clone(),
                recent: h.recent.iter().rev().cloned().collect(),
            },
            None => HouseholdLiveView::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(device: &str, at: Millis, signal: Signal) -> Observation {
        Observation {
            household: "h-1".into(),
            device: device.into(),
            at,
            signal,
        }
    }

    #[test]
    fn keeps_the_latest_message_battery_and_a_bounded_newest_first_history() {
        let mut log = LiveLog::default();
        log.record(&obs("d-bat", 1, Signal::Battery { percent: 41.0 }));
        log.record(&obs("d-bat", 2, Signal::Heartbeat));
        for i in 0..30 {
            log.record(&obs(
                "d-pir",
                10 + i,
                Signal::Motion {
                    occupancy: i % 2 == 0,
                },
            ));
        }
        let v = log.view("h-1");
        assert_eq!(v.devices["d-bat"].battery, Some(41.0));
        assert_eq!(v.devices["d-bat"].last_signal, Some("heartbeat"));
        assert_eq!(v.devices["d-bat"].last_at, Some(2));
        assert_eq!(v.recent.len(), RECENT_EVENTS);
        assert_eq!(v.recent[0].at, 39, "newest first");
        assert_eq!(v.recent[0].value, Some(false.into()));
        assert!(
            v.recent.iter().all(|e| e.signal == "motion"),
            "the battery report was pushed out; heartbeats are never listed"
        );
        assert!(log.view("h-2").recent.is_empty());
    }
}
