//! Fuzzing on stable (proptest): the device payload parser and the broker's ACL codec on
//! generated input, thousands of cases per run, in every `cargo test` (so in CI, for a
//! bounded time: about 10 s in a debug build). Raise `ANXIN_FUZZ_CASES` for a longer run:
//! `ANXIN_FUZZ_CASES=200000 cargo test -p hub --release --test fuzz`.
//!
//! What is checked is what a device must never be able to do: crash the hub, get an event
//! accepted that the contract forbids, or get a packet past the ACL that speaks for another
//! device or lands outside its own topic space.

use bytes::BytesMut;
use hub::broker::{AclV4, Kicks};
use hub::config::DeviceLimitSettings;
use hub::ingest::contract::{self, Inbound};
use proptest::prelude::*;
use rumqttc::mqttbytes::v4 as wire;
use rumqttc::mqttbytes::QoS;
use rumqttd::protocol::{Packet, Protocol};

fn cases() -> u32 {
    std::env::var("ANXIN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000)
}

/// Valid events of several kinds, to be mutated.
const SEEDS: [&str; 6] = [
    r#"{"v":1,"event_id":"b17-000042","ts":"2026-11-29T08:30:00+08:00","kind":"sos"}"#,
    r#"{"v":1,"event_id":"f-1","ts":"2026-11-29T08:31:12+08:00","kind":"fall","confidence":0.92}"#,
    r#"{"v":1,"event_id":"d-8","ts":"2026-11-29T09:12:03Z","kind":"door","open":true}"#,
    r#"{"v":1,"event_id":"wm1-004711","ts":"2026-11-29T08:00:00+08:00","kind":"water_meter","total_m3":123.456}"#,
    r#"{"v":1,"event_id":"w1-020391","ts":"2026-11-29T10:15:00+08:00","kind":"heart_rate","bpm":72}"#,
    r#"{"v":1,"event_id":"v-3","ts":"2026-11-29T10:15:00+08:00","kind":"visit","action":"start","carer":"c-1"}"#,
];

/// A seed with a few bytes replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&SEEDS[..]),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..6),
    )
        .prop_map(|(seed, edits)| {
            let mut b = seed.as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(b.len() + 1);
                match op {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ if i < b.len() => {
                        b.remove(i);
                    }
                    _ => {}
                }
            }
            b
        })
}

fn check_event(payload: &[u8]) {
    match contract::parse_event(payload) {
        Ok(ev) => {
            // What the contract promises of an accepted event.
            assert!(payload.len() <= contract::MAX_PAYLOAD_BYTES);
            assert!(!ev.event_id.is_empty() && ev.event_id.len() <= 64);
            assert!(ev
                .event_id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(&c)));
            assert!(
                matches!(ev.ts.as_bytes().get(10), Some(b'T' | b't')),
                "{}",
                ev.ts
            );
            assert!(contract::EVENT_KINDS.contains(&ev.kind));
        }
        Err(rej) => assert!(!rej.reason.is_empty()),
    }
    let _ = contract::parse_status(payload);
    let _ = contract::event_id_of(payload);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_payload_parser_never_panics_on_bytes(payload in prop::collection::vec(any::<u8>(), 0..600)) {
        check_event(&payload);
    }

    #[test]
    fn the_payload_parser_keeps_the_contract_on_near_valid_events(payload in mutated()) {
        check_event(&payload);
    }

    #[test]
    fn topics_classify_without_panicking_and_round_trip(topic in "[a-z0-9/+#_.-]{0,60}|anxin/v1/devices/[a-z0-9_-]{0,70}/(events|status|ack|x)") {
        match contract::classify_topic(&topic) {
            Inbound::Events(id) => prop_assert_eq!(contract::events_topic(id.as_str()), topic),
            Inbound::Status(id) => prop_assert_eq!(contract::status_topic(id.as_str()), topic),
            _ => {}
        }
    }
}

// ----- the ACL codec -----

/// One packet a hostile device might send.
#[derive(Debug, Clone)]
enum Sent {
    Connect(String, bool),
    Publish(String, Vec<u8>, bool, bool),
    Subscribe(Vec<String>),
    Ping,
    Garbage(Vec<u8>),
}

fn device_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("d-1".to_string()),
        Just("d-2".to_string()),
        Just("anxin-hub-fuzz".to_string()),
        "[a-z0-9_-]{1,12}",
        ".{0,8}",
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("anxin/v1/devices/d-1/events".to_string()),
        Just("anxin/v1/devices/d-1/status".to_string()),
        Just("anxin/v1/devices/d-2/events".to_string()),
        Just("anxin/v1/hub/violations/d-2".to_string()),
        Just(String::new()),
        device_id().prop_map(|id| format!("anxin/v1/devices/{id}/events")),
        "anxin/v1/devices/d-1/[a-z+#/]{0,10}",
        "[a-z0-9/+#]{0,24}",
    ]
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        (device_id(), any::<bool>()).prop_map(|(id, reserved)| Sent::Connect(id, reserved)),
        (
            topic(),
            prop::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(t, p, q1, retain)| Sent::Publish(t, p, q1, retain)),
        prop::collection::vec(topic(), 1..4).prop_map(Sent::Subscribe),
        Just(Sent::Ping),
        prop::collection::vec(any::<u8>(), 1..20).prop_map(Sent::Garbage),
    ]
}

fn encode(s: &Sent, buf: &mut BytesMut) {
    match s {
        Sent::Connect(id, reserved) => {
            let mut c = wire::Connect::new(id.clone());
            c.set_login(id.clone(), "secret");
            let start = buf.len();
            let _ = c.write(buf);
            // The flags byte, when the remaining length fits in one byte.
            if *reserved && buf.len() > start + 9 && buf[start + 1] < 128 {
                buf[start + 9] |= 1;
            }
        }
        Sent::Publish(t, p, q1, retain) => {
            let qos = if *q1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            let mut p = wire::Publish::new(t.clone(), qos, p.clone());
            p.pkid = if *q1 { 7 } else { 0 };
            p.retain = *retain;
            let _ = p.write(buf);
        }
        Sent::Subscribe(filters) => {
            let mut s = wire::Subscribe::new_many(
                filters
                    .iter()
                    .map(|f| wire::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
            );
            s.pkid = 9;
            let _ = s.write(buf);
        }
        Sent::Ping => {
            let _ = wire::PingReq.write(buf);
        }
        Sent::Garbage(g) => buf.extend_from_slice(g),
    }
}

/// What may come out of the codec for a device that authenticated as `d-1` with its first
/// CONNECT: nothing outside its own space, nothing speaking for another device.
fn check_out(packet: &Packet, first: &str) {
    let own = format!("anxin/v1/devices/{first}/");
    match packet {
        Packet::Publish(p, _) => {
            let topic = std::str::from_utf8(&p.topic).expect("utf-8 topic");
            let ok = topic.is_empty()
                || topic == format!("{own}events")
                || topic == format!("{own}status")
                || topic == format!("anxin/v1/hub/violations/{first}");
            assert!(ok, "{first} got a publish through on {topic:?}");
            if topic.ends_with("/events") {
                assert!(!p.retain, "an event got through retained");
            }
        }
        Packet::Subscribe(s, _) => {
            for f in &s.filters {
                let allowed = ["ack", "errors", "#", "+"]
                    .iter()
                    .any(|rest| f.path == format!("{own}{rest}"));
                assert!(
                    allowed || f.path == format!("anxin/v1/denied/{first}"),
                    "{first} subscribed to {:?}",
                    f.path
                );
            }
        }
        Packet::Connect(..) => panic!("a second CONNECT got through"),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_acl_codec_never_lets_a_device_out_of_its_space(
        first in prop_oneof![Just("d-1".to_string()), "[a-z0-9_-]{1,12}"],
        packets in prop::collection::vec(sent(), 0..12),
        splits in prop::collection::vec(1usize..40, 1..8),
    ) {
        let limits = DeviceLimitSettings { publishes_per_sec: 1, publish_burst: 3, disconnect_after_refused: 4 };
        let mut codec = AclV4::new("anxin-hub-fuzz".into(), Kicks::default(), limits);
        let mut bytes = BytesMut::new();
        encode(&Sent::Connect(first.clone(), false), &mut bytes);
        for p in &packets {
            encode(p, &mut bytes);
        }
        // Feed the stream in arbitrary pieces, as a socket would deliver it.
        let mut stream = BytesMut::new();
        let mut pieces = splits.iter().cycle();
        let mut seen_connect = false;
        'feed: while !bytes.is_empty() || !stream.is_empty() {
            let n = (*pieces.next().unwrap_or(&1)).min(bytes.len());
            stream.extend_from_slice(&bytes.split_to(n));
            loop {
                match codec.read_mut(&mut stream, 4096) {
                    Ok(Packet::Connect(c, ..)) if !seen_connect => {
                        prop_assert_eq!(&c.client_id, &first);
                        seen_connect = true;
                    }
                    Ok(packet) => check_out(&packet, &first),
                    Err(rumqttd::protocol::Error::InsufficientBytes(_)) => {
                        if bytes.is_empty() { break 'feed; }
                        break;
                    }
                    // Any other error closes the connection: nothing more is read.
                    Err(_) => break 'feed,
                }
            }
        }
    }
}
