//! `device-sim bench`: the same load against the Anxin hub (full pipeline: broker,
//! contract checks, rules, SQLite, websocket board) and against a bare MQTT broker with
//! one wildcard subscriber, in the same run. See docs/benchmarks.md.
//!
//! Scenarios: throughput (open loop at rising rates, then flat out), SOS latency at
//! half the measured maximum, connection scale and a reconnect storm, a drop storm, and
//! kill -9 of the hub under load. Every hub run gets a fresh process and database, so
//! one scenario's leftovers (timers, Last Wills) never land in another's numbers.

pub mod fleet;
pub mod stats;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::payload;
use crate::sim::{District, SimConfig};
use fleet::{Counters, Fleet, FleetOptions};
use stats::{round2, CpuMeter, Latency, Proc};
use target::{BrokerSink, HubProcess, HubSink, SosBook};

/// The board token of the demo district (seeded with `hub run --demo`).
const BOARD_TOKEN: &str = "demo-district";

#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub hub_bin: PathBuf,
    /// The bare broker to compare with; None runs the hub alone.
    pub mosquitto: Option<SocketAddr>,
    /// Scratch space (databases, district CSV, hub logs).
    pub work_dir: PathBuf,
    pub scenarios: Vec<String>,
    pub throughput_devices: Vec<usize>,
    /// Offered rates (msg/s) of the open-loop steps, rising; a flat-out step follows.
    pub rates: Vec<f64>,
    pub step_secs: f64,
    pub latency_devices: usize,
    pub sos_per_sec: f64,
    pub latency_secs: f64,
    pub connection_steps: Vec<usize>,
    pub storm_devices: usize,
    pub storm_fraction: f64,
    pub restart_devices: usize,
    pub restart_critical: usize,
    pub secret: String,
}

pub const ALL_SCENARIOS: [&str; 5] = ["throughput", "latency", "connections", "storm", "restart"];

impl BenchConfig {
    /// The full benchmark (about 20 minutes on 2 cores).
    pub fn full(hub_bin: PathBuf, mosquitto: Option<SocketAddr>, work_dir: PathBuf) -> Self {
        BenchConfig {
            hub_bin,
            mosquitto,
            work_dir,
            scenarios: ALL_SCENARIOS.iter().map(|s| s.to_string()).collect(),
            throughput_devices: vec![1_000, 10_000],
            rates: vec![
                2_000.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0, 60_000.0,
                80_000.0,
            ],
            step_secs: 10.0,
            latency_devices: 1_000,
            sos_per_sec: 50.0,
            latency_secs: 20.0,
            connection_steps: vec![1_000, 5_000, 10_000, 19_900],
            storm_devices: 10_000,
            storm_fraction: 0.1,
            restart_devices: 1_000,
            restart_critical: 50,
            secret: "bench-secret".into(),
        }
    }

    /// Seconds, small N: the suite's smoke test, so the bench cannot rot.
    pub fn quick(hub_bin: PathBuf, mosquitto: Option<SocketAddr>, work_dir: PathBuf) -> Self {
        BenchConfig {
            throughput_devices: vec![40],
            rates: vec![200.0],
            step_secs: 1.0,
            latency_devices: 40,
            sos_per_sec: 20.0,
            latency_secs: 1.5,
            connection_steps: vec![40],
            storm_devices: 40,
            storm_fraction: 0.25,
            restart_devices: 30,
            restart_critical: 3,
            ..Self::full(hub_bin, mosquitto, work_dir)
        }
    }

    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s)
    }

    fn max_devices(&self) -> usize {
        let mut m = 0;
        for s in [
            self.throughput_devices.iter().copied().max().unwrap_or(0),
            self.latency_devices,
            self.connection_steps.iter().copied().max().unwrap_or(0),
            self.storm_devices,
            self.restart_devices,
        ] {
            m = m.max(s);
        }
        m
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RateStep {
    /// Offered msg/s; None for the flat-out step.
    pub offered_per_s: Option<f64>,
    pub secs: f64,
    pub published: u64,
    /// Publishes the load generator could not hand over (client queue full: back-pressure).
    pub not_queued: u64,
    pub pubacked: u64,
    /// Messages the application side received: the hub's rules stage, or the subscriber.
    pub processed: u64,
    pub lost: i64,
    pub achieved_per_s: f64,
    /// Time after the last publish until every message was processed.
    pub drain_ms: f64,
    pub cpu_cores: Option<f64>,
    pub rss_mb: Option<f64>,
    /// Connection errors (drops, failed reconnects) during the step.
    pub conn_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub system: String,
    pub devices: usize,
    pub steps: Vec<RateStep>,
    /// The highest achieved rate of a step that lost nothing.
    pub max_zero_loss_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    pub system: String,
    pub devices: usize,
    pub background_per_s: f64,
    pub sos_sent: usize,
    /// Publish → visible to people: the hub's websocket board; the bare broker's subscriber.
    pub to_board: Latency,
    /// Publish → application ack back at the device.
    pub to_ack: Latency,
    pub background_lost: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStep {
    pub system: String,
    pub devices: usize,
    pub connected: usize,
    pub ramp_secs: Option<f64>,
    pub rss_before_mb: Option<f64>,
    pub rss_after_mb: Option<f64>,
    pub kb_per_device: Option<f64>,
    pub fds: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub system: String,
    pub steps: Vec<ConnectionStep>,
    /// Least-squares slope of RSS over connected devices, KiB per device.
    pub slope_kb_per_device: Option<f64>,
    /// RSS at 100,000 devices by that line (GiB): an extrapolation, not a measurement.
    pub extrapolated_100k_gib: Option<f64>,
    pub reconnect_storm: Option<ReconnectStorm>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconnectStorm {
    pub devices: usize,
    pub reconnected: usize,
    pub all_reconnected_secs: Option<f64>,
    pub failed_attempts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub system: String,
    pub devices: usize,
    pub dropped: usize,
    /// Until every dropped device is visible as offline: hub = device-offline alarms on
    /// the board; bare broker = Last Will messages at the subscriber.
    pub all_offline_visible_secs: Option<f64>,
    /// Dropped devices seen offline.
    pub offline_seen: usize,
    /// Offline notices about any device during the storm (more than `dropped` means
    /// other devices were also reported offline).
    pub offline_notices_total: usize,
    pub sos_during_storm: Latency,
    pub ack_during_storm: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub devices: usize,
    pub background_per_s: f64,
    pub critical_sent_during_outage: usize,
    pub hub_up_secs: f64,
    pub all_reconnected_secs: Option<f64>,
    /// Kill → every critical event sent during the outage acknowledged (after commit).
    pub all_critical_acked_secs: Option<f64>,
    /// A fresh SOS after all devices are back: publish → board.
    pub sos_after_restart_ms: Option<f64>,
    pub alarms_exactly_once: usize,
    pub lost: usize,
    pub doubled: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub open_files_limit: String,
    pub hub_build: String,
    pub mosquitto_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started: String,
    pub wall_secs: f64,
    pub machine: Machine,
    pub config: BenchConfig,
    pub throughput: Vec<Throughput>,
    pub latency: Vec<LatencyRun>,
    pub connections: Vec<Connections>,
    pub storm: Vec<Storm>,
    pub restart: Option<Restart>,
    pub notes: Vec<String>,
}

/// The rules the bench hub runs: the shipped defaults, except (for the storm) no grace
/// after a Last Will and no grouping hold, so "visible" measures the pipeline rather
/// than a configured wait.
fn rules(offline_grace_minutes: Option<u32>) -> anyhow::Result<String> {
    let default = alert_rules::RuleSet::DEFAULT_TOML;
    let text = match offline_grace_minutes {
        None => default.to_owned(),
        Some(g) => {
            let line = default
                .lines()
                .find(|l| l.trim_start().starts_with("offline_grace_minutes"))
                .context("default rules have no offline_grace_minutes")?;
            let mut text = default.replacen(line, &format!("offline_grace_minutes = {g}"), 1);
            let holds: Vec<String> = text
                .lines()
                .filter(|l| l.trim_start().starts_with("hold_minutes"))
                .map(str::to_owned)
                .collect();
            for h in holds {
                text = text.replacen(&h, "hold_minutes = 0", 1);
            }
            text
        }
    };
    alert_rules::RuleSet::from_toml_str(&text).context("bench rules")?;
    Ok(text)
}

/// One system under test, with its application-side observer.
struct Target {
    name: &'static str,
    port: u16,
    sos: Arc<SosBook>,
    hub: Option<HubProcess>,
    hub_sink: Option<HubSink>,
    broker_pid: Option<u32>,
    broker_sink: Option<BrokerSink>,
}

impl Target {
    fn proc(&self) -> Option<Proc> {
        match &self.hub {
            Some(h) => target::proc_of(h.pid()),
            None => target::proc_of(self.broker_pid),
        }
    }

    fn rss_mb(&self) -> Option<f64> {
        self.proc()
            .and_then(|p| p.rss_kb())
            .map(|kb| round2(kb as f64 / 1024.0))
    }

    async fn processed(&self) -> anyhow::Result<u64> {
        match (&self.hub_sink, &self.broker_sink) {
            (Some(h), _) => h.processed().await,
            (_, Some(b)) => Ok(b.processed()),
            _ => anyhow::bail!("target has no observer"),
        }
    }

    fn fleet_options(&self, secret: &str, concurrency: usize) -> FleetOptions {
        FleetOptions {
            host: "127.0.0.1".into(),
            port: self.port,
            secret: secret.into(),
            keep_alive: Duration::from_secs(60),
            concurrency,
        }
    }
}

struct Bench {
    cfg: BenchConfig,
    district_dir: PathBuf,
    devices: Vec<(String, &'static str)>,
    /// `household:<id>` / `village:<id>` -> device ids, for grouped offline alarms.
    groups: HashMap<String, Vec<String>>,
    runs: u32,
    nonce: u64,
    seq: Arc<AtomicU64>,
}

impl Bench {
    /// A fresh hub: new database, the district imported, started, board attached.
    async fn hub(&mut self, offline_grace: Option<u32>) -> anyhow::Result<Target> {
        self.runs += 1;
        let dir = self.cfg.work_dir.join(format!("hub-{}", self.runs));
        let _ = std::fs::remove_dir_all(&dir);
        let mut hub = HubProcess::provision(
            &self.cfg.hub_bin,
            &dir,
            &self.district_dir,
            &self.cfg.secret,
            &rules(offline_grace)?,
        )
        .await?;
        hub.start().await?;
        let sos = Arc::new(SosBook::with_groups(self.groups.clone()));
        let sink = HubSink::connect(&hub.http(), BOARD_TOKEN, sos.clone()).await?;
        Ok(Target {
            name: "anxin",
            port: hub.mqtt_port,
            sos,
            hub: Some(hub),
            hub_sink: Some(sink),
            broker_pid: None,
            broker_sink: None,
        })
    }

    async fn broker(&self, addr: SocketAddr) -> anyhow::Result<Target> {
        let sos = Arc::new(SosBook::with_groups(self.groups.clone()));
        let sink = BrokerSink::connect(addr, sos.clone()).await?;
        Ok(Target {
            name: "mosquitto",
            port: addr.port(),
            sos,
            hub: None,
            hub_sink: None,
            broker_pid: target::pid_listening_on(addr.port()),
            broker_sink: Some(sink),
        })
    }

    /// Both systems, the hub first; a fresh hub each call.
    async fn targets(&mut self, offline_grace: Option<u32>) -> anyhow::Result<Vec<Target>> {
        let mut v = vec![self.hub(offline_grace).await?];
        if let Some(addr) = self.cfg.mosquitto {
            v.push(self.broker(addr).await?);
        }
        Ok(v)
    }

    fn event_id(&self) -> String {
        format!(
            "{:08x}{:024x}",
            self.nonce,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn connect_fleet(&self, t: &Target, n: usize) -> anyhow::Result<Arc<Fleet>> {
        let fleet = Fleet::start(
            &self.devices[..n.min(self.devices.len())],
            &t.fleet_options(&self.cfg.secret, 500),
        )
        .await;
        fleet
            .wait_connected(fleet.members.len(), Duration::from_secs(120))
            .await
            .with_context(|| {
                format!(
                    "{}: only {} of {} devices connected within 120 s",
                    t.name,
                    fleet.connected(),
                    fleet.members.len()
                )
            })?;
        Ok(Arc::new(fleet))
    }
}

/// A telemetry event as the kind of device would send it.
fn telemetry(kind: &str, event_id: &str) -> Vec<u8> {
    let ts = payload::now_rfc3339();
    let body = match kind {
        "motion" => r#""kind":"motion","occupancy":true,"room":"kitchen""#,
        "door" => r#""kind":"door","open":false"#,
        "bed" => r#""kind":"bed","occupied":true"#,
        "power_meter" => r#""kind":"power_meter","total_kwh":1234.5,"power_w":80.0"#,
        _ => r#""kind":"heartbeat""#,
    };
    format!(r#"{{"v":1,"event_id":"{event_id}","ts":"{ts}",{body}}}"#).into_bytes()
}

fn sos_event(event_id: &str) -> Vec<u8> {
    let ts = payload::now_rfc3339();
    format!(r#"{{"v":1,"event_id":"{event_id}","ts":"{ts}","kind":"sos"}}"#).into_bytes()
}

/// Publish at `rate` msg/s across the fleet, round robin, until `stop` or `secs`.
async fn open_loop(bench: &Bench, fleet: &Fleet, rate: f64, secs: f64, stop: &AtomicBool) {
    let n = fleet.members.len();
    if n == 0 || rate <= 0.0 {
        return;
    }
    let began = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while began.elapsed().as_secs_f64() < secs && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (began.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let i = (sent % n as u64) as usize;
            let m = &fleet.members[i];
            fleet.try_publish(i, &m.events_topic, telemetry(m.kind, &bench.event_id()));
            sent += 1;
        }
    }
}

/// Every member publishes as fast as its client lets it (10 in flight each).
async fn flat_out(bench: &Bench, fleet: &Arc<Fleet>, secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for i in 0..fleet.members.len() {
        let (fleet, nonce, seq) = (fleet.clone(), bench.nonce, bench.seq.clone());
        tasks.push(tokio::spawn(async move {
            let m = &fleet.members[i];
            while Instant::now() < deadline {
                let id = format!("{nonce:08x}{:024x}", seq.fetch_add(1, Ordering::Relaxed));
                let body = telemetry(m.kind, &id);
                if !fleet.publish(i, &m.events_topic, body).await {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// SOS events from the fleet's pendants at `per_sec`, one outstanding per pendant.
async fn sos_loop(bench: &Bench, t: &Target, fleet: &Fleet, per_sec: f64, secs: f64) -> usize {
    let pendants: Vec<usize> = (0..fleet.members.len())
        .filter(|&i| fleet.members[i].kind == "sos")
        .collect();
    if pendants.is_empty() || per_sec <= 0.0 {
        return 0;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let began = Instant::now();
    let (mut sent, mut next) = (0usize, 0usize);
    while began.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        for _ in 0..pendants.len() {
            let i = pendants[next % pendants.len()];
            next += 1;
            let m = &fleet.members[i];
            if !m.is_up() || t.sos.is_pending(&m.id) {
                continue;
            }
            let id = bench.event_id();
            fleet.acks.sent(&id);
            t.sos.sent(&m.id);
            if fleet.try_publish(i, &m.events_topic, sos_event(&id)) {
                sent += 1;
            }
            break;
        }
    }
    sent
}

/// Run one load step and account for every message.
async fn measured_step(
    bench: &Bench,
    t: &Target,
    fleet: &Arc<Fleet>,
    rate: Option<f64>,
    secs: f64,
) -> anyhow::Result<RateStep> {
    let c: &Counters = &fleet.counters;
    let (p0, a0, nq0, e0) = (
        Counters::get(&c.published),
        Counters::get(&c.pubacks),
        Counters::get(&c.not_queued),
        Counters::get(&c.conn_errors),
    );
    let base = t.processed().await?;
    let cpu = CpuMeter::start(t.proc());
    let began = Instant::now();
    match rate {
        Some(r) => open_loop(bench, fleet, r, secs, &AtomicBool::new(false)).await,
        None => flat_out(bench, fleet, secs).await,
    }
    let published_at = Instant::now();
    let published = Counters::get(&c.published) - p0;
    // Drain: wait until everything published is processed, or nothing moves for 5 s.
    let (mut processed, mut last_change) = (t.processed().await? - base, Instant::now());
    loop {
        let pubacked = Counters::get(&c.pubacks) - a0;
        if processed >= published && pubacked >= published {
            break;
        }
        if last_change.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = t.processed().await? - base;
        if now != processed {
            processed = now;
            last_change = Instant::now();
        }
    }
    let done = if processed >= published {
        last_change.max(published_at)
    } else {
        Instant::now()
    };
    let cpu_cores = cpu.cores();
    let elapsed = done.duration_since(began).as_secs_f64();
    Ok(RateStep {
        offered_per_s: rate,
        secs,
        published,
        not_queued: Counters::get(&c.not_queued) - nq0,
        pubacked: Counters::get(&c.pubacks) - a0,
        processed,
        lost: published as i64 - processed as i64,
        achieved_per_s: round2(processed as f64 / elapsed.max(1e-9)),
        drain_ms: round2(done.saturating_duration_since(published_at).as_secs_f64() * 1e3),
        cpu_cores,
        rss_mb: t.rss_mb(),
        conn_errors: Counters::get(&c.conn_errors) - e0,
    })
}

async fn throughput(b: &mut Bench, report: &mut Report) -> anyhow::Result<()> {
    for &n in &b.cfg.throughput_devices.clone() {
        for t in b.targets(None).await? {
            eprintln!("throughput: {} with {n} devices", t.name);
            let fleet = b.connect_fleet(&t, n).await?;
            let mut steps = Vec::new();
            for &rate in &b.cfg.rates {
                let s = measured_step(b, &t, &fleet, Some(rate), b.cfg.step_secs).await?;
                eprintln!(
                    "  offered {rate:>8.0}/s: processed {} of {} ({}/s), not queued {}, drain {} ms, cpu {:?}, connection errors {}",
                    s.processed, s.published, s.achieved_per_s, s.not_queued, s.drain_ms, s.cpu_cores, s.conn_errors
                );
                let saturated = s.lost != 0
                    || s.not_queued as f64 > 0.01 * (s.published + s.not_queued) as f64
                    || s.achieved_per_s < 0.9 * rate;
                steps.push(s);
                if saturated {
                    break;
                }
            }
            let s = measured_step(b, &t, &fleet, None, b.cfg.step_secs).await?;
            eprintln!(
                "  flat out: processed {} of {} ({}/s), lost {}, drain {} ms, cpu {:?}",
                s.processed, s.published, s.achieved_per_s, s.lost, s.drain_ms, s.cpu_cores
            );
            steps.push(s);
            let max = steps
                .iter()
                .filter(|s| s.lost == 0)
                .map(|s| s.achieved_per_s)
                .fold(0.0, f64::max);
            report.throughput.push(Throughput {
                system: t.name.into(),
                devices: n,
                steps,
                max_zero_loss_per_s: max,
            });
            drop(fleet);
            shutdown(t).await;
        }
    }
    Ok(())
}

async fn shutdown(mut t: Target) {
    t.hub_sink.take();
    if let Some(mut h) = t.hub.take() {
        h.stop().await;
    }
}

fn max_rate(report: &Report, system: &str, near: usize) -> Option<f64> {
    report
        .throughput
        .iter()
        .filter(|r| r.system == system && r.max_zero_loss_per_s > 0.0)
        .min_by_key(|r| r.devices.abs_diff(near))
        .map(|r| r.max_zero_loss_per_s)
}

async fn latency(b: &mut Bench, report: &mut Report) -> anyhow::Result<()> {
    let n = b.cfg.latency_devices;
    for t in b.targets(None).await? {
        let max = max_rate(report, t.name, n).unwrap_or(b.cfg.rates[0] * 2.0);
        let bg = (max * 0.5).round();
        eprintln!("latency: {} with {n} devices, background {bg}/s", t.name);
        let fleet = b.connect_fleet(&t, n).await?;
        fleet.acks.take_latencies();
        t.sos.take_latencies();
        let stop = AtomicBool::new(false);
        let secs = b.cfg.latency_secs;
        let p0 = Counters::get(&fleet.counters.published);
        let base = t.processed().await?;
        let (_, sent) = tokio::join!(
            open_loop(b, &fleet, bg, secs, &stop),
            sos_loop(b, &t, &fleet, b.cfg.sos_per_sec, secs)
        );
        // Stragglers: wait for the last deliveries and acks (bounded).
        let wait_until = Instant::now() + Duration::from_secs(5);
        let published = Counters::get(&fleet.counters.published) - p0;
        while Instant::now() < wait_until && t.processed().await? - base < published {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let run = LatencyRun {
            system: t.name.into(),
            devices: n,
            background_per_s: bg,
            sos_sent: sent,
            to_board: Latency::of(t.sos.take_latencies()),
            to_ack: Latency::of(fleet.acks.take_latencies()),
            background_lost: published as i64 - (t.processed().await? - base) as i64,
        };
        eprintln!(
            "  sos sent {}: board p50/p99/p99.9 {} ms; ack {} ms",
            run.sos_sent,
            run.to_board.cell(),
            run.to_ack.cell()
        );
        report.latency.push(run);
        drop(fleet);
        shutdown(t).await;
    }
    Ok(())
}

async fn connections(b: &mut Bench, report: &mut Report) -> anyhow::Result<()> {
    let mut systems = vec!["anxin"];
    if b.cfg.mosquitto.is_some() {
        systems.push("mosquitto");
    }
    for system in systems {
        let mut steps = Vec::new();
        let mut storm = None;
        let count = b.cfg.connection_steps.len();
        for (k, &n) in b.cfg.connection_steps.clone().iter().enumerate() {
            let t = match (system, b.cfg.mosquitto) {
                ("anxin", _) => b.hub(None).await?,
                (_, Some(addr)) => b.broker(addr).await?,
                _ => continue,
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = t.rss_mb();
            let began = Instant::now();
            let fleet = Fleet::start(&b.devices[..n], &t.fleet_options(&b.cfg.secret, 500)).await;
            let ramp = fleet
                .wait_connected(n, Duration::from_secs(180))
                .await
                .map(|_| began.elapsed());
            // One heartbeat each, as idle devices send.
            for (i, m) in fleet.members.iter().enumerate() {
                fleet.try_publish(i, &m.events_topic, telemetry("heartbeat", &b.event_id()));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = t.rss_mb();
            let connected = fleet.connected();
            let step = ConnectionStep {
                system: system.into(),
                devices: n,
                connected,
                ramp_secs: ramp.map(|d| round2(d.as_secs_f64())),
                rss_before_mb: before,
                rss_after_mb: after,
                kb_per_device: match (before, after) {
                    (Some(a), Some(z)) if connected > 0 => {
                        Some(round2((z - a) * 1024.0 / connected as f64))
                    }
                    _ => None,
                },
                fds: t.proc().and_then(|p| p.fds()),
            };
            eprintln!(
                "connections: {system} {connected}/{n} in {:?} s, rss {:?} → {:?} MB, {:?} KB/device",
                step.ramp_secs, before, after, step.kb_per_device
            );
            steps.push(step);
            if k + 1 == count {
                // Reconnect storm: every connection cut at once, every device straight back.
                fleet.cut(0..n);
                drop(fleet);
                let c0 = Instant::now();
                let again = Fleet::start(&b.devices[..n], &t.fleet_options(&b.cfg.secret, n)).await;
                let all = again.wait_connected(n, Duration::from_secs(60)).await;
                let s = ReconnectStorm {
                    devices: n,
                    reconnected: again.connected(),
                    all_reconnected_secs: all.map(|_| round2(c0.elapsed().as_secs_f64())),
                    failed_attempts: Counters::get(&again.counters.conn_errors),
                };
                eprintln!(
                    "  reconnect storm: {} of {n} back, all in {:?} s, {} failed attempts",
                    s.reconnected, s.all_reconnected_secs, s.failed_attempts
                );
                storm = Some(s);
            } else {
                drop(fleet);
            }
            shutdown(t).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let points: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|s| Some((s.connected as f64, s.rss_after_mb? * 1024.0)))
            .collect();
        let fit = stats::linear_fit(&points);
        report.connections.push(Connections {
            system: system.into(),
            slope_kb_per_device: fit.map(|(m, _)| round2(m)),
            extrapolated_100k_gib: fit
                .map(|(m, c)| round2((m * 100_000.0 + c) / (1024.0 * 1024.0))),
            steps,
            reconnect_storm: storm,
        });
    }
    Ok(())
}

async fn storm(b: &mut Bench, report: &mut Report) -> anyhow::Result<()> {
    let n = b.cfg.storm_devices;
    for t in b.targets(Some(0)).await? {
        eprintln!("storm: {} with {n} devices", t.name);
        let fleet = b.connect_fleet(&t, n).await?;
        // Drop a share of the devices that are not pendants (SOS keeps flowing).
        let want = ((n as f64) * b.cfg.storm_fraction).round() as usize;
        let cut: Vec<usize> = (0..n)
            .filter(|&i| fleet.members[i].kind != "sos")
            .step_by(((n as f64 / want.max(1) as f64).floor() as usize).max(1))
            .take(want)
            .collect();
        let cut_ids: HashSet<String> = cut.iter().map(|&i| fleet.members[i].id.clone()).collect();
        fleet.acks.take_latencies();
        t.sos.take_latencies();
        let secs = b.cfg.latency_secs.max(3.0);
        let seen0 = t.sos.offline_seen.load(Ordering::Relaxed);
        let watch = async {
            tokio::time::sleep(Duration::from_secs_f64(secs / 4.0)).await;
            let at = Instant::now();
            fleet.cut(cut.iter().copied());
            let mut visible = None;
            while at.elapsed() < Duration::from_secs(60) {
                if t.sos.offline_among(&cut_ids) >= cut_ids.len() {
                    visible = Some(round2(at.elapsed().as_secs_f64()));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            visible
        };
        let (visible, _) = tokio::join!(watch, sos_loop(b, &t, &fleet, b.cfg.sos_per_sec, secs));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = Storm {
            system: t.name.into(),
            devices: n,
            dropped: cut_ids.len(),
            all_offline_visible_secs: visible,
            offline_seen: t.sos.offline_among(&cut_ids),
            offline_notices_total: (t.sos.offline_seen.load(Ordering::Relaxed) - seen0) as usize,
            sos_during_storm: Latency::of(t.sos.take_latencies()),
            ack_during_storm: Latency::of(fleet.acks.take_latencies()),
        };
        eprintln!(
            "  dropped {}: all visible in {:?} s; sos board {} ms, ack {} ms",
            s.dropped,
            s.all_offline_visible_secs,
            s.sos_during_storm.cell(),
            s.ack_during_storm.cell()
        );
        report.storm.push(s);
        drop(fleet);
        shutdown(t).await;
    }
    Ok(())
}

async fn restart(b: &mut Bench, report: &mut Report) -> anyhow::Result<()> {
    let n = b.cfg.restart_devices;
    let mut t = b.hub(None).await?;
    let bg = (max_rate(report, "anxin", n).unwrap_or(b.cfg.rates[0] * 2.0) * 0.25).round();
    eprintln!("restart: kill -9 with {n} devices, background {bg}/s");
    let fleet = b.connect_fleet(&t, n).await?;
    let pendants: Vec<usize> = (0..n).filter(|&i| fleet.members[i].kind == "sos").collect();
    let critical: Vec<usize> = pendants
        .iter()
        .copied()
        .take(b.cfg.restart_critical)
        .collect();
    let probe = pendants.get(critical.len()).copied();
    let stop = AtomicBool::new(false);
    let run = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        if let Some(h) = t.hub.as_mut() {
            h.kill9().await;
        }
        t.hub_sink.take();
        // Critical events during the outage: each retried (same event id) until acked.
        let ids: Vec<(usize, String)> = critical.iter().map(|&i| (i, b.event_id())).collect();
        let senders = ids.iter().map(|(i, id)| {
            let fleet = fleet.clone();
            let (i, id) = (*i, id.clone());
            async move {
                let give_up = Instant::now() + Duration::from_secs(120);
                fleet.acks.sent(&id);
                while !fleet.acks.is_acked(&id) && Instant::now() < give_up {
                    if fleet.members[i].is_up() {
                        fleet.try_publish(i, &fleet.members[i].events_topic, sos_event(&id));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                fleet.acks.is_acked(&id).then(|| killed.elapsed())
            }
        });
        let acked = async { futures::future::join_all(senders).await };
        let restarted = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let up = match t.hub.as_mut() {
                Some(h) => h.start().await,
                None => Ok(Duration::ZERO),
            };
            let up = up.map(|_| killed.elapsed());
            let all = fleet.wait_connected(n, Duration::from_secs(120)).await;
            (up, all.map(|_| killed.elapsed()))
        };
        let (acks, (up, all)) = tokio::join!(acked, restarted);
        stop.store(true, Ordering::Relaxed);
        (ids, acks, up, all)
    };
    let (_, (ids, acks, up, all)) = tokio::join!(open_loop(b, &fleet, bg, 600.0, &stop), run);
    let hub_up = up?;
    // Alarms flow again: a fresh SOS from a pendant not used above.
    let http = t.hub.as_ref().map(|h| h.http()).unwrap_or_default();
    let sink = HubSink::connect(&http, BOARD_TOKEN, t.sos.clone()).await?;
    t.hub_sink = Some(sink);
    let mut after = None;
    if let Some(i) = probe {
        let id = b.event_id();
        t.sos.sent(&fleet.members[i].id);
        fleet.try_publish(i, &fleet.members[i].events_topic, sos_event(&id));
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(10) && after.is_none() {
            after = t.sos.take_latencies().first().copied();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Exactly one alarm per critical event, whatever the retries.
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{http}/api/alarms?state=all&limit=100000"))
        .bearer_auth(BOARD_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let alarms = body["alarms"].as_array().cloned().unwrap_or_default();
    let (mut once, mut lost, mut doubled) = (0, 0, 0);
    for (i, _) in &ids {
        let dev = &fleet.members[*i].id;
        let mine: Vec<_> = alarms
            .iter()
            .filter(|a| a["device_id"] == dev.as_str() && a["rule_id"] == "sos")
            .collect();
        match mine.as_slice() {
            [] => lost += 1,
            [a] if a["repeat_count"].as_i64() == Some(0) => once += 1,
            _ => doubled += 1,
        }
    }
    let all_acked = acks
        .iter()
        .map(|a| a.map(|d| d.as_secs_f64()))
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    let r = Restart {
        devices: n,
        background_per_s: bg,
        critical_sent_during_outage: ids.len(),
        hub_up_secs: round2(hub_up.as_secs_f64()),
        all_reconnected_secs: all.map(|d| round2(d.as_secs_f64())),
        all_critical_acked_secs: all_acked.map(round2),
        sos_after_restart_ms: after.map(round2),
        alarms_exactly_once: once,
        lost,
        doubled,
    };
    eprintln!(
        "  hub up {} s, all reconnected {:?} s, all critical acked {:?} s, once {} lost {} doubled {}",
        r.hub_up_secs, r.all_reconnected_secs, r.all_critical_acked_secs, once, lost, doubled
    );
    report.restart = Some(r);
    drop(fleet);
    shutdown(t).await;
    Ok(())
}

fn machine(cfg: &BenchConfig) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let mem_kb: f64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let limit = read("/proc/self/limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default();
    let mosquitto_version = std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        });
    let hub_build = if cfg.hub_bin.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug (numbers are not representative)"
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib: round2(mem_kb / 1024.0 / 1024.0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        open_files_limit: limit,
        hub_build: hub_build.into(),
        mosquitto_version,
    }
}

/// Run the configured scenarios; returns the report (also written by the caller).
pub async fn run(cfg: BenchConfig) -> anyhow::Result<Report> {
    let began = Instant::now();
    std::fs::create_dir_all(&cfg.work_dir)?;
    let district_dir = cfg.work_dir.join("district");
    let want = cfg.max_devices();
    // Households have 9-14 devices; make enough of them.
    let district = District::build(&SimConfig {
        households: want.div_ceil(9).max(1),
        ..SimConfig::default()
    });
    district.write_csv(&district_dir)?;
    let devices: Vec<(String, &'static str)> = district
        .households
        .iter()
        .flat_map(|h| h.devices.iter().map(|d| (d.id.clone(), d.kind)))
        .take(want)
        .collect();
    anyhow::ensure!(devices.len() >= want, "district too small");
    let mut report = Report {
        started: payload::now_rfc3339(),
        wall_secs: 0.0,
        machine: machine(&cfg),
        config: cfg.clone(),
        throughput: vec![],
        latency: vec![],
        connections: vec![],
        storm: vec![],
        restart: None,
        notes: vec![],
    };
    if cfg.mosquitto.is_none() {
        report
            .notes
            .push("no bare broker given: Anxin alone, no ratios".into());
    }
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for h in &district.households {
        for d in &h.devices {
            groups
                .entry(format!("household:{}", h.id))
                .or_default()
                .push(d.id.clone());
            groups
                .entry(format!("village:{}", h.village_id))
                .or_default()
                .push(d.id.clone());
        }
    }
    let mut bench = Bench {
        cfg: cfg.clone(),
        district_dir,
        devices,
        groups,
        runs: 0,
        nonce: rand::random::<u32>() as u64,
        seq: Arc::new(AtomicU64::new(0)),
    };
    for s in ALL_SCENARIOS {
        if !cfg.wants(s) {
            continue;
        }
        let result = match s {
            "throughput" => throughput(&mut bench, &mut report).await,
            "latency" => latency(&mut bench, &mut report).await,
            "connections" => connections(&mut bench, &mut report).await,
            "storm" => storm(&mut bench, &mut report).await,
            _ => restart(&mut bench, &mut report).await,
        };
        if let Err(e) = result {
            eprintln!("{s}: failed: {e:#}");
            report.notes.push(format!("{s}: failed: {e:#}"));
        }
    }
    report.wall_secs = round2(began.elapsed().as_secs_f64());
    Ok(report)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map(|v| format!("{v}{unit}"))
        .unwrap_or_else(|| "–".into())
}

impl Report {
    fn pick<'a, T>(v: &'a [T], system: &str, f: impl Fn(&T) -> &str) -> Option<&'a T> {
        v.iter().find(|x| f(x) == system)
    }

    /// The summary table: Anxin, the bare broker, and their ratio.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = format!(
            "# Anxin benchmark — {}\n\nMachine: {} ({} cores, {} GiB), kernel {}, open files {}; hub build: {}; broker: {}. Wall time {} s.\n\n",
            self.started,
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.open_files_limit,
            m.hub_build,
            m.mosquitto_version.as_deref().unwrap_or("none"),
            self.wall_secs
        );
        s.push_str("| scenario | measure | Anxin | Mosquitto | Anxin ÷ Mosquitto |\n|---|---|---|---|---|\n");
        let mut row = |sc: &str, what: &str, a: Option<f64>, b: Option<f64>, unit: &str| {
            s.push_str(&format!(
                "| {sc} | {what} | {} | {} | {} |\n",
                opt(a, unit),
                opt(b, unit),
                ratio(a, b)
            ));
        };
        let mut ns: Vec<usize> = self.throughput.iter().map(|t| t.devices).collect();
        ns.dedup();
        for n in ns {
            let get = |sys: &str| {
                self.throughput
                    .iter()
                    .find(|t| t.system == sys && t.devices == n)
            };
            let (a, b) = (get("anxin"), get("mosquitto"));
            row(
                &format!("throughput, {n} devices"),
                "max msgs/s with zero loss",
                a.map(|t| t.max_zero_loss_per_s),
                b.map(|t| t.max_zero_loss_per_s),
                "",
            );
            let flat =
                |t: Option<&Throughput>| t.and_then(|t| t.steps.last()).map(|s| s.achieved_per_s);
            row(
                "",
                "flat out msgs/s (see loss in JSON)",
                flat(a),
                flat(b),
                "",
            );
            let cpu =
                |t: Option<&Throughput>| t.and_then(|t| t.steps.last()).and_then(|s| s.cpu_cores);
            row("", "CPU flat out (cores)", cpu(a), cpu(b), "");
            let rss =
                |t: Option<&Throughput>| t.and_then(|t| t.steps.last()).and_then(|s| s.rss_mb);
            row("", "RSS flat out", rss(a), rss(b), " MB");
        }
        let la = Self::pick(&self.latency, "anxin", |x| &x.system);
        let lb = Self::pick(&self.latency, "mosquitto", |x| &x.system);
        type Pick = fn(&LatencyRun) -> &Latency;
        type Pct = fn(&Latency) -> f64;
        let paths: [(&str, Pick); 2] = [
            ("SOS → board", |l| &l.to_board),
            ("SOS → device ack", |l| &l.to_ack),
        ];
        for (k, (path, which)) in paths.into_iter().enumerate() {
            let pcts: [(&str, Pct); 3] = [
                ("p50", |l| l.p50_ms),
                ("p99", |l| l.p99_ms),
                ("p99.9", |l| l.p999_ms),
            ];
            for (j, (pct, f)) in pcts.into_iter().enumerate() {
                let scenario = if k == 0 && j == 0 {
                    "latency at 50% load"
                } else {
                    ""
                };
                row(
                    scenario,
                    &format!("{path} {pct}"),
                    la.map(|l| f(which(l))),
                    lb.map(|l| f(which(l))),
                    " ms",
                );
            }
        }
        let ca = Self::pick(&self.connections, "anxin", |x| &x.system);
        let cb = Self::pick(&self.connections, "mosquitto", |x| &x.system);
        let top = |c: Option<&Connections>| c.and_then(|c| c.steps.last()).cloned();
        let (ta, tb) = (top(ca), top(cb));
        let label = format!(
            "connections, {} devices",
            ta.as_ref().or(tb.as_ref()).map(|t| t.devices).unwrap_or(0)
        );
        row(
            &label,
            "connected",
            ta.as_ref().map(|t| t.connected as f64),
            tb.as_ref().map(|t| t.connected as f64),
            "",
        );
        row(
            "",
            "connect ramp",
            ta.as_ref().and_then(|t| t.ramp_secs),
            tb.as_ref().and_then(|t| t.ramp_secs),
            " s",
        );
        row(
            "",
            "RSS per device (at this step)",
            ta.as_ref().and_then(|t| t.kb_per_device),
            tb.as_ref().and_then(|t| t.kb_per_device),
            " KB",
        );
        row(
            "",
            "RSS slope over all steps",
            ca.and_then(|c| c.slope_kb_per_device),
            cb.and_then(|c| c.slope_kb_per_device),
            " KB/device",
        );
        row(
            "",
            "extrapolated RSS at 100k devices",
            ca.and_then(|c| c.extrapolated_100k_gib),
            cb.and_then(|c| c.extrapolated_100k_gib),
            " GiB",
        );
        let st = |c: Option<&Connections>| {
            c.and_then(|c| c.reconnect_storm.as_ref())
                .and_then(|s| s.all_reconnected_secs)
        };
        row("", "reconnect storm: all back", st(ca), st(cb), " s");
        let sa = Self::pick(&self.storm, "anxin", |x| &x.system);
        let sb = Self::pick(&self.storm, "mosquitto", |x| &x.system);
        let label = format!(
            "storm: {} of {} drop",
            sa.or(sb).map(|s| s.dropped).unwrap_or(0),
            sa.or(sb).map(|s| s.devices).unwrap_or(0)
        );
        row(
            &label,
            "all drops visible (alarms / Last Wills)",
            sa.and_then(|s| s.all_offline_visible_secs),
            sb.and_then(|s| s.all_offline_visible_secs),
            " s",
        );
        row(
            "",
            "SOS → board p99 during storm",
            sa.map(|s| s.sos_during_storm.p99_ms),
            sb.map(|s| s.sos_during_storm.p99_ms),
            " ms",
        );
        if let Some(r) = &self.restart {
            s.push_str(&format!(
                "| kill -9, {} devices | hub answering again | {} s | n/a | |\n| | all devices reconnected | {} | n/a | |\n| | all {} critical events acknowledged | {} | n/a | |\n| | critical events: exactly one alarm / lost / doubled | {} / {} / {} | n/a | |\n",
                r.devices,
                r.hub_up_secs,
                opt(r.all_reconnected_secs, " s"),
                r.critical_sent_during_outage,
                opt(r.all_critical_acked_secs, " s"),
                r.alarms_exactly_once,
                r.lost,
                r.doubled
            ));
        }
        if !self.notes.is_empty() {
            s.push_str("\nNotes:\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

/// Where the hub binary is by default: beside this executable (cargo builds both there).
pub fn default_hub_bin() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let hub = me.parent()?.join("hub");
    hub.exists().then_some(hub)
}

/// Write `bench-<stamp>.json` and `.md` into `dir`; returns the markdown path.
pub fn write(report: &Report, dir: &Path, label: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stem = format!("bench-{label}");
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(report)?,
    )?;
    let md = dir.join(format!("{stem}.md"));
    std::fs::write(&md, report.markdown())?;
    Ok(md)
}
