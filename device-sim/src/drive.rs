//! `device-sim run`: play a generated scenario into a hub that runs on a simulated clock.
//!
//! Every simulated device is a real MQTT connection with its own credentials, so the
//! events travel the production path (broker → ingest → rules → store). Time is moved in
//! steps: the driver publishes the events of one step, then asks the hub to move its
//! clock to the end of the step *after* its rules stage has handled every observation
//! published so far (`POST /api/sim/clock` with `after_observations`). That barrier is
//! also a loss check: a message the hub never handled stops the run with an error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::sim::Scenario;
use crate::{payload, Device, DeviceConfig};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub host: String,
    pub mqtt_port: u16,
    /// Hub base URL, e.g. `http://127.0.0.1:8080`.
    pub http: String,
    /// A district-scope API token (moves the simulated clock; reads alarms).
    pub token: String,
    /// The secret every simulated device was imported with.
    pub secret: String,
    /// Simulated time per step, in milliseconds.
    pub step_ms: i64,
    /// Connections opened at once while connecting the district.
    pub connect_concurrency: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub devices: usize,
    pub events_published: u64,
    pub critical_published: u64,
    pub steps: u64,
    pub simulated_days: f64,
    pub connect_secs: f64,
    pub wall_secs: f64,
    pub events_per_sec: f64,
    /// Wall time spent waiting for the hub to handle each step (the barrier).
    pub barrier_secs: f64,
    /// Wall time spent acting as staff (acknowledging and resolving alarms).
    pub staff_secs: f64,
}

/// Thin client for the hub's simulation endpoints.
struct Hub {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Hub {
    /// Play the staff: acknowledge open alarms a few minutes after they were raised and
    /// resolve them later, as a village worker would, so escalation and repeat
    /// notifications stay bounded over a simulated month.
    async fn staff_pass(
        &self,
        now: i64,
        ack_after_ms: i64,
        resolve_after_ms: i64,
    ) -> anyhow::Result<usize> {
        let v: Value = self
            .http
            .get(format!("{}/api/alarms?state=open&limit=1000", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut acted = 0;
        for a in v["alarms"].as_array().cloned().unwrap_or_default() {
            let id = a["id"].as_str().unwrap_or_default();
            let raised = a["raised_at"].as_i64().unwrap_or(now);
            let state = a["state"].as_str().unwrap_or_default();
            let (path, body) =
                if (state == "raised" || state == "notified") && now - raised >= ack_after_ms {
                    ("acknowledge", json!({ "note": "simulated staff" }))
                } else if state == "acknowledged" && now - raised >= resolve_after_ms {
                    (
                        "resolve",
                        json!({ "disposition": "other", "note": "simulated staff" }),
                    )
                } else {
                    continue;
                };
            let r = self
                .http
                .post(format!("{}/api/alarms/{id}/{path}", self.base))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await?;
            // 409: someone (or an earlier pass) already did it.
            if r.status().is_success() || r.status().as_u16() == 409 {
                acted += 1;
            } else {
                anyhow::bail!("{path} {id}: {}", r.status());
            }
        }
        Ok(acted)
    }

    async fn status(&self) -> anyhow::Result<(i64, u64)> {
        let v: Value = self
            .http
            .get(format!("{}/api/sim", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()
            .context("GET /api/sim (is the hub running with --simulated-clock?)")?
            .json()
            .await?;
        Ok((
            v["now"].as_i64().unwrap_or_default(),
            v["processed"].as_u64().unwrap_or_default(),
        ))
    }

    async fn move_clock(&self, to: i64, after_observations: u64) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/api/sim/clock", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "to": to, "after_observations": after_observations }))
            .send()
            .await?;
        if !r.status().is_success() {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            anyhow::bail!("moving the simulated clock failed ({status}): {body}");
        }
        Ok(())
    }
}

pub async fn run(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<RunReport> {
    let hub = Hub {
        http: reqwest::Client::new(),
        base: opts.http.trim_end_matches('/').to_owned(),
        token: opts.token.clone(),
    };
    let start = scenario.config.start;
    let end = start + i64::from(scenario.config.days) * 86_400_000;
    let (now, _) = hub.status().await?;
    anyhow::ensure!(now <= start, "the hub's simulated clock ({now}) is already past the scenario start ({start}); start the hub with --simulated-clock at or before the start");
    hub.move_clock(start, 0).await?;

    // Connect every device of the district.
    let (_, before_connect) = hub.status().await?;
    let began = Instant::now();
    let ids: Vec<String> = scenario
        .district
        .households
        .iter()
        .flat_map(|h| h.devices.iter().map(|d| d.id.clone()))
        .collect();
    let mut devices: HashMap<String, Device> = HashMap::with_capacity(ids.len());
    let mut connecting = futures::stream::iter(ids.iter().cloned().map(|id| {
        let mut cfg = DeviceConfig::new(
            opts.host.clone(),
            opts.mqtt_port,
            id.clone(),
            opts.secret.clone(),
        );
        cfg.retry_every = Duration::from_secs(30);
        async move { (id, Device::connect(cfg, Duration::from_secs(60)).await) }
    }))
    .buffer_unordered(opts.connect_concurrency.max(1));
    while let Some((id, dev)) = connecting.next().await {
        devices.insert(
            id.clone(),
            dev.with_context(|| format!("connecting simulated device {id}"))?,
        );
    }
    drop(connecting);
    let connect_secs = began.elapsed().as_secs_f64();
    // Each connection announces itself on its status topic: wait for those observations.
    let expected = before_connect + devices.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let baseline = loop {
        let (_, p) = hub.status().await?;
        if p >= expected {
            break p;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "hub handled {p} of {expected} status messages after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("connected {} devices in {connect_secs:.1} s", devices.len());

    let began = Instant::now();
    let mut published = 0u64;
    let mut critical = 0u64;
    let mut steps = 0u64;
    let mut t = start;
    let mut idx = 0usize;
    let events = &scenario.events;
    let mut next_report = start + 86_400_000;
    let mut pending_critical = Vec::new();
    let mut next_staff_pass = start;
    let (mut barrier_secs, mut staff_secs) = (0.0f64, 0.0f64);
    while t < end {
        // The step (t, next]: time moves first, then the events of [t, next) are
        // published, so the hub observes each event at most one step after it happened,
        // never before.
        let mut next = (t + opts.step_ms).min(end);
        match events.get(idx) {
            // Nothing to say for a while: jump to the step boundary before the next event.
            Some(ev) => {
                let boundary = start + (ev.at - start).div_euclid(opts.step_ms) * opts.step_ms;
                next = next.max(boundary.min(end));
            }
            None => next = end,
        }
        let waited = Instant::now();
        hub.move_clock(next, baseline + published).await?;
        barrier_secs += waited.elapsed().as_secs_f64();
        steps += 1;
        while let Some(ev) = events.get(idx) {
            if ev.at >= next {
                break;
            }
            idx += 1;
            let Some(dev) = devices.get(&ev.device) else {
                continue;
            };
            let body = payload::event_at(ev.kind, ev.fields.clone(), ev.at);
            if payload::is_critical(ev.kind, &ev.fields) {
                critical += 1;
                // Acknowledged after commit; the driver only checks that an ack arrives.
                let mut rx = dev.subscribe();
                let event_id = body["event_id"].as_str().unwrap_or_default().to_owned();
                pending_critical.push(tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    while let Ok(Ok(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                        if let crate::FromHub::Ack(v) = msg {
                            if v["event_id"].as_str() == Some(event_id.as_str()) {
                                return true;
                            }
                        }
                    }
                    false
                }));
            }
            dev.send(&body)
                .await
                .with_context(|| format!("publishing for {}", ev.device))?;
            published += 1;
        }
        if next >= next_staff_pass {
            let acted = Instant::now();
            hub.staff_pass(next, 5 * 60_000, 60 * 60_000).await?;
            staff_secs += acted.elapsed().as_secs_f64();
            next_staff_pass = next + 10 * 60_000;
        }
        t = next;
        if t >= next_report {
            let day = (t - start) / 86_400_000;
            eprintln!(
                "day {day}/{}: {published} events, {:.0} events/s",
                scenario.config.days,
                published as f64 / began.elapsed().as_secs_f64().max(1e-9)
            );
            next_report += 86_400_000;
        }
    }
    // The last step's events: handled before the run counts as done.
    hub.move_clock(end, baseline + published).await?;
    let mut acked = 0;
    for p in pending_critical {
        if p.await.unwrap_or(false) {
            acked += 1;
        }
    }
    anyhow::ensure!(
        acked == critical,
        "{acked} of {critical} critical events were acknowledged"
    );
    let wall = began.elapsed().as_secs_f64();
    // Clean disconnects: no Last Will, so the district does not "go offline" afterwards.
    futures::future::join_all(devices.into_values().map(Device::disconnect)).await;
    Ok(RunReport {
        devices: ids.len(),
        events_published: published,
        critical_published: critical,
        steps,
        simulated_days: (end - start) as f64 / 86_400_000.0,
        connect_secs,
        wall_secs: wall,
        events_per_sec: published as f64 / wall.max(1e-9),
        barrier_secs,
        staff_secs,
    })
}
