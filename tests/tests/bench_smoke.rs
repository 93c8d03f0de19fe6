//! The benchmark's smoke run (`device-sim bench --quick`): every scenario, seconds and
//! small N, so the bench cannot rot. Checks accounting, not speed: performance targets
//! are measured by the full bench (docs/benchmarks.md), never asserted in tests.
//!
//! The bare-broker half runs when `ANXIN_TEST_MOSQUITTO` names one (`.ci/run` sets it
//! to the machine's Mosquitto, 127.0.0.1:1883).

use std::path::PathBuf;

use device_sim::bench::{self, BenchConfig, Report};

fn systems(report: &Report) -> Vec<&'static str> {
    if report.config.mosquitto.is_some() {
        vec!["anxin", "mosquitto"]
    } else {
        vec!["anxin"]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_runs_every_scenario_and_accounts_for_every_message() {
    let hub_bin = PathBuf::from(env!("CARGO_BIN_EXE_hub-under-test"));
    let mosquitto = std::env::var("ANXIN_TEST_MOSQUITTO").ok().map(|s| {
        s.parse()
            .expect("ANXIN_TEST_MOSQUITTO must be host:port, e.g. 127.0.0.1:1883")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BenchConfig::quick(hub_bin, mosquitto, dir.path().join("work"));
    let report = bench::run(cfg).await.expect("bench runs");
    assert!(
        report.notes.iter().all(|n| !n.contains("failed")),
        "{:#?}",
        report.notes
    );

    for system in systems(&report) {
        // Throughput: the open-loop step loses nothing and everything is processed.
        let t = report
            .throughput
            .iter()
            .find(|t| t.system == system)
            .unwrap_or_else(|| panic!("no throughput row for {system}"));
        let first = &t.steps[0];
        assert!(first.published > 0, "{system}: {first:?}");
        assert_eq!(first.lost, 0, "{system}: {first:?}");
        assert_eq!(first.processed, first.published, "{system}: {first:?}");
        assert_eq!(first.pubacked, first.published, "{system}: {first:?}");
        assert!(t.max_zero_loss_per_s > 0.0);

        // Latency: SOS events were delivered and acknowledged, and timed.
        let l = report
            .latency
            .iter()
            .find(|l| l.system == system)
            .unwrap_or_else(|| panic!("no latency row for {system}"));
        assert!(l.sos_sent > 0, "{system}: {l:?}");
        assert!(
            l.to_board.samples > 0 && l.to_board.samples <= l.sos_sent,
            "{system}: {l:?}"
        );
        assert!(
            l.to_ack.samples > 0 && l.to_ack.samples <= l.sos_sent,
            "{system}: {l:?}"
        );
        assert!(l.to_board.p50_ms > 0.0 && l.to_board.p50_ms <= l.to_board.max_ms);

        // Connections: all connected, memory measured, everyone back after the storm.
        let c = report
            .connections
            .iter()
            .find(|c| c.system == system)
            .unwrap_or_else(|| panic!("no connections row for {system}"));
        let step = c.steps.last().expect("a step");
        assert_eq!(step.connected, step.devices, "{system}: {step:?}");
        assert!(step.rss_after_mb.is_some(), "{system}: RSS not readable");
        let storm = c.reconnect_storm.as_ref().expect("reconnect storm");
        assert_eq!(storm.reconnected, storm.devices, "{system}: {storm:?}");

        // Drop storm: every dropped device became visible as offline.
        let s = report
            .storm
            .iter()
            .find(|s| s.system == system)
            .unwrap_or_else(|| panic!("no storm row for {system}"));
        assert!(s.dropped > 0);
        assert!(s.all_offline_visible_secs.is_some(), "{system}: {s:?}");
        assert_eq!(s.offline_seen, s.dropped, "{system}: {s:?}");
    }

    // kill -9: every critical event sent during the outage is exactly one alarm.
    let r = report.restart.as_ref().expect("restart row");
    assert!(r.critical_sent_during_outage > 0);
    assert_eq!(
        r.alarms_exactly_once, r.critical_sent_during_outage,
        "{r:?}"
    );
    assert_eq!((r.lost, r.doubled), (0, 0), "{r:?}");
    assert!(
        r.all_reconnected_secs.is_some() && r.all_critical_acked_secs.is_some(),
        "{r:?}"
    );

    // The report renders and round-trips as JSON.
    let md = bench::write(&report, dir.path(), "smoke").expect("write");
    let text = std::fs::read_to_string(md).expect("markdown");
    assert!(
        text.contains("| throughput, 40 devices | max msgs/s with zero loss |"),
        "{text}"
    );
}
