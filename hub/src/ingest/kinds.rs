//! Which event kinds each kind of device may send: the one table (issue 5 hardening).
//!
//! A device's secret proves *which* device is speaking, not that what it says fits the
//! device. Without this table a door contact whose secret leaked could press "SOS",
//! announce "away" for 90 days (suspending the absence rules) or fake signs of life of
//! any class. With it, a device speaks only in the event kinds its kind of device can
//! produce; anything else is refused like any other contract violation
//! (`kind_not_allowed` on its `errors` topic, counted, never stored or raised).
//!
//! The device kind is the `kind` column of `devices`, set by the operator (import,
//! `POST /api/devices`), never by the device. Documented for vendors in
//! `docs/device-protocol.md` section 5.6; keep the two in step.

use super::contract::{ErrorCode, Rejection};

/// Event kinds every device may send, whatever its kind.
pub const COMMON: [&str; 2] = ["heartbeat", "battery"];

/// Device kind → the event kinds it may send besides [`COMMON`].
///
/// Chosen from what such devices produce, including multi-sensor products that are
/// common on the market (a pendant with fall detection, a watch with an SOS button), and
/// from everything `device-sim` sends (checked by `every_pair_the_simulator_sends_is_allowed`):
/// * `temperature` comes from room-mounted sensors only: the threshold rules read it as
///   the room's temperature, and a sensor worn on the body or under the mattress would
///   report body heat as a hot room;
/// * a door contact may double as the carer's NFC reader or visit button (`visit`);
///   register a stand-alone visit reader or button as `door`;
/// * the pendant carries the "I'm OK" and "leaving home / back home" buttons
///   (`checkin`, `away`); register stand-alone ones as `sos`.
pub const TABLE: [(&str, &[&str]); 12] = [
    ("sos", &["sos", "fall", "checkin", "away"]),
    ("fall", &["fall"]),
    ("motion", &["motion", "temperature"]),
    ("door", &["door", "visit", "temperature"]),
    ("bed", &["bed"]),
    ("smoke", &["smoke", "temperature"]),
    ("gas", &["gas", "temperature"]),
    ("water_leak", &["water_leak", "temperature"]),
    ("water_meter", &["water_meter"]),
    ("power_meter", &["power_meter"]),
    ("wearable", &["sos", "fall", "heart_rate", "steps"]),
    ("thermometer", &["temperature"]),
];

/// The device kinds an import or `POST /api/devices` accepts: the table's, in its order.
pub const DEVICE_KINDS: [&str; 12] = [
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
    "wearable",
    "thermometer",
];

/// What a device of some kind may send. Resolved once per device (it is cached with the
/// device's household), so checking an event is a handful of string comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A kind of [`TABLE`]: [`COMMON`] and these.
    Listed {
        device_kind: &'static str,
        events: &'static [&'static str],
    },
    /// A kind the table does not know: a device registered by `hub admin add-device`
    /// (which takes any kind) or before kinds were checked. Its events are not checked,
    /// only counted (`anxin_device_events_unchecked_total`): refusing them could silence
    /// a real pendant registered as "pendant", and an SOS lost is worse than one faked.
    Unlisted,
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The device's kind is not in the table: let it through, count it.
    Unchecked,
    Refused,
}

impl Policy {
    pub fn of(device_kind: &str) -> Policy {
        match TABLE.iter().find(|(k, _)| *k == device_kind) {
            Some((k, events)) => Policy::Listed {
                device_kind: k,
                events,
            },
            None => Policy::Unlisted,
        }
    }

    pub fn check(&self, event_kind: &str) -> Verdict {
        match self {
            Policy::Unlisted => Verdict::Unchecked,
            Policy::Listed { events, .. } => {
                if COMMON.contains(&event_kind) || events.contains(&event_kind) {
                    Verdict::Allowed
                } else {
                    Verdict::Refused
                }
            }
        }
    }

    /// The rejection for an event this policy refuses.
    pub fn refusal(&self, event_kind: &str, event_id: &str) -> Rejection {
        let (device_kind, events) = match self {
            Policy::Listed {
                device_kind,
                events,
            } => (*device_kind, *events),
            Policy::Unlisted => ("unlisted", &[][..]),
        };
        let may: Vec<&str> = events.iter().chain(COMMON.iter()).copied().collect();
        Rejection {
            code: ErrorCode::KindNotAllowed,
            reason: format!(
                "this device is registered as a `{device_kind}` device, which may not send `{event_kind}` events \
                 (it may send {}); if the device is not a `{device_kind}`, ask the operator to correct its kind",
                may.join(", ")
            ),
            event_id: Some(event_id.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::contract::EVENT_KINDS;

    /// (device kind, event kind, allowed?)
    fn check(cases: &[(&str, &str, Verdict)]) {
        for (device, event, want) in cases {
            assert_eq!(
                Policy::of(device).check(event),
                *want,
                "a {device} device sending {event}"
            );
        }
    }

    #[test]
    fn each_device_kind_speaks_only_its_own_event_kinds() {
        use Verdict::{Allowed, Refused, Unchecked};
        check(&[
            // The review's cases: a door contact cannot press SOS or announce an absence.
            ("door", "sos", Refused),
            ("door", "away", Refused),
            ("door", "checkin", Refused),
            ("door", "door", Allowed),
            ("door", "visit", Allowed),
            ("sos", "sos", Allowed),
            ("sos", "away", Allowed),
            ("sos", "checkin", Allowed),
            ("sos", "fall", Allowed),
            ("sos", "motion", Refused),
            ("sos", "visit", Refused),
            ("sos", "water_meter", Refused),
            ("sos", "temperature", Refused),
            // Fake signs of life from the wrong device.
            ("motion", "motion", Allowed),
            ("motion", "temperature", Allowed),
            ("motion", "door", Refused),
            ("motion", "steps", Refused),
            ("smoke", "motion", Refused),
            ("smoke", "smoke", Allowed),
            ("smoke", "gas", Refused),
            ("gas", "smoke", Refused),
            ("water_leak", "water_meter", Refused),
            ("water_meter", "water_meter", Allowed),
            ("water_meter", "power_meter", Refused),
            ("power_meter", "power_meter", Allowed),
            ("wearable", "steps", Allowed),
            ("wearable", "heart_rate", Allowed),
            ("wearable", "sos", Allowed),
            ("wearable", "fall", Allowed),
            ("wearable", "away", Refused),
            ("wearable", "temperature", Refused),
            ("fall", "fall", Allowed),
            ("fall", "sos", Refused),
            ("bed", "bed", Allowed),
            ("bed", "temperature", Refused),
            ("thermometer", "temperature", Allowed),
            ("thermometer", "motion", Refused),
            // Everything may report its health.
            ("power_meter", "heartbeat", Allowed),
            ("thermometer", "battery", Allowed),
            // Unknown device kinds are let through, unchecked; case matters.
            ("pendant", "sos", Unchecked),
            ("pendant", "heartbeat", Unchecked),
            ("Door", "sos", Unchecked),
            ("", "away", Unchecked),
        ]);
    }

    #[test]
    fn the_table_names_every_device_kind_once_and_only_contract_event_kinds() {
        let table: Vec<&str> = TABLE.iter().map(|(k, _)| *k).collect();
        assert_eq!(table, DEVICE_KINDS, "TABLE and DEVICE_KINDS must agree");
        for (device, events) in TABLE {
            for e in events.iter().chain(COMMON.iter()) {
                assert!(EVENT_KINDS.contains(e), "{device}: {e} is not a v1 kind");
            }
            let mut seen = std::collections::HashSet::new();
            assert!(events.iter().all(|e| seen.insert(e)), "{device}: repeated");
            assert!(
                events.iter().all(|e| !COMMON.contains(e)),
                "{device}: common kinds are implied"
            );
        }
        // Every event kind of the contract is producible by some device kind.
        for e in EVENT_KINDS {
            assert!(
                TABLE
                    .iter()
                    .any(|(d, _)| Policy::of(d).check(e) == Verdict::Allowed),
                "no device kind may send {e}"
            );
        }
    }

    #[test]
    fn critical_and_absence_suspending_kinds_come_from_few_device_kinds() {
        // Who can raise an SOS, or suspend the absence rules: reviewed on every change.
        let who = |event: &str| -> Vec<&str> {
            DEVICE_KINDS
                .iter()
                .copied()
                .filter(|d| Policy::of(d).check(event) == Verdict::Allowed)
                .collect()
        };
        assert_eq!(who("sos"), ["sos", "wearable"]);
        assert_eq!(who("away"), ["sos"]);
        assert_eq!(who("visit"), ["door"]);
        assert_eq!(who("checkin"), ["sos"]);
    }

    #[test]
    fn a_refusal_names_the_kinds_and_carries_the_event_id() {
        let rej = Policy::of("door").refusal("sos", "e-7");
        assert_eq!(rej.code, ErrorCode::KindNotAllowed);
        assert_eq!(rej.code.as_str(), "kind_not_allowed");
        assert_eq!(rej.event_id.as_deref(), Some("e-7"));
        for needle in [
            "`door`",
            "`sos`",
            "door, visit, temperature, heartbeat, battery",
        ] {
            assert!(rej.reason.contains(needle), "{needle}: {}", rej.reason);
        }
    }
}
